//! The real-cluster switch of the Kubernetes end-to-end tests.
//!
//! With `DEPLOYCTL_E2E_REAL_CLUSTER=1` and `KUBECONFIG` set, `kube_e2e`
//! runs its scenarios against the cluster the kubeconfig names instead of
//! the test API server. The binary gets the kubeconfig itself (flattened,
//! so it carries its credentials); the tests' own reads and writes go
//! through `kubectl proxy`, which authenticates them the same way.
//!
//! A real cluster needs what the test server makes up:
//!
//! | variable | what |
//! |---|---|
//! | `DEPLOYCTL_E2E_CONTEXT` | the context (default: the current one) |
//! | `DEPLOYCTL_E2E_STABLE_IMAGE`, `DEPLOYCTL_E2E_NEW_IMAGE` | two images that run and stay up (e.g. two `registry.k8s.io/pause` versions), pinned by digest |
//! | `DEPLOYCTL_E2E_CRASHING_IMAGE` | optional: one that exits at once (else the crash-loop test is skipped) |
//! | `DEPLOYCTL_E2E_GATEWAY_CLASS` | a GatewayClass a Gateway API implementation in the cluster serves |
//! | `DEPLOYCTL_E2E_SECOND_CONTEXT` | optional: another cluster for the two-cluster test (else skipped) |
//!
//! The test server's traffic model and request log exist only there. On a
//! cluster, the share of requests an image serves is derived from what
//! the cluster reports: the route's weights (once its parents accepted
//! the generation written) times the share of each Service's ready
//! endpoints running the image. Checks that need the request log are
//! skipped with a message.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use serde_json::{Value, json};

use crate::cloudfront_e2e::http;

/// The cluster, its images and its Gateway class, from the environment.
pub struct RealCluster {
    /// The context the tests use.
    pub context: String,
    /// Another cluster's context, for the two-cluster test.
    pub second_context: Option<String>,
    /// `kubectl config view --raw --flatten`, as JSON.
    kubeconfig: Value,
    pub stable_image: String,
    pub new_image: String,
    pub crashing_image: Option<String>,
    pub gateway_class: String,
    /// `kubectl proxy` per context: its URL, and the pipe whose closing
    /// (this process exiting) stops it.
    proxies: Mutex<HashMap<String, (String, Proxy)>>,
}

struct Proxy {
    _child: Child,
    _stdin: ChildStdin,
}

const SWITCH: &str = "DEPLOYCTL_E2E_REAL_CLUSTER";

/// The real cluster when the switch is on; `None` when it is off. A
/// switch turned on without what a run needs stops the test with what is
/// missing: a requested real-cluster run must not pass by skipping.
pub fn from_env() -> Option<&'static RealCluster> {
    static REAL: OnceLock<Option<RealCluster>> = OnceLock::new();
    REAL.get_or_init(|| {
        let on = std::env::var(SWITCH).is_ok_and(|v| v == "1" || v == "true");
        on.then(|| {
            RealCluster::configured()
                .unwrap_or_else(|missing| panic!("{SWITCH} is set, but {missing}"))
        })
    })
    .as_ref()
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl RealCluster {
    fn configured() -> Result<RealCluster, String> {
        let kubeconfig = var("KUBECONFIG").ok_or("KUBECONFIG is not (the cluster's kubeconfig)")?;
        let required =
            |name: &str, what: &str| var(name).ok_or(format!("{name} is not set ({what})"));
        let stable_image = required(
            "DEPLOYCTL_E2E_STABLE_IMAGE",
            "an image that runs and stays up, pinned by digest",
        )?;
        let new_image = required(
            "DEPLOYCTL_E2E_NEW_IMAGE",
            "another such image, the version released",
        )?;
        let gateway_class = required(
            "DEPLOYCTL_E2E_GATEWAY_CLASS",
            "a GatewayClass the cluster's Gateway API implementation serves",
        )?;
        let view = kubectl(&["config", "view", "--raw", "--flatten", "-o", "json"])?;
        let kubeconfig: Value = serde_json::from_str(&view)
            .map_err(|e| format!("`kubectl config view` of {kubeconfig} is not JSON: {e}"))?;
        let context = match var("DEPLOYCTL_E2E_CONTEXT") {
            Some(context) => context,
            None => kubectl(&["config", "current-context"])?.trim().to_owned(),
        };
        let real = RealCluster {
            context,
            second_context: var("DEPLOYCTL_E2E_SECOND_CONTEXT"),
            kubeconfig,
            stable_image,
            new_image,
            crashing_image: var("DEPLOYCTL_E2E_CRASHING_IMAGE"),
            gateway_class,
            proxies: Mutex::new(HashMap::new()),
        };
        for context in std::iter::once(&real.context).chain(real.second_context.as_ref()) {
            real.server(context)?;
        }
        Ok(real)
    }

    /// The API server URL `context` names, as the binary will see it.
    pub fn server(&self, context: &str) -> Result<String, String> {
        let named = |list: &str, name: &str| -> Option<Value> {
            self.kubeconfig[list]
                .as_array()?
                .iter()
                .find(|e| e["name"] == name)
                .cloned()
        };
        let entry = named("contexts", context)
            .ok_or(format!("the kubeconfig has no context {context:?}"))?;
        let cluster = entry["context"]["cluster"].as_str().unwrap_or_default();
        named("clusters", cluster)
            .and_then(|c| c["cluster"]["server"].as_str().map(str::to_owned))
            .ok_or(format!(
                "context {context:?} names no cluster with a server"
            ))
    }

    /// The kubeconfig the binary gets: every context, with its credentials.
    pub fn kubeconfig(&self) -> String {
        self.kubeconfig.to_string()
    }

    /// A kubeconfig for `context`'s cluster whose only user is `token`
    /// (a ServiceAccount's, from the TokenRequest API).
    pub fn kubeconfig_with_token(&self, context: &str, token: &str, namespace: &str) -> String {
        let entry = self.kubeconfig["contexts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == context)
            .expect("the context exists (checked at start)");
        let cluster_name = entry["context"]["cluster"].clone();
        let cluster = self.kubeconfig["clusters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == cluster_name)
            .cloned()
            .expect("the cluster exists (checked at start)");
        json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [cluster],
            "users": [{"name": "token", "user": {"token": token}}],
            "contexts": [{"name": context, "context": {"cluster": cluster_name, "user": "token", "namespace": namespace}}],
            "current-context": context,
        })
        .to_string()
    }

    /// Plain HTTP to `context`'s cluster, authenticated as the kubeconfig's
    /// user: a `kubectl proxy` started on first use.
    pub fn proxy(&self, context: &str) -> String {
        let mut proxies = self.proxies.lock().expect("the proxies");
        if let Some((url, _)) = proxies.get(context) {
            return url.clone();
        }
        // `read` returns when this process exits and the pipe closes,
        // and takes kubectl with it.
        let mut child = Command::new("sh")
            .args([
                "-c",
                "kubectl --context \"$0\" proxy --port=0 & proxy=$!; read -r _; kill $proxy",
                context,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("kubectl proxy starts (is kubectl installed?)");
        let stdin = child.stdin.take().expect("a pipe");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("a pipe"))
            .read_line(&mut line)
            .expect("kubectl proxy says where it serves");
        // "Starting to serve on 127.0.0.1:PORT"
        let address = line
            .split_whitespace()
            .last()
            .unwrap_or_else(|| panic!("kubectl proxy said {line:?}"));
        let url = format!("http://{address}");
        proxies.insert(
            context.to_owned(),
            (
                url.clone(),
                Proxy {
                    _child: child,
                    _stdin: stdin,
                },
            ),
        );
        url
    }
}

/// `kubectl ARGS` with the environment's kubeconfig; its stdout.
fn kubectl(args: &[&str]) -> Result<String, String> {
    let out = Command::new("kubectl")
        .args(args)
        .output()
        .map_err(|e| format!("kubectl cannot run ({e}); it is needed to reach the cluster"))?;
    if !out.status.success() {
        return Err(format!(
            "`kubectl {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn get(url: &str, path: &str) -> Option<Value> {
    let (status, body) = http(url, "GET", path, &[], "");
    (status == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

/// How many of 1000 requests `through` (`{"route": R, "headers"?: {..}}`
/// or `{"service": S}`) would reach pods running `image`, by what the
/// cluster at `url` reports.
pub fn served_by(url: &str, namespace: &str, through: &Value, image: &str) -> u64 {
    let share = if let Some(service) = through["service"].as_str() {
        service_share(url, namespace, service, image)
    } else {
        let route = through["route"].as_str().expect("a route or a service");
        route_share(url, namespace, route, &through["headers"], image)
    };
    (share * 1000.0).round() as u64
}

/// The share of `service`'s ready endpoints whose pod runs `image`.
fn service_share(url: &str, namespace: &str, service: &str, image: &str) -> f64 {
    let slices = get(
        url,
        &format!(
            "/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3D{service}"
        ),
    )
    .unwrap_or_default();
    // One list of the namespace's pods, not a read per endpoint: a poll
    // must be quick enough to see a short pause at a weight.
    let pods = get(url, &format!("/api/v1/namespaces/{namespace}/pods")).unwrap_or_default();
    let runs_image = |name: &str| {
        pods["items"].as_array().into_iter().flatten().any(|p| {
            p["metadata"]["name"] == name
                && p["spec"]["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["image"] == image)
        })
    };
    let mut ready = 0u32;
    let mut running = 0u32;
    for endpoint in slices["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
    {
        if endpoint["conditions"]["ready"] == false {
            continue;
        }
        ready += 1;
        if endpoint["targetRef"]["name"]
            .as_str()
            .is_some_and(runs_image)
        {
            running += 1;
        }
    }
    if ready == 0 {
        0.0
    } else {
        f64::from(running) / f64::from(ready)
    }
}

/// The share of requests `route` sends to `image`: each backend's share
/// of the route (`route_split`) times its Service's share.
fn route_share(url: &str, namespace: &str, route: &str, headers: &Value, image: &str) -> f64 {
    let Some(object) = get(
        url,
        &format!("/apis/gateway.networking.k8s.io/v1/namespaces/{namespace}/httproutes/{route}"),
    ) else {
        return 0.0;
    };
    route_split(&object, headers)
        .iter()
        .map(|(service, share)| share * service_share(url, namespace, service, image))
        .sum()
}

/// Which Services an HTTPRoute sends a request carrying `headers` to, and
/// in what shares: none until every parent accepted the generation
/// written with its references resolved; then the weights (default 1) of
/// the rule whose header matches the request has, else of the rule
/// without header matches.
fn route_split(route: &Value, headers: &Value) -> Vec<(String, f64)> {
    let generation = &route["metadata"]["generation"];
    let parents = route["status"]["parents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let holds = |conditions: &Value, kind: &str| {
        conditions.as_array().into_iter().flatten().any(|c| {
            c["type"] == kind && c["status"] == "True" && c["observedGeneration"] == *generation
        })
    };
    if parents.is_empty()
        || !parents
            .iter()
            .all(|p| holds(&p["conditions"], "Accepted") && holds(&p["conditions"], "ResolvedRefs"))
    {
        return Vec::new();
    }
    let header_matches = |rule: &Value| -> Vec<(String, String)> {
        rule["matches"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|m| m["headers"].as_array().into_iter().flatten())
            .map(|h| {
                (
                    h["name"].as_str().unwrap_or_default().to_ascii_lowercase(),
                    h["value"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let sent: Vec<(String, String)> = headers
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                v.as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let rules = route["spec"]["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let rule = rules
        .iter()
        .find(|r| {
            let wanted = header_matches(r);
            !wanted.is_empty() && wanted.iter().all(|w| sent.contains(w))
        })
        .or_else(|| rules.iter().find(|r| header_matches(r).is_empty()));
    let Some(rule) = rule else {
        return Vec::new();
    };
    let backends: Vec<(String, f64)> = rule["backendRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            (
                b["name"].as_str().unwrap_or_default().to_owned(),
                b["weight"].as_f64().unwrap_or(1.0),
            )
        })
        .collect();
    let total: f64 = backends.iter().map(|(_, w)| w).sum();
    if total <= 0.0 {
        return Vec::new();
    }
    backends
        .into_iter()
        .map(|(service, weight)| (service, weight / total))
        .collect()
}

/// The derivation a real-cluster run relies on, checked on routes as a
/// Gateway API implementation reports them.
#[test]
fn a_routes_split_follows_its_accepted_weights_and_header_rules() {
    let route = |generation: i64, observed: i64, accepted: &str| {
        let condition = |kind: &str, status: &str| json!({"type": kind, "status": status, "observedGeneration": observed});
        json!({
            "metadata": {"generation": generation},
            "spec": {"rules": [
                {"matches": [{"headers": [{"name": "X-Canary", "value": "beta"}]}],
                 "backendRefs": [{"name": "web-canary"}]},
                {"backendRefs": [{"name": "web", "weight": 90}, {"name": "web-canary", "weight": 10}]},
            ]},
            "status": {"parents": [{"conditions": [condition("Accepted", accepted), condition("ResolvedRefs", "True")]}]},
        })
    };
    let split = |route: &Value, headers: Value| route_split(route, &headers);
    assert_eq!(
        split(&route(3, 3, "True"), Value::Null),
        vec![("web".to_owned(), 0.9), ("web-canary".to_owned(), 0.1)]
    );
    assert_eq!(
        split(&route(3, 3, "True"), json!({"x-canary": "beta"})),
        vec![("web-canary".to_owned(), 1.0)],
        "the header rule, matched without regard to the header name's case"
    );
    assert_eq!(
        split(&route(3, 3, "True"), json!({"x-canary": "other"})),
        vec![("web".to_owned(), 0.9), ("web-canary".to_owned(), 0.1)]
    );
    assert!(
        split(&route(4, 3, "True"), Value::Null).is_empty(),
        "the generation written is not accepted yet"
    );
    assert!(
        split(&route(3, 3, "False"), Value::Null).is_empty(),
        "not accepted"
    );
}
