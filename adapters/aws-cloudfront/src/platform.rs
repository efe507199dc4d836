//! CloudFront calls, each collecting its request ID, and the snapshot of a
//! release's resources (primary, staging distribution, policy) read from
//! the platform alone.

use std::collections::BTreeMap;

use aws_sdk_cloudfront::Client;
use aws_sdk_cloudfront::operation::RequestId;
use aws_sdk_cloudfront::types::{
    ContinuousDeploymentPolicyConfig, ContinuousDeploymentPolicyType,
    ContinuousDeploymentSingleWeightConfig, DistributionConfig, SessionStickinessConfig,
    StagingDistributionDnsNames, Tag, TagKeys, Tags, TrafficConfig,
};
use deployctl_adapter::AdapterError;
use deployctl_aws::map_sdk_error;

use crate::tags;

/// Session stickiness for the weighted policy: a viewer stays on the
/// distribution it first got for 5 to 10 minutes (CloudFront allows
/// 300..3600 s), so a canary does not flip users between versions.
const STICKY_IDLE_TTL: i32 = 300;
const STICKY_MAX_TTL: i32 = 600;

/// One distribution as read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Dist {
    pub id: String,
    pub arn: String,
    pub domain: String,
    pub status: String,
    pub etag: String,
    pub config: DistributionConfig,
    pub tags: BTreeMap<String, String>,
}

impl Dist {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    pub fn policy_id(&self) -> Option<&str> {
        self.config
            .continuous_deployment_policy_id
            .as_deref()
            .filter(|id| !id.is_empty())
    }

    pub fn deployed(&self) -> bool {
        self.status == "Deployed"
    }
}

/// A continuous deployment policy as read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Policy {
    pub id: String,
    pub etag: String,
    pub config: ContinuousDeploymentPolicyConfig,
}

impl Policy {
    /// The policy as a read or a create answers it: its ETag and body.
    fn from_answer(
        etag: Option<String>,
        policy: Option<aws_sdk_cloudfront::types::ContinuousDeploymentPolicy>,
    ) -> Result<Policy, AdapterError> {
        let etag = etag.ok_or_else(|| missing("an ETag"))?;
        let policy = policy.ok_or_else(|| missing("a continuous deployment policy"))?;
        Ok(Policy {
            id: policy.id,
            etag,
            config: policy
                .continuous_deployment_policy_config
                .ok_or_else(|| missing("a ContinuousDeploymentPolicyConfig"))?,
        })
    }

    pub fn staging_domain(&self) -> Option<&str> {
        self.config
            .staging_distribution_dns_names
            .as_ref()
            .and_then(|n| n.items.as_ref())
            .and_then(|items| items.first())
            .map(String::as_str)
    }

    /// Percent of traffic the policy sends to staging (0 when disabled or
    /// not weight-based).
    pub fn percent(&self) -> u8 {
        if !self.config.enabled {
            return 0;
        }
        let weight = self
            .config
            .traffic_config
            .as_ref()
            .and_then(|t| t.single_weight_config.as_ref())
            .map_or(0.0, |w| w.weight);
        percent(weight)
    }

    pub fn is_weight(&self, enabled: bool, percent_wanted: u8) -> bool {
        let weight = self
            .config
            .traffic_config
            .as_ref()
            .and_then(|t| t.single_weight_config.as_ref())
            .map(|w| percent(w.weight));
        self.config.enabled == enabled && weight == Some(percent_wanted)
    }
}

pub(crate) fn percent(weight: f32) -> u8 {
    if weight.is_finite() && weight > 0.0 {
        (weight * 100.0).round().clamp(0.0, 100.0) as u8
    } else {
        0
    }
}

/// A primary with what hangs off it: everything `observe` reports.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    pub primary: Dist,
    /// The staging distribution the primary's [`tags::STAGING`] names, when
    /// it still exists.
    pub staging: Option<Dist>,
    /// The policy attached to the primary, if any.
    pub policy: Option<Policy>,
}

/// What must not change behind the target's back between its reads and
/// its writes: ETags (every config write changes them) and our tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fingerprint(Vec<(String, String)>);

/// As the another-writer refusal names it: `primary E2QWRUHAPOMQZL,
/// primary tag deployctl:version=1.0.0, …`.
impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, (part, value)) in self.0.iter().enumerate() {
            let separator = if n == 0 { "" } else { ", " };
            if part.contains(" tag ") {
                write!(f, "{separator}{part}={value}")?;
            } else {
                write!(f, "{separator}{part} {value}")?;
            }
        }
        Ok(())
    }
}

impl Snapshot {
    pub fn fingerprint(&self) -> Fingerprint {
        let mut parts = vec![("primary".to_owned(), self.primary.etag.clone())];
        parts.extend(
            self.primary
                .tags
                .iter()
                .map(|(k, v)| (format!("primary tag {k}"), v.clone())),
        );
        if let Some(staging) = &self.staging {
            parts.push(("staging".into(), staging.etag.clone()));
            parts.extend(
                staging
                    .tags
                    .iter()
                    .map(|(k, v)| (format!("staging tag {k}"), v.clone())),
            );
        }
        if let Some(policy) = &self.policy {
            parts.push((format!("policy {}", policy.id), policy.etag.clone()));
        }
        Fingerprint(parts)
    }

    pub fn stable(&self) -> String {
        self.primary
            .tag(tags::VERSION)
            .unwrap_or(tags::UNLABELLED)
            .to_owned()
    }

    /// The policy attached to the primary when it routes to our staging
    /// distribution.
    pub fn our_policy(&self) -> Option<&Policy> {
        let staging = self.staging.as_ref()?;
        self.policy
            .as_ref()
            .filter(|p| p.staging_domain() == Some(staging.domain.as_str()))
    }

    /// The candidate: our staging distribution in the candidate role with
    /// our policy attached to the primary; and the percent it gets.
    pub fn candidate(&self) -> Option<(String, u8)> {
        let staging = self.staging.as_ref()?;
        let policy = self.our_policy()?;
        if staging.tag(tags::ROLE) != Some(tags::ROLE_CANDIDATE) {
            return None;
        }
        let version = staging.tag(tags::VERSION)?.to_owned();
        Some((version, policy.percent()))
    }

    /// After a promotion (until Retire): the label the primary served before
    /// it, whose configuration the staging distribution holds.
    pub fn previous(&self) -> Option<String> {
        let staging = self.staging.as_ref()?;
        let previous = self.primary.tag(tags::PREVIOUS)?;
        (staging.tag(tags::ROLE) == Some(tags::ROLE_PREVIOUS)
            && staging.tag(tags::VERSION) == Some(previous))
        .then(|| previous.to_owned())
    }

    /// A policy on the primary that routes somewhere other than our staging
    /// distribution: someone else's release.
    pub fn foreign_policy(&self) -> Option<&Policy> {
        self.policy.as_ref().filter(|_| self.our_policy().is_none())
    }
}

/// A CloudFront client that records request IDs.
#[derive(Clone, Debug)]
pub(crate) struct Api {
    pub client: Client,
}

fn push(ids: &mut Vec<String>, id: Option<&str>) {
    if let Some(id) = id.filter(|id| !id.is_empty()) {
        ids.push(id.to_owned());
    }
}

fn missing(what: &str) -> AdapterError {
    AdapterError::Rejected {
        message: format!("CloudFront answered without {what}"),
        request_id: None,
    }
}

impl Api {
    pub async fn distribution(
        &self,
        id: &str,
        ids: &mut Vec<String>,
    ) -> Result<Dist, AdapterError> {
        let out = self
            .client
            .get_distribution()
            .id(id)
            .send()
            .await
            .map_err(|e| map_sdk_error(e, &format!("cloudfront:GetDistribution {id}")))?;
        push(ids, out.request_id());
        let etag = out.e_tag().ok_or_else(|| missing("an ETag"))?.to_owned();
        let dist = out.distribution.ok_or_else(|| missing("a distribution"))?;
        let config = dist
            .distribution_config
            .ok_or_else(|| missing("a DistributionConfig"))?;
        Ok(Dist {
            id: dist.id,
            arn: dist.arn,
            domain: dist.domain_name,
            status: dist.status,
            etag,
            config,
            tags: BTreeMap::new(),
        })
    }

    pub async fn distribution_with_tags(
        &self,
        id: &str,
        ids: &mut Vec<String>,
    ) -> Result<Dist, AdapterError> {
        let mut dist = self.distribution(id, ids).await?;
        dist.tags = self.tags(&dist.arn, ids).await?;
        Ok(dist)
    }

    pub async fn tags(
        &self,
        arn: &str,
        ids: &mut Vec<String>,
    ) -> Result<BTreeMap<String, String>, AdapterError> {
        let out = self
            .client
            .list_tags_for_resource()
            .resource(arn)
            .send()
            .await
            .map_err(|e| map_sdk_error(e, &format!("cloudfront:ListTagsForResource {arn}")))?;
        push(ids, out.request_id());
        Ok(out
            .tags
            .and_then(|t| t.items)
            .unwrap_or_default()
            .into_iter()
            .map(|tag| (tag.key, tag.value.unwrap_or_default()))
            .collect())
    }

    pub async fn tag(
        &self,
        arn: &str,
        pairs: &[(&str, &str)],
        ids: &mut Vec<String>,
    ) -> Result<(), AdapterError> {
        let mut items = Vec::new();
        for (key, value) in pairs {
            items.push(
                Tag::builder()
                    .key(*key)
                    .value(*value)
                    .build()
                    .map_err(|e| rejected(format!("tag {key}: {e}")))?,
            );
        }
        let out = self
            .client
            .tag_resource()
            .resource(arn)
            .tags(Tags::builder().set_items(Some(items)).build())
            .send()
            .await
            .map_err(|e| map_sdk_error(e, &format!("cloudfront:TagResource {arn}")))?;
        push(ids, out.request_id());
        Ok(())
    }

    pub async fn untag(
        &self,
        arn: &str,
        keys: &[&str],
        ids: &mut Vec<String>,
    ) -> Result<(), AdapterError> {
        let keys = TagKeys::builder()
            .set_items(Some(keys.iter().map(|k| (*k).to_owned()).collect()))
            .build();
        let out = self
            .client
            .untag_resource()
            .resource(arn)
            .tag_keys(keys)
            .send()
            .await
            .map_err(|e| map_sdk_error(e, &format!("cloudfront:UntagResource {arn}")))?;
        push(ids, out.request_id());
        Ok(())
    }

    pub async fn policy(&self, id: &str, ids: &mut Vec<String>) -> Result<Policy, AdapterError> {
        let out = self
            .client
            .get_continuous_deployment_policy()
            .id(id)
            .send()
            .await
            .map_err(|e| {
                map_sdk_error(e, &format!("cloudfront:GetContinuousDeploymentPolicy {id}"))
            })?;
        push(ids, out.request_id());
        Policy::from_answer(out.e_tag, out.continuous_deployment_policy)
    }

    /// The primary, its staging distribution (from the primary's tag) and
    /// the policy attached to it.
    pub async fn snapshot(
        &self,
        primary_id: &str,
        ids: &mut Vec<String>,
    ) -> Result<Snapshot, AdapterError> {
        let primary = self.distribution_with_tags(primary_id, ids).await?;
        let staging = match primary.tag(tags::STAGING) {
            Some(id) => match self.distribution_with_tags(id, ids).await {
                Ok(staging) if staging.tag(tags::PRIMARY) == Some(primary_id) => Some(staging),
                Ok(_) | Err(AdapterError::NotFound { .. }) => None,
                Err(other) => return Err(other),
            },
            None => None,
        };
        let policy = match primary.policy_id() {
            Some(id) => Some(self.policy(id, ids).await?),
            None => None,
        };
        Ok(Snapshot {
            primary,
            staging,
            policy,
        })
    }

    /// `UpdateDistribution` with the ETag of `dist` as read; returns the new ETag.
    pub async fn update(
        &self,
        dist: &Dist,
        config: DistributionConfig,
        ids: &mut Vec<String>,
    ) -> Result<String, AdapterError> {
        let out = self
            .client
            .update_distribution()
            .id(&dist.id)
            .if_match(&dist.etag)
            .distribution_config(config)
            .send()
            .await
            .map_err(|e| map_sdk_error(e, &format!("cloudfront:UpdateDistribution {}", dist.id)))?;
        push(ids, out.request_id());
        Ok(out.e_tag().unwrap_or_default().to_owned())
    }

    /// A staging copy of `primary`; `Ok(None)` when a copy with this
    /// caller reference already exists and its ID could not be read from
    /// the error (the caller then fails with a clear message).
    pub async fn copy_as_staging(
        &self,
        primary: &Dist,
        caller_reference: &str,
        ids: &mut Vec<String>,
    ) -> Result<String, AdapterError> {
        let result = self
            .client
            .copy_distribution()
            .primary_distribution_id(&primary.id)
            .staging(true)
            .if_match(&primary.etag)
            .caller_reference(caller_reference)
            .enabled(true)
            .send()
            .await;
        match result {
            Ok(out) => {
                push(ids, out.request_id());
                out.distribution
                    .map(|d| d.id)
                    .ok_or_else(|| missing("the copied distribution"))
            }
            Err(error) => {
                // A retried Deploy (same idempotency key, so the same caller
                // reference) whose first copy succeeded: adopt that copy.
                use aws_sdk_cloudfront::error::ProvideErrorMetadata;
                if error.code() == Some("DistributionAlreadyExists")
                    && let Some(id) = error
                        .message()
                        .and_then(|m| m.rsplit("Already exists: ").next())
                        .map(|id| id.trim().trim_end_matches('.').to_owned())
                        .filter(|id| {
                            !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric())
                        })
                {
                    push(ids, error.request_id());
                    return Ok(id);
                }
                Err(map_sdk_error(
                    error,
                    &format!("cloudfront:CopyDistribution {} (staging)", primary.id),
                ))
            }
        }
    }

    pub async fn promote(
        &self,
        primary: &Dist,
        staging: &Dist,
        ids: &mut Vec<String>,
    ) -> Result<(), AdapterError> {
        let out = self
            .client
            .update_distribution_with_staging_config()
            .id(&primary.id)
            .staging_distribution_id(&staging.id)
            .if_match(format!("{}, {}", primary.etag, staging.etag))
            .send()
            .await
            .map_err(|e| {
                map_sdk_error(
                    e,
                    &format!(
                        "cloudfront:UpdateDistributionWithStagingConfig {} ← {}",
                        primary.id, staging.id
                    ),
                )
            })?;
        push(ids, out.request_id());
        Ok(())
    }

    /// The policy routing to `domain`, if one exists (it can be detached).
    pub async fn find_policy_for(
        &self,
        domain: &str,
        ids: &mut Vec<String>,
    ) -> Result<Option<Policy>, AdapterError> {
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .client
                .list_continuous_deployment_policies()
                .set_marker(marker.clone())
                .send()
                .await
                .map_err(|e| map_sdk_error(e, "cloudfront:ListContinuousDeploymentPolicies"))?;
            push(ids, out.request_id());
            let list = out.continuous_deployment_policy_list;
            let next = list.as_ref().and_then(|l| l.next_marker.clone());
            for summary in list.and_then(|l| l.items).unwrap_or_default() {
                let Some(policy) = summary.continuous_deployment_policy else {
                    continue;
                };
                let routes_here = policy
                    .continuous_deployment_policy_config
                    .as_ref()
                    .and_then(|c| c.staging_distribution_dns_names.as_ref())
                    .and_then(|n| n.items.as_ref())
                    .is_some_and(|items| items.iter().any(|d| d == domain));
                if routes_here {
                    // The list carries no ETag: read the policy itself.
                    return Ok(Some(self.policy(&policy.id, ids).await?));
                }
            }
            match next.filter(|m| !m.is_empty()) {
                Some(m) => marker = Some(m),
                None => return Ok(None),
            }
        }
    }

    pub async fn create_policy(
        &self,
        domain: &str,
        ids: &mut Vec<String>,
    ) -> Result<Policy, AdapterError> {
        let config = weight_policy(domain, false, 0)?;
        let out = self
            .client
            .create_continuous_deployment_policy()
            .continuous_deployment_policy_config(config)
            .send()
            .await
            .map_err(|e| map_sdk_error(e, "cloudfront:CreateContinuousDeploymentPolicy"))?;
        push(ids, out.request_id());
        Policy::from_answer(out.e_tag, out.continuous_deployment_policy)
    }

    /// Sets the policy's weight and whether it is enabled, with its ETag.
    pub async fn set_weight(
        &self,
        policy: &Policy,
        domain: &str,
        enabled: bool,
        percent: u8,
        ids: &mut Vec<String>,
    ) -> Result<(), AdapterError> {
        let config = weight_policy(domain, enabled, percent)?;
        let out = self
            .client
            .update_continuous_deployment_policy()
            .id(&policy.id)
            .if_match(&policy.etag)
            .continuous_deployment_policy_config(config)
            .send()
            .await
            .map_err(|e| {
                map_sdk_error(
                    e,
                    &format!("cloudfront:UpdateContinuousDeploymentPolicy {}", policy.id),
                )
            })?;
        push(ids, out.request_id());
        Ok(())
    }
}

pub(crate) fn rejected(message: String) -> AdapterError {
    AdapterError::Rejected {
        message,
        request_id: None,
    }
}

/// A weight-based policy routing `percent` (≤ 15) of requests to `domain`,
/// with session stickiness.
fn weight_policy(
    domain: &str,
    enabled: bool,
    percent: u8,
) -> Result<ContinuousDeploymentPolicyConfig, AdapterError> {
    let build = |e: aws_sdk_cloudfront::error::BuildError| rejected(format!("policy config: {e}"));
    let weight = ContinuousDeploymentSingleWeightConfig::builder()
        .weight(f32::from(percent) / 100.0)
        .session_stickiness_config(
            SessionStickinessConfig::builder()
                .idle_ttl(STICKY_IDLE_TTL)
                .maximum_ttl(STICKY_MAX_TTL)
                .build()
                .map_err(build)?,
        )
        .build()
        .map_err(build)?;
    ContinuousDeploymentPolicyConfig::builder()
        .enabled(enabled)
        .staging_distribution_dns_names(
            StagingDistributionDnsNames::builder()
                .quantity(1)
                .items(domain)
                .build()
                .map_err(build)?,
        )
        .traffic_config(
            TrafficConfig::builder()
                .r#type(ContinuousDeploymentPolicyType::SingleWeight)
                .single_weight_config(weight)
                .build()
                .map_err(build)?,
        )
        .build()
        .map_err(build)
}
