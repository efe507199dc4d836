//! The MFA master key from KMS: enrolled once (GenerateDataKey, wrapped
//! key stored 0600), unwrapped on every later open (Decrypt), and refused
//! clearly under another key or encryption context.

use std::time::SystemTime;

use deployctl_aws_audit::{KmsKeyProvider, WRAPPED_KEY_FILE};
use deployctl_policy::mfa::{KeyProvider, MfaError, MfaPolicy, MfaStatus, MfaStore};

use crate::support::{Moto, TempDir, moto};

fn create_key(moto: &Moto) -> String {
    let created = moto
        .block_on(
            moto.kms
                .create_key()
                .description("deployctl MFA test")
                .send(),
        )
        .expect("kms:CreateKey");
    created
        .key_metadata()
        .expect("key metadata")
        .key_id()
        .to_string()
}

fn provider(moto: &Moto, key: &str, state: &TempDir) -> KmsKeyProvider {
    KmsKeyProvider::with_client(moto.kms_client(), key, state.path().join(WRAPPED_KEY_FILE))
        .expect("the provider starts")
}

#[test]
fn an_mfa_store_enrolled_with_kms_reopens_with_kms() {
    let Some(url) = moto("an_mfa_store_enrolled_with_kms_reopens_with_kms") else {
        return;
    };
    let moto = Moto::new(&url);
    let key = create_key(&moto);
    let state = TempDir::new("kms-store");
    let enrolling = provider(&moto, &key, &state).create_if_missing(true);
    let store = MfaStore::open(state.path(), &enrolling, MfaPolicy::default()).unwrap();
    let enrollment = store.enroll("alice", SystemTime::now()).unwrap();
    assert!(!enrollment.secret_base32.is_empty());
    drop(store);

    let wrapped_path = state.path().join(WRAPPED_KEY_FILE);
    let wrapped = std::fs::read(&wrapped_path).unwrap();
    assert!(wrapped.len() > 32, "a KMS ciphertext blob, not a raw key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&wrapped_path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    // Another process later: the key comes from Decrypt, and the store's
    // sealed key check (and alice's secret) open with it.
    let reopening = provider(&moto, &key, &state);
    assert!(reopening.describe().contains(&key));
    let store = MfaStore::open(state.path(), &reopening, MfaPolicy::default()).unwrap();
    assert!(matches!(
        store.status("alice", SystemTime::now()).unwrap(),
        MfaStatus::Pending { .. }
    ));
    // Unwrapping again gives the same key, not a new one.
    assert_eq!(std::fs::read(&wrapped_path).unwrap(), wrapped);

    // The key also works by alias.
    moto.block_on(
        moto.kms
            .create_alias()
            .alias_name("alias/deployctl-mfa")
            .target_key_id(&key)
            .send(),
    )
    .unwrap();
    let by_alias =
        KmsKeyProvider::with_client(moto.kms_client(), "alias/deployctl-mfa", &wrapped_path)
            .unwrap();
    MfaStore::open(state.path(), &by_alias, MfaPolicy::default()).unwrap();
}

#[test]
fn another_key_or_context_cannot_unwrap_it() {
    let Some(url) = moto("another_key_or_context_cannot_unwrap_it") else {
        return;
    };
    let moto = Moto::new(&url);
    let key = create_key(&moto);
    let other = create_key(&moto);
    let state = TempDir::new("kms-wrong");
    provider(&moto, &key, &state)
        .create_if_missing(true)
        .load_key()
        .unwrap();

    let error = provider(&moto, &other, &state)
        .load_key()
        .unwrap_err()
        .to_string();
    assert!(error.contains(WRAPPED_KEY_FILE), "{error}");
    assert!(error.contains(&other), "{error}");
    assert!(
        error.contains("another KMS key") || error.contains("not the configured key"),
        "{error}"
    );

    let error = provider(&moto, &key, &state)
        .with_context("deployctl:environment", "production")
        .load_key()
        .unwrap_err()
        .to_string();
    assert!(error.contains("encryption context"), "{error}");
    assert!(error.contains("InvalidCiphertextException"), "{error}");

    // And through the store: its error names where the key came from.
    let wrong = provider(&moto, &other, &state);
    let Err(error) = MfaStore::open(state.path(), &wrong, MfaPolicy::default()) else {
        panic!("the store must not open with another key");
    };
    assert!(
        matches!(error, MfaError::Key(_)) || error.to_string().contains(&other),
        "{error}"
    );
}

#[test]
fn without_an_enrollment_the_error_says_how_to_make_one() {
    let Some(url) = moto("without_an_enrollment_the_error_says_how_to_make_one") else {
        return;
    };
    let moto = Moto::new(&url);
    let key = create_key(&moto);
    let state = TempDir::new("kms-none");
    let error = provider(&moto, &key, &state)
        .load_key()
        .unwrap_err()
        .to_string();
    assert!(error.contains("deployctl mfa enroll"), "{error}");
    assert!(error.contains("DEPLOYCTL_MFA_KMS_KEY"), "{error}");
    assert!(
        !state.path().join(WRAPPED_KEY_FILE).exists(),
        "nothing created"
    );

    // A key that does not exist: GenerateDataKey fails, nothing is stored.
    let error = provider(&moto, "0000-no-such-key", &state)
        .create_if_missing(true)
        .load_key()
        .unwrap_err()
        .to_string();
    assert!(error.contains("GenerateDataKey"), "{error}");
    assert!(error.contains("0000-no-such-key"), "{error}");
    assert!(
        !state.path().join(WRAPPED_KEY_FILE).exists(),
        "nothing created"
    );
}
