//! TOTP codes through the store: RFC 6238, one-time use, drift, lockout,
//! enrollment expiry, encryption at rest and concurrent checks.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use deployctl_policy::mfa::{KeySource, MfaError, MfaPolicy, MfaStatus, MfaStore};
use totp_rs::{Algorithm, Builder};

use crate::{at, code, key_file, phone, store};

/// RFC 6238 Appendix B, SHA-1, 8 digits.
const RFC6238_SHA1: [(u64, &str); 6] = [
    (59, "94287082"),
    (1_111_111_109, "07081804"),
    (1_111_111_111, "14050471"),
    (1_234_567_890, "89005924"),
    (2_000_000_000, "69279037"),
    (20_000_000_000, "65353130"),
];
const RFC_SECRET: &[u8] = b"12345678901234567890";

/// A confirmed enrollment for `user`; returns the phone and the time
/// (Unix seconds) the confirming code was used at.
fn enrolled(store: &MfaStore, user: &str, now: u64) -> totp_rs::Totp {
    let enrollment = store.enroll(user, at(now)).unwrap();
    let phone = phone(&enrollment.secret_base32);
    store
        .confirm(user, &code(&phone, now), at(now))
        .expect("confirming with the current code");
    phone
}

#[test]
fn totp_rs_matches_the_rfc_6238_sha1_vectors() {
    let eight = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(8)
        .with_secret(RFC_SECRET.to_vec())
        .build()
        .unwrap();
    let six = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_secret(RFC_SECRET.to_vec())
        .build()
        .unwrap();
    for (time, expected) in RFC6238_SHA1 {
        assert_eq!(eight.generate(time).to_string(), expected, "t={time}");
        // Truncation is `mod 10^digits`: the 6-digit code is the vector's
        // last six digits, an independent check of what the store uses.
        assert_eq!(six.generate(time).to_string(), expected[2..], "t={time}");
    }
    assert_eq!(eight.check("94287082", 59), Some(1), "t=59 is step 1");
}

#[test]
fn codes_from_an_authenticator_app_are_accepted_at_many_times() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let start = 1_795_511_700;
    let phone = enrolled(&store, "alice", start);
    // One code per step over a few hours, each from the phone's own clock.
    for step in 1..200u64 {
        let now = start + step * 60 + (step * 7) % 30;
        let verified = store
            .verify("alice", &code(&phone, now), at(now))
            .unwrap_or_else(|error| panic!("t={now}: {error}"));
        assert_eq!(verified.step, now / 30);
        assert_eq!(verified.user, "alice");
    }
}

#[test]
fn a_code_is_accepted_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let phone = enrolled(&store, "alice", 1_000_000_000);
    let now = 1_000_000_100;
    let code = code(&phone, now);
    store.verify("alice", &code, at(now)).unwrap();
    let error = store.verify("alice", &code, at(now + 5)).unwrap_err();
    assert!(
        matches!(error, MfaError::Replayed { step, .. } if step == now / 30),
        "{error:?}"
    );
    assert!(error.is_security_event());
    assert!(error.to_string().contains("already used"), "{error}");
    // The confirming code is spent too.
    let error = store.verify(
        "alice",
        &crate::code(&phone, 1_000_000_000),
        at(1_000_000_000 + 10),
    );
    assert!(matches!(error, Err(MfaError::Replayed { .. })), "{error:?}");
}

#[test]
fn an_older_code_is_refused_once_a_newer_one_was_used() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let phone = enrolled(&store, "alice", 1_000_000_000);
    let now = 1_000_000_200;
    // The next step's code (a phone running fast), then the current one.
    store
        .verify("alice", &code(&phone, now + 30), at(now))
        .unwrap();
    let error = store
        .verify("alice", &code(&phone, now), at(now))
        .unwrap_err();
    assert!(matches!(error, MfaError::Replayed { .. }), "{error:?}");
}

#[test]
fn codes_one_step_away_are_accepted_two_steps_away_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let phone = enrolled(&store, "alice", 1_000_000_000);

    let now = 1_000_001_005; // step 33_333_366, 5 s into it
    let previous = store
        .verify("alice", &code(&phone, now - 30), at(now))
        .unwrap();
    assert_eq!(previous.step, now / 30 - 1);

    let now = now + 300;
    let next = store
        .verify("alice", &code(&phone, now + 30), at(now))
        .unwrap();
    assert_eq!(next.step, now / 30 + 1);

    let now = now + 300;
    for offset in [-60i64, 60] {
        let then = now.checked_add_signed(offset).unwrap();
        let error = store
            .verify("alice", &code(&phone, then), at(now))
            .unwrap_err();
        assert!(matches!(error, MfaError::InvalidCode { .. }), "{error:?}");
    }
}

#[test]
fn five_wrong_codes_lock_out_until_the_lockout_passes() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let phone = enrolled(&store, "alice", 1_000_000_000);
    let now = 1_000_000_300;
    let right = code(&phone, now);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };

    for attempt in 1..5u32 {
        let error = store
            .verify("alice", wrong, at(now + u64::from(attempt)))
            .unwrap_err();
        match error {
            MfaError::InvalidCode {
                remaining_attempts, ..
            } => assert_eq!(remaining_attempts, 5 - attempt),
            other => panic!("attempt {attempt}: {other:?}"),
        }
    }
    let error = store.verify("alice", wrong, at(now + 5)).unwrap_err();
    let MfaError::LockedOut {
        until,
        newly_locked: true,
        ..
    } = error
    else {
        panic!("the fifth wrong code locks: {error:?}");
    };
    assert_eq!(until, at(now + 5 + 15 * 60));
    assert!(error.is_security_event());

    // Even the right code is refused while locked, and does not extend it.
    let error = store.verify("alice", &right, at(now + 10)).unwrap_err();
    assert!(
        matches!(error, MfaError::LockedOut { until: u, newly_locked: false, .. } if u == until),
        "{error:?}"
    );
    let later = now + 14 * 60;
    let error = store
        .verify("alice", &code(&phone, later), at(later))
        .unwrap_err();
    assert!(matches!(error, MfaError::LockedOut { .. }), "{error:?}");
    assert!(matches!(
        store.status("alice", at(later)).unwrap(),
        MfaStatus::Active { locked_until: Some(u), failures: 5 } if u == until
    ));

    // Once it has passed, a right code is accepted and the count starts over.
    let after = now + 5 + 15 * 60;
    store
        .verify("alice", &code(&phone, after), at(after))
        .expect("the lockout is over");
    let error = store.verify("alice", wrong, at(after + 1)).unwrap_err();
    assert!(
        matches!(
            error,
            MfaError::InvalidCode {
                remaining_attempts: 4,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn a_success_resets_the_failure_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let phone = enrolled(&store, "alice", 1_000_000_000);
    let mut now = 1_000_000_300;
    for _ in 0..3 {
        for _ in 0..4 {
            assert!(store.verify("alice", "12345x", at(now)).is_err());
        }
        now += 30;
        store.verify("alice", &code(&phone, now), at(now)).unwrap();
        now += 30;
    }
    assert_eq!(
        store.status("alice", at(now)).unwrap(),
        MfaStatus::Active {
            failures: 0,
            locked_until: None
        }
    );
}

#[test]
fn the_lockout_policy_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path(), "k", 1);
    let policy = MfaPolicy {
        max_failures: 2,
        lockout: Duration::from_secs(60),
        ..MfaPolicy::default()
    };
    let store = MfaStore::open(&dir.path().join("state"), &keys, policy).unwrap();
    enrolled(&store, "bob", 1_000_000_000);
    assert!(matches!(
        store.verify("bob", "000000", at(1_000_000_100)),
        Err(MfaError::InvalidCode {
            remaining_attempts: 1,
            ..
        })
    ));
    assert!(matches!(
        store.verify("bob", "000001", at(1_000_000_101)),
        Err(MfaError::LockedOut { until, .. }) if until == at(1_000_000_161)
    ));
}

#[test]
fn unconfirmed_enrollments_expire() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let start = 1_000_000_000;
    let enrollment = store.enroll("carol", at(start)).unwrap();
    assert_eq!(enrollment.expires_at, at(start + 3600));
    let phone = phone(&enrollment.secret_base32);

    // Not usable before it is confirmed.
    let error = store
        .verify("carol", &code(&phone, start + 60), at(start + 60))
        .unwrap_err();
    assert!(
        matches!(error, MfaError::EnrollmentPending { .. }),
        "{error:?}"
    );
    assert!(matches!(
        store.status("carol", at(start + 60)).unwrap(),
        MfaStatus::Pending { expires_at } if expires_at == at(start + 3600)
    ));

    let late = start + 3600;
    let error = store
        .confirm("carol", &code(&phone, late), at(late))
        .unwrap_err();
    assert!(
        matches!(error, MfaError::EnrollmentExpired { expired_at, .. } if expired_at == at(late)),
        "{error:?}"
    );
    // The expired secret is gone for good.
    assert_eq!(
        store.status("carol", at(late)).unwrap(),
        MfaStatus::NotEnrolled
    );
    assert!(matches!(
        store.confirm("carol", &code(&phone, late), at(late)),
        Err(MfaError::NotEnrolled { .. })
    ));

    // Enrolling again gives a new secret that can be confirmed in time.
    let again = store.enroll("carol", at(late)).unwrap();
    assert_ne!(again.secret_base32, enrollment.secret_base32);
    let phone = crate::phone(&again.secret_base32);
    store
        .confirm("carol", &code(&phone, late + 60), at(late + 60))
        .unwrap();
}

#[test]
fn expired_enrollments_can_be_purged() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let start = 1_000_000_000;
    store.enroll("bob", at(start)).unwrap();
    store.enroll("dave", at(start + 3000)).unwrap();
    enrolled(&store, "alice", start);
    assert_eq!(
        store.purge_expired(at(start + 3599)).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(store.purge_expired(at(start + 3600)).unwrap(), ["bob"]);
    assert!(matches!(
        store.status("dave", at(start + 3600)).unwrap(),
        MfaStatus::Pending { .. }
    ));
    assert!(matches!(
        store.status("alice", at(start + 3600)).unwrap(),
        MfaStatus::Active { .. }
    ));
}

#[test]
fn enrollment_rules() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let enrollment = store.enroll("alice", at(1_000_000_000)).unwrap();
    // 160 bits → 32 base32 characters.
    assert_eq!(enrollment.secret_base32.len(), 32);
    assert!(
        enrollment
            .otpauth_uri
            .starts_with("otpauth://totp/deployctl:alice?secret="),
        "{}",
        enrollment.otpauth_uri
    );
    assert!(enrollment.otpauth_uri.contains(&enrollment.secret_base32));
    assert!(enrollment.otpauth_uri.contains("issuer=deployctl"));
    let qr = enrollment
        .qr_code(deployctl_policy::mfa::Background::Dark)
        .unwrap();
    assert!(qr.lines().count() > 10);

    // Debug output never shows the secret.
    let shown = format!("{enrollment:?}");
    assert!(!shown.contains(&enrollment.secret_base32), "{shown}");
    assert!(!shown.contains("otpauth://"), "{shown}");
    assert!(!format!("{store:?}").contains("07070707"));

    // A pending enrollment may be restarted; a confirmed one may not.
    let restarted = store.enroll("alice", at(1_000_000_010)).unwrap();
    assert_ne!(restarted.secret_base32, enrollment.secret_base32);
    let phone = phone(&restarted.secret_base32);
    store
        .confirm("alice", &code(&phone, 1_000_000_020), at(1_000_000_020))
        .unwrap();
    assert!(matches!(
        store.enroll("alice", at(1_000_000_030)),
        Err(MfaError::AlreadyEnrolled { .. })
    ));
    assert!(matches!(
        store.confirm("alice", "123456", at(1_000_000_030)),
        Err(MfaError::AlreadyEnrolled { .. })
    ));
    assert!(store.remove("alice").unwrap());
    assert!(!store.remove("alice").unwrap());
    store.enroll("alice", at(1_000_000_040)).unwrap();

    assert!(matches!(
        store.verify("nobody", "123456", at(1_000_000_040)),
        Err(MfaError::NotEnrolled { .. })
    ));
    assert!(matches!(
        store.enroll("Bad:Name", at(1_000_000_040)),
        Err(MfaError::InvalidUser(_))
    ));
}

#[test]
fn wrong_confirmation_codes_count_towards_a_lockout() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    store.enroll("erin", at(1_000_000_000)).unwrap();
    for second in 1..5 {
        assert!(matches!(
            store.confirm("erin", "000000", at(1_000_000_000 + second)),
            Err(MfaError::InvalidCode { .. })
        ));
    }
    assert!(matches!(
        store.confirm("erin", "000000", at(1_000_000_005)),
        Err(MfaError::LockedOut {
            newly_locked: true,
            ..
        })
    ));
    // Re-enrolling is no way around the lockout.
    assert!(matches!(
        store.enroll("erin", at(1_000_000_006)),
        Err(MfaError::LockedOut { .. })
    ));
}

#[test]
fn secrets_are_encrypted_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let enrollment = store.enroll("alice", at(1_000_000_000)).unwrap();
    let secret = totp_rs::Secret::try_from_base32(&enrollment.secret_base32)
        .unwrap()
        .as_bytes()
        .to_vec();
    assert_eq!(secret.len(), 20);
    let phone = phone(&enrollment.secret_base32);
    store
        .confirm("alice", &code(&phone, 1_000_000_000), at(1_000_000_000))
        .unwrap();

    // Every file SQLite wrote (database, WAL, shared memory).
    let state = dir.path().join("state");
    let mut checked = 0;
    for entry in std::fs::read_dir(&state).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_slice()),
            "{} holds the raw secret",
            path.display()
        );
        let base32 = enrollment.secret_base32.as_bytes();
        assert!(
            !bytes.windows(base32.len()).any(|w| w == base32),
            "{} holds the base32 secret",
            path.display()
        );
        assert!(
            !bytes
                .windows(base32.len())
                .any(|w| w.eq_ignore_ascii_case(base32)),
            "{} holds the base32 secret",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 2, "the database and its WAL were checked");
}

#[test]
fn the_store_and_its_directory_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    store.enroll("alice", at(1_000_000_000)).unwrap();
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let state = dir.path().join("state");
    assert_eq!(mode(&state), 0o700);
    assert_eq!(store.path(), state.join("mfa.sqlite3"));
    for entry in std::fs::read_dir(&state).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

#[test]
fn a_secret_moved_to_another_user_does_not_decrypt() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    enrolled(&store, "alice", 1_000_000_000);
    enrolled(&store, "bob", 1_000_000_000);
    drop(store);
    let db = rusqlite::Connection::open(dir.path().join("state/mfa.sqlite3")).unwrap();
    db.execute(
        "UPDATE enrollments SET secret = (SELECT secret FROM enrollments WHERE user = 'alice')
         WHERE user = 'bob'",
        [],
    )
    .unwrap();
    drop(db);
    let store = crate::store(dir.path());
    let error = store
        .verify("bob", "123456", at(1_000_000_100))
        .unwrap_err();
    assert!(matches!(error, MfaError::Undecryptable { .. }), "{error:?}");
    assert!(error.is_security_event());
}

#[test]
fn the_same_code_checked_concurrently_is_accepted_at_most_once() {
    let dir = tempfile::tempdir().unwrap();
    let phone = enrolled(&store(dir.path()), "alice", 1_000_000_000);
    let keys = KeySource::File(dir.path().join("mfa.key"));
    let state = dir.path().join("state");
    // Several rounds, each with a fresh code checked by eight threads at
    // once, each on its own connection (as separate processes would be).
    // Rounds are 20 minutes apart so that the lockout the seven refused
    // copies earn has passed by the next one.
    for round in 1..=5u64 {
        let now = 1_000_000_000 + round * 1200;
        let code = code(&phone, now);
        let threads = 8;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                let code = code.clone();
                let (keys, state) = (keys.clone(), state.clone());
                std::thread::spawn(move || {
                    let store = MfaStore::open(&state, &keys, MfaPolicy::default());
                    // Wait even if opening failed, so no thread is left
                    // waiting for this one.
                    barrier.wait();
                    let store = store.expect("opening the store");
                    store.verify("alice", &code, at(now))
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let accepted = results.iter().filter(|result| result.is_ok()).count();
        assert_eq!(accepted, 1, "round {round}: {results:?}");
        let replayed = results
            .iter()
            .filter(|result| matches!(result, Err(MfaError::Replayed { .. })))
            .count();
        let locked = results
            .iter()
            .filter(|result| matches!(result, Err(MfaError::LockedOut { .. })))
            .count();
        // Replays count as failures: four, then the fifth locks.
        assert_eq!((replayed, locked), (4, 3), "round {round}: {results:?}");
    }
}
