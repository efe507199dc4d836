//! `deployctl-engine`: executes validated plans durably.
//!
//! Start at [`executor::Engine`]; runs are created with
//! [`run::create_run`]. The engine walks the plan's DAG, drives each
//! stage's program ([`program`]) through the adapter traits, gates
//! promotion on health ([`gate`]), retries as [`retry`] decides, and rolls
//! back over the reversed graph when something fails. Every transition is
//! journaled ([`journal`], SQLite) before the side effect it announces, so a
//! run survives `kill -9` and resumes from the journal.
//!
//! The engine never imports a cloud SDK or an HTTP client: targets and
//! probes arrive as `deployctl-adapter` trait objects (checked by the
//! architecture test).

pub mod clock;
pub mod executor;
pub mod gate;
pub mod journal;
pub mod notify;
pub mod program;
pub mod progress;
pub mod retry;
pub mod run;
pub mod state;
