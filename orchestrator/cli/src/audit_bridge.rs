//! The audit trail's view of the run journal: every journal event that
//! records an action or a decision becomes a who/when/what audit record
//! (R10, S2, S7), appended durably before the side effect it announces.
//!
//! The journal calls [`AuditBridge::committed`] right after each commit;
//! events that are bookkeeping (cursor steps, notification deliveries) are
//! not audited, everything that changes or decides something is.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use deployctl_audit::{Action, AuditLog, AuditOptions, DirectorySink, Entry, Outcome, What, Who};
use deployctl_engine::journal::{JournalEvent, JournalObserver};

/// Where the trail lives under the state directory.
pub fn audit_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("audit")
}

/// The AWS principal this process acts as, once a command whose plan calls
/// AWS has resolved it (`wiring::resolve_aws_caller`). One process runs one
/// command with one set of credentials, so it is set at most once.
static AWS_CALLER_ARN: OnceLock<String> = OnceLock::new();

/// Records the AWS caller ARN for every audit record written from now on.
pub fn set_aws_caller_arn(arn: &str) {
    let _ = AWS_CALLER_ARN.set(arn.to_string());
}

/// `who` with the AWS caller ARN when one was resolved (issue 5: the local
/// operator and the AWS principal, so the trail lines up with CloudTrail).
fn with_aws_caller(who: Who) -> Who {
    match AWS_CALLER_ARN.get() {
        Some(arn) => who.with_aws_caller_arn(arn.as_str()),
        None => who,
    }
}

/// Who an audit record names for `operator`: the local user and, when
/// known, the AWS caller ARN.
pub fn who(operator: &str) -> Who {
    with_aws_caller(Who::local(operator))
}

/// Opens the trail with its sink (S2): `DEPLOYCTL_AUDIT_SINK=s3://bucket/prefix`
/// ships to S3 under Object Lock in COMPLIANCE mode for
/// `DEPLOYCTL_AUDIT_RETENTION_DAYS` (default and minimum 365), with the
/// standard AWS credential chain; `DEPLOYCTL_AUDIT_SHIP_DIR` copies to a
/// mounted share. At most one of them. A bucket without Object Lock is
/// refused here, before anything runs; an unreachable S3 is not (records
/// queue, and `apply` refuses new runs while they are stuck).
pub fn open(state_dir: &Path, operator: &str) -> Result<AuditLog, String> {
    let mut options = AuditOptions::new(Who::local(operator));
    let ship_dir = std::env::var_os("DEPLOYCTL_AUDIT_SHIP_DIR").filter(|d| !d.is_empty());
    let s3 = std::env::var(deployctl_aws_audit::SINK_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty());
    match (s3, ship_dir) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "both {} and DEPLOYCTL_AUDIT_SHIP_DIR are set; choose one audit sink",
                deployctl_aws_audit::SINK_ENV
            ));
        }
        (Some(uri), None) => {
            let location: deployctl_aws_audit::S3Location =
                uri.trim().parse().map_err(|e| format!("{e}"))?;
            let retention = deployctl_aws_audit::Retention::parse(
                std::env::var(deployctl_aws_audit::RETENTION_ENV)
                    .ok()
                    .as_deref(),
            )
            .map_err(|e| format!("{}: {e}", deployctl_aws_audit::RETENTION_ENV))?;
            let sink = deployctl_aws_audit::S3ObjectLockSink::open(location, retention)
                .map_err(|e| format!("{}: {e}", deployctl_aws_audit::SINK_ENV))?;
            options = options.sink(Arc::new(sink));
        }
        (None, Some(dir)) => {
            options = options.sink(Arc::new(DirectorySink::new(PathBuf::from(dir))));
        }
        (None, None) => {}
    }
    AuditLog::open(audit_dir(state_dir), options)
        .map_err(|error| format!("cannot open the audit trail: {error}"))
}

/// Turns journal events into audit records.
pub struct AuditBridge {
    log: Arc<AuditLog>,
    who: Who,
    /// Plan digests by run, learnt from `runCreated`, so every record of a
    /// run can name exactly what was reviewed.
    digests: Mutex<std::collections::BTreeMap<String, String>>,
}

impl AuditBridge {
    pub fn new(log: Arc<AuditLog>, operator: &str) -> AuditBridge {
        AuditBridge {
            log,
            who: Who::local(operator),
            digests: Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    fn entry(&self, event: &JournalEvent) -> Option<Entry> {
        let data = &event.data;
        let text = |key: &str| data.get(key).and_then(|v| v.as_str()).map(str::to_string);
        if event.kind == "runCreated"
            && let Some(digest) = text("planDigest")
        {
            self.digests
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(event.run_id.clone(), digest);
        }
        let (action, outcome) = match event.kind.as_str() {
            "runCreated" => (Action::RunStarted, Outcome::ok()),
            "runPhase" => match text("phase").as_deref() {
                Some("Succeeded") => (Action::RunSucceeded, Outcome::ok()),
                Some("RolledBack") | Some("Killed") => (Action::RunRolledBack, Outcome::ok()),
                Some("Failed") => {
                    let message = text("outcome").unwrap_or_default();
                    if message.contains("ROLLBACK INCOMPLETE") {
                        (Action::RunRollbackIncomplete, Outcome::failed(message))
                    } else {
                        (Action::RunFailed, Outcome::failed(message))
                    }
                }
                _ => return None,
            },
            "rollbackStarted" => (Action::RollbackRequested, Outcome::ok()),
            "stageStarted" => (Action::StageStarted, Outcome::ok()),
            "stageResumed" => (Action::RunResumed, Outcome::ok()),
            "stageSucceeded" => (Action::StageSucceeded, Outcome::ok()),
            "stageFailed" => (
                Action::StageFailed,
                Outcome::failed(text("reason").unwrap_or_default()),
            ),
            "callIntent" | "callDone" | "callFailed" => {
                let action = data
                    .pointer("/action/action")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default();
                let audited = match action {
                    "deploy" => Action::StageDeployed,
                    "setWeight" => Action::StageWeightSet,
                    "promote" => Action::StagePromoted,
                    "startWave" => Action::WaveDispatched,
                    "rollback" => Action::StageRolledBack,
                    _ => Action::TargetChanged,
                };
                match event.kind.as_str() {
                    // The intent is audited with its action; the outcome
                    // as a change with the platform's request IDs (S7).
                    "callIntent" => (audited, Outcome::ok()),
                    "callDone" => (Action::TargetChanged, Outcome::ok()),
                    _ => (
                        Action::TargetChanged,
                        Outcome::failed(text("error").unwrap_or_default()),
                    ),
                }
            }
            "gateResult" => {
                let passed = data
                    .pointer("/result/outcome/status")
                    .and_then(|v| v.as_str())
                    == Some("passed");
                if passed {
                    (Action::GatePassed, Outcome::ok())
                } else {
                    (Action::GateFailed, Outcome::failed(gate_reason(data)))
                }
            }
            "approvalRequested" => (Action::ApprovalRequested, Outcome::ok()),
            "approved" => (Action::ApprovalGranted, Outcome::ok()),
            "rejected" => (
                Action::ApprovalRejected,
                Outcome::denied(text("reason").unwrap_or_default()),
            ),
            "killRequested" => (Action::KillRequested, Outcome::ok()),
            _ => return None,
        };
        let mut what = What::new(action).run(&event.run_id).detail(compact(data));
        if let Some(stage) = &event.stage {
            what = what.stage(stage);
        }
        if let Some(digest) = self
            .digests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&event.run_id)
        {
            what = what.plan_digest(digest);
        }
        // The ARN is looked up when the entry is made, not when the bridge
        // is: commands attach the bridge before they know the plan.
        let mut entry = Entry::new(with_aws_caller(self.who.clone()), what, outcome);
        for id in data
            .get("requestIds")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
        {
            entry = entry.request_id(id);
        }
        Some(entry)
    }
}

fn gate_reason(data: &serde_json::Value) -> String {
    data.pointer("/result/outcome/reason")
        .and_then(|v| v.as_str())
        .unwrap_or("gate failed")
        .to_string()
}

/// Event data as one line, without the bulky measurement lists.
fn compact(data: &serde_json::Value) -> String {
    let mut data = data.clone();
    if let Some(result) = data.get_mut("result").and_then(|r| r.as_object_mut()) {
        result.remove("measurements");
    }
    data.to_string()
}

impl JournalObserver for AuditBridge {
    fn committed(&self, events: &[JournalEvent]) -> Result<(), String> {
        let entries: Vec<Entry> = events.iter().filter_map(|e| self.entry(e)).collect();
        if entries.is_empty() {
            return Ok(());
        }
        self.log
            .append_batch(entries)
            .map(|_| ())
            .map_err(|error| error.to_string())
    }
}
