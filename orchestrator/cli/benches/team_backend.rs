//! Team backend figures (issue 11):
//! `bash tests/moto.sh -- cargo bench -p deployctl --bench team_backend`.
//!
//! On moto's S3 through the real SDK, straight to moto and through the
//! fault proxy adding 30–60 ms to every call (an S3 region away):
//!
//! - team locks: `acquire` of a run's two targets (free keys, so the
//!   create path), `renew` and `release`, per call;
//! - the team's MFA store: one check of a code (a read and a conditional
//!   write of the person's record);
//! - the engine: a 20-step canary on a simulated target (no latency), run
//!   without a backend and with one, timed from `execute`'s start to the
//!   stage's last journal commit: the backend's writes are off the
//!   critical path (the run sharer writes every half second in the
//!   background), so the added time per commit should be ~0. The locks
//!   taken before the run, and given back after it, are timed apart.
//!
//! Skipped (with a message) without `DEPLOYCTL_TEST_MOTO_URL` and
//! `DEPLOYCTL_TEST_FAULTS_URL`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use deployctl_adapter::Target;
use deployctl_adapter::team::{LockOwner, TeamLocks};
use deployctl_aws::s3_location::S3Location;
use deployctl_aws::testing::{MotoAccount, sdk_config};
use deployctl_aws_team::{S3Enrollments, S3Locks, S3Runs};
use deployctl_engine::executor::{Engine, EngineOptions, ProbeError, ProbeFactory, RunContext};
use deployctl_engine::journal::Journal;
use deployctl_engine::progress::ProgressSink;
use deployctl_engine::start::RunRequest;
use deployctl_engine::state::RunMode;
use deployctl_engine::team::TeamBackend;
use deployctl_policy::mfa::{KeyError, KeyProvider, MasterKey, MfaPolicy, MfaStore};
use deployctl_sim::{SimConfig, SimTarget};

const ROUNDS: usize = 30;

fn main() {
    let (Ok(moto), Ok(proxy)) = (
        std::env::var("DEPLOYCTL_TEST_MOTO_URL"),
        std::env::var("DEPLOYCTL_TEST_FAULTS_URL"),
    ) else {
        eprintln!(
            "skipped: run through `bash tests/moto.sh -- cargo bench -p deployctl --bench team_backend`"
        );
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        println!("team backend on moto S3 ({ROUNDS} rounds each; p50 / p95 / max in ms)");
        for (label, latency) in [("moto direct", false), ("+30-60 ms per call", true)] {
            let backend = Backend::new(&moto, &proxy, latency).await;
            backend.locks(label).await;
            backend.mfa(label).await;
            backend.engine(label).await;
        }
    });
}

struct Backend {
    url: String,
    account: MotoAccount,
    location: S3Location,
}

impl Backend {
    async fn new(moto: &str, proxy: &str, latency: bool) -> Backend {
        let account = MotoAccount::fresh();
        let bucket = format!("bench-team-{}", account.0);
        let url = if latency { proxy } else { moto }.to_owned();
        let backend = Backend {
            url,
            location: format!("s3://{bucket}/deployctl")
                .parse()
                .expect("a location"),
            account,
        };
        backend
            .client()
            .await
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("CreateBucket");
        if latency {
            let body = format!(
                r#"{{"account": "{}", "rate": 1.0, "seed": 1, "kinds": ["latency"], "latencyMs": [30, 60]}}"#,
                backend.account.0
            );
            post(proxy, "/_emulator/faults", &body);
        }
        backend
    }

    async fn client(&self) -> aws_sdk_s3::Client {
        let sdk = sdk_config(&self.url).await;
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .interceptor(self.account.clone())
                .build(),
        )
    }

    async fn locks(&self, label: &str) {
        let locks = S3Locks::new(
            self.client().await,
            self.location.clone(),
            Duration::from_secs(120),
        );
        let (mut acquire, mut renew, mut release) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let keys = vec![format!("bench:{round}:api"), format!("bench:{round}:web")];
            let owner = owner(&format!("run-{round}"));
            acquire.push(timed(locks.acquire(&keys, &owner)).await);
            renew.push(timed(locks.renew(&keys, &owner)).await);
            release.push(timed(locks.release(&keys, &owner)).await);
        }
        println!(
            "  {label:<20} lock acquire (2 keys) {}",
            summary(&mut acquire)
        );
        println!(
            "  {label:<20} lock renew   (2 keys) {}",
            summary(&mut renew)
        );
        println!(
            "  {label:<20} lock release (2 keys) {}",
            summary(&mut release)
        );
    }

    async fn mfa(&self, label: &str) {
        let enrollments =
            S3Enrollments::new(self.client().await, self.location.clone()).expect("the bridge");
        let store = tokio::task::spawn_blocking(move || {
            let store =
                MfaStore::with_enrollments(Box::new(enrollments), &Key, MfaPolicy::default())
                    .expect("the team's MFA store");
            let start = 1_800_000_000;
            let enrollment = store.enroll("alice", at(start)).expect("enrolled");
            let phone = phone(&enrollment.secret_base32);
            store
                .confirm("alice", &phone.generate(start).to_string(), at(start))
                .expect("confirmed");
            let mut checks = Vec::new();
            for round in 1..=ROUNDS as u64 {
                let now = start + 30 * round;
                let code = phone.generate(now).to_string();
                let began = Instant::now();
                store.verify("alice", &code, at(now)).expect("accepted");
                checks.push(began.elapsed());
            }
            checks
        })
        .await
        .expect("the MFA rounds");
        let mut checks = store;
        println!(
            "  {label:<20} MFA check of a code   {}",
            summary(&mut checks)
        );
    }

    async fn engine(&self, label: &str) {
        let none = drive(None).await;
        let client = self.client().await;
        let team = TeamBackend {
            locks: Arc::new(S3Locks::new(
                client.clone(),
                self.location.clone(),
                Duration::from_secs(120),
            )),
            runs: Some(Arc::new(S3Runs::new(client, self.location.clone()))),
        };
        let with = drive(Some(team)).await;
        let per_commit = |d: &Driven| d.between_commits.as_secs_f64() * 1e3 / d.commits as f64;
        println!(
            "  {label:<20} engine, no backend:   {} commits in {:.1} ms ({:.3} ms/commit)",
            none.commits,
            none.between_commits.as_secs_f64() * 1e3,
            per_commit(&none)
        );
        println!(
            "  {label:<20} engine, with backend: {} commits in {:.1} ms ({:.3} ms/commit, {:+.3} ms/commit added); locks + first record before the run {:.1} ms, release + last record after it {:.1} ms",
            with.commits,
            with.between_commits.as_secs_f64() * 1e3,
            per_commit(&with),
            per_commit(&with) - per_commit(&none),
            with.before.as_secs_f64() * 1e3,
            with.after.as_secs_f64() * 1e3,
        );
    }
}

/// One engine run's timings.
struct Driven {
    commits: usize,
    /// From `execute`'s start to the stage's last journal commit.
    between_commits: Duration,
    /// `start`: preflight, team locks, the first record.
    before: Duration,
    /// From the stage's last commit to `execute` returning (locks given
    /// back, the last record written).
    after: Duration,
}

const PLAN: &str = "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {name: bench-team, environment: bench}\n\
targets:\n  api: {sim: {stableVersion: \"1.0\"}}\nartifacts:\n  api: {version: \"2.0\"}\n\
stages:\n  - name: api\n    target: api\n    canary:\n      steps: [{setWeight: 5}, {setWeight: 10}, {setWeight: 15}, {setWeight: 20}, {setWeight: 25}, {setWeight: 30}, {setWeight: 35}, {setWeight: 40}, {setWeight: 45}, {setWeight: 50}, {setWeight: 55}, {setWeight: 60}, {setWeight: 65}, {setWeight: 70}, {setWeight: 75}, {setWeight: 80}, {setWeight: 85}, {setWeight: 90}, {setWeight: 95}, {setWeight: 100}]\n";

struct NoProbes;

impl ProbeFactory for NoProbes {
    fn probe(
        &self,
        _gate: &deployctl_plan::model::Gate,
        _target: &Arc<dyn Target>,
    ) -> Result<Box<dyn deployctl_adapter::HealthProbe>, ProbeError> {
        unreachable!("the bench plan has no gates")
    }
}

async fn drive(team: Option<TeamBackend>) -> Driven {
    let plan = deployctl_plan::load("bench.yaml", PLAN.as_bytes())
        .unwrap_or_else(|rejected| panic!("{}", rejected.render(false)))
        .plan;
    let dir = std::env::temp_dir().join(format!(
        "deployctl-bench-team-{}-{}",
        std::process::id(),
        deployctl_engine::run::new_run_id()
    ));
    let journal = Arc::new(Journal::open(&dir).expect("a journal"));
    let targets: BTreeMap<String, Arc<dyn Target>> = plan
        .targets
        .values()
        .map(|target| {
            let sim = SimTarget::in_memory(SimConfig::for_plan_target(target));
            (target.name.clone(), Arc::new(sim) as Arc<dyn Target>)
        })
        .collect();
    let run_id = deployctl_engine::run::new_run_id();
    let context = RunContext {
        run_id: run_id.clone(),
        plan: Arc::new(plan),
        targets,
        probes: Arc::new(NoProbes),
        notifications: Vec::new(),
    };
    let engine = Engine::new(
        journal.clone(),
        EngineOptions {
            team,
            ..EngineOptions::default()
        },
        ProgressSink::default(),
    );
    let request = RunRequest {
        plan_file: "bench.yaml",
        plan_source: PLAN,
        initiator: "bench@host",
        mode: RunMode::Apply,
    };
    let began = Instant::now();
    engine.start(&context, &request).await.expect("started");
    let before = began.elapsed();
    let driven_from = now_ms();
    let outcome = engine.execute(&context).await.expect("driven");
    let ended = SystemTime::now();
    assert!(outcome.phase.is_terminal(), "{}", outcome.message);
    // The drive's commits: from `execute`'s start to the stage's last.
    let events: Vec<_> = journal
        .events(&run_id)
        .expect("events")
        .into_iter()
        .filter(|e| e.at >= driven_from)
        .collect();
    let last = events
        .iter()
        .filter(|e| e.stage.is_some())
        .map(|e| e.at)
        .max()
        .unwrap_or(driven_from);
    let ended_ms = ms_of(ended);
    let _ = std::fs::remove_dir_all(&dir);
    Driven {
        commits: events.len(),
        between_commits: Duration::from_millis(u64::try_from(last - driven_from).unwrap_or(0)),
        before,
        after: Duration::from_millis(u64::try_from(ended_ms - last).unwrap_or(0)),
    }
}

fn ms_of(at: SystemTime) -> i64 {
    i64::try_from(
        at.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(i64::MAX)
}

fn now_ms() -> i64 {
    ms_of(SystemTime::now())
}

fn owner(run: &str) -> LockOwner {
    LockOwner {
        run: run.to_owned(),
        pc: "bench-pc".to_owned(),
        operator: "alice".to_owned(),
        environment: "bench".to_owned(),
    }
}

async fn timed<T, E: std::fmt::Debug>(
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Duration {
    let began = Instant::now();
    call.await.expect("the backend answered");
    began.elapsed()
}

fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    format!(
        "{:7.1} / {:7.1} / {:7.1}",
        ms(at(0.5)),
        ms(at(0.95)),
        ms(samples[samples.len() - 1])
    )
}

struct Key;

impl KeyProvider for Key {
    fn describe(&self) -> String {
        "bench key".into()
    }

    fn load_key(&self) -> Result<MasterKey, KeyError> {
        MasterKey::from_bytes(&[3; 32], self.describe())
    }
}

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

fn phone(secret_base32: &str) -> totp_rs::Totp {
    let secret = totp_rs::Secret::try_from_base32(secret_base32).expect("base32");
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_secret(secret.as_bytes().to_vec())
        .build()
        .expect("a TOTP generator")
}

/// A plain HTTP/1.1 POST to the proxy's control endpoint.
fn post(base: &str, path: &str, body: &str) {
    use std::io::{Read, Write};
    let address = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(address).expect("the proxy");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("request sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("an answer");
    assert!(
        response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
        "{response}"
    );
}
