//! The TOTP parameters and the two operations the store needs from
//! totp-rs: make an enrollment URI, and find which time step a code
//! belongs to. totp-rs compares codes in constant time; remembering which
//! steps were spent (RFC 6238 §5.2: a code is accepted once) is the
//! store's job, because the library deliberately does not do it.

use totp_rs::{Algorithm, Builder, Totp};

use super::MfaError;

/// RFC 6238 defaults, which every authenticator app understands.
pub const DIGITS: u8 = 6;
pub const STEP_SECONDS: u64 = 30;
/// Codes from the previous and the next step are accepted too, for clock
/// drift between the phone and this machine.
pub const SKEW_STEPS: u16 = 1;
/// 160 bits, the size RFC 4226 §4 recommends.
pub const SECRET_BYTES: usize = 20;
/// Shown by authenticator apps next to the account name.
pub const ISSUER: &str = "deployctl";

pub(crate) fn build(secret: &[u8], user: &str) -> Result<Totp, MfaError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_skew(SKEW_STEPS)
        .with_step_duration(STEP_SECONDS)
        .with_secret(secret.to_vec())
        .with_account_name(user)
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(|error| MfaError::Totp(error.to_string()))
}

/// The time step `code` belongs to, if it is valid at `now` (Unix seconds)
/// within the skew. Spaces are ignored (apps show `123 456`).
pub(crate) fn matched_step(totp: &Totp, code: &str, now: u64) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    totp.check(&code, now)
}
