//! What a CloudFront release changes: the plan's artifact applied to a copy
//! of the primary's configuration, which the staging distribution serves.

use aws_sdk_cloudfront::types::DistributionConfig;
use deployctl_adapter::AdapterError;
use deployctl_plan::model::{Artifact, ArtifactSource};

/// The change a release makes to the primary's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// Point the origin the default cache behavior uses at this domain.
    OriginDomain(String),
}

impl Release {
    /// The release for a validated plan's artifact. A `configFile` artifact
    /// is refused as unsupported (see the crate's report: a whole
    /// DistributionConfig in JSON needs a JSON → SDK-type mapping that
    /// this crate does not have yet); other kinds of artifact are refused
    /// as not meant for CloudFront.
    pub fn from_artifact(artifact: &Artifact) -> Result<Release, AdapterError> {
        match &artifact.source {
            ArtifactSource::CloudFrontOrigin(domain) => Ok(Release::OriginDomain(domain.clone())),
            ArtifactSource::CloudFrontConfigFile(path) => Err(AdapterError::Unsupported {
                what: format!(
                    "artifact {}: cloudfront.configFile ({path}) is not supported by this build; \
                     use cloudfront.originDomain",
                    artifact.version
                ),
            }),
            other => Err(AdapterError::Rejected {
                message: format!(
                    "artifact {} is not a CloudFront artifact ({other:?}); write cloudfront.originDomain",
                    artifact.version
                ),
                request_id: None,
            }),
        }
    }

    /// `config` with the release applied.
    pub(crate) fn apply(
        &self,
        mut config: DistributionConfig,
    ) -> Result<DistributionConfig, AdapterError> {
        match self {
            Release::OriginDomain(domain) => {
                let target = config
                    .default_cache_behavior
                    .as_ref()
                    .map(|b| b.target_origin_id.clone())
                    .unwrap_or_default();
                let origin = config
                    .origins
                    .as_mut()
                    .and_then(|o| o.items.iter_mut().find(|origin| origin.id == target))
                    .ok_or_else(|| AdapterError::Rejected {
                        message: format!(
                            "the distribution's default cache behavior targets origin {target:?}, \
                             which is not among its origins; fix the distribution first"
                        ),
                        request_id: None,
                    })?;
                origin.domain_name = domain.clone();
                Ok(config)
            }
        }
    }
}

/// The origin domain the default cache behavior uses, for messages and tests.
pub(crate) fn default_origin_domain(config: &DistributionConfig) -> Option<&str> {
    let target = &config.default_cache_behavior.as_ref()?.target_origin_id;
    config
        .origins
        .as_ref()?
        .items
        .iter()
        .find(|o| o.id == *target)
        .map(|o| o.domain_name.as_str())
}
