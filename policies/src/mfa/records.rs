//! Where enrollments are kept: the store's one seam. [`MfaStore`] decides
//! (codes, spent steps, lockouts); an [`Enrollments`] keeps one record per
//! person and changes it atomically. Two homes: this PC's SQLite file
//! ([`super::SqliteEnrollments`]), and the team backend shared by every
//! deploy PC (implemented in the AWS team adapter, conditional writes on
//! S3), so one-time codes and lockouts hold across PCs.
//!
//! [`MfaStore`]: super::MfaStore

use super::MfaError;

/// One person's enrollment as kept. The secret is sealed (AES-256-GCM
/// under the master key, bound to the user), so a record carries nothing
/// secret in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentRecord {
    /// nonce || ciphertext || tag.
    pub sealed_secret: Vec<u8>,
    pub confirmed: bool,
    /// Unix seconds, as every time here.
    pub enrolled_at: i64,
    pub confirmed_at: Option<i64>,
    /// Codes of this TOTP step or earlier are spent.
    pub last_step: Option<i64>,
    pub last_used_at: Option<i64>,
    /// Wrong codes since the last accepted one.
    pub failures: u32,
    pub locked_until: Option<i64>,
}

/// What a decision does to the record it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    Keep,
    Put(EnrollmentRecord),
    Remove,
}

/// The enrollments of every person, each changed atomically.
pub trait Enrollments: Send + Sync {
    /// Where they are (a file, a backend URL), for messages.
    fn place(&self) -> String;

    /// Reads `user`'s record, lets `decide` choose what becomes of it and
    /// does that, atomically: when another writer (another process or
    /// PC) changed the record in between, nothing is written and `decide`
    /// is asked again on what is there now. So two checks of one code
    /// never both see it unspent.
    fn change(
        &self,
        user: &str,
        decide: &mut dyn FnMut(Option<&EnrollmentRecord>) -> Update,
    ) -> Result<(), MfaError>;

    /// `user`'s record as it is.
    fn read(&self, user: &str) -> Result<Option<EnrollmentRecord>, MfaError>;

    /// Everyone with a record, sorted.
    fn users(&self) -> Result<Vec<String>, MfaError>;

    /// The key check sealed when the store was first opened: `sealed` is
    /// kept if there is none yet (the first opener wins) and what stands
    /// is returned.
    fn key_check(&self, sealed: &[u8]) -> Result<Vec<u8>, MfaError>;
}
