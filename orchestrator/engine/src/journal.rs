//! The durable run journal: SQLite in WAL mode with `synchronous=FULL`,
//! one transaction per transition, all through one writer connection;
//! reads take read connections of their own, so they never queue behind a
//! commit.
//!
//! What it guarantees: a transition that returned `Ok` survives `kill -9`
//! and power loss; an intent recorded before a side effect lets a restarted
//! process tell "done" from "maybe done" (a call with an intent and no
//! outcome is re-applied, which adapters make idempotent). Several
//! processes may open the same journal: SQLite's locking serializes them,
//! and per-target locks (a table) keep two runs off one target.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use crate::clock::now_ms;
use crate::event::{Event, UnreadableEvent};
use crate::state::{RunMode, RunPhase, StagePhase};
use deployctl_plan::model::RollbackScope;

/// The journal's format. 1: the first release (no version recorded);
/// 2: typed events (same tags and fields, plus `rollbackIncomplete` and
/// platform identities in `preflight`). A journal of a format this build
/// does not know is refused on open, never half read.
pub const FORMAT_VERSION: i64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot create state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("journal database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("unknown run `{0}`")]
    UnknownRun(String),
    #[error(
        "target `{target}` is locked by run {run} ({holder}); wait for it, or roll it back with `deployctl rollback {run}`"
    )]
    Locked {
        target: String,
        run: String,
        holder: String,
    },
    #[error("corrupt journal record: {0}")]
    Corrupt(String),
    #[error("the audit trail could not record a journal event: {0}")]
    Observer(#[from] ObserverError),
    #[error(
        "{path}: journal format version {found} is newer than this build of deployctl reads (up to {supported}); use the deployctl release that wrote it"
    )]
    NewerFormat {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("run {run}, event #{seq} (journal format version {format}): {source}")]
    UnreadableEvent {
        run: String,
        seq: i64,
        format: i64,
        #[source]
        source: UnreadableEvent,
    },
}

/// Why an observer could not take committed events (the audit trail
/// could not append them).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ObserverError(pub Box<dyn std::error::Error + Send + Sync>);

/// How a run is steered from outside (`deployctl pause|promote`), as
/// the run's watcher reads it for its stages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Steering {
    /// `pause`: each stage holds before its next step.
    pub held: bool,
    /// `promote` requests so far.
    pub promotions: i64,
    /// `promote --full`: the remaining steps are skipped.
    pub full: bool,
}

/// Who asked a run to stop and roll back (the `kill_requested` column:
/// 0 nobody; older journals wrote 1 for every request, read as a kill).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopRequest {
    /// `deployctl kill RUN`: the emergency stop.
    Kill = 1,
    /// `deployctl rollback RUN` while another process drives the run.
    Rollback = 2,
    /// The in-cluster Release of the run was deleted (R8).
    ReleaseDeleted = 3,
    /// `deployctl abort RUN`: traffic back to stable, the run left Aborted.
    Abort = 4,
}

impl StopRequest {
    fn from_code(code: i64) -> Option<StopRequest> {
        match code {
            0 => None,
            2 => Some(StopRequest::Rollback),
            3 => Some(StopRequest::ReleaseDeleted),
            4 => Some(StopRequest::Abort),
            _ => Some(StopRequest::Kill),
        }
    }

    /// Why the run stopped, as its status and trail say.
    pub fn reason(self) -> &'static str {
        match self {
            StopRequest::Kill => "killed by `deployctl kill`",
            StopRequest::Rollback => "rolled back by `deployctl rollback`",
            StopRequest::ReleaseDeleted => "its Release was deleted",
            StopRequest::Abort => "aborted by `deployctl abort`",
        }
    }
}

/// A run as the journal knows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub id: String,
    pub plan_name: String,
    pub environment: String,
    pub plan_file: String,
    pub plan_digest: String,
    #[serde(skip)]
    pub plan_source: String,
    pub initiator: String,
    pub mode: RunMode,
    pub phase: RunPhase,
    pub created_at: i64,
    pub updated_at: i64,
    pub owner_pid: Option<u32>,
    pub owner_host: Option<String>,
    pub heartbeat_at: Option<i64>,
    pub kill_requested: bool,
    /// A rollback gave up: a human must act.
    pub rollback_incomplete: bool,
    pub outcome: Option<String>,
    /// While rolling back: which stages it undoes, so a resumed rollback
    /// undoes the same set.
    pub rollback_scope: Option<RollbackScope>,
    /// While rolling back: the phase the run ends in (RolledBack or Killed).
    pub rollback_final: Option<RunPhase>,
    /// Held by `deployctl pause` until `deployctl promote`.
    pub held: bool,
    /// The run this one starts again (`deployctl retry`).
    pub retry_of: Option<String>,
}

/// Which runs `history` lists; `None` fields match every run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunQuery {
    /// Runs with a stage that moved this target.
    pub target: Option<String>,
    pub environment: Option<String>,
    /// Runs in any of these phases.
    pub phases: Option<Vec<RunPhase>>,
    /// Runs created at or after this time (Unix milliseconds).
    pub since_ms: Option<i64>,
    /// At most this many, newest first.
    pub limit: u32,
}

impl Default for RunQuery {
    fn default() -> RunQuery {
        RunQuery {
            target: None,
            environment: None,
            phases: None,
            since_ms: None,
            limit: 200,
        }
    }
}

/// One stage's current state (a snapshot; the events table has the history).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageRecord {
    pub name: String,
    pub target: String,
    /// The target's identity on its platform (e.g. `lambda:checkout:live`).
    pub target_key: String,
    pub phase: StagePhase,
    /// Index of the next operation to run in the stage's program.
    pub cursor: u32,
    pub weight: u8,
    pub stable_version: Option<String>,
    pub new_version: Option<String>,
    /// Whether anything was (maybe) changed on the target: rollback needed.
    pub moved: bool,
    pub last_gate: Option<serde_json::Value>,
    pub pause_until: Option<i64>,
    pub detail: Option<String>,
    pub updated_at: i64,
}

/// One entry of a run's history: the event, and its stored form (`kind`,
/// `data`) for printing as it is kept.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    pub seq: i64,
    pub at: i64,
    pub stage: Option<String>,
    pub kind: String,
    pub data: serde_json::Value,
    #[serde(skip)]
    pub event: Event,
}

/// A platform call's journal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub key: String,
    pub stage: String,
    pub action: String,
    /// `intent`, `done` or `failed`.
    pub state: String,
}

/// What a new run starts with.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub id: &'a str,
    pub plan_name: &'a str,
    pub environment: &'a str,
    pub plan_file: &'a str,
    pub plan_digest: &'a str,
    pub plan_source: &'a str,
    pub initiator: &'a str,
    pub mode: RunMode,
    pub stages: Vec<NewStage>,
    /// The target locks the run takes, all or none, with its creation.
    pub locks: Vec<String>,
}

/// A stage of a new run.
#[derive(Debug, Clone)]
pub struct NewStage {
    pub name: String,
    pub target: String,
    /// The target's platform identity (what its lock is keyed by).
    pub target_key: String,
    pub new_version: Option<String>,
    /// The confirmed rollback path, when preflight ran before creation.
    pub preflight: Option<PreflightRecord>,
}

/// A stage's preflight as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreflightRecord {
    pub stable_version: String,
    pub ready: bool,
    pub detail: String,
    pub identity: Option<String>,
    /// What the adapter verified for the trail (see `Preflight::verified`).
    pub verified: Vec<String>,
}

/// Fields of a stage row to change in a transition; `None` leaves one as is.
#[derive(Debug, Clone, Default)]
pub struct StageUpdate {
    pub phase: Option<StagePhase>,
    pub cursor: Option<u32>,
    pub weight: Option<u8>,
    pub stable_version: Option<String>,
    pub moved: Option<bool>,
    pub last_gate: Option<serde_json::Value>,
    /// `Some(None)` clears it.
    pub pause_until: Option<Option<i64>>,
    pub detail: Option<String>,
}

/// The journal of every run kept in one state directory.
pub struct Journal {
    /// The one connection that writes: transitions queue for it.
    connection: Mutex<Connection>,
    /// Idle connections for reads. WAL readers never wait for the writer,
    /// so a status read (a reconcile, `deployctl status`) is not queued
    /// behind another run's commit and its `fsync`.
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
    observer: Option<Arc<dyn JournalObserver>>,
    /// The format the journal had when opened (1 for journals of the
    /// first release), named when one of its records cannot be read.
    format: i64,
}

/// An event as committed to the journal.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEvent {
    pub run_id: String,
    pub stage: Option<String>,
    pub event: Event,
}

/// Sees every event once it is durable (the audit trail hooks in here).
pub trait JournalObserver: Send + Sync {
    fn committed(&self, events: &[JournalEvent]) -> Result<(), ObserverError>;
}

/// A write transaction that remembers the events it appends.
struct Tx<'c> {
    inner: rusqlite::Transaction<'c>,
    events: RefCell<Vec<JournalEvent>>,
}

impl<'c> std::ops::Deref for Tx<'c> {
    type Target = rusqlite::Transaction<'c>;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    plan_name TEXT NOT NULL,
    environment TEXT NOT NULL,
    plan_file TEXT NOT NULL,
    plan_digest TEXT NOT NULL,
    plan_source TEXT NOT NULL,
    initiator TEXT NOT NULL,
    mode TEXT NOT NULL,
    phase TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    owner_pid INTEGER,
    owner_host TEXT,
    heartbeat_at INTEGER,
    kill_requested INTEGER NOT NULL DEFAULT 0,
    rollback_incomplete INTEGER NOT NULL DEFAULT 0,
    outcome TEXT,
    rollback_scope TEXT,
    rollback_final TEXT,
    held INTEGER NOT NULL DEFAULT 0,
    promotions INTEGER NOT NULL DEFAULT 0,
    full_promotion INTEGER NOT NULL DEFAULT 0,
    retry_of TEXT
);
CREATE TABLE IF NOT EXISTS stages (
    run_id TEXT NOT NULL REFERENCES runs(id),
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    target TEXT NOT NULL,
    target_key TEXT NOT NULL,
    phase TEXT NOT NULL,
    cursor INTEGER NOT NULL DEFAULT 0,
    weight INTEGER NOT NULL DEFAULT 0,
    stable_version TEXT,
    new_version TEXT,
    moved INTEGER NOT NULL DEFAULT 0,
    last_gate TEXT,
    pause_until INTEGER,
    detail TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    stage TEXT,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS calls (
    run_id TEXT NOT NULL REFERENCES runs(id),
    key TEXT NOT NULL,
    stage TEXT NOT NULL,
    action TEXT NOT NULL,
    state TEXT NOT NULL,
    request_ids TEXT,
    error TEXT,
    at INTEGER NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS locks (
    target_key TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    holder TEXT NOT NULL,
    acquired_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS approvals (
    run_id TEXT NOT NULL REFERENCES runs(id),
    gate TEXT NOT NULL,
    approver TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (run_id, gate, approver)
);
CREATE TABLE IF NOT EXISTS rejections (
    run_id TEXT NOT NULL REFERENCES runs(id),
    gate TEXT NOT NULL,
    approver TEXT NOT NULL,
    reason TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (run_id, gate, approver)
);
CREATE INDEX IF NOT EXISTS runs_by_time ON runs(created_at);
CREATE TABLE IF NOT EXISTS live_gates (
    run_id TEXT NOT NULL REFERENCES runs(id),
    stage TEXT NOT NULL,
    gate TEXT NOT NULL,
    at INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, stage, gate)
);
";

/// Read connections kept open for the next read; more are opened while
/// more read at once, and closed after.
const IDLE_READERS: usize = 4;

/// A connection to the journal at `path` that only reads (`query_only`),
/// opened after the writer, which made the schema.
fn open_reader(path: &Path) -> Result<Connection, JournalError> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(std::time::Duration::from_secs(10))?;
    connection.pragma_update(None, "query_only", true)?;
    // A small page cache each: the writer's holds the hot pages, and the
    // readers' resident memory stays small (512 KiB at most).
    connection.pragma_update(None, "cache_size", -512)?;
    connection.set_prepared_statement_cache_capacity(64);
    Ok(connection)
}

fn secure_dir(path: &Path) -> Result<(), JournalError> {
    let state_dir_error = |source| JournalError::StateDir {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(path).map_err(state_dir_error)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .map_err(state_dir_error)?;
    }
    Ok(())
}

impl Journal {
    /// Opens (creating if needed) the journal in `state_dir`, which is
    /// created with mode 0700: run history names people and versions.
    pub fn open(state_dir: &Path) -> Result<Journal, JournalError> {
        // Opening takes locks SQLite's busy handler does not wait for
        // (the WAL's recovery after a process was killed, the first
        // connection's schema check racing another process's): seen when
        // a controller replica takes over from one just SIGKILLed. Opening
        // is idempotent, so a busy open is tried again for a while.
        let mut attempt = 0;
        loop {
            match Journal::open_once(state_dir) {
                Err(JournalError::Sqlite(rusqlite::Error::SqliteFailure(failure, _)))
                    if failure.code == rusqlite::ErrorCode::DatabaseBusy && attempt < 40 =>
                {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(250));
                }
                opened => return opened,
            }
        }
    }

    fn open_once(state_dir: &Path) -> Result<Journal, JournalError> {
        secure_dir(state_dir)?;
        let path = state_dir.join("journal.sqlite3");
        let connection = Connection::open(&path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        }
        connection.busy_timeout(std::time::Duration::from_secs(10))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is on disk before it returns, so an intent written
        // before a side effect is never lost (measured: survives kill -9).
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        // Room for every statement the journal caches (rusqlite keeps 16).
        connection.set_prepared_statement_cache_capacity(64);
        let format = stored_format(&connection)?;
        if format > FORMAT_VERSION {
            return Err(JournalError::NewerFormat {
                path,
                found: format,
                supported: FORMAT_VERSION,
            });
        }
        connection.execute_batch(SCHEMA)?;
        migrate(&connection)?;
        if format < FORMAT_VERSION {
            connection.pragma_update(None, "user_version", FORMAT_VERSION)?;
        }
        Ok(Journal {
            connection: Mutex::new(connection),
            readers: Mutex::new(Vec::new()),
            path,
            observer: None,
            format,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<T>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        // A panic while holding the lock cannot leave SQLite half-written
        // (transactions roll back on drop), so a poisoned lock is usable.
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        work(&mut connection)
    }

    /// Runs `work` on a read connection, in one read transaction: one
    /// snapshot of the journal, with every transition committed before it
    /// began, however many statements `work` runs.
    fn read<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        let idle = self
            .readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        let mut connection = match idle {
            Some(connection) => connection,
            None => open_reader(&self.path)?,
        };
        let value = {
            let snapshot = connection.transaction()?;
            let value = work(&snapshot)?;
            snapshot.commit()?;
            value
        };
        let mut readers = self
            .readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if readers.len() < IDLE_READERS {
            readers.push(connection);
        }
        Ok(value)
    }

    /// Runs `work` in one IMMEDIATE transaction (the writer lock is taken
    /// up front, so concurrent processes queue instead of failing on
    /// upgrade) and commits it.
    fn write<T>(
        &self,
        work: impl FnOnce(&Tx<'_>) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        self.with(|connection| {
            let tx = Tx {
                inner: connection.transaction_with_behavior(TransactionBehavior::Immediate)?,
                events: RefCell::new(Vec::new()),
            };
            let value = work(&tx)?;
            let events = tx.events.take();
            tx.inner.commit()?;
            // After the commit and still under the journal's lock, so the
            // observer (the audit trail) sees exactly what was made durable,
            // in journal order. If it cannot record it, the caller gets an
            // error before the side effect the event announces: nothing
            // happens unrecorded.
            if let Some(observer) = &self.observer
                && !events.is_empty()
            {
                observer.committed(&events)?;
            }
            Ok(value)
        })
    }

    /// Sends every committed event to `observer` from now on.
    pub fn with_observer(mut self, observer: Arc<dyn JournalObserver>) -> Journal {
        self.observer = Some(observer);
        self
    }

    /// Records a new run: its row, its stages (with their preflight, when
    /// it ran first) and its target locks, in one transaction. A lock
    /// another live run holds refuses the whole run: nothing is recorded,
    /// so a refusal leaves no run behind.
    pub fn create_run(&self, run: &NewRun<'_>) -> Result<(), JournalError> {
        self.write(|tx| insert_run(tx, run))
    }

    /// Records here a run another PC drove and can no longer stop (its
    /// lease ran out), from the team backend's record, so this PC can
    /// roll it back: the run and its stages as they stood there (each
    /// stage's phase, weight and whether it moved), its locks, and a
    /// `TakenOver` event, in one transaction.
    pub fn take_over(
        &self,
        run: &NewRun<'_>,
        phase: RunPhase,
        stages: &[(String, StageUpdate)],
        from_pc: &str,
        by: &str,
    ) -> Result<(), JournalError> {
        self.write(|tx| {
            insert_run(tx, run)?;
            for (name, update) in stages {
                update_stage(tx, run.id, name, update)?;
            }
            tx.prepare_cached("UPDATE runs SET phase = ?2 WHERE id = ?1")?
                .execute(params![run.id, phase.as_str()])?;
            append_event(
                tx,
                run.id,
                None,
                &Event::TakenOver {
                    from_pc: from_pc.to_owned(),
                    by: by.to_owned(),
                },
            )
        })
    }

    /// Takes every target lock for `run_id`, all or none. A lock held by a
    /// run that has ended (or whose owner died and was rolled back) is stale
    /// and taken over.
    pub fn acquire_locks(
        &self,
        run_id: &str,
        keys: &[String],
        holder: &str,
    ) -> Result<(), JournalError> {
        self.write(|tx| take_locks(tx, run_id, keys, holder))
    }

    pub fn release_locks(&self, run_id: &str) -> Result<(), JournalError> {
        self.with(|connection| {
            connection.execute("DELETE FROM locks WHERE run_id = ?1", params![run_id])?;
            Ok(())
        })
    }

    /// Records that this process now drives the run.
    pub fn claim(&self, run_id: &str, pid: u32, host: &str) -> Result<(), JournalError> {
        self.with(|connection| {
            let changed = connection.execute(
                "UPDATE runs SET owner_pid = ?2, owner_host = ?3, heartbeat_at = ?4 WHERE id = ?1",
                params![run_id, pid, host, now_ms()],
            )?;
            if changed == 0 {
                return Err(JournalError::UnknownRun(run_id.to_string()));
            }
            Ok(())
        })
    }

    pub fn heartbeat(&self, run_id: &str) -> Result<(), JournalError> {
        self.with(|connection| {
            connection
                .prepare_cached("UPDATE runs SET heartbeat_at = ?2 WHERE id = ?1")?
                .execute(params![run_id, now_ms()])?;
            Ok(())
        })
    }

    /// Sets the run's phase and logs it.
    pub fn set_run_phase(
        &self,
        run_id: &str,
        phase: RunPhase,
        outcome: Option<&str>,
        rollback_incomplete: bool,
    ) -> Result<(), JournalError> {
        self.write(|tx| {
            tx.prepare_cached(
                "UPDATE runs SET phase = ?2, updated_at = ?3, outcome = COALESCE(?4, outcome),
                    rollback_incomplete = ?5 WHERE id = ?1",
            )?
            .execute(params![
                run_id,
                phase.as_str(),
                now_ms(),
                outcome,
                rollback_incomplete
            ])?;
            append_event(
                tx,
                run_id,
                None,
                &Event::RunPhase {
                    phase,
                    outcome: outcome.map(str::to_string),
                },
            )?;
            Ok(())
        })
    }

    /// A rollback gave up on `stages`: the run is Failed, flagged for a
    /// human, with `message` as its outcome. Its locks stay held.
    pub fn rollback_incomplete(
        &self,
        run_id: &str,
        stages: &[String],
        reason: &str,
        message: &str,
    ) -> Result<(), JournalError> {
        self.write(|tx| {
            tx.prepare_cached(
                "UPDATE runs SET phase = ?2, updated_at = ?3, outcome = ?4,
                    rollback_incomplete = 1 WHERE id = ?1",
            )?
            .execute(params![
                run_id,
                RunPhase::Failed.as_str(),
                now_ms(),
                message
            ])?;
            append_event(
                tx,
                run_id,
                None,
                &Event::RollbackIncomplete {
                    stages: stages.to_vec(),
                    reason: reason.to_string(),
                    message: message.to_string(),
                },
            )?;
            Ok(())
        })
    }

    /// Starts a rollback: records its reason, scope and final phase with the
    /// RollingBack phase, so a process that resumes it does the same.
    pub fn begin_rollback(
        &self,
        run_id: &str,
        reason: &str,
        scope: RollbackScope,
        final_phase: RunPhase,
    ) -> Result<(), JournalError> {
        self.write(|tx| {
            tx.prepare_cached(
                "UPDATE runs SET phase = ?2, updated_at = ?3, outcome = ?4, rollback_scope = ?5,
                    rollback_final = ?6 WHERE id = ?1",
            )?
            .execute(params![
                run_id,
                RunPhase::RollingBack.as_str(),
                now_ms(),
                reason,
                scope_name(scope),
                final_phase.as_str()
            ])?;
            append_event(
                tx,
                run_id,
                None,
                &Event::RollbackStarted {
                    reason: reason.to_string(),
                    scope,
                    final_phase,
                },
            )?;
            Ok(())
        })
    }

    /// One stage transition: the stage row and an event, atomically.
    pub fn transition(
        &self,
        run_id: &str,
        stage: &str,
        event: &Event,
        update: &StageUpdate,
    ) -> Result<(), JournalError> {
        self.write(|tx| {
            update_stage(tx, run_id, stage, update)?;
            append_event(tx, run_id, Some(stage), event)?;
            Ok(())
        })
    }

    /// Records the intent to make a call, before making it.
    pub fn call_intent(
        &self,
        run_id: &str,
        stage: &str,
        key: &str,
        action: &deployctl_adapter::Action,
        update: &StageUpdate,
    ) -> Result<(), JournalError> {
        let stored =
            serde_json::to_string(action).map_err(|e| JournalError::Corrupt(e.to_string()))?;
        self.write(|tx| {
            tx.prepare_cached("INSERT INTO calls (run_id, key, stage, action, state, at) VALUES (?1, ?2, ?3, ?4, 'intent', ?5)
                 ON CONFLICT(run_id, key) DO UPDATE SET state = 'intent', at = ?5")?.execute(params![run_id, key, stage, stored, now_ms()],
            )?;
            update_stage(tx, run_id, stage, update)?;
            append_event(
                tx,
                run_id,
                Some(stage),
                &Event::CallIntent {
                    key: key.to_string(),
                    action: action.clone(),
                },
            )?;
            Ok(())
        })
    }

    /// Records a call's outcome together with the stage's new state.
    #[allow(clippy::too_many_arguments)]
    pub fn call_outcome(
        &self,
        run_id: &str,
        stage: &str,
        key: &str,
        succeeded: bool,
        request_ids: &[String],
        error: Option<&str>,
        update: &StageUpdate,
    ) -> Result<(), JournalError> {
        self.write(|tx| {
            tx.prepare_cached(
                "UPDATE calls SET state = ?3, request_ids = ?4, error = ?5, at = ?6
                 WHERE run_id = ?1 AND key = ?2",
            )?
            .execute(params![
                run_id,
                key,
                if succeeded { "done" } else { "failed" },
                serde_json::to_string(request_ids).unwrap_or_default(),
                error,
                now_ms()
            ])?;
            update_stage(tx, run_id, stage, update)?;
            let event = if succeeded {
                Event::CallDone {
                    key: key.to_string(),
                    request_ids: request_ids.to_vec(),
                }
            } else {
                Event::CallFailed {
                    key: key.to_string(),
                    request_ids: request_ids.to_vec(),
                    error: error.unwrap_or_default().to_string(),
                }
            };
            append_event(tx, run_id, Some(stage), &event)?;
            Ok(())
        })
    }

    pub fn calls(&self, run_id: &str) -> Result<Vec<CallRecord>, JournalError> {
        self.read(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT key, stage, action, state FROM calls WHERE run_id = ?1 ORDER BY at, key",
            )?;
            let rows = statement.query_map(params![run_id], |row| {
                Ok(CallRecord {
                    key: row.get(0)?,
                    stage: row.get(1)?,
                    action: row.get(2)?,
                    state: row.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// `deployctl kill RUN`: the run's driver stops and rolls back.
    pub fn request_kill(&self, run_id: &str) -> Result<(), JournalError> {
        self.request_stop(run_id, StopRequest::Kill)
    }

    /// Asks the run's driver, wherever it runs, to stop and roll back,
    /// saying who asked.
    pub fn request_stop(&self, run_id: &str, request: StopRequest) -> Result<(), JournalError> {
        self.write(|tx| {
            let changed = tx
                .prepare_cached("UPDATE runs SET kill_requested = ?2 WHERE id = ?1")?
                .execute(params![run_id, request as i64])?;
            if changed == 0 {
                return Err(JournalError::UnknownRun(run_id.to_string()));
            }
            append_event(tx, run_id, None, &Event::KillRequested {})?;
            Ok(())
        })
    }

    /// `deployctl pause RUN` (true) or the hold's release: a held run's
    /// stages stop at the next step and stay in a pause past its end, with
    /// their gates still watching, until `promote`.
    pub fn request_hold(&self, run_id: &str, held: bool) -> Result<(), JournalError> {
        self.update_run(run_id, "UPDATE runs SET held = ?2 WHERE id = ?1", &[&held])
    }

    /// One `UPDATE runs … WHERE id = ?1` (`values` are `?2`…); a run the
    /// journal does not hold is an error, not a silent no-op.
    fn update_run(
        &self,
        run_id: &str,
        statement: &str,
        values: &[&dyn rusqlite::ToSql],
    ) -> Result<(), JournalError> {
        self.write(|tx| {
            let mut all: Vec<&dyn rusqlite::ToSql> = vec![&run_id];
            all.extend_from_slice(values);
            let changed = tx.prepare_cached(statement)?.execute(all.as_slice())?;
            if changed == 0 {
                return Err(JournalError::UnknownRun(run_id.to_string()));
            }
            Ok(())
        })
    }

    /// `deployctl promote RUN`: the pause each stage is in ends now, and a
    /// hold is released.
    pub fn request_promote(&self, run_id: &str) -> Result<(), JournalError> {
        self.update_run(
            run_id,
            "UPDATE runs SET held = 0, promotions = promotions + 1 WHERE id = ?1",
            &[],
        )
    }

    /// Keeps a gate's latest measurement (`status` shows it while the gate
    /// is measured; only verdicts are events). Written in place: one row
    /// per gate of a stage.
    pub fn record_live_gate(
        &self,
        run_id: &str,
        stage: &str,
        live: &crate::gate::LiveGate,
    ) -> Result<(), JournalError> {
        let data = serde_json::to_string(live).map_err(|e| JournalError::Corrupt(e.to_string()))?;
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO live_gates (run_id, stage, gate, at, data) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (run_id, stage, gate) DO UPDATE SET at = excluded.at, data = excluded.data",
            )?
            .execute(params![run_id, stage, live.gate, now_ms(), data])?;
            Ok(())
        })
    }

    /// The latest measurement of each gate of the run's stages, with when
    /// it was taken (ms since the epoch), by stage.
    pub fn live_gates(
        &self,
        run_id: &str,
    ) -> Result<Vec<(String, i64, crate::gate::LiveGate)>, JournalError> {
        self.read(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT stage, at, data FROM live_gates WHERE run_id = ?1 ORDER BY stage, gate",
            )?;
            let rows = statement
                .query_map(params![run_id], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, String>(2)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(stage, at, data)| {
                    serde_json::from_str(&data)
                        .map(|live| (stage, at, live))
                        .map_err(|e| {
                            JournalError::Corrupt(format!("live gate of run {run_id}: {e}"))
                        })
                })
                .collect()
        })
    }

    /// Links a run to the run it starts again (`deployctl retry OLD`), so
    /// `status` of either names the other.
    pub fn link_retry(&self, run_id: &str, retry_of: &str) -> Result<(), JournalError> {
        self.update_run(
            run_id,
            "UPDATE runs SET retry_of = ?2 WHERE id = ?1",
            &[&retry_of],
        )
    }

    /// The runs that start `run_id` again, oldest first.
    pub fn retries_of(&self, run_id: &str) -> Result<Vec<String>, JournalError> {
        self.read(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT id FROM runs WHERE retry_of = ?1 ORDER BY created_at, id",
            )?;
            let ids = statement
                .query_map(params![run_id], |row| row.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            Ok(ids)
        })
    }

    /// `deployctl promote RUN --full`: like `promote`, and from now on
    /// every stage skips its remaining steps (pauses, gates, approvals,
    /// partial weights) and goes straight to full promotion.
    pub fn request_full_promotion(&self, run_id: &str) -> Result<(), JournalError> {
        self.update_run(
            run_id,
            "UPDATE runs SET held = 0, promotions = promotions + 1, full_promotion = 1 WHERE id = ?1",
            &[],
        )
    }

    /// How the run is steered now: held, how many promotions were asked
    /// for so far (a stage in a pause compares it with the count at its
    /// start), and whether a full promotion was.
    pub fn hold_state(&self, run_id: &str) -> Result<Steering, JournalError> {
        self.read(|connection| {
            Ok(connection
                .prepare_cached("SELECT held, promotions, full_promotion FROM runs WHERE id = ?1")?
                .query_row(params![run_id], |row| {
                    Ok(Steering {
                        held: row.get(0)?,
                        promotions: row.get(1)?,
                        full: row.get(2)?,
                    })
                })?)
        })
    }

    /// Who asked the run to stop, if anyone did.
    pub fn stop_requested(&self, run_id: &str) -> Result<Option<StopRequest>, JournalError> {
        self.read(|connection| {
            let code = connection
                .prepare_cached("SELECT kill_requested FROM runs WHERE id = ?1")?
                .query_row(params![run_id], |row| row.get::<_, i64>(0))?;
            Ok(StopRequest::from_code(code))
        })
    }

    pub fn kill_requested(&self, run_id: &str) -> Result<bool, JournalError> {
        self.read(|connection| {
            Ok(connection
                .prepare_cached("SELECT kill_requested FROM runs WHERE id = ?1")?
                .query_row(params![run_id], |row| row.get::<_, bool>(0))?)
        })
    }

    /// Appends a run-level event (no stage row changes).
    pub fn append_run_event(&self, run_id: &str, event: &Event) -> Result<(), JournalError> {
        self.write(|tx| {
            append_event(tx, run_id, None, event)?;
            Ok(())
        })
    }

    /// Records one approver's approval of `gate`. Verifying who the
    /// approver is (role, MFA code, not the initiator) happens before this
    /// is called; the journal only keeps the fact, once per approver.
    pub fn record_approval(
        &self,
        run_id: &str,
        gate: &str,
        approver: &str,
    ) -> Result<(), JournalError> {
        self.write(|tx| {
            tx.prepare_cached("INSERT OR IGNORE INTO approvals (run_id, gate, approver, at) VALUES (?1, ?2, ?3, ?4)")?.execute(params![run_id, gate, approver, now_ms()],
            )?;
            append_event(
                tx,
                run_id,
                None,
                &Event::Approved {
                    gate: gate.to_string(),
                    approver: approver.to_string(),
                },
            )?;
            Ok(())
        })
    }

    /// Records one approver's rejection of `gate`: the waiting stage fails
    /// (and rolls back, as the plan says).
    pub fn record_rejection(
        &self,
        run_id: &str,
        gate: &str,
        approver: &str,
        reason: &str,
    ) -> Result<(), JournalError> {
        self.write(|tx| {
            tx.prepare_cached("INSERT OR IGNORE INTO rejections (run_id, gate, approver, reason, at) VALUES (?1, ?2, ?3, ?4, ?5)")?.execute(params![run_id, gate, approver, reason, now_ms()],
            )?;
            append_event(
                tx,
                run_id,
                None,
                &Event::Rejected {
                    gate: gate.to_string(),
                    approver: approver.to_string(),
                    reason: reason.to_string(),
                },
            )?;
            Ok(())
        })
    }

    /// The first rejection of `gate` in `run_id`: (approver, reason).
    pub fn rejection(
        &self,
        run_id: &str,
        gate: &str,
    ) -> Result<Option<(String, String)>, JournalError> {
        self.read(|connection| {
            Ok(connection
                .prepare_cached("SELECT approver, reason FROM rejections WHERE run_id = ?1 AND gate = ?2 ORDER BY at LIMIT 1")?
                .query_row(params![run_id, gate],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?)
        })
    }

    /// Who approved `gate` in `run_id`, in order.
    pub fn approvers(&self, run_id: &str, gate: &str) -> Result<Vec<String>, JournalError> {
        self.read(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT approver FROM approvals WHERE run_id = ?1 AND gate = ?2 ORDER BY at",
            )?;
            let rows = statement.query_map(params![run_id, gate], |row| row.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
    }

    /// Distinct approvers recorded for `gate` in `run_id`.
    pub fn approvals(&self, run_id: &str, gate: &str) -> Result<u32, JournalError> {
        self.read(|connection| {
            Ok(connection
                .prepare_cached("SELECT COUNT(*) FROM approvals WHERE run_id = ?1 AND gate = ?2")?
                .query_row(params![run_id, gate], |row| row.get::<_, u32>(0))?)
        })
    }

    pub fn run(&self, run_id: &str) -> Result<RunRecord, JournalError> {
        self.read(|connection| {
            connection
                .prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"))?
                .query_row(params![run_id], run_from_row)
                .optional()?
                .ok_or_else(|| JournalError::UnknownRun(run_id.to_string()))
        })
    }

    /// The newest run made from plan file `plan_file` (the controller's
    /// `release/NS/NAME#UID` key), if any: one row found by SQLite, not
    /// every run read and searched.
    pub fn run_of_plan_file(&self, plan_file: &str) -> Result<Option<RunRecord>, JournalError> {
        self.read(|connection| {
            Ok(connection
                .prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE plan_file = ?1
                         ORDER BY created_at DESC, id DESC LIMIT 1"
                ))?
                .query_row(params![plan_file], run_from_row)
                .optional()?)
        })
    }

    /// Runs, newest first; only those touching `target` when given.
    /// Runs matching `query`, newest first (`history` with filters).
    pub fn runs_matching(&self, query: &RunQuery) -> Result<Vec<RunRecord>, JournalError> {
        // Phases as one `,A,B,` string, so the statement stays one cached
        // statement whatever the number of phases asked for.
        let phases = query.phases.as_ref().map(|phases| {
            let names: Vec<&str> = phases.iter().map(|phase| phase.as_str()).collect();
            format!(",{},", names.join(","))
        });
        self.read(|connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs r
                 WHERE (?1 IS NULL OR EXISTS
                    (SELECT 1 FROM stages s WHERE s.run_id = r.id AND s.target = ?1))
                   AND (?2 IS NULL OR r.environment = ?2)
                   AND (?3 IS NULL OR r.created_at >= ?3)
                   AND (?4 IS NULL OR instr(?4, ',' || r.phase || ',') > 0)
                 ORDER BY created_at DESC, id DESC LIMIT ?5"
            ))?;
            let rows = statement.query_map(
                params![
                    query.target,
                    query.environment,
                    query.since_ms,
                    phases,
                    query.limit
                ],
                run_from_row,
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    pub fn runs(&self, target: Option<&str>, limit: u32) -> Result<Vec<RunRecord>, JournalError> {
        self.read(|connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs r WHERE ?1 IS NULL OR EXISTS
                    (SELECT 1 FROM stages s WHERE s.run_id = r.id AND s.target = ?1)
                 ORDER BY created_at DESC, id DESC LIMIT ?2"
            ))?;
            let rows = statement.query_map(params![target, limit], run_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// The run holding the lock on `target_key` (a platform identity) and
    /// its holder, when that run has not ended: the lock `create_run` would
    /// refuse a new run for. Read-only (`plan --observe`).
    pub fn lock_holder(&self, target_key: &str) -> Result<Option<(String, String)>, JournalError> {
        self.read(|connection| {
            let lock: Option<(String, String, Option<String>)> = connection
                .prepare_cached(
                    "SELECT l.run_id, l.holder, r.phase FROM locks l
                     LEFT JOIN runs r ON r.id = l.run_id WHERE l.target_key = ?1",
                )?
                .query_row(params![target_key], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .optional()?;
            Ok(lock
                .filter(|(_, _, phase)| holds_its_locks(phase.as_deref()))
                .map(|(run, holder, _)| (run, holder)))
        })
    }

    /// The newest run that has not ended, if any.
    pub fn latest_unfinished(&self) -> Result<Option<RunRecord>, JournalError> {
        Ok(self
            .runs(None, 50)?
            .into_iter()
            .find(|run| !run.phase.is_terminal() || run.rollback_incomplete))
    }

    pub fn stages(&self, run_id: &str) -> Result<Vec<StageRecord>, JournalError> {
        self.read(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT name, target, target_key, phase, cursor, weight, stable_version, new_version,
                        moved, last_gate, pause_until, detail, updated_at
                 FROM stages WHERE run_id = ?1 ORDER BY position",
            )?;
            let rows = statement.query_map(params![run_id], |row| {
                let phase: String = row.get(3)?;
                let last_gate: Option<String> = row.get(9)?;
                Ok(StageRecord {
                    name: row.get(0)?,
                    target: row.get(1)?,
                    target_key: row.get(2)?,
                    phase: StagePhase::parse(&phase).unwrap_or(StagePhase::Failed),
                    cursor: row.get(4)?,
                    weight: row.get(5)?,
                    stable_version: row.get(6)?,
                    new_version: row.get(7)?,
                    moved: row.get(8)?,
                    last_gate: last_gate.and_then(|text| serde_json::from_str(&text).ok()),
                    pause_until: row.get(10)?,
                    detail: row.get(11)?,
                    updated_at: row.get(12)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    pub fn events(&self, run_id: &str) -> Result<Vec<EventRecord>, JournalError> {
        self.read(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT seq, at, stage, kind, data FROM events WHERE run_id = ?1 ORDER BY seq",
            )?;
            let rows = statement.query_map(params![run_id], |row| {
                let data: String = row.get(4)?;
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, String>(3)?,
                    data,
                ))
            })?;
            let mut records = Vec::new();
            for row in rows {
                let (seq, at, stage, kind, data) = row?;
                let data: serde_json::Value =
                    serde_json::from_str(&data).unwrap_or(serde_json::Value::Null);
                let event = Event::from_stored(&kind, data.clone()).map_err(|source| {
                    JournalError::UnreadableEvent {
                        run: run_id.to_string(),
                        seq,
                        format: self.format,
                        source,
                    }
                })?;
                records.push(EventRecord {
                    seq,
                    at,
                    stage,
                    kind,
                    data,
                    event,
                });
            }
            Ok(records)
        })
    }

    /// SQLite's own consistency check plus ours: every call has a stage,
    /// event sequences have no gaps.
    pub fn check_consistency(&self, run_id: &str) -> Result<(), JournalError> {
        self.read(|connection| {
            let integrity: String =
                connection.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
            if integrity != "ok" {
                return Err(JournalError::Corrupt(integrity));
            }
            let (count, max): (i64, Option<i64>) = connection.query_row(
                "SELECT COUNT(*), MAX(seq) FROM events WHERE run_id = ?1",
                params![run_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            if max.unwrap_or(0) != count {
                return Err(JournalError::Corrupt(format!(
                    "run {run_id}: {count} events but last sequence number {max:?}"
                )));
            }
            let orphans: i64 = connection.query_row(
                "SELECT COUNT(*) FROM calls c WHERE c.run_id = ?1 AND NOT EXISTS
                    (SELECT 1 FROM stages s WHERE s.run_id = c.run_id AND s.name = c.stage)",
                params![run_id],
                |row| row.get(0),
            )?;
            if orphans != 0 {
                return Err(JournalError::Corrupt(format!(
                    "run {run_id}: {orphans} calls of unknown stages"
                )));
            }
            Ok(())
        })
    }
}

/// The format recorded in the database (`PRAGMA user_version`): 0 means
/// a new file (it gets the current format) or, when it already has runs,
/// a journal of the first release, which recorded no version.
fn stored_format(connection: &Connection) -> Result<i64, JournalError> {
    let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version != 0 {
        return Ok(version);
    }
    let has_runs: bool = connection.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs')",
        [],
        |row| row.get(0),
    )?;
    Ok(if has_runs { 1 } else { FORMAT_VERSION })
}

fn scope_name(scope: RollbackScope) -> &'static str {
    match scope {
        RollbackScope::Plan => "plan",
        RollbackScope::Stage => "stage",
    }
}

/// A new run's rows, events and locks (see [`Journal::create_run`]).
fn insert_run(tx: &Tx<'_>, run: &NewRun<'_>) -> Result<(), JournalError> {
    take_locks(tx, run.id, &run.locks, run.initiator)?;
    let now = now_ms();
    tx.execute(
        "INSERT INTO runs (id, plan_name, environment, plan_file, plan_digest, plan_source,
                initiator, mode, phase, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
        params![
            run.id,
            run.plan_name,
            run.environment,
            run.plan_file,
            run.plan_digest,
            run.plan_source,
            run.initiator,
            run.mode.as_str(),
            RunPhase::Pending.as_str(),
            now
        ],
    )?;
    for (position, stage) in run.stages.iter().enumerate() {
        tx.execute(
            "INSERT INTO stages (run_id, position, name, target, target_key, phase,
                    new_version, stable_version, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                run.id,
                position as i64,
                stage.name,
                stage.target,
                stage.target_key,
                StagePhase::Pending.as_str(),
                stage.new_version,
                stage
                    .preflight
                    .as_ref()
                    .map(|p| p.stable_version.as_str())
                    .filter(|v| !v.is_empty()),
                now
            ],
        )?;
    }
    append_event(
        tx,
        run.id,
        None,
        &Event::RunCreated {
            initiator: run.initiator.to_string(),
            mode: run.mode,
            plan_digest: run.plan_digest.to_string(),
        },
    )?;
    for stage in &run.stages {
        if let Some(preflight) = &stage.preflight {
            append_event(
                tx,
                run.id,
                Some(&stage.name),
                &Event::Preflight {
                    stable_version: preflight.stable_version.clone(),
                    ready: preflight.ready,
                    detail: preflight.detail.clone(),
                    identity: preflight.identity.clone(),
                    verified: preflight.verified.clone(),
                },
            )?;
        }
    }
    Ok(())
}

/// Takes every lock in `keys` for `run_id`, all or none (the caller's
/// transaction rolls back on a refusal). A lock held by a run that has
/// ended is stale and taken over.
fn take_locks(
    tx: &Tx<'_>,
    run_id: &str,
    keys: &[String],
    holder: &str,
) -> Result<(), JournalError> {
    for key in keys {
        let existing: Option<(String, String, Option<String>)> = tx
            .query_row(
                "SELECT l.run_id, l.holder, r.phase FROM locks l
                 LEFT JOIN runs r ON r.id = l.run_id WHERE l.target_key = ?1",
                params![key],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()?;
        if let Some((other_run, other_holder, phase)) = existing
            && other_run != run_id
            && holds_its_locks(phase.as_deref())
        {
            return Err(JournalError::Locked {
                target: key.clone(),
                run: other_run,
                holder: other_holder,
            });
        }
        tx.execute(
            "INSERT INTO locks (target_key, run_id, holder, acquired_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(target_key) DO UPDATE SET run_id = ?2, holder = ?3, acquired_at = ?4",
            params![key, run_id, holder, now_ms()],
        )?;
    }
    Ok(())
}

/// Whether a run in `phase` (`None`: the run is gone) still holds its
/// locks: only runs that have not ended do; a lock left by an ended run is
/// stale and the next run takes it over.
fn holds_its_locks(phase: Option<&str>) -> bool {
    !phase
        .and_then(RunPhase::parse)
        .is_none_or(RunPhase::is_terminal)
}

/// Columns added after the first schema; journals written by older builds
/// get them on open.
fn migrate(connection: &Connection) -> Result<(), JournalError> {
    let mut statement = connection.prepare("SELECT name FROM pragma_table_info('runs')")?;
    let columns: Vec<String> = statement
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for (column, definition) in [
        ("rollback_scope", "TEXT"),
        ("rollback_final", "TEXT"),
        ("held", "INTEGER NOT NULL DEFAULT 0"),
        ("promotions", "INTEGER NOT NULL DEFAULT 0"),
        ("full_promotion", "INTEGER NOT NULL DEFAULT 0"),
        ("retry_of", "TEXT"),
    ] {
        if !columns.iter().any(|c| c == column) {
            connection.execute_batch(&format!(
                "ALTER TABLE runs ADD COLUMN {column} {definition}"
            ))?;
        }
    }
    // After the column exists in an older journal too.
    connection.execute_batch("CREATE INDEX IF NOT EXISTS runs_by_retry_of ON runs(retry_of)")?;
    Ok(())
}

const RUN_COLUMNS: &str = "id, plan_name, environment, plan_file, plan_digest, plan_source, initiator, mode, \
     phase, created_at, updated_at, owner_pid, owner_host, heartbeat_at, kill_requested, \
     rollback_incomplete, outcome, rollback_scope, rollback_final, held, retry_of";

fn run_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    let phase: String = row.get(8)?;
    Ok(RunRecord {
        id: row.get(0)?,
        plan_name: row.get(1)?,
        environment: row.get(2)?,
        plan_file: row.get(3)?,
        plan_digest: row.get(4)?,
        plan_source: row.get(5)?,
        initiator: row.get(6)?,
        mode: RunMode::parse(&row.get::<_, String>(7)?).unwrap_or(RunMode::Apply),
        phase: RunPhase::parse(&phase).unwrap_or(RunPhase::Failed),
        created_at: row.get(9)?,
        updated_at: row.get(10)?,
        owner_pid: row.get(11)?,
        owner_host: row.get(12)?,
        heartbeat_at: row.get(13)?,
        kill_requested: row.get(14)?,
        rollback_incomplete: row.get(15)?,
        outcome: row.get(16)?,
        rollback_scope: row.get::<_, Option<String>>(17)?.as_deref().map(|scope| {
            if scope == scope_name(RollbackScope::Stage) {
                RollbackScope::Stage
            } else {
                RollbackScope::Plan
            }
        }),
        rollback_final: row
            .get::<_, Option<String>>(18)?
            .as_deref()
            .and_then(RunPhase::parse),
        held: row.get(19)?,
        retry_of: row.get(20)?,
    })
}

fn append_event(
    tx: &Tx<'_>,
    run_id: &str,
    stage: Option<&str>,
    event: &Event,
) -> Result<(), JournalError> {
    let kind = event.kind();
    let data = event.data();
    // Cached statements: these run several times per stage, and parsing
    // SQL each time showed up in the engine benchmark's profile.
    tx.prepare_cached(
        "INSERT INTO events (run_id, seq, at, stage, kind, data)
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE run_id = ?1), ?2, ?3, ?4, ?5)",
    )?
    .execute(params![run_id, now_ms(), stage, kind, data.to_string()])?;
    tx.events.borrow_mut().push(JournalEvent {
        run_id: run_id.to_string(),
        stage: stage.map(str::to_string),
        event: event.clone(),
    });
    tx.prepare_cached("UPDATE runs SET updated_at = ?2 WHERE id = ?1")?
        .execute(params![run_id, now_ms()])?;
    Ok(())
}

fn update_stage(
    tx: &rusqlite::Transaction<'_>,
    run_id: &str,
    stage: &str,
    update: &StageUpdate,
) -> Result<(), JournalError> {
    tx.prepare_cached(
        "UPDATE stages SET
            phase = COALESCE(?3, phase),
            cursor = COALESCE(?4, cursor),
            weight = COALESCE(?5, weight),
            stable_version = COALESCE(?6, stable_version),
            moved = COALESCE(?7, moved),
            last_gate = COALESCE(?8, last_gate),
            pause_until = CASE WHEN ?9 THEN ?10 ELSE pause_until END,
            detail = COALESCE(?11, detail),
            updated_at = ?12
         WHERE run_id = ?1 AND name = ?2",
    )?
    .execute(params![
        run_id,
        stage,
        update.phase.map(StagePhase::as_str),
        update.cursor,
        update.weight,
        update.stable_version,
        update.moved,
        update.last_gate.as_ref().map(|gate| gate.to_string()),
        update.pause_until.is_some(),
        update.pause_until.flatten(),
        update.detail,
        now_ms()
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "deployctl-journal-{name}-{}-{}",
            std::process::id(),
            now_ms()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn new_run<'a>(id: &'a str) -> NewRun<'a> {
        NewRun {
            id,
            plan_name: "demo",
            environment: "staging",
            plan_file: "plan.yaml",
            plan_digest: "abc",
            plan_source: "source",
            initiator: "alice",
            mode: RunMode::Apply,
            stages: vec![NewStage {
                name: "api".into(),
                target: "api".into(),
                target_key: "sim:api".into(),
                new_version: Some("v2".into()),
                preflight: None,
            }],
            locks: Vec::new(),
        }
    }

    /// Holds the journal's writer inside a commit (its observer runs under
    /// the writer's lock) until told to go on.
    struct HeldCommit {
        armed: std::sync::atomic::AtomicBool,
        entered: Mutex<std::sync::mpsc::Sender<()>>,
        go_on: Mutex<std::sync::mpsc::Receiver<()>>,
    }

    impl JournalObserver for HeldCommit {
        fn committed(&self, _: &[JournalEvent]) -> Result<(), ObserverError> {
            if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
                let _ = self.entered.lock().unwrap().send(());
                let _ = self.go_on.lock().unwrap().recv();
            }
            Ok(())
        }
    }

    /// A reconcile or `deployctl status` reading a run must not queue
    /// behind another run's commit: reads have connections of their own,
    /// and see what was committed before they began.
    #[test]
    fn a_read_does_not_wait_for_a_commit_in_progress() {
        let dir = temp_dir("reader");
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let (go_on, go_on_rx) = std::sync::mpsc::channel();
        let held = Arc::new(HeldCommit {
            armed: std::sync::atomic::AtomicBool::new(false),
            entered: Mutex::new(entered_tx),
            go_on: Mutex::new(go_on_rx),
        });
        let journal = Arc::new(Journal::open(&dir).unwrap().with_observer(held.clone()));
        journal.create_run(&new_run("r1")).unwrap();
        held.armed.store(true, std::sync::atomic::Ordering::SeqCst);
        let writer = {
            let journal = Arc::clone(&journal);
            std::thread::spawn(move || {
                journal
                    .set_run_phase("r1", RunPhase::Progressing, None, false)
                    .unwrap()
            })
        };
        entered
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the commit reached its observer");
        let (read_tx, read) = std::sync::mpsc::channel();
        let reader = {
            let journal = Arc::clone(&journal);
            std::thread::spawn(move || {
                let _ = read_tx.send(journal.run("r1").map(|run| run.phase));
            })
        };
        let phase = read.recv_timeout(std::time::Duration::from_secs(5));
        // Let the writer finish whatever the read did, so a failure does
        // not leave the threads hanging.
        go_on.send(()).unwrap();
        writer.join().unwrap();
        reader.join().unwrap();
        let phase = phase.expect("the read answered while the writer was inside its commit");
        assert_eq!(phase.unwrap(), RunPhase::Progressing, "the commit is seen");
    }

    #[test]
    fn runs_stages_and_events_are_recorded_in_order() {
        let dir = temp_dir("order");
        let journal = Journal::open(&dir).unwrap();
        journal.create_run(&new_run("r1")).unwrap();
        journal
            .transition(
                "r1",
                "api",
                &Event::StageStarted { cursor: 0 },
                &StageUpdate {
                    phase: Some(StagePhase::Progressing),
                    cursor: Some(2),
                    weight: Some(20),
                    ..StageUpdate::default()
                },
            )
            .unwrap();
        journal
            .set_run_phase("r1", RunPhase::Progressing, None, false)
            .unwrap();
        let stage = &journal.stages("r1").unwrap()[0];
        assert_eq!(
            (stage.phase, stage.cursor, stage.weight),
            (StagePhase::Progressing, 2, 20)
        );
        let kinds: Vec<String> = journal
            .events("r1")
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["runCreated", "stageStarted", "runPhase"]);
        journal.check_consistency("r1").unwrap();
        assert_eq!(journal.run("r1").unwrap().phase, RunPhase::Progressing);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_run_is_found_by_its_plan_file_newest_first() {
        let dir = temp_dir("plan-file");
        let journal = Journal::open(&dir).unwrap();
        let key = "release/shop/web#uid-1";
        assert!(journal.run_of_plan_file(key).unwrap().is_none());
        journal.create_run(&new_run("r1")).unwrap();
        for id in ["r2", "r3"] {
            journal
                .create_run(&NewRun {
                    plan_file: key,
                    ..new_run(id)
                })
                .unwrap();
        }
        let found = journal.run_of_plan_file(key).unwrap().expect("a run");
        assert_eq!((found.id.as_str(), found.plan_file.as_str()), ("r3", key));
        assert_eq!(
            journal.run_of_plan_file("plan.yaml").unwrap().map(|r| r.id),
            Some("r1".to_owned())
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_target_can_only_be_locked_by_one_live_run() {
        let dir = temp_dir("locks");
        let journal = Journal::open(&dir).unwrap();
        journal.create_run(&new_run("r1")).unwrap();
        journal.create_run(&new_run("r2")).unwrap();
        let keys = vec!["sim:api".to_string()];
        journal.acquire_locks("r1", &keys, "alice@pc1").unwrap();
        // Taking it again is idempotent for the holder.
        journal.acquire_locks("r1", &keys, "alice@pc1").unwrap();
        let error = journal.acquire_locks("r2", &keys, "bob@pc2").unwrap_err();
        assert!(
            error.to_string().contains("locked by run r1 (alice@pc1)"),
            "{error}"
        );
        // Once r1 has ended its lock is stale and may be taken over.
        journal
            .set_run_phase("r1", RunPhase::Succeeded, None, false)
            .unwrap();
        journal.acquire_locks("r2", &keys, "bob@pc2").unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn lock_holder_names_only_live_runs() {
        let dir = temp_dir("holder");
        let journal = Journal::open(&dir).unwrap();
        assert_eq!(journal.lock_holder("sim:api").unwrap(), None);
        journal.create_run(&new_run("r1")).unwrap();
        let keys = vec!["sim:api".to_string()];
        journal.acquire_locks("r1", &keys, "alice@pc1").unwrap();
        assert_eq!(
            journal.lock_holder("sim:api").unwrap(),
            Some(("r1".to_string(), "alice@pc1".to_string()))
        );
        assert_eq!(journal.lock_holder("sim:other").unwrap(), None);
        // An ended run's lock is stale: nothing holds the target.
        journal
            .set_run_phase("r1", RunPhase::RolledBack, None, false)
            .unwrap();
        assert_eq!(journal.lock_holder("sim:api").unwrap(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn call_intents_without_outcomes_are_visible_after_reopening() {
        let dir = temp_dir("calls");
        {
            let journal = Journal::open(&dir).unwrap();
            journal.create_run(&new_run("r1")).unwrap();
            journal
                .call_intent(
                    "r1",
                    "api",
                    "r1/api/0",
                    &deployctl_adapter::Action::Deploy {
                        version: "v2".into(),
                    },
                    &StageUpdate::default(),
                )
                .unwrap();
        }
        let journal = Journal::open(&dir).unwrap();
        let calls = journal.calls("r1").unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].state, "intent");
        journal
            .call_outcome(
                "r1",
                "api",
                "r1/api/0",
                true,
                &["sim-1".to_string()],
                None,
                &StageUpdate::default(),
            )
            .unwrap();
        assert_eq!(journal.calls("r1").unwrap()[0].state, "done");
        journal.check_consistency("r1").unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_run_refused_by_a_lock_leaves_nothing_behind() {
        let dir = temp_dir("refused");
        let journal = Journal::open(&dir).unwrap();
        let locked = |id| NewRun {
            locks: vec!["sim:world/api".to_string()],
            stages: vec![NewStage {
                preflight: Some(PreflightRecord {
                    stable_version: "v1".into(),
                    ready: true,
                    detail: "ok".into(),
                    identity: Some("sim:world/api".into()),
                    verified: Vec::new(),
                }),
                ..new_run(id).stages[0].clone()
            }],
            ..new_run(id)
        };
        journal.create_run(&locked("r1")).unwrap();
        assert_eq!(
            journal.stages("r1").unwrap()[0].stable_version.as_deref(),
            Some("v1")
        );
        let error = journal.create_run(&locked("r2")).unwrap_err();
        assert!(matches!(error, JournalError::Locked { .. }), "{error}");
        assert!(matches!(
            journal.run("r2"),
            Err(JournalError::UnknownRun(_))
        ));
        let ids: Vec<String> = journal
            .runs(None, 10)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["r1"]);
        let kinds: Vec<String> = journal
            .events("r1")
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["runCreated", "preflight"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A journal written before `promote --full` and `retry` links (no
    /// `full_promotion`, `retry_of` columns, no index on them) opens, gets
    /// them, and its runs read as neither fully promoted nor retries.
    #[test]
    fn a_journal_from_before_the_retry_link_gets_its_columns_on_open() {
        let dir = temp_dir("older");
        {
            let journal = Journal::open(&dir).unwrap();
            journal.create_run(&new_run("r-old")).unwrap();
        }
        {
            let connection = Connection::open(dir.join("journal.sqlite3")).unwrap();
            connection
                .execute_batch(
                    "DROP INDEX runs_by_retry_of;
                     ALTER TABLE runs DROP COLUMN retry_of;
                     ALTER TABLE runs DROP COLUMN full_promotion;",
                )
                .unwrap();
        }
        let journal = Journal::open(&dir).unwrap();
        let run = journal.run("r-old").unwrap();
        assert_eq!(run.retry_of, None);
        assert!(!journal.hold_state("r-old").unwrap().full);
        journal.create_run(&new_run("r-new")).unwrap();
        journal.link_retry("r-new", "r-old").unwrap();
        assert_eq!(journal.retries_of("r-old").unwrap(), ["r-new"]);
        assert_eq!(
            journal.run("r-new").unwrap().retry_of.as_deref(),
            Some("r-old")
        );
        journal.request_full_promotion("r-new").unwrap();
        assert!(journal.hold_state("r-new").unwrap().full);
        drop(journal);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_journal_of_a_newer_format_is_refused_naming_its_version() {
        let dir = temp_dir("newer");
        drop(Journal::open(&dir).unwrap());
        {
            let connection = Connection::open(dir.join("journal.sqlite3")).unwrap();
            connection
                .pragma_update(None, "user_version", FORMAT_VERSION + 1)
                .unwrap();
        }
        let Err(error) = Journal::open(&dir) else {
            panic!("a newer journal opened");
        };
        let text = error.to_string();
        assert!(
            text.contains(&format!("journal format version {}", FORMAT_VERSION + 1)),
            "{text}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_unreadable_event_names_the_run_the_event_and_the_format() {
        let dir = temp_dir("unreadable");
        let journal = Journal::open(&dir).unwrap();
        journal.create_run(&new_run("r1")).unwrap();
        journal
            .with(|connection| {
                connection.execute(
                    "UPDATE events SET kind = 'teleported' WHERE run_id = 'r1'",
                    [],
                )?;
                Ok(())
            })
            .unwrap();
        let error = journal.events("r1").unwrap_err().to_string();
        assert!(error.contains("run r1, event #1"), "{error}");
        assert!(error.contains("journal format version 2"), "{error}");
        assert!(error.contains("teleported"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn the_state_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("perms");
        let _journal = Journal::open(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
