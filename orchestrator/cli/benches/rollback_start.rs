//! CLI start-up benchmark for the runbook command:
//! `cargo bench -p deployctl --bench rollback_start`.
//!
//! Measures the time from spawning `deployctl rollback RUN --yes
//! --state-dir DIR` (the release binary Cargo builds for this bench) until
//! the first target call is made. The plan has one `sim` target (no
//! latency), so the state directory holds a sim world: the target's state is
//! a JSON file the sim replaces (write temp file, fsync, rename) when a call
//! changes it. Each iteration first runs `deployctl apply` (not timed) so
//! there is a promoted run to roll back, then times `rollback`:
//!
//! - spawn → the sim's state file replaced, seen by polling its inode every
//!   ~0.1 ms: the first target call has been made and has taken effect
//!   (this includes the sim's own write + fsync + rename);
//! - spawn → process exit: the whole command, an upper bound.
//!
//! For context it also times `deployctl --version` (exec and process
//! start-up alone) and `deployctl status RUN` (start-up plus opening the
//! journal and reading a run).
//!
//! Target: ≤ 50 ms from start to the first target call.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

const BIN: &str = env!("CARGO_BIN_EXE_deployctl");
const ITERATIONS: usize = 25;
const WARMUP: usize = 2;
const TARGET_MS: f64 = 50.0;
const STABLE: &str = "1.0.0";

const PLAN: &str = "apiVersion: deployctl.io/v1
kind: Plan
metadata:
  name: bench-rollback-start
  environment: sandbox
  owner: release-engineering
targets:
  api:
    sim: {stableVersion: \"1.0.0\"}
artifacts:
  api:
    version: \"2.0.0\"
stages:
  - name: api
    target: api
    timeout: 1m
    canary:
      steps:
        - setWeight: 50
rollback:
  automatic: true
  on: [gateFailed, error, timeout, kill]
  scope: plan
";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn deployctl(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("DEPLOYCTL_STATE_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn check(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `deployctl apply`, returning the run id it prints.
fn apply(plan: &Path, state: &Path) -> String {
    let output = deployctl(&[
        "apply",
        &plan.to_string_lossy(),
        "--yes",
        "--state-dir",
        &state.to_string_lossy(),
    ])
    .output()
    .expect("spawn apply");
    check(&output, "apply");
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr
        .lines()
        .find_map(|line| {
            line.strip_prefix("Run ")
                .and_then(|rest| rest.strip_suffix(" started."))
        })
        .unwrap_or_else(|| panic!("no run id in apply's output:\n{stderr}"))
        .to_string()
}

/// Identity of the state file's current version (replaced by rename).
fn version_of(path: &Path) -> Option<(u64, i64, i64)> {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.ino(), m.mtime(), m.mtime_nsec()))
}

struct Sample {
    first_call: Duration,
    exit: Duration,
}

fn time_rollback(run: &str, state: &Path, sim_file: &Path) -> Sample {
    let before = version_of(sim_file).expect("sim state file after apply");
    let mut command = deployctl(&[
        "rollback",
        run,
        "--yes",
        "--state-dir",
        &state.to_string_lossy(),
    ]);
    let started = Instant::now();
    let child = command.spawn().expect("spawn rollback");
    let first_call = loop {
        if version_of(sim_file).is_some_and(|now| now != before) {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "rollback never touched the target"
        );
        std::thread::sleep(Duration::from_micros(50));
    };
    let output = child.wait_with_output().expect("wait for rollback");
    let exit = started.elapsed();
    check(&output, "rollback");
    let text = std::fs::read_to_string(sim_file).expect("read sim state");
    let json: serde_json::Value = serde_json::from_str(&text).expect("sim state is JSON");
    assert!(
        json["candidate"].is_null() && json["weight"] == 0 && json["stable"] == STABLE,
        "the target is not back on stable after rollback: {json}"
    );
    Sample { first_call, exit }
}

fn time_command(args: &[&str], runs: usize) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            let output = deployctl(args).output().expect("spawn");
            let elapsed = started.elapsed();
            // `status` exits with the run's phase (1 for a rolled-back
            // run): any exit code will do, a crash will not.
            assert!(
                output.status.code().is_some() && !output.stdout.is_empty(),
                "{} failed ({}):\n{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
            elapsed
        })
        .collect();
    times.sort();
    times
}

fn summary(label: &str, mut times: Vec<Duration>) -> f64 {
    times.sort();
    let n = times.len();
    let median = ms(times[n / 2]);
    println!(
        "{label}: min {:.1} ms, median {median:.1} ms, max {:.1} ms ({n} runs)",
        ms(times[0]),
        ms(times[n - 1]),
    );
    median
}

fn fresh_dir() -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "deployctl-bench-rollback-start-{}-{nanos}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    dir
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let dir = fresh_dir();
    let plan = dir.join("plan.yaml");
    std::fs::write(&plan, PLAN).expect("write plan");
    let state = dir.join("state");
    let sim_file = state.join("sim").join("api.json");
    println!("binary: {BIN}");
    println!(
        "state dir: {} (journal: SQLite WAL, synchronous=FULL)",
        state.display()
    );

    let mut samples = Vec::new();
    let mut last_run = String::new();
    for i in 0..WARMUP + ITERATIONS {
        let run = apply(&plan, &state);
        let sample = time_rollback(&run, &state, &sim_file);
        if i >= WARMUP {
            samples.push(sample);
        }
        last_run = run;
    }

    let version = time_command(&["--version"], ITERATIONS);
    let status = time_command(
        &["status", &last_run, "--state-dir", &state.to_string_lossy()],
        ITERATIONS,
    );
    summary("deployctl --version (exec + start-up only)", version);
    summary(
        "deployctl status RUN (start-up + journal open + read)",
        status,
    );
    let median = summary(
        "rollback: spawn → first target call (sim state file replaced)",
        samples.iter().map(|s| s.first_call).collect(),
    );
    let whole = summary(
        "rollback: spawn → exit (whole command, upper bound)",
        samples.iter().map(|s| s.exit).collect(),
    );
    let worst = samples
        .iter()
        .map(|s| s.first_call)
        .max()
        .map(ms)
        .unwrap_or_default();
    let verdict = |v: f64| if v <= TARGET_MS { "within" } else { "OVER" };
    println!(
        "start → first target call: median {median:.1} ms ({} the {TARGET_MS} ms target), max {worst:.1} ms ({}); whole command median {whole:.1} ms ({})",
        verdict(median),
        verdict(worst),
        verdict(whole),
    );
    let _ = std::fs::remove_dir_all(&dir);
}
