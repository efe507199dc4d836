//! `deployctl-engine`: executes validated plans durably.
//!
//! Start at [`executor::Engine`]: [`Engine::start`](executor::Engine::start)
//! preflights a plan's targets and records the run with its locks (or
//! refuses it, recording nothing), [`Engine::execute`](executor::Engine::execute)
//! drives it. Journal events are one typed enum, [`event::Event`]. The engine walks the plan's DAG, drives each
//! stage's program ([`program`]) through the adapter traits, gates
//! promotion on health ([`gate`]), retries as [`retry`] decides, and rolls
//! back over the reversed graph when something fails. Every transition is
//! journaled ([`journal`], SQLite) before the side effect it announces, so a
//! run survives `kill -9` and resumes from the journal.
//!
//! The engine never imports a cloud SDK or an HTTP client: targets and
//! probes arrive as `deployctl-adapter` trait objects (checked by the
//! architecture test).

pub mod admission;
mod approval;
mod calls;
pub mod clock;
pub mod event;
pub mod executor;
pub mod gate;
pub mod journal;
pub mod notify;
mod platform_locks;
pub mod program;
pub mod progress;
pub mod retry;
mod rollback;
pub mod run;
mod stage;
pub mod start;
pub mod state;
pub mod steering;
pub mod team;
pub mod walker;
mod waves;
