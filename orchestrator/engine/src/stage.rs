//! The stage interpreter: one stage's program (`program.rs`) walked from
//! its journaled cursor. Every await goes through [`StageDriver::guarded`],
//! so a kill, another stage's failure or a background gate's failure stops
//! the stage at its next await. Approvals and waves have modules of their
//! own (`approval.rs`, `waves.rs`).

use std::sync::Arc;
use std::time::Duration;

use deployctl_adapter::{Action, IdempotencyKey, Target};
use deployctl_plan::model::{RollbackTrigger, RunEvent, Stage, ValidatedPlan};
use tokio::sync::watch;

use crate::calls::{RetryLog, apply_with_retry};
use crate::clock::now_ms;
use crate::event::Event;
use crate::executor::{Abort, EngineOptions, ProbeFactory};
use crate::gate::{self, GateMonitor, GateResult};
use crate::journal::{Journal, JournalError, StageRecord, StageUpdate, Steering};
use crate::notify::NotifyHub;
use crate::program::{self, Op};
use crate::progress::{Progress, ProgressSink};
use crate::state::StagePhase;

/// How a step skipped by `deployctl promote --full` is described.
const SKIPPED_BY_FULL_PROMOTION: &str = "skipped by `deployctl promote --full`";

/// How a stage's forward run ended, if not in success.
#[derive(Debug)]
pub(crate) enum StageStop {
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

/// Drives one stage's program from its journaled cursor.
pub(crate) struct StageDriver {
    pub(crate) run_id: String,
    pub(crate) stage: Stage,
    pub(crate) target: Arc<dyn Target>,
    pub(crate) plan: Arc<ValidatedPlan>,
    pub(crate) probes: Arc<dyn ProbeFactory>,
    pub(crate) journal: Arc<Journal>,
    pub(crate) options: EngineOptions,
    pub(crate) progress: ProgressSink,
    pub(crate) abort: watch::Receiver<Option<Abort>>,
    /// `deployctl pause` / `promote [--full]`, as the run's journal
    /// watcher last read them.
    pub(crate) steering: watch::Receiver<Steering>,
    pub(crate) notify: NotifyHub,
}

impl StageDriver {
    pub(crate) async fn run(mut self, record: Option<StageRecord>) -> Result<(), StageStop> {
        let timeout = self.stage.timeout;
        let name = self.stage.name.clone();
        let work = self.program(record);
        match timeout {
            Some(limit) => match tokio::time::timeout(limit, work).await {
                Ok(result) => result,
                Err(_) => Err(StageStop::Failed(Abort {
                    trigger: RollbackTrigger::Timeout,
                    stage: Some(name.clone()),
                    requested: None,
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
                    Event::StageFailed {
                        trigger: abort.trigger,
                        reason: abort.reason.clone(),
                    },
                    abort.reason.clone(),
                );
            }
        })
    }

    /// Journals the stage entering `phase` (with `event`, and `detail` as
    /// its one-line reason) and shows it.
    pub(crate) fn enter(
        &self,
        phase: StagePhase,
        event: Event,
        detail: String,
    ) -> Result<(), JournalError> {
        self.journal.transition(
            &self.run_id,
            &self.stage.name,
            &event,
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

    pub(crate) fn fail(&self, trigger: RollbackTrigger, reason: String) -> StageStop {
        StageStop::Failed(Abort {
            trigger,
            stage: Some(self.stage.name.clone()),
            requested: None,
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
                Event::StageSucceeded { unchanged: true },
                detail,
            )?;
            return Ok(());
        }
        self.enter(
            StagePhase::Progressing,
            if cursor == 0 {
                Event::StageStarted { cursor: 0 }
            } else {
                Event::StageResumed {
                    cursor: cursor as u32,
                }
            },
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
        // Where this process began skipping steps for `promote --full`:
        // the weight shown while skipping is the one set before it.
        let mut full_from: Option<usize> = None;
        while cursor < ops.len() {
            // `deployctl pause`: hold before the next step, gates watching.
            self.guarded(self.hold(), &mut monitors).await??;
            let op = ops[cursor].clone();
            if self.steering.borrow().full && program::skipped_by_full_promotion(&ops, cursor) {
                // `promote --full`: no more analysis, so the background
                // gates stop without their verdict.
                monitors.clear();
                let from = *full_from.get_or_insert(cursor);
                cursor += 1;
                self.skipped(cursor, &op, program::weight_at(&ops, from), ops.len())?;
                continue;
            }
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
                                &Event::PauseStarted {
                                    seconds: duration.as_secs_f64(),
                                },
                                &StageUpdate {
                                    pause_until: Some(Some(now_ms() + duration.as_millis() as i64)),
                                    ..StageUpdate::default()
                                },
                            )?;
                            duration
                        }
                    };
                    let promoted = self.guarded(self.pause(remaining), &mut monitors).await??;
                    let length = deployctl_plan::duration::format_duration(duration);
                    if promoted {
                        format!("paused (of {length}), ended early by `deployctl promote`")
                    } else {
                        format!("paused {length}")
                    }
                }
                // A full promotion asked for while these wait ends the wait.
                Op::Gates(names) => {
                    let full = self.full_promotion();
                    tokio::select! {
                        result = self.gates(&names, &mut monitors) => result?,
                        () = full => SKIPPED_BY_FULL_PROMOTION.to_string(),
                    }
                }
                Op::Approval(name) => {
                    let full = self.full_promotion();
                    tokio::select! {
                        result = self.approval(&name, &mut monitors) => result?,
                        () = full => SKIPPED_BY_FULL_PROMOTION.to_string(),
                    }
                }
                Op::StartMonitors(names) => {
                    for gate in &names {
                        monitors.push(self.monitor(gate)?);
                    }
                    format!("watching {}", names.join(", "))
                }
                Op::StopMonitors => self.stop_monitors(&mut monitors).await?,
            };
            cursor += 1;
            // A call's cursor was journaled with its outcome.
            if !matches!(ops[cursor - 1], Op::Apply(_) | Op::StartWave { .. }) {
                self.journal_step(cursor, &detail)?;
            }
            self.show_step(
                cursor,
                ops.len(),
                program::weight_at(&ops, cursor),
                program::waves_at(&ops, cursor),
                detail,
            );
        }
        self.enter(
            StagePhase::Succeeded,
            Event::StageSucceeded { unchanged: false },
            format!(
                "promoted {}",
                record.new_version.as_deref().unwrap_or("new version")
            ),
        )?;
        Ok(())
    }

    /// Resolves once `promote --full` was asked for (never, once the run's
    /// watcher is gone).
    fn full_promotion(&self) -> impl std::future::Future<Output = ()> + use<> {
        let mut steering = self.steering.clone();
        async move {
            if steering.wait_for(|now| now.full).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Journals step `cursor - 1` (`op`) as skipped by `promote --full` and
    /// shows it, `weight` being what the target carries.
    fn skipped(
        &self,
        cursor: usize,
        op: &Op,
        weight: u8,
        steps: usize,
    ) -> Result<(), JournalError> {
        let detail = format!("{} {SKIPPED_BY_FULL_PROMOTION}", program::describe(op));
        self.journal_step(cursor, &detail)?;
        self.show_step(cursor, steps, weight, None, detail);
        Ok(())
    }

    /// Journals that the stage's cursor moved to `cursor` past a step that
    /// made no call (a call's outcome moves the cursor itself).
    fn journal_step(&self, cursor: usize, detail: &str) -> Result<(), JournalError> {
        self.journal.transition(
            &self.run_id,
            &self.stage.name,
            &Event::Step {
                cursor: cursor as u32,
                detail: detail.to_string(),
            },
            &StageUpdate {
                cursor: Some(cursor as u32),
                phase: Some(StagePhase::Progressing),
                pause_until: Some(None),
                ..StageUpdate::default()
            },
        )
    }

    fn show_step(
        &self,
        cursor: usize,
        steps: usize,
        weight: u8,
        waves: Option<crate::progress::WavesStarted>,
        detail: String,
    ) {
        self.progress.emit(Progress::Step {
            run: self.run_id.clone(),
            stage: self.stage.name.clone(),
            step: cursor as u32,
            steps: steps as u32,
            weight,
            waves,
            detail,
        });
    }

    /// Waits for `work` unless the run aborts or a background gate fails
    /// first. Every await of the stage goes through here.
    /// Waits out a pause of `remaining`, polling the journal (as for
    /// `kill`) for a `promote`, which ends it now, and for a hold, which
    /// keeps it going past its end. True when a promote ended it.
    async fn pause(&self, remaining: Duration) -> Result<bool, StageStop> {
        let deadline = tokio::time::Instant::now() + remaining;
        let mut steering = self.steering.clone();
        let promotions_at_start = steering.borrow().promotions;
        let promoted = |now: &Steering| now.promotions > promotions_at_start;
        let woken = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => None,
            result = steering.wait_for(promoted) => Some(result.is_ok()),
        };
        match woken {
            Some(true) => return Ok(true),
            // The run's watcher is gone (the run is stopping): nobody can
            // promote or hold it any more, so the pause runs its course.
            Some(false) => {
                tokio::time::sleep_until(deadline).await;
                return Ok(false);
            }
            None => {}
        }
        // The time is up; a hold keeps the pause going until `promote`.
        let released = steering
            .wait_for(|state| !state.held || promoted(state))
            .await
            .map(|state| promoted(&state));
        Ok(released.unwrap_or(false))
    }

    /// Waits while the run is held (`deployctl pause`), until `promote`.
    async fn hold(&self) -> Result<(), StageStop> {
        let mut steering = self.steering.clone();
        // A closed channel (the run's watcher is gone) holds nothing.
        let _ = steering.wait_for(|now| !now.held).await;
        Ok(())
    }

    pub(crate) async fn guarded<T>(
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
            .map_err(|error| self.fail(RollbackTrigger::Error, error.to_string()))?;
        Ok(GateMonitor::spawn_observed(
            gate,
            probe,
            Some(self.live_sink()),
        ))
    }

    /// Keeps each measurement of this stage's gates in the journal for
    /// `status` (informative: a failed write loses only the live view).
    fn live_sink(&self) -> gate::LiveSink {
        let (journal, run_id, stage) = (
            Arc::clone(&self.journal),
            self.run_id.clone(),
            self.stage.name.clone(),
        );
        Arc::new(move |live: &gate::LiveGate| {
            let _ = journal.record_live_gate(&run_id, &stage, live);
        })
    }

    fn record_gate(&self, gate: &str, result: &GateResult) -> Result<(), JournalError> {
        let event = Event::GateResult {
            gate: gate.to_string(),
            result: result.clone(),
        };
        self.journal.transition(
            &self.run_id,
            &self.stage.name,
            &event,
            &StageUpdate {
                last_gate: Some(event.data()),
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
            action,
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
                .map_err(|error| self.fail(RollbackTrigger::Error, error.to_string()))?;
            runs.push((name.clone(), gate, probe));
        }
        let live = self.live_sink();
        let all = async {
            let mut results = Vec::new();
            let mut pending: Vec<_> = runs
                .iter()
                .map(|(name, gate, probe)| {
                    let live = &live;
                    Box::pin(async move {
                        let result = gate::run_observed(gate, &**probe, Some(live)).await;
                        (name.clone(), result)
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
