//! CloudWatch gates, SNS notifications and the AWS caller in the audit
//! trail, through the binary against the moto server `tests/run.sh`
//! starts (skipped, with a message, when `DEPLOYCTL_TEST_MOTO_URL` is not
//! set). The targets are `sim` targets: what is under test is the AWS
//! signal path, not a cloud target.
//!
//! Like `aws.rs`, these tests use moto's default account with names made
//! unique by the process ID and a per-test label, since the binary's AWS
//! clients cannot carry a per-test account header.

use std::process::Command;
use std::time::Duration;

use crate::sandbox::{Sandbox, wait_until};

/// moto's caller identity for the credentials the tests pass.
const MOTO_CALLER: &str = "arn:aws:sts::123456789012:user/moto";

fn moto(test: &str) -> Option<String> {
    crate::emulators::moto(&format!("aws_signals::{test}"))
}

/// Runs Python with boto3 (moto's venv) against moto; returns stdout.
fn python(moto: &str, script: &str) -> String {
    crate::emulators::python(
        &[("MOTO", moto)],
        &format!(
            "{}cw = boto3.client('cloudwatch', **kw)\nsns = boto3.client('sns', **kw)\nsqs = boto3.client('sqs', **kw)\n",
            crate::emulators::MOTO_CLIENT
        ),
        script,
    )
}

/// An alarm (in OK) and a topic with a queue subscribed, all named after
/// `label`; returns the topic ARN and the queue URL.
fn alarm_topic_and_queue(moto: &str, label: &str) -> (String, String) {
    let out = python(
        moto,
        &format!(
            "cw.put_metric_alarm(AlarmName='{label}-errors', Namespace='AWS/Lambda', MetricName='Errors', Statistic='Sum', Period=60, EvaluationPeriods=1, Threshold=1.0, ComparisonOperator='GreaterThanOrEqualToThreshold')\n\
cw.set_alarm_state(AlarmName='{label}-errors', StateValue='OK', StateReason='test setup')\n\
topic = sns.create_topic(Name='{label}-deploys')['TopicArn']\n\
queue = sqs.create_queue(QueueName='{label}-inbox')['QueueUrl']\n\
arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=['QueueArn'])['Attributes']['QueueArn']\n\
sns.subscribe(TopicArn=topic, Protocol='sqs', Endpoint=arn)\n\
print(topic)\n\
print(queue)"
        ),
    );
    let mut lines = out.lines();
    let topic = lines.next().expect("a topic ARN").to_string();
    let queue = lines.next().expect("a queue URL").to_string();
    (topic, queue)
}

/// The SNS envelopes in `queue`, parsed (drains what is there).
fn received(moto: &str, queue: &str) -> Vec<serde_json::Value> {
    let out = python(
        moto,
        &format!(
            "seen = [m['Body'] for _ in range(3) for m in sqs.receive_message(QueueUrl='{queue}', MaxNumberOfMessages=10, WaitTimeSeconds=1).get('Messages', [])]\n\
print(json.dumps(seen))"
        ),
    );
    let bodies: Vec<String> = serde_json::from_str(&out).expect("a JSON list");
    bodies
        .iter()
        .map(|body| serde_json::from_str(body).expect("an SNS envelope"))
        .collect()
}

/// A sim canary judged by one CloudWatch alarm in the background, holding
/// at 20 % for `hold`, telling the SNS topic about `events`.
fn plan(label: &str, topic: &str, hold: &str, events: &str) -> String {
    r#"apiVersion: deployctl.io/v1
kind: Plan
metadata: {name: LABEL, environment: test}
targets:
  api:
    sim: {stableVersion: "1.0.0", latencyMs: 5}
artifacts:
  api: {version: "1.1.0"}
stages:
  - name: api-canary
    target: api
    timeout: 60s
    canary:
      gates: [alarms]
      steps:
        - setWeight: 20
        - pause: {duration: HOLD}
        - setWeight: 100
gates:
  alarms:
    cloudwatch:
      region: us-east-1
      alarms: [LABEL-errors]
    interval: 200ms
    count: 2
rollback:
  automatic: true
  on: [gateFailed, error, timeout, kill]
  scope: plan
notifications:
  - on: [EVENTS]
    sns: {topicArn: "TOPIC"}
"#
    .replace("LABEL", label)
    .replace("HOLD", hold)
    .replace("EVENTS", events)
    .replace("TOPIC", topic)
}

/// `deployctl ARGS` pointed at AWS at `endpoint` with test credentials.
fn with_aws(sandbox: &Sandbox, args: &[&str], endpoint: &str) -> Command {
    let mut command = sandbox.command(args);
    command
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN");
    command
}

#[test]
fn an_alarm_mid_canary_rolls_back_and_sns_says_so() {
    let Some(moto) = moto("an_alarm_mid_canary_rolls_back_and_sns_says_so") else {
        return;
    };
    let label = format!("cw-rollback-{}", std::process::id());
    let (topic, queue) = alarm_topic_and_queue(&moto, &label);
    let sandbox = Sandbox::new("aws-signals-rollback");
    let file = sandbox.root().join("plan.yaml");
    // The hold is far longer than the test waits: only the alarm can end
    // this run in time.
    std::fs::write(&file, plan(&label, &topic, "45s", "gateFailed, rolledBack")).unwrap();
    let args = ["apply", file.to_str().unwrap(), "--yes"];
    let running = sandbox.spawn_command(with_aws(&sandbox, &args, &moto), &args, None);

    wait_until(Duration::from_secs(30), "the canary at 20 %", || {
        sandbox.sim("api").is_some_and(|state| state.weight == 20)
    });
    // Give the background gate time to see the alarm OK at least once.
    std::thread::sleep(Duration::from_millis(600));
    python(
        &moto,
        &format!(
            "cw.set_alarm_state(AlarmName='{label}-errors', StateValue='ALARM', StateReason='errors spiked')"
        ),
    );
    let finished = running.wait(Duration::from_secs(30));
    finished.expect_code(1);

    let state = sandbox.sim("api").expect("api moved");
    assert_eq!(
        (state.stable.as_str(), state.weight),
        ("1.0.0", 0),
        "all traffic back on the stable version: {state:?}"
    );
    let run = sandbox.run_ids().pop().expect("a run");
    let events = sandbox.journal().events(&run).unwrap();
    let gate = events
        .iter()
        .find(|e| e.kind == "gateResult")
        .expect("the gate's result is journaled");
    let verdict = gate.data.to_string();
    assert!(
        verdict.contains(&format!("in ALARM: {label}-errors")),
        "the gate says which alarm: {verdict}"
    );

    let envelopes = received(&moto, &queue);
    let rolled_back = envelopes
        .iter()
        .find(|e| e["MessageAttributes"]["event"]["Value"] == "rolledBack")
        .unwrap_or_else(|| panic!("no rolledBack notification in {envelopes:?}"));
    assert_eq!(rolled_back["TopicArn"], topic.as_str());
    assert_eq!(
        rolled_back["Subject"],
        format!("deployctl rolledBack: {label} (test) stage api-canary, run {run}").as_str()
    );
    let attributes = &rolled_back["MessageAttributes"];
    assert_eq!(attributes["run"]["Value"], run.as_str());
    assert_eq!(attributes["severity"]["Value"], "warning");
    assert_eq!(attributes["environment"]["Value"], "test");
    let message: serde_json::Value =
        serde_json::from_str(rolled_back["Message"].as_str().expect("a message")).unwrap();
    assert_eq!(message["kind"], "RunNotification");
    assert_eq!(message["event"], "rolledBack");
    assert_eq!(message["run"], run.as_str());
    assert!(
        envelopes
            .iter()
            .any(|e| e["MessageAttributes"]["event"]["Value"] == "gateFailed"
                && e["MessageAttributes"]["stage"]["Value"] == "api-canary"),
        "the gate failure is announced with its stage: {envelopes:?}"
    );

    // Every audit record of the run names moto's caller (issue 5).
    let records = sandbox.audit_records(&run);
    assert!(records.len() > 4, "{records:?}");
    for record in &records {
        assert_eq!(record["who"]["awsCallerArn"], MOTO_CALLER, "{record}");
    }
}

#[test]
fn a_quiet_alarm_lets_the_canary_promote() {
    let Some(moto) = moto("a_quiet_alarm_lets_the_canary_promote") else {
        return;
    };
    let label = format!("cw-promote-{}", std::process::id());
    let (topic, queue) = alarm_topic_and_queue(&moto, &label);
    let sandbox = Sandbox::new("aws-signals-promote");
    let file = sandbox.root().join("plan.yaml");
    std::fs::write(&file, plan(&label, &topic, "1s", "started, succeeded")).unwrap();
    let args = ["apply", file.to_str().unwrap(), "--yes"];
    sandbox
        .spawn_command(with_aws(&sandbox, &args, &moto), &args, None)
        .wait(Duration::from_secs(60))
        .expect_code(0);

    let state = sandbox.sim("api").expect("api moved");
    assert_eq!(state.stable, "1.1.0", "promoted: {state:?}");
    let run = sandbox.run_ids().pop().expect("a run");
    let events: Vec<String> = received(&moto, &queue)
        .iter()
        .filter_map(|e| {
            e["MessageAttributes"]["event"]["Value"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert!(
        events.contains(&"started".to_string()) && events.contains(&"succeeded".to_string()),
        "{events:?}"
    );
    let records = sandbox.audit_records(&run);
    assert!(
        records
            .iter()
            .all(|record| record["who"]["awsCallerArn"] == MOTO_CALLER),
        "{records:?}"
    );
}

#[test]
fn apply_refuses_when_the_aws_caller_cannot_be_established() {
    // No moto needed: nothing listens on port 9 (discard) on loopback, so
    // STS cannot answer, as with dead credentials or no network.
    let sandbox = Sandbox::new("aws-signals-no-identity");
    let file = sandbox.root().join("plan.yaml");
    std::fs::write(
        &file,
        plan(
            "no-identity",
            "arn:aws:sns:us-east-1:123456789012:deploys",
            "1s",
            "rolledBack",
        ),
    )
    .unwrap();
    let args = ["apply", file.to_str().unwrap(), "--yes"];
    let finished = sandbox
        .spawn_command(with_aws(&sandbox, &args, "http://127.0.0.1:9"), &args, None)
        .wait(Duration::from_secs(60));
    finished.expect_code(2);
    assert!(
        finished
            .stderr
            .contains("who the AWS credentials belong to cannot be established")
            && finished.stderr.contains("sts:GetCallerIdentity")
            && finished.stderr.contains("Nothing was changed."),
        "{finished}"
    );
    assert!(sandbox.run_ids().is_empty(), "no run was created");
    assert!(sandbox.sim("api").is_none(), "the target was never touched");
}
