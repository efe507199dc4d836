//! `deployctl mfa enroll|confirm`, `deployctl approve`, `deployctl reject`:
//! MFA-verified approvals with four eyes (R9, S1, J1, J6, O11).
//!
//! Who is who comes from the access file (`--access`, env
//! `DEPLOYCTL_ACCESS_FILE`, default `<state-dir>/access.yaml`); MFA secrets
//! live encrypted in `<state-dir>/mfa.sqlite3` under a key from
//! `DEPLOYCTL_MFA_KEY` (hex or base64) or `<state-dir>/mfa.key` (0600,
//! created on first enrollment). Every grant, refusal and failed code is an
//! audit record.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use deployctl_audit::{Action as AuditAction, Outcome, What};
use deployctl_aws_audit::MfaKeySource;
use deployctl_engine::journal::Journal;
use deployctl_policy::mfa::{Background, KeySource, create_key_file};
use deployctl_policy::{Access, Action, MfaPolicy, MfaStore, check_approval};

pub(crate) use crate::access::initiator_user;
use crate::access::load_access;
use crate::audited::Seal;
use crate::exit;

/// The MFA master key: `DEPLOYCTL_MFA_KMS_KEY` (a KMS key ID, ARN or
/// alias: a data key wrapped by KMS in `<state-dir>/mfa.key.kms`, made on
/// the first enrollment, unwrapped on every use), else `DEPLOYCTL_MFA_KEY`,
/// else `<state-dir>/mfa.key` (made on the first enrollment).
fn key_source(state_dir: &Path, create: bool) -> Result<MfaKeySource, u8> {
    let kms_key = std::env::var(deployctl_aws_audit::KMS_KEY_ENV)
        .ok()
        .filter(|k| !k.trim().is_empty());
    if let Some(kms_key) = kms_key {
        if std::env::var_os("DEPLOYCTL_MFA_KEY").is_some() {
            eprintln!(
                "error: both {} and DEPLOYCTL_MFA_KEY are set; the MFA key comes from one of them",
                deployctl_aws_audit::KMS_KEY_ENV
            );
            return Err(exit::INVALID_INPUT);
        }
        let wrapped = state_dir.join(deployctl_aws_audit::WRAPPED_KEY_FILE);
        return match deployctl_aws_audit::KmsKeyProvider::open(kms_key.trim(), wrapped) {
            Ok(provider) => Ok(MfaKeySource::Kms(provider.create_if_missing(create))),
            Err(error) => {
                eprintln!("error: the MFA key from KMS: {error}");
                Err(exit::FAILED)
            }
        };
    }
    if std::env::var_os("DEPLOYCTL_MFA_KEY").is_some() {
        return Ok(MfaKeySource::Local(KeySource::Env(
            "DEPLOYCTL_MFA_KEY".into(),
        )));
    }
    let path = state_dir.join("mfa.key");
    if !path.exists()
        && create
        && let Err(error) = std::fs::create_dir_all(state_dir)
            .map_err(|e| e.to_string())
            .and_then(|()| create_key_file(&path).map_err(|e| e.to_string()))
    {
        eprintln!(
            "error: cannot create the MFA key {}: {error}",
            path.display()
        );
        return Err(exit::FAILED);
    }
    Ok(MfaKeySource::Local(KeySource::File(path)))
}

fn open_mfa(state_dir: &Path, create_key: bool) -> Result<MfaStore, u8> {
    let keys = key_source(state_dir, create_key)?;
    MfaStore::open(state_dir, &keys, MfaPolicy::default()).map_err(|error| {
        eprintln!("error: {error}");
        exit::FAILED
    })
}

/// The code from `--code`, or asked for on a terminal.
pub(crate) fn code_or_prompt(code: Option<&str>, user: &str) -> Result<String, u8> {
    if let Some(code) = code {
        return Ok(code.to_string());
    }
    if !std::io::stdin().is_terminal() {
        eprintln!("error: pass the one-time code with --code (no terminal to ask on)");
        return Err(exit::INVALID_INPUT);
    }
    eprint!("MFA code for {user}: ");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|_| exit::FAILED)?;
    Ok(line.trim().to_string())
}

/// `deployctl mfa enroll USER [--code CODE]`.
pub fn enroll(user: &str, code: Option<&str>, access: &Path, state_dir: &Path) -> u8 {
    let access = match load_access(access) {
        Ok(access) => access,
        Err(code) => return code,
    };
    if !access.is_known(user) {
        eprintln!("error: `{user}` is not in the access file; add them before enrolling");
        return exit::INVALID_INPUT;
    }
    let store = match open_mfa(state_dir, true) {
        Ok(store) => store,
        Err(code) => return code,
    };
    let enrollment = match store.enroll(user, SystemTime::now()) {
        Ok(enrollment) => enrollment,
        Err(error) => {
            eprintln!("error: {error}");
            return exit::FAILED;
        }
    };
    eprintln!("Scan this with an authenticator app (or enter the URI by hand):\n");
    if let Ok(qr) = enrollment.qr_code(Background::Dark) {
        eprintln!("{qr}");
    }
    eprintln!("{}\n", enrollment.otpauth_uri);
    let code = match code {
        Some(code) => code.to_string(),
        None if std::io::stdin().is_terminal() => match code_or_prompt(None, user) {
            Ok(code) => code,
            Err(code) => return code,
        },
        None => {
            eprintln!("Confirm with `deployctl mfa confirm {user} --code CODE` before it expires.");
            return exit::OK;
        }
    };
    confirm_with(&store, user, &code, state_dir)
}

/// `deployctl mfa confirm USER --code CODE`.
pub fn confirm(user: &str, code: Option<&str>, state_dir: &Path) -> u8 {
    let store = match open_mfa(state_dir, false) {
        Ok(store) => store,
        Err(code) => return code,
    };
    let code = match code_or_prompt(code, user) {
        Ok(code) => code,
        Err(code) => return code,
    };
    confirm_with(&store, user, &code, state_dir)
}

fn confirm_with(store: &MfaStore, user: &str, code: &str, state_dir: &Path) -> u8 {
    let (_, audit) = match crate::audited::open(state_dir) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    match store.confirm(user, code, SystemTime::now()) {
        Ok(_) => {
            crate::audited::record(
                &audit,
                user,
                What::new(AuditAction::MfaVerified).detail("enrollment confirmed"),
                Outcome::ok(),
            );
            eprintln!("MFA enrollment of {user} confirmed.");
            exit::OK
        }
        Err(error) => {
            crate::audited::record(
                &audit,
                user,
                What::new(AuditAction::MfaFailed).detail("enrollment confirmation"),
                Outcome::denied(error.to_string()),
            );
            eprintln!("error: {error}");
            exit::FAILED
        }
    }
}

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

/// Why a submission was not recorded (already audited), and the exit
/// code the CLI reports for it.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub message: String,
    pub exit: u8,
}

impl Refusal {
    fn failed(message: impl Into<String>) -> Refusal {
        Refusal {
            message: message.into(),
            exit: exit::FAILED,
        }
    }
}

/// The one approval check (R9, S1, J1, J6): the run exists and has not
/// ended, the gate exists, the approver is not the initiator and holds the
/// gate's role (and the environment's approver rule), and their one-time
/// code verifies (each code accepted once; lockout after repeated wrong
/// codes, announced as a security event). Then the approval or rejection
/// is recorded in the journal, which is what a waiting run polls.
/// `code` is asked for only once the identity checks passed.
pub fn submit(
    journal: &Journal,
    audit: &deployctl_trail::Trail,
    submission: &Submission<'_>,
    code: impl FnOnce() -> Result<String, Refusal>,
    access_file: &Path,
    state_dir: &Path,
) -> Result<(), Refusal> {
    let Submission {
        run_id,
        gate,
        user,
        decision,
    } = *submission;
    let deny = |action: AuditAction, message: String| {
        crate::audited::record(
            audit,
            user,
            What::new(action).run(run_id).detail(format!("gate {gate}")),
            Outcome::denied(message.clone()),
        );
        Refusal {
            message,
            exit: exit::INVALID_INPUT,
        }
    };
    let run = journal.run(run_id).map_err(|error| Refusal {
        message: error.to_string(),
        exit: exit::INVALID_INPUT,
    })?;
    let loaded =
        deployctl_plan::load(&run.plan_file, run.plan_source.as_bytes()).map_err(|_| {
            Refusal::failed(format!(
                "the plan recorded for run {run_id} no longer validates"
            ))
        })?;
    // The approver's AWS identity goes into the records when the plan
    // calls AWS; an approval itself touches nothing on AWS, so a lookup
    // that fails only loses that detail.
    if let Err(message) = crate::wiring::resolve_aws_caller(&loaded.plan, &audit.caller) {
        eprintln!("warning: {message}; the audit records of this approval name no AWS caller");
    }
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
    let access = Access::load(access_file).map_err(|error| Refusal {
        message: error.to_string(),
        exit: exit::INVALID_INPUT,
    })?;
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
    let store = open_mfa(state_dir, false).map_err(|exit| Refusal {
        message: "the MFA store cannot be opened (see the controller's log)".into(),
        exit,
    })?;
    let code = code()?;
    if let Err(error) = store.verify(user, &code, SystemTime::now()) {
        let message = error.to_string();
        // Failed codes and lockouts are security events (J6): audited
        // as such, and announced on the run's channels that asked.
        if error.is_security_event() {
            alert(&loaded.plan, run_id, gate, &message);
        }
        return Err(deny(AuditAction::MfaFailed, message));
    }
    crate::audited::record(
        audit,
        user,
        What::new(AuditAction::MfaVerified)
            .run(run_id)
            .detail(format!("gate {gate}")),
        Outcome::ok(),
    );
    let recorded = match decision {
        Decision::Approve => journal.record_approval(run_id, gate, user),
        Decision::Reject { reason } => journal.record_rejection(run_id, gate, user, reason),
    };
    recorded.map_err(|error| Refusal::failed(error.to_string()))
}

/// `deployctl approve|reject RUN …` on this machine's journal.
fn submit_here(
    submission: &Submission<'_>,
    code: Option<&str>,
    access_file: &Path,
    state_dir: &Path,
) -> Result<Arc<Journal>, u8> {
    let (journal, audit) = crate::audited::open(state_dir)?;
    let user = submission.user;
    let asked = || {
        code_or_prompt(code, user).map_err(|exit| Refusal {
            message: "no one-time code".into(),
            exit,
        })
    };
    match submit(&journal, &audit, submission, asked, access_file, state_dir) {
        Ok(()) => {
            let _seal = Seal(audit);
            Ok(journal)
        }
        Err(refusal) => {
            eprintln!("error: {}", refusal.message);
            Err(refusal.exit)
        }
    }
}

/// `deployctl approve RUN --gate NAME --user USER [--code CODE]`.
pub fn approve(
    run_id: &str,
    gate: &str,
    user: &str,
    code: Option<&str>,
    access_file: &Path,
    state_dir: &Path,
) -> u8 {
    let submission = Submission {
        run_id,
        gate,
        user,
        decision: Decision::Approve,
    };
    let journal = match submit_here(&submission, code, access_file, state_dir) {
        Ok(journal) => journal,
        Err(code) => return code,
    };
    let approvers = journal.approvers(run_id, gate).unwrap_or_default();
    eprintln!(
        "{user} approved `{gate}` of run {run_id} (approvers so far: {})",
        approvers.join(", ")
    );
    exit::OK
}

/// `deployctl reject RUN --gate NAME --user USER --reason TEXT [--code CODE]`.
pub fn reject(
    run_id: &str,
    gate: &str,
    user: &str,
    reason: &str,
    code: Option<&str>,
    access_file: &Path,
    state_dir: &Path,
) -> u8 {
    let submission = Submission {
        run_id,
        gate,
        user,
        decision: Decision::Reject { reason },
    };
    if let Err(code) = submit_here(&submission, code, access_file, state_dir) {
        return code;
    }
    eprintln!("{user} rejected `{gate}` of run {run_id}: the run rolls back.");
    exit::OK
}

/// Sends a `securityEvent` to the plan's channels that subscribe to it,
/// waiting (bounded) for delivery: the command exits right after.
fn alert(plan: &deployctl_plan::ValidatedPlan, run_id: &str, gate: &str, message: &str) {
    use deployctl_plan::model::RunEvent;
    let Ok(subscriptions) = crate::wiring::notifications(plan, crate::wiring::Mode::Apply) else {
        return;
    };
    let subscribed: Vec<_> = subscriptions
        .into_iter()
        .filter(|subscription| subscription.events.contains(&RunEvent::SecurityEvent))
        .collect();
    if subscribed.is_empty() {
        return;
    }
    let notification = deployctl_adapter::Notification {
        api_version: deployctl_adapter::Notification::API_VERSION,
        kind: deployctl_adapter::Notification::KIND,
        event: RunEvent::SecurityEvent,
        run: run_id.to_string(),
        plan: plan.metadata.name.clone(),
        environment: plan.metadata.environment.clone(),
        stage: None,
        message: format!("approval `{gate}`: {message}"),
        at: deployctl_time::format_ms(deployctl_time::now_ms()),
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async {
        for subscription in &subscribed {
            let delivery = subscription.notifier.notify(&notification);
            match tokio::time::timeout(std::time::Duration::from_secs(10), delivery).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => eprintln!("warning: security alert not delivered: {error}"),
                Err(_) => eprintln!("warning: security alert not delivered: timed out"),
            }
        }
    });
}
