//! Rolling back: the backward walk over the stages that moved (a stage
//! goes back only after the stages that depend on it), each undone with
//! the rollback retry policy. A stage that still cannot go back leaves the
//! run needing a human; the others are undone all the same.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use deployctl_adapter::{Action, IdempotencyKey, Target};
use deployctl_plan::model::{RollbackScope, RunEvent, Stage, StageId};

use crate::calls::{RetryLog, apply_with_retry};
use crate::event::Event;
use crate::executor::{Abort, Engine, EngineError, RunContext, RunOutcome};
use crate::journal::{Journal, JournalError, StageRecord, StageUpdate};
use crate::notify::NotifyHub;
use crate::progress::{Progress, ProgressSink};
use crate::retry::RetryPolicy;
use crate::state::{RunPhase, StagePhase};
use crate::walker::{self, Finished, Walk};

/// How one stage's rollback ended.
enum Undo {
    Done,
    /// Gave up after the retry policy (with why, when it was not the
    /// platform: a panicking task).
    GaveUp(Option<String>),
}

impl Engine {
    /// Rolls back the stages that moved, in reverse DAG order, concurrently
    /// where independent. Retries hard; a stage that still cannot go back
    /// marks the run as needing a human.
    pub(crate) async fn roll_back(
        &self,
        context: &RunContext,
        hub: &NotifyHub,
        abort: &Abort,
        scope: RollbackScope,
        final_phase: RunPhase,
    ) -> Result<RunOutcome, EngineError> {
        let run_id = &context.run_id;
        let plan = &context.plan;
        self.journal
            .begin_rollback(run_id, &abort.reason, scope, final_phase)?;
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
                    &Event::StageSkipped {},
                    &StageUpdate {
                        phase: Some(StagePhase::Skipped),
                        ..StageUpdate::default()
                    },
                )?;
            }
        }
        let graph = plan.graph();
        let mut walk = Walk::backward(graph, &pending);
        let mut failed: Vec<String> = Vec::new();
        walker::drive(
            &mut walk,
            |id| {
                let stage = plan.stage(id).clone();
                let record = records[&stage.name].clone();
                let target = context.targets[&stage.target].clone();
                let journal = self.journal.clone();
                let policy = self.options.rollback_retry.clone();
                let progress = self.progress.clone();
                let run = run_id.clone();
                async move {
                    rollback_stage(&run, &stage, &record, target, &journal, &policy, &progress)
                        .await
                        .map(|undone| {
                            if undone {
                                Undo::Done
                            } else {
                                Undo::GaveUp(None)
                            }
                        })
                }
            },
            |_, id, result: Result<Undo, JournalError>| match result? {
                Undo::Done => Ok::<_, JournalError>(Finished::Succeeded),
                Undo::GaveUp(why) => {
                    let name = plan.stage(id).name.clone();
                    failed.push(match why {
                        Some(why) => format!("{name} ({why})"),
                        None => name,
                    });
                    Ok(Finished::Failed)
                }
            },
            |_, panic| {
                Ok(Undo::GaveUp(Some(format!(
                    "its rollback task panicked: {panic}"
                ))))
            },
        )
        .await?;
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
                .rollback_incomplete(run_id, &failed, &abort.reason, &message)?;
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
pub(crate) async fn rollback_stage(
    run_id: &str,
    stage: &Stage,
    record: &StageRecord,
    target: Arc<dyn Target>,
    journal: &Journal,
    policy: &RetryPolicy,
    progress: &ProgressSink,
) -> Result<bool, JournalError> {
    target.attach(run_id, &stage.name);
    let action = Action::Rollback {
        to: record.stable_version.clone(),
    };
    let key = format!("{run_id}/{}/rollback", stage.name);
    journal.call_intent(
        run_id,
        &stage.name,
        &key,
        &action,
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
