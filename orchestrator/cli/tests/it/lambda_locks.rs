//! Locks by platform identity, on moto (issue 9): two plans that name one
//! Lambda alias differently — the region in the plan or from
//! `AWS_REGION`, the function by name or by ARN — lock the same alias ARN,
//! which preflight reads from Lambda. While the first run holds it, the
//! second is refused with exit 2 naming the holder, nothing moves, and the
//! refusal is audited without adding a run to the history.

use std::time::Duration;

use crate::lambda_support::{LambdaAccount, emulators};
use crate::sandbox::{Sandbox, started_run_id, wait_until};

/// A canary that stops at 10 % for an hour: the run holds its lock.
fn plan(function: &str, region: Option<&str>) -> String {
    let region = region
        .map(|region| format!(", region: {region}"))
        .unwrap_or_default();
    format!(
        "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {{name: lambda-locks, environment: test}}\n\
targets:\n  fn:\n    lambda: {{functionName: \"{function}\", alias: live{region}}}\n\
artifacts:\n  fn: {{version: \"2\", lambda: {{version: \"2\"}}}}\n\
stages:\n  - name: fn\n    target: fn\n    canary:\n      steps: [{{setWeight: 10}}, {{pause: {{duration: 1h}}}}, {{setWeight: 100}}]\n"
    )
}

fn write(sandbox: &Sandbox, name: &str, text: &str) -> String {
    let path = sandbox.root().join(name);
    std::fs::write(&path, text).expect("plan written");
    path.to_string_lossy().into_owned()
}

/// Runs the first plan until it holds the alias at 10 %, then the second
/// in the same state directory; checks the refusal, then kills the first.
fn second_plan_is_refused(test: &str, label: &str, second: impl Fn(&LambdaAccount) -> String) {
    let Some((_, proxy)) = emulators(test) else {
        return;
    };
    let account = LambdaAccount::new(&proxy, label);
    let sandbox = Sandbox::new(label);
    let first = write(
        &sandbox,
        "first.yaml",
        &plan(&account.function, Some("us-east-1")),
    );
    let running = account.spawn(&sandbox, &["apply", &first, "--yes"]);
    wait_until(Duration::from_secs(60), "the first run holds 10 %", || {
        account.alias() == r#"1 {"2": 0.1}"#
    });
    let holder = sandbox.run_ids().first().cloned().expect("the first run");

    let second = write(&sandbox, "second.yaml", &second(&account));
    let out = account.run(&sandbox, &["apply", &second, "--yes"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains(&format!("is locked by run {holder}"))
            && out.stderr.contains("Nothing was changed"),
        "{out}"
    );
    assert!(
        out.stderr.contains(&format!(
            "arn:aws:lambda:us-east-1:{}:function:{}:live",
            account.id, account.function
        )),
        "the lock names the alias ARN: {out}"
    );
    assert_eq!(account.alias(), r#"1 {"2": 0.1}"#, "nothing moved");
    assert_eq!(
        sandbox.run_ids(),
        std::slice::from_ref(&holder),
        "a refusal is not a run"
    );
    let audit = sandbox.run(&["audit", "show", "--output", "json"]);
    audit.expect_code(0);
    assert!(
        audit.stdout.contains("run.refused") && audit.stdout.contains("is locked by run"),
        "the refusal is audited: {audit}"
    );

    // The holder is undisturbed: killing it rolls the alias back.
    sandbox.run(&["kill", &holder, "--yes"]).expect_code(0);
    let finished = running.wait(crate::sandbox::COMMAND_TIMEOUT);
    assert_eq!(started_run_id(&finished.stderr), holder);
    assert_eq!(account.alias(), "1 {}", "{finished}");
}

#[test]
fn a_plan_relying_on_aws_region_is_excluded_by_one_naming_the_region() {
    second_plan_is_refused(
        "a_plan_relying_on_aws_region_is_excluded_by_one_naming_the_region",
        "locks-region",
        // No region: the AWS chain's (AWS_REGION=us-east-1 in the command).
        |account| plan(&account.function, None),
    );
}

#[test]
fn a_function_named_by_arn_is_excluded_by_the_same_function_named_by_name() {
    second_plan_is_refused(
        "a_function_named_by_arn_is_excluded_by_the_same_function_named_by_name",
        "locks-arn",
        |account| {
            plan(
                &format!(
                    "arn:aws:lambda:us-east-1:{}:function:{}",
                    account.id, account.function
                ),
                Some("us-east-1"),
            )
        },
    );
}
