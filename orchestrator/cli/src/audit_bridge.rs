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
use deployctl_engine::event::Event;
use deployctl_engine::journal::{JournalEvent, JournalObserver, ObserverError};
use deployctl_engine::state::RunPhase;

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
        if let Event::RunCreated { plan_digest, .. } = &event.event {
            self.digests
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(event.run_id.clone(), plan_digest.clone());
        }
        let (action, outcome) = audited(&event.event)?;
        let data = event.event.data();
        let mut what = What::new(action).run(&event.run_id).detail(compact(&data));
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
        let request_ids = match &event.event {
            Event::CallDone { request_ids, .. } | Event::CallFailed { request_ids, .. } => {
                request_ids.as_slice()
            }
            _ => &[],
        };
        for id in request_ids {
            entry = entry.request_id(id);
        }
        Some(entry)
    }
}

/// The audit action and outcome of a journal event; `None` for
/// bookkeeping (cursor steps, pauses, notification deliveries, retried
/// attempts, preflight reads), which acts on nothing and decides nothing.
fn audited(event: &Event) -> Option<(Action, Outcome)> {
    Some(match event {
        Event::RunCreated { .. } => (Action::RunStarted, Outcome::ok()),
        Event::RunPhase { phase, outcome } => match phase {
            RunPhase::Succeeded => (Action::RunSucceeded, Outcome::ok()),
            RunPhase::RolledBack | RunPhase::Killed => (Action::RunRolledBack, Outcome::ok()),
            RunPhase::Failed => (
                Action::RunFailed,
                Outcome::failed(outcome.clone().unwrap_or_default()),
            ),
            RunPhase::Pending
            | RunPhase::Progressing
            | RunPhase::Paused
            | RunPhase::RollingBack => return None,
        },
        Event::RollbackIncomplete { message, .. } => (
            Action::RunRollbackIncomplete,
            Outcome::failed(message.clone()),
        ),
        Event::RollbackStarted { .. } => (Action::RollbackRequested, Outcome::ok()),
        Event::StageStarted { .. } => (Action::StageStarted, Outcome::ok()),
        Event::StageResumed { .. } => (Action::RunResumed, Outcome::ok()),
        Event::StageSucceeded { .. } => (Action::StageSucceeded, Outcome::ok()),
        Event::StageFailed { reason, .. } => (Action::StageFailed, Outcome::failed(reason.clone())),
        // The intent is audited with its action; the outcome as a change
        // with the platform's request IDs (S7).
        Event::CallIntent { action, .. } => (
            match action {
                deployctl_adapter::Action::Deploy { .. } => Action::StageDeployed,
                deployctl_adapter::Action::SetWeight { .. } => Action::StageWeightSet,
                deployctl_adapter::Action::Promote => Action::StagePromoted,
                deployctl_adapter::Action::StartWave { .. } => Action::WaveDispatched,
                deployctl_adapter::Action::Rollback { .. } => Action::StageRolledBack,
                deployctl_adapter::Action::Retire | deployctl_adapter::Action::Halt => {
                    Action::TargetChanged
                }
            },
            Outcome::ok(),
        ),
        Event::CallDone { .. } => (Action::TargetChanged, Outcome::ok()),
        Event::CallFailed { error, .. } => (Action::TargetChanged, Outcome::failed(error.clone())),
        Event::GateResult { result, .. } => {
            if result.passed() {
                (Action::GatePassed, Outcome::ok())
            } else {
                (Action::GateFailed, Outcome::failed(result.reason()))
            }
        }
        Event::ApprovalRequested { .. } => (Action::ApprovalRequested, Outcome::ok()),
        Event::Approved { .. } => (Action::ApprovalGranted, Outcome::ok()),
        Event::Rejected { reason, .. } => {
            (Action::ApprovalRejected, Outcome::denied(reason.clone()))
        }
        Event::KillRequested {} => (Action::KillRequested, Outcome::ok()),
        Event::Preflight { .. }
        | Event::StageSkipped {}
        | Event::Step { .. }
        | Event::PauseStarted { .. }
        | Event::CallRetried { .. }
        | Event::Notified { .. }
        | Event::NotificationFailed { .. }
        | Event::ReleaseApprovalVerdict { .. } => return None,
    })
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
    fn committed(&self, events: &[JournalEvent]) -> Result<(), ObserverError> {
        let entries: Vec<Entry> = events.iter().filter_map(|e| self.entry(e)).collect();
        if entries.is_empty() {
            return Ok(());
        }
        self.log
            .append_batch(entries)
            .map(|_| ())
            .map_err(|error| ObserverError(Box::new(error)))
    }
}
