//! `deployctl plan FILE --observe` end to end: the live, read-only impact
//! report. Against the sandbox's simulated world (an exact-text snapshot),
//! Lambda on moto, CloudFront and ECS rolling updates on the repository's
//! emulators, and ECS task sets on moto.
//!
//! Every platform test runs the binary in a moto account of its own,
//! through the faults proxy (`tests/emulators/faults.py`: a 12-digit access
//! key names the account; its `upstream` control sends that account's
//! calls to the CloudFront or ECS emulator). Each proves that every call
//! the command made was a read (the proxy's or the emulator's call log),
//! that the platform state is as it was, that no run was recorded, and
//! that `deployctl iam-policy` grants every call it made. Skipped, with a
//! message, when the emulator URLs are unset.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::cloudfront_e2e::{aws_command, http, scope};
use crate::emulators::urls;
use crate::lambda_support::{LambdaAccount, emulators};
use crate::sandbox::{Finished, Sandbox, mask, started_run_id, wait_until};
use crate::{repo_root, snapshot};

/// A moto account for one test (a range apart from `LambdaAccount`'s).
fn new_account() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{:06}{:06}",
        std::process::id() % 1_000_000,
        800_000 + N.fetch_add(1, Ordering::SeqCst)
    )
}

fn write_plan(sandbox: &Sandbox, plan: &str) -> String {
    let path = sandbox.root().join("plan.yaml");
    std::fs::write(&path, plan).expect("plan written");
    path.to_string_lossy().into_owned()
}

/// `deployctl ARGS` in `sandbox`, every AWS call through the proxy in
/// `account`.
fn in_account(sandbox: &Sandbox, args: &[&str], proxy: &str, account: &str) -> Command {
    let mut command = aws_command(sandbox, args, proxy, &[]);
    command.env("AWS_ACCESS_KEY_ID", account);
    command
}

fn run(sandbox: &Sandbox, command: Command, args: &[&str]) -> Finished {
    sandbox
        .spawn_command(command, args, None)
        .wait(crate::sandbox::COMMAND_TIMEOUT)
}

/// `plan PLAN --observe --output json` through `command_for`; the report.
fn observe_json(
    sandbox: &Sandbox,
    plan: &str,
    command_for: impl Fn(&[&str]) -> Command,
) -> (Finished, Value) {
    let args = ["plan", plan, "--observe", "--output", "json"];
    let out = run(sandbox, command_for(&args), &args);
    let report = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|error| panic!("the report is JSON ({error}):\n{out}"));
    (out, report)
}

/// The kinds of the findings of the report's first stage.
fn finding_kinds(report: &Value) -> Vec<String> {
    report["stages"][0]["findings"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|f| f["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The first stage's steps: (description, status, calls).
fn steps(report: &Value) -> Vec<(String, String, Vec<String>)> {
    report["stages"][0]["steps"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|step| {
            (
                step["description"].as_str().unwrap_or_default().to_owned(),
                step["status"].as_str().unwrap_or_default().to_owned(),
                step["calls"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|c| c.as_str().unwrap_or_default().to_owned())
                    .collect(),
            )
        })
        .collect()
}

/// Fails unless every operation only reads.
fn assert_reads_only(operations: &[String], what: &str) {
    assert!(!operations.is_empty(), "{what}: no call was recorded");
    let writes: Vec<&String> = operations
        .iter()
        .filter(|op| {
            !["Get", "List", "Describe"]
                .iter()
                .any(|p| op.starts_with(p))
        })
        .collect();
    assert!(
        writes.is_empty(),
        "{what}: calls that are not reads: {writes:?} (all: {operations:?})"
    );
}

/// Fails unless `deployctl iam-policy PLAN --account ACCOUNT` grants each
/// of `service`'s operations.
fn assert_granted(sandbox: &Sandbox, plan: &str, account: &str, service: &str, ops: &[String]) {
    let out = sandbox.run(&["iam-policy", plan, "--account", account]);
    out.expect_code(0);
    let policy: Value = serde_json::from_str(&out.stdout).expect("the policy is JSON");
    let granted: Vec<String> = policy["Statement"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .flat_map(|s| s["Action"].as_array().cloned().unwrap_or_default())
        .map(|a| a.as_str().unwrap_or_default().to_owned())
        .collect();
    let missing: Vec<String> = ops
        .iter()
        .map(|op| format!("{service}:{op}"))
        .filter(|action| !granted.contains(action))
        .collect();
    assert!(
        missing.is_empty(),
        "iam-policy does not grant {missing:?}, which plan --observe called: {policy:#}"
    );
}

fn no_run_recorded(sandbox: &Sandbox) {
    assert!(
        !sandbox.state_dir().join("journal.sqlite3").exists(),
        "plan --observe created a journal"
    );
}

// ---- the sandbox ----------------------------------------------------------

/// Every file of the sim world with its bytes and modification time.
fn world_files(sandbox: &Sandbox) -> BTreeMap<String, (Vec<u8>, std::time::SystemTime)> {
    std::fs::read_dir(sandbox.sim_dir())
        .expect("the sim world exists")
        .map(|entry| {
            let entry = entry.expect("a dir entry");
            let path = entry.path();
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .expect("an mtime");
            (
                entry.file_name().to_string_lossy().into_owned(),
                (std::fs::read(&path).expect("readable"), modified),
            )
        })
        .collect()
}

/// The quickstart observed in a fresh sandbox reads like the snapshot and
/// leaves no state directory; observed again after a release, it says each
/// target already runs the new version, and neither the world's files nor
/// the history changed.
#[test]
fn the_sandbox_observed_matches_its_snapshot_and_nothing_is_written() {
    let sandbox = Sandbox::new("observe-sandbox");
    let out = sandbox.run(&["plan", "examples/quickstart.yaml", "--observe"]);
    out.expect_code(0);
    let root = sandbox.root().to_string_lossy().into_owned();
    let text = mask(&out.stdout).replace(&root, "<sandbox>");
    let path = repo_root().join("tests/fixtures/cli/plan-observe-quickstart.stdout");
    if let Err(mismatch) = snapshot::check(&path, &text) {
        panic!("{mismatch}");
    }
    assert!(
        !sandbox.state_dir().exists(),
        "plan --observe created the state directory"
    );

    sandbox
        .run(&["apply", "examples/quickstart.yaml", "--yes"])
        .expect_code(0);
    let runs = sandbox.run_ids();
    let files = world_files(&sandbox);
    let journal = std::fs::read(sandbox.state_dir().join("journal.sqlite3")).expect("journal");

    let (out, report) = observe_json(&sandbox, "examples/quickstart.yaml", |args| {
        sandbox.command(args)
    });
    out.expect_code(0);
    assert_eq!(report["kind"], "ObservedImpactReport", "{report:#}");
    for stage in report["stages"].as_array().expect("stages") {
        let kinds: Vec<&str> = stage["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .map(|f| f["kind"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(kinds, ["alreadyReleased"], "{stage:#}");
        // As apply would: a released stage moves nothing.
        let statuses: Vec<&str> = stage["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .map(|s| s["status"].as_str().unwrap_or_default())
            .collect();
        assert!(
            !statuses.is_empty() && statuses.iter().all(|s| *s == "skipped"),
            "{stage:#}"
        );
    }
    assert_eq!(world_files(&sandbox), files, "the sim world changed");
    assert_eq!(sandbox.run_ids(), runs, "plan --observe recorded a run");
    assert_eq!(
        std::fs::read(sandbox.state_dir().join("journal.sqlite3")).expect("journal"),
        journal,
        "the journal changed"
    );
}

/// A target this build cannot run (a fleet whose firmware signature it
/// cannot verify) is refused as `apply` refuses it, before anything is read.
#[test]
fn a_plan_this_build_cannot_run_is_refused_as_apply_refuses_it() {
    let sandbox = Sandbox::new("observe-fleet");
    let out = sandbox.run(&[
        "plan",
        "tests/fixtures/plans/valid/fleet-signer-profile.yaml",
        "--observe",
    ]);
    out.expect_code(2);
    assert!(
        out.stderr
            .contains("this build of deployctl cannot run this plan")
            && out.stderr.contains("AWS Signer profiles")
            && out.stderr.contains("Nothing was changed"),
        "{out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
    assert!(!sandbox.state_dir().exists(), "{out}");
}

// ---- Lambda ---------------------------------------------------------------

/// A canary of the published version 2 from the pinned version 1.
fn lambda_plan(function: &str, pause: &str) -> String {
    format!(
        "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {{name: lambda-observe, environment: test}}\n\
targets:\n  fn:\n    lambda: {{functionName: {function}, alias: live, region: us-east-1}}\n\
artifacts:\n  fn: {{version: \"2\", lambda: {{version: \"2\"}}}}\n\
stages:\n  - name: fn\n    target: fn\n    canary:\n      steps: [{{setWeight: 10}}, {{pause: {{duration: {pause}}}}}, {{setWeight: 100}}]\n\
rollback:\n  stable:\n    fn: {{version: \"1\", lambda: {{version: \"1\"}}}}\n"
    )
}

/// The operations the proxy recorded for `account` from `from` on.
fn lambda_calls_since(account: &LambdaAccount, from: usize) -> Vec<String> {
    account.calls()[from..]
        .iter()
        .map(|call| call["operation"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Observed on a quiet alias, the canary's steps are planned with the
/// UpdateAlias calls apply would make; once someone else weights version
/// 2, that release in flight is reported. Every call either observation
/// made was a read, granted by iam-policy, and the alias is as it was.
#[test]
fn lambda_observed_reads_only_and_reports_a_release_in_flight() {
    let Some((_, proxy)) = emulators("lambda_observed_reads_only_and_reports_a_release_in_flight")
    else {
        return;
    };
    let account = LambdaAccount::new(&proxy, "observe-flight");
    let sandbox = Sandbox::new("observe-lambda");
    let plan = write_plan(&sandbox, &lambda_plan(&account.function, "1m"));
    let before = account.calls().len();

    let (out, report) = observe_json(&sandbox, &plan, |args| account.command(&sandbox, args));
    out.expect_code(0);
    assert!(finding_kinds(&report).is_empty(), "{report:#}");
    let stage = &report["stages"][0];
    assert_eq!(
        stage["identity"],
        format!(
            "arn:aws:lambda:us-east-1:{}:function:{}:live",
            account.id, account.function
        ),
        "{report:#}"
    );
    assert_eq!(stage["now"]["stable"], "1", "{report:#}");
    assert_eq!(stage["planned"]["weights"], json!([10, 100]), "{report:#}");
    let planned = steps(&report);
    assert_eq!(
        planned
            .iter()
            .map(|(step, status, _)| format!("{step}: {status}"))
            .collect::<Vec<_>>(),
        [
            "deploy 2: planned",
            "set weight 10%: planned",
            "set weight 100%: planned",
            "promote: inEffect"
        ],
        "{report:#}"
    );
    assert!(
        planned[..3]
            .iter()
            .all(|(_, _, calls)| calls.iter().any(|c| c.starts_with("lambda:UpdateAlias"))),
        "{planned:?}"
    );

    // Someone else's canary at 10 %.
    let observed_once = account.calls().len();
    account.python(&format!(
        "lam.update_alias(FunctionName='{}', Name='live', FunctionVersion='1', RoutingConfig={{'AdditionalVersionWeights': {{'2': 0.1}}}})\n",
        account.function
    ));
    let changed = account.calls().len();
    let (out, report) = observe_json(&sandbox, &plan, |args| account.command(&sandbox, args));
    out.expect_code(0);
    assert_eq!(finding_kinds(&report), ["releaseInFlight"], "{report:#}");
    let finding = &report["stages"][0]["findings"][0];
    assert_eq!(
        (&finding["candidate"], &finding["weight"]),
        (&json!("2"), &json!(10)),
        "{report:#}"
    );
    assert_eq!(report["summary"]["applyRefused"], false, "{report:#}");
    let text = run(
        &sandbox,
        account.command(&sandbox, &["plan", &plan, "--observe"]),
        &["plan", &plan, "--observe"],
    );
    text.expect_code(0);
    assert!(
        text.stdout
            .contains("now:       1 with 90% of traffic, 2 with 10%")
            && text
                .stdout
                .contains("2 is already deployed beside the stable version with 10% of traffic"),
        "{text}"
    );

    // The observations' calls, without the other writer's.
    let ours: Vec<String> = lambda_calls_since(&account, before)
        .into_iter()
        .take(observed_once - before)
        .chain(lambda_calls_since(&account, changed))
        .collect();
    assert_reads_only(&ours, "plan --observe on Lambda");
    assert_eq!(account.alias(), r#"1 {"2": 0.1}"#, "the alias moved");
    assert_granted(&sandbox, &plan, &account.id, "lambda", &ours);
    no_run_recorded(&sandbox);
}

/// While an `apply` holds the alias (paused for an hour at 10 %), the
/// report names its run as the lock's holder, says `apply` would refuse,
/// and the running release is undisturbed.
#[test]
fn lambda_observed_names_the_run_holding_the_alias() {
    let Some((_, proxy)) = emulators("lambda_observed_names_the_run_holding_the_alias") else {
        return;
    };
    let account = LambdaAccount::new(&proxy, "observe-locked");
    let sandbox = Sandbox::new("observe-locked");
    let plan = write_plan(&sandbox, &lambda_plan(&account.function, "1h"));
    let running = account.spawn(&sandbox, &["apply", &plan, "--yes"]);
    wait_until(Duration::from_secs(60), "the run holds 10 %", || {
        account.alias() == r#"1 {"2": 0.1}"#
    });
    let holder = sandbox.run_ids().first().cloned().expect("the run");

    let (out, report) = observe_json(&sandbox, &plan, |args| account.command(&sandbox, args));
    out.expect_code(0);
    let findings = &report["stages"][0]["findings"];
    let locked = findings
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["kind"] == "locked")
        .unwrap_or_else(|| panic!("no lock reported: {report:#}"));
    assert_eq!(locked["run"], holder.as_str(), "{report:#}");
    assert_eq!(locked["holder"], "deployctl-test@test-host", "{report:#}");
    assert_eq!(locked["refusesApply"], true, "{report:#}");
    assert_eq!(report["summary"]["applyRefused"], true, "{report:#}");
    assert!(
        finding_kinds(&report).contains(&"releaseInFlight".to_owned()),
        "{report:#}"
    );
    let args = ["plan", plan.as_str(), "--observe"];
    let text = run(&sandbox, account.command(&sandbox, &args), &args);
    text.expect_code(0);
    assert!(
        text.stdout.contains(&format!("is locked by run {holder}"))
            && text.stdout.contains("`apply` would refuse this plan"),
        "{text}"
    );
    assert_eq!(account.alias(), r#"1 {"2": 0.1}"#, "nothing moved");
    assert_eq!(
        sandbox.run_ids(),
        std::slice::from_ref(&holder),
        "plan --observe recorded a run"
    );

    sandbox.run(&["kill", &holder, "--yes"]).expect_code(0);
    let finished = running.wait(crate::sandbox::COMMAND_TIMEOUT);
    assert_eq!(started_run_id(&finished.stderr), holder);
    assert_eq!(account.alias(), "1 {}", "{finished}");
}

// ---- CloudFront and ECS ---------------------------------------------------

/// Sends `account`'s calls through the proxy to `upstream`.
fn route_account(proxy: &str, account: &str, upstream: &str) {
    let body = json!({"account": account, "url": upstream}).to_string();
    let (status, text) = http(proxy, "POST", "/_emulator/upstream", &[], &body);
    assert_eq!(status, 200, "{text}");
}

/// An emulator's control endpoint for `account`; the JSON answer.
fn control(url: &str, method: &str, path: &str, account: &str, body: &str) -> Value {
    let (status, text) = http(url, method, path, &[("x-moto-account-id", account)], body);
    assert_eq!(status, 200, "{method} {path}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
}

/// The operations an emulator's call log holds for `account`.
fn emulator_calls(url: &str, account: &str) -> Vec<String> {
    control(url, "GET", "/_emulator/calls", account, "")["calls"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|call| call["operation"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A fresh distribution, observed: its release's calls are planned, every
/// call made was a CloudFront read that iam-policy grants, and the
/// emulator's whole state (ETags included) is unchanged.
#[test]
fn cloudfront_observed_reads_only() {
    let test = "cloudfront_observed_reads_only";
    let Some([proxy, emulator]) = urls(
        test,
        ["DEPLOYCTL_TEST_FAULTS_URL", "DEPLOYCTL_TEST_CLOUDFRONT_URL"],
    ) else {
        return;
    };
    let account = new_account();
    route_account(&proxy, &account, &emulator);
    control(
        &emulator,
        "POST",
        "/_emulator/config",
        &account,
        r#"{"deployGets": 0, "deploySeconds": 0}"#,
    );
    let reference = format!("observe-{account}");
    let config = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<DistributionConfig xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/">
<CallerReference>{reference}</CallerReference>
<Aliases><Quantity>1</Quantity><Items><CNAME>{reference}.example.com</CNAME></Items></Aliases>
<Origins><Quantity>1</Quantity><Items><Origin><Id>app</Id><DomainName>v1.origin.example.com</DomainName>
<CustomOriginConfig><HTTPPort>80</HTTPPort><HTTPSPort>443</HTTPSPort><OriginProtocolPolicy>https-only</OriginProtocolPolicy></CustomOriginConfig>
</Origin></Items></Origins>
<DefaultCacheBehavior><TargetOriginId>app</TargetOriginId><ViewerProtocolPolicy>redirect-to-https</ViewerProtocolPolicy>
<CachePolicyId>658327ea-f89d-4fab-a63d-7e88639e58f6</CachePolicyId></DefaultCacheBehavior>
<Comment>deployctl plan --observe</Comment>
<Enabled>true</Enabled>
</DistributionConfig>"#
    );
    let (status, text) = http(
        &emulator,
        "POST",
        "/2020-05-31/distribution",
        &[
            ("Content-Type", "application/xml"),
            ("Authorization", &scope("cloudfront")),
            ("x-moto-account-id", &account),
        ],
        &config,
    );
    assert_eq!(status, 201, "cloudfront:CreateDistribution: {text}");
    let primary = text
        .split_once("<Id>")
        .and_then(|(_, rest)| rest.split_once("</Id>"))
        .map(|(id, _)| id.to_owned())
        .unwrap_or_else(|| panic!("no distribution ID in {text}"));
    let state = || control(&emulator, "GET", "/_emulator/state", &account, "");
    let before = state();
    control(&emulator, "DELETE", "/_emulator/calls", &account, "");

    let sandbox = Sandbox::new("observe-cloudfront");
    let plan = write_plan(
        &sandbox,
        &format!(
            "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {{name: cloudfront-observe, environment: test}}\n\
targets:\n  cdn:\n    cloudfront: {{distributionId: {primary}}}\n\
artifacts:\n  cdn: {{version: v2, cloudfront: {{originDomain: v2.origin.example.com}}}}\n\
stages:\n  - name: cdn\n    target: cdn\n    canary:\n      steps: [{{setWeight: 5}}, {{setWeight: 15}}]\n"
        ),
    );
    let (out, report) = observe_json(&sandbox, &plan, |args| {
        in_account(&sandbox, args, &proxy, &account)
    });
    out.expect_code(0);
    assert!(finding_kinds(&report).is_empty(), "{report:#}");
    assert_eq!(
        report["stages"][0]["identity"],
        format!("arn:aws:cloudfront::{account}:distribution/{primary}"),
        "{report:#}"
    );
    let planned = steps(&report);
    assert!(
        planned.len() == 4
            && planned[0].2.iter().any(|c| c.contains("CopyDistribution"))
            && planned[3].0 == "promote"
            && planned[3]
                .2
                .iter()
                .any(|c| c.contains("UpdateDistributionWithStagingConfig")),
        "{report:#}"
    );

    let calls = emulator_calls(&emulator, &account);
    assert_reads_only(&calls, "plan --observe on CloudFront");
    assert_eq!(state(), before, "the emulator's state changed");
    assert_granted(&sandbox, &plan, &account, "cloudfront", &calls);
    no_run_recorded(&sandbox);
}

/// One ECS call in the JSON protocol in `account`; the parsed answer.
fn ecs(url: &str, account: &str, operation: &str, body: Value) -> Value {
    let target = format!("AmazonEC2ContainerServiceV20141113.{operation}");
    let (status, text) = http(
        url,
        "POST",
        "/",
        &[
            ("X-Amz-Target", &target),
            ("Content-Type", "application/x-amz-json-1.1"),
            ("Authorization", &scope("ecs")),
            ("x-moto-account-id", account),
        ],
        &body.to_string(),
    );
    assert_eq!(status, 200, "ecs:{operation}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("ecs:{operation}: {e}: {text}"))
}

/// Cluster `observe` with task definitions `web:1` and `web:2` in `account`.
fn ecs_cluster(url: &str, account: &str) {
    ecs(
        url,
        account,
        "CreateCluster",
        json!({"clusterName": "observe"}),
    );
    for _ in 0..2 {
        ecs(
            url,
            account,
            "RegisterTaskDefinition",
            json!({
                "family": "web",
                "containerDefinitions": [{"name": "app", "image": "nginx", "memory": 128}],
                "cpu": "256",
                "memory": "512",
            }),
        );
    }
}

fn ecs_plan(sandbox: &Sandbox, account: &str, steps: &str) -> String {
    write_plan(
        sandbox,
        &format!(
            "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {{name: ecs-observe, environment: test}}\n\
targets:\n  api:\n    ecs: {{cluster: observe, service: web, region: us-east-1}}\n\
artifacts:\n  api: {{version: v2, taskDefinition: \"arn:aws:ecs:us-east-1:{account}:task-definition/web:2\"}}\n\
stages:\n  - name: api\n    target: api\n    canary: {{steps: {steps}}}\n"
        ),
    )
}

fn describe_service(url: &str, account: &str) -> Value {
    ecs(
        url,
        account,
        "DescribeServices",
        json!({"cluster": "observe", "services": ["web"]}),
    )["services"][0]
        .clone()
}

/// A service on the ECS (rolling update) controller takes no canary
/// weights: observed with a canary, the report says `apply` would refuse
/// it as unsupported, the adapter refuses the 10 % step, and every call
/// was a read on an unchanged service.
#[test]
fn ecs_rolling_observed_reports_a_canary_as_unsupported() {
    let test = "ecs_rolling_observed_reports_a_canary_as_unsupported";
    let Some([proxy, emulator]) = urls(
        test,
        ["DEPLOYCTL_TEST_FAULTS_URL", "DEPLOYCTL_TEST_ECS_URL"],
    ) else {
        return;
    };
    let account = new_account();
    route_account(&proxy, &account, &emulator);
    control(
        &emulator,
        "POST",
        "/_emulator/config",
        &account,
        r#"{"stepSeconds": 0.02}"#,
    );
    ecs_cluster(&emulator, &account);
    ecs(
        &emulator,
        &account,
        "CreateService",
        json!({
            "cluster": "observe",
            "serviceName": "web",
            "taskDefinition": "web:1",
            "desiredCount": 2,
            "deploymentConfiguration": {
                "maximumPercent": 200,
                "minimumHealthyPercent": 100,
                "deploymentCircuitBreaker": {"enable": true, "rollback": true},
            },
        }),
    );
    wait_until(Duration::from_secs(30), "web:1 rolled out", || {
        describe_service(&emulator, &account)["deployments"]
            .as_array()
            .is_some_and(|d| d.len() == 1 && d[0]["rolloutState"] == "COMPLETED")
    });
    let before = describe_service(&emulator, &account);
    control(&emulator, "DELETE", "/_emulator/calls", &account, "");

    let sandbox = Sandbox::new("observe-ecs-rolling");
    let plan = ecs_plan(&sandbox, &account, "[{setWeight: 10}, {setWeight: 100}]");
    let (out, report) = observe_json(&sandbox, &plan, |args| {
        in_account(&sandbox, args, &proxy, &account)
    });
    out.expect_code(0);
    assert_eq!(finding_kinds(&report), ["unsupported"], "{report:#}");
    let finding = &report["stages"][0]["findings"][0];
    assert!(
        finding["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot take a 10% canary weight")),
        "{report:#}"
    );
    assert_eq!(finding["refusesApply"], true, "{report:#}");
    assert_eq!(report["summary"]["applyRefused"], true, "{report:#}");
    let statuses: Vec<String> = steps(&report)
        .into_iter()
        .map(|(step, status, _)| format!("{step}: {status}"))
        .collect();
    assert_eq!(
        statuses,
        [
            "deploy v2: planned",
            "set weight 10%: refused",
            "set weight 100%: notPlanned",
            "promote: notPlanned"
        ],
        "{report:#}"
    );

    let calls = emulator_calls(&emulator, &account);
    assert_reads_only(&calls, "plan --observe on an ECS rolling service");
    assert_eq!(
        describe_service(&emulator, &account),
        before,
        "the service changed"
    );
    assert_granted(&sandbox, &plan, &account, "ecs", &calls);
    no_run_recorded(&sandbox);
}

/// A task-set (EXTERNAL controller) service on moto, observed: its canary
/// is planned as task-set calls, every call was a read iam-policy grants,
/// and the task sets are as they were.
#[test]
fn ecs_task_sets_observed_read_only() {
    let test = "ecs_task_sets_observed_read_only";
    let Some([moto, proxy]) = urls(
        test,
        ["DEPLOYCTL_TEST_MOTO_URL", "DEPLOYCTL_TEST_FAULTS_URL"],
    ) else {
        return;
    };
    let account = new_account();
    // Fixtures straight to moto, so the proxy logs only the binary's calls.
    ecs_cluster(&moto, &account);
    ecs(
        &moto,
        &account,
        "CreateService",
        json!({
            "cluster": "observe",
            "serviceName": "web",
            "desiredCount": 4,
            "deploymentController": {"type": "EXTERNAL"},
        }),
    );
    // moto's workaround: the first task set at scale 0, then scaled.
    let created = ecs(
        &moto,
        &account,
        "CreateTaskSet",
        json!({
            "cluster": "observe",
            "service": "web",
            "taskDefinition": "web:1",
            "externalId": "v1",
            "launchType": "FARGATE",
            "scale": {"value": 0.0, "unit": "PERCENT"},
        }),
    );
    let arn = created["taskSet"]["taskSetArn"]
        .as_str()
        .expect("a task set ARN")
        .to_owned();
    ecs(
        &moto,
        &account,
        "UpdateTaskSet",
        json!({"cluster": "observe", "service": "web", "taskSet": arn, "scale": {"value": 100.0, "unit": "PERCENT"}}),
    );
    ecs(
        &moto,
        &account,
        "UpdateServicePrimaryTaskSet",
        json!({"cluster": "observe", "service": "web", "primaryTaskSet": arn}),
    );
    let task_sets = || describe_service(&moto, &account)["taskSets"].clone();
    let before = task_sets();

    let sandbox = Sandbox::new("observe-ecs-task-sets");
    let plan = ecs_plan(&sandbox, &account, "[{setWeight: 10}, {setWeight: 50}]");
    let (out, report) = observe_json(&sandbox, &plan, |args| {
        in_account(&sandbox, args, &proxy, &account)
    });
    out.expect_code(0);
    assert!(finding_kinds(&report).is_empty(), "{report:#}");
    assert_eq!(report["stages"][0]["now"]["stable"], "v1", "{report:#}");
    let planned = steps(&report);
    assert!(
        planned
            .iter()
            .all(|(_, status, calls)| status == "planned" && !calls.is_empty())
            && planned[0].2.iter().any(|c| c.contains("CreateTaskSet")),
        "{report:#}"
    );

    let path = format!("/_emulator/calls?account={account}");
    let (status, text) = http(&proxy, "GET", &path, &[], "");
    assert_eq!(status, 200, "{text}");
    let calls: Vec<String> = serde_json::from_str::<Value>(&text).expect("calls JSON")["calls"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|call| call["operation"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_reads_only(&calls, "plan --observe on ECS task sets");
    assert_eq!(task_sets(), before, "the task sets changed");
    assert_granted(&sandbox, &plan, &account, "ecs", &calls);
    no_run_recorded(&sandbox);
}
