//! `deployctl-approvals`: the one approval check, shared by `deployctl
//! approve|reject RUN` on a deploy PC and the in-cluster controller
//! verifying the approval entries of a Release (R9, S1, J1, J6). Start at
//! [`submit`].
//!
//! Expected flow: the run exists and has not ended, the gate exists, the
//! approver is not the initiator and holds the gate's role and the
//! environment's approver rule (the access file), and only then is the
//! one-time code asked for and verified (each code accepted once; lockout
//! after repeated wrong codes, announced as a security event). The
//! approval or rejection is then recorded in the journal, which is what a
//! waiting run polls. Every refusal and every verified code is audited.
//!
//! What is not here: where the MFA key comes from, how alerts are sent,
//! who the approver is on AWS ([`Surroundings`], the binary's), and exit
//! codes ([`Refusal`] says which kind of refusal it is).

use std::path::Path;
use std::time::SystemTime;

use deployctl_audit::{Action as AuditAction, Outcome, What};
use deployctl_engine::journal::{Journal, RunRecord};
use deployctl_plan::ValidatedPlan;
use deployctl_policy::{Access, Action, MfaStore, check_approval};
use deployctl_trail::Trail;

/// What an approver decides.
#[derive(Debug, Clone, Copy)]
pub enum Decision<'a> {
    Approve,
    Reject { reason: &'a str },
}

/// One approval or rejection of one gate of one run, from wherever it
/// was submitted: `deployctl approve RUN` on the deploy PC, or an entry in
/// a Release's `spec.approvals` that the controller verifies.
#[derive(Debug, Clone, Copy)]
pub struct Submission<'a> {
    pub run_id: &'a str,
    pub gate: &'a str,
    pub user: &'a str,
    pub decision: Decision<'a>,
}

/// Why a submission was not recorded. Every refusal the check itself
/// decides is audited before it is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not allowed or not valid: an unknown run or gate, a run that ended,
    /// the initiator approving their own run, a missing role, a wrong or
    /// replayed code (the CLI exits 2).
    #[error("{0}")]
    Denied(String),
    /// The check could not be carried out: the recorded plan no longer
    /// validates, the MFA store cannot be opened, the journal failed (the
    /// CLI exits 1).
    #[error("{0}")]
    Failed(String),
    /// What was asked for is already so (the same approver approving the
    /// same gate again): nothing recorded, no code checked, so no lockout
    /// attempt spent (the CLI exits 2, as for any approval that changes
    /// nothing; the controller counts the entry as the approval it was).
    #[error("{0}")]
    AlreadyDone(String),
}

/// What the check needs from around it that this crate does not own:
/// who the approver is on AWS (for the records), the MFA store, and the
/// run's channels for security events. The binary provides them (the
/// MFA key may come from KMS, alerts go out by SNS or webhook).
pub trait Surroundings {
    /// Resolves the approver's AWS identity into the trail's `Caller` when
    /// the plan calls AWS. Best effort: an approval touches nothing on AWS.
    fn identify(&self, plan: &ValidatedPlan, trail: &Trail);

    /// Opens the MFA store.
    fn mfa_store(&self) -> Result<MfaStore, String>;

    /// Announces a security event (a failed code, a lockout) on the
    /// run's channels that asked for them (J6).
    fn alert(&self, plan: &ValidatedPlan, run_id: &str, gate: &str, message: &str);
}

/// The one approval check (R9, S1, J1, J6): the run exists and has not
/// ended, the gate exists, the approver is not the initiator and holds the
/// gate's role (and the environment's approver rule), and their one-time
/// code verifies (each code accepted once; lockout after repeated wrong
/// codes, announced as a security event). Then the approval or rejection
/// is recorded in the journal, which is what a waiting run polls.
/// `code` is asked for only once the identity checks passed.
pub fn submit(
    journal: &dyn Ledger,
    audit: &Trail,
    submission: &Submission<'_>,
    code: impl FnOnce() -> Result<String, Refusal>,
    access_file: &Path,
    around: &dyn Surroundings,
) -> Result<(), Refusal> {
    let Submission {
        run_id,
        gate,
        user,
        decision,
    } = *submission;
    let deny = |action: AuditAction, message: String| {
        audit.record_or_warn(
            user,
            // The person who tried is named as the approver, refused or
            // not, so `audit show --user` finds their attempts.
            What::new(action)
                .run(run_id)
                .approver(user)
                .detail(format!("gate {gate}")),
            Outcome::denied(message.clone()),
        );
        Refusal::Denied(message)
    };
    let run = journal.run(run_id).map_err(Refusal::Denied)?;
    let loaded =
        deployctl_plan::load(&run.plan_file, run.plan_source.as_bytes()).map_err(|_| {
            Refusal::Failed(format!(
                "the plan recorded for run {run_id} no longer validates"
            ))
        })?;
    // The approver's AWS identity goes into the records when the plan
    // calls AWS; an approval itself touches nothing on AWS, so a lookup
    // that fails only loses that detail.
    around.identify(&loaded.plan, audit);
    let Some(approval) = loaded.plan.approvals.get(gate) else {
        let known: Vec<&str> = loaded.plan.approvals.keys().map(String::as_str).collect();
        return Err(deny(
            AuditAction::PolicyDenied,
            format!(
                "run {run_id} has no approval gate `{gate}` (gates: {})",
                known.join(", ")
            ),
        ));
    };
    if run.phase.is_terminal() {
        return Err(deny(
            AuditAction::PolicyDenied,
            format!("run {run_id} already ended ({})", run.phase.as_str()),
        ));
    }
    let access = Access::load(access_file).map_err(|error| Refusal::Denied(error.to_string()))?;
    if let Err(denied) = check_approval(
        &access,
        user,
        initiator_user(&run.initiator),
        &approval.role,
    ) {
        return Err(deny(AuditAction::PolicyDenied, denied.to_string()));
    }
    let decided = access.may(
        user,
        &Action::Approve {
            role: approval.role.clone(),
        },
        &run.environment,
    );
    if !decided.allowed {
        return Err(deny(AuditAction::PolicyDenied, decided.reason.clone()));
    }
    if matches!(decision, Decision::Approve)
        && journal
            .approvers(run_id, gate)
            .map_err(Refusal::Failed)?
            .iter()
            .any(|approver| approver == user)
    {
        // Said before a code is asked for: a second approval by the same
        // person counts for nothing, and must not cost a lockout attempt.
        return Err(Refusal::AlreadyDone(format!(
            "{user} already approved gate `{gate}` of run {run_id}; nothing to do"
        )));
    }
    verify_code(
        around,
        user,
        code,
        |message| around.alert(&loaded.plan, run_id, gate, message),
        deny,
    )?;
    audit.record_or_warn(
        user,
        What::new(AuditAction::MfaVerified)
            .run(run_id)
            .detail(format!("gate {gate}")),
        Outcome::ok(),
    );
    journal
        .record(run_id, gate, user, &decision)
        .map_err(Refusal::Failed)
}

/// Checks `user`'s one-time code, asked for only now, after every other
/// check (a refusal must not cost a lockout attempt). A wrong code is
/// refused through `deny` as `MfaFailed`; failed codes and lockouts are
/// security events (J6), also announced through `alert`.
fn verify_code(
    around: &dyn Surroundings,
    user: &str,
    code: impl FnOnce() -> Result<String, Refusal>,
    alert: impl FnOnce(&str),
    deny: impl FnOnce(AuditAction, String) -> Refusal,
) -> Result<(), Refusal> {
    let store = around
        .mfa_store()
        .map_err(|error| Refusal::Failed(format!("the MFA store cannot be opened: {error}")))?;
    let code = code()?;
    if let Err(error) = store.verify(user, &code, SystemTime::now()) {
        let message = error.to_string();
        if error.is_security_event() {
            alert(&message);
        }
        return Err(deny(AuditAction::MfaFailed, message));
    }
    Ok(())
}

/// Who approves a full promotion (`deployctl promote RUN --full`) in a
/// protected environment, where skipping the remaining steps skips the
/// approvals and analysis the plan asked for.
#[derive(Debug, Clone, Copy)]
pub struct FullPromotion<'a> {
    pub run: &'a RunRecord,
    /// Who asks for it (an operator, checked by the caller).
    pub requester: &'a str,
    /// Who approves it: someone else.
    pub approver: Option<&'a str>,
}

/// Whether a full promotion of `request.run` may go ahead: always outside
/// protected environments; in a protected one, only with the approval of
/// another person (neither the requester nor the run's initiator) who
/// holds the environment's approver role (`approverRole`, or the
/// approver role when it names none), verified by their one-time code
/// like any approval. Refusals and the verified code are audited.
pub fn check_full_promotion(
    audit: &Trail,
    request: &FullPromotion<'_>,
    code: impl FnOnce() -> Result<String, Refusal>,
    access_file: &Path,
    around: &dyn Surroundings,
) -> Result<Option<String>, Refusal> {
    let run = request.run;
    if !access_file.exists() {
        return Ok(None);
    }
    let access = Access::load(access_file).map_err(|error| Refusal::Denied(error.to_string()))?;
    let Some(policy) = access
        .environment(&run.environment)
        .filter(|p| p.is_protected())
    else {
        return Ok(None);
    };
    let Some(approver) = request.approver else {
        return Err(Refusal::Denied(format!(
            "`{}` is protected: a full promotion skips the approvals and analysis the plan asks for, so it needs another person's approval: add `--approver USER` (they give their one-time code)",
            run.environment
        )));
    };
    let deny = |action: AuditAction, message: String| {
        audit.record_or_warn(
            approver,
            What::new(action)
                .run(&run.id)
                .approver(approver)
                .detail("full promotion"),
            Outcome::denied(message.clone()),
        );
        Refusal::Denied(message)
    };
    let initiator = initiator_user(&run.initiator);
    for (other, who) in [
        (request.requester, "asks for it"),
        (initiator, "started the run"),
    ] {
        if approver.eq_ignore_ascii_case(other) {
            return Err(deny(
                AuditAction::PolicyDenied,
                format!(
                    "`{approver}` {who} and may not also approve the full promotion (four eyes)"
                ),
            ));
        }
    }
    let allowed = match policy.approver_role() {
        Some(role) => {
            let role = role.to_string();
            let decision = access.may(approver, &Action::Approve { role }, &run.environment);
            if decision.allowed {
                Ok(())
            } else {
                Err(decision.reason)
            }
        }
        None if access.has_role(approver, deployctl_policy::Role::Approver) => Ok(()),
        None => Err(format!("`{approver}` does not hold the approver role")),
    };
    if let Err(reason) = allowed {
        return Err(deny(AuditAction::PolicyDenied, reason));
    }
    verify_code(
        around,
        approver,
        code,
        |message| {
            if let Ok(loaded) = deployctl_plan::load(&run.plan_file, run.plan_source.as_bytes()) {
                around.alert(&loaded.plan, &run.id, "full promotion", message);
            }
        },
        deny,
    )?;
    audit.record_or_warn(
        approver,
        What::new(AuditAction::MfaVerified)
            .run(&run.id)
            .approver(approver)
            .detail("full promotion"),
        Outcome::ok(),
    );
    Ok(Some(approver.to_string()))
}

/// Where a run's approvals are kept and read: this PC's journal (the run
/// it drives), or the team backend's record of a run another PC drives
/// (the binary's implementation), whose PC copies them into its journal.
pub trait Ledger {
    /// The run as recorded (its plan, initiator, environment, phase).
    fn run(&self, run_id: &str) -> Result<RunRecord, String>;
    /// Who approved `gate` so far.
    fn approvers(&self, run_id: &str, gate: &str) -> Result<Vec<String>, String>;
    /// Keeps the verified decision of `user`.
    fn record(
        &self,
        run_id: &str,
        gate: &str,
        user: &str,
        decision: &Decision<'_>,
    ) -> Result<(), String>;
}

impl Ledger for Journal {
    fn run(&self, run_id: &str) -> Result<RunRecord, String> {
        Journal::run(self, run_id).map_err(|error| error.to_string())
    }

    fn approvers(&self, run_id: &str, gate: &str) -> Result<Vec<String>, String> {
        Journal::approvers(self, run_id, gate).map_err(|error| error.to_string())
    }

    fn record(
        &self,
        run_id: &str,
        gate: &str,
        user: &str,
        decision: &Decision<'_>,
    ) -> Result<(), String> {
        match decision {
            Decision::Approve => self.record_approval(run_id, gate, user),
            Decision::Reject { reason } => self.record_rejection(run_id, gate, user, reason),
        }
        .map_err(|error| error.to_string())
    }
}

/// The user part of a run's initiator (`user@host`).
pub fn initiator_user(initiator: &str) -> &str {
    initiator.split('@').next().unwrap_or(initiator)
}
