//! The Kubernetes adapter against the repository's test API server
//! (`tests/emulators/kubeapi.py`: Deployment, EndpointSlice and Gateway
//! API controllers, a traffic model), over HTTP with the real kube
//! client. Every test makes its own namespace. Skipped, with a message,
//! when `DEPLOYCTL_TEST_KUBEAPI_URL` is unset (`bash tests/moto.sh --
//! cargo test -p deployctl-kubernetes` starts the server and sets it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use deployctl_adapter::conformance::{Options, run_all_with};
use deployctl_adapter::construct::PlanRelease;
use deployctl_adapter::{Action, AdapterError, IdempotencyKey, Measurement, Target, Weights};
use deployctl_kubernetes::connect::from_config;
use deployctl_kubernetes::{KubernetesOptions, KubernetesTarget};
use deployctl_plan::model::{
    Artifact, ArtifactSource, GateCheck, HeaderMatch, HeaderRoute, StrategyKind,
};
use deployctl_plan::raw;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DynamicObject, PostParams};
use kube::{Client, Config};
use serde_json::{Value, json};

const STABLE_IMAGE: &str = "registry.test/web:1";
const NEW_IMAGE: &str = "registry.test/web:2";

fn server(test: &str) -> Option<String> {
    match std::env::var("DEPLOYCTL_TEST_KUBEAPI_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: DEPLOYCTL_TEST_KUBEAPI_URL is not set; `bash tests/moto.sh -- cargo test -p deployctl-kubernetes` starts the server"
            );
            None
        }
    }
}

/// One request to the server with `headers` (the JSON body's content
/// type is set): the status and the body as text.
fn request(url: &str, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(host).expect("the API server answers");
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("request sent");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer read");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

/// One JSON request to the server's API or its `/_emulator/` controls.
fn call(url: &str, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let text = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let content_type = if method == "PATCH" {
        "application/merge-patch+json"
    } else {
        "application/json"
    };
    let headers = format!("Content-Type: {content_type}\r\n");
    let (status, answer) = request(url, method, path, &headers, &text);
    (status, serde_json::from_str(&answer).unwrap_or(Value::Null))
}

/// A namespace with `web`: a Deployment of 4 pods (`app: web`, container
/// `api`), its Service, a preview Service, and (routed) a Gateway and an
/// HTTPRoute sending everything to the Service.
struct Fixture {
    url: String,
    client: Client,
    namespace: String,
    routed: bool,
    /// A canary without a route (weights by replica ratios).
    ratios: bool,
}

impl Fixture {
    async fn new(url: &str, label: &str, routed: bool) -> Fixture {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let namespace = format!(
            "k8s-{label}-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        let client = Client::try_from(Config::new(url.parse().expect("a URL"))).expect("a client");
        let fixture = Fixture {
            url: url.to_owned(),
            client,
            namespace,
            routed,
            ratios: false,
        };
        let ns = &fixture.namespace;
        fixture.create(
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        );
        fixture.create(
            &format!("/apis/apps/v1/namespaces/{ns}/deployments"),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "web", "labels": {"app": "web"}},
                   "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                            "template": {"metadata": {"labels": {"app": "web"}},
                                         "spec": {"containers": [{"name": "api", "image": STABLE_IMAGE,
                                                                   "ports": [{"containerPort": 8080}]}]}}}}),
        );
        for name in ["web", "web-preview"] {
            fixture.create(
                &format!("/api/v1/namespaces/{ns}/services"),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                       "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
            );
        }
        if routed {
            fixture.create(
                &format!("/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/gateways"),
                json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "gw"},
                       "spec": {"gatewayClassName": "test", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
            );
            fixture.create(
                &format!("/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes"),
                json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "web"},
                       "spec": {"parentRefs": [{"name": "gw"}],
                                "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                                           "backendRefs": [{"name": "web", "port": 80}]}]}}),
            );
        }
        fixture.wait_ready("web").await;
        // Ready when traffic reaches it: endpoints and the route's status
        // follow the pods a little later, as on a cluster.
        let through = if routed {
            json!({"route": "web"})
        } else {
            json!({"service": "web"})
        };
        let started = Instant::now();
        while fixture.served_by(through.clone(), STABLE_IMAGE) != 1000 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "traffic never reached web"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        fixture
    }

    /// The namespace for a canary without a route: its Service alone
    /// spreads traffic over the primary's and the canary's pods.
    async fn ratios(url: &str, label: &str) -> Fixture {
        let mut fixture = Fixture::new(url, label, false).await;
        fixture.ratios = true;
        fixture
    }

    fn create(&self, path: &str, body: Value) {
        let (status, answer) = call(&self.url, "POST", path, &body);
        assert!(
            status == 201 || status == 200,
            "POST {path}: {status} {answer:#}"
        );
    }

    fn spec(&self) -> raw::KubernetesTarget {
        serde_json::from_value(json!({
            "namespace": self.namespace,
            "deployment": "web",
            "service": "web",
            "previewService": if self.routed || self.ratios { Value::Null } else { json!("web-preview") },
            "httpRoute": if self.routed { json!({"name": "web"}) } else { Value::Null },
        }))
        .expect("a kubernetes target")
    }

    fn target(&self, version: &str, image: &str) -> KubernetesTarget {
        let artifact = Artifact {
            version: version.into(),
            source: ArtifactSource::Image {
                reference: image.into(),
                container: Some("api".into()),
            },
        };
        let release = PlanRelease {
            artifact: Some(&artifact),
            pinned_stable: None,
            waves: None,
            strategy: Some(if self.routed || self.ratios {
                StrategyKind::Canary
            } else {
                StrategyKind::BlueGreen
            }),
            plan_dir: Path::new("."),
        };
        let config = Config::new(self.url.parse().expect("a URL"));
        KubernetesTarget::with_connection(
            "web",
            &self.spec(),
            &release,
            from_config(config).expect("a connection"),
            KubernetesOptions {
                poll_interval: Duration::from_millis(100),
                wait_timeout: Duration::from_secs(30),
                ..KubernetesOptions::default()
            },
        )
        .expect("a target")
    }

    async fn deployment(&self, name: &str) -> Option<Deployment> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        api.get_opt(name).await.expect("a read")
    }

    async fn wait_ready(&self, name: &str) {
        let started = Instant::now();
        loop {
            if let Some(d) = self.deployment(name).await {
                let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let status = d.status.clone().unwrap_or_default();
                if status.available_replicas.unwrap_or(0) >= want
                    && status.updated_replicas.unwrap_or(0) >= want
                {
                    return;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "Deployment {name} never became ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `requests` through the route or a Service, by the server's traffic
    /// model: the share each image served.
    fn traffic(&self, through: Value) -> Value {
        let mut body = through;
        body["requests"] = json!(1000);
        let (status, answer) = call(
            &self.url,
            "POST",
            &format!("/_emulator/traffic?namespace={}", self.namespace),
            &body,
        );
        assert_eq!(status, 200, "{answer:#}");
        answer
    }

    fn served_by(&self, through: Value, image: &str) -> u64 {
        self.traffic(through)["byImage"][image]
            .as_u64()
            .unwrap_or(0)
    }

    fn image_behaves(&self, image: &str, behaviour: &str) {
        let (status, answer) = call(
            &self.url,
            "POST",
            &format!("/_emulator/images?namespace={}", self.namespace),
            &json!({"image": image, "behaviour": behaviour}),
        );
        assert!(status == 200 || status == 201, "{answer:#}");
    }

    async fn route(&self) -> DynamicObject {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &self.namespace,
            &deployctl_kubernetes::cluster::http_route_resource(),
        );
        api.get("web").await.expect("the route")
    }
}

fn key(n: u32) -> IdempotencyKey {
    IdempotencyKey(format!("run/stage/{n}"))
}

/// Applies `action` as the engine would: a `Conflict` (a write guarded by
/// a `resourceVersion` the cluster's own controllers moved on, by a status
/// update say) is retried after observing again, a few times.
async fn apply(target: &KubernetesTarget, action: Action) {
    static N: AtomicU32 = AtomicU32::new(0);
    let key = key(N.fetch_add(1, Ordering::Relaxed));
    for attempt in 1.. {
        match target.apply(&action, &key).await {
            Ok(_) => return,
            Err(AdapterError::Conflict { .. }) if attempt < 5 => {
                target.observe().await.expect("observe before retrying");
            }
            Err(e) => panic!("{action}: {e}"),
        }
    }
}

#[tokio::test]
async fn a_canary_through_an_httproute_passes_the_conformance_suite() {
    let Some(url) = server("a_canary_through_an_httproute_passes_the_conformance_suite") else {
        return;
    };
    let options = Options {
        candidate_version: "2".into(),
        ..Options::default()
    };
    let result = run_all_with(&options, async || {
        Fixture::new(&url, "conformance", true)
            .await
            .target("2", NEW_IMAGE)
    })
    .await;
    if let Err(failures) = result {
        panic!("{}", failures.join("\n"));
    }
}

#[tokio::test]
async fn canary_weights_are_the_share_the_route_really_sends() {
    let Some(url) = server("canary_weights_are_the_share_the_route_really_sends") else {
        return;
    };
    let fixture = Fixture::new(&url, "share", true).await;
    let target = fixture.target("2", NEW_IMAGE);
    let route = json!({"route": "web"});
    assert_eq!(fixture.served_by(route.clone(), STABLE_IMAGE), 1000);
    apply(
        &target,
        Action::Deploy {
            version: "2".into(),
        },
    )
    .await;
    // Deployed beside stable, no share yet: the pinned Service keeps the
    // canary's pods (which carry `app: web` too) out of stable's traffic.
    assert_eq!(fixture.served_by(route.clone(), NEW_IMAGE), 0);
    for percent in [10u8, 50] {
        apply(&target, Action::SetWeight { percent }).await;
        let canary = fixture.served_by(route.clone(), NEW_IMAGE) as f64;
        let want = f64::from(percent) * 10.0;
        assert!(
            (canary - want).abs() <= 20.0,
            "{percent}%: the canary served {canary} of 1000"
        );
        let observed = target.observe().await.expect("observe");
        assert_eq!(observed.weight, percent);
    }
    let canary = fixture.deployment("web-canary").await.expect("the canary");
    assert_eq!(
        canary.spec.and_then(|s| s.replicas),
        Some(2),
        "50% of 4 pods"
    );
    // Rolled back at 50%: everything on stable, the canary gone.
    apply(
        &target,
        Action::Rollback {
            to: Some(STABLE_IMAGE.into()),
        },
    )
    .await;
    assert_eq!(fixture.served_by(route.clone(), STABLE_IMAGE), 1000);
    assert!(fixture.deployment("web-canary").await.is_none());
    let rules = fixture.route().await.data["spec"]["rules"].clone();
    assert_eq!(
        weights(&rules[0]["backendRefs"]),
        json!([["web", 100]]),
        "{rules:#}"
    );
}

#[tokio::test]
async fn a_canary_by_replica_ratios_passes_the_conformance_suite() {
    let Some(url) = server("a_canary_by_replica_ratios_passes_the_conformance_suite") else {
        return;
    };
    let options = Options {
        candidate_version: "2".into(),
        ..Options::default()
    };
    let result = run_all_with(&options, async || {
        Fixture::ratios(&url, "ratio-conf")
            .await
            .target("2", NEW_IMAGE)
    })
    .await;
    if let Err(failures) = result {
        panic!("{}", failures.join("\n"));
    }
}

#[tokio::test]
async fn replica_ratio_weights_are_the_share_of_pods_the_service_really_spreads_over() {
    let Some(url) =
        server("replica_ratio_weights_are_the_share_of_pods_the_service_really_spreads_over")
    else {
        return;
    };
    let fixture = Fixture::ratios(&url, "ratios").await;
    let target = fixture.target("2", NEW_IMAGE);
    let preflight = target.preflight().await.expect("preflight");
    assert!(
        matches!(&preflight.capabilities.weights, Weights::Approximate { max: 100, how } if how.contains("replica ratios")),
        "{:?}",
        preflight.capabilities
    );
    let service = json!({"service": "web"});
    apply(
        &target,
        Action::Deploy {
            version: "2".into(),
        },
    )
    .await;
    // The canary's pod carries `app: web` too: the pin keeps it out.
    assert_eq!(fixture.served_by(service.clone(), NEW_IMAGE), 0);
    // 4 primary pods: 10% is one canary pod in five (the real share is
    // 20%), 50% four beside four, 100% the Service pinned to the canary.
    for (percent, pods, share) in [(10u8, 1, 200.0), (50, 4, 500.0), (100, 4, 1000.0)] {
        apply(&target, Action::SetWeight { percent }).await;
        let canary = fixture.deployment("web-canary").await.expect("the canary");
        assert_eq!(
            canary.spec.and_then(|s| s.replicas),
            Some(pods),
            "{percent}%"
        );
        let served = fixture.served_by(service.clone(), NEW_IMAGE) as f64;
        assert!(
            (served - share).abs() <= 60.0,
            "{percent}%: the canary served {served} of 1000, expected about {share}"
        );
        let observed = target.observe().await.expect("observe");
        assert_eq!(
            observed.weight, percent,
            "the weight set is what is observed"
        );
    }
    apply(
        &target,
        Action::Rollback {
            to: Some(STABLE_IMAGE.into()),
        },
    )
    .await;
    assert_eq!(fixture.served_by(service.clone(), STABLE_IMAGE), 1000);
    assert!(fixture.deployment("web-canary").await.is_none());
    let (_, svc) = call(
        &fixture.url,
        "GET",
        &format!("/api/v1/namespaces/{}/services/web", fixture.namespace),
        &Value::Null,
    );
    assert_eq!(svc["spec"]["selector"], json!({"app": "web"}), "{svc:#}");
    assert!(
        svc["metadata"]["annotations"]
            .get("deployctl.io/canary-weight")
            .is_none(),
        "{svc:#}"
    );
    let observed = target.observe().await.expect("observe");
    assert_eq!((observed.candidate, observed.weight), (None, 0));
}

#[tokio::test]
async fn a_canary_by_replica_ratios_promotes_onto_the_primary() {
    let Some(url) = server("a_canary_by_replica_ratios_promotes_onto_the_primary") else {
        return;
    };
    let fixture = Fixture::ratios(&url, "ratio-promote").await;
    let target = fixture.target("2", NEW_IMAGE);
    let service = json!({"service": "web"});
    apply(
        &target,
        Action::Deploy {
            version: "2".into(),
        },
    )
    .await;
    apply(&target, Action::SetWeight { percent: 25 }).await;
    apply(&target, Action::Promote).await;
    let traffic = fixture.traffic(service.clone());
    assert_eq!(traffic["byDeployment"]["web"], 1000, "{traffic:#}");
    assert_eq!(traffic["byImage"][NEW_IMAGE], 1000, "{traffic:#}");
    assert!(fixture.deployment("web-canary").await.is_none());
    let observed = target.observe().await.expect("observe");
    assert_eq!(
        (
            observed.stable.as_deref(),
            observed.candidate,
            observed.weight
        ),
        (Some("2"), None, 0)
    );
}

/// `setHeaderRoute`: requests carrying the header go to the canary
/// whatever the weight, the rest keep the weighted split; removing it by
/// name ends that, and a rollback removes every header route with the
/// canary, so the route is what it was before the release.
#[tokio::test]
async fn a_header_route_sends_matching_requests_to_the_canary_until_removed() {
    let Some(url) = server("a_header_route_sends_matching_requests_to_the_canary_until_removed")
    else {
        return;
    };
    let fixture = Fixture::new(&url, "headers", true).await;
    let before = fixture.route().await.data["spec"]["rules"].clone();
    let target = fixture.target("2", NEW_IMAGE);
    let preflight = target.preflight().await.expect("preflight");
    assert!(
        preflight.capabilities.header_routes,
        "{:?}",
        preflight.capabilities
    );
    apply(
        &target,
        Action::Deploy {
            version: "2".into(),
        },
    )
    .await;
    apply(&target, Action::SetWeight { percent: 10 }).await;
    let beta = |matches: Vec<(&str, &str)>| Action::SetHeaderRoute {
        route: HeaderRoute {
            name: "beta".into(),
            matches: matches
                .into_iter()
                .map(|(name, value)| HeaderMatch {
                    name: name.into(),
                    value: value.into(),
                })
                .collect(),
        },
    };
    apply(&target, beta(vec![("X-Canary", "always")])).await;
    let tagged = json!({"route": "web", "headers": {"x-canary": "always"}});
    let other = json!({"route": "web", "headers": {"x-canary": "never"}});
    assert_eq!(fixture.served_by(tagged.clone(), NEW_IMAGE), 1000);
    let untagged = fixture.served_by(other.clone(), NEW_IMAGE) as f64;
    assert!(
        (untagged - 100.0).abs() <= 20.0,
        "without the header: {untagged}"
    );
    // The same step again changes nothing.
    let again = target
        .apply(&beta(vec![("X-Canary", "always")]), &key(9_000))
        .await
        .expect("applied again");
    assert!(!again.changed, "{again:?}");
    // Removed by name: the header no longer decides.
    apply(&target, beta(Vec::new())).await;
    let tagged_now = fixture.served_by(tagged.clone(), NEW_IMAGE) as f64;
    assert!(
        (tagged_now - 100.0).abs() <= 20.0,
        "after removal: {tagged_now}"
    );
    // Set again, then rolled back: the route is as before the release.
    apply(&target, beta(vec![("X-Canary", "always")])).await;
    apply(
        &target,
        Action::Rollback {
            to: Some(STABLE_IMAGE.into()),
        },
    )
    .await;
    assert_eq!(fixture.served_by(tagged, STABLE_IMAGE), 1000);
    let route = fixture.route().await;
    // One rule again, all on stable (its weight written out as 100).
    assert_eq!(
        weights(&route.data["spec"]["rules"][0]["backendRefs"]),
        json!([["web", 100]])
    );
    assert_eq!(
        route.data["spec"]["rules"].as_array().map(Vec::len),
        before.as_array().map(Vec::len)
    );
    assert!(
        !route
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("deployctl.io/header-routes")
    );
}

#[tokio::test]
async fn a_promoted_canary_runs_on_the_primary_and_rolls_back_from_there() {
    let Some(url) = server("a_promoted_canary_runs_on_the_primary_and_rolls_back_from_there")
    else {
        return;
    };
    let fixture = Fixture::new(&url, "promote", true).await;
    let target = fixture.target("2", NEW_IMAGE);
    let route = json!({"route": "web"});
    apply(
        &target,
        Action::Deploy {
            version: "2".into(),
        },
    )
    .await;
    apply(&target, Action::SetWeight { percent: 50 }).await;
    apply(&target, Action::Promote).await;
    assert_eq!(fixture.served_by(route.clone(), NEW_IMAGE), 1000);
    assert!(fixture.deployment("web-canary").await.is_none());
    let traffic = fixture.traffic(route.clone());
    assert_eq!(traffic["byDeployment"]["web"], 1000, "{traffic:#}");
    let observed = target.observe().await.expect("observe");
    assert_eq!(
        (
            observed.stable.as_deref(),
            observed.candidate,
            observed.weight
        ),
        (Some("2"), None, 0)
    );
    apply(
        &target,
        Action::Rollback {
            to: Some(STABLE_IMAGE.into()),
        },
    )
    .await;
    assert_eq!(fixture.served_by(route, STABLE_IMAGE), 1000);
}

#[tokio::test]
async fn a_crash_looping_canary_fails_readiness_naming_pod_container_and_reason() {
    let Some(url) =
        server("a_crash_looping_canary_fails_readiness_naming_pod_container_and_reason")
    else {
        return;
    };
    let fixture = Fixture::new(&url, "crash", true).await;
    let image = "registry.test/web:crash";
    fixture.image_behaves(image, "crashloop");
    let target = fixture.target("3", image);
    apply(
        &target,
        Action::Deploy {
            version: "3".into(),
        },
    )
    .await;
    let probe = target
        .probe(&GateCheck::Kubernetes {
            min_ready_percent: 100.0,
        })
        .expect("a readiness probe");
    let started = Instant::now();
    let failure = loop {
        match probe.measure().await {
            Measurement::Fail { detail, .. } => break detail,
            other => {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "never failed: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert!(
        failure.contains("web-canary")
            && failure.contains("container api")
            && failure.contains("CrashLoopBackOff"),
        "{failure}"
    );
    // The weight is refused (permanent), and nothing reaches the canary.
    let refused = target
        .apply(&Action::SetWeight { percent: 10 }, &key(9_000))
        .await
        .expect_err("a crash-looping canary takes no traffic");
    assert!(
        matches!(refused, AdapterError::Rejected { .. }),
        "{refused:?}"
    );
    assert_eq!(fixture.served_by(json!({"route": "web"}), image), 0);
}

#[tokio::test]
async fn another_writer_of_the_route_is_refused_naming_its_field_manager() {
    let Some(url) = server("another_writer_of_the_route_is_refused_naming_its_field_manager")
    else {
        return;
    };
    let fixture = Fixture::new(&url, "stranger", true).await;
    let target = fixture.target("2", NEW_IMAGE);
    apply(
        &target,
        Action::Deploy {
            version: "2".into(),
        },
    )
    .await;
    apply(&target, Action::SetWeight { percent: 10 }).await;
    // `kubectl edit` puts all the weight back on stable.
    let api: Api<DynamicObject> = Api::namespaced_with(
        fixture.client.clone(),
        &fixture.namespace,
        &deployctl_kubernetes::cluster::http_route_resource(),
    );
    let mut edited = fixture.route().await;
    edited.data["spec"]["rules"][0]["backendRefs"] =
        json!([{"name": "web", "port": 80, "weight": 100}]);
    api.replace(
        "web",
        &PostParams {
            field_manager: Some("kubectl-edit".into()),
            ..PostParams::default()
        },
        &edited,
    )
    .await
    .expect("the edit");
    let refused = target
        .apply(&Action::SetWeight { percent: 50 }, &key(9_001))
        .await
        .expect_err("another writer");
    let text = refused.to_string();
    assert!(
        matches!(refused, AdapterError::Rejected { .. }),
        "{refused:?}"
    );
    assert!(
        text.contains("another writer") && text.contains("kubectl-edit"),
        "{text}"
    );
    // Not overwritten: the edit stands.
    let rules = fixture.route().await.data["spec"]["rules"].clone();
    assert_eq!(weights(&rules[0]["backendRefs"]), json!([["web", 100]]));
}

#[tokio::test]
async fn blue_green_switches_the_selector_only_when_endpoints_follow() {
    let Some(url) = server("blue_green_switches_the_selector_only_when_endpoints_follow") else {
        return;
    };
    let fixture = Fixture::new(&url, "bluegreen", false).await;
    let target = fixture.target("2", NEW_IMAGE);
    let preflight = target.preflight().await.expect("preflight");
    assert_eq!(preflight.stable_version, STABLE_IMAGE);
    assert!(preflight.rollback_ready, "{preflight:?}");
    assert!(matches!(
        preflight.capabilities.weights,
        Weights::Unsupported { .. }
    ));
    assert!(
        preflight.identity.starts_with("kubernetes:http://")
            && preflight.identity.ends_with(&format!(
                "/namespaces/{}/deployments/web",
                fixture.namespace
            )),
        "{}",
        preflight.identity
    );
    let service = json!({"service": "web"});
    let preview = json!({"service": "web-preview"});
    apply(
        &target,
        Action::Deploy {
            version: "2".into(),
        },
    )
    .await;
    fixture.wait_ready("web-2").await;
    // Green is reachable through the preview only.
    assert_eq!(fixture.served_by(service.clone(), STABLE_IMAGE), 1000);
    assert_eq!(fixture.served_by(preview.clone(), NEW_IMAGE), 1000);
    apply(&target, Action::SetWeight { percent: 100 }).await;
    assert_eq!(fixture.served_by(service.clone(), NEW_IMAGE), 1000);
    apply(&target, Action::Promote).await;
    apply(&target, Action::Retire).await;
    let blue = fixture.deployment("web").await.expect("blue is kept");
    assert_eq!(
        blue.spec.and_then(|s| s.replicas),
        Some(0),
        "blue scaled to zero"
    );
    let observed = target.observe().await.expect("observe");
    assert_eq!(
        (
            observed.stable.as_deref(),
            observed.candidate.as_deref(),
            observed.weight
        ),
        (Some("2"), None, 0)
    );
    // Rolling back after retirement scales blue up first, then switches.
    apply(
        &target,
        Action::Rollback {
            to: Some(STABLE_IMAGE.into()),
        },
    )
    .await;
    assert_eq!(fixture.served_by(service.clone(), STABLE_IMAGE), 1000);
    assert!(fixture.deployment("web-2").await.is_none(), "green deleted");
    let observed = target.observe().await.expect("observe");
    assert_eq!(
        (
            observed.stable.as_deref(),
            observed.candidate,
            observed.weight
        ),
        (Some(STABLE_IMAGE), None, 0)
    );
}

#[tokio::test]
async fn a_blue_green_rollback_before_the_switch_never_moves_production() {
    let Some(url) = server("a_blue_green_rollback_before_the_switch_never_moves_production") else {
        return;
    };
    let fixture = Fixture::new(&url, "bg-abort", false).await;
    let target = fixture.target("2", NEW_IMAGE);
    apply(
        &target,
        Action::Deploy {
            version: "2".into(),
        },
    )
    .await;
    fixture.wait_ready("web-2").await;
    apply(&target, Action::Rollback { to: None }).await;
    assert_eq!(
        fixture.served_by(json!({"service": "web"}), STABLE_IMAGE),
        1000
    );
    assert!(fixture.deployment("web-2").await.is_none());
    // The preview Service no longer selects a green.
    let (_, preview) = call(
        &url,
        "GET",
        &format!(
            "/api/v1/namespaces/{}/services/web-preview",
            fixture.namespace
        ),
        &Value::Null,
    );
    assert_eq!(
        preview["spec"]["selector"],
        json!({"app": "web"}),
        "{preview:#}"
    );
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

/// `eks: {cluster, region}`: the endpoint and CA come from EKS
/// DescribeCluster (on moto, which stores EKS clusters), the token is
/// signed for that cluster, and `iam-policy` grants exactly that call.
#[tokio::test]
async fn an_eks_cluster_by_name_is_resolved_through_describe_cluster() {
    let Some(url) =
        deployctl_aws::testing::moto("an_eks_cluster_by_name_is_resolved_through_describe_cluster")
    else {
        return;
    };
    let sdk = deployctl_aws::testing::sdk_config(&url).await;
    let eks = aws_sdk_eks::Client::new(&sdk);
    let name = format!("k8s-eks-{}", std::process::id());
    let created = eks
        .create_cluster()
        .name(&name)
        .role_arn("arn:aws:iam::123456789012:role/eks-cluster")
        .resources_vpc_config(aws_sdk_eks::types::VpcConfigRequest::builder().build())
        .send()
        .await
        .expect("moto creates the cluster");
    let created = created.cluster().expect("a cluster").clone();
    let cluster: raw::EksCluster =
        serde_json::from_value(json!({"cluster": name, "region": "us-east-1"})).expect("eks");
    let (described, auth) = deployctl_kubernetes::eks::resolve_with(&sdk, &cluster)
        .await
        .expect("resolved");
    assert_eq!(Some(described.endpoint.as_str()), created.endpoint());
    assert_eq!(Some(described.arn.as_str()), created.arn());
    assert_eq!(
        (auth.cluster.as_str(), auth.region.as_str()),
        (name.as_str(), "us-east-1")
    );
    let token = auth.token().expect("a token");
    assert!(token.starts_with("k8s-aws-v1."), "{token}");
    // moto's certificateAuthority.data is random text, not a PEM bundle:
    // a client is refused over it, naming the CA (the PEM path itself is
    // unit-tested in eks.rs).
    let refused = deployctl_kubernetes::eks::config(&described, &auth).expect_err("not a CA");
    assert!(
        refused.to_string().contains("certificate authority"),
        "{refused}"
    );
    let scope = deployctl_adapter::iam::Scope {
        partition: "aws".into(),
        account: "123456789012".into(),
        default_region: "us-east-1".into(),
    };
    let spec: raw::KubernetesTarget = serde_json::from_value(json!({
        "namespace": "web", "deployment": "web", "service": "web",
        "eks": {"cluster": name, "region": "us-east-1"},
    }))
    .expect("a target");
    let statements = deployctl_kubernetes::iam::statements(&spec, &scope);
    assert!(deployctl_adapter::iam::allows(
        &statements,
        "eks:DescribeCluster"
    ));
    assert_eq!(statements.len(), 1);
    assert_eq!(
        statements[0].resources.iter().collect::<Vec<_>>(),
        [&format!(
            "arn:aws:eks:us-east-1:123456789012:cluster/{name}"
        )]
    );
    eks_tokens_authenticate_to_their_cluster_only(&sdk, &eks, &name, &auth).await;
    // A missing cluster is named.
    let missing: raw::EksCluster =
        serde_json::from_value(json!({"cluster": "no-such-cluster", "region": "us-east-1"}))
            .expect("eks");
    let error = deployctl_kubernetes::eks::resolve_with(&sdk, &missing)
        .await
        .expect_err("no cluster");
    assert!(error.to_string().contains("no-such-cluster"), "{error}");
}

/// The token `auth` signs is accepted by an API server that checks EKS
/// tokens as aws-iam-authenticator does (the SigV4 signature recomputed
/// with the server's own cluster ID), and a token signed for another
/// cluster of the same account is refused there. Needs the test API
/// server too; skipped without it.
async fn eks_tokens_authenticate_to_their_cluster_only(
    sdk: &aws_config::SdkConfig,
    eks: &aws_sdk_eks::Client,
    name: &str,
    auth: &deployctl_kubernetes::eks::EksAuth,
) {
    let Some(url) = server("eks_tokens_authenticate_to_their_cluster_only") else {
        return;
    };
    // moto's test credentials (deployctl_aws::testing), mapped to a user
    // as an EKS access entry would.
    let user = format!("eks-user-{}", std::process::id());
    let (status, answer) = call(
        &url,
        "POST",
        "/_emulator/eks",
        &json!({"cluster": name, "credentials": {"testing": {"secretAccessKey": "testing", "user": user, "groups": ["system:masters"]}}}),
    );
    assert_eq!(status, 200, "{answer:#}");
    let token = auth.token().expect("a token");
    let (status, answer) = bearer_get(&url, &token, "/api/v1/namespaces");
    assert_eq!(status, 200, "the token for {name}: {answer}");
    // Another cluster in the same account: its token names that cluster.
    let other = format!("{name}-other");
    eks.create_cluster()
        .name(&other)
        .role_arn("arn:aws:iam::123456789012:role/eks-cluster")
        .resources_vpc_config(aws_sdk_eks::types::VpcConfigRequest::builder().build())
        .send()
        .await
        .expect("moto creates the other cluster");
    let other: raw::EksCluster =
        serde_json::from_value(json!({"cluster": other, "region": "us-east-1"})).expect("eks");
    let (_, other_auth) = deployctl_kubernetes::eks::resolve_with(sdk, &other)
        .await
        .expect("resolved");
    let (status, answer) = bearer_get(
        &url,
        &other_auth.token().expect("a token"),
        "/api/v1/namespaces",
    );
    assert_eq!(status, 401, "a token for another cluster: {answer}");
    assert!(answer.contains("SignatureDoesNotMatch"), "{answer}");
}

/// A GET with `Authorization: Bearer TOKEN`: the status and the body.
fn bearer_get(url: &str, token: &str, path: &str) -> (u16, String) {
    request(
        url,
        "GET",
        path,
        &format!("Authorization: Bearer {token}\r\n"),
        "",
    )
}
