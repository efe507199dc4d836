//! The commands that drive runs: `apply`, `resume`, `rollback`, `kill`,
//! `rehearse`, and the read-only `status` and `history`.
//!
//! Runbook commands (`rollback`, `kill`, `status`, `history`) need no plan
//! file: the journal holds the plan text each run executed. They are safe
//! to run twice: a second `rollback` finds nothing left to undo.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use deployctl_approvals::Refusal;
use deployctl_audit::{Action as AuditAction, Outcome, What};
use deployctl_engine::executor::{Engine, EngineError, EngineOptions, RunContext, RunOutcome};
use deployctl_engine::journal::{Journal, RunQuery, RunRecord, StopRequest};
use deployctl_engine::progress::ProgressSink;
use deployctl_engine::start::RunRequest;
use deployctl_engine::state::{RunMode, RunPhase};
use deployctl_engine::steering::Steered;
use deployctl_plan::Loaded;
use deployctl_plan::report::ImpactReport;

use crate::audited::{self, Seal};
use crate::exit;
use crate::progress_view::{self, View};
use crate::runs;
use crate::wiring::{self, Mode};

/// Shared options of the run commands.
pub struct Options<'a> {
    pub state_dir: &'a Path,
    /// The access file (S1: who may roll back or kill where).
    pub access: &'a Path,
    /// The team backend (`--backend`), whose locks every PC shares.
    pub backend: Option<&'a deployctl_aws_audit::S3Location>,
    pub json: bool,
    pub yes: bool,
    /// Set by `retry`: the run the new one starts again.
    pub retry_of: Option<&'a str>,
}

fn open_journal(state_dir: &Path) -> Result<Arc<Journal>, u8> {
    Journal::open(state_dir)
        .map(Arc::new)
        .map_err(crate::report::refused)
}

fn view(json: bool) -> View {
    if json {
        View::Json
    } else if std::io::stderr().is_terminal() {
        View::Bars
    } else {
        View::Lines
    }
}

/// Asks for confirmation on a terminal; never prompts otherwise.
pub(crate) fn confirm(question: &str, yes: bool) -> bool {
    if yes || !std::io::stdin().is_terminal() {
        return true;
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim(), "y" | "Y" | "yes" | "YES")
}

/// Drives `context` with progress shown, handling Ctrl-C: the run is left
/// resumable and the exit code is 130.
fn drive(
    journal: Arc<Journal>,
    json: bool,
    backend: Option<&deployctl_aws_audit::S3Location>,
    mut options: EngineOptions,
    work: impl for<'e> FnOnce(
        &'e Engine,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<RunOutcome, deployctl_engine::executor::EngineError>,
                > + 'e,
        >,
    >,
    run_id: &str,
) -> u8 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return crate::report::failed(format!("cannot start the async runtime: {error}"));
        }
    };
    runtime.block_on(async {
        options.team = match crate::team::engine_backend(backend).await {
            Ok(team) => team,
            Err(message) => return crate::report::refused(message),
        };
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let renderer = tokio::spawn(progress_view::render(view(json), receiver));
        let engine = Engine::new(journal, options, ProgressSink::new(sender));
        let outcome = tokio::select! {
            outcome = work(&engine) => Some(outcome),
            _ = tokio::signal::ctrl_c() => None,
        };
        drop(engine);
        let _ = renderer.await;
        match outcome {
            None => {
                eprintln!(
                    "\ninterrupted: run {run_id} is left as it was; continue with `deployctl resume {run_id}` or undo with `deployctl rollback {run_id}`"
                );
                exit::INTERRUPTED
            }
            Some(Err(EngineError::Refused(refusal))) => {
                crate::report::refused(refusal)
            }
            Some(Err(error)) => {
                crate::report::failed(format!("run {run_id}: {error}"))
            }
            Some(Ok(outcome)) => {
                report_outcome(run_id, &outcome, json);
                runs::exit_code(outcome.phase, outcome.rollback_incomplete)
            }
        }
    })
}

fn report_outcome(run_id: &str, outcome: &RunOutcome, json: bool) {
    if json {
        outln!(
            "{}",
            serde_json::json!({"event": "runEnded", "run": run_id, "phase": outcome.phase.as_str(),
                "rollbackIncomplete": outcome.rollback_incomplete, "message": outcome.message})
        );
    } else {
        eprintln!(
            "\nrun {run_id}: {} — {}",
            outcome.phase.as_str(),
            outcome.message
        );
    }
}

/// `deployctl retry RUN`: a rolled-back, failed, aborted or killed run
/// started again from the plan and digest recorded with it (not from the
/// file, which may have changed since), as a new run; the audit trail links
/// the two (`retry.requested` on the old run names the new one).
pub fn retry(run_id: &str, options: &Options<'_>) -> u8 {
    let journal = match open_journal(options.state_dir) {
        Ok(journal) => journal,
        Err(code) => return code,
    };
    let run = match find_run(&journal, Some(run_id)) {
        Ok(run) => run,
        Err(code) => return code,
    };
    if !run.phase.is_terminal() || run.rollback_incomplete {
        return crate::report::refused(format!(
            "run {} has not ended ({}{}); retry starts a finished run again — `deployctl status {}`",
            run.id,
            run.phase.as_str(),
            if run.rollback_incomplete {
                ", rollback incomplete"
            } else {
                ""
            },
            run.id
        ));
    }
    if run.phase == RunPhase::Succeeded {
        eprintln!("run {} succeeded; nothing to retry", run.id);
        return exit::OK;
    }
    let loaded = match deployctl_plan::load(&run.plan_file, run.plan_source.as_bytes()) {
        Ok(loaded) if loaded.plan.digest == run.plan_digest => loaded,
        Ok(_) => {
            return crate::report::refused(format!(
                "the plan recorded with run {} does not match its digest; not retried",
                run.id
            ));
        }
        Err(rejected) => {
            return crate::report::refused(format!(
                "the plan recorded with run {} no longer validates with this deployctl:\n{}",
                run.id,
                rejected.render(false)
            ));
        }
    };
    eprintln!(
        "Retrying run {} ({}, {}) from its recorded plan {} (sha256 {}).",
        run.id,
        run.plan_name,
        run.phase.as_str(),
        run.plan_file,
        &run.plan_digest[..12.min(run.plan_digest.len())]
    );
    let retried = Options {
        retry_of: Some(&run.id),
        ..*options
    };
    apply(&loaded, &run.plan_file, &retried)
}

/// `deployctl apply FILE|SAVED`.
pub fn apply(loaded: &Loaded, plan_file: &str, options: &Options<'_>) -> u8 {
    let (journal, audit) = match crate::audited::open(options.state_dir) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    if let Err(code) = audited::shipped(&audit.log) {
        return code;
    }
    let _seal = Seal(audit.clone());
    if let Ok(Some(unfinished)) = journal.latest_unfinished()
        && runs::is_interrupted(&unfinished)
    {
        eprintln!(
            "note: run {} ({}) was interrupted; `deployctl resume {}` continues it, `deployctl rollback {}` undoes it",
            unfinished.id, unfinished.plan_name, unfinished.id, unfinished.id
        );
    }
    let targets = match wiring::targets(
        &loaded.plan,
        Path::new(plan_file),
        Mode::Apply,
        options.state_dir,
    ) {
        Ok(targets) => targets,
        Err(message) => {
            return crate::report::refused(message);
        }
    };
    let notifications = match wiring::notifications(&loaded.plan, Mode::Apply) {
        Ok(notifications) => notifications,
        Err(message) => {
            return crate::report::refused(message);
        }
    };
    // Every audit record of the run names the AWS caller (issue 5); bad
    // credentials stop the release here, before anything moved.
    if let Err(message) = wiring::resolve_aws_caller(&loaded.plan, &audit.caller) {
        return crate::report::refused(format!("{message}. Nothing was changed."));
    }
    if !options.json {
        eprint!("{}", ImpactReport::new(&loaded.plan).render_release());
    }
    if !confirm("Apply this plan?", options.yes) {
        eprintln!("Not applied.");
        return exit::FAILED;
    }
    let run_id = deployctl_engine::run::new_run_id();
    if let Some(old) = options.retry_of {
        let initiator = deployctl_engine::run::initiator();
        crate::audited::record(
            &audit,
            deployctl_approvals::initiator_user(&initiator),
            What::new(AuditAction::RetryRequested)
                .run(old)
                .detail(format!("retried as run {run_id}")),
            Outcome::ok(),
        );
        eprintln!("Run {run_id} retries run {old}.");
    }
    let source = loaded.source.text.clone().unwrap_or_default();
    let initiator = deployctl_engine::run::initiator();
    let plan_file = plan_file.to_string();
    let json = options.json;
    let retry_of = options.retry_of.map(str::to_string);
    let link_journal = journal.clone();
    let context = RunContext {
        run_id: run_id.clone(),
        plan: Arc::new(loaded.plan.clone()),
        targets,
        probes: Arc::new(wiring::Probes::for_mode(Mode::Apply)),
        notifications,
    };
    drive(
        journal,
        options.json,
        options.backend,
        EngineOptions::default(),
        move |engine| {
            Box::pin(async move {
                let request = RunRequest {
                    plan_file: &plan_file,
                    plan_source: &source,
                    initiator: &initiator,
                    mode: RunMode::Apply,
                };
                // Preflight, capabilities and locks: a refusal records no
                // run (it is audited here) and exits 2.
                if let Err(error) = engine.start(&context, &request).await {
                    if let EngineError::Refused(refusal) = &error {
                        audit_refusal(&audit, &initiator, &context, refusal);
                    }
                    return Err(error);
                }
                if let Some(old) = &retry_of
                    && let Err(error) = link_journal.link_retry(&context.run_id, old)
                {
                    // The trail's `retry.requested` still names both.
                    eprintln!(
                        "warning: run {} is not linked to run {old} in the journal: {error}",
                        context.run_id
                    );
                }
                if !json {
                    eprintln!("Run {} started.", context.run_id);
                }
                engine.execute(&context).await
            })
        },
        &run_id,
    )
}

pub(crate) use deployctl_trail::audit_refusal;

/// Rebuilds a run's context from the journal alone.
pub(crate) fn context_from_journal(
    run: &RunRecord,
    state_dir: &Path,
    caller: &deployctl_trail::Caller,
) -> Result<RunContext, String> {
    let loaded =
        deployctl_plan::load(&run.plan_file, run.plan_source.as_bytes()).map_err(|rejected| {
            format!(
                "the plan recorded for run {} no longer validates:\n{}",
                run.id,
                rejected.render(false)
            )
        })?;
    let mode = match run.mode {
        RunMode::Rehearse => Mode::Rehearse,
        RunMode::Apply => Mode::Apply,
    };
    let targets = wiring::targets(&loaded.plan, Path::new(&run.plan_file), mode, state_dir)?;
    let notifications = wiring::notifications(&loaded.plan, mode)?;
    // Undoing a release never waits on an identity lookup's success: the
    // records then name the local operator only.
    if mode == Mode::Apply
        && let Err(message) = wiring::resolve_aws_caller(&loaded.plan, caller)
    {
        eprintln!("warning: {message}; audit records of this command name no AWS caller");
    }
    Ok(RunContext {
        run_id: run.id.clone(),
        plan: Arc::new(loaded.plan),
        targets,
        probes: Arc::new(wiring::Probes::for_mode(mode)),
        notifications,
    })
}

fn find_run(journal: &Journal, run: Option<&str>) -> Result<RunRecord, u8> {
    let found = match run {
        Some(id) => journal.run(id).map(Some),
        None => journal.runs(None, 1).map(|mut runs| runs.pop()),
    };
    match found {
        Ok(Some(run)) => Ok(run),
        Ok(None) => {
            eprintln!("no runs yet in this state directory");
            Err(exit::INVALID_INPUT)
        }
        Err(error) => Err(crate::report::refused(error)),
    }
}

/// The journal and trail opened for a command on one run (sealed when the
/// returned [`Seal`] drops), and that run.
fn open_run(
    run_id: &str,
    options: &Options<'_>,
) -> Result<(Arc<Journal>, deployctl_trail::Trail, Seal, RunRecord), u8> {
    let (journal, audit) = crate::audited::open(options.state_dir)?;
    let seal = Seal(audit.clone());
    let run = find_run(&journal, Some(run_id))?;
    Ok((journal, audit, seal, run))
}

/// `deployctl resume RUN`.
pub fn resume(run_id: &str, options: &Options<'_>) -> u8 {
    let (journal, audit, _seal, run) = match open_run(run_id, options) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    if runs::owner_alive(&run) && !run.phase.is_terminal() {
        return crate::report::refused(format!(
            "run {} is being driven by process {} on {}; it does not need resuming",
            run.id,
            run.owner_pid.unwrap_or_default(),
            run.owner_host.as_deref().unwrap_or("?")
        ));
    }
    if run.phase.is_terminal() && !run.rollback_incomplete {
        eprintln!("run {} already ended: {}", run.id, run.phase.as_str());
        return runs::exit_code(run.phase, false);
    }
    // With a team backend a resume takes the run's locks again: only an
    // operator, under one of their AWS identities, may.
    if options.backend.is_some()
        && let Err(code) = crate::access::check_operator(
            deployctl_policy::Action::Apply,
            &run.environment,
            options.access,
            options.state_dir,
            options.backend,
        )
    {
        return code;
    }
    let context = match context_from_journal(&run, options.state_dir, &audit.caller) {
        Ok(context) => context,
        Err(message) => {
            return crate::report::failed(message);
        }
    };
    if !options.json {
        eprintln!("Resuming run {} from its journal.", run.id);
    }
    drive(
        journal,
        options.json,
        options.backend,
        EngineOptions::default(),
        move |engine| Box::pin(async move { engine.execute(&context).await }),
        run_id,
    )
}

/// `deployctl rollback RUN|--target NAME`.
pub fn rollback(run: Option<&str>, target: Option<&str>, options: &Options<'_>) -> u8 {
    // Said before anything is opened: with neither, the person in an
    // incident learns both ways to name what to undo.
    let by_target = match (run, target) {
        (Some(_), _) => None,
        (None, Some(target)) => Some(target),
        (None, None) => {
            return crate::report::refused(
                "name the run to roll back (`deployctl rollback RUN`; `deployctl history` lists runs), or `--target NAME` for the newest run that moved that target",
            );
        }
    };
    if let Some(code) =
        run.and_then(|run| crate::team_runs::stop_elsewhere(run, StopRequest::Rollback, options))
    {
        return code;
    }
    let (journal, audit) = match crate::audited::open(options.state_dir) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let _seal = Seal(audit.clone());
    let record = match by_target {
        None => find_run(&journal, run),
        Some(target) => match journal.runs(Some(target), 1) {
            Ok(mut runs) => runs.pop().ok_or_else(|| {
                eprintln!("no run has moved target `{target}`");
                exit::INVALID_INPUT
            }),
            Err(error) => Err(crate::report::refused(error)),
        },
    };
    let record = match record {
        Ok(record) => record,
        Err(code) => return code,
    };
    if let Err(code) = crate::access::check_operator(
        deployctl_policy::Action::Rollback,
        &record.environment,
        options.access,
        options.state_dir,
        options.backend,
    ) {
        return code;
    }
    if runs::owner_alive(&record) && !record.phase.is_terminal() {
        // Another process drives it: ask it to stop and roll back, the
        // same path as `kill`, so two processes never move one target;
        // recorded as the rollback it is.
        return stop(&record.id, StopRequest::Rollback, options);
    }
    if matches!(
        record.phase,
        RunPhase::RolledBack | RunPhase::Killed | RunPhase::Aborted
    ) && !record.rollback_incomplete
    {
        eprintln!(
            "run {} is already rolled back ({}); nothing to do",
            record.id,
            record.phase.as_str()
        );
        print_changes(&journal, &record.id);
        return exit::OK;
    }
    let context = match context_from_journal(&record, options.state_dir, &audit.caller) {
        Ok(context) => context,
        Err(message) => {
            return crate::report::failed(message);
        }
    };
    if !confirm(
        &format!("Roll back every stage of run {} that moved?", record.id),
        options.yes,
    ) {
        return exit::FAILED;
    }
    let run_id = record.id.clone();
    let code = drive(
        journal.clone(),
        options.json,
        options.backend,
        EngineOptions::default(),
        move |engine| {
            Box::pin(async move {
                engine
                    .rollback(&context, "rolled back by `deployctl rollback`")
                    .await
            })
        },
        &run_id,
    );
    if !options.json {
        print_changes(&journal, &run_id);
    }
    // A completed rollback is what the operator asked for.
    if code == exit::FAILED { exit::OK } else { code }
}

/// Lists what each stage now runs, after a rollback or kill.
fn print_changes(journal: &Journal, run_id: &str) {
    if let Ok(stages) = journal.stages(run_id) {
        for stage in stages {
            eprintln!(
                "  {}: {} (all traffic on {})",
                stage.name,
                stage.phase.as_str(),
                stage.stable_version.as_deref().unwrap_or("stable")
            );
        }
    }
}

/// `deployctl kill RUN`: stop now and roll back.
pub fn kill(run_id: &str, options: &Options<'_>) -> u8 {
    stop(run_id, StopRequest::Kill, options)
}

/// `deployctl kill --fleet GROUP`: the runbook's emergency stop. Every
/// run in flight with a stage whose platform identity is the thing group
/// (or includes it) gets a kill request at once, before any is waited
/// on; then each is seen to its end as `kill RUN` does.
pub fn kill_fleet(group: &str, options: &Options<'_>) -> u8 {
    let journal = match open_journal(options.state_dir) {
        Ok(journal) => journal,
        Err(code) => return code,
    };
    let live = RunPhase::ALL
        .iter()
        .copied()
        .filter(|p| !p.is_terminal())
        .collect();
    let runs = match journal.runs_matching(&RunQuery {
        phases: Some(live),
        limit: u32::MAX,
        ..Default::default()
    }) {
        Ok(runs) => runs,
        Err(error) => return crate::report::failed(error),
    };
    let mut touching = Vec::new();
    for run in runs {
        let stages = match journal.stages(&run.id) {
            Ok(stages) => stages,
            Err(error) => return crate::report::failed(error),
        };
        if stages
            .iter()
            .any(|stage| crate::fleet_cmds::updates_group(&stage.target_key, group))
        {
            touching.push(run.id);
        }
    }
    if touching.is_empty() {
        return crate::report::refused(format!(
            "no run in flight updates thing group {group}; `deployctl history` lists the runs"
        ));
    }
    eprintln!(
        "Killing {} run{} updating thing group {group}: {}",
        touching.len(),
        if touching.len() == 1 { "" } else { "s" },
        touching.join(", ")
    );
    // Dispatch stops as soon as each driver sees its request: ask all first.
    for run in &touching {
        if let Err(error) = journal.request_stop(run, StopRequest::Kill) {
            return crate::report::failed(error);
        }
    }
    touching
        .iter()
        .map(|run| kill(run, options))
        .max()
        .unwrap_or(exit::OK)
}

/// `deployctl abort RUN`: traffic back to stable and the run left Aborted
/// for someone to look at (or retry), not Killed: `kill` is the emergency
/// path, `abort` the considered one. Works on a run another process drives.
pub fn abort(run_id: &str, options: &Options<'_>) -> u8 {
    stop(run_id, StopRequest::Abort, options)
}

pub use deployctl_engine::steering::Steer;

/// Who approves `promote --full` in a protected environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct FullApproval<'a> {
    pub approver: Option<&'a str>,
    pub code: Option<&'a str>,
}

/// `deployctl pause RUN` holds a run where it stands (each stage stops
/// before its next step, and a pause goes on past its end; gates keep
/// watching); `deployctl promote RUN` ends the pause each stage is in now
/// and releases a hold. Both work on a run another process drives (the
/// request is journaled, as `kill`'s is), are audited, and are safe to
/// repeat: a second `pause`, or a `promote` with nothing to promote, says
/// so and changes nothing.
pub fn steer(run_id: &str, verb: Steer, approval: &FullApproval<'_>, options: &Options<'_>) -> u8 {
    let (journal, audit, _seal, run) = match open_run(run_id, options) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let name = verb.verb();
    if run.phase.is_terminal() {
        eprintln!(
            "run {} already ended ({}); nothing to {name}",
            run.id,
            run.phase.as_str()
        );
        return exit::OK;
    }
    if let Err(code) = crate::access::check_operator(
        deployctl_policy::Action::Steer,
        &run.environment,
        options.access,
        options.state_dir,
        options.backend,
    ) {
        return code;
    }
    let initiator = deployctl_engine::run::initiator();
    let user = deployctl_approvals::initiator_user(&initiator);
    // A full promotion in a protected environment: another person's
    // approval, verified when it is about to be journaled.
    let mut approved_by = None;
    let mut failed = false;
    let confirm = || {
        let request = deployctl_approvals::FullPromotion {
            run: &run,
            requester: user,
            approver: approval.approver,
        };
        let code = || {
            let approver = approval.approver.unwrap_or_default();
            crate::approval_cmds::code_or_prompt(approval.code, approver)
                .map_err(|_| Refusal::Denied("no one-time code (`--code`)".into()))
        };
        let around = crate::approval_cmds::Around {
            state_dir: options.state_dir,
            backend: options.backend,
        };
        match deployctl_approvals::check_full_promotion(
            &audit,
            &request,
            code,
            options.access,
            &around,
        ) {
            Ok(approver) => {
                approved_by = approver;
                Ok(())
            }
            Err(refusal) => {
                failed = matches!(refusal, Refusal::Failed(_));
                Err(refusal.to_string())
            }
        }
    };
    let said = match deployctl_engine::steering::request(&journal, &run, verb, confirm) {
        Ok(Steered::Done { held }) => deployctl_engine::steering::said(&run.id, verb, held),
        Ok(Steered::NothingToDo(why)) => {
            eprintln!("{why}");
            return exit::OK;
        }
        Ok(Steered::Refused(why)) if failed => return crate::report::failed(why),
        Ok(Steered::Refused(why)) => return crate::report::refused(why),
        Err(error) => return crate::report::failed(error),
    };
    let action = match verb {
        Steer::Pause => AuditAction::PauseRequested,
        Steer::Promote | Steer::PromoteFull => AuditAction::PromoteRequested,
    };
    let mut what = What::new(action).run(&run.id);
    if verb == Steer::PromoteFull {
        what = what.detail("full promotion: the remaining steps are skipped");
    }
    if let Some(approver) = &approved_by {
        what = what.approver(approver);
        eprintln!("{approver}'s approval of the full promotion verified.");
    }
    crate::audited::record(&audit, user, what, Outcome::ok());
    eprintln!("{said}");
    if !runs::owner_alive(&run) {
        eprintln!(
            "No process drives run {} now: the request takes effect when it is resumed (`deployctl resume {}`).",
            run.id, run.id
        );
    }
    exit::OK
}

/// Stops a run and rolls it back, `request` saying who asked (`kill`, or
/// `rollback` of a run another process drives).
fn stop(run_id: &str, request: StopRequest, options: &Options<'_>) -> u8 {
    if let Some(code) = crate::team_runs::stop_elsewhere(run_id, request, options) {
        return code;
    }
    let (journal, audit, _seal, run) = match open_run(run_id, options) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    if run.phase.is_terminal() && !run.rollback_incomplete {
        eprintln!(
            "run {} already ended ({}); to undo a finished release use `deployctl rollback {}`",
            run.id,
            run.phase.as_str(),
            run.id
        );
        return exit::OK;
    }
    let action = match request {
        StopRequest::Rollback | StopRequest::Abort => deployctl_policy::Action::Rollback,
        _ => deployctl_policy::Action::Kill,
    };
    if let Err(code) = crate::access::check_operator(
        action,
        &run.environment,
        options.access,
        options.state_dir,
        options.backend,
    ) {
        return code;
    }
    if let Err(error) = journal.request_stop(&run.id, request) {
        return crate::report::failed(error);
    }
    if runs::owner_alive(&run) {
        eprintln!(
            "{} requested; process {} is rolling run {} back…",
            match request {
                StopRequest::Rollback => "Rollback",
                StopRequest::Abort => "Abort",
                _ => "Kill",
            },
            run.owner_pid.unwrap_or_default(),
            run.id
        );
        // The owner polls every 250 ms; give its rollback time to finish.
        let deadline = std::time::Instant::now() + Duration::from_secs(600);
        while std::time::Instant::now() < deadline {
            match journal.run(&run.id) {
                Ok(now) if now.phase.is_terminal() => {
                    eprintln!("run {}: {}", now.id, now.phase.as_str());
                    print_changes(&journal, &now.id);
                    return if now.rollback_incomplete {
                        exit::ROLLBACK_INCOMPLETE
                    } else {
                        exit::OK
                    };
                }
                Ok(now) if !runs::owner_alive(&now) => break,
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
    // Nobody is driving the run (or its driver died): roll back here.
    let context = match context_from_journal(&run, options.state_dir, &audit.caller) {
        Ok(context) => context,
        Err(message) => {
            return crate::report::failed(message);
        }
    };
    let code = drive(
        journal.clone(),
        options.json,
        options.backend,
        EngineOptions::default(),
        move |engine| Box::pin(async move { engine.execute(&context).await }),
        run_id,
    );
    print_changes(&journal, run_id);
    if code == exit::FAILED { exit::OK } else { code }
}

/// `deployctl status [RUN]`.
pub fn status(run: Option<&str>, watch: bool, options: &Options<'_>) -> u8 {
    if let Some(code) = run.and_then(|run| crate::team_runs::status_elsewhere(run, options)) {
        return code;
    }
    let journal = match open_journal(options.state_dir) {
        Ok(journal) => journal,
        Err(code) => return code,
    };
    // On a terminal, `--watch` redraws in place; into a pipe or a file it
    // appends one report after the other, as logs want.
    let redraw = watch && !options.json && std::io::stdout().is_terminal();
    loop {
        let record = match find_run(&journal, run) {
            Ok(record) => record,
            Err(code) => return code,
        };
        let stages = journal.stages(&record.id).unwrap_or_default();
        let retries = journal.retries_of(&record.id).unwrap_or_default();
        let now = crate::run_now::stages_now(
            &record,
            &stages,
            &journal,
            options.access,
            deployctl_time::now_ms(),
        );
        if options.json {
            // A journal event this build cannot read is said, not hidden.
            let events = match journal.events(&record.id) {
                Ok(events) => events,
                Err(error) => {
                    return crate::report::refused(error);
                }
            };
            outln!(
                "{}",
                serde_json::to_string_pretty(&runs::status_json(
                    &record, &stages, &events, &now, &retries
                ))
                .unwrap_or_default()
            );
        } else {
            if redraw {
                // Home and clear: each refresh replaces the last one.
                out!("\x1b[H\x1b[2J");
            }
            out!("{}", runs::status_text(&record, &stages, &now, &retries));
        }
        if !watch || record.phase.is_terminal() {
            return runs::exit_code(record.phase, record.rollback_incomplete);
        }
        std::thread::sleep(Duration::from_secs(1));
        if !options.json && !redraw {
            outln!();
        }
    }
}

/// `history`'s filters as typed.
pub struct HistoryFilters<'a> {
    pub target: Option<&'a str>,
    pub limit: u32,
    pub phase: Option<&'a str>,
    pub environment: Option<&'a str>,
    pub since: Option<&'a str>,
}

impl HistoryFilters<'_> {
    /// The journal query, or what is wrong with a filter.
    fn query(&self, now_ms: i64) -> Result<RunQuery, String> {
        let phases = match self.phase {
            None => None,
            Some(list) => Some(
                list.split(',')
                    .map(str::trim)
                    .filter(|name| !name.is_empty())
                    .map(parse_phase)
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let since_ms = match self.since {
            None => None,
            Some(when) => Some(parse_since(when, now_ms)?),
        };
        Ok(RunQuery {
            target: self.target.map(str::to_string),
            environment: self.environment.map(str::to_string),
            phases,
            since_ms,
            limit: self.limit,
        })
    }
}

/// A phase as people type it: `rolledback`, `Rolled-Back`, `ROLLED_BACK`.
fn parse_phase(text: &str) -> Result<RunPhase, String> {
    let folded = |name: &str| -> String {
        name.chars()
            .filter(|c| *c != '-' && *c != '_')
            .flat_map(char::to_lowercase)
            .collect()
    };
    RunPhase::ALL
        .into_iter()
        .find(|phase| folded(phase.as_str()) == folded(text))
        .ok_or_else(|| {
            let known: Vec<&str> = RunPhase::ALL.iter().map(|p| p.as_str()).collect();
            format!(
                "--phase: unknown phase `{text}`; phases are {}",
                known.join(", ")
            )
        })
}

/// `--since`: a time or date, or a span back from now (`90m`, `2h`, `7d`).
fn parse_since(text: &str, now_ms: i64) -> Result<i64, String> {
    if let Some(at) = deployctl_time::parse(text) {
        return Ok(at);
    }
    match deployctl_plan::duration::parse_duration(text) {
        Ok(span) => Ok(now_ms.saturating_sub(i64::try_from(span.as_millis()).unwrap_or(i64::MAX))),
        Err(_) => Err(format!(
            "--since: `{text}` is neither a time (2026-11-24T09:00:00Z, 2026-11-24) nor a span back from now (2h, 7d)"
        )),
    }
}

/// `deployctl history [--target NAME] [--limit N] [--phase …] [--environment …] [--since …]`.
pub fn history(filters: &HistoryFilters<'_>, options: &Options<'_>) -> u8 {
    let query = match filters.query(deployctl_time::now_ms()) {
        Ok(query) => query,
        Err(message) => return crate::report::refused(message),
    };
    let journal = match open_journal(options.state_dir) {
        Ok(journal) => journal,
        Err(code) => return code,
    };
    match journal.runs_matching(&query) {
        Ok(runs) => {
            let runs = crate::team_runs::with_team_runs(runs, &query, options);
            if options.json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&runs::history_json(&runs)).unwrap_or_default()
                );
            } else {
                out!("{}", runs::history_text(&runs));
            }
            exit::OK
        }
        Err(error) => crate::report::failed(error),
    }
}
