//! The validated plan: the only form of a plan the rest of deployctl accepts.
//!
//! A [`ValidatedPlan`] can only be made by [`crate::validate`], so holding one
//! proves every check passed: references resolve, the stage graph is acyclic,
//! numbers are in range, durations parsed, and every strategy and gate suits
//! its target's kind. Fields are typed (enums whose variants own their data),
//! so later code matches instead of re-checking strings.
//!
//! What each target kind supports (its row of the capability table) is
//! declared in that kind's module (`kinds/<kind>.rs`) with the rest of the
//! kind; [`TargetKind::capabilities`] reads it from there. The payloads of
//! [`TargetSpec`] live there too and are re-exported here.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::graph::ExecutionGraph;
use crate::kinds;
use crate::raw;

pub use crate::kinds::fleet::{FleetSelector, FleetSpec};
pub use crate::kinds::sim::SimSpec;

/// What kind of thing a target is; decides what it supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Kubernetes,
    Lambda,
    CloudFront,
    Ecs,
    Fleet,
    Sim,
}

/// A release strategy, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StrategyKind {
    Canary,
    BlueGreen,
    Waves,
}

/// A health gate's kind, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GateKind {
    Http,
    Prometheus,
    CloudWatch,
    Kubernetes,
    Fleet,
    Sim,
}

/// What one kind of target can do. Adapters promise exactly this much; a
/// plan asking for more is rejected at validation, not at 3 a.m.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    pub strategies: &'static [StrategyKind],
    pub gates: &'static [GateKind],
    /// Highest canary weight the platform allows before promotion.
    pub max_canary_weight: u8,
}

impl TargetKind {
    pub const ALL: [TargetKind; 6] = [
        TargetKind::Kubernetes,
        TargetKind::Lambda,
        TargetKind::CloudFront,
        TargetKind::Ecs,
        TargetKind::Fleet,
        TargetKind::Sim,
    ];

    /// The key that introduces this kind in a plan file.
    pub fn name(self) -> &'static str {
        kinds::of(self).name()
    }

    /// What reports call a target of this kind ("CloudFront", "ECS").
    pub fn label(self) -> &'static str {
        kinds::of(self).label()
    }

    /// This kind's row of the capability table, kept in the kind's own
    /// module (`kinds/<kind>.rs`).
    pub fn capabilities(self) -> Capabilities {
        kinds::of(self).capabilities()
    }
}

impl StrategyKind {
    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::Canary => "canary",
            StrategyKind::BlueGreen => "blueGreen",
            StrategyKind::Waves => "waves",
        }
    }
}

impl GateKind {
    pub fn name(self) -> &'static str {
        match self {
            GateKind::Http => "http",
            GateKind::Prometheus => "prometheus",
            GateKind::CloudWatch => "cloudwatch",
            GateKind::Kubernetes => "kubernetes",
            GateKind::Fleet => "fleet",
            GateKind::Sim => "sim",
        }
    }
}

/// A validated plan. Build one with [`crate::validate`].
#[derive(Debug, Clone)]
pub struct ValidatedPlan {
    pub metadata: raw::Metadata,
    /// SHA-256 of the plan file's bytes, hex: ties runs and audit records to
    /// exactly what was validated.
    pub digest: String,
    pub targets: BTreeMap<String, Target>,
    /// Stages in file order; [`StageId`] indexes this.
    pub stages: Vec<Stage>,
    pub gates: BTreeMap<String, Gate>,
    pub approvals: BTreeMap<String, Approval>,
    pub rollback: RollbackPolicy,
    pub notifications: Vec<Notification>,
    pub(crate) graph: ExecutionGraph,
}

impl ValidatedPlan {
    /// The stage DAG, acyclic by construction.
    pub fn graph(&self) -> &ExecutionGraph {
        &self.graph
    }

    pub fn stage(&self, id: StageId) -> &Stage {
        &self.stages[id.0]
    }

    /// The target a stage moves. Validation guarantees it exists.
    pub fn target_of(&self, stage: &Stage) -> &Target {
        &self.targets[&stage.target]
    }
}

/// Index of a stage in [`ValidatedPlan::stages`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct StageId(pub usize);

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub spec: TargetSpec,
    /// The new version, when a stage moves this target.
    pub artifact: Option<Artifact>,
    /// The version rollback returns to when the plan pins one.
    pub pinned_stable: Option<Artifact>,
    /// How the stage that moves this target moves it (the first such
    /// stage when several do): a target whose traffic split depends on it
    /// (a Kubernetes canary without a route) builds its router from this.
    pub strategy: Option<StrategyKind>,
    /// The wave settings of that stage, when it moves the target in waves
    /// (a fleet sets its jobs' rollout rate, abort and timeout from them).
    pub waves: Option<Waves>,
}

impl Target {
    pub fn kind(&self) -> TargetKind {
        self.spec.kind()
    }
}

#[derive(Debug, Clone)]
pub enum TargetSpec {
    Kubernetes(raw::KubernetesTarget),
    Lambda(raw::LambdaTarget),
    CloudFront(raw::CloudFrontTarget),
    Ecs(raw::EcsTarget),
    Fleet(FleetSpec),
    Sim(SimSpec),
}

impl TargetSpec {
    pub fn kind(&self) -> TargetKind {
        kinds::spec(self).kind()
    }
}

/// A version for a target and where it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    pub version: String,
    pub source: ArtifactSource,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ArtifactSource {
    /// Sim targets need nothing but a version label.
    Label,
    Image {
        reference: String,
        container: Option<String>,
    },
    LambdaPublished(String),
    LambdaS3(raw::S3Location),
    LambdaZip(String),
    CloudFrontConfigFile(String),
    CloudFrontOrigin(String),
    TaskDefinition(String),
    Firmware {
        location: String,
        sha256: String,
        /// `s3://` location of the signed manifest.
        manifest: String,
        signature: FirmwareSignature,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct FirmwareSignature {
    pub algorithm: SignatureAlgorithm,
    pub source: SignatureSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SignatureAlgorithm {
    #[serde(rename = "ed25519")]
    Ed25519,
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    #[serde(rename = "rsa-pss-sha256")]
    RsaPssSha256,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SignatureSource {
    SignerProfile(String),
    Detached(String),
    /// A `PUBLIC KEY` PEM file, relative to the plan.
    PublicKey(String),
    /// A KMS signing key (ID, ARN or alias).
    KmsKey(String),
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub id: StageId,
    pub name: String,
    pub target: String,
    pub after: Vec<String>,
    pub timeout: Option<Duration>,
    pub strategy: Strategy,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    Canary {
        steps: Vec<CanaryStep>,
        gates: Vec<String>,
    },
    BlueGreen {
        pre_promotion_gates: Vec<String>,
        post_promotion_gates: Vec<String>,
        approval: Option<String>,
        scale_down_delay: Duration,
    },
    Waves(Waves),
}

impl Strategy {
    pub fn kind(&self) -> StrategyKind {
        match self {
            Strategy::Canary { .. } => StrategyKind::Canary,
            Strategy::BlueGreen { .. } => StrategyKind::BlueGreen,
            Strategy::Waves(_) => StrategyKind::Waves,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum CanaryStep {
    SetWeight(u8),
    Pause(Duration),
    Analysis(Vec<String>),
    Approval(String),
    SetHeaderRoute(HeaderRoute),
}

/// Requests carrying every header of `matches` (exact values) go to the
/// canary; no matches removes the route named `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderRoute {
    pub name: String,
    pub matches: Vec<HeaderMatch>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderMatch {
    pub name: String,
    pub value: String,
}

impl std::fmt::Display for HeaderRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.matches.is_empty() {
            return write!(f, "header route `{}` removed", self.name);
        }
        let headers: Vec<String> = self
            .matches
            .iter()
            .map(|m| format!("{}: {}", m.name, m.value))
            .collect();
        write!(
            f,
            "header route `{}` ({}) to the canary",
            self.name,
            headers.join(", ")
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Waves {
    pub waves: Vec<Wave>,
    pub success_threshold: f64,
    pub abort_failure_threshold: f64,
    pub abort_min_devices: u32,
    pub device_timeout: Duration,
    pub max_devices_per_minute: u32,
    pub bake_time: Duration,
    pub gates: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Wave {
    pub size: WaveSize,
    pub approval: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WaveSize {
    Percent(f64),
    Count(u32),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub name: String,
    pub check: GateCheck,
    pub interval: Duration,
    pub count: u32,
    pub failure_limit: u32,
    pub consecutive_error_limit: u32,
    pub inconclusive_limit: u32,
}

impl Gate {
    /// The least time the gate takes to pass: `count` measurements,
    /// `interval` apart.
    pub fn minimum_duration(&self) -> Duration {
        self.interval * self.count.saturating_sub(1)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum GateCheck {
    Http {
        url: String,
        method: String,
        expect_status: Vec<u16>,
        expect_body: Option<String>,
        timeout: Duration,
        headers: BTreeMap<String, String>,
        /// The plan allowed plain `http://` for this probe.
        allow_insecure_http: bool,
    },
    Prometheus {
        address: String,
        query: String,
        comparison: Comparison,
        threshold: f64,
        allow_insecure_http: bool,
    },
    CloudWatch {
        region: Option<String>,
        alarms: Vec<String>,
        metrics: Vec<MetricCheck>,
    },
    Kubernetes {
        min_ready_percent: f64,
    },
    Fleet {
        min_success_rate: f64,
        max_anomaly_rate: Option<f64>,
    },
    Sim {
        min_success_rate: f64,
    },
}

impl GateCheck {
    pub fn kind(&self) -> GateKind {
        match self {
            GateCheck::Http { .. } => GateKind::Http,
            GateCheck::Prometheus { .. } => GateKind::Prometheus,
            GateCheck::CloudWatch { .. } => GateKind::CloudWatch,
            GateCheck::Kubernetes { .. } => GateKind::Kubernetes,
            GateCheck::Fleet { .. } => GateKind::Fleet,
            GateCheck::Sim { .. } => GateKind::Sim,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricCheck {
    pub namespace: String,
    pub metric_name: String,
    pub dimensions: BTreeMap<String, String>,
    pub statistic: String,
    pub period: Duration,
    pub comparison: Comparison,
    pub threshold: f64,
}

/// How a measured value is compared with a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Comparison {
    #[serde(rename = "<")]
    Less,
    #[serde(rename = "<=")]
    LessOrEqual,
    #[serde(rename = ">")]
    Greater,
    #[serde(rename = ">=")]
    GreaterOrEqual,
    #[serde(rename = "==")]
    Equal,
    #[serde(rename = "!=")]
    NotEqual,
}

impl Comparison {
    pub const SYMBOLS: [&'static str; 6] = ["<", "<=", ">", ">=", "==", "!="];

    pub fn parse(symbol: &str) -> Option<Comparison> {
        Some(match symbol {
            "<" => Comparison::Less,
            "<=" => Comparison::LessOrEqual,
            ">" => Comparison::Greater,
            ">=" => Comparison::GreaterOrEqual,
            "==" => Comparison::Equal,
            "!=" => Comparison::NotEqual,
            _ => return None,
        })
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Less => "<",
            Comparison::LessOrEqual => "<=",
            Comparison::Greater => ">",
            Comparison::GreaterOrEqual => ">=",
            Comparison::Equal => "==",
            Comparison::NotEqual => "!=",
        }
    }

    /// Whether `value <self> threshold` holds. NaN never passes.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Less => value < threshold,
            Comparison::LessOrEqual => value <= threshold,
            Comparison::Greater => value > threshold,
            Comparison::GreaterOrEqual => value >= threshold,
            Comparison::Equal => value == threshold,
            Comparison::NotEqual => !value.is_nan() && value != threshold,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    pub name: String,
    pub role: String,
    pub required: u32,
    pub timeout: Duration,
    pub on_timeout: OnTimeout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum OnTimeout {
    Rollback,
    Pause,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RollbackPolicy {
    pub automatic: bool,
    pub triggers: BTreeSet<RollbackTrigger>,
    pub scope: RollbackScope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RollbackTrigger {
    GateFailed,
    Error,
    Timeout,
    Kill,
}

impl RollbackTrigger {
    pub const ALL: [(&'static str, RollbackTrigger); 4] = [
        ("gateFailed", RollbackTrigger::GateFailed),
        ("error", RollbackTrigger::Error),
        ("timeout", RollbackTrigger::Timeout),
        ("kill", RollbackTrigger::Kill),
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RollbackScope {
    /// Every stage that moved goes back, in reverse DAG order.
    Plan,
    /// Only the failing stage goes back; finished stages stay promoted.
    Stage,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub events: BTreeSet<RunEvent>,
    pub channel: Channel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RunEvent {
    Started,
    Paused,
    ApprovalRequested,
    GateFailed,
    RolledBack,
    RollbackIncomplete,
    Killed,
    Succeeded,
    /// Failed authentication or a lockout while acting on the run (J6).
    SecurityEvent,
}

impl RunEvent {
    pub const ALL: [(&'static str, RunEvent); 9] = [
        ("started", RunEvent::Started),
        ("paused", RunEvent::Paused),
        ("approvalRequested", RunEvent::ApprovalRequested),
        ("gateFailed", RunEvent::GateFailed),
        ("rolledBack", RunEvent::RolledBack),
        ("rollbackIncomplete", RunEvent::RollbackIncomplete),
        ("killed", RunEvent::Killed),
        ("succeeded", RunEvent::Succeeded),
        ("securityEvent", RunEvent::SecurityEvent),
    ];
}

#[derive(Debug, Clone, PartialEq)]
pub enum Channel {
    Sns {
        topic_arn: String,
    },
    Webhook {
        url: String,
        allow_insecure_http: bool,
    },
}
