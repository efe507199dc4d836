//! Crash safety, as the spec requires it: `deployctl apply` SIGKILLed at
//! any moment, then continued with `deployctl resume` (or undone with the
//! runbook's `deployctl rollback`), always ends in a finished run whose
//! journal is consistent, whose targets match what the run says, and in
//! which no logical call changed a target twice.
//!
//! The loop kills real processes at pseudo-random moments spread over a
//! whole run, so its iterations land between many different journal
//! writes (before the run exists, mid-call, mid-pause, mid-gate, after the
//! end). The tests after it pin crash moments the loop only hits by chance.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use deployctl_engine::clock::now_ms;
use deployctl_engine::program::{self, Op};
use deployctl_engine::state::{RunPhase, StagePhase};
use deployctl_plan::ValidatedPlan;
use deployctl_plan::model::{Strategy, TargetSpec};

use crate::repo_root;
use crate::sandbox::{Sandbox, started_run_id, wait_until};

/// Five sim stages (two canaries and a blue-green feeding a canary and a
/// blue-green); a little over a second per run.
const PLAN: &str = "tests/fixtures/plans/valid/crash-multi-stage.yaml";
/// One canary ending in a bake at full weight under a background gate.
const BAKE_PLAN: &str = "tests/fixtures/plans/valid/crash-final-bake.yaml";
/// `front` after `back`, rollback scope `stage`, `front` slow to answer.
const SCOPE_PLAN: &str = "tests/fixtures/plans/valid/crash-stage-scope.yaml";

/// Kill-then-resume iterations, and kill-then-rollback iterations.
const RESUME_ITERATIONS: u32 = 50;
const ROLLBACK_ITERATIONS: u32 = 30;

fn load(path: &str) -> ValidatedPlan {
    let bytes = std::fs::read(repo_root().join(path)).expect("plan fixture");
    deployctl_plan::load(path, &bytes)
        .unwrap_or_else(|rejected| panic!("{}", rejected.render(false)))
        .plan
}

/// What the plan says about one stage: the versions its target must end on.
struct StageFacts {
    name: String,
    target: String,
    stable: String,
    new: String,
    blue_green: bool,
}

fn facts(plan: &ValidatedPlan) -> Vec<StageFacts> {
    plan.stages
        .iter()
        .map(|stage| {
            let target = plan.target_of(stage);
            let TargetSpec::Sim(sim) = &target.spec else {
                panic!("the crash plans use sim targets only");
            };
            StageFacts {
                name: stage.name.clone(),
                target: target.name.clone(),
                stable: sim.stable_version.clone(),
                new: target.artifact.as_ref().expect("artifact").version.clone(),
                blue_green: matches!(stage.strategy, Strategy::BlueGreen { .. }),
            }
        })
        .collect()
}

/// xorshift64: deterministic kill moments, reproducible from the
/// iteration number alone.
struct XorShift(u64);

impl XorShift {
    fn seeded(seed: u64) -> XorShift {
        // Never zero (xorshift's fixed point), and different seeds spread.
        XorShift((0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0xBF58_476D_1CE4_E5B9)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Where a kill landed, judged from the journal right after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillPoint {
    /// No run in the journal yet.
    BeforeRun,
    Forward,
    Rollback,
    AfterEnd,
}

fn kill_point(sandbox: &Sandbox, run: Option<&str>) -> KillPoint {
    let Some(run) = run else {
        return KillPoint::BeforeRun;
    };
    match sandbox.journal().run(run).expect("run").phase {
        RunPhase::Pending | RunPhase::Progressing | RunPhase::Paused => KillPoint::Forward,
        RunPhase::RollingBack => KillPoint::Rollback,
        RunPhase::Succeeded
        | RunPhase::RolledBack
        | RunPhase::Failed
        | RunPhase::Killed
        | RunPhase::Aborted => KillPoint::AfterEnd,
    }
}

/// The newest run, if the killed process got as far as creating one.
fn newest_run(sandbox: &Sandbox) -> Option<String> {
    if !sandbox.state_dir().join("journal.sqlite3").exists() {
        return None;
    }
    sandbox.run_ids().into_iter().next()
}

/// Checks a finished run against every crash-safety invariant; returns the
/// run's phase and the violations found (empty when all hold).
fn check_run(sandbox: &Sandbox, facts: &[StageFacts], run: &str) -> (String, Vec<String>) {
    let mut problems = Vec::new();
    let status = sandbox.status(Some(run));
    let phase = status["phase"].as_str().unwrap_or("?").to_string();
    if status["rollbackIncomplete"] != false || status["interrupted"] != false {
        problems.push(format!(
            "run left rollbackIncomplete={} interrupted={}",
            status["rollbackIncomplete"], status["interrupted"]
        ));
    }
    let journal = sandbox.journal();
    if let Err(error) = journal.check_consistency(run) {
        problems.push(format!("journal inconsistent: {error}"));
    }
    let stages = journal.stages(run).expect("stages");
    let calls = journal.calls(run).expect("calls");
    let stage_phase = |name: &str| {
        stages
            .iter()
            .find(|stage| stage.name == name)
            .map(|stage| stage.phase)
    };

    // Calls. A call left in `intent` is one whose outcome was never
    // recorded. After a successful resume there must be none: the resumed
    // stage re-issues the call at its cursor under the same idempotency key,
    // which turns that intent into `done`. After a rollback one may
    // legitimately remain: a forward call cut short by the kill is never
    // re-issued, because the rollback that supersedes it puts the target
    // back on stable whether or not that call took effect; so it is
    // allowed exactly when its stage was rolled back. The rollback's own
    // calls must all be done.
    for call in &calls {
        let allowed = match (phase.as_str(), call.state.as_str()) {
            (_, "done") => true,
            ("RolledBack", "intent") => {
                !call.key.ends_with("/rollback")
                    && stage_phase(&call.stage) == Some(StagePhase::RolledBack)
            }
            _ => false,
        };
        if !allowed {
            problems.push(format!(
                "call {} ({}) is `{}` in a {phase} run (its stage: {:?})",
                call.key,
                call.action,
                call.state,
                stage_phase(&call.stage)
            ));
        }
    }
    let call_keys: BTreeSet<&str> = calls.iter().map(|call| call.key.as_str()).collect();

    for fact in facts {
        let Some(stage) = stages.iter().find(|stage| stage.name == fact.name) else {
            problems.push(format!("stage {} missing from the journal", fact.name));
            continue;
        };
        let state = sandbox.sim(&fact.target);
        if let Some(state) = &state {
            let twice = state.effects.keys_applied_twice();
            if !twice.is_empty() {
                problems.push(format!(
                    "target {}: idempotency keys applied twice: {twice:?}",
                    fact.target
                ));
            }
            // The journal's promise: an intent is on disk before the call.
            for effect in state.effects.iter() {
                if !call_keys.contains(effect.key.0.as_str()) {
                    problems.push(format!(
                        "target {}: effect {} ({}) has no journaled call",
                        fact.target, effect.key.0, effect.action
                    ));
                }
            }
        }
        let on = |state: &Option<deployctl_sim::SimState>| {
            state.as_ref().map_or_else(
                || format!("{} (untouched)", fact.stable),
                |s| {
                    format!(
                        "stable {} candidate {:?} weight {} previous {:?}",
                        s.stable, s.candidate, s.weight, s.previous
                    )
                },
            )
        };
        match phase.as_str() {
            "Succeeded" => {
                let promoted = state.as_ref().is_some_and(|s| {
                    s.stable == fact.new
                        && s.candidate.is_none()
                        && s.weight == 0
                        && (!fact.blue_green || s.previous.is_none())
                });
                if !promoted {
                    problems.push(format!(
                        "succeeded, but target {} is on {} instead of {} alone{}",
                        fact.target,
                        on(&state),
                        fact.new,
                        if fact.blue_green {
                            " (blue retired)"
                        } else {
                            ""
                        }
                    ));
                }
                if stage.phase != StagePhase::Succeeded || stage.weight != 100 {
                    problems.push(format!(
                        "succeeded, but stage {} is {} at {}%",
                        fact.name,
                        stage.phase.as_str(),
                        stage.weight
                    ));
                }
            }
            "RolledBack" => {
                let on_stable = state.as_ref().is_none_or(|s| {
                    s.stable == fact.stable && s.candidate.is_none() && s.weight == 0
                });
                if !on_stable {
                    problems.push(format!(
                        "rolled back, but target {} is on {} instead of {}",
                        fact.target,
                        on(&state),
                        fact.stable
                    ));
                }
                // Every stage ends rolled back (it moved) or skipped (it
                // never did); nothing may read as still in progress.
                let settled = match stage.phase {
                    StagePhase::RolledBack => stage.moved,
                    StagePhase::Skipped => !stage.moved,
                    _ => false,
                };
                if !settled {
                    problems.push(format!(
                        "rolled back, but stage {} is {} (moved: {})",
                        fact.name,
                        stage.phase.as_str(),
                        stage.moved
                    ));
                }
                if stage.phase == StagePhase::Skipped
                    && state.as_ref().is_some_and(|s| !s.effects.is_empty())
                {
                    problems.push(format!(
                        "stage {} is skipped but its target was changed",
                        fact.name
                    ));
                }
            }
            other => problems.push(format!("run ended {other}, not Succeeded or RolledBack")),
        }
    }
    (phase, problems)
}

/// The exit code the README promises for a run that ended in `phase`.
fn code_for(phase: &str) -> i32 {
    match phase {
        "Succeeded" => 0,
        _ => 1,
    }
}

/// What the loop saw, for the summary line.
#[derive(Default)]
struct Tally {
    apply_kills: [u32; 4],
    rollback_kills: [u32; 4],
    /// Interrupted rollbacks finished by `resume` (the rest: `rollback`).
    rollbacks_resumed: u32,
    succeeded: u32,
    rolled_back: u32,
    /// Resumed runs that rolled back although nothing was unhealthy, with
    /// the reason the engine gave (see the bake test below).
    healthy_rolled_back: Vec<String>,
    violations: Vec<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        for i in 0..4 {
            self.apply_kills[i] += other.apply_kills[i];
            self.rollback_kills[i] += other.rollback_kills[i];
        }
        self.rollbacks_resumed += other.rollbacks_resumed;
        self.succeeded += other.succeeded;
        self.rolled_back += other.rolled_back;
        self.healthy_rolled_back.extend(other.healthy_rolled_back);
        self.violations.extend(other.violations);
    }

    fn count(kills: &mut [u32; 4], point: KillPoint) {
        kills[point as usize] += 1;
    }
}

/// Where the end of a killed iteration came from, for messages.
fn describe(variant: &str, iteration: u32, delay: Duration, point: KillPoint) -> String {
    format!(
        "{variant} iteration {iteration} (apply killed after {} ms, {point:?})",
        delay.as_millis()
    )
}

/// When iteration `iteration` of `iterations` kills `apply`: the first
/// right away (before a run can exist), the others stratified, each at a
/// pseudo-random point of its own slice of the run (plus 10% past its
/// usual end), so every part of the run is covered.
fn kill_delay(iteration: u32, iterations: u32, rng: &mut XorShift, run: Duration) -> Duration {
    if iteration == 0 {
        return Duration::ZERO;
    }
    let span = run.as_secs_f64() * 1.1;
    Duration::from_secs_f64(span * (f64::from(iteration) + rng.unit()) / f64::from(iterations))
}

/// Spawns `apply`, SIGKILLs it after `delay`, and reports the run it left.
fn kill_apply(sandbox: &Sandbox, delay: Duration) -> (Option<String>, KillPoint) {
    let apply = sandbox.spawn(&["apply", PLAN, "--yes"]);
    std::thread::sleep(delay);
    apply.sigkill();
    let run = newest_run(sandbox);
    let point = kill_point(sandbox, run.as_deref());
    (run, point)
}

/// Nothing may have moved when the killed process never created a run.
fn check_untouched(sandbox: &Sandbox, context: &str, tally: &mut Tally) {
    let files = sandbox.sim_files();
    if !files.is_empty() {
        tally
            .violations
            .push(format!("{context}: no run, yet targets changed: {files:?}"));
    }
}

/// Kill `apply` anywhere, then `resume`: the run must finish.
fn resume_loop(facts: &[StageFacts], run_duration: Duration) -> Tally {
    let mut tally = Tally::default();
    for iteration in 0..RESUME_ITERATIONS {
        let mut rng = XorShift::seeded(u64::from(iteration));
        let delay = kill_delay(iteration, RESUME_ITERATIONS, &mut rng, run_duration);
        let sandbox = Sandbox::new("crash-resume");
        let (run, point) = kill_apply(&sandbox, delay);
        Tally::count(&mut tally.apply_kills, point);
        let context = describe("resume", iteration, delay, point);
        let Some(run) = run else {
            check_untouched(&sandbox, &context, &mut tally);
            continue;
        };
        let resumed = sandbox.run(&["resume", &run]);
        let (phase, problems) = check_run(&sandbox, facts, &run);
        tally
            .violations
            .extend(problems.into_iter().map(|p| format!("{context}: {p}")));
        if resumed.code != Some(code_for(&phase)) {
            tally.violations.push(format!(
                "{context}: resume exited {:?} for a {phase} run\n{resumed}",
                resumed.code
            ));
        }
        match phase.as_str() {
            "Succeeded" => tally.succeeded += 1,
            "RolledBack" => {
                tally.rolled_back += 1;
                // Nothing in this plan is unhealthy, so a rollback here is
                // not a crash-safety violation (targets are consistent) but
                // a wrong verdict; counted and pinned by its own test.
                let outcome = sandbox.status(Some(&run))["outcome"].to_string();
                tally
                    .healthy_rolled_back
                    .push(format!("{context}: {outcome}"));
            }
            _ => {}
        }
    }
    tally
}

/// Kill `apply` anywhere, then follow the runbook: `rollback RUN --yes`,
/// itself killed on two iterations of three and then finished by `resume`
/// (every other time it was killed mid-rollback) or by running `rollback`
/// again. The run must end rolled back.
fn rollback_loop(
    facts: &[StageFacts],
    run_duration: Duration,
    rollback_duration: Duration,
) -> Tally {
    let mut tally = Tally::default();
    for iteration in 0..ROLLBACK_ITERATIONS {
        let mut rng = XorShift::seeded(1000 + u64::from(iteration));
        let delay = kill_delay(iteration, ROLLBACK_ITERATIONS, &mut rng, run_duration);
        let sandbox = Sandbox::new("crash-rollback");
        let (run, point) = kill_apply(&sandbox, delay);
        Tally::count(&mut tally.apply_kills, point);
        let mut context = describe("rollback", iteration, delay, point);
        let Some(run) = run else {
            check_untouched(&sandbox, &context, &mut tally);
            continue;
        };
        let rollback = sandbox.spawn(&["rollback", &run, "--yes"]);
        let finished = if iteration % 3 != 0 {
            let delay = Duration::from_secs_f64(rollback_duration.as_secs_f64() * rng.unit());
            std::thread::sleep(delay);
            rollback.sigkill();
            let point = match sandbox.journal().run(&run).expect("run").phase {
                RunPhase::RollingBack => KillPoint::Rollback,
                RunPhase::RolledBack => KillPoint::AfterEnd,
                _ => KillPoint::BeforeRun,
            };
            Tally::count(&mut tally.rollback_kills, point);
            context = format!(
                "{context}, rollback killed after {} ms ({point:?})",
                delay.as_millis()
            );
            // `resume` continues an interrupted rollback; `rollback` again
            // is what the runbook says and must be just as safe.
            let mid_rollback_kills = tally.rollback_kills[KillPoint::Rollback as usize];
            if point == KillPoint::Rollback && mid_rollback_kills % 2 == 1 {
                tally.rollbacks_resumed += 1;
                (sandbox.run(&["resume", &run]), 1)
            } else {
                (sandbox.run(&["rollback", &run, "--yes"]), 0)
            }
        } else {
            (rollback.wait(crate::sandbox::COMMAND_TIMEOUT), 0)
        };
        let (out, expected_code) = finished;
        let (phase, problems) = check_run(&sandbox, facts, &run);
        tally
            .violations
            .extend(problems.into_iter().map(|p| format!("{context}: {p}")));
        if phase != "RolledBack" {
            tally.violations.push(format!(
                "{context}: ended {phase} after the runbook rollback"
            ));
        }
        if out.code != Some(expected_code) {
            tally
                .violations
                .push(format!("{context}: expected exit {expected_code}\n{out}"));
        }
        match phase.as_str() {
            "Succeeded" => tally.succeeded += 1,
            "RolledBack" => tally.rolled_back += 1,
            _ => {}
        }
    }
    tally
}

#[test]
fn sigkill_at_any_moment_then_resume_or_rollback_converges() {
    let plan = load(PLAN);
    let facts = facts(&plan);
    let started = Instant::now();

    // Clean runs set the time scale and check the checker: it must find
    // nothing wrong with a run nobody interrupted, nor with its runbook
    // rollback. The shorter of two runs is the scale, because the first
    // often competes with the rest of the suite starting up.
    let mut run_duration = Duration::MAX;
    let mut rollback_duration = Duration::MAX;
    for _ in 0..2 {
        let clean = Sandbox::new("crash-clean");
        let t = Instant::now();
        let out = clean.run(&["apply", PLAN, "--yes"]);
        run_duration = run_duration.min(t.elapsed());
        out.expect_code(0);
        let run = started_run_id(&out.stderr);
        let (phase, problems) = check_run(&clean, &facts, &run);
        assert_eq!((phase.as_str(), problems), ("Succeeded", Vec::new()));
        let t = Instant::now();
        clean.run(&["rollback", &run, "--yes"]).expect_code(0);
        rollback_duration = rollback_duration.min(t.elapsed());
        let (phase, problems) = check_run(&clean, &facts, &run);
        assert_eq!((phase.as_str(), problems), ("RolledBack", Vec::new()));
        // And it does see a target on the wrong version: told that `api`
        // started on its new version, it must object to where it is now.
        let mut wrong = self::facts(&plan);
        let api = &mut wrong[0];
        std::mem::swap(&mut api.stable, &mut api.new);
        let (_, problems) = check_run(&clean, &wrong, &run);
        assert!(
            problems.iter().any(|p| p.contains("target api")),
            "{problems:?}"
        );
    }

    // The two variants are independent (a state directory each), so they
    // run side by side; their processes mostly sleep.
    let mut tally = std::thread::scope(|scope| {
        let resumes = scope.spawn(|| resume_loop(&facts, run_duration));
        let rollbacks = scope.spawn(|| rollback_loop(&facts, run_duration, rollback_duration));
        let mut tally = resumes.join().expect("resume loop");
        tally.merge(rollbacks.join().expect("rollback loop"));
        tally
    });

    // Indexed by `KillPoint`; for the rollback process `BeforeRun` means
    // "before the rollback wrote anything".
    let [before, forward, rollback, after] = tally.apply_kills;
    let [r_before, _, r_mid, r_after] = tally.rollback_kills;
    eprintln!(
        "crash loop: {} apply kills ({before} before the run existed, {forward} mid-forward, {rollback} mid-rollback, {after} after the end); \
         {} rollback kills ({r_before} before it started, {r_mid} mid-rollback, {r_after} after it ended; {} finished by resume); \
         ended {} Succeeded, {} RolledBack ({} of them healthy runs rolled back after resume); \
         clean run {} ms, clean rollback {} ms, total {:.1} s",
        RESUME_ITERATIONS + ROLLBACK_ITERATIONS,
        tally.rollback_kills.iter().sum::<u32>(),
        tally.rollbacks_resumed,
        tally.succeeded,
        tally.rolled_back,
        tally.healthy_rolled_back.len(),
        run_duration.as_millis(),
        rollback_duration.as_millis(),
        started.elapsed().as_secs_f64()
    );
    for line in &tally.healthy_rolled_back {
        eprintln!("  rolled back a healthy run: {line}");
    }
    tally.violations.truncate(40);
    assert!(
        tally.violations.is_empty(),
        "crash-safety violations:\n{}",
        tally.violations.join("\n")
    );
    // Nothing in this plan is unhealthy: a resumed run must not roll back.
    assert!(
        tally.healthy_rolled_back.is_empty(),
        "healthy runs rolled back after resume:\n{}",
        tally.healthy_rolled_back.join("\n")
    );
    // The loop must have exercised what it claims to.
    assert!(before > 0, "no kill landed before the run existed");
    assert!(forward >= RESUME_ITERATIONS / 2, "too few kills mid-run");
    assert!(tally.rolled_back >= ROLLBACK_ITERATIONS / 2);
    assert!(tally.succeeded >= RESUME_ITERATIONS / 2);
    assert!(r_mid > 0, "no rollback was killed half-way");
    assert!(
        tally.rollbacks_resumed > 0,
        "no interrupted rollback was resumed"
    );
}

/// The index of the last pause in the only stage of `plan`, checking that
/// the background gates' verdict comes right after it.
fn final_bake(plan: &ValidatedPlan) -> usize {
    let stage = &plan.stages[0];
    let ops = program::compile(stage, plan.target_of(stage));
    let bake = ops
        .iter()
        .rposition(|op| matches!(op, Op::Pause(_)))
        .expect("a pause");
    assert_eq!(ops[bake + 1], Op::StopMonitors, "{ops:?}");
    bake
}

/// A process killed during a canary's final bake, resumed once the bake
/// would have ended (an operator coming back later), must promote a
/// healthy release. The background gate has measured 100% throughout;
/// the resumed process restarts it and must give it the chance to measure
/// before asking for its verdict.
#[test]
fn resuming_after_the_final_bake_does_not_fail_a_healthy_background_gate() {
    let plan = load(BAKE_PLAN);
    let bake = final_bake(&plan);
    let sandbox = Sandbox::new("crash-bake");
    let apply = sandbox.spawn(&["apply", BAKE_PLAN, "--yes"]);
    let mut found = None;
    wait_until(
        Duration::from_secs(30),
        "the final bake has started",
        || {
            let Some(run) = newest_run(&sandbox) else {
                return false;
            };
            let stages = sandbox.journal().stages(&run).expect("stages");
            let stage = &stages[0];
            if stage.cursor as usize == bake
                && let Some(until) = stage.pause_until
            {
                found = Some((run, until));
            }
            found.is_some()
        },
    );
    let (run, bake_ends) = found.expect("found");
    assert!(!apply.sigkill(), "apply ended before it could be killed");
    let wait = (bake_ends + 200 - now_ms()).max(0) as u64;
    std::thread::sleep(Duration::from_millis(wait));

    let out = sandbox.run(&["resume", &run]);
    let status = sandbox.status(Some(&run));
    assert_eq!(
        status["phase"], "Succeeded",
        "a healthy release was rolled back after resuming: {}\n{out}",
        status["outcome"]
    );
    out.expect_code(0);
    let api = sandbox.sim("api").expect("api was changed");
    assert_eq!((api.stable.as_str(), api.candidate), ("1.1.0", None));
}

/// `deployctl rollback RUN` undoes every stage whatever the plan's
/// rollback scope. Killed half-way and continued with `deployctl resume`
/// (what `status` suggests for an interrupted run), it must still undo
/// every stage, not only those the plan's scope would have picked for an
/// automatic rollback, and must not report `RolledBack` while a target is
/// still on the new version.
#[test]
fn resuming_an_interrupted_runbook_rollback_rolls_back_every_stage() {
    let plan = load(SCOPE_PLAN);
    let facts = facts(&plan);
    let sandbox = Sandbox::new("crash-scope");
    let out = sandbox.run(&["apply", SCOPE_PLAN, "--yes"]);
    out.expect_code(0);
    let run = started_run_id(&out.stderr);

    let rollback = sandbox.spawn(&["rollback", &run, "--yes"]);
    // Undo goes dependents first: `front`, whose calls take 600 ms, then
    // `back`. Kill while `front` is being undone.
    wait_until(
        Duration::from_secs(30),
        "the rollback is undoing front",
        || {
            let journal = sandbox.journal();
            let stages = journal.stages(&run).expect("stages");
            journal.run(&run).expect("run").phase == RunPhase::RollingBack
                && stages
                    .iter()
                    .any(|s| s.name == "front" && s.phase == StagePhase::RollingBack)
        },
    );
    assert!(!rollback.sigkill(), "the rollback ended before the kill");
    let back = sandbox.journal().stages(&run).expect("stages")[0].clone();
    assert_eq!(
        (back.name.as_str(), back.phase),
        ("back", StagePhase::Succeeded),
        "the kill was meant to land before `back` was touched"
    );

    let out = sandbox.run(&["resume", &run]);
    let status = sandbox.status(Some(&run));
    let mut wrong = Vec::new();
    for fact in &facts {
        let state = sandbox.sim(&fact.target).expect("changed by the apply");
        if state.stable != fact.stable || state.candidate.is_some() {
            wrong.push(format!(
                "{} on {} (candidate {:?})",
                fact.target, state.stable, state.candidate
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "run reads {} yet targets are not back on stable: {}\n{out}",
        status["phase"],
        wrong.join(", ")
    );
    assert_eq!(status["phase"], "RolledBack");
}

#[test]
fn xorshift_is_deterministic_and_spread() {
    let mut a = XorShift::seeded(7);
    let mut b = XorShift::seeded(7);
    let draws: Vec<f64> = (0..1000).map(|_| a.unit()).collect();
    assert!(draws.iter().all(|u| *u == b.unit()));
    assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
    let low = draws.iter().filter(|u| **u < 0.5).count();
    assert!((400..600).contains(&low), "{low} of 1000 below 0.5");
    assert_ne!(XorShift::seeded(1).next(), XorShift::seeded(2).next());
}
