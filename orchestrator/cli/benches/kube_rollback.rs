//! Rollback reaction on Kubernetes with 20 canaries in flight:
//! `cargo bench -p deployctl --bench kube_rollback`.
//!
//! Starts the repository's test API server with one namespace holding 20
//! workloads (`web-N`: a Deployment of 2 pods, a Service, an HTTPRoute on
//! one Gateway) and applies one plan (the release binary) whose 20
//! concurrent stages canary them to 20 % and pause, each watched by a
//! background `http` gate (interval 1 s) on one local health endpoint.
//! Once every route carries 20 %, the endpoint turns bad; the bench reads
//! the API server's request log (each request's arrival and duration) and
//! times, per canary, from the endpoint turning bad to the end of the
//! write that put its route back on stable.
//!
//! Target: the slowest canary back on stable within one probe interval +
//! 1.5 × the slowest single write the run made.

#[path = "support/kubeapi.rs"]
mod kubeapi;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kubeapi::{BIN, call, start_server, wait};
use serde_json::Value;

const CANARIES: usize = 20;
const INTERVAL_S: f64 = 1.0;
const NEW: &str =
    "registry.test/web@sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A health endpoint answering 200 until `bad` is set, then 500.
fn health(bad: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let url = format!("http://{}/health", listener.local_addr().expect("bound"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let status = if bad.load(Ordering::SeqCst) {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
    });
    url
}

fn fixture(url: &str, ns: &str) {
    kubeapi::gateway_namespace(url, ns);
    for n in 0..CANARIES {
        kubeapi::routed_workload(url, ns, &format!("web-{n}"), 2);
    }
    for n in 0..CANARIES {
        kubeapi::wait_serving(url, ns, &format!("web-{n}"));
    }
}

fn plan(ns: &str, health: &str) -> String {
    let mut text = String::from(
        "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {name: bench-rollback, environment: test}\ntargets:\n",
    );
    for n in 0..CANARIES {
        text.push_str(&format!(
            "  web-{n}:\n    kubernetes: {{kubeconfig: kubeconfig, namespace: {ns}, deployment: web-{n}, service: web-{n}, httpRoute: {{name: web-{n}}}}}\n"
        ));
    }
    text.push_str("artifacts:\n");
    for n in 0..CANARIES {
        text.push_str(&format!(
            "  web-{n}: {{version: \"2\", image: {{reference: \"{NEW}\", container: api}}}}\n"
        ));
    }
    text.push_str("stages:\n");
    for n in 0..CANARIES {
        text.push_str(&format!(
            "  - name: web-{n}\n    target: web-{n}\n    timeout: 10m\n    canary: {{gates: [health], steps: [{{setWeight: 20}}, {{pause: {{duration: 10m}}}}, {{setWeight: 100}}]}}\n"
        ));
    }
    text.push_str(&format!(
        "gates:\n  health:\n    http: {{url: \"{health}\", allowInsecureHttp: true}}\n    interval: 1s\n    count: 1000\nrollback:\n  on: [gateFailed, error, timeout, kill]\n  scope: stage\n"
    ));
    text
}

/// The canary's percent on route `name` (0 when it has no canary ref).
fn canary_percent(url: &str, ns: &str, name: &str) -> u64 {
    let (_, route) = call(
        url,
        "GET",
        &format!("/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes/{name}"),
        &Value::Null,
    );
    route["spec"]["rules"][0]["backendRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["name"] == format!("{name}-canary"))
        .filter_map(|b| b["weight"].as_u64())
        .sum()
}

fn main() {
    let server = start_server();
    let ns = format!("bench-rollback-{}", std::process::id());
    fixture(&server.url, &ns);
    let dir = std::env::temp_dir().join(&ns);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temp dir");
    kubeapi::admin_kubeconfig(&server, &dir);
    let bad = Arc::new(AtomicBool::new(false));
    let health = health(Arc::clone(&bad));
    let plan_path = dir.join("plan.yaml");
    std::fs::write(&plan_path, plan(&ns, &health)).expect("plan written");
    let mut apply = Command::new(BIN)
        .arg("apply")
        .arg(&plan_path)
        .args(["--yes", "--state-dir"])
        .arg(dir.join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("apply");
    wait("every canary at 20 %", Duration::from_secs(300), || {
        (0..CANARIES).all(|n| canary_percent(&server.url, &ns, &format!("web-{n}")) == 20)
    });
    // The pause is long: the gates have settled into their interval.
    std::thread::sleep(Duration::from_secs(3));
    let (_, log) = call(
        &server.url,
        "GET",
        &format!("/_emulator/requests?namespace={ns}"),
        &Value::Null,
    );
    let before = log["requests"].as_array().map_or(0, Vec::len);
    let turned_bad = now();
    bad.store(true, Ordering::SeqCst);
    let status = apply.wait().expect("apply ends");
    let (_, log) = call(
        &server.url,
        "GET",
        &format!("/_emulator/requests?namespace={ns}"),
        &Value::Null,
    );
    let requests = log["requests"].as_array().cloned().unwrap_or_default();
    let writes: Vec<&Value> = requests
        .iter()
        .filter(|r| {
            matches!(
                r["verb"].as_str(),
                Some("patch" | "create" | "update" | "delete")
            )
        })
        .collect();
    let slowest_write = writes
        .iter()
        .filter_map(|r| r["seconds"].as_f64())
        .fold(0.0, f64::max);
    let mut reactions = Vec::new();
    for n in 0..CANARIES {
        let name = format!("web-{n}");
        let back = requests[before.min(requests.len())..]
            .iter()
            .find(|r| {
                r["resource"] == "httproutes" && r["verb"] == "patch" && r["name"] == name.as_str()
            })
            .and_then(|r| Some(r["at"].as_f64()? + r["seconds"].as_f64()?));
        match back {
            Some(done) => reactions.push(done - turned_bad),
            None => println!("{name}: no route write after the gate turned bad"),
        }
    }
    reactions.sort_by(f64::total_cmp);
    let worst = reactions.last().copied().unwrap_or(f64::NAN);
    let median = reactions
        .get(reactions.len() / 2)
        .copied()
        .unwrap_or(f64::NAN);
    let budget = INTERVAL_S + 1.5 * slowest_write;
    println!(
        "{CANARIES} canaries at 20 %, gate interval {INTERVAL_S} s: apply exited {status}; {} routes back on stable after the gate turned bad: median {median:.3} s, slowest {worst:.3} s",
        reactions.len()
    );
    println!(
        "slowest single write {slowest_write:.3} s ({} writes); budget one interval + 1.5 × that = {budget:.3} s: {}",
        writes.len(),
        if reactions.len() == CANARIES && worst <= budget {
            "met"
        } else {
            "MISSED"
        }
    );
    let _ = std::fs::remove_dir_all(&dir);
}
