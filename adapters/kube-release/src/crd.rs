//! The `Release` custom resource (`deployctl.io/v1`, namespaced): the wire
//! format GitOps tools commit and the controller reports on.
//!
//! `spec` is what people write: the plan's YAML text and the approvals
//! appended by `deployctl approve --release`. `status` is what the
//! controller writes (through the status subresource, so a spec writer can
//! never forge it): the run, each stage, the gates, the approvals waited
//! for and a verdict per approval entry. Both are versioned with the CRD
//! (`v1`); a field is added, never repurposed.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of the Release resource.
pub const GROUP: &str = "deployctl.io";
/// The CRD's name (`<plural>.<group>`).
pub const CRD_NAME: &str = "releases.deployctl.io";
/// Who started a release, set by whoever applies the Release (a GitOps
/// pipeline: the committer). The four-eyes rule compares approvers with it.
pub const INITIATOR_ANNOTATION: &str = "deployctl.io/initiator";
/// Held while a run of the Release may still need undoing: deleting the
/// Release then rolls the run back before the object goes away.
pub const FINALIZER: &str = "deployctl.io/rollback";

/// A release: a plan to run once, in the cluster, by the deployctl
/// controller.
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[kube(
    group = "deployctl.io",
    version = "v1",
    kind = "Release",
    namespaced,
    status = "ReleaseStatus",
    shortname = "rel",
    doc = "A deployctl release: a plan (YAML text) the in-cluster controller runs once, with approvals recorded on it",
    printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}"#,
    printcolumn = r#"{"name": "Run", "type": "string", "jsonPath": ".status.runId"}"#,
    printcolumn = r#"{"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseSpec {
    /// The plan, as the YAML text of a `kind: Plan` document (what
    /// `deployctl apply` would read from a file).
    pub plan: String,
    /// Approvals and rejections, appended by `deployctl approve|reject
    /// --release`; the controller verifies each entry once and writes its
    /// verdict to `status.approvals`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<ApprovalEntry>,
    /// Rollout verbs asked of the run (`deployctl pause|promote|abort|retry
    /// --release`); the controller judges each entry once, as it does an
    /// approval, and writes its verdict to `status.requests`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<RequestEntry>,
}

impl ReleaseSpec {
    /// A spec running `plan`, with nothing asked of it yet.
    pub fn of_plan(plan: impl Into<String>) -> ReleaseSpec {
        ReleaseSpec {
            plan: plan.into(),
            approvals: Vec::new(),
            requests: Vec::new(),
        }
    }
}

/// One rollout verb as asked. Who asked is checked against the
/// controller's access file like the initiator annotation is: in a real
/// cluster an admission policy must pin `user` to the requesting
/// Kubernetes user (docs/runbook.md).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestEntry {
    pub verb: RequestVerb,
    /// Who asks (a name in the controller's access file).
    pub user: String,
    /// When it was asked (RFC 3339, the asker's clock; informative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// `promoteFull` in a protected environment: who approves it (another
    /// person holding the environment's approver role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
    /// The approver's one-time MFA code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// The rollout verbs a Release takes.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RequestVerb {
    /// Hold the run where it stands, gates still watching.
    Pause,
    /// End the current pause now and release a hold.
    Promote,
    /// Skip every remaining step, straight to full promotion.
    PromoteFull,
    /// Traffic back to stable; the Release is left Aborted.
    Abort,
    /// Start a rolled-back, failed, aborted or killed run again, as a new
    /// run of the same recorded plan; the Release then reports that run.
    Retry,
}

impl RequestVerb {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestVerb::Pause => "pause",
            RequestVerb::Promote => "promote",
            RequestVerb::PromoteFull => "promoteFull",
            RequestVerb::Abort => "abort",
            RequestVerb::Retry => "retry",
        }
    }

    pub fn parse(text: &str) -> Option<RequestVerb> {
        Some(match text {
            "pause" => RequestVerb::Pause,
            "promote" => RequestVerb::Promote,
            "promoteFull" => RequestVerb::PromoteFull,
            "abort" => RequestVerb::Abort,
            "retry" => RequestVerb::Retry,
            _ => return None,
        })
    }
}

/// One approval (or rejection) as submitted. The code is a one-time TOTP
/// code: accepted once, valid for about a minute, so leaving it here gives
/// nobody a reusable secret.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalEntry {
    /// The plan's approval gate.
    pub gate: String,
    /// Who approves (a name in the controller's access file).
    pub user: String,
    /// Their one-time MFA code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// When it was submitted (RFC 3339, the submitter's clock; informative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// A rejection rather than an approval: the run rolls back.
    #[serde(default, skip_serializing_if = "is_false")]
    pub reject: bool,
    /// Why it was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Where a Release stands.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
pub enum ReleasePhase {
    /// Seen, not started yet.
    Pending,
    /// The plan does not validate (see `diagnostics`); nothing was touched.
    Invalid,
    /// The plan is valid but may not run here (initiator missing or not an
    /// operator of a protected environment, an adapter this build lacks);
    /// nothing was touched.
    Refused,
    Progressing,
    /// Waiting for approvals (see `pendingApprovals`) or an open pause.
    Paused,
    RollingBack,
    Succeeded,
    RolledBack,
    Failed,
    /// Stopped (`deployctl kill`, or the Release deleted) and rolled back.
    Killed,
    /// Stopped by `deployctl abort` and rolled back, left for a person.
    Aborted,
}

impl ReleasePhase {
    /// Nothing will change about this Release on its own any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ReleasePhase::Invalid
                | ReleasePhase::Refused
                | ReleasePhase::Succeeded
                | ReleasePhase::RolledBack
                | ReleasePhase::Failed
                | ReleasePhase::Killed
                | ReleasePhase::Aborted
        )
    }

    /// The phase named `text` (the run phases of `deployctl status`).
    pub fn parse(text: &str) -> Option<ReleasePhase> {
        Some(match text {
            "Pending" => ReleasePhase::Pending,
            "Invalid" => ReleasePhase::Invalid,
            "Refused" => ReleasePhase::Refused,
            "Progressing" => ReleasePhase::Progressing,
            "Paused" => ReleasePhase::Paused,
            "RollingBack" => ReleasePhase::RollingBack,
            "Succeeded" => ReleasePhase::Succeeded,
            "RolledBack" => ReleasePhase::RolledBack,
            "Failed" => ReleasePhase::Failed,
            "Killed" => ReleasePhase::Killed,
            "Aborted" => ReleasePhase::Aborted,
            _ => return None,
        })
    }
}

/// What the controller reports. Every field is derived from the run's
/// journal (and the spec), so a restarted controller writes the same
/// status again.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ReleasePhase>,
    /// The run in the controller's journal (`deployctl status RUN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The `metadata.generation` this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// One line on where the release stands or why it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Validation problems (`release/NS/NAME:LINE:COL: error: …`), when
    /// the plan is invalid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<String>,
    /// The initiator the four-eyes rule uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiator: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageStatus>,
    /// Gates waiting for approvers now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_approvals: Vec<PendingApproval>,
    /// A verdict per `spec.approvals` entry, in order (never the code).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<ApprovalVerdict>,
    /// A verdict per `spec.requests` entry, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<RequestVerdict>,
}

/// What the controller decided about one `spec.requests` entry.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestVerdict {
    /// The entry's index in `spec.requests`.
    pub index: u32,
    pub verb: RequestVerb,
    pub user: String,
    pub verdict: Verdict,
    /// What it did, why nothing was left to do, or why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the controller decided (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

/// One stage of the run.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageStatus {
    pub name: String,
    pub target: String,
    /// `Pending`, `Progressing`, `Paused`, `Succeeded`, `Failed`, …
    pub phase: String,
    /// Percent of traffic on the new version.
    pub weight: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_gate: Option<GateStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The gates measuring now (the step's analysis, the background
    /// ones): their totals and latest measurement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measuring: Vec<MeasuringGate>,
}

/// A gate measuring now, as its latest measurement left it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeasuringGate {
    pub gate: String,
    /// A canary's background gate (else the step's analysis).
    pub background: bool,
    pub passed: u64,
    pub failed: u64,
    pub errors: u64,
    pub no_data: u64,
    /// The latest measurement: `pass`, `fail`, `nodata` or `error`.
    pub last: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When it was taken (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

/// The last gate result of a stage.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateStatus {
    pub gate: String,
    /// `passed`, `failed` or `running`.
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An approval gate the run waits at.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingApproval {
    pub gate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// The approval role an approver must hold.
    pub role: String,
    /// How many distinct approvers it needs.
    pub required: u32,
    #[serde(default)]
    pub approved_by: Vec<String>,
}

/// What the controller decided about one `spec.approvals` entry.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalVerdict {
    /// The entry's index in `spec.approvals`.
    pub index: u32,
    pub gate: String,
    pub user: String,
    /// `approve` or `reject`.
    pub kind: String,
    pub verdict: Verdict,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the controller decided (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
pub enum Verdict {
    Accepted,
    Refused,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn the_crd_is_namespaced_with_a_status_subresource_and_columns() {
        let crd = Release::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some(CRD_NAME));
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.kind, "Release");
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let columns: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns, ["Phase", "Run", "Message", "Age"]);
    }

    #[test]
    fn an_approval_entry_round_trips_without_empty_fields() {
        let entry = ApprovalEntry {
            gate: "prod".into(),
            user: "bob".into(),
            code: Some("123456".into()),
            at: None,
            reject: false,
            reason: None,
        };
        let json = serde_json::to_value(&entry).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"gate": "prod", "user": "bob", "code": "123456"})
        );
        let back: ApprovalEntry = serde_json::from_value(json).unwrap_or_else(|_| entry.clone());
        assert_eq!(back, entry);
    }

    #[test]
    fn final_phases_are_the_ones_nothing_moves_after() {
        assert!(ReleasePhase::Invalid.is_final());
        assert!(ReleasePhase::Succeeded.is_final());
        assert!(!ReleasePhase::Paused.is_final());
        assert_eq!(
            ReleasePhase::parse("RollingBack"),
            Some(ReleasePhase::RollingBack)
        );
        assert_eq!(ReleasePhase::parse("Sideways"), None);
    }
}
