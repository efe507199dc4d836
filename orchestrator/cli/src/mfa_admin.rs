//! `deployctl mfa list|remove|unlock`: MFA administration (a lost phone, a
//! locked-out approver, someone who left). Only a holder of the access
//! file's `mfa-admin` role may; the acting person is the operator identity
//! (`DEPLOYCTL_OPERATOR`, else the login), and every use, allowed or
//! refused, is an audit record.

use std::path::Path;
use std::time::SystemTime;

use deployctl_audit::{Action as AuditAction, Outcome, What};
use deployctl_aws_audit::S3Location;
use deployctl_policy::Action;
use deployctl_policy::mfa::MfaStatus;

use crate::exit;

/// The acting administrator, once the access file allowed them (a refusal
/// is audited and is the error).
fn administrator(access_file: &Path, state_dir: &Path, what: &str) -> Result<String, u8> {
    if !access_file.exists() {
        return Err(crate::report::refused(format!(
            "MFA administration needs an access file naming an `mfa-admin` ({} does not exist)",
            access_file.display()
        )));
    }
    let access = crate::access::load_access(access_file)?;
    let initiator = deployctl_engine::run::initiator();
    let user = crate::access::initiator_user(&initiator).to_string();
    let decision = access.may(&user, &Action::AdministerMfa, "");
    if decision.allowed {
        return Ok(user);
    }
    if let Ok((_, audit)) = crate::audited::open(state_dir) {
        crate::audited::record(
            &audit,
            &user,
            What::new(AuditAction::PolicyDenied).detail(what.to_string()),
            Outcome::denied(decision.reason.clone()),
        );
    }
    Err(crate::report::refused(decision.reason))
}

fn describe(status: &MfaStatus) -> (String, String) {
    let time = |at: &SystemTime| {
        let ms = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        deployctl_time::format_seconds(ms / 1000)
    };
    match status {
        MfaStatus::NotEnrolled => ("none".into(), String::new()),
        MfaStatus::Pending { expires_at } => (
            "pending".into(),
            format!("unconfirmed; expires {}", time(expires_at)),
        ),
        MfaStatus::Expired { expired_at } => (
            "expired".into(),
            format!("unconfirmed since {}; enroll again", time(expired_at)),
        ),
        MfaStatus::Active {
            locked_until: Some(until),
            ..
        } => ("locked".into(), format!("until {}", time(until))),
        MfaStatus::Active { failures, .. } => (
            "active".into(),
            format!(
                "{failures} wrong code{} since the last good one",
                if *failures == 1 { "" } else { "s" }
            ),
        ),
    }
}

/// `deployctl mfa list`.
pub fn list(access_file: &Path, state_dir: &Path, backend: Option<&S3Location>, json: bool) -> u8 {
    let admin = match administrator(access_file, state_dir, "mfa list") {
        Ok(admin) => admin,
        Err(code) => return code,
    };
    let store = match crate::approval_cmds::open_mfa(state_dir, backend, false) {
        Ok(store) => store,
        Err(code) => return code,
    };
    let enrollments = match store.list(SystemTime::now()) {
        Ok(enrollments) => enrollments,
        Err(error) => return crate::report::failed(error),
    };
    if let Ok((_, audit)) = crate::audited::open(state_dir) {
        crate::audited::record(
            &audit,
            &admin,
            What::new(AuditAction::MfaListed).detail(format!("{} enrollments", enrollments.len())),
            Outcome::ok(),
        );
    }
    if json {
        let items: Vec<serde_json::Value> = enrollments
            .iter()
            .map(|(user, status)| {
                let (state, detail) = describe(status);
                serde_json::json!({"user": user, "state": state, "detail": detail})
            })
            .collect();
        outln!(
            "{}",
            serde_json::json!({"apiVersion": "deployctl.io/v1", "kind": "MfaEnrollmentList", "items": items})
        );
    } else {
        for (user, status) in &enrollments {
            let (state, detail) = describe(status);
            outln!("{user:<24} {state:<8} {detail}");
        }
    }
    exit::OK
}

/// `deployctl mfa remove USER`.
pub fn remove(
    user: &str,
    yes: bool,
    access_file: &Path,
    state_dir: &Path,
    backend: Option<&S3Location>,
) -> u8 {
    let admin = match administrator(access_file, state_dir, &format!("mfa remove {user}")) {
        Ok(admin) => admin,
        Err(code) => return code,
    };
    if !crate::engine_cmds::confirm(&format!("Remove the MFA enrollment of {user}?"), yes) {
        return exit::FAILED;
    }
    let store = match crate::approval_cmds::open_mfa(state_dir, backend, false) {
        Ok(store) => store,
        Err(code) => return code,
    };
    administered(
        store.remove(user),
        &admin,
        user,
        AuditAction::MfaRemoved,
        state_dir,
    )
}

/// `deployctl mfa unlock USER`.
pub fn unlock(
    user: &str,
    access_file: &Path,
    state_dir: &Path,
    backend: Option<&S3Location>,
) -> u8 {
    let admin = match administrator(access_file, state_dir, &format!("mfa unlock {user}")) {
        Ok(admin) => admin,
        Err(code) => return code,
    };
    let store = match crate::approval_cmds::open_mfa(state_dir, backend, false) {
        Ok(store) => store,
        Err(code) => return code,
    };
    administered(
        store.unlock(user),
        &admin,
        user,
        AuditAction::MfaUnlocked,
        state_dir,
    )
}

/// Audits and reports what a removal or unlock did.
fn administered(
    done: Result<bool, deployctl_policy::mfa::MfaError>,
    admin: &str,
    user: &str,
    action: AuditAction,
    state_dir: &Path,
) -> u8 {
    let verb = if action == AuditAction::MfaRemoved {
        "removed"
    } else {
        "unlocked"
    };
    match done {
        Ok(true) => {
            if let Ok((_, audit)) = crate::audited::open(state_dir) {
                crate::audited::record(
                    &audit,
                    admin,
                    What::new(action).target(user),
                    Outcome::ok(),
                );
            }
            eprintln!("MFA enrollment of {user} {verb} by {admin}.");
            exit::OK
        }
        Ok(false) => {
            crate::report::refused(format!("`{user}` has no MFA enrollment; nothing {verb}"))
        }
        Err(error) => crate::report::failed(error),
    }
}
