//! The policy crate from the outside: TOTP against RFC 6238, one-time use,
//! lockout, enrollment expiry, encryption at rest, key handling and the
//! four-eyes rule. One binary; time is injected, never waited for.

mod approval;
mod keys;
mod mfa;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deployctl_policy::mfa::{KeySource, MfaPolicy, MfaStore};
use totp_rs::{Algorithm, Builder, Secret, Totp};

/// A Unix time in seconds as a `SystemTime`.
pub fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

/// Writes a 0600 key file in `dir` and returns its source.
pub fn key_file(dir: &Path, name: &str, byte: u8) -> KeySource {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, [byte; 32]).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    KeySource::File(path)
}

/// A store in a fresh temporary state directory.
pub fn store(dir: &Path) -> MfaStore {
    let keys = key_file(dir, "mfa.key", 7);
    MfaStore::open(&dir.join("state"), &keys, MfaPolicy::default()).unwrap()
}

/// The authenticator app's side: codes from an enrollment's secret.
pub fn phone(secret_base32: &str) -> Totp {
    let secret = Secret::try_from_base32(secret_base32).unwrap();
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_secret(secret.as_bytes().to_vec())
        .build()
        .unwrap()
}

/// The code a phone shows at `seconds`.
pub fn code(phone: &Totp, seconds: u64) -> String {
    phone.generate(seconds).to_string()
}
