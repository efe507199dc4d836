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
use deployctl_firmware::cipher::{ContentKeys, LocalKeys};
use deployctl_firmware::keys::PublicKey;
use deployctl_ota_agent::{Agent, Health, Identity, Outcome, Slots, https_client};

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
    /// The manifest signing key devices trust (`PUBLIC KEY` PEM).
    #[arg(long)]
    public_key: PathBuf,
    /// A CA the download host's certificate chains to (besides the system's).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// A provisioned key-encryption key for images.
    #[arg(long, conflicts_with = "content_kms")]
    content_key: Option<PathBuf>,
    /// Unwrap content keys with KMS (the device's role may `kms:Decrypt`).
    #[arg(long)]
    content_kms: bool,
    /// The IoT Jobs data-plane endpoint (else the AWS chain's).
    #[arg(long)]
    endpoint: Option<String>,
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
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
    let read = |path: &PathBuf| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    let trusted = PublicKey::from_pem(&String::from_utf8_lossy(&read(&args.public_key)?))
        .map_err(|e| format!("{}: {e}", args.public_key.display()))?;
    let ca = args.ca.as_ref().map(read).transpose()?;
    let http = https_client(ca.as_deref())?;
    let sdk = deployctl_aws::config::load(Some(&args.region)).await;
    let mut jobs = aws_sdk_iotjobsdataplane::config::Builder::from(&sdk);
    if let Some(endpoint) = &args.endpoint {
        jobs = jobs.endpoint_url(endpoint);
    }
    let jobs = aws_sdk_iotjobsdataplane::Client::from_conf(jobs.build());
    let keys: Box<dyn ContentKeys> = match (&args.content_key, args.content_kms) {
        (Some(file), _) => Box::new(
            LocalKeys::from_text(&String::from_utf8_lossy(&read(file)?))
                .map_err(|e| format!("{}: {e}", file.display()))?,
        ),
        (None, true) => Box::new(deployctl_aws_firmware::KmsContentKeys::new(
            deployctl_aws_firmware::kms_client(&sdk),
            String::new(),
        )),
        (None, false) => {
            return Err(
                "name how images are decrypted: --content-key FILE or --content-kms".into(),
            );
        }
    };
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
                    println!("{}", line(&args.thing, &outcome, &agent));
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

fn line(thing: &str, outcome: &Outcome, agent: &Agent) -> String {
    let running = agent.slots().running().unwrap_or_default();
    let (kind, job, detail) = match outcome {
        Outcome::Idle => ("idle", "", String::new()),
        Outcome::Succeeded { job, version } => ("succeeded", job.as_str(), version.clone()),
        Outcome::AlreadyInstalled { job, version } => {
            ("alreadyInstalled", job.as_str(), version.clone())
        }
        Outcome::Failed { job, reason } => ("failed", job.as_str(), reason.clone()),
        Outcome::Rejected { job, reason } => ("rejected", job.as_str(), reason.clone()),
        Outcome::Abandoned { job } => ("abandoned", job.as_str(), String::new()),
    };
    serde_json::json!({"thing": thing, "outcome": kind, "job": job, "detail": detail, "running": running}).to_string()
}
