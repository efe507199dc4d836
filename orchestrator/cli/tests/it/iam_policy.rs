//! `deployctl iam-policy`: the policy a plan needs, printed for review.
//! Whether each adapter's statements cover its real calls is checked in
//! the adapter crates (their `iam` tests record the SDK's calls); here,
//! that the command joins the right adapters' statements for a plan.

use std::process::{Command, Output};

use crate::{repo_root, snapshot};

fn iam_policy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deployctl"))
        .arg("iam-policy")
        .args(args)
        .current_dir(repo_root())
        .env_remove("AWS_REGION")
        .env_remove("DEPLOYCTL_AUDIT_SINK")
        .env_remove("DEPLOYCTL_MFA_KMS_KEY")
        .env_remove("DEPLOYCTL_BACKEND")
        .output()
        .expect("deployctl runs")
}

fn policy(args: &[&str]) -> serde_json::Value {
    let out = iam_policy(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the policy is JSON")
}

fn actions(policy: &serde_json::Value) -> Vec<String> {
    policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .flat_map(|s| s["Action"].as_array().expect("actions").clone())
        .map(|a| a.as_str().expect("an action").to_owned())
        .collect()
}

#[test]
fn a_multi_target_plan_gets_each_adapters_statements_scoped_to_its_resources() {
    let args = [
        "examples/multi-target-release.yaml",
        "--account",
        "123456789012",
    ];
    let out = iam_policy(&args);
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let path = repo_root().join("tests/fixtures/cli/iam-policy-multi-target.json");
    if let Err(mismatch) = snapshot::check(&path, &text) {
        panic!("{mismatch}");
    }
    let policy = policy(&args);
    assert_eq!(policy["Version"], "2012-10-17");
    let text = policy.to_string();
    assert!(text.contains("arn:aws:lambda:us-east-1:123456789012:function:telemetry-ingest"));
    assert!(text.contains("arn:aws:cloudfront::123456789012:distribution/E1PA6795UKMFR9"));
    let actions = actions(&policy);
    for needed in [
        "lambda:UpdateAlias",
        "cloudfront:UpdateDistributionWithStagingConfig",
    ] {
        assert!(actions.iter().any(|a| a == needed), "{needed}: {actions:?}");
    }
    // Nothing that deletes or administers beyond the release: the one IAM
    // action is handing AWS IoT the fleet's download role, and only it.
    for forbidden in [
        "lambda:DeleteFunction",
        "iam:",
        "cloudfront:DeleteDistribution",
    ] {
        assert!(
            !actions
                .iter()
                .any(|a| a.starts_with(forbidden) && a != "iam:PassRole"),
            "{forbidden}: {actions:?}"
        );
    }
    let pass_role: Vec<&serde_json::Value> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["Action"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == "iam:PassRole")
        })
        .collect();
    assert_eq!(pass_role.len(), 1, "{policy:#}");
    assert_eq!(
        pass_role[0]["Resource"],
        serde_json::json!(["arn:aws:iam::123456789012:role/home-hub-firmware-download"])
    );
}

#[test]
fn an_ecs_plan_is_scoped_to_its_service_in_the_plans_region() {
    let policy = policy(&["examples/ecs-blue-green.yaml", "--region", "eu-west-1"]);
    let text = policy.to_string();
    // The plan names us-east-1; the flag is only for entries naming none.
    assert!(
        text.contains("arn:aws:ecs:us-east-1:*:service/"),
        "no account given means `*`: {text}"
    );
    assert!(!text.contains("eu-west-1"), "{text}");
    let actions = actions(&policy);
    assert!(
        actions
            .iter()
            .any(|a| a == "ecs:UpdateServicePrimaryTaskSet")
    );
}

#[test]
fn a_plan_without_aws_targets_needs_no_permissions() {
    let policy = policy(&["examples/quickstart.yaml"]);
    assert_eq!(policy["Statement"], serde_json::json!([]));
}

#[test]
fn a_bad_account_or_plan_is_refused_with_exit_2() {
    let out = iam_policy(&["examples/quickstart.yaml", "--account", "12345"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("12-digit"));
    let out = iam_policy(&["tests/fixtures/plans/does-not-exist.yaml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_deploy_pcs_audit_sink_and_kms_key_are_granted_when_configured() {
    let policy = policy(&[
        "examples/quickstart.yaml",
        "--audit-sink",
        "s3://acme-audit/deployctl",
        "--mfa-kms-key",
        "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    ]);
    let text = policy.to_string();
    assert!(
        text.contains("arn:aws:s3:::acme-audit/deployctl/*"),
        "{text}"
    );
    assert!(text.contains("\"arn:aws:s3:::acme-audit\""), "{text}");
    assert!(
        text.contains(":key/1234abcd-12ab-34cd-56ef-1234567890ab"),
        "{text}"
    );
    let actions = actions(&policy);
    for needed in ["s3:PutObjectRetention", "kms:Decrypt"] {
        assert!(actions.iter().any(|a| a == needed), "{needed}: {actions:?}");
    }
    let out = iam_policy(&[
        "examples/quickstart.yaml",
        "--audit-sink",
        "bucket-without-scheme",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_team_backend_is_granted_on_its_own_prefixes_only() {
    let policy = policy(&[
        "examples/quickstart.yaml",
        "--backend",
        "s3://acme-team/deployctl",
    ]);
    let text = policy.to_string();
    for resource in [
        "arn:aws:s3:::acme-team/deployctl/locks/*",
        "arn:aws:s3:::acme-team/deployctl/runs/*",
        "arn:aws:s3:::acme-team/deployctl/decisions/*",
        "arn:aws:s3:::acme-team/deployctl/mfa/*",
        "arn:aws:s3:::acme-team/deployctl/audit/*",
        "\"arn:aws:s3:::acme-team\"",
    ] {
        assert!(text.contains(resource), "{resource}: {text}");
    }
    assert!(!text.contains("acme-team/*"), "nothing wider: {text}");
    let actions = actions(&policy);
    for needed in ["s3:GetObject", "s3:PutObject", "s3:ListBucket"] {
        assert!(actions.iter().any(|a| a == needed), "{needed}: {actions:?}");
    }
    assert!(
        !actions.iter().any(|a| a == "s3:DeleteObject"),
        "{actions:?}"
    );
    let out = iam_policy(&["examples/quickstart.yaml", "--backend", "team-bucket"]);
    assert_eq!(out.status.code(), Some(2));
}
