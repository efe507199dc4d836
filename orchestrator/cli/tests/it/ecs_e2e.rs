//! ECS releases end to end through the binary. Task sets (EXTERNAL
//! controller) on moto, which stores them faithfully; rolling updates on
//! the repository's ECS emulator (`tests/emulators/ecs.py`), because moto
//! never moves a deployment nor trips the circuit breaker. Skipped, with a
//! message, when the URLs are unset.
//!
//! Fixtures and readings go over HTTP in ECS's own protocol (awsJson1.1),
//! in the default account (the binary cannot carry a per-test account
//! header) with a cluster and task definition family per test. moto's
//! workarounds (`/work/shared/notes/aws-emulator-moto.md` §3): container
//! memory set, the first task set created at scale 0 then scaled.
//!
//! After every run the task sets must match the run's final phase: green
//! PRIMARY at 100 % when it succeeded, blue alone at 100 % when it rolled
//! back.

use std::time::Duration;

use serde_json::{Value, json};

use crate::cloudfront_e2e::{aws_command, http, only_run, pausing, scope, unique};
use crate::emulators::urls;
use crate::lambda_support::HealthServer;
use crate::sandbox::{Finished, Running, Sandbox, wait_until};

/// One ECS call in the JSON protocol; the parsed answer.
fn ecs(url: &str, operation: &str, body: Value) -> Value {
    let target = format!("AmazonEC2ContainerServiceV20141113.{operation}");
    let (status, text) = http(
        url,
        "POST",
        "/",
        &[
            ("X-Amz-Target", &target),
            ("Content-Type", "application/x-amz-json-1.1"),
            ("Authorization", &scope("ecs")),
        ],
        &body.to_string(),
    );
    assert_eq!(status, 200, "ecs:{operation}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("ecs:{operation}: {e}: {text}"))
}

/// The ARN of `family:revision` in the default account (plans name task
/// definitions by ARN).
fn arn(family: &str, revision: u32) -> String {
    format!("arn:aws:ecs:us-east-1:123456789012:task-definition/{family}:{revision}")
}

/// `family:revision` of a task definition ARN.
fn short(arn: &str) -> String {
    arn.rsplit('/').next().unwrap_or(arn).to_owned()
}

/// A cluster with task definitions `FAMILY:1` (blue) and `FAMILY:2`
/// (green) in the default account at `url`; (cluster, family).
fn cluster_and_family(url: &str, label: &str) -> (String, String) {
    let name = unique(label);
    ecs(url, "CreateCluster", json!({"clusterName": name}));
    for _ in 0..2 {
        ecs(
            url,
            "RegisterTaskDefinition",
            json!({
                "family": name,
                "containerDefinitions": [{"name": "app", "image": "nginx", "memory": 128}],
                "cpu": "256",
                "memory": "512",
            }),
        );
    }
    (name.clone(), name)
}

/// The service as ECS describes it.
fn service(url: &str, cluster: &str, name: &str) -> Value {
    let out = ecs(
        url,
        "DescribeServices",
        json!({"cluster": cluster, "services": [name]}),
    );
    out["services"][0].clone()
}

/// A task set as the platform holds it: (externalId, status,
/// `family:revision`, scale percent).
type Row = (String, String, String, f64);

/// An EXTERNAL-controller service on moto running blue (`v1`) in one
/// PRIMARY task set at 100 %.
struct TaskSets {
    moto: String,
    cluster: String,
    family: String,
}

const SERVICE: &str = "web";

impl TaskSets {
    fn new(test: &str, label: &str) -> Option<TaskSets> {
        let [moto] = urls(test, ["DEPLOYCTL_TEST_MOTO_URL"])?;
        let (cluster, family) = cluster_and_family(&moto, label);
        ecs(
            &moto,
            "CreateService",
            json!({
                "cluster": cluster,
                "serviceName": SERVICE,
                "desiredCount": 4,
                "deploymentController": {"type": "EXTERNAL"},
            }),
        );
        let created = ecs(
            &moto,
            "CreateTaskSet",
            json!({
                "cluster": cluster,
                "service": SERVICE,
                "taskDefinition": format!("{family}:1"),
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
            "UpdateTaskSet",
            json!({"cluster": cluster, "service": SERVICE, "taskSet": arn, "scale": {"value": 100.0, "unit": "PERCENT"}}),
        );
        ecs(
            &moto,
            "UpdateServicePrimaryTaskSet",
            json!({"cluster": cluster, "service": SERVICE, "primaryTaskSet": arn}),
        );
        let sets = TaskSets {
            moto,
            cluster,
            family,
        };
        assert_eq!(sets.rows(), sets.blue_only());
        Some(sets)
    }

    /// The service's task sets, PRIMARY first.
    fn rows(&self) -> Vec<Row> {
        let service = service(&self.moto, &self.cluster, SERVICE);
        let mut rows: Vec<Row> = service["taskSets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|ts| {
                (
                    ts["externalId"].as_str().unwrap_or_default().to_owned(),
                    ts["status"].as_str().unwrap_or_default().to_owned(),
                    short(ts["taskDefinition"].as_str().unwrap_or_default()),
                    ts["scale"]["value"].as_f64().unwrap_or(-1.0),
                )
            })
            .collect();
        rows.sort_by_key(|row| (row.1 != "PRIMARY", row.0.clone()));
        rows
    }

    /// Green's share of the service, as the task sets say (0 without one).
    fn green_scale(&self) -> f64 {
        self.rows()
            .iter()
            .find(|row| row.0 == "v2")
            .map_or(0.0, |row| row.3)
    }

    fn row(&self, label: &str, status: &str, revision: u32, scale: f64) -> Row {
        (
            label.into(),
            status.into(),
            format!("{}:{revision}", self.family),
            scale,
        )
    }

    /// A rolled-back service: blue alone, PRIMARY at 100 %.
    fn blue_only(&self) -> Vec<Row> {
        vec![self.row("v1", "PRIMARY", 1, 100.0)]
    }

    /// A promoted canary: green PRIMARY at 100 %, blue kept at 0 % (a
    /// canary stage does not retire it; a rollback could switch back).
    fn green_promoted(&self) -> Vec<Row> {
        vec![
            self.row("v2", "PRIMARY", 2, 100.0),
            self.row("v1", "ACTIVE", 1, 0.0),
        ]
    }

    fn expected(&self, phase: &str) -> Vec<Row> {
        match phase {
            "Succeeded" => self.green_promoted(),
            "RolledBack" => self.blue_only(),
            other => panic!("the run ended {other}, neither succeeded nor rolled back"),
        }
    }

    /// A health endpoint answering by green's scale at the time
    /// (`healthy(scale)`), recording each scale seen.
    fn health(
        self: &std::sync::Arc<Self>,
        healthy: impl Fn(f64) -> bool + Send + Sync + 'static,
    ) -> (HealthServer, std::sync::Arc<std::sync::Mutex<Vec<f64>>>) {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (sets, record) = (std::sync::Arc::clone(self), std::sync::Arc::clone(&seen));
        let server = HealthServer::start(move |_| {
            let scale = sets.green_scale();
            record.lock().expect("scales").push(scale);
            healthy(scale)
        });
        (server, seen)
    }

    /// A canary of green (`v2` = FAMILY:2) by `steps`, judged by the HTTP gate.
    fn plan(&self, sandbox: &Sandbox, steps: &str, gate_url: &str) -> String {
        let plan = format!(
            "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {{name: ecs-e2e, environment: test}}\n\
targets:\n  api:\n    ecs: {{cluster: {}, service: {SERVICE}, region: us-east-1}}\n\
artifacts:\n  api: {{version: v2, taskDefinition: \"{}\"}}\n\
stages:\n  - name: api\n    target: api\n    canary:\n      steps: {steps}\n\
gates:\n  health:\n    http: {{url: \"{gate_url}\", allowInsecureHttp: true}}\n    interval: 100ms\n    count: 2\n",
            self.cluster,
            arn(&self.family, 2)
        );
        let path = sandbox.root().join("plan.yaml");
        std::fs::write(&path, plan).expect("plan written");
        path.to_string_lossy().into_owned()
    }

    fn spawn(&self, sandbox: &Sandbox, args: &[&str]) -> Running {
        sandbox.spawn_command(aws_command(sandbox, args, &self.moto, &[]), args, None)
    }

    fn run(&self, sandbox: &Sandbox, args: &[&str]) -> Finished {
        self.spawn(sandbox, args)
            .wait(crate::sandbox::COMMAND_TIMEOUT)
    }
}

const TO_50: &str = "[{setWeight: 10}, {analysis: {gates: [health]}}, {setWeight: 50}, {analysis: {gates: [health]}}]";

#[test]
fn an_ecs_task_set_canary_with_a_passing_gate_promotes_green() {
    let Some(sets) = TaskSets::new(
        "an_ecs_task_set_canary_with_a_passing_gate_promotes_green",
        "ecs-promote",
    ) else {
        return;
    };
    let sets = std::sync::Arc::new(sets);
    let (health, seen) = sets.health(|_| true);
    let sandbox = Sandbox::new("ecs-promote");
    let plan = sets.plan(&sandbox, TO_50, &health.url);
    let out = sets.run(&sandbox, &["apply", &plan, "--yes"]);
    out.expect_code(0);
    assert_eq!(sets.rows(), sets.green_promoted(), "{out}");
    let status = sandbox.status(Some(&only_run(&sandbox)));
    assert_eq!(status["phase"], "Succeeded", "{status:#}");
    // The gate measured green at 10 % and at 50 % of the service.
    let seen = seen.lock().expect("scales").clone();
    assert!(
        seen.contains(&10.0) && seen.contains(&50.0),
        "green's scales at the gate's requests: {seen:?}"
    );
}

#[test]
fn an_ecs_gate_failing_at_50_percent_rolls_back_to_blue() {
    let Some(sets) = TaskSets::new(
        "an_ecs_gate_failing_at_50_percent_rolls_back_to_blue",
        "ecs-rollback",
    ) else {
        return;
    };
    let sets = std::sync::Arc::new(sets);
    let (health, seen) = sets.health(|scale| scale < 50.0);
    let sandbox = Sandbox::new("ecs-rollback");
    let plan = sets.plan(&sandbox, TO_50, &health.url);
    let out = sets.run(&sandbox, &["apply", &plan, "--yes"]);
    out.expect_code(1);
    assert_eq!(sets.rows(), sets.blue_only(), "green is gone\n{out}");
    let status = sandbox.status(Some(&only_run(&sandbox)));
    assert_eq!(status["phase"], "RolledBack", "{status:#}");
    assert_eq!(status["stages"][0]["weight"], 0, "{status:#}");
    assert_eq!(status["rollbackIncomplete"], false, "{status:#}");
    let seen = seen.lock().expect("scales").clone();
    assert!(
        seen.contains(&10.0) && seen.contains(&50.0),
        "passed at 10 %, failed at 50 %: {seen:?}"
    );
}

#[test]
fn an_ecs_canary_killed_mid_pause_ends_as_its_run_says() {
    let test = "an_ecs_canary_killed_mid_pause_ends_as_its_run_says";
    if urls(test, ["DEPLOYCTL_TEST_MOTO_URL"]).is_none() {
        return;
    }
    let steps = "[{setWeight: 10}, {pause: {duration: 1500ms}}, {setWeight: 50}, {pause: {duration: 1500ms}}, {analysis: {gates: [health]}}]";
    let health = HealthServer::start(|_| true);
    // (green's scale to kill at, the runbook command after the kill)
    let cases = [(10.0, "resume"), (50.0, "resume"), (50.0, "rollback")];
    for (n, (kill_at, command)) in cases.into_iter().enumerate() {
        let sets = TaskSets::new(test, &format!("ecs-kill-{n}")).expect("moto");
        let sandbox = Sandbox::new("ecs-kill");
        let plan = sets.plan(&sandbox, steps, &health.url);
        let running = sets.spawn(&sandbox, &["apply", &plan, "--yes"]);
        wait_until(
            Duration::from_secs(30),
            &format!("green at {kill_at} %"),
            || sets.green_scale() == kill_at,
        );
        let before = sets.rows();
        assert!(!running.sigkill(), "the run was still going when killed");
        assert_eq!(sets.rows(), before, "nothing moves after SIGKILL");
        let run = only_run(&sandbox);
        let status = sandbox.status(Some(&run));
        assert_eq!(status["interrupted"], true, "{status:#}");

        let out = sets.run(&sandbox, &[command, &run, "--yes"]);
        let status = sandbox.status(Some(&run));
        let phase = status["phase"].as_str().unwrap_or_default().to_owned();
        assert_eq!(
            sets.rows(),
            sets.expected(&phase),
            "case {n}: {command} after a kill at {kill_at} %, the run says {phase}\n{out}"
        );
        assert_eq!(status["rollbackIncomplete"], false, "{status:#}");
        if command == "rollback" {
            out.expect_code(0);
            assert_eq!(phase, "RolledBack", "{status:#}");
        } else {
            out.expect_code(if phase == "Succeeded" { 0 } else { 1 });
        }
    }
}

/// An ECS-controller (rolling update) service `SERVICE` on `family:1`,
/// with the deployment circuit breaker and its rollback on.
fn rolling_service(url: &str, cluster: &str, family: &str, desired: u32) {
    ecs(
        url,
        "CreateService",
        json!({
            "cluster": cluster,
            "serviceName": SERVICE,
            "taskDefinition": format!("{family}:1"),
            "desiredCount": desired,
            "deploymentConfiguration": {
                "maximumPercent": 200,
                "minimumHealthyPercent": 100,
                "deploymentCircuitBreaker": {"enable": true, "rollback": true},
            },
        }),
    );
}

/// A canary on a service on the ECS (rolling update) controller: that
/// instance takes no partial weights, so preflight's capabilities refuse
/// the run before anything moves (exit 2, issue 9): no run in the
/// history, the service still on blue with one deployment.
#[test]
fn an_ecs_rolling_service_refuses_a_canary_before_anything_moves() {
    let test = "an_ecs_rolling_service_refuses_a_canary_before_anything_moves";
    let Some([moto, emulator]) = urls(test, ["DEPLOYCTL_TEST_MOTO_URL", "DEPLOYCTL_TEST_ECS_URL"])
    else {
        return;
    };
    let (cluster, family) = cluster_and_family(&emulator, "ecs-rolling-canary");
    rolling_service(&emulator, &cluster, &family, 2);
    let deployments = || -> Vec<(String, String)> {
        service(&emulator, &cluster, SERVICE)["deployments"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|d| {
                (
                    short(d["taskDefinition"].as_str().unwrap_or_default()),
                    d["rolloutState"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let stable = vec![(format!("{family}:1"), "COMPLETED".to_owned())];
    wait_until(Duration::from_secs(30), "blue rolled out", || {
        deployments() == stable
    });

    let sandbox = Sandbox::new("ecs-rolling-canary");
    let plan = format!(
        "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {{name: ecs-rolling-canary, environment: test}}\n\
targets:\n  api:\n    ecs: {{cluster: {cluster}, service: {SERVICE}, region: us-east-1}}\n\
artifacts:\n  api: {{version: v2, taskDefinition: \"{}\"}}\n\
stages:\n  - name: api\n    target: api\n    canary: {{steps: [{{setWeight: 10}}, {{setWeight: 100}}]}}\n",
        arn(&family, 2)
    );
    let path = sandbox.root().join("plan.yaml");
    std::fs::write(&path, plan).expect("plan written");
    let args = ["apply", path.to_str().expect("a UTF-8 path"), "--yes"];
    let command = aws_command(&sandbox, &args, &moto, &[("ECS", &emulator)]);
    let out = sandbox
        .spawn_command(command, &args, None)
        .wait(crate::sandbox::COMMAND_TIMEOUT);
    out.expect_code(2);
    assert!(
        out.stderr.contains("cannot take a 10% canary weight")
            && out.stderr.contains("rolling update")
            && out.stderr.contains("Nothing was changed"),
        "{out}"
    );
    assert!(
        sandbox.run_ids().is_empty(),
        "a refusal is not a run: {out}"
    );
    let service = service(&emulator, &cluster, SERVICE);
    assert_eq!(
        short(service["taskDefinition"].as_str().unwrap_or_default()),
        format!("{family}:1"),
        "{out}"
    );
    assert_eq!(deployments(), stable, "{service:#}");
}

/// A rolling update to a task definition whose tasks never start: the
/// deployment circuit breaker fails it (and, configured so, starts ECS's
/// own rollback); the run rolls back and the service ends on the stable
/// task definition, its rollout COMPLETED.
#[test]
fn an_ecs_rolling_update_tripping_the_circuit_breaker_rolls_back() {
    let test = "an_ecs_rolling_update_tripping_the_circuit_breaker_rolls_back";
    let Some([moto, emulator]) = urls(test, ["DEPLOYCTL_TEST_MOTO_URL", "DEPLOYCTL_TEST_ECS_URL"])
    else {
        return;
    };
    let control = |path: &str, body: Value| {
        let (status, text) = http(&emulator, "POST", path, &[], &body.to_string());
        assert_eq!(status, 200, "{path}: {text}");
    };
    // 50 ms per step in the default account: a failing rollout trips the
    // breaker in 2 steps and ECS's rollback completes in 2 more.
    control("/_emulator/config", json!({"stepSeconds": 0.05}));
    let (cluster, family) = cluster_and_family(&emulator, "ecs-rolling");
    rolling_service(&emulator, &cluster, &family, 4);
    let deployments = || -> Vec<(String, String, String)> {
        service(&emulator, &cluster, SERVICE)["deployments"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|d| {
                (
                    d["status"].as_str().unwrap_or_default().to_owned(),
                    short(d["taskDefinition"].as_str().unwrap_or_default()),
                    d["rolloutState"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let stable = vec![(
        "PRIMARY".to_owned(),
        format!("{family}:1"),
        "COMPLETED".to_owned(),
    )];
    wait_until(Duration::from_secs(10), "blue rolled out", || {
        deployments() == stable
    });
    control(
        "/_emulator/fail-task-definition",
        json!({"taskDefinition": format!("{family}:2"), "failing": true}),
    );

    let sandbox = Sandbox::new("ecs-rolling");
    let green = arn(&family, 2);
    let plan = format!(
        "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {{name: ecs-rolling-e2e, environment: test}}\n\
targets:\n  api:\n    ecs: {{cluster: {cluster}, service: {SERVICE}, region: us-east-1}}\n\
artifacts:\n  api: {{version: v2, taskDefinition: \"{green}\"}}\n\
stages:\n  - name: api\n    target: api\n    blueGreen: {{scaleDownDelay: 1s}}\n"
    );
    let path = sandbox.root().join("plan.yaml");
    std::fs::write(&path, plan).expect("plan written");
    let args = ["apply", path.to_str().expect("a UTF-8 path"), "--yes"];
    let command = aws_command(&sandbox, &args, &moto, &[("ECS", &emulator)]);
    let out = sandbox
        .spawn_command(command, &args, None)
        .wait(crate::sandbox::COMMAND_TIMEOUT);
    out.expect_code(1);

    let service = service(&emulator, &cluster, SERVICE);
    assert_eq!(
        short(service["taskDefinition"].as_str().unwrap_or_default()),
        format!("{family}:1"),
        "{out}"
    );
    assert_eq!(deployments(), stable, "{service:#}");
    let events: Vec<String> = service["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect();
    assert!(
        events.iter().any(|e| e.contains("deployment failed")),
        "the circuit breaker failed the rollout: {events:?}"
    );
    // Blue's, green's and the circuit breaker's rollback: the failing task
    // definition was rolled out once, not again on every retry.
    let started = events
        .iter()
        .filter(|e| e.contains("has started a deployment"))
        .count();
    assert_eq!(started, 3, "{events:#?}");
    let status = sandbox.status(Some(&only_run(&sandbox)));
    assert_eq!(status["phase"], "RolledBack", "{status:#}");
    assert_eq!(status["rollbackIncomplete"], false, "{status:#}");
    let detail = status["stages"][0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("FAILED") && !detail.contains("conflict"),
        "a failed rollout, not another writer: {status:#}\n{out}"
    );
}

impl TaskSets {
    /// Another writer scales the task set labelled `label` to `percent`,
    /// as a console or script would.
    fn stranger_scales(&self, label: &str, percent: f64) {
        let service = service(&self.moto, &self.cluster, SERVICE);
        let arn = service["taskSets"]
            .as_array()
            .and_then(|sets| sets.iter().find(|ts| ts["externalId"] == label))
            .and_then(|ts| ts["taskSetArn"].as_str())
            .unwrap_or_else(|| panic!("no task set {label}: {service:#}"))
            .to_owned();
        ecs(
            &self.moto,
            "UpdateTaskSet",
            json!({"cluster": self.cluster, "service": SERVICE, "taskSet": arn, "scale": {"value": percent, "unit": "PERCENT"}}),
        );
    }
}

/// Another writer changes the task sets while the canary pauses at 10 %:
/// green scaled, or the PRIMARY (blue) scaled. deployctl does not overwrite
/// a change it did not make, neither by continuing nor by rolling back over
/// it: the run ends "rollback incomplete" (exit 3) naming another writer, in
/// its status and journal, and the task sets stay as the other writer left
/// them. The runbook's `deployctl rollback` is the human's override.
#[test]
fn another_writer_changing_the_task_sets_stops_the_run_for_a_human() {
    let test = "another_writer_changing_the_task_sets_stops_the_run_for_a_human";
    if urls(test, ["DEPLOYCTL_TEST_MOTO_URL"]).is_none() {
        return;
    }
    let steps = "[{setWeight: 10}, {pause: {duration: 2s}}, {setWeight: 50}, {analysis: {gates: [health]}}]";
    let health = HealthServer::start(|_| true);
    // (the task set the other writer scales, to what)
    let cases = [("v2", 30.0), ("v1", 60.0)];
    for (n, (label, percent)) in cases.into_iter().enumerate() {
        let sets = TaskSets::new(test, &format!("ecs-stranger-{n}")).expect("moto");
        let sandbox = Sandbox::new("ecs-stranger");
        let plan = sets.plan(&sandbox, steps, &health.url);
        let running = sets.spawn(&sandbox, &["apply", &plan, "--yes"]);
        wait_until(Duration::from_secs(30), "the pause at 10 %", || {
            pausing(&sandbox)
        });
        assert_eq!(sets.green_scale(), 10.0);
        sets.stranger_scales(label, percent);
        let theirs = sets.rows();
        let out = running.wait(Duration::from_secs(60));
        // README "Exit codes": 3, rollback incomplete, a human must act.
        out.expect_code(3);
        assert!(out.stderr.contains("another writer"), "case {n}: {out}");
        assert_eq!(
            sets.rows(),
            theirs,
            "case {n}: the other writer's change stands\n{out}"
        );
        let run = only_run(&sandbox);
        let status = sandbox.status(Some(&run));
        assert_eq!(status["rollbackIncomplete"], true, "{status:#}");
        assert!(
            status["stages"][0]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("another writer")),
            "{status:#}"
        );
        let events = sandbox.journal().events(&run).expect("events");
        assert!(
            events
                .iter()
                .any(|e| e.data.to_string().contains("another writer")),
            "case {n}: {events:#?}"
        );

        // The human decides: the runbook's rollback puts blue back alone.
        sets.run(&sandbox, &["rollback", &run, "--yes"])
            .expect_code(0);
        assert_eq!(sets.rows(), sets.blue_only(), "case {n}");
        let status = sandbox.status(Some(&run));
        assert_eq!(status["rollbackIncomplete"], false, "{status:#}");
        assert_eq!(status["phase"], "RolledBack", "{status:#}");
    }
}
