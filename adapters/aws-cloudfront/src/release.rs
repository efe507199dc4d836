//! What a CloudFront release changes: the plan's artifact applied to a copy
//! of the primary's configuration, which the staging distribution serves.

use std::path::{Path, PathBuf};

use aws_sdk_cloudfront::types::DistributionConfig;
use deployctl_adapter::AdapterError;
use deployctl_plan::model::{Artifact, ArtifactSource};

/// The change a release makes to the primary's configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum Release {
    /// Point the origin the default cache behavior uses at this domain.
    OriginDomain(String),
    /// Serve this whole configuration, read from a JSON file
    /// ([`Release::config_file`]). The staging distribution keeps what
    /// makes it a staging distribution (its caller reference, `Staging`,
    /// no CNAMEs, no policy) whatever the file says; promotion keeps the
    /// primary's CNAMEs and caller reference.
    ConfigFile {
        /// Where it was read from, for messages.
        path: PathBuf,
        config: Box<DistributionConfig>,
    },
}

impl Release {
    /// The release for a validated plan's artifact. A `configFile` is read
    /// now, relative to `plan_dir` (the plan file's directory), so that a
    /// missing or malformed file stops the run before anything moves;
    /// other kinds of artifact are refused as not meant for CloudFront.
    pub fn from_artifact(artifact: &Artifact, plan_dir: &Path) -> Result<Release, AdapterError> {
        match &artifact.source {
            ArtifactSource::CloudFrontOrigin(domain) => Ok(Release::OriginDomain(domain.clone())),
            ArtifactSource::CloudFrontConfigFile(path) => Release::config_file(plan_dir.join(path))
                .map_err(|error| match error {
                    AdapterError::Rejected {
                        message,
                        request_id,
                    } => AdapterError::Rejected {
                        message: format!("artifact {}: {message}", artifact.version),
                        request_id,
                    },
                    other => other,
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

    /// The release of the DistributionConfig in the JSON file at `path`:
    /// the format `aws cloudfront get-distribution-config` prints (with or
    /// without its `{"ETag", "DistributionConfig"}` wrapper). Refused
    /// (`Rejected`) when the file is missing, unreadable, not JSON, or has
    /// a field deployctl does not understand, naming the file and the
    /// field's JSON path.
    pub fn config_file(path: impl Into<PathBuf>) -> Result<Release, AdapterError> {
        let path = path.into();
        let config = crate::config_file::load(&path)?;
        Ok(Release::ConfigFile {
            path,
            config: Box::new(config),
        })
    }

    /// What the release changes, for dry runs.
    pub(crate) fn describe(&self) -> String {
        match self {
            Release::OriginDomain(domain) => format!("origin → {domain}"),
            Release::ConfigFile { path, .. } => {
                format!("configuration from {}", path.display())
            }
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
            // The whole configuration comes from the file; the caller
            // gives it the staging distribution's identity.
            Release::ConfigFile { config: file, .. } => Ok((**file).clone()),
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
