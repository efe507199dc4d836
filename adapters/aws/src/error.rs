//! AWS SDK errors → [`AdapterError`], by meaning (docs/adapter-contract.md).

use std::time::Duration;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_types::request_id::RequestId;
use deployctl_adapter::AdapterError;

/// The HTTP response type of every aws-sdk client's errors.
type HttpResponse = aws_smithy_runtime_api::http::Response;

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
        _ => causes(&error),
    };
    let message = format!("{what}: {detail}");
    match &error {
        SdkError::TimeoutError(_) => return AdapterError::Timeout { message },
        SdkError::DispatchFailure(failure) => {
            // No credentials anywhere in the chain is not a network blip:
            // retrying cannot help, and the fix is the operator's.
            let no_credentials = failure.is_other() && loading_credentials_failed(&error);
            if failure.is_user() || no_credentials {
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
            return AdapterError::NotFound { what: message }.with_request_id(request_id);
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
        Some(404) => AdapterError::NotFound { what: message }.with_request_id(request_id),
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

/// Whether the credential chain is what failed (somewhere in the causes),
/// rather than the network.
fn loading_credentials_failed(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(current) = next {
        if current
            .downcast_ref::<aws_credential_types::provider::error::CredentialsError>()
            .is_some()
        {
            return true;
        }
        next = current.source();
    }
    false
}

/// The error and its causes, each as its own message, joined: "dispatch
/// failure: other: an error occurred while loading credentials: …". The
/// SDK's `DisplayErrorContext` appends the whole error's debug dump (raw
/// responses and all), which buries the one line a person needs.
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(current) = next {
        let text = current.to_string();
        // Wrappers often repeat their source's message; say it once.
        if !text.is_empty() && parts.last().is_none_or(|last| !last.ends_with(&text)) {
            parts.push(text);
        }
        next = current.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::causes;

    #[derive(Debug, thiserror::Error)]
    #[error("dispatch failure")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("failed to load IMDS session token")]
    struct Inner;

    #[test]
    fn causes_are_joined_without_debug_dumps() {
        assert_eq!(
            causes(&Outer(Inner)),
            "dispatch failure: failed to load IMDS session token"
        );
    }
}
