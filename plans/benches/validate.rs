//! Load-and-validate benchmark: `cargo bench -p deployctl-plan --bench validate`.
//!
//! Generates realistic plans in memory (sim targets, versioned artifacts,
//! canary stages with weights, pauses and analysis against shared gates, and
//! an `after:` DAG where stage i waits for stages i-1 and i-7) and times
//! `deployctl_plan::load` on them. The target is ≤ 200 ms for 5,000 stages.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

const GATES: usize = 5;

/// A valid plan with `stages` canary stages, one sim target each.
fn generate(stages: usize) -> String {
    let mut out = String::with_capacity(stages * 400);
    out.push_str(
        "apiVersion: deployctl.io/v1\n\
         kind: Plan\n\
         metadata:\n  \
           name: bench-release\n  \
           environment: staging\n  \
           owner: release-engineering\n  \
           labels:\n    \
             purpose: benchmark\n\n\
         targets:\n",
    );
    for i in 0..stages {
        let _ = writeln!(out, "  t{i}:");
        let _ = writeln!(out, "    description: Simulated service number {i}.");
        let _ = writeln!(out, "    sim: {{}}");
    }
    out.push_str("\nartifacts:\n");
    for i in 0..stages {
        let _ = writeln!(out, "  t{i}:");
        let _ = writeln!(out, "    version: \"2.{}.{}\"", i / 100, i % 100);
    }
    out.push_str("\nstages:\n");
    for i in 0..stages {
        let gate = |k: usize| format!("gate-{}", (i + k) % GATES);
        let _ = writeln!(out, "  - name: s{i}");
        let _ = writeln!(out, "    target: t{i}");
        match (i.checked_sub(1), i.checked_sub(7)) {
            (Some(a), Some(b)) => {
                let _ = writeln!(out, "    after: [s{a}, s{b}]");
            }
            (Some(a), None) => {
                let _ = writeln!(out, "    after: [s{a}]");
            }
            _ => {}
        }
        let _ = writeln!(out, "    timeout: 30m");
        let _ = writeln!(out, "    canary:");
        let _ = writeln!(out, "      gates: [{}]", gate(0));
        let _ = writeln!(out, "      steps:");
        let _ = writeln!(out, "        - setWeight: 10");
        let _ = writeln!(out, "        - pause: {{duration: 1m}}");
        let _ = writeln!(
            out,
            "        - analysis: {{gates: [{}, {}]}}",
            gate(0),
            gate(1)
        );
        let _ = writeln!(out, "        - setWeight: 50");
        let _ = writeln!(out, "        - pause: {{duration: 2m}}");
        let _ = writeln!(out, "        - analysis: {{gates: [{}]}}", gate(2));
        let _ = writeln!(out, "        - setWeight: 100");
    }
    out.push_str("\ngates:\n");
    for g in 0..GATES {
        let _ = writeln!(out, "  gate-{g}:");
        let _ = writeln!(out, "    sim:");
        let _ = writeln!(out, "      minSuccessRate: 99");
        let _ = writeln!(out, "    interval: 10s");
        let _ = writeln!(out, "    count: 3");
    }
    out.push_str(
        "\nrollback:\n  \
           automatic: true\n  \
           on: [gateFailed, error, timeout, kill]\n  \
           scope: plan\n",
    );
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn bench(stages: usize, runs: usize) -> f64 {
    let text = generate(stages);
    let bytes = text.as_bytes();
    match deployctl_plan::load("bench.yaml", bytes) {
        Ok(loaded) => assert_eq!(loaded.plan.stages.len(), stages),
        Err(rejected) => panic!(
            "generated {stages}-stage plan was rejected:\n{}",
            rejected.render(false)
        ),
    }
    for _ in 0..3 {
        let _ = black_box(deployctl_plan::load("bench.yaml", black_box(bytes)));
    }
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let result = deployctl_plan::load("bench.yaml", black_box(bytes));
            let elapsed = start.elapsed();
            drop(black_box(result));
            elapsed
        })
        .collect();
    times.sort();
    let median = ms(times[runs / 2]);
    println!(
        "validate {stages} stages ({} bytes): min {:.1} ms, median {median:.1} ms, max {:.1} ms ({runs} runs)",
        bytes.len(),
        ms(times[0]),
        ms(times[runs - 1]),
    );
    median
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    bench(50, 200);
    bench(500, 50);
    let median = bench(5_000, 20);
    let verdict = if median <= 200.0 { "within" } else { "OVER" };
    println!("5,000-stage median {median:.1} ms: {verdict} the 200 ms target");
}
