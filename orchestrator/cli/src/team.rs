//! The team backend at the binary's edge: `--backend s3://BUCKET/PREFIX`
//! (env `DEPLOYCTL_BACKEND`) wires S3 team locks into the engine, and
//! `deployctl lock list | break` reads and frees them.
//!
//! Without a backend nothing here runs and locks are the state
//! directory's own (the sandbox needs no cloud).

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use deployctl_adapter::team::{LockRecord, TeamLocks, TeamRuns};
use deployctl_audit::{Action as AuditAction, Outcome, What};
use deployctl_aws_audit::S3Location;
use deployctl_engine::team::TeamBackend;

use crate::exit;

/// The lease of a team lock, in seconds (env; default 120). Short leases
/// are for tests; a lease must outlast a PC's clock skew many times over.
const LEASE_ENV: &str = "DEPLOYCTL_LOCK_LEASE_SECONDS";

#[derive(Subcommand)]
pub enum LockCommand {
    /// Every team lock in the backend: target, holder, lease.
    List,
    /// Free a team lock whose holder stopped renewing it (its PC died or
    /// was cut off). Refused while the lease is renewed; audited.
    Break {
        /// The target's platform identity, as the refusal named it.
        #[arg(value_name = "TARGET")]
        target: String,
        /// Why the holder is known to be gone (kept in the trail).
        #[arg(long)]
        reason: String,
    },
}

/// The backend flag or variable, checked before anything runs.
pub fn location(given: Option<&str>) -> Result<Option<S3Location>, u8> {
    let Some(given) = given.filter(|text| !text.is_empty()) else {
        return Ok(None);
    };
    S3Location::from_str(given)
        .map(Some)
        .map_err(|error| crate::report::refused(format!("--backend: {error}")))
}

fn lease() -> Result<Duration, String> {
    match std::env::var(LEASE_ENV) {
        Err(_) => Ok(deployctl_aws_team::DEFAULT_LEASE),
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(seconds) if seconds >= 1 => Ok(Duration::from_secs(seconds)),
            _ => Err(format!(
                "{LEASE_ENV}={text}: expected a whole number of seconds, at least 1"
            )),
        },
    }
}

/// The S3 team backend at `location` (its locks, its run records), with
/// the standard AWS chain.
pub async fn backend(
    location: &S3Location,
) -> Result<(Arc<dyn TeamLocks>, Arc<dyn TeamRuns>), String> {
    let lease = lease()?;
    let sdk = deployctl_aws::config::load(None).await;
    let client = deployctl_aws_team::s3_client(&sdk);
    let locks = deployctl_aws_team::S3Locks::new(client.clone(), location.clone(), lease);
    let runs = deployctl_aws_team::S3Runs::new(client, location.clone());
    Ok((Arc::new(locks), Arc::new(runs)))
}

/// The team backend this process was given (`--backend`, or
/// `DEPLOYCTL_BACKEND`), set once by `main` before any command runs: the
/// audit trail, opened in many places, copies itself there.
static CONFIGURED: std::sync::OnceLock<Option<S3Location>> = std::sync::OnceLock::new();

pub fn configure(backend: Option<&S3Location>) {
    let _ = CONFIGURED.set(backend.cloned());
}

pub fn configured() -> Option<&'static S3Location> {
    CONFIGURED.get().and_then(Option::as_ref)
}

/// The standard AWS chain's configuration, loaded once per process from
/// synchronous code on any thread (inside a runtime or not): the audit
/// trail's copy, the MFA store and the identity check of one command all
/// use it.
fn sdk_now() -> Result<aws_config::SdkConfig, String> {
    static SDK: std::sync::OnceLock<aws_config::SdkConfig> = std::sync::OnceLock::new();
    if let Some(sdk) = SDK.get() {
        return Ok(sdk.clone());
    }
    let loaded = deployctl_aws::bridge::Bridge::new()
        .map_err(no_runtime)?
        .run(deployctl_aws::config::load(None))
        .map_err(|stopped| stopped.to_string())?;
    Ok(SDK.get_or_init(|| loaded).clone())
}

fn no_runtime(error: std::io::Error) -> String {
    format!("cannot start the AWS client's runtime: {error}")
}

/// The team backend's trail copies: this PC's, and every PC's to read.
pub fn team_trail(location: &S3Location) -> Result<deployctl_aws_team::S3TeamTrail, String> {
    let client = deployctl_aws_team::s3_client(&sdk_now()?);
    let pc = deployctl_engine::run::host_name();
    deployctl_aws_team::S3TeamTrail::new(client, location.clone(), &pc).map_err(no_runtime)
}

/// The AWS identity this PC acts as (STS GetCallerIdentity, the standard
/// chain), from any thread.
pub fn caller_arn() -> Result<String, String> {
    let sdk = sdk_now()?;
    deployctl_aws::bridge::Bridge::new()
        .map_err(no_runtime)?
        .run(async move { deployctl_aws::identity::caller_arn(&sdk).await })
        .map_err(|stopped| stopped.to_string())?
        .map_err(|error| error.to_string())
}

/// The team's MFA store in the backend at `location` (the standard AWS
/// chain). Synchronous callers (`mfa`, `approve`) reach it from any thread.
pub fn mfa_enrollments(location: &S3Location) -> Result<deployctl_aws_team::S3Enrollments, String> {
    let client = deployctl_aws_team::s3_client(&sdk_now()?);
    deployctl_aws_team::S3Enrollments::new(client, location.clone()).map_err(no_runtime)
}

/// The engine's options with the team backend, if there is one.
pub async fn engine_backend(location: Option<&S3Location>) -> Result<Option<TeamBackend>, String> {
    let Some(location) = location else {
        return Ok(None);
    };
    let (locks, runs) = backend(location).await?;
    Ok(Some(TeamBackend {
        locks,
        runs: Some(runs),
    }))
}

/// `deployctl lock …`.
pub fn command(
    command: &LockCommand,
    backend: Option<&S3Location>,
    state_dir: &Path,
    access_file: &Path,
    json: bool,
) -> u8 {
    let Some(backend) = backend else {
        return crate::report::refused(
            "team locks live in a team backend: pass `--backend s3://BUCKET/PREFIX` (or set DEPLOYCTL_BACKEND)",
        );
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return crate::report::failed(format!("cannot start the async runtime: {error}"));
        }
    };
    runtime.block_on(async {
        let locks = match self::backend(backend).await {
            Ok((locks, _)) => locks,
            Err(message) => return crate::report::refused(message),
        };
        match command {
            LockCommand::List => list(locks.as_ref(), json).await,
            LockCommand::Break { target, reason } => {
                let site = (state_dir, access_file, backend);
                break_lock(locks.as_ref(), target, reason, site).await
            }
        }
    })
}

async fn list(locks: &dyn TeamLocks, json: bool) -> u8 {
    let records = match locks.list().await {
        Ok(records) => records,
        Err(error) => return crate::report::failed(error.to_string()),
    };
    let now = deployctl_time::now_ms();
    if json {
        let rows: Vec<serde_json::Value> = records
            .iter()
            .map(|record| {
                serde_json::json!({
                    "target": record.target,
                    "state": state(record, now),
                    "run": record.owner.run,
                    "pc": record.owner.pc,
                    "operator": record.owner.operator,
                    "environment": record.owner.environment,
                    "leaseUntil": deployctl_time::format_ms(record.lease_until),
                    "broken": record.broken,
                })
            })
            .collect();
        outln!("{}", serde_json::Value::Array(rows));
        return exit::OK;
    }
    if records.is_empty() {
        outln!("no team locks");
    }
    for record in &records {
        outln!(
            "{}  {}  run {}  operator {}  PC {}  lease until {}",
            record.target,
            state(record, now),
            record.owner.run,
            record.owner.operator,
            record.owner.pc,
            deployctl_time::format_ms(record.lease_until)
        );
    }
    exit::OK
}

fn state(record: &LockRecord, now: i64) -> &'static str {
    match (record.released, &record.broken, record.expired(now)) {
        (true, Some(_), _) => "broken",
        (true, None, _) => "free",
        (false, _, true) => "expired",
        (false, _, false) => "held",
    }
}

async fn break_lock(
    locks: &dyn TeamLocks,
    target: &str,
    reason: &str,
    (state_dir, access_file, backend): (&Path, &Path, &S3Location),
) -> u8 {
    if reason.trim().is_empty() {
        return crate::report::refused("--reason: say why the lock's holder is known to be gone");
    }
    let held = match locks.inspect(target).await {
        Ok(Some(record)) if !record.released => record,
        Ok(_) => {
            return crate::report::refused(format!(
                "no team lock is held on {target}; nothing to break"
            ));
        }
        Err(error) => return crate::report::failed(error.to_string()),
    };
    // Only an operator of the environment the lock's run releases to.
    if let Err(code) = crate::access::check_operator(
        deployctl_policy::Action::BreakLock,
        &held.owner.environment,
        access_file,
        state_dir,
        Some(backend),
    ) {
        return code;
    }
    let operator = deployctl_engine::run::initiator();
    let user = crate::access::initiator_user(&operator).to_owned();
    let broken = locks.break_lock(target, &user, reason).await;
    let audit = crate::audited::open(state_dir).ok().map(|(_, audit)| audit);
    let what = What::new(AuditAction::LockBroken)
        .target(target)
        .run(&held.owner.run)
        .detail(format!(
            "held by {}, lease until {}; reason: {reason}",
            held.owner,
            deployctl_time::format_ms(held.lease_until)
        ));
    match broken {
        Ok(before) => {
            if let Some(audit) = &audit {
                crate::audited::record(audit, &user, what, Outcome::ok());
            }
            outln!(
                "broke the team lock on {target}, held by {} (lease ran out at {}); the target is free",
                before.owner,
                deployctl_time::format_ms(before.lease_until)
            );
            exit::OK
        }
        Err(error) => {
            if let Some(audit) = &audit {
                crate::audited::record(audit, &user, what, Outcome::denied(error.to_string()));
            }
            crate::report::refused(error.to_string())
        }
    }
}
