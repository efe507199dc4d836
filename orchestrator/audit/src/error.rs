//! The crate's one error type.

use std::path::{Path, PathBuf};

use crate::sink::SinkError;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file of the trail does not read as this crate wrote it. Appending
    /// to it is refused: `deployctl audit verify` tells what is wrong.
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("signing key {path}: {message}")]
    Key { path: PathBuf, message: String },
    /// An earlier write or fsync failed, so what is on disk is unknown.
    /// Reopening re-reads the log and repairs a torn tail.
    #[error("the audit log stopped accepting records after a write failure ({0}); reopen it")]
    Poisoned(String),
    #[error("the audit log's writer thread has stopped")]
    Closed,
    #[error("shipping the audit trail to {sink} failed: {source}")]
    Ship {
        sink: String,
        #[source]
        source: SinkError,
    },
    #[error("no sink is configured for this audit log")]
    NoSink,
    #[error("invalid time `{0}`: expected RFC 3339 such as 2026-11-24T09:15:23Z, or a date")]
    Time(String),
    #[error("cannot encode an audit record: {0}")]
    Encode(#[from] serde_json::Error),
}

impl AuditError {
    /// The same failure for another waiter of the same group commit
    /// (`io::Error` cannot be cloned, so it is carried as text).
    pub(crate) fn for_another_waiter(&self) -> AuditError {
        match self {
            AuditError::Corrupt { path, message } => AuditError::Corrupt {
                path: path.clone(),
                message: message.clone(),
            },
            AuditError::Poisoned(why) => AuditError::Poisoned(why.clone()),
            AuditError::Closed => AuditError::Closed,
            other => AuditError::Poisoned(other.to_string()),
        }
    }
}

/// `map_err` helper: `.map_err(io("read", &path))`.
pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> AuditError {
    let path = path.to_path_buf();
    move |source| AuditError::Io {
        action,
        path,
        source,
    }
}
