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

use deployctl_adapter::{Action, AdapterError, HealthProbe, IdempotencyKey, Target};
use deployctl_plan::model::{
    Gate, OnTimeout, RollbackScope, RollbackTrigger, RunEvent, Stage, StageId, TargetSpec,
    ValidatedPlan, WaveSize,
};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::clock::now_ms;
use crate::gate::{self, GateMonitor, GateResult};
use crate::journal::{Journal, JournalError, StageRecord, StageUpdate};
use crate::notify::{NotifyHub, Subscription};
use crate::program::{self, Op};
use crate::progress::{Progress, ProgressSink};
use crate::retry::{RetryDecision, RetryPolicy};
use crate::state::{RunPhase, StagePhase};

/// Builds the probe for a gate on a stage's target. The binary provides
/// one that knows every probe kind (HTTP, Prometheus, CloudWatch, and the
/// target-bound kinds through [`Target::probe`]).
pub trait ProbeFactory: Send + Sync {
    fn probe(&self, gate: &Gate, target: &Arc<dyn Target>) -> Result<Box<dyn HealthProbe>, String>;
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
}

/// Why a run stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Abort {
    trigger: RollbackTrigger,
    stage: Option<String>,
    reason: String,
}

/// How the forward walk ended.
enum ForwardEnd {
    Succeeded,
    /// A preflight failed; the run is already recorded as failed and
    /// nothing moved.
    PreflightFailed(String),
    Stopped(Abort),
}

/// How a stage's forward run ended, if not in success.
#[derive(Debug)]
enum StageStop {
    Failed(Abort),
    /// Another stage failed or the run was killed; this one just stopped.
    Aborted,
    Journal(JournalError),
}

impl From<JournalError> for StageStop {
    fn from(error: JournalError) -> Self {
        StageStop::Journal(error)
    }
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
        }
    }
}

/// Drives runs recorded in one journal.
pub struct Engine {
    journal: Arc<Journal>,
    options: EngineOptions,
    progress: ProgressSink,
}

impl Engine {
    pub fn new(journal: Arc<Journal>, options: EngineOptions, progress: ProgressSink) -> Engine {
        Engine {
            journal,
            options,
            progress,
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
            reason: reason.to_string(),
        };
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
                reason: run
                    .outcome
                    .clone()
                    .unwrap_or_else(|| "resuming an interrupted rollback".into()),
            };
            // Undo the same stages, and end the same way, as the rollback
            // that was interrupted (a runbook rollback or a kill covers the
            // whole plan whatever the plan's own scope says).
            let scope = match run.rollback_scope.as_deref() {
                Some("stage") => RollbackScope::Stage,
                Some(_) => RollbackScope::Plan,
                None => context.plan.rollback.scope,
            };
            let final_phase = run.rollback_final.unwrap_or(RunPhase::RolledBack);
            return self
                .roll_back(context, hub, &abort, scope, final_phase)
                .await;
        }
        // A resumed run takes its target locks again (idempotent for this
        // run), in case the process died before it had them.
        if run.mode != "rehearse" && !run.phase.is_terminal() {
            let keys: Vec<String> = self
                .journal
                .stages(run_id)?
                .into_iter()
                .map(|stage| stage.target_key)
                .collect();
            self.journal.acquire_locks(run_id, &keys, &run.initiator)?;
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
            let abort = Abort {
                trigger: RollbackTrigger::Kill,
                stage: None,
                reason: "killed".into(),
            };
            return self
                .roll_back(context, hub, &abort, RollbackScope::Plan, RunPhase::Killed)
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
        let watcher = self.spawn_kill_watcher(run_id.clone(), abort_tx.clone());
        if run.phase == RunPhase::Pending {
            hub.send(
                RunEvent::Started,
                None,
                &format!("run started by {}", run.initiator),
            );
        }
        let result = self.forward(context, hub, abort_tx, abort_rx).await;
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
        let final_phase = if abort.trigger == RollbackTrigger::Kill {
            RunPhase::Killed
        } else {
            RunPhase::RolledBack
        };
        if !policy.automatic || !policy.triggers.contains(&abort.trigger) {
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
    ) -> tokio::task::JoinHandle<()> {
        let journal = self.journal.clone();
        let poll = self.options.kill_poll;
        tokio::spawn(async move {
            let mut beats = 0u32;
            loop {
                tokio::time::sleep(poll).await;
                if journal.kill_requested(&run_id).unwrap_or(false) {
                    abort_tx.send_replace(Some(Abort {
                        trigger: RollbackTrigger::Kill,
                        stage: None,
                        reason: "killed by `deployctl kill`".into(),
                    }));
                    return;
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
    ) -> Result<ForwardEnd, EngineError> {
        let run_id = &context.run_id;
        let plan = &context.plan;
        let records: HashMap<String, StageRecord> = self
            .journal
            .stages(run_id)?
            .into_iter()
            .map(|record| (record.name.clone(), record))
            .collect();
        if let Some(abort) = self.preflight(context, &records).await? {
            // Nothing moved, so there is nothing to roll back.
            let message = format!("preflight failed, nothing was changed: {}", abort.reason);
            self.set_phase(run_id, RunPhase::Failed, Some(&message))?;
            self.journal.release_locks(run_id)?;
            return Ok(ForwardEnd::PreflightFailed(message));
        }
        self.set_phase(run_id, RunPhase::Progressing, None)?;
        // Preflight recorded the stable versions: read the rows again.
        let records: HashMap<String, StageRecord> = self
            .journal
            .stages(run_id)?
            .into_iter()
            .map(|record| (record.name.clone(), record))
            .collect();

        let graph = plan.graph();
        let mut done: BTreeSet<StageId> = BTreeSet::new();
        let mut started: BTreeSet<StageId> = BTreeSet::new();
        for stage in &plan.stages {
            if records
                .get(&stage.name)
                .is_some_and(|record| record.phase == StagePhase::Succeeded)
            {
                done.insert(stage.id);
                started.insert(stage.id);
            }
        }
        let mut tasks: JoinSet<(StageId, Result<(), StageStop>)> = JoinSet::new();
        let mut first_failure: Option<Abort> = None;
        loop {
            if first_failure.is_none() && abort_rx.borrow().is_none() {
                for id in graph.order() {
                    if started.contains(id)
                        || !graph.predecessors(*id).iter().all(|p| done.contains(p))
                    {
                        continue;
                    }
                    started.insert(*id);
                    let stage = plan.stage(*id).clone();
                    let record = records.get(&stage.name).cloned();
                    let driver = StageDriver {
                        run_id: run_id.clone(),
                        target: context.targets[&stage.target].clone(),
                        plan: plan.clone(),
                        probes: context.probes.clone(),
                        journal: self.journal.clone(),
                        options: self.options.clone(),
                        progress: self.progress.clone(),
                        abort: abort_rx.clone(),
                        notify: hub.clone(),
                        stage,
                    };
                    let id = *id;
                    tasks.spawn(async move { (id, driver.run(record).await) });
                }
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            let (id, result) = joined.unwrap_or_else(|panic| {
                // A panicking adapter must not take the run down with it:
                // treat it as that stage's error and roll back.
                (
                    StageId(usize::MAX),
                    Err(StageStop::Failed(Abort {
                        trigger: RollbackTrigger::Error,
                        stage: None,
                        reason: format!("a stage task panicked: {panic}"),
                    })),
                )
            });
            match result {
                Ok(()) => {
                    done.insert(id);
                }
                Err(StageStop::Aborted) => {}
                Err(StageStop::Failed(abort)) => {
                    if first_failure.is_none() {
                        first_failure = Some(abort.clone());
                        abort_tx.send_replace(Some(abort));
                    }
                }
                Err(StageStop::Journal(error)) => {
                    abort_tx.send_replace(Some(Abort {
                        trigger: RollbackTrigger::Error,
                        stage: None,
                        reason: format!("journal error: {error}"),
                    }));
                    while tasks.join_next().await.is_some() {}
                    return Err(error.into());
                }
            }
        }
        if let Some(abort) = first_failure.or_else(|| abort_rx.borrow().clone()) {
            return Ok(ForwardEnd::Stopped(abort));
        }
        Ok(ForwardEnd::Succeeded)
    }

    /// Confirms every not-yet-started stage's rollback path (S3) and
    /// records each stable version. `Some` when any target is not ready.
    async fn preflight(
        &self,
        context: &RunContext,
        records: &HashMap<String, StageRecord>,
    ) -> Result<Option<Abort>, EngineError> {
        let mut checks = JoinSet::new();
        for stage in &context.plan.stages {
            let record = &records[&stage.name];
            if record.phase != StagePhase::Pending || record.stable_version.is_some() {
                continue;
            }
            let target = context.targets[&stage.target].clone();
            let pinned = context
                .plan
                .target_of(stage)
                .pinned_stable
                .as_ref()
                .map(|artifact| artifact.version.clone());
            let name = stage.name.clone();
            // A throttled or dropped read is no verdict on the rollback
            // path: transient errors are retried like any call, and only
            // what the retry policy gives up on fails the preflight.
            let policy = self.options.retry.clone();
            checks.spawn(async move {
                let result = crate::retry::retry(&policy, |_| target.preflight())
                    .await
                    .map_err(|gave_up| gave_up.error);
                (name, pinned, result)
            });
        }
        let mut failure = None;
        while let Some(joined) = checks.join_next().await {
            let Ok((stage, pinned, result)) = joined else {
                continue;
            };
            let (stable, ready, detail) = match result {
                Ok(preflight) => (
                    pinned.unwrap_or(preflight.stable_version),
                    preflight.rollback_ready,
                    preflight.detail,
                ),
                Err(error) => (String::new(), false, error.to_string()),
            };
            self.journal.transition(
                &context.run_id,
                &stage,
                "preflight",
                &serde_json::json!({"stableVersion": stable, "ready": ready, "detail": detail}),
                &StageUpdate {
                    stable_version: (!stable.is_empty()).then(|| stable.clone()),
                    ..StageUpdate::default()
                },
            )?;
            self.progress.emit(Progress::Preflight {
                run: context.run_id.clone(),
                stage: stage.clone(),
                stable_version: stable,
                ready,
                detail: detail.clone(),
            });
            if !ready && failure.is_none() {
                failure = Some(Abort {
                    trigger: RollbackTrigger::Error,
                    stage: Some(stage.clone()),
                    reason: format!("stage `{stage}`: rollback path not confirmed: {detail}"),
                });
            }
        }
        Ok(failure)
    }

    /// Rolls back the stages that moved, in reverse DAG order, concurrently
    /// where independent. Retries hard; a stage that still cannot go back
    /// marks the run as needing a human.
    async fn roll_back(
        &self,
        context: &RunContext,
        hub: &NotifyHub,
        abort: &Abort,
        scope: RollbackScope,
        final_phase: RunPhase,
    ) -> Result<RunOutcome, EngineError> {
        let run_id = &context.run_id;
        let plan = &context.plan;
        self.journal.begin_rollback(
            run_id,
            &abort.reason,
            match scope {
                RollbackScope::Plan => "plan",
                RollbackScope::Stage => "stage",
            },
            final_phase,
        )?;
        self.progress.emit(Progress::RunPhase {
            run: run_id.clone(),
            phase: RunPhase::RollingBack,
        });
        let records: HashMap<String, StageRecord> = self
            .journal
            .stages(run_id)?
            .into_iter()
            .map(|record| (record.name.clone(), record))
            .collect();
        let needs_rollback = |stage: &Stage| {
            let record = &records[&stage.name];
            let in_scope = match scope {
                RollbackScope::Plan => true,
                RollbackScope::Stage => record.phase != StagePhase::Succeeded,
            };
            record.moved && in_scope && !matches!(record.phase, StagePhase::RolledBack)
        };
        let pending: BTreeSet<StageId> = plan
            .stages
            .iter()
            .filter(|stage| needs_rollback(stage))
            .map(|stage| stage.id)
            .collect();
        for stage in &plan.stages {
            let record = &records[&stage.name];
            if !record.moved
                && matches!(
                    record.phase,
                    StagePhase::Pending | StagePhase::Progressing | StagePhase::Paused
                )
            {
                self.journal.transition(
                    run_id,
                    &stage.name,
                    "stageSkipped",
                    &serde_json::json!({}),
                    &StageUpdate {
                        phase: Some(StagePhase::Skipped),
                        ..StageUpdate::default()
                    },
                )?;
            }
        }
        let graph = plan.graph();
        let mut finished: BTreeSet<StageId> = BTreeSet::new();
        let mut started: BTreeSet<StageId> = BTreeSet::new();
        let mut failed: Vec<String> = Vec::new();
        let mut tasks: JoinSet<(StageId, Result<bool, JournalError>)> = JoinSet::new();
        loop {
            for id in graph.order().iter().rev() {
                if !pending.contains(id) || started.contains(id) {
                    continue;
                }
                // Undo dependents first: a CDN goes back before its backend.
                let blocked = graph
                    .successors(*id)
                    .iter()
                    .any(|s| pending.contains(s) && !finished.contains(s));
                if blocked {
                    continue;
                }
                started.insert(*id);
                let stage = plan.stage(*id).clone();
                let record = records[&stage.name].clone();
                let target = context.targets[&stage.target].clone();
                let journal = self.journal.clone();
                let policy = self.options.rollback_retry.clone();
                let progress = self.progress.clone();
                let run = run_id.clone();
                let id = *id;
                tasks.spawn(async move {
                    (
                        id,
                        rollback_stage(&run, &stage, &record, target, &journal, &policy, &progress)
                            .await,
                    )
                });
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            match joined {
                Ok((id, Ok(true))) => {
                    finished.insert(id);
                }
                Ok((id, Ok(false))) => {
                    finished.insert(id);
                    failed.push(plan.stage(id).name.clone());
                }
                Ok((_, Err(error))) => return Err(error.into()),
                Err(panic) => {
                    failed.push(format!("(a rollback task panicked: {panic})"));
                    break;
                }
            }
        }
        if failed.is_empty() {
            let message = format!("rolled back: {}", abort.reason);
            self.journal
                .set_run_phase(run_id, final_phase, Some(&message), false)?;
            self.journal.release_locks(run_id)?;
            self.progress.emit(Progress::RunPhase {
                run: run_id.clone(),
                phase: final_phase,
            });
            let event = if final_phase == RunPhase::Killed {
                RunEvent::Killed
            } else {
                RunEvent::RolledBack
            };
            hub.send(event, abort.stage.as_deref(), &message);
            Ok(RunOutcome {
                phase: final_phase,
                rollback_incomplete: false,
                message,
            })
        } else {
            // Locks stay: nobody else may move these targets until a human
            // has looked. `deployctl rollback` retries.
            let message = format!(
                "ROLLBACK INCOMPLETE for {}: traffic may be split; retry with `deployctl rollback {run_id}` ({})",
                failed.join(", "),
                abort.reason
            );
            self.journal
                .set_run_phase(run_id, RunPhase::Failed, Some(&message), true)?;
            self.progress.emit(Progress::RunPhase {
                run: run_id.clone(),
                phase: RunPhase::Failed,
            });
            // Escalation: people must act now.
            hub.send(RunEvent::RollbackIncomplete, None, &message);
            Ok(RunOutcome {
                phase: RunPhase::Failed,
                rollback_incomplete: true,
                message,
            })
        }
    }
}

/// Undoes one stage. `Ok(false)`: gave up after the retry policy.
async fn rollback_stage(
    run_id: &str,
    stage: &Stage,
    record: &StageRecord,
    target: Arc<dyn Target>,
    journal: &Journal,
    policy: &RetryPolicy,
    progress: &ProgressSink,
) -> Result<bool, JournalError> {
    let action = Action::Rollback {
        to: record.stable_version.clone(),
    };
    let key = format!("{run_id}/{}/rollback", stage.name);
    journal.call_intent(
        run_id,
        &stage.name,
        &key,
        &serde_json::to_value(&action).unwrap_or_default(),
        &StageUpdate {
            phase: Some(StagePhase::RollingBack),
            ..StageUpdate::default()
        },
    )?;
    progress.emit(Progress::Stage {
        run: run_id.to_string(),
        stage: stage.name.clone(),
        phase: StagePhase::RollingBack,
        detail: format!(
            "rolling back to {}",
            record.stable_version.as_deref().unwrap_or("stable")
        ),
    });
    let log = RetryLog {
        journal,
        run_id,
        stage: &stage.name,
        key: &key,
    };
    let result = apply_with_retry(
        &*target,
        &action,
        &IdempotencyKey(key.clone()),
        policy,
        &log,
    )
    .await;
    let (ok, request_ids, error) = match &result {
        Ok(applied) => (true, applied.request_ids.clone(), None),
        Err(error) => (
            false,
            error.request_id().map(str::to_string).into_iter().collect(),
            Some(error.to_string()),
        ),
    };
    let phase = if ok {
        StagePhase::RolledBack
    } else {
        StagePhase::RollbackFailed
    };
    journal.call_outcome(
        run_id,
        &stage.name,
        &key,
        ok,
        &request_ids,
        error.as_deref(),
        &StageUpdate {
            phase: Some(phase),
            weight: ok.then_some(0),
            detail: error.clone(),
            ..StageUpdate::default()
        },
    )?;
    progress.emit(Progress::Stage {
        run: run_id.to_string(),
        stage: stage.name.clone(),
        phase,
        detail: error.unwrap_or_else(|| {
            format!(
                "all traffic on {}",
                record.stable_version.as_deref().unwrap_or("stable")
            )
        }),
    });
    Ok(ok)
}

/// Where a retried call is recorded: every failed attempt the policy
/// retries leaves a `callRetried` event (error class, message, request ID),
/// so throttling, outages and conflicts met on the way are traceable (S7)
/// even when the call finally succeeds.
struct RetryLog<'a> {
    journal: &'a Journal,
    run_id: &'a str,
    stage: &'a str,
    key: &'a str,
}

impl RetryLog<'_> {
    fn retried(&self, attempt: u32, error: &AdapterError) {
        // A journal that cannot take this event fails the call's outcome
        // write right after; the record of a retry is not worth failing
        // the call for on its own.
        let _ = self.journal.append_run_event(
            self.run_id,
            "callRetried",
            &serde_json::json!({
                "stage": self.stage,
                "key": self.key,
                "attempt": attempt,
                "class": format!("{:?}", error.class()),
                "error": error.to_string(),
                "requestId": error.request_id(),
            }),
        );
    }
}

/// Applies an action, retrying as the one retry policy decides.
async fn apply_with_retry(
    target: &dyn Target,
    action: &Action,
    key: &IdempotencyKey,
    policy: &RetryPolicy,
    log: &RetryLog<'_>,
) -> Result<deployctl_adapter::Applied, AdapterError> {
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let error = match target.apply(action, key).await {
            Ok(applied) => return Ok(applied),
            Err(error) => error,
        };
        match policy.decide(attempt, &error, crate::retry::jitter()) {
            RetryDecision::RetryAfter(delay) => {
                log.retried(attempt, &error);
                tokio::time::sleep(delay).await;
            }
            RetryDecision::ReobserveThenRetry(delay) => {
                log.retried(attempt, &error);
                tokio::time::sleep(delay).await;
                // A conflict means our view is stale; reading refreshes the
                // adapter's revision (RevisionId, ETag) before the retry.
                let _ = target.observe().await;
            }
            RetryDecision::GiveUp => return Err(error),
        }
    }
}

/// Drives one stage's program from its journaled cursor.
struct StageDriver {
    run_id: String,
    stage: Stage,
    target: Arc<dyn Target>,
    plan: Arc<ValidatedPlan>,
    probes: Arc<dyn ProbeFactory>,
    journal: Arc<Journal>,
    options: EngineOptions,
    progress: ProgressSink,
    abort: watch::Receiver<Option<Abort>>,
    notify: NotifyHub,
}

impl StageDriver {
    async fn run(mut self, record: Option<StageRecord>) -> Result<(), StageStop> {
        let timeout = self.stage.timeout;
        let name = self.stage.name.clone();
        let work = self.program(record);
        match timeout {
            Some(limit) => match tokio::time::timeout(limit, work).await {
                Ok(result) => result,
                Err(_) => Err(StageStop::Failed(Abort {
                    trigger: RollbackTrigger::Timeout,
                    stage: Some(name.clone()),
                    reason: format!(
                        "stage `{name}` timed out after {}",
                        deployctl_plan::duration::format_duration(limit)
                    ),
                })),
            },
            None => work.await,
        }
        .inspect_err(|stop| {
            if let StageStop::Failed(abort) = stop {
                if abort.trigger == RollbackTrigger::GateFailed {
                    self.notify
                        .send(RunEvent::GateFailed, Some(&name), &abort.reason);
                }
                let _ = self.enter(
                    StagePhase::Failed,
                    "stageFailed",
                    serde_json::json!({"trigger": abort.trigger, "reason": abort.reason}),
                    abort.reason.clone(),
                );
            }
        })
    }

    /// Journals the stage entering `phase` (with `kind` and `data` as the
    /// event, `detail` as its one-line reason) and shows it.
    fn enter(
        &self,
        phase: StagePhase,
        kind: &str,
        data: serde_json::Value,
        detail: String,
    ) -> Result<(), JournalError> {
        self.journal.transition(
            &self.run_id,
            &self.stage.name,
            kind,
            &data,
            &StageUpdate {
                phase: Some(phase),
                detail: Some(detail.clone()),
                ..StageUpdate::default()
            },
        )?;
        self.progress.emit(Progress::Stage {
            run: self.run_id.clone(),
            stage: self.stage.name.clone(),
            phase,
            detail,
        });
        Ok(())
    }

    fn fail(&self, trigger: RollbackTrigger, reason: String) -> StageStop {
        StageStop::Failed(Abort {
            trigger,
            stage: Some(self.stage.name.clone()),
            reason: format!("stage `{}`: {reason}", self.stage.name),
        })
    }

    async fn program(&mut self, record: Option<StageRecord>) -> Result<(), StageStop> {
        let target_model = self.plan.target_of(&self.stage).clone();
        let ops = program::compile(&self.stage, &target_model);
        let record = record.ok_or_else(|| {
            StageStop::Journal(JournalError::Corrupt(format!(
                "no journal row for stage {}",
                self.stage.name
            )))
        })?;
        let mut cursor = record.cursor as usize;
        let resumed_pause = record.pause_until;
        if cursor == 0
            && !record.moved
            && record.stable_version.is_some()
            && record.stable_version == record.new_version
        {
            // Already released (a re-run of the same plan): nothing to move,
            // and no traffic shift to gate.
            let detail = format!(
                "already running {}; nothing to do",
                record.new_version.as_deref().unwrap_or_default()
            );
            self.enter(
                StagePhase::Succeeded,
                "stageSucceeded",
                serde_json::json!({"unchanged": true}),
                detail,
            )?;
            return Ok(());
        }
        self.enter(
            StagePhase::Progressing,
            if cursor == 0 {
                "stageStarted"
            } else {
                "stageResumed"
            },
            serde_json::json!({"cursor": cursor}),
            format!(
                "{} → {}",
                record.stable_version.as_deref().unwrap_or("stable"),
                record.new_version.as_deref().unwrap_or("new")
            ),
        )?;
        let mut monitors: Vec<GateMonitor> = Vec::new();
        for gate in program::monitors_at(&ops, cursor) {
            monitors.push(self.monitor(&gate)?);
        }
        while cursor < ops.len() {
            let op = ops[cursor].clone();
            let detail = match op {
                Op::Apply(action) => {
                    self.apply(cursor, &ops, &action, &mut monitors).await?;
                    action.to_string()
                }
                Op::StartWave { index, size } => {
                    let devices = self.wave_devices(size, &mut monitors).await?;
                    let action = Action::StartWave { index, devices };
                    self.apply(cursor, &ops, &action, &mut monitors).await?;
                    action.to_string()
                }
                Op::AwaitWave { index } => self.await_wave(index, &mut monitors).await?,
                Op::Pause(duration) => {
                    let remaining = match resumed_pause {
                        Some(until) if cursor == record.cursor as usize => {
                            Duration::from_millis((until - now_ms()).max(0) as u64)
                        }
                        _ => {
                            self.journal.transition(
                                &self.run_id,
                                &self.stage.name,
                                "pauseStarted",
                                &serde_json::json!({"seconds": duration.as_secs_f64()}),
                                &StageUpdate {
                                    pause_until: Some(Some(now_ms() + duration.as_millis() as i64)),
                                    ..StageUpdate::default()
                                },
                            )?;
                            duration
                        }
                    };
                    self.guarded(tokio::time::sleep(remaining), &mut monitors)
                        .await?;
                    format!(
                        "paused {}",
                        deployctl_plan::duration::format_duration(duration)
                    )
                }
                Op::Gates(names) => self.gates(&names, &mut monitors).await?,
                Op::Approval(name) => self.approval(&name, &mut monitors).await?,
                Op::StartMonitors(names) => {
                    for gate in &names {
                        monitors.push(self.monitor(gate)?);
                    }
                    format!("watching {}", names.join(", "))
                }
                Op::StopMonitors => self.stop_monitors(&mut monitors).await?,
            };
            cursor += 1;
            if !matches!(ops[cursor - 1], Op::Apply(_) | Op::StartWave { .. }) {
                self.journal.transition(
                    &self.run_id,
                    &self.stage.name,
                    "step",
                    &serde_json::json!({"cursor": cursor, "detail": detail}),
                    &StageUpdate {
                        cursor: Some(cursor as u32),
                        phase: Some(StagePhase::Progressing),
                        pause_until: Some(None),
                        ..StageUpdate::default()
                    },
                )?;
            }
            self.progress.emit(Progress::Step {
                run: self.run_id.clone(),
                stage: self.stage.name.clone(),
                step: cursor as u32,
                steps: ops.len() as u32,
                weight: program::weight_at(&ops, cursor),
                detail,
            });
        }
        self.enter(
            StagePhase::Succeeded,
            "stageSucceeded",
            serde_json::json!({}),
            format!(
                "promoted {}",
                record.new_version.as_deref().unwrap_or("new version")
            ),
        )?;
        Ok(())
    }

    /// Waits for `work` unless the run aborts or a background gate fails
    /// first. Every await of the stage goes through here.
    async fn guarded<T>(
        &self,
        work: impl std::future::Future<Output = T>,
        monitors: &mut [GateMonitor],
    ) -> Result<T, StageStop> {
        if self.abort.borrow().is_some() {
            return Err(StageStop::Aborted);
        }
        let mut abort = self.abort.clone();
        let monitor_failure = gate::first_failure(monitors);
        tokio::select! {
            biased;
            _ = abort.wait_for(Option::is_some) => Err(StageStop::Aborted),
            (_, result) = monitor_failure => {
                let gate = result.gate.clone();
                self.record_gate(&gate, &result)?;
                Err(self.fail(
                    RollbackTrigger::GateFailed,
                    format!("gate `{gate}` failed: {}", result.reason()),
                ))
            }
            value = work => Ok(value),
        }
    }

    fn monitor(&self, gate: &str) -> Result<GateMonitor, StageStop> {
        let gate =
            self.plan.gates.get(gate).cloned().ok_or_else(|| {
                self.fail(RollbackTrigger::Error, format!("unknown gate `{gate}`"))
            })?;
        let probe = self
            .probes
            .probe(&gate, &self.target)
            .map_err(|error| self.fail(RollbackTrigger::Error, error))?;
        Ok(GateMonitor::spawn(gate, probe))
    }

    fn record_gate(&self, gate: &str, result: &GateResult) -> Result<(), JournalError> {
        let json = serde_json::to_value(result).unwrap_or_default();
        self.journal.transition(
            &self.run_id,
            &self.stage.name,
            "gateResult",
            &serde_json::json!({"gate": gate, "result": json}),
            &StageUpdate {
                last_gate: Some(serde_json::json!({"gate": gate, "result": json})),
                ..StageUpdate::default()
            },
        )?;
        self.progress.emit(Progress::Gate {
            run: self.run_id.clone(),
            stage: self.stage.name.clone(),
            gate: gate.to_string(),
            passed: result.passed(),
            detail: result.reason(),
        });
        Ok(())
    }

    /// Journals the intent, applies with retries, journals the outcome and
    /// the advanced cursor in one transaction.
    async fn apply(
        &mut self,
        cursor: usize,
        ops: &[Op],
        action: &Action,
        monitors: &mut [GateMonitor],
    ) -> Result<(), StageStop> {
        let key = format!("{}/{}/{cursor}", self.run_id, self.stage.name);
        self.journal.call_intent(
            &self.run_id,
            &self.stage.name,
            &key,
            &serde_json::to_value(action).unwrap_or_default(),
            &StageUpdate {
                moved: Some(true),
                ..StageUpdate::default()
            },
        )?;
        let target = self.target.clone();
        let policy = self.options.retry.clone();
        let idempotency = IdempotencyKey(key.clone());
        let log = RetryLog {
            journal: &self.journal,
            run_id: &self.run_id,
            stage: &self.stage.name,
            key: &key,
        };
        let result = self
            .guarded(
                apply_with_retry(&*target, action, &idempotency, &policy, &log),
                monitors,
            )
            .await?;
        match result {
            Ok(applied) => {
                self.journal.call_outcome(
                    &self.run_id,
                    &self.stage.name,
                    &key,
                    true,
                    &applied.request_ids,
                    None,
                    &StageUpdate {
                        cursor: Some(cursor as u32 + 1),
                        weight: Some(program::weight_at(ops, cursor + 1)),
                        pause_until: Some(None),
                        ..StageUpdate::default()
                    },
                )?;
                Ok(())
            }
            Err(error) => {
                self.journal.call_outcome(
                    &self.run_id,
                    &self.stage.name,
                    &key,
                    false,
                    &error
                        .request_id()
                        .map(str::to_string)
                        .into_iter()
                        .collect::<Vec<_>>(),
                    Some(&error.to_string()),
                    &StageUpdate::default(),
                )?;
                Err(self.fail(RollbackTrigger::Error, format!("{action} failed: {error}")))
            }
        }
    }

    async fn gates(
        &mut self,
        names: &[String],
        monitors: &mut [GateMonitor],
    ) -> Result<String, StageStop> {
        let mut runs = Vec::new();
        for name in names {
            let gate = self.plan.gates.get(name).cloned().ok_or_else(|| {
                self.fail(RollbackTrigger::Error, format!("unknown gate `{name}`"))
            })?;
            let probe = self
                .probes
                .probe(&gate, &self.target)
                .map_err(|error| self.fail(RollbackTrigger::Error, error))?;
            runs.push((name.clone(), gate, probe));
        }
        let all = async {
            let mut results = Vec::new();
            let mut pending: Vec<_> = runs
                .iter()
                .map(|(name, gate, probe)| {
                    Box::pin(async move {
                        (name.clone(), gate::run_to_completion(gate, &**probe).await)
                    })
                })
                .collect();
            // Gates of one step run concurrently; results keep their order.
            while !pending.is_empty() {
                let (result, rest) = select_all_boxed(pending).await;
                results.push(result);
                pending = rest;
            }
            results
        };
        let results = self.guarded(all, monitors).await?;
        for (name, result) in &results {
            self.record_gate(name, result)?;
        }
        if let Some((name, result)) = results.iter().find(|(_, result)| !result.passed()) {
            return Err(self.fail(
                RollbackTrigger::GateFailed,
                format!("gate `{name}` failed: {}", result.reason()),
            ));
        }
        Ok(format!("gates passed: {}", names.join(", ")))
    }

    async fn stop_monitors(
        &mut self,
        monitors: &mut Vec<GateMonitor>,
    ) -> Result<String, StageStop> {
        let mut names = Vec::new();
        for mut monitor in std::mem::take(monitors) {
            let name = monitor.gate();
            self.guarded(monitor.settled(), &mut []).await?;
            let summary = monitor.stop();
            self.record_gate(&name, &summary)?;
            if !summary.passed() {
                return Err(self.fail(
                    RollbackTrigger::GateFailed,
                    format!("gate `{name}` never passed: {}", summary.reason()),
                ));
            }
            names.push(name);
        }
        Ok(format!("background gates passed: {}", names.join(", ")))
    }

    async fn approval(
        &mut self,
        name: &str,
        monitors: &mut [GateMonitor],
    ) -> Result<String, StageStop> {
        let approval = self.plan.approvals.get(name).cloned().ok_or_else(|| {
            self.fail(RollbackTrigger::Error, format!("unknown approval `{name}`"))
        })?;
        self.enter(
            StagePhase::Paused,
            "approvalRequested",
            serde_json::json!({"approval": name, "role": approval.role, "required": approval.required}),
            format!(
                "waiting for {} approver(s) with role `{}` ({name})",
                approval.required, approval.role
            ),
        )?;
        let asking = format!(
            "waiting for {} approver(s) with role `{}` for `{name}`: `deployctl approve {} --gate {name}`",
            approval.required, approval.role, self.run_id
        );
        self.notify
            .send(RunEvent::ApprovalRequested, Some(&self.stage.name), &asking);
        self.notify
            .send(RunEvent::Paused, Some(&self.stage.name), &asking);
        let journal = self.journal.clone();
        let run_id = self.run_id.clone();
        let poll = self.options.poll;
        let gate = name.to_string();
        let wait = async move {
            loop {
                if let Some((approver, reason)) = journal.rejection(&run_id, &gate)? {
                    return Ok::<_, JournalError>(Some(format!(
                        "rejected by {approver}: {reason}"
                    )));
                }
                if journal.approvals(&run_id, &gate)? >= approval.required {
                    return Ok(None);
                }
                tokio::time::sleep(poll).await;
            }
        };
        let outcome = match approval.on_timeout {
            OnTimeout::Rollback => {
                let bounded = tokio::time::timeout(approval.timeout, wait);
                match self.guarded(bounded, monitors).await? {
                    Ok(result) => result,
                    Err(_) => {
                        return Err(self.fail(
                            RollbackTrigger::Timeout,
                            format!("approval `{name}` was not granted in time"),
                        ));
                    }
                }
            }
            OnTimeout::Pause => self.guarded(wait, monitors).await?,
        };
        if let Some(rejection) = outcome? {
            return Err(self.fail(
                RollbackTrigger::GateFailed,
                format!("approval `{name}` {rejection}"),
            ));
        }
        Ok(format!("approval `{name}` granted"))
    }

    async fn wave_devices(
        &mut self,
        size: WaveSize,
        monitors: &mut [GateMonitor],
    ) -> Result<u32, StageStop> {
        let observed = self
            .guarded(self.target.observe(), monitors)
            .await?
            .map_err(|error| {
                self.fail(RollbackTrigger::Error, format!("observe failed: {error}"))
            })?;
        let fleet = observed.waves.map(|w| w.fleet_size).unwrap_or(0);
        Ok(match size {
            WaveSize::Count(count) => count.min(fleet.max(count)),
            WaveSize::Percent(percent) => {
                ((f64::from(fleet) * percent / 100.0).ceil() as u32).max(1)
            }
        })
    }

    /// Polls wave progress until the wave's devices reported or timed out,
    /// judging the abort and success thresholds as results arrive.
    async fn await_wave(
        &mut self,
        index: u32,
        monitors: &mut [GateMonitor],
    ) -> Result<String, StageStop> {
        let deployctl_plan::model::Strategy::Waves(waves) = &self.stage.strategy else {
            return Err(self.fail(RollbackTrigger::Error, "waves on a non-wave stage".into()));
        };
        let waves = waves.clone();
        let deadline = tokio::time::Instant::now() + waves.device_timeout;
        loop {
            let observed = self
                .guarded(self.target.observe(), monitors)
                .await?
                .map_err(|error| {
                    self.fail(RollbackTrigger::Error, format!("observe failed: {error}"))
                })?;
            let progress = observed.waves.unwrap_or_default();
            let reported = progress.succeeded + progress.failed + progress.timed_out;
            let failures = progress.failed + progress.timed_out;
            if reported >= waves.abort_min_devices && reported > 0 {
                let failure_rate = f64::from(failures) * 100.0 / f64::from(reported);
                if failure_rate > waves.abort_failure_threshold {
                    return Err(self.fail(
                        RollbackTrigger::GateFailed,
                        format!(
                            "wave {}: {failure_rate:.1}% of {reported} devices failed, above the abort threshold of {}%",
                            index + 1,
                            waves.abort_failure_threshold
                        ),
                    ));
                }
            }
            let all_reported = progress.in_progress() == 0;
            if all_reported || tokio::time::Instant::now() >= deadline {
                let timed_out = progress.in_progress();
                let dispatched = progress.dispatched.max(1);
                let success_rate = f64::from(progress.succeeded) * 100.0 / f64::from(dispatched);
                if success_rate < waves.success_threshold {
                    return Err(self.fail(
                        RollbackTrigger::GateFailed,
                        format!(
                            "wave {}: {success_rate:.1}% of devices succeeded ({timed_out} still silent), below the {}% threshold",
                            index + 1,
                            waves.success_threshold
                        ),
                    ));
                }
                return Ok(format!(
                    "wave {}: {} of {} devices updated ({success_rate:.1}%)",
                    index + 1,
                    progress.succeeded,
                    progress.dispatched
                ));
            }
            self.guarded(tokio::time::sleep(self.options.poll), monitors)
                .await?;
        }
    }
}

/// Waits for the first of several futures and hands back the rest (a tiny
/// `select_all`, to avoid a dependency for one call site).
async fn select_all_boxed<F, T>(
    mut futures: Vec<std::pin::Pin<Box<F>>>,
) -> (T, Vec<std::pin::Pin<Box<F>>>)
where
    F: std::future::Future<Output = T> + ?Sized,
{
    let (value, index) = std::future::poll_fn(|context| {
        for (index, future) in futures.iter_mut().enumerate() {
            if let std::task::Poll::Ready(value) = future.as_mut().poll(context) {
                return std::task::Poll::Ready((value, index));
            }
        }
        std::task::Poll::Pending
    })
    .await;
    futures.remove(index);
    (value, futures)
}

/// The identity of a target on its platform, for locks: two plans that
/// name the same Lambda alias differently still exclude each other.
pub fn target_key(name: &str, spec: &TargetSpec) -> String {
    match spec {
        TargetSpec::Kubernetes(k8s) => format!(
            "kubernetes:{}/{}/{}",
            k8s.context.as_deref().unwrap_or("current"),
            k8s.namespace,
            k8s.deployment
        ),
        TargetSpec::Lambda(lambda) => format!(
            "lambda:{}:{}:{}",
            lambda.region.as_deref().unwrap_or("default"),
            lambda.function_name,
            lambda.alias
        ),
        TargetSpec::CloudFront(cloudfront) => format!("cloudfront:{}", cloudfront.distribution_id),
        TargetSpec::Ecs(ecs) => format!(
            "ecs:{}:{}/{}",
            ecs.region.as_deref().unwrap_or("default"),
            ecs.cluster,
            ecs.service
        ),
        TargetSpec::Fleet(selector) => match selector {
            deployctl_plan::model::FleetSelector::ThingGroups { groups, .. } => {
                format!("fleet:groups:{}", groups.join(","))
            }
            deployctl_plan::model::FleetSelector::Query { query, .. } => {
                format!("fleet:query:{query}")
            }
        },
        TargetSpec::Sim(_) => format!("sim:{name}"),
    }
}
