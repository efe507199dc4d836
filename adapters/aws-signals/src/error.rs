//! Why a probe or notifier could not be built from the plan.

/// A plan entry this crate cannot turn into a probe or a notifier. The
/// validator catches most of these; the rest (an ARN's inner shape) are
/// checked here, before anything is sent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SignalsError {
    /// The gate is not a `cloudwatch` gate.
    #[error("a CloudWatch probe was asked for a `{kind}` gate")]
    NotCloudWatch { kind: &'static str },
    /// The gate names neither alarms nor metrics, so it could only ever pass
    /// on nothing.
    #[error("the CloudWatch gate names no alarm and no metric; add `alarms` or `metrics`")]
    NothingToWatch,
    /// The SNS topic ARN is not `arn:PARTITION:sns:REGION:ACCOUNT:TOPIC`.
    #[error(
        "`{arn}` is not an SNS topic ARN ({reason}); expected arn:aws:sns:REGION:ACCOUNT:TOPIC"
    )]
    TopicArn { arn: String, reason: &'static str },
}
