//! `deployctl-trail`: the run journal's view in the audit trail (R10, S2,
//! S7). Start at [`Trail`], which a command opens once: the audit log
//! and the [`Caller`] (the AWS principal, once a plan that calls AWS has
//! resolved it), from which it makes the journal's observer
//! ([`AuditBridge`]: every committed journal event that acts or decides
//! becomes a who/when/what record, before the side effect it announces)
//! and the records commands write themselves ([`Trail::record`]).
//!
//! Why a crate of its own: the binary wires adapters and maps errors to
//! exit codes; what the trail says about a run is product behaviour with
//! its own tests, and the controller and the CLI share it. It knows the
//! engine's typed events and the audit crate, and no adapter: which sink
//! the log ships to is the binary's choice.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use deployctl_audit::{Action, AuditLog, Entry, Outcome, What, Who};
use deployctl_engine::event::Event;
use deployctl_engine::journal::{JournalEvent, JournalObserver, ObserverError};
use deployctl_engine::state::RunPhase;

/// Where the trail lives under the state directory.
pub fn audit_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("audit")
}

/// The AWS principal a command acts as, once known. One command runs
/// with one set of credentials, so it is set at most once; records
/// written before it is known name the local operator only. Shared by
/// handle (cheap to clone), never through a process global.
#[derive(Debug, Clone, Default)]
pub struct Caller(Arc<OnceLock<String>>);

impl Caller {
    /// Records the AWS caller ARN for every record written from now on.
    pub fn set(&self, arn: &str) {
        let _ = self.0.set(arn.to_string());
    }

    pub fn arn(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }

    /// `who` with the AWS caller ARN when one was resolved (the local
    /// operator and the AWS principal, so the trail lines up with
    /// CloudTrail).
    pub fn named(&self, who: Who) -> Who {
        match self.arn() {
            Some(arn) => who.with_aws_caller_arn(arn),
            None => who,
        }
    }
}

/// A command's audit trail: the log and who acts.
#[derive(Clone)]
pub struct Trail {
    pub log: Arc<AuditLog>,
    pub caller: Caller,
}

impl Trail {
    pub fn new(log: Arc<AuditLog>) -> Trail {
        Trail {
            log,
            caller: Caller::default(),
        }
    }

    /// Who a record names for `operator`: the local user and, when known,
    /// the AWS caller ARN.
    pub fn who(&self, operator: &str) -> Who {
        self.caller.named(Who::local(operator))
    }

    /// The journal observer that audits `operator`'s runs.
    pub fn bridge(&self, operator: &str) -> AuditBridge {
        AuditBridge::new(self.log.clone(), operator, self.caller.clone())
    }

    /// Appends one record a command writes itself (a refusal, a denied
    /// approval); a record that cannot be written is reported, never
    /// silently dropped.
    pub fn record(
        &self,
        operator: &str,
        what: What,
        outcome: Outcome,
    ) -> Result<(), deployctl_audit::AuditError> {
        self.log
            .append(Entry::new(self.who(operator), what, outcome))
            .map(|_| ())
    }

    /// [`Trail::record`] for records a command writes about what it has
    /// already done or refused: one that cannot be written is a warning,
    /// since the decision it describes stands.
    pub fn record_or_warn(&self, operator: &str, what: What, outcome: Outcome) {
        if let Err(error) = self.record(operator, what, outcome) {
            eprintln!("warning: could not audit this: {error}");
        }
    }
}

/// Seals what a command did with a signed checkpoint when it ends, on
/// every return path (end of each run, R10).
pub struct Seal(pub Trail);

impl Drop for Seal {
    fn drop(&mut self) {
        if let Err(error) = self.0.log.checkpoint() {
            eprintln!("warning: could not write the audit checkpoint: {error}");
        }
        // S2: the run's last records and its checkpoint leave the machine
        // before the command ends, not with the next command. The action is
        // already done here, so waiting costs no reaction time; records
        // that cannot be shipped stay queued durably for the next command.
        if self.0.log.ships()
            && let Err(error) = self.0.log.ship_now()
        {
            eprintln!(
                "warning: the audit trail's last records have not left this machine yet ({error}); they stay queued and ship with the next command"
            );
        }
    }
}

/// Audits a run refused before anything moved: no run was recorded, so
/// the journal's own events cannot carry it to the trail.
pub fn audit_refusal(
    trail: &Trail,
    operator: &str,
    context: &deployctl_engine::executor::RunContext,
    refusal: &deployctl_engine::start::Refusal,
) {
    let what = What::new(Action::RunRefused)
        .run(&context.run_id)
        .plan_digest(&context.plan.digest)
        .detail(format!(
            "plan {} in {}",
            context.plan.metadata.name, context.plan.metadata.environment
        ));
    trail.record_or_warn(operator, what, Outcome::denied(refusal.to_string()));
}

/// Turns journal events into audit records.
pub struct AuditBridge {
    log: Arc<AuditLog>,
    who: Who,
    caller: Caller,
    /// Plan digests and initiators by run, learnt from `runCreated`, so
    /// every record of a run names exactly what was reviewed and who
    /// started it.
    digests: Mutex<std::collections::BTreeMap<String, (String, String)>>,
}

impl AuditBridge {
    pub fn new(log: Arc<AuditLog>, operator: &str, caller: Caller) -> AuditBridge {
        AuditBridge {
            log,
            who: Who::local(operator),
            caller,
            digests: Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    fn entry(&self, event: &JournalEvent) -> Option<Entry> {
        if let Event::RunCreated {
            plan_digest,
            initiator,
            ..
        } = &event.event
        {
            self.digests
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(
                    event.run_id.clone(),
                    (plan_digest.clone(), initiator.clone()),
                );
        }
        let (action, outcome) = audited(&event.event)?;
        let data = event.event.data();
        let mut what = What::new(action).run(&event.run_id).detail(compact(&data));
        if let Some(stage) = &event.stage {
            what = what.stage(stage);
        }
        if let Some((digest, initiator)) = self
            .digests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&event.run_id)
        {
            what = what.plan_digest(digest).initiator(initiator);
        }
        // The person who decided, not the login the command ran as.
        if let Event::Approved { approver, .. } | Event::Rejected { approver, .. } = &event.event {
            what = what.approver(approver);
        }
        // The ARN is looked up when the entry is made, not when the bridge
        // is: commands attach the bridge before they know the plan.
        let mut entry = Entry::new(self.caller.named(self.who.clone()), what, outcome);
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
            RunPhase::RolledBack | RunPhase::Killed | RunPhase::Aborted => {
                (Action::RunRolledBack, Outcome::ok())
            }
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
                deployctl_adapter::Action::Retire
                | deployctl_adapter::Action::Halt
                | deployctl_adapter::Action::SetHeaderRoute { .. } => Action::TargetChanged,
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
        Event::TakenOver { .. } => (Action::RunTakenOver, Outcome::ok()),
        Event::Preflight { verified, .. } if !verified.is_empty() => {
            (Action::ArtifactVerified, Outcome::ok())
        }
        Event::Preflight { .. }
        | Event::StageSkipped {}
        | Event::Step { .. }
        | Event::PauseStarted { .. }
        | Event::CallRetried { .. }
        | Event::Notified { .. }
        | Event::NotificationFailed { .. }
        | Event::ReleaseApprovalVerdict { .. }
        | Event::ReleaseRequestVerdict { .. } => return None,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event: Event) -> JournalEvent {
        JournalEvent {
            run_id: "r-1".into(),
            stage: Some("api".into()),
            event,
        }
    }

    #[test]
    fn an_incomplete_rollback_is_audited_as_such_whatever_its_message_says() {
        let (action, outcome) = audited(&Event::RollbackIncomplete {
            stages: vec!["api".into()],
            reason: "gate failed".into(),
            message: "traffic may be split".into(),
        })
        .expect("audited");
        assert_eq!(action, Action::RunRollbackIncomplete);
        assert_eq!(outcome, Outcome::failed("traffic may be split"));
        // A failed run is a failed run, even if its message shouts.
        let (action, _) = audited(&Event::RunPhase {
            phase: RunPhase::Failed,
            outcome: Some("ROLLBACK INCOMPLETE (quoted from a gate)".into()),
        })
        .expect("audited");
        assert_eq!(action, Action::RunFailed);
    }

    #[test]
    fn bookkeeping_is_not_audited_and_calls_carry_their_request_ids() {
        assert!(
            audited(&Event::Step {
                cursor: 1,
                detail: "paused".into()
            })
            .is_none()
        );
        assert!(
            audited(&Event::CallRetried {
                stage: "api".into(),
                key: "k".into(),
                attempt: 1,
                class: "Transient".into(),
                error: "throttled".into(),
                request_id: None,
            })
            .is_none()
        );
        let dir = std::env::temp_dir().join(format!("deployctl-trail-{}", std::process::id()));
        let log = Arc::new(
            AuditLog::open(
                dir.join("audit"),
                deployctl_audit::AuditOptions::new(Who::local("t")),
            )
            .expect("log opens"),
        );
        let caller = Caller::default();
        let bridge = AuditBridge::new(log, "alice", caller.clone());
        caller.set("arn:aws:iam::123456789012:user/alice");
        let entry = bridge
            .entry(&event(Event::CallDone {
                key: "k".into(),
                request_ids: vec!["req-1".into()],
            }))
            .expect("audited");
        let shown = format!("{entry:?}");
        assert!(shown.contains("req-1"), "{shown}");
        assert!(
            shown.contains("arn:aws:iam::123456789012:user/alice"),
            "{shown}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
