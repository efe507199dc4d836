//! Enrollments in `<state-dir>/mfa.sqlite3`: SQLite in WAL mode with
//! `synchronous=FULL`, like the run journal, one `IMMEDIATE` transaction
//! per change.
//!
//! Why `IMMEDIATE`: a change reads the last accepted step and the failure
//! count, then writes them. Taking the write lock at `BEGIN` makes that
//! read-modify-write atomic across connections and processes: a second
//! checker of the same code waits (busy timeout), then sees the step as
//! spent. Failures are committed before the error is returned, so a
//! crash right after a wrong code still counts it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::MfaError;
use super::records::{EnrollmentRecord, Enrollments, Update};

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

/// This PC's enrollments.
pub struct SqliteEnrollments {
    connection: Mutex<Connection>,
    path: PathBuf,
}

impl SqliteEnrollments {
    /// Opens (creating if needed) `<state_dir>/mfa.sqlite3`. The directory
    /// is made 0700 and the file 0600.
    pub fn open(state_dir: &Path) -> Result<SqliteEnrollments, MfaError> {
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
        Ok(SqliteEnrollments {
            connection: Mutex::new(connection),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
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
}

fn read_row(tx: &Transaction<'_>, user: &str) -> Result<Option<EnrollmentRecord>, MfaError> {
    Ok(tx
        .query_row(
            "SELECT secret, confirmed, enrolled_at, confirmed_at, last_step, last_used_at,
                    failures, locked_until
             FROM enrollments WHERE user = ?1",
            params![user],
            |row| {
                Ok(EnrollmentRecord {
                    sealed_secret: row.get(0)?,
                    confirmed: row.get(1)?,
                    enrolled_at: row.get(2)?,
                    confirmed_at: row.get(3)?,
                    last_step: row.get(4)?,
                    last_used_at: row.get(5)?,
                    failures: row.get(6)?,
                    locked_until: row.get(7)?,
                })
            },
        )
        .optional()?)
}

impl Enrollments for SqliteEnrollments {
    fn place(&self) -> String {
        self.path.display().to_string()
    }

    fn change(
        &self,
        user: &str,
        decide: &mut dyn FnMut(Option<&EnrollmentRecord>) -> Update,
    ) -> Result<(), MfaError> {
        self.with(|connection| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let row = read_row(&tx, user)?;
            match decide(row.as_ref()) {
                Update::Keep => return Ok(()),
                Update::Remove => {
                    tx.execute("DELETE FROM enrollments WHERE user = ?1", params![user])?;
                }
                Update::Put(record) => {
                    tx.execute(
                        "INSERT OR REPLACE INTO enrollments
                            (user, secret, confirmed, enrolled_at, confirmed_at, last_step,
                             last_used_at, failures, locked_until)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                        params![
                            user,
                            record.sealed_secret,
                            record.confirmed,
                            record.enrolled_at,
                            record.confirmed_at,
                            record.last_step,
                            record.last_used_at,
                            record.failures,
                            record.locked_until
                        ],
                    )?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn read(&self, user: &str) -> Result<Option<EnrollmentRecord>, MfaError> {
        self.with(|connection| {
            let tx = connection.transaction()?;
            read_row(&tx, user)
        })
    }

    fn users(&self) -> Result<Vec<String>, MfaError> {
        self.with(|connection| {
            let mut statement = connection.prepare("SELECT user FROM enrollments ORDER BY user")?;
            let rows = statement.query_map([], |row| row.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
    }

    fn key_check(&self, sealed: &[u8]) -> Result<Vec<u8>, MfaError> {
        self.with(|connection| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let existing: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT value FROM meta WHERE name = 'key_check'",
                    [],
                    |row| row.get(0),
                )
                .optional()?;
            let standing = match existing {
                Some(standing) => standing,
                None => {
                    tx.execute(
                        "INSERT INTO meta (name, value) VALUES ('key_check', ?1)",
                        params![sealed],
                    )?;
                    sealed.to_vec()
                }
            };
            tx.commit()?;
            Ok(standing)
        })
    }
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
