//! kube errors → [`AdapterError`], classified once: the engine's retry
//! policy reads only the class.

use deployctl_adapter::AdapterError;

/// Maps a failed API call (`what`: the call and object, for the message).
pub(crate) fn map_kube_error(error: kube::Error, what: &str) -> AdapterError {
    match error {
        kube::Error::Api(status) => {
            let message = format!("{what}: {} ({})", status.message, status.reason);
            match status.code {
                404 => AdapterError::NotFound { what: message },
                // A stale resourceVersion, or a server-side apply conflict:
                // the engine re-reads and the another-writer rule decides.
                409 => AdapterError::Conflict {
                    message,
                    request_id: None,
                },
                429 => AdapterError::Throttled {
                    message,
                    request_id: None,
                    retry_after: None,
                },
                500..=599 => AdapterError::Unavailable {
                    message,
                    request_id: None,
                },
                _ => AdapterError::Rejected {
                    message,
                    request_id: None,
                },
            }
        }
        // Everything else is the connection or the transport: no answer
        // we can trust, so the same call is retried.
        other => AdapterError::Timeout {
            message: format!("{what}: {other}"),
        },
    }
}

pub(crate) fn rejected(message: impl Into<String>) -> AdapterError {
    AdapterError::Rejected {
        message: message.into(),
        request_id: None,
    }
}

/// Whether `error` is the API server's 404 for the object asked for.
pub(crate) fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}
