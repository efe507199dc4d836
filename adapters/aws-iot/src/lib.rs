//! IoT device fleets as deploy targets (R11, A1, O1–O9): each wave of an
//! over-the-air release is an AWS IoT Jobs job aimed at that wave's
//! devices, with the plan's rollout rate, abort and timeout settings, and
//! nothing is dispatched before the signed firmware verified.
//!
//! Start at [`FleetTarget`] (`target.rs`): preflight resolves the thing
//! groups (the platform identity runs lock), verifies both manifests (the
//! release's and the signed rollback's) and checks the devices' hardware
//! (`firmware.rs`); `StartWave` picks the wave's devices deterministically
//! from the run (`selection.rs`, pure), puts them in a static thing group
//! of the wave and creates its job (named by `names.rs`, the document
//! from `document.rs`); `Halt` force-cancels every wave job;
//! `Rollback` records who took the update, halts, and sends them the
//! rollback firmware. Everything a restarted process needs is on the
//! platform: the wave groups and jobs are named after the run and stage
//! the engine attaches. `probe.rs` is the `fleet` gate; `history.rs` a
//! device's updates as IoT holds them (`deployctl fleet history`);
//! `iam.rs` the permissions.
//!
//! The target talks to the platform only through [`FleetJobs`]
//! (`backend.rs`): [`IotJobs`] is AWS IoT Jobs over the SDK (`jobs.rs`,
//! the calls), `simulated.rs` (feature `simulated`) an in-process fleet
//! for the million-device benchmark.

mod backend;
mod document;
mod firmware;
mod history;
pub mod iam;
mod jobs;
mod names;
mod probe;
mod selection;
#[cfg(any(test, feature = "simulated"))]
pub mod simulated;
mod target;

pub use backend::{Changed, ExecutionStatus, FleetJobs, IotJobs, JobCounts, JobSpec};
pub use history::{DeviceUpdate, device_history};
pub use target::{Clients, ConstructError, FleetTarget, IotClient, iot_client, iot_config};
