//! AWS SDK errors → [`AdapterError`], by meaning (docs/adapter-contract.md).

use std::time::Duration;

use aws_sdk_lambda::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::operation::RequestId;
use deployctl_adapter::AdapterError;

type HttpResponse = aws_sdk_lambda::config::http::HttpResponse;

/// Maps a failed call (`what`: the call, for the message) onto the error
/// class the engine's retry policy understands, keeping the request ID.
pub fn map_sdk_error<E>(error: SdkError<E, HttpResponse>, what: &str) -> AdapterError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let request_id = error.request_id().map(str::to_owned);
    let status = error.raw_response().map(|r| r.status().as_u16());
    let retry_after = error
        .raw_response()
        .and_then(|r| r.headers().get("retry-after"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let code = error.code().map(str::to_owned);
    // A service error says what went wrong in its code and message; the
    // full context (raw response and all) is only worth it for transport
    // failures, where the chain of causes is the useful part.
    let detail = match (error.code(), error.message()) {
        (Some(code), Some(text)) => format!("{code}: {text}"),
        (Some(code), None) => code.to_owned(),
        _ => DisplayErrorContext(&error).to_string(),
    };
    let message = format!("{what}: {detail}");
    match &error {
        SdkError::TimeoutError(_) => return AdapterError::Timeout { message },
        SdkError::DispatchFailure(failure) => {
            if failure.is_user() {
                return AdapterError::Rejected {
                    message,
                    request_id,
                };
            }
            return AdapterError::Timeout { message };
        }
        SdkError::ConstructionFailure(_) => {
            return AdapterError::Rejected {
                message,
                request_id,
            };
        }
        _ => {}
    }
    match code.as_deref() {
        Some(
            "ThrottlingException"
            | "TooManyRequestsException"
            | "Throttling"
            | "RequestLimitExceeded",
        ) => {
            return AdapterError::Throttled {
                message,
                request_id,
                retry_after,
            };
        }
        Some("ResourceNotFoundException") => {
            return AdapterError::NotFound {
                what: match request_id {
                    Some(id) => format!("{message} (request {id})"),
                    None => message,
                },
            };
        }
        Some("PreconditionFailedException" | "ResourceConflictException") => {
            return AdapterError::Conflict {
                message,
                request_id,
            };
        }
        _ => {}
    }
    match status {
        Some(429) => AdapterError::Throttled {
            message,
            request_id,
            retry_after,
        },
        Some(404) => AdapterError::NotFound {
            what: match request_id {
                Some(id) => format!("{message} (request {id})"),
                None => message,
            },
        },
        Some(412) => AdapterError::Conflict {
            message,
            request_id,
        },
        Some(500..=599) => AdapterError::Unavailable {
            message,
            request_id,
        },
        Some(_) => AdapterError::Rejected {
            message,
            request_id,
        },
        // A response we could not read at all: treat like a broken connection.
        None => AdapterError::Timeout { message },
    }
}
