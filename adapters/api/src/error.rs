//! Adapter errors, classified once so retries are decided in one place.

use std::time::Duration;

/// What went wrong in a call to a target. Adapters map their SDK's errors
/// onto these; the engine's retry policy looks only at [`AdapterError::class`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdapterError {
    /// The platform asked us to slow down (HTTP 429, `ThrottlingException`).
    #[error("throttled: {message}")]
    Throttled {
        message: String,
        request_id: Option<String>,
        retry_after: Option<Duration>,
    },
    /// The platform failed on its side (HTTP 5xx, `ServiceUnavailable`).
    #[error("service unavailable: {message}")]
    Unavailable {
        message: String,
        request_id: Option<String>,
    },
    /// No answer in time, or the connection broke mid-call.
    #[error("timed out or disconnected: {message}")]
    Timeout { message: String },
    /// Someone else changed the resource since we read it (stale
    /// RevisionId, ETag mismatch, resourceVersion conflict): re-observe and retry.
    #[error("conflict: {message}")]
    Conflict {
        message: String,
        request_id: Option<String>,
    },
    /// Something the action needs does not exist (a version, an alias).
    #[error("not found: {what}")]
    NotFound { what: String },
    /// The platform refused the request as invalid or forbidden; retrying
    /// the same call cannot help.
    #[error("rejected: {message}")]
    Rejected {
        message: String,
        request_id: Option<String>,
    },
    /// The adapter cannot do this at all (declared, not discovered at 3 a.m.).
    #[error("unsupported: {what}")]
    Unsupported { what: String },
}

/// How the engine should treat an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Retry the same call after a (jittered) delay.
    Transient,
    /// Re-observe the target, then retry: our view of it is stale.
    Stale,
    /// Do not retry: fail the step (and roll back).
    Permanent,
}

impl AdapterError {
    /// A `setHeaderRoute` asked of a target (`what`, as its messages name
    /// it) that cannot tell requests apart (validation and preflight's
    /// capabilities refuse it before a run; this is the last line).
    pub fn no_header_routes(what: impl std::fmt::Display) -> AdapterError {
        AdapterError::Unsupported {
            what: format!(
                "{what} cannot route requests by header (`setHeaderRoute`); only a Kubernetes target with an HTTPRoute can"
            ),
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            AdapterError::Throttled { .. }
            | AdapterError::Unavailable { .. }
            | AdapterError::Timeout { .. } => ErrorClass::Transient,
            AdapterError::Conflict { .. } => ErrorClass::Stale,
            AdapterError::NotFound { .. }
            | AdapterError::Rejected { .. }
            | AdapterError::Unsupported { .. } => ErrorClass::Permanent,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.class() != ErrorClass::Permanent
    }

    /// The platform's request ID, for correlating with CloudTrail (S7).
    pub fn request_id(&self) -> Option<&str> {
        match self {
            AdapterError::Throttled { request_id, .. }
            | AdapterError::Unavailable { request_id, .. }
            | AdapterError::Conflict { request_id, .. }
            | AdapterError::Rejected { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// `self` carrying `id`, the platform's request ID for the call that
    /// failed (or whose answer showed the failure), so it reaches the
    /// journal and the audit trail (S7). A request ID already carried is
    /// kept: it is the more specific one. Variants with no place for one
    /// carry it in their text, `… (request ID)`, so it is never lost.
    pub fn with_request_id(self, id: Option<impl AsRef<str>>) -> AdapterError {
        let Some(id) = id
            .map(|id| id.as_ref().to_owned())
            .filter(|id| !id.is_empty())
        else {
            return self;
        };
        let fill = |slot: Option<String>| slot.or(Some(id.clone()));
        match self {
            AdapterError::Throttled {
                message,
                request_id,
                retry_after,
            } => AdapterError::Throttled {
                message,
                request_id: fill(request_id),
                retry_after,
            },
            AdapterError::Unavailable {
                message,
                request_id,
            } => AdapterError::Unavailable {
                message,
                request_id: fill(request_id),
            },
            AdapterError::Conflict {
                message,
                request_id,
            } => AdapterError::Conflict {
                message,
                request_id: fill(request_id),
            },
            AdapterError::Rejected {
                message,
                request_id,
            } => AdapterError::Rejected {
                message,
                request_id: fill(request_id),
            },
            AdapterError::NotFound { what } => AdapterError::NotFound {
                what: format!("{what} (request {id})"),
            },
            AdapterError::Timeout { message } => AdapterError::Timeout {
                message: format!("{message} (request {id})"),
            },
            AdapterError::Unsupported { what } => AdapterError::Unsupported {
                what: format!("{what} (request {id})"),
            },
        }
    }

    /// A delay the platform asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AdapterError::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_server_errors_and_timeouts_are_retried() {
        let transient = [
            AdapterError::Throttled {
                message: "slow down".into(),
                request_id: None,
                retry_after: None,
            },
            AdapterError::Unavailable {
                message: "503".into(),
                request_id: Some("r-1".into()),
            },
            AdapterError::Timeout {
                message: "read timed out".into(),
            },
        ];
        for error in transient {
            assert_eq!(error.class(), ErrorClass::Transient, "{error}");
            assert!(error.is_retryable());
        }
    }

    #[test]
    fn conflicts_are_retried_after_a_fresh_read() {
        let error = AdapterError::Conflict {
            message: "stale RevisionId".into(),
            request_id: None,
        };
        assert_eq!(error.class(), ErrorClass::Stale);
        assert!(error.is_retryable());
    }

    #[test]
    fn invalid_requests_are_never_retried() {
        for error in [
            AdapterError::Rejected {
                message: "weight must be < 1".into(),
                request_id: Some("r-2".into()),
            },
            AdapterError::NotFound {
                what: "version 9".into(),
            },
            AdapterError::Unsupported {
                what: "waves".into(),
            },
        ] {
            assert_eq!(error.class(), ErrorClass::Permanent, "{error}");
            assert!(!error.is_retryable());
        }
    }

    #[test]
    fn a_request_id_is_attached_once_and_never_replaces_one() {
        let rejected = AdapterError::Rejected {
            message: "changed".into(),
            request_id: None,
        };
        let attached = rejected.clone().with_request_id(Some("req-1"));
        assert_eq!(attached.request_id(), Some("req-1"));
        assert_eq!(
            attached.to_string(),
            "rejected: changed",
            "the text is unchanged"
        );
        assert_eq!(
            attached.with_request_id(Some("req-2")).request_id(),
            Some("req-1"),
            "the first, more specific ID stays"
        );
        assert_eq!(rejected.clone().with_request_id(None::<&str>), rejected);
        assert_eq!(rejected.clone().with_request_id(Some("")), rejected);
        let throttled = AdapterError::Throttled {
            message: "slow down".into(),
            request_id: None,
            retry_after: Some(Duration::from_secs(3)),
        }
        .with_request_id(Some(String::from("req-3")));
        assert_eq!(throttled.request_id(), Some("req-3"));
        assert_eq!(throttled.retry_after(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn variants_without_a_request_id_carry_it_in_their_text() {
        let missing = AdapterError::NotFound {
            what: "lambda:GetAlias f:live: ResourceNotFoundException".into(),
        }
        .with_request_id(Some("req-9"));
        assert_eq!(
            missing,
            AdapterError::NotFound {
                what: "lambda:GetAlias f:live: ResourceNotFoundException (request req-9)".into()
            }
        );
        assert_eq!(missing.class(), ErrorClass::Permanent, "the class is kept");
        let timeout = AdapterError::Timeout {
            message: "read".into(),
        }
        .with_request_id(Some("req-8"));
        assert_eq!(
            timeout.to_string(),
            "timed out or disconnected: read (request req-8)"
        );
        assert_eq!(timeout.class(), ErrorClass::Transient);
    }

    #[test]
    fn request_ids_survive_for_the_audit_trail() {
        let error = AdapterError::Rejected {
            message: "no".into(),
            request_id: Some("req-42".into()),
        };
        assert_eq!(error.request_id(), Some("req-42"));
    }
}
