//! The CloudFront target: a primary distribution released through a staging
//! distribution and a continuous deployment policy.
//!
//! - `Deploy { version }`: a staging copy of the primary (CopyDistribution,
//!   once; reused by later releases) gets the primary's configuration with
//!   the release applied (a new origin domain), or the configuration file's
//!   content in full, keeping its staging identity either way; it is tagged as the candidate, and once `Deployed`
//!   a weight-based policy (disabled, weight 0, session stickiness) routing
//!   to it is attached to the primary.
//! - `SetWeight { p }`: the policy's weight p/100, enabled when p > 0.
//!   CloudFront sends at most 15% to staging: more is refused here, before
//!   any call. 100 is a promotion.
//! - `Promote`: UpdateDistributionWithStagingConfig copies the staging
//!   configuration into the primary (CloudFront disables the policy); the
//!   policy is detached; the staging distribution then keeps the primary's
//!   previous configuration (tagged `previous`) so a rollback after
//!   promotion can restore it, also from a restarted process.
//! - `Rollback`: with a candidate, the policy is disabled and detached (all
//!   traffic on the primary); after a promotion, the previous configuration
//!   is copied back from the staging distribution into the primary.
//! - `Retire`: forgets the previous configuration (the release is final).
//!   The staging distribution and the policy are kept, detached, for the
//!   next release: creating a distribution and deleting one (disable, wait
//!   for propagation, delete) take minutes each on AWS, and a staging
//!   distribution no policy routes to receives no traffic.
//!
//! Concurrency: every apply reads the primary, staging distribution and
//! policy first; if their ETags or our tags differ from what this target
//! last read or wrote (`deployctl_adapter::writer`, keyed by
//! `platform::Fingerprint`), someone else changed them during the run and
//! the apply fails as `Rejected` (permanent) naming another writer: deployctl
//! does not overwrite a change it did not make, neither by continuing nor
//! by rolling back over it, so the run ends "rollback incomplete" for a
//! human (whose `deployctl rollback` runs in a new process that has seen
//! nothing yet: the explicit override). Re-observing does not adopt the
//! change; only our own failed apply forgets the fingerprint, since its
//! writes may have landed. Every write carries the ETag just read
//! (`If-Match`), so CloudFront refuses one that lost a race in between
//! (`PreconditionFailed`, 412 → `Conflict`; the engine re-observes and
//! retries into the check above).
//!
//! Propagation: after writes that change what a distribution serves, apply
//! waits for `Deployed` ([`WaitOptions`]), reporting progress; past the
//! limit it fails with `Timeout`, and applying again resumes the wait.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_cloudfront::Client;
use aws_sdk_cloudfront::config::AsyncSleep;
use aws_sdk_cloudfront::types::DistributionConfig;
use deployctl_adapter::construct::PlanRelease;
use deployctl_adapter::writer::{AnotherWriter, Changed, LastWrite};
use deployctl_adapter::{
    AdapterError, Applied, BoxFuture, Capabilities, HealthProbe, IdempotencyKey, Moves, Observed,
    PlannedCall, Preflight, Target, TrafficAction, TrafficTarget,
};
use deployctl_plan::model::{GateCheck, TargetKind};
use deployctl_plan::raw;

use crate::error::ConstructError;
use crate::platform::{Api, Dist, Fingerprint, Snapshot, rejected};
use crate::release::Release;
use crate::tags;
use crate::wait::{ProgressFn, WaitOptions, WaitProgress};

/// CloudFront's cap on the share of requests a staging distribution gets.
pub const MAX_STAGING_PERCENT: u8 = 15;

/// The CloudFront client configuration every [`CloudFrontTarget`] uses, from
/// a loaded [`SdkConfig`] with the shared retry and timeout settings. Tests
/// add their interceptors to it before building.
pub fn cloudfront_config(sdk: &SdkConfig) -> aws_sdk_cloudfront::config::Builder {
    aws_sdk_cloudfront::config::Builder::from(sdk)
        .retry_config(deployctl_aws::config::retry())
        .timeout_config(deployctl_aws::config::timeouts())
}

/// A primary CloudFront distribution as a deploy target.
pub struct CloudFrontTarget {
    name: String,
    distribution_id: String,
    release: Option<Release>,
    api: Api,
    wait: WaitOptions,
    progress: Option<ProgressFn>,
    memory: Arc<Mutex<Memory>>,
    /// CloudWatch for the staging traffic guard, and the window it looks
    /// back over; without it gates are not guarded (tests of the target
    /// alone).
    traffic: Option<(aws_sdk_cloudwatch::Client, Duration)>,
}

/// How far back the staging traffic guard looks for requests: CloudFront
/// publishes request counts per minute, a few minutes late.
pub const TRAFFIC_WINDOW: Duration = Duration::from_secs(300);

impl std::fmt::Debug for CloudFrontTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudFrontTarget")
            .field("name", &self.name)
            .field("distribution_id", &self.distribution_id)
            .field("release", &self.release)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

/// What this target knows beyond the platform: only what it last read,
/// for conflict detection and dry runs. Everything else is in tags.
#[derive(Debug, Default)]
struct Memory {
    /// The primary, staging distribution and policy as this target last
    /// read or wrote them: anything else is another writer's change.
    written: LastWrite<Fingerprint>,
    /// The label a rollback after promotion returns to, as last read.
    previous: Option<String>,
}

/// SetWeight values CloudFront can carry out: up to 15%, or 100 (promotion).
fn validate_weight(percent: u8) -> Result<(), AdapterError> {
    if percent <= MAX_STAGING_PERCENT || percent == 100 {
        Ok(())
    } else {
        Err(rejected(format!(
            "weight {percent}%: CloudFront continuous deployment sends at most \
             {MAX_STAGING_PERCENT}% of requests to the staging distribution; use a step of at \
             most {MAX_STAGING_PERCENT}%, or 100 to promote"
        )))
    }
}

/// A caller reference for CopyDistribution from the idempotency key, so a
/// retried Deploy finds the copy its first attempt made.
fn caller_reference(primary: &str, key: &IdempotencyKey) -> String {
    let raw = format!("deployctl-{primary}-{key}");
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_./".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(128)
        .collect()
}

/// The configuration a staging distribution serves: `base` with the
/// staging distribution's own identity (caller reference, staging flag),
/// no CNAMEs (a staging distribution cannot have any) and no policy.
fn staging_config(base: &DistributionConfig, staging: &Dist) -> DistributionConfig {
    let mut config = base.clone();
    config.caller_reference = staging.config.caller_reference.clone();
    config.staging = Some(true);
    config.aliases = None;
    config.continuous_deployment_policy_id = None;
    config.enabled = true;
    config
}

/// The configuration a primary serves when `from` is copied into it: the
/// primary keeps its identity, CNAMEs and policy (as promotion does).
fn primary_config(from: &DistributionConfig, primary: &Dist) -> DistributionConfig {
    let mut config = from.clone();
    config.caller_reference = primary.config.caller_reference.clone();
    config.staging = primary.config.staging;
    config.aliases = primary.config.aliases.clone();
    config.continuous_deployment_policy_id = primary.config.continuous_deployment_policy_id.clone();
    config
}

/// Compares configurations the way CloudFront stores them: no CNAMEs and an
/// empty CNAME list are the same, and so are no policy and an empty ID.
fn normalized(config: &DistributionConfig) -> DistributionConfig {
    let mut config = config.clone();
    if config.aliases.as_ref().is_some_and(|a| a.quantity == 0) {
        config.aliases = None;
    }
    if config
        .continuous_deployment_policy_id
        .as_deref()
        .is_some_and(str::is_empty)
    {
        config.continuous_deployment_policy_id = None;
    }
    if config.staging.is_none() {
        config.staging = Some(false);
    }
    config
}

fn same(a: &DistributionConfig, b: &DistributionConfig) -> bool {
    normalized(a) == normalized(b)
}

impl CloudFrontTarget {
    /// A target for the plan's CloudFront section, with a client from the
    /// standard AWS chain (CloudFront is global: region us-east-1; endpoint
    /// from `AWS_ENDPOINT_URL` when set). `release.artifact` is the plan's
    /// artifact for this target (`None` when no stage deploys to it: then
    /// only `observe`, `preflight` and `Rollback` can act); a pinned stable
    /// version needs nothing here (a rollback after promotion restores the
    /// configuration kept on the staging distribution). A `configFile`
    /// artifact is read now, relative to `release.plan_dir`: a bad file
    /// fails here, before anything moves.
    pub async fn from_spec(
        name: impl Into<String>,
        spec: &raw::CloudFrontTarget,
        release: &PlanRelease<'_>,
    ) -> Result<Self, ConstructError> {
        let release = release
            .artifact
            .map(|artifact| Release::from_artifact(artifact, release.plan_dir))
            .transpose()?;
        let sdk = deployctl_aws::config::load(Some("us-east-1")).await;
        let client = Client::from_conf(cloudfront_config(&sdk).build());
        let cloudwatch =
            aws_sdk_cloudwatch::Client::from_conf(crate::guard::cloudwatch_config(&sdk).build());
        Ok(
            CloudFrontTarget::with_client(name, client, &spec.distribution_id, release)
                .with_traffic_guard(cloudwatch, TRAFFIC_WINDOW),
        )
    }

    /// A target over an existing client (tests, shared clients).
    pub fn with_client(
        name: impl Into<String>,
        client: Client,
        distribution_id: impl Into<String>,
        release: Option<Release>,
    ) -> Self {
        CloudFrontTarget {
            name: name.into(),
            distribution_id: distribution_id.into(),
            release,
            api: Api { client },
            wait: WaitOptions::default(),
            progress: None,
            memory: Arc::default(),
            traffic: None,
        }
    }

    /// Guards every gate on this target with the staging traffic check
    /// ([`crate::traffic_guard`]), reading request counts from `cloudwatch`
    /// over the last `window`.
    pub fn with_traffic_guard(
        mut self,
        cloudwatch: aws_sdk_cloudwatch::Client,
        window: Duration,
    ) -> Self {
        self.traffic = Some((cloudwatch, window));
        self
    }

    /// How long and how often `apply` polls for `Deployed`.
    pub fn with_wait(mut self, wait: WaitOptions) -> Self {
        self.wait = wait;
        self
    }

    /// Where progress goes while `apply` waits for propagation.
    pub fn on_progress(mut self, progress: ProgressFn) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The primary distribution's ID.
    pub fn distribution_id(&self) -> &str {
        &self.distribution_id
    }

    /// The CloudFront client (the traffic guard shares it).
    pub fn client(&self) -> &Client {
        &self.api.client
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remember(&self, snapshot: &Snapshot) {
        let mut memory = self.memory();
        memory.written.wrote(snapshot.fingerprint());
        memory.previous = snapshot.previous();
    }

    /// What `observe` keeps: the previous label, and the fingerprint only
    /// when this target holds none. Once it has read or written during the
    /// run, a re-read must not adopt another writer's change as its own
    /// (the engine observes again before retrying a `Conflict`).
    fn remember_observed(&self, snapshot: &Snapshot) {
        let mut memory = self.memory();
        memory.written.observed(snapshot.fingerprint());
        memory.previous = snapshot.previous();
    }

    /// Polls `id` until CloudFront reports it `Deployed`, reporting
    /// progress; `Timeout` past the limit. Polls' request IDs are not kept:
    /// they are reads, and there can be hundreds.
    async fn wait_deployed(&self, id: &str, purpose: &str) -> Result<(), AdapterError> {
        let start = Instant::now();
        loop {
            let dist = self.api.distribution(id, &mut Vec::new()).await?;
            if dist.deployed() {
                return Ok(());
            }
            let elapsed = start.elapsed();
            if elapsed >= self.wait.timeout {
                return Err(AdapterError::Timeout {
                    message: format!(
                        "CloudFront distribution {id} is still {} after {}s ({purpose}); \
                         propagation can take many minutes: apply again (or `deployctl resume`) \
                         to keep waiting, or raise the wait limit",
                        dist.status,
                        elapsed.as_secs()
                    ),
                });
            }
            if let Some(progress) = &self.progress {
                progress(&WaitProgress {
                    target: self.name.clone(),
                    distribution_id: id.to_owned(),
                    purpose: purpose.to_owned(),
                    status: dist.status.clone(),
                    elapsed,
                    timeout: self.wait.timeout,
                });
            }
            let pause = self.wait.interval.min(self.wait.timeout - elapsed);
            match self.api.client.config().sleep_impl() {
                Some(sleep) => sleep.sleep(pause).await,
                None => {
                    return Err(rejected(
                        "the CloudFront client has no sleep implementation to wait with; \
                         build it from an SdkConfig with a Tokio runtime"
                            .into(),
                    ));
                }
            }
        }
    }

    async fn deploy(
        &self,
        snap: &Snapshot,
        version: &str,
        key: &IdempotencyKey,
        ids: &mut Vec<String>,
    ) -> Result<bool, AdapterError> {
        if !tags::valid_label(version) {
            return Err(rejected(format!(
                "version label {version:?} cannot be stored in a CloudFront tag (letters, digits, \
                 spaces and _ . : / = + - @, at most 256 characters); rename the artifact's version"
            )));
        }
        let Some(release) = &self.release else {
            return Err(rejected(format!(
                "cannot deploy {version} to {}: the target was built without a CloudFront \
                 artifact (cloudfront.originDomain or cloudfront.configFile)",
                self.name
            )));
        };
        if let Some((candidate, weight)) = snap.candidate() {
            if candidate == version {
                return Ok(false);
            }
            if weight > 0 {
                return Err(rejected(format!(
                    "cannot deploy {version}: {candidate} is taking {weight}% of {}'s traffic; \
                     roll it back or promote it first",
                    self.distribution_id
                )));
            }
        }
        if let Some(foreign) = snap.foreign_policy() {
            return Err(rejected(format!(
                "distribution {} already has continuous deployment policy {} routing to {}, \
                 which deployctl did not create; remove it first",
                self.distribution_id,
                foreign.id,
                foreign.staging_domain().unwrap_or("?")
            )));
        }
        let primary = &snap.primary;
        let mut changed = false;
        if primary.tag(tags::PREVIOUS).is_some() {
            // A new release ends the previous one: its configuration is
            // about to be overwritten on the staging distribution.
            self.api.untag(&primary.arn, &[tags::PREVIOUS], ids).await?;
            changed = true;
        }
        let staging = match &snap.staging {
            Some(staging) => staging.clone(),
            None => {
                let id = self
                    .api
                    .copy_as_staging(primary, &caller_reference(&primary.id, key), ids)
                    .await?;
                let copy = self.api.distribution(&id, ids).await?;
                self.api
                    .tag(
                        &copy.arn,
                        &[(tags::PRIMARY, &primary.id), (tags::ROLE, tags::ROLE_IDLE)],
                        ids,
                    )
                    .await?;
                self.api
                    .tag(&primary.arn, &[(tags::STAGING, &id)], ids)
                    .await?;
                changed = true;
                self.api.distribution_with_tags(&id, ids).await?
            }
        };
        let desired = staging_config(&release.apply(primary.config.clone())?, &staging);
        if !same(&desired, &staging.config) {
            self.api.update(&staging, desired, ids).await?;
            changed = true;
        }
        if staging.tag(tags::ROLE) != Some(tags::ROLE_CANDIDATE)
            || staging.tag(tags::VERSION) != Some(version)
        {
            self.api
                .tag(
                    &staging.arn,
                    &[(tags::ROLE, tags::ROLE_CANDIDATE), (tags::VERSION, version)],
                    ids,
                )
                .await?;
            changed = true;
        }
        // CloudFront attaches a policy only to a Deployed staging distribution.
        self.wait_deployed(&staging.id, "staging configuration")
            .await?;
        let policy = match snap.our_policy() {
            Some(policy) => policy.clone(),
            None => match self.api.find_policy_for(&staging.domain, ids).await? {
                Some(policy) => policy,
                None => {
                    changed = true;
                    self.api.create_policy(&staging.domain, ids).await?
                }
            },
        };
        if !policy.is_weight(false, 0) {
            self.api
                .set_weight(&policy, &staging.domain, false, 0, ids)
                .await?;
            changed = true;
        }
        if primary.policy_id() != Some(policy.id.as_str()) {
            let mut config = primary.config.clone();
            config.continuous_deployment_policy_id = Some(policy.id.clone());
            self.api.update(primary, config, ids).await?;
            changed = true;
            self.wait_deployed(&primary.id, "attaching the continuous deployment policy")
                .await?;
        }
        Ok(changed)
    }

    async fn set_weight(
        &self,
        snap: &Snapshot,
        percent: u8,
        ids: &mut Vec<String>,
    ) -> Result<bool, AdapterError> {
        let (Some(_), Some(policy), Some(staging)) =
            (snap.candidate(), snap.our_policy(), snap.staging.as_ref())
        else {
            return Err(rejected(format!(
                "cannot set weight {percent}%: no candidate is deployed on distribution {}",
                self.distribution_id
            )));
        };
        if policy.is_weight(percent > 0, percent) {
            return Ok(false);
        }
        self.api
            .set_weight(policy, &staging.domain, percent > 0, percent, ids)
            .await?;
        Ok(true)
    }

    async fn promote(&self, snap: &Snapshot, ids: &mut Vec<String>) -> Result<bool, AdapterError> {
        let (Some((candidate, _)), Some(policy), Some(staging)) =
            (snap.candidate(), snap.our_policy(), snap.staging.as_ref())
        else {
            // Nothing deployed beside the primary: promoted already, or
            // nothing to promote.
            return Ok(false);
        };
        let primary = &snap.primary;
        let old_label = snap.stable();
        let interrupted = old_label == candidate;
        if !interrupted {
            // CloudFront promotes only settled distributions.
            self.wait_deployed(&staging.id, "staging configuration before promotion")
                .await?;
            self.wait_deployed(&primary.id, "primary before promotion")
                .await?;
            self.api.promote(primary, staging, ids).await?;
            self.api
                .tag(
                    &primary.arn,
                    &[(tags::VERSION, &candidate), (tags::PREVIOUS, &old_label)],
                    ids,
                )
                .await?;
        }
        // Promotion disables the policy; detach it too, so nothing routes
        // to staging until the next Deploy attaches it again.
        let fresh_policy = self.api.policy(&policy.id, ids).await?;
        if !fresh_policy.is_weight(false, 0) {
            self.api
                .set_weight(&fresh_policy, &staging.domain, false, 0, ids)
                .await?;
        }
        let fresh = self.api.distribution(&primary.id, ids).await?;
        let mut detached = fresh.config.clone();
        detached.continuous_deployment_policy_id = Some(String::new());
        self.api.update(&fresh, detached, ids).await?;
        self.wait_deployed(&primary.id, "promotion").await?;
        let staging_now = self.api.distribution(&staging.id, ids).await?;
        if interrupted {
            // An earlier attempt promoted but stopped before saving the
            // primary's old configuration: it is gone; the release is final.
            self.api.untag(&primary.arn, &[tags::PREVIOUS], ids).await?;
            self.api
                .tag(&staging_now.arn, &[(tags::ROLE, tags::ROLE_IDLE)], ids)
                .await?;
        } else {
            // Keep what the primary served, for a rollback after promotion.
            self.api
                .update(
                    &staging_now,
                    staging_config(&primary.config, &staging_now),
                    ids,
                )
                .await?;
            self.api
                .tag(
                    &staging_now.arn,
                    &[
                        (tags::ROLE, tags::ROLE_PREVIOUS),
                        (tags::VERSION, &old_label),
                    ],
                    ids,
                )
                .await?;
        }
        Ok(true)
    }

    async fn rollback(
        &self,
        snap: &Snapshot,
        to: Option<&str>,
        ids: &mut Vec<String>,
    ) -> Result<bool, AdapterError> {
        let stable = snap.stable();
        let primary = &snap.primary;
        if let (Some(policy), Some(staging)) = (snap.our_policy(), snap.staging.as_ref()) {
            if let Some(to) = to
                && to != stable
            {
                return Err(rejected(format!(
                    "cannot roll {} back to {to}: it serves {stable}, with {} beside it",
                    self.distribution_id,
                    snap.candidate().map_or("nothing".into(), |(c, _)| c)
                )));
            }
            if !policy.is_weight(false, 0) {
                self.api
                    .set_weight(policy, &staging.domain, false, 0, ids)
                    .await?;
            }
            let mut detached = primary.config.clone();
            detached.continuous_deployment_policy_id = Some(String::new());
            self.api.update(primary, detached, ids).await?;
            if staging.tag(tags::ROLE) == Some(tags::ROLE_CANDIDATE) {
                self.api
                    .tag(&staging.arn, &[(tags::ROLE, tags::ROLE_IDLE)], ids)
                    .await?;
            }
            self.wait_deployed(&primary.id, "detaching the continuous deployment policy")
                .await?;
            return Ok(true);
        }
        if let (Some(previous), Some(staging)) = (snap.previous(), snap.staging.as_ref()) {
            match to {
                None => {}
                Some(to) if to == previous => {}
                Some(to) if to == stable => return Ok(false),
                Some(to) => {
                    return Err(rejected(format!(
                        "cannot roll {} back to {to}: only {previous} (before the last \
                         promotion) is kept",
                        self.distribution_id
                    )));
                }
            }
            let restored = primary_config(&staging.config, primary);
            if !same(&restored, &primary.config) {
                self.api.update(primary, restored, ids).await?;
            }
            self.api
                .tag(&primary.arn, &[(tags::VERSION, &previous)], ids)
                .await?;
            self.api.untag(&primary.arn, &[tags::PREVIOUS], ids).await?;
            self.api
                .tag(&staging.arn, &[(tags::ROLE, tags::ROLE_IDLE)], ids)
                .await?;
            self.wait_deployed(&primary.id, "restoring the previous configuration")
                .await?;
            return Ok(true);
        }
        match to {
            Some(to) if to != stable => Err(rejected(format!(
                "cannot roll {} back to {to}: it serves {stable} and keeps no other version",
                self.distribution_id
            ))),
            _ => Ok(false),
        }
    }

    async fn retire(&self, snap: &Snapshot, ids: &mut Vec<String>) -> Result<bool, AdapterError> {
        if snap.primary.tag(tags::PREVIOUS).is_none() {
            return Ok(false);
        }
        self.api
            .untag(&snap.primary.arn, &[tags::PREVIOUS], ids)
            .await?;
        if let Some(staging) = &snap.staging
            && staging.tag(tags::ROLE) == Some(tags::ROLE_PREVIOUS)
        {
            self.api
                .tag(&staging.arn, &[(tags::ROLE, tags::ROLE_IDLE)], ids)
                .await?;
        }
        Ok(true)
    }

    async fn apply_inner(
        &self,
        action: &TrafficAction,
        key: &IdempotencyKey,
    ) -> Result<Applied, AdapterError> {
        if let TrafficAction::SetWeight { percent } = action {
            validate_weight(*percent)?;
        }
        let mut request_ids = Vec::new();
        let snap = self
            .api
            .snapshot(&self.distribution_id, &mut request_ids)
            .await?;
        let now = snap.fingerprint();
        let checked = self.memory().written.check(&now);
        if let Err(Changed { left }) = checked {
            return Err(AnotherWriter {
                resource: format!(
                    "distribution {} (or its staging distribution or policy)",
                    self.distribution_id
                ),
                left: left.to_string(),
                now: now.to_string(),
                rollback: "put all traffic back on the primary",
            }
            .refusal()
            .with_request_id(request_ids.first()));
        }
        let changed = self.act(action, &snap, key, &mut request_ids).await;
        let changed = match changed {
            Ok(changed) => changed,
            // A write that lost a race (412) was someone else's doing: the
            // fingerprint stays, and the retry's read reports the writer.
            Err(error @ AdapterError::Conflict { .. }) => return Err(error),
            Err(error) => {
                // Our own writes may have landed before the failure: the
                // retry reads afresh instead of calling them someone else's.
                self.memory().written.forget();
                return Err(error);
            }
        };
        let after = if changed {
            let after = self
                .api
                .snapshot(&self.distribution_id, &mut request_ids)
                .await;
            // Unread, our writes would look like someone else's next time.
            after.inspect_err(|_| self.memory().written.forget())?
        } else {
            snap
        };
        self.remember(&after);
        Ok(Applied {
            changed,
            request_ids,
        })
    }

    /// Carries out `action` from `snap`; whether anything changed.
    async fn act(
        &self,
        action: &TrafficAction,
        snap: &Snapshot,
        key: &IdempotencyKey,
        request_ids: &mut Vec<String>,
    ) -> Result<bool, AdapterError> {
        match action {
            TrafficAction::SetHeaderRoute { .. } => Err(AdapterError::no_header_routes(format!(
                "CloudFront distribution {}",
                self.distribution_id
            ))),
            TrafficAction::Deploy { version } => self.deploy(snap, version, key, request_ids).await,
            TrafficAction::SetWeight { percent: 100 } | TrafficAction::Promote => {
                self.promote(snap, request_ids).await
            }
            TrafficAction::SetWeight { percent } => {
                self.set_weight(snap, *percent, request_ids).await
            }
            TrafficAction::Retire => self.retire(snap, request_ids).await,
            TrafficAction::Rollback { to } => self.rollback(snap, to.as_deref(), request_ids).await,
        }
    }

    fn observed(snap: &Snapshot) -> Observed {
        let (candidate, weight) = match snap.candidate() {
            Some((candidate, weight)) => (Some(candidate), weight),
            None => (None, 0),
        };
        Observed {
            stable: Some(snap.stable()),
            candidate,
            weight,
            waves: None,
        }
    }
}

impl Target for CloudFrontTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> TargetKind {
        TargetKind::CloudFront
    }

    fn observe(&self) -> BoxFuture<'_, Result<Observed, AdapterError>> {
        Box::pin(async move {
            let snap = self
                .api
                .snapshot(&self.distribution_id, &mut Vec::new())
                .await?;
            self.remember_observed(&snap);
            Ok(Self::observed(&snap))
        })
    }

    fn preflight(&self) -> BoxFuture<'_, Result<Preflight, AdapterError>> {
        Box::pin(async move {
            let snap = self
                .api
                .snapshot(&self.distribution_id, &mut Vec::new())
                .await?;
            let primary = &snap.primary;
            let stable = snap.stable();
            let mut problems = Vec::new();
            if !primary.deployed() {
                problems.push(format!(
                    "it is {} (wait until it is Deployed)",
                    primary.status
                ));
            }
            if !primary.config.enabled {
                problems.push("it is disabled".to_owned());
            }
            if let Some(foreign) = snap.foreign_policy() {
                problems.push(format!(
                    "it has continuous deployment policy {} (routing to {}) that deployctl did not create",
                    foreign.id,
                    foreign.staging_domain().unwrap_or("?")
                ));
            }
            let origin =
                crate::release::default_origin_domain(&primary.config).unwrap_or("no origin");
            let (rollback_ready, detail) = if problems.is_empty() {
                (
                    true,
                    format!(
                        "distribution {} serves {stable} (origin {origin}), is Deployed and \
                         enabled, with no foreign continuous deployment policy",
                        self.distribution_id
                    ),
                )
            } else {
                (
                    false,
                    format!(
                        "distribution {} serves {stable}, but {}",
                        self.distribution_id,
                        problems.join("; ")
                    ),
                )
            };
            Ok(Preflight {
                verified: Vec::new(),
                stable_version: stable,
                rollback_ready,
                detail,
                identity: primary.arn.clone(),
                // Continuous deployment sends at most 15 % of requests to
                // the staging distribution; promotion moves the rest.
                capabilities: Capabilities::weights_up_to(MAX_STAGING_PERCENT),
            })
        })
    }

    fn probe(&self, _check: &GateCheck) -> Option<Box<dyn HealthProbe>> {
        // CloudFront declares only service gates (HTTP, Prometheus,
        // CloudWatch), which come with their own probes; `guard` wraps them
        // so that no staging traffic never passes.
        None
    }

    fn guard(&self, probe: Box<dyn HealthProbe>) -> Box<dyn HealthProbe> {
        match &self.traffic {
            Some((cloudwatch, window)) => crate::traffic_guard(
                self.api.client.clone(),
                cloudwatch.clone(),
                &self.distribution_id,
                *window,
                probe,
            ),
            None => probe,
        }
    }

    fn moves(&self) -> Moves<'_> {
        Moves::traffic(self)
    }
}

impl TrafficTarget for CloudFrontTarget {
    fn plan_traffic(
        &self,
        observed: &Observed,
        action: &TrafficAction,
    ) -> Result<Vec<PlannedCall>, AdapterError> {
        let id = &self.distribution_id;
        let call = |description: String| PlannedCall { description };
        let promote = || {
            vec![
                call(format!(
                    "cloudfront:UpdateDistributionWithStagingConfig {id} ← its staging distribution"
                )),
                call(format!(
                    "cloudfront:UpdateDistribution {id} (detach the continuous deployment policy)"
                )),
                call(
                    "cloudfront:UpdateDistribution <staging> (keep the previous configuration)"
                        .into(),
                ),
            ]
        };
        match action {
            TrafficAction::SetHeaderRoute { .. } => Err(AdapterError::no_header_routes(format!(
                "CloudFront distribution {}",
                self.distribution_id
            ))),
            TrafficAction::Deploy { version } => {
                if observed.candidate.as_deref() == Some(version.as_str()) {
                    return Ok(Vec::new());
                }
                let change = match &self.release {
                    Some(release) => release.describe(),
                    None => "no artifact".into(),
                };
                Ok(vec![
                    call(format!(
                        "cloudfront:CopyDistribution {id} → staging (unless its staging distribution exists)"
                    )),
                    call(format!(
                        "cloudfront:UpdateDistribution <staging> ({change}), tagged {version}"
                    )),
                    call(
                        "cloudfront:CreateContinuousDeploymentPolicy <staging> (weight 0, disabled, sticky sessions)"
                            .into(),
                    ),
                    call(format!(
                        "cloudfront:UpdateDistribution {id} (attach the policy)"
                    )),
                ])
            }
            TrafficAction::SetWeight { percent } => {
                validate_weight(*percent)?;
                if *percent == 100 {
                    return Ok(if observed.candidate.is_some() {
                        promote()
                    } else {
                        Vec::new()
                    });
                }
                if observed.candidate.is_some() && observed.weight == *percent {
                    return Ok(Vec::new());
                }
                // Dry runs of a whole release plan every step from today's
                // distribution, before anything is deployed: name the call.
                Ok(vec![call(format!(
                    "cloudfront:UpdateContinuousDeploymentPolicy → {percent}% of {id}'s requests to staging"
                ))])
            }
            TrafficAction::Promote => Ok(if observed.candidate.is_some() {
                promote()
            } else {
                Vec::new()
            }),
            TrafficAction::Retire => Ok(vec![call(format!(
                "cloudfront:UntagResource {id} {} (forget the previous configuration)",
                tags::PREVIOUS
            ))]),
            TrafficAction::Rollback { to } => {
                if observed.candidate.is_some() {
                    return Ok(vec![
                        call(
                            "cloudfront:UpdateContinuousDeploymentPolicy (disabled, weight 0)"
                                .into(),
                        ),
                        call(format!(
                            "cloudfront:UpdateDistribution {id} (detach the continuous deployment policy)"
                        )),
                    ]);
                }
                let previous = self.memory().previous.clone();
                let restore = match (to, &observed.stable) {
                    (Some(to), Some(stable)) if to != stable => Some(to.clone()),
                    (None, _) => previous,
                    _ => None,
                };
                Ok(match restore {
                    Some(label) => vec![call(format!(
                        "cloudfront:UpdateDistribution {id} (restore {label} from the staging distribution)"
                    ))],
                    None => Vec::new(),
                })
            }
        }
    }

    fn apply_traffic<'a>(
        &'a self,
        action: &'a TrafficAction,
        key: &'a IdempotencyKey,
    ) -> BoxFuture<'a, Result<Applied, AdapterError>> {
        Box::pin(self.apply_inner(action, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_cloudfront_cannot_route_are_refused() {
        for percent in [16, 50, 99, 101, 255] {
            assert!(validate_weight(percent).is_err(), "{percent}");
        }
        for percent in [0, 1, 5, 15, 100] {
            assert!(validate_weight(percent).is_ok(), "{percent}");
        }
    }

    #[test]
    fn caller_references_are_stable_and_safe() {
        let key = IdempotencyKey("run-1/stage api/3".into());
        let a = caller_reference("E123", &key);
        assert_eq!(a, caller_reference("E123", &key));
        assert_eq!(a, "deployctl-E123-run-1/stage-api/3");
        let long = IdempotencyKey("x".repeat(300));
        assert_eq!(caller_reference("E1", &long).len(), 128);
    }
}
