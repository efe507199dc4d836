//! Team locks: target locks every deploy PC (and the in-cluster
//! controller) shares through one backend, so two operators on two PCs
//! cannot move the same target at once (R13, J2).
//!
//! The journal's own locks stay what they are (they exclude runs of one
//! state directory); a team lock is taken on top of them, keyed by the
//! same platform identity. A lock has an owner (run, PC, operator,
//! environment) and a lease the owner renews while it is alive. What a
//! backend must guarantee:
//!
//! - **All or none**: [`TeamLocks::acquire`] takes every key or, when one
//!   is held, gives back the ones it took and names the holder.
//! - **One winner**: two PCs racing for a free key never both hold it
//!   (conditional writes, not read-then-write).
//! - **No silent takeover**: a lease that ran out is not taken by the next
//!   run; it is [`TeamLockError::Expired`] until an operator breaks it with
//!   [`TeamLocks::break_lock`], which is audited by the caller. Only a
//!   lock its owner released is free.
//! - **Idempotent for its run**: a resumed run acquires its own locks
//!   again (after a crash the lease may have run out: it is still its own),
//!   and another PC may take a run over once its lease ran out; a lock is
//!   renewed and released only by its run on the PC that holds it.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::BoxFuture;

/// Who holds (or asks for) a team lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockOwner {
    pub run: String,
    /// The deploy PC (host name) that drives the run.
    pub pc: String,
    pub operator: String,
    pub environment: String,
}

impl fmt::Display for LockOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "run {} of operator {} on PC {} ({})",
            self.run, self.operator, self.pc, self.environment
        )
    }
}

/// A team lock as the backend holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockRecord {
    /// The target's platform identity.
    pub target: String,
    pub owner: LockOwner,
    /// Unix milliseconds.
    pub acquired_at: i64,
    pub renewed_at: i64,
    /// Held until then unless renewed (Unix milliseconds).
    pub lease_until: i64,
    /// The owner let it go (its run ended), or an operator broke it.
    pub released: bool,
    /// Set when an operator broke the lock: who, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken: Option<BrokenLock>,
}

impl LockRecord {
    /// Whether the lease ran out at `now_ms` (a held lock only).
    pub fn expired(&self, now_ms: i64) -> bool {
        !self.released && self.lease_until <= now_ms
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokenLock {
    pub by: String,
    pub reason: String,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TeamLockError {
    /// A live run elsewhere holds the target.
    #[error("target {target} is locked by {owner} (lease renewed until {lease_until_ms} ms)")]
    Held {
        target: String,
        owner: LockOwner,
        lease_until_ms: i64,
    },
    /// The holder stopped renewing: it may be dead, or cut off. Only an
    /// operator decides (`deployctl lock break`).
    #[error(
        "target {target} is locked by {owner}, whose lease ran out {expired_for_s} s ago: the run may be dead or cut off; if it is, break the lock with `deployctl lock break {target} --reason TEXT`"
    )]
    Expired {
        target: String,
        owner: LockOwner,
        expired_for_s: i64,
    },
    /// A lock this run held was broken or taken while it ran.
    #[error("the team lock on {target} is no longer run {run}'s: {detail}")]
    Lost {
        target: String,
        run: String,
        detail: String,
    },
    /// `break_lock` of a lease still being renewed.
    #[error(
        "target {target} is held by {owner}, whose lease is renewed (until {lease_until_ms} ms): it is alive, stop it with `deployctl kill {run}` instead",
        run = owner.run
    )]
    Alive {
        target: String,
        owner: LockOwner,
        lease_until_ms: i64,
    },
    #[error("no team lock on {target}")]
    NotLocked { target: String },
    /// A platform lock (a Kubernetes Lease) whose holder stopped renewing.
    /// Nothing takes it over by itself; the remedy is the platform's.
    #[error(
        "{place} is held by {owner}, whose lease ran out {expired_for_s} s ago: the run may be dead or cut off; resume or roll it back where it was driven, or, once you know it is gone, {remedy}"
    )]
    PlatformExpired {
        place: String,
        owner: LockOwner,
        expired_for_s: i64,
        remedy: String,
    },
    /// The backend could not be read or written; nothing is assumed.
    #[error("team backend: {0}")]
    Backend(String),
}

/// Locks shared by every PC through one backend. See the module docs for
/// what an implementation guarantees.
pub trait TeamLocks: Send + Sync {
    /// How long a lease lasts without renewal.
    fn lease(&self) -> Duration;

    /// Takes every key for `owner.run`, all or none.
    fn acquire<'a>(
        &'a self,
        keys: &'a [String],
        owner: &'a LockOwner,
    ) -> BoxFuture<'a, Result<(), TeamLockError>>;

    /// Extends the lease of every key `owner` (its run, on its PC) holds;
    /// [`TeamLockError::Lost`] when one is no longer its own (broken, or
    /// the run taken over by another PC).
    fn renew<'a>(
        &'a self,
        keys: &'a [String],
        owner: &'a LockOwner,
    ) -> BoxFuture<'a, Result<(), TeamLockError>>;

    /// Lets go of the keys `owner` holds (those it no longer holds are
    /// left alone).
    fn release<'a>(
        &'a self,
        keys: &'a [String],
        owner: &'a LockOwner,
    ) -> BoxFuture<'a, Result<(), TeamLockError>>;

    /// The lock on `key`, released or not; `None` if there never was one.
    fn inspect<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<LockRecord>, TeamLockError>>;

    /// Every lock the backend has, released ones included.
    fn list(&self) -> BoxFuture<'_, Result<Vec<LockRecord>, TeamLockError>>;

    /// Breaks a lock whose lease ran out ([`TeamLockError::Alive`] if it
    /// is still renewed); returns the lock as it was.
    fn break_lock<'a>(
        &'a self,
        key: &'a str,
        by: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<LockRecord, TeamLockError>>;
}

/// A lock the target's platform keeps beside the target itself (a
/// Kubernetes `coordination.k8s.io` Lease next to the Deployment), so
/// every driver of that target excludes every other one (a deploy PC, the
/// in-cluster controller) with or without a team backend. Same owner and
/// lease rules as [`TeamLocks`] for one key: one winner, no silent
/// takeover of a lease that ran out, idempotent for its run.
pub trait PlatformLock: Send + Sync {
    /// Where the lock is, for messages (`Lease shop/deployctl-api`).
    fn place(&self) -> String;

    /// How long a lease lasts without renewal.
    fn lease(&self) -> Duration;

    /// Takes the lock for `owner.run`: [`TeamLockError::Held`] when a live
    /// run holds it, [`TeamLockError::PlatformExpired`] when its holder
    /// stopped renewing.
    fn acquire<'a>(&'a self, owner: &'a LockOwner) -> BoxFuture<'a, Result<(), TeamLockError>>;

    /// Extends the lease; [`TeamLockError::Lost`] when it is no longer
    /// `owner`'s.
    fn renew<'a>(&'a self, owner: &'a LockOwner) -> BoxFuture<'a, Result<(), TeamLockError>>;

    /// Lets go, if `owner` still holds it.
    fn release<'a>(&'a self, owner: &'a LockOwner) -> BoxFuture<'a, Result<(), TeamLockError>>;
}

/// A run as the team backend keeps it, written through by the PC that
/// drives it: enough for any PC to see where it stands and to ask it to
/// stop (and, with the plan, to roll it back when that PC is gone).
/// Phases are the journal's words (`Progressing`, `RolledBack`…).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedRun {
    pub run: String,
    pub plan_name: String,
    pub environment: String,
    pub plan_file: String,
    pub plan_digest: String,
    /// The plan as it was applied (plans name targets, never secrets).
    pub plan_source: String,
    pub initiator: String,
    /// The PC that drives the run.
    pub pc: String,
    pub phase: String,
    pub terminal: bool,
    pub rollback_incomplete: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Grows with every write; a record never replaces a newer one.
    pub revision: u64,
    pub stages: Vec<SharedStage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedStage {
    pub name: String,
    pub target: String,
    /// The target's platform identity (what its lock is keyed by).
    pub target_key: String,
    pub phase: String,
    pub weight: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_version: Option<String>,
    /// Whether the stage (maybe) changed its target: a rollback undoes it.
    pub moved: bool,
}

/// What another PC asks of a run it does not drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StopAsk {
    /// `deployctl kill RUN`.
    Kill,
    /// `deployctl rollback RUN`.
    Rollback,
    /// `deployctl abort RUN`.
    Abort,
}

/// A stop asked for through the backend: the first one asked stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopAsked {
    pub ask: StopAsk,
    /// Who asked, as the trail names them (`user@host`).
    pub by: String,
    pub at: i64,
}

/// An approval or rejection of a gate, verified (role, four eyes, MFA
/// code) on the PC it was given on, for the PC that drives the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedDecision {
    pub gate: String,
    /// The approver, as the access file names them.
    pub user: String,
    /// `None`: an approval; `Some(reason)`: a rejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    /// Where it was given (`user@host` of the command).
    pub given_on: String,
    pub at: i64,
}

/// Run records, stop requests and approvals shared through the backend.
pub trait TeamRuns: Send + Sync {
    /// Writes the driving PC's record of its run, unless the backend
    /// already has this revision or a newer one.
    fn publish<'a>(&'a self, run: &'a SharedRun) -> BoxFuture<'a, Result<(), TeamLockError>>;

    fn fetch<'a>(&'a self, run: &'a str)
    -> BoxFuture<'a, Result<Option<SharedRun>, TeamLockError>>;

    /// Every run the backend has a record of.
    fn runs(&self) -> BoxFuture<'_, Result<Vec<SharedRun>, TeamLockError>>;

    /// Asks `run` to stop; returns the request in force (an earlier one
    /// stands: a kill is never turned into an abort by a second ask).
    fn ask_stop<'a>(
        &'a self,
        run: &'a str,
        asked: &'a StopAsked,
    ) -> BoxFuture<'a, Result<StopAsked, TeamLockError>>;

    fn stop_asked<'a>(
        &'a self,
        run: &'a str,
    ) -> BoxFuture<'a, Result<Option<StopAsked>, TeamLockError>>;

    /// Keeps one person's decision on one gate; a second decision of the
    /// same person on the same gate is refused (`Ok(false)`).
    fn decide<'a>(
        &'a self,
        run: &'a str,
        decision: &'a SharedDecision,
    ) -> BoxFuture<'a, Result<bool, TeamLockError>>;

    /// Every decision given on the run's gates, in no particular order.
    fn decisions<'a>(
        &'a self,
        run: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SharedDecision>, TeamLockError>>;
}
