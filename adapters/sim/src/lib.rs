//! `deployctl-sim`: simulated deploy targets. They stand behind the sandbox
//! (`deployctl apply examples/quickstart.yaml` on `sim` targets), behind
//! `deployctl rehearse` (every target of a real plan replaced by a
//! simulator of its kind, with faults injected) and behind the engine's
//! tests, including the ones that kill the process mid-run and resume it.
//!
//! Start at [`SimTarget`], which implements [`deployctl_adapter::Target`]
//! for every [`TargetKind`](deployctl_plan::model::TargetKind): canary and
//! blue-green actions on a simulated service, wave actions on a simulated
//! device fleet. Set one up with a [`SimConfig`] (what it stands in for,
//! its stable version, latency, fleet size, seed and [`SimFaults`]), then
//! keep it in memory ([`SimTarget::in_memory`]) or in a [`SimWorld`]
//! directory that several processes share ([`SimWorld::target`]).
//!
//! Module map: `rules` says what each action means (one pure function
//! each for "already done?" and "do it"), `state` is the data, `store` and
//! `world` keep it, `effects` is the append-only log of changes, `faults`
//! and `health` are the injected misbehaviour and what probes measure,
//! `fleet` decides device outcomes from the seed.
//!
//! Everything is deterministic: the same config, seed and calls give the
//! same states, request IDs, device outcomes and measurements.

mod config;
mod effects;
mod error;
mod faults;
mod fleet;
mod health;
mod rules;
mod state;
mod store;
mod target;
mod world;

pub use config::{DEFAULT_FLEET_SIZE, DEFAULT_STABLE_VERSION, SimConfig};
pub use effects::{Effect, EffectsLog};
pub use error::SimError;
pub use faults::{ActionKind, ApiErrorKind, Fault, SimFaults};
pub use state::{FleetState, STATE_FORMAT, SimState};
pub use target::SimTarget;
pub use world::SimWorld;
