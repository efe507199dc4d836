//! Steering a run in flight: `pause` holds it where it stands, `promote`
//! moves it on. One decision for every way in (the CLI on any process
//! sharing the journal, the in-cluster controller for a Release's
//! `spec.requests`), so a verb means the same wherever it is asked, and
//! asking twice is safe: a request with nothing to do says so and writes
//! nothing.

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
}

impl Steer {
    pub fn verb(self) -> &'static str {
        match self {
            Steer::Pause => "pause",
            Steer::Promote => "promote",
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
}

/// Journals `verb` for `run` unless there is nothing to do. The caller has
/// checked who may ask and audits what this returns.
pub fn request(journal: &Journal, run: &RunRecord, verb: Steer) -> Result<Steered, JournalError> {
    let name = verb.verb();
    if run.phase.is_terminal() {
        return Ok(Steered::NothingToDo(format!(
            "run {} already ended ({}); nothing to {name}",
            run.id,
            run.phase.as_str()
        )));
    }
    let (held, _) = journal.hold_state(&run.id)?;
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
    }
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
