//! MFA-gated approvals end to end: a production run pauses at a gate that
//! needs two approvers; the initiator cannot approve, a wrong role cannot,
//! a replayed code cannot; two others with fresh TOTP codes can, and the
//! run finishes with who approved on the audit trail.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use totp_rs::Totp;

use crate::sandbox::Sandbox;

const PLAN: &str = "tests/fixtures/plans/valid/approval-two-approvers.yaml";
const ACCESS: &str = "tests/fixtures/access/approvals.yaml";

/// Enrolls `user` and returns their authenticator (parsed from the URI
/// `mfa enroll` prints), after confirming with the current code.
fn enroll(sandbox: &Sandbox, user: &str) -> Totp {
    enroll_with(sandbox, ACCESS, user)
}

/// [`enroll`] with another access file.
pub(crate) fn enroll_with(sandbox: &Sandbox, access: &str, user: &str) -> Totp {
    let (totp, _) = authenticator(&sandbox.run(&["--access", access, "mfa", "enroll", user]));
    let code = totp.generate(now()).to_string();
    sandbox
        .run(&["mfa", "confirm", user, "--code", &code])
        .expect_code(0);
    totp
}

/// What a successful `mfa enroll` printed for the authenticator app: the
/// app (from the otpauth URI) and its secret (base32).
pub(crate) fn authenticator(enrolled: &crate::sandbox::Finished) -> (Totp, String) {
    enrolled.expect_code(0);
    let uri = enrolled
        .stderr
        .lines()
        .find(|line| line.starts_with("otpauth://"))
        .unwrap_or_else(|| panic!("no otpauth URI in {enrolled}"))
        .trim();
    let secret = uri
        .split(['?', '&'])
        .find_map(|part| part.strip_prefix("secret="))
        .expect("the secret in the otpauth URI")
        .to_string();
    (
        Totp::from_url_unchecked(uri).expect("a valid otpauth URI"),
        secret,
    )
}

/// The code an authenticator shows now.
pub(crate) fn current_code(totp: &Totp) -> String {
    totp.generate(now()).to_string()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A code one step ahead: within the accepted skew, and newer than the
/// confirmation code (each step is accepted once).
pub(crate) fn next_code(totp: &Totp) -> String {
    totp.generate(now() + 30).to_string()
}

/// Applies the two-approver plan and waits until its run pauses for
/// approval; the running apply and the run ID.
fn paused_run(sandbox: &Sandbox) -> (crate::sandbox::Running, String) {
    let running = sandbox.spawn(&["--access", ACCESS, "apply", PLAN, "--yes"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "the run never paused for approval"
        );
        if let Some(run) = sandbox.run_ids().pop()
            && sandbox.status(Some(&run))["stages"][0]["phase"] == "Paused"
        {
            return (running, run);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn approve(sandbox: &Sandbox, run: &str, user: &str, code: &str) -> crate::sandbox::Finished {
    sandbox.run(&[
        "--access",
        ACCESS,
        "approve",
        run,
        "--gate",
        "prod-signoff",
        "--user",
        user,
        "--code",
        code,
    ])
}

/// `promote RUN --full` in a protected environment skips the approval
/// gate only with another person's MFA-verified approval: refused without
/// one, refused when the approver is the requester (before any code is
/// checked) or lacks the environment's approver role, accepted with
/// bob's code; the run then goes straight to promotion, the gate's
/// approval never given, and the trail names bob as the approver.
#[test]
fn a_full_promotion_in_a_protected_environment_needs_another_persons_approval() {
    let sandbox = Sandbox::new("approvals-full-promotion");
    let bob = enroll(&sandbox, "bob");
    let frank = enroll(&sandbox, "frank");
    let (running, run) = paused_run(&sandbox);
    let promote = |extra: &[&str]| {
        let mut args = vec!["--access", ACCESS, "promote", run.as_str(), "--full"];
        args.extend_from_slice(extra);
        sandbox.run(&args)
    };
    let alone = promote(&[]);
    alone.expect_code(2);
    assert!(
        alone.stderr.contains("another person's approval"),
        "{alone}"
    );
    let own = promote(&["--approver", "deployctl-test", "--code", "123456"]);
    own.expect_code(2);
    assert!(own.stderr.contains("four eyes"), "{own}");
    let wrong_role = promote(&["--approver", "frank", "--code", &next_code(&frank)]);
    wrong_role.expect_code(2);
    assert!(
        wrong_role.stderr.contains("release-approver"),
        "{wrong_role}"
    );
    assert_eq!(sandbox.status(Some(&run))["phase"], "Progressing");

    let approved = promote(&["--approver", "bob", "--code", &next_code(&bob)]);
    approved.expect_code(0);
    assert!(approved.stderr.contains("fully promoted"), "{approved}");
    running.wait(Duration::from_secs(30)).expect_code(0);
    assert_eq!(sandbox.status(Some(&run))["phase"], "Succeeded");
    assert_eq!(sandbox.sim("api").map(|s| s.stable), Some("2.0".into()));
    let journal = sandbox.journal();
    assert!(
        journal
            .approvers(&run, "prod-signoff")
            .expect("approvers")
            .is_empty(),
        "the gate itself was skipped, not approved"
    );
    let promoted = sandbox.audit_records_of(&run, "promote.requested");
    assert_eq!(promoted.len(), 1, "{promoted:?}");
    assert_eq!(promoted[0]["who"]["operator"], "deployctl-test");
    assert_eq!(promoted[0]["what"]["approver"], "bob", "{promoted:?}");
}

#[test]
fn two_approvers_with_mfa_release_a_paused_production_run() {
    let sandbox = Sandbox::new("approvals-e2e");
    let bob = enroll(&sandbox, "bob");
    let carol = enroll(&sandbox, "carol");
    let me = enroll(&sandbox, "deployctl-test");
    let frank = enroll(&sandbox, "frank");

    let (running, run) = paused_run(&sandbox);

    // Four eyes: whoever started the run cannot approve it.
    let own = approve(&sandbox, &run, "deployctl-test", &next_code(&me));
    own.expect_code(2);
    assert!(own.stderr.contains("started this run"), "{own}");
    // An approver of another role cannot either.
    let wrong_role = approve(&sandbox, &run, "frank", &next_code(&frank));
    wrong_role.expect_code(2);
    assert!(
        wrong_role.stderr.contains("release-approver"),
        "{wrong_role}"
    );
    // Unknown people are refused.
    approve(&sandbox, &run, "mallory", "123456").expect_code(2);

    // `status` says what the run waits for and who may still give it.
    let status = sandbox.run(&["--access", ACCESS, "status", "--output", "json", &run]);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).expect("JSON");
    let waiting = &status["stages"][0]["now"]["waitingFor"];
    assert_eq!(waiting["approval"], "prod-signoff", "{waiting:#}");
    assert_eq!(waiting["required"], 2, "{waiting:#}");
    assert_eq!(waiting["approvedBy"], serde_json::json!([]), "{waiting:#}");
    let may: Vec<&str> = waiting["mayApprove"]
        .as_array()
        .expect("the access file names approvers")
        .iter()
        .filter_map(|user| user.as_str())
        .collect();
    assert!(
        may.contains(&"bob") && may.contains(&"carol"),
        "{waiting:#}"
    );
    assert!(
        !may.contains(&"deployctl-test") && !may.contains(&"frank"),
        "{waiting:#}"
    );

    let bob_code = next_code(&bob);
    approve(&sandbox, &run, "bob", &bob_code).expect_code(0);
    let text = sandbox.run(&["--access", ACCESS, "status", &run]);
    assert!(
        text.stdout
            .contains("waits for approval prod-signoff: 1 of 2")
            && text.stdout.contains("approved: bob")
            && text.stdout.contains("may still approve: carol"),
        "{text}"
    );
    assert!(!text.stdout.contains("may still approve: bob"), "{text}");
    // `approvals` lists what waits for whom, across runs.
    let listed = sandbox.run(&["--access", ACCESS, "approvals"]);
    listed.expect_code(0);
    assert!(
        listed.stdout.contains(&run)
            && listed.stdout.contains("approval prod-signoff (1 of 2")
            && listed.stdout.contains("may approve: carol"),
        "{listed}"
    );
    let for_carol = sandbox.run(&[
        "--access",
        ACCESS,
        "approvals",
        "--user",
        "carol",
        "--output",
        "json",
    ]);
    let for_carol: serde_json::Value = serde_json::from_str(&for_carol.stdout).expect("JSON");
    assert_eq!(for_carol[0]["run"], run.as_str(), "{for_carol:#}");
    assert_eq!(
        for_carol[0]["approvedBy"],
        serde_json::json!(["bob"]),
        "{for_carol:#}"
    );
    let for_bob = sandbox.run(&["--access", ACCESS, "approvals", "--user", "bob"]);
    assert!(for_bob.stdout.contains("no run waits"), "{for_bob}");
    // The same code twice is a replay, refused.
    let replay = approve(&sandbox, &run, "bob", &bob_code);
    replay.expect_code(2);
    // Said as what it is, before any code is checked: bob's attempts
    // before lockout are untouched.
    assert!(replay.stderr.contains("already approved"), "{replay}");
    assert!(!replay.stderr.contains("attempt"), "{replay}");
    assert!(sandbox.status(Some(&run))["stages"][0]["phase"] == "Paused");

    approve(&sandbox, &run, "carol", &next_code(&carol)).expect_code(0);
    let finished = running.wait(Duration::from_secs(60));
    finished.expect_code(0);
    assert_eq!(sandbox.status(Some(&run))["phase"], "Succeeded");

    sandbox.run(&["audit", "verify"]).expect_code(0);
    let shown = sandbox.run(&["audit", "show", "--run", &run, "--output", "json"]);
    let records: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    let granted: Vec<String> = records
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["what"]["action"] == "approval.granted")
        .map(|r| r["what"]["detail"].to_string())
        .collect();
    assert_eq!(granted.len(), 2, "{granted:?}");
    assert!(
        granted[0].contains("bob") && granted[1].contains("carol"),
        "{granted:?}"
    );
    let denied = records
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"]["status"] == "denied")
        .count();
    assert!(denied >= 3, "refusals are audited too ({denied})");
    // The approver and the initiator are fields of their own, not only
    // words in `detail`; `show` and the CSV carry them.
    let approvers: Vec<&str> = records
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["what"]["action"] == "approval.granted")
        .filter_map(|r| r["what"]["approver"].as_str())
        .collect();
    assert_eq!(approvers, ["bob", "carol"]);
    let started = records
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["what"]["action"] == "run.started")
        .expect("a run.started record");
    assert!(
        started["what"]["initiator"]
            .as_str()
            .is_some_and(|i| i.starts_with("deployctl-test")),
        "{started:#}"
    );
    let text = sandbox.run(&["audit", "show", "--run", &run]);
    assert!(
        text.stdout.contains("approver bob") && text.stdout.contains("approver carol"),
        "{text}"
    );
    let csv = sandbox.run(&["audit", "export", "--format", "csv"]);
    let mut lines = csv.stdout.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let column = header
        .iter()
        .position(|c| *c == "approver")
        .expect("an approver column");
    let approved_by: Vec<String> = lines
        .filter(|l| l.contains("approval.granted"))
        .map(|l| csv_cells(l).into_iter().nth(column).unwrap_or_default())
        .collect();
    assert_eq!(approved_by, ["bob", "carol"], "{csv}");

    // `show` narrowed to one person and one family of actions: bob's
    // approval, nothing of carol's; mallory's refused attempt names her.
    let bobs = sandbox.run(&[
        "audit", "show", "--user", "bob", "--action", "approval", "--output", "json",
    ]);
    bobs.expect_code(0);
    let bobs: serde_json::Value = serde_json::from_str(&bobs.stdout).unwrap();
    let bobs = bobs.as_array().unwrap();
    assert_eq!(bobs.len(), 1, "{bobs:#?}");
    assert!(
        bobs.iter().all(|r| {
            r["what"]["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("approval."))
                && (r["what"]["approver"] == "bob"
                    || r["who"]["operator"]
                        .as_str()
                        .is_some_and(|o| o.starts_with("bob")))
        }),
        "{bobs:#?}"
    );
    let mallory = sandbox.run(&["audit", "show", "--user", "mallory", "--output", "json"]);
    let mallory: serde_json::Value = serde_json::from_str(&mallory.stdout).unwrap();
    let mallory = mallory.as_array().unwrap();
    assert!(
        !mallory.is_empty(),
        "mallory's refusal is found by her name"
    );
    assert!(
        mallory
            .iter()
            .all(|r| r["outcome"]["status"] == "denied" && r["what"]["approver"] == "mallory"),
        "{mallory:#?}"
    );
    let granted = sandbox.run(&["audit", "show", "--action", "approval.granted"]);
    assert_eq!(granted.stdout.lines().count(), 2, "{granted}");
    assert!(granted.stdout.contains("approver bob") && granted.stdout.contains("approver carol"));
    let unknown = sandbox.run(&["audit", "show", "--action", "approval.maybe"]);
    unknown.expect_code(2);
    assert!(unknown.stderr.contains("unknown action"), "{unknown}");
}

/// A wrong code is the same refusal wherever it is typed: `mfa confirm`
/// exits 2 as `approve` does, and says how many attempts are left in
/// words that count ("1 attempt", "4 attempts").
#[test]
fn a_wrong_confirmation_code_is_refused_with_exit_2() {
    let sandbox = Sandbox::new("approvals-confirm-wrong");
    let out = sandbox.run(&["--access", ACCESS, "mfa", "enroll", "bob"]);
    out.expect_code(0);
    let wrong = sandbox.run(&["mfa", "confirm", "bob", "--code", "000000"]);
    wrong.expect_code(2);
    assert!(wrong.stderr.contains("wrong MFA code"), "{wrong}");
    assert!(wrong.stderr.contains("attempts left"), "{wrong}");
}

/// `mfa list|unlock|remove` are for the access file's `mfa-admin` alone,
/// audited: carol lifts bob's lockout (he then approves with a fresh
/// code), and removes his enrollment so he can enroll a new phone.
#[test]
fn an_mfa_administrator_lists_unlocks_and_removes_enrollments() {
    let sandbox = Sandbox::new("approvals-mfa-admin");
    let bob = enroll(&sandbox, "bob");
    let as_carol = |args: &[&str]| {
        let mut full = vec!["--access", ACCESS];
        full.extend_from_slice(args);
        let mut command = sandbox.command(&full);
        command.env("DEPLOYCTL_OPERATOR", "carol");
        sandbox
            .spawn_command(command, &full, None)
            .wait(Duration::from_secs(60))
    };
    let (running, run) = paused_run(&sandbox);
    for _ in 0..5 {
        approve(&sandbox, &run, "bob", "000000").expect_code(2);
    }
    // Someone without the role may not look, let alone unlock.
    let refused = sandbox.run(&["--access", ACCESS, "mfa", "unlock", "bob"]);
    refused.expect_code(2);
    assert!(refused.stderr.contains("mfa-admin"), "{refused}");

    let listed = as_carol(&["mfa", "list"]);
    listed.expect_code(0);
    let bob_line = listed
        .stdout
        .lines()
        .find(|l| l.starts_with("bob "))
        .unwrap_or_else(|| panic!("bob is listed\n{listed}"));
    assert!(bob_line.contains("locked"), "{listed}");

    as_carol(&["mfa", "unlock", "bob"]).expect_code(0);
    approve(&sandbox, &run, "bob", &next_code(&bob)).expect_code(0);

    as_carol(&["mfa", "remove", "bob", "--yes"]).expect_code(0);
    let again = as_carol(&["mfa", "remove", "bob", "--yes"]);
    again.expect_code(2);
    assert!(again.stderr.contains("no MFA enrollment"), "{again}");
    // A new phone: enrolling again works once the old one is removed.
    enroll(&sandbox, "bob");
    drop(running);

    // carol is an auditor too.
    let shown = as_carol(&["audit", "show", "--output", "json"]);
    let records: serde_json::Value = serde_json::from_str(&shown.stdout).expect("JSON");
    let by_carol = |action: &str| {
        records.as_array().into_iter().flatten().any(|r| {
            r["what"]["action"] == action
                && r["who"]["operator"] == "carol"
                && r["what"]["target"] == "bob"
        })
    };
    assert!(
        by_carol("mfa.unlocked") && by_carol("mfa.removed"),
        "{records:#}"
    );
    assert!(
        records.as_array().into_iter().flatten().any(|r| {
            r["what"]["action"] == "policy.denied" && r["who"]["operator"] == "deployctl-test"
        }),
        "the refused unlock is audited"
    );
}

#[test]
fn five_wrong_codes_lock_an_approver_out() {
    let sandbox = Sandbox::new("approvals-lockout");
    let bob = enroll(&sandbox, "bob");
    let (running, run) = paused_run(&sandbox);
    for _ in 0..5 {
        approve(&sandbox, &run, "bob", "000000").expect_code(2);
    }
    // Now even the right code is refused.
    let locked = approve(&sandbox, &run, "bob", &next_code(&bob));
    locked.expect_code(2);
    assert!(locked.stderr.contains("locked out"), "{locked}");
    // A rejection by someone else rolls the run back.
    let carol = enroll(&sandbox, "carol");
    sandbox
        .run(&[
            "--access",
            ACCESS,
            "reject",
            &run,
            "--gate",
            "prod-signoff",
            "--user",
            "carol",
            "--reason",
            "not in the change window",
            "--code",
            &next_code(&carol),
        ])
        .expect_code(0);
    running.wait(Duration::from_secs(60)).expect_code(1);
    assert_eq!(sandbox.status(Some(&run))["phase"], "RolledBack");
}

#[test]
fn only_named_operators_may_apply_in_a_protected_environment() {
    let sandbox = Sandbox::new("approvals-operators");
    let mut command = sandbox.command(&["--access", ACCESS, "apply", PLAN, "--yes"]);
    command.env("USER", "bob");
    let out = command.output().expect("deployctl runs");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sandbox.run_ids().is_empty(), "nothing was started");
}

#[test]
fn only_auditors_read_the_trail_when_an_access_file_exists() {
    let sandbox = Sandbox::new("approvals-auditors");
    // Something to read: a rehearsal is audited like any run.
    sandbox
        .run(&["rehearse", "examples/quickstart.yaml"])
        .expect_code(0);
    let as_user = |user: &str| {
        let mut command = sandbox.command(&["--access", ACCESS, "audit", "show"]);
        command.env("USER", user);
        command.output().expect("deployctl runs")
    };
    let bob = as_user("bob");
    assert_eq!(bob.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bob.stderr).contains("only auditors"));
    let carol = as_user("carol");
    assert_eq!(
        carol.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&carol.stderr)
    );
    assert!(String::from_utf8_lossy(&carol.stdout).contains("run.started"));
}

/// Accepts HTTP requests on 127.0.0.1 and hands each request's text over
/// a channel, answering 204; bounded to `max` requests.
fn webhook_listener(max: usize) -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max) {
            let Ok(mut stream) = stream else { continue };
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut request = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head, then as much body as Content-Length says.
            while let Ok(read) = stream.read(&mut chunk) {
                if read == 0 {
                    break;
                }
                request.extend_from_slice(&chunk[..read]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|line| {
                            line.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break;
                    }
                }
            }
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n");
            let _ = sender.send(String::from_utf8_lossy(&request).to_string());
        }
    });
    (port, receiver)
}

#[test]
fn a_failed_code_on_an_approval_alerts_the_plans_security_channel() {
    let sandbox = Sandbox::new("approvals-alert");
    let (port, requests) = webhook_listener(4);
    let plan = std::fs::read_to_string(crate::repo_root().join(PLAN)).unwrap()
        + &format!(
            "notifications:\n  - on: [securityEvent]\n    webhook: {{url: \"http://127.0.0.1:{port}/security\", allowInsecureHttp: true}}\n"
        );
    let plan_path = sandbox.root().join("alerting.yaml");
    std::fs::write(&plan_path, plan).unwrap();
    let plan_path = plan_path.to_str().unwrap().to_string();
    let bob = enroll(&sandbox, "bob");
    let running = sandbox.spawn(&["--access", ACCESS, "apply", &plan_path, "--yes"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let run = loop {
        assert!(
            Instant::now() < deadline,
            "the run never paused for approval"
        );
        if let Some(run) = sandbox.run_ids().pop()
            && sandbox.status(Some(&run))["stages"][0]["phase"] == "Paused"
        {
            break run;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    approve(&sandbox, &run, "bob", "000000").expect_code(2);
    let alert = requests
        .recv_timeout(Duration::from_secs(10))
        .expect("the security channel was called");
    assert!(alert.starts_with("POST /security"), "{alert}");
    assert!(alert.contains("\"event\":\"securityEvent\""), "{alert}");
    assert!(alert.contains(&run), "{alert}");
    // End the run: an approval rejected rolls it back.
    sandbox
        .run(&[
            "--access",
            ACCESS,
            "reject",
            &run,
            "--gate",
            "prod-signoff",
            "--user",
            "bob",
            "--reason",
            "drill over",
            "--code",
            &next_code(&bob),
        ])
        .expect_code(0);
    running.wait(Duration::from_secs(60)).expect_code(1);
}

/// One RFC 4180 CSV line's cells (quoted cells may hold commas and
/// doubled quotes; the trail's records hold no line breaks).
fn csv_cells(line: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cells.last_mut().expect("a cell").push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => cells.push(String::new()),
            (c, _) => cells.last_mut().expect("a cell").push(c),
        }
    }
    cells
}
