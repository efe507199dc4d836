//! The MFA store: SQLite in WAL mode with `synchronous=FULL`, like the run
//! journal, one `IMMEDIATE` transaction per check.
//!
//! Why `IMMEDIATE`: the check reads the last accepted step and the failure
//! count, then writes them. Taking the write lock at `BEGIN` makes that
//! read-modify-write atomic across connections and processes: a second
//! checker of the same code waits (busy timeout), then sees the step as
//! spent. Failures are committed before the error is returned, so a
//! crash right after a wrong code still counts it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use zeroize::Zeroizing;

use super::key::{KeyError, KeyProvider, MasterKey};
use super::time::{from_unix_seconds, seconds, unix_seconds};
use super::totp::{self, SECRET_BYTES};
use super::{Enrollment, MfaError, MfaPolicy, VerifiedStep};
use crate::names::{self, NameKind};

/// The store's file name inside the state directory.
pub const MFA_DB_FILE: &str = "mfa.sqlite3";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS enrollments (
    user TEXT PRIMARY KEY,
    -- nonce || AES-256-GCM ciphertext || tag; the AAD binds it to `user`.
    secret BLOB NOT NULL,
    confirmed INTEGER NOT NULL DEFAULT 0,
    enrolled_at INTEGER NOT NULL,
    confirmed_at INTEGER,
    -- Codes of this TOTP step or earlier are spent.
    last_step INTEGER,
    last_used_at INTEGER,
    failures INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER
);
";

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

/// One person's enrollment row.
struct Row {
    secret: Vec<u8>,
    confirmed: bool,
    enrolled_at: i64,
    last_step: Option<i64>,
    failures: u32,
    locked_until: Option<i64>,
}

fn read_row(tx: &Transaction<'_>, user: &str) -> Result<Option<Row>, MfaError> {
    Ok(tx
        .query_row(
            "SELECT secret, confirmed, enrolled_at, last_step, failures, locked_until
             FROM enrollments WHERE user = ?1",
            params![user],
            |row| {
                Ok(Row {
                    secret: row.get(0)?,
                    confirmed: row.get(1)?,
                    enrolled_at: row.get(2)?,
                    last_step: row.get(3)?,
                    failures: row.get(4)?,
                    locked_until: row.get(5)?,
                })
            },
        )
        .optional()?)
}

/// Enrollments (with encrypted secrets) and their spent steps, failure
/// counts and lockouts.
pub struct MfaStore {
    connection: Mutex<Connection>,
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
        secure_dir(state_dir)?;
        let path = state_dir.join(MFA_DB_FILE);
        create_private_file(&path)?;
        let connection = Connection::open(&path)?;
        connection.busy_timeout(std::time::Duration::from_secs(10))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a spent step or a counted failure is on disk before the
        // answer is given, so a crash cannot make a code usable twice.
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.execute_batch(SCHEMA)?;
        let store = MfaStore {
            connection: Mutex::new(connection),
            key,
            policy,
            path,
        };
        store.check_key(&keys.describe())?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn policy(&self) -> &MfaPolicy {
        &self.policy
    }

    fn with<T>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, MfaError>,
    ) -> Result<T, MfaError> {
        // A panic while holding the lock cannot leave SQLite half-written
        // (transactions roll back on drop), so a poisoned lock is usable.
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        work(&mut connection)
    }

    /// Seals the key check on first use; on later opens, proves the key is
    /// the one the store was written with.
    fn check_key(&self, key_origin: &str) -> Result<(), MfaError> {
        self.with(|connection| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let existing: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT value FROM meta WHERE name = 'key_check'",
                    [],
                    |row| row.get(0),
                )
                .optional()?;
            match existing {
                Some(sealed) => {
                    let opened = self.key.open(KEY_CHECK_AAD, &sealed);
                    if opened.as_deref().map(Vec::as_slice) != Some(KEY_CHECK_PLAINTEXT) {
                        return Err(MfaError::WrongKey {
                            path: self.path.clone(),
                            key: key_origin.to_string(),
                        });
                    }
                }
                None => {
                    let sealed = self.key.seal(KEY_CHECK_AAD, KEY_CHECK_PLAINTEXT)?;
                    tx.execute(
                        "INSERT INTO meta (name, value) VALUES ('key_check', ?1)",
                        params![sealed],
                    )?;
                }
            }
            tx.commit()?;
            Ok(())
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
        self.with(|connection| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(row) = read_row(&tx, user)? {
                if row.confirmed {
                    return Err(MfaError::AlreadyEnrolled {
                        user: user.to_string(),
                    });
                }
                // A lockout earned against the old secret stands: a
                // re-enrollment must not be a way around it.
                if let Some(until) = row.locked_until.filter(|until| *until > now) {
                    return Err(MfaError::LockedOut {
                        user: user.to_string(),
                        until: from_unix_seconds(until),
                        newly_locked: false,
                    });
                }
            }
            tx.execute(
                "INSERT OR REPLACE INTO enrollments
                    (user, secret, confirmed, enrolled_at, failures)
                 VALUES (?1, ?2, 0, ?3, 0)",
                params![user, sealed, now],
            )?;
            tx.commit()?;
            Ok(())
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
        self.with(|connection| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(row) = read_row(&tx, user)? else {
                return Err(MfaError::NotEnrolled {
                    user: user.to_string(),
                });
            };
            match (purpose, row.confirmed) {
                (Purpose::Confirm, true) => {
                    return Err(MfaError::AlreadyEnrolled {
                        user: user.to_string(),
                    });
                }
                (_, false) => {
                    let expires_at = self.expiry(row.enrolled_at);
                    if now >= expires_at {
                        // The secret was shown once and never proven to be
                        // in anyone's app: drop it, so it cannot be
                        // confirmed later by whoever else saw it.
                        tx.execute("DELETE FROM enrollments WHERE user = ?1", params![user])?;
                        tx.commit()?;
                        return Err(MfaError::EnrollmentExpired {
                            user: user.to_string(),
                            expired_at: from_unix_seconds(expires_at),
                        });
                    }
                    if purpose == Purpose::Verify {
                        return Err(MfaError::EnrollmentPending {
                            user: user.to_string(),
                        });
                    }
                }
                (Purpose::Verify, true) => {}
            }

            let mut failures = row.failures;
            match row.locked_until {
                Some(until) if until > now => {
                    // Attempts during a lockout neither count nor extend
                    // it: the lock already stops guessing.
                    return Err(MfaError::LockedOut {
                        user: user.to_string(),
                        until: from_unix_seconds(until),
                        newly_locked: false,
                    });
                }
                // The lockout has run out: a fresh start.
                Some(_) => failures = 0,
                None => {}
            }

            let secret = self
                .key
                .open(&secret_aad(user), &row.secret)
                .ok_or_else(|| MfaError::Undecryptable {
                    user: user.to_string(),
                })?;
            let generator = totp::build(&secret, user)?;
            let step = totp::matched_step(&generator, code, u64::try_from(now).unwrap_or(0));
            let spent = |step: u64| {
                row.last_step
                    .is_some_and(|last| i64::try_from(step).unwrap_or(i64::MAX) <= last)
            };

            match step {
                Some(step) if !spent(step) => {
                    tx.execute(
                        "UPDATE enrollments SET last_step = ?2, last_used_at = ?3, failures = 0,
                            locked_until = NULL, confirmed = 1,
                            confirmed_at = COALESCE(confirmed_at, ?3)
                         WHERE user = ?1",
                        params![user, i64::try_from(step).unwrap_or(i64::MAX), now],
                    )?;
                    tx.commit()?;
                    Ok(VerifiedStep {
                        user: user.to_string(),
                        step,
                        verified_at: at,
                    })
                }
                refused => {
                    failures = failures.saturating_add(1);
                    let locked_until = (failures >= self.policy.max_failures)
                        .then(|| now.saturating_add(seconds(self.policy.lockout)));
                    tx.execute(
                        "UPDATE enrollments SET failures = ?2, locked_until = ?3 WHERE user = ?1",
                        params![user, failures, locked_until],
                    )?;
                    tx.commit()?;
                    let remaining_attempts = self.policy.max_failures.saturating_sub(failures);
                    Err(match (locked_until, refused) {
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
                    })
                }
            }
        })
    }

    fn expiry(&self, enrolled_at: i64) -> i64 {
        enrolled_at.saturating_add(seconds(self.policy.enrollment_ttl))
    }

    /// Where `user` stands at `now`.
    pub fn status(&self, user: &str, now: SystemTime) -> Result<MfaStatus, MfaError> {
        check_user(user)?;
        let now = unix_seconds(now);
        self.with(|connection| {
            let tx = connection.transaction()?;
            let status = match read_row(&tx, user)? {
                None => MfaStatus::NotEnrolled,
                Some(row) if !row.confirmed => {
                    let expires_at = self.expiry(row.enrolled_at);
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
                Some(row) => {
                    let locked_until = row.locked_until.filter(|until| *until > now);
                    MfaStatus::Active {
                        failures: if row.locked_until.is_some() && locked_until.is_none() {
                            0
                        } else {
                            row.failures
                        },
                        locked_until: locked_until.map(from_unix_seconds),
                    }
                }
            };
            Ok(status)
        })
    }

    /// Every enrollment and where it stands at `now`, by user.
    pub fn list(&self, now: SystemTime) -> Result<Vec<(String, MfaStatus)>, MfaError> {
        let users: Vec<String> = self.with(|connection| {
            let mut statement = connection.prepare("SELECT user FROM enrollments ORDER BY user")?;
            let rows = statement.query_map([], |row| row.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })?;
        users
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
        self.with(|connection| {
            let changed = connection.execute(
                "UPDATE enrollments SET failures = 0, locked_until = NULL WHERE user = ?1",
                params![user],
            )?;
            Ok(changed > 0)
        })
    }

    /// Removes `user`'s enrollment (to re-enroll a lost phone, or when
    /// someone leaves). Returns whether there was one.
    pub fn remove(&self, user: &str) -> Result<bool, MfaError> {
        self.with(|connection| {
            let removed =
                connection.execute("DELETE FROM enrollments WHERE user = ?1", params![user])?;
            Ok(removed > 0)
        })
    }

    /// Deletes enrollments left unconfirmed past their expiry and returns
    /// whose they were (for the audit trail).
    pub fn purge_expired(&self, now: SystemTime) -> Result<Vec<String>, MfaError> {
        let cutoff = unix_seconds(now).saturating_sub(seconds(self.policy.enrollment_ttl));
        self.with(|connection| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let users = {
                let mut statement = tx.prepare(
                    "DELETE FROM enrollments WHERE confirmed = 0 AND enrolled_at <= ?1
                     RETURNING user",
                )?;
                let rows = statement.query_map(params![cutoff], |row| row.get(0))?;
                let mut users = rows.collect::<Result<Vec<String>, _>>()?;
                users.sort();
                users
            };
            tx.commit()?;
            Ok(users)
        })
    }
}

fn check_user(user: &str) -> Result<(), MfaError> {
    names::check(NameKind::User, user).map_err(MfaError::InvalidUser)
}

fn secure_dir(path: &Path) -> Result<(), MfaError> {
    let state_dir_error = |source| MfaError::StateDir {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(path).map_err(state_dir_error)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .map_err(state_dir_error)?;
    }
    Ok(())
}

/// Creates the database file 0600 before SQLite opens it, so it is never
/// briefly readable under a loose umask, and tightens an existing one.
/// (SQLite gives its `-wal` and `-shm` files the database file's mode.)
fn create_private_file(path: &Path) -> Result<(), MfaError> {
    let file_error = |source| MfaError::StateDir {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        options.open(path).map_err(file_error)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(file_error)?;
    }
    #[cfg(not(unix))]
    options.open(path).map_err(file_error)?;
    Ok(())
}
