//! Team locks across deploy PCs (issue 11), through the binary on moto:
//! each PC is its own state directory and host name, all share one
//! `--backend s3://…`. PC B's apply of the target PC A is releasing is
//! refused naming A's PC, operator and run, and nothing moves; after A is
//! SIGKILLed its lease runs out, B is still refused until an operator
//! breaks the lock (audited), and then B runs.

use std::process::Command;
use std::time::Duration;

use crate::lambda_support::{LambdaAccount, emulators};
use crate::sandbox::{Running, Sandbox, wait_until};

/// A canary that first waits an hour at 0 %: the run holds its locks and
/// sends the new version no traffic.
fn plan(function: &str) -> String {
    format!(
        "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {{name: team-locks, environment: test}}\n\
targets:\n  fn:\n    lambda: {{functionName: \"{function}\", alias: live, region: us-east-1}}\n\
artifacts:\n  fn: {{version: \"2\", lambda: {{version: \"2\"}}}}\n\
stages:\n  - name: fn\n    target: fn\n    canary:\n      steps: [{{pause: {{duration: 1h}}}}, {{setWeight: 10}}, {{setWeight: 100}}]\n"
    )
}

/// One moto account with a Lambda function, the team's bucket and the
/// KMS key that wraps the team's MFA key.
struct Team {
    account: LambdaAccount,
    backend: String,
    mfa_kms_key: String,
}

impl Team {
    fn new(proxy: &str, label: &str) -> Team {
        let account = LambdaAccount::new(proxy, label);
        let bucket = format!("team-{}", account.id);
        let mfa_kms_key = account
            .python(&format!(
                "boto3.client('s3', **kw).create_bucket(Bucket='{bucket}')\n\
print(boto3.client('kms', **kw).create_key()['KeyMetadata']['KeyId'])\n"
            ))
            .trim()
            .to_string();
        Team {
            account,
            backend: format!("s3://{bucket}/deployctl"),
            mfa_kms_key,
        }
    }

    fn pc(&self, name: &'static str, operator: &'static str) -> Pc<'_> {
        Pc {
            name,
            operator,
            sandbox: Sandbox::new(&format!("{}-{name}", self.account.function)),
            account: &self.account,
            backend: self.backend.clone(),
            mfa_kms_key: self.mfa_kms_key.clone(),
        }
    }
}

/// One deploy PC: its own state directory and host name, the team's
/// backend.
struct Pc<'a> {
    name: &'static str,
    operator: &'static str,
    sandbox: Sandbox,
    account: &'a LambdaAccount,
    backend: String,
    mfa_kms_key: String,
}

impl Pc<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = self.account.command(&self.sandbox, args);
        command
            .env("HOSTNAME", self.name)
            .env("USER", self.operator)
            .env("DEPLOYCTL_BACKEND", &self.backend)
            .env("DEPLOYCTL_MFA_KMS_KEY", &self.mfa_kms_key)
            .env_remove("DEPLOYCTL_MFA_KEY")
            .env("DEPLOYCTL_LOCK_LEASE_SECONDS", "3");
        command
    }

    fn spawn(&self, args: &[&str]) -> Running {
        self.sandbox.spawn_command(self.command(args), args, None)
    }

    fn run(&self, args: &[&str]) -> crate::sandbox::Finished {
        self.spawn(args).wait(crate::sandbox::COMMAND_TIMEOUT)
    }

    fn plan_file(&self) -> String {
        let path = self.sandbox.root().join("plan.yaml");
        std::fs::write(&path, plan(&self.account.function)).expect("plan written");
        path.to_string_lossy().into_owned()
    }

    fn locks(&self) -> serde_json::Value {
        let out = self.run(&["lock", "list", "--output", "json"]);
        out.expect_code(0);
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    }
}

#[test]
fn a_second_pc_is_refused_and_a_dead_pcs_lock_is_freed_only_by_an_audited_break() {
    let Some((_, proxy)) =
        emulators("a_second_pc_is_refused_and_a_dead_pcs_lock_is_freed_only_by_an_audited_break")
    else {
        return;
    };
    let team = Team::new(&proxy, "team-locks");
    let account = &team.account;
    let (a, b) = (team.pc("pc-a", "alice"), team.pc("pc-b", "bob"));
    let alias_arn = format!(
        "arn:aws:lambda:us-east-1:{}:function:{}:live",
        account.id, account.function
    );

    let plan_a = a.plan_file();
    let running = a.spawn(&["apply", &plan_a, "--yes"]);
    wait_until(Duration::from_secs(60), "PC A holds the team lock", || {
        a.locks()
            .as_array()
            .is_some_and(|locks| locks.iter().any(|l| l["state"] == "held"))
    });
    // Its canary is deployed at 0 % and pauses there.
    wait_until(Duration::from_secs(60), "A's canary is deployed", || {
        account.alias() == r#"1 {"2": 0.0}"#
    });
    let run_a = a.sandbox.run_ids().first().cloned().expect("A's run");

    // PC B, three seconds later in the story: refused, naming A.
    let plan_b = b.plan_file();
    let alias_before = account.alias();
    let refused = b.run(&["apply", &plan_b, "--yes"]);
    refused.expect_code(2);
    for named in [
        format!("is locked by run {run_a}"),
        "operator alice@pc-a on PC pc-a".to_owned(),
        alias_arn.clone(),
        "Nothing was changed".to_owned(),
    ] {
        assert!(
            refused.stderr.contains(&named),
            "missing {named:?}: {refused}"
        );
    }
    assert!(b.sandbox.run_ids().is_empty(), "a refusal is not a run");
    assert_eq!(account.alias(), alias_before, "nothing moved");

    // A's PC dies. Its lease (3 s here) runs out, and B is still refused:
    // the lock is not taken over silently.
    assert!(!running.sigkill(), "A's run was still going when killed");
    std::thread::sleep(Duration::from_secs(4));
    let refused = b.run(&["apply", &plan_b, "--yes"]);
    refused.expect_code(2);
    assert!(
        refused.stderr.contains("lease ran out") && refused.stderr.contains("lock break"),
        "{refused}"
    );
    assert!(b.sandbox.run_ids().is_empty());

    // An operator on B breaks it, with a reason; the trail says so.
    let broken = b.run(&["lock", "break", &alias_arn, "--reason", "pc-a lost power"]);
    broken.expect_code(0);
    assert!(broken.stdout.contains(&run_a), "{broken}");
    let audit = b.run(&["audit", "show", "--output", "json"]);
    audit.expect_code(0);
    assert!(
        audit.stdout.contains("lock.broken") && audit.stdout.contains("pc-a lost power"),
        "{audit}"
    );
    // Breaking it again finds nothing to break.
    b.run(&["lock", "break", &alias_arn, "--reason", "again"])
        .expect_code(2);

    // B's release now runs and holds the lock as B's.
    let running_b = b.spawn(&["apply", &plan_b, "--yes"]);
    wait_until(Duration::from_secs(60), "PC B holds the team lock", || {
        b.locks().as_array().is_some_and(|locks| {
            locks
                .iter()
                .any(|l| l["state"] == "held" && l["pc"] == "pc-b")
        })
    });
    let run_b = b.sandbox.run_ids().first().cloned().expect("B's run");
    // A live lease cannot be broken: kill the run instead.
    let alive = a.run(&["lock", "break", &alias_arn, "--reason", "mistake"]);
    alive.expect_code(2);
    assert!(
        alive.stderr.contains(&format!("deployctl kill {run_b}")),
        "{alive}"
    );

    // B's run ends (killed): its lock is given back, free for anyone.
    b.run(&["kill", &run_b, "--yes"]).expect_code(0);
    running_b.wait(crate::sandbox::COMMAND_TIMEOUT);
    let locks = b.locks();
    let lock = &locks.as_array().expect("a list")[0];
    assert_eq!(lock["state"], "free", "{locks}");
    assert_eq!(lock["run"], run_b.as_str());
}

/// A canary holding at 10 % for an hour.
fn holding_plan(function: &str) -> String {
    plan(function).replace(
        "[{pause: {duration: 1h}}, {setWeight: 10}, {setWeight: 100}]",
        "[{setWeight: 10}, {pause: {duration: 1h}}, {setWeight: 100}]",
    )
}

/// PC A applies a canary that holds at 10 % for an hour; returns its
/// process and run once PC B sees the run there in the backend.
fn a_holds_ten_percent(a: &Pc<'_>, b: &Pc<'_>) -> (Running, String) {
    let plan_a = a.sandbox.root().join("plan.yaml");
    std::fs::write(&plan_a, holding_plan(&a.account.function)).unwrap();
    let running = a.spawn(&["apply", &plan_a.to_string_lossy(), "--yes"]);
    wait_until(Duration::from_secs(60), "A's canary holds 10 %", || {
        a.account.alias() == r#"1 {"2": 0.1}"#
    });
    let run_a = a.sandbox.run_ids().first().cloned().expect("A's run");
    wait_until(Duration::from_secs(10), "B sees A's run at 10 %", || {
        let out = b.run(&["status", &run_a, "--output", "json"]);
        let record: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap_or_default();
        record["pc"] == "pc-a" && record["stages"][0]["weight"] == 10
    });
    (running, run_a)
}

#[test]
fn a_run_driven_on_one_pc_is_seen_and_killed_from_another() {
    let Some((_, proxy)) = emulators("a_run_driven_on_one_pc_is_seen_and_killed_from_another")
    else {
        return;
    };
    let team = Team::new(&proxy, "team-kill");
    let account = &team.account;
    let (a, b) = (team.pc("pc-a", "alice"), team.pc("pc-b", "bob"));
    // B sees A's run from the backend's record.
    let (running, run_a) = a_holds_ten_percent(&a, &b);
    let text = b.run(&["status", &run_a]);
    text.expect_code(0);
    assert!(
        text.stdout.contains("on PC pc-a") && text.stdout.contains("weight 10%"),
        "{text}"
    );

    // B kills it: A's process rolls back and ends; B's command returns
    // when the backend's record says so.
    let asked = std::time::Instant::now();
    let killed = b.run(&["kill", &run_a, "--yes"]);
    killed.expect_code(0);
    let took = asked.elapsed();
    assert!(killed.stderr.contains("PC pc-a drives run"), "{killed}");
    assert_eq!(account.alias(), "1 {}", "traffic back on stable: {killed}");
    let finished = running.wait(crate::sandbox::COMMAND_TIMEOUT);
    assert!(finished.stderr.contains("Killed"), "{finished}");
    eprintln!(
        "kill from another PC: alias back on stable {} ms after the command started",
        took.as_millis()
    );

    // Both PCs say how it ended; B's history lists the team's run; B's
    // trail has B's request.
    let status = b.run(&["status", &run_a, "--output", "json"]);
    assert!(status.stdout.contains("\"phase\":\"Killed\""), "{status}");
    let history = b.run(&["history", "--output", "json"]);
    history.expect_code(0);
    let listed: serde_json::Value = serde_json::from_str(&history.stdout).expect("JSON");
    assert_eq!(listed[0]["run"], run_a.as_str(), "{history}");
    assert_eq!(listed[0]["phase"], "Killed", "{history}");
    assert_eq!(listed[0]["initiator"], "alice@pc-a", "{history}");
    let audit = b.run(&["audit", "show", "--output", "json"]);
    assert!(
        audit.stdout.contains("kill.requested") && audit.stdout.contains(&run_a),
        "{audit}"
    );
    // And the lock is free again.
    let locks = b.locks();
    assert_eq!(locks[0]["state"], "free", "{locks}");
}

#[test]
fn a_run_whose_pc_died_is_rolled_back_from_another_pc_which_the_dead_pc_then_cannot_resume() {
    let Some((_, proxy)) = emulators(
        "a_run_whose_pc_died_is_rolled_back_from_another_pc_which_the_dead_pc_then_cannot_resume",
    ) else {
        return;
    };
    let team = Team::new(&proxy, "team-takeover");
    let account = &team.account;
    let (a, b) = (team.pc("pc-a", "alice"), team.pc("pc-b", "bob"));
    let (running, run_a) = a_holds_ten_percent(&a, &b);

    // PC A dies mid-release; its lease (3 s) runs out.
    assert!(!running.sigkill(), "A's run was still going when killed");
    std::thread::sleep(Duration::from_secs(4));

    // The runbook on PC B: roll the run back from the backend's record.
    let rolled = b.run(&["rollback", &run_a, "--yes"]);
    rolled.expect_code(0);
    assert!(
        rolled.stderr.contains("taking run") && rolled.stderr.contains("PC pc-a is gone"),
        "{rolled}"
    );
    assert_eq!(account.alias(), "1 {}", "traffic back on stable: {rolled}");
    let status = b.run(&["status", &run_a, "--output", "json"]);
    assert!(status.stdout.contains("RolledBack"), "{status}");
    let history = b.run(&["history", "--output", "json"]);
    assert_eq!(
        history.stdout.matches(run_a.as_str()).count(),
        1,
        "the run taken over is listed once: {history}"
    );
    let locks = b.locks();
    assert_eq!(locks[0]["state"], "free", "{locks}");
    assert_eq!(
        locks[0]["pc"], "pc-b",
        "B held it for the rollback: {locks}"
    );
    let audit = b.run(&["audit", "show", "--output", "json"]);
    assert!(
        audit.stdout.contains("run.takenOver") && audit.stdout.contains("pc-a"),
        "{audit}"
    );

    // PC A comes back: its run was taken over, so it does not drive it.
    let resumed = a.run(&["resume", &run_a]);
    resumed.expect_code(2);
    assert!(
        resumed.stderr.contains("taken over by PC pc-b"),
        "{resumed}"
    );
    assert_eq!(account.alias(), "1 {}", "nothing moved: {resumed}");
}

const TEAM_ACCESS: &str = "apiVersion: deployctl.io/v1\nkind: Access\nusers:\n  alice: {roles: [operator, approver], awsPrincipals: [\"arn:aws:sts::*:user/moto\"]}\n  bob: {roles: [approver]}\n  carol: {roles: [approver]}\nenvironments:\n  test:\n    operators: [alice]\nroles:\n  release-approver: [alice, bob, carol]\n";

impl Pc<'_> {
    /// The team's access file, written in this PC's sandbox.
    fn access(&self) -> String {
        let path = self.sandbox.root().join("access.yaml");
        std::fs::write(&path, TEAM_ACCESS).expect("access file written");
        path.to_string_lossy().into_owned()
    }

    /// Enrolls `user` from this PC in the team's MFA store; their
    /// authenticator and its secret (base32).
    fn enroll(&self, user: &str) -> (totp_rs::Totp, String) {
        let access = self.access();
        let enrolled = crate::approvals::authenticator(
            &self.run(&["--access", &access, "mfa", "enroll", user]),
        );
        let code = crate::approvals::current_code(&enrolled.0);
        self.run(&["mfa", "confirm", user, "--code", &code])
            .expect_code(0);
        enrolled
    }

    fn decide(&self, verb: &str, run: &str, user: &str, code: &str) -> crate::sandbox::Finished {
        let access = self.access();
        let mut args = vec![
            "--access", &access, verb, run, "--gate", "signoff", "--user", user, "--code", code,
        ];
        if verb == "reject" {
            args.extend(["--reason", "replayed"]);
        }
        self.run(&args)
    }

    fn approve(&self, run: &str, user: &str, code: &str) -> crate::sandbox::Finished {
        self.decide("approve", run, user, code)
    }
}

#[test]
fn approvers_on_two_other_pcs_release_a_run_paused_on_a_third() {
    let Some((_, proxy)) = emulators("approvers_on_two_other_pcs_release_a_run_paused_on_a_third")
    else {
        return;
    };
    let team = Team::new(&proxy, "team-approve");
    let account = &team.account;
    let (a, b, c) = (
        team.pc("pc-a", "alice"),
        team.pc("pc-b", "bob"),
        team.pc("pc-c", "carol"),
    );
    let plan = plan(&account.function).replace(
        "[{pause: {duration: 1h}}, {setWeight: 10}, {setWeight: 100}]",
        "[{setWeight: 10}, {approval: signoff}, {setWeight: 100}]",
    ) + "approvals:\n  signoff: {role: release-approver, required: 2, timeout: 10m}\n";
    let plan_a = a.sandbox.root().join("plan.yaml");
    std::fs::write(&plan_a, plan).unwrap();
    // One MFA store for the team: each person enrolls once, on any PC,
    // and approves from any other.
    let (bob, bobs_secret) = c.enroll("bob");
    let (carol, _) = b.enroll("carol");
    let (alice_on_b, _) = c.enroll("alice");
    let access_a = a.access();
    let running = a.spawn(&[
        "--access",
        &access_a,
        "apply",
        &plan_a.to_string_lossy(),
        "--yes",
    ]);
    let run_a = {
        let mut found = None;
        wait_until(
            Duration::from_secs(60),
            "A's run waits for sign-off",
            || {
                found = a.sandbox.run_ids().first().cloned();
                found.as_ref().is_some_and(|run| {
                    let out = b.run(&["status", run, "--output", "json"]);
                    let record: serde_json::Value =
                        serde_json::from_str(out.stdout.trim()).unwrap_or_default();
                    record["stages"][0]["phase"] == "Paused" && record["stages"][0]["weight"] == 10
                })
            },
        );
        found.expect("A's run")
    };
    let code = crate::approvals::next_code;

    // Four eyes hold across PCs: the initiator cannot approve from B.
    let own = b.approve(&run_a, "alice", &code(&alice_on_b));
    own.expect_code(2);
    assert!(own.stderr.contains("started this run"), "{own}");

    // Bob on B: kept in the backend for A.
    let bobs_code = code(&bob);
    let first = b.approve(&run_a, "bob", &bobs_code);
    first.expect_code(0);
    assert!(first.stderr.contains("approvers so far: bob"), "{first}");
    // A second approval by bob counts for nothing.
    let again = b.approve(&run_a, "bob", &bobs_code);
    again.expect_code(2);
    assert!(again.stderr.contains("already approved"), "{again}");
    // Bob's code, spent on B, replayed on C (to reject the run) is
    // refused: the team's store saw it used.
    let replayed = c.decide("reject", &run_a, "bob", &bobs_code);
    replayed.expect_code(2);
    assert!(
        replayed.stderr.contains("already used"),
        "a code accepted on B is refused on C: {replayed}"
    );
    assert_eq!(account.alias(), r#"1 {"2": 0.1}"#, "one approval of two");

    // Carol on C: the second; A's run goes on to 100 %.
    c.approve(&run_a, "carol", &code(&carol)).expect_code(0);
    let finished = running.wait(crate::sandbox::COMMAND_TIMEOUT);
    finished.expect_code(0);
    assert_eq!(account.alias(), "2 {}", "{finished}");
    // A's trail names both approvers; B's and C's their MFA checks.
    let trail = a.run(&["audit", "show", "--output", "json"]);
    assert!(
        trail.stdout.contains("approval.granted")
            && trail.stdout.contains("\"bob\"")
            && trail.stdout.contains("\"carol\""),
        "{trail}"
    );
    let on_c = c.run(&["audit", "show", "--output", "json"]);
    assert!(
        on_c.stdout.contains("mfa.verified") && on_c.stdout.contains("mfa.failed"),
        "{on_c}"
    );
    // `audit show` on any PC lists what every PC recorded about the run:
    // B sees A's run and C's approval, each named by its PC.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let on_b = loop {
        let out = b.run(&["audit", "show", "--run", &run_a]);
        if out.stdout.contains("[PC pc-a]") && out.stdout.contains("[PC pc-c]") {
            break out;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "A's and C's trails are not in B's `audit show`: {out}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    on_b.expect_code(0);
    assert!(
        on_b.stdout
            .lines()
            .any(|l| l.contains("approval.granted") && l.contains("[PC pc-a]")),
        "{on_b}"
    );
    // Nothing secret in the backend in clear: each secret is sealed under
    // the master key, which only KMS unwraps.
    let objects = account.python(&format!(
        "s3 = boto3.client('s3', **kw)\n\
bucket, prefix = '{}'.removeprefix('s3://').split('/', 1)\n\
for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix + '/mfa/')['Contents']:\n    \
print(o['Key'], s3.get_object(Bucket=bucket, Key=o['Key'])['Body'].read().decode())\n",
        team.backend
    ));
    assert!(
        objects.contains("mfa/users/bob.json") && objects.contains("mfa/key.kms.json"),
        "{objects}"
    );
    assert!(!objects.contains(&bobs_secret), "{objects}");
}

#[test]
fn with_a_team_backend_a_key_only_one_pc_has_is_refused_for_mfa() {
    let Some((_, proxy)) =
        emulators("with_a_team_backend_a_key_only_one_pc_has_is_refused_for_mfa")
    else {
        return;
    };
    let team = Team::new(&proxy, "team-mfa-key");
    let a = team.pc("pc-a", "alice");
    let access = a.access();
    let mut command = a.command(&["--access", &access, "mfa", "enroll", "bob"]);
    command.env_remove("DEPLOYCTL_MFA_KMS_KEY");
    let out = a
        .sandbox
        .spawn_command(command, &["mfa", "enroll", "bob"], None)
        .wait(crate::sandbox::COMMAND_TIMEOUT);
    out.expect_code(2);
    assert!(
        out.stderr.contains("DEPLOYCTL_MFA_KMS_KEY") && out.stderr.contains("shared"),
        "{out}"
    );
    assert!(
        !a.sandbox.state_dir().join("mfa.key").exists() && !out.stderr.contains("otpauth://"),
        "nothing enrolled, no key made: {out}"
    );
}

#[test]
fn a_pc_acting_under_an_aws_identity_that_is_not_the_operators_takes_no_lock() {
    let Some((_, proxy)) =
        emulators("a_pc_acting_under_an_aws_identity_that_is_not_the_operators_takes_no_lock")
    else {
        return;
    };
    let team = Team::new(&proxy, "team-identity");
    let account = &team.account;
    let b = team.pc("pc-b", "alice");
    // B's credentials are a role's that is not alice's (her listed
    // identity is the account's moto user).
    let credentials = account.python(&format!(
        "c = boto3.client('sts', **kw).assume_role(RoleArn='arn:aws:iam::{}:role/intruder', RoleSessionName='pc-b')['Credentials']\n\
print(c['AccessKeyId'], c['SecretAccessKey'], c['SessionToken'])\n",
        account.id
    ));
    let parts: Vec<&str> = credentials.split_whitespace().collect();
    let [key, secret, token] = parts[..] else {
        panic!("role credentials: {credentials}");
    };
    let (access, plan) = (b.access(), b.plan_file());
    let args = ["--access", access.as_str(), "apply", plan.as_str(), "--yes"];
    let mut command = b.command(&args);
    command
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_SESSION_TOKEN", token);
    let refused = b
        .sandbox
        .spawn_command(command, &args, None)
        .wait(crate::sandbox::COMMAND_TIMEOUT);
    refused.expect_code(2);
    assert!(
        refused.stderr.contains("assumed-role/intruder/pc-b")
            && refused.stderr.contains("users.alice.awsPrincipals"),
        "{refused}"
    );
    assert_eq!(account.alias(), "1 {}", "nothing moved: {refused}");
    assert_eq!(b.locks(), serde_json::json!([]), "no lock taken");
    assert!(b.sandbox.run_ids().is_empty(), "no run recorded");
    let trail = b.run(&["audit", "show", "--output", "json"]);
    assert!(
        trail.stdout.contains("policy.denied") && trail.stdout.contains("assumed-role/intruder"),
        "the refusal is audited with the identity: {trail}"
    );
}
