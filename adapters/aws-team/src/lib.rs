//! `deployctl-aws-team`: the team backend on S3 (`--backend
//! s3://BUCKET/PREFIX`), where every deploy PC takes its target locks.
//!
//! Start at [`S3Locks`], the [`TeamLocks`](deployctl_adapter::team::TeamLocks)
//! implementation: one JSON object per locked target under
//! `PREFIX/locks/`, named by the SHA-256 of the target's platform
//! identity, written only conditionally (`If-None-Match: *` to take a key
//! nobody ever locked, `If-Match` on the ETag read for everything else),
//! so two PCs racing for one target never both win. Like Terraform's S3
//! backend lock file, with a lease instead of "held until unlocked".
//! [`S3Runs`] keeps the team's run records and stop requests under
//! `PREFIX/runs/` ([`TeamRuns`](deployctl_adapter::team::TeamRuns)).
//! [`S3Enrollments`] is the team's MFA store (one sealed record per
//! person under `PREFIX/mfa/`, every check a conditional write, so a code
//! is accepted once across all PCs) and [`S3WrappedKey`] its KMS-wrapped
//! master key. [`S3TeamTrail`] copies each PC's audit trail under
//! `PREFIX/audit/PC/` and reads every PC's, for `audit show` from any PC.
//! [`iam::statements`] are the S3 actions the backend needs.

pub mod iam;
mod locks;
mod mfa;
mod objects;
mod runs;
mod trail;

pub use locks::{DEFAULT_LEASE, S3Locks};
pub use mfa::{S3Enrollments, S3WrappedKey};
pub use runs::S3Runs;
pub use trail::{S3TeamTrail, TeamRecord};

/// The backend's S3 client: path-style addressing whenever an endpoint is
/// configured (emulators and S3-compatible stores), as every S3 client of
/// deployctl's.
pub fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(deployctl_aws::config::s3_path_style(sdk))
            .build(),
    )
}
