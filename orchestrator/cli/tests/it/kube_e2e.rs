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
use crate::real_cluster::{self, RealCluster};
use crate::sandbox::{COMMAND_TIMEOUT, Finished, Running, Sandbox, wait_until};

// Pinned by digest, as plans must pin them.
const STABLE: &str =
    "registry.test/web@sha256:1111111111111111111111111111111111111111111111111111111111111111";
const NEW: &str =
    "registry.test/web@sha256:2222222222222222222222222222222222222222222222222222222222222222";
const CRASHING: &str =
    "registry.test/web@sha256:3333333333333333333333333333333333333333333333333333333333333333";

/// The token the binary's kubeconfig carries unless a test narrows it:
/// registered in `system:masters`, as a cluster admin's.
const ADMIN_TOKEN: &str = "e2e-token";
const RBAC: &str = "rbac.authorization.k8s.io/v1";

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

/// A namespace holding `web` (a Deployment of 4 pods behind Service
/// `web`, a preview Service, a Gateway and an HTTPRoute to `web`), and a
/// kubeconfig for the binary in the sandbox: on the test server, or on
/// the cluster the real-cluster switch names (`real_cluster.rs`).
#[derive(Clone)]
struct Cluster {
    /// Where the tests' own calls go: the test server, or `kubectl proxy`.
    url: String,
    /// The API server's URL as the binary's kubeconfig names it.
    server: String,
    /// The kubeconfig context plans name.
    context: String,
    namespace: String,
    /// The real cluster, when the switch is on.
    real: Option<&'static RealCluster>,
    /// A real cluster's namespace (and cluster-wide objects the test
    /// made) are deleted when the last clone goes.
    cleanup: Option<Arc<Cleanup>>,
}

/// What a test made on a real cluster, deleted (in the background, as
/// `kubectl delete` does) when the test ends.
struct Cleanup {
    url: String,
    paths: std::sync::Mutex<Vec<String>>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let paths = self.paths.get_mut().map(std::mem::take).unwrap_or_default();
        for path in paths.iter().rev() {
            // Best effort: a cleanup that fails must not hide the test's
            // own result.
            let _ = crate::cloudfront_e2e::exchange(&self.url, "DELETE", path, &[], "");
        }
    }
}

impl Cluster {
    fn new(test: &str, sandbox: &Sandbox, label: &str) -> Option<Cluster> {
        if let Some(real) = real_cluster::from_env() {
            return Some(Cluster::on_real(real, &real.context, sandbox, label));
        }
        let [url] = urls(test, ["DEPLOYCTL_TEST_KUBEAPI_URL"])?;
        Some(Cluster::new_at(&url, sandbox, label))
    }

    /// The fixture on the test server at `url`.
    fn new_at(url: &str, sandbox: &Sandbox, label: &str) -> Cluster {
        Cluster {
            url: url.to_owned(),
            server: url.to_owned(),
            context: "test".to_owned(),
            namespace: Cluster::namespace_for(label),
            real: None,
            cleanup: None,
        }
        .with_fixture(sandbox)
    }

    /// The fixture on `real`'s cluster `context`.
    fn on_real(
        real: &'static RealCluster,
        context: &str,
        sandbox: &Sandbox,
        label: &str,
    ) -> Cluster {
        let url = real.proxy(context);
        let namespace = Cluster::namespace_for(label);
        let cleanup = Cleanup {
            url: url.clone(),
            paths: std::sync::Mutex::new(vec![format!("/api/v1/namespaces/{namespace}")]),
        };
        Cluster {
            server: real.server(context).expect("checked at start"),
            url,
            context: context.to_owned(),
            namespace,
            real: Some(real),
            cleanup: Some(Arc::new(cleanup)),
        }
        .with_fixture(sandbox)
    }

    fn namespace_for(label: &str) -> String {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        format!(
            "e2e-{label}-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// The images released: `[stable, new]`.
    fn images(&self) -> [&str; 2] {
        match self.real {
            Some(real) => [&real.stable_image, &real.new_image],
            None => [STABLE, NEW],
        }
    }

    /// How long to wait for what takes `emulated` on the test server: a
    /// cluster pulls images and schedules pods for real.
    fn patience(&self, emulated: Duration) -> Duration {
        if self.real.is_some() {
            emulated * 4
        } else {
            emulated
        }
    }

    /// Whether the test server's request log exists here; on a real
    /// cluster, says which check `test` skips for want of it.
    fn has_request_log(&self, test: &str, check: &str) -> bool {
        if self.real.is_some() {
            eprintln!(
                "SKIPPED on a real cluster, in {test}: checking {check} needs the test server's request log"
            );
        }
        self.real.is_none()
    }

    fn with_fixture(self, sandbox: &Sandbox) -> Cluster {
        let cluster = self;
        let ns = &cluster.namespace;
        let [stable, _] = cluster.images();
        let gateway_class = cluster.real.map_or("test", |r| r.gateway_class.as_str());
        cluster.create(
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        );
        cluster.create(
            &format!("/apis/apps/v1/namespaces/{ns}/deployments"),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
                   "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                            "template": {"metadata": {"labels": {"app": "web"}},
                                         "spec": {"containers": [{"name": "api", "image": stable}]}}}}),
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
                   "spec": {"gatewayClassName": gateway_class, "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
        );
        cluster.create(
            &format!("/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes"),
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "web"},
                   "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}}),
        );
        cluster.write_admin_kubeconfig(sandbox);
        // Ready when traffic reaches it: endpoints and the route's status
        // follow the pods a little later, as on a cluster.
        wait_until(
            cluster.patience(Duration::from_secs(30)),
            "the stable Deployment serving",
            || {
                cluster.available("web") == Some(4)
                    && cluster.served_by(json!({"route": "web"}), stable) == 1000
                    && cluster.served_by(json!({"service": "web-preview"}), stable) == 1000
            },
        );
        cluster
    }

    /// The binary authenticates as a cluster admin would; tests that check
    /// permissions rewrite the kubeconfig with a narrower token. On a real
    /// cluster: the environment's kubeconfig, every context in it.
    fn write_admin_kubeconfig(&self, sandbox: &Sandbox) {
        match self.real {
            Some(real) => std::fs::write(sandbox.root().join("kubeconfig.yaml"), real.kubeconfig())
                .expect("kubeconfig written"),
            None => {
                self.register_token(
                    &json!({"token": ADMIN_TOKEN, "user": "e2e-admin", "groups": ["system:masters"]}),
                );
                self.write_kubeconfig(sandbox, ADMIN_TOKEN);
            }
        }
    }

    /// A token for ServiceAccount `name` (which must exist) from the
    /// TokenRequest API, as `kubectl create token` gets one.
    fn service_account_token(&self, name: &str) -> String {
        let (status, answer) = kube(
            &self.url,
            "POST",
            &format!(
                "/api/v1/namespaces/{}/serviceaccounts/{name}/token",
                self.namespace
            ),
            &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                    "spec": {"expirationSeconds": 3600}}),
        );
        assert_eq!(status, 201, "{answer:#}");
        answer["status"]["token"]
            .as_str()
            .expect("a token")
            .to_owned()
    }

    /// Registers a bearer token with the server (`/_emulator/tokens`:
    /// a static token, or `{"serviceAccount": …}`); returns the token.
    fn register_token(&self, body: &Value) -> String {
        let (status, answer) = kube(&self.url, "POST", "/_emulator/tokens", body);
        assert_eq!(status, 200, "{answer:#}");
        answer["token"].as_str().expect("a token").to_owned()
    }

    /// The sandbox's kubeconfig (context `test`, this namespace),
    /// authenticating with `token`.
    fn write_kubeconfig(&self, sandbox: &Sandbox, token: &str) {
        if let Some(real) = self.real {
            let kubeconfig = real.kubeconfig_with_token(&self.context, token, &self.namespace);
            std::fs::write(sandbox.root().join("kubeconfig.yaml"), kubeconfig)
                .expect("kubeconfig written");
            return;
        }
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {{server: \"{}\"}}\nusers:\n- name: test\n  user: {{token: {token}}}\ncontexts:\n- name: test\n  context: {{cluster: test, user: test, namespace: {}}}\ncurrent-context: test\n",
            self.url, self.namespace
        );
        std::fs::write(sandbox.root().join("kubeconfig.yaml"), kubeconfig)
            .expect("kubeconfig written");
    }

    /// Applies `manifest` where its kind lives (namespaced kinds in this
    /// namespace) as `kubectl apply --server-side` does: created, or made
    /// to match the file when another test applied an older one.
    fn create_manifest(&self, manifest: &Value) {
        let kind = manifest["kind"].as_str().expect("a kind");
        let name = manifest["metadata"]["name"].as_str().expect("a name");
        let ns = &self.namespace;
        let collection = match kind {
            "ServiceAccount" => format!("/api/v1/namespaces/{ns}/serviceaccounts"),
            "Role" => format!("/apis/{RBAC}/namespaces/{ns}/roles"),
            "RoleBinding" => format!("/apis/{RBAC}/namespaces/{ns}/rolebindings"),
            "ClusterRole" => format!("/apis/{RBAC}/clusterroles"),
            "ClusterRoleBinding" => format!("/apis/{RBAC}/clusterrolebindings"),
            "CustomResourceDefinition" => {
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions".to_owned()
            }
            other => panic!("no path for kind {other}"),
        };
        let path = format!("{collection}/{name}?fieldManager=kubectl&force=true");
        let (status, answer) = http(
            &self.url,
            "PATCH",
            &path,
            &[("Content-Type", "application/apply-patch+yaml")],
            &manifest.to_string(),
        );
        assert!(
            status == 200 || status == 201,
            "apply {path}: {status} {answer}"
        );
        if let Some(cleanup) = &self.cleanup
            && kind == "ClusterRoleBinding"
        {
            // Made for this namespace's ServiceAccount alone.
            cleanup
                .paths
                .lock()
                .expect("the cleanup list")
                .push(format!("{collection}/{name}"));
        }
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
        if self.real.is_some() {
            return real_cluster::served_by(&self.url, &self.namespace, &through, image);
        }
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
targets:\n  web:\n    kubernetes: {{kubeconfig: kubeconfig.yaml, context: {}, namespace: {}, deployment: web, service: web, {router}}}\n\
artifacts:\n  web: {{version: \"2\", image: {{reference: \"{image}\", container: api}}}}\n\
stages:\n  - name: web\n    target: web\n    timeout: 2m\n    {strategy}\n\
gates:\n{gates}",
            self.context, self.namespace
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
    let [_, new] = cluster.images();
    let strategy = "canary:\n      gates: [ready]\n      steps: [{setWeight: 10}, {pause: {duration: 4s}}, {setWeight: 50}, {pause: {duration: 4s}}, {setWeight: 100}]";
    let plan = cluster.plan(&sandbox, true, new, strategy, READY_GATE);
    let running = sandbox.spawn(&["apply", &plan, "--yes"]);
    let route = json!({"route": "web"});
    for share in [100u64, 500] {
        wait_until(
            Duration::from_secs(40),
            &format!("the canary serving {share} of 1000"),
            || {
                let served = cluster.served_by(route.clone(), new);
                served.abs_diff(share) <= 20
            },
        );
    }
    let out = finish(running);
    out.expect_code(0);
    assert_eq!(cluster.served_by(route, new), 1000, "{out}");
    assert!(
        cluster.deployment("web-canary").is_none(),
        "the canary is removed once promoted"
    );
    let primary = cluster.deployment("web").expect("the primary");
    assert_eq!(
        primary["spec"]["template"]["spec"]["containers"][0]["image"],
        new
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
    let [stable, new] = cluster.images();
    let health = HealthServer::start(|_| false);
    let strategy =
        "canary:\n      steps: [{setWeight: 10}, {setWeight: 50}, {analysis: {gates: [health]}}]";
    let plan = cluster.plan(&sandbox, true, new, strategy, &health_gate(&health.url));
    let out = sandbox.run(&["apply", &plan, "--yes"]);
    out.expect_code(1);
    assert_eq!(phase(&sandbox)["phase"], "RolledBack", "{out}");
    assert_eq!(cluster.served_by(json!({"route": "web"}), stable), 1000);
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
    let image = match cluster.real {
        None => {
            cluster.image_behaves(CRASHING, "crashloop");
            CRASHING
        }
        Some(real) => match &real.crashing_image {
            Some(image) => image.as_str(),
            None => {
                eprintln!(
                    "SKIPPED {test} on a real cluster: DEPLOYCTL_E2E_CRASHING_IMAGE is not set (an image that exits at once)"
                );
                return;
            }
        },
    };
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
    let [_, new] = cluster.images();
    let strategy = "blueGreen: {prePromotionGates: [ready], scaleDownDelay: 1s}";
    let plan = cluster.plan(&sandbox, false, new, strategy, READY_GATE);
    let out = sandbox.run(&["apply", &plan, "--yes"]);
    out.expect_code(0);
    assert_eq!(
        cluster.served_by(json!({"service": "web"}), new),
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
    let [stable, new] = cluster.images();
    let health = HealthServer::start(|_| false);
    let strategy = "blueGreen: {prePromotionGates: [health]}";
    let plan = cluster.plan(&sandbox, false, new, strategy, &health_gate(&health.url));
    // Production is sampled all along: not one request may reach green.
    let done = Arc::new(AtomicBool::new(false));
    let leaked = Arc::new(AtomicU32::new(0));
    let sampler = {
        let (done, leaked) = (Arc::clone(&done), Arc::clone(&leaked));
        let cluster = cluster.clone();
        let new = new.to_owned();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                leaked.fetch_add(
                    cluster.served_by(json!({"service": "web"}), &new) as u32,
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
    assert_eq!(cluster.served_by(json!({"service": "web"}), stable), 1000);
}

#[test]
fn another_writer_of_the_route_mid_run_stops_the_run_for_a_human() {
    let test = "another_writer_of_the_route_mid_run_stops_the_run_for_a_human";
    let sandbox = Sandbox::new("kube-stranger");
    let Some(cluster) = Cluster::new(test, &sandbox, "stranger") else {
        return;
    };
    let [_, new] = cluster.images();
    let strategy =
        "canary:\n      steps: [{setWeight: 10}, {pause: {duration: 3s}}, {setWeight: 50}]";
    let plan = cluster.plan(&sandbox, true, new, strategy, READY_GATE);
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
        let [stable, new] = cluster.images();
        let strategy = "canary:\n      steps: [{setWeight: 10}, {pause: {duration: 2s}}, {setWeight: 50}, {pause: {duration: 1s}}, {setWeight: 100}]";
        let plan = cluster.plan(&sandbox, true, new, strategy, READY_GATE);
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
                assert_eq!(cluster.served_by(route.clone(), new), 1000, "{out}");
                // Safe twice: nothing left to do.
                let again = sandbox.run(&["resume", &run]);
                assert!(matches!(again.code, Some(0) | Some(2)), "{again}");
                assert_eq!(cluster.served_by(route, new), 1000);
            }
            _ => {
                for _ in 0..2 {
                    let out = sandbox.run(&["rollback", &run, "--yes"]);
                    assert!(matches!(out.code, Some(0) | Some(2)), "{out}");
                    assert_eq!(cluster.served_by(route.clone(), stable), 1000, "{out}");
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

impl Cluster {
    /// Creates `role` and binds it to ServiceAccount `deployer`, whose
    /// token the sandbox's kubeconfig then carries.
    fn run_as(&self, sandbox: &Sandbox, role: &Value) {
        self.create_manifest(role);
        self.create_manifest(&json!({
            "apiVersion": RBAC, "kind": "RoleBinding",
            "metadata": {"name": "deployer", "namespace": self.namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]},
            "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": self.namespace}],
        }));
        self.create_manifest(&json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "deployer"}}));
        let token = self.service_account_token("deployer");
        self.write_kubeconfig(sandbox, &token);
    }

    /// Forgets the API requests recorded for the namespace so far.
    fn clear_requests(&self) {
        let (status, answer) = kube(
            &self.url,
            "DELETE",
            &format!("/_emulator/requests?namespace={}", self.namespace),
            &Value::Null,
        );
        assert_eq!(status, 200, "{answer:#}");
    }

    /// The API requests recorded for the namespace since the last clear.
    fn requests(&self) -> Vec<Value> {
        let (status, answer) = kube(
            &self.url,
            "GET",
            &format!("/_emulator/requests?namespace={}", self.namespace),
            &Value::Null,
        );
        assert_eq!(status, 200, "{answer:#}");
        let items = answer.get("requests").cloned().unwrap_or(answer);
        items.as_array().cloned().unwrap_or_default()
    }
}

/// Runs `plans` (each to the exit code given) in a fresh namespace as a
/// ServiceAccount holding only the Role `deployctl rbac` prints for the
/// first, so the server's RBAC decides every request: each is allowed,
/// and each verb of the Role was used (`create` aside: server-side apply
/// creates by PATCH on this server).
fn rbac_covers(test: &str, routed: bool, runs: &[(&str, &str, i32)]) {
    let sandbox = Sandbox::new("kube-rbac");
    let Some(cluster) = Cluster::new(test, &sandbox, "rbac") else {
        return;
    };
    if !cluster.has_request_log(test, "which requests the releases made") {
        return;
    }
    let [_, new] = cluster.images();
    let health = HealthServer::start(|_| false);
    cluster.clear_requests();
    let mut role = Value::Null;
    for (strategy, gates, code) in runs {
        let gates = gates.replace("HEALTH", &health_gate(&health.url));
        let plan = cluster.plan(&sandbox, routed, new, strategy, &gates);
        if role.is_null() {
            let out = sandbox.run(&["rbac", &plan]);
            out.expect_code(0);
            let list: Value = serde_json::from_str(&out.stdout).expect("a Role list");
            let items = list["items"].as_array().expect("items");
            assert_eq!(items.len(), 1, "one namespace, one Role: {list:#}");
            role = items[0].clone();
            assert_eq!(role["metadata"]["namespace"], cluster.namespace.as_str());
            cluster.run_as(&sandbox, &role);
            // From here on, only the releases' requests.
            cluster.clear_requests();
        }
        let out = sandbox.run(&["apply", &plan, "--yes"]);
        out.expect_code(*code);
        // Each run starts from the stable version again.
        let _ = std::fs::remove_dir_all(sandbox.state_dir());
    }
    let requests = cluster.requests();
    assert!(!requests.is_empty(), "no request was recorded");
    // The server's RBAC decided each request by the Role alone.
    let deployer = format!("system:serviceaccount:{}:deployer", cluster.namespace);
    let denied: Vec<&Value> = requests
        .iter()
        .filter(|r| r["allowed"] != true || r["user"] != deployer.as_str())
        .collect();
    assert!(
        denied.is_empty(),
        "requests refused, or not made as the Role's ServiceAccount: {denied:#?}\nRole: {role:#}"
    );
    for rule in role["rules"].as_array().expect("rules") {
        for verb in rule["verbs"].as_array().expect("verbs") {
            if verb == "create" {
                continue;
            }
            let used = requests.iter().any(|r| {
                r["verb"] == *verb
                    && rule["resources"]
                        .as_array()
                        .is_some_and(|l| l.contains(&r["resource"]))
                    && rule["apiGroups"]
                        .as_array()
                        .is_some_and(|l| l.contains(&r["group"]))
            });
            assert!(
                used,
                "the Role grants {verb} on {} but no release used it",
                rule["resources"]
            );
        }
    }
}

#[test]
fn rbac_grants_what_a_routed_canary_and_its_rollback_request() {
    rbac_covers(
        "rbac_grants_what_a_routed_canary_and_its_rollback_request",
        true,
        &[
            (
                "canary:\n      steps: [{setWeight: 10}, {setWeight: 50}, {analysis: {gates: [health]}}]",
                "HEALTH",
                1,
            ),
            (
                "canary:\n      gates: [ready]\n      steps: [{setWeight: 50}, {setWeight: 100}]",
                READY_GATE,
                0,
            ),
        ],
    );
}

#[test]
fn rbac_grants_what_a_blue_green_release_and_its_rollback_request() {
    rbac_covers(
        "rbac_grants_what_a_blue_green_release_and_its_rollback_request",
        false,
        &[
            ("blueGreen: {prePromotionGates: [health]}", "HEALTH", 1),
            (
                "blueGreen: {prePromotionGates: [ready], scaleDownDelay: 1s}",
                READY_GATE,
                0,
            ),
        ],
    );
}

/// Without one permission the printed Role has (scaling Deployments), the
/// API server refuses the canary's first weight: the run rolls back and
/// says which request was refused and why, in the API server's words.
#[test]
fn a_release_missing_a_permission_says_which_request_was_refused() {
    let test = "a_release_missing_a_permission_says_which_request_was_refused";
    let sandbox = Sandbox::new("kube-rbac-missing");
    let Some(cluster) = Cluster::new(test, &sandbox, "forbid") else {
        return;
    };
    let [stable, new] = cluster.images();
    let plan = cluster.plan(
        &sandbox,
        true,
        new,
        "canary:\n      gates: [ready]\n      steps: [{setWeight: 50}, {setWeight: 100}]",
        READY_GATE,
    );
    let out = sandbox.run(&["rbac", &plan]);
    out.expect_code(0);
    let list: Value = serde_json::from_str(&out.stdout).expect("a Role list");
    let mut role = list["items"][0].clone();
    let rules = role["rules"].as_array_mut().expect("rules");
    let before = rules.len();
    rules.retain(|r| r["resources"] != json!(["deployments/scale"]));
    assert_eq!(rules.len(), before - 1, "the Role had one scale rule");
    cluster.run_as(&sandbox, &role);
    let out = sandbox.run(&["apply", &plan, "--yes"]);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert_ne!(out.code, Some(0), "{text}");
    assert!(
        text.contains(r#"cannot patch resource "deployments/scale" in API group "apps""#),
        "{text}"
    );
    assert_eq!(cluster.served_by(json!({"route": "web"}), stable), 1000);
}

/// A second test API server of this test's own: another cluster, with
/// its own server URL (so its own target identities).
struct SecondServer {
    child: std::process::Child,
    url: String,
}

impl SecondServer {
    fn start() -> SecondServer {
        let python = std::env::var("DEPLOYCTL_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/emulators/kubeapi.py");
        let child = std::process::Command::new(python)
            .arg(script)
            .args(["--port", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("a second API server starts");
        let url = format!("http://127.0.0.1:{port}");
        wait_until(
            Duration::from_secs(20),
            "the second API server answering",
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
        SecondServer { child, url }
    }
}

impl Drop for SecondServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Both test servers in one kubeconfig, as contexts `east` and `west`.
fn two_cluster_kubeconfig(east: &Cluster, west: &Cluster) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: east\n  cluster: {{server: \"{}\"}}\n- name: west\n  cluster: {{server: \"{}\"}}\nusers:\n- name: test\n  user: {{token: e2e-token}}\ncontexts:\n- name: east\n  context: {{cluster: east, user: test}}\n- name: west\n  context: {{cluster: west, user: test}}\ncurrent-context: east\n",
        east.url, west.url
    )
}

/// One plan moves `web` in two clusters (stage `east` on the shared
/// server, then `west` on a second one); `west`'s gate fails, and
/// `rollback.scope: plan` puts both back: east's route on stable too.
#[test]
fn a_failure_in_one_cluster_rolls_back_both() {
    let test = "a_failure_in_one_cluster_rolls_back_both";
    let sandbox = Sandbox::new("kube-two");
    let Some(east) = Cluster::new(test, &sandbox, "east") else {
        return;
    };
    let [stable, new] = east.images();
    // Its own sandbox only for the fixture's kubeconfig, which the plan
    // does not use (it names both clusters in `clusters.yaml`).
    let west_files = Sandbox::new("kube-two-west");
    let (west, _second, kubeconfig) = match east.real {
        Some(real) => {
            let Some(context) = &real.second_context else {
                eprintln!(
                    "SKIPPED {test} on a real cluster: DEPLOYCTL_E2E_SECOND_CONTEXT is not set (another cluster's context)"
                );
                return;
            };
            let west = Cluster::on_real(real, context, &west_files, "west");
            (west, None, real.kubeconfig())
        }
        None => {
            let second = SecondServer::start();
            let west = Cluster::new_at(&second.url, &west_files, "west");
            let kubeconfig = two_cluster_kubeconfig(&east, &west);
            (west, Some(second), kubeconfig)
        }
    };
    std::fs::write(sandbox.root().join("clusters.yaml"), kubeconfig).expect("kubeconfig written");
    // The test servers' contexts are named in `two_cluster_kubeconfig`.
    let (east_context, west_context) = match east.real {
        Some(_) => (east.context.as_str(), west.context.as_str()),
        None => ("east", "west"),
    };
    let health = HealthServer::start(|_| false);
    let target = |context: &str, ns: &str| {
        format!(
            "    kubernetes: {{kubeconfig: clusters.yaml, context: {context}, namespace: {ns}, deployment: web, service: web, httpRoute: {{name: web}}}}\n"
        )
    };
    let plan = format!(
        "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {{name: kube-two, environment: test}}\n\
targets:\n  web-east:\n{}  web-west:\n{}\
artifacts:\n  web-east: {{version: \"2\", image: {{reference: \"{new}\", container: api}}}}\n  web-west: {{version: \"2\", image: {{reference: \"{new}\", container: api}}}}\n\
stages:\n  - name: east\n    target: web-east\n    canary: {{steps: [{{setWeight: 50}}, {{setWeight: 100}}]}}\n  - name: west\n    target: web-west\n    after: [east]\n    canary: {{steps: [{{setWeight: 10}}, {{analysis: {{gates: [health]}}}}]}}\n\
gates:\n{}\
rollback: {{scope: plan}}\n",
        target(east_context, &east.namespace),
        target(west_context, &west.namespace),
        health_gate(&health.url)
    );
    let path = sandbox.root().join("plan.yaml");
    std::fs::write(&path, plan).expect("plan written");
    let out = sandbox.run(&["apply", path.to_str().expect("utf-8"), "--yes"]);
    out.expect_code(1);
    assert_eq!(phase(&sandbox)["phase"], "RolledBack", "{out}");
    for cluster in [&east, &west] {
        assert_eq!(
            cluster.served_by(json!({"route": "web"}), stable),
            1000,
            "{}\n{out}",
            cluster.url
        );
        assert!(
            cluster.deployment("web-canary").is_none(),
            "{}",
            cluster.url
        );
        let primary = cluster.deployment("web").expect("the primary");
        assert_eq!(
            primary["spec"]["template"]["spec"]["containers"][0]["image"], stable,
            "{}",
            cluster.url
        );
    }
}

impl Cluster {
    /// `deployctl controller` for this namespace (state in `sandbox`),
    /// reaching the cluster as in a pod would through the kubeconfig.
    fn controller(&self, sandbox: &Sandbox, identity: &str, extra: &[&str]) -> Running {
        let kubeconfig = sandbox.root().join("kubeconfig.yaml");
        let kubeconfig = kubeconfig.to_str().expect("utf-8 path").to_owned();
        let mut args = vec![
            "controller",
            "--kubeconfig",
            &kubeconfig,
            "--namespace",
            &self.namespace,
            "--lease-duration",
            "3",
            "--identity",
            identity,
        ];
        args.extend_from_slice(extra);
        let mut command = sandbox.command(&args);
        command.env("KUBECONFIG", &kubeconfig);
        sandbox.spawn_command(command, &args, None)
    }

    /// Installs the controller as `kubectl apply -k deploy/` would with
    /// this namespace as kustomize's `namespace:` (and as the one target
    /// namespace opened by `rolebinding-targets.example.yaml`): the CRD,
    /// the ServiceAccount, and exactly the shipped Roles, ClusterRoles and
    /// bindings. The sandbox's kubeconfig then carries the
    /// ServiceAccount's token, so the controller runs with those rights
    /// alone (run it with `--no-install-crd`, as deployment.yaml does).
    fn install_controller_rbac(&self, sandbox: &Sandbox) {
        use crate::deploy_manifests::object as manifest;
        let ns = self.namespace.as_str();
        self.create_manifest(&manifest("crd.yaml"));
        for file in [
            "serviceaccount.yaml",
            "role.yaml",
            "rolebinding.yaml",
            "clusterrole-crd.yaml",
            "clusterrolebinding-crd.yaml",
            "clusterrole-release-targets.yaml",
            "rolebinding-targets.example.yaml",
        ] {
            let mut object = manifest(file);
            let kind = object["kind"].as_str().unwrap_or_default().to_owned();
            if kind.starts_with("Cluster") {
                // Cluster-wide names are shared by every test on the
                // server: a binding (whose subject is this namespace's
                // ServiceAccount) gets a name of its own.
                if kind == "ClusterRoleBinding" {
                    let name = format!(
                        "{}-{ns}",
                        object["metadata"]["name"].as_str().unwrap_or_default()
                    );
                    object["metadata"]["name"] = json!(name);
                }
            } else {
                object["metadata"]["namespace"] = json!(ns);
            }
            for subject in object["subjects"].as_array_mut().into_iter().flatten() {
                subject["namespace"] = json!(ns);
            }
            self.create_manifest(&object);
        }
        let token = self.service_account_token("deployctl-controller");
        self.write_kubeconfig(sandbox, &token);
        wait_until(
            Duration::from_secs(30),
            "the Release CRD Established",
            || {
                self.get(
                    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/releases.deployctl.io",
                )
                .is_some_and(|crd| {
                    crd["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Established" && c["status"] == "True")
                })
            },
        );
    }

    /// Creates a Release of `plan` (retrying while the controller installs
    /// the CRD).
    fn release(&self, name: &str, plan: &str) {
        let body = json!({
            "apiVersion": "deployctl.io/v1", "kind": "Release",
            "metadata": {"name": name, "annotations": {"deployctl.io/initiator": "alice"}},
            "spec": {"plan": plan, "approvals": []},
        });
        let path = format!(
            "/apis/deployctl.io/v1/namespaces/{}/releases",
            self.namespace
        );
        wait_until(Duration::from_secs(60), "the Release accepted", || {
            let (status, _) = kube(&self.url, "POST", &path, &body);
            status == 201
        });
    }

    fn release_phase(&self, name: &str) -> Option<String> {
        self.get(&format!(
            "/apis/deployctl.io/v1/namespaces/{}/releases/{name}",
            self.namespace
        ))
        .and_then(|r| r["status"]["phase"].as_str().map(str::to_owned))
    }

    fn lease_holder(&self) -> Option<String> {
        self.get(&format!(
            "/apis/coordination.k8s.io/v1/namespaces/{}/leases/deployctl-controller",
            self.namespace
        ))
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
    }
}

/// Two controller replicas sharing one state directory (as the shipped
/// manifests mount it) run a Release whose plan canaries `web` through its
/// HTTPRoute; the leader is killed at 10 %, the other takes the Lease and
/// finishes the same run, and no weight was written twice (the route's
/// writes, counted by the server, are exactly the release's steps).
#[test]
fn the_controller_fails_over_mid_canary_and_finishes_the_release_once() {
    let test = "the_controller_fails_over_mid_canary_and_finishes_the_release_once";
    let sandbox = Sandbox::new("kube-controller");
    let Some(cluster) = Cluster::new(test, &sandbox, "ctl") else {
        return;
    };
    let [_, new] = cluster.images();
    let plan = format!(
        "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {{name: kube-controller, environment: test}}\n\
targets:\n  web:\n    kubernetes: {{namespace: {}, deployment: web, service: web, httpRoute: {{name: web}}}}\n\
artifacts:\n  web: {{version: \"2\", image: {{reference: \"{new}\", container: api}}}}\n\
stages:\n  - name: web\n    target: web\n    timeout: 3m\n    canary:\n      steps: [{{setWeight: 10}}, {{pause: {{duration: 6s}}}}, {{setWeight: 50}}, {{pause: {{duration: 1s}}}}, {{setWeight: 100}}]\n",
        cluster.namespace
    );
    // Both replicas run with the shipped RBAC and nothing more.
    cluster.install_controller_rbac(&sandbox);
    let shipped = ["--no-install-crd"];
    let mut replicas = [
        Some(cluster.controller(&sandbox, "replica-a", &shipped)),
        Some(cluster.controller(&sandbox, "replica-b", &shipped)),
    ];
    cluster.release("storefront", &plan);
    let route = json!({"route": "web"});
    wait_until(
        cluster.patience(Duration::from_secs(60)),
        "the canary at 10 %",
        || cluster.served_by(route.clone(), new).abs_diff(100) <= 20,
    );
    let logged = cluster.has_request_log(test, "that no step was written twice");
    if logged {
        cluster.clear_requests();
    }
    let leader = cluster.lease_holder().expect("a leader");
    let index = usize::from(leader == "replica-b");
    let killed = replicas[index].take().expect("the leader's process");
    assert!(!killed.sigkill(), "the leader was still running");
    let survivor = replicas[1 - index].as_ref().expect("the other replica");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while cluster.release_phase("storefront").as_deref() != Some("Succeeded") {
        assert!(
            std::time::Instant::now() < deadline,
            "the other replica did not finish the release: {:#}\n--- its stderr\n{}",
            cluster
                .get(&format!(
                    "/apis/deployctl.io/v1/namespaces/{}/releases/storefront",
                    cluster.namespace
                ))
                .unwrap_or_default()["status"],
            survivor.stderr_so_far()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_ne!(
        cluster.lease_holder().as_deref(),
        Some(leader.as_str()),
        "the Lease moved"
    );
    assert_eq!(cluster.served_by(route, new), 1000);
    assert_eq!(
        sandbox.run_ids().len(),
        1,
        "one run, resumed, not a second one"
    );
    if !logged {
        return;
    }
    // After the kill: 50 %, 100 %, and the promotion's move back to the
    // primary; the 10 % step was not written again.
    let route_writes: Vec<Value> = cluster
        .requests()
        .into_iter()
        .filter(|r| r["resource"] == "httproutes" && r["verb"] == "patch")
        .collect();
    assert_eq!(route_writes.len(), 3, "{route_writes:#?}");
    let controller = format!(
        "system:serviceaccount:{}:deployctl-controller",
        cluster.namespace
    );
    let refused: Vec<Value> = cluster
        .requests()
        .into_iter()
        .filter(|r| r["user"] == controller.as_str() && r["allowed"] != true)
        .collect();
    assert!(refused.is_empty(), "the shipped RBAC refused: {refused:#?}");
}

/// `plan --observe` reads a Kubernetes target through the adapter:
/// identity, the stable version, the weights it can take and the calls
/// each step would make, with nothing but reads on the API server.
#[test]
fn plan_observe_reads_a_kubernetes_target_and_writes_nothing() {
    let test = "plan_observe_reads_a_kubernetes_target_and_writes_nothing";
    let sandbox = Sandbox::new("kube-observe");
    let Some(cluster) = Cluster::new(test, &sandbox, "observe") else {
        return;
    };
    let [stable, new] = cluster.images();
    let strategy = "canary:\n      steps: [{setWeight: 10}, {setWeight: 100}]";
    let plan = cluster.plan(&sandbox, true, new, strategy, READY_GATE);
    let logged = cluster.has_request_log(test, "that it wrote nothing");
    if logged {
        cluster.clear_requests();
    }
    let out = sandbox.run(&["plan", &plan, "--observe", "--output", "json"]);
    out.expect_code(0);
    let report: Value = serde_json::from_str(&out.stdout).expect("a report");
    let stage = &report["stages"][0];
    assert_eq!(
        stage["identity"],
        format!(
            "kubernetes:{}/namespaces/{}/deployments/web",
            cluster.server, cluster.namespace
        ),
        "{report:#}"
    );
    assert_eq!(stage["now"]["stable"], stable, "{report:#}");
    let text = report.to_string();
    assert!(
        text.contains("apply HTTPRoute"),
        "the weight steps name their route write: {report:#}"
    );
    if logged {
        let writes: Vec<Value> = cluster
            .requests()
            .into_iter()
            .filter(|r| !matches!(r["verb"].as_str(), Some("get" | "list" | "watch")))
            .collect();
        assert!(writes.is_empty(), "plan --observe wrote: {writes:#?}");
    }
    assert_eq!(cluster.served_by(json!({"route": "web"}), stable), 1000);
}

/// The controller serves Prometheus metrics and the kubelet's probes on
/// ports of their own: `/readyz` once it is up, `/metrics` with its
/// leadership and the reconcile histogram once a Release has run.
#[test]
fn the_controller_serves_metrics_and_probes() {
    let test = "the_controller_serves_metrics_and_probes";
    let sandbox = Sandbox::new("kube-metrics");
    let Some(cluster) = Cluster::new(test, &sandbox, "metrics") else {
        return;
    };
    let [_, new] = cluster.images();
    let kubeconfig = sandbox.root().join("kubeconfig.yaml");
    let kubeconfig = kubeconfig.to_str().expect("utf-8 path").to_owned();
    let args = [
        "controller",
        "--kubeconfig",
        &kubeconfig,
        "--namespace",
        &cluster.namespace,
        "--lease-duration",
        "3",
        "--metrics-bind-address",
        "127.0.0.1:0",
        "--health-probe-bind-address",
        "127.0.0.1:0",
    ];
    let mut command = sandbox.command(&args);
    command.env("KUBECONFIG", &kubeconfig);
    let controller = sandbox.spawn_command(command, &args, None);
    let address = |what: &str| -> String {
        let mut found = String::new();
        wait_until(Duration::from_secs(30), what, || {
            let stderr = controller.stderr_so_far();
            match stderr.lines().find_map(|l| l.split(what).nth(1)) {
                Some(rest) => {
                    found = rest.split('/').next().unwrap_or_default().to_owned();
                    true
                }
                None => false,
            }
        });
        format!("http://{found}")
    };
    let metrics = address("metrics on http://");
    let probes = address("probes on http://");
    assert_eq!(http(&probes, "GET", "/healthz", &[], "").0, 200);
    wait_until(Duration::from_secs(30), "ready", || {
        http(&probes, "GET", "/readyz", &[], "").0 == 200
    });
    let plan = format!(
        "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {{name: kube-metrics, environment: test}}\n\
targets:\n  web:\n    kubernetes: {{namespace: {}, deployment: web, service: web, httpRoute: {{name: web}}}}\n\
artifacts:\n  web: {{version: \"2\", image: {{reference: \"{new}\", container: api}}}}\n\
stages:\n  - name: web\n    target: web\n    canary: {{steps: [{{setWeight: 50}}, {{setWeight: 100}}]}}\n",
        cluster.namespace
    );
    cluster.release("web", &plan);
    wait_until(Duration::from_secs(60), "the release to succeed", || {
        cluster.release_phase("web").as_deref() == Some("Succeeded")
    });
    // The phases are counted at each resync (every half second).
    let mut text = String::new();
    wait_until(
        Duration::from_secs(10),
        "the metrics to count the Release as Succeeded",
        || {
            text = http(&metrics, "GET", "/metrics", &[], "").1;
            text.contains("deployctl_releases{phase=\"Succeeded\"} 1")
        },
    );
    assert!(text.contains("deployctl_controller_leader 1"), "{text}");
    assert!(
        text.contains("# TYPE deployctl_reconcile_duration_seconds histogram"),
        "{text}"
    );
    let count: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("deployctl_reconcile_duration_seconds_count{wrote=\"true\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(count > 0, "{text}");
    assert!(
        text.contains("# TYPE deployctl_reconcile_queue_depth gauge"),
        "{text}"
    );
    assert_eq!(http(&metrics, "GET", "/nothing", &[], "").0, 404);
    // Settled (run ended, finalizer gone): the resyncs pass it by, so an
    // idle controller sends nothing but its lease renewals.
    let release = format!(
        "/apis/deployctl.io/v1/namespaces/{}/releases/web",
        cluster.namespace
    );
    wait_until(Duration::from_secs(10), "the finalizer removed", || {
        cluster.get(&release).is_some_and(|r| {
            r["metadata"]["finalizers"]
                .as_array()
                .is_none_or(|f| f.is_empty())
        })
    });
    if !cluster.has_request_log(test, "that an idle controller sends only lease renewals") {
        return;
    }
    std::thread::sleep(Duration::from_secs(1));
    cluster.clear_requests();
    std::thread::sleep(Duration::from_secs(3));
    let sent: Vec<String> = cluster
        .requests()
        .iter()
        .filter(|r| r["verb"] != "watch" && r["resource"] != "leases")
        .map(|r| format!("{} {} {}", r["verb"], r["resource"], r["name"]))
        .collect();
    assert!(sent.is_empty(), "idle, the controller sent {sent:?}");
    drop(controller);
}

/// What the examples' gates and notifications reach, on one local port:
/// `/healthz/deep` answers the preview smoke test's expected body,
/// `/api/v1/query` a healthy Prometheus vector (an error ratio of 0.1 %,
/// a p99 of 120 ms), and every POST (a notification webhook) is kept.
struct Observability {
    url: String,
    posts: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Observability {
    fn start() -> Observability {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a local port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let posts = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = posts.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut request = Vec::new();
                let mut buffer = [0u8; 8192];
                // Headers, then as much body as Content-Length says.
                while let Ok(n) = stream.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= length {
                            break;
                        }
                    }
                }
                let text = String::from_utf8_lossy(&request).into_owned();
                let (status, body) = if text.starts_with("POST ") {
                    let payload = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                    kept.lock().expect("posts").push(payload.to_owned());
                    ("200 OK", "{}".to_owned())
                } else if text.starts_with("GET /healthz/deep") {
                    ("200 OK", r#"{"status":"ok"}"#.to_owned())
                } else if text.contains("/api/v1/query") {
                    let value = if text.contains("histogram_quantile") {
                        "0.120"
                    } else {
                        "0.001"
                    };
                    let now = deployctl_time::now_ms() as f64 / 1000.0;
                    (
                        "200 OK",
                        format!(
                            r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[{now},"{value}"]}}]}}}}"#
                        ),
                    )
                } else {
                    ("404 Not Found", "{}".to_owned())
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Observability { url, posts }
    }

    fn notified(&self, event: &str) -> bool {
        self.posts
            .lock()
            .expect("posts")
            .iter()
            .any(|p| p.contains(event))
    }
}

/// `examples/NAME` for this cluster, changed only where it names things
/// and endpoints the test cannot have (the cluster's context and
/// namespace, the workload's names, the gates' and notifications' URLs,
/// an SNS topic as a webhook), and in time: each wait shortened so a
/// release of an hour takes seconds (gate intervals 200 ms, pauses 2 s,
/// scale-down delays 1 s; counts and thresholds as written).
/// Returns the plan's path and the plan as written.
fn example_for(
    cluster: &Cluster,
    sandbox: &Sandbox,
    name: &str,
    observability: &str,
) -> (String, Value) {
    let text = std::fs::read_to_string(crate::repo_root().join("examples").join(name))
        .expect("the example");
    let mut plan: Value = serde_saphyr::from_str(&text).expect("the example parses");
    for (_, target) in plan["targets"].as_object_mut().expect("targets") {
        let k8s = &mut target["kubernetes"];
        k8s["context"] = json!(cluster.context);
        k8s["kubeconfig"] = json!("kubeconfig.yaml");
        k8s["namespace"] = json!(cluster.namespace);
        k8s["deployment"] = json!("web");
        k8s["service"] = json!("web");
        if k8s.get("previewService").is_some() {
            k8s["previewService"] = json!("web-preview");
        }
        if k8s.get("httpRoute").is_some() {
            k8s["httpRoute"] = json!({"name": "web", "namespace": cluster.namespace});
        }
    }
    for (_, gate) in plan["gates"].as_object_mut().expect("gates") {
        gate["interval"] = json!("200ms");
        if let Some(http) = gate.get_mut("http") {
            let path = http["url"]
                .as_str()
                .and_then(|u| u.split_once(".example").map(|(_, p)| p.to_owned()))
                .unwrap_or_default();
            http["url"] = json!(format!("{observability}{path}"));
            http["allowInsecureHttp"] = json!(true);
        }
        if let Some(prometheus) = gate.get_mut("prometheus") {
            prometheus["address"] = json!(observability);
            prometheus["allowInsecureHttp"] = json!(true);
        }
    }
    for stage in plan["stages"].as_array_mut().expect("stages") {
        // (`get_mut`: indexing a Value for writing would add the keys.)
        let steps = stage
            .get_mut("canary")
            .and_then(|c| c.get_mut("steps"))
            .and_then(Value::as_array_mut);
        for step in steps.into_iter().flatten() {
            if let Some(pause) = step.get_mut("pause") {
                pause["duration"] = json!("2s");
            }
        }
        if let Some(delay) = stage
            .get_mut("blueGreen")
            .and_then(|b| b.get_mut("scaleDownDelay"))
        {
            *delay = json!("1s");
        }
    }
    for notification in plan["notifications"].as_array_mut().into_iter().flatten() {
        if let Some(fields) = notification.as_object_mut() {
            fields.remove("sns");
            fields.remove("webhook");
            fields.insert(
                "webhook".into(),
                json!({"url": format!("{observability}/notify"), "allowInsecureHttp": true}),
            );
        }
    }
    if cluster.real.is_some() {
        // The example's registry is not the cluster's.
        let [_, new] = cluster.images();
        for (_, artifact) in plan["artifacts"].as_object_mut().expect("artifacts") {
            if let Some(image) = artifact.get_mut("image") {
                image["reference"] = json!(new);
            }
        }
    }
    // JSON is YAML: the plan loader reads it as written.
    let path = sandbox.root().join(name);
    std::fs::write(&path, serde_json::to_string_pretty(&plan).expect("json"))
        .expect("plan written");
    (path.to_string_lossy().into_owned(), plan)
}

/// The image `plan` releases to `target`.
fn released_image(plan: &Value, target: &str) -> String {
    plan["artifacts"][target]["image"]["reference"]
        .as_str()
        .expect("an image")
        .to_owned()
}

/// `examples/eks-canary-gateway-api.yaml`, run: the beta testers' header
/// reaches the new version alone before any weight, the weights move
/// through the HTTPRoute with Prometheus analyses between them, and the
/// release ends promoted, its header route gone, notified by webhook.
#[test]
fn the_eks_canary_example_runs_for_real() {
    let test = "the_eks_canary_example_runs_for_real";
    let sandbox = Sandbox::new("kube-example-canary");
    let Some(cluster) = Cluster::new(test, &sandbox, "ex-canary") else {
        return;
    };
    let observability = Observability::start();
    let (plan, written) = example_for(
        &cluster,
        &sandbox,
        "eks-canary-gateway-api.yaml",
        &observability.url,
    );
    let image = released_image(&written, "storefront");
    let running = sandbox.spawn(&["apply", &plan, "--yes"]);
    let beta = json!({"route": "web", "headers": {"x-canary": "storefront-beta"}});
    let everyone = json!({"route": "web"});
    wait_until(
        Duration::from_secs(60),
        "the beta testers on the new version",
        || cluster.served_by(beta.clone(), &image) == 1000,
    );
    assert_eq!(
        cluster.served_by(everyone.clone(), &image),
        0,
        "before the first weight, only the header reaches the canary"
    );
    let out = finish(running);
    out.expect_code(0);
    assert_eq!(phase(&sandbox)["phase"], "Succeeded", "{out}");
    assert_eq!(cluster.served_by(everyone, &image), 1000);
    let route = cluster.route();
    assert_eq!(
        route["spec"]["rules"].as_array().map(Vec::len),
        Some(1),
        "the header route is gone: {route:#}"
    );
    assert!(
        observability.notified("succeeded"),
        "{:?}",
        observability.posts
    );
}

/// `examples/eks-blue-green.yaml`, run: green beside blue, the preview
/// smoke test and readiness before the switch, the error-rate analysis
/// after it, blue scaled down after its delay.
#[test]
fn the_eks_blue_green_example_runs_for_real() {
    let test = "the_eks_blue_green_example_runs_for_real";
    let sandbox = Sandbox::new("kube-example-bg");
    let Some(cluster) = Cluster::new(test, &sandbox, "ex-bg") else {
        return;
    };
    let observability = Observability::start();
    let (plan, written) = example_for(
        &cluster,
        &sandbox,
        "eks-blue-green.yaml",
        &observability.url,
    );
    let image = released_image(&written, "checkout-api");
    let out = sandbox.run(&["apply", &plan, "--yes"]);
    out.expect_code(0);
    assert_eq!(phase(&sandbox)["phase"], "Succeeded", "{out}");
    assert_eq!(cluster.served_by(json!({"service": "web"}), &image), 1000);
    // Blue, kept for a fast rollback, runs no pods after the delay.
    wait_until(Duration::from_secs(30), "blue scaled to zero", || {
        cluster
            .deployment("web")
            .is_some_and(|d| d["spec"]["replicas"] == 0)
    });
    assert!(
        observability.notified("succeeded"),
        "{:?}",
        observability.posts
    );
}

impl Cluster {
    /// Who holds the Deployment `web`'s platform lock (its Lease), if
    /// anyone.
    fn lock_holder(&self) -> Option<String> {
        self.get(&format!(
            "/apis/coordination.k8s.io/v1/namespaces/{}/leases/deployctl-lock-web",
            self.namespace
        ))
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
    }

    fn release_message(&self, name: &str) -> String {
        self.get(&format!(
            "/apis/deployctl.io/v1/namespaces/{}/releases/{name}",
            self.namespace
        ))
        .map(|r| r["status"].to_string())
        .unwrap_or_default()
    }
}

/// A deploy PC's run and the in-cluster controller's Release on the same
/// Deployment exclude each other through the Deployment's Lease: their
/// state directories (journals) have nothing in common. Whichever holds
/// it, the other is refused naming the holder's run, and nothing moves.
#[test]
fn a_cli_run_and_a_release_on_the_same_deployment_exclude_each_other() {
    let test = "a_cli_run_and_a_release_on_the_same_deployment_exclude_each_other";
    let pc = Sandbox::new("kube-exclude-pc");
    let Some(cluster) = Cluster::new(test, &pc, "exclude") else {
        return;
    };
    let in_cluster = Sandbox::new("kube-exclude-ctl");
    std::fs::copy(
        pc.root().join("kubeconfig.yaml"),
        in_cluster.root().join("kubeconfig.yaml"),
    )
    .expect("the controller's kubeconfig");
    let [_, new] = cluster.images();
    let route = json!({"route": "web"});
    let holding =
        "canary:\n      steps: [{setWeight: 10}, {pause: {duration: 1h}}, {setWeight: 100}]";
    let plan = cluster.plan(&pc, true, new, holding, READY_GATE);
    let release_plan = format!(
        "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {{name: kube-exclude, environment: test}}\n\
targets:\n  web:\n    kubernetes: {{namespace: {}, deployment: web, service: web, httpRoute: {{name: web}}}}\n\
artifacts:\n  web: {{version: \"2\", image: {{reference: \"{new}\", container: api}}}}\n\
stages:\n  - name: web\n    target: web\n    timeout: 3m\n    canary:\n      steps: [{{setWeight: 20}}, {{pause: {{duration: 1h}}}}, {{setWeight: 100}}]\n",
        cluster.namespace
    );

    // The PC's run holds the Deployment at 10 %.
    let running = pc.spawn(&["apply", &plan, "--yes"]);
    wait_until(
        cluster.patience(Duration::from_secs(60)),
        "the PC's run paused at 10 %",
        || crate::cloudfront_e2e::pausing(&pc),
    );
    let run = pc.run_ids().first().cloned().expect("the PC's run");
    let holder = cluster.lock_holder().unwrap_or_default();
    assert!(
        holder.starts_with(&run),
        "the Lease names the run: {holder}"
    );

    // A Release of the same Deployment is refused, naming that run.
    let controller = cluster.controller(&in_cluster, "replica-a", &[]);
    cluster.release("storefront", &release_plan);
    wait_until(Duration::from_secs(60), "the Release refused", || {
        cluster.release_phase("storefront").as_deref() == Some("Refused")
    });
    let refusal = cluster.release_message("storefront");
    assert!(
        refusal.contains(&run) && refusal.contains("deployctl-lock-web"),
        "{refusal}"
    );
    assert!(
        cluster.served_by(route.clone(), new).abs_diff(100) <= 30,
        "still the PC's 10 %"
    );
    assert!(
        in_cluster.run_ids().is_empty(),
        "the controller recorded no run"
    );

    // The PC's run is killed (rolled back): the Lease is let go…
    pc.run(&["kill", &run]).expect_code(0);
    finish(running).expect_code(1);
    assert_eq!(cluster.lock_holder(), None, "released at the run's end");

    // …and a Release now runs and holds it; the PC is refused in turn.
    cluster.release("storefront-2", &release_plan);
    // The Lease is taken before the run is recorded: wait for both.
    wait_until(
        cluster.patience(Duration::from_secs(60)),
        "the Release's run recorded and holding the Lease",
        || cluster.lock_holder().is_some() && !in_cluster.run_ids().is_empty(),
    );
    let released_run = in_cluster
        .run_ids()
        .first()
        .cloned()
        .expect("the Release's run");
    let holder = cluster.lock_holder().unwrap_or_default();
    assert!(holder.starts_with(&released_run), "{holder}");
    let refused = pc.run(&["apply", &plan, "--yes"]);
    refused.expect_code(2);
    assert!(
        refused.stderr.contains(&released_run) && refused.stderr.contains("deployctl-lock-web"),
        "{refused}"
    );
    assert_eq!(pc.run_ids().len(), 1, "no second run on the PC");
    drop(controller);
}
