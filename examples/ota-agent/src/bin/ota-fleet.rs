//! `ota-fleet`: many reference agents in one process, the fleet tests'
//! devices. Each thing named in `--things` (one per line) runs the same
//! [`Agent`] the `ota-agent` binary runs, with its own A/B slots under
//! `--slots DIR/THING`, polling the IoT Jobs data plane until the stop
//! file exists.
//!
//! ```text
//! ota-fleet --things things.txt --slots DIR --state state.json --stop FILE \
//!   --firmware t4-app --hardware t4-rev-a --factory-version 4.1.3 \
//!   --public-key firmware.pub --content-kms --ca ca.pem --endpoint URL \
//!   [--fail-version 4.2.0 --fail-percent 50] [--slow-percent 25] [--flap-percent 25]
//!   [--offline-percent 10 --offline-seconds 20]
//! ```
//!
//! Behaviour by cohort (the SHA-256 of the thing's name and the behaviour,
//! so each draw is its own and the same every run): a failing cohort's
//! self-test fails on `--fail-version` (the agent falls back and reports
//! FAILED), a slow cohort waits `--slow-seconds` before each poll, a
//! flapping cohort is offline for the first half of every 3 s, and an
//! offline cohort does not poll at all for its first `--offline-seconds`. What every
//! device runs and reported is written to `--state` after each round, as
//! `{"installed": {THING: VERSION}, "history": {THING: [{job, status,
//! version}]}}`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use deployctl_ota_agent::{Agent, Health, Identity, Outcome, Slots, wiring};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    things: PathBuf,
    #[arg(long)]
    slots: PathBuf,
    #[arg(long)]
    state: PathBuf,
    #[arg(long)]
    stop: PathBuf,
    #[arg(long)]
    firmware: String,
    #[arg(long)]
    hardware: String,
    #[arg(long)]
    factory_version: String,
    #[command(flatten)]
    device: wiring::DeviceArgs,
    #[arg(long, default_value = "0.2", value_name = "SECONDS")]
    poll: f64,
    #[arg(long, value_name = "VERSION")]
    fail_version: Option<String>,
    #[arg(long, default_value = "0")]
    fail_percent: u8,
    #[arg(long, default_value = "0")]
    slow_percent: u8,
    #[arg(long, default_value = "1.0", value_name = "SECONDS")]
    slow_seconds: f64,
    #[arg(long, default_value = "0")]
    flap_percent: u8,
    #[arg(long, default_value = "0")]
    offline_percent: u8,
    /// How long the offline cohort stays offline (from start).
    #[arg(long, default_value = "3600", value_name = "SECONDS")]
    offline_seconds: f64,
}

/// Whether `thing` is in the first `percent` of `behaviour`'s cohorts.
fn in_cohort(thing: &str, behaviour: &str, percent: u8) -> bool {
    let digest = deployctl_firmware::sha256_hex(format!("{behaviour}:{thing}").as_bytes());
    let draw = u8::from_str_radix(&digest[..2], 16).unwrap_or(0) % 100;
    draw < percent
}

#[derive(Default)]
struct Fleet {
    installed: BTreeMap<String, String>,
    history: BTreeMap<String, Vec<serde_json::Value>>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ota-fleet: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ota-fleet: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let things: Vec<String> = std::fs::read_to_string(&args.things)
        .map_err(|e| format!("{}: {e}", args.things.display()))?
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    let wiring::Connected {
        trusted,
        http,
        jobs,
        sdk,
    } = args.device.connect().await?;
    let fleet = Arc::new(Mutex::new(Fleet::default()));
    let started = Instant::now();
    let mut devices = tokio::task::JoinSet::new();
    for thing in things {
        let slots = Slots::open(&args.slots.join(&thing), &args.factory_version)
            .map_err(|e| format!("{thing}: {e}"))?;
        let failing = args
            .fail_version
            .clone()
            .filter(|_| in_cohort(&thing, "fail", args.fail_percent));
        let agent = Agent::new(
            Identity {
                thing: thing.clone(),
                firmware: args.firmware.clone(),
                hardware: args.hardware.clone(),
            },
            jobs.clone(),
            http.clone(),
            trusted.clone(),
            args.device.content_keys(&sdk)?,
            slots,
            Box::new(move |version| match &failing {
                Some(bad) if bad == version => {
                    Err("the watchdog fired during the boot self-test".into())
                }
                _ => Ok(()),
            }),
            Box::new(|_| Health {
                crashes: 0,
                resets: 0,
                score: 97,
            }),
        );
        let slow = in_cohort(&thing, "slow", args.slow_percent)
            .then(|| Duration::from_secs_f64(args.slow_seconds.max(0.0)));
        let flapping = in_cohort(&thing, "flap", args.flap_percent);
        let offline_until = in_cohort(&thing, "offline", args.offline_percent)
            .then(|| Duration::from_secs_f64(args.offline_seconds.max(0.0)));
        let (fleet, stop, poll) = (
            Arc::clone(&fleet),
            args.stop.clone(),
            Duration::from_secs_f64(args.poll.max(0.05)),
        );
        fleet_entry(&fleet, &thing, &agent);
        devices.spawn(async move {
            while !stop.exists() {
                if let Some(delay) = slow {
                    tokio::time::sleep(delay).await;
                }
                let offline = (flapping && started.elapsed().as_millis() % 3000 < 1500)
                    || offline_until.is_some_and(|until| started.elapsed() < until);
                if !offline {
                    match agent.poll_once().await {
                        Ok(Outcome::Idle) => {}
                        Ok(outcome) => record(&fleet, &thing, &outcome, &agent),
                        Err(error) => eprintln!("ota-fleet {thing}: {error}"),
                    }
                }
                tokio::time::sleep(poll).await;
            }
        });
    }
    // Written every round until the devices stop, then once more.
    let writer = {
        let (fleet, state, stop) = (Arc::clone(&fleet), args.state.clone(), args.stop.clone());
        tokio::spawn(async move {
            loop {
                write_state(&fleet, &state);
                if stop.exists() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    while devices.join_next().await.is_some() {}
    let _ = writer.await;
    write_state(&fleet, &args.state);
    Ok(())
}

fn fleet_entry(fleet: &Mutex<Fleet>, thing: &str, agent: &Agent) {
    let mut fleet = fleet
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let running = agent.slots().running().unwrap_or_default();
    fleet.installed.insert(thing.to_owned(), running);
    fleet.history.entry(thing.to_owned()).or_default();
}

fn record(fleet: &Mutex<Fleet>, thing: &str, outcome: &Outcome, agent: &Agent) {
    let line = wiring::line(thing, outcome, agent);
    println!("{line}");
    let (status, version) = match outcome {
        Outcome::Succeeded { version, .. } | Outcome::AlreadyInstalled { version, .. } => {
            ("SUCCEEDED", version.clone())
        }
        Outcome::Failed { .. } => ("FAILED", String::new()),
        Outcome::Rejected { .. } => ("REJECTED", String::new()),
        Outcome::Abandoned { .. } => ("CANCELED", String::new()),
        Outcome::Idle => return,
    };
    let mut fleet = fleet
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    fleet.installed.insert(
        thing.to_owned(),
        agent.slots().running().unwrap_or_default(),
    );
    fleet
        .history
        .entry(thing.to_owned())
        .or_default()
        .push(serde_json::json!({
            "job": line["job"], "status": status, "version": version,
        }));
}

fn write_state(fleet: &Mutex<Fleet>, path: &std::path::Path) {
    let text = {
        let fleet = fleet
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        serde_json::json!({"installed": fleet.installed, "history": fleet.history}).to_string()
    };
    // Atomically: a reader never sees half a file.
    let temporary = path.with_extension("tmp");
    if std::fs::write(&temporary, text).is_ok() {
        let _ = std::fs::rename(&temporary, path);
    }
}
