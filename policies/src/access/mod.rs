//! Who may do what in which environment (S1, J2, J4): the access file's
//! meaning and the one decision function, [`Access::may`].
//!
//! The model is deliberately small and closed:
//!
//! - every person is listed under `users` with base roles ([`Role`]):
//!   `operator` (apply, roll back, kill), `approver` (may be a member of
//!   approval roles) and `auditor` (reads the audit trail);
//! - named approval roles (`roles:`, e.g. `release-approver`) are what plan
//!   approval gates ask for; their members must be approvers;
//! - an environment listed with `operators:` is *protected*: only those
//!   operators may apply, roll back or kill there. Environments not listed
//!   (or listed without `operators:`) allow any operator.
//!
//! Anything not granted is denied, and a person not in the file can do
//! nothing at all.

mod file;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

pub use file::{API_VERSION, AccessError, KIND, MAX_ACCESS_FILE_BYTES, Problem};

/// A person's base roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Applies plans, rolls back, kills runs.
    Operator,
    /// May be a member of named approval roles and approve gates.
    Approver,
    /// Reads the audit trail.
    Auditor,
    /// Lists, removes and unlocks MFA enrollments (a lost phone, a
    /// locked-out approver, someone who left).
    #[serde(rename = "mfa-admin")]
    MfaAdmin,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Operator,
        Role::Approver,
        Role::Auditor,
        Role::MfaAdmin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
            Role::MfaAdmin => "mfa-admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something a person wants to do in an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Apply,
    Rollback,
    Kill,
    /// Hold a run (`pause`) or move it on (`promote`): steering a release
    /// in flight is an operator's, like rolling it back.
    Steer,
    /// Break a team lock whose lease ran out (`deployctl lock break`):
    /// deciding that a run elsewhere is dead is an operator's call.
    BreakLock,
    /// Approve a gate that asks for the named approval role.
    Approve {
        role: String,
    },
    ReadAudit,
    /// List, remove or unlock MFA enrollments (any environment's people).
    AdministerMfa,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Apply => f.write_str("apply"),
            Action::Rollback => f.write_str("roll back"),
            Action::Kill => f.write_str("kill runs"),
            Action::Steer => f.write_str("pause or promote runs"),
            Action::BreakLock => f.write_str("break team locks"),
            Action::Approve { role } => write!(f, "approve as `{role}`"),
            Action::ReadAudit => f.write_str("read the audit trail"),
            Action::AdministerMfa => f.write_str("administer MFA enrollments"),
        }
    }
}

/// The answer to "may this person do this here", with a reason fit for
/// the audit trail and for the person who was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

impl Decision {
    fn allow(reason: impl Into<String>) -> Decision {
        Decision {
            allowed: true,
            reason: reason.into(),
        }
    }

    fn deny(reason: impl Into<String>) -> Decision {
        Decision {
            allowed: false,
            reason: reason.into(),
        }
    }
}

/// What the access file says about one environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvironmentPolicy {
    /// `Some`: protected, and only these operators may change it.
    operators: Option<BTreeSet<String>>,
    /// Approvals here must come from members of this role (as well as the
    /// role the gate asks for).
    approver_role: Option<String>,
    /// `Some`: only these auditors may read this environment's trail.
    auditors: Option<BTreeSet<String>>,
}

impl EnvironmentPolicy {
    /// Whether only named operators may apply, roll back or kill here.
    pub fn is_protected(&self) -> bool {
        self.operators.is_some()
    }

    /// The named operators of a protected environment.
    pub fn operators(&self) -> Option<&BTreeSet<String>> {
        self.operators.as_ref()
    }

    pub fn approver_role(&self) -> Option<&str> {
        self.approver_role.as_deref()
    }

    pub fn auditors(&self) -> Option<&BTreeSet<String>> {
        self.auditors.as_ref()
    }
}

/// A loaded, checked access file. Only [`Access::load`] and
/// [`Access::parse`] make one, so every name it refers to exists and every
/// role member holds the base role the role needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    users: BTreeMap<String, BTreeSet<Role>>,
    /// The AWS identities each person acts as (ARN patterns, `*` globs).
    aws_principals: BTreeMap<String, Vec<String>>,
    environments: BTreeMap<String, EnvironmentPolicy>,
    approval_roles: BTreeMap<String, BTreeSet<String>>,
}

impl Access {
    /// Whether `user` is named in the access file.
    pub fn is_known(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Whether `user` holds the base role `role`.
    pub fn has_role(&self, user: &str, role: Role) -> bool {
        self.users
            .get(user)
            .is_some_and(|roles| roles.contains(&role))
    }

    /// Whether the named approval role exists.
    pub fn has_approval_role(&self, role: &str) -> bool {
        self.approval_roles.contains_key(role)
    }

    /// Whether `user` is a member of the named approval role (and still an
    /// approver).
    pub fn holds_approval_role(&self, user: &str, role: &str) -> bool {
        self.has_role(user, Role::Approver)
            && self
                .approval_roles
                .get(role)
                .is_some_and(|members| members.contains(user))
    }

    /// The policy of a listed environment; `None` means unprotected.
    pub fn environment(&self, name: &str) -> Option<&EnvironmentPolicy> {
        self.environments.get(name)
    }

    /// The AWS identities `user` is listed as acting under (ARN
    /// patterns).
    pub fn aws_principals(&self, user: &str) -> &[String] {
        self.aws_principals.get(user).map_or(&[], Vec::as_slice)
    }

    /// Whether the AWS identity `caller` (an ARN, as STS
    /// GetCallerIdentity says it) belongs to `user`, who acts in
    /// `environment` through a team backend. In a protected environment
    /// the user's identities must be listed and one must match; elsewhere
    /// only a user who listed identities is held to them.
    pub fn may_act_as(&self, user: &str, caller: &str, environment: &str) -> Decision {
        let listed = self.aws_principals(user);
        let protected = self
            .environments
            .get(environment)
            .is_some_and(EnvironmentPolicy::is_protected);
        if listed.iter().any(|pattern| arn_matches(pattern, caller)) {
            return Decision::allow(format!("`{caller}` is one of `{user}`'s AWS identities"));
        }
        if listed.is_empty() && !protected {
            return Decision::allow(format!(
                "`{user}` lists no AWS identities and `{environment}` is not protected"
            ));
        }
        let listed_text = if listed.is_empty() {
            "none are listed".to_owned()
        } else {
            format!("listed: {}", listed.join(", "))
        };
        Decision::deny(format!(
            "this PC acts on AWS as `{caller}`, which is not one of `{user}`'s AWS identities in the access file ({listed_text}); \
             with a team backend an operator of `{environment}` deploys only under an identity listed in `users.{user}.awsPrincipals`"
        ))
    }

    /// Every user named in the file, sorted.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    /// May `user` do `action` in `environment`?
    pub fn may(&self, user: &str, action: &Action, environment: &str) -> Decision {
        if !self.is_known(user) {
            return Decision::deny(format!(
                "`{}` is not in the access file; only the people it names may {action}",
                user.escape_debug()
            ));
        }
        let policy = self.environments.get(environment);
        match action {
            Action::Apply | Action::Rollback | Action::Kill | Action::Steer | Action::BreakLock => {
                self.may_operate(user, action, environment, policy)
            }
            Action::Approve { role } => self.may_approve(user, role, environment, policy),
            Action::ReadAudit => self.may_read_audit(user, environment, policy),
            Action::AdministerMfa if self.has_role(user, Role::MfaAdmin) => {
                Decision::allow(format!("`{user}` holds the `mfa-admin` role"))
            }
            Action::AdministerMfa => Decision::deny(format!(
                "`{}` may not administer MFA enrollments: that needs the `mfa-admin` role in the access file",
                user.escape_debug()
            )),
        }
    }

    fn may_operate(
        &self,
        user: &str,
        action: &Action,
        environment: &str,
        policy: Option<&EnvironmentPolicy>,
    ) -> Decision {
        if !self.has_role(user, Role::Operator) {
            return Decision::deny(format!(
                "`{user}` may not {action}: that needs the operator role"
            ));
        }
        match policy.and_then(|policy| policy.operators.as_ref()) {
            Some(operators) if operators.contains(user) => Decision::allow(format!(
                "`{user}` is a named operator of protected environment `{environment}`"
            )),
            Some(operators) => Decision::deny(format!(
                "`{environment}` is protected: only its named operators ({}) may {action} there",
                list(operators)
            )),
            None => Decision::allow(format!(
                "`{user}` is an operator and `{environment}` is not protected"
            )),
        }
    }

    fn may_approve(
        &self,
        user: &str,
        role: &str,
        environment: &str,
        policy: Option<&EnvironmentPolicy>,
    ) -> Decision {
        if !self.has_approval_role(role) {
            return Decision::deny(format!(
                "no approval role `{}` in the access file, so nobody may approve as it",
                role.escape_debug()
            ));
        }
        if !self.holds_approval_role(user, role) {
            return Decision::deny(format!(
                "`{user}` is not a member of approval role `{role}`"
            ));
        }
        if let Some(required) = policy.and_then(|policy| policy.approver_role.as_deref())
            && !self.holds_approval_role(user, required)
        {
            return Decision::deny(format!(
                "approvals in `{environment}` come from members of `{required}`, and `{user}` is not one"
            ));
        }
        Decision::allow(format!("`{user}` is a member of approval role `{role}`"))
    }

    fn may_read_audit(
        &self,
        user: &str,
        environment: &str,
        policy: Option<&EnvironmentPolicy>,
    ) -> Decision {
        if !self.has_role(user, Role::Auditor) {
            return Decision::deny(format!(
                "`{user}` may not read the audit trail: that needs the auditor role"
            ));
        }
        match policy.and_then(|policy| policy.auditors.as_ref()) {
            Some(auditors) if !auditors.contains(user) => Decision::deny(format!(
                "the audit trail of `{environment}` is readable only by {}",
                list(auditors)
            )),
            _ => Decision::allow(format!("`{user}` is an auditor")),
        }
    }
}

fn list(names: &BTreeSet<String>) -> String {
    if names.is_empty() {
        "nobody".to_string()
    } else {
        names
            .iter()
            .map(|name| format!("`{name}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests;

/// An IAM-style ARN pattern: `*` matches any run of characters (none
/// too), everything else itself.
fn arn_matches(pattern: &str, arn: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = arn.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod arn_tests {
    use super::arn_matches;

    #[test]
    fn stars_match_any_run_of_characters_and_nothing_else_is_loose() {
        let arn = "arn:aws:sts::123456789012:assumed-role/Deployer/alice";
        assert!(arn_matches(arn, arn));
        assert!(arn_matches(
            "arn:aws:sts::*:assumed-role/Deployer/alice",
            arn
        ));
        assert!(arn_matches(
            "arn:aws:sts::123456789012:assumed-role/Deployer/*",
            arn
        ));
        assert!(arn_matches("*", arn));
        assert!(arn_matches("arn:*:sts::*:assumed-role/*/alice", arn));
        assert!(!arn_matches(
            "arn:aws:sts::123456789012:assumed-role/Deployer/al",
            arn
        ));
        assert!(!arn_matches(
            "arn:aws:sts::123456789012:assumed-role/Deployer/alice2",
            arn
        ));
        assert!(!arn_matches("arn:aws:sts::*:assumed-role/Admin/*", arn));
        assert!(!arn_matches("arn:aws:iam::123456789012:user/alice", arn));
        assert!(
            !arn_matches("arn:*:alice*e", "arn:x:alice"),
            "the last part may not overlap"
        );
    }
}
