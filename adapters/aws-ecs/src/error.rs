//! ECS errors → [`AdapterError`]: the shared AWS mapping, plus the ECS
//! exception names that mean "not found" (ECS answers 400 for them, which
//! the generic mapping would call a rejection).

use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};
use deployctl_adapter::AdapterError;
use deployctl_aws::map_sdk_error;

type HttpResponse = aws_sdk_ecs::config::http::HttpResponse;

/// Maps a failed ECS call (`what`: the call, for the message).
pub(crate) fn map_ecs_error<E>(error: SdkError<E, HttpResponse>, what: &str) -> AdapterError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let missing = matches!(
        error.code(),
        Some(
            "ClusterNotFoundException"
                | "ServiceNotFoundException"
                | "ServiceNotActiveException"
                | "TaskSetNotFoundException"
        )
    );
    let mapped = map_sdk_error(error, what);
    if !missing {
        return mapped;
    }
    AdapterError::NotFound {
        what: mapped.to_string(),
    }
    .with_request_id(mapped.request_id())
}

pub(crate) fn rejected(message: impl Into<String>) -> AdapterError {
    AdapterError::Rejected {
        message: message.into(),
        request_id: None,
    }
}
