//! The MFA store: the decisions (codes, spent steps, lockouts,
//! enrollment expiry) over an [`Enrollments`], which keeps the records and
//! changes each atomically (SQLite on this PC, or the team backend).
//!
//! Every check is one [`Enrollments::change`]: decided on the record just
//! read and written only if nobody changed it since, so a second checker
//! of the same code (another process, another PC) sees the step as spent.
//! A wrong code's count is written before the error is returned, so a
//! crash right after it still counts it.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use zeroize::Zeroizing;

use super::key::{KeyError, KeyProvider, MasterKey};
use super::records::{EnrollmentRecord, Enrollments, Update};
use super::sqlite::SqliteEnrollments;
use super::time::{from_unix_seconds, seconds, unix_seconds};
use super::totp::{self, SECRET_BYTES};
use super::{Enrollment, MfaError, MfaPolicy, VerifiedStep};
use crate::names::{self, NameKind};

/// A fixed plaintext sealed once per store: opening it at start-up tells a
/// wrong key apart from a damaged record, before anyone types a code.
const KEY_CHECK_PLAINTEXT: &[u8] = b"deployctl mfa key check v1";
const KEY_CHECK_AAD: &[u8] = b"deployctl-mfa/v1/key-check";

fn secret_aad(user: &str) -> Vec<u8> {
    let mut aad = b"deployctl-mfa/v1/secret\0".to_vec();
    aad.extend_from_slice(user.as_bytes());
    aad
}

/// Where a person stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MfaStatus {
    NotEnrolled,
    /// Enrolled, waiting for the first code.
    Pending {
        expires_at: SystemTime,
    },
    /// Expired unconfirmed; enroll again.
    Expired {
        expired_at: SystemTime,
    },
    Active {
        /// Wrong codes since the last accepted one.
        failures: u32,
        locked_until: Option<SystemTime>,
    },
}

/// Enrollments (with encrypted secrets) and their spent steps, failure
/// counts and lockouts.
pub struct MfaStore {
    enrollments: Box<dyn Enrollments>,
    key: MasterKey,
    policy: MfaPolicy,
    path: PathBuf,
}

impl std::fmt::Debug for MfaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaStore")
            .field("path", &self.path)
            .field("key", &self.key)
            .field("policy", &self.policy)
            .finish()
    }
}

/// Whether a check is the first code of an enrollment or a later one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Confirm,
    Verify,
}

impl MfaStore {
    /// Opens (creating if needed) `<state_dir>/mfa.sqlite3`. The directory
    /// is made 0700 and the file 0600. Fails with [`MfaError::WrongKey`]
    /// when the store was created with another key.
    pub fn open(
        state_dir: &Path,
        keys: &dyn KeyProvider,
        policy: MfaPolicy,
    ) -> Result<MfaStore, MfaError> {
        let key = keys.load_key()?;
        let sqlite = SqliteEnrollments::open(state_dir)?;
        let path = sqlite.path().to_path_buf();
        MfaStore::build(Box::new(sqlite), path, key, &keys.describe(), policy)
    }

    /// Opens the store kept in `enrollments` (the team backend's, shared by
    /// every deploy PC). Fails with [`MfaError::WrongKey`] when it was
    /// created with another key.
    pub fn with_enrollments(
        enrollments: Box<dyn Enrollments>,
        keys: &dyn KeyProvider,
        policy: MfaPolicy,
    ) -> Result<MfaStore, MfaError> {
        let key = keys.load_key()?;
        let path = PathBuf::from(enrollments.place());
        MfaStore::build(enrollments, path, key, &keys.describe(), policy)
    }

    fn build(
        enrollments: Box<dyn Enrollments>,
        path: PathBuf,
        key: MasterKey,
        key_origin: &str,
        policy: MfaPolicy,
    ) -> Result<MfaStore, MfaError> {
        let store = MfaStore {
            enrollments,
            key,
            policy,
            path,
        };
        store.check_key(key_origin)?;
        Ok(store)
    }

    /// Where the enrollments are: the SQLite file, or the backend's URL.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn policy(&self) -> &MfaPolicy {
        &self.policy
    }

    /// Seals the key check on first use; on later opens, proves the key is
    /// the one the store was written with.
    fn check_key(&self, key_origin: &str) -> Result<(), MfaError> {
        let sealed = self.key.seal(KEY_CHECK_AAD, KEY_CHECK_PLAINTEXT)?;
        let standing = self.enrollments.key_check(&sealed)?;
        let opened = self.key.open(KEY_CHECK_AAD, &standing);
        if opened.as_deref().map(Vec::as_slice) != Some(KEY_CHECK_PLAINTEXT) {
            return Err(MfaError::WrongKey {
                path: self.path.clone(),
                key: key_origin.to_string(),
            });
        }
        Ok(())
    }

    /// Runs `decide` on `user`'s record as one atomic change, and returns
    /// what the last decision (the one whose update stood) answered.
    fn change<T>(
        &self,
        user: &str,
        mut decide: impl FnMut(Option<&EnrollmentRecord>) -> (Update, Result<T, MfaError>),
    ) -> Result<T, MfaError> {
        let mut answer = None;
        self.enrollments.change(user, &mut |record| {
            let (update, decided) = decide(record);
            answer = Some(decided);
            update
        })?;
        answer.unwrap_or_else(|| {
            Err(MfaError::Corrupt(format!(
                "the enrollments at {} made no decision for `{user}`",
                self.path.display()
            )))
        })
    }

    /// Starts (or restarts) `user`'s enrollment with a fresh 160-bit secret.
    /// It stays pending until [`MfaStore::confirm`] sees a valid code, and
    /// expires after the policy's `enrollment_ttl`. A confirmed enrollment
    /// is never replaced here: [`MfaStore::remove`] it first (an act the
    /// caller audits).
    pub fn enroll(&self, user: &str, now: SystemTime) -> Result<Enrollment, MfaError> {
        check_user(user)?;
        let mut secret = Zeroizing::new([0u8; SECRET_BYTES]);
        aws_lc_rs::rand::fill(secret.as_mut()).map_err(|_| KeyError::Random)?;
        let generator = totp::build(secret.as_ref(), user)?;
        let enrollment = Enrollment {
            user: user.to_string(),
            otpauth_uri: generator
                .to_url()
                .map_err(|error| MfaError::Totp(error.to_string()))?,
            secret_base32: generator.secret().to_base32(),
            expires_at: from_unix_seconds(
                unix_seconds(now).saturating_add(seconds(self.policy.enrollment_ttl)),
            ),
        };
        let sealed = self.key.seal(&secret_aad(user), secret.as_ref())?;
        let now = unix_seconds(now);
        self.change(user, |record| {
            if let Some(record) = record {
                if record.confirmed {
                    let refused = MfaError::AlreadyEnrolled {
                        user: user.to_string(),
                    };
                    return (Update::Keep, Err(refused));
                }
                // A lockout earned against the old secret stands: a
                // re-enrollment must not be a way around it.
                if let Some(until) = record.locked_until.filter(|until| *until > now) {
                    let refused = MfaError::LockedOut {
                        user: user.to_string(),
                        until: from_unix_seconds(until),
                        newly_locked: false,
                    };
                    return (Update::Keep, Err(refused));
                }
            }
            let fresh = EnrollmentRecord {
                sealed_secret: sealed.clone(),
                confirmed: false,
                enrolled_at: now,
                confirmed_at: None,
                last_step: None,
                last_used_at: None,
                failures: 0,
                locked_until: None,
            };
            (Update::Put(fresh), Ok(()))
        })?;
        Ok(enrollment)
    }

    /// Confirms a pending enrollment with its first code. The code is spent
    /// like any other; wrong codes count towards a lockout.
    pub fn confirm(
        &self,
        user: &str,
        code: &str,
        now: SystemTime,
    ) -> Result<VerifiedStep, MfaError> {
        self.check(user, code, now, Purpose::Confirm)
    }

    /// Checks a one-time code of a confirmed enrollment and spends it.
    ///
    /// Accepted: a valid code of the current step or one step either side,
    /// newer than the last accepted one. Refused, each as its own error: a
    /// wrong code, a code already used (or older than one used), any code
    /// while locked out. The `max_failures`-th refusal in a row locks the
    /// person out for the policy's `lockout`; an accepted code resets the
    /// count.
    pub fn verify(
        &self,
        user: &str,
        code: &str,
        now: SystemTime,
    ) -> Result<VerifiedStep, MfaError> {
        self.check(user, code, now, Purpose::Verify)
    }

    fn check(
        &self,
        user: &str,
        code: &str,
        at: SystemTime,
        purpose: Purpose,
    ) -> Result<VerifiedStep, MfaError> {
        check_user(user)?;
        let now = unix_seconds(at);
        self.change(user, |record| {
            self.decide_check(user, record, code, at, now, purpose)
        })
    }

    /// One check decided on `record` as read: what to write, what to answer.
    fn decide_check(
        &self,
        user: &str,
        record: Option<&EnrollmentRecord>,
        code: &str,
        at: SystemTime,
        now: i64,
        purpose: Purpose,
    ) -> (Update, Result<VerifiedStep, MfaError>) {
        let Some(record) = record else {
            let refused = MfaError::NotEnrolled {
                user: user.to_string(),
            };
            return (Update::Keep, Err(refused));
        };
        match (purpose, record.confirmed) {
            (Purpose::Confirm, true) => {
                let refused = MfaError::AlreadyEnrolled {
                    user: user.to_string(),
                };
                return (Update::Keep, Err(refused));
            }
            (_, false) => {
                let expires_at = self.expiry(record.enrolled_at);
                if now >= expires_at {
                    // The secret was shown once and never proven to be in
                    // anyone's app: drop it, so it cannot be confirmed
                    // later by whoever else saw it.
                    let refused = MfaError::EnrollmentExpired {
                        user: user.to_string(),
                        expired_at: from_unix_seconds(expires_at),
                    };
                    return (Update::Remove, Err(refused));
                }
                if purpose == Purpose::Verify {
                    let refused = MfaError::EnrollmentPending {
                        user: user.to_string(),
                    };
                    return (Update::Keep, Err(refused));
                }
            }
            (Purpose::Verify, true) => {}
        }

        let mut failures = record.failures;
        match record.locked_until {
            Some(until) if until > now => {
                // Attempts during a lockout neither count nor extend it:
                // the lock already stops guessing.
                let refused = MfaError::LockedOut {
                    user: user.to_string(),
                    until: from_unix_seconds(until),
                    newly_locked: false,
                };
                return (Update::Keep, Err(refused));
            }
            // The lockout has run out: a fresh start.
            Some(_) => failures = 0,
            None => {}
        }

        let Some(secret) = self.key.open(&secret_aad(user), &record.sealed_secret) else {
            let refused = MfaError::Undecryptable {
                user: user.to_string(),
            };
            return (Update::Keep, Err(refused));
        };
        let generator = match totp::build(&secret, user) {
            Ok(generator) => generator,
            Err(error) => return (Update::Keep, Err(error)),
        };
        let step = totp::matched_step(&generator, code, u64::try_from(now).unwrap_or(0));
        let spent = |step: u64| {
            record
                .last_step
                .is_some_and(|last| i64::try_from(step).unwrap_or(i64::MAX) <= last)
        };

        match step {
            Some(step) if !spent(step) => {
                let accepted = EnrollmentRecord {
                    last_step: Some(i64::try_from(step).unwrap_or(i64::MAX)),
                    last_used_at: Some(now),
                    failures: 0,
                    locked_until: None,
                    confirmed: true,
                    confirmed_at: record.confirmed_at.or(Some(now)),
                    ..record.clone()
                };
                let verified = VerifiedStep {
                    user: user.to_string(),
                    step,
                    verified_at: at,
                };
                (Update::Put(accepted), Ok(verified))
            }
            refused => {
                failures = failures.saturating_add(1);
                let locked_until = (failures >= self.policy.max_failures)
                    .then(|| now.saturating_add(seconds(self.policy.lockout)));
                let counted = EnrollmentRecord {
                    failures,
                    locked_until,
                    ..record.clone()
                };
                let remaining_attempts = self.policy.max_failures.saturating_sub(failures);
                let error = match (locked_until, refused) {
                    (Some(until), _) => MfaError::LockedOut {
                        user: user.to_string(),
                        until: from_unix_seconds(until),
                        newly_locked: true,
                    },
                    (None, Some(step)) => MfaError::Replayed {
                        user: user.to_string(),
                        step,
                        remaining_attempts,
                    },
                    (None, None) => MfaError::InvalidCode {
                        user: user.to_string(),
                        remaining_attempts,
                    },
                };
                (Update::Put(counted), Err(error))
            }
        }
    }

    fn expiry(&self, enrolled_at: i64) -> i64 {
        enrolled_at.saturating_add(seconds(self.policy.enrollment_ttl))
    }

    /// Where `user` stands at `now`.
    pub fn status(&self, user: &str, now: SystemTime) -> Result<MfaStatus, MfaError> {
        check_user(user)?;
        let now = unix_seconds(now);
        let status = match self.enrollments.read(user)? {
            None => MfaStatus::NotEnrolled,
            Some(record) if !record.confirmed => {
                let expires_at = self.expiry(record.enrolled_at);
                if now >= expires_at {
                    MfaStatus::Expired {
                        expired_at: from_unix_seconds(expires_at),
                    }
                } else {
                    MfaStatus::Pending {
                        expires_at: from_unix_seconds(expires_at),
                    }
                }
            }
            Some(record) => {
                let locked_until = record.locked_until.filter(|until| *until > now);
                MfaStatus::Active {
                    failures: if record.locked_until.is_some() && locked_until.is_none() {
                        0
                    } else {
                        record.failures
                    },
                    locked_until: locked_until.map(from_unix_seconds),
                }
            }
        };
        Ok(status)
    }

    /// Every enrollment and where it stands at `now`, by user.
    pub fn list(&self, now: SystemTime) -> Result<Vec<(String, MfaStatus)>, MfaError> {
        self.enrollments
            .users()?
            .into_iter()
            .map(|user| {
                let status = self.status(&user, now)?;
                Ok((user, status))
            })
            .collect()
    }

    /// Lifts `user`'s lockout and forgets their wrong codes (an
    /// administrator who checked it was them). Returns whether they were
    /// enrolled.
    pub fn unlock(&self, user: &str) -> Result<bool, MfaError> {
        check_user(user)?;
        self.change(user, |record| match record {
            Some(record) => {
                let unlocked = EnrollmentRecord {
                    failures: 0,
                    locked_until: None,
                    ..record.clone()
                };
                (Update::Put(unlocked), Ok(true))
            }
            None => (Update::Keep, Ok(false)),
        })
    }

    /// Removes `user`'s enrollment (to re-enroll a lost phone, or when
    /// someone leaves). Returns whether there was one.
    pub fn remove(&self, user: &str) -> Result<bool, MfaError> {
        self.change(user, |record| match record {
            Some(_) => (Update::Remove, Ok(true)),
            None => (Update::Keep, Ok(false)),
        })
    }

    /// Deletes enrollments left unconfirmed past their expiry and returns
    /// whose they were (for the audit trail).
    pub fn purge_expired(&self, now: SystemTime) -> Result<Vec<String>, MfaError> {
        let cutoff = unix_seconds(now).saturating_sub(seconds(self.policy.enrollment_ttl));
        let mut purged = Vec::new();
        for user in self.enrollments.users()? {
            let expired = self.change(&user, |record| match record {
                Some(record) if !record.confirmed && record.enrolled_at <= cutoff => {
                    (Update::Remove, Ok(true))
                }
                _ => (Update::Keep, Ok(false)),
            })?;
            if expired {
                purged.push(user);
            }
        }
        Ok(purged)
    }
}

fn check_user(user: &str) -> Result<(), MfaError> {
    names::check(NameKind::User, user).map_err(MfaError::InvalidUser)
}
