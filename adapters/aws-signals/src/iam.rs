//! The IAM permissions CloudWatch gates and SNS notifications need (S6).

use deployctl_adapter::iam::{Scope, Statement};

/// Reading the gate's alarms (by ARN) and metrics (metric reads have no
/// resource-level permissions).
pub fn cloudwatch_gate_statements(
    region: Option<&str>,
    alarms: &[String],
    has_metrics: bool,
    scope: &Scope,
) -> Vec<Statement> {
    let region = scope.region(region);
    let mut statements = Vec::new();
    if !alarms.is_empty() {
        statements.push(Statement::new(
            "cloudwatch gate alarms",
            ["cloudwatch:DescribeAlarms"],
            alarms
                .iter()
                .map(|alarm| scope.arn("cloudwatch", region, &format!("alarm:{alarm}"))),
        ));
    }
    if has_metrics {
        statements.push(Statement::new(
            "cloudwatch metric reads",
            ["cloudwatch:GetMetricData"],
            ["*"],
        ));
    }
    statements
}

/// Publishing to one topic.
pub fn sns_statement(topic_arn: &str) -> Statement {
    Statement::new("sns notifications", ["sns:Publish"], [topic_arn])
}
