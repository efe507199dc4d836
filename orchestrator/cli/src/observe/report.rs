//! The observed impact report `plan --observe` prints: per stage, what its
//! target runs now and how traffic is split, what the stage would change
//! that to, the platform calls each step would make (the adapter's pure
//! `Target::plan`), and where the live state differs from what the plan
//! expects (drift), including what would make `apply` refuse the run.
//!
//! Built from readings already taken (preflight, observe, lock holders),
//! so it is pure and tested without a platform. The JSON form is a
//! versioned wire type (`kind: ObservedImpactReport`), like the offline
//! report's `PlanReport`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use deployctl_adapter::{Action, Capabilities, Observed, Preflight, Target, Weights};
use deployctl_engine::program::{self, Op};
use deployctl_plan::ValidatedPlan;
use deployctl_plan::model::{Stage, TargetKind, WaveSize};
use serde::Serialize;

/// What was read from one target: its preflight and its observed state,
/// each as the adapter answered it, or why the read failed.
#[derive(Debug, Clone)]
pub struct Reading {
    pub preflight: Result<Preflight, String>,
    pub observed: Result<Observed, String>,
}

/// The run holding a lock and who started it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub run: String,
    pub holder: String,
}

/// What the report is built from.
pub struct Inputs<'a> {
    pub plan: &'a ValidatedPlan,
    /// The adapters, by target name (for their pure `plan`).
    pub targets: &'a BTreeMap<String, Arc<dyn Target>>,
    /// What was read, by target name.
    pub readings: &'a BTreeMap<String, Reading>,
    /// Live runs' locks, by platform identity.
    pub locks: &'a BTreeMap<String, Holder>,
    /// When the targets were read (RFC 3339).
    pub observed_at: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservedImpactReport {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub plan: PlanHeader,
    pub observed_at: String,
    /// Stages in execution order.
    pub stages: Vec<StageObservation>,
    pub summary: Summary,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanHeader {
    pub name: String,
    pub environment: String,
    pub digest: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageObservation {
    pub name: String,
    pub target: String,
    pub target_kind: TargetKind,
    /// The target as its platform names it (what runs lock); `None` when
    /// preflight could not read it.
    pub identity: Option<String>,
    /// What the target runs now; `None` when it could not be read.
    pub now: Option<Observed>,
    pub planned: Planned,
    /// The rollback path preflight confirmed (or not).
    pub rollback: Option<RollbackPath>,
    /// What this instance supports, as preflight reported it.
    pub capabilities: Option<Capabilities>,
    /// The stage's changes in order, each with the calls it would make.
    pub steps: Vec<Step>,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Planned {
    /// The version traffic stays on, and rollback returns to: the plan's
    /// pinned stable version, else what the target runs now.
    pub from: Option<String>,
    pub to: Option<String>,
    /// The traffic weights the steps set, in order (promotion is 100).
    pub weights: Vec<u8>,
    pub promotes: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackPath {
    pub version: String,
    pub ready: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub action: Action,
    /// The action in words (`set weight 20%`).
    pub description: String,
    pub status: StepStatus,
    /// The platform calls, from the adapter's `Target::plan`.
    pub calls: Vec<String>,
    /// Why the adapter refuses the step (status `refused`), or what is
    /// decided only when the step runs (`atRunTime`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StepStatus {
    /// The step makes the listed calls.
    Planned,
    /// Its effect is already there (after the steps before it): no call.
    InEffect,
    /// The adapter refuses it from the state the steps before it leave.
    Refused,
    /// Not planned: a step before it was refused, or the target could not
    /// be read.
    NotPlanned,
    /// Sized from what the target reports when it starts (waves).
    AtRunTime,
    /// The target already runs the new version as its stable one: `apply`
    /// finds the stage released and moves nothing.
    Skipped,
}

/// Something the live state says that the plan alone does not.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    #[serde(flatten)]
    pub what: FindingKind,
    pub message: String,
    /// `apply` would refuse the run for it (exit 2, nothing moved).
    pub refuses_apply: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum FindingKind {
    /// A read failed (after the retry policy gave up).
    ReadFailed { read: String, error: String },
    /// The target does not run the plan's stable version.
    NotOnStable { expected: String, running: String },
    /// The target already runs the plan's new version.
    AlreadyReleased { version: String },
    /// A candidate is deployed or weighted already: another release in
    /// flight, or one that was left half done.
    ReleaseInFlight {
        candidate: Option<String>,
        weight: u8,
    },
    /// Another run that has not ended holds the target's lock.
    Locked {
        identity: String,
        run: String,
        holder: String,
    },
    /// Preflight could not confirm the rollback path.
    RollbackNotReady { detail: String },
    /// A step asks for something this instance cannot do.
    Unsupported { reason: String },
    /// The instance splits traffic only approximately.
    ApproximateWeights { max: u8, how: String },
}

impl FindingKind {
    fn finding(self) -> Finding {
        let (message, refuses_apply) = match &self {
            FindingKind::ReadFailed { read, error } => (format!("{read} failed: {error}"), true),
            FindingKind::NotOnStable { expected, running } => (
                format!(
                    "runs {running}, not the plan's stable version {expected}; the release would start from {running} and rollback return to {expected}"
                ),
                false,
            ),
            FindingKind::AlreadyReleased { version } => (
                format!("already runs {version}, the plan's new version"),
                false,
            ),
            FindingKind::ReleaseInFlight { candidate, weight } => (
                match candidate {
                    Some(candidate) => format!(
                        "{candidate} is already deployed beside the stable version with {weight}% of traffic: another release is in flight or was left half done"
                    ),
                    None => format!(
                        "{weight}% of traffic is already off the stable version: another release is in flight or was left half done"
                    ),
                },
                false,
            ),
            FindingKind::Locked {
                identity,
                run,
                holder,
            } => (
                format!(
                    "{identity} is locked by run {run} ({holder}): `apply` is refused until that run ends (or `deployctl rollback {run}` undoes it)"
                ),
                true,
            ),
            FindingKind::RollbackNotReady { detail } => {
                (format!("rollback path not confirmed: {detail}"), true)
            }
            FindingKind::Unsupported { reason } => (reason.clone(), true),
            FindingKind::ApproximateWeights { max, how } => (
                format!("weights up to {max}% are approximate: {how}"),
                false,
            ),
        };
        Finding {
            what: self,
            message,
            refuses_apply,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Findings over all stages.
    pub findings: usize,
    /// Reads that failed.
    pub read_failures: usize,
    /// Whether `apply` would refuse the run as things stand.
    pub apply_refused: bool,
}

impl ObservedImpactReport {
    pub fn new(inputs: &Inputs<'_>) -> ObservedImpactReport {
        let plan = inputs.plan;
        let stages: Vec<StageObservation> = plan
            .graph()
            .order()
            .iter()
            .map(|id| observe_stage(inputs, plan.stage(*id)))
            .collect();
        let findings = stages.iter().map(|s| s.findings.len()).sum();
        let read_failures = stages
            .iter()
            .flat_map(|s| &s.findings)
            .filter(|f| matches!(f.what, FindingKind::ReadFailed { .. }))
            .count();
        let apply_refused = stages
            .iter()
            .flat_map(|s| &s.findings)
            .any(|f| f.refuses_apply);
        ObservedImpactReport {
            api_version: deployctl_plan::raw::API_VERSION,
            kind: "ObservedImpactReport",
            plan: PlanHeader {
                name: plan.metadata.name.clone(),
                environment: plan.metadata.environment.clone(),
                digest: plan.digest.clone(),
            },
            observed_at: inputs.observed_at.clone(),
            stages,
            summary: Summary {
                findings,
                read_failures,
                apply_refused,
            },
        }
    }

    /// Whether any read failed (the report is incomplete).
    pub fn incomplete(&self) -> bool {
        self.summary.read_failures > 0
    }
}

fn observe_stage(inputs: &Inputs<'_>, stage: &Stage) -> StageObservation {
    let plan = inputs.plan;
    let target = plan.target_of(stage);
    let ops = program::compile(stage, target);
    let reading = inputs.readings.get(&target.name);
    let preflight = reading.and_then(|r| r.preflight.as_ref().ok());
    let now = reading.and_then(|r| r.observed.as_ref().ok()).cloned();
    let pinned = target.pinned_stable.as_ref().map(|a| a.version.clone());
    // What the plan says the target runs: its pinned stable version, or
    // for a simulator the version its world starts from.
    let expected = pinned
        .clone()
        .or_else(|| crate::registry::lookup(target).declared_stable());
    let new_version = target.artifact.as_ref().map(|a| a.version.clone());

    let mut findings = Vec::new();
    match reading {
        None => findings.push(FindingKind::ReadFailed {
            read: "reading the target".into(),
            error: "no reading was taken".into(),
        }),
        Some(reading) => {
            if let Err(error) = &reading.preflight {
                findings.push(FindingKind::ReadFailed {
                    read: "preflight".into(),
                    error: error.clone(),
                });
            }
            if let Err(error) = &reading.observed {
                findings.push(FindingKind::ReadFailed {
                    read: "observe".into(),
                    error: error.clone(),
                });
            }
        }
    }
    if let Some(now) = &now {
        let running = now.stable.clone().unwrap_or_default();
        if new_version.as_deref() == Some(running.as_str()) && now.candidate.is_none() {
            findings.push(FindingKind::AlreadyReleased { version: running });
        } else if let Some(expected) = &expected
            && *expected != running
        {
            findings.push(FindingKind::NotOnStable {
                expected: expected.clone(),
                running,
            });
        }
        if now.candidate.is_some() || now.weight > 0 {
            findings.push(FindingKind::ReleaseInFlight {
                candidate: now.candidate.clone(),
                weight: now.weight,
            });
        }
    }
    if let Some(preflight) = preflight {
        if let Some(holder) = inputs.locks.get(&preflight.identity) {
            findings.push(FindingKind::Locked {
                identity: preflight.identity.clone(),
                run: holder.run.clone(),
                holder: holder.holder.clone(),
            });
        }
        if !preflight.rollback_ready {
            findings.push(FindingKind::RollbackNotReady {
                detail: preflight.detail.clone(),
            });
        }
        if let Err(misfit) =
            deployctl_engine::admission::check(stage, target, &preflight.capabilities)
        {
            findings.push(FindingKind::Unsupported {
                reason: misfit.to_string(),
            });
        }
        if let Weights::Approximate { max, how } = &preflight.capabilities.weights
            && asks_for_weights(&ops)
        {
            findings.push(FindingKind::ApproximateWeights {
                max: *max,
                how: how.clone(),
            });
        }
    }

    // As the engine decides it: a stage whose stable version (pinned, or
    // as preflight read it) is already the new one moves nothing.
    let stable = pinned
        .clone()
        .or_else(|| preflight.map(|p| p.stable_version.clone()));
    let released = new_version.is_some() && stable == new_version;
    let steps = match (inputs.targets.get(&target.name), &now) {
        _ if released => skipped_steps(&ops),
        (Some(adapter), Some(now)) => plan_steps(adapter.as_ref(), now, &ops),
        _ => unplanned_steps(&ops),
    };
    let weights: Vec<u8> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Apply(Action::SetWeight { percent }) => Some(*percent),
            _ => None,
        })
        .collect();
    StageObservation {
        name: stage.name.clone(),
        target: target.name.clone(),
        target_kind: target.kind(),
        identity: preflight.map(|p| p.identity.clone()),
        planned: Planned {
            from: pinned
                .clone()
                .or_else(|| now.as_ref().and_then(|n| n.stable.clone())),
            to: new_version,
            weights,
            promotes: ops.contains(&Op::Apply(Action::Promote)),
        },
        now,
        rollback: preflight.map(|p| RollbackPath {
            version: pinned.unwrap_or_else(|| p.stable_version.clone()),
            ready: p.rollback_ready,
            detail: p.detail.clone(),
        }),
        capabilities: preflight.map(|p| p.capabilities.clone()),
        steps,
        findings: findings.into_iter().map(FindingKind::finding).collect(),
    }
}

/// Whether the stage sets a weight between 0 and 100 (a canary step).
fn asks_for_weights(ops: &[Op]) -> bool {
    ops.iter()
        .any(|op| matches!(op, Op::Apply(Action::SetWeight { percent }) if *percent > 0 && *percent < 100))
}

/// Each change of the stage planned by the adapter from the state the
/// changes before it leave: the first from what was observed, each next
/// one from [`after`] it. A refused step ends the planning: `apply` would
/// stop there.
fn plan_steps(adapter: &dyn Target, observed: &Observed, ops: &[Op]) -> Vec<Step> {
    let mut state = observed.clone();
    let mut refused = false;
    let mut steps = Vec::new();
    for op in ops {
        let Some(action) = step_action(op) else {
            continue;
        };
        let mut step = Step {
            description: describe(op, &action),
            action: action.clone(),
            status: StepStatus::NotPlanned,
            calls: Vec::new(),
            detail: None,
        };
        if let Op::StartWave { .. } = op {
            step.status = StepStatus::AtRunTime;
            step.detail = Some("its devices are counted from the fleet when it starts".into());
        } else if refused {
            step.detail = Some("a step before it is refused".into());
        } else {
            match adapter.plan(&state, &action) {
                Ok(calls) if calls.is_empty() => step.status = StepStatus::InEffect,
                Ok(calls) => {
                    step.status = StepStatus::Planned;
                    step.calls = calls.into_iter().map(|c| c.description).collect();
                }
                Err(error) => {
                    step.status = StepStatus::Refused;
                    step.detail = Some(error.to_string());
                    refused = true;
                }
            }
            state = after(adapter, &state, &action);
        }
        steps.push(step);
    }
    steps
}

/// The stage's changes, none of which `apply` would make: the target is
/// already released.
fn skipped_steps(ops: &[Op]) -> Vec<Step> {
    ops.iter()
        .filter_map(|op| {
            let action = step_action(op)?;
            Some(Step {
                description: describe(op, &action),
                action,
                status: StepStatus::Skipped,
                calls: Vec::new(),
                detail: None,
            })
        })
        .collect()
}

/// The stage's changes, unplanned: the target could not be read.
fn unplanned_steps(ops: &[Op]) -> Vec<Step> {
    ops.iter()
        .filter_map(|op| {
            let action = step_action(op)?;
            Some(Step {
                description: describe(op, &action),
                action,
                status: StepStatus::NotPlanned,
                calls: Vec::new(),
                detail: Some("the target could not be read".into()),
            })
        })
        .collect()
}

/// The change an operation makes on the target, if it makes one. A wave's
/// device count is only known when it starts; 0 stands for it.
fn step_action(op: &Op) -> Option<Action> {
    match op {
        Op::Apply(action) => Some(action.clone()),
        Op::StartWave { index, .. } => Some(Action::StartWave {
            index: *index,
            devices: 0,
        }),
        _ => None,
    }
}

fn describe(op: &Op, action: &Action) -> String {
    match op {
        Op::StartWave { index, size } => {
            let size = match size {
                WaveSize::Percent(percent) => format!("{percent}% of the fleet"),
                WaveSize::Count(count) => format!("{count} devices"),
            };
            format!("start wave {} ({size})", index + 1)
        }
        _ => action.to_string(),
    }
}

/// The state `action` leaves, as the adapter contract defines each action:
/// `Deploy` puts the version beside the stable one with no traffic,
/// `SetWeight` sends that share to it, `Promote` makes it the stable one.
/// A switch to 100 % has two readings: the candidate takes all traffic
/// beside the old version (a simulator, ECS task sets), or the platform
/// has completed the switch (a Lambda alias's version, a CloudFront
/// promotion, an ECS rolling update). The adapter decides: of the two,
/// the state it says the step's effect is already present in.
fn after(adapter: &dyn Target, state: &Observed, action: &Action) -> Observed {
    match action {
        Action::Deploy { version } => {
            if state.stable.as_ref() == Some(version) || state.candidate.as_ref() == Some(version) {
                state.clone()
            } else {
                Observed {
                    candidate: Some(version.clone()),
                    weight: 0,
                    ..state.clone()
                }
            }
        }
        Action::SetWeight { percent } => {
            let weighed = Observed {
                weight: *percent,
                ..state.clone()
            };
            if *percent == 100 && state.candidate.is_some() {
                let switched = Observed {
                    stable: state.candidate.clone(),
                    candidate: None,
                    weight: 0,
                    ..state.clone()
                };
                let present =
                    |s: &Observed| adapter.plan(s, action).is_ok_and(|calls| calls.is_empty());
                if present(&switched) && !present(&weighed) {
                    return switched;
                }
            }
            weighed
        }
        Action::Promote => match &state.candidate {
            Some(candidate) => Observed {
                stable: Some(candidate.clone()),
                candidate: None,
                weight: 0,
                ..state.clone()
            },
            None => Observed {
                weight: 0,
                ..state.clone()
            },
        },
        // A header route leaves the weight and the versions as they are.
        Action::Retire
        | Action::SetHeaderRoute { .. }
        | Action::StartWave { .. }
        | Action::Halt
        | Action::Rollback { .. } => state.clone(),
    }
}

// ---- Text ---------------------------------------------------------------

impl ObservedImpactReport {
    /// The human-readable form.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let plan = &self.plan;
        let _ = writeln!(
            out,
            "Plan {} → {}, observed live (read-only)",
            plan.name, plan.environment
        );
        let _ = writeln!(out, "  digest:    sha256:{}", plan.digest);
        let _ = writeln!(out, "  observed:  {}", self.observed_at);
        for stage in &self.stages {
            let _ = writeln!(out);
            render_stage(&mut out, stage);
        }
        let _ = writeln!(out);
        let summary = &self.summary;
        let verdict = if summary.read_failures > 0 {
            format!(
                "{} read{} failed: this report is incomplete",
                summary.read_failures,
                if summary.read_failures == 1 { "" } else { "s" }
            )
        } else if summary.apply_refused {
            "`apply` would refuse this plan as things stand (see the findings marked ✗)".into()
        } else if summary.findings > 0 {
            "`apply` would start; read the findings above first".into()
        } else {
            "no drift: every target is where the plan expects it".into()
        };
        let _ = writeln!(
            out,
            "Summary: {} finding{}; {verdict}.",
            summary.findings,
            if summary.findings == 1 { "" } else { "s" }
        );
        let _ = writeln!(
            out,
            "Nothing was changed: only reads were made (observe and preflight)."
        );
        out
    }
}

fn render_stage(out: &mut String, stage: &StageObservation) {
    let _ = writeln!(
        out,
        "Stage {} — {} target `{}`",
        stage.name,
        deployctl_plan::model::TargetKind::label(stage.target_kind),
        stage.target
    );
    if let Some(identity) = &stage.identity {
        let _ = writeln!(out, "  identity:  {identity}");
    }
    match &stage.now {
        Some(now) => {
            let _ = writeln!(out, "  now:       {}", describe_now(now));
        }
        None => {
            let _ = writeln!(out, "  now:       unknown (the target could not be read)");
        }
    }
    let planned = &stage.planned;
    let mut moves: Vec<String> = planned.weights.iter().map(|w| format!("{w}%")).collect();
    if planned.promotes {
        moves.push("promote".into());
    }
    let _ = writeln!(
        out,
        "  planned:   {} → {}{}",
        planned.from.as_deref().unwrap_or("?"),
        planned.to.as_deref().unwrap_or("(no artifact)"),
        if moves.is_empty() {
            String::new()
        } else {
            format!(", by {}", moves.join(" → "))
        }
    );
    if let Some(rollback) = &stage.rollback {
        let _ = writeln!(
            out,
            "  rollback:  to {}: {} ({})",
            rollback.version,
            if rollback.ready { "ready" } else { "NOT ready" },
            rollback.detail
        );
    }
    if let Some(capabilities) = &stage.capabilities {
        let _ = writeln!(out, "  takes:     {}", describe_capabilities(capabilities));
    }
    if !stage.steps.is_empty() {
        let _ = writeln!(out, "  steps:");
    }
    for (index, step) in stage.steps.iter().enumerate() {
        let status = match step.status {
            StepStatus::Planned => String::new(),
            StepStatus::InEffect => " — no call: its effect is already there".into(),
            StepStatus::Refused => {
                format!(" — refused: {}", step.detail.as_deref().unwrap_or_default())
            }
            StepStatus::NotPlanned => format!(
                " — not planned: {}",
                step.detail.as_deref().unwrap_or_default()
            ),
            StepStatus::AtRunTime => format!(
                " — calls decided when it starts: {}",
                step.detail.as_deref().unwrap_or_default()
            ),
            StepStatus::Skipped => " — skipped: the stage is already released".into(),
        };
        let _ = writeln!(out, "    {}. {}{status}", index + 1, step.description);
        for call in &step.calls {
            let _ = writeln!(out, "         {call}");
        }
    }
    if stage.findings.is_empty() {
        let _ = writeln!(out, "  drift:     none");
    }
    for finding in &stage.findings {
        let _ = writeln!(
            out,
            "  {} {}",
            if finding.refuses_apply { "✗" } else { "!" },
            finding.message
        );
    }
}

fn describe_now(now: &Observed) -> String {
    let stable = now.stable.as_deref().unwrap_or("(no version)");
    let mut text = match &now.candidate {
        Some(candidate) => format!(
            "{stable} with {}% of traffic, {candidate} with {}%",
            100u8.saturating_sub(now.weight),
            now.weight
        ),
        None if now.weight > 0 => format!("{stable}, {}% of traffic elsewhere", now.weight),
        None => format!("{stable}, all traffic"),
    };
    if let Some(waves) = &now.waves {
        let _ = write!(
            text,
            "; fleet of {} devices: {} waves started, {} dispatched, {} succeeded, {} failed{}",
            waves.fleet_size,
            waves.waves_started,
            waves.dispatched,
            waves.succeeded,
            waves.failed,
            if waves.halted { ", halted" } else { "" }
        );
    }
    text
}

fn describe_capabilities(capabilities: &Capabilities) -> String {
    let weights = match &capabilities.weights {
        Weights::Exact { max } => format!("weights up to {max}%"),
        Weights::Approximate { max, how } => {
            format!("approximate weights up to {max}% ({how})")
        }
        Weights::Unsupported { why } => format!("no partial weights ({why})"),
    };
    if capabilities.waves {
        format!("{weights}; waves")
    } else {
        weights
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deployctl_sim::{SimConfig, SimTarget};

    const PLAN: &str = "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {name: t, environment: test}\ntargets: {api: {sim: {stableVersion: v1}}}\nartifacts: {api: {version: v2}}\nstages:\n  - name: api\n    target: api\n    canary: {steps: [{setWeight: 20}, {setWeight: 100}]}\n";

    fn plan(source: &str) -> ValidatedPlan {
        deployctl_plan::load("test.yaml", source.as_bytes())
            .unwrap_or_else(|rejected| panic!("{}", rejected.render(false)))
            .plan
    }

    fn simulators(plan: &ValidatedPlan) -> BTreeMap<String, Arc<dyn Target>> {
        plan.targets
            .values()
            .map(|target| {
                let sim = SimTarget::in_memory(SimConfig::for_plan_target(target));
                (target.name.clone(), Arc::new(sim) as Arc<dyn Target>)
            })
            .collect()
    }

    fn preflight(capabilities: Capabilities) -> Preflight {
        Preflight {
            verified: Vec::new(),
            stable_version: "v1".into(),
            rollback_ready: true,
            detail: "v1 runs".into(),
            identity: "sim:api".into(),
            capabilities,
        }
    }

    fn observed(stable: &str, candidate: Option<&str>, weight: u8) -> Observed {
        Observed {
            stable: Some(stable.into()),
            candidate: candidate.map(str::to_owned),
            weight,
            waves: None,
        }
    }

    fn report(
        plan: &ValidatedPlan,
        reading: Reading,
        locks: &BTreeMap<String, Holder>,
    ) -> ObservedImpactReport {
        report_on(plan, &simulators(plan), reading, locks)
    }

    fn report_on(
        plan: &ValidatedPlan,
        targets: &BTreeMap<String, Arc<dyn Target>>,
        reading: Reading,
        locks: &BTreeMap<String, Holder>,
    ) -> ObservedImpactReport {
        let readings = BTreeMap::from([("api".to_string(), reading)]);
        ObservedImpactReport::new(&Inputs {
            plan,
            targets,
            readings: &readings,
            locks,
            observed_at: "2026-01-01T00:00:00.000Z".into(),
        })
    }

    fn kinds(report: &ObservedImpactReport) -> Vec<FindingKind> {
        report.stages[0]
            .findings
            .iter()
            .map(|f| f.what.clone())
            .collect()
    }

    #[test]
    fn every_step_is_planned_from_the_state_the_steps_before_it_leave() {
        let plan = plan(PLAN);
        let report = report(
            &plan,
            Reading {
                preflight: Ok(preflight(Capabilities::weights_up_to(100))),
                observed: Ok(observed("v1", None, 0)),
            },
            &BTreeMap::new(),
        );
        let stage = &report.stages[0];
        let steps: Vec<(&str, StepStatus, &[String])> = stage
            .steps
            .iter()
            .map(|s| (s.description.as_str(), s.status, s.calls.as_slice()))
            .collect();
        assert_eq!(
            steps,
            [
                (
                    "deploy v2",
                    StepStatus::Planned,
                    &["sim:Deploy api: start v2 beside v1, with no traffic".to_string()][..]
                ),
                (
                    "set weight 20%",
                    StepStatus::Planned,
                    &["sim:SetWeight api: 0% → 20% of traffic to v2".to_string()][..]
                ),
                (
                    "set weight 100%",
                    StepStatus::Planned,
                    &["sim:SetWeight api: 20% → 100% of traffic to v2".to_string()][..]
                ),
                (
                    "promote",
                    StepStatus::Planned,
                    &["sim:Promote api: v2 takes all traffic, replacing v1".to_string()][..]
                ),
            ]
        );
        assert_eq!(stage.planned.weights, [20, 100]);
        assert!(stage.findings.is_empty(), "{:?}", stage.findings);
        assert!(!report.summary.apply_refused);
        let text = report.render_text();
        assert!(text.contains("  drift:     none"), "{text}");
        assert!(
            text.contains("planned:   v1 → v2, by 20% → 100% → promote"),
            "{text}"
        );
    }

    #[test]
    fn a_release_in_flight_and_a_held_lock_are_reported() {
        let plan = plan(PLAN);
        let locks = BTreeMap::from([(
            "sim:api".to_string(),
            Holder {
                run: "r-1".into(),
                holder: "alice@pc".into(),
            },
        )]);
        let report = report(
            &plan,
            Reading {
                preflight: Ok(preflight(Capabilities::weights_up_to(100))),
                observed: Ok(observed("v1", Some("v3"), 10)),
            },
            &locks,
        );
        assert_eq!(
            kinds(&report),
            [
                FindingKind::ReleaseInFlight {
                    candidate: Some("v3".into()),
                    weight: 10
                },
                FindingKind::Locked {
                    identity: "sim:api".into(),
                    run: "r-1".into(),
                    holder: "alice@pc".into()
                },
            ]
        );
        assert!(report.summary.apply_refused);
        let text = report.render_text();
        assert!(
            text.contains("✗ sim:api is locked by run r-1 (alice@pc)"),
            "{text}"
        );
    }

    #[test]
    fn a_step_the_adapter_refuses_ends_the_planning() {
        let plan = plan(PLAN);
        // A simulated CloudFront distribution takes at most 15 %.
        let cloudfront = SimTarget::in_memory(SimConfig::new("api", TargetKind::CloudFront, "v1"));
        let targets =
            BTreeMap::from([("api".to_string(), Arc::new(cloudfront) as Arc<dyn Target>)]);
        let report = report_on(
            &plan,
            &targets,
            Reading {
                preflight: Ok(preflight(Capabilities::weights_up_to(100))),
                observed: Ok(observed("v1", None, 0)),
            },
            &BTreeMap::new(),
        );
        let statuses: Vec<StepStatus> = report.stages[0].steps.iter().map(|s| s.status).collect();
        assert_eq!(
            statuses,
            [
                StepStatus::Planned,
                StepStatus::Refused,
                StepStatus::NotPlanned,
                StepStatus::NotPlanned
            ]
        );
        let refused = &report.stages[0].steps[1];
        assert!(
            refused
                .detail
                .as_deref()
                .unwrap_or_default()
                .contains("above the 15%"),
            "{refused:?}"
        );
    }

    #[test]
    fn approximate_and_unsupported_weights_are_reported() {
        let plan = plan(PLAN);
        let approximate = Capabilities {
            weights: Weights::Approximate {
                max: 100,
                how: "replica ratios".into(),
            },
            waves: false,
            header_routes: false,
        };
        let report_with = |capabilities| {
            report(
                &plan,
                Reading {
                    preflight: Ok(preflight(capabilities)),
                    observed: Ok(observed("v1", None, 0)),
                },
                &BTreeMap::new(),
            )
        };
        let approximated = report_with(approximate);
        assert_eq!(
            kinds(&approximated),
            [FindingKind::ApproximateWeights {
                max: 100,
                how: "replica ratios".into()
            }]
        );
        assert!(!approximated.summary.apply_refused);
        let rolling = report_with(Capabilities::switch_only("all tasks move at once"));
        let found = kinds(&rolling);
        assert!(
            matches!(&found[..], [FindingKind::Unsupported { reason }] if reason.contains("cannot take a 20% canary weight")),
            "{found:?}"
        );
        assert!(rolling.summary.apply_refused);
    }

    #[test]
    fn drift_from_the_stable_version_and_failed_reads_are_reported() {
        let plan = plan(PLAN);
        let off = report(
            &plan,
            Reading {
                preflight: Ok(preflight(Capabilities::weights_up_to(100))),
                observed: Ok(observed("v0", None, 0)),
            },
            &BTreeMap::new(),
        );
        assert_eq!(
            kinds(&off),
            [FindingKind::NotOnStable {
                expected: "v1".into(),
                running: "v0".into()
            }]
        );
        let done = report(
            &plan,
            Reading {
                preflight: Ok(preflight(Capabilities::weights_up_to(100))),
                observed: Ok(observed("v2", None, 0)),
            },
            &BTreeMap::new(),
        );
        assert_eq!(
            kinds(&done),
            [FindingKind::AlreadyReleased {
                version: "v2".into()
            }]
        );
        let failed = report(
            &plan,
            Reading {
                preflight: Err("throttled".into()),
                observed: Err("throttled".into()),
            },
            &BTreeMap::new(),
        );
        assert!(failed.incomplete());
        assert_eq!(failed.summary.read_failures, 2);
        assert!(
            failed.stages[0]
                .steps
                .iter()
                .all(|s| s.status == StepStatus::NotPlanned)
        );
    }

    #[test]
    fn the_json_is_a_versioned_document() {
        let plan = plan(PLAN);
        let report = report(
            &plan,
            Reading {
                preflight: Ok(preflight(Capabilities::weights_up_to(100))),
                observed: Ok(observed("v1", Some("v3"), 10)),
            },
            &BTreeMap::new(),
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["apiVersion"], "deployctl.io/v1");
        assert_eq!(json["kind"], "ObservedImpactReport");
        assert_eq!(json["stages"][0]["now"]["candidate"], "v3");
        let finding = &json["stages"][0]["findings"][0];
        assert_eq!(finding["kind"], "releaseInFlight");
        assert_eq!(finding["weight"], 10);
        assert_eq!(finding["refusesApply"], false);
        assert_eq!(json["stages"][0]["steps"][0]["action"]["action"], "deploy");
        assert_eq!(json["stages"][0]["steps"][0]["status"], "planned");
    }
}
