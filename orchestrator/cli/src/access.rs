//! Who may act where (S1): the access file's path, and the operator check
//! of protected environments that `apply`, `rollback`, `kill` and
//! `approve` share (a refusal is audited).

use std::path::{Path, PathBuf};

use deployctl_audit::{Action as AuditAction, Outcome, What};
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
pub fn check_operator(
    action: Action,
    environment: &str,
    access_file: &Path,
    state_dir: &Path,
) -> Result<(), u8> {
    if !access_file.exists() {
        return Ok(());
    }
    let access = load_access(access_file)?;
    let initiator = deployctl_engine::run::initiator();
    let user = initiator_user(&initiator);
    let decision = access.may(user, &action, environment);
    if decision.allowed {
        return Ok(());
    }
    if let Ok((_, audit)) = crate::audited::open(state_dir) {
        crate::audited::record(
            &audit,
            user,
            What::new(AuditAction::PolicyDenied).detail(format!("{action} in {environment}")),
            Outcome::denied(decision.reason.clone()),
        );
    }
    Err(crate::report::refused(decision.reason.to_string()))
}
