//! The journal's run events: one tagged enum, owned here, that every
//! reader matches exhaustively (the audit bridge, `status`, the
//! controller, rehearsals).
//!
//! Wire form: each event is stored as its tag (the `kind` column) and its
//! fields (the `data` column, a JSON object), the adjacently tagged serde
//! form split in two. The tags and field names are the ones journals have
//! carried since the first release, so a journal written by an older
//! build reads as these types; [`crate::journal::FORMAT_VERSION`] names
//! the format, and a journal from a newer build is refused rather than
//! half understood.

use deployctl_adapter::Action;
use deployctl_plan::model::{RollbackScope, RollbackTrigger, RunEvent};
use serde::{Deserialize, Serialize};

use crate::gate::GateResult;
use crate::state::{RunMode, RunPhase};

/// One thing that happened to a run, as the journal records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    content = "data",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Event {
    /// The run was recorded (and its target locks taken).
    RunCreated {
        initiator: String,
        mode: RunMode,
        plan_digest: String,
    },
    /// The run entered `phase`.
    RunPhase {
        phase: RunPhase,
        outcome: Option<String>,
    },
    /// A rollback started: what it undoes and how it ends, so a resumed
    /// rollback does the same.
    RollbackStarted {
        reason: String,
        scope: RollbackScope,
        final_phase: RunPhase,
    },
    /// A rollback gave up on `stages`: traffic may be split, a human must
    /// act. The run is Failed with its locks held.
    RollbackIncomplete {
        stages: Vec<String>,
        reason: String,
        message: String,
    },
    /// The rollback path and the platform identity of a stage's target,
    /// confirmed before anything moved (S3).
    Preflight {
        stable_version: String,
        ready: bool,
        detail: String,
        /// The target as its platform names it (absent in journals of
        /// builds before platform identities).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        identity: Option<String>,
        /// What the adapter verified for the trail (firmware manifests'
        /// digests and signers); absent when nothing was.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        verified: Vec<String>,
    },
    StageStarted {
        cursor: u32,
    },
    StageResumed {
        cursor: u32,
    },
    StageSucceeded {
        /// The target already ran the new version: nothing moved.
        #[serde(default, skip_serializing_if = "is_false")]
        unchanged: bool,
    },
    StageFailed {
        trigger: RollbackTrigger,
        reason: String,
    },
    /// Never started because the run stopped first.
    StageSkipped {},
    /// The stage's cursor moved past an operation that made no call.
    Step {
        cursor: u32,
        detail: String,
    },
    PauseStarted {
        seconds: f64,
    },
    /// A call is about to be made (journaled before it is).
    CallIntent {
        key: String,
        action: Action,
    },
    CallDone {
        key: String,
        request_ids: Vec<String>,
    },
    CallFailed {
        key: String,
        request_ids: Vec<String>,
        #[serde(default)]
        error: String,
    },
    /// A failed attempt the retry policy retried (S7: traceable even when
    /// the call finally succeeds).
    CallRetried {
        stage: String,
        key: String,
        attempt: u32,
        class: String,
        error: String,
        request_id: Option<String>,
    },
    GateResult {
        gate: String,
        result: GateResult,
    },
    ApprovalRequested {
        approval: String,
        role: String,
        required: u32,
    },
    Approved {
        gate: String,
        approver: String,
    },
    Rejected {
        gate: String,
        approver: String,
        reason: String,
    },
    KillRequested {},
    /// The run was recorded here from the team backend's record because
    /// the PC that drove it (`from_pc`) stopped renewing its locks; `by`
    /// took it over to stop it.
    TakenOver {
        from_pc: String,
        by: String,
    },
    Notified {
        event: RunEvent,
        channel: String,
    },
    NotificationFailed {
        event: RunEvent,
        channel: String,
        error: Option<String>,
    },
    /// The in-cluster controller's verdict on one approval entry of a
    /// Release (`spec.approvals[index]`).
    ReleaseApprovalVerdict {
        index: u32,
        gate: String,
        user: String,
        /// `approve` or `reject`, as the entry asked.
        kind: String,
        verdict: Verdict,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<String>,
    },
    /// The in-cluster controller's verdict on one rollout verb of a
    /// Release (`spec.requests[index]`): it is acted on once.
    ReleaseRequestVerdict {
        index: u32,
        /// `pause`, `promote` or `abort`.
        verb: String,
        user: String,
        verdict: Verdict,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<String>,
    },
}

/// What the controller decided about an approval entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    Accepted,
    Refused,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Why a stored event could not be read as an [`Event`].
#[derive(Debug, thiserror::Error)]
#[error("event `{kind}` cannot be read: {source}")]
pub struct UnreadableEvent {
    pub kind: String,
    #[source]
    pub source: serde_json::Error,
}

impl Event {
    /// The tag stored in the journal's `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::RunCreated { .. } => "runCreated",
            Event::RunPhase { .. } => "runPhase",
            Event::RollbackStarted { .. } => "rollbackStarted",
            Event::RollbackIncomplete { .. } => "rollbackIncomplete",
            Event::Preflight { .. } => "preflight",
            Event::StageStarted { .. } => "stageStarted",
            Event::StageResumed { .. } => "stageResumed",
            Event::StageSucceeded { .. } => "stageSucceeded",
            Event::StageFailed { .. } => "stageFailed",
            Event::StageSkipped {} => "stageSkipped",
            Event::Step { .. } => "step",
            Event::PauseStarted { .. } => "pauseStarted",
            Event::CallIntent { .. } => "callIntent",
            Event::CallDone { .. } => "callDone",
            Event::CallFailed { .. } => "callFailed",
            Event::CallRetried { .. } => "callRetried",
            Event::GateResult { .. } => "gateResult",
            Event::ApprovalRequested { .. } => "approvalRequested",
            Event::Approved { .. } => "approved",
            Event::Rejected { .. } => "rejected",
            Event::KillRequested {} => "killRequested",
            Event::TakenOver { .. } => "takenOver",
            Event::Notified { .. } => "notified",
            Event::NotificationFailed { .. } => "notificationFailed",
            Event::ReleaseApprovalVerdict { .. } => "releaseApprovalVerdict",
            Event::ReleaseRequestVerdict { .. } => "releaseRequestVerdict",
        }
    }

    /// One line for people (`status`): what happened, without the data
    /// dump.
    pub fn summary(&self) -> String {
        match self {
            Event::RunCreated {
                initiator, mode, ..
            } => {
                format!("run created by {initiator} ({})", mode.as_str())
            }
            Event::RunPhase { phase, outcome } => match outcome {
                Some(outcome) => format!("run {}: {outcome}", phase.as_str()),
                None => format!("run {}", phase.as_str()),
            },
            Event::RollbackStarted { reason, .. } => format!("rollback started: {reason}"),
            Event::RollbackIncomplete { stages, .. } => format!(
                "rollback incomplete for {}: a human must act",
                stages.join(", ")
            ),
            Event::Preflight {
                stable_version,
                ready,
                ..
            } => format!(
                "preflight: rollback path to {stable_version} {}",
                if *ready { "confirmed" } else { "NOT confirmed" }
            ),
            Event::StageStarted { .. } => "stage started".into(),
            Event::StageResumed { cursor } => format!("stage resumed at step {cursor}"),
            Event::StageSucceeded { unchanged: true } => "already on the new version".into(),
            Event::StageSucceeded { unchanged: false } => "stage succeeded".into(),
            Event::StageFailed { reason, .. } => format!("stage failed: {reason}"),
            Event::StageSkipped {} => "stage skipped".into(),
            Event::Step { detail, .. } => detail.clone(),
            Event::PauseStarted { seconds } => format!(
                "pausing {}",
                deployctl_plan::duration::format_duration(std::time::Duration::from_secs_f64(
                    seconds.max(0.0)
                ))
            ),
            Event::CallIntent { action, .. } => format!("calling: {action}"),
            Event::CallDone { .. } => "call done".into(),
            Event::CallFailed { error, .. } => format!("call failed: {error}"),
            Event::CallRetried { attempt, error, .. } => {
                format!("attempt {attempt} retried: {error}")
            }
            Event::GateResult { gate, result } => format!(
                "gate {gate} {}",
                if result.passed() { "passed" } else { "failed" }
            ),
            Event::ApprovalRequested {
                approval,
                role,
                required,
            } => format!(
                "waiting for {} with role `{role}` ({approval})",
                crate::approval::approvers(*required)
            ),
            Event::Approved { gate, approver } => format!("{approver} approved {gate}"),
            Event::Rejected { gate, approver, .. } => format!("{approver} rejected {gate}"),
            Event::KillRequested {} => "kill requested".into(),
            Event::TakenOver { from_pc, by } => {
                format!("taken over from PC {from_pc} by {by}, whose lease ran out")
            }
            Event::Notified { channel, .. } => format!("notified {channel}"),
            Event::NotificationFailed { channel, .. } => format!("notifying {channel} failed"),
            Event::ReleaseApprovalVerdict {
                user,
                gate,
                verdict,
                ..
            } => format!("{user} on {gate}: {verdict:?}"),
            Event::ReleaseRequestVerdict {
                user,
                verb,
                verdict,
                ..
            } => format!("{verb} by {user}: {verdict:?}"),
        }
    }

    /// The fields as stored in the journal's `data` column.
    pub fn data(&self) -> serde_json::Value {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut tagged)) => tagged
                .remove("data")
                .unwrap_or_else(|| serde_json::Value::Object(Default::default())),
            // Every variant is a struct variant of plain data, which
            // serde_json always serializes as a tagged object.
            _ => serde_json::Value::Object(Default::default()),
        }
    }

    /// Reads a stored event back from its two columns.
    pub fn from_stored(kind: &str, data: serde_json::Value) -> Result<Event, UnreadableEvent> {
        serde_json::from_value(serde_json::json!({"kind": kind, "data": data})).map_err(|source| {
            UnreadableEvent {
                kind: kind.to_string(),
                source,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(event: Event) {
        let back = Event::from_stored(event.kind(), event.data()).expect("reads back");
        assert_eq!(back, event);
    }

    #[test]
    fn every_kind_is_its_serde_tag_and_reads_back() {
        round_trip(Event::RunCreated {
            initiator: "alice@pc".into(),
            mode: RunMode::Apply,
            plan_digest: "sha256:ab".into(),
        });
        round_trip(Event::RunPhase {
            phase: RunPhase::Succeeded,
            outcome: None,
        });
        round_trip(Event::RollbackStarted {
            reason: "gate failed".into(),
            scope: RollbackScope::Stage,
            final_phase: RunPhase::RolledBack,
        });
        round_trip(Event::StageSkipped {});
        round_trip(Event::KillRequested {});
        round_trip(Event::TakenOver {
            from_pc: "pc-a".into(),
            by: "bob@pc-b".into(),
        });
        round_trip(Event::StageSucceeded { unchanged: true });
        round_trip(Event::CallIntent {
            key: "r/api/0".into(),
            action: Action::SetWeight { percent: 10 },
        });
        round_trip(Event::CallFailed {
            key: "r/api/0".into(),
            request_ids: vec!["req-1".into()],
            error: "rejected".into(),
        });
        round_trip(Event::ReleaseApprovalVerdict {
            index: 0,
            gate: "prod".into(),
            user: "bob".into(),
            kind: "approve".into(),
            verdict: Verdict::Refused,
            reason: Some("wrong code".into()),
            at: None,
        });
        round_trip(Event::ReleaseRequestVerdict {
            index: 1,
            verb: "pause".into(),
            user: "alice".into(),
            verdict: Verdict::Accepted,
            reason: None,
            at: Some("2026-12-07T15:00:00Z".into()),
        });
        let unit = Event::StageSkipped {};
        let tagged = serde_json::to_value(&unit).unwrap();
        assert_eq!(tagged["kind"], unit.kind());
        assert_eq!(unit.data(), serde_json::json!({}));
    }

    #[test]
    fn events_as_the_first_release_wrote_them_still_read() {
        // Data exactly as journals of the first release hold it.
        let cases = [
            (
                "runCreated",
                r#"{"initiator":"a@h","mode":"apply","planDigest":"sha256:1"}"#,
            ),
            (
                "runPhase",
                r#"{"phase":"Failed","outcome":"ROLLBACK INCOMPLETE for api"}"#,
            ),
            (
                "rollbackStarted",
                r#"{"reason":"x","scope":"plan","finalPhase":"Killed"}"#,
            ),
            (
                "preflight",
                r#"{"stableVersion":"v1","ready":true,"detail":"ok"}"#,
            ),
            ("stageSucceeded", r#"{}"#),
            ("stageSucceeded", r#"{"unchanged":true}"#),
            ("stageFailed", r#"{"trigger":"gateFailed","reason":"r"}"#),
            ("callDone", r#"{"key":"k","requestIds":["a"],"error":null}"#),
            (
                "callFailed",
                r#"{"key":"k","requestIds":[],"error":"boom"}"#,
            ),
            (
                "callIntent",
                r#"{"key":"k","action":{"action":"deploy","version":"v2"}}"#,
            ),
            (
                "notified",
                r#"{"event":"started","channel":"webhook x","error":null}"#,
            ),
            ("step", r#"{"cursor":3,"detail":"paused 1s"}"#),
        ];
        for (kind, data) in cases {
            let event = Event::from_stored(kind, serde_json::from_str(data).unwrap())
                .unwrap_or_else(|error| panic!("{kind}: {error}"));
            assert_eq!(event.kind(), kind);
        }
    }

    #[test]
    fn an_unknown_kind_is_an_error_naming_it() {
        let error = Event::from_stored("teleported", serde_json::json!({})).unwrap_err();
        assert!(error.to_string().contains("teleported"), "{error}");
    }
}
