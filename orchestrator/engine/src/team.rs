//! The engine's side of team locks (R13): with a team backend, a run
//! takes its targets' locks there as well as in its journal, keeps their
//! lease alive while it is driven, and lets go when it ends.
//!
//! Order of events: [`Engine::start`](crate::executor::Engine::start)
//! takes the team locks (all or none) before the run is recorded, so a
//! refusal still leaves no run; a resumed run takes them again (its own
//! are given back to it, even with the lease run out). While
//! [`Engine::execute`](crate::executor::Engine::execute) drives the run, a
//! renewer extends the lease every third of it. A lock found broken (an
//! operator on another PC decided this run was dead) holds the run: it
//! stops at its next step and waits for a human, because someone else
//! may be moving the target now and rolling back could undo their work.
//! A run that ends gives its locks back.

use std::sync::Arc;
use std::time::Duration;

use deployctl_adapter::team::{
    LockOwner, SharedDecision, SharedRun, SharedStage, StopAsk, TeamLockError, TeamLocks, TeamRuns,
};

use crate::executor::{Engine, EngineError};
use crate::journal::{Journal, RunRecord, StopRequest};
use crate::progress::{Progress, ProgressSink};
use crate::start::Refusal;

/// The team backend as the engine holds it (`Debug` for
/// [`EngineOptions`](crate::executor::EngineOptions)): its locks, and
/// where run records and stop requests are shared.
#[derive(Clone)]
pub struct TeamBackend {
    pub locks: Arc<dyn TeamLocks>,
    pub runs: Option<Arc<dyn TeamRuns>>,
}

impl std::fmt::Debug for TeamBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeamBackend")
            .field("lease", &self.locks.lease())
            .field("runs", &self.runs.is_some())
            .finish()
    }
}

/// How often a driven run's record is written through and the backend
/// asked whether another PC wants it stopped.
const SHARE_EVERY: Duration = Duration::from_millis(500);

impl Refusal {
    /// A team lock refusal: nothing was taken, nothing moved.
    fn from_team(error: TeamLockError) -> Refusal {
        match error {
            TeamLockError::Held { target, owner, .. } => Refusal::Locked {
                target,
                run: owner.run.clone(),
                holder: format!("operator {} on PC {}", owner.operator, owner.pc),
            },
            other => Refusal::TeamLock {
                reason: other.to_string(),
            },
        }
    }
}

/// This PC as the owner of `run_id`'s locks.
pub(crate) fn owner_here(run_id: &str, operator: &str, environment: &str) -> LockOwner {
    LockOwner {
        run: run_id.to_owned(),
        pc: crate::run::host_name(),
        operator: operator.to_owned(),
        environment: environment.to_owned(),
    }
}

/// The distinct platform identities of a run's stages.
fn lock_keys(journal: &Journal, run_id: &str) -> Result<Vec<String>, EngineError> {
    let mut keys: Vec<String> = journal
        .stages(run_id)?
        .into_iter()
        .map(|stage| stage.target_key)
        .filter(|key| !key.is_empty())
        .collect();
    keys.sort();
    keys.dedup();
    Ok(keys)
}

impl Engine {
    fn team(&self) -> Option<&Arc<dyn TeamLocks>> {
        self.options.team.as_ref().map(|backend| &backend.locks)
    }

    /// Takes `keys` in the team backend for a run not yet recorded, or
    /// refuses it.
    pub(crate) async fn take_team_locks(
        &self,
        keys: &[String],
        owner: &LockOwner,
    ) -> Result<(), EngineError> {
        let Some(team) = self.team() else {
            return Ok(());
        };
        let keys: Vec<String> = keys.iter().filter(|key| !key.is_empty()).cloned().collect();
        team.acquire(&keys, owner)
            .await
            .map_err(|error| EngineError::Refused(Refusal::from_team(error)))
    }

    /// A resumed run's team locks, taken again as its own (this PC's);
    /// rehearsals lock nothing.
    pub(crate) async fn retake_team_locks(&self, run: &RunRecord) -> Result<(), EngineError> {
        if self.team().is_none() || run.mode == crate::state::RunMode::Rehearse {
            return Ok(());
        }
        let run_id = run.id.as_str();
        let owner = &owner_here(run_id, &run.initiator, &run.environment);
        // A run another PC took over (this one was thought dead) is
        // driven there now: never here again.
        if let Some(runs) = self.team_runs()
            && let Ok(Some(shared)) = runs.fetch(run_id).await
            && shared.pc != owner.pc
        {
            return Err(EngineError::Refused(Refusal::TeamLock {
                reason: format!(
                    "run {run_id} was taken over by PC {} (the team backend's record): it is driven there, not on {}",
                    shared.pc, owner.pc
                ),
            }));
        }
        let keys = lock_keys(&self.journal, run_id)?;
        self.take_team_locks(&keys, owner).await
    }

    /// Lets go of a run's team locks; a failure is shown, not fatal: the
    /// lease runs out and the lock shows as expired to whoever comes next.
    pub(crate) async fn release_team_locks(&self, run_id: &str) {
        if self.team().is_none() {
            return;
        }
        if let (Ok(keys), Ok(run)) = (lock_keys(&self.journal, run_id), self.journal.run(run_id)) {
            let owner = owner_here(run_id, &run.initiator, &run.environment);
            self.give_back_team_locks(&keys, &owner).await;
        }
    }

    /// Lets go of `keys` (those `owner` still holds).
    pub(crate) async fn give_back_team_locks(&self, keys: &[String], owner: &LockOwner) {
        let Some(team) = self.team() else {
            return;
        };
        if let Err(error) = team.release(keys, owner).await {
            self.progress.emit(Progress::Notice {
                run: owner.run.clone(),
                message: format!(
                    "the team locks could not be released ({error}); their lease runs out"
                ),
            });
        }
    }

    /// Renews the run's team locks every third of the lease until
    /// aborted. A lost lock holds the run (see the module docs).
    pub(crate) fn spawn_lease_renewer(
        &self,
        run_id: &str,
    ) -> Result<Option<Background>, EngineError> {
        let Some(team) = self.team().cloned() else {
            return Ok(None);
        };
        let keys = lock_keys(&self.journal, run_id)?;
        let run = self.journal.run(run_id)?;
        let owner = owner_here(run_id, &run.initiator, &run.environment);
        let journal = self.journal.clone();
        let progress = self.progress.clone();
        let run_id = run_id.to_owned();
        let every = team.lease() / 3;
        Ok(Some(Background(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match team.renew(&keys, &owner).await {
                    Ok(()) => {}
                    Err(lost @ TeamLockError::Lost { .. }) => {
                        hold_for_a_human(&journal, &progress, &run_id, &lost);
                        return;
                    }
                    // The backend is unreachable: try again next time; the
                    // lease has two more thirds to go.
                    Err(error) => progress.emit(Progress::Notice {
                        run: run_id.clone(),
                        message: format!("renewing the team locks failed ({error}); trying again"),
                    }),
                }
            }
        }))))
    }
}

impl Engine {
    fn team_runs(&self) -> Option<&Arc<dyn TeamRuns>> {
        self.options
            .team
            .as_ref()
            .and_then(|backend| backend.runs.as_ref())
    }

    /// Writes the run's record to the backend now (a failure is shown:
    /// the next share writes it again).
    pub(crate) async fn share_run(&self, run_id: &str) {
        let Some(runs) = self.team_runs() else {
            return;
        };
        // Rehearsals move simulators: the team has nothing to see.
        if self
            .journal
            .run(run_id)
            .is_ok_and(|run| run.mode == crate::state::RunMode::Rehearse)
        {
            return;
        }
        if let Err(error) = publish(runs.as_ref(), &self.journal, run_id).await {
            self.progress.emit(Progress::Notice {
                run: run_id.to_owned(),
                message: format!("the team backend's record of the run is behind ({error})"),
            });
        }
    }

    /// While a drive lasts: the run's record written through whenever it
    /// changed, and a stop asked for on another PC (`kill`, `rollback`,
    /// `abort` RUN there) turned into this journal's stop request, which
    /// the kill watcher acts on.
    pub(crate) fn spawn_run_sharer(&self, run_id: &str) -> Option<Background> {
        let runs = self.team_runs()?.clone();
        let journal = self.journal.clone();
        let run_id = run_id.to_owned();
        Some(Background(tokio::spawn(async move {
            let mut shared = None;
            let mut stop_seen = false;
            loop {
                tokio::time::sleep(SHARE_EVERY).await;
                if let Ok(record) = shared_run(&journal, &run_id)
                    && shared.as_ref() != Some(&record.revision)
                    && runs.publish(&record).await.is_ok()
                {
                    shared = Some(record.revision);
                }
                // Approvals and rejections verified on other PCs.
                if let Ok(decisions) = runs.decisions(&run_id).await {
                    for decision in &decisions {
                        copy_decision(&journal, &run_id, decision);
                    }
                }
                if !stop_seen && let Ok(Some(asked)) = runs.stop_asked(&run_id).await {
                    let request = match asked.ask {
                        StopAsk::Kill => StopRequest::Kill,
                        StopAsk::Rollback => StopRequest::Rollback,
                        StopAsk::Abort => StopRequest::Abort,
                    };
                    stop_seen = journal.request_stop(&run_id, request).is_ok();
                }
            }
        })))
    }
}

/// A decision given on another PC, into this journal once (the waiting
/// stage polls the journal). Who gave it was checked there: role, four
/// eyes, one-time code.
fn copy_decision(journal: &Journal, run_id: &str, decision: &SharedDecision) {
    let _ = match &decision.rejected {
        Some(reason) => match journal.rejection(run_id, &decision.gate) {
            Ok(None) => journal.record_rejection(run_id, &decision.gate, &decision.user, reason),
            _ => Ok(()),
        },
        None => match journal.approvers(run_id, &decision.gate) {
            Ok(approvers) if !approvers.contains(&decision.user) => {
                journal.record_approval(run_id, &decision.gate, &decision.user)
            }
            _ => Ok(()),
        },
    };
}

async fn publish(runs: &dyn TeamRuns, journal: &Journal, run_id: &str) -> Result<(), String> {
    let record = shared_run(journal, run_id).map_err(|e| e.to_string())?;
    runs.publish(&record).await.map_err(|e| e.to_string())
}

/// The journal's run as the backend keeps it. Its revision is the newest
/// change of the run or a stage (milliseconds), so it grows as the
/// journal does.
fn shared_run(journal: &Journal, run_id: &str) -> Result<SharedRun, EngineError> {
    let run = journal.run(run_id)?;
    let stages = journal.stages(run_id)?;
    let revision = stages
        .iter()
        .map(|stage| stage.updated_at)
        .chain([run.updated_at])
        .max()
        .unwrap_or_default();
    Ok(SharedRun {
        run: run.id.clone(),
        plan_name: run.plan_name.clone(),
        environment: run.environment.clone(),
        plan_file: run.plan_file.clone(),
        plan_digest: run.plan_digest.clone(),
        plan_source: run.plan_source.clone(),
        initiator: run.initiator.clone(),
        pc: run.owner_host.clone().unwrap_or_else(crate::run::host_name),
        phase: run.phase.as_str().to_owned(),
        terminal: run.phase.is_terminal(),
        rollback_incomplete: run.rollback_incomplete,
        outcome: run.outcome.clone(),
        created_at: run.created_at,
        updated_at: run.updated_at,
        revision: u64::try_from(revision).unwrap_or_default(),
        stages: stages
            .into_iter()
            .map(|stage| SharedStage {
                name: stage.name,
                target: stage.target,
                target_key: stage.target_key,
                phase: stage.phase.as_str().to_owned(),
                weight: stage.weight,
                stable_version: stage.stable_version,
                new_version: stage.new_version,
                moved: stage.moved,
            })
            .collect(),
    })
}

/// The lease renewer (or run sharer) of one drive; dropping it stops it.
pub(crate) struct Background(tokio::task::JoinHandle<()>);

impl Background {
    pub(crate) fn spawn(work: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        Background(tokio::spawn(work))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) fn hold_for_a_human(
    journal: &Journal,
    progress: &ProgressSink,
    run_id: &str,
    lost: &TeamLockError,
) {
    let _ = journal.request_hold(run_id, true);
    progress.emit(Progress::Notice {
        run: run_id.to_owned(),
        message: format!(
            "{lost}; the run is held at its next step: find out who moves the target now, then `deployctl promote {run_id}` or `deployctl rollback {run_id}`"
        ),
    });
}
