//! The team's MFA store on moto's S3: each PC is its own `MfaStore` over
//! its own client on one backend. A code is accepted once across PCs,
//! even when two check it in the same second; wrong codes on different
//! PCs add up to one lockout; the objects hold nothing secret in clear.

use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deployctl_aws::testing::{emulator, moto};
use deployctl_aws_team::S3Enrollments;
use deployctl_policy::mfa::{
    KeyError, KeyProvider, MasterKey, MfaError, MfaPolicy, MfaStatus, MfaStore, WrappedKeyPlace,
};

use crate::{Backend, faults};

/// A fixed master key, as every PC of a team is given (in production,
/// the KMS-wrapped key in the backend).
struct Key(u8);

impl KeyProvider for Key {
    fn describe(&self) -> String {
        format!("test key {}", self.0)
    }

    fn load_key(&self) -> Result<MasterKey, KeyError> {
        MasterKey::from_bytes(&[self.0; 32], self.describe())
    }
}

const KEY: Key = Key(7);

impl Backend {
    async fn mfa_via(&self, url: &str, key: &Key) -> Result<MfaStore, MfaError> {
        let enrollments = S3Enrollments::new(self.client(url).await, self.location.clone())
            .expect("the bridge's runtime");
        MfaStore::with_enrollments(Box::new(enrollments), key, MfaPolicy::default())
    }

    async fn mfa(&self) -> MfaStore {
        self.mfa_via(&self.url, &KEY)
            .await
            .expect("the team's MFA store")
    }
}

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

fn phone(secret_base32: &str) -> totp_rs::Totp {
    let secret = totp_rs::Secret::try_from_base32(secret_base32).expect("base32");
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_secret(secret.as_bytes().to_vec())
        .build()
        .expect("a TOTP generator")
}

/// `user` enrolled on `a` and confirmed on `b` at `now`: one enrollment,
/// seen by every PC.
fn enrolled(a: &MfaStore, b: &MfaStore, user: &str, now: u64) -> (totp_rs::Totp, String) {
    let enrollment = a.enroll(user, at(now)).expect("enrolled on PC A");
    let phone = phone(&enrollment.secret_base32);
    b.confirm(user, &phone.generate(now).to_string(), at(now))
        .expect("confirmed on PC B");
    (phone, enrollment.secret_base32.clone())
}

/// Both PCs check the same code at the same moment, `rounds` times (a new
/// TOTP step each round): exactly one accepts it each time, the other
/// sees it spent.
fn race(a: MfaStore, b: MfaStore, phone: &totp_rs::Totp, start: u64, rounds: u64) {
    let (a, b) = (Arc::new(a), Arc::new(b));
    for round in 1..=rounds {
        let now = start + 30 * round;
        let code = phone.generate(now).to_string();
        let barrier = Arc::new(Barrier::new(2));
        let checks: Vec<_> = [&a, &b]
            .into_iter()
            .map(|store| {
                let (store, barrier, code) =
                    (Arc::clone(store), Arc::clone(&barrier), code.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    store.verify("alice", &code, at(now))
                })
            })
            .collect();
        let results: Vec<_> = checks.into_iter().map(|t| t.join().unwrap()).collect();
        let accepted = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(accepted, 1, "round {round}: {results:?}");
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(MfaError::Replayed { .. }))),
            "round {round}: the other PC saw the code spent: {results:?}"
        );
    }
}

#[tokio::test]
async fn a_code_is_accepted_once_across_pcs_even_when_two_check_it_in_the_same_second() {
    let test = "a_code_is_accepted_once_across_pcs_even_when_two_check_it_in_the_same_second";
    let Some(url) = moto(test) else {
        return;
    };
    let backend = Backend::new(&url).await;
    let (a, b) = (backend.mfa().await, backend.mfa().await);
    let start = 1_800_000_000;
    let (phone, _) = enrolled(&a, &b, "alice", start);
    // The confirming code, replayed on the PC that enrolled.
    let replayed = a.verify("alice", &phone.generate(start).to_string(), at(start + 1));
    assert!(
        matches!(replayed, Err(MfaError::Replayed { .. })),
        "{replayed:?}"
    );
    race(a, b, &phone, start, 20);
}

#[tokio::test]
async fn wrong_codes_on_two_pcs_add_up_to_one_lockout() {
    let test = "wrong_codes_on_two_pcs_add_up_to_one_lockout";
    let Some(url) = moto(test) else {
        return;
    };
    let backend = Backend::new(&url).await;
    let (a, b) = (backend.mfa().await, backend.mfa().await);
    let start = 1_800_000_000;
    let (phone, _) = enrolled(&a, &b, "alice", start);
    let now = start + 60;
    for store in [&a, &a, &a, &b] {
        let wrong = store.verify("alice", "000000", at(now));
        assert!(
            matches!(wrong, Err(MfaError::InvalidCode { .. })),
            "{wrong:?}"
        );
    }
    let fifth = b.verify("alice", "000000", at(now));
    assert!(
        matches!(
            fifth,
            Err(MfaError::LockedOut {
                newly_locked: true,
                ..
            })
        ),
        "the fifth wrong code in a row, on either PC, locks out: {fifth:?}"
    );
    // PC A, which saw only three, refuses even the right code.
    let right = a.verify("alice", &phone.generate(now).to_string(), at(now));
    assert!(
        matches!(
            right,
            Err(MfaError::LockedOut {
                newly_locked: false,
                ..
            })
        ),
        "{right:?}"
    );
    assert!(matches!(
        a.status("alice", at(now)).unwrap(),
        MfaStatus::Active {
            locked_until: Some(_),
            ..
        }
    ));
    // An administrator's unlock on B holds on A.
    assert!(b.unlock("alice").unwrap());
    a.verify("alice", &phone.generate(now + 30).to_string(), at(now + 30))
        .expect("unlocked everywhere");
    // Removed on A: gone for B, and enrolling again starts afresh.
    assert!(a.remove("alice").unwrap());
    assert!(matches!(
        b.verify("alice", &phone.generate(now + 60).to_string(), at(now + 60)),
        Err(MfaError::NotEnrolled { .. })
    ));
    assert!(
        b.list(at(now)).unwrap().is_empty(),
        "a removal lists nobody"
    );
    b.enroll("alice", at(now + 60)).expect("enrolled again");
}

#[tokio::test]
async fn the_backend_holds_nothing_secret_in_clear_and_a_pc_with_another_key_is_refused() {
    let test = "the_backend_holds_nothing_secret_in_clear_and_a_pc_with_another_key_is_refused";
    let Some(url) = moto(test) else {
        return;
    };
    let backend = Backend::new(&url).await;
    let (a, b) = (backend.mfa().await, backend.mfa().await);
    let (phone, secret_base32) = enrolled(&a, &b, "alice", 1_800_000_000);
    let raw_hex: String = phone.secret().iter().map(|b| format!("{b:02x}")).collect();
    let client = backend.client(&url).await;
    let listed = client
        .list_objects_v2()
        .bucket(&backend.location.bucket)
        .prefix(backend.location.key("mfa/"))
        .send()
        .await
        .unwrap();
    let keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    assert!(
        keys.len() >= 2,
        "the key check and alice's record: {keys:?}"
    );
    for key in &keys {
        let body = client
            .get_object()
            .bucket(&backend.location.bucket)
            .key(key)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        let text = String::from_utf8_lossy(&body).to_lowercase();
        assert!(
            !text.contains(&secret_base32.to_lowercase()) && !text.contains(&raw_hex),
            "{key} holds the secret in clear: {text}"
        );
    }
    let other = backend.mfa_via(&url, &Key(9)).await;
    assert!(
        matches!(other, Err(MfaError::WrongKey { .. })),
        "a PC given another key cannot use (or spoil) the team's store: {other:?}"
    );
}

#[tokio::test]
async fn the_first_wrapped_key_stored_is_the_one_every_pc_uses() {
    let test = "the_first_wrapped_key_stored_is_the_one_every_pc_uses";
    let Some(url) = moto(test) else {
        return;
    };
    let backend = Backend::new(&url).await;
    let place = |client| {
        S3Enrollments::new(client, backend.location.clone())
            .unwrap()
            .wrapped_key()
            .unwrap()
    };
    let (a, b) = (
        place(backend.client(&url).await),
        place(backend.client(&url).await),
    );
    assert_eq!(a.read().unwrap(), None);
    assert_eq!(a.create(b"wrapped by A").unwrap(), b"wrapped by A");
    assert_eq!(
        b.create(b"wrapped by B").unwrap(),
        b"wrapped by A",
        "B enrolling at the same time gets A's key"
    );
    assert_eq!(b.read().unwrap().as_deref(), Some(&b"wrapped by A"[..]));
}

#[tokio::test]
async fn under_throttling_server_errors_and_lost_answers_a_code_is_still_accepted_once() {
    let test = "under_throttling_server_errors_and_lost_answers_a_code_is_still_accepted_once";
    let (Some(url), Some(proxy)) = (moto(test), emulator("DEPLOYCTL_TEST_FAULTS_URL", test)) else {
        return;
    };
    let backend = Backend::new(&url).await;
    let (a, b) = (
        backend.mfa_via(&proxy, &KEY).await.unwrap(),
        backend.mfa_via(&proxy, &KEY).await.unwrap(),
    );
    let start = 1_800_000_000;
    let (phone, _) = enrolled(&a, &b, "alice", start);
    faults(
        &proxy,
        &format!(
            r#"{{"account": "{}", "rate": 0.2, "seed": 5, "kinds": ["throttle", "5xx", "reset"]}}"#,
            backend.account.0
        ),
    );
    race(a, b, &phone, start, 15);
    let calls = crate::calls(&proxy, &backend.account.0);
    assert!(
        calls.iter().filter(|c| !c["fault"].is_null()).count() >= 5,
        "the proxy injected faults: {calls:?}"
    );
}
