//! Lambda releases end to end through the binary, against moto behind the
//! fault-injecting proxy (`lambda_support.rs`): a canary to 100% under a
//! passing gate; a gate failing mid-canary and the automatic rollback; the
//! process SIGKILLed mid-canary then resumed or rolled back; another writer
//! moving the alias during the run; throttling, 5xx, resets and latency at
//! a steady rate over several seeds; and code published from a zip.
//!
//! After every run the alias as Lambda has it must agree with what the
//! journal says: a run never ends with split traffic unrecorded.

use std::time::Duration;

use crate::lambda_support::{HealthServer, LambdaAccount, canary_plan, emulators};
use crate::sandbox::{Sandbox, wait_until};

/// The already published version 2, labelled `2`.
const PUBLISHED: &str = "{version: \"2\", lambda: {version: \"2\"}}";
const TO_100: &str = "[{setWeight: 10}, {analysis: {gates: [health]}}, {setWeight: 50}, {analysis: {gates: [health]}}, {setWeight: 100}]";

fn write_plan(sandbox: &Sandbox, plan: &str) -> String {
    let path = sandbox.root().join("plan.yaml");
    std::fs::write(&path, plan).expect("plan written");
    path.to_string_lossy().into_owned()
}

fn run_id(sandbox: &Sandbox) -> String {
    sandbox
        .run_ids()
        .first()
        .cloned()
        .expect("a run was created")
}

/// The alias a finished run must leave: the new version alone when it
/// succeeded, the stable one alone when it rolled back.
fn expected_alias(phase: &str, stable: &str, new: &str) -> String {
    match phase {
        "Succeeded" => format!("{new} {{}}"),
        "RolledBack" => format!("{stable} {{}}"),
        other => panic!("the run ended {other}, neither succeeded nor rolled back"),
    }
}

/// A canary on a fresh function, started by an apply of its own and
/// waited for until the alias sends 10 % to the new version.
struct AtTenPercent {
    account: LambdaAccount,
    sandbox: Sandbox,
    running: crate::sandbox::Running,
    /// Keeps the gate's health endpoint up for the run.
    _health: HealthServer,
}

fn canary_at_ten_percent(test: &str, label: &str, steps: &str) -> Option<AtTenPercent> {
    let (_, proxy) = emulators(test)?;
    let account = LambdaAccount::new(&proxy, label);
    let health = HealthServer::start(|_| true);
    let sandbox = Sandbox::new(&format!("lambda-{label}"));
    let plan = write_plan(
        &sandbox,
        &canary_plan(&account.function, steps, &health.url, PUBLISHED),
    );
    let running = account.spawn(&sandbox, &["apply", &plan, "--yes"]);
    wait_until(Duration::from_secs(30), "the alias is at 10%", || {
        account.alias() == "1 {\"2\": 0.1}"
    });
    Some(AtTenPercent {
        account,
        sandbox,
        running,
        _health: health,
    })
}

#[test]
fn a_lambda_canary_with_a_passing_gate_reaches_all_traffic() {
    let Some((_, proxy)) = emulators("a_lambda_canary_with_a_passing_gate_reaches_all_traffic")
    else {
        return;
    };
    let account = LambdaAccount::new(&proxy, "canary-pass");
    let health = HealthServer::start(|_| true);
    let sandbox = Sandbox::new("lambda-pass");
    let plan = write_plan(
        &sandbox,
        &canary_plan(&account.function, TO_100, &health.url, PUBLISHED),
    );
    account
        .run(&sandbox, &["apply", &plan, "--yes"])
        .expect_code(0);
    assert_eq!(account.alias(), "2 {}");
    assert!(health.requests.load(std::sync::atomic::Ordering::SeqCst) >= 4);
    let status = sandbox.status(Some(&run_id(&sandbox)));
    assert_eq!(status["phase"], "Succeeded", "{status:#}");
    // Every weight went through the alias, in order.
    let updates: Vec<String> = account
        .calls()
        .iter()
        .filter(|c| c["operation"] == "UpdateAlias")
        .map(|c| c["status"].to_string())
        .collect();
    assert!(updates.len() >= 4, "deploy, 10, 50, 100: {updates:?}");
}

#[test]
fn a_gate_failing_mid_canary_rolls_the_alias_back_to_the_stable_version() {
    let Some((_, proxy)) =
        emulators("a_gate_failing_mid_canary_rolls_the_alias_back_to_the_stable_version")
    else {
        return;
    };
    let account = LambdaAccount::new(&proxy, "canary-fail");
    // Healthy for the first analysis (2 measurements), then failing.
    let health = HealthServer::start(|n| n < 2);
    let sandbox = Sandbox::new("lambda-fail");
    let plan = write_plan(
        &sandbox,
        &canary_plan(&account.function, TO_100, &health.url, PUBLISHED),
    );
    let out = account.run(&sandbox, &["apply", &plan, "--yes"]);
    out.expect_code(1);
    assert_eq!(
        account.alias(),
        "1 {}",
        "all traffic back on version 1\n{out}"
    );
    let status = sandbox.status(Some(&run_id(&sandbox)));
    assert_eq!(status["phase"], "RolledBack", "{status:#}");
    assert_eq!(status["stages"][0]["phase"], "RolledBack", "{status:#}");
    assert_eq!(status["stages"][0]["weight"], 0, "{status:#}");
    // It had reached 50% before the gate failed.
    let calls = account.calls();
    let updates = calls
        .iter()
        .filter(|c| c["operation"] == "UpdateAlias")
        .count();
    assert!(updates >= 4, "deploy, 10, 50, rollback: {calls:?}");
}

#[test]
fn a_run_killed_mid_canary_is_resumed_or_rolled_back_consistently() {
    let Some((_, proxy)) =
        emulators("a_run_killed_mid_canary_is_resumed_or_rolled_back_consistently")
    else {
        return;
    };
    let steps = "[{setWeight: 10}, {pause: {duration: 1500ms}}, {setWeight: 50}, {pause: {duration: 1500ms}}, {analysis: {gates: [health]}}]";
    // (the alias to kill at, the runbook command after the kill, the alias it ends on)
    let cases = [
        ("1 {\"2\": 0.1}", "resume", "2 {}", "Succeeded"),
        ("1 {\"2\": 0.5}", "resume", "2 {}", "Succeeded"),
        ("1 {\"2\": 0.1}", "rollback", "1 {}", "RolledBack"),
        ("1 {\"2\": 0.5}", "rollback", "1 {}", "RolledBack"),
    ];
    let health = HealthServer::start(|_| true);
    for (n, (kill_at, command, ends_on, phase)) in cases.into_iter().enumerate() {
        let account = LambdaAccount::new(&proxy, &format!("killed-{n}"));
        let sandbox = Sandbox::new("lambda-kill");
        let plan = write_plan(
            &sandbox,
            &canary_plan(&account.function, steps, &health.url, PUBLISHED),
        );
        let running = account.spawn(&sandbox, &["apply", &plan, "--yes"]);
        wait_until(
            Duration::from_secs(30),
            &format!("the alias is at {kill_at}"),
            || account.alias() == kill_at,
        );
        assert!(!running.sigkill(), "the run was still going when killed");
        assert_eq!(account.alias(), kill_at, "nothing moves after SIGKILL");
        let run = run_id(&sandbox);
        let status = sandbox.status(Some(&run));
        assert_eq!(status["interrupted"], true, "{status:#}");

        account
            .run(&sandbox, &[command, &run, "--yes"])
            .expect_code(0);
        assert_eq!(
            account.alias(),
            ends_on,
            "case {n}: {command} after a kill at {kill_at}"
        );
        let status = sandbox.status(Some(&run));
        assert_eq!(status["phase"], phase, "case {n}: {status:#}");
        assert_eq!(status["rollbackIncomplete"], false, "{status:#}");
    }
}

/// Another writer moves traffic mid-release. deployctl's documented
/// behaviour: it does not overwrite the change, neither by continuing nor
/// by rolling back over it; the run ends "rollback incomplete" (exit 3,
/// locks held, people alerted) with a message naming the other writer,
/// and the alias stays as the other writer left it. The runbook's
/// `deployctl rollback` is the human's explicit decision to override.
#[test]
fn another_writer_moving_the_alias_stops_the_run_for_a_human() {
    let Some(AtTenPercent {
        account,
        sandbox,
        running,
        _health: _gate_endpoint_up,
    }) = canary_at_ten_percent(
        "another_writer_moving_the_alias_stops_the_run_for_a_human",
        "contended",
        "[{setWeight: 10}, {pause: {duration: 2s}}, {setWeight: 50}]",
    )
    else {
        return;
    };
    account.python(&format!(
        "lam.update_alias(FunctionName='{}', Name='live', RoutingConfig={{'AdditionalVersionWeights': {{'2': 0.3}}}})",
        account.function
    ));
    let out = running.wait(Duration::from_secs(60));
    out.expect_code(3);
    assert!(out.stderr.contains("another writer"), "{out}");
    assert_eq!(
        account.alias(),
        "1 {\"2\": 0.3}",
        "the other writer's change stands"
    );
    let run = run_id(&sandbox);
    let status = sandbox.status(Some(&run));
    assert_eq!(status["rollbackIncomplete"], true, "{status:#}");
    assert!(
        status["stages"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("another writer")),
        "{status:#}"
    );

    // The human decides: the runbook's rollback puts the alias back.
    account
        .run(&sandbox, &["rollback", &run, "--yes"])
        .expect_code(0);
    assert_eq!(account.alias(), "1 {}");
    let status = sandbox.status(Some(&run));
    assert_eq!(status["rollbackIncomplete"], false, "{status:#}");
}

/// The rollout verbs on a Lambda canary another process drives: `pause`
/// holds the alias at 10 % past the end of its 1 s pause, `promote` moves
/// it on to 50 %, and `abort` during the 60 s pause that follows puts the
/// alias back on the stable version and leaves the run Aborted; `retry`
/// runs it again and `promote --full` takes the new run straight to
/// promotion.
#[test]
fn pause_promote_and_abort_steer_a_lambda_canary_from_another_process() {
    let Some(AtTenPercent {
        account,
        sandbox,
        running,
        _health: _gate_endpoint_up,
    }) = canary_at_ten_percent(
        "pause_promote_and_abort_steer_a_lambda_canary_from_another_process",
        "steered",
        "[{setWeight: 10}, {pause: {duration: 1s}}, {setWeight: 50}, {pause: {duration: 60s}}, {setWeight: 100}]",
    )
    else {
        return;
    };
    let run = run_id(&sandbox);
    account.run(&sandbox, &["pause", &run]).expect_code(0);
    // Three times the 1 s pause: still held at 10 %.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(account.alias(), "1 {\"2\": 0.1}", "held at 10%");
    account.run(&sandbox, &["promote", &run]).expect_code(0);
    wait_until(Duration::from_secs(30), "the alias is at 50%", || {
        account.alias() == "1 {\"2\": 0.5}"
    });
    // In the 60 s pause now: abort it.
    wait_until(Duration::from_secs(10), "the 60 s pause has begun", || {
        sandbox.status(Some(&run))["stages"][0]["now"]["pauseLeftMs"].is_i64()
    });
    let aborted = account.run(&sandbox, &["abort", &run, "--yes"]);
    aborted.expect_code(0);
    let out = running.wait(Duration::from_secs(60));
    out.expect_code(1);
    assert_eq!(sandbox.status(Some(&run))["phase"], "Aborted");
    assert_eq!(
        account.alias(),
        "1 {}",
        "all traffic back on the stable version"
    );

    // `retry` starts the aborted run again from its recorded plan as a new
    // run, and `promote --full` from another process skips the rest of
    // its steps (the pauses, 50 %) straight to promotion.
    let retrying = account.spawn(&sandbox, &["retry", &run, "--yes"]);
    let mut new = String::new();
    wait_until(Duration::from_secs(30), "the retry's 1 s pause", || {
        let Some(id) = sandbox.run_ids().into_iter().find(|id| *id != run) else {
            return false;
        };
        new = id;
        sandbox.status(Some(&new))["stages"][0]["now"]["pauseLeftMs"].is_i64()
    });
    assert_eq!(sandbox.status(Some(&new))["retryOf"], run.as_str());
    let canary = account.alias();
    assert!(
        canary.starts_with("1 {") && canary.ends_with(": 0.1}"),
        "{canary}"
    );
    let promoted = account.run(&sandbox, &["promote", &new, "--full"]);
    promoted.expect_code(0);
    retrying.wait(Duration::from_secs(60)).expect_code(0);
    assert_eq!(sandbox.status(Some(&new))["phase"], "Succeeded");
    let released = account.alias();
    assert!(
        released.ends_with(" {}") && !released.starts_with("1 "),
        "all traffic on the new version: {released}"
    );
    let calls = sandbox.call_actions(&new);
    assert!(
        !calls.iter().any(|c| c.contains("50")),
        "the retry never set 50 %: {calls:?}"
    );
}

/// The Lambda calls a release makes: the faults test injects into these
/// (the identity lookup before a run, `sts:GetCallerIdentity`, refuses to
/// start on any failure, which is not what this test is about).
const LAMBDA_CALLS: &str = r#"["GetAlias", "GetFunction", "UpdateAlias", "ListVersionsByFunction", "UpdateFunctionCode", "PublishVersion", "GetFunctionConfiguration"]"#;

/// Throttling, 5xx, connection resets (before and after the call reached
/// moto) and latency on a fifth of the release's Lambda calls, over
/// several seeds: every run succeeds or rolls back, and the alias agrees
/// with the journal.
#[test]
fn faults_at_a_steady_rate_never_leave_traffic_split_unrecorded() {
    let Some((_, proxy)) =
        emulators("faults_at_a_steady_rate_never_leave_traffic_split_unrecorded")
    else {
        return;
    };
    let health = HealthServer::start(|_| true);
    let mut faults_seen = 0;
    let mut moved = 0;
    for seed in 1..=8 {
        let account = LambdaAccount::new(&proxy, &format!("faulty-{seed}"));
        let sandbox = Sandbox::new("lambda-faults");
        let plan = write_plan(
            &sandbox,
            &canary_plan(&account.function, TO_100, &health.url, PUBLISHED),
        );
        account.faults(&format!(
            r#""rate": 0.2, "seed": {seed}, "kinds": ["throttle", "5xx", "reset", "drop", "latency"], "latencyMs": [50, 400], "only": {LAMBDA_CALLS}"#
        ));
        let out = account.run(&sandbox, &["apply", &plan, "--yes"]);
        account.no_faults();
        let run = sandbox
            .run_ids()
            .first()
            .cloned()
            .unwrap_or_else(|| panic!("seed {seed}: no run was created\n{out}"));
        let status = sandbox.status(Some(&run));
        let phase = status["phase"].as_str().unwrap_or_default().to_owned();
        assert_eq!(status["rollbackIncomplete"], false, "seed {seed}: {out}");
        // The engine asks each target's preflight once, without its retry
        // policy: a fault there fails the run before anything moved
        // (clean, if not resilient; reported as an engine change needed).
        let refused = phase == "Failed"
            && status["outcome"]
                .as_str()
                .is_some_and(|o| o.contains("nothing was changed"));
        let expected = if refused {
            "1 {}".to_owned()
        } else {
            moved += 1;
            expected_alias(&phase, "1", "2")
        };
        assert_eq!(
            account.alias(),
            expected,
            "seed {seed}: the alias disagrees with the run's {phase}\n{status:#}\n{out}"
        );
        assert_eq!(
            out.code,
            Some(if phase == "Succeeded" { 0 } else { 1 }),
            "{out}"
        );
        faults_seen += account
            .calls()
            .iter()
            .filter(|c| !c["fault"].is_null())
            .count();
    }
    assert!(
        faults_seen >= 5,
        "the proxy injected only {faults_seen} faults"
    );
    assert!(moved >= 4, "only {moved} of 8 runs got past preflight");
}

#[test]
fn a_release_from_a_zip_is_published_once_and_promoted() {
    let Some((_, proxy)) = emulators("a_release_from_a_zip_is_published_once_and_promoted") else {
        return;
    };
    let account = LambdaAccount::new(&proxy, "from-zip");
    let health = HealthServer::start(|_| true);
    let sandbox = Sandbox::new("lambda-zip");
    // The zip sits beside the plan; the plan names it relatively.
    account.python(&format!(
        "b = io.BytesIO()\nwith zipfile.ZipFile(b, 'w') as z: z.writestr('handler.py', 'def handler(e, c):\\n    return 3\\n')\n\
open('{}', 'wb').write(b.getvalue())",
        sandbox.root().join("code.zip").display()
    ));
    let plan = write_plan(
        &sandbox,
        &canary_plan(
            &account.function,
            TO_100,
            &health.url,
            "{version: \"3.0.0\", lambda: {zipFile: code.zip}}",
        ),
    );
    account
        .run(&sandbox, &["apply", &plan, "--yes"])
        .expect_code(0);
    assert_eq!(
        account.alias(),
        "3 {}",
        "the published version 3 takes all traffic"
    );
    let described = account.python(&format!(
        "print(lam.get_function_configuration(FunctionName='{}', Qualifier='3')['Description'])",
        account.function
    ));
    assert!(
        described.starts_with("deployctl release 3.0.0; zip code.zip; sha256 "),
        "{described}"
    );
    let status = sandbox.status(Some(&run_id(&sandbox)));
    assert_eq!(status["phase"], "Succeeded", "{status:#}");
    assert_eq!(status["stages"][0]["newVersion"], "3.0.0", "{status:#}");

    // Applying the same plan again: the release is live, nothing moves,
    // nothing is published again.
    account
        .run(&sandbox, &["apply", &plan, "--yes"])
        .expect_code(0);
    let versions = account.python(&format!(
        "print(len(lam.list_versions_by_function(FunctionName='{}')['Versions']))",
        account.function
    ));
    assert_eq!(versions, "4", "$LATEST, 1, 2 and 3");
    assert_eq!(account.alias(), "3 {}");
}
