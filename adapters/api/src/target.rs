//! Deploy targets: the one trait every kind of target implements.

use std::fmt;

use deployctl_plan::model::{GateCheck, HeaderRoute, TargetKind};
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
    /// Requests whose headers match go to the new version whatever the
    /// weight (no matches: the named header route is removed).
    SetHeaderRoute { route: HeaderRoute },
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
            Action::SetHeaderRoute { route } => write!(f, "set {route}"),
            Action::StartWave { index, devices } => {
                write!(f, "start wave {} ({devices} devices)", index + 1)
            }
            Action::Halt => write!(f, "halt"),
            Action::Rollback { to: Some(version) } => write!(f, "roll back to {version}"),
            Action::Rollback { to: None } => write!(f, "roll back"),
        }
    }
}

/// A change to a traffic target (services, functions, CDNs): deploy the
/// new version beside the stable one, weigh traffic, promote, retire, or
/// put all traffic back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum TrafficAction {
    Deploy { version: String },
    SetWeight { percent: u8 },
    SetHeaderRoute { route: HeaderRoute },
    Promote,
    Retire,
    Rollback { to: Option<String> },
}

/// A change to a wave target (device fleets): dispatch a wave, halt, or
/// send updated devices back to the stable image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum WaveAction {
    StartWave { index: u32, devices: u32 },
    Halt,
    Rollback { to: Option<String> },
}

/// Which role an [`Action`] is for. A rollback is either's: a target
/// undoes its release whichever way it moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Traffic(TrafficAction),
    Waves(WaveAction),
}

impl Action {
    /// The action as its role has it: `Rollback` goes to traffic when the
    /// target moves traffic, to waves otherwise.
    pub fn for_role(&self, moves: &Moves<'_>) -> Option<Role> {
        Some(match self.clone() {
            Action::Deploy { version } => Role::Traffic(TrafficAction::Deploy { version }),
            Action::SetWeight { percent } => Role::Traffic(TrafficAction::SetWeight { percent }),
            Action::Promote => Role::Traffic(TrafficAction::Promote),
            Action::Retire => Role::Traffic(TrafficAction::Retire),
            Action::SetHeaderRoute { route } => {
                Role::Traffic(TrafficAction::SetHeaderRoute { route })
            }
            Action::StartWave { index, devices } => {
                Role::Waves(WaveAction::StartWave { index, devices })
            }
            Action::Halt => Role::Waves(WaveAction::Halt),
            Action::Rollback { to } if moves.traffic.is_some() => {
                Role::Traffic(TrafficAction::Rollback { to })
            }
            Action::Rollback { to } if moves.waves.is_some() => {
                Role::Waves(WaveAction::Rollback { to })
            }
            Action::Rollback { .. } => return None,
        })
    }
}

impl From<TrafficAction> for Action {
    fn from(action: TrafficAction) -> Action {
        match action {
            TrafficAction::Deploy { version } => Action::Deploy { version },
            TrafficAction::SetWeight { percent } => Action::SetWeight { percent },
            TrafficAction::Promote => Action::Promote,
            TrafficAction::Retire => Action::Retire,
            TrafficAction::SetHeaderRoute { route } => Action::SetHeaderRoute { route },
            TrafficAction::Rollback { to } => Action::Rollback { to },
        }
    }
}

impl From<WaveAction> for Action {
    fn from(action: WaveAction) -> Action {
        match action {
            WaveAction::StartWave { index, devices } => Action::StartWave { index, devices },
            WaveAction::Halt => Action::Halt,
            WaveAction::Rollback { to } => Action::Rollback { to },
        }
    }
}

impl fmt::Display for TrafficAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Action::from(self.clone()).fmt(f)
    }
}

impl fmt::Display for WaveAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Action::from(self.clone()).fmt(f)
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
    /// What preflight verified that the audit trail must keep (a fleet's
    /// firmware manifests: digest and signer), one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verified: Vec<String>,
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
    /// Whether requests can be sent to the new version by header
    /// (`setHeaderRoute`).
    #[serde(default)]
    pub header_routes: bool,
}

impl Capabilities {
    /// A traffic target that takes any weight up to `max` percent.
    pub fn weights_up_to(max: u8) -> Capabilities {
        Capabilities {
            weights: Weights::Exact { max },
            waves: false,
            header_routes: false,
        }
    }

    /// A traffic target that can only switch all traffic at once.
    pub fn switch_only(why: impl Into<String>) -> Capabilities {
        Capabilities {
            weights: Weights::Unsupported { why: why.into() },
            waves: false,
            header_routes: false,
        }
    }

    /// A fleet: updated in waves, no traffic to weigh.
    pub fn waves() -> Capabilities {
        Capabilities {
            weights: Weights::Unsupported {
                why: "a fleet is updated in waves, not by traffic weights".into(),
            },
            waves: true,
            header_routes: false,
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

/// A deploy target: what every kind shares (reading it, confirming its
/// rollback path, its own probes). How it moves is a role trait,
/// [`TrafficTarget`] or [`WaveTarget`], which [`Target::moves`] hands out;
/// an adapter implements only the roles its platform has, so nothing
/// answers "unsupported" for a whole kind of action.
///
/// Implementations MUST follow `docs/adapter-contract.md`: applying is
/// idempotent, every `.await` is a safe cancellation point, a rollback is
/// safe after any partial apply, and request IDs are reported.
pub trait Target: Send + Sync {
    /// The target's name in the plan.
    fn name(&self) -> &str;

    fn kind(&self) -> TargetKind;

    /// Reads the target. No side effects.
    fn observe(&self) -> BoxFuture<'_, Result<Observed, AdapterError>>;

    /// Confirms the rollback path before the run changes anything, and
    /// names what the target is and what this instance can do.
    fn preflight(&self) -> BoxFuture<'_, Result<Preflight, AdapterError>>;

    /// The roles this target moves by.
    fn moves(&self) -> Moves<'_>;

    /// The run and stage about to drive this target, told before the
    /// engine's first call for them in this process (a resumed run and a
    /// rollback from another process included). A target whose platform
    /// state says where a release stands ignores it (the default); one
    /// that keeps a release under names of its own (a fleet's wave jobs)
    /// finds it again by this before its first `observe`.
    fn attach(&self, _run: &str, _stage: &str) {}

    /// The lock this target's platform keeps for it (a Kubernetes Lease
    /// beside the Deployment), which every run of it holds while it is
    /// driven, wherever from; `None` (the default) when the platform has
    /// none and the journal's and team backend's locks are all there is.
    fn platform_lock(&self) -> Option<std::sync::Arc<dyn crate::team::PlatformLock>> {
        None
    }

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

    /// The calls applying `action` would make from `observed`, by the role
    /// that takes it; empty when the effect is already present. Pure.
    /// Provided: override only to wrap another target.
    fn plan(&self, observed: &Observed, action: &Action) -> Result<Vec<PlannedCall>, AdapterError> {
        let moves = self.moves();
        match action.for_role(&moves) {
            Some(Role::Traffic(action)) => match moves.traffic {
                Some(traffic) => traffic.plan_traffic(observed, &action),
                None => Err(no_role(self.name(), &action.to_string(), "traffic")),
            },
            Some(Role::Waves(action)) => match moves.waves {
                Some(waves) => waves.plan_wave(observed, &action),
                None => Err(no_role(self.name(), &action.to_string(), "waves")),
            },
            None => Err(no_role(
                self.name(),
                &action.to_string(),
                "traffic or waves",
            )),
        }
    }

    /// Makes the change, by the role that takes it. Idempotent: applying
    /// an action whose effect is already present succeeds with
    /// `changed: false`. Provided: override only to wrap another target.
    fn apply<'a>(
        &'a self,
        action: &'a Action,
        key: &'a IdempotencyKey,
    ) -> BoxFuture<'a, Result<Applied, AdapterError>> {
        let moves = self.moves();
        match action.for_role(&moves) {
            Some(Role::Traffic(action)) => match moves.traffic {
                Some(traffic) => Box::pin(async move { traffic.apply_traffic(&action, key).await }),
                None => refuse(no_role(self.name(), &action.to_string(), "traffic")),
            },
            Some(Role::Waves(action)) => match moves.waves {
                Some(waves) => Box::pin(async move { waves.apply_wave(&action, key).await }),
                None => refuse(no_role(self.name(), &action.to_string(), "waves")),
            },
            None => refuse(no_role(
                self.name(),
                &action.to_string(),
                "traffic or waves",
            )),
        }
    }
}

/// The roles a target moves by: a service is a traffic target, a fleet a
/// wave target, a simulator standing in for any kind both.
#[derive(Clone, Copy)]
pub struct Moves<'a> {
    pub traffic: Option<&'a dyn TrafficTarget>,
    pub waves: Option<&'a dyn WaveTarget>,
}

impl<'a> Moves<'a> {
    pub fn traffic(target: &'a dyn TrafficTarget) -> Moves<'a> {
        Moves {
            traffic: Some(target),
            waves: None,
        }
    }

    pub fn waves(target: &'a dyn WaveTarget) -> Moves<'a> {
        Moves {
            traffic: None,
            waves: Some(target),
        }
    }
}

/// A target that releases by moving traffic between its stable and new
/// versions (canary steps, a blue-green switch).
pub trait TrafficTarget: Target {
    /// The calls `apply_traffic(action)` would make from `observed`; empty
    /// when the effect is already present. Pure: no IO.
    fn plan_traffic(
        &self,
        observed: &Observed,
        action: &TrafficAction,
    ) -> Result<Vec<PlannedCall>, AdapterError>;

    /// Makes the change. Idempotent.
    fn apply_traffic<'a>(
        &'a self,
        action: &'a TrafficAction,
        key: &'a IdempotencyKey,
    ) -> BoxFuture<'a, Result<Applied, AdapterError>>;
}

/// A target that releases in waves of devices.
pub trait WaveTarget: Target {
    /// The calls `apply_wave(action)` would make from `observed`. Pure.
    fn plan_wave(
        &self,
        observed: &Observed,
        action: &WaveAction,
    ) -> Result<Vec<PlannedCall>, AdapterError>;

    /// Makes the change. Idempotent; `Halt` takes effect before it returns.
    fn apply_wave<'a>(
        &'a self,
        action: &'a WaveAction,
        key: &'a IdempotencyKey,
    ) -> BoxFuture<'a, Result<Applied, AdapterError>>;
}

/// A target asked for a role it does not have: the engine's admission
/// check refuses such plans before anything moves, so this answers only
/// a caller that skipped it.
fn no_role(target: &str, action: &str, role: &str) -> AdapterError {
    AdapterError::Unsupported {
        what: format!("target `{target}` does not move by {role}, so it cannot {action}"),
    }
}

fn refuse<'a>(error: AdapterError) -> BoxFuture<'a, Result<Applied, AdapterError>> {
    Box::pin(async move { Err(error) })
}
