//! CloudFront targets: a primary distribution released through a staging
//! copy and a continuous deployment policy. CloudFront sends at most 15 %
//! of requests to the staging distribution, so that is this kind's highest
//! canary weight; promotion moves the rest. An artifact is a whole
//! DistributionConfig file or just a new origin domain.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Kind, SERVICE_GATES, Source, Spec};
use crate::check::Checker;
use crate::model::{ArtifactSource, Capabilities, StrategyKind, TargetKind, TargetSpec};
use crate::raw;

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

    fn artifact_sources(&self) -> &'static [&'static Source] {
        &[&CLOUDFRONT]
    }

    fn is_written(&self, target: &raw::Target) -> bool {
        target.cloudfront.is_some()
    }

    fn check(&self, checker: &mut Checker, path: &str, target: &raw::Target) -> Option<TargetSpec> {
        let cloudfront = target.cloudfront.clone()?;
        let id = &cloudfront.distribution_id;
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            checker.error(
                format!("{path}.cloudfront.distributionId"),
                format!(
                    "`{id}` is not a CloudFront distribution ID (uppercase letters and digits)"
                ),
            );
        }
        Some(TargetSpec::CloudFront(cloudfront))
    }

    fn canary_receiver(&self) -> String {
        format!("a {} staging distribution", self.name())
    }
}

impl Spec for CloudFrontTarget {
    fn kind(&self) -> TargetKind {
        TargetKind::CloudFront
    }

    fn rollback(&self, _strategy: StrategyKind, stable: &str) -> String {
        format!(
            "continuous deployment policy disabled and detached from {}; all traffic on the primary ({stable})",
            self.distribution_id
        )
    }
}

pub(crate) const CLOUDFRONT: Source = Source {
    key: "cloudfront",
    written: |artifact| artifact.cloudfront.is_some(),
    check: check_artifact,
};

fn check_artifact(
    checker: &mut Checker,
    path: &str,
    artifact: &raw::Artifact,
) -> Option<ArtifactSource> {
    let cloudfront = artifact.cloudfront.as_ref()?;
    let at = format!("{path}.cloudfront");
    let which = checker.exactly_one(
        &at,
        "a CloudFront artifact",
        &[
            ("configFile", cloudfront.config_file.is_some()),
            ("originDomain", cloudfront.origin_domain.is_some()),
        ],
    )?;
    if which == 0 {
        return Some(ArtifactSource::CloudFrontConfigFile(
            cloudfront.config_file.clone()?,
        ));
    }
    let domain = cloudfront.origin_domain.clone()?;
    if domain.is_empty() || domain.contains("://") || domain.contains('/') {
        checker
            .error(
                format!("{at}.originDomain"),
                format!("`{domain}` is not a domain name"),
            )
            .hint = Some("write just the host, e.g. `v2.origin.example.com`".into());
    }
    Some(ArtifactSource::CloudFrontOrigin(domain))
}
