//! Dispatch and cancel figures of the fleet adapter against the repo's IoT
//! Jobs emulator (moto for S3), with the real SDK client: preflight over a
//! 2,000-device fleet (1,000 thing types read), one wave of 1,000 devices
//! (its thing group filled and its job created), `observe`, and the kill
//! switch (every wave job force-canceled). Prints one line per figure;
//! needs `DEPLOYCTL_TEST_IOTJOBS_URL` and `DEPLOYCTL_TEST_MOTO_URL`:
//!
//! ```sh
//! bash tests/moto.sh -- cargo bench -p deployctl-aws-iot --bench dispatch
//! ```
//!
//! What AWS allows is the comparison: a job creates at most 1,000
//! executions a minute (`maximumPerMinute` ≤ 1000), so the adapter's own
//! dispatch must be far from the bottleneck.

#[path = "../tests/it/support.rs"]
#[allow(dead_code)]
mod support;

use std::time::Instant;

use deployctl_adapter::{Action, IdempotencyKey, Target};

const FLEET: u32 = 2_000;
const WAVE: u32 = 1_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run());
}

async fn run() {
    let Some(urls) = support::emulators("dispatch bench") else {
        return;
    };
    let setup = Instant::now();
    let world = support::World::new(&urls, FLEET).await;
    let plan = world.plan().await;
    println!(
        "setup: {FLEET} things and two published firmwares in {:.1} s (not measured)",
        setup.elapsed().as_secs_f64()
    );
    let target = world.target(&plan).await;

    let started = Instant::now();
    target.preflight().await.expect("preflight");
    let preflight = started.elapsed();
    println!(
        "preflight ({FLEET} devices, 1,000 thing types, two manifests and images verified): {:.0} ms",
        preflight.as_secs_f64() * 1e3
    );

    target.attach("bench", "ota");
    let started = Instant::now();
    target
        .apply(
            &Action::StartWave {
                index: 0,
                devices: WAVE,
            },
            &IdempotencyKey("bench/ota/1".into()),
        )
        .await
        .expect("the wave starts");
    let dispatch = started.elapsed();
    println!(
        "dispatch a {WAVE}-device wave (group filled, job created): {:.0} ms = {:.0} devices/s ({:.0}× the 1,000 devices/min a job may notify)",
        dispatch.as_secs_f64() * 1e3,
        f64::from(WAVE) / dispatch.as_secs_f64(),
        (f64::from(WAVE) / dispatch.as_secs_f64()) * 60.0 / 1000.0
    );

    let mut samples = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let observed = target.observe().await.expect("observe");
        samples.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!(observed.waves.expect("waves").dispatched, WAVE);
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "observe (one wave of {WAVE}): median {:.1} ms, max {:.1} ms over 20",
        samples[10], samples[19]
    );

    let started = Instant::now();
    target
        .apply(&Action::Halt, &IdempotencyKey("bench/ota/2".into()))
        .await
        .expect("halt");
    let halt = started.elapsed();
    println!(
        "kill switch (every wave job force-canceled): {:.0} ms",
        halt.as_secs_f64() * 1e3
    );
}
