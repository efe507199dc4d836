//! `deployctl controller` and `approve|reject --release` end to end: the
//! binary against the test Kubernetes API server (`tests/emulators/
//! kubeapi.py`, plain HTTP, reached through a kubeconfig like a real
//! cluster), sim plans, the state directory of a [`Sandbox`]. The tests
//! read Releases with the real kube client.
//!
//! Skipped with a message when `DEPLOYCTL_TEST_KUBEAPI_URL` is unset (run
//! through `bash tests/moto.sh -- cargo test -p deployctl --test it
//! controller`). `a_release_runs_on_a_real_cluster` runs only when
//! `DEPLOYCTL_TEST_KUBECONFIG` names a real cluster's kubeconfig.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use deployctl_kube_release::k8s_openapi::api::core::v1::Namespace;
use deployctl_kube_release::kube::api::{DeleteParams, ObjectMeta, PostParams};
use deployctl_kube_release::kube::{Api, Client, ResourceExt};
use deployctl_kube_release::{Release, ReleasePhase, ReleaseSpec, ReleaseStatus, Verdict};
use totp_rs::Totp;

use crate::sandbox::{Running, Sandbox};

const ACCESS: &str = "tests/fixtures/access/approvals.yaml";

/// A sim canary: 20 % → pause → 100 %, a background health gate.
fn canary_plan(pause: &str) -> String {
    format!(
        r#"apiVersion: deployctl.io/v1
kind: Plan
metadata:
  name: checkout
  environment: sandbox
targets:
  api:
    sim: {{stableVersion: "1.0"}}
artifacts:
  api: {{version: "2.0"}}
stages:
  - name: api
    target: api
    timeout: 2m
    canary:
      gates: [api-health]
      steps:
        - setWeight: 20
        - pause: {{duration: {pause}}}
        - setWeight: 100
gates:
  api-health:
    sim: {{minSuccessRate: 99}}
    interval: 500ms
    count: 2
"#
    )
}

/// A cluster to test against, a namespace of our own in it and a
/// kubeconfig file for the binary.
struct Cluster {
    runtime: tokio::runtime::Runtime,
    client: Client,
    namespace: String,
    kubeconfig: PathBuf,
}

impl Cluster {
    /// The test API server, or `None` (skip) when it is not running.
    fn test_server(sandbox: &Sandbox, label: &str) -> Option<Cluster> {
        let Ok(url) = std::env::var("DEPLOYCTL_TEST_KUBEAPI_URL") else {
            eprintln!(
                "skipped: DEPLOYCTL_TEST_KUBEAPI_URL is not set (run through `bash tests/moto.sh -- cargo test …`)"
            );
            return None;
        };
        let kubeconfig = sandbox.root().join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {{server: \"{url}\"}}\nusers:\n- name: test\n  user: {{}}\ncontexts:\n- name: test\n  context: {{cluster: test, user: test}}\ncurrent-context: test\n"
        );
        std::fs::write(&kubeconfig, text).expect("kubeconfig written");
        Some(Cluster::connect(kubeconfig, label))
    }

    fn connect(kubeconfig: PathBuf, label: &str) -> Cluster {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let client = runtime
            .block_on(deployctl_kube_release::client(Some(&kubeconfig)))
            .expect("a client from the kubeconfig");
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let namespace = format!(
            "it-{label}-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let object = Namespace {
            metadata: ObjectMeta {
                name: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        runtime
            .block_on(namespaces.create(&PostParams::default(), &object))
            .expect("namespace created");
        Cluster {
            runtime,
            client,
            namespace,
            kubeconfig,
        }
    }

    fn api(&self) -> Api<Release> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.namespace)
    }

    /// Creates a Release; `initiator` goes into the annotation.
    fn create(&self, name: &str, plan: &str, initiator: &str) {
        let mut release = Release::new(name, ReleaseSpec::of_plan(plan));
        release
            .annotations_mut()
            .insert("deployctl.io/initiator".into(), initiator.into());
        // On a fresh server the Release resource is served only once the
        // controller has installed its CRD and it is Established.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            match self
                .runtime
                .block_on(self.api().create(&PostParams::default(), &release))
            {
                Ok(_) => return,
                Err(deployctl_kube_release::kube::Error::Api(status))
                    if status.code == 404 && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(error) => panic!("release not created: {error}"),
            }
        }
    }

    fn get(&self, name: &str) -> Option<Release> {
        self.runtime
            .block_on(self.api().get_opt(name))
            .expect("release read")
    }

    fn delete(&self, name: &str) {
        self.runtime
            .block_on(self.api().delete(name, &DeleteParams::default()))
            .expect("release deleted");
    }

    /// Waits until the Release's status satisfies `done`; fails the test
    /// with the last status after `timeout`.
    fn wait_status(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&ReleaseStatus) -> bool,
    ) -> ReleaseStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.get(name).and_then(|r| r.status);
            if let Some(status) = &status
                && done(status)
            {
                return status.clone();
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}; status: {status:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `deployctl controller` on this namespace with a short lease.
    fn controller(&self, sandbox: &Sandbox, extra: &[&str]) -> Running {
        self.controller_with(sandbox, extra, &[])
    }

    /// The controller with `global` flags before the subcommand and
    /// `flags` of its own after it.
    fn controller_with(&self, sandbox: &Sandbox, global: &[&str], flags: &[&str]) -> Running {
        let kubeconfig = self.kubeconfig.to_str().expect("utf-8 path").to_string();
        let mut args = global.to_vec();
        args.extend([
            "controller",
            "--kubeconfig",
            &kubeconfig,
            "--namespace",
            &self.namespace,
            "--lease-duration",
            "2",
        ]);
        args.extend_from_slice(flags);
        sandbox.spawn(&args)
    }
}

fn phase_is(phase: ReleasePhase) -> impl Fn(&ReleaseStatus) -> bool {
    move |status| status.phase == Some(phase)
}

/// Test 1's body, for the test server and for a real cluster.
fn canary_release_succeeds(sandbox: &Sandbox, cluster: &Cluster) {
    let controller = cluster.controller(sandbox, &[]);
    cluster.create("checkout", &canary_plan("1s"), "alice");
    let status = cluster.wait_status(
        "checkout",
        Duration::from_secs(60),
        "the release succeeded",
        phase_is(ReleasePhase::Succeeded),
    );
    assert_eq!(status.stages.len(), 1);
    assert_eq!(status.stages[0].phase, "Succeeded");
    assert_eq!(status.stages[0].weight, 100);
    assert_eq!(status.initiator.as_deref(), Some("alice"));
    assert_eq!(status.observed_generation, Some(1));
    let run = status.run_id.clone().expect("a run ID");
    // The run is an ordinary run of the controller's journal.
    let journal = sandbox.status(Some(&run));
    assert_eq!(journal["phase"], "Succeeded");
    assert_eq!(
        journal["initiator"],
        format!("alice@release/{}/checkout", cluster.namespace)
    );
    let sim = sandbox.sim("api").expect("the sim target moved");
    assert_eq!(sim.stable, "2.0");
    // Finished: nothing left for a deletion to undo, so no finalizer.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cluster
        .get("checkout")
        .is_some_and(|r| r.finalizers().is_empty())
    {
        assert!(Instant::now() < deadline, "the finalizer stayed");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(controller);
}

/// An API server that takes a request and never answers must not hold a
/// Release for good: the reconcile waiting on it is cancelled after
/// `--reconcile-timeout`, retried, and the run starts and ends.
#[test]
fn a_request_left_unanswered_is_cancelled_and_the_release_still_runs() {
    let sandbox = Sandbox::new("controller-stall");
    let Some(cluster) = Cluster::test_server(&sandbox, "stall") else {
        return;
    };
    let url = std::env::var("DEPLOYCTL_TEST_KUBEAPI_URL").expect("the test server");
    // The start's first write, the rollback finalizer, goes unanswered
    // for longer than the test waits.
    let (status, answer) = crate::cloudfront_e2e::http(
        &url,
        "POST",
        &format!("/_emulator/stalls?namespace={}", cluster.namespace),
        &[("Content-Type", "application/json")],
        r#"{"verb": "patch", "resource": "releases", "seconds": 300}"#,
    );
    assert_eq!(status, 200, "{answer}");
    let controller = cluster.controller_with(&sandbox, &[], &["--reconcile-timeout", "2"]);
    cluster.create("checkout", &canary_plan("1s"), "alice");
    let status = cluster.wait_status(
        "checkout",
        Duration::from_secs(60),
        "the release succeeded",
        phase_is(ReleasePhase::Succeeded),
    );
    assert_eq!(sandbox.run_ids().len(), 1, "one run");
    assert_eq!(status.stages[0].weight, 100);
    let log = controller.stderr_so_far();
    assert!(
        log.contains("its reconcile did not finish within 2 s"),
        "{log}"
    );
}

#[test]
fn a_release_with_a_sim_canary_runs_to_success() {
    let sandbox = Sandbox::new("controller-canary");
    let Some(cluster) = Cluster::test_server(&sandbox, "canary") else {
        return;
    };
    canary_release_succeeds(&sandbox, &cluster);
    // The CRD's wire format from the binary, for GitOps repositories.
    let crd = sandbox.run(&["controller", "--print-crd"]);
    crd.expect_code(0);
    let crd: serde_json::Value = serde_json::from_str(&crd.stdout).expect("CRD JSON");
    assert_eq!(crd["metadata"]["name"], "releases.deployctl.io");
}

#[test]
fn a_release_runs_on_a_real_cluster() {
    let Ok(kubeconfig) = std::env::var("DEPLOYCTL_TEST_KUBECONFIG") else {
        eprintln!(
            "skipped: DEPLOYCTL_TEST_KUBECONFIG is not set (a real cluster's kubeconfig; the test creates a namespace and the Release CRD there)"
        );
        return;
    };
    let sandbox = Sandbox::new("controller-real");
    let cluster = Cluster::connect(PathBuf::from(kubeconfig), "real");
    canary_release_succeeds(&sandbox, &cluster);
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    let _ = cluster
        .runtime
        .block_on(namespaces.delete(&cluster.namespace, &DeleteParams::default()));
}

#[test]
fn an_invalid_plan_is_reported_with_line_and_column_and_nothing_runs() {
    let sandbox = Sandbox::new("controller-invalid");
    let Some(cluster) = Cluster::test_server(&sandbox, "invalid") else {
        return;
    };
    let controller = cluster.controller(&sandbox, &[]);
    let plan = canary_plan("1s").replace("setWeight: 20", "setWeight: 120");
    cluster.create("broken", &plan, "alice");
    let status = cluster.wait_status(
        "broken",
        Duration::from_secs(90),
        "the release is Invalid",
        phase_is(ReleasePhase::Invalid),
    );
    let place = format!("release/{}/broken:18:", cluster.namespace);
    assert!(
        status
            .diagnostics
            .iter()
            .any(|d| d.starts_with(&place) && d.contains("setWeight")),
        "{:#?}",
        status.diagnostics
    );
    assert_eq!(status.run_id, None);
    // A little later still nothing: no run, no target touched.
    std::thread::sleep(Duration::from_secs(1));
    assert!(sandbox.run_ids().is_empty());
    assert!(sandbox.sim_files().is_empty());
    let release = cluster.get("broken").expect("release");
    assert!(release.finalizers().is_empty());
    // A Release nobody vouches for does not run either.
    cluster.create("anonymous", &canary_plan("1s"), "not a user");
    let refused = cluster.wait_status(
        "anonymous",
        Duration::from_secs(90),
        "the release is Refused",
        phase_is(ReleasePhase::Refused),
    );
    assert!(
        refused
            .message
            .as_deref()
            .is_some_and(|m| m.contains("deployctl.io/initiator")),
        "{refused:#?}"
    );
    assert!(sandbox.run_ids().is_empty());
    // The controller's log says why, once per verdict, though the
    // resyncs look at both Releases again.
    std::thread::sleep(Duration::from_secs(1));
    let log = controller.stderr_so_far();
    for (name, verdict) in [("broken", "Invalid"), ("anonymous", "Refused")] {
        let said = format!(
            "Release {}/{name} not started: {verdict}:",
            cluster.namespace
        );
        assert_eq!(log.matches(&said).count(), 1, "{said}\n{log}");
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Enrolls `user` in the sandbox's MFA store (what `mfa enroll` prints is
/// the authenticator's URI) and confirms with the current code.
fn enroll(sandbox: &Sandbox, user: &str) -> Totp {
    let (totp, _) =
        crate::approvals::authenticator(&sandbox.run(&["--access", ACCESS, "mfa", "enroll", user]));
    let code = totp.generate(now()).to_string();
    sandbox
        .run(&["mfa", "confirm", user, "--code", &code])
        .expect_code(0);
    totp
}

/// One step ahead: newer than the confirmation code, within the skew.
fn next_code(totp: &Totp) -> String {
    totp.generate(now() + 30).to_string()
}

fn approve_release(
    sandbox: &Sandbox,
    cluster: &Cluster,
    name: &str,
    user: &str,
    code: &str,
) -> crate::sandbox::Finished {
    let kubeconfig = cluster.kubeconfig.to_str().expect("utf-8 path");
    sandbox.run(&[
        "approve",
        "--release",
        &cluster.reference(name),
        "--gate",
        "prod-signoff",
        "--user",
        user,
        "--code",
        code,
        "--kubeconfig",
        kubeconfig,
    ])
}

#[test]
fn in_cluster_approvals_are_verified_by_the_controller() {
    let sandbox = Sandbox::new("controller-approvals");
    let Some(cluster) = Cluster::test_server(&sandbox, "approvals") else {
        return;
    };
    let bob = enroll(&sandbox, "bob");
    let carol = enroll(&sandbox, "carol");
    let me = enroll(&sandbox, "deployctl-test");
    let _controller = cluster.controller(&sandbox, &["--access", ACCESS]);
    let plan = std::fs::read_to_string(
        crate::repo_root().join("tests/fixtures/plans/valid/approval-two-approvers.yaml"),
    )
    .expect("plan fixture");
    cluster.create("prod", &plan, "deployctl-test");
    let paused = cluster.wait_status(
        "prod",
        Duration::from_secs(90),
        "the run waits for approvals",
        |s| s.phase == Some(ReleasePhase::Paused) && !s.pending_approvals.is_empty(),
    );
    let pending = &paused.pending_approvals[0];
    assert_eq!(pending.gate, "prod-signoff");
    assert_eq!(pending.role, "release-approver");
    assert_eq!(pending.required, 2);
    assert!(pending.approved_by.is_empty());

    // Four eyes: the initiator (the annotation) cannot approve.
    let own = approve_release(
        &sandbox,
        &cluster,
        "prod",
        "deployctl-test",
        &next_code(&me),
    );
    own.expect_code(2);
    assert!(own.stderr.contains("started this run"), "{own}");
    // A wrong code and an unknown user are refused.
    let wrong = approve_release(&sandbox, &cluster, "prod", "bob", "000000");
    wrong.expect_code(2);
    let unknown = approve_release(&sandbox, &cluster, "prod", "mallory", "123456");
    unknown.expect_code(2);
    assert!(
        unknown.stderr.contains("not in the access file"),
        "{unknown}"
    );
    let refused = cluster.wait_status("prod", Duration::from_secs(10), "three verdicts", |s| {
        s.approvals.len() == 3
    });
    assert!(
        refused
            .approvals
            .iter()
            .all(|v| v.verdict == Verdict::Refused && v.reason.is_some()),
        "{:#?}",
        refused.approvals
    );
    assert_eq!(refused.phase, Some(ReleasePhase::Paused));

    let bob_code = next_code(&bob);
    approve_release(&sandbox, &cluster, "prod", "bob", &bob_code).expect_code(0);
    let one = cluster.wait_status("prod", Duration::from_secs(10), "bob counted", |s| {
        s.pending_approvals
            .first()
            .is_some_and(|p| p.approved_by == ["bob"])
    });
    assert_eq!(one.phase, Some(ReleasePhase::Paused));
    let carol_code = next_code(&carol);
    approve_release(&sandbox, &cluster, "prod", "carol", &carol_code).expect_code(0);
    let done = cluster.wait_status(
        "prod",
        Duration::from_secs(60),
        "the release succeeded",
        phase_is(ReleasePhase::Succeeded),
    );
    assert!(done.pending_approvals.is_empty());
    let verdicts: Vec<(&str, Verdict)> = done
        .approvals
        .iter()
        .map(|v| (v.user.as_str(), v.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("deployctl-test", Verdict::Refused),
            ("bob", Verdict::Refused),
            ("mallory", Verdict::Refused),
            ("bob", Verdict::Accepted),
            ("carol", Verdict::Accepted),
        ]
    );
    // The status never carries a code.
    let status_json = serde_json::to_string(&done).expect("status JSON");
    assert!(!status_json.contains(&bob_code) && !status_json.contains(&carol_code));

    sandbox.run(&["audit", "verify"]).expect_code(0);
    let run = done.run_id.expect("run ID");
    let shown = sandbox.run(&["audit", "show", "--run", &run, "--output", "json"]);
    shown.expect_code(0);
    let records: serde_json::Value = serde_json::from_str(&shown.stdout).expect("audit JSON");
    let records = records.as_array().expect("records");
    let granted: Vec<String> = records
        .iter()
        .filter(|r| r["what"]["action"] == "approval.granted")
        .map(|r| r["what"]["detail"].to_string())
        .collect();
    assert_eq!(granted.len(), 2, "{granted:?}");
    assert!(granted[0].contains("bob") && granted[1].contains("carol"));
    let denied = records
        .iter()
        .filter(|r| r["outcome"]["status"] == "denied")
        .count();
    assert!(denied >= 3, "each refusal is audited ({denied})");
}

#[test]
fn a_rejection_on_the_release_rolls_the_run_back() {
    let sandbox = Sandbox::new("controller-reject");
    let Some(cluster) = Cluster::test_server(&sandbox, "reject") else {
        return;
    };
    let carol = enroll(&sandbox, "carol");
    let _controller = cluster.controller(&sandbox, &["--access", ACCESS]);
    let plan = std::fs::read_to_string(
        crate::repo_root().join("tests/fixtures/plans/valid/approval-two-approvers.yaml"),
    )
    .expect("plan fixture");
    cluster.create("prod", &plan, "deployctl-test");
    cluster.wait_status("prod", Duration::from_secs(90), "paused", |s| {
        !s.pending_approvals.is_empty()
    });
    let kubeconfig = cluster.kubeconfig.to_str().expect("utf-8 path");
    sandbox
        .run(&[
            "reject",
            "--release",
            &cluster.reference("prod"),
            "--gate",
            "prod-signoff",
            "--user",
            "carol",
            "--reason",
            "not in the change window",
            "--code",
            &next_code(&carol),
            "--kubeconfig",
            kubeconfig,
        ])
        .expect_code(0);
    let status = cluster.wait_status(
        "prod",
        Duration::from_secs(60),
        "rolled back",
        phase_is(ReleasePhase::RolledBack),
    );
    assert!(
        status
            .message
            .as_deref()
            .is_some_and(|m| m.contains("not in the change window")),
        "{status:#?}"
    );
    assert_eq!(sandbox.sim("api").map(|s| s.weight), Some(0));
}

#[test]
fn a_killed_controller_is_restarted_and_the_run_resumes() {
    let sandbox = Sandbox::new("controller-restart");
    let Some(cluster) = Cluster::test_server(&sandbox, "restart") else {
        return;
    };
    let first = cluster.controller(&sandbox, &[]);
    cluster.create("checkout", &canary_plan("4s"), "alice");
    let during = cluster.wait_status("checkout", Duration::from_secs(90), "20 %", |s| {
        s.stages.first().is_some_and(|stage| stage.weight == 20)
    });
    let run = during.run_id.expect("run ID");
    assert!(!first.sigkill(), "the controller was still running");
    let second = cluster.controller(&sandbox, &[]);
    let done = cluster.wait_status(
        "checkout",
        Duration::from_secs(60),
        "the release succeeded after the restart",
        phase_is(ReleasePhase::Succeeded),
    );
    assert_eq!(done.run_id.as_deref(), Some(run.as_str()), "the same run");
    assert_eq!(
        sandbox.run_ids(),
        std::slice::from_ref(&run),
        "no second run"
    );
    let journal = sandbox.journal();
    assert!(
        journal
            .events(&run)
            .expect("events")
            .iter()
            .any(|e| e.kind == "stageResumed"),
        "the run was resumed from its journal"
    );
    journal.check_consistency(&run).expect("consistent journal");
    assert_eq!(sandbox.sim("api").map(|s| s.stable), Some("2.0".into()));
    drop(second);
}

#[test]
fn two_controllers_only_the_lease_holder_runs_releases() {
    let one = Sandbox::new("controller-lease-a");
    let two = Sandbox::new("controller-lease-b");
    let Some(cluster) = Cluster::test_server(&one, "lease") else {
        return;
    };
    let a = cluster.controller(&one, &[]);
    let b = cluster.controller(&two, &[]);
    cluster.create("first", &canary_plan("500ms"), "alice");
    cluster.wait_status(
        "first",
        Duration::from_secs(60),
        "the first release succeeded",
        phase_is(ReleasePhase::Succeeded),
    );
    let runs = (one.run_ids().len(), two.run_ids().len());
    assert!(
        runs == (1, 0) || runs == (0, 1),
        "exactly one controller ran it: {runs:?}"
    );
    // The leader dies; the other takes the lease and runs the next one.
    let (leader, follower, follower_sandbox) = if runs.0 == 1 {
        (a, b, &two)
    } else {
        (b, a, &one)
    };
    leader.sigkill();
    cluster.create("second", &canary_plan("500ms"), "alice");
    cluster.wait_status(
        "second",
        Duration::from_secs(60),
        "the second release succeeded",
        phase_is(ReleasePhase::Succeeded),
    );
    assert_eq!(follower_sandbox.run_ids().len(), 1, "the new leader ran it");
    // It never started the first release again (not in its journal).
    let first = cluster.get("first").and_then(|r| r.status).expect("status");
    assert_eq!(first.phase, Some(ReleasePhase::Succeeded));
    drop(follower);
}

#[test]
fn deleting_a_release_mid_run_rolls_it_back() {
    let sandbox = Sandbox::new("controller-delete");
    let Some(cluster) = Cluster::test_server(&sandbox, "delete") else {
        return;
    };
    let _controller = cluster.controller(&sandbox, &[]);
    cluster.create("checkout", &canary_plan("30s"), "alice");
    let during = cluster.wait_status("checkout", Duration::from_secs(90), "20 %", |s| {
        s.stages.first().is_some_and(|stage| stage.weight == 20)
    });
    let run = during.run_id.expect("run ID");
    cluster.delete("checkout");
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.get("checkout").is_some() {
        assert!(Instant::now() < deadline, "the Release was never let go");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sandbox.status(Some(&run))["phase"], "Killed");
    let sim = sandbox.sim("api").expect("sim state");
    assert_eq!((sim.stable.as_str(), sim.weight), ("1.0", 0));
}

/// `deployctl VERB --release NS/NAME` as `user` (the operator identity
/// the controller checks), against this cluster.
fn on_release(
    sandbox: &Sandbox,
    cluster: &Cluster,
    user: &str,
    verb: &str,
    name: &str,
) -> crate::sandbox::Finished {
    on_release_with(sandbox, cluster, user, &[verb], name)
}

/// [`on_release`] with the verb's own flags (`promote --full …`).
fn on_release_with(
    sandbox: &Sandbox,
    cluster: &Cluster,
    user: &str,
    verb: &[&str],
    name: &str,
) -> crate::sandbox::Finished {
    let reference = cluster.reference(name);
    let kubeconfig = cluster.kubeconfig.to_str().expect("utf-8 path");
    let mut args = verb.to_vec();
    args.extend(["--release", &reference, "--kubeconfig", kubeconfig]);
    let mut command = sandbox.command(&args);
    command.env("DEPLOYCTL_OPERATOR", user);
    sandbox
        .spawn_command(command, &args, None)
        .wait(crate::sandbox::COMMAND_TIMEOUT)
}

/// The sim canary in the protected `production` environment, whose only
/// operator is `deployctl-test`.
fn production_canary(pause: &str) -> String {
    canary_plan(pause).replace("environment: sandbox", "environment: production")
}

/// Issue 12's verbs on an in-cluster Release, asked from another process
/// through the Release itself: `pause` holds the run past its pause (and
/// a second `pause` changes nothing), `promote` moves it on to success;
/// someone who is not an operator of the environment is refused, and
/// every verdict is acted on once and audited.
#[test]
fn pause_and_promote_steer_a_release_through_the_controller() {
    let sandbox = Sandbox::new("controller-steer");
    let Some(cluster) = Cluster::test_server(&sandbox, "steer") else {
        return;
    };
    let _controller = cluster.controller(&sandbox, &["--access", ACCESS]);
    cluster.create("steered", &production_canary("5s"), "deployctl-test");
    let during = cluster.wait_status("steered", Duration::from_secs(90), "20 %", |s| {
        s.stages.first().is_some_and(|stage| stage.weight == 20)
    });
    let run = during.run_id.expect("run ID");

    let refused = on_release(&sandbox, &cluster, "bob", "pause", "steered");
    refused.expect_code(2);
    assert!(
        refused.stderr.contains("needs the operator role"),
        "{refused}"
    );
    on_release(&sandbox, &cluster, "deployctl-test", "pause", "steered").expect_code(0);
    let again = on_release(&sandbox, &cluster, "deployctl-test", "pause", "steered");
    again.expect_code(0);
    assert!(again.stderr.contains("already paused"), "{again}");

    // Held past the 5 s pause: still at 20 %, the Release says why.
    std::thread::sleep(Duration::from_secs(7));
    let held = cluster
        .get("steered")
        .and_then(|r| r.status)
        .expect("status");
    assert_eq!(held.phase, Some(ReleasePhase::Paused), "{held:#?}");
    assert_eq!(held.stages[0].weight, 20, "{held:#?}");
    assert!(
        held.message.as_deref().is_some_and(|m| m.contains("held")),
        "{held:#?}"
    );
    // Its background gate keeps measuring while held, and says so.
    let gate = held.stages[0].measuring.first().expect("a gate measuring");
    assert_eq!((gate.gate.as_str(), gate.background), ("api-health", true));
    assert!(gate.passed >= 1 && gate.last == "pass", "{gate:#?}");
    assert_eq!(sandbox.sim("api").map(|s| s.weight), Some(20));

    on_release(&sandbox, &cluster, "deployctl-test", "promote", "steered").expect_code(0);
    let done = cluster.wait_status(
        "steered",
        Duration::from_secs(60),
        "the release succeeded after promote",
        phase_is(ReleasePhase::Succeeded),
    );
    let verdicts: Vec<(&str, &str, Verdict)> = done
        .requests
        .iter()
        .map(|v| (v.user.as_str(), v.verb.as_str(), v.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("bob", "pause", Verdict::Refused),
            ("deployctl-test", "pause", Verdict::Accepted),
            ("deployctl-test", "pause", Verdict::Accepted),
            ("deployctl-test", "promote", Verdict::Accepted),
        ]
    );
    // Each entry was acted on once, whatever the number of reconciles.
    let journal = sandbox.journal();
    let judged = journal
        .events(&run)
        .expect("events")
        .iter()
        .filter(|e| e.kind == "releaseRequestVerdict")
        .count();
    assert_eq!(judged, 4);
    let promotions = journal.hold_state(&run).expect("hold state").promotions;
    assert_eq!(promotions, 1, "one promote, applied once");

    sandbox.run(&["audit", "verify"]).expect_code(0);
    let actions: Vec<(String, String, String)> = sandbox
        .audit_records(&run)
        .iter()
        .filter(|r| {
            r["what"]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("spec.requests"))
        })
        .map(|r| {
            (
                r["who"]["operator"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                r["what"]["action"].as_str().unwrap_or_default().to_string(),
                r["outcome"]["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("bob".into(), "policy.denied".into(), "denied".into()),
            (
                "deployctl-test".into(),
                "pause.requested".into(),
                "ok".into()
            ),
            (
                "deployctl-test".into(),
                "promote.requested".into(),
                "ok".into()
            ),
        ]
    );
}

/// `abort --release`: traffic back to stable and the Release left Aborted
/// (not Killed); a second abort says the run already ended. Then `retry
/// --release` runs the Release again as a new, linked run, which the
/// earlier aborts do not touch.
#[test]
fn abort_on_a_release_puts_traffic_back_and_leaves_it_aborted() {
    let sandbox = Sandbox::new("controller-abort");
    let Some(cluster) = Cluster::test_server(&sandbox, "abort") else {
        return;
    };
    let _controller = cluster.controller(&sandbox, &["--access", ACCESS]);
    cluster.create("aborted", &production_canary("60s"), "deployctl-test");
    cluster.wait_status("aborted", Duration::from_secs(90), "20 %", |s| {
        s.stages.first().is_some_and(|stage| stage.weight == 20)
    });
    let first = on_release(&sandbox, &cluster, "deployctl-test", "abort", "aborted");
    first.expect_code(0);
    assert!(first.stderr.contains("Aborted"), "{first}");
    let status = cluster
        .get("aborted")
        .and_then(|r| r.status)
        .expect("status");
    assert_eq!(status.phase, Some(ReleasePhase::Aborted), "{status:#?}");
    let sim = sandbox.sim("api").expect("sim state");
    assert_eq!((sim.stable.as_str(), sim.weight), ("1.0", 0));
    let second = on_release(&sandbox, &cluster, "deployctl-test", "abort", "aborted");
    second.expect_code(0);
    assert!(second.stderr.contains("already ended"), "{second}");
    let run = status.run_id.expect("run ID");
    assert_eq!(sandbox.status(Some(&run))["phase"], "Aborted");

    // `retry --release`: a new run of the recorded plan, linked to the
    // aborted one; the abort asked before is not applied to it again.
    let retried = on_release(&sandbox, &cluster, "deployctl-test", "retry", "aborted");
    retried.expect_code(0);
    assert!(retried.stderr.contains("retried as run"), "{retried}");
    let again = cluster.wait_status(
        "aborted",
        Duration::from_secs(60),
        "the retry at 20 %",
        |s| {
            s.run_id.as_deref() != Some(run.as_str())
                && s.stages.first().is_some_and(|stage| stage.weight == 20)
        },
    );
    let new = again.run_id.clone().expect("the new run");
    assert_eq!(sandbox.status(Some(&new))["retryOf"], run.as_str());
    crate::sandbox::wait_until(Duration::from_secs(30), "the retry's pause", || {
        sandbox.status(Some(&new))["stages"][0]["now"]["pauseLeftMs"].is_i64()
    });
    on_release(&sandbox, &cluster, "deployctl-test", "promote", "aborted").expect_code(0);
    let done = cluster.wait_status(
        "aborted",
        Duration::from_secs(60),
        "the retried release succeeded",
        phase_is(ReleasePhase::Succeeded),
    );
    assert_eq!(done.run_id.as_deref(), Some(new.as_str()));
    assert_eq!(sandbox.sim("api").map(|s| s.stable), Some("2.0".into()));
    let verdicts: Vec<(&str, Verdict)> = done
        .requests
        .iter()
        .map(|v| (v.verb.as_str(), v.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("abort", Verdict::Accepted),
            ("abort", Verdict::Accepted),
            ("retry", Verdict::Accepted),
            ("promote", Verdict::Accepted),
        ]
    );
    assert_eq!(sandbox.run_ids().len(), 2, "one retry, one new run");
    let twice = on_release(&sandbox, &cluster, "deployctl-test", "retry", "aborted");
    twice.expect_code(0);
    assert!(twice.stderr.contains("nothing to retry"), "{twice}");
}

/// `promote --full --release` in the protected environment: refused
/// without another person's approval, accepted with bob's code (verified
/// by the controller); the Release goes straight to success, its 60 s
/// pause skipped, and the trail names bob as the approver.
#[test]
fn a_full_promotion_of_a_release_needs_an_approver_in_a_protected_environment() {
    let sandbox = Sandbox::new("controller-full");
    let Some(cluster) = Cluster::test_server(&sandbox, "full") else {
        return;
    };
    let bob = enroll(&sandbox, "bob");
    let _controller = cluster.controller(&sandbox, &["--access", ACCESS]);
    cluster.create("full", &production_canary("60s"), "deployctl-test");
    cluster.wait_status("full", Duration::from_secs(90), "20 %", |s| {
        s.stages.first().is_some_and(|stage| stage.weight == 20)
    });
    let alone = on_release_with(
        &sandbox,
        &cluster,
        "deployctl-test",
        &["promote", "--full"],
        "full",
    );
    alone.expect_code(2);
    assert!(
        alone.stderr.contains("another person's approval"),
        "{alone}"
    );
    let code = next_code(&bob);
    let approved = on_release_with(
        &sandbox,
        &cluster,
        "deployctl-test",
        &["promote", "--full", "--approver", "bob", "--code", &code],
        "full",
    );
    approved.expect_code(0);
    assert!(approved.stderr.contains("fully promoted"), "{approved}");
    let done = cluster.wait_status(
        "full",
        Duration::from_secs(30),
        "the release succeeded long before its 60 s pause",
        phase_is(ReleasePhase::Succeeded),
    );
    assert_eq!(sandbox.sim("api").map(|s| s.stable), Some("2.0".into()));
    let run = done.run_id.expect("run ID");
    let promoted = sandbox.audit_records_of(&run, "promote.requested");
    assert_eq!(promoted.len(), 1, "{promoted:?}");
    assert_eq!(promoted[0]["what"]["approver"], "bob", "{promoted:?}");
}
