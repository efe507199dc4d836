//! `deployctl-adapter`: the contract between the engine and the outside
//! world. Start at [`Target`]; the written contract with MUST/SHOULD rules
//! is `docs/adapter-contract.md`.
//!
//! Each capability is a small trait split into *observe* (read, no side
//! effects), *plan* (pure: which calls an action would make) and *apply*
//! (the side effect). `deployctl plan` only ever calls the first two, which
//! is what makes it an honest dry run.
//!
//! Every adapter is built the same way, from its plan section and a
//! [`construct::PlanRelease`]. The another-writer rule every adapter
//! keeps (a change it did not make is refused, not overwritten) is
//! [`writer`]; request IDs reach errors through
//! [`AdapterError::with_request_id`].
//!
//! This crate names no cloud SDK and no HTTP client: adapter crates bring
//! those, the binary wires them in, and the engine sees only these traits.

#[cfg(feature = "testing")]
pub mod conformance;
pub mod construct;
mod error;
pub mod iam;
mod notify;
mod probe;
mod target;
pub mod team;
pub mod writer;

pub use error::{AdapterError, ErrorClass};
pub use notify::{Notification, Notifier};
pub use probe::{HealthProbe, Measurement};
pub use target::{
    Action, Applied, Capabilities, IdempotencyKey, Moves, Observed, PlannedCall, Preflight, Role,
    Target, TrafficAction, TrafficTarget, WaveAction, WaveProgress, WaveTarget, Weights,
};

use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future: the traits here are used as trait objects
/// (the binary picks adapters at run time), so their async methods box.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
