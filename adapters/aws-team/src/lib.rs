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
//! [`iam::statements`] are the S3 actions the backend needs.

pub mod iam;
mod locks;

pub use locks::{DEFAULT_LEASE, S3Locks};
