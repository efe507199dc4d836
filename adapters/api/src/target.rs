//! Deploy targets: the one trait every kind of target implements.

use std::fmt;

use deployctl_plan::model::{GateCheck, TargetKind};
use serde::{Deserialize, Serialize};

use crate::{AdapterError, BoxFuture, HealthProbe};

/// What a target runs and how its traffic is split, as read from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observed {
    /// The version serving all traffic not sent to `candidate`.
    pub stable: Option<String>,
    /// The new version, when it is deployed beside the stable one.
    pub candidate: Option<String>,
    /// Percent of traffic on `candidate` (0 when there is none).
    pub weight: u8,
    /// Rollout progress, for targets updated in waves (device fleets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waves: Option<WaveProgress>,
}

/// Where a wave rollout stands, in devices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveProgress {
    pub fleet_size: u32,
    /// Devices told to update so far, over all waves.
    pub dispatched: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub timed_out: u32,
    /// Waves started so far.
    pub waves_started: u32,
    /// The kill switch was used: nothing more is dispatched.
    pub halted: bool,
}

impl WaveProgress {
    pub fn in_progress(&self) -> u32 {
        self.dispatched
            .saturating_sub(self.succeeded + self.failed + self.timed_out)
    }
}

/// One change the engine asks a target to make. Actions are journaled
/// before they are applied, so they are plain serializable data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum Action {
    /// Make `version` available beside the stable one, receiving no traffic.
    Deploy { version: String },
    /// Send `percent` of traffic to the new version (a canary step, or the
    /// 0 → 100 switch of a blue-green release).
    SetWeight { percent: u8 },
    /// The new version becomes the stable one: all traffic, no extra weights.
    Promote,
    /// Remove the previous version after promotion (blue-green scale-down).
    Retire,
    /// Dispatch the update to `devices` more devices (wave `index`, 0-based).
    StartWave { index: u32, devices: u32 },
    /// The kill switch: dispatch nothing more.
    Halt,
    /// All traffic back to the stable version and the new version removed;
    /// for fleets, updated devices are sent `to` (the pinned stable image).
    Rollback { to: Option<String> },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Deploy { version } => write!(f, "deploy {version}"),
            Action::SetWeight { percent } => write!(f, "set weight {percent}%"),
            Action::Promote => write!(f, "promote"),
            Action::Retire => write!(f, "retire the previous version"),
            Action::StartWave { index, devices } => {
                write!(f, "start wave {} ({devices} devices)", index + 1)
            }
            Action::Halt => write!(f, "halt"),
            Action::Rollback { to: Some(version) } => write!(f, "roll back to {version}"),
            Action::Rollback { to: None } => write!(f, "roll back"),
        }
    }
}

/// The key that makes one logical call idempotent across retries and
/// process restarts (`run/stage/sequence`). Platforms that take a client
/// token get it; the rest compare observed state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdempotencyKey(pub String);

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One platform call that applying an action would make, for dry runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedCall {
    /// e.g. `lambda:UpdateAlias live → 42 (weight 0.1)`.
    pub description: String,
}

/// What applying an action did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    /// Whether anything changed (false: the effect was already there).
    pub changed: bool,
    /// The platform's request IDs, for the audit trail (S7).
    pub request_ids: Vec<String>,
}

/// What preflight learnt about a target before anything moves: the
/// rollback path (S3), what the target really is, and what this instance
/// of it can do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Preflight {
    /// The version traffic returns to on rollback.
    pub stable_version: String,
    /// Whether that version exists, is healthy and traffic can be moved.
    pub rollback_ready: bool,
    pub detail: String,
    /// The target as its platform names it, resolved (an alias ARN with
    /// the account and region filled in, a service or distribution ARN, a
    /// simulator's world and name). Runs lock targets by this, so two plans
    /// that name one target differently still exclude each other.
    pub identity: String,
    /// What this instance supports, which its kind alone does not say.
    pub capabilities: Capabilities,
}

/// What one target instance can do, reported by preflight and checked
/// against every stage's strategy before anything moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// Partial traffic weights (a canary's steps between 0 and 100 %).
    pub weights: Weights,
    /// Whether the target is updated in device waves.
    pub waves: bool,
}

impl Capabilities {
    /// A traffic target that takes any weight up to `max` percent.
    pub fn weights_up_to(max: u8) -> Capabilities {
        Capabilities {
            weights: Weights::Exact { max },
            waves: false,
        }
    }

    /// A traffic target that can only switch all traffic at once.
    pub fn switch_only(why: impl Into<String>) -> Capabilities {
        Capabilities {
            weights: Weights::Unsupported { why: why.into() },
            waves: false,
        }
    }

    /// A fleet: updated in waves, no traffic to weigh.
    pub fn waves() -> Capabilities {
        Capabilities {
            weights: Weights::Unsupported {
                why: "a fleet is updated in waves, not by traffic weights".into(),
            },
            waves: true,
        }
    }
}

/// How a target splits traffic between its stable and new versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "support",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Weights {
    /// Any whole percentage up to `max`, as asked.
    Exact { max: u8 },
    /// Up to `max`, but only approximately (`how`: e.g. replica ratios).
    Approximate { max: u8, how: String },
    /// No partial weights: all traffic moves at once (`why`).
    Unsupported { why: String },
}

/// A deploy target. Implementations MUST follow `docs/adapter-contract.md`:
/// `apply` is idempotent, every `.await` is a safe cancellation point, a
/// rollback is safe after any partial apply, and request IDs are reported.
pub trait Target: Send + Sync {
    /// The target's name in the plan.
    fn name(&self) -> &str;

    fn kind(&self) -> TargetKind;

    /// Reads the target. No side effects.
    fn observe(&self) -> BoxFuture<'_, Result<Observed, AdapterError>>;

    /// The calls `apply(action)` would make from `observed`; empty when the
    /// effect is already present. Pure: no IO.
    fn plan(&self, observed: &Observed, action: &Action) -> Result<Vec<PlannedCall>, AdapterError>;

    /// Makes the change. Idempotent: applying an action whose effect is
    /// already present succeeds with `changed: false`.
    fn apply<'a>(
        &'a self,
        action: &'a Action,
        key: &'a IdempotencyKey,
    ) -> BoxFuture<'a, Result<Applied, AdapterError>>;

    /// Confirms the rollback path before the run changes anything.
    fn preflight(&self) -> BoxFuture<'_, Result<Preflight, AdapterError>>;

    /// A probe for a gate kind only this target can measure (its pods'
    /// readiness, its devices' success rate, a simulator's health);
    /// `None` for gate kinds it does not provide.
    fn probe(&self, check: &GateCheck) -> Option<Box<dyn HealthProbe>>;

    /// Wraps the probe of every gate on this target. A target whose
    /// platform can tell that a measurement says nothing about the new
    /// version turns it inconclusive here (CloudFront: the staging
    /// distribution got no requests, so a healthy reading is the primary's,
    /// never a pass). The default keeps the probe as it is.
    fn guard(&self, probe: Box<dyn HealthProbe>) -> Box<dyn HealthProbe> {
        probe
    }
}
