//! The audit trail as the commands write it: every run is recorded,
//! sealed with a signed checkpoint, and `audit verify` catches tampering.

use crate::sandbox::{Finished, Sandbox};

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

/// `audit show | head`: a reader that goes away is no error (issue 12).
/// The pipe's read end is closed before the command writes, so its write
/// meets a broken pipe.
#[test]
fn a_reader_that_goes_away_ends_audit_output_quietly() {
    use std::process::Stdio;
    let sandbox = Sandbox::new("audit-pipe");
    sandbox
        .run(&["apply", SANDBOX_PLAN, "--yes"])
        .expect_code(0);
    for args in [
        &["audit", "show", "--output", "json"][..],
        &["audit", "show"][..],
        &["audit", "export", "--format", "csv"][..],
    ] {
        let mut child = sandbox
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("deployctl starts");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("deployctl ends");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(
            !stderr.to_lowercase().contains("broken pipe"),
            "{args:?}: {stderr}"
        );
    }
}

/// `audit verify --output json` prints one versioned document (issue 12).
#[test]
fn audit_verify_speaks_json_when_asked() {
    let sandbox = Sandbox::new("audit-verify-json");
    sandbox
        .run(&["apply", SANDBOX_PLAN, "--yes"])
        .expect_code(0);
    let verified = sandbox.run(&["--output", "json", "audit", "verify"]);
    verified.expect_code(0);
    let report: serde_json::Value =
        serde_json::from_str(&verified.stdout).unwrap_or_else(|e| panic!("{e}: {verified}"));
    assert_eq!(report["kind"], "AuditVerifyReport", "{report:#}");
    assert_eq!(report["intact"], true, "{report:#}");
    assert!(report["records"].as_u64().unwrap_or(0) > 0, "{report:#}");
    assert!(report["problems"].as_array().is_some_and(Vec::is_empty));
}

/// A command that only refuses still ends its records under a signed
/// checkpoint, so cutting its last records off the trail is caught.
#[test]
fn a_refused_commands_records_cannot_be_cut_off_unnoticed() {
    let sandbox = Sandbox::new("audit-refused-tail");
    let access = "tests/fixtures/access/approvals.yaml";
    // A release, sealed by its checkpoint.
    sandbox
        .run(&["apply", SANDBOX_PLAN, "--yes"])
        .expect_code(0);
    // A pending enrollment, then a wrong code: an `mfa.failed` record.
    sandbox
        .run(&["--access", access, "mfa", "enroll", "bob"])
        .expect_code(0);
    sandbox
        .run(&["mfa", "confirm", "bob", "--code", "000000"])
        .expect_code(2);
    sandbox.run(&["audit", "verify"]).expect_code(0);
    let log = sandbox.state_dir().join("audit/audit.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.last().is_some_and(|l| l.contains("mfa.failed")),
        "{text}"
    );
    // Someone deletes the failed attempt.
    std::fs::write(&log, lines[..lines.len() - 1].join("\n") + "\n").unwrap();
    let verified = sandbox.run(&["audit", "verify"]);
    verified.expect_code(1);
}

/// `verify` says plainly when the only key it checked against lies beside
/// the trail (whoever can write the state directory can re-sign), and not
/// when it was given a key kept elsewhere.
#[test]
fn verify_says_when_it_only_trusted_the_key_beside_the_trail() {
    let sandbox = Sandbox::new("audit-key-beside");
    sandbox
        .run(&["apply", SANDBOX_PLAN, "--yes"])
        .expect_code(0);
    let plain = sandbox.run(&["audit", "verify"]);
    plain.expect_code(0);
    assert!(plain.stdout.contains("stored beside the trail"), "{plain}");
    let json = sandbox.run(&["--output", "json", "audit", "verify"]);
    let report: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert!(
        report["warnings"].as_array().is_some_and(|w| w
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("beside the trail")))),
        "{report:#}"
    );
    // The public key copied away from the state directory, as an auditor
    // keeps it.
    let kept = sandbox.root().join("kept-signing-key.pub");
    std::fs::copy(sandbox.state_dir().join("audit/signing-key.pub"), &kept)
        .expect("the public key");
    let elsewhere = sandbox.run(&[
        "audit",
        "verify",
        "--public-key",
        kept.to_str().expect("utf-8"),
    ]);
    elsewhere.expect_code(0);
    assert!(
        !elsewhere.stdout.contains("beside the trail"),
        "{elsewhere}"
    );
}

/// `command` with the checkpoint signing key kept at `key`, outside the
/// state directory.
fn run_with_signing_key(sandbox: &Sandbox, key: &std::path::Path, args: &[&str]) -> Finished {
    let mut command = sandbox.command(args);
    command.env("DEPLOYCTL_AUDIT_SIGNING_KEY", key);
    sandbox
        .spawn_command(command, args, None)
        .wait(crate::sandbox::COMMAND_TIMEOUT)
}

/// With the signing key kept away from the trail, nothing secret is left in
/// the state directory, `verify` checks against that key's public half
/// without the "beside the trail" warning, and checkpoints signed by any
/// other key (as whoever rewrote the trail from the state directory would
/// have to) fail verification.
#[test]
fn a_signing_key_kept_outside_the_state_directory_signs_and_verifies_the_trail() {
    use std::os::unix::fs::PermissionsExt as _;
    let sandbox = Sandbox::new("audit-key-elsewhere");
    let keys = sandbox.root().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let key = keys.join("audit-signing-key.pk8");
    run_with_signing_key(&sandbox, &key, &["apply", SANDBOX_PLAN, "--yes"]).expect_code(0);
    let mode = std::fs::metadata(&key)
        .expect("the key was created")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the private key is the owner's alone");
    assert!(keys.join("audit-signing-key.pk8.pub").exists());
    assert!(
        !sandbox.state_dir().join("audit/signing-key.pk8").exists(),
        "no private key is left beside the trail"
    );
    let verified = run_with_signing_key(&sandbox, &key, &["audit", "verify"]);
    verified.expect_code(0);
    assert!(verified.stdout.contains("audit trail intact"), "{verified}");
    assert!(!verified.stdout.contains("beside the trail"), "{verified}");

    // Records signed with a key created beside the trail, as anyone who can
    // write the state directory (but not read the key) could do.
    sandbox
        .run(&["apply", SANDBOX_PLAN, "--yes"])
        .expect_code(0);
    assert!(sandbox.state_dir().join("audit/signing-key.pk8").exists());
    let verified = run_with_signing_key(&sandbox, &key, &["audit", "verify"]);
    verified.expect_code(1);

    // A key whose directory does not exist is refused before anything runs.
    let missing = sandbox.root().join("no-such-dir/key.pk8");
    let refused = run_with_signing_key(&sandbox, &missing, &["apply", SANDBOX_PLAN, "--yes"]);
    assert_ne!(refused.code, Some(0), "{refused}");
    assert!(refused.stderr.contains("does not exist"), "{refused}");
}
