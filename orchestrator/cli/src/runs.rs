//! `status` and `history`: what the journal says about runs, as text for
//! people and JSON for scripts (a versioned shape: `run`, `phase`,
//! `stages[].phase|weight|lastGate`).

use std::fmt::Write as _;

use deployctl_engine::clock::rfc3339;
use std::collections::BTreeMap;

use deployctl_engine::event::Event;
use deployctl_engine::journal::{EventRecord, RunRecord, StageRecord};
use deployctl_engine::state::RunPhase;

use crate::run_now::{self, StageNow};

pub use deployctl_engine::run::owner_alive;

/// A run that is not finished and whose process is gone.
pub fn is_interrupted(run: &RunRecord) -> bool {
    (!run.phase.is_terminal() || run.rollback_incomplete) && !owner_alive(run)
}

/// `retries`: the runs that start this one again (`deployctl retry`).
pub fn status_json(
    run: &RunRecord,
    stages: &[StageRecord],
    events: &[EventRecord],
    now: &BTreeMap<String, StageNow>,
    retries: &[String],
) -> serde_json::Value {
    let last = last_events(events);
    serde_json::json!({
        "apiVersion": "deployctl.io/v1",
        "kind": "RunStatus",
        "run": run.id,
        "phase": run.phase.as_str(),
        "plan": run.plan_name,
        "environment": run.environment,
        "planDigest": run.plan_digest,
        "initiator": run.initiator,
        "mode": run.mode,
        "createdAt": rfc3339(run.created_at),
        "updatedAt": rfc3339(run.updated_at),
        "outcome": run.outcome,
        "rollbackIncomplete": run.rollback_incomplete,
        "interrupted": is_interrupted(run),
        "held": run.held && !run.phase.is_terminal(),
        "retryOf": run.retry_of,
        "retriedAs": retries,
        "lastEvent": last.get(&None),
        "stages": stages.iter().map(|stage| serde_json::json!({
            "name": stage.name,
            "target": stage.target,
            "phase": stage.phase.as_str(),
            "weight": stage.weight,
            "stableVersion": stage.stable_version,
            "newVersion": stage.new_version,
            "lastGate": stage.last_gate,
            "detail": stage.detail,
            "lastEvent": last.get(&Some(stage.name.clone())),
            "now": now.get(&stage.name),
        })).collect::<Vec<_>>(),
    })
}

pub fn status_text(
    run: &RunRecord,
    stages: &[StageRecord],
    now: &BTreeMap<String, StageNow>,
    retries: &[String],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Run {}  {}  (plan {} → {}, started {} by {})",
        run.id,
        run.phase.as_str(),
        run.plan_name,
        run.environment,
        rfc3339(run.created_at),
        run.initiator
    );
    if let Some(outcome) = &run.outcome {
        let _ = writeln!(out, "  {outcome}");
    }
    if let Some(old) = &run.retry_of {
        let _ = writeln!(out, "  Retries run {old} (`deployctl status {old}`).");
    }
    if !retries.is_empty() {
        let _ = writeln!(out, "  Retried as run {}.", retries.join(", "));
    }
    if run.rollback_incomplete {
        let _ = writeln!(
            out,
            "  ROLLBACK INCOMPLETE: a human must act. Retry with `deployctl rollback {}`.",
            run.id
        );
    } else if run.held && !run.phase.is_terminal() {
        let _ = writeln!(
            out,
            "  HELD by `deployctl pause`: its stages wait before their next step. `deployctl promote {}` moves it on.",
            run.id
        );
    }
    if !run.rollback_incomplete && is_interrupted(run) {
        let _ = writeln!(
            out,
            "  The process driving this run is gone. Continue with `deployctl resume {}` or undo with `deployctl rollback {}`.",
            run.id, run.id
        );
    }
    let width = stages
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "  {:<width$}  {:<14}  {:>6}  VERSIONS / LAST GATE",
        "STAGE", "PHASE", "WEIGHT"
    );
    for stage in stages {
        let gate = last_gate(stage)
            .map(|(name, passed)| {
                format!(
                    "; gate {name}: {}",
                    if passed { "passed" } else { "failed" }
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<width$}  {:<14}  {:>5}%  {} → {}{}",
            stage.name,
            stage.phase.as_str(),
            stage.weight,
            stage.stable_version.as_deref().unwrap_or("?"),
            stage.new_version.as_deref().unwrap_or("?"),
            gate
        );
        for line in now
            .get(&stage.name)
            .map(run_now::text_lines)
            .unwrap_or_default()
        {
            let _ = writeln!(out, "  {:<width$}    {line}", "");
        }
    }
    out
}

/// The stage's last gate verdict, typed from the journal's record of it:
/// (gate, passed).
fn last_gate(stage: &StageRecord) -> Option<(String, bool)> {
    match Event::from_stored("gateResult", stage.last_gate.clone()?) {
        Ok(Event::GateResult { gate, result }) => Some((gate, result.passed())),
        _ => None,
    }
}

/// The newest event of the run and of each stage, for `status --output
/// json` (`lastEvent`: kind, time, one line).
pub fn last_events(events: &[EventRecord]) -> BTreeMap<Option<String>, serde_json::Value> {
    let mut last = BTreeMap::new();
    for record in events {
        let summary = serde_json::json!({
            "kind": record.event.kind(),
            "at": rfc3339(record.at),
            "summary": record.event.summary(),
        });
        if record.stage.is_some() {
            last.insert(record.stage.clone(), summary.clone());
        }
        // The run's newest event, whichever stage it was about.
        last.insert(None, summary);
    }
    last
}

pub fn history_text(runs: &[RunRecord]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24}  {:<12}  {:<20}  {:<12}  {:<24}  INITIATOR",
        "RUN", "PHASE", "PLAN", "ENVIRONMENT", "STARTED"
    );
    for run in runs {
        let phase = if run.rollback_incomplete {
            "NEEDS-HUMAN"
        } else {
            run.phase.as_str()
        };
        let _ = writeln!(
            out,
            "{:<24}  {:<12}  {:<20}  {:<12}  {:<24}  {}{}",
            run.id,
            phase,
            run.plan_name,
            run.environment,
            rfc3339(run.created_at),
            run.initiator,
            if run.mode == deployctl_engine::state::RunMode::Rehearse {
                " (rehearsal)"
            } else {
                ""
            }
        );
    }
    if runs.is_empty() {
        out.push_str("(no runs yet)\n");
    }
    out
}

pub fn history_json(runs: &[RunRecord]) -> serde_json::Value {
    serde_json::Value::Array(
        runs.iter()
            .map(|run| {
                serde_json::json!({
                    "run": run.id,
                    "phase": run.phase.as_str(),
                    "plan": run.plan_name,
                    "environment": run.environment,
                    "planDigest": run.plan_digest,
                    "initiator": run.initiator,
                    "mode": run.mode,
                    "createdAt": rfc3339(run.created_at),
                    "outcome": run.outcome,
                    "rollbackIncomplete": run.rollback_incomplete,
                })
            })
            .collect(),
    )
}

/// The exit code a run's end maps to (README's contract).
pub fn exit_code(phase: RunPhase, rollback_incomplete: bool) -> u8 {
    use crate::exit;
    if rollback_incomplete {
        return exit::ROLLBACK_INCOMPLETE;
    }
    match phase {
        RunPhase::Succeeded => exit::OK,
        RunPhase::RolledBack | RunPhase::Failed | RunPhase::Killed | RunPhase::Aborted => {
            exit::FAILED
        }
        // Still going (status of a live run): not a failure.
        _ => exit::OK,
    }
}
