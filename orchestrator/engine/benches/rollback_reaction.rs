//! Rollback reaction benchmark:
//! `cargo bench -p deployctl-engine --bench rollback_reaction`.
//!
//! 100 `sim` targets, each mid-canary at 50% behind a one-hour pause, each
//! watched by a background `sim` gate measuring every second (failure limit
//! 0), every simulated call taking 50 ms (`latencyMs: 50`, probes included).
//! Health turns bad and the benchmark measures the time until every one of
//! the 100 simulators is back on stable (no candidate, weight 0). The run is
//! driven by `create_run` + `Engine::execute` on a real (not paused) tokio
//! runtime with two workers and the production journal (SQLite WAL,
//! `synchronous=FULL`) in a fresh directory under the system temp dir.
//!
//! An in-memory `SimTarget` has no way to change its health at run time
//! (its faults are fixed in its `SimConfig`), so two scenarios:
//!
//! - `fault`: each simulator is configured "unhealthy from weight 50"
//!   (`SimFaults::unhealthy_from_weight`); its canary sets 10%, pauses 3 s,
//!   sets 50%, pauses 1 h. The flip is the instant a simulator's weight
//!   became 50; the reaction is measured from the FIRST simulator to
//!   flip (conservative: the others flip a few ms later).
//! - `flip`: healthy simulators, canary 50% then a 1 h pause; once all 100
//!   sit in the pause, the benchmark flips one flag read by the gates' probes
//!   (the sim's own probe, with its 50 ms latency, whose verdict turns to
//!   Fail once the flag is set). One instant for all 100 targets; the flip
//!   moves across the probe schedule from run to run (+0, +100, … ms).
//!
//! Instants come from a thin wrapper around each `SimTarget`: when its
//! `apply` returns, the simulator's state has changed (the sim updates its
//! state at the end of the call, in the same poll). The slowest single
//! rollback call is the longest `apply(Rollback)` seen by that wrapper. At
//! the end every simulator's state is checked directly.
//!
//! Target: flip → all on stable ≤ 1 probe interval + 1.5 × the slowest
//! single rollback call.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deployctl_adapter::{
    Action, AdapterError, Applied, BoxFuture, HealthProbe, IdempotencyKey, Measurement, Observed,
    PlannedCall, Preflight, Target,
};
use deployctl_engine::executor::{Engine, EngineOptions, ProbeError, ProbeFactory, RunContext};
use deployctl_engine::journal::Journal;
use deployctl_engine::progress::ProgressSink;
use deployctl_engine::start::RunRequest;
use deployctl_engine::state::{RunMode, RunPhase};
use deployctl_plan::model::{Gate, GateCheck, TargetKind};
use deployctl_sim::{SimConfig, SimFaults, SimTarget};

const TARGETS: usize = 100;
const LATENCY_MS: u64 = 50;
const INTERVAL: Duration = Duration::from_secs(1);
const RUNS: usize = 10;
const STABLE: &str = "1.0.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// Unhealthy from weight 50, configured up front.
    Fault,
    /// Healthy until a flag read by the probes is set.
    Flip,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Fault => "fault",
            Scenario::Flip => "flip",
        }
    }
}

fn generate(scenario: Scenario) -> String {
    let mut out = String::with_capacity(TARGETS * 300);
    out.push_str(
        "apiVersion: deployctl.io/v1\n\
         kind: Plan\n\
         metadata:\n  \
           name: bench-rollback\n  \
           environment: staging\n  \
           owner: release-engineering\n\n\
         targets:\n",
    );
    for i in 0..TARGETS {
        let _ = writeln!(out, "  t{i}:");
        let _ = writeln!(
            out,
            "    sim: {{stableVersion: \"{STABLE}\", latencyMs: {LATENCY_MS}}}"
        );
    }
    out.push_str("\nartifacts:\n");
    for i in 0..TARGETS {
        let _ = writeln!(out, "  t{i}:");
        let _ = writeln!(out, "    version: \"2.0.0\"");
    }
    out.push_str("\nstages:\n");
    for i in 0..TARGETS {
        let _ = writeln!(out, "  - name: s{i}");
        let _ = writeln!(out, "    target: t{i}");
        let _ = writeln!(out, "    timeout: 2h");
        let _ = writeln!(out, "    canary:");
        let _ = writeln!(out, "      gates: [health]");
        let _ = writeln!(out, "      steps:");
        if scenario == Scenario::Fault {
            let _ = writeln!(out, "        - setWeight: 10");
            let _ = writeln!(out, "        - pause: {{duration: 3s}}");
        }
        let _ = writeln!(out, "        - setWeight: 50");
        let _ = writeln!(out, "        - pause: {{duration: 1h}}");
    }
    let _ = write!(
        out,
        "\ngates:\n  \
           health:\n    \
             sim: {{minSuccessRate: 99}}\n    \
             interval: {}s\n    \
             count: 3\n\
         \nrollback:\n  \
           automatic: true\n  \
           on: [gateFailed, error, timeout, kill]\n  \
           scope: plan\n",
        INTERVAL.as_secs()
    );
    out
}

/// Instants seen by the wrappers, shared by all targets of a run.
#[derive(Default)]
struct Log {
    /// When each target's weight became 50.
    weight_50: Mutex<Vec<Instant>>,
    /// Each successful rollback call: (called, returned).
    rollbacks: Mutex<Vec<(Instant, Instant)>>,
    /// When a probe first answered Fail.
    first_fail: Mutex<Option<Instant>>,
}

/// A `SimTarget` that notes when its calls return.
struct Timed {
    sim: SimTarget,
    log: Arc<Log>,
}

impl Target for Timed {
    fn name(&self) -> &str {
        self.sim.name()
    }

    fn kind(&self) -> TargetKind {
        self.sim.kind()
    }

    fn observe(&self) -> BoxFuture<'_, Result<Observed, AdapterError>> {
        self.sim.observe()
    }

    fn plan(&self, observed: &Observed, action: &Action) -> Result<Vec<PlannedCall>, AdapterError> {
        self.sim.plan(observed, action)
    }

    fn apply<'a>(
        &'a self,
        action: &'a Action,
        key: &'a IdempotencyKey,
    ) -> BoxFuture<'a, Result<Applied, AdapterError>> {
        Box::pin(async move {
            let called = Instant::now();
            let result = self.sim.apply(action, key).await;
            let returned = Instant::now();
            if result.is_ok() {
                match action {
                    Action::SetWeight { percent: 50 } => {
                        self.log.weight_50.lock().unwrap().push(returned);
                    }
                    Action::Rollback { .. } => {
                        self.log.rollbacks.lock().unwrap().push((called, returned));
                    }
                    _ => {}
                }
            }
            result
        })
    }

    fn preflight(&self) -> BoxFuture<'_, Result<Preflight, AdapterError>> {
        self.sim.preflight()
    }

    fn probe(&self, check: &GateCheck) -> Option<Box<dyn HealthProbe>> {
        self.sim.probe(check)
    }

    fn moves(&self) -> deployctl_adapter::Moves<'_> {
        self.sim.moves()
    }
}

/// The sim's own probe, failing once `flipped` is set.
struct FlippableProbe {
    inner: Box<dyn HealthProbe>,
    flipped: Arc<AtomicBool>,
    log: Arc<Log>,
}

impl HealthProbe for FlippableProbe {
    fn measure(&self) -> BoxFuture<'_, Measurement> {
        Box::pin(async move {
            // The sim reads its state at the end of the measurement (after
            // its latency); the flag is read at the same point.
            let mut measurement = self.inner.measure().await;
            if self.flipped.load(Ordering::SeqCst) {
                measurement = Measurement::Fail {
                    value: Some(50.0),
                    detail: "health flipped by the benchmark".into(),
                };
            }
            if matches!(measurement, Measurement::Fail { .. }) {
                let now = Instant::now();
                let mut first = self.log.first_fail.lock().unwrap();
                if first.is_none_or(|at| now < at) {
                    *first = Some(now);
                }
            }
            measurement
        })
    }
}

struct Probes {
    flipped: Arc<AtomicBool>,
    log: Arc<Log>,
}

impl ProbeFactory for Probes {
    fn probe(
        &self,
        gate: &Gate,
        target: &Arc<dyn Target>,
    ) -> Result<Box<dyn HealthProbe>, ProbeError> {
        let inner = target
            .probe(&gate.check)
            .ok_or_else(|| ProbeError::Unsupported {
                gate_kind: gate.check.kind().name().to_string(),
                target_kind: target.kind().name().to_string(),
            })?;
        Ok(Box::new(FlippableProbe {
            inner,
            flipped: self.flipped.clone(),
            log: self.log.clone(),
        }))
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn fresh_dir(label: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "deployctl-bench-rollback-{label}-{}-{nanos}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// What one run measured, in ms.
struct Figures {
    /// Flip (the first, for `fault`) → every simulator on stable.
    reaction: f64,
    /// `fault` only: the last target's flip → every simulator on stable.
    from_last_flip: Option<f64>,
    /// Flip → a probe first answers Fail.
    detection: f64,
    /// That Fail → the first rollback call starts.
    to_first_call: f64,
    /// First rollback call started → last one started.
    call_starts_spread: f64,
    /// Last rollback call started → last one returned.
    last_call: f64,
    slowest_call: f64,
    target: f64,
}

fn run_once(
    runtime: &tokio::runtime::Runtime,
    scenario: Scenario,
    flip_offset: Duration,
) -> Figures {
    let text = generate(scenario);
    let loaded = match deployctl_plan::load("bench.yaml", text.as_bytes()) {
        Ok(loaded) => loaded,
        Err(rejected) => panic!("generated plan was rejected:\n{}", rejected.render(false)),
    };
    let plan = Arc::new(loaded.plan);
    let dir = fresh_dir(scenario.name());
    let journal = Arc::new(Journal::open(&dir).expect("open journal"));
    let log = Arc::new(Log::default());
    let flipped = Arc::new(AtomicBool::new(false));
    let faults = match scenario {
        Scenario::Fault => SimFaults::none().unhealthy_from_weight(50),
        Scenario::Flip => SimFaults::none(),
    };
    let simulators: BTreeMap<String, SimTarget> = plan
        .targets
        .values()
        .map(|target| {
            let config = SimConfig::for_plan_target(target).with_faults(faults.clone());
            assert_eq!(config.latency, Duration::from_millis(LATENCY_MS));
            (target.name.clone(), SimTarget::in_memory(config))
        })
        .collect();
    let targets: BTreeMap<String, Arc<dyn Target>> = simulators
        .iter()
        .map(|(name, sim)| {
            let timed = Timed {
                sim: sim.clone(),
                log: log.clone(),
            };
            (name.clone(), Arc::new(timed) as Arc<dyn Target>)
        })
        .collect();
    let run_id = deployctl_engine::run::new_run_id();
    let context = RunContext {
        run_id,
        plan,
        targets,
        probes: Arc::new(Probes {
            flipped: flipped.clone(),
            log: log.clone(),
        }),
        notifications: Vec::new(),
    };
    let engine = Engine::new(journal, EngineOptions::default(), ProgressSink::default());
    let run = runtime.spawn(async move {
        engine
            .start(
                &context,
                &RunRequest {
                    plan_file: "bench.yaml",
                    plan_source: &text,
                    initiator: "bench@localhost",
                    mode: RunMode::Apply,
                },
            )
            .await?;
        engine.execute(&context).await
    });

    // Wait until every target sits at 50%.
    let reached = Instant::now();
    while log.weight_50.lock().unwrap().len() < TARGETS {
        assert!(
            reached.elapsed() < Duration::from_secs(60),
            "targets did not reach 50% within a minute"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let flip = match scenario {
        Scenario::Fault => *log.weight_50.lock().unwrap().iter().min().unwrap(),
        Scenario::Flip => {
            // Let the pause start and the monitors settle, then flip at a
            // point of the probe schedule that changes from run to run.
            std::thread::sleep(Duration::from_secs(2) + flip_offset);
            let at = Instant::now();
            flipped.store(true, Ordering::SeqCst);
            at
        }
    };
    let outcome = runtime
        .block_on(run)
        .expect("engine task")
        .expect("execute");
    assert_eq!(outcome.phase, RunPhase::RolledBack, "{}", outcome.message);
    for (name, sim) in &simulators {
        let state = sim.state().expect("sim state");
        assert!(
            state.candidate.is_none() && state.weight == 0 && state.stable == STABLE,
            "{name} is not back on stable: {state:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);

    let rollbacks = log.rollbacks.lock().unwrap().clone();
    assert_eq!(rollbacks.len(), TARGETS, "one rollback call per target");
    let all_back = rollbacks.iter().map(|(_, end)| *end).max().unwrap();
    let first_start = rollbacks.iter().map(|(start, _)| *start).min().unwrap();
    let last = rollbacks.iter().max_by_key(|(start, _)| *start).unwrap();
    let slowest = rollbacks
        .iter()
        .map(|(start, end)| *end - *start)
        .max()
        .unwrap();
    let first_fail = log.first_fail.lock().unwrap().expect("a probe failed");
    let last_flip = *log.weight_50.lock().unwrap().iter().max().unwrap();
    Figures {
        reaction: ms(all_back - flip),
        from_last_flip: (scenario == Scenario::Fault).then(|| ms(all_back - last_flip)),
        detection: ms(first_fail.saturating_duration_since(flip)),
        to_first_call: ms(first_start.saturating_duration_since(first_fail)),
        call_starts_spread: ms(last.0 - first_start),
        last_call: ms(last.1 - last.0),
        slowest_call: ms(slowest),
        target: ms(INTERVAL) + 1.5 * ms(slowest),
    }
}

fn bench(runtime: &tokio::runtime::Runtime, scenario: Scenario) -> bool {
    println!(
        "scenario `{}`: {TARGETS} sim targets at 50% in a 1 h pause, background sim gate every {} s, {LATENCY_MS} ms per call",
        scenario.name(),
        INTERVAL.as_secs()
    );
    let mut all: Vec<Figures> = Vec::new();
    for run in 0..RUNS {
        let offset = INTERVAL * run as u32 / RUNS as u32;
        let f = run_once(runtime, scenario, offset);
        let last_flip = f
            .from_last_flip
            .map(|v| format!(" (from the last target's flip {v:.0} ms)"))
            .unwrap_or_default();
        println!(
            "  run {}: flip → all {TARGETS} on stable {:.0} ms{last_flip} [target {:.0} ms]: detection {:.0} ms, fail → first rollback call {:.0} ms, rollback calls started over {:.0} ms, last call {:.0} ms; slowest rollback call {:.1} ms",
            run + 1,
            f.reaction,
            f.target,
            f.detection,
            f.to_first_call,
            f.call_starts_spread,
            f.last_call,
            f.slowest_call,
        );
        all.push(f);
    }
    let mut reactions: Vec<f64> = all.iter().map(|f| f.reaction).collect();
    reactions.sort_by(f64::total_cmp);
    let slowest = all.iter().map(|f| f.slowest_call).fold(0.0, f64::max);
    let met = all.iter().filter(|f| f.reaction <= f.target).count();
    println!(
        "  `{}`: flip → all on stable min {:.0} ms, median {:.0} ms, max {:.0} ms; slowest rollback call {slowest:.1} ms → target {:.0} ms; {met}/{RUNS} runs within it",
        scenario.name(),
        reactions[0],
        reactions[RUNS / 2],
        reactions[RUNS - 1],
        ms(INTERVAL) + 1.5 * slowest,
    );
    met == RUNS
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "journal under {} (SQLite WAL, synchronous=FULL)",
        Path::new(&std::env::temp_dir()).display()
    );
    let fault = bench(&runtime, Scenario::Fault);
    let flip = bench(&runtime, Scenario::Flip);
    let verdict = |ok: bool| if ok { "within" } else { "OVER" };
    println!(
        "rollback reaction: `fault` {} and `flip` {} the target (1 probe interval + 1.5 × slowest rollback call) in every run",
        verdict(fault),
        verdict(flip)
    );
}
