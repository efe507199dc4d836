//! The executor: walks a run's DAG forwards to release and backwards to
//! roll back, driving each stage's program through the adapter traits.
//!
//! Expected flow: preflight every target (nothing moves if one fails) →
//! stages start when all their predecessors succeeded, independent ones
//! concurrently → on the first failure no new stage starts, running stages
//! stop at their next await, and (if the plan says so) every stage that
//! moved rolls back, a stage only after the stages that depend on it.
//!
//! Guarantees: every call's intent is journaled before the call and its
//! outcome after, in one transaction with the stage's new cursor; a crash
//! anywhere leaves a journal from which [`Engine::execute`] continues or
//! rolls back. Assumptions: adapters honour `docs/adapter-contract.md`
//! (idempotent apply, cancellation-safe awaits).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use deployctl_adapter::{HealthProbe, Target};
use deployctl_plan::model::{
    Gate, RollbackScope, RollbackTrigger, RunEvent, StageId, ValidatedPlan,
};
use tokio::sync::watch;

use crate::journal::{Journal, JournalError, StageRecord, Steering, StopRequest};
use crate::notify::{NotifyHub, Subscription};
use crate::progress::{Progress, ProgressSink};
use crate::retry::RetryPolicy;
use crate::stage::{StageDriver, StageStop};
use crate::state::{RunMode, RunPhase, StagePhase};
use crate::walker::{self, Finished, Walk};

/// Builds the probe for a gate on a stage's target. The binary provides
/// one that knows every probe kind (HTTP, Prometheus, CloudWatch, and the
/// target-bound kinds through [`Target::probe`]).
pub trait ProbeFactory: Send + Sync {
    fn probe(
        &self,
        gate: &Gate,
        target: &Arc<dyn Target>,
    ) -> Result<Box<dyn HealthProbe>, ProbeError>;
}

/// Why no probe could be made for a gate; the stage fails with it.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The gate's check could not become a probe (a client that cannot
    /// be built, a region that does not parse).
    #[error("gate `{gate}`: {source}")]
    Build {
        gate: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// This build has no probe of the gate's kind for the target's kind.
    #[error("no probe for `{gate_kind}` gates on {target_kind} targets in this build")]
    Unsupported {
        gate_kind: String,
        target_kind: String,
    },
}

/// Everything needed to drive one run.
#[derive(Clone)]
pub struct RunContext {
    pub run_id: String,
    pub plan: Arc<ValidatedPlan>,
    /// Adapters by target name.
    pub targets: BTreeMap<String, Arc<dyn Target>>,
    pub probes: Arc<dyn ProbeFactory>,
    /// Where run events are announced (the plan's `notifications`).
    pub notifications: Vec<Subscription>,
}

/// How a run ended, for the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub phase: RunPhase,
    /// A rollback gave up: a human must act (exit code 3).
    pub rollback_incomplete: bool,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("no adapter for target `{0}`")]
    MissingTarget(String),
    /// The run may not start; nothing moved and no run was recorded.
    #[error(transparent)]
    Refused(#[from] crate::start::Refusal),
}

/// Why a run stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Abort {
    pub(crate) trigger: RollbackTrigger,
    pub(crate) stage: Option<String>,
    pub(crate) reason: String,
    /// Asked for from outside the run (the journal's stop request): who
    /// asked decides the phase the run ends in.
    pub(crate) requested: Option<StopRequest>,
}

/// How the forward walk ended.
enum ForwardEnd {
    Succeeded,
    /// A preflight failed; the run is already recorded as failed and
    /// nothing moved.
    PreflightFailed(String),
    Stopped(Abort),
}

/// Tuning that tests and benchmarks change; defaults suit real targets.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub retry: RetryPolicy,
    /// Rollback tries much harder than forward progress: giving up means
    /// split traffic until a human acts.
    pub rollback_retry: RetryPolicy,
    /// How often a running process looks for `deployctl kill`.
    pub kill_poll: Duration,
    /// How often approvals and wave progress are polled.
    pub poll: Duration,
    /// Locks shared with every other PC (`--backend`); `None`: the
    /// journal's own locks only.
    pub team: Option<crate::team::TeamBackend>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            retry: RetryPolicy::default(),
            rollback_retry: RetryPolicy {
                max_attempts: 20,
                ..RetryPolicy::default()
            },
            kill_poll: Duration::from_millis(250),
            poll: Duration::from_secs(1),
            team: None,
        }
    }
}

/// Drives runs recorded in one journal.
pub struct Engine {
    pub(crate) journal: Arc<Journal>,
    pub(crate) options: EngineOptions,
    pub(crate) progress: ProgressSink,
    /// Runs this engine started and has not driven yet: their team and
    /// platform locks were just taken, so the first drive does not take
    /// them again (a round trip to the backend before the first change).
    pub(crate) just_started: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Engine {
    pub fn new(journal: Arc<Journal>, options: EngineOptions, progress: ProgressSink) -> Engine {
        Engine {
            journal,
            options,
            progress,
            just_started: std::sync::Mutex::default(),
        }
    }

    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// Drives a run to its end from wherever its journal says it is: a
    /// fresh run from the start, a run whose process died from its cursor
    /// (forward if it was progressing, backward if it was rolling back or
    /// killed). Create runs with [`crate::run::create_run`].
    pub async fn execute(&self, context: &RunContext) -> Result<RunOutcome, EngineError> {
        let hub = self.hub(context);
        let outcome = self.drive_with(context, &hub).await;
        // A drive refused (its run taken over elsewhere) shares nothing.
        if let Ok(ended) = &outcome {
            if ended.phase.is_terminal() {
                self.release_team_locks(&context.run_id).await;
                self.release_platform_locks(context).await;
            }
            self.share_run(&context.run_id).await;
        }
        hub.flush().await;
        outcome
    }

    fn hub(&self, context: &RunContext) -> NotifyHub {
        NotifyHub::new(
            context.notifications.clone(),
            self.journal.clone(),
            &context.run_id,
            &context.plan.metadata.name,
            &context.plan.metadata.environment,
        )
    }

    /// The runbook rollback: every stage that moved goes back to stable,
    /// whatever the run was doing. Safe to run twice.
    pub async fn rollback(
        &self,
        context: &RunContext,
        reason: &str,
    ) -> Result<RunOutcome, EngineError> {
        let abort = Abort {
            trigger: RollbackTrigger::Kill,
            stage: None,
            requested: None,
            reason: reason.to_string(),
        };
        self.retake_team_locks(&self.journal.run(&context.run_id)?)
            .await?;
        self.retake_platform_locks(context).await?;
        let hub = self.hub(context);
        let outcome = self
            .roll_back(
                context,
                &hub,
                &abort,
                RollbackScope::Plan,
                RunPhase::RolledBack,
            )
            .await;
        // A drive refused (its run taken over elsewhere) shares nothing.
        if let Ok(ended) = &outcome {
            if ended.phase.is_terminal() {
                self.release_team_locks(&context.run_id).await;
                self.release_platform_locks(context).await;
            }
            self.share_run(&context.run_id).await;
        }
        hub.flush().await;
        outcome
    }

    async fn drive_with(
        &self,
        context: &RunContext,
        hub: &NotifyHub,
    ) -> Result<RunOutcome, EngineError> {
        let run_id = &context.run_id;
        for target in context.plan.stages.iter().map(|stage| &stage.target) {
            if !context.targets.contains_key(target) {
                return Err(EngineError::MissingTarget(target.clone()));
            }
        }
        let run = self.journal.run(run_id)?;
        self.journal
            .claim(run_id, std::process::id(), &crate::run::host_name())?;
        if run.rollback_incomplete || run.phase == RunPhase::RollingBack {
            let abort = Abort {
                trigger: RollbackTrigger::Error,
                stage: None,
                requested: None,
                reason: run
                    .outcome
                    .clone()
                    .unwrap_or_else(|| "resuming an interrupted rollback".into()),
            };
            // Undo the same stages, and end the same way, as the rollback
            // that was interrupted (a runbook rollback or a kill covers the
            // whole plan whatever the plan's own scope says).
            let scope = run.rollback_scope.unwrap_or(context.plan.rollback.scope);
            let final_phase = run.rollback_final.unwrap_or(RunPhase::RolledBack);
            return self
                .roll_back(context, hub, &abort, scope, final_phase)
                .await;
        }
        // A resumed run takes its target locks again (idempotent for this
        // run), in case the process died before it had them; a run this
        // engine just started has them.
        let just_started = self
            .just_started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(run_id);
        if run.mode != RunMode::Rehearse && !run.phase.is_terminal() && !just_started {
            let keys: Vec<String> = self
                .journal
                .stages(run_id)?
                .into_iter()
                .map(|stage| stage.target_key)
                .collect();
            self.journal.acquire_locks(run_id, &keys, &run.initiator)?;
            self.retake_team_locks(&run).await?;
            self.retake_platform_locks(context).await?;
        }
        // A stage that failed just before the process died: its rollback
        // had not started yet. Roll back now rather than retry the stage.
        if let Some(failed) = self
            .journal
            .stages(run_id)?
            .into_iter()
            .find(|stage| stage.phase == StagePhase::Failed)
        {
            let abort = Abort {
                trigger: RollbackTrigger::Error,
                stage: Some(failed.name.clone()),
                requested: None,
                reason: failed
                    .detail
                    .unwrap_or_else(|| format!("stage `{}` had failed", failed.name)),
            };
            let policy = &context.plan.rollback;
            if policy.automatic {
                return self
                    .roll_back(context, hub, &abort, policy.scope, RunPhase::RolledBack)
                    .await;
            }
        }
        if run.kill_requested || run.phase == RunPhase::Killed {
            let requested = self.journal.stop_requested(run_id)?;
            let (reason, phase) = match requested {
                Some(StopRequest::Rollback) => {
                    (StopRequest::Rollback.reason(), RunPhase::RolledBack)
                }
                Some(StopRequest::Abort) => (StopRequest::Abort.reason(), RunPhase::Aborted),
                Some(request) => (request.reason(), RunPhase::Killed),
                None => ("killed", RunPhase::Killed),
            };
            let abort = Abort {
                trigger: RollbackTrigger::Kill,
                stage: None,
                requested,
                reason: reason.into(),
            };
            return self
                .roll_back(context, hub, &abort, RollbackScope::Plan, phase)
                .await;
        }
        if run.phase.is_terminal() {
            return Ok(RunOutcome {
                phase: run.phase,
                rollback_incomplete: run.rollback_incomplete,
                message: run.outcome.unwrap_or_default(),
            });
        }

        let (abort_tx, abort_rx) = watch::channel(None::<Abort>);
        // `pause`/`promote` from another process: read by the watcher on
        // its poll, so a stage checks a channel, not the journal, per step.
        let (steer_tx, steer_rx) = watch::channel(self.journal.hold_state(run_id)?);
        let watcher = self.spawn_kill_watcher(run_id.clone(), abort_tx.clone(), steer_tx);
        // Renewed until this drive ends, rollback included.
        let (_renewer, _sharer, _platform_renewer) = match run.mode {
            RunMode::Apply => (
                self.spawn_lease_renewer(run_id)?,
                self.spawn_run_sharer(run_id),
                self.spawn_platform_renewer(context)?,
            ),
            RunMode::Rehearse => (None, None, None),
        };
        if run.phase == RunPhase::Pending {
            hub.send(
                RunEvent::Started,
                None,
                &format!("run started by {}", run.initiator),
            );
        }
        let result = self
            .forward(context, hub, abort_tx, abort_rx, steer_rx)
            .await;
        watcher.abort();
        let abort = match result {
            Ok(ForwardEnd::PreflightFailed(message)) => {
                return Ok(RunOutcome {
                    phase: RunPhase::Failed,
                    rollback_incomplete: false,
                    message,
                });
            }
            Ok(ForwardEnd::Succeeded) => {
                self.set_phase(run_id, RunPhase::Succeeded, Some("all stages promoted"))?;
                self.journal.release_locks(run_id)?;
                hub.send(RunEvent::Succeeded, None, "all stages promoted");
                return Ok(RunOutcome {
                    phase: RunPhase::Succeeded,
                    rollback_incomplete: false,
                    message: "all stages promoted".into(),
                });
            }
            Ok(ForwardEnd::Stopped(abort)) => abort,
            Err(error) => return Err(error),
        };
        let policy = &context.plan.rollback;
        let final_phase = match abort.requested {
            // `deployctl rollback RUN` of a live run: what was asked for.
            Some(StopRequest::Rollback) => RunPhase::RolledBack,
            Some(StopRequest::Abort) => RunPhase::Aborted,
            _ if abort.trigger == RollbackTrigger::Kill => RunPhase::Killed,
            _ => RunPhase::RolledBack,
        };
        let asked_to_roll_back = matches!(
            abort.requested,
            Some(StopRequest::Rollback | StopRequest::Abort)
        );
        if !asked_to_roll_back && (!policy.automatic || !policy.triggers.contains(&abort.trigger)) {
            let message = format!(
                "{}; automatic rollback is off for this trigger: run `deployctl rollback {run_id}`",
                abort.reason
            );
            self.set_phase(run_id, RunPhase::Failed, Some(&message))?;
            return Ok(RunOutcome {
                phase: RunPhase::Failed,
                rollback_incomplete: false,
                message,
            });
        }
        let scope = if abort.trigger == RollbackTrigger::Kill {
            RollbackScope::Plan
        } else {
            policy.scope
        };
        self.roll_back(context, hub, &abort, scope, final_phase)
            .await
    }

    fn set_phase(
        &self,
        run_id: &str,
        phase: RunPhase,
        outcome: Option<&str>,
    ) -> Result<(), JournalError> {
        self.journal.set_run_phase(run_id, phase, outcome, false)?;
        self.progress.emit(Progress::RunPhase {
            run: run_id.to_string(),
            phase,
        });
        Ok(())
    }

    /// Polls the journal for `deployctl kill` from another process.
    fn spawn_kill_watcher(
        &self,
        run_id: String,
        abort_tx: watch::Sender<Option<Abort>>,
        steer_tx: watch::Sender<Steering>,
    ) -> tokio::task::JoinHandle<()> {
        let journal = self.journal.clone();
        let poll = self.options.kill_poll;
        tokio::spawn(async move {
            let mut beats = 0u32;
            loop {
                tokio::time::sleep(poll).await;
                if let Ok(Some(request)) = journal.stop_requested(&run_id) {
                    abort_tx.send_replace(Some(Abort {
                        trigger: RollbackTrigger::Kill,
                        stage: None,
                        requested: Some(request),
                        reason: request.reason().into(),
                    }));
                    return;
                }
                if let Ok(steering) = journal.hold_state(&run_id) {
                    steer_tx.send_if_modified(|now| {
                        let changed = *now != steering;
                        *now = steering;
                        changed
                    });
                }
                beats += 1;
                if beats.is_multiple_of(8) {
                    let _ = journal.heartbeat(&run_id);
                }
            }
        })
    }

    /// The forward walk.
    async fn forward(
        &self,
        context: &RunContext,
        hub: &NotifyHub,
        abort_tx: watch::Sender<Option<Abort>>,
        abort_rx: watch::Receiver<Option<Abort>>,
        steer_rx: watch::Receiver<Steering>,
    ) -> Result<ForwardEnd, EngineError> {
        let run_id = &context.run_id;
        let plan = &context.plan;
        let records = self.stage_records(run_id)?;
        // Runs recorded by `start` were preflighted before they existed;
        // this covers stages of journals from before it (format 1).
        if let Some(abort) = self.preflight_pending(context, &records).await? {
            // Nothing moved, so there is nothing to roll back.
            let message = format!("preflight failed, nothing was changed: {}", abort.reason);
            self.set_phase(run_id, RunPhase::Failed, Some(&message))?;
            self.journal.release_locks(run_id)?;
            return Ok(ForwardEnd::PreflightFailed(message));
        }
        self.set_phase(run_id, RunPhase::Progressing, None)?;
        // Preflight recorded the stable versions: read the rows again.
        let records = self.stage_records(run_id)?;

        let graph = plan.graph();
        let done: BTreeSet<StageId> = plan
            .stages
            .iter()
            .filter(|stage| {
                records
                    .get(&stage.name)
                    .is_some_and(|record| record.phase == StagePhase::Succeeded)
            })
            .map(|stage| stage.id)
            .collect();
        let mut walk = Walk::forward(graph, &done);
        if abort_rx.borrow().is_some() {
            walk.halt();
        }
        let mut first_failure: Option<Abort> = None;
        let walked = walker::drive(
            &mut walk,
            |id| {
                let stage = plan.stage(id).clone();
                let record = records.get(&stage.name).cloned();
                let target = context.targets[&stage.target].clone();
                target.attach(run_id, &stage.name);
                let driver = StageDriver {
                    run_id: run_id.clone(),
                    target,
                    plan: plan.clone(),
                    probes: context.probes.clone(),
                    journal: self.journal.clone(),
                    options: self.options.clone(),
                    progress: self.progress.clone(),
                    abort: abort_rx.clone(),
                    steering: steer_rx.clone(),
                    notify: hub.clone(),
                    stage,
                };
                async move { driver.run(record).await }
            },
            |walk, _, result| {
                let finished = match result {
                    Ok(()) => Finished::Succeeded,
                    Err(StageStop::Aborted) => Finished::Stopped,
                    Err(StageStop::Failed(abort)) => {
                        if first_failure.is_none() {
                            first_failure = Some(abort.clone());
                            abort_tx.send_replace(Some(abort));
                        }
                        Finished::Failed
                    }
                    Err(StageStop::Journal(error)) => {
                        abort_tx.send_replace(Some(Abort {
                            trigger: RollbackTrigger::Error,
                            stage: None,
                            requested: None,
                            reason: format!("journal error: {error}"),
                        }));
                        return Err(error);
                    }
                };
                // A kill stops the walk too: no new stage starts.
                if abort_rx.borrow().is_some() {
                    walk.halt();
                }
                Ok(finished)
            },
            // A panicking adapter must not take the run down with it:
            // treat it as that stage's error and roll back.
            |_, panic| {
                Err(StageStop::Failed(Abort {
                    trigger: RollbackTrigger::Error,
                    stage: None,
                    requested: None,
                    reason: format!("a stage task panicked: {panic}"),
                }))
            },
        )
        .await;
        walked?;
        if let Some(abort) = first_failure.or_else(|| abort_rx.borrow().clone()) {
            return Ok(ForwardEnd::Stopped(abort));
        }
        Ok(ForwardEnd::Succeeded)
    }

    /// The journal's rows of a run's stages, by name.
    pub(crate) fn stage_records(
        &self,
        run_id: &str,
    ) -> Result<HashMap<String, StageRecord>, JournalError> {
        Ok(self
            .journal
            .stages(run_id)?
            .into_iter()
            .map(|record| (record.name.clone(), record))
            .collect())
    }
}
