//! ECS targets: a service released with task sets (EXTERNAL deployment
//! controller) or a rolling update (ECS controller). An artifact is a
//! registered task definition, or an image for the service's current one.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Kind, SERVICE_GATES};
use crate::model::{Capabilities, StrategyKind};

/// An ECS service released with task sets (EXTERNAL deployment controller).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EcsTarget {
    pub cluster: String,
    pub service: String,
    #[serde(default)]
    pub region: Option<String>,
}

pub(crate) struct Ecs;

impl Kind for Ecs {
    fn name(&self) -> &'static str {
        "ecs"
    }

    fn label(&self) -> &'static str {
        "ECS"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            strategies: &[StrategyKind::Canary, StrategyKind::BlueGreen],
            gates: SERVICE_GATES,
            max_canary_weight: 100,
        }
    }
}
