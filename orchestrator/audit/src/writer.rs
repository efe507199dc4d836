//! The writer thread: group commit, the chain's head, crash repair.
//!
//! Every append goes through one thread. It takes whatever requests are
//! queued, seals them into lines (seq, time, prev, hash), writes them
//! with one `write` and makes them durable with one `fdatasync`, then
//! answers every caller. While it waits for the disk, new requests queue
//! up and form the next group: under load, one fsync serves many records;
//! alone, an append costs one fsync.
//!
//! Several processes may append to one directory (`apply` and a `kill`
//! from another terminal): each commit holds `audit.lock` (flock) and
//! first checks whether the file grew behind its back; if so it re-reads
//! the head from the last line. That same check finds a line torn by a
//! crash (no final `\n`), cuts it off and records the repair as an
//! `audit.recovered` record, so the cut is itself on the record.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::canonical::{body_hash, parse_record_line, seal_record};
use crate::checkpoint::{CHECKPOINTS_FILE, Checkpoint};
use crate::error::{AuditError, io};
use crate::fsutil::{self, read_tail};
use crate::keys::SigningKey;
use crate::record::{
    Action, ApiVersion, AuditRecord, ChainHash, Entry, Outcome, RecordKind, What, Who,
};
use crate::time::{format_ms, now_ms};

pub const LOG_FILE: &str = "audit.jsonl";
pub const LOCK_FILE: &str = "audit.lock";
/// Requests taken into one group at most, so one huge burst cannot hold
/// every caller for a long write.
const MAX_GROUP: usize = 1024;
/// How long a group waits at most for callers that are inside `append`
/// but have not queued yet: a fraction of one fsync (≈ 100-150 µs here).
const MAX_GATHER: Duration = Duration::from_micros(50);

/// The durable head of the chain, as far as this process knows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Head {
    pub seq: u64,
    pub hash: ChainHash,
    /// Bytes of `audit.jsonl` that are complete and fsynced: the shipper
    /// never reads past this (it must not ship what a power cut could
    /// still take back).
    pub len: u64,
    pub checkpoint_seq: u64,
}

/// What the writer shares with the log handle and the shipper.
#[derive(Default)]
pub(crate) struct Shared {
    pub head: Mutex<Head>,
    /// Signalled after every commit, and on shutdown.
    pub changed: Condvar,
    pub commits: AtomicU64,
    pub records: AtomicU64,
    /// Callers inside `AuditLog::append_batch` right now.
    pub appenders: AtomicUsize,
}

impl Shared {
    pub fn head(&self) -> Head {
        *self.head.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) enum Request {
    Append {
        entries: Vec<Entry>,
        reply: SyncSender<Result<Vec<AuditRecord>, AuditError>>,
    },
    Checkpoint {
        reply: SyncSender<Result<Checkpoint, AuditError>>,
    },
}

pub(crate) struct Writer {
    log_path: PathBuf,
    log: File,
    checkpoints_path: PathBuf,
    checkpoints: File,
    lock: File,
    key: SigningKey,
    identity: Who,
    checkpoint_every: u64,
    head: Head,
    checkpoints_len: u64,
    last_checkpoint: Option<Checkpoint>,
    /// Set after a failed write or fsync: the disk state is unknown.
    poisoned: Option<String>,
    shared: Arc<Shared>,
    buffer: Vec<u8>,
}

impl Writer {
    /// Opens the directory, reads the head and repairs a torn tail (as one
    /// commit, recorded), all under the lock.
    pub fn open(
        dir: &Path,
        identity: Who,
        checkpoint_every: u64,
        signing_key: Option<&Path>,
        shared: Arc<Shared>,
    ) -> Result<Writer, AuditError> {
        fsutil::private_dir(dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = fsutil::open_append(&lock_path)?;
        lock.lock().map_err(io("lock", &lock_path))?;
        let opened = (|| -> Result<Writer, AuditError> {
            let key = SigningKey::load_or_create(dir, signing_key)?;
            let log_path = dir.join(LOG_FILE);
            let checkpoints_path = dir.join(CHECKPOINTS_FILE);
            let mut writer = Writer {
                log: fsutil::open_append(&log_path)?,
                checkpoints: fsutil::open_append(&checkpoints_path)?,
                log_path,
                checkpoints_path,
                lock,
                key,
                identity,
                checkpoint_every: checkpoint_every.max(1),
                head: Head::default(),
                // Unknown: forces the first sync to read both files.
                checkpoints_len: u64::MAX,
                last_checkpoint: None,
                poisoned: None,
                shared,
                buffer: Vec::with_capacity(64 * 1024),
            };
            writer.head.len = u64::MAX;
            let repairs = writer.sync_with_disk(true)?;
            if !repairs.is_empty() {
                writer.commit_locked(&[], repairs)?;
            }
            writer.publish();
            Ok(writer)
        })();
        // On an error the lock's handle was dropped, which released it.
        let writer = opened?;
        writer.lock.unlock().map_err(io("unlock", &lock_path))?;
        Ok(writer)
    }

    pub fn public_key(&self) -> crate::PublicKey {
        self.key.public().clone()
    }

    /// The thread's loop: one group per iteration until every sender is gone.
    pub fn run(mut self, requests: Receiver<Request>) {
        while let Ok(first) = requests.recv() {
            let mut group = vec![first];
            let deadline = Instant::now() + MAX_GATHER;
            loop {
                while group.len() < MAX_GROUP {
                    match requests.try_recv() {
                        Ok(request) => group.push(request),
                        Err(_) => break,
                    }
                }
                // Callers inside `append` with no request queued yet are
                // usually the ones just answered, about to send their next
                // record: a few µs for them to run lets one fsync serve
                // them all, instead of groups alternating at half size.
                let waiting = self.shared.appenders.load(Ordering::Acquire);
                if group.len() >= waiting.min(MAX_GROUP) || Instant::now() >= deadline {
                    break;
                }
                std::thread::yield_now();
            }
            self.commit_group(group);
        }
    }

    fn commit_group(&mut self, group: Vec<Request>) {
        let mut entries: Vec<Entry> = Vec::new();
        let mut appends = Vec::new();
        let mut checkpoint_replies = Vec::new();
        for request in group {
            match request {
                Request::Append { entries: e, reply } => {
                    appends.push((e.len(), reply));
                    entries.extend(e);
                }
                Request::Checkpoint { reply } => checkpoint_replies.push(reply),
            }
        }
        let result = match &self.poisoned {
            Some(why) => Err(AuditError::Poisoned(why.clone())),
            None => self.locked(|writer| {
                let repairs = writer.sync_with_disk(false)?;
                let records = writer.commit_locked(&entries, repairs)?;
                // The records are durable: answer the appenders before the
                // checkpoint's own write and fsync.
                writer.publish();
                let mut records = records.into_iter();
                for (count, reply) in appends.drain(..) {
                    let _ = reply.send(Ok(records.by_ref().take(count).collect()));
                }
                writer.checkpoint_if_due(!checkpoint_replies.is_empty())
            }),
        };
        // A corrupt log refuses every append until it is looked at, but
        // writes nothing; any other failure leaves the disk state unknown.
        if let Err(e) = &result
            && !matches!(e, AuditError::Poisoned(_) | AuditError::Corrupt { .. })
        {
            self.poisoned = Some(e.to_string());
        }
        let failure = || match &result {
            Err(e) => e.for_another_waiter(),
            Ok(_) => AuditError::Closed,
        };
        for (_, reply) in appends {
            let _ = reply.send(Err(failure()));
        }
        for reply in checkpoint_replies {
            let _ = reply.send(match &result {
                Ok(Some(checkpoint)) => Ok(checkpoint.clone()),
                _ => Err(failure()),
            });
        }
        self.publish();
    }

    /// Runs `work` holding `audit.lock`.
    fn locked<T>(
        &mut self,
        work: impl FnOnce(&mut Writer) -> Result<T, AuditError>,
    ) -> Result<T, AuditError> {
        self.lock.lock().map_err(io("lock", &self.log_path))?;
        let result = work(self);
        let unlocked = self.lock.unlock().map_err(io("unlock", &self.log_path));
        let value = result?;
        unlocked?;
        Ok(value)
    }

    /// Brings `self.head` up to date with the files (which another process
    /// may have appended to), cutting torn last lines. Returns what was
    /// repaired, for the `audit.recovered` record.
    fn sync_with_disk(&mut self, first: bool) -> Result<Vec<String>, AuditError> {
        let mut repairs = Vec::new();
        let log_len = self
            .log
            .metadata()
            .map_err(io("stat", &self.log_path))?
            .len();
        if log_len != self.head.len {
            if !first && log_len < self.head.len {
                return Err(self.corrupt(format!(
                    "the log shrank from {} to {log_len} bytes while open: it was truncated",
                    self.head.len
                )));
            }
            let tail = read_tail(&mut self.log, log_len, &self.log_path)?;
            let (seq, hash) = match &tail.last_line {
                None => (0, ChainHash::ZERO),
                Some(line) => {
                    let parsed = parse_record_line(line).map_err(|why| {
                        self.corrupt(format!("the last complete line is not a record: {why}"))
                    })?;
                    if body_hash(line) != parsed.hash {
                        return Err(self.corrupt(format!(
                            "the last record (seq {}) does not match its hash: the log was altered",
                            parsed.seq
                        )));
                    }
                    (parsed.seq, parsed.hash)
                }
            };
            if tail.torn_len > 0 {
                repairs.push(cut_torn_tail(
                    &mut self.log,
                    &self.log_path,
                    tail.complete_len,
                    tail.torn_len,
                    &format!("after seq {seq}"),
                )?);
            }
            if !first && seq < self.head.seq {
                return Err(self.corrupt(format!(
                    "the log went back from seq {} to {seq} while open",
                    self.head.seq
                )));
            }
            self.head.seq = seq;
            self.head.hash = hash;
            self.head.len = tail.complete_len;
        }
        let checkpoints_len = self
            .checkpoints
            .metadata()
            .map_err(io("stat", &self.checkpoints_path))?
            .len();
        if checkpoints_len != self.checkpoints_len {
            let tail = read_tail(
                &mut self.checkpoints,
                checkpoints_len,
                &self.checkpoints_path,
            )?;
            if let Some(line) = &tail.last_line {
                let checkpoint: Checkpoint =
                    serde_json::from_slice(line).map_err(|e| AuditError::Corrupt {
                        path: self.checkpoints_path.clone(),
                        message: format!("the last line is not a checkpoint: {e}"),
                    })?;
                self.head.checkpoint_seq = checkpoint.seq;
                self.last_checkpoint = Some(checkpoint);
            }
            if tail.torn_len > 0 {
                repairs.push(cut_torn_tail(
                    &mut self.checkpoints,
                    &self.checkpoints_path,
                    tail.complete_len,
                    tail.torn_len,
                    "after the last checkpoint",
                )?);
            }
            self.checkpoints_len = tail.complete_len;
        }
        Ok(repairs)
    }

    fn corrupt(&self, message: String) -> AuditError {
        AuditError::Corrupt {
            path: self.log_path.clone(),
            message: format!("{message}; run `deployctl audit verify`"),
        }
    }

    /// Seals `entries` (after a recovery record when `repairs` is not
    /// empty), writes them in one write and fsyncs once. Returns the
    /// caller's records (not the recovery record).
    fn commit_locked(
        &mut self,
        entries: &[Entry],
        repairs: Vec<String>,
    ) -> Result<Vec<AuditRecord>, AuditError> {
        if entries.is_empty() && repairs.is_empty() {
            return Ok(Vec::new());
        }
        // One timestamp for the group: its records became durable together.
        let time = format_ms(now_ms());
        let (mut seq, mut prev) = (self.head.seq, self.head.hash);
        self.buffer.clear();
        let recovery = (!repairs.is_empty()).then(|| Entry {
            who: self.identity.clone(),
            what: What::new(Action::AuditRecovered).detail(format!(
                "repaired after a crash (the writing process stopped mid-line): {}",
                repairs.join("; ")
            )),
            outcome: Outcome::ok(),
            request_ids: Vec::new(),
        });
        let mut records = Vec::with_capacity(entries.len());
        for (index, entry) in recovery.iter().chain(entries).enumerate() {
            seq += 1;
            let mut record = AuditRecord {
                api_version: ApiVersion::V1,
                kind: RecordKind::AuditRecord,
                seq,
                time: time.clone(),
                who: entry.who.clone(),
                what: entry.what.clone(),
                outcome: entry.outcome.clone(),
                request_ids: entry.request_ids.clone(),
                prev,
                hash: ChainHash::ZERO,
            };
            seal_record(&mut record, &mut self.buffer)?;
            prev = record.hash;
            if recovery.is_none() || index > 0 {
                records.push(record);
            }
        }
        let written = self
            .log
            .write_all(&self.buffer)
            .map_err(io("append to", &self.log_path))
            .and_then(|()| self.log.sync_data().map_err(io("fsync", &self.log_path)));
        if let Err(e) = written {
            // Take a partial group back, so a reopen finds the old head.
            // The writer is poisoned either way: after a failed fsync the
            // kernel may have dropped pages it still reports as written.
            let _ = self.log.set_len(self.head.len);
            return Err(e);
        }
        self.shared.commits.fetch_add(1, Ordering::Relaxed);
        self.shared
            .records
            .fetch_add(seq - self.head.seq, Ordering::Relaxed);
        self.head.seq = seq;
        self.head.hash = prev;
        self.head.len += self.buffer.len() as u64;
        Ok(records)
    }

    /// Signs and writes a checkpoint when asked, or when `checkpoint_every`
    /// records have been written since the last one.
    fn checkpoint_if_due(&mut self, asked: bool) -> Result<Option<Checkpoint>, AuditError> {
        let due = self.head.seq >= self.head.checkpoint_seq + self.checkpoint_every;
        if !asked && !due {
            return Ok(None);
        }
        if let Some(last) = &self.last_checkpoint
            && last.seq == self.head.seq
        {
            return Ok(Some(last.clone()));
        }
        let (checkpoint, line) = Checkpoint::sign(
            self.head.seq,
            self.head.hash,
            format_ms(now_ms()),
            &self.key,
        )?;
        self.checkpoints
            .write_all(&line)
            .and_then(|()| self.checkpoints.sync_data())
            .map_err(|e| {
                let _ = self.checkpoints.set_len(self.checkpoints_len);
                io("append to", &self.checkpoints_path)(e)
            })?;
        self.checkpoints_len += line.len() as u64;
        self.head.checkpoint_seq = checkpoint.seq;
        self.last_checkpoint = Some(checkpoint.clone());
        Ok(Some(checkpoint))
    }

    /// Makes the head visible to the handle and the shipper, and wakes it.
    fn publish(&self) {
        *self.shared.head.lock().unwrap_or_else(|p| p.into_inner()) = self.head;
        self.shared.changed.notify_all();
    }
}

/// Cuts `file` back to `complete_len`, fsyncs, and describes the cut (its
/// length and SHA-256, so the lost bytes can be matched to a shipped copy).
fn cut_torn_tail(
    file: &mut File,
    path: &Path,
    complete_len: u64,
    torn_len: u64,
    position: &str,
) -> Result<String, AuditError> {
    let mut torn = Vec::new();
    file.seek(SeekFrom::Start(complete_len))
        .and_then(|_| file.take(torn_len).read_to_end(&mut torn))
        .map_err(io("read", path))?;
    file.set_len(complete_len)
        .and_then(|()| file.sync_all())
        .map_err(io("truncate", path))?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &torn);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    Ok(format!(
        "{name}: cut an incomplete last line of {torn_len} bytes (SHA-256 {}) {position}",
        crate::hex::encode(digest.as_ref())
    ))
}
