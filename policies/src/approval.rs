//! Four eyes on every approval (R9): whoever started a run can never
//! approve it, and an approver must hold the role the gate asks for.
//!
//! This is the identity half of an approval. The caller also checks the
//! approver's one-time code ([`crate::mfa::MfaStore::verify`]) and, for
//! environment rules such as `approverRole`, [`Access::may`] with
//! [`crate::Action::Approve`].

use crate::access::{Access, Role};

/// Why an approval was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("`{user}` started this run and cannot approve it; another approver must")]
    SelfApproval { user: String },
    #[error("`{user}` is not in the access file and cannot approve anything")]
    UnknownUser { user: String },
    #[error("no approval role `{role}` in the access file")]
    UnknownRole { role: String },
    #[error("`{user}` does not hold approval role `{role}`")]
    MissingRole { user: String, role: String },
}

/// Whether `approver` may approve, in `required_role`, a run started by
/// `initiator`.
pub fn check_approval(
    access: &Access,
    approver: &str,
    initiator: &str,
    required_role: &str,
) -> Result<(), Denied> {
    // Compared without case: names in the access file are lowercase, but
    // an initiator recorded from elsewhere (a git author, an OS login)
    // might not be, and a case difference must not open a loophole.
    if approver.eq_ignore_ascii_case(initiator) {
        return Err(Denied::SelfApproval {
            user: approver.to_string(),
        });
    }
    if !access.is_known(approver) {
        return Err(Denied::UnknownUser {
            user: approver.to_string(),
        });
    }
    if !access.has_approval_role(required_role) {
        return Err(Denied::UnknownRole {
            role: required_role.to_string(),
        });
    }
    if !access.has_role(approver, Role::Approver)
        || !access.holds_approval_role(approver, required_role)
    {
        return Err(Denied::MissingRole {
            user: approver.to_string(),
            role: required_role.to_string(),
        });
    }
    Ok(())
}
