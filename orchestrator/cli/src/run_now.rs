//! What a live run is doing right now, for `status` in an incident: the
//! step each unfinished stage is on (and its index), the time left in a
//! pause, the approval it waits for with who approved so far and who still
//! may, and the values behind the last gate verdict.
//!
//! Everything is derived from the journal and the plan recorded with the
//! run (compiled again into the same program the engine walks, which is
//! deterministic), so it works for a run driven by another process.

use std::collections::BTreeMap;
use std::path::Path;

use deployctl_engine::event::Event;
use deployctl_engine::journal::{Journal, RunRecord, StageRecord};
use deployctl_engine::program::{self, Op};
use deployctl_engine::state::StagePhase;
use deployctl_plan::model::ValidatedPlan;
use serde::Serialize;

/// Where one unfinished stage is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageNow {
    /// The step the stage is on, 1-based, of how many.
    pub step: Option<Step>,
    /// Time left in the pause the stage is holding, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_left_ms: Option<i64>,
    /// The approval the stage waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<ApprovalWait>,
    /// The last gate verdict's measured values, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_gate_values: Option<GateValues>,
    /// The gates measuring now (the analysis step's, the background
    /// ones), each with its totals and latest measurement.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub measuring: Vec<Measuring>,
}

/// A gate measuring now, as its latest measurement left it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Measuring {
    #[serde(flatten)]
    pub live: deployctl_engine::gate::LiveGate,
    /// How long ago the latest measurement was kept, in milliseconds.
    pub age_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub index: usize,
    pub of: usize,
    pub op: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalWait {
    pub approval: String,
    pub role: String,
    pub required: u32,
    pub approved_by: Vec<String>,
    /// People the access file lets approve who have not yet (the run's
    /// initiator excluded: nobody approves their own release); `None` when
    /// there is no access file to say.
    pub may_approve: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateValues {
    pub gate: String,
    pub passed: bool,
    pub values: Vec<Option<f64>>,
}

/// What each unfinished stage of `run` is doing, by stage name.
pub fn stages_now(
    run: &RunRecord,
    stages: &[StageRecord],
    journal: &Journal,
    access_file: &Path,
    now_ms: i64,
) -> BTreeMap<String, StageNow> {
    // A finished run (the common case) reads neither the plan nor the
    // access file; the access file only when a stage waits for approval.
    if !stages
        .iter()
        .any(|stage| matches!(stage.phase, StagePhase::Progressing | StagePhase::Paused))
    {
        return BTreeMap::new();
    }
    let plan = deployctl_plan::load(&run.plan_file, run.plan_source.as_bytes())
        .ok()
        .map(|loaded| loaded.plan);
    let access = std::cell::OnceCell::new();
    let live = journal.live_gates(&run.id).unwrap_or_default();
    stages
        .iter()
        .filter(|stage| matches!(stage.phase, StagePhase::Progressing | StagePhase::Paused))
        .map(|stage| {
            let ops = plan.as_ref().and_then(|plan| program_of(plan, &stage.name));
            let op = ops
                .as_ref()
                .and_then(|ops| ops.get(stage.cursor as usize).cloned());
            let step = ops.as_ref().zip(op.as_ref()).map(|(ops, op)| Step {
                index: stage.cursor as usize + 1,
                of: ops.len(),
                op: program::describe(op),
            });
            let pause_left_ms = stage
                .pause_until
                .filter(|_| matches!(op, Some(Op::Pause(_))))
                .map(|until| (until - now_ms).max(0));
            let waiting_for = match (&op, plan.as_ref()) {
                (Some(Op::Approval(name)), Some(plan)) => {
                    plan.approvals.get(name).map(|approval| {
                        let approved_by = journal.approvers(&run.id, name).unwrap_or_default();
                        let initiator = deployctl_approvals::initiator_user(&run.initiator);
                        let access = access.get_or_init(|| {
                            deployctl_policy::access::Access::load(access_file).ok()
                        });
                        let may_approve = access.as_ref().map(|access| {
                            access
                                .users()
                                .filter(|user| access.holds_approval_role(user, &approval.role))
                                .filter(|user| *user != initiator)
                                .filter(|user| !approved_by.iter().any(|done| done == user))
                                .map(str::to_string)
                                .collect()
                        });
                        ApprovalWait {
                            approval: name.clone(),
                            role: approval.role.clone(),
                            required: approval.required,
                            approved_by,
                            may_approve,
                        }
                    })
                }
                _ => None,
            };
            let last_gate_values = stage.last_gate.clone().and_then(|stored| {
                match Event::from_stored("gateResult", stored) {
                    Ok(Event::GateResult { gate, result }) => Some(GateValues {
                        gate,
                        passed: result.passed(),
                        values: result.measurements.iter().map(|m| m.value).collect(),
                    }),
                    _ => None,
                }
            });
            let measuring = ops
                .as_ref()
                .map(|ops| {
                    program::live_at(&live, &stage.name, ops, stage.cursor as usize)
                        .map(|(at, gate)| Measuring {
                            live: gate.clone(),
                            age_ms: (now_ms - at).max(0),
                        })
                        .collect()
                })
                .unwrap_or_default();
            (
                stage.name.clone(),
                StageNow {
                    step,
                    pause_left_ms,
                    waiting_for,
                    last_gate_values,
                    measuring,
                },
            )
        })
        .collect()
}

fn program_of(plan: &ValidatedPlan, stage: &str) -> Option<Vec<Op>> {
    let stage = plan.stages.iter().find(|s| s.name == stage)?;
    Some(program::compile(stage, plan.target_of(stage)))
}

/// The lines `status` prints under a stage that is on its way.
pub fn text_lines(now: &StageNow) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(step) = &now.step {
        let mut line = format!("step {} of {}: {}", step.index, step.of, step.op);
        if let Some(left) = now.pause_left_ms {
            line.push_str(&format!(" ({} left)", seconds(left)));
        }
        lines.push(line);
    }
    if let Some(wait) = &now.waiting_for {
        let so_far = if wait.approved_by.is_empty() {
            "none yet".to_string()
        } else {
            wait.approved_by.join(", ")
        };
        lines.push(format!(
            "waits for approval {}: {} of {} from role {} (approved: {so_far})",
            wait.approval,
            wait.approved_by.len(),
            wait.required,
            wait.role
        ));
        match &wait.may_approve {
            Some(people) if !people.is_empty() => {
                lines.push(format!("may still approve: {}", people.join(", ")));
            }
            Some(_) => lines.push(format!(
                "nobody else in the access file holds role {}",
                wait.role
            )),
            None => {}
        }
    }
    for gate in &now.measuring {
        let counts = &gate.live.counts;
        let last = &gate.live.last;
        lines.push(format!(
            "measuring {}{}: {} pass, {} fail, {} without data, {} errors; latest {}{} {} ago{}",
            gate.live.gate,
            if gate.live.background {
                " (background)"
            } else {
                ""
            },
            counts.passed,
            counts.failed,
            counts.no_data,
            counts.errors,
            last.kind,
            last.value.map(|v| format!(" {v}")).unwrap_or_default(),
            seconds(gate.age_ms),
            if last.detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", last.detail)
            }
        ));
    }
    if let Some(gate) = &now.last_gate_values
        && !gate.values.is_empty()
    {
        let values: Vec<String> = gate
            .values
            .iter()
            .map(|value| value.map_or("no data".to_string(), |v| format!("{v}")))
            .collect();
        lines.push(format!(
            "last gate {}: {} (values {})",
            gate.gate,
            if gate.passed { "passed" } else { "failed" },
            values.join(", ")
        ));
    }
    lines
}

fn seconds(ms: i64) -> String {
    let seconds = (ms + 999) / 1000;
    if seconds >= 120 {
        format!("{}m{}s", seconds / 60, seconds % 60)
    } else {
        format!("{seconds}s")
    }
}

/// One approval a run waits for, for `deployctl approvals`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Waiting {
    run: String,
    plan: String,
    environment: String,
    stage: String,
    #[serde(flatten)]
    wait: ApprovalWait,
}

/// `deployctl approvals [--user USER]`: what waits for whom, across every
/// unfinished run.
pub fn list_approvals(user: Option<&str>, options: &crate::engine_cmds::Options<'_>) -> u8 {
    use deployctl_engine::journal::RunQuery;
    use deployctl_engine::state::RunPhase;
    let journal = match Journal::open(options.state_dir) {
        Ok(journal) => journal,
        Err(error) => return crate::report::refused(error),
    };
    let query = RunQuery {
        phases: Some(vec![RunPhase::Paused, RunPhase::Progressing]),
        ..RunQuery::default()
    };
    let runs = match journal.runs_matching(&query) {
        Ok(runs) => runs,
        Err(error) => return crate::report::failed(error),
    };
    let now_ms = deployctl_time::now_ms();
    let mut waiting = Vec::new();
    for run in runs {
        let stages = journal.stages(&run.id).unwrap_or_default();
        for (stage, now) in stages_now(&run, &stages, &journal, options.access, now_ms) {
            let Some(wait) = now.waiting_for else {
                continue;
            };
            let for_user = user.is_none_or(|user| {
                wait.may_approve
                    .as_ref()
                    .is_some_and(|people| people.iter().any(|p| p == user))
            });
            if for_user {
                waiting.push(Waiting {
                    run: run.id.clone(),
                    plan: run.plan_name.clone(),
                    environment: run.environment.clone(),
                    stage,
                    wait,
                });
            }
        }
    }
    if options.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&waiting).unwrap_or_default()
        );
        return crate::exit::OK;
    }
    if waiting.is_empty() {
        outln!(
            "(no run waits for an approval{})",
            user.map(|u| format!(" {u} may give")).unwrap_or_default()
        );
        return crate::exit::OK;
    }
    for item in &waiting {
        let approved = if item.wait.approved_by.is_empty() {
            "none yet".to_string()
        } else {
            item.wait.approved_by.join(", ")
        };
        let may = match &item.wait.may_approve {
            Some(people) if !people.is_empty() => people.join(", "),
            Some(_) => "nobody else holds the role".to_string(),
            None => "(no access file)".to_string(),
        };
        outln!(
            "{}  stage {}  approval {} ({} of {} from role {}; approved: {approved}; may approve: {may})  plan {} → {}",
            item.run,
            item.stage,
            item.wait.approval,
            item.wait.approved_by.len(),
            item.wait.required,
            item.wait.role,
            item.plan,
            item.environment
        );
    }
    crate::exit::OK
}
