//! The IAM permissions the team backend needs (S6): reading, writing and
//! listing its lock, run, decision, MFA and audit-copy objects under the backend's prefix, nothing else in
//! the bucket. `deployctl iam-policy` adds them when a backend is
//! configured, since they belong to the deploy PC rather than to a plan.

use deployctl_adapter::iam::{Scope, Statement};
use deployctl_aws::s3_location::S3Location;

/// `ListBucket` is limited to the prefix by the `s3:prefix` condition in
/// AWS; a statement here has no conditions, so the listing is granted on
/// the bucket and the objects only under the prefix.
pub fn statements(backend: &S3Location, scope: &Scope) -> Vec<Statement> {
    let bucket = format!("arn:{}:s3:::{}", scope.partition, backend.bucket);
    let locks = format!("{bucket}/{}", backend.key("locks/*"));
    let runs = format!("{bucket}/{}", backend.key("runs/*"));
    let decisions = format!("{bucket}/{}", backend.key("decisions/*"));
    let mfa = format!("{bucket}/{}", backend.key("mfa/*"));
    let audit = format!("{bucket}/{}", backend.key("audit/*"));
    vec![
        Statement::new("team backend listing", ["s3:ListBucket"], [bucket]),
        Statement::new(
            "team backend locks, runs, approvals, MFA enrollments and trail copies",
            ["s3:GetObject", "s3:PutObject"],
            [locks, runs, decisions, mfa, audit],
        ),
    ]
}
