//! The audit trail as the commands write it: every run is recorded,
//! sealed with a signed checkpoint, and `audit verify` catches tampering.

use crate::sandbox::Sandbox;

const SANDBOX_PLAN: &str = "tests/fixtures/plans/valid/run-sandbox.yaml";

#[test]
fn a_run_is_audited_and_the_trail_verifies() {
    let sandbox = Sandbox::new("audit-verify");
    sandbox
        .run(&["apply", SANDBOX_PLAN, "--yes"])
        .expect_code(0);
    let run = sandbox.run_ids().pop().expect("a run was created");

    let verified = sandbox.run(&["audit", "verify"]);
    verified.expect_code(0);
    assert!(verified.stdout.contains("audit trail intact"), "{verified}");

    let shown = sandbox.run(&["audit", "show", "--run", &run, "--output", "json"]);
    shown.expect_code(0);
    let records: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    let actions: Vec<&str> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["what"]["action"].as_str().unwrap())
        .collect();
    for expected in [
        "run.started",
        "stage.deployed",
        "stage.weightSet",
        "stage.promoted",
        "run.succeeded",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
    // Every record names who and which plan (by digest).
    for record in records.as_array().unwrap() {
        assert!(
            record["who"]["operator"]
                .as_str()
                .is_some_and(|o| !o.is_empty())
        );
        assert_eq!(record["what"]["run"], run.as_str());
        assert!(
            record["what"]["planDigest"]
                .as_str()
                .is_some_and(|d| d.len() == 64)
        );
    }
}

#[test]
fn an_edited_record_is_named_by_verify() {
    let sandbox = Sandbox::new("audit-tamper");
    sandbox
        .run(&["apply", SANDBOX_PLAN, "--yes"])
        .expect_code(0);
    let log = sandbox.state_dir().join("audit/audit.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert!(lines.len() > 5);
    // Someone rewrites who did the third action.
    lines[2] = lines[2].replacen("\"operator\":\"", "\"operator\":\"mallory-", 1);
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();

    let verified = sandbox.run(&["audit", "verify"]);
    verified.expect_code(1);
    assert!(verified.stdout.contains("seq 3"), "{verified}");
}

#[test]
fn the_trail_exports_as_csv() {
    let sandbox = Sandbox::new("audit-export");
    sandbox
        .run(&["apply", SANDBOX_PLAN, "--yes"])
        .expect_code(0);
    let export = sandbox.run(&["audit", "export", "--format", "csv"]);
    export.expect_code(0);
    let mut lines = export.stdout.lines();
    assert!(lines.next().unwrap().starts_with("seq,time,operator"));
    assert!(lines.count() > 5);
}

#[test]
fn a_run_is_refused_while_audit_records_cannot_leave_the_machine() {
    let sandbox = Sandbox::new("audit-unshipped");
    // The "share" is a plain file, so shipping to it fails.
    let share = sandbox.root().join("not-a-directory");
    std::fs::write(&share, b"").unwrap();
    let with_share = |args: &[&str]| {
        let mut command = sandbox.command(args);
        command.env("DEPLOYCTL_AUDIT_SHIP_DIR", &share);
        command.output().expect("deployctl runs")
    };
    // The first run writes records that cannot be shipped…
    let first = with_share(&["apply", SANDBOX_PLAN, "--yes"]);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // …so the next one is refused, naming the problem, with nothing started.
    let runs_before = sandbox.run_ids().len();
    let second = with_share(&["apply", SANDBOX_PLAN, "--yes"]);
    assert_eq!(second.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("have not left this machine"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(sandbox.run_ids().len(), runs_before);
    // Once the share is reachable, the backlog ships and runs go on.
    std::fs::remove_file(&share).unwrap();
    std::fs::create_dir(&share).unwrap();
    let third = with_share(&["apply", SANDBOX_PLAN, "--yes"]);
    assert_eq!(
        third.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    let shipped = std::fs::read_dir(&share).unwrap().count();
    assert!(shipped > 0, "nothing was shipped to the share");
}
