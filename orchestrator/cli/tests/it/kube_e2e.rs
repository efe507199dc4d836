//! Kubernetes releases end to end through the binary, against the test
//! API server (`tests/emulators/kubeapi.py`: Deployment, EndpointSlice and
//! Gateway API controllers, and a traffic model that says which pods
//! served a request). The binary reaches it through a kubeconfig beside
//! the plan, as it would a cluster; the tests read and write with plain
//! HTTP. Each test has its own namespace. Skipped with a message when
//! `DEPLOYCTL_TEST_KUBEAPI_URL` is unset.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::cloudfront_e2e::http;
use crate::emulators::urls;
use crate::lambda_support::HealthServer;
use crate::sandbox::{COMMAND_TIMEOUT, Finished, Running, Sandbox, wait_until};

// Pinned by digest, as plans must pin them.
const STABLE: &str =
    "registry.test/web@sha256:1111111111111111111111111111111111111111111111111111111111111111";
const NEW: &str =
    "registry.test/web@sha256:2222222222222222222222222222222222222222222222222222222222222222";
const CRASHING: &str =
    "registry.test/web@sha256:3333333333333333333333333333333333333333333333333333333333333333";

/// One JSON call to the server (`PUT`/`POST` bodies as JSON).
fn kube(url: &str, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let text = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (status, answer) = http(
        url,
        method,
        path,
        &[("Content-Type", "application/json")],
        &text,
    );
    (status, serde_json::from_str(&answer).unwrap_or(Value::Null))
}

/// A namespace of the test server holding `web` (a Deployment of 4 pods
/// behind Service `web`, a preview Service, a Gateway and an HTTPRoute to
/// `web`), and a kubeconfig for the binary in the sandbox.
struct Cluster {
    url: String,
    namespace: String,
}

impl Cluster {
    fn new(test: &str, sandbox: &Sandbox, label: &str) -> Option<Cluster> {
        let [url] = urls(test, ["DEPLOYCTL_TEST_KUBEAPI_URL"])?;
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let namespace = format!(
            "e2e-{label}-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        let cluster = Cluster { url, namespace };
        let ns = &cluster.namespace;
        cluster.create(
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        );
        cluster.create(
            &format!("/apis/apps/v1/namespaces/{ns}/deployments"),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
                   "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                            "template": {"metadata": {"labels": {"app": "web"}},
                                         "spec": {"containers": [{"name": "api", "image": STABLE}]}}}}),
        );
        for name in ["web", "web-preview"] {
            cluster.create(
                &format!("/api/v1/namespaces/{ns}/services"),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                       "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
            );
        }
        cluster.create(
            &format!("/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/gateways"),
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "gw"},
                   "spec": {"gatewayClassName": "test", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
        );
        cluster.create(
            &format!("/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes"),
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "web"},
                   "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}}),
        );
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {{server: \"{}\"}}\nusers:\n- name: test\n  user: {{token: e2e-token}}\ncontexts:\n- name: test\n  context: {{cluster: test, user: test, namespace: {ns}}}\ncurrent-context: test\n",
            cluster.url
        );
        std::fs::write(sandbox.root().join("kubeconfig.yaml"), kubeconfig)
            .expect("kubeconfig written");
        wait_until(
            Duration::from_secs(30),
            "the stable Deployment ready",
            || cluster.available("web") == Some(4),
        );
        Some(cluster)
    }

    fn create(&self, path: &str, body: Value) {
        let (status, answer) = kube(&self.url, "POST", path, &body);
        assert!(
            status == 201 || status == 200,
            "POST {path}: {status} {answer:#}"
        );
    }

    fn get(&self, path: &str) -> Option<Value> {
        let (status, answer) = kube(&self.url, "GET", path, &Value::Null);
        (status == 200).then_some(answer)
    }

    fn deployment(&self, name: &str) -> Option<Value> {
        self.get(&format!(
            "/apis/apps/v1/namespaces/{}/deployments/{name}",
            self.namespace
        ))
    }

    fn available(&self, name: &str) -> Option<i64> {
        self.deployment(name)
            .map(|d| d["status"]["availableReplicas"].as_i64().unwrap_or(0))
    }

    fn route(&self) -> Value {
        self.get(&format!(
            "/apis/gateway.networking.k8s.io/v1/namespaces/{}/httproutes/web",
            self.namespace
        ))
        .expect("the route")
    }

    /// How many of 1000 requests through the route (or a Service) `image`
    /// served, by the server's traffic model.
    fn served_by(&self, through: Value, image: &str) -> u64 {
        let mut body = through;
        body["requests"] = json!(1000);
        let (status, answer) = kube(
            &self.url,
            "POST",
            &format!("/_emulator/traffic?namespace={}", self.namespace),
            &body,
        );
        assert_eq!(status, 200, "{answer:#}");
        answer["byImage"][image].as_u64().unwrap_or(0)
    }

    fn image_behaves(&self, image: &str, behaviour: &str) {
        let (status, answer) = kube(
            &self.url,
            "POST",
            &format!("/_emulator/images?namespace={}", self.namespace),
            &json!({"image": image, "behaviour": behaviour}),
        );
        assert!(status == 200 || status == 201, "{answer:#}");
    }

    /// A plan releasing `image` as version 2 of `web`, by `strategy` (the
    /// YAML of a stage's strategy), with `gates` (YAML of the gates map).
    fn plan(
        &self,
        sandbox: &Sandbox,
        routed: bool,
        image: &str,
        strategy: &str,
        gates: &str,
    ) -> String {
        let router = if routed {
            "httpRoute: {name: web}".to_owned()
        } else {
            "previewService: web-preview".to_owned()
        };
        let plan = format!(
            "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {{name: kube-e2e, environment: test}}\n\
targets:\n  web:\n    kubernetes: {{kubeconfig: kubeconfig.yaml, context: test, namespace: {}, deployment: web, service: web, {router}}}\n\
artifacts:\n  web: {{version: \"2\", image: {{reference: \"{image}\", container: api}}}}\n\
stages:\n  - name: web\n    target: web\n    timeout: 2m\n    {strategy}\n\
gates:\n{gates}",
            self.namespace
        );
        let path = sandbox.root().join("plan.yaml");
        std::fs::write(&path, plan).expect("plan written");
        path.to_string_lossy().into_owned()
    }
}

const READY_GATE: &str =
    "  ready:\n    kubernetes: {minReadyPercent: 100}\n    interval: 200ms\n    count: 2\n";

fn health_gate(url: &str) -> String {
    format!(
        "  health:\n    http: {{url: \"{url}\", allowInsecureHttp: true}}\n    interval: 100ms\n    count: 2\n"
    )
}

fn finish(running: Running) -> Finished {
    running.wait(COMMAND_TIMEOUT)
}

fn phase(sandbox: &Sandbox) -> Value {
    let run = sandbox.run_ids().first().cloned().expect("a run");
    sandbox.status(Some(&run))
}

#[test]
fn a_canary_through_the_httproute_moves_the_real_share_and_promotes() {
    let test = "a_canary_through_the_httproute_moves_the_real_share_and_promotes";
    let sandbox = Sandbox::new("kube-canary");
    let Some(cluster) = Cluster::new(test, &sandbox, "canary") else {
        return;
    };
    let strategy = "canary:\n      gates: [ready]\n      steps: [{setWeight: 10}, {pause: {duration: 4s}}, {setWeight: 50}, {pause: {duration: 4s}}, {setWeight: 100}]";
    let plan = cluster.plan(&sandbox, true, NEW, strategy, READY_GATE);
    let running = sandbox.spawn(&["apply", &plan, "--yes"]);
    let route = json!({"route": "web"});
    for share in [100u64, 500] {
        wait_until(
            Duration::from_secs(40),
            &format!("the canary serving {share} of 1000"),
            || {
                let served = cluster.served_by(route.clone(), NEW);
                served.abs_diff(share) <= 20
            },
        );
    }
    let out = finish(running);
    out.expect_code(0);
    assert_eq!(cluster.served_by(route, NEW), 1000, "{out}");
    assert!(
        cluster.deployment("web-canary").is_none(),
        "the canary is removed once promoted"
    );
    let primary = cluster.deployment("web").expect("the primary");
    assert_eq!(
        primary["spec"]["template"]["spec"]["containers"][0]["image"],
        NEW
    );
    assert_eq!(phase(&sandbox)["phase"], "Succeeded");
}

#[test]
fn a_gate_failing_at_50_percent_puts_the_route_back_on_stable() {
    let test = "a_gate_failing_at_50_percent_puts_the_route_back_on_stable";
    let sandbox = Sandbox::new("kube-gate");
    let Some(cluster) = Cluster::new(test, &sandbox, "gate") else {
        return;
    };
    let health = HealthServer::start(|_| false);
    let strategy =
        "canary:\n      steps: [{setWeight: 10}, {setWeight: 50}, {analysis: {gates: [health]}}]";
    let plan = cluster.plan(&sandbox, true, NEW, strategy, &health_gate(&health.url));
    let out = sandbox.run(&["apply", &plan, "--yes"]);
    out.expect_code(1);
    assert_eq!(phase(&sandbox)["phase"], "RolledBack", "{out}");
    assert_eq!(cluster.served_by(json!({"route": "web"}), STABLE), 1000);
    assert_eq!(
        weights(&cluster.route()["spec"]["rules"][0]["backendRefs"]),
        json!([["web", 100]])
    );
    assert!(
        cluster.deployment("web-canary").is_none(),
        "the canary is scaled away"
    );
}

#[test]
fn a_crash_looping_canary_fails_naming_its_pod_container_and_reason() {
    let test = "a_crash_looping_canary_fails_naming_its_pod_container_and_reason";
    let sandbox = Sandbox::new("kube-crash");
    let Some(cluster) = Cluster::new(test, &sandbox, "crash") else {
        return;
    };
    let image = CRASHING;
    cluster.image_behaves(image, "crashloop");
    let strategy =
        "canary:\n      gates: [ready]\n      steps: [{setWeight: 10}, {setWeight: 100}]";
    let plan = cluster.plan(&sandbox, true, image, strategy, READY_GATE);
    let out = sandbox.run(&["apply", &plan, "--yes"]);
    out.expect_code(1);
    let status = phase(&sandbox);
    assert_eq!(status["phase"], "RolledBack", "{out}");
    let text = format!("{status}{out}");
    assert!(
        text.contains("CrashLoopBackOff")
            && text.contains("container api")
            && text.contains("web-canary"),
        "{status:#}\n{out}"
    );
    assert_eq!(cluster.served_by(json!({"route": "web"}), image), 0);
}

#[test]
fn blue_green_promotes_once_the_endpoints_list_green_alone() {
    let test = "blue_green_promotes_once_the_endpoints_list_green_alone";
    let sandbox = Sandbox::new("kube-bg");
    let Some(cluster) = Cluster::new(test, &sandbox, "bg") else {
        return;
    };
    let strategy = "blueGreen: {prePromotionGates: [ready], scaleDownDelay: 1s}";
    let plan = cluster.plan(&sandbox, false, NEW, strategy, READY_GATE);
    let out = sandbox.run(&["apply", &plan, "--yes"]);
    out.expect_code(0);
    assert_eq!(
        cluster.served_by(json!({"service": "web"}), NEW),
        1000,
        "{out}"
    );
    let blue = cluster
        .deployment("web")
        .expect("blue is kept for a fast rollback");
    assert_eq!(
        blue["spec"]["replicas"], 0,
        "blue scaled to zero after the delay"
    );
    assert_eq!(phase(&sandbox)["phase"], "Succeeded");
}

#[test]
fn a_failing_preview_gate_rolls_back_and_production_never_moves() {
    let test = "a_failing_preview_gate_rolls_back_and_production_never_moves";
    let sandbox = Sandbox::new("kube-bg-fail");
    let Some(cluster) = Cluster::new(test, &sandbox, "bgfail") else {
        return;
    };
    let health = HealthServer::start(|_| false);
    let strategy = "blueGreen: {prePromotionGates: [health]}";
    let plan = cluster.plan(&sandbox, false, NEW, strategy, &health_gate(&health.url));
    // Production is sampled all along: not one request may reach green.
    let done = Arc::new(AtomicBool::new(false));
    let leaked = Arc::new(AtomicU32::new(0));
    let sampler = {
        let (done, leaked) = (Arc::clone(&done), Arc::clone(&leaked));
        let (url, namespace) = (cluster.url.clone(), cluster.namespace.clone());
        std::thread::spawn(move || {
            let cluster = Cluster { url, namespace };
            while !done.load(Ordering::Relaxed) {
                leaked.fetch_add(
                    cluster.served_by(json!({"service": "web"}), NEW) as u32,
                    Ordering::Relaxed,
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let out = sandbox.run(&["apply", &plan, "--yes"]);
    done.store(true, Ordering::Relaxed);
    sampler.join().expect("the sampler");
    out.expect_code(1);
    assert_eq!(
        leaked.load(Ordering::Relaxed),
        0,
        "production reached green\n{out}"
    );
    assert_eq!(phase(&sandbox)["phase"], "RolledBack");
    assert!(cluster.deployment("web-2").is_none(), "green is deleted");
    assert_eq!(cluster.served_by(json!({"service": "web"}), STABLE), 1000);
}

#[test]
fn another_writer_of_the_route_mid_run_stops_the_run_for_a_human() {
    let test = "another_writer_of_the_route_mid_run_stops_the_run_for_a_human";
    let sandbox = Sandbox::new("kube-stranger");
    let Some(cluster) = Cluster::new(test, &sandbox, "stranger") else {
        return;
    };
    let strategy =
        "canary:\n      steps: [{setWeight: 10}, {pause: {duration: 3s}}, {setWeight: 50}]";
    let plan = cluster.plan(&sandbox, true, NEW, strategy, READY_GATE);
    let running = sandbox.spawn(&["apply", &plan, "--yes"]);
    wait_until(Duration::from_secs(40), "the pause at 10 %", || {
        crate::cloudfront_e2e::pausing(&sandbox)
    });
    // `kubectl edit` (an Argo CD self-heal would do the same) puts all
    // the weight back on stable.
    let mut route = cluster.route();
    route["spec"]["rules"][0]["backendRefs"] = json!([{"name": "web", "port": 80, "weight": 100}]);
    let path = format!(
        "/apis/gateway.networking.k8s.io/v1/namespaces/{}/httproutes/web?fieldManager=kubectl-edit",
        cluster.namespace
    );
    let (status, answer) = kube(&cluster.url, "PUT", &path, &route);
    assert_eq!(status, 200, "{answer:#}");
    let out = finish(running);
    out.expect_code(3);
    let status = phase(&sandbox);
    let text = format!("{status}{out}");
    assert!(
        text.contains("kubectl-edit") && text.contains("another writer"),
        "{status:#}\n{out}"
    );
    // Not overwritten, neither by the run nor by its rollback.
    assert_eq!(
        weights(&cluster.route()["spec"]["rules"][0]["backendRefs"]),
        json!([["web", 100]])
    );
}

#[test]
fn a_run_killed_mid_canary_resumes_to_the_end_or_rolls_back_on_request() {
    let test = "a_run_killed_mid_canary_resumes_to_the_end_or_rolls_back_on_request";
    for finish_by in ["resume", "rollback"] {
        let sandbox = Sandbox::new("kube-kill");
        let Some(cluster) = Cluster::new(test, &sandbox, "kill") else {
            return;
        };
        let strategy = "canary:\n      steps: [{setWeight: 10}, {pause: {duration: 2s}}, {setWeight: 50}, {pause: {duration: 1s}}, {setWeight: 100}]";
        let plan = cluster.plan(&sandbox, true, NEW, strategy, READY_GATE);
        let running = sandbox.spawn(&["apply", &plan, "--yes"]);
        wait_until(Duration::from_secs(40), "the pause at 10 %", || {
            crate::cloudfront_e2e::pausing(&sandbox)
        });
        assert!(!running.sigkill(), "the run was still going");
        let run = sandbox.run_ids().first().cloned().expect("a run");
        let route = json!({"route": "web"});
        match finish_by {
            "resume" => {
                let out = sandbox.run(&["resume", &run]);
                out.expect_code(0);
                assert_eq!(cluster.served_by(route.clone(), NEW), 1000, "{out}");
                // Safe twice: nothing left to do.
                let again = sandbox.run(&["resume", &run]);
                assert!(matches!(again.code, Some(0) | Some(2)), "{again}");
                assert_eq!(cluster.served_by(route, NEW), 1000);
            }
            _ => {
                for _ in 0..2 {
                    let out = sandbox.run(&["rollback", &run, "--yes"]);
                    assert!(matches!(out.code, Some(0) | Some(2)), "{out}");
                    assert_eq!(cluster.served_by(route.clone(), STABLE), 1000, "{out}");
                }
                assert!(cluster.deployment("web-canary").is_none());
            }
        }
    }
}

/// A route rule's backends as `[[name, weight]]` (the server fills in the
/// defaults Gateway API gives `group` and `kind`).
fn weights(refs: &Value) -> Value {
    refs.as_array()
        .into_iter()
        .flatten()
        .map(|b| json!([b["name"], b["weight"]]))
        .collect()
}
