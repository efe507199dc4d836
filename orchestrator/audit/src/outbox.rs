//! The durable outbox: what has not reached the sink yet.
//!
//! The queue's content is the log itself: a record is in `audit.jsonl`,
//! fsynced, before any shipping is tried, and the outbox is the log's tail
//! past a cursor (`outbox.json`: the last acknowledged `seq`, its byte
//! offset, and the last acknowledged checkpoint). The cursor moves (an
//! atomic, fsynced replace) only after the sink acknowledged a batch, so
//! an unreachable sink leaves records queued across restarts and never
//! drops one. Why a cursor rather than a second copy of every record: the
//! copy would double every group commit's fsyncs and could disagree with
//! the log; the cursor costs one small write per shipped batch.
//!
//! One shipper at a time per directory: a mutex inside the process and
//! `outbox.lock` (flock, try-only) across processes, so two processes
//! never ship the same batch concurrently.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::canonical::parse_record_line;
use crate::checkpoint::{CHECKPOINTS_FILE, Checkpoint};
use crate::error::{AuditError, io};
use crate::fsutil;
use crate::record::{ApiVersion, AuditRecord, ChainHash};
use crate::sink::Sink;
use crate::time::{format_ms, now_ms};
use crate::writer::{Head, LOG_FILE, Shared};

pub const OUTBOX_FILE: &str = "outbox.json";
const OUTBOX_LOCK: &str = "outbox.lock";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum CursorKind {
    AuditOutboxCursor,
}

/// `outbox.json`: how far the sink has acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Cursor {
    api_version: ApiVersion,
    kind: CursorKind,
    shipped_seq: u64,
    shipped_hash: ChainHash,
    /// Byte offset in `audit.jsonl` just after record `shipped_seq`.
    offset: u64,
    shipped_checkpoint_seq: u64,
    /// Byte offset in `checkpoints.jsonl` after that checkpoint.
    checkpoints_offset: u64,
}

impl Default for Cursor {
    fn default() -> Cursor {
        Cursor {
            api_version: ApiVersion::V1,
            kind: CursorKind::AuditOutboxCursor,
            shipped_seq: 0,
            shipped_hash: ChainHash::ZERO,
            offset: 0,
            shipped_checkpoint_seq: 0,
            checkpoints_offset: 0,
        }
    }
}

/// What shipping moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShipReport {
    pub batches: u64,
    pub records: u64,
    pub checkpoints: u64,
}

/// What is still on this machine only, for the caller's policy (pause a
/// run, refuse to start one, warn).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Records written but not acknowledged by the sink.
    pub records: u64,
    /// The first of them.
    pub oldest_seq: Option<u64>,
    /// A checkpoint is written but not acknowledged.
    pub checkpoint: bool,
    /// The last shipping failure, if the last attempt failed.
    pub last_error: Option<String>,
    /// When shipping started failing (RFC 3339), if it is failing.
    pub failing_since: Option<String>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.records == 0 && !self.checkpoint
    }
}

#[derive(Default)]
struct Failure {
    last_error: Option<String>,
    failing_since: Option<String>,
}

pub(crate) struct Outbox {
    dir: PathBuf,
    sink: Option<Arc<dyn Sink>>,
    batch_limit: usize,
    shared: Arc<Shared>,
    /// Serializes shippers within the process.
    shipping: Mutex<()>,
    shipped_seq: AtomicU64,
    shipped_checkpoint_seq: AtomicU64,
    failure: Mutex<Failure>,
}

impl Outbox {
    pub fn open(
        dir: &Path,
        sink: Option<Arc<dyn Sink>>,
        batch_limit: usize,
        shared: Arc<Shared>,
    ) -> Result<Outbox, AuditError> {
        let cursor = load_cursor(dir)?;
        Ok(Outbox {
            dir: dir.to_path_buf(),
            sink,
            batch_limit: batch_limit.max(1),
            shared,
            shipping: Mutex::new(()),
            shipped_seq: AtomicU64::new(cursor.shipped_seq),
            shipped_checkpoint_seq: AtomicU64::new(cursor.shipped_checkpoint_seq),
            failure: Mutex::new(Failure::default()),
        })
    }

    pub fn has_sink(&self) -> bool {
        self.sink.is_some()
    }

    pub fn pending(&self) -> Pending {
        self.pending_at(&self.shared.head())
    }

    /// [`Outbox::pending`] for a head the caller holds the lock of.
    pub fn pending_at(&self, head: &Head) -> Pending {
        let shipped = self.shipped_seq.load(Ordering::Acquire);
        let records = head.seq.saturating_sub(shipped);
        let failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        Pending {
            records,
            oldest_seq: (records > 0).then_some(shipped + 1),
            checkpoint: head.checkpoint_seq > self.shipped_checkpoint_seq.load(Ordering::Acquire),
            last_error: failure.last_error.clone(),
            failing_since: failure.failing_since.clone(),
        }
    }

    /// Ships everything durable and not yet acknowledged, batch by batch,
    /// stopping at the first failure (the rest stays queued).
    pub fn ship_pending(&self) -> Result<ShipReport, AuditError> {
        let sink = self.sink.as_ref().ok_or(AuditError::NoSink)?;
        let _in_process = self.shipping.lock().unwrap_or_else(|p| p.into_inner());
        let lock_path = self.dir.join(OUTBOX_LOCK);
        let lock = fsutil::open_append(&lock_path)?;
        match lock.try_lock() {
            Ok(()) => {}
            // Another process is shipping this directory right now.
            Err(std::fs::TryLockError::WouldBlock) => return Ok(ShipReport::default()),
            Err(std::fs::TryLockError::Error(e)) => return Err(io("lock", &lock_path)(e)),
        }
        // Re-read: another process may have moved the cursor.
        let mut cursor = load_cursor(&self.dir)?;
        let durable_len = self.shared.head().len;
        let mut report = ShipReport::default();
        loop {
            let batch = self.next_batch(&cursor, durable_len)?;
            if batch.records.is_empty() && batch.checkpoint.is_none() {
                break;
            }
            if let Err(source) = sink.ship(&batch.records, batch.checkpoint.as_ref()) {
                let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
                failure.last_error = Some(source.to_string());
                failure
                    .failing_since
                    .get_or_insert_with(|| format_ms(now_ms()));
                return Err(AuditError::Ship {
                    sink: sink.describe(),
                    source,
                });
            }
            if let Some(last) = batch.records.last() {
                cursor.shipped_seq = last.seq;
                cursor.shipped_hash = last.hash;
                cursor.offset = batch.end_offset;
            }
            if let Some(checkpoint) = &batch.checkpoint {
                cursor.shipped_checkpoint_seq = checkpoint.seq;
                cursor.checkpoints_offset = batch.checkpoints_end_offset;
            }
            let bytes = serde_json::to_vec(&cursor)?;
            fsutil::write_atomic(&self.dir.join(OUTBOX_FILE), &bytes)?;
            self.shipped_seq
                .store(cursor.shipped_seq, Ordering::Release);
            self.shipped_checkpoint_seq
                .store(cursor.shipped_checkpoint_seq, Ordering::Release);
            report.batches += 1;
            report.records += batch.records.len() as u64;
            report.checkpoints += u64::from(batch.checkpoint.is_some());
        }
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Failure::default();
        Ok(report)
    }

    /// The next batch after `cursor`: records up to the batch limit or the
    /// next pending checkpoint, whichever comes first, with that checkpoint
    /// when the batch ends on it.
    fn next_batch(&self, cursor: &Cursor, durable_len: u64) -> Result<Batch, AuditError> {
        let (checkpoint, checkpoints_end_offset) = self.next_checkpoint(cursor)?;
        let limit_seq = checkpoint.as_ref().map_or(u64::MAX, |c| c.seq);
        if limit_seq <= cursor.shipped_seq {
            return Ok(Batch {
                records: Vec::new(),
                end_offset: cursor.offset,
                checkpoint,
                checkpoints_end_offset,
            });
        }
        let path = self.dir.join(LOG_FILE);
        let wanted = Wanted {
            after_seq: cursor.shipped_seq,
            up_to_seq: limit_seq,
            count: self.batch_limit,
        };
        let mut records = read_records(&path, cursor.offset, durable_len, &wanted)?;
        // The cursor's offset should start at record shipped_seq + 1; if
        // it does not (the log was replaced), look for that record from the
        // beginning rather than ship from the wrong place.
        if records.first().map(|(r, _)| r.seq) != Some(cursor.shipped_seq + 1) && cursor.offset != 0
        {
            records = read_records(&path, 0, durable_len, &wanted)?;
        }
        let end_offset = records.last().map_or(cursor.offset, |(_, end)| *end);
        let records: Vec<AuditRecord> = records.into_iter().map(|(r, _)| r).collect();
        let ends_on_checkpoint = records.last().map(|r| r.seq) == Some(limit_seq);
        Ok(Batch {
            records,
            end_offset,
            checkpoint: checkpoint.filter(|_| ends_on_checkpoint),
            checkpoints_end_offset,
        })
    }

    /// The first checkpoint after the cursor's, and the offset after it.
    fn next_checkpoint(&self, cursor: &Cursor) -> Result<(Option<Checkpoint>, u64), AuditError> {
        let path = self.dir.join(CHECKPOINTS_FILE);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, 0)),
            Err(e) => return Err(io("open", &path)(e)),
        };
        let mut offset = cursor.checkpoints_offset;
        file.seek(SeekFrom::Start(offset))
            .map_err(io("read", &path))?;
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = reader
                .read_until(b'\n', &mut line)
                .map_err(io("read", &path))?;
            if read == 0 || line.last() != Some(&b'\n') {
                return Ok((None, cursor.checkpoints_offset));
            }
            offset += read as u64;
            line.pop();
            let checkpoint: Checkpoint =
                serde_json::from_slice(&line).map_err(|e| AuditError::Corrupt {
                    path: path.clone(),
                    message: format!("a checkpoint line does not parse: {e}"),
                })?;
            if checkpoint.seq > cursor.shipped_checkpoint_seq {
                return Ok((Some(checkpoint), offset));
            }
        }
    }
}

struct Batch {
    records: Vec<AuditRecord>,
    end_offset: u64,
    checkpoint: Option<Checkpoint>,
    checkpoints_end_offset: u64,
}

/// Which records a batch takes.
struct Wanted {
    after_seq: u64,
    up_to_seq: u64,
    count: usize,
}

/// Reads complete records in `wanted`, from byte `start` up to `end`.
/// Each comes with the offset just after its line.
fn read_records(
    path: &Path,
    start: u64,
    end: u64,
    wanted: &Wanted,
) -> Result<Vec<(AuditRecord, u64)>, AuditError> {
    let mut records = Vec::new();
    if start >= end {
        return Ok(records);
    }
    let mut file = File::open(path).map_err(io("open", path))?;
    file.seek(SeekFrom::Start(start))
        .map_err(io("read", path))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut offset = start;
    let mut line = Vec::new();
    while records.len() < wanted.count && offset < end {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(io("read", path))?;
        if read == 0 || line.last() != Some(&b'\n') {
            break;
        }
        offset += read as u64;
        line.pop();
        let seq = parse_record_line(&line)
            .map_err(|why| AuditError::Corrupt {
                path: path.to_path_buf(),
                message: format!("cannot ship a line before byte {offset}: {why}"),
            })?
            .seq;
        if seq <= wanted.after_seq {
            continue;
        }
        let record: AuditRecord =
            serde_json::from_slice(&line).map_err(|e| AuditError::Corrupt {
                path: path.to_path_buf(),
                message: format!("cannot ship record {seq}: {e}"),
            })?;
        records.push((record, offset));
        if seq >= wanted.up_to_seq {
            break;
        }
    }
    Ok(records)
}

fn load_cursor(dir: &Path) -> Result<Cursor, AuditError> {
    let path = dir.join(OUTBOX_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| AuditError::Corrupt {
            path,
            message: format!("not an outbox cursor: {e}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Cursor::default()),
        Err(e) => Err(io("read", &path)(e)),
    }
}
