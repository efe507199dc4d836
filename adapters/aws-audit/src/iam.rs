//! The IAM permissions the audit trail's AWS side needs (S6): shipping to
//! and verifying against one bucket prefix, and unwrapping the MFA master
//! key with one KMS key. `deployctl iam-policy` adds them when the
//! environment configures them, since they belong to the deploy PC rather
//! than to a plan.

use deployctl_adapter::iam::{Scope, Statement};

use crate::S3Location;

/// Shipping (`S3ObjectLockSink`): checking the bucket's Object Lock, and
/// writing locked objects (setting retention on a put needs
/// `PutObjectRetention`) and reading one back when a re-shipped batch
/// meets an existing object. Verifying (`S3Copy`): listing every version
/// under the prefix and reading them.
pub fn audit_sink_statements(location: &S3Location, scope: &Scope) -> Vec<Statement> {
    let bucket = format!("arn:{}:s3:::{}", scope.partition, location.bucket);
    let objects = format!("{bucket}/{}", location.key("*"));
    vec![
        Statement::new(
            "audit trail bucket",
            [
                "s3:GetBucketObjectLockConfiguration",
                "s3:ListBucketVersions",
            ],
            [bucket],
        ),
        Statement::new(
            "audit trail objects",
            [
                "s3:PutObject",
                "s3:PutObjectRetention",
                "s3:GetObject",
                "s3:GetObjectVersion",
            ],
            [objects],
        ),
    ]
}

/// The MFA master key wrapped by `key` (an ID, ARN or alias). IAM matches
/// key policies on the key's ARN, so an alias or bare ID is widened to the
/// account's keys in the region; name the key by ARN for an exact grant.
pub fn mfa_kms_statements(key: &str, scope: &Scope) -> Vec<Statement> {
    let resource = scope.kms_key(key);
    vec![Statement::new(
        "mfa master key",
        ["kms:GenerateDataKey", "kms:Decrypt", "kms:DescribeKey"],
        [resource],
    )]
}
