//! Platform locks: the lock a target's own platform keeps for it (a
//! Kubernetes Lease beside the Deployment), held by every run of that
//! target wherever it is driven from, so a deploy PC's run and the
//! in-cluster controller's exclude each other with or without a team
//! backend (R13).
//!
//! Same life as the team locks ([`crate::team`]): taken, all or none,
//! before a run is recorded (a refusal leaves no run); taken again by a
//! resumed run or a runbook rollback (its own are given back to it);
//! renewed every third of the lease while the run is driven, a lost one
//! holding the run for a human; given back when the run ends.

use std::collections::BTreeMap;
use std::sync::Arc;

use deployctl_adapter::team::{LockOwner, PlatformLock, TeamLockError};

use crate::executor::{Engine, EngineError, RunContext};
use crate::progress::{Progress, ProgressSink};
use crate::start::Refusal;
use crate::team::Background;

/// The platform locks of some stages, by the target identity each guards.
pub(crate) struct PlatformLocks(BTreeMap<String, Arc<dyn PlatformLock>>);

impl PlatformLocks {
    /// The locks of `stages` (target name, platform identity) whose
    /// targets have one.
    pub(crate) fn of<'a>(
        context: &RunContext,
        stages: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> PlatformLocks {
        let mut locks = BTreeMap::new();
        for (target, key) in stages {
            if let Some(lock) = context
                .targets
                .get(target)
                .and_then(|target| target.platform_lock())
            {
                locks.entry(key.to_owned()).or_insert(lock);
            }
        }
        PlatformLocks(locks)
    }

    /// The locks of a recorded run's stages.
    pub(crate) fn of_run(
        engine: &Engine,
        context: &RunContext,
    ) -> Result<PlatformLocks, EngineError> {
        let stages = engine.journal().stages(&context.run_id)?;
        Ok(PlatformLocks::of(
            context,
            stages
                .iter()
                .map(|stage| (stage.target.as_str(), stage.target_key.as_str())),
        ))
    }

    /// Takes every lock for `owner`, or gives back those it took and
    /// refuses the run.
    pub(crate) async fn take(&self, owner: &LockOwner) -> Result<(), EngineError> {
        let mut taken: Vec<&Arc<dyn PlatformLock>> = Vec::new();
        for (key, lock) in &self.0 {
            if let Err(error) = lock.acquire(owner).await {
                for lock in taken {
                    let _ = lock.release(owner).await;
                }
                return Err(EngineError::Refused(refusal(key, lock.as_ref(), error)));
            }
            taken.push(lock);
        }
        Ok(())
    }

    /// Lets go of them; a failure is shown, not fatal (the lease runs out).
    pub(crate) async fn give_back(&self, owner: &LockOwner, progress: &ProgressSink) {
        for lock in self.0.values() {
            if let Err(error) = lock.release(owner).await {
                progress.emit(Progress::Notice {
                    run: owner.run.clone(),
                    message: format!(
                        "{} could not be released ({error}); its lease runs out",
                        lock.place()
                    ),
                });
            }
        }
    }

    /// Renews them every third of the shortest lease until dropped; a
    /// lost one holds the run for a human.
    pub(crate) fn spawn_renewer(&self, engine: &Engine, owner: LockOwner) -> Option<Background> {
        let every = self.0.values().map(|lock| lock.lease()).min()? / 3;
        let locks: Vec<Arc<dyn PlatformLock>> = self.0.values().cloned().collect();
        let journal = engine.journal().clone();
        let progress = engine.progress.clone();
        Some(Background::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                for lock in &locks {
                    match lock.renew(&owner).await {
                        Ok(()) => {}
                        Err(lost @ TeamLockError::Lost { .. }) => {
                            crate::team::hold_for_a_human(&journal, &progress, &owner.run, &lost);
                            return;
                        }
                        Err(error) => progress.emit(Progress::Notice {
                            run: owner.run.clone(),
                            message: format!(
                                "renewing {} failed ({error}); trying again",
                                lock.place()
                            ),
                        }),
                    }
                }
            }
        }))
    }
}

fn refusal(key: &str, lock: &dyn PlatformLock, error: TeamLockError) -> Refusal {
    match error {
        TeamLockError::Held { owner, .. } => Refusal::Locked {
            target: key.to_owned(),
            run: owner.run.clone(),
            holder: format!(
                "operator {} on {} ({})",
                owner.operator,
                owner.pc,
                lock.place()
            ),
        },
        other => Refusal::TeamLock {
            reason: other.to_string(),
        },
    }
}

impl Engine {
    /// A recorded run's platform locks, and this process as their owner;
    /// rehearsals hold none.
    fn run_platform_locks(
        &self,
        context: &RunContext,
    ) -> Result<(PlatformLocks, LockOwner), EngineError> {
        let run = self.journal().run(&context.run_id)?;
        let owner = crate::team::owner_here(&context.run_id, &run.initiator, &run.environment);
        if run.mode == crate::state::RunMode::Rehearse {
            return Ok((PlatformLocks(BTreeMap::new()), owner));
        }
        Ok((PlatformLocks::of_run(self, context)?, owner))
    }

    /// A resumed run's (or a runbook rollback's) platform locks, taken
    /// again as its own.
    pub(crate) async fn retake_platform_locks(
        &self,
        context: &RunContext,
    ) -> Result<(), EngineError> {
        let (locks, owner) = self.run_platform_locks(context)?;
        locks.take(&owner).await
    }

    /// Gives back an ended run's platform locks.
    pub(crate) async fn release_platform_locks(&self, context: &RunContext) {
        if let Ok((locks, owner)) = self.run_platform_locks(context) {
            locks.give_back(&owner, &self.progress).await;
        }
    }

    /// Renews a driven run's platform locks until the drive ends.
    pub(crate) fn spawn_platform_renewer(
        &self,
        context: &RunContext,
    ) -> Result<Option<Background>, EngineError> {
        let (locks, owner) = self.run_platform_locks(context)?;
        Ok(locks.spawn_renewer(self, owner))
    }
}
