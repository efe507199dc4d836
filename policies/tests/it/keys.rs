//! Where the encryption key comes from, and what happens when it is wrong.

use std::os::unix::fs::PermissionsExt;

use deployctl_policy::mfa::{
    KeyError, KeyProvider, KeySource, MfaError, MfaPolicy, MfaStore, create_key_file,
};

use crate::{at, code, key_file, phone};

#[test]
fn a_key_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path(), "mfa.key", 3);
    let KeySource::File(path) = &keys else {
        unreachable!()
    };
    for mode in [0o644, 0o640, 0o604, 0o660] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        let error =
            MfaStore::open(&dir.path().join("state"), &keys, MfaPolicy::default()).unwrap_err();
        let MfaError::Key(KeyError::Permissions { mode: found, .. }) = &error else {
            panic!("mode {mode:o}: {error:?}");
        };
        assert_eq!(*found, mode);
        let message = error.to_string();
        assert!(message.contains(&format!("{mode:04o}")), "{message}");
        assert!(message.contains("chmod 600"), "{message}");
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o400)).unwrap();
    MfaStore::open(&dir.path().join("state"), &keys, MfaPolicy::default()).unwrap();
}

#[test]
fn a_different_key_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let right = key_file(dir.path(), "right.key", 1);
    let store = MfaStore::open(&state, &right, MfaPolicy::default()).unwrap();
    let enrollment = store.enroll("alice", at(1_000_000_000)).unwrap();
    let phone = phone(&enrollment.secret_base32);
    store
        .confirm("alice", &code(&phone, 1_000_000_000), at(1_000_000_000))
        .unwrap();
    drop(store);

    let wrong = key_file(dir.path(), "wrong.key", 2);
    let error = MfaStore::open(&state, &wrong, MfaPolicy::default()).unwrap_err();
    assert!(matches!(error, MfaError::WrongKey { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("different key"), "{message}");
    assert!(message.contains("wrong.key"), "{message}");

    // The right key still works.
    let store = MfaStore::open(&state, &right, MfaPolicy::default()).unwrap();
    store
        .verify("alice", &code(&phone, 1_000_000_100), at(1_000_000_100))
        .unwrap();
}

#[test]
fn keys_are_read_as_raw_bytes_hex_or_base64() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let raw = key_file(dir.path(), "raw.key", 0x2a);
    MfaStore::open(&state, &raw, MfaPolicy::default()).unwrap();

    let hex = dir.path().join("hex.key");
    std::fs::write(&hex, format!("{}\n", "2a".repeat(32))).unwrap();
    std::fs::set_permissions(&hex, std::fs::Permissions::from_mode(0o600)).unwrap();
    MfaStore::open(&state, &KeySource::File(hex), MfaPolicy::default())
        .expect("the same key, written as hex");

    let b64 = dir.path().join("b64.key");
    std::fs::write(&b64, "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=").unwrap();
    std::fs::set_permissions(&b64, std::fs::Permissions::from_mode(0o600)).unwrap();
    MfaStore::open(&state, &KeySource::File(b64), MfaPolicy::default())
        .expect("the same key, written as base64");
}

#[test]
fn malformed_and_missing_keys_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.key");
    std::fs::write(&short, "c2hvcnQ=").unwrap();
    std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
    let error = KeySource::File(short).load_key().unwrap_err();
    assert!(matches!(error, KeyError::Malformed { .. }), "{error:?}");
    assert!(error.to_string().contains("32 bytes"), "{error}");
    assert!(
        !error.to_string().contains("c2hvcnQ"),
        "the key text is never shown"
    );

    let missing = KeySource::File(dir.path().join("missing.key")).load_key();
    assert!(matches!(missing, Err(KeyError::Read { .. })));
    let directory = KeySource::File(dir.path().to_path_buf()).load_key();
    assert!(matches!(directory, Err(KeyError::NotAFile { .. })));
}

#[test]
fn created_key_files_are_private_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.key");
    create_key_file(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let keys = KeySource::File(path.clone());
    assert!(keys.describe().contains("new.key"));
    MfaStore::open(&dir.path().join("state"), &keys, MfaPolicy::default()).unwrap();
    assert!(matches!(
        create_key_file(&path),
        Err(KeyError::Create { .. })
    ));
}
