//! The stand-in probe for a gate whose real probe could not be built.

use deployctl_adapter::{BoxFuture, HealthProbe, Measurement};

use crate::ProbeError;
use crate::transport::error_chain;

/// Reports the construction error as `Error` on every measurement: the
/// gate then fails through its consecutive-error limit, with the reason in
/// the run log, rather than passing or vanishing.
pub(crate) struct Misconfigured {
    detail: String,
}

impl Misconfigured {
    pub(crate) fn new(error: &ProbeError) -> Misconfigured {
        Misconfigured {
            detail: format!("the probe could not be set up: {}", error_chain(error)),
        }
    }
}

impl HealthProbe for Misconfigured {
    fn measure(&self) -> BoxFuture<'_, Measurement> {
        let detail = self.detail.clone();
        Box::pin(async move { Measurement::Error { detail } })
    }
}
