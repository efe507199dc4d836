//! `deployctl-aws-ecs`: ECS services as deploy targets.
//!
//! Start at [`EcsTarget`] (`target.rs`): built from the plan's `ecs`
//! section and artifact with [`EcsTarget::from_spec`] (refused with a
//! [`ConstructError`]), it reads the
//! service's deployment controller on every call and takes one of two paths:
//!
//! - **EXTERNAL controller → task sets** (`task_sets.rs`): canary and
//!   blue/green. The PRIMARY task set is the stable version; `Deploy`
//!   creates the candidate task set at scale 0 with the version label as
//!   its `externalId` (found again, never duplicated, on a retry); weights
//!   split the service's desired count between the two task sets (so the
//!   load balancer's share follows); `Promote` (or weight 100) makes the
//!   candidate primary at 100% and keeps the old one at 0% until `Retire`
//!   deletes it; `Rollback` makes the stable task set primary at 100% again
//!   and deletes the other.
//! - **ECS controller → rolling update** (`rolling.rs`): only the switch
//!   (`SetWeight 100`/`Promote`) changes the service, with `UpdateService`
//!   and a bounded wait for the rollout; the deployment circuit breaker
//!   turns a failing task definition into FAILED, which this adapter
//!   reports so the engine rolls back. Weights between 0 and 100 are
//!   `Unsupported` there.
//!
//! Another writer's change is refused, not overwritten
//! (`deployctl_adapter::writer`): on the task-set path, task sets that
//! differ from what this target last left; on the rolling path, the
//! service moved off the task definition it is rolling out.
//!
//! Versions are the plan's labels (`versions.rs`); `service.rs` reads the
//! service once per decision; `error.rs` maps ECS's exceptions.
//! Validation AWS does but moto does not (scales within 0..=100 percent,
//! never deleting the PRIMARY task set, ACTIVE task definitions, one
//! candidate at a time) is done here.

mod error;
pub mod iam;
mod rolling;
mod service;
mod target;
mod task_sets;
mod versions;

pub use target::{ConstructError, EcsOptions, EcsTarget, ecs_config};
