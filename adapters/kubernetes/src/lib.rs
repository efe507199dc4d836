//! `deployctl-kubernetes`: Kubernetes Deployments as deploy targets.
//!
//! Start at [`KubernetesTarget`] (`target.rs`): built from the plan's
//! `kubernetes` section with [`KubernetesTarget::from_spec`] (connected as
//! kubectl would be, `connect.rs`), it moves traffic by the router the
//! target has:
//!
//! - **an HTTPRoute → canary by weights** (`canary.rs`): a canary
//!   Deployment and Service beside the primary, the route's backendRefs
//!   weights between the two Services, each weight done only when the
//!   route's controller accepted the generation written (`route.rs`);
//! - **no route → blue-green by Service selector** (`bluegreen.rs`): green
//!   beside blue, the active Service's selector switched by
//!   `pod-template-hash`, done only when its EndpointSlices list green's
//!   pods alone.
//!
//! Everything a restarted process needs is on the cluster, in the labels
//! and annotations of `names.rs`. Writes are server-side apply as field
//! manager `deployctl` with the `resourceVersion` they were decided on
//! (`cluster.rs`); another writer's change to what a release decides on
//! (`view.rs`'s fingerprint) is refused, naming its field manager.
//! `workload.rs` judges rollouts without IO; `probe.rs` is the
//! `kubernetes` readiness gate. `lease_lock.rs` is the Deployment's
//! platform lock, a `coordination.k8s.io` Lease beside it that every run
//! holds (CLI or in-cluster controller), so they exclude each other.

mod bluegreen;
mod canary;
pub mod cluster;
pub mod connect;
pub mod eks;
mod error;
pub mod iam;
pub mod lease_lock;
pub mod names;
mod probe;
pub mod rbac;
pub mod route;
mod target;
mod view;
pub mod workload;

pub use connect::{ConnectError, Connection};
pub use target::{ConstructError, KubernetesOptions, KubernetesTarget};
