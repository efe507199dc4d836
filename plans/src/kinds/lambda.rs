//! AWS Lambda targets: a function released through an alias, whose
//! additional version weight carries the canary. An artifact is a version
//! already published, or code (S3 or a local zip) to publish as one.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Kind, SERVICE_GATES, Source, Spec};
use crate::check::Checker;
use crate::model::{ArtifactSource, Capabilities, StrategyKind, TargetKind, TargetSpec};
use crate::raw;

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

    fn artifact_sources(&self) -> &'static [&'static Source] {
        &[&LAMBDA]
    }

    fn is_written(&self, target: &raw::Target) -> bool {
        target.lambda.is_some()
    }

    fn check(&self, checker: &mut Checker, path: &str, target: &raw::Target) -> Option<TargetSpec> {
        let lambda = target.lambda.clone()?;
        let at = format!("{path}.lambda");
        checker.non_empty(&format!("{at}.functionName"), &lambda.function_name);
        // Weights live on an alias; a version (or `$LATEST`) cannot carry them.
        if lambda.alias == "$LATEST" || lambda.alias.chars().all(|c| c.is_ascii_digit()) {
            checker
                .error(
                    format!("{at}.alias"),
                    format!("`{}` is a version, not an alias", lambda.alias),
                )
                .hint = Some("name the alias that clients invoke, e.g. `live`".into());
        } else {
            checker.non_empty(&format!("{at}.alias"), &lambda.alias);
        }
        Some(TargetSpec::Lambda(lambda))
    }
}

impl Spec for LambdaTarget {
    fn kind(&self) -> TargetKind {
        TargetKind::Lambda
    }

    fn rollback(&self, _strategy: StrategyKind, stable: &str) -> String {
        format!(
            "alias `{}` back to the stable version ({stable}) with no additional weights",
            self.alias
        )
    }
}

pub(crate) const LAMBDA: Source = Source {
    key: "lambda",
    written: |artifact| artifact.lambda.is_some(),
    check: check_artifact,
};

fn check_artifact(
    checker: &mut Checker,
    path: &str,
    artifact: &raw::Artifact,
) -> Option<ArtifactSource> {
    let lambda = artifact.lambda.as_ref()?;
    let at = format!("{path}.lambda");
    let which = checker.exactly_one(
        &at,
        "a Lambda artifact",
        &[
            ("version", lambda.version.is_some()),
            ("s3", lambda.s3.is_some()),
            ("zipFile", lambda.zip_file.is_some()),
        ],
    )?;
    Some(match which {
        0 => {
            let version = lambda.version.clone().unwrap_or_default();
            if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
                checker.error(
                    format!("{at}.version"),
                    format!("`{version}` is not a published Lambda version number"),
                );
            }
            ArtifactSource::LambdaPublished(version)
        }
        1 => {
            let s3 = lambda.s3.clone()?;
            checker.non_empty(&format!("{at}.s3.bucket"), &s3.bucket);
            checker.non_empty(&format!("{at}.s3.key"), &s3.key);
            ArtifactSource::LambdaS3(s3)
        }
        _ => {
            let zip = lambda.zip_file.clone().unwrap_or_default();
            checker.non_empty(&format!("{at}.zipFile"), &zip);
            ArtifactSource::LambdaZip(zip)
        }
    })
}
