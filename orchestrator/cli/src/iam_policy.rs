//! `deployctl iam-policy FILE`: the least-privilege IAM policy that exactly
//! this plan needs (S6, O10), so each release's deploy role is scoped to
//! the resources it moves. Each adapter crate states the permissions of
//! the calls it makes; this module only picks the adapters the plan uses
//! and joins their statements.

use deployctl_adapter::iam::{Scope, Statement, policy_document};
use deployctl_plan::ValidatedPlan;
use deployctl_plan::model::{Channel, GateCheck, TargetSpec};

/// Every statement the plan's stages, gates and notification channels need.
/// Kinds with no AWS side (sim, Kubernetes) need none; fleets are not yet
/// released on AWS by this build, so they contribute nothing either.
pub fn statements(plan: &ValidatedPlan, scope: &Scope) -> Vec<Statement> {
    let mut statements = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for stage in &plan.stages {
        let target = plan.target_of(stage);
        if !seen.insert(target.name.clone()) {
            continue;
        }
        let artifact = target.artifact.as_ref();
        match &target.spec {
            TargetSpec::Lambda(spec) => statements.extend(deployctl_aws::iam::lambda_statements(
                spec,
                artifact.map(|a| &a.source),
                scope,
            )),
            TargetSpec::CloudFront(spec) => {
                statements.extend(deployctl_aws_cloudfront::iam::statements(spec, scope))
            }
            TargetSpec::Ecs(spec) => {
                statements.extend(deployctl_aws_ecs::iam::statements(spec, scope))
            }
            TargetSpec::Kubernetes(_) | TargetSpec::Fleet(_) | TargetSpec::Sim(_) => {}
        }
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

/// The policy as pretty JSON, ready for `aws iam create-policy
/// --policy-document file://…`.
pub fn render(plan: &ValidatedPlan, scope: &Scope) -> String {
    let document = policy_document(&statements(plan, scope));
    // Strings and lists only: serializing cannot fail.
    serde_json::to_string_pretty(&document).expect("a policy document serializes")
}
