//! TOTP second factor for operators and approvers (R9, J1, O11).
//!
//! [`MfaStore`] keeps one enrollment per person in
//! `<state-dir>/mfa.sqlite3` (mode 0600, directory 0700), or in the team
//! backend every deploy PC shares (any [`Enrollments`]), the shared secret
//! encrypted with AES-256-GCM under a [`MasterKey`] from a [`KeyProvider`].
//! Codes are RFC 6238 (SHA-1, 6 digits, 30 s steps, ±1 step of drift) and
//! each is accepted **once**: the last accepted time step is stored per
//! person and every check is one atomic change of the person's record (a
//! SQLite `IMMEDIATE` transaction, or a conditional write), so two
//! processes, or two PCs, cannot both accept the same code. Repeated wrong codes lock a
//! person out for a while; unconfirmed enrollments expire.
//!
//! Every refusal is a typed [`MfaError`]; [`MfaError::is_security_event`]
//! tells the caller which ones to audit and alert on (J6).

mod error;
mod key;
mod qr;
mod records;
mod sqlite;
mod store;
mod time;
mod totp;

use std::fmt;
use std::time::{Duration, SystemTime};

use zeroize::Zeroize;

pub use error::MfaError;
pub use key::{
    KEY_ENV_VAR, KEY_LEN, KeyError, KeyProvider, KeySource, MasterKey, WrappedKeyPlace,
    create_key_file,
};
pub use qr::{Background, QrError, terminal_qr};
pub use records::{EnrollmentRecord, Enrollments, Update};
pub use sqlite::{MFA_DB_FILE, SqliteEnrollments};
pub use store::{MfaStatus, MfaStore};
pub use totp::{DIGITS, ISSUER, SECRET_BYTES, SKEW_STEPS, STEP_SECONDS};

/// How strict the store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MfaPolicy {
    /// Wrong codes in a row that lock a person out (J1).
    pub max_failures: u32,
    /// How long a lockout lasts.
    pub lockout: Duration,
    /// How long an enrollment may stay unconfirmed before it expires (J1).
    pub enrollment_ttl: Duration,
}

impl Default for MfaPolicy {
    fn default() -> MfaPolicy {
        MfaPolicy {
            max_failures: 5,
            lockout: Duration::from_secs(15 * 60),
            // Enrolling is scanning a QR code and typing one code: minutes.
            enrollment_ttl: Duration::from_secs(60 * 60),
        }
    }
}

/// A new, unconfirmed enrollment: what the person puts into their
/// authenticator app. Both fields hold the secret, so `Debug` hides them
/// and they are wiped from memory on drop. Show them to the person
/// enrolling only.
pub struct Enrollment {
    pub user: String,
    /// `otpauth://totp/deployctl:<user>?secret=…&issuer=deployctl`.
    pub otpauth_uri: String,
    /// The secret for typing in by hand (RFC 4648 base32, no padding).
    pub secret_base32: String,
    /// Confirm before this, or enroll again.
    pub expires_at: SystemTime,
}

impl Enrollment {
    /// The URI as a QR code for the terminal.
    pub fn qr_code(&self, background: Background) -> Result<String, QrError> {
        terminal_qr(&self.otpauth_uri, background)
    }
}

impl fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enrollment")
            .field("user", &self.user)
            .field("otpauth_uri", &"<redacted>")
            .field("secret_base32", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Drop for Enrollment {
    fn drop(&mut self) {
        self.otpauth_uri.zeroize();
        self.secret_base32.zeroize();
    }
}

/// A code that was accepted (and is now spent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedStep {
    pub user: String,
    /// The TOTP time step of the code (Unix seconds / 30). Strictly
    /// increasing per person, so it can key the approval it authorizes.
    pub step: u64,
    pub verified_at: SystemTime,
}
