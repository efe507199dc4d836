//! `deployctl-aws-audit`: the audit trail's AWS side (issue 5: R10, S2,
//! S7, J1).
//!
//! - [`S3ObjectLockSink`] ships the trail to `s3://bucket/prefix`, one
//!   object per batch and per checkpoint, each locked in COMPLIANCE mode
//!   for at least a year ([`Retention`]). Start here.
//! - [`S3Copy`] reads that copy back (every version of every object) for
//!   `deployctl audit verify --against s3://…`, through
//!   [`deployctl_audit::verify_against_files`].
//! - [`KmsKeyProvider`] supplies the MFA master key as a KMS-wrapped data
//!   key (a [`deployctl_policy::mfa::KeyProvider`]).
//!
//! Clients come from the standard AWS chain
//! ([`deployctl_aws::config::load`]: one attempt per call, bounded call
//! times; the audit outbox retries). The traits they implement are
//! synchronous; each value owns a small runtime to drive the SDK from any
//! thread (`deployctl_aws::bridge`). Tests run against moto
//! (`tests/moto.sh`) and skip without it.

mod client;
mod copy;
mod error;
pub mod iam;
mod kms;
mod location;
mod retention;
mod sink;

pub use client::s3_client;
pub use copy::{ObjectVersion, S3Copy};
pub use error::AwsAuditError;
pub use kms::{CONTEXT_PURPOSE, KMS_KEY_ENV, KmsKeyProvider, MfaKeySource, WRAPPED_KEY_FILE};
pub use location::{InvalidS3Location, S3Location, TrailKeys};
pub use retention::{MAX_RETENTION_DAYS, MIN_RETENTION_DAYS, Retention};
pub use sink::S3ObjectLockSink;

/// Where the binary reads the sink from: `s3://bucket/prefix`.
pub const SINK_ENV: &str = "DEPLOYCTL_AUDIT_SINK";
/// Days of COMPLIANCE retention (default and minimum 365).
pub const RETENTION_ENV: &str = "DEPLOYCTL_AUDIT_RETENTION_DAYS";
