//! `deployctl rehearse`: the real plan, every target replaced by a
//! simulator of its kind, failures injected on request, and a verdict on
//! whether promotion and each rollback path behaved as the plan says
//! (S4, S9: rehearsals double as incident drills and are kept in history).
//!
//! Time is simulated: the runtime's clock is paused and jumps ahead
//! whenever everything waits, so a plan with hour-long bakes rehearses in
//! seconds while its journal still records real timestamps.

use std::collections::BTreeMap;
use std::sync::Arc;

use deployctl_adapter::Target;
use deployctl_engine::event::Event;
use deployctl_engine::executor::{Engine, EngineError, EngineOptions, RunContext};
use deployctl_engine::journal::Journal;
use deployctl_engine::progress::ProgressSink;
use deployctl_engine::start::RunRequest;
use deployctl_engine::state::{RunMode, RunPhase, StagePhase};
use deployctl_plan::Loaded;
use deployctl_plan::model::{CanaryStep, RollbackTrigger, Strategy, ValidatedPlan};
use deployctl_sim::{ActionKind, ApiErrorKind, SimFaults};

use crate::engine_cmds::Options;
use crate::exit;
use crate::progress_view::{self, View};
use crate::wiring::{self, Mode};

/// `--fail STAGE[@STEP]` → faults for that stage's simulator.
fn faults_for(plan: &ValidatedPlan, spec: &str) -> Result<(String, SimFaults), String> {
    let (stage_name, step) = match spec.split_once('@') {
        Some((stage, step)) => (stage, Some(step)),
        None => (spec, None),
    };
    let stage = plan
        .stages
        .iter()
        .find(|stage| stage.name == stage_name)
        .ok_or_else(|| {
            let known: Vec<&str> = plan.stages.iter().map(|s| s.name.as_str()).collect();
            format!(
                "--fail {spec}: no stage `{stage_name}` in this plan (stages: {})",
                known.join(", ")
            )
        })?;
    let faults = SimFaults::none();
    let faults = match (step, &stage.strategy) {
        (Some("error"), _) => {
            faults.api_errors(Some(ActionKind::SetWeight), ApiErrorKind::Rejected, 1)
        }
        (None, Strategy::Waves(_)) => faults.device_failures(60.0),
        (None, _) => faults.unhealthy_from_weight(0),
        (Some(step), Strategy::Canary { steps, .. }) => {
            let n: usize = step
                .parse()
                .map_err(|_| format!("--fail {spec}: `{step}` is not a step number or `error`"))?;
            let weights: Vec<u8> = steps
                .iter()
                .filter_map(|step| match step {
                    CanaryStep::SetWeight(weight) => Some(*weight),
                    _ => None,
                })
                .collect();
            let weight = *weights.get(n.wrapping_sub(1)).ok_or_else(|| {
                format!(
                    "--fail {spec}: stage `{stage_name}` has {} traffic steps (setWeight), numbered from 1",
                    weights.len()
                )
            })?;
            faults.unhealthy_from_weight(weight.max(1))
        }
        (Some(_), Strategy::BlueGreen { .. }) => faults.unhealthy_after_promotion(),
        (Some(_), Strategy::Waves(_)) => faults.device_failures(60.0),
    };
    Ok((stage.name.clone(), faults))
}

pub fn rehearse(
    loaded: &Loaded,
    file: &str,
    fails: &[String],
    seed: u64,
    options: &Options<'_>,
) -> u8 {
    let plan = &loaded.plan;
    let mut faults = BTreeMap::new();
    for spec in fails {
        match faults_for(plan, spec) {
            Ok((stage, fault)) => {
                faults.insert(stage, fault);
            }
            Err(message) => {
                return crate::report::refused(message);
            }
        }
    }
    let simulators = wiring::rehearsal_targets(plan, &faults, seed);
    // Rehearsals are drills (S9): they are audited like real runs.
    let (journal, audit) = match crate::audited::open(options.state_dir) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let _seal = crate::audited::Seal(audit);
    let run_id = deployctl_engine::run::new_run_id();
    let initiator = deployctl_engine::run::initiator();
    let request = RunRequest {
        plan_file: file,
        plan_source: loaded.source.text.as_deref().unwrap_or_default(),
        initiator: &initiator,
        mode: RunMode::Rehearse,
    };
    let context = RunContext {
        run_id: run_id.clone(),
        plan: Arc::new(plan.clone()),
        targets: simulators
            .iter()
            .map(|(name, sim)| (name.clone(), sim.clone() as Arc<dyn Target>))
            .collect(),
        probes: Arc::new(wiring::Probes::rehearsal(simulators.clone())),
        notifications: wiring::notifications(plan, Mode::Rehearse).unwrap_or_default(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return crate::report::failed(format!("cannot start the async runtime: {error}"));
        }
    };
    if !options.json {
        eprintln!(
            "Rehearsing {} ({} stage{}) against simulators, run {run_id}{}",
            plan.metadata.name,
            plan.stages.len(),
            if plan.stages.len() == 1 { "" } else { "s" },
            if fails.is_empty() {
                String::new()
            } else {
                format!(", failing: {}", fails.join(", "))
            }
        );
    }
    let wall = std::time::Instant::now();
    let (outcome, simulated) = runtime.block_on(async {
        let started = tokio::time::Instant::now();
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let view = if options.json {
            View::Json
        } else {
            View::Lines
        };
        let renderer = tokio::spawn(progress_view::render(view, receiver));
        // Simulated days pass in seconds; polling the journal for kills
        // every simulated quarter second would be most of the real time.
        let options = EngineOptions {
            kill_poll: std::time::Duration::from_secs(60),
            poll: std::time::Duration::from_secs(10),
            ..EngineOptions::default()
        };
        let engine = Engine::new(journal.clone(), options, ProgressSink::new(sender));
        let approvers = tokio::spawn(simulated_approvers(journal.clone(), run_id.clone()));
        let outcome = async {
            engine.start(&context, &request).await?;
            engine.execute(&context).await
        }
        .await;
        approvers.abort();
        drop(engine);
        let _ = renderer.await;
        (outcome, started.elapsed())
    });
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(EngineError::Refused(refusal)) => {
            return crate::report::refused(format!("rehearsal {run_id}: {refusal}"));
        }
        Err(error) => {
            return crate::report::failed(format!("rehearsal {run_id}: {error}"));
        }
    };
    let verdict = runtime.block_on(judge(
        plan,
        &journal,
        &run_id,
        &faults,
        &simulators,
        outcome.phase,
    ));
    if options.json {
        outln!(
            "{}",
            serde_json::json!({"event": "rehearsalEnded", "run": run_id, "phase": outcome.phase.as_str(),
                "passed": verdict.iter().all(|(ok, _)| *ok),
                "checks": verdict.iter().map(|(ok, text)| serde_json::json!({"ok": ok, "check": text})).collect::<Vec<_>>()})
        );
    } else {
        eprintln!(
            "\nRehearsal {run_id}: {} in {} of simulated time ({:.2}s real)",
            outcome.phase.as_str(),
            // Whole milliseconds, as plans write durations (`2d10s`).
            deployctl_plan::duration::format_duration(std::time::Duration::from_millis(
                simulated.as_millis() as u64
            )),
            wall.elapsed().as_secs_f64()
        );
        for (ok, text) in &verdict {
            eprintln!("  {} {text}", if *ok { "ok  " } else { "FAIL" });
        }
    }
    if verdict.iter().all(|(ok, _)| *ok) {
        if !options.json {
            eprintln!("The plan behaved as it says.");
        }
        exit::OK
    } else {
        exit::FAILED
    }
}

/// Stands in for the approvers a real run would page: every approval a
/// stage asks for is granted by as many simulated approvers as it needs,
/// a simulated minute later. (Who may approve, with MFA, is checked for
/// real runs; a rehearsal exercises the plan, not the people.)
async fn simulated_approvers(journal: Arc<Journal>, run_id: String) {
    let mut granted = std::collections::BTreeSet::new();
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        let Ok(events) = journal.events(&run_id) else {
            continue;
        };
        for record in &events {
            let Event::ApprovalRequested {
                approval: name,
                required,
                ..
            } = &record.event
            else {
                continue;
            };
            if !granted.insert(name.to_string()) {
                continue;
            }
            for n in 1..=*required {
                let _ = journal.record_approval(&run_id, name, &format!("rehearsal-approver-{n}"));
            }
        }
    }
}

/// Checks the rehearsal's end against what the plan promises.
async fn judge(
    plan: &ValidatedPlan,
    journal: &Journal,
    run_id: &str,
    faults: &BTreeMap<String, SimFaults>,
    simulators: &BTreeMap<String, Arc<deployctl_sim::SimTarget>>,
    phase: RunPhase,
) -> Vec<(bool, String)> {
    let mut checks = Vec::new();
    let stages = journal.stages(run_id).unwrap_or_default();
    let expect_rollback = !faults.is_empty()
        && plan.rollback.automatic
        && plan
            .rollback
            .triggers
            .contains(&RollbackTrigger::GateFailed);
    if faults.is_empty() {
        checks.push((
            phase == RunPhase::Succeeded,
            format!(
                "with nothing failing the run succeeds (it ended {})",
                phase.as_str()
            ),
        ));
        for stage in &stages {
            let observed = simulators[&stage.target].observe().await.ok();
            // A fleet is released when every device took the update; a
            // service when the new version is the stable one.
            let on_new = observed.as_ref().is_some_and(|o| match &o.waves {
                Some(waves) if waves.dispatched > 0 => {
                    waves.succeeded == waves.fleet_size && !waves.halted
                }
                _ => o.stable.as_deref() == stage.new_version.as_deref() && o.candidate.is_none(),
            });
            checks.push((
                stage.phase == StagePhase::Succeeded && on_new,
                format!(
                    "stage {} promoted {} ({})",
                    stage.name,
                    stage.new_version.as_deref().unwrap_or("?"),
                    stage.phase.as_str()
                ),
            ));
        }
        return checks;
    }
    for name in faults.keys() {
        let stage = stages.iter().find(|s| &s.name == name);
        let caught = stage.is_some_and(|s| {
            matches!(
                s.phase,
                StagePhase::Failed | StagePhase::RolledBack | StagePhase::RollbackFailed
            ) && s.phase != StagePhase::Succeeded
        });
        checks.push((
            caught,
            if caught {
                format!("the failure injected into stage {name} was detected")
            } else {
                format!(
                    "the failure injected into stage {name} went unnoticed: no gate watches it, so it was promoted anyway"
                )
            },
        ));
    }
    if expect_rollback {
        checks.push((
            phase == RunPhase::RolledBack,
            format!("the run rolls back by itself (it ended {})", phase.as_str()),
        ));
        for stage in stages.iter().filter(|s| s.moved) {
            let observed = simulators[&stage.target].observe().await.ok();
            let on_stable = observed.as_ref().is_some_and(|o| {
                o.candidate.is_none()
                    && o.weight == 0
                    && o.stable.as_deref() == stage.stable_version.as_deref()
            });
            checks.push((
                stage.phase == StagePhase::RolledBack && on_stable,
                format!(
                    "stage {} is back on {} with all traffic ({})",
                    stage.name,
                    stage.stable_version.as_deref().unwrap_or("stable"),
                    stage.phase.as_str()
                ),
            ));
        }
        for stage in stages.iter().filter(|s| !s.moved) {
            checks.push((
                true,
                format!("stage {} never started, nothing to undo", stage.name),
            ));
        }
    } else {
        checks.push((
            phase == RunPhase::Failed,
            format!(
                "automatic rollback is off for failed gates, so the run stops for a human (it ended {})",
                phase.as_str()
            ),
        ));
    }
    checks
}
