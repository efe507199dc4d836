//! Black-box and data-driven tests for `deployctl` and the plan language.
//!
//! One test binary for the whole crate (modules below), because every extra
//! binary costs a link on a 2-core machine. Fixtures live in the
//! repository's `tests/fixtures/`; set `UPDATE_SNAPSHOTS=1` to rewrite the
//! expected outputs after an intended change, then review the diff.

mod approvals;
mod architecture;
mod artifact;
mod audit;
mod audit_s3;
mod aws;
mod aws_signals;
mod cli;
mod cloudfront_e2e;
mod controller;
mod crash;
mod deploy_manifests;
mod ecs_e2e;
mod emulators;
mod fixtures;
mod fleet_e2e;
mod iam_policy;
mod kube_e2e;
mod lambda_e2e;
mod lambda_locks;
mod lambda_support;
mod plan_observe;
mod real_cluster;
mod runs;
mod sandbox;
mod snapshot;
mod team_locks;

use std::path::PathBuf;

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}
