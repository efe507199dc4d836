//! Run and stage phases: the words `status` prints and scripts match on.

use serde::{Deserialize, Serialize};

/// Where a whole run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunPhase {
    Pending,
    Progressing,
    /// Waiting for an approval (or a pause with no end).
    Paused,
    Succeeded,
    RollingBack,
    RolledBack,
    /// Stopped without promoting: a failed preflight, an error with
    /// automatic rollback off, or a rollback that could not complete.
    Failed,
    /// Stopped by `deployctl kill` and rolled back.
    Killed,
    /// Stopped by `deployctl abort`: traffic back on stable, the run left
    /// for someone to look at (distinct from a kill, the emergency path).
    Aborted,
}

impl RunPhase {
    pub const ALL: [RunPhase; 9] = [
        RunPhase::Pending,
        RunPhase::Progressing,
        RunPhase::Paused,
        RunPhase::Succeeded,
        RunPhase::RollingBack,
        RunPhase::RolledBack,
        RunPhase::Failed,
        RunPhase::Killed,
        RunPhase::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunPhase::Pending => "Pending",
            RunPhase::Progressing => "Progressing",
            RunPhase::Paused => "Paused",
            RunPhase::Succeeded => "Succeeded",
            RunPhase::RollingBack => "RollingBack",
            RunPhase::RolledBack => "RolledBack",
            RunPhase::Failed => "Failed",
            RunPhase::Killed => "Killed",
            RunPhase::Aborted => "Aborted",
        }
    }

    pub fn parse(text: &str) -> Option<RunPhase> {
        RunPhase::ALL
            .into_iter()
            .find(|phase| phase.as_str() == text)
    }

    /// No process will move this run's targets again on its own.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunPhase::Succeeded
                | RunPhase::RolledBack
                | RunPhase::Failed
                | RunPhase::Killed
                | RunPhase::Aborted
        )
    }
}

/// Where one stage stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StagePhase {
    Pending,
    Progressing,
    Paused,
    Succeeded,
    /// Failed (a gate, an error, a timeout); rollback follows if enabled.
    Failed,
    /// Never started because the run stopped first.
    Skipped,
    RollingBack,
    RolledBack,
    /// Rollback gave up after its retries: a human must act.
    RollbackFailed,
}

impl StagePhase {
    pub const ALL: [StagePhase; 9] = [
        StagePhase::Pending,
        StagePhase::Progressing,
        StagePhase::Paused,
        StagePhase::Succeeded,
        StagePhase::Failed,
        StagePhase::Skipped,
        StagePhase::RollingBack,
        StagePhase::RolledBack,
        StagePhase::RollbackFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StagePhase::Pending => "Pending",
            StagePhase::Progressing => "Progressing",
            StagePhase::Paused => "Paused",
            StagePhase::Succeeded => "Succeeded",
            StagePhase::Failed => "Failed",
            StagePhase::Skipped => "Skipped",
            StagePhase::RollingBack => "RollingBack",
            StagePhase::RolledBack => "RolledBack",
            StagePhase::RollbackFailed => "RollbackFailed",
        }
    }

    pub fn parse(text: &str) -> Option<StagePhase> {
        StagePhase::ALL
            .into_iter()
            .find(|phase| phase.as_str() == text)
    }
}

/// How a run moves its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    /// Real targets (and the sandbox's persisted simulators).
    Apply,
    /// In-memory simulators on a paused clock: nothing real is touched and
    /// no real target is locked.
    Rehearse,
}

impl RunMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Apply => "apply",
            RunMode::Rehearse => "rehearse",
        }
    }

    pub fn parse(text: &str) -> Option<RunMode> {
        [RunMode::Apply, RunMode::Rehearse]
            .into_iter()
            .find(|mode| mode.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_round_trip_through_their_names() {
        for phase in RunPhase::ALL {
            assert_eq!(RunPhase::parse(phase.as_str()), Some(phase));
        }
        for phase in StagePhase::ALL {
            assert_eq!(StagePhase::parse(phase.as_str()), Some(phase));
        }
        assert_eq!(RunPhase::parse("Done"), None);
        for mode in [RunMode::Apply, RunMode::Rehearse] {
            assert_eq!(RunMode::parse(mode.as_str()), Some(mode));
        }
    }
}
