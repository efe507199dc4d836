//! Container images: the artifact source `kubernetes` and `ecs` targets
//! both take. Not a kind of its own; it lives here once so that neither of
//! the two kinds owns what the other borrows.
//!
//! Only digests are accepted: a tag can move between review and release.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageArtifact {
    /// `registry/repository@sha256:<64 hex>` (a tag alone is refused).
    pub reference: String,
    /// Container to update; the Deployment's only container when omitted.
    #[serde(default)]
    pub container: Option<String>,
}
