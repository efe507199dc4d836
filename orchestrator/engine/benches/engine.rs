//! Engine overhead benchmark: `cargo bench -p deployctl-engine --bench engine`.
//!
//! Generates a 1,000-stage plan in memory (one `sim` target per stage, every
//! stage a canary `Deploy → setWeight 25 → setWeight 75 → Promote` with no
//! pauses and no gates, so nothing but the engine and its journal takes
//! time), loads it with `deployctl_plan::load`, and runs it with
//! `create_run` + `Engine::execute` against in-memory, latency-free
//! `SimTarget`s on a real (not paused) multi-threaded tokio runtime with two
//! workers, as the CLI builds it. The journal is the production one: SQLite
//! in WAL mode with `synchronous=FULL`, in a fresh directory under the
//! system temp dir.
//!
//! The DAG: stage *i* runs after stages *i-5* and *i-8*, so up to five
//! stages run at once (the graph's levels are printed).
//!
//! Target: ≤ 2 ms per stage, durable journal included. To show where the
//! time goes it also reports the journal transactions per stage, the time of
//! one `Journal::transition` in a loop, the time of a bare `fsync` on the
//! same file system, and the same run with the journal on tmpfs (where
//! fsync costs nothing), which leaves the engine's own CPU time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deployctl_adapter::{HealthProbe, Target};
use deployctl_engine::event::Event;
use deployctl_engine::executor::{Engine, EngineOptions, ProbeError, ProbeFactory, RunContext};
use deployctl_engine::journal::{Journal, NewRun, NewStage, StageUpdate};
use deployctl_engine::progress::ProgressSink;
use deployctl_engine::start::RunRequest;
use deployctl_engine::state::{RunMode, RunPhase};
use deployctl_plan::ValidatedPlan;
use deployctl_plan::model::Gate;
use deployctl_sim::{SimConfig, SimTarget};

const STAGES: usize = 1_000;
/// Full engine runs per journal location.
const RUNS: usize = 5;
/// `Journal::transition` calls timed one by one.
const TRANSITIONS: usize = 2_000;
/// Bare fsyncs timed one by one.
const FSYNCS: usize = 2_000;
const TARGET_MS_PER_STAGE: f64 = 2.0;

/// A valid plan of `stages` zero-bake canary stages, one sim target each.
fn generate(stages: usize) -> String {
    let mut out = String::with_capacity(stages * 300);
    out.push_str(
        "apiVersion: deployctl.io/v1\n\
         kind: Plan\n\
         metadata:\n  \
           name: bench-engine\n  \
           environment: staging\n  \
           owner: release-engineering\n\n\
         targets:\n",
    );
    for i in 0..stages {
        let _ = writeln!(out, "  t{i}:");
        let _ = writeln!(
            out,
            "    sim: {{stableVersion: \"1.{}.{}\"}}",
            i / 100,
            i % 100
        );
    }
    out.push_str("\nartifacts:\n");
    for i in 0..stages {
        let _ = writeln!(out, "  t{i}:");
        let _ = writeln!(out, "    version: \"2.{}.{}\"", i / 100, i % 100);
    }
    out.push_str("\nstages:\n");
    for i in 0..stages {
        let _ = writeln!(out, "  - name: s{i}");
        let _ = writeln!(out, "    target: t{i}");
        let after: Vec<String> = [5, 8]
            .iter()
            .filter_map(|back| i.checked_sub(*back).map(|p| format!("s{p}")))
            .collect();
        if !after.is_empty() {
            let _ = writeln!(out, "    after: [{}]", after.join(", "));
        }
        let _ = writeln!(out, "    timeout: 30m");
        let _ = writeln!(out, "    canary:");
        let _ = writeln!(out, "      steps:");
        let _ = writeln!(out, "        - setWeight: 25");
        let _ = writeln!(out, "        - setWeight: 75");
    }
    out.push_str(
        "\nrollback:\n  \
           automatic: true\n  \
           on: [gateFailed, error, timeout, kill]\n  \
           scope: plan\n",
    );
    out
}

/// Probes as the CLI wires them for sim targets (this plan has no gates).
struct SimProbes;

impl ProbeFactory for SimProbes {
    fn probe(
        &self,
        gate: &Gate,
        target: &Arc<dyn Target>,
    ) -> Result<Box<dyn HealthProbe>, ProbeError> {
        target
            .probe(&gate.check)
            .ok_or_else(|| ProbeError::Unsupported {
                gate_kind: gate.check.kind().name().to_string(),
                target_kind: target.kind().name().to_string(),
            })
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn fresh_dir(base: &Path, label: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = base.join(format!(
        "deployctl-bench-engine-{label}-{}-{nanos}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

struct RunFigures {
    create: Duration,
    execute: Duration,
    events: usize,
}

/// One full run of `plan` on fresh simulators, journaled in `dir`.
fn run_once(
    runtime: &tokio::runtime::Runtime,
    plan: &Arc<ValidatedPlan>,
    dir: &Path,
) -> RunFigures {
    let journal = Arc::new(Journal::open(dir).expect("open journal"));
    let simulators: BTreeMap<String, SimTarget> = plan
        .targets
        .values()
        .map(|target| {
            (
                target.name.clone(),
                SimTarget::in_memory(SimConfig::for_plan_target(target)),
            )
        })
        .collect();
    let targets: BTreeMap<String, Arc<dyn Target>> = simulators
        .iter()
        .map(|(name, sim)| (name.clone(), Arc::new(sim.clone()) as Arc<dyn Target>))
        .collect();
    let run_id = deployctl_engine::run::new_run_id();
    let context = RunContext {
        run_id: run_id.clone(),
        plan: plan.clone(),
        targets,
        probes: Arc::new(SimProbes),
        notifications: Vec::new(),
    };
    let engine = Engine::new(
        journal.clone(),
        EngineOptions::default(),
        ProgressSink::default(),
    );
    // Starting a run: every target's preflight, then the run, its stages
    // and its locks in one transaction.
    let started = Instant::now();
    runtime
        .block_on(engine.start(
            &context,
            &RunRequest {
                plan_file: "bench.yaml",
                plan_source: "(generated)",
                initiator: "bench@localhost",
                mode: RunMode::Apply,
            },
        ))
        .expect("start run");
    let create = started.elapsed();
    let started = Instant::now();
    let outcome = runtime.block_on(engine.execute(&context)).expect("execute");
    let execute = started.elapsed();
    assert_eq!(outcome.phase, RunPhase::Succeeded, "{}", outcome.message);
    for (name, sim) in &simulators {
        let state = sim.state().expect("sim state");
        let wanted = &plan.targets[name]
            .artifact
            .as_ref()
            .expect("artifact")
            .version;
        assert!(
            state.candidate.is_none() && state.weight == 0 && &state.stable == wanted,
            "{name} did not end promoted: {state:?}"
        );
    }
    let events = journal.events(&run_id).expect("events").len();
    RunFigures {
        create,
        execute,
        events,
    }
}

/// Times `Journal::transition` one call at a time, on a one-stage run.
fn transition_times(dir: &Path) -> Vec<Duration> {
    let journal = Journal::open(dir).expect("open journal");
    let plan = deployctl_plan::load("one.yaml", generate(1).as_bytes())
        .expect("one-stage plan")
        .plan;
    let run_id = deployctl_engine::run::new_run_id();
    journal
        .create_run(&NewRun {
            id: &run_id,
            plan_name: &plan.metadata.name,
            environment: &plan.metadata.environment,
            plan_file: "one.yaml",
            plan_digest: &plan.digest,
            plan_source: "",
            initiator: "bench@localhost",
            mode: RunMode::Apply,
            stages: vec![NewStage {
                name: "s0".into(),
                target: plan.stages[0].target.clone(),
                target_key: "bench:s0".into(),
                new_version: None,
                preflight: None,
            }],
            locks: Vec::new(),
        })
        .expect("create run");
    let event = Event::Step {
        cursor: 3,
        detail: "set weight 25%".into(),
    };
    let mut times: Vec<Duration> = (0..TRANSITIONS)
        .map(|i| {
            let update = StageUpdate {
                cursor: Some(i as u32),
                weight: Some((i % 100) as u8),
                ..StageUpdate::default()
            };
            let started = Instant::now();
            journal
                .transition(&run_id, "s0", &event, &update)
                .expect("transition");
            started.elapsed()
        })
        .collect();
    times.sort();
    times
}

/// Times a 200-byte append plus `fdatasync`, the floor of a durable commit.
fn fsync_times(dir: &Path) -> Vec<Duration> {
    std::fs::create_dir_all(dir).expect("fsync dir");
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).expect("fsync file");
    let record = [b'x'; 200];
    let mut times: Vec<Duration> = (0..FSYNCS)
        .map(|_| {
            let started = Instant::now();
            file.write_all(&record).expect("write");
            file.sync_data().expect("fdatasync");
            started.elapsed()
        })
        .collect();
    times.sort();
    times
}

fn pick(sorted: &[Duration], quantile: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * quantile).round() as usize]
}

fn mean(sorted: &[Duration]) -> Duration {
    sorted.iter().sum::<Duration>() / sorted.len() as u32
}

fn filesystem(path: &Path) -> String {
    // Best effort, for the printout only: the mount whose path is the
    // longest prefix of `path`.
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let path = path.to_string_lossy();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let device = fields.next()?;
            let point = fields.next()?;
            let kind = fields.next()?;
            path.starts_with(point)
                .then(|| (point.len(), format!("{kind} ({device} on {point})")))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, text)| text)
        .unwrap_or_else(|| "unknown".into())
}

/// Runs the plan `RUNS` times with its journal under `base`; returns the
/// median ms per stage.
fn bench_runs(
    runtime: &tokio::runtime::Runtime,
    plan: &Arc<ValidatedPlan>,
    base: &Path,
    label: &str,
) -> (f64, f64) {
    println!("journal under {} — {}", base.display(), filesystem(base));
    let mut figures = Vec::new();
    for run in 0..RUNS {
        let dir = fresh_dir(base, label);
        let f = run_once(runtime, plan, &dir);
        println!(
            "  run {}: create_run {:.1} ms, execute {:.1} ms = {:.3} ms/stage, {} journal events ({:.2}/stage)",
            run + 1,
            ms(f.create),
            ms(f.execute),
            ms(f.execute) / STAGES as f64,
            f.events,
            f.events as f64 / STAGES as f64,
        );
        figures.push(f);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let mut totals: Vec<Duration> = figures.iter().map(|f| f.create + f.execute).collect();
    totals.sort();
    let median = totals[RUNS / 2];
    let events = figures[0].events as f64 / STAGES as f64;
    println!(
        "  {label}: create_run + execute min {:.0} ms, median {:.0} ms, max {:.0} ms → median {:.3} ms/stage",
        ms(totals[0]),
        ms(median),
        ms(totals[RUNS - 1]),
        ms(median) / STAGES as f64,
    );
    (ms(median) / STAGES as f64, events)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let text = generate(STAGES);
    let started = Instant::now();
    let loaded = match deployctl_plan::load("bench.yaml", text.as_bytes()) {
        Ok(loaded) => loaded,
        Err(rejected) => panic!("generated plan was rejected:\n{}", rejected.render(false)),
    };
    let load = started.elapsed();
    let plan = Arc::new(loaded.plan);
    let levels = plan.graph().levels();
    println!(
        "plan: {STAGES} canary stages (Deploy, setWeight 25, setWeight 75, Promote; no pauses or gates), {} bytes, loaded in {:.1} ms; {} levels, up to {} stages at once",
        text.len(),
        ms(load),
        levels.len(),
        levels.iter().map(Vec::len).max().unwrap_or(0),
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");

    let disk = std::env::temp_dir();
    let (per_stage, events_per_stage) = bench_runs(&runtime, &plan, &disk, "disk");

    let dir = fresh_dir(&disk, "transition");
    let transitions = transition_times(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let dir = fresh_dir(&disk, "fsync");
    let fsyncs = fsync_times(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "Journal::transition ×{TRANSITIONS} (WAL, synchronous=FULL): mean {:.0} µs, min {:.0} µs, median {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        us(mean(&transitions)),
        us(transitions[0]),
        us(pick(&transitions, 0.5)),
        us(pick(&transitions, 0.99)),
        us(transitions[TRANSITIONS - 1]),
    );
    println!(
        "bare write + fdatasync ×{FSYNCS} on the same file system: mean {:.0} µs, min {:.0} µs, median {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        us(mean(&fsyncs)),
        us(fsyncs[0]),
        us(pick(&fsyncs, 0.5)),
        us(pick(&fsyncs, 0.99)),
        us(fsyncs[FSYNCS - 1]),
    );
    let journal_share = events_per_stage * ms(mean(&transitions));
    println!(
        "journal alone: {events_per_stage:.2} transactions/stage × {:.3} ms = {journal_share:.3} ms/stage of the {per_stage:.3} ms/stage measured ({:.0}%)",
        ms(mean(&transitions)),
        journal_share * 100.0 / per_stage,
    );

    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        let (memory, _) = bench_runs(&runtime, &plan, shm, "tmpfs");
        let dir = fresh_dir(shm, "transition");
        let cpu = transition_times(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        let sqlite = events_per_stage * ms(mean(&cpu));
        println!(
            "Journal::transition ×{TRANSITIONS} on tmpfs (SQLite CPU, no fsync cost): mean {:.0} µs, median {:.0} µs, p99 {:.0} µs",
            us(mean(&cpu)),
            us(pick(&cpu, 0.5)),
            us(pick(&cpu, 0.99)),
        );
        println!(
            "without fsync cost (journal on tmpfs): {memory:.3} ms/stage = {sqlite:.3} ms/stage SQLite + {:.3} ms/stage engine, sim and runtime; {:.3} ms/stage of the disk figure is durable-write cost",
            memory - sqlite,
            per_stage - memory,
        );
    }

    let verdict = if per_stage <= TARGET_MS_PER_STAGE {
        "within"
    } else {
        "OVER"
    };
    println!(
        "{STAGES}-stage median {per_stage:.3} ms/stage (durable journal on disk): {verdict} the {TARGET_MS_PER_STAGE} ms/stage target"
    );
}
