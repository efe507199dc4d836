//! What the Kubernetes benches share: the repository's test API server
//! (`tests/emulators/kubeapi.py`, `python3` or `DEPLOYCTL_TEST_PYTHON`)
//! on a port of its own, one JSON call to it, and polling.

// Each bench uses part of this module.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The release binary Cargo builds for the benches.
pub const BIN: &str = env!("CARGO_BIN_EXE_deployctl");

/// One HTTP/1.0 request to `url` (`http://HOST:PORT`): status and body.
pub fn request(url: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let host = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).expect("the server answers");
    // One write: a server that answers on the first read must not see a
    // request cut in pieces.
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("request sent");
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

/// One JSON call to the API server or its `/_emulator/` controls.
pub fn call(url: &str, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let text = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (status, answer) = request(url, method, path, &text);
    (status, serde_json::from_str(&answer).unwrap_or(Value::Null))
}

/// Creates `body` at `path`; anything but 200/201 ends the bench.
pub fn create(url: &str, path: &str, body: Value) {
    let (status, answer) = call(url, "POST", path, &body);
    assert!(status == 201 || status == 200, "{path}: {answer}");
}

/// Namespace `ns` with Gateway `gw` for the benches' HTTPRoutes.
pub fn gateway_namespace(url: &str, ns: &str) {
    create(
        url,
        "/api/v1/namespaces",
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    );
    create(
        url,
        &format!("/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/gateways"),
        serde_json::json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "gw"},
               "spec": {"gatewayClassName": "bench", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
    );
}

/// Workload `name` in `ns`: a Deployment of `replicas` pods (container
/// `api`, image `registry.test/web:1`), a Service and an HTTPRoute to it
/// through Gateway `gw`, all named `name`.
pub fn routed_workload(url: &str, ns: &str, name: &str, replicas: u32) {
    create(
        url,
        &format!("/apis/apps/v1/namespaces/{ns}/deployments"),
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
               "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                        "template": {"metadata": {"labels": {"app": name}},
                                     "spec": {"containers": [{"name": "api", "image": "registry.test/web:1"}]}}}}),
    );
    create(
        url,
        &format!("/api/v1/namespaces/{ns}/services"),
        serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}}),
    );
    create(
        url,
        &format!("/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes"),
        serde_json::json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": name},
               "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": name, "port": 80}]}]}}),
    );
}

/// Waits until route `name` in `ns` sends every request to the stable
/// pods `routed_workload` made. A release whose stable Deployment has not
/// settled is refused at preflight (its rollback path is not confirmed),
/// as it must be; a bench that measures releases waits for this first.
pub fn wait_serving(url: &str, ns: &str, name: &str) {
    wait_every(
        &format!("{name} serving"),
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let (_, answer) = call(
                url,
                "POST",
                &format!("/_emulator/traffic?namespace={ns}"),
                &serde_json::json!({"route": name, "requests": 100}),
            );
            answer["byImage"]["registry.test/web:1"].as_u64() == Some(100)
        },
    );
}

/// Polls `done` every 20 ms until it holds; returns when it did.
pub fn wait(what: &str, timeout: Duration, done: impl FnMut() -> bool) -> Instant {
    wait_every(what, timeout, Duration::from_millis(20), done)
}

/// Polls `done` every `interval`: a check that costs the server (a
/// traffic simulation under its store lock) must not crowd out the
/// controller being measured.
pub fn wait_every(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut done: impl FnMut() -> bool,
) -> Instant {
    let started = Instant::now();
    loop {
        if done() {
            return Instant::now();
        }
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(interval);
    }
}

pub struct Server {
    child: Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed when dropped, so a panicking bench leaves no
/// controller behind polling a server that is gone.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn start_server() -> Server {
    let python = std::env::var("DEPLOYCTL_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port")
        .port();
    let child = Command::new(python)
        .arg(repo().join("tests/emulators/kubeapi.py"))
        .args(["--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubeapi.py starts");
    let url = format!("127.0.0.1:{port}");
    wait("the API server", Duration::from_secs(20), || {
        TcpStream::connect(&url).is_ok()
    });
    Server {
        child,
        url: format!("http://{url}"),
    }
}

/// A kubeconfig in `dir` for `server`, with a bearer token the server
/// knows as a cluster admin (`system:masters`).
pub fn admin_kubeconfig(server: &Server, dir: &Path) -> PathBuf {
    let (status, answer) = call(
        &server.url,
        "POST",
        "/_emulator/tokens",
        &serde_json::json!({"token": "bench", "user": "bench-admin", "groups": ["system:masters"]}),
    );
    assert_eq!(status, 200, "{answer}");
    let path = dir.join("kubeconfig");
    std::fs::write(&path, format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster: {{server: \"{}\"}}\nusers:\n- name: t\n  user: {{token: bench}}\ncontexts:\n- name: t\n  context: {{cluster: t, user: t}}\ncurrent-context: t\n",
        server.url
    )).expect("kubeconfig");
    path
}

/// A plain GET of `path` on `url` (`http://HOST:PORT`): status and body.
pub fn get_text(url: &str, path: &str) -> (u16, String) {
    request(url, "GET", path, "")
}
