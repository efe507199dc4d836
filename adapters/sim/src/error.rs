//! Errors of the simulator's own storage (a sim world on disk).

use std::io;
use std::path::PathBuf;

use deployctl_adapter::AdapterError;

/// A sim world could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("sim world {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("sim world file {} is not a simulated target's state: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("sim world file {} has format {found}; this deployctl reads format {expected}", path.display())]
    Format {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
}

impl SimError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> SimError {
        let path = path.into();
        move |source| SimError::Io { path, source }
    }
}

/// The world is the simulated platform: failing to reach it is the
/// platform being unavailable (retry), an unreadable world is a request
/// it can never answer (do not).
impl From<SimError> for AdapterError {
    fn from(error: SimError) -> AdapterError {
        match error {
            SimError::Io { .. } => AdapterError::Unavailable {
                message: error.to_string(),
                request_id: None,
            },
            SimError::Corrupt { .. } | SimError::Format { .. } => AdapterError::Rejected {
                message: error.to_string(),
                request_id: None,
            },
        }
    }
}
