//! `deployctl-kube-release`: the Kubernetes edge of deployctl's in-cluster
//! GitOps controller (R12). It knows the `Release` custom resource and the
//! API server, and nothing of the engine: the binary's `controller` module
//! joins the two.
//!
//! Start at [`crd::Release`] (the wire format: `spec.plan` holds the plan's
//! YAML text, `spec.approvals` the approvals people submit, `status` what
//! the controller reports), then [`releases::Releases`] (reads, watches,
//! and writes guarded by `resourceVersion`), [`install::ensure_crd`] and
//! [`lease::Leadership`] (only the Lease holder reconciles).
//!
//! Why it is its own crate: kube and k8s-openapi are heavy, and the plan,
//! engine, policy and audit crates must never depend on a Kubernetes
//! client (checked by the CLI's architecture test). The plan crate is the
//! one deployctl crate used here, to validate `spec.plan` with diagnostics
//! named `release/NAMESPACE/NAME:LINE:COL`.

pub mod connect;
pub mod crd;
mod error;
pub mod install;
pub mod lease;
pub mod plan;
pub mod releases;

pub use connect::client;
pub use crd::{
    ApprovalEntry, ApprovalVerdict, GateStatus, MeasuringGate, PendingApproval, Release,
    ReleasePhase, ReleaseSpec, ReleaseStatus, RequestEntry, RequestVerb, RequestVerdict,
    StageStatus, Verdict,
};
pub use error::KubeReleaseError;
pub use install::{FIELD_MANAGER, crd_json, ensure_crd};
pub use lease::Leadership;
pub use releases::{Change, Changes, Releases, changed, parse_reference};

/// Re-exported so the binary names the same kube types without its own
/// dependency on kube's feature set.
pub use {k8s_openapi, kube};
