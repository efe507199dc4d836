//! The run commands (`apply`, `status`, `history`, `rollback`, `kill`,
//! `resume`, `rehearse`) driven as an operator would, on sim plans: exit
//! codes, what they print, and what they leave in the journal and on the
//! (simulated) targets. Each test has its own state directory.

use std::time::Duration;

use crate::sandbox::{Sandbox, mask, started_run_id, wait_until};
use crate::{repo_root, snapshot};

/// api (canary) ∥ worker (blue-green) → cdn (canary); under a second.
const SANDBOX_PLAN: &str = "tests/fixtures/plans/valid/run-sandbox.yaml";
/// Holds target `api` at 10% for 30 s.
const LONG_PLAN: &str = "tests/fixtures/plans/valid/run-long-pause.yaml";
/// One quick canary on target `solo`.
const SOLO_PLAN: &str = "tests/fixtures/plans/valid/run-solo.yaml";
const QUICKSTART: &str = "examples/quickstart.yaml";

/// The sandbox plan's targets with their stable and new versions.
const SANDBOX_TARGETS: [(&str, &str, &str); 3] = [
    ("api", "1.4.2", "1.5.0"),
    ("worker", "1.4.2", "1.5.0"),
    ("cdn", "2024.06.1", "2024.07.0"),
];

fn snap(name: &str, actual: &str) {
    let path = repo_root().join("tests/fixtures/cli").join(name);
    if let Err(mismatch) = snapshot::check(&path, actual) {
        panic!("{mismatch}");
    }
}

/// Applies `plan` to the end, expecting success; returns the run id.
fn apply_ok(sandbox: &Sandbox, plan: &str) -> String {
    let out = sandbox.run(&["apply", plan, "--yes"]);
    out.expect_code(0);
    started_run_id(&out.stderr)
}

/// Asserts where a sim target's traffic is: all on `stable`, no candidate.
fn assert_on(sandbox: &Sandbox, target: &str, stable: &str) {
    let state = sandbox
        .sim(target)
        .unwrap_or_else(|| panic!("target {target} was never changed"));
    assert_eq!(
        (
            state.stable.as_str(),
            state.candidate.as_deref(),
            state.weight
        ),
        (stable, None, 0),
        "target {target}"
    );
}

/// Total number of changes the sim targets have recorded.
fn effect_counts(sandbox: &Sandbox) -> Vec<(String, usize)> {
    SANDBOX_TARGETS
        .iter()
        .map(|(target, ..)| {
            let effects = sandbox.sim(target).map_or(0, |state| state.effects.len());
            (target.to_string(), effects)
        })
        .collect()
}

/// Starts the 30-second plan and waits until its stage holds at 10%.
fn start_long_run(sandbox: &Sandbox) -> (crate::sandbox::Running, String) {
    let apply = sandbox.spawn(&["apply", LONG_PLAN, "--yes"]);
    let mut run = String::new();
    wait_until(
        Duration::from_secs(30),
        "the long run is paused at 10%",
        || {
            if !sandbox.state_dir().join("journal.sqlite3").exists() {
                return false;
            }
            let Some(id) = sandbox.run_ids().into_iter().next() else {
                return false;
            };
            let status = sandbox.status(Some(&id));
            run = id;
            status["phase"] == "Progressing" && status["stages"][0]["weight"] == 10
        },
    );
    (apply, run)
}

/// `status --output json` names each stage's newest journal event (the
/// typed events, one line each) and the run's.
#[test]
fn status_json_names_the_newest_event_of_the_run_and_of_each_stage() {
    let sandbox = Sandbox::new("runs-last-event");
    sandbox
        .run(&["apply", SANDBOX_PLAN, "--yes"])
        .expect_code(0);
    let status = sandbox.status(None);
    let last = &status["lastEvent"];
    assert_eq!(last["kind"], "runPhase", "{status:#}");
    assert!(
        last["summary"]
            .as_str()
            .is_some_and(|s| s.starts_with("run Succeeded")),
        "{status:#}"
    );
    for stage in status["stages"].as_array().expect("stages") {
        assert_eq!(stage["lastEvent"]["kind"], "stageSucceeded", "{stage}");
        assert_eq!(stage["lastEvent"]["summary"], "stage succeeded", "{stage}");
    }
}

#[test]
fn apply_succeeds_and_status_and_history_describe_the_run() {
    let sandbox = Sandbox::new("runs-apply");
    let out = sandbox.run(&["apply", SANDBOX_PLAN, "--yes"]);
    out.expect_code(0);
    let run = started_run_id(&out.stderr);
    assert!(
        out.stderr
            .contains(&format!("run {run}: Succeeded — all stages promoted")),
        "{out}"
    );
    // `apply` shows what it is about to do, and does not claim it did
    // nothing, as `plan` may.
    assert!(out.stderr.contains("undo order"), "{out}");
    assert!(!out.stderr.contains("Nothing was changed"), "{out}");
    // Each progress line says when (RFC 3339, UTC).
    let progress: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains(": preflight") || l.contains("] weight"))
        .collect();
    assert!(!progress.is_empty(), "{out}");
    for line in progress {
        let (at, _) = line.split_once(' ').unwrap_or_default();
        assert!(
            at.len() == 24 && at.ends_with('Z') && deployctl_time::parse(at).is_some(),
            "{line}"
        );
    }

    let status = sandbox.status(None);
    assert_eq!(status["kind"], "RunStatus");
    assert_eq!(status["run"], run.as_str());
    assert_eq!(status["phase"], "Succeeded");
    assert_eq!(status["mode"], "apply");
    assert_eq!(status["initiator"], "deployctl-test@test-host");
    let stages = status["stages"].as_array().expect("stages");
    let expected = [
        ("api-canary", "api-health", "1.4.2", "1.5.0"),
        ("worker-blue-green", "worker-health", "1.4.2", "1.5.0"),
        ("cdn-canary", "cdn-health", "2024.06.1", "2024.07.0"),
    ];
    assert_eq!(stages.len(), expected.len());
    for (stage, (name, gate, stable, new)) in stages.iter().zip(expected) {
        assert_eq!(stage["name"], name);
        assert_eq!(stage["phase"], "Succeeded", "{stage}");
        assert_eq!(stage["weight"], 100, "{stage}");
        assert_eq!(stage["stableVersion"], stable);
        assert_eq!(stage["newVersion"], new);
        assert_eq!(stage["lastGate"]["gate"], gate, "{stage}");
        assert_eq!(
            stage["lastGate"]["result"]["outcome"]["status"], "passed",
            "{stage}"
        );
    }
    for (target, _, new) in SANDBOX_TARGETS {
        assert_on(&sandbox, target, new);
    }

    let history = sandbox.run(&["history"]);
    history.expect_code(0);
    assert!(history.stdout.contains(&run), "{history}");
    snap("history-one-run.stdout", &mask(&history.stdout));
}

#[test]
fn status_text_shows_each_stage_last_gate_verdict() {
    let sandbox = Sandbox::new("runs-status-text");
    let run = apply_ok(&sandbox, SANDBOX_PLAN);
    let text = sandbox.run(&["status", &run]);
    text.expect_code(0);
    // Every gate passed (the JSON says `"status": "passed"`), so the text
    // must not call any of them still running.
    snap("status-succeeded.stdout", &mask(&text.stdout));

    // A rehearsal whose api-canary gate fails at 50%: the newest run.
    sandbox
        .run(&["rehearse", QUICKSTART, "--fail", "api-canary@2"])
        .expect_code(0);
    let text = sandbox.run(&["status"]);
    text.expect_code(1);
    assert!(text.stdout.contains("gate api-health: failed"), "{text}");
}

/// The run IDs `history --output json ARGS` lists, in its order.
fn history_ids(sandbox: &Sandbox, args: &[&str]) -> Vec<String> {
    let mut all = vec!["history", "--output", "json"];
    all.extend(args);
    let out = sandbox.run(&all);
    out.expect_code(0);
    let runs: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    runs.as_array()
        .expect("array")
        .iter()
        .map(|run| run["run"].as_str().expect("id").to_string())
        .collect()
}

#[test]
fn history_target_lists_only_the_runs_that_moved_it() {
    let sandbox = Sandbox::new("runs-history");
    let sandbox_run = apply_ok(&sandbox, SANDBOX_PLAN);
    let solo_run = apply_ok(&sandbox, SOLO_PLAN);
    let ids = |args: &[&str]| history_ids(&sandbox, args);
    // Newest first.
    assert_eq!(ids(&[]), [solo_run.clone(), sandbox_run.clone()]);
    assert_eq!(ids(&["--target", "solo"]), [solo_run]);
    assert_eq!(ids(&["--target", "worker"]), [sandbox_run]);
    assert!(ids(&["--target", "nosuch"]).is_empty());
    let out = sandbox.run(&["history", "--target", "nosuch"]);
    out.expect_code(0);
    assert!(out.stdout.ends_with("(no runs yet)\n"), "{out}");
}

/// `history --limit --phase --environment --since`, each narrowing the
/// list, and a filter that cannot be understood refused with exit 2.
#[test]
fn history_filters_by_limit_phase_environment_and_time() {
    let sandbox = Sandbox::new("runs-history-filters");
    let succeeded = apply_ok(&sandbox, SANDBOX_PLAN);
    sandbox
        .run(&["rehearse", QUICKSTART, "--fail", "api-canary@2"])
        .expect_code(0);
    let rolled_back = sandbox
        .run_ids()
        .into_iter()
        .find(|id| *id != succeeded)
        .expect("the rehearsal's run");
    let ids = |args: &[&str]| history_ids(&sandbox, args);
    let both = [rolled_back.clone(), succeeded.clone()];
    assert_eq!(ids(&[]), both);
    let newest = std::slice::from_ref(&rolled_back);
    assert_eq!(ids(&["--limit", "1"]), newest);
    assert_eq!(ids(&["--phase", "rolled-back"]), newest);
    assert_eq!(ids(&["--phase", "Succeeded,RolledBack"]), both);
    assert!(ids(&["--phase", "Killed"]).is_empty());
    assert_eq!(
        ids(&["--environment", "test"]),
        std::slice::from_ref(&succeeded)
    );
    assert_eq!(ids(&["--environment", "sandbox"]), newest);
    assert_eq!(ids(&["--since", "1h"]), both);
    assert!(ids(&["--since", "2999-01-01"]).is_empty());
    assert_eq!(
        ids(&[
            "--phase",
            "succeeded",
            "--environment",
            "test",
            "--since",
            "2000-01-01T00:00:00Z"
        ]),
        [succeeded]
    );
    let bad_phase = sandbox.run(&["history", "--phase", "Done"]);
    bad_phase.expect_code(2);
    assert!(
        bad_phase.stderr.contains("unknown phase `Done`"),
        "{bad_phase}"
    );
    let bad_since = sandbox.run(&["history", "--since", "last tuesday"]);
    bad_since.expect_code(2);
    assert!(bad_since.stderr.contains("--since"), "{bad_since}");
}

#[test]
fn rollback_after_success_restores_stable_and_is_safe_to_repeat() {
    let sandbox = Sandbox::new("runs-rollback");
    let run = apply_ok(&sandbox, SANDBOX_PLAN);
    let out = sandbox.run(&["rollback", &run, "--yes"]);
    out.expect_code(0);
    for (target, stable, _) in SANDBOX_TARGETS {
        assert_on(&sandbox, target, stable);
    }
    let status = sandbox.status(Some(&run));
    assert_eq!(status["phase"], "RolledBack");
    for stage in status["stages"].as_array().expect("stages") {
        assert_eq!(stage["phase"], "RolledBack", "{stage}");
        assert_eq!(stage["weight"], 0, "{stage}");
    }
    // It tells the operator where each stage now is.
    assert!(
        out.stderr
            .contains("api-canary: RolledBack (all traffic on 1.4.2)"),
        "{out}"
    );

    let before = effect_counts(&sandbox);
    let again = sandbox.run(&["rollback", &run, "--yes"]);
    again.expect_code(0);
    assert_eq!(
        effect_counts(&sandbox),
        before,
        "a second rollback changed a target"
    );
    assert_eq!(sandbox.status(Some(&run))["phase"], "RolledBack");
    for (target, stable, _) in SANDBOX_TARGETS {
        assert_on(&sandbox, target, stable);
    }
}

#[test]
fn rollback_target_picks_the_newest_run_that_moved_it() {
    let sandbox = Sandbox::new("runs-rollback-target");
    let first = apply_ok(&sandbox, SANDBOX_PLAN);
    sandbox.run(&["rollback", &first, "--yes"]).expect_code(0);
    let second = apply_ok(&sandbox, SANDBOX_PLAN);
    assert_on(&sandbox, "api", "1.5.0");

    let out = sandbox.run(&["rollback", "--target", "api", "--yes"]);
    out.expect_code(0);
    assert_eq!(
        sandbox.status(Some(&second))["phase"],
        "RolledBack",
        "{out}"
    );
    for (target, stable, _) in SANDBOX_TARGETS {
        assert_on(&sandbox, target, stable);
    }

    let out = sandbox.run(&["rollback", "--target", "nosuch", "--yes"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("no run has moved target `nosuch`"),
        "{out}"
    );
}

/// `status` of a run another process drives says which step each stage is
/// on, its index, and the time left in the pause it holds.
#[test]
fn status_names_the_current_step_and_the_time_left_in_a_pause() {
    let sandbox = Sandbox::new("runs-status-now");
    let (apply, run) = start_long_run(&sandbox);
    let mut now = serde_json::Value::Null;
    wait_until(Duration::from_secs(20), "the pause has begun", || {
        now = sandbox.status(Some(&run))["stages"][0]["now"].clone();
        now["pauseLeftMs"].is_i64()
    });
    assert_eq!(now["step"]["op"], "pause 30s", "{now:#}");
    let (index, of) = (now["step"]["index"].as_u64(), now["step"]["of"].as_u64());
    assert!(
        index
            .zip(of)
            .is_some_and(|(index, of)| index > 1 && index < of),
        "{now:#}"
    );
    let left = now["pauseLeftMs"].as_i64().unwrap();
    assert!(left > 0 && left <= 30_000, "{now:#}");
    let text = sandbox.run(&["status", &run]);
    text.expect_code(0);
    assert!(
        text.stdout.contains(&format!(
            "step {} of {}: pause 30s (",
            index.unwrap(),
            of.unwrap()
        )) && text.stdout.contains("s left)"),
        "{text}"
    );
    sandbox.run(&["kill", &run, "--yes"]).expect_code(0);
    apply.wait(Duration::from_secs(30)).expect_code(1);
    // A finished run has nothing to say about now.
    assert!(sandbox.status(Some(&run))["stages"][0]["now"].is_null());
}

/// The long plan with a 1 s pause, written into the sandbox.
const SHORT_PAUSE_PLAN: &str = "short-pause.yaml";

/// Applies the long plan with its pause cut to 1 s, from a process of its
/// own; the running apply and the run's ID once it exists.
fn start_short_pause_run(sandbox: &Sandbox) -> (crate::sandbox::Running, String) {
    let source = std::fs::read_to_string(repo_root().join(LONG_PLAN)).unwrap();
    let plan = sandbox.root().join(SHORT_PAUSE_PLAN);
    std::fs::write(&plan, source.replace("duration: 30s", "duration: 1s")).unwrap();
    let apply = sandbox.spawn(&["apply", plan.to_str().expect("utf-8"), "--yes"]);
    let mut run = String::new();
    wait_until(Duration::from_secs(20), "the run exists", || match sandbox
        .run_ids()
        .into_iter()
        .next()
    {
        Some(id) => {
            run = id;
            true
        }
        None => false,
    });
    (apply, run)
}

/// `promote RUN` from another process ends the pause a run is in now, and
/// the run goes on to succeed; it is audited, and a `promote` with nothing
/// to promote says so.
#[test]
fn promote_ends_the_current_pause_of_a_run_driven_elsewhere() {
    let sandbox = Sandbox::new("runs-promote");
    let (apply, run) = start_long_run(&sandbox);
    wait_until(Duration::from_secs(20), "the 30 s pause has begun", || {
        sandbox.status(Some(&run))["stages"][0]["now"]["pauseLeftMs"].is_i64()
    });
    let promoted = sandbox.run(&["promote", &run]);
    promoted.expect_code(0);
    assert!(promoted.stderr.contains("promoted"), "{promoted}");
    // Well before the 30 s are up, the run has gone on to 100 % and ended.
    let applied = apply.wait(Duration::from_secs(20));
    applied.expect_code(0);
    assert_eq!(sandbox.status(Some(&run))["phase"], "Succeeded");
    assert_on(&sandbox, "api", "1.6.0");
    let events = sandbox.run(&[
        "audit",
        "show",
        "--run",
        &run,
        "--action",
        "promote.requested",
    ]);
    assert_eq!(events.stdout.lines().count(), 1, "{events}");
    let again = sandbox.run(&["promote", &run]);
    again.expect_code(0);
    assert!(again.stderr.contains("already ended"), "{again}");
}

/// `promote RUN --full` from another process skips every remaining step
/// (pauses, the partial weight, the analysis, the background gate) of a
/// run in its first pause: the run ends at once on the new version, the
/// skipped steps are journaled as such, no call for them was made, and
/// a second `--full` has nothing to do.
#[test]
fn promote_full_skips_the_remaining_steps_of_a_run_driven_elsewhere() {
    let sandbox = Sandbox::new("runs-promote-full");
    let apply = sandbox.spawn(&[
        "apply",
        "tests/fixtures/plans/valid/run-full-promotion.yaml",
        "--yes",
    ]);
    let mut run = String::new();
    wait_until(
        Duration::from_secs(30),
        "the first 30 s pause has begun",
        || {
            let Some(id) = sandbox.run_ids().into_iter().next() else {
                return false;
            };
            let status = sandbox.status(Some(&id));
            run = id;
            status["stages"][0]["now"]["pauseLeftMs"].is_i64()
        },
    );
    let promoted = sandbox.run(&["promote", &run, "--full"]);
    promoted.expect_code(0);
    assert!(promoted.stderr.contains("fully promoted"), "{promoted}");
    // Long before the first pause is up, the run has ended.
    apply.wait(Duration::from_secs(20)).expect_code(0);
    assert_eq!(sandbox.status(Some(&run))["phase"], "Succeeded");
    assert_on(&sandbox, "api", "1.6.0");
    let events = sandbox.journal().events(&run).expect("events");
    let calls = sandbox.call_actions(&run);
    assert!(
        !calls.iter().any(|c| c.contains("50")),
        "the 50 % step was never applied: {calls:?}"
    );
    let skipped: Vec<String> = events
        .iter()
        .filter(|e| e.kind == "step")
        .filter_map(|e| e.data["detail"].as_str())
        .filter(|d| d.contains("skipped by `deployctl promote --full`"))
        .map(str::to_string)
        .collect();
    assert_eq!(skipped.len(), 4, "{skipped:?}");
    for step in [
        "set weight 50%",
        "pause 30s",
        "analysis: api-health",
        "stop background gates",
    ] {
        assert!(
            skipped.iter().any(|s| s.starts_with(step)),
            "{step}: {skipped:?}"
        );
    }
    let records = sandbox.audit_records_of(&run, "promote.requested");
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(
        records[0]["what"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("full promotion")),
        "{records:?}"
    );
    let again = sandbox.run(&["promote", &run, "--full"]);
    again.expect_code(0);
    assert!(again.stderr.contains("already ended"), "{again}");
}

/// `status` shows the gates measuring now with their totals and latest
/// measurement, read by another process while the run's background gate
/// watches its pause (only verdicts are journal events).
#[test]
fn status_shows_the_gate_being_measured_with_its_latest_values() {
    let sandbox = Sandbox::new("runs-live-gate");
    let apply = sandbox.spawn(&[
        "apply",
        "tests/fixtures/plans/valid/run-full-promotion.yaml",
        "--yes",
    ]);
    let mut run = String::new();
    let mut measuring = serde_json::Value::Null;
    wait_until(
        Duration::from_secs(30),
        "the background gate has measured twice",
        || {
            let Some(id) = sandbox.run_ids().into_iter().next() else {
                return false;
            };
            let status = sandbox.status(Some(&id));
            run = id;
            measuring = status["stages"][0]["now"]["measuring"][0].clone();
            measuring["counts"]["passed"]
                .as_u64()
                .is_some_and(|n| n >= 2)
        },
    );
    assert_eq!(measuring["gate"], "api-health", "{measuring:#}");
    assert_eq!(measuring["background"], true, "{measuring:#}");
    assert_eq!(measuring["last"]["kind"], "pass", "{measuring:#}");
    assert!(measuring["last"]["value"].is_f64(), "{measuring:#}");
    assert!(measuring["ageMs"].is_i64(), "{measuring:#}");
    let text = sandbox.run(&["status", &run]);
    assert!(
        text.stdout.contains("measuring api-health (background):"),
        "{text}"
    );
    sandbox.run(&["kill", &run, "--yes"]).expect_code(0);
    apply.wait(Duration::from_secs(30));
    // Ended: nothing is measured any more.
    let status = sandbox.status(Some(&run));
    assert!(status["stages"][0]["now"].is_null(), "{status:#}");
}

/// `pause RUN` holds a run past the end of its pause until `promote`; a
/// second `pause` changes nothing; `status` says the run is held.
#[test]
fn pause_holds_a_run_until_promote() {
    let sandbox = Sandbox::new("runs-pause");
    let (apply, run) = start_short_pause_run(&sandbox);
    let paused = sandbox.run(&["pause", &run]);
    paused.expect_code(0);
    assert!(paused.stderr.contains("paused"), "{paused}");
    let twice = sandbox.run(&["pause", &run]);
    twice.expect_code(0);
    assert!(twice.stderr.contains("already paused"), "{twice}");
    // Three times the 1 s pause: still held at 10 % (or before it).
    std::thread::sleep(Duration::from_secs(3));
    let status = sandbox.status(Some(&run));
    assert_eq!(status["phase"], "Progressing", "{status:#}");
    assert_eq!(status["held"], true, "{status:#}");
    assert!(
        status["stages"][0]["weight"]
            .as_u64()
            .is_some_and(|w| w <= 10),
        "{status:#}"
    );
    let text = sandbox.run(&["status", &run]);
    assert!(text.stdout.contains("HELD by `deployctl pause`"), "{text}");
    sandbox.run(&["promote", &run]).expect_code(0);
    apply.wait(Duration::from_secs(30)).expect_code(0);
    assert_on(&sandbox, "api", "1.6.0");
    let records = sandbox.audit_records(&run);
    let actions: Vec<&str> = records
        .iter()
        .filter_map(|r| r["what"]["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"pause.requested") && actions.contains(&"promote.requested"),
        "{actions:?}"
    );
}

/// `abort RUN` from another process puts traffic back on stable and leaves
/// the run Aborted (not Killed); a second `abort` has nothing to do.
#[test]
fn abort_puts_traffic_back_and_leaves_the_run_aborted() {
    let sandbox = Sandbox::new("runs-abort");
    let (apply, run) = start_long_run(&sandbox);
    let aborted = sandbox.run(&["abort", &run, "--yes"]);
    aborted.expect_code(0);
    assert!(aborted.stderr.contains("Aborted"), "{aborted}");
    let applied = apply.wait(Duration::from_secs(30));
    applied.expect_code(1);
    let status = sandbox.status(Some(&run));
    assert_eq!(status["phase"], "Aborted", "{status:#}");
    assert!(
        status["outcome"]
            .as_str()
            .is_some_and(|o| o.contains("deployctl abort")),
        "{status:#}"
    );
    assert_on(&sandbox, "api", "1.4.2");
    assert_eq!(
        history_ids(&sandbox, &["--phase", "aborted"]),
        std::slice::from_ref(&run)
    );
    let again = sandbox.run(&["abort", &run, "--yes"]);
    again.expect_code(0);
    assert!(again.stderr.contains("already ended"), "{again}");
}

/// `retry RUN` starts an aborted run again as a new run, from the plan
/// recorded with it (the file is gone by then), linked to the old one in
/// the audit trail; a succeeded run has nothing to retry.
#[test]
fn retry_starts_a_finished_run_again_from_its_recorded_plan() {
    let sandbox = Sandbox::new("runs-retry");
    let (apply, old) = start_short_pause_run(&sandbox);
    sandbox.run(&["abort", &old, "--yes"]).expect_code(0);
    apply.wait(Duration::from_secs(30));
    assert_eq!(sandbox.status(Some(&old))["phase"], "Aborted");
    std::fs::remove_file(sandbox.root().join(SHORT_PAUSE_PLAN)).unwrap();

    let retried = sandbox.run(&["retry", &old, "--yes"]);
    retried.expect_code(0);
    let new = sandbox
        .run_ids()
        .into_iter()
        .find(|id| *id != old)
        .expect("a new run");
    assert!(
        retried
            .stderr
            .contains(&format!("Run {new} retries run {old}")),
        "{retried}"
    );
    assert_eq!(sandbox.status(Some(&new))["phase"], "Succeeded");
    assert_eq!(
        sandbox.status(Some(&new))["planDigest"],
        sandbox.status(Some(&old))["planDigest"]
    );
    assert_on(&sandbox, "api", "1.6.0");
    // The journal links the two: each run's status names the other.
    assert_eq!(sandbox.status(Some(&new))["retryOf"], old.as_str());
    assert_eq!(
        sandbox.status(Some(&old))["retriedAs"],
        serde_json::json!([new.clone()])
    );
    let text = sandbox.run(&["status", &new]);
    assert!(
        text.stdout.contains(&format!("Retries run {old}")),
        "{text}"
    );
    let link = sandbox.audit_records_of(&old, "retry.requested");
    assert!(
        link[0]["what"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&new)),
        "{link:#?}"
    );
    let again = sandbox.run(&["retry", &new, "--yes"]);
    again.expect_code(0);
    assert!(again.stderr.contains("nothing to retry"), "{again}");
}

#[test]
fn kill_stops_a_running_apply_and_rolls_it_back() {
    let sandbox = Sandbox::new("runs-kill");
    let (apply, run) = start_long_run(&sandbox);
    let state = sandbox.sim("api").expect("api moved");
    assert_eq!(
        (state.candidate.as_deref(), state.weight),
        (Some("1.6.0"), 10)
    );

    let kill = sandbox.run(&["kill", &run, "--yes"]);
    kill.expect_code(0);
    let applied = apply.wait(Duration::from_secs(30));
    // The 30 s pause was cut short: the apply ends rolled back, exit 1.
    applied.expect_code(1);
    assert!(applied.stderr.contains(": Killed"), "{applied}");
    assert_eq!(sandbox.status(Some(&run))["phase"], "Killed");
    assert_on(&sandbox, "api", "1.4.2");

    // Killing a finished run changes nothing and says how to undo it.
    let again = sandbox.run(&["kill", &run, "--yes"]);
    again.expect_code(0);
    assert!(again.stderr.contains("already ended"), "{again}");
}

/// `rollback RUN` of a run another process drives is recorded as the
/// rollback it is, not as a kill; a second `rollback` has nothing to do
/// and says so.
#[test]
fn rollback_of_a_live_run_is_a_rollback_and_a_second_one_does_nothing() {
    let sandbox = Sandbox::new("runs-rollback-live");
    let (apply, run) = start_long_run(&sandbox);
    let rollback = sandbox.run(&["rollback", &run, "--yes"]);
    rollback.expect_code(0);
    assert!(rollback.stderr.contains("Rollback requested"), "{rollback}");
    apply.wait(Duration::from_secs(30));
    let status = sandbox.status(Some(&run));
    assert_eq!(status["phase"], "RolledBack", "{rollback}");
    let text = sandbox.run(&["status", &run]);
    assert!(
        text.stdout.contains("rolled back by `deployctl rollback`")
            && !text.stdout.contains("deployctl kill`"),
        "{text}"
    );
    assert_on(&sandbox, "api", "1.4.2");

    let again = sandbox.run(&["rollback", &run, "--yes"]);
    again.expect_code(0);
    assert!(
        again.stderr.contains("already rolled back") && again.stderr.contains("nothing to do"),
        "{again}"
    );
    assert!(!again.stderr.contains("rolling back"), "{again}");
}

#[test]
fn kill_of_a_run_whose_process_died_rolls_it_back_itself() {
    let sandbox = Sandbox::new("runs-kill-dead");
    let (apply, run) = start_long_run(&sandbox);
    assert!(!apply.sigkill(), "the 30 s run ended by itself");

    // The run reads as interrupted, with the way out.
    assert_eq!(sandbox.status(Some(&run))["interrupted"], true);
    let text = sandbox.run(&["status", &run]);
    assert!(
        text.stdout.contains(&format!(
            "The process driving this run is gone. Continue with `deployctl resume {run}`"
        )),
        "{text}"
    );

    let kill = sandbox.run(&["kill", &run, "--yes"]);
    kill.expect_code(0);
    let status = sandbox.status(Some(&run));
    assert_eq!(status["phase"], "Killed", "{kill}");
    assert_eq!(status["interrupted"], false);
    assert_on(&sandbox, "api", "1.4.2");
}

#[test]
fn a_second_apply_on_a_locked_target_is_refused_naming_the_holder() {
    let sandbox = Sandbox::new("runs-lock");
    let (apply, run) = start_long_run(&sandbox);
    let before = sandbox.sim("api").expect("api moved");

    // run-sandbox.yaml moves `api` too.
    let second = sandbox.run(&["apply", SANDBOX_PLAN, "--yes"]);
    // A refusal before anything moved (issue 9): exit 2, and no run of its
    // own in the history.
    second.expect_code(2);
    assert_eq!(sandbox.run_ids(), std::slice::from_ref(&run), "{second}");
    assert!(
        second
            .stderr
            .contains(&format!("locked by run {run} (deployctl-test@test-host)")),
        "{second}"
    );
    // Refused before anything moved: `api` is as the first run left it and
    // the other targets were never touched.
    assert_eq!(sandbox.sim("api").expect("api"), before);
    assert_eq!(sandbox.sim_files(), ["api.json"]);
    assert_eq!(sandbox.status(Some(&run))["phase"], "Progressing");

    sandbox.run(&["kill", &run, "--yes"]).expect_code(0);
    apply.wait(Duration::from_secs(30)).expect_code(1);
}

#[test]
fn resume_of_a_live_run_is_refused() {
    let sandbox = Sandbox::new("runs-resume-live");
    let (apply, run) = start_long_run(&sandbox);
    let out = sandbox.run(&["resume", &run]);
    out.expect_code(2);
    assert!(
        out.stderr
            .contains(&format!("is being driven by process {}", apply.pid())),
        "{out}"
    );
    assert_eq!(sandbox.status(Some(&run))["phase"], "Progressing");
    sandbox.run(&["kill", &run, "--yes"]).expect_code(0);
    apply.wait(Duration::from_secs(30)).expect_code(1);
}

#[test]
fn status_without_runs_exits_2() {
    let sandbox = Sandbox::new("runs-empty");
    let out = sandbox.run(&["status"]);
    out.expect_code(2);
    assert!(out.stderr.contains("no runs yet"), "{out}");
    let out = sandbox.run(&["status", "r-nosuch"]);
    out.expect_code(2);
    assert!(out.stderr.contains("unknown run `r-nosuch`"), "{out}");
    let out = sandbox.run(&["history"]);
    out.expect_code(0);
    assert!(out.stdout.ends_with("(no runs yet)\n"), "{out}");

    // The state directory also comes from DEPLOYCTL_STATE_DIR.
    let run = apply_ok(&sandbox, SOLO_PLAN);
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_deployctl"));
    command
        .args(["status", "--output", "json"])
        .current_dir(repo_root())
        .env("DEPLOYCTL_STATE_DIR", sandbox.state_dir());
    let out = sandbox
        .spawn_command(command, &["status (env)"], None)
        .wait(Duration::from_secs(30));
    out.expect_code(0);
    let status: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(status["run"], run.as_str());
}

/// A fleet's wave steps show waves, not a traffic weight that means
/// nothing there, and days of simulated time read as plans write them.
#[test]
fn rehearse_of_fleet_waves_shows_waves_and_readable_durations() {
    let sandbox = Sandbox::new("runs-rehearse-fleet");
    let out = sandbox.run(&["rehearse", "examples/fleet-ota-waves.yaml"]);
    out.expect_code(0);
    assert!(!out.stderr.contains("weight 0%"), "{out}");
    assert!(out.stderr.contains("wave 1/"), "{out}");
    let summary = out
        .stderr
        .lines()
        .find(|l| l.contains("of simulated time"))
        .unwrap_or_else(|| panic!("no summary line\n{out}"));
    let took = summary
        .split(" in ")
        .nth(1)
        .and_then(|rest| rest.split(" of simulated time").next())
        .unwrap_or_default();
    assert!(
        took.contains('d') && !took.contains('.'),
        "a duration as plans write it: {summary}"
    );
}

#[test]
fn rehearse_quickstart_passes() {
    let sandbox = Sandbox::new("runs-rehearse");
    let out = sandbox.run(&["rehearse", QUICKSTART]);
    out.expect_code(0);
    assert!(out.stderr.contains("The plan behaved as it says."), "{out}");
    assert!(
        out.stderr
            .contains("ok   with nothing failing the run succeeds"),
        "{out}"
    );
    // Rehearsals move simulators in memory only, and say so in history.
    assert!(sandbox.sim_files().is_empty(), "{:?}", sandbox.sim_files());
    let history = sandbox.run(&["history"]);
    assert!(history.stdout.contains("(rehearsal)"), "{history}");
}

#[test]
fn rehearse_with_an_injected_failure_checks_the_rollback() {
    let sandbox = Sandbox::new("runs-rehearse-fail");
    let out = sandbox.run(&["rehearse", QUICKSTART, "--fail", "api-canary@2"]);
    out.expect_code(0);
    for check in [
        "ok   the failure injected into stage api-canary was detected",
        "ok   the run rolls back by itself (it ended RolledBack)",
        "ok   stage api-canary is back on 1.4.2 with all traffic (RolledBack)",
        "ok   stage worker-blue-green is back on 1.4.2 with all traffic (RolledBack)",
        "ok   stage cdn-canary never started, nothing to undo",
        "The plan behaved as it says.",
    ] {
        assert!(out.stderr.contains(check), "missing `{check}`\n{out}");
    }
    // Verdict lines read `  ok   …` or `  FAIL …`.
    assert!(
        !out.stderr.lines().any(|line| line.starts_with("  FAIL ")),
        "{out}"
    );
}

#[test]
fn rehearse_of_an_unknown_stage_exits_2_naming_the_stages() {
    let sandbox = Sandbox::new("runs-rehearse-unknown");
    let out = sandbox.run(&["rehearse", QUICKSTART, "--fail", "nosuchstage"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains(
            "no stage `nosuchstage` in this plan (stages: api-canary, worker-blue-green, cdn-canary)"
        ),
        "{out}"
    );
    // Refused before a run was recorded.
    assert!(!sandbox.state_dir().join("journal.sqlite3").exists() || sandbox.run_ids().is_empty());
}

#[test]
fn rehearse_json_ends_with_the_verdict() {
    let sandbox = Sandbox::new("runs-rehearse-json");
    let out = sandbox.run(&["rehearse", QUICKSTART, "--output", "json"]);
    out.expect_code(0);
    let last = out
        .stdout
        .lines()
        .rfind(|line| !line.trim().is_empty())
        .expect("output");
    let verdict: serde_json::Value = serde_json::from_str(last).expect("last line is JSON");
    assert_eq!(verdict["event"], "rehearsalEnded");
    assert_eq!(verdict["passed"], true, "{verdict}");
    assert_eq!(verdict["phase"], "Succeeded");
    let checks = verdict["checks"].as_array().expect("checks");
    assert!(!checks.is_empty());
    assert!(checks.iter().all(|check| check["ok"] == true), "{verdict}");
    // Every other line is a progress event, also JSON.
    for line in out.stdout.lines().filter(|line| !line.trim().is_empty()) {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|error| panic!("{error}: {line}"));
    }
}

#[test]
fn a_saved_plan_applies_and_is_refused_once_the_plan_file_changed() {
    let sandbox = Sandbox::new("runs-saved");
    let plan = sandbox.copy_in(SOLO_PLAN, "plan.yaml");
    let saved = sandbox.root().join("plan.saved.json");
    let (plan, saved) = (
        plan.to_str().expect("utf-8"),
        saved.to_str().expect("utf-8"),
    );
    sandbox.run(&["plan", plan, "--out", saved]).expect_code(0);

    let run = apply_ok(&sandbox, saved);
    assert_eq!(sandbox.status(Some(&run))["phase"], "Succeeded");
    assert_on(&sandbox, "solo", "8");

    let mut text = std::fs::read_to_string(plan).expect("plan");
    text.push_str("# edited after review\n");
    std::fs::write(plan, text).expect("edit");
    let before = sandbox.sim("solo");
    let out = sandbox.run(&["apply", saved, "--yes"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("changed since the plan was saved"),
        "{out}"
    );
    assert_eq!(
        sandbox.run_ids(),
        [run],
        "a refused saved plan created a run"
    );
    assert_eq!(sandbox.sim("solo"), before);
}

#[test]
fn apply_of_a_plan_this_build_cannot_run_is_refused_before_anything() {
    // A fleet whose firmware is signed in a way this build cannot verify
    // is refused before any call, lock or run.
    let sandbox = Sandbox::new("runs-fleet");
    let out = sandbox.run(&[
        "apply",
        "tests/fixtures/plans/valid/fleet-signer-profile.yaml",
        "--yes",
    ]);
    out.expect_code(2);
    assert!(out.stderr.contains("target `cams`"), "{out}");
    assert!(out.stderr.contains("AWS Signer profiles"), "{out}");
    assert!(out.stderr.contains("Nothing was changed"), "{out}");
    let journal = sandbox.state_dir().join("journal.sqlite3");
    assert!(
        !journal.exists() || sandbox.run_ids().is_empty(),
        "a refused plan created a run"
    );
    assert!(sandbox.sim_files().is_empty());
}

#[test]
fn a_kubernetes_plan_whose_context_is_nowhere_is_refused_before_anything() {
    // The example names its EKS cluster's context; this machine's
    // kubeconfig (none) has no such context: refused, naming it.
    let sandbox = Sandbox::new("runs-eks");
    let kubeconfig = sandbox.root().join("empty-kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n",
    )
    .expect("kubeconfig written");
    let mut command = sandbox.command(&["apply", "examples/eks-blue-green.yaml", "--yes"]);
    command.env("KUBECONFIG", &kubeconfig);
    let out = sandbox
        .spawn_command(command, &["apply"], None)
        .wait(crate::sandbox::COMMAND_TIMEOUT);
    out.expect_code(2);
    assert!(
        out.stderr.contains("checkout-api")
            && out
                .stderr
                .contains("arn:aws:eks:us-east-1:123456789012:cluster/prod-use1"),
        "{out}"
    );
    let journal = sandbox.state_dir().join("journal.sqlite3");
    assert!(
        !journal.exists() || sandbox.run_ids().is_empty(),
        "a refused plan created a run"
    );
}

#[test]
fn apply_never_prompts_when_stdin_is_not_a_terminal() {
    let sandbox = Sandbox::new("runs-no-prompt");
    // No --yes, and a "no" waiting on stdin: a prompt would read it and
    // refuse. Not a terminal, so there must be no prompt at all.
    let out = sandbox.run_with_input(&["apply", SOLO_PLAN], b"n\n");
    out.expect_code(0);
    assert!(!out.stderr.contains("[y/N]"), "{out}");
    assert!(!out.stderr.contains("Not applied"), "{out}");
    let run = started_run_id(&out.stderr);
    assert_eq!(sandbox.status(Some(&run))["phase"], "Succeeded");
    assert_on(&sandbox, "solo", "8");
}

/// A saved plan finds its plan file from wherever it is applied (issue
/// 12): `plan qs.yaml --out qs.saved; cd elsewhere; apply ../qs.saved`.
/// When the file is gone, the refusal names every path it tried.
#[test]
fn a_saved_plan_is_applied_from_another_directory() {
    let sandbox = Sandbox::new("runs-saved-elsewhere");
    let work = sandbox.root().join("work");
    let elsewhere = sandbox.root().join("elsewhere");
    std::fs::create_dir_all(&work).expect("work dir");
    std::fs::create_dir_all(&elsewhere).expect("other dir");
    std::fs::copy(crate::repo_root().join(SANDBOX_PLAN), work.join("qs.yaml"))
        .expect("plan copied");
    let mut plan = sandbox.command(&["plan", "qs.yaml", "--out", "qs.saved"]);
    let saved = plan.current_dir(&work).output().expect("plan runs");
    assert_eq!(
        saved.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&saved.stderr)
    );

    let mut apply = sandbox.command(&["apply", "../work/qs.saved", "--yes"]);
    let applied = apply.current_dir(&elsewhere).output().expect("apply runs");
    assert_eq!(
        applied.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    assert_eq!(sandbox.run_ids().len(), 1);

    std::fs::remove_file(work.join("qs.yaml")).expect("plan removed");
    let mut apply = sandbox.command(&["apply", "../work/qs.saved", "--yes"]);
    let refused = apply.current_dir(&elsewhere).output().expect("apply runs");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("tried qs.yaml, ../work/qs.yaml"),
        "the refusal names the paths it tried: {stderr}"
    );
}
