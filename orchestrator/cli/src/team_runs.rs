//! Runs driven on another PC, through the team backend: `kill`,
//! `rollback` and `abort RUN` ask the driving PC to stop (it polls every
//! half second) and wait for its record to say the run ended; when that
//! PC stopped renewing the run's locks (it died), this PC claims the run
//! in the backend, records it from the backend's record and stops it
//! itself. `status RUN` prints the backend's record. Used only when the run is not in
//! this state directory's journal and a backend is configured.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deployctl_adapter::team::{SharedDecision, SharedRun, StopAsk, StopAsked, TeamLocks, TeamRuns};
use deployctl_audit::{Action as AuditAction, Outcome, What};
use deployctl_engine::journal::{
    Journal, NewRun, NewStage, PreflightRecord, RunQuery, RunRecord, StageUpdate, StopRequest,
};
use deployctl_engine::state::{RunMode, RunPhase, StagePhase};

use crate::engine_cmds::Options;
use crate::exit;

/// How long `kill RUN` waits for the driving PC's rollback.
const ROLLBACK_WAIT: Duration = Duration::from_secs(600);
const POLL: Duration = Duration::from_millis(250);

/// The run is driven elsewhere and the team backend knows it.
fn elsewhere(run_id: &str, options: &Options<'_>) -> bool {
    options.backend.is_some()
        && Journal::open(options.state_dir).is_ok_and(|journal| journal.run(run_id).is_err())
}

/// A runtime and the backend, or the exit code saying why not.
type Connected = (
    tokio::runtime::Runtime,
    Arc<dyn TeamLocks>,
    Arc<dyn TeamRuns>,
);

fn connect(backend: &deployctl_aws_audit::S3Location) -> Result<Connected, u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            crate::report::failed(format!("cannot start the async runtime: {error}"))
        })?;
    let (locks, runs) = runtime
        .block_on(crate::team::backend(backend))
        .map_err(crate::report::refused)?;
    Ok((runtime, locks, runs))
}

/// `kill | rollback | abort RUN` of a run another PC drives; `None` when
/// the run is this state directory's (or there is no backend).
pub fn stop_elsewhere(run_id: &str, request: StopRequest, options: &Options<'_>) -> Option<u8> {
    if !elsewhere(run_id, options) {
        return None;
    }
    let backend = options.backend?;
    let ask = match request {
        StopRequest::Rollback => StopAsk::Rollback,
        StopRequest::Abort => StopAsk::Abort,
        StopRequest::Kill | StopRequest::ReleaseDeleted => StopAsk::Kill,
    };
    let (runtime, locks, runs) = match connect(backend) {
        Ok(connected) => connected,
        Err(code) => return Some(code),
    };
    let taken = match runtime.block_on(stop(run_id, ask, options, locks.as_ref(), runs.as_ref())) {
        Stopped::Ended(code) => return Some(code),
        Stopped::DriverGone(record) => record,
    };
    // The driving PC is gone: this PC records the run from the backend
    // and stops it itself, through the same commands as a local run.
    if let Err(code) = take_over(&taken, options) {
        return Some(code);
    }
    Some(match request {
        StopRequest::Rollback => crate::engine_cmds::rollback(Some(run_id), None, options),
        StopRequest::Abort => crate::engine_cmds::abort(run_id, options),
        StopRequest::Kill | StopRequest::ReleaseDeleted => {
            crate::engine_cmds::kill(run_id, options)
        }
    })
}

/// How asking a run on another PC to stop ended.
enum Stopped {
    /// With this exit code (the run ended there, or the ask failed).
    Ended(u8),
    /// The driving PC stopped renewing the run's locks: its record as
    /// that PC left it (the backend's now names this PC).
    DriverGone(Box<SharedRun>),
}

/// Records in this journal the run another PC drove, as its backend
/// record says it stood (audited as `run.takenOver`).
fn take_over(record: &SharedRun, options: &Options<'_>) -> Result<(), u8> {
    let (journal, _trail) = crate::audited::open(options.state_dir)?;
    let stages: Vec<NewStage> = record
        .stages
        .iter()
        .map(|stage| NewStage {
            name: stage.name.clone(),
            target: stage.target.clone(),
            target_key: stage.target_key.clone(),
            new_version: stage.new_version.clone(),
            preflight: Some(PreflightRecord {
                stable_version: stage.stable_version.clone().unwrap_or_default(),
                ready: true,
                detail: format!("as PC {} recorded it in the team backend", record.pc),
                identity: Some(stage.target_key.clone()),
                verified: Vec::new(),
            }),
        })
        .collect();
    let updates: Vec<(String, StageUpdate)> = record
        .stages
        .iter()
        .map(|stage| {
            (
                stage.name.clone(),
                StageUpdate {
                    phase: StagePhase::parse(&stage.phase),
                    weight: Some(stage.weight),
                    moved: Some(stage.moved),
                    ..StageUpdate::default()
                },
            )
        })
        .collect();
    let locks = record.stages.iter().map(|s| s.target_key.clone()).collect();
    let run = NewRun {
        id: &record.run,
        plan_name: &record.plan_name,
        environment: &record.environment,
        plan_file: &record.plan_file,
        plan_digest: &record.plan_digest,
        plan_source: &record.plan_source,
        initiator: &record.initiator,
        mode: RunMode::Apply,
        stages,
        locks,
    };
    let phase = RunPhase::parse(&record.phase).unwrap_or(RunPhase::Progressing);
    let by = deployctl_engine::run::initiator();
    journal
        .take_over(&run, phase, &updates, &record.pc, &by)
        .map_err(crate::report::failed)?;
    eprintln!(
        "PC {} is gone: run {} is recorded here from the team backend and stopped from this PC.",
        record.pc, record.run
    );
    Ok(())
}

async fn stop(
    run_id: &str,
    ask: StopAsk,
    options: &Options<'_>,
    locks: &dyn TeamLocks,
    runs: &dyn TeamRuns,
) -> Stopped {
    match ask_and_wait(run_id, ask, options, locks, runs).await {
        Err(code) => Stopped::Ended(code),
        Ok(Some(code)) => Stopped::Ended(code),
        Ok(None) => {
            // Claimed in the backend first, so the PC that was thought
            // dead refuses to drive the run if it comes back.
            let Ok(Some(record)) = runs.fetch(run_id).await else {
                return Stopped::Ended(crate::report::failed(format!(
                    "the team backend's record of run {run_id} cannot be read"
                )));
            };
            let claimed = SharedRun {
                pc: deployctl_engine::run::host_name(),
                revision: u64::try_from(deployctl_time::now_ms()).unwrap_or(record.revision),
                ..record.clone()
            };
            if let Err(error) = runs.publish(&claimed).await {
                return Stopped::Ended(crate::report::failed(error.to_string()));
            }
            Stopped::DriverGone(Box::new(record))
        }
    }
}

/// Asks, and waits for the driving PC: `Ok(Some(code))` when the run
/// ended there, `Ok(None)` when that PC stopped renewing its locks.
async fn ask_and_wait(
    run_id: &str,
    ask: StopAsk,
    options: &Options<'_>,
    locks: &dyn TeamLocks,
    runs: &dyn TeamRuns,
) -> Result<Option<u8>, u8> {
    let record = record_of(runs, run_id).await?;
    if record.terminal && !record.rollback_incomplete {
        eprintln!(
            "run {run_id} (on PC {}) already ended ({})",
            record.pc, record.phase
        );
        return Ok(Some(exit::OK));
    }
    let action = match ask {
        StopAsk::Kill => deployctl_policy::Action::Kill,
        StopAsk::Rollback | StopAsk::Abort => deployctl_policy::Action::Rollback,
    };
    crate::access::check_operator(
        action,
        &record.environment,
        options.access,
        options.state_dir,
        options.backend,
    )?;
    let by = deployctl_engine::run::initiator();
    let asked = StopAsked {
        ask,
        by: by.clone(),
        at: deployctl_time::now_ms(),
    };
    let standing = match runs.ask_stop(run_id, &asked).await {
        Ok(standing) => standing,
        Err(error) => return Err(crate::report::failed(error.to_string())),
    };
    audit(options, &by, run_id, ask, &record, &standing);
    eprintln!(
        "{} asked through the team backend; PC {} drives run {run_id} and stops it…",
        match standing.ask {
            StopAsk::Kill => "Kill",
            StopAsk::Rollback => "Rollback",
            StopAsk::Abort => "Abort",
        },
        record.pc
    );
    let deadline = Instant::now() + ROLLBACK_WAIT;
    while Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
        let Ok(Some(now)) = runs.fetch(run_id).await else {
            continue;
        };
        if now.terminal {
            eprintln!("run {run_id} (on PC {}): {}", now.pc, now.phase);
            return Ok(Some(if now.rollback_incomplete {
                exit::ROLLBACK_INCOMPLETE
            } else {
                exit::OK
            }));
        }
        if let Some(gone) = driver_gone(locks, &now).await {
            eprintln!("{gone}: taking run {run_id} over to stop it here");
            return Ok(None);
        }
    }
    Err(crate::report::failed(format!(
        "run {run_id} on PC {} did not end within {} s of the request; it stands, see `deployctl status {run_id}`",
        record.pc,
        ROLLBACK_WAIT.as_secs()
    )))
}

/// The backend's record of `run_id`, or the exit code of its absence.
async fn record_of(runs: &dyn TeamRuns, run_id: &str) -> Result<SharedRun, u8> {
    match runs.fetch(run_id).await {
        Ok(Some(record)) => Ok(record),
        Ok(None) => Err(crate::report::refused(format!(
            "no run {run_id} in this state directory or in the team backend"
        ))),
        Err(error) => Err(crate::report::failed(error.to_string())),
    }
}

/// Whether the driving PC stopped renewing the run's locks (it died).
async fn driver_gone(locks: &dyn TeamLocks, run: &SharedRun) -> Option<String> {
    let now = deployctl_time::now_ms();
    for stage in &run.stages {
        if let Ok(Some(lock)) = locks.inspect(&stage.target_key).await
            && lock.owner.run == run.run
            && lock.expired(now)
        {
            return Some(format!(
                "PC {} stopped renewing run {}'s lock on {} {} s ago",
                run.pc,
                run.run,
                stage.target_key,
                (now - lock.lease_until) / 1000
            ));
        }
    }
    None
}

fn audit(
    options: &Options<'_>,
    by: &str,
    run_id: &str,
    ask: StopAsk,
    record: &SharedRun,
    standing: &StopAsked,
) {
    let Ok((_, trail)) = crate::audited::open(options.state_dir) else {
        return;
    };
    let action = match ask {
        StopAsk::Kill => AuditAction::KillRequested,
        StopAsk::Rollback | StopAsk::Abort => AuditAction::RollbackRequested,
    };
    let detail = if standing.by != by || standing.ask != ask {
        format!(
            "through the team backend, for PC {}; an earlier request by {} stands",
            record.pc, standing.by
        )
    } else {
        format!("through the team backend, for PC {}", record.pc)
    };
    crate::audited::record(
        &trail,
        crate::access::initiator_user(by),
        What::new(action).run(run_id).detail(detail),
        Outcome::ok(),
    );
}

/// `status RUN` of a run another PC drives: the backend's record.
pub fn status_elsewhere(run_id: &str, options: &Options<'_>) -> Option<u8> {
    if !elsewhere(run_id, options) {
        return None;
    }
    let backend = options.backend?;
    let (runtime, _, runs) = match connect(backend) {
        Ok(connected) => connected,
        Err(code) => return Some(code),
    };
    Some(runtime.block_on(async {
        let record = match record_of(runs.as_ref(), run_id).await {
            Ok(record) => record,
            Err(code) => return code,
        };
        if options.json {
            let mut value = serde_json::to_value(&record).unwrap_or_default();
            if let Some(object) = value.as_object_mut() {
                object.remove("planSource");
            }
            outln!("{value}");
        } else {
            outln!(
                "run {} ({}, {}) on PC {}: {}{}",
                record.run,
                record.plan_name,
                record.environment,
                record.pc,
                record.phase,
                record
                    .outcome
                    .as_deref()
                    .map(|o| format!(" — {o}"))
                    .unwrap_or_default()
            );
            outln!("  started by {}", record.initiator);
            for stage in &record.stages {
                outln!(
                    "  {}: {} weight {}% ({} → {})",
                    stage.name,
                    stage.phase,
                    stage.weight,
                    stage.stable_version.as_deref().unwrap_or("?"),
                    stage.new_version.as_deref().unwrap_or("?")
                );
            }
        }
        RunPhase::parse(&record.phase).map_or(exit::FAILED, |phase| {
            crate::runs::exit_code(phase, record.rollback_incomplete)
        })
    }))
}

/// `history` with a backend: this journal's runs and the team's runs
/// driven on other PCs that match `query`, newest first, at most
/// `query.limit`. A backend that cannot be read is said, and the local
/// runs are still listed.
pub fn with_team_runs(
    mut local: Vec<RunRecord>,
    query: &RunQuery,
    options: &Options<'_>,
) -> Vec<RunRecord> {
    let Some(backend) = options.backend else {
        return local;
    };
    let team = match connect(backend) {
        Ok((runtime, _, runs)) => runtime.block_on(runs.runs()),
        Err(_) => return local,
    };
    let team = match team {
        Ok(team) => team,
        Err(error) => {
            eprintln!("warning: the team backend's runs cannot be read ({error}); this PC's only");
            return local;
        }
    };
    let known: std::collections::BTreeSet<String> = local.iter().map(|r| r.id.clone()).collect();
    local.extend(
        team.iter()
            .filter(|shared| !known.contains(&shared.run) && matches(shared, query))
            .map(as_run_record),
    );
    local.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    local.truncate(usize::try_from(query.limit).unwrap_or(usize::MAX));
    local
}

fn matches(shared: &SharedRun, query: &RunQuery) -> bool {
    let phase = RunPhase::parse(&shared.phase);
    query
        .target
        .as_ref()
        .is_none_or(|target| shared.stages.iter().any(|s| &s.target == target))
        && query
            .environment
            .as_ref()
            .is_none_or(|environment| &shared.environment == environment)
        && query
            .phases
            .as_ref()
            .is_none_or(|phases| phase.is_some_and(|p| phases.contains(&p)))
        && query
            .since_ms
            .is_none_or(|since| shared.created_at >= since)
}

/// A team run as `history` lists runs (driven elsewhere: no local owner).
fn as_run_record(shared: &SharedRun) -> RunRecord {
    RunRecord {
        id: shared.run.clone(),
        plan_name: shared.plan_name.clone(),
        environment: shared.environment.clone(),
        plan_file: shared.plan_file.clone(),
        plan_digest: shared.plan_digest.clone(),
        plan_source: shared.plan_source.clone(),
        initiator: shared.initiator.clone(),
        mode: RunMode::Apply,
        phase: RunPhase::parse(&shared.phase).unwrap_or(RunPhase::Progressing),
        created_at: shared.created_at,
        updated_at: shared.updated_at,
        owner_pid: None,
        owner_host: Some(shared.pc.clone()),
        heartbeat_at: None,
        kill_requested: false,
        rollback_incomplete: shared.rollback_incomplete,
        outcome: shared.outcome.clone(),
        rollback_scope: None,
        rollback_final: None,
        held: false,
        retry_of: None,
    }
}

/// A run another PC drives, as `approve` and `reject` see it: its record
/// and decisions in the team backend, where a verified decision is kept
/// for the driving PC to copy into its journal (within a second).
pub struct TeamLedger {
    runtime: tokio::runtime::Runtime,
    runs: Arc<dyn TeamRuns>,
}

impl TeamLedger {
    pub fn connect(backend: &deployctl_aws_audit::S3Location) -> Result<TeamLedger, u8> {
        let (runtime, _, runs) = connect(backend)?;
        Ok(TeamLedger { runtime, runs })
    }
}

impl deployctl_approvals::Ledger for TeamLedger {
    fn run(&self, run_id: &str) -> Result<RunRecord, String> {
        match self.runtime.block_on(self.runs.fetch(run_id)) {
            Ok(Some(shared)) => Ok(as_run_record(&shared)),
            Ok(None) => Err(format!(
                "no run {run_id} in this state directory or in the team backend"
            )),
            Err(error) => Err(error.to_string()),
        }
    }

    fn approvers(&self, run_id: &str, gate: &str) -> Result<Vec<String>, String> {
        let mut decisions = self
            .runtime
            .block_on(self.runs.decisions(run_id))
            .map_err(|error| error.to_string())?;
        decisions.retain(|d| d.gate == gate && d.rejected.is_none());
        decisions.sort_by_key(|d| d.at);
        Ok(decisions.into_iter().map(|d| d.user).collect())
    }

    fn record(
        &self,
        run_id: &str,
        gate: &str,
        user: &str,
        decision: &deployctl_approvals::Decision<'_>,
    ) -> Result<(), String> {
        let shared = SharedDecision {
            gate: gate.to_owned(),
            user: user.to_owned(),
            rejected: match decision {
                deployctl_approvals::Decision::Approve => None,
                deployctl_approvals::Decision::Reject { reason } => Some((*reason).to_owned()),
            },
            given_on: deployctl_engine::run::initiator(),
            at: deployctl_time::now_ms(),
        };
        match self.runtime.block_on(self.runs.decide(run_id, &shared)) {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "{user} already decided gate `{gate}` of run {run_id} (in the team backend)"
            )),
            Err(error) => Err(error.to_string()),
        }
    }
}
