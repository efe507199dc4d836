//! The wire types: one [`AuditRecord`] per line of `audit.jsonl`.
//!
//! Field order is the struct order below and is part of the format: the
//! hash covers the serialized bytes (see [`crate::canonical`]). Optional
//! fields are left out when absent; unknown fields and unknown actions are
//! errors when reading, like everywhere in deployctl.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `apiVersion` of every document this crate writes.
pub const API_VERSION: &str = "deployctl.io/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApiVersion {
    #[serde(rename = "deployctl.io/v1")]
    V1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordKind {
    AuditRecord,
}

/// One audited action: who did what, when, with which outcome, chained to
/// the record before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditRecord {
    pub api_version: ApiVersion,
    pub kind: RecordKind,
    /// 1, 2, 3, … with no gaps.
    pub seq: u64,
    /// UTC, RFC 3339 with milliseconds, taken when the record was written.
    pub time: String,
    pub who: Who,
    pub what: What,
    pub outcome: Outcome,
    /// Cloud request IDs of the calls this action made (S7: correlates with
    /// CloudTrail). Always present, often empty.
    pub request_ids: Vec<String>,
    /// `hash` of the previous record; 64 zeros for seq 1.
    pub prev: ChainHash,
    /// SHA-256 of this record's canonical bytes ([`crate::canonical`]).
    pub hash: ChainHash,
}

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Who {
    /// The configured operator identity (the policy's name for a person).
    pub operator: String,
    /// The local account the process ran as.
    pub os_user: String,
    pub host: String,
    /// The AWS principal the action used, when it touched AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_caller_arn: Option<String>,
}

impl Who {
    /// `operator` acting from this process: the OS user from `$USER`
    /// (`$LOGNAME`, else `uid:N`) and the kernel's host name.
    pub fn local(operator: impl Into<String>) -> Who {
        Who {
            operator: operator.into(),
            os_user: os_user(),
            host: host_name(),
            aws_caller_arn: None,
        }
    }

    pub fn with_aws_caller_arn(mut self, arn: impl Into<String>) -> Who {
        self.aws_caller_arn = Some(arn.into());
        self
    }
}

fn os_user() -> String {
    for variable in ["USER", "LOGNAME"] {
        if let Ok(user) = std::env::var(variable)
            && !user.is_empty()
        {
            return user;
        }
    }
    // No environment (a service, a cron job): the owner of our own /proc
    // entry is our real uid, read without unsafe code.
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata("/proc/self") {
        Ok(metadata) => format!("uid:{}", metadata.uid()),
        Err(_) => "unknown".to_string(),
    }
}

fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_string())
        .find(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string())
}

/// What was done. Fields that do not apply to an action are absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct What {
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The state before (a version, a weight…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The state after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_digest: Option<String>,
    /// Free text for a human reader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Who started the run the action belongs to (`user@host`, or the
    /// Release's initiator), on every record of a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiator: Option<String>,
    /// Who approved or rejected (an approval's records): the person the
    /// policy checked, whoever's login ran the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
}

impl What {
    pub fn new(action: Action) -> What {
        What {
            action,
            run: None,
            stage: None,
            target: None,
            from: None,
            to: None,
            plan_digest: None,
            detail: None,
            initiator: None,
            approver: None,
        }
    }
    pub fn run(mut self, run: impl Into<String>) -> What {
        self.run = Some(run.into());
        self
    }
    pub fn stage(mut self, stage: impl Into<String>) -> What {
        self.stage = Some(stage.into());
        self
    }
    pub fn target(mut self, target: impl Into<String>) -> What {
        self.target = Some(target.into());
        self
    }
    pub fn change(mut self, from: impl Into<String>, to: impl Into<String>) -> What {
        self.from = Some(from.into());
        self.to = Some(to.into());
        self
    }
    pub fn plan_digest(mut self, digest: impl Into<String>) -> What {
        self.plan_digest = Some(digest.into());
        self
    }
    pub fn detail(mut self, detail: impl Into<String>) -> What {
        self.detail = Some(detail.into());
        self
    }
    pub fn initiator(mut self, initiator: impl Into<String>) -> What {
        self.initiator = Some(initiator.into());
        self
    }
    pub fn approver(mut self, approver: impl Into<String>) -> What {
        self.approver = Some(approver.into());
        self
    }
}

macro_rules! actions {
    ($($(#[doc = $doc:literal])* $variant:ident = $wire:literal,)*) => {
        /// The audited actions, as dotted strings `subject.verb`.
        ///
        /// The subject says what `run`/`stage`/`target` refer to; `from`/`to`
        /// carry the change where there is one. New actions are added here
        /// (a reader that does not know an action refuses the record, so a
        /// new action needs a reader of the same version or newer).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum Action {
            $($(#[doc = $doc])* #[serde(rename = $wire)] $variant,)*
        }

        impl Action {
            /// Every action, in documentation order.
            pub const ALL: &[Action] = &[$(Action::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => $wire,)*
                }
            }
        }
    };
}

actions! {
    /// `apply` started a run (`planDigest`; `detail`: environment, mode).
    RunStarted = "run.started",
    /// `resume` picked a run up again after its process stopped.
    RunResumed = "run.resumed",
    /// Every stage finished; the release is live.
    RunSucceeded = "run.succeeded",
    /// The run stopped on an error (`outcome.message`).
    RunFailed = "run.failed",
    /// A run was refused before anything moved (a target locked by another
    /// run, a failed preflight, a strategy the target cannot take):
    /// `outcome.message` says why; no run was recorded.
    RunRefused = "run.refused",
    /// Rollback finished: every moved target is back on stable.
    RunRolledBack = "run.rolledBack",
    /// Rollback gave up on some target: a human must act.
    RunRollbackIncomplete = "run.rollbackIncomplete",
    /// A stage began (`stage`, `target`).
    StageStarted = "stage.started",
    /// A new version was deployed next to the stable one (`from`/`to`: versions).
    StageDeployed = "stage.deployed",
    /// Traffic moved (`from`/`to`: weights in percent).
    StageWeightSet = "stage.weightSet",
    /// The new version became stable (`from`/`to`: versions).
    StagePromoted = "stage.promoted",
    /// A stage finished.
    StageSucceeded = "stage.succeeded",
    /// A stage failed (`outcome.message`).
    StageFailed = "stage.failed",
    /// A stage's target was put back on stable.
    StageRolledBack = "stage.rolledBack",
    /// A fleet wave was dispatched (`detail`: the wave and its devices).
    WaveDispatched = "wave.dispatched",
    /// Any other change made on a target (`detail`: the call).
    TargetChanged = "target.changed",
    /// A health gate passed (`detail`: gate and measurements).
    GatePassed = "gate.passed",
    /// A health gate failed (`detail`: gate and measurements).
    GateFailed = "gate.failed",
    /// A run waits for a human approval.
    ApprovalRequested = "approval.requested",
    /// `who` approved.
    ApprovalGranted = "approval.granted",
    /// `who` rejected.
    ApprovalRejected = "approval.rejected",
    /// `who` passed an MFA check.
    MfaVerified = "mfa.verified",
    /// An MFA check failed (J6: a security event).
    MfaFailed = "mfa.failed",
    /// The policy refused an operation to `who` (`outcome`: denied).
    PolicyDenied = "policy.denied",
    /// `kill` asked a run to stop.
    KillRequested = "kill.requested",
    /// `rollback` was asked for by `who`.
    RollbackRequested = "rollback.requested",
    /// `retry` started a finished run again from its recorded plan
    /// (`run`: the old run; `detail`: the new one).
    RetryRequested = "retry.requested",
    /// `pause` held a run where it stands (gates keep watching).
    PauseRequested = "pause.requested",
    /// `promote` ended a run's current pause, or released its hold.
    PromoteRequested = "promote.requested",
    /// The audit log repaired itself after a crash (`detail`: what was cut).
    AuditRecovered = "audit.recovered",
    /// An MFA administrator (`who`) listed the enrollments.
    MfaListed = "mfa.listed",
    /// An MFA administrator (`who`) removed `target`'s enrollment.
    MfaRemoved = "mfa.removed",
    /// An MFA administrator (`who`) lifted `target`'s lockout.
    MfaUnlocked = "mfa.unlocked",
    /// `artifact sign` signed a firmware manifest (`target`: firmware and
    /// version; `detail`: the manifest's SHA-256, the signing key, the image digest).
    ArtifactSigned = "artifact.signed",
    /// `artifact publish` uploaded an image and its manifest (`target`:
    /// firmware and version; `detail`: the objects and their versions).
    ArtifactPublished = "artifact.published",
    /// Preflight verified what a stage releases before the run started
    /// (`stage`, `target`; `detail`: for a fleet, each firmware manifest's
    /// SHA-256 and signer).
    ArtifactVerified = "artifact.verified",
    /// `lock break` freed a team lock whose lease ran out (`target`: the
    /// platform identity; `run`: the run that held it; `detail`: its
    /// owner, lease and the reason given).
    LockBroken = "lock.broken",
    /// A PC took over a run whose driving PC stopped renewing its locks,
    /// to stop it (`detail`: from which PC, by whom).
    RunTakenOver = "run.takenOver",
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(text: &str) -> Result<Action, String> {
        Action::ALL
            .iter()
            .copied()
            .find(|action| action.as_str() == text)
            .ok_or_else(|| {
                let known: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
                format!(
                    "unknown action `{text}`; expected one of {}",
                    known.join(", ")
                )
            })
    }
}

/// How the action ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Outcome {
    pub fn ok() -> Outcome {
        Outcome {
            status: Status::Ok,
            message: None,
        }
    }
    pub fn failed(message: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Failed,
            message: Some(message.into()),
        }
    }
    pub fn denied(message: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Denied,
            message: Some(message.into()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Failed,
    /// Refused by policy, MFA or an approver.
    Denied,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Denied => "denied",
        }
    }
}

/// What a caller hands to [`crate::AuditLog::append`]; the log adds `seq`,
/// `time`, `prev` and `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub who: Who,
    pub what: What,
    pub outcome: Outcome,
    pub request_ids: Vec<String>,
}

impl Entry {
    pub fn new(who: Who, what: What, outcome: Outcome) -> Entry {
        Entry {
            who,
            what,
            outcome,
            request_ids: Vec::new(),
        }
    }

    pub fn request_id(mut self, id: impl Into<String>) -> Entry {
        self.request_ids.push(id.into());
        self
    }
}

/// A SHA-256 value, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// The `prev` of the first record.
    pub const ZERO: ChainHash = ChainHash([0; 32]);

    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }

    pub fn from_hex(text: &str) -> Option<ChainHash> {
        let mut bytes = [0; 32];
        crate::hex::decode_into(text.as_bytes(), &mut bytes).then_some(ChainHash(bytes))
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({})", self.to_hex())
    }
}

impl Serialize for ChainHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut text = [0; 64];
        crate::hex::encode_into(&self.0, &mut text);
        // Hex digits are ASCII.
        serializer.serialize_str(std::str::from_utf8(&text).unwrap_or_default())
    }
}

impl<'de> Deserialize<'de> for ChainHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ChainHash::from_hex(&text).ok_or_else(|| {
            serde::de::Error::custom("expected 64 lowercase hex digits (a SHA-256 value)")
        })
    }
}
