//! Engine behaviour against simulated targets, with tokio's clock paused
//! so bake times and gate intervals pass instantly and deterministically.
//!
//! The simulator is the engine's stand-in for real targets here (the
//! least powerful test that works); the adapters have their own suites.

mod support;

mod approvals;
mod failures;
mod journal_format;
mod notifications;
mod platform_locks;
mod releases;
mod resume;
mod start;
mod team;
