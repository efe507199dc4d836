//! `deployctl-audit`: the tamper-evident who/when/what trail (R10, S2, S7, J4).
//!
//! **What.** Every action deployctl takes (and every refusal: failed MFA,
//! a rejected approval, a policy denial) becomes one [`AuditRecord`] in
//! `<dir>/audit.jsonl`: who (operator, OS user, host, AWS principal), when,
//! what (action, run, stage, target, from → to, plan digest), the outcome,
//! and the cloud request IDs that tie it to CloudTrail. Each record holds
//! the SHA-256 of the one before, signed checkpoints pin the chain's head,
//! and a [`Sink`] ships every record off the machine as it is written.
//!
//! **Where to start.** [`AuditLog::open`] then [`AuditLog::append`] (or
//! [`AuditLog::append_batch`]) and [`AuditLog::checkpoint`] at the end of a
//! run; [`verify`] for auditors; [`show`], [`export_csv`], [`export_json`]
//! for reading. [`canonical`] defines exactly what is hashed and signed.
//!
//! **Why like this.**
//! - *JSON Lines + SHA-256 chain*: an auditor can check any line with
//!   `sed` and `sha256sum` (see [`canonical`]), and deletions, insertions
//!   and reordering break `seq`/`prev`. aws-lc-rs is the project's one
//!   crypto stack (SHA-256 and Ed25519 both come from it).
//! - *Group commit*: an append returns only once fsynced (an action must
//!   not outlive its record), and concurrent appends share one fsync, so
//!   durability costs one disk flush per burst, not per record
//!   ([`writer`]).
//! - *Checkpoints and shipping*: a chain cannot show its own end being cut
//!   off, and whoever controls the deploy PC can rewrite the whole chain;
//!   a signed head and a copy elsewhere (S2) can. Shipping never blocks
//!   appending: the outbox keeps what the sink has not acknowledged, and
//!   [`AuditLog::pending`] lets the caller decide when a backlog should
//!   stop a run.
//! - *Files 0600 in a 0700 directory* (J4): the trail names people.
//!
//! Directory layout: `audit.jsonl`, `checkpoints.jsonl`, `signing-key.pk8`,
//! `signing-key.pub`, `outbox.json` (shipping cursor), `audit.lock` and
//! `outbox.lock` (flock between processes).

pub mod canonical;
pub mod checkpoint;
mod error;
mod fsutil;
mod hex;
pub mod keys;
mod log;
pub mod outbox;
pub mod query;
pub mod record;
pub mod sink;
pub mod time;
pub mod verify;
pub mod writer;

pub use checkpoint::Checkpoint;
pub use error::AuditError;
pub use keys::{PublicKey, public_key_path};
pub use log::{AuditLog, AuditOptions, Stats};
pub use outbox::{Pending, ShipReport};
pub use query::{Filter, export_csv, export_json, show};
pub use record::{Action, AuditRecord, ChainHash, Entry, Outcome, Status, What, Who};
pub use sink::{DirectorySink, Sink, SinkError, Sinks, batch_files};
pub use verify::{CopyFile, Problem, ProblemKind, Report, verify, verify_against_files};
pub use writer::LOG_FILE;
