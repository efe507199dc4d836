//! Steering a run in flight: `pause` holds it where it stands, `promote`
//! moves it on. One decision for every way in (the CLI on any process
//! sharing the journal, the in-cluster controller for a Release's
//! `spec.requests`), so a verb means the same wherever it is asked, and
//! asking twice is safe: a request with nothing to do says so and writes
//! nothing.

use deployctl_plan::model::Strategy;

use crate::journal::{Journal, JournalError, RunRecord};
use crate::state::StagePhase;

/// What to do to a run in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steer {
    /// Hold each stage before its next step; a running pause goes on past
    /// its end, gates still watching.
    Pause,
    /// End the pause each stage is in now, and release a hold.
    Promote,
    /// `promote --full`: as `Promote`, and every stage, now and later,
    /// skips its remaining pauses, analysis, approvals and partial
    /// weights, straight to full promotion.
    PromoteFull,
}

impl Steer {
    pub fn verb(self) -> &'static str {
        match self {
            Steer::Pause => "pause",
            Steer::Promote => "promote",
            Steer::PromoteFull => "promote --full",
        }
    }
}

/// What a steering request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Steered {
    /// Journaled; the run's driver acts on it at its next poll. `held`:
    /// a hold was released (promote).
    Done { held: bool },
    /// Nothing changed, and why (already paused, nothing to promote, the
    /// run ended).
    NothingToDo(String),
    /// Not done, and why: what was asked cannot be done to this run.
    Refused(String),
}

/// Journals `verb` for `run` unless there is nothing to do. The caller has
/// checked who may ask and audits what this returns; `confirm` is asked
/// last, just before a full promotion is journaled (its approval in a
/// protected environment), and its refusal is returned as `Refused`.
pub fn request(
    journal: &Journal,
    run: &RunRecord,
    verb: Steer,
    confirm: impl FnOnce() -> Result<(), String>,
) -> Result<Steered, JournalError> {
    let name = verb.verb();
    if run.phase.is_terminal() {
        return Ok(Steered::NothingToDo(format!(
            "run {} already ended ({}); nothing to {name}",
            run.id,
            run.phase.as_str()
        )));
    }
    let steering = journal.hold_state(&run.id)?;
    let held = steering.held;
    match verb {
        Steer::Pause if held => Ok(Steered::NothingToDo(format!(
            "run {} is already paused; nothing to do (`deployctl promote {}` moves it on)",
            run.id, run.id
        ))),
        Steer::Pause => {
            journal.request_hold(&run.id, true)?;
            Ok(Steered::Done { held: false })
        }
        Steer::Promote => {
            if !held && !in_pause(journal, &run.id)? {
                return Ok(Steered::NothingToDo(format!(
                    "run {} is neither paused nor in a pause; nothing to promote",
                    run.id
                )));
            }
            journal.request_promote(&run.id)?;
            Ok(Steered::Done { held })
        }
        Steer::PromoteFull if steering.full => Ok(Steered::NothingToDo(format!(
            "run {} is already fully promoted; nothing to do",
            run.id
        ))),
        Steer::PromoteFull => {
            if let Some(stage) = unfinished_waves(journal, run)? {
                return Ok(Steered::Refused(format!(
                    "stage `{stage}` of run {} releases to a fleet in waves, which a full promotion cannot skip (each wave must still be dispatched and judged); `deployctl promote {}` ends the current pause",
                    run.id, run.id
                )));
            }
            if let Err(refused) = confirm() {
                return Ok(Steered::Refused(refused));
            }
            journal.request_full_promotion(&run.id)?;
            Ok(Steered::Done { held })
        }
    }
}

/// The first stage of the run that releases in waves and has not
/// succeeded.
fn unfinished_waves(journal: &Journal, run: &RunRecord) -> Result<Option<String>, JournalError> {
    let Ok(loaded) = deployctl_plan::load(&run.plan_file, run.plan_source.as_bytes()) else {
        return Err(JournalError::Corrupt(format!(
            "the plan recorded for run {} no longer validates",
            run.id
        )));
    };
    let stages = journal.stages(&run.id)?;
    Ok(loaded
        .plan
        .stages
        .iter()
        .filter(|stage| matches!(stage.strategy, Strategy::Waves(_)))
        .find(|stage| {
            !stages
                .iter()
                .any(|record| record.name == stage.name && record.phase == StagePhase::Succeeded)
        })
        .map(|stage| stage.name.clone()))
}

/// What a request that was journaled does, for the person who asked.
pub fn said(run_id: &str, verb: Steer, held: bool) -> String {
    match verb {
        Steer::Pause => format!(
            "run {run_id} paused: each stage holds before its next step and stays in a pause past its end, gates still watching (its timeout still counts). `deployctl promote {run_id}` moves it on."
        ),
        Steer::Promote => format!(
            "run {run_id} promoted: the pause its stages are in ends now{}",
            if held {
                " and its hold is released"
            } else {
                ""
            }
        ),
        Steer::PromoteFull => format!(
            "run {run_id} fully promoted: every stage skips its remaining pauses, analysis, approvals and partial weights and goes straight to promotion{}",
            if held { "; its hold is released" } else { "" }
        ),
    }
}

/// Whether a stage of the run is in a pause step now (a pause's end is
/// journaled when it starts and cleared when the step is done).
fn in_pause(journal: &Journal, run_id: &str) -> Result<bool, JournalError> {
    Ok(journal.stages(run_id)?.iter().any(|stage| {
        matches!(stage.phase, StagePhase::Progressing | StagePhase::Paused)
            && stage.pause_until.is_some()
    }))
}
