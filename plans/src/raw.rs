//! The plan file's wire format, `deployctl.io/v1`, exactly as it is written in YAML.
//!
//! These types say what may appear in a plan file and nothing more: every
//! struct denies unknown fields, numbers are kept wide (`i64`, `f64`) and
//! durations stay strings, so that range and format mistakes reach
//! [`crate::validate`] as data and are reported together, each at its own
//! line and column, instead of stopping the parse at the first one.
//!
//! Kind-specific sections are written as one optional field per kind (a
//! target has `kubernetes:` or `lambda:` …) rather than as serde enums, for
//! the same reason: "exactly one of" is checked by the validator, which can
//! name the alternatives and point at the block.
//!
//! A target kind's own sections (its target section, its artifact sources)
//! are defined in that kind's module (`kinds/<kind>.rs`), beside its checks
//! and its report text, and re-exported here: this module stays the one
//! place the whole wire format is reached from, and the containers that
//! list the kinds ([`Target`], [`Artifact`]) live here.
//!
//! The JSON Schema printed by `deployctl schema` is derived from these types,
//! and their doc comments become its descriptions.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::kinds::cloudfront::{CloudFrontArtifact, CloudFrontTarget};
pub use crate::kinds::ecs::EcsTarget;
pub use crate::kinds::fleet::{FirmwareArtifact, FirmwareSignature, FleetTarget};
pub use crate::kinds::image::ImageArtifact;
pub use crate::kinds::kubernetes::{EksCluster, HttpRouteRef, KubernetesTarget};
pub use crate::kinds::lambda::{LambdaArtifact, LambdaTarget, S3Location};
pub use crate::kinds::sim::SimTarget;

/// The only `apiVersion` this release understands.
pub const API_VERSION: &str = "deployctl.io/v1";
/// The only `kind` of document a plan file may hold.
pub const KIND: &str = "Plan";

/// A release plan: targets, the artifacts that go to them, and the stages
/// (a DAG) that move each target from its stable version to the new one.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawPlan {
    /// Must be `deployctl.io/v1`.
    pub api_version: String,
    /// Must be `Plan`.
    pub kind: String,
    pub metadata: Metadata,
    /// Named deploy targets. A stage refers to a target by its key.
    pub targets: BTreeMap<String, Target>,
    /// The new version for each target, keyed by target name.
    #[serde(default)]
    pub artifacts: BTreeMap<String, Artifact>,
    /// Stages in any order; `after:` edges decide what runs first.
    pub stages: Vec<Stage>,
    /// Named health gates that stages refer to.
    #[serde(default)]
    pub gates: BTreeMap<String, Gate>,
    /// Named approval gates that stages refer to.
    #[serde(default)]
    pub approvals: BTreeMap<String, Approval>,
    #[serde(default)]
    pub rollback: Option<Rollback>,
    #[serde(default)]
    pub notifications: Vec<Notification>,
}

/// Who and what this release is.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    /// Lowercase letters, digits and `-`, at most 63 characters.
    pub name: String,
    /// Where this release goes, e.g. `production` or `staging`. Policies key on it.
    pub environment: String,
    /// The team or person accountable for the release.
    #[serde(default)]
    pub owner: Option<String>,
    /// Change ticket or pull request this release implements.
    #[serde(default)]
    pub change_ref: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A deploy target. Exactly one kind section must be present.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Target {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub kubernetes: Option<KubernetesTarget>,
    #[serde(default)]
    pub lambda: Option<LambdaTarget>,
    #[serde(default)]
    pub cloudfront: Option<CloudFrontTarget>,
    #[serde(default)]
    pub ecs: Option<EcsTarget>,
    #[serde(default)]
    pub fleet: Option<FleetTarget>,
    #[serde(default)]
    pub sim: Option<SimTarget>,
}

/// The new version for one target. `version` labels it for people; exactly
/// one source section says what to deploy and must suit the target's kind.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Artifact {
    /// Human version label shown in plans, status and the audit trail.
    pub version: String,
    /// Container image, for `kubernetes` and `ecs` targets. Pin by digest.
    #[serde(default)]
    pub image: Option<ImageArtifact>,
    /// Lambda code or an already published version, for `lambda` targets.
    #[serde(default)]
    pub lambda: Option<LambdaArtifact>,
    /// Staging configuration, for `cloudfront` targets.
    #[serde(default)]
    pub cloudfront: Option<CloudFrontArtifact>,
    /// ECS task definition, for `ecs` targets.
    #[serde(default)]
    pub task_definition: Option<String>,
    /// Signed firmware image, for `fleet` targets.
    #[serde(default)]
    pub firmware: Option<FirmwareArtifact>,
}

/// One stage moves one target with one strategy.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Stage {
    /// Unique within the plan; `after:` refers to it.
    pub name: String,
    /// Key of an entry in `targets`.
    pub target: String,
    /// Stages that must succeed before this one starts.
    #[serde(default)]
    pub after: Vec<String>,
    /// The stage rolls back when it runs longer than this (e.g. `45m`).
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub canary: Option<Canary>,
    #[serde(default)]
    pub blue_green: Option<BlueGreen>,
    /// Over-the-air waves, for `fleet` targets.
    #[serde(default)]
    pub waves: Option<Waves>,
}

/// Ordered canary steps; `gates` are checked throughout, from the first
/// traffic shift until promotion.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Canary {
    pub steps: Vec<CanaryStep>,
    /// Background gates, checked from the first step to promotion.
    #[serde(default)]
    pub gates: Vec<String>,
}

/// One canary step. Exactly one field must be present.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CanaryStep {
    /// Percent of traffic (0–100) sent to the new version.
    #[serde(default)]
    pub set_weight: Option<i64>,
    /// Hold the current weight for a while.
    #[serde(default)]
    pub pause: Option<Pause>,
    /// Run gates to completion before going on.
    #[serde(default)]
    pub analysis: Option<Analysis>,
    /// Wait until the named approval gate is satisfied.
    #[serde(default)]
    pub approval: Option<String>,
    /// Send requests whose headers match to the canary, whatever the
    /// weight (Argo Rollouts' `setHeaderRoute`); without `match`, the named
    /// header route is removed. Promotion and rollback remove them all.
    #[serde(default)]
    pub set_header_route: Option<HeaderRoute>,
}

/// A named header route of a canary.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderRoute {
    pub name: String,
    /// Every header listed must match (one request, all of them).
    #[serde(default, rename = "match")]
    pub matches: Vec<HeaderMatch>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderMatch {
    pub header_name: String,
    pub header_value: HeaderValue,
}

/// How a header's value matches: exactly (Gateway API's core `Exact`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderValue {
    pub exact: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Pause {
    /// How long to hold, e.g. `30s`, `5m`, `1h30m`.
    pub duration: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Analysis {
    /// Names of entries in `gates`; all must pass.
    pub gates: Vec<String>,
}

/// Blue-green: bring the new version up beside the old, check it, switch
/// all traffic at once, keep the old version for `scaleDownDelay`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BlueGreen {
    /// Gates run against the new version before the switch.
    #[serde(default)]
    pub pre_promotion_gates: Vec<String>,
    /// Gates run after the switch; a failure switches back.
    #[serde(default)]
    pub post_promotion_gates: Vec<String>,
    /// Wait for this approval before switching; without it the switch is automatic.
    #[serde(default)]
    pub approval: Option<String>,
    /// How long the old version stays up after the switch (default `30s`).
    #[serde(default)]
    pub scale_down_delay: Option<String>,
}

/// OTA waves for a device fleet, in order.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Waves {
    pub steps: Vec<Wave>,
    /// Percent of a wave's devices that must succeed before the next wave starts.
    pub success_threshold: f64,
    pub abort: WaveAbort,
    /// A device that has not reported within this time counts as failed.
    pub device_timeout: String,
    /// Dispatch rate limit, devices per minute (1–1000).
    pub max_devices_per_minute: i64,
    /// Wait between a wave's success and the next wave.
    #[serde(default)]
    pub bake_time: Option<String>,
    /// Gates checked while the waves run.
    #[serde(default)]
    pub gates: Vec<String>,
}

/// One wave: `percent` of the fleet or a `count` of devices (exactly one).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Wave {
    /// Share of the whole fleet in this wave (not cumulative).
    #[serde(default)]
    pub percent: Option<f64>,
    /// Number of devices in this wave.
    #[serde(default)]
    pub count: Option<i64>,
    /// Wait for this approval before the wave starts.
    #[serde(default)]
    pub approval: Option<String>,
}

/// When to stop a rollout: once at least `minDevices` have reported, a
/// failure rate above `failureThreshold` percent aborts and rolls back.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WaveAbort {
    pub failure_threshold: f64,
    pub min_devices: i64,
}

/// A health check. Exactly one kind section; the rest says how often it is
/// measured and when it fails. A measurement with no data is inconclusive,
/// never a pass: too many inconclusive results fail the gate too.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Gate {
    #[serde(default)]
    pub http: Option<HttpGate>,
    #[serde(default)]
    pub prometheus: Option<PrometheusGate>,
    #[serde(default)]
    pub cloudwatch: Option<CloudWatchGate>,
    #[serde(default)]
    pub kubernetes: Option<KubernetesGate>,
    #[serde(default)]
    pub fleet: Option<FleetGate>,
    /// Health reported by a `sim` target (sandbox and rehearsals).
    #[serde(default)]
    pub sim: Option<SimGate>,
    /// Time between measurements (default `10s`).
    #[serde(default)]
    pub interval: Option<String>,
    /// Measurements to take; the gate passes after this many without failing (default 3).
    #[serde(default)]
    pub count: Option<i64>,
    /// Failed measurements tolerated; one more fails the gate (default 0).
    #[serde(default)]
    pub failure_limit: Option<i64>,
    /// Consecutive measurement errors (timeouts, 5xx) tolerated (default 4).
    #[serde(default)]
    pub consecutive_error_limit: Option<i64>,
    /// Consecutive no-data results tolerated before the gate fails (default 3).
    #[serde(default)]
    pub inconclusive_limit: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpGate {
    pub url: String,
    /// Default `GET`.
    #[serde(default)]
    pub method: Option<String>,
    /// Accepted status codes (default `[200]`).
    #[serde(default)]
    pub expect_status: Vec<i64>,
    /// The body must contain this text.
    #[serde(default)]
    pub expect_body: Option<String>,
    /// Per-request timeout (default `5s`).
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Allow a plain `http://` URL. Off by default: probes use TLS.
    #[serde(default)]
    pub allow_insecure_http: bool,
}

/// An instant query whose single value is compared with a threshold.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrometheusGate {
    /// Base URL of the Prometheus HTTP API.
    pub address: String,
    pub query: String,
    /// One of `<`, `<=`, `>`, `>=`, `==`, `!=`: the measurement passes when `value <comparison> threshold`.
    pub comparison: String,
    pub threshold: f64,
    #[serde(default)]
    pub allow_insecure_http: bool,
}

/// CloudWatch alarms that must be OK, and metric thresholds.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CloudWatchGate {
    #[serde(default)]
    pub region: Option<String>,
    /// Alarm names; any in ALARM fails, INSUFFICIENT_DATA is inconclusive.
    #[serde(default)]
    pub alarms: Vec<String>,
    #[serde(default)]
    pub metrics: Vec<MetricThreshold>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricThreshold {
    pub namespace: String,
    pub metric_name: String,
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    /// `Average`, `Sum`, `Minimum`, `Maximum`, `SampleCount` or `pNN`.
    pub statistic: String,
    /// Aggregation period (default `60s`).
    #[serde(default)]
    pub period: Option<String>,
    pub comparison: String,
    pub threshold: f64,
}

/// Readiness of the target's pods.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubernetesGate {
    /// Percent of the new version's pods that must be Ready (default 100).
    #[serde(default)]
    pub min_ready_percent: Option<f64>,
}

/// Success rate of devices in the current wave.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FleetGate {
    /// Percent of reporting devices that must have succeeded.
    pub min_success_rate: f64,
    /// Device-side anomaly metrics (Device Defender style) that must stay below their thresholds.
    #[serde(default)]
    pub max_anomaly_rate: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SimGate {
    /// Percent of simulated requests that must succeed (default 99).
    #[serde(default)]
    pub min_success_rate: Option<f64>,
}

/// An approval gate: `required` distinct approvers holding `role`, each
/// confirming with a one-time MFA code. The run's initiator never counts.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Approval {
    pub role: String,
    /// Distinct approvers needed (default 1).
    #[serde(default)]
    pub required: Option<i64>,
    /// How long to wait for approvers (default `24h`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// `rollback` (default) or `pause`: what happens when the timeout passes.
    #[serde(default)]
    pub on_timeout: Option<String>,
}

/// What happens when something goes wrong.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rollback {
    /// Roll back by itself (default `true`).
    #[serde(default)]
    pub automatic: Option<bool>,
    /// Triggers: `gateFailed`, `error`, `timeout`, `kill` (default all).
    #[serde(default)]
    pub on: Vec<String>,
    /// `plan` (default): every stage that moved goes back; `stage`: only the failing one.
    #[serde(default)]
    pub scope: Option<String>,
    /// What "stable" is per target (keyed by target name). Default: the
    /// version live when the run starts, read during preflight. Fleet targets
    /// must name the firmware devices return to.
    #[serde(default)]
    pub stable: BTreeMap<String, Artifact>,
}

/// Where to tell people about run events. Exactly one channel.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Notification {
    /// Events: `started`, `paused`, `approvalRequested`, `gateFailed`,
    /// `rolledBack`, `rollbackIncomplete`, `killed`, `succeeded`,
    /// `securityEvent` (failed MFA codes and lockouts on the run's approvals).
    pub on: Vec<String>,
    #[serde(default)]
    pub sns: Option<SnsChannel>,
    #[serde(default)]
    pub webhook: Option<WebhookChannel>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SnsChannel {
    pub topic_arn: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookChannel {
    pub url: String,
    #[serde(default)]
    pub allow_insecure_http: bool,
}
