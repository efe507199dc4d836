//! ECS targets: a service released with task sets (EXTERNAL deployment
//! controller) or a rolling update (ECS controller). An artifact is a
//! registered task definition, or an image for the service's current one.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An ECS service released with task sets (EXTERNAL deployment controller).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EcsTarget {
    pub cluster: String,
    pub service: String,
    #[serde(default)]
    pub region: Option<String>,
}
