//! `ota-agent`: runs the reference agent for one device until stopped.
//!
//! ```text
//! ota-agent --thing t4-0001 --firmware t4-app --hardware t4-rev-a \
//!   --state /var/lib/ota --factory-version 4.1.3 --public-key firmware.pub \
//!   --content-kms [--ca ca.pem] [--endpoint https://…] [--once]
//! ```
//!
//! Credentials are the device's own (the standard AWS chain: the IoT
//! credentials provider's role credentials on a real device). Each poll's
//! outcome is printed as one JSON line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use deployctl_ota_agent::{Agent, Health, Identity, Outcome, Slots, wiring};

#[derive(Parser)]
#[command(version, about = "deployctl's reference OTA device agent")]
struct Args {
    /// The device's thing name.
    #[arg(long)]
    thing: String,
    /// The firmware line it runs.
    #[arg(long)]
    firmware: String,
    /// Its hardware model (the thing type).
    #[arg(long)]
    hardware: String,
    /// Where the A/B slots live.
    #[arg(long)]
    state: PathBuf,
    /// The version in slot A on first boot.
    #[arg(long)]
    factory_version: String,
    #[command(flatten)]
    device: wiring::DeviceArgs,
    /// Time between polls.
    #[arg(long, default_value = "1", value_name = "SECONDS")]
    poll: f64,
    /// Poll once and exit.
    #[arg(long)]
    once: bool,
    /// Simulate a self-test failure after booting this version (repeatable).
    #[arg(long, value_name = "VERSION")]
    fail_self_test: Vec<String>,
    /// Simulate crashes after booting this version (an anomaly; repeatable).
    #[arg(long, value_name = "VERSION")]
    crash_on: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ota-agent: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ota-agent: {error}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let wiring::Connected {
        trusted,
        http,
        jobs,
        sdk,
    } = args.device.connect().await?;
    let keys = args.device.content_keys(&sdk)?;
    let slots = Slots::open(&args.state, &args.factory_version)
        .map_err(|e| format!("{}: {e}", args.state.display()))?;
    let failing = args.fail_self_test.clone();
    let crashing = args.crash_on.clone();
    let agent = Agent::new(
        Identity {
            thing: args.thing.clone(),
            firmware: args.firmware.clone(),
            hardware: args.hardware.clone(),
        },
        jobs,
        http,
        trusted,
        keys,
        slots,
        Box::new(move |version| {
            if failing.iter().any(|v| v == version) {
                Err("the watchdog fired during the boot self-test".into())
            } else {
                Ok(())
            }
        }),
        Box::new(move |version| {
            if crashing.iter().any(|v| v == version) {
                Health {
                    crashes: 3,
                    resets: 2,
                    score: 35,
                }
            } else {
                Health {
                    crashes: 0,
                    resets: 0,
                    score: 97,
                }
            }
        }),
    );
    loop {
        match agent.poll_once().await {
            Ok(outcome) => {
                if outcome != Outcome::Idle {
                    println!("{}", wiring::line(&args.thing, &outcome, &agent));
                }
            }
            Err(error) => eprintln!("ota-agent {}: {error}", args.thing),
        }
        if args.once {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs_f64(args.poll.max(0.05))).await;
    }
}
