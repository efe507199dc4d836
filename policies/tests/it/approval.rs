//! The four-eyes rule for approval gates.

use std::path::Path;

use deployctl_policy::{Access, Action, Denied, check_approval};

const ACCESS: &str = "\
apiVersion: deployctl.io/v1
kind: Access
users:
  alice: {roles: [operator, approver]}
  bob: {roles: [approver]}
  carol: {roles: [approver, auditor]}
  dave: {roles: [operator]}
environments:
  production: {operators: [alice], approverRole: release-approver}
roles:
  release-approver: [alice, bob]
  db-approver: [carol]
";

fn access() -> Access {
    Access::parse(ACCESS.as_bytes(), Path::new("access.yaml")).unwrap()
}

#[test]
fn another_member_of_the_role_may_approve() {
    let access = access();
    assert_eq!(
        check_approval(&access, "bob", "alice", "release-approver"),
        Ok(())
    );
    assert_eq!(
        check_approval(&access, "alice", "dave", "release-approver"),
        Ok(())
    );
}

#[test]
fn the_initiator_never_approves_their_own_run() {
    let access = access();
    // alice holds the role, but started the run.
    let denied = check_approval(&access, "alice", "alice", "release-approver").unwrap_err();
    assert_eq!(
        denied,
        Denied::SelfApproval {
            user: "alice".into()
        }
    );
    assert!(denied.to_string().contains("cannot approve"));
    // Not by a difference in case either.
    assert!(matches!(
        check_approval(&access, "alice", "ALICE", "release-approver"),
        Err(Denied::SelfApproval { .. })
    ));
}

#[test]
fn the_wrong_role_is_refused() {
    let access = access();
    assert_eq!(
        check_approval(&access, "carol", "alice", "release-approver"),
        Err(Denied::MissingRole {
            user: "carol".into(),
            role: "release-approver".into()
        })
    );
    // An operator who is not an approver at all.
    assert!(matches!(
        check_approval(&access, "dave", "alice", "db-approver"),
        Err(Denied::MissingRole { .. })
    ));
    assert_eq!(
        check_approval(&access, "bob", "alice", "no-such-role"),
        Err(Denied::UnknownRole {
            role: "no-such-role".into()
        })
    );
}

#[test]
fn unknown_approvers_are_refused() {
    let access = access();
    assert_eq!(
        check_approval(&access, "mallory", "alice", "release-approver"),
        Err(Denied::UnknownUser {
            user: "mallory".into()
        })
    );
    // Names are exact: the access file's are lowercase.
    assert!(matches!(
        check_approval(&access, "Bob", "alice", "release-approver"),
        Err(Denied::UnknownUser { .. })
    ));
}

#[test]
fn environment_rules_come_from_may() {
    let access = access();
    let approve = |role: &str| Action::Approve { role: role.into() };
    // carol may approve db changes, but not in production, which takes
    // approvals from release-approver members only.
    assert_eq!(
        check_approval(&access, "carol", "alice", "db-approver"),
        Ok(())
    );
    assert!(
        !access
            .may("carol", &approve("db-approver"), "production")
            .allowed
    );
    assert!(
        access
            .may("bob", &approve("release-approver"), "production")
            .allowed
    );
}
