//! What can go wrong with a one-time code, typed so that the caller can
//! audit and alert on each security event (J6) without parsing messages.

use std::path::PathBuf;
use std::time::SystemTime;

use super::key::KeyError;
use super::time::Timestamp;

/// "1 attempt left", "3 attempts left".
fn attempts_left(remaining: u32) -> String {
    format!(
        "{remaining} attempt{} left",
        if remaining == 1 { "" } else { "s" }
    )
}

#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    // Security events: a person typed something wrong, or someone is
    // guessing. `is_security_event` is true for these.
    #[error("wrong MFA code for `{user}` ({} before lockout)", attempts_left(*remaining_attempts))]
    InvalidCode {
        user: String,
        remaining_attempts: u32,
    },
    #[error(
        "this MFA code for `{user}` was already used; wait for the next code ({} before lockout)",
        attempts_left(*remaining_attempts)
    )]
    Replayed {
        user: String,
        /// The TOTP time step the code belongs to.
        step: u64,
        remaining_attempts: u32,
    },
    #[error("`{user}` is locked out of MFA until {} after repeated wrong codes", Timestamp(*until))]
    LockedOut {
        user: String,
        until: SystemTime,
        /// This attempt caused the lockout (notify once, on this one).
        newly_locked: bool,
    },
    #[error(
        "the MFA secret of `{user}` cannot be decrypted: the store was written with another key, or the record was altered"
    )]
    Undecryptable { user: String },
    #[error(
        "the MFA store {} was encrypted with a different key than the one from {key}; use the original key",
        path.display()
    )]
    WrongKey { path: PathBuf, key: String },

    // Enrollment states.
    #[error("`{user}` has no MFA enrollment; enroll first")]
    NotEnrolled { user: String },
    #[error("the MFA enrollment of `{user}` is not confirmed yet; confirm it with a code first")]
    EnrollmentPending { user: String },
    #[error(
        "the MFA enrollment of `{user}` expired unconfirmed at {}; enroll again",
        Timestamp(*expired_at)
    )]
    EnrollmentExpired {
        user: String,
        expired_at: SystemTime,
    },
    #[error(
        "`{user}` is already enrolled in MFA; to enroll again, an MFA administrator removes the enrollment first (`deployctl mfa remove {user}`)"
    )]
    AlreadyEnrolled { user: String },
    #[error("invalid user name for MFA: {0}")]
    InvalidUser(String),

    // Plumbing.
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot prepare the MFA state directory {}: {source}", path.display())]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("MFA store database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("TOTP setup failed: {0}")]
    Totp(String),
    #[error("corrupt MFA store record: {0}")]
    Corrupt(String),
    /// The shared store (the team backend) could not be read or written.
    #[error("the MFA store in the team backend: {0}")]
    Backend(String),
}

impl MfaError {
    /// Whether the store could not do its work (its key, directory or
    /// database), as opposed to refusing what it was given: the CLI exits
    /// 1 for these and 2 for a refusal (a wrong code, an unknown user),
    /// whichever command met them.
    pub fn is_plumbing(&self) -> bool {
        matches!(
            self,
            MfaError::Key(_)
                | MfaError::StateDir { .. }
                | MfaError::Sqlite(_)
                | MfaError::Totp(_)
                | MfaError::Corrupt(_)
                | MfaError::Backend(_)
        )
    }

    /// Whether this is a security event to audit and alert on (J6): a
    /// wrong or replayed code, a lockout, or a secret that will not
    /// decrypt.
    pub fn is_security_event(&self) -> bool {
        matches!(
            self,
            MfaError::InvalidCode { .. }
                | MfaError::Replayed { .. }
                | MfaError::LockedOut { .. }
                | MfaError::Undecryptable { .. }
                | MfaError::WrongKey { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::MfaError;

    #[test]
    fn attempts_left_are_counted_in_words() {
        let wrong = |remaining_attempts| {
            MfaError::InvalidCode {
                user: "alice".into(),
                remaining_attempts,
            }
            .to_string()
        };
        assert!(
            wrong(1).contains("(1 attempt left before lockout)"),
            "{}",
            wrong(1)
        );
        assert!(
            wrong(3).contains("(3 attempts left before lockout)"),
            "{}",
            wrong(3)
        );
    }
}
