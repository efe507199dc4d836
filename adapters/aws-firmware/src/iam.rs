//! The IAM permissions of the firmware operations (S6), beside the calls.
//! KMS matches key policies on the key's ARN, so a key named by alias or
//! bare ID widens to the account's keys in the region; name keys by ARN
//! for an exact grant.

use deployctl_adapter::iam::{Scope, Statement};

/// `artifact sign --kms-key`: signing with, and reading the public key of, `key`.
pub fn sign_statements(key: &str, scope: &Scope) -> Vec<Statement> {
    vec![Statement::new(
        "firmware signing key",
        ["kms:Sign", "kms:GetPublicKey", "kms:DescribeKey"],
        [scope.kms_key(key)],
    )]
}

/// Verifying against a KMS key's public key (`artifact verify --kms-key`,
/// a fleet stage's preflight).
pub fn verify_statements(key: &str, scope: &Scope) -> Vec<Statement> {
    vec![Statement::new(
        "firmware signing key",
        ["kms:GetPublicKey"],
        [scope.kms_key(key)],
    )]
}

/// `artifact encrypt --kms-key`: a fresh content key per image; `Decrypt`
/// is what a device's role needs to read it.
pub fn content_key_statements(key: &str, scope: &Scope) -> Vec<Statement> {
    vec![Statement::new(
        "firmware content key",
        ["kms:GenerateDataKey", "kms:Decrypt"],
        [scope.kms_key(key)],
    )]
}

/// `artifact publish` to `bucket`, under `path` (the key prefix).
pub fn publish_statements(bucket: &str, path: &str, scope: &Scope) -> Vec<Statement> {
    let bucket_arn = format!("arn:{}:s3:::{bucket}", scope.partition);
    let objects = if path.is_empty() {
        format!("{bucket_arn}/*")
    } else {
        format!("{bucket_arn}/{}/*", path.trim_matches('/'))
    };
    vec![Statement::new(
        "firmware objects",
        ["s3:PutObject"],
        [objects],
    )]
}

/// Reading one published object (a fleet stage's manifest and image).
pub fn read_statements(bucket: &str, key: &str, scope: &Scope) -> Vec<Statement> {
    vec![Statement::new(
        "firmware objects",
        ["s3:GetObject", "s3:GetObjectVersion"],
        [format!("arn:{}:s3:::{bucket}/{key}", scope.partition)],
    )]
}
