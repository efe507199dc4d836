use std::path::Path;

use super::*;

const EXAMPLE: &str = "\
apiVersion: deployctl.io/v1
kind: Access
users:
  alice: {roles: [operator]}
  bob: {roles: [approver]}
  carol: {roles: [approver, auditor]}
  dave: {roles: [operator, approver]}
  erin: {roles: [auditor]}
  frank: {roles: [approver]}
environments:
  production:
    operators: [alice]
    approverRole: release-approver
    auditors: [carol]
  staging: {}
roles:
  release-approver: [bob, carol]
  qa-approver: [frank, dave]
";

fn access() -> Access {
    Access::parse(EXAMPLE.as_bytes(), Path::new("access.yaml")).unwrap()
}

fn errors(text: &str) -> String {
    Access::parse(text.as_bytes(), Path::new("access.yaml"))
        .unwrap_err()
        .to_string()
}

fn approve(role: &str) -> Action {
    Action::Approve {
        role: role.to_string(),
    }
}

// --- decisions ---------------------------------------------------------

#[test]
fn unknown_users_are_denied_everything() {
    let access = access();
    for action in [
        Action::Apply,
        Action::Rollback,
        Action::Kill,
        approve("release-approver"),
        Action::ReadAudit,
    ] {
        for environment in ["production", "staging", "dev"] {
            let decision = access.may("mallory", &action, environment);
            assert!(!decision.allowed, "{action} in {environment}");
            assert!(decision.reason.contains("not in the access file"));
        }
    }
}

#[test]
fn protected_environments_allow_only_their_named_operators() {
    let access = access();
    for action in [Action::Apply, Action::Rollback, Action::Kill] {
        assert!(access.may("alice", &action, "production").allowed);
        let dave = access.may("dave", &action, "production");
        assert!(!dave.allowed, "dave is an operator, but not production's");
        assert!(dave.reason.contains("protected"), "{}", dave.reason);
        assert!(dave.reason.contains("`alice`"), "{}", dave.reason);
    }
}

#[test]
fn unprotected_environments_allow_any_operator() {
    let access = access();
    for environment in ["staging", "not-listed-at-all"] {
        for action in [Action::Apply, Action::Rollback, Action::Kill] {
            assert!(access.may("alice", &action, environment).allowed);
            assert!(access.may("dave", &action, environment).allowed);
        }
    }
}

#[test]
fn only_operators_apply_roll_back_or_kill() {
    let access = access();
    for user in ["bob", "carol", "erin"] {
        for action in [Action::Apply, Action::Rollback, Action::Kill] {
            let decision = access.may(user, &action, "staging");
            assert!(!decision.allowed, "{user} {action}");
            assert!(decision.reason.contains("operator role"));
        }
    }
}

#[test]
fn approvals_need_membership_of_the_role() {
    let access = access();
    assert!(
        access
            .may("frank", &approve("qa-approver"), "staging")
            .allowed
    );
    let bob = access.may("bob", &approve("qa-approver"), "staging");
    assert!(!bob.allowed);
    assert!(bob.reason.contains("not a member"));
    // An operator who is not an approver cannot approve.
    assert!(
        !access
            .may("alice", &approve("release-approver"), "dev")
            .allowed
    );
    let unknown = access.may("bob", &approve("no-such-role"), "staging");
    assert!(!unknown.allowed);
    assert!(unknown.reason.contains("no approval role"));
}

#[test]
fn an_environments_approver_role_restricts_its_approvals() {
    let access = access();
    assert!(
        access
            .may("bob", &approve("release-approver"), "production")
            .allowed
    );
    // frank holds the gate's role, but production takes approvals only
    // from release-approver members.
    let frank = access.may("frank", &approve("qa-approver"), "production");
    assert!(!frank.allowed);
    assert!(
        frank.reason.contains("release-approver"),
        "{}",
        frank.reason
    );
    assert!(
        access
            .may("frank", &approve("qa-approver"), "staging")
            .allowed
    );
}

#[test]
fn only_auditors_read_the_audit_trail() {
    let access = access();
    assert!(access.may("erin", &Action::ReadAudit, "staging").allowed);
    assert!(
        access
            .may("carol", &Action::ReadAudit, "production")
            .allowed
    );
    for user in ["alice", "bob", "dave"] {
        assert!(!access.may(user, &Action::ReadAudit, "staging").allowed);
    }
}

#[test]
fn an_environments_auditors_list_restricts_its_trail() {
    let access = access();
    let erin = access.may("erin", &Action::ReadAudit, "production");
    assert!(!erin.allowed, "erin is an auditor but not production's");
    assert!(erin.reason.contains("`carol`"));
}

#[test]
fn an_empty_operators_list_freezes_an_environment() {
    let text = EXAMPLE.replace("operators: [alice]", "operators: []");
    let access = Access::parse(text.as_bytes(), Path::new("a.yaml")).unwrap();
    let decision = access.may("alice", &Action::Apply, "production");
    assert!(!decision.allowed);
    assert!(decision.reason.contains("nobody"));
}

#[test]
fn the_model_reads_as_written() {
    let access = access();
    assert!(access.is_known("alice") && !access.is_known("Alice"));
    assert!(access.has_role("carol", Role::Auditor));
    assert!(access.holds_approval_role("carol", "release-approver"));
    let production = access.environment("production").unwrap();
    assert!(production.is_protected());
    assert_eq!(production.approver_role(), Some("release-approver"));
    assert!(!access.environment("staging").unwrap().is_protected());
    assert_eq!(access.users().count(), 6);
}

// --- the file ----------------------------------------------------------

#[test]
fn yaml_errors_carry_line_and_column() {
    let text = EXAMPLE.replace(
        "  bob: {roles: [approver]}",
        "  bob: {roles: [approver], rloes: []}",
    );
    let message = errors(&text);
    assert!(message.starts_with("access.yaml:5:"), "{message}");
    assert!(message.contains("rloes"), "{message}");
}

#[test]
fn unknown_base_roles_are_rejected_with_the_accepted_ones() {
    let message = errors(&EXAMPLE.replace("alice: {roles: [operator]}", "alice: {roles: [admin]}"));
    assert!(message.starts_with("access.yaml:4:"), "{message}");
    assert!(message.contains("operator"), "{message}");
}

#[test]
fn duplicate_keys_and_wrong_types_are_rejected() {
    let duplicate = EXAMPLE.replace("  erin:", "  alice: {roles: [auditor]}\n  erin:");
    let message = errors(&duplicate);
    assert!(message.contains("access.yaml:8:"), "{message}");
    assert!(message.contains("duplicate"), "{message}");
    let message = errors(&EXAMPLE.replace("  staging: {}", "  staging: {operators: yes}"));
    assert!(message.starts_with("access.yaml:15:24:"), "{message}");
}

#[test]
fn the_document_kind_is_checked_first() {
    let message = errors(&EXAMPLE.replace("kind: Access", "kind: Plan"));
    assert_eq!(
        message,
        "access.yaml:2:7: `Plan` is not an access file; expected `kind: Access`"
    );
    let message = errors(&EXAMPLE.replace("deployctl.io/v1", "apps/v1"));
    assert!(message.starts_with("access.yaml:1:13:"), "{message}");
    assert!(errors("users: {}\n").contains("missing `apiVersion"));
    assert!(errors("# nothing\n\n").contains("empty"));
    assert!(errors("- a\n- b\n").starts_with("access.yaml:1:1:"));
}

#[test]
fn references_must_resolve_and_hold_the_needed_base_role() {
    let text = EXAMPLE
        .replace("operators: [alice]", "operators: [alice, bob, zed]")
        .replace(
            "approverRole: release-approver",
            "approverRole: release-approvers",
        )
        .replace("auditors: [carol]", "auditors: [carol, alice]")
        .replace(
            "qa-approver: [frank, dave]",
            "qa-approver: [frank, alice, frank]",
        );
    let message = errors(&text);
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines.len(), 6, "{message}");
    assert!(lines[0].starts_with(
        "access.yaml:12:24: `bob` is listed here but does not hold the operator role"
    ));
    assert!(lines[1].starts_with("access.yaml:12:29: `zed` is not a user"));
    assert!(lines[2].starts_with("access.yaml:13:19: no approval role `release-approvers`"));
    assert!(lines[2].contains("`qa-approver`, `release-approver`"));
    assert!(lines[3].starts_with(
        "access.yaml:14:23: `alice` is listed here but does not hold the auditor role"
    ));
    assert!(
        lines[4].contains(
            "access.yaml:18:24: `alice` is listed here but does not hold the approver role"
        )
    );
    assert!(lines[5].contains("access.yaml:18:31: `frank` is listed twice"));
}

#[test]
fn names_are_checked() {
    let message = errors(&EXAMPLE.replace("  erin:", "  Erin:"));
    assert!(
        message.contains("access.yaml:8:3: `Erin` is not a valid user name"),
        "{message}"
    );
    let message = errors(&EXAMPLE.replace("  staging: {}", "  Staging_1: {}"));
    assert!(message.contains("access.yaml:15:3:"), "{message}");
    let message = errors(&EXAMPLE.replace("qa-approver:", "operator:"));
    assert!(message.contains("is a base role"), "{message}");
}

#[test]
fn users_need_a_role_and_roles_need_members() {
    let message = errors(&EXAMPLE.replace("erin: {roles: [auditor]}", "erin: {roles: []}"));
    assert!(
        message.contains("access.yaml:8:3: `erin` has no roles"),
        "{message}"
    );
    let message = errors(&EXAMPLE.replace("qa-approver: [frank, dave]", "qa-approver: []"));
    assert!(message.contains("has no members"), "{message}");
    let message = errors(&EXAMPLE.replace("[approver, auditor]", "[auditor, auditor, approver]"));
    assert!(
        message.contains("access.yaml:6:28: role `auditor` is listed twice"),
        "{message}"
    );
}

#[test]
fn load_reads_files_and_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.yaml");
    std::fs::write(&path, EXAMPLE).unwrap();
    assert_eq!(Access::load(&path).unwrap(), access());

    let missing = Access::load(&dir.path().join("nope.yaml")).unwrap_err();
    assert!(matches!(missing, AccessError::Read { .. }));

    std::fs::write(
        &path,
        b"apiVersion: deployctl.io/v1\nkind: Access\nusers: {a\xff: x}\n",
    )
    .unwrap();
    let message = Access::load(&path).unwrap_err().to_string();
    assert!(message.contains("access.yaml:3:10:"), "{message}");
    assert!(message.contains("UTF-8"), "{message}");

    std::fs::write(&path, vec![b'#'; MAX_ACCESS_FILE_BYTES + 1]).unwrap();
    assert!(
        Access::load(&path)
            .unwrap_err()
            .to_string()
            .contains("refused")
    );
}

#[test]
fn alias_bombs_are_bounded() {
    let mut text = String::from(
        "apiVersion: deployctl.io/v1\nkind: Access\nx0: &a0 [a, a, a, a, a, a, a, a, a]\n",
    );
    for level in 1..10 {
        let previous = level - 1;
        text.push_str(&format!(
            "x{level}: &a{level} [*a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}]\n"
        ));
    }
    // Refused (unknown fields or budget), quickly, without exhausting memory.
    assert!(Access::parse(text.as_bytes(), Path::new("bomb.yaml")).is_err());
}

#[test]
fn with_a_team_backend_an_operator_acts_only_under_a_listed_aws_identity() {
    let text = EXAMPLE.replace(
        "  alice: {roles: [operator]}",
        "  alice:\n    roles: [operator]\n    awsPrincipals: [\"arn:aws:sts::123456789012:assumed-role/Deployer/alice\", \"arn:aws:iam::*:user/alice\"]",
    );
    let access = Access::parse(text.as_bytes(), Path::new("access.yaml")).unwrap();
    let hers = "arn:aws:sts::123456789012:assumed-role/Deployer/alice";
    assert!(access.may_act_as("alice", hers, "production").allowed);
    assert!(
        access
            .may_act_as(
                "alice",
                "arn:aws:iam::999999999999:user/alice",
                "production"
            )
            .allowed
    );
    let other = access.may_act_as(
        "alice",
        "arn:aws:sts::123456789012:assumed-role/Deployer/mallory",
        "production",
    );
    assert!(!other.allowed);
    assert!(
        other.reason.contains("users.alice.awsPrincipals"),
        "{}",
        other.reason
    );
    // Listed identities hold everywhere; in an unprotected environment an
    // operator who listed none is not held to any.
    assert!(
        !access
            .may_act_as("alice", "arn:aws:iam::1:user/x", "staging")
            .allowed
    );
    assert!(
        access
            .may_act_as("dave", "arn:aws:iam::1:user/x", "staging")
            .allowed
    );
    // In a protected environment, listing none is not enough.
    let unlisted = access.may_act_as("dave", "arn:aws:iam::1:user/dave", "production");
    assert!(!unlisted.allowed);
    assert!(
        unlisted.reason.contains("none are listed"),
        "{}",
        unlisted.reason
    );
}

#[test]
fn an_aws_principal_that_is_not_an_arn_is_refused_where_it_is_written() {
    let text = EXAMPLE.replace(
        "  alice: {roles: [operator]}",
        "  alice: {roles: [operator], awsPrincipals: [alice]}",
    );
    let message = errors(&text);
    assert!(message.contains("access.yaml:4:46:"), "{message}");
    assert!(message.contains("not an AWS principal ARN"), "{message}");
}
