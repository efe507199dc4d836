//! `deployctl iam-policy FILE`: the least-privilege IAM policy that exactly
//! this plan needs (S6, O10), so each release's deploy role is scoped to
//! the resources it moves. Each adapter crate states the permissions of
//! the calls it makes; this module only asks each target's kind
//! (`registry`) and each gate and channel for theirs, and joins them.

use deployctl_adapter::iam::{Scope, Statement, policy_document};
use deployctl_aws_audit::S3Location;
use deployctl_plan::{Loaded, ValidatedPlan};

use crate::{exit, registry};
use deployctl_plan::model::{Channel, GateCheck};

/// Every statement the plan's stages, gates and notification channels need.
/// Kinds with no AWS side (sim, Kubernetes) need none; fleets are not yet
/// released on AWS by this build, so they contribute nothing either (each
/// kind's entry in `registry` says so).
pub fn statements(plan: &ValidatedPlan, scope: &Scope) -> Vec<Statement> {
    let mut statements = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for stage in &plan.stages {
        let target = plan.target_of(stage);
        if !seen.insert(target.name.clone()) {
            continue;
        }
        statements.extend(registry::lookup(target).iam_statements(scope));
    }
    for gate in plan.gates.values() {
        if let GateCheck::CloudWatch {
            region,
            alarms,
            metrics,
        } = &gate.check
        {
            statements.extend(deployctl_aws_signals::iam::cloudwatch_gate_statements(
                region.as_deref(),
                alarms,
                !metrics.is_empty(),
                scope,
            ));
        }
    }
    for notification in &plan.notifications {
        if let Channel::Sns { topic_arn } = &notification.channel {
            statements.push(deployctl_aws_signals::iam::sns_statement(topic_arn));
        }
    }
    statements
}

/// What the command was told besides the plan.
pub struct Flags<'a> {
    pub account: Option<&'a str>,
    pub partition: &'a str,
    pub region: &'a str,
    /// The deploy PC's audit sink, `s3://bucket/prefix`.
    pub audit_sink: Option<&'a str>,
    /// The deploy PC's KMS key for the MFA master key.
    pub mfa_kms_key: Option<&'a str>,
    /// The team backend (`--backend`), already checked.
    pub backend: Option<&'a S3Location>,
}

/// `deployctl iam-policy`: prints the policy as pretty JSON, ready for
/// `aws iam create-policy --policy-document file://…`. `load` reads and
/// validates the plan, printing its diagnostics.
pub fn command(file: &str, flags: &Flags<'_>, load: impl FnOnce(&str) -> Option<Loaded>) -> u8 {
    if let Some(account) = flags.account
        && (account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()))
    {
        return crate::report::refused(format!(
            "--account {account:?} is not a 12-digit AWS account ID"
        ));
    }
    let sink = match flags.audit_sink.map(str::parse::<S3Location>).transpose() {
        Ok(sink) => sink,
        Err(error) => {
            return crate::report::refused(format!(
                "--audit-sink (or DEPLOYCTL_AUDIT_SINK): {error}"
            ));
        }
    };
    let Some(loaded) = load(file) else {
        return exit::INVALID_INPUT;
    };
    let scope = Scope {
        partition: flags.partition.to_owned(),
        account: flags.account.unwrap_or("*").to_owned(),
        default_region: flags.region.to_owned(),
    };
    let mut statements = statements(&loaded.plan, &scope);
    if let Some(sink) = &sink {
        statements.extend(deployctl_aws_audit::iam::audit_sink_statements(
            sink, &scope,
        ));
    }
    if let Some(key) = flags.mfa_kms_key {
        statements.extend(deployctl_aws_audit::iam::mfa_kms_statements(key, &scope));
    }
    if let Some(backend) = flags.backend {
        statements.extend(deployctl_aws_team::iam::statements(backend, &scope));
    }
    let document = policy_document(&statements);
    // Strings and lists only: serializing cannot fail.
    outln!(
        "{}",
        serde_json::to_string_pretty(&document).expect("a policy document serializes")
    );
    exit::OK
}
