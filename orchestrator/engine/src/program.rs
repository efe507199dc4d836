//! A stage's strategy compiled into a flat list of operations.
//!
//! The engine runs a stage by walking this list with a cursor that is
//! journaled after every operation, so "where was I" after a crash is one
//! number. Compiling is pure and deterministic: the same validated plan
//! always yields the same program, which is what lets a resumed process
//! trust a cursor written by the process that died.

use std::time::Duration;

use deployctl_adapter::Action;
use deployctl_plan::model::{CanaryStep, Stage, Strategy, Target, WaveSize};

/// One thing a stage does.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Make a change on the target (journaled intent → apply → outcome).
    Apply(Action),
    /// Dispatch OTA wave `index`; its device count is computed from the
    /// fleet size observed when the wave starts.
    StartWave { index: u32, size: WaveSize },
    /// Wait until wave `index`'s devices have reported (or timed out) and
    /// judge it against the success and abort thresholds.
    AwaitWave { index: u32 },
    /// Hold the current state.
    Pause(Duration),
    /// Run these gates to completion; all must pass.
    Gates(Vec<String>),
    /// Wait until the named approval is granted.
    Approval(String),
    /// Start background gates that watch the stage until `StopMonitors`.
    StartMonitors(Vec<String>),
    /// Stop the background gates; each must have seen a conclusive pass.
    StopMonitors,
}

/// The operations that release `stage` to `target`'s new version.
pub fn compile(stage: &Stage, target: &Target) -> Vec<Op> {
    let version = target
        .artifact
        .as_ref()
        .map(|artifact| artifact.version.clone())
        .unwrap_or_default();
    // Fleets have nothing to deploy beside a stable version: each wave
    // dispatches the release to more devices.
    let mut ops = match stage.strategy {
        Strategy::Waves(_) => Vec::new(),
        _ => vec![Op::Apply(Action::Deploy { version })],
    };
    match &stage.strategy {
        Strategy::Canary { steps, gates } => {
            if !gates.is_empty() {
                ops.push(Op::StartMonitors(gates.clone()));
            }
            for step in steps {
                ops.push(match step {
                    CanaryStep::SetWeight(percent) => {
                        Op::Apply(Action::SetWeight { percent: *percent })
                    }
                    CanaryStep::Pause(duration) => Op::Pause(*duration),
                    CanaryStep::Analysis(names) => Op::Gates(names.clone()),
                    CanaryStep::Approval(name) => Op::Approval(name.clone()),
                    CanaryStep::SetHeaderRoute(route) => Op::Apply(Action::SetHeaderRoute {
                        route: route.clone(),
                    }),
                });
            }
            if !gates.is_empty() {
                ops.push(Op::StopMonitors);
            }
            ops.push(Op::Apply(Action::Promote));
        }
        Strategy::BlueGreen {
            pre_promotion_gates,
            post_promotion_gates,
            approval,
            scale_down_delay,
        } => {
            if !pre_promotion_gates.is_empty() {
                ops.push(Op::Gates(pre_promotion_gates.clone()));
            }
            if let Some(name) = approval {
                ops.push(Op::Approval(name.clone()));
            }
            ops.push(Op::Apply(Action::SetWeight { percent: 100 }));
            if !post_promotion_gates.is_empty() {
                ops.push(Op::Gates(post_promotion_gates.clone()));
            }
            ops.push(Op::Apply(Action::Promote));
            if !scale_down_delay.is_zero() {
                ops.push(Op::Pause(*scale_down_delay));
            }
            ops.push(Op::Apply(Action::Retire));
        }
        Strategy::Waves(waves) => {
            if !waves.gates.is_empty() {
                ops.push(Op::StartMonitors(waves.gates.clone()));
            }
            for (index, wave) in waves.waves.iter().enumerate() {
                let index = index as u32;
                if let Some(name) = &wave.approval {
                    ops.push(Op::Approval(name.clone()));
                }
                ops.push(Op::StartWave {
                    index,
                    size: wave.size,
                });
                ops.push(Op::AwaitWave { index });
                if !waves.bake_time.is_zero() {
                    ops.push(Op::Pause(waves.bake_time));
                }
            }
            if !waves.gates.is_empty() {
                ops.push(Op::StopMonitors);
            }
            // No promote: once the last wave has landed, the fleet runs the
            // release; there is no traffic to switch.
        }
    }
    ops
}

/// The traffic weight on the new version once `ops[..cursor]` have run.
pub fn weight_at(ops: &[Op], cursor: usize) -> u8 {
    ops[..cursor.min(ops.len())]
        .iter()
        .rev()
        .find_map(|op| match op {
            Op::Apply(Action::SetWeight { percent }) => Some(*percent),
            Op::Apply(Action::Promote) => Some(100),
            _ => None,
        })
        .unwrap_or(0)
}

/// A wave program's progress at `cursor`: waves started, of how many;
/// `None` for programs that move traffic instead.
pub fn waves_at(ops: &[Op], cursor: usize) -> Option<crate::progress::WavesStarted> {
    let of = ops
        .iter()
        .filter(|op| matches!(op, Op::StartWave { .. }))
        .count() as u32;
    (of > 0).then(|| crate::progress::WavesStarted {
        started: ops[..cursor.min(ops.len())]
            .iter()
            .filter(|op| matches!(op, Op::StartWave { .. }))
            .count() as u32,
        of,
    })
}

/// One step in the plan's words.
pub fn describe(op: &Op) -> String {
    match op {
        Op::Apply(action) => action.to_string(),
        Op::StartWave { index, .. } => format!("start wave {}", index + 1),
        Op::AwaitWave { index } => format!("wait for wave {} to report", index + 1),
        Op::Pause(duration) => format!(
            "pause {}",
            deployctl_plan::duration::format_duration(*duration)
        ),
        Op::Gates(gates) => format!("analysis: {}", gates.join(", ")),
        Op::Approval(name) => format!("approval {name}"),
        Op::StartMonitors(gates) => format!("start background gates {}", gates.join(", ")),
        Op::StopMonitors => "stop background gates".to_string(),
    }
}

/// Whether `promote --full` skips `ops[cursor]`: every step before the
/// promotion that only waits or measures (pauses, analysis, approvals,
/// background gates) or shifts part of the traffic. What makes the
/// release (deploy, the blue-green switch to 100 %, header routes, the
/// promotion and what follows it, such as blue-green's scale-down delay
/// and retirement) still runs. A program without a promotion (fleet
/// waves: each wave must still be dispatched and judged) skips nothing.
pub fn skipped_by_full_promotion(ops: &[Op], cursor: usize) -> bool {
    let Some(promote) = ops
        .iter()
        .position(|op| matches!(op, Op::Apply(Action::Promote)))
    else {
        return false;
    };
    cursor < promote
        && match &ops[cursor] {
            Op::Apply(Action::SetWeight { percent }) => *percent < 100,
            Op::Apply(_) | Op::StartWave { .. } | Op::AwaitWave { .. } => false,
            Op::Pause(_)
            | Op::Gates(_)
            | Op::Approval(_)
            | Op::StartMonitors(_)
            | Op::StopMonitors => true,
        }
}

/// The gates measuring at `cursor`: the background ones running then,
/// and the step's own when it is an analysis.
pub fn measuring_at(ops: &[Op], cursor: usize) -> Vec<String> {
    let mut gates = monitors_at(ops, cursor);
    if let Some(Op::Gates(names)) = ops.get(cursor) {
        gates.extend(names.iter().cloned());
    }
    gates
}

/// Of the latest measurements the journal keeps (`Journal::live_gates`:
/// stage, when, gate), those of the gates measuring in `stage` at
/// `cursor`: a finished gate's row is history, not news.
pub fn live_at<'a>(
    live: &'a [(String, i64, crate::gate::LiveGate)],
    stage: &str,
    ops: &[Op],
    cursor: usize,
) -> impl Iterator<Item = (i64, &'a crate::gate::LiveGate)> {
    let now = measuring_at(ops, cursor);
    live.iter()
        .filter(move |(name, _, gate)| name == stage && now.contains(&gate.gate))
        .map(|(_, at, gate)| (*at, gate))
}

/// The background gates running at `cursor` (started and not yet stopped).
pub fn monitors_at(ops: &[Op], cursor: usize) -> Vec<String> {
    let mut active = Vec::new();
    for op in &ops[..cursor.min(ops.len())] {
        match op {
            Op::StartMonitors(gates) => active = gates.clone(),
            Op::StopMonitors => active.clear(),
            _ => {}
        }
    }
    active
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(source: &str) -> deployctl_plan::ValidatedPlan {
        deployctl_plan::load("test.yaml", source.as_bytes())
            .unwrap_or_else(|rejected| panic!("{}", rejected.render(false)))
            .plan
    }

    const CANARY: &str = "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {name: t, environment: test}\ntargets: {api: {sim: {}}}\nartifacts: {api: {version: v2}}\nstages:\n  - name: api\n    target: api\n    canary:\n      steps: [{setWeight: 20}, {pause: {duration: 5s}}, {analysis: {gates: [h]}}, {setWeight: 60}]\n      gates: [h]\ngates: {h: {sim: {}}}\n";

    #[test]
    fn canary_compiles_to_deploy_steps_and_promote() {
        let plan = plan(CANARY);
        let stage = &plan.stages[0];
        let ops = compile(stage, plan.target_of(stage));
        assert_eq!(
            ops,
            vec![
                Op::Apply(Action::Deploy {
                    version: "v2".into()
                }),
                Op::StartMonitors(vec!["h".into()]),
                Op::Apply(Action::SetWeight { percent: 20 }),
                Op::Pause(Duration::from_secs(5)),
                Op::Gates(vec!["h".into()]),
                Op::Apply(Action::SetWeight { percent: 60 }),
                Op::StopMonitors,
                Op::Apply(Action::Promote),
            ]
        );
        let skipped: Vec<bool> = (0..ops.len())
            .map(|cursor| skipped_by_full_promotion(&ops, cursor))
            .collect();
        assert_eq!(
            skipped,
            [false, true, true, true, true, true, true, false],
            "a full promotion keeps the deploy and the promotion only"
        );
        assert_eq!(weight_at(&ops, 0), 0);
        assert_eq!(weight_at(&ops, 4), 20);
        assert_eq!(weight_at(&ops, 8), 100);
        assert_eq!(monitors_at(&ops, 3), vec!["h".to_string()]);
        assert!(monitors_at(&ops, 7).is_empty());
    }

    #[test]
    fn blue_green_switches_then_retires_after_the_delay() {
        let plan = plan(
            "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {name: t, environment: test}\ntargets: {api: {sim: {}}}\nartifacts: {api: {version: v2}}\nstages:\n  - name: api\n    target: api\n    blueGreen: {prePromotionGates: [h], scaleDownDelay: 10s}\ngates: {h: {sim: {}}}\n",
        );
        let stage = &plan.stages[0];
        let ops = compile(stage, plan.target_of(stage));
        assert_eq!(
            ops[1..],
            [
                Op::Gates(vec!["h".into()]),
                Op::Apply(Action::SetWeight { percent: 100 }),
                Op::Apply(Action::Promote),
                Op::Pause(Duration::from_secs(10)),
                Op::Apply(Action::Retire),
            ]
        );
        // A full promotion skips the analysis only: the switch, the
        // scale-down delay (endpoint propagation) and retirement stay.
        let skipped: Vec<bool> = (0..ops.len())
            .map(|cursor| skipped_by_full_promotion(&ops, cursor))
            .collect();
        assert_eq!(skipped, [false, true, false, false, false, false]);
    }
}
