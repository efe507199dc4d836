//! Who may act where (S1): the access file's path, and the operator check
//! of protected environments that `apply`, `rollback`, `kill` and
//! `approve` share (a refusal is audited). With a team backend the check
//! also asks STS which AWS identity this PC acts as: an operator takes
//! team locks and writes run records only under an identity the access
//! file lists as theirs.

use std::path::{Path, PathBuf};

use deployctl_audit::{Action as AuditAction, Outcome, What};
use deployctl_aws_audit::S3Location;
use deployctl_policy::{Access, Action};

pub(crate) use deployctl_approvals::initiator_user;

/// Where the access file is.
pub fn access_path(flag: Option<&Path>, state_dir: &Path) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("DEPLOYCTL_ACCESS_FILE").map(PathBuf::from))
        .unwrap_or_else(|| state_dir.join("access.yaml"))
}

pub(crate) fn load_access(path: &Path) -> Result<Access, u8> {
    Access::load(path).map_err(crate::report::refused)
}

/// S1: in an environment the access file protects, only its named
/// operators may apply, roll back or kill. Without an access file nothing
/// is protected (the sandbox). A refusal is audited.
///
/// With a team `backend`, the operator must also act on AWS under one of
/// the identities the access file lists for them (`awsPrincipals`), so a
/// PC whose credentials are not an operator's cannot take a lock or write
/// a run record; checked before anything, and a refusal is audited.
pub fn check_operator(
    action: Action,
    environment: &str,
    access_file: &Path,
    state_dir: &Path,
    backend: Option<&S3Location>,
) -> Result<(), u8> {
    if !access_file.exists() {
        return Ok(());
    }
    let access = load_access(access_file)?;
    let initiator = deployctl_engine::run::initiator();
    let user = initiator_user(&initiator);
    let mut decision = access.may(user, &action, environment);
    let mut caller = None;
    if decision.allowed && backend.is_some() {
        let arn = crate::team::caller_arn().map_err(|message| {
            crate::report::refused(format!(
                "cannot tell which AWS identity this PC acts as ({message}); with a team backend an operator's identity is checked before any lock is taken"
            ))
        })?;
        decision = access.may_act_as(user, &arn, environment);
        caller = Some(arn);
    }
    if decision.allowed {
        return Ok(());
    }
    if let Ok((_, audit)) = crate::audited::open(state_dir) {
        let detail = match &caller {
            Some(arn) => format!("{action} in {environment} as AWS identity {arn}"),
            None => format!("{action} in {environment}"),
        };
        crate::audited::record(
            &audit,
            user,
            What::new(AuditAction::PolicyDenied).detail(detail),
            Outcome::denied(decision.reason.clone()),
        );
    }
    Err(crate::report::refused(decision.reason.to_string()))
}
