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

use deployctl_adapter::team::{LockOwner, TeamLockError, TeamLocks};

use crate::executor::{Engine, EngineError};
use crate::journal::Journal;
use crate::progress::{Progress, ProgressSink};
use crate::start::Refusal;

/// The team backend's locks as the engine holds them (`Debug` for
/// [`EngineOptions`](crate::executor::EngineOptions)).
#[derive(Clone)]
pub struct TeamBackend(pub Arc<dyn TeamLocks>);

impl std::fmt::Debug for TeamBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeamBackend")
            .field("lease", &self.0.lease())
            .finish()
    }
}

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
        self.options.team.as_ref().map(|backend| &backend.0)
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

    /// A resumed run's team locks, taken again as its own.
    pub(crate) async fn retake_team_locks(
        &self,
        run_id: &str,
        owner: &LockOwner,
    ) -> Result<(), EngineError> {
        if self.team().is_none() {
            return Ok(());
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
        if let Ok(keys) = lock_keys(&self.journal, run_id) {
            self.give_back_team_locks(&keys, run_id).await;
        }
    }

    /// Lets go of `keys` (those `run_id` still holds).
    pub(crate) async fn give_back_team_locks(&self, keys: &[String], run_id: &str) {
        let Some(team) = self.team() else {
            return;
        };
        if let Err(error) = team.release(keys, run_id).await {
            self.progress.emit(Progress::Notice {
                run: run_id.to_owned(),
                message: format!(
                    "the team locks could not be released ({error}); their lease runs out"
                ),
            });
        }
    }

    /// Renews the run's team locks every third of the lease until
    /// aborted. A lost lock holds the run (see the module docs).
    pub(crate) fn spawn_lease_renewer(&self, run_id: &str) -> Result<Option<Renewer>, EngineError> {
        let Some(team) = self.team().cloned() else {
            return Ok(None);
        };
        let keys = lock_keys(&self.journal, run_id)?;
        let journal = self.journal.clone();
        let progress = self.progress.clone();
        let run_id = run_id.to_owned();
        let every = team.lease() / 3;
        Ok(Some(Renewer(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match team.renew(&keys, &run_id).await {
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

/// The lease renewer of one drive; dropping it stops the renewals.
pub(crate) struct Renewer(tokio::task::JoinHandle<()>);

impl Drop for Renewer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn hold_for_a_human(
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
