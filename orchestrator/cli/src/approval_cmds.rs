//! `deployctl mfa enroll|confirm`, `deployctl approve`, `deployctl reject`:
//! MFA-verified approvals with four eyes (R9, S1, J1, J6, O11).
//!
//! Who is who comes from the access file (`--access`, env
//! `DEPLOYCTL_ACCESS_FILE`, default `<state-dir>/access.yaml`); MFA secrets
//! live encrypted in `<state-dir>/mfa.sqlite3`, or with a team backend in
//! the backend (`PREFIX/mfa/`, shared by every PC), under a key from
//! `DEPLOYCTL_MFA_KMS_KEY`, `DEPLOYCTL_MFA_KEY` (hex or base64) or
//! `<state-dir>/mfa.key` (0600, created on first enrollment; not with a
//! backend). Every grant, refusal and failed code is an
//! audit record.

use std::io::IsTerminal;
use std::path::Path;
use std::time::SystemTime;

use deployctl_approvals::{Decision, Refusal, Submission, Surroundings, submit};
use deployctl_audit::{Action as AuditAction, Outcome, What};
use deployctl_aws_audit::{MfaKeySource, S3Location};
use deployctl_plan::ValidatedPlan;
use deployctl_policy::mfa::{Background, KeySource, create_key_file};
use deployctl_policy::{MfaPolicy, MfaStore};
use deployctl_trail::Trail;

use crate::access::load_access;
use crate::audited::Seal;
use crate::exit;

/// The MFA master key: `DEPLOYCTL_MFA_KMS_KEY` (a KMS key ID, ARN or
/// alias: a data key wrapped by KMS in `<state-dir>/mfa.key.kms`, made on
/// the first enrollment, unwrapped on every use), else `DEPLOYCTL_MFA_KEY`,
/// else `<state-dir>/mfa.key` (made on the first enrollment).
///
/// With a team backend the store is shared by every deploy PC, so is its
/// key: the KMS-wrapped key lives in the backend (`mfa/key.kms.json`), or
/// every PC is given the same `DEPLOYCTL_MFA_KEY`; a key file of one PC
/// would lock the others out, so it is refused.
fn key_source(
    state_dir: &Path,
    shared: Option<&deployctl_aws_team::S3Enrollments>,
    create: bool,
) -> Result<MfaKeySource, u8> {
    let kms_key = std::env::var(deployctl_aws_audit::KMS_KEY_ENV)
        .ok()
        .filter(|k| !k.trim().is_empty());
    if let Some(kms_key) = kms_key {
        if std::env::var_os("DEPLOYCTL_MFA_KEY").is_some() {
            return Err(crate::report::refused(format!(
                "both {} and DEPLOYCTL_MFA_KEY are set; the MFA key comes from one of them",
                deployctl_aws_audit::KMS_KEY_ENV
            )));
        }
        let wrapped = state_dir.join(deployctl_aws_audit::WRAPPED_KEY_FILE);
        return match deployctl_aws_audit::KmsKeyProvider::open(kms_key.trim(), wrapped) {
            Ok(provider) => {
                let provider = match shared.map(deployctl_aws_team::S3Enrollments::wrapped_key) {
                    None => provider,
                    Some(Ok(place)) => provider.with_place(Box::new(place)),
                    Some(Err(error)) => {
                        return Err(crate::report::failed(format!(
                            "the MFA key in the team backend: {error}"
                        )));
                    }
                };
                Ok(MfaKeySource::Kms(provider.create_if_missing(create)))
            }
            Err(error) => Err(crate::report::failed(format!(
                "the MFA key from KMS: {error}"
            ))),
        };
    }
    if std::env::var_os("DEPLOYCTL_MFA_KEY").is_some() {
        return Ok(MfaKeySource::Local(KeySource::Env(
            "DEPLOYCTL_MFA_KEY".into(),
        )));
    }
    if shared.is_some() {
        return Err(crate::report::refused(format!(
            "with a team backend the MFA store is shared by every deploy PC, and so must its key be: \
             set {} to a KMS key every PC may use (recommended), or give every PC the same DEPLOYCTL_MFA_KEY",
            deployctl_aws_audit::KMS_KEY_ENV
        )));
    }
    let path = state_dir.join("mfa.key");
    if !path.exists()
        && create
        && let Err(error) = std::fs::create_dir_all(state_dir)
            .map_err(|e| e.to_string())
            .and_then(|()| create_key_file(&path).map_err(|e| e.to_string()))
    {
        return Err(crate::report::failed(format!(
            "cannot create the MFA key {}: {error}",
            path.display()
        )));
    }
    Ok(MfaKeySource::Local(KeySource::File(path)))
}

/// This PC's MFA store, or with a team backend the team's (one record per
/// person in the backend, each code accepted once across every PC).
pub(crate) fn open_mfa(
    state_dir: &Path,
    backend: Option<&S3Location>,
    create_key: bool,
) -> Result<MfaStore, u8> {
    let Some(backend) = backend else {
        let keys = key_source(state_dir, None, create_key)?;
        return MfaStore::open(state_dir, &keys, MfaPolicy::default())
            .map_err(crate::report::failed);
    };
    let shared = crate::team::mfa_enrollments(backend).map_err(crate::report::failed)?;
    let keys = key_source(state_dir, Some(&shared), create_key)?;
    MfaStore::with_enrollments(Box::new(shared), &keys, MfaPolicy::default())
        .map_err(crate::report::failed)
}

/// The code from `--code`, or asked for on a terminal.
pub(crate) fn code_or_prompt(code: Option<&str>, user: &str) -> Result<String, u8> {
    if let Some(code) = code {
        return Ok(code.to_string());
    }
    if !std::io::stdin().is_terminal() {
        return Err(crate::report::refused(
            "pass the one-time code with --code (no terminal to ask on)",
        ));
    }
    eprint!("MFA code for {user}: ");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|_| exit::FAILED)?;
    Ok(line.trim().to_string())
}

/// `deployctl mfa enroll USER [--code CODE]`.
pub fn enroll(
    user: &str,
    code: Option<&str>,
    access: &Path,
    state_dir: &Path,
    backend: Option<&S3Location>,
) -> u8 {
    let access = match load_access(access) {
        Ok(access) => access,
        Err(code) => return code,
    };
    if !access.is_known(user) {
        return crate::report::refused(format!(
            "`{user}` is not in the access file; add them before enrolling"
        ));
    }
    let store = match open_mfa(state_dir, backend, true) {
        Ok(store) => store,
        Err(code) => return code,
    };
    let enrollment = match store.enroll(user, SystemTime::now()) {
        Ok(enrollment) => enrollment,
        Err(error) => {
            return crate::report::failed(error);
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
pub fn confirm(
    user: &str,
    code: Option<&str>,
    state_dir: &Path,
    backend: Option<&S3Location>,
) -> u8 {
    let store = match open_mfa(state_dir, backend, false) {
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
            // A wrong code is refused as `approve` refuses it (exit 2).
            if error.is_plumbing() {
                crate::report::failed(error)
            } else {
                crate::report::refused(error)
            }
        }
    }
}

/// What the approval check needs from this binary: the approver's AWS
/// identity (STS, when the plan calls AWS), the MFA store (its key may
/// come from KMS) and the run's alert channels (SNS, webhooks).
pub(crate) struct Around<'a> {
    pub state_dir: &'a Path,
    /// The team backend, whose MFA store every PC shares.
    pub backend: Option<&'a S3Location>,
}

impl Surroundings for Around<'_> {
    fn identify(&self, plan: &ValidatedPlan, trail: &Trail) {
        // An approval itself touches nothing on AWS, so a lookup that
        // fails only loses that detail.
        if let Err(message) = crate::wiring::resolve_aws_caller(plan, &trail.caller) {
            eprintln!("warning: {message}; the audit records of this approval name no AWS caller");
        }
    }

    fn mfa_store(&self) -> Result<MfaStore, String> {
        // `open_mfa` has said why on stderr (the controller's log).
        open_mfa(self.state_dir, self.backend, false).map_err(|_| "see the error above".to_string())
    }

    fn alert(&self, plan: &ValidatedPlan, run_id: &str, gate: &str, message: &str) {
        alert(plan, run_id, gate, message);
    }
}

/// Where an approval command runs: its access file, state directory and
/// team backend.
#[derive(Clone, Copy)]
pub struct Site<'a> {
    pub access_file: &'a Path,
    pub state_dir: &'a Path,
    pub backend: Option<&'a S3Location>,
}

/// `deployctl approve|reject RUN …`: kept in this machine's journal, or,
/// for a run another PC drives, in the team backend, which that PC reads.
/// The approvers of the gate so far.
fn submit_here(
    submission: &Submission<'_>,
    code: Option<&str>,
    site: &Site<'_>,
) -> Result<Vec<String>, u8> {
    let Site {
        access_file,
        state_dir,
        backend,
    } = *site;
    let (journal, audit) = crate::audited::open(state_dir)?;
    let team = match backend {
        Some(backend) if journal.run(submission.run_id).is_err() => {
            Some(crate::team_runs::TeamLedger::connect(backend)?)
        }
        _ => None,
    };
    let ledger: &dyn deployctl_approvals::Ledger = match &team {
        Some(team) => team,
        None => journal.as_ref(),
    };
    let user = submission.user;
    let asked = || {
        code_or_prompt(code, user).map_err(|code| {
            if code == exit::INVALID_INPUT {
                Refusal::Denied("no one-time code".into())
            } else {
                Refusal::Failed("no one-time code".into())
            }
        })
    };
    let around = Around { state_dir, backend };
    match submit(ledger, &audit, submission, asked, access_file, &around) {
        Ok(()) => {
            let _seal = Seal(audit);
            Ok(ledger
                .approvers(submission.run_id, submission.gate)
                .unwrap_or_default())
        }
        Err(refusal) => Err(match refusal {
            Refusal::Denied(_) | Refusal::AlreadyDone(_) => crate::report::refused(refusal),
            Refusal::Failed(_) => crate::report::failed(refusal),
        }),
    }
}

/// `deployctl approve RUN --gate NAME --user USER [--code CODE]`.
pub fn approve(run_id: &str, gate: &str, user: &str, code: Option<&str>, site: &Site<'_>) -> u8 {
    let submission = Submission {
        run_id,
        gate,
        user,
        decision: Decision::Approve,
    };
    let approvers = match submit_here(&submission, code, site) {
        Ok(approvers) => approvers,
        Err(code) => return code,
    };
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
    site: &Site<'_>,
) -> u8 {
    let submission = Submission {
        run_id,
        gate,
        user,
        decision: Decision::Reject { reason },
    };
    if let Err(code) = submit_here(&submission, code, site) {
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
