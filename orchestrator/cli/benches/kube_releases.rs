//! One controller, 1,000 Releases applied at once:
//! `cargo bench -p deployctl --bench kube_releases`.
//!
//! Starts the repository's test API server, one `deployctl controller`
//! (the release binary) with its metrics port, and creates 1,000 Releases
//! in one namespace as fast as the server takes them, each a sim canary
//! (50 % → 100 %) of a target of its own, so the figures are the
//! controller's (watch, runs, status writes), not a platform's. Then:
//!
//! - every Release ends Succeeded with its own run, and the journal holds
//!   exactly 1,000 runs (none lost, none run twice);
//! - the controller's resident memory once idle (all Releases done, 5 s
//!   later) and its peak (`VmRSS`, `VmHWM`);
//! - the reconcile duration's p99 from the controller's own histogram
//!   (`deployctl_reconcile_duration_seconds`, one Release's journal read
//!   to its status write), as the bucket bound it falls in: of all
//!   reconciles, and of those that wrote to the API server (the starts,
//!   the status changes), which the many quick resyncs do not dilute.
//!
//! Targets: no Release lost or run twice; idle RSS ≤ 50 MB; p99
//! reconcile ≤ 100 ms.

#[path = "support/kubeapi.rs"]
mod kubeapi;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kubeapi::{BIN, call, start_server, wait};
use serde_json::{Value, json};

/// How many Releases the target speaks of; `DEPLOYCTL_BENCH_RELEASES`
/// runs a smaller load when profiling.
const RELEASES_TARGET: usize = 1000;
const RSS_TARGET_MB: f64 = 50.0;
const P99_TARGET_S: f64 = 0.1;

fn plan(n: usize) -> String {
    format!(
        "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {{name: bench-{n}, environment: sandbox}}\n\
targets:\n  api-{n}:\n    sim: {{stableVersion: \"1.0\"}}\n\
artifacts:\n  api-{n}: {{version: \"2.0\"}}\n\
stages:\n  - name: api\n    target: api-{n}\n    canary: {{steps: [{{setWeight: 50}}, {{setWeight: 100}}]}}\n"
    )
}

/// `VmRSS` and `VmHWM` of `pid`, in MB.
fn memory(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The bucket bound the `q` quantile of the reconcile histogram falls in,
/// and the number of reconciles: of the series `wrote` names (`"true"`,
/// the reconciles that wrote to the API server; `"false"`, those that
/// changed nothing), or of all reconciles when `None`.
fn quantile(metrics: &str, q: f64, wrote: Option<&str>) -> (f64, f64) {
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    let series = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("deployctl_reconcile_duration_seconds_bucket{wrote=\""))
        .filter_map(|l| {
            let (series, rest) = l.split_once("\",le=\"")?;
            let (le, count) = rest.split_once("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((series, le, count.trim().parse::<f64>().ok()?))
        });
    for (_, le, count) in series.filter(|(series, _, _)| wrote.is_none_or(|w| w == *series)) {
        match buckets.iter_mut().find(|(bound, _)| *bound == le) {
            Some(bucket) => bucket.1 += count,
            None => buckets.push((le, count)),
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0.0, |b| b.1);
    let bound = buckets
        .iter()
        .find(|(_, count)| *count >= q * total)
        .map_or(f64::NAN, |b| b.0);
    (bound, total)
}

fn main() {
    let releases_count = std::env::var("DEPLOYCTL_BENCH_RELEASES")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(RELEASES_TARGET);
    let server = start_server();
    let ns = format!("bench-releases-{}", std::process::id());
    let (status, answer) = call(
        &server.url,
        "POST",
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    );
    assert_eq!(status, 201, "{answer}");
    let dir = std::env::temp_dir().join(&ns);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let kubeconfig = kubeapi::admin_kubeconfig(&server, &dir);
    let mut controller = Command::new(BIN)
        .args(["controller", "--namespace", &ns, "--state-dir"])
        .arg(dir.join("state"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--metrics-bind-address", "127.0.0.1:0"])
        .args(
            std::env::var("DEPLOYCTL_BENCH_WORKERS")
                .map(|n| vec!["--concurrent-reconciles".to_owned(), n])
                .unwrap_or_default(),
        )
        .env("KUBECONFIG", &kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the controller");
    let stderr = Arc::new(Mutex::new(String::new()));
    {
        let stderr = Arc::clone(&stderr);
        let pipe = controller.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut all = stderr.lock().expect("stderr");
                all.push_str(&line);
                all.push('\n');
            }
        });
    }
    let mut metrics_url = String::new();
    wait("the metrics address", Duration::from_secs(60), || {
        let text = stderr.lock().expect("stderr").clone();
        match text
            .lines()
            .find_map(|l| l.split("metrics on http://").nth(1))
        {
            Some(rest) => {
                metrics_url = format!("http://{}", rest.split('/').next().unwrap_or_default());
                true
            }
            None => false,
        }
    });
    let releases = format!("/apis/deployctl.io/v1/namespaces/{ns}/releases");
    wait("the Release CRD served", Duration::from_secs(60), || {
        call(&server.url, "GET", &releases, &Value::Null).0 == 200
    });
    let started = Instant::now();
    for n in 0..releases_count {
        let release = json!({"apiVersion": "deployctl.io/v1", "kind": "Release",
            "metadata": {"name": format!("r-{n}"), "annotations": {"deployctl.io/initiator": "bench"}},
            "spec": {"plan": plan(n), "approvals": []}});
        let (status, answer) = call(&server.url, "POST", &releases, &release);
        assert_eq!(status, 201, "Release {n}: {answer}");
    }
    let created = started.elapsed();
    let mut phases = Value::Null;
    let mut last_report = Instant::now();
    let done = wait("every Release to end", Duration::from_secs(30 * 60), || {
        let (_, list) = call(&server.url, "GET", &releases, &Value::Null);
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let ended = items
            .iter()
            .filter(|r| {
                matches!(
                    r["status"]["phase"].as_str(),
                    Some("Succeeded" | "Failed" | "RolledBack" | "Invalid" | "Refused")
                )
            })
            .count();
        phases = Value::Array(items);
        if last_report.elapsed() >= Duration::from_secs(30) {
            eprintln!(
                "{ended} of {releases_count} ended after {:.0} s",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(500));
        ended == releases_count
    });
    let all_done = (done - started).as_secs_f64();
    let items = phases.as_array().cloned().unwrap_or_default();
    let succeeded = items
        .iter()
        .filter(|r| r["status"]["phase"] == "Succeeded")
        .count();
    for release in items.iter().filter(|r| r["status"]["phase"] != "Succeeded") {
        println!(
            "not Succeeded: {} {} {}",
            release["metadata"]["name"], release["status"]["phase"], release["status"]["message"]
        );
        let name = release["metadata"]["name"].as_str().unwrap_or_default();
        let log = stderr.lock().expect("stderr").clone();
        for line in log
            .lines()
            .filter(|l| l.contains(&format!("/{name}:")) || l.contains(&format!("/{name} ")))
        {
            println!("  controller: {line}");
        }
    }
    let runs: BTreeSet<String> = items
        .iter()
        .filter_map(|r| r["status"]["runId"].as_str().map(str::to_owned))
        .collect();
    // Idle: nothing left to run; the resync still reads every Release.
    std::thread::sleep(Duration::from_secs(5));
    let (idle_rss, peak_rss) = memory(controller.id());
    let metrics = {
        let (status, text) = kubeapi::get_text(&metrics_url, "/metrics");
        assert_eq!(status, 200, "{text}");
        text
    };
    // The API server's own time per request (arrival to answer, from its
    // request log), to tell its queueing from the controller's work.
    let (_, log) = call(
        &server.url,
        "GET",
        &format!("/_emulator/requests?namespace={ns}"),
        &Value::Null,
    );
    let mut served: Vec<f64> = log["requests"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                // The controller's: it holds a token, the bench's own raw
                // requests carry none (the server's `system:admin`).
                .filter(|e| e["verb"] != "watch" && e["user"] != "system:admin")
                .filter_map(|e| e["seconds"].as_f64())
                .collect()
        })
        .unwrap_or_default();
    served.sort_by(f64::total_cmp);
    let served_at = |q: f64| {
        served
            .get(((served.len() as f64 * q) as usize).min(served.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    // Runs in the journal (SQLite), counted after the controller stops.
    let _ = controller.kill();
    let _ = controller.wait();
    let python = std::env::var("DEPLOYCTL_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let journal_runs = Command::new(python)
        .arg("-c")
        .arg("import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM runs').fetchone()[0])")
        .arg(dir.join("state/journal.sqlite3"))
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse::<usize>().ok());
    let (p99, reconciles) = quantile(&metrics, 0.99, None);
    let (p50, _) = quantile(&metrics, 0.50, None);
    let (wrote_p99, wrote) = quantile(&metrics, 0.99, Some("true"));
    let (wrote_p50, _) = quantile(&metrics, 0.50, Some("true"));
    println!(
        "{releases_count} Releases created in {:.1} s; all ended after {all_done:.1} s: {succeeded} Succeeded, {} distinct runs, journal runs {}",
        created.as_secs_f64(),
        runs.len(),
        journal_runs.map_or("unread".to_owned(), |n| n.to_string())
    );
    println!(
        "controller RSS idle {idle_rss:.1} MB (target ≤ {RSS_TARGET_MB} MB: {}), peak {peak_rss:.1} MB",
        if idle_rss <= RSS_TARGET_MB {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "reconcile: {reconciles} observed; p50 ≤ {p50} s, p99 ≤ {p99} s (bucket bounds; target ≤ {P99_TARGET_S} s: {})",
        if p99 <= P99_TARGET_S { "met" } else { "MISSED" }
    );
    println!(
        "  of which {wrote} wrote to the API server: p50 ≤ {wrote_p50} s, p99 ≤ {wrote_p99} s ({})",
        if wrote_p99 <= P99_TARGET_S {
            "within the target too"
        } else {
            "over the target"
        }
    );
    println!(
        "API server time per request ({} requests): p50 {:.4} s, p99 {:.4} s",
        served.len(),
        served_at(0.5),
        served_at(0.99)
    );
    let intact = succeeded == releases_count
        && runs.len() == releases_count
        && journal_runs == Some(releases_count);
    println!(
        "no Release lost or run twice: {}",
        if intact { "met" } else { "MISSED" }
    );
    let _ = std::fs::remove_dir_all(&dir);
}
