//! CloudFront targets: a primary distribution released through a staging
//! copy and a continuous deployment policy. CloudFront sends at most 15 %
//! of requests to the staging distribution, so that is this kind's highest
//! canary weight; promotion moves the rest. An artifact is a whole
//! DistributionConfig file or just a new origin domain.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Kind, SERVICE_GATES};
use crate::model::{Capabilities, StrategyKind};

/// A CloudFront distribution released through a staging distribution and a
/// continuous deployment policy.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CloudFrontTarget {
    /// The primary (production) distribution.
    pub distribution_id: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CloudFrontArtifact {
    /// Path (relative to the plan) of a DistributionConfig JSON applied to the staging distribution.
    #[serde(default)]
    pub config_file: Option<String>,
    /// Or just a new origin domain for the staging distribution.
    #[serde(default)]
    pub origin_domain: Option<String>,
}

pub(crate) struct CloudFront;

impl Kind for CloudFront {
    fn name(&self) -> &'static str {
        "cloudfront"
    }

    fn label(&self) -> &'static str {
        "CloudFront"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            strategies: &[StrategyKind::Canary, StrategyKind::BlueGreen],
            gates: SERVICE_GATES,
            // Continuous deployment's SingleWeight policy stops at 15%.
            max_canary_weight: 15,
        }
    }
}
