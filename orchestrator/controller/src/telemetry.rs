//! What the controller tells its operators besides Release status:
//! Prometheus metrics on one port (`/metrics`) and the kubelet's probes on
//! another (`/healthz`, `/readyz`), as controller-runtime controllers do.
//!
//! The figures: Releases by phase (the leader's view; a follower reports
//! none), gate results, rollbacks and how long they took, the reconcile
//! duration histogram, and whether this replica leads. Gate results and
//! rollbacks come from the engine's progress events, so they count what
//! this replica's runs did, since it started.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use deployctl_engine::progress::Progress;
use deployctl_engine::state::RunPhase;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A Prometheus histogram with fixed buckets (seconds).
#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, seconds: f64) {
        for (bound, count) in self.bounds.iter().zip(&mut self.counts) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        Histogram::render_series(name, help, None, &[("", self)], out);
    }

    /// `series` under one name, told apart by `label` (their value first
    /// in each pair); `None` renders the one series without a label.
    fn render_series(
        name: &str,
        help: &str,
        label: Option<&str>,
        series: &[(&str, &Histogram)],
        out: &mut String,
    ) {
        out.push_str(&format!(
            "# HELP {name} {help}
# TYPE {name} histogram
"
        ));
        for (value, histogram) in series {
            let (bucket_label, plain) = match label {
                Some(label) => (
                    format!("{label}=\"{value}\","),
                    format!("{{{label}=\"{value}\"}}"),
                ),
                None => (String::new(), String::new()),
            };
            for (bound, count) in histogram.bounds.iter().zip(&histogram.counts) {
                out.push_str(&format!(
                    "{name}_bucket{{{bucket_label}le=\"{bound}\"}} {count}\n"
                ));
            }
            out.push_str(&format!(
                "{name}_bucket{{{bucket_label}le=\"+Inf\"}} {}\n",
                histogram.count
            ));
            out.push_str(&format!(
                "{name}_sum{plain} {}\n{name}_count{plain} {}\n",
                histogram.sum, histogram.count
            ));
        }
    }
}

const RECONCILE_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
const ROLLBACK_BUCKETS: &[f64] = &[1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

#[derive(Debug)]
struct Figures {
    phases: BTreeMap<String, u64>,
    gates: BTreeMap<(String, &'static str), u64>,
    rollbacks: BTreeMap<&'static str, u64>,
    rollback_seconds: Histogram,
    /// Reconciles that wrote to the API server (a finalizer, a status)
    /// and those that found nothing to change, apart: the resyncs of
    /// Releases whose runs are under way are many and quick, and would
    /// hide the slower ones in a single histogram.
    reconcile_seconds: Histogram,
    reconcile_unchanged_seconds: Histogram,
    rolling_back_since: HashMap<String, Instant>,
    queue_depth: usize,
}

/// The controller's figures, shared by its loops and the metrics server.
#[derive(Debug)]
pub struct Metrics {
    figures: Mutex<Figures>,
    leader: AtomicBool,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            figures: Mutex::new(Figures {
                phases: BTreeMap::new(),
                gates: BTreeMap::new(),
                rollbacks: BTreeMap::new(),
                rollback_seconds: Histogram::new(ROLLBACK_BUCKETS),
                reconcile_seconds: Histogram::new(RECONCILE_BUCKETS),
                reconcile_unchanged_seconds: Histogram::new(RECONCILE_BUCKETS),
                rolling_back_since: HashMap::new(),
                queue_depth: 0,
            }),
            leader: AtomicBool::new(false),
            ready: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    fn figures(&self) -> std::sync::MutexGuard<'_, Figures> {
        self.figures.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.store(leading, Ordering::Relaxed);
        if !leading {
            let mut figures = self.figures();
            figures.phases.clear();
            figures.queue_depth = 0;
        }
    }

    /// Ready: the CRD is there, the journal open, leader election running.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// One reconcile, and whether it wrote to the API server.
    pub fn reconciled(&self, took: Duration, wrote: bool) {
        let mut figures = self.figures();
        let histogram = if wrote {
            &mut figures.reconcile_seconds
        } else {
            &mut figures.reconcile_unchanged_seconds
        };
        histogram.observe(took.as_secs_f64());
    }

    /// Releases waiting for a reconcile worker.
    pub fn queue_depth(&self, depth: usize) {
        self.figures().queue_depth = depth;
    }

    /// The leader's count of Releases per phase, after a resync.
    pub fn phases(&self, phases: BTreeMap<String, u64>) {
        self.figures().phases = phases;
    }

    /// One progress event of a run this replica drives.
    pub fn progress(&self, event: &Progress) {
        let mut figures = self.figures();
        match event {
            Progress::Gate { gate, passed, .. } => {
                let result = if *passed { "pass" } else { "fail" };
                *figures.gates.entry((gate.clone(), result)).or_default() += 1;
            }
            Progress::RunPhase { run, phase } => match phase {
                RunPhase::RollingBack => {
                    figures
                        .rolling_back_since
                        .entry(run.clone())
                        .or_insert_with(Instant::now);
                }
                RunPhase::RolledBack | RunPhase::Killed | RunPhase::Failed | RunPhase::Aborted => {
                    if let Some(since) = figures.rolling_back_since.remove(run) {
                        let outcome = if *phase == RunPhase::Failed {
                            "incomplete"
                        } else {
                            "complete"
                        };
                        *figures.rollbacks.entry(outcome).or_default() += 1;
                        figures
                            .rollback_seconds
                            .observe(since.elapsed().as_secs_f64());
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let figures = self.figures();
        let mut out = String::new();
        out.push_str("# HELP deployctl_controller_leader Whether this replica holds the Lease (1) or not (0).\n");
        out.push_str("# TYPE deployctl_controller_leader gauge\n");
        out.push_str(&format!(
            "deployctl_controller_leader {}\n",
            u8::from(self.leader.load(Ordering::Relaxed))
        ));
        out.push_str("# HELP deployctl_reconcile_queue_depth Releases waiting for a reconcile worker (the leader's).\n");
        out.push_str("# TYPE deployctl_reconcile_queue_depth gauge\n");
        out.push_str(&format!(
            "deployctl_reconcile_queue_depth {}\n",
            figures.queue_depth
        ));
        out.push_str("# HELP deployctl_releases Releases by status phase (the leader's view).\n");
        out.push_str("# TYPE deployctl_releases gauge\n");
        for (phase, count) in &figures.phases {
            out.push_str(&format!(
                "deployctl_releases{{phase=\"{phase}\"}} {count}\n"
            ));
        }
        out.push_str(
            "# HELP deployctl_gate_results_total Gate verdicts of the runs this replica drove.\n",
        );
        out.push_str("# TYPE deployctl_gate_results_total counter\n");
        for ((gate, result), count) in &figures.gates {
            out.push_str(&format!(
                "deployctl_gate_results_total{{gate=\"{}\",result=\"{result}\"}} {count}\n",
                gate.replace('\\', "\\\\").replace('"', "\\\"")
            ));
        }
        out.push_str("# HELP deployctl_rollbacks_total Rollbacks of the runs this replica drove, by outcome.\n");
        out.push_str("# TYPE deployctl_rollbacks_total counter\n");
        for outcome in ["complete", "incomplete"] {
            out.push_str(&format!(
                "deployctl_rollbacks_total{{outcome=\"{outcome}\"}} {}\n",
                figures.rollbacks.get(outcome).copied().unwrap_or(0)
            ));
        }
        figures.rollback_seconds.render(
            "deployctl_rollback_duration_seconds",
            "From a run starting to roll back to its rollback ending.",
            &mut out,
        );
        Histogram::render_series(
            "deployctl_reconcile_duration_seconds",
            "One Release's reconcile, from the journal read to the status write; wrote=\"false\" when it changed nothing on the API server and did not fail.",
            Some("wrote"),
            &[
                ("true", &figures.reconcile_seconds),
                ("false", &figures.reconcile_unchanged_seconds),
            ],
            &mut out,
        );
        out
    }
}

/// `:8080` (all interfaces, as Kubernetes manifests write it) or
/// `HOST:PORT`.
pub fn parse_address(text: &str) -> Result<SocketAddr, String> {
    let full = if text.starts_with(':') {
        format!("0.0.0.0{text}")
    } else {
        text.to_owned()
    };
    full.parse()
        .map_err(|e| format!("{text:?} is not HOST:PORT or :PORT ({e})"))
}

/// What a server answers.
#[derive(Clone, Copy)]
pub enum Serves {
    Metrics,
    Probes,
}

/// Binds `address` and answers requests until the process ends; returns
/// the bound address (port 0 picks one).
pub async fn serve(
    address: SocketAddr,
    serves: Serves,
    metrics: Arc<Metrics>,
) -> Result<SocketAddr, String> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = Arc::clone(&metrics);
            tokio::spawn(async move {
                let Ok(Some(head)) =
                    tokio::time::timeout(Duration::from_secs(5), read_head(&mut stream)).await
                else {
                    return;
                };
                let request = String::from_utf8_lossy(&head);
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let path = path.split('?').next().unwrap_or(path);
                let (status, body, kind) = answer(serves, path, &metrics);
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(bound)
}

/// Reads a request's head (up to its blank line, at most 4 KiB): a
/// client may send the request line in several writes, and answering
/// before the rest arrived would reset its connection.
async fn read_head(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buffer).await.ok()?;
        if n == 0 || head.len() + n > 4096 {
            return (!head.is_empty()).then_some(head);
        }
        head.extend_from_slice(&buffer[..n]);
    }
    Some(head)
}

fn answer(serves: Serves, path: &str, metrics: &Metrics) -> (&'static str, String, &'static str) {
    const TEXT: &str = "text/plain; charset=utf-8";
    match (serves, path) {
        (Serves::Metrics, "/metrics") => (
            "200 OK",
            metrics.render(),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        // Alive: the process answers (its loops run on the same runtime).
        (Serves::Probes, "/healthz") => ("200 OK", "ok\n".into(), TEXT),
        (Serves::Probes, "/readyz") if metrics.is_ready() => ("200 OK", "ok\n".into(), TEXT),
        (Serves::Probes, "/readyz") => (
            "503 Service Unavailable",
            "not ready: starting\n".into(),
            TEXT,
        ),
        _ => ("404 Not Found", "not found\n".into(), TEXT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client may send its request line in pieces; the server answers
    /// the whole request, not the first piece (it used to answer `/metr`
    /// with 404 and close, resetting the client's connection).
    #[tokio::test]
    async fn a_request_sent_in_pieces_is_answered_whole() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let metrics = Arc::new(Metrics::default());
        let address = serve("127.0.0.1:0".parse().unwrap(), Serves::Metrics, metrics)
            .await
            .expect("served");
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connected");
        stream.write_all(b"GET /metr").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        stream
            .write_all(b"ics HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("an answer");
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(
            answer.contains("deployctl_reconcile_duration_seconds"),
            "{answer}"
        );
    }

    #[test]
    fn a_rollback_is_counted_with_its_duration_and_gates_by_verdict() {
        let metrics = Metrics::default();
        let phase = |phase| Progress::RunPhase {
            run: "r1".into(),
            phase,
        };
        metrics.progress(&Progress::Gate {
            run: "r1".into(),
            stage: "s".into(),
            gate: "errors".into(),
            passed: false,
            detail: String::new(),
        });
        metrics.progress(&phase(RunPhase::RollingBack));
        metrics.progress(&phase(RunPhase::RolledBack));
        metrics.reconciled(Duration::from_millis(3), true);
        metrics.reconciled(Duration::from_millis(30), false);
        let text = metrics.render();
        assert!(
            text.contains("deployctl_gate_results_total{gate=\"errors\",result=\"fail\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("deployctl_rollbacks_total{outcome=\"complete\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("deployctl_rollback_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "deployctl_reconcile_duration_seconds_bucket{wrote=\"true\",le=\"0.005\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "deployctl_reconcile_duration_seconds_bucket{wrote=\"true\",le=\"0.001\"} 0"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "deployctl_reconcile_duration_seconds_bucket{wrote=\"false\",le=\"0.025\"} 0"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "deployctl_reconcile_duration_seconds_bucket{wrote=\"false\",le=\"0.05\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("deployctl_reconcile_duration_seconds_count{wrote=\"false\"} 1"),
            "{text}"
        );
        assert_eq!(
            text.matches("# TYPE deployctl_reconcile_duration_seconds histogram")
                .count(),
            1,
            "one histogram, two series: {text}"
        );
        assert!(text.contains("deployctl_controller_leader 0"), "{text}");
    }

    #[test]
    fn addresses_take_the_kubernetes_form() {
        assert_eq!(
            parse_address(":8080").expect("valid").to_string(),
            "0.0.0.0:8080"
        );
        assert_eq!(parse_address("127.0.0.1:0").expect("valid").port(), 0);
        assert!(parse_address("8080").is_err());
    }
}
