//! A million devices through four waves, driven by the engine (journal,
//! gates, kill switch) over the fleet target with the in-process fleet
//! (`SimulatedFleet`) behind the same `FleetJobs` trait AWS IoT Jobs is
//! behind. The firmware is real: two signed manifests and images in
//! moto's S3, verified in preflight. Prints one line per figure:
//!
//! ```sh
//! bash tests/moto.sh -- cargo bench -p deployctl-aws-iot --features simulated --bench million
//! ```
//!
//! Devices are played by a thread of this process: it takes the queued
//! executions the fleet would notify devices of and reports IN_PROGRESS,
//! then SUCCEEDED (0.5 % fail, 0.5 % report an anomaly), as fast as it
//! can; the rollout rate is not simulated. Two runs:
//!
//! 1. **Waves**: 1 %, 9 %, 40 %, 50 % of 1,000,000 devices, the `fleet`
//!    gate watching: peak RSS of the process (orchestrator, journal and
//!    the simulated fleet together), device reports absorbed per second,
//!    and per wave the time from its last device reporting (the
//!    threshold crossed) to the next wave's group being made (the
//!    decision) and its job created (dispatched).
//! 2. **Kill**: the same fleet size; once 100,000 executions of wave 3
//!    are in progress, `kill` is requested through the journal as
//!    `deployctl kill` does; the time until every wave job is
//!    force-canceled, with how many executions were in flight.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deployctl_adapter::construct::PlanRelease;
use deployctl_adapter::{HealthProbe, Target};
use deployctl_aws::testing::{MotoAccount, emulator, sdk_config};
use deployctl_aws_iot::simulated::{Happened, Report, SimulatedFleet};
use deployctl_aws_iot::{FleetJobs, FleetTarget};
use deployctl_engine::executor::{Engine, EngineOptions, ProbeError, ProbeFactory, RunContext};
use deployctl_engine::journal::Journal;
use deployctl_engine::progress::ProgressSink;
use deployctl_engine::start::RunRequest;
use deployctl_engine::state::{RunMode, RunPhase};
use deployctl_firmware::keys::{Algorithm, LocalSigner};
use deployctl_firmware::manifest::{FORMAT, Image, Manifest};
use deployctl_plan::model::{Gate, TargetSpec};

const DEVICES: u32 = 1_000_000;
const GROUP: &str = "t4-fleet";
/// Executions of wave 3 in progress when the kill is requested.
const IN_FLIGHT_AT_KILL: u32 = 100_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run());
}

/// Probes as the binary makes them for target-bound gates.
struct TargetProbes;

impl ProbeFactory for TargetProbes {
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

/// The firmware bucket in moto and the clients the target reads it with.
struct Firmware {
    s3: aws_sdk_s3::Client,
    kms: deployctl_aws_firmware::KmsClient,
    dir: PathBuf,
    plan: String,
}

async fn publish(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    signer: &LocalSigner,
    version: &str,
    rollback: bool,
) -> (String, String) {
    let image: Vec<u8> = format!("t4-app {version} image ").repeat(200).into_bytes();
    let manifest = Manifest {
        format: FORMAT.into(),
        firmware: "t4-app".into(),
        version: version.into(),
        hardware: vec!["t4-rev-a".into()],
        image: Image {
            sha256: deployctl_firmware::sha256_hex(&image),
            size: image.len() as u64,
            encryption: None,
        },
        min_version: None,
        rollback,
        signed_at: "2026-12-03T00:00:00.000Z".into(),
    };
    let envelope = deployctl_firmware::envelope::sign(&manifest, signer)
        .await
        .expect("signed");
    let location = format!("s3://{bucket}/{version}");
    deployctl_aws_firmware::bucket::publish(
        s3,
        &location,
        "t4-app.bin",
        &image,
        envelope.as_bytes(),
        None,
    )
    .await
    .expect("published");
    (format!("{location}/t4-app.bin"), manifest.image.sha256)
}

async fn firmware(moto: &str) -> Firmware {
    let account = MotoAccount::fresh();
    let sdk = sdk_config(moto).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .interceptor(account.clone())
            .build(),
    );
    let kms = deployctl_aws_firmware::kms_client(&sdk);
    let bucket = format!("fw-million-{}", account.0);
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("CreateBucket");
    s3.put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("PutBucketVersioning");
    let dir = std::env::temp_dir().join(format!("deployctl-million-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a bench directory");
    let (signer, _) = LocalSigner::generate(Algorithm::Ed25519).expect("a key");
    std::fs::write(dir.join("firmware.pub"), signer.public_key().to_pem()).expect("the key");
    let (release, release_sha) = publish(&s3, &bucket, &signer, "4.2.0", false).await;
    let (stable, stable_sha) = publish(&s3, &bucket, &signer, "4.1.3", true).await;
    let plan = format!(
        "apiVersion: deployctl.io/v1
kind: Plan
metadata: {{name: fleet-million, environment: bench, owner: release-engineering}}
targets:
  thermostats:
    fleet:
      thingGroups: [{GROUP}]
      region: us-east-1
      downloadRole: arn:aws:iam::123456789012:role/firmware-download
artifacts:
  thermostats:
    version: \"4.2.0\"
    firmware:
      location: {release}
      sha256: {release_sha}
      signature: {{publicKey: firmware.pub, algorithm: ed25519}}
stages:
  - name: ota
    target: thermostats
    timeout: 1h
    waves:
      steps: [{{percent: 1}}, {{percent: 9}}, {{percent: 40}}, {{percent: 50}}]
      successThreshold: 98
      abort: {{failureThreshold: 5, minDevices: 25}}
      deviceTimeout: 2h
      maxDevicesPerMinute: 1000
      gates: [device-health]
gates:
  device-health:
    fleet: {{minSuccessRate: 98, maxAnomalyRate: 1.5}}
    interval: 1s
    inconclusiveLimit: 30
rollback:
  on: [gateFailed, error, timeout, kill]
  scope: stage
  stable:
    thermostats:
      version: \"4.1.3\"
      firmware:
        location: {stable}
        sha256: {stable_sha}
        signature: {{publicKey: firmware.pub, algorithm: ed25519}}
"
    );
    Firmware { s3, kms, dir, plan }
}

/// The devices: a thread answering queued executions until `stop`. With
/// `hold_after`, the devices of the job whose name ends so only start
/// (IN_PROGRESS) and never finish, up to that many, then go quiet.
fn devices(
    fleet: Arc<SimulatedFleet>,
    stop: Arc<AtomicBool>,
    busy_nanos: Arc<AtomicU64>,
    hold: Option<(&'static str, u32)>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut held = 0;
        while !stop.load(Ordering::Relaxed) {
            let batch = fleet.notified(4096);
            let batch: Vec<_> = batch
                .into_iter()
                .filter(|(job, _)| !matches!(hold, Some((suffix, max)) if job.ends_with(suffix) && held >= max))
                .collect();
            if batch.is_empty() {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let started = Instant::now();
            for (job, thing) in &batch {
                let _ = fleet.report(job, thing, Report::InProgress);
                if let Some((suffix, _)) = hold
                    && job.ends_with(suffix)
                {
                    held += 1;
                    continue;
                }
                // Deterministic outcomes from the device number.
                let n: u32 = thing[thing.len() - 7..].parse().unwrap_or(0);
                let outcome = match n.wrapping_mul(2_654_435_761) % 1000 {
                    0..=4 => Report::Failed,
                    5..=9 => Report::Succeeded { anomaly: true },
                    _ => Report::Succeeded { anomaly: false },
                };
                let _ = fleet.report(job, thing, outcome);
            }
            busy_nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
    })
}

/// The process's peak and current resident set, in MB (Linux).
fn rss_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

struct Run {
    engine: Engine,
    context: RunContext,
    fleet: Arc<SimulatedFleet>,
    target: FleetTarget,
}

async fn prepare(firmware: &Firmware, label: &str) -> Run {
    let path = firmware.dir.join(format!("{label}.yaml"));
    std::fs::write(&path, &firmware.plan).expect("the plan");
    let plan = deployctl_plan::load(&path.display().to_string(), firmware.plan.as_bytes())
        .unwrap_or_else(|rejected| panic!("{}", rejected.render(false)))
        .plan;
    let plan = Arc::new(plan);
    let fleet = Arc::new(SimulatedFleet::new(GROUP, "t4-", DEVICES, "t4-rev-a"));
    let model = &plan.targets["thermostats"];
    let TargetSpec::Fleet(spec) = &model.spec else {
        panic!("the plan's target is a fleet");
    };
    let target = FleetTarget::with_jobs(
        "thermostats",
        spec,
        &PlanRelease::of(model, &firmware.dir),
        "us-east-1",
        fleet.clone() as Arc<dyn FleetJobs>,
        firmware.s3.clone(),
        firmware.kms.clone(),
    )
    .expect("the target builds");
    let journal_dir = firmware.dir.join(format!("{label}-state"));
    let journal = Arc::new(Journal::open(&journal_dir).expect("a journal"));
    let engine = Engine::new(journal, EngineOptions::default(), ProgressSink::default());
    let context = RunContext {
        run_id: deployctl_engine::run::new_run_id(),
        plan,
        targets: BTreeMap::from([(
            "thermostats".to_owned(),
            Arc::new(target.clone()) as Arc<dyn Target>,
        )]),
        probes: Arc::new(TargetProbes),
        notifications: Vec::new(),
    };
    engine
        .start(
            &context,
            &RunRequest {
                plan_file: "million.yaml",
                plan_source: &firmware.plan,
                initiator: "bench@localhost",
                mode: RunMode::Apply,
            },
        )
        .await
        .expect("the run starts");
    Run {
        engine,
        context,
        fleet,
        target,
    }
}

fn mark_of(fleet: &SimulatedFleet, suffix: &str, what: fn(&Happened) -> bool) -> Option<Instant> {
    fleet
        .timeline()
        .into_iter()
        .find(|m| m.name.ends_with(suffix) && what(&m.what))
        .map(|m| m.at)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn waves(firmware: &Firmware) {
    let (_, before) = rss_mb();
    let run = prepare(firmware, "waves").await;
    let stop = Arc::new(AtomicBool::new(false));
    let busy = Arc::new(AtomicU64::new(0));
    let driver = devices(run.fleet.clone(), stop.clone(), busy.clone(), None);
    let started = Instant::now();
    let outcome = run.engine.execute(&run.context).await.expect("the run");
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    driver.join().expect("the devices");
    assert_eq!(outcome.phase, RunPhase::Succeeded, "{}", outcome.message);
    let (peak, _) = rss_mb();
    let (accepted, refused) = run.fleet.reports();
    let busy = Duration::from_nanos(busy.load(Ordering::Relaxed));
    println!(
        "1,000,000 devices, 4 waves: run Succeeded in {:.1} s; process peak RSS {peak:.0} MB (VmHWM; {before:.0} MB before the run)",
        elapsed.as_secs_f64()
    );
    println!(
        "status ingest: {accepted} device reports accepted ({refused} refused) in {:.2} s of device time = {:.0} reports/s while the engine polled",
        busy.as_secs_f64(),
        accepted as f64 / busy.as_secs_f64()
    );
    for wave in 1..4 {
        let (this, next) = (format!("-w{wave}"), format!("-w{}", wave + 1));
        let crossed = mark_of(&run.fleet, &this, |h| *h == Happened::JobCompleted);
        let decided = mark_of(&run.fleet, &next, |h| *h == Happened::GroupMade);
        let dispatched = mark_of(&run.fleet, &next, |h| matches!(h, Happened::JobMade { .. }));
        if let (Some(crossed), Some(decided), Some(dispatched)) = (crossed, decided, dispatched) {
            println!(
                "wave {wave} → {}: last device reported → next wave decided {:.0} ms, dispatched {:.0} ms (engine poll 1 s)",
                wave + 1,
                ms(decided - crossed),
                ms(dispatched - crossed)
            );
        }
    }
    let mut samples = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let observed = run.target.observe().await.expect("observe");
        samples.push(ms(started.elapsed()));
        assert_eq!(observed.waves.expect("waves").dispatched, DEVICES);
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "observe (1,000,000 devices in 4 waves): median {:.2} ms, max {:.2} ms over 10",
        samples[5], samples[9]
    );
}

async fn kill(firmware: &Firmware) {
    let run = prepare(firmware, "kill").await;
    let stop = Arc::new(AtomicBool::new(false));
    let busy = Arc::new(AtomicU64::new(0));
    let driver = devices(
        run.fleet.clone(),
        stop.clone(),
        busy,
        Some(("-w3", IN_FLIGHT_AT_KILL)),
    );
    let engine = &run.engine;
    let context = &run.context;
    let execute = engine.execute(context);
    tokio::pin!(execute);
    // The kill is asked for once wave 3 holds enough devices mid-install;
    // a run that ends first is a broken scenario, reported, never waited on.
    let mut asked = None;
    let outcome = loop {
        tokio::select! {
            outcome = &mut execute => break outcome,
            () = tokio::time::sleep(Duration::from_millis(20)), if asked.is_none() => {
                let wave3 = run
                    .fleet
                    .timeline()
                    .into_iter()
                    .find(|m| m.name.ends_with("-w3") && matches!(m.what, Happened::JobMade { .. }))
                    .map(|m| m.name);
                if let Some(job) = wave3
                    && let Some(counts) = run.fleet.job_counts(&job).await.expect("counts")
                    && counts.in_progress >= IN_FLIGHT_AT_KILL
                {
                    asked = Some(Instant::now());
                    engine
                        .journal()
                        .request_kill(&context.run_id)
                        .expect("the kill request");
                }
            }
        }
    };
    let Some(asked) = asked else {
        let outcome = outcome.expect("the run");
        panic!(
            "the run ended {:?} ({}) before {IN_FLIGHT_AT_KILL} wave-3 executions were in progress; timeline: {:?}",
            outcome.phase,
            outcome.message,
            run.fleet
                .timeline()
                .iter()
                .map(|m| (&m.name, &m.what))
                .collect::<Vec<_>>()
        );
    };
    let outcome = outcome.expect("the run");
    stop.store(true, Ordering::Relaxed);
    driver.join().expect("the devices");
    assert_eq!(outcome.phase, RunPhase::Killed, "{}", outcome.message);
    let timeline = run.fleet.timeline();
    let canceled: Vec<_> = timeline
        .iter()
        .filter_map(|m| match m.what {
            Happened::JobCanceled {
                queued,
                in_progress,
            } if m.at >= asked => Some((m.at, queued, in_progress)),
            _ => None,
        })
        .collect();
    let last = canceled
        .iter()
        .map(|(at, _, _)| *at)
        .max()
        .expect("jobs canceled");
    let queued: u32 = canceled.iter().map(|(_, n, _)| n).sum();
    let in_progress: u32 = canceled.iter().map(|(_, _, n)| n).sum();
    println!(
        "kill switch: {in_progress} executions in progress and {queued} queued; every wave job force-canceled {:.0} ms after the kill request (kill poll 250 ms)",
        ms(last - asked)
    );
}

async fn run() {
    let Some(moto) = emulator("DEPLOYCTL_TEST_MOTO_URL", "million bench") else {
        return;
    };
    let firmware = firmware(&moto).await;
    waves(&firmware).await;
    kill(&firmware).await;
    let _ = std::fs::remove_dir_all(Path::new(&firmware.dir));
}
