//! AWS Lambda targets: a function released through an alias, whose
//! additional version weight carries the canary. An artifact is a version
//! already published, or code (S3 or a local zip) to publish as one.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Kind, SERVICE_GATES};
use crate::model::{Capabilities, StrategyKind};

/// An AWS Lambda function released through an alias.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LambdaTarget {
    pub function_name: String,
    pub alias: String,
    #[serde(default)]
    pub region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LambdaArtifact {
    /// An already published version number to release.
    #[serde(default)]
    pub version: Option<String>,
    /// Code to publish as a new version.
    #[serde(default)]
    pub s3: Option<S3Location>,
    /// A local zip file to publish as a new version.
    #[serde(default)]
    pub zip_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct S3Location {
    pub bucket: String,
    pub key: String,
    #[serde(default)]
    pub object_version: Option<String>,
}

pub(crate) struct Lambda;

impl Kind for Lambda {
    fn name(&self) -> &'static str {
        "lambda"
    }

    fn label(&self) -> &'static str {
        "Lambda"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            strategies: &[StrategyKind::Canary, StrategyKind::BlueGreen],
            gates: SERVICE_GATES,
            max_canary_weight: 100,
        }
    }
}
