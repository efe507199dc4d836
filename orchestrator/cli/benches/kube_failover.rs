//! Controller leader failover on Kubernetes:
//! `cargo bench -p deployctl --bench kube_failover`.
//!
//! Starts the repository's test API server (`tests/emulators/kubeapi.py`,
//! `python3` or `DEPLOYCTL_TEST_PYTHON`), then per iteration: a namespace
//! with `web` (4 pods, a Service, a Gateway and an HTTPRoute), two
//! `deployctl controller` replicas (the release binary Cargo builds for
//! this bench) sharing one state directory with the product's default
//! `--lease-duration` (10 s), and a Release canarying `web` 10 % → 50 % →
//! 100 %. Once the route carries 10 % the Lease holder is SIGKILLed, and
//! the bench times, from the kill:
//!
//! - the Lease naming the other replica;
//! - the other replica's first write to the route (the 50 % step): the
//!   Release resumed.
//!
//! Target: ≤ 15 s from the kill to the Release resumed.

#[path = "support/kubeapi.rs"]
mod kubeapi;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kubeapi::{Reaped, Server, call, start_server, wait};
use serde_json::{Value, json};

const BIN: &str = kubeapi::BIN;
const ITERATIONS: usize = 3;
const TARGET_S: f64 = 15.0;
const NEW: &str =
    "registry.test/web@sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn fixture(url: &str, ns: &str) {
    kubeapi::gateway_namespace(url, ns);
    kubeapi::routed_workload(url, ns, "web", 4);
    kubeapi::wait_serving(url, ns, "web");
}

fn canary_share(url: &str, ns: &str) -> u64 {
    let (_, answer) = call(
        url,
        "POST",
        &format!("/_emulator/traffic?namespace={ns}"),
        &json!({"route": "web", "requests": 1000}),
    );
    answer["byImage"][NEW].as_u64().unwrap_or(0)
}

fn route_writes(url: &str, ns: &str) -> usize {
    let (_, answer) = call(
        url,
        "GET",
        &format!("/_emulator/requests?namespace={ns}"),
        &Value::Null,
    );
    answer["requests"].as_array().map_or(0, |log| {
        log.iter()
            .filter(|r| r["resource"] == "httproutes" && r["verb"] == "patch")
            .count()
    })
}

fn holder(url: &str, ns: &str) -> Option<String> {
    let (status, lease) = call(
        url,
        "GET",
        &format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/deployctl-controller"),
        &Value::Null,
    );
    (status == 200)
        .then(|| lease["spec"]["holderIdentity"].as_str().map(str::to_owned))
        .flatten()
}

fn iteration(server: &Server, n: usize) -> (f64, f64) {
    let ns = format!("bench-failover-{}-{n}", std::process::id());
    fixture(&server.url, &ns);
    let dir = std::env::temp_dir().join(&ns);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let kubeconfig = kubeapi::admin_kubeconfig(server, &dir);
    let log = |identity: &str| dir.join(format!("{identity}.log"));
    let spawn = |identity: &str| {
        let stderr = std::fs::File::create(log(identity)).expect("a log file");
        Command::new(BIN)
            .args([
                "controller",
                "--namespace",
                &ns,
                "--identity",
                identity,
                "--state-dir",
            ])
            .arg(dir.join("state"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .env("KUBECONFIG", &kubeconfig)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map(Reaped)
            .expect("a controller")
    };
    let mut a = spawn("replica-a");
    let mut b = spawn("replica-b");
    let plan = format!(
        "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {{name: bench, environment: test}}\n\
targets:\n  web:\n    kubernetes: {{namespace: {ns}, deployment: web, service: web, httpRoute: {{name: web}}}}\n\
artifacts:\n  web: {{version: \"2\", image: {{reference: \"{NEW}\", container: api}}}}\n\
stages:\n  - name: web\n    target: web\n    timeout: 5m\n    canary: {{steps: [{{setWeight: 10}}, {{pause: {{duration: 1s}}}}, {{setWeight: 50}}, {{setWeight: 100}}]}}\n"
    );
    let release = json!({"apiVersion": "deployctl.io/v1", "kind": "Release",
        "metadata": {"name": "web", "annotations": {"deployctl.io/initiator": "bench"}}, "spec": {"plan": plan, "approvals": []}});
    wait("the Release created", Duration::from_secs(60), || {
        call(
            &server.url,
            "POST",
            &format!("/apis/deployctl.io/v1/namespaces/{ns}/releases"),
            &release,
        )
        .0 == 201
    });
    let at_ten = within(Duration::from_secs(60), || {
        std::thread::sleep(Duration::from_millis(230));
        canary_share(&server.url, &ns).abs_diff(100) <= 20
    });
    if at_ten.is_none() {
        stalled(
            server,
            &ns,
            &log,
            "the canary did not reach 10 % within 60 s",
        );
    }
    let before = route_writes(&server.url, &ns);
    let leader = holder(&server.url, &ns).expect("a leader");
    let killed_at = Instant::now();
    let dead = if leader == "replica-a" {
        &mut a
    } else {
        &mut b
    };
    let _ = dead.0.kill();
    let _ = dead.0.wait();
    let moved = wait("the Lease to move", Duration::from_secs(60), || {
        holder(&server.url, &ns).is_some_and(|h| h != leader)
    });
    let resumed = within(Duration::from_secs(60), || {
        route_writes(&server.url, &ns) > before
    });
    let Some(resumed) = resumed else {
        stalled(
            server,
            &ns,
            &log,
            "the Release did not resume within 60 s of the leader's kill",
        );
    };
    let _ = std::fs::remove_dir_all(&dir);
    (
        (moved - killed_at).as_secs_f64(),
        (resumed - killed_at).as_secs_f64(),
    )
}

/// A stall is the finding: shows what both replicas said and what the
/// API server was asked, then stops the bench.
fn stalled(server: &Server, ns: &str, log: &dyn Fn(&str) -> std::path::PathBuf, what: &str) -> ! {
    for identity in ["replica-a", "replica-b"] {
        let said = std::fs::read_to_string(log(identity)).unwrap_or_default();
        eprintln!("--- {identity} ---\n{said}");
    }
    let (_, answer) = call(
        &server.url,
        "GET",
        &format!("/_emulator/requests?namespace={ns}"),
        &Value::Null,
    );
    let (_, release) = call(
        &server.url,
        "GET",
        &format!("/apis/deployctl.io/v1/namespaces/{ns}/releases/web"),
        &Value::Null,
    );
    eprintln!("--- the Release's status ---\n{:#}", release["status"]);
    eprintln!("--- requests ---");
    for request in answer["requests"].as_array().into_iter().flatten() {
        eprintln!(
            "{} {} {} {} {} rv={}",
            request["at"],
            request["user"],
            request["verb"],
            request["resource"],
            request["name"],
            request["resourceVersion"]
        );
    }
    panic!("{what} (logs above)");
}

/// When `done` first held, polling every 20 ms; `None` after `timeout`.
fn within(timeout: Duration, mut done: impl FnMut() -> bool) -> Option<Instant> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if done() {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn main() {
    let server = start_server();
    let mut lease = Vec::new();
    let mut resumed = Vec::new();
    for n in 0..ITERATIONS {
        let (moved, next) = iteration(&server, n);
        println!(
            "iteration {}: Lease moved after {moved:.2} s, Release resumed after {next:.2} s",
            n + 1
        );
        lease.push(moved);
        resumed.push(next);
    }
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let worst = max(&resumed);
    println!(
        "leader failover (--lease-duration 10, the default): Lease moved median {:.2} s; Release resumed median {:.2} s, max {worst:.2} s (target ≤ {TARGET_S} s: {})",
        median(&mut lease),
        median(&mut resumed),
        if worst <= TARGET_S { "met" } else { "MISSED" }
    );
}
