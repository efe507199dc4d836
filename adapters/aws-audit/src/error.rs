//! The crate's errors, and what a failed AWS call means for shipping.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::{RequestId, RequestIdExt};
use deployctl_adapter::AdapterError;
use deployctl_audit::SinkError;

pub(crate) type HttpResponse = aws_sdk_s3::config::http::HttpResponse;

/// Why the sink, the copy reader or the key provider cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AwsAuditError {
    #[error("invalid audit retention `{given}` days: {reason}")]
    Retention { given: String, reason: String },
    /// The destination cannot be used as configured (no Object Lock, no
    /// bucket, no permission); the message says how to fix it.
    #[error("{0}")]
    Refused(String),
    /// An AWS call failed; the message names the call and its request IDs.
    #[error("{0}")]
    Call(String),
    #[error("cannot start the AWS client's runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// One failed AWS call, classified.
#[derive(Debug, Clone)]
pub(crate) struct CallFailure {
    /// HTTP status, when a response came back.
    pub status: Option<u16>,
    /// The service's error code (`AccessDenied`, `PreconditionFailed`…).
    pub code: Option<String>,
    /// Worth trying again later (throttled, 5xx, network, timeout).
    pub transient: bool,
    /// The call, what went wrong and the request IDs (S7).
    pub message: String,
}

impl CallFailure {
    /// Classifies with the adapters' one mapping
    /// ([`deployctl_aws::map_sdk_error`]) and keeps both S3 request IDs:
    /// AWS support asks for the pair.
    pub(crate) fn new<E>(error: SdkError<E, HttpResponse>, what: &str) -> CallFailure
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = error.raw_response().map(|r| r.status().as_u16());
        let code = error.code().map(str::to_owned);
        let request_id = error.request_id().map(str::to_owned);
        let extended = error.extended_request_id().map(str::to_owned);
        let mapped = deployctl_aws::map_sdk_error(error, what);
        let transient = matches!(
            mapped,
            AdapterError::Throttled { .. }
                | AdapterError::Unavailable { .. }
                | AdapterError::Timeout { .. }
                // S3's 409 on a conditional write racing another one: a
                // later attempt sees the winner.
                | AdapterError::Conflict { .. }
        ) && status != Some(412);
        let mut message = mapped.to_string();
        match (request_id, extended) {
            (Some(id), Some(extended)) => message.push_str(&format!(
                " (request ID {id}, extended request ID {extended})"
            )),
            (Some(id), None) => message.push_str(&format!(" (request ID {id})")),
            _ => {}
        }
        CallFailure {
            status,
            code,
            transient,
            message,
        }
    }

    pub(crate) fn into_sink_error(self) -> SinkError {
        if self.transient {
            SinkError::Unavailable(self.message)
        } else {
            SinkError::Refused(self.message)
        }
    }
}
