//! [`AuditLog`]: the handle the CLI and the engine append through.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::checkpoint::Checkpoint;
use crate::error::AuditError;
use crate::keys::PublicKey;
use crate::outbox::{Outbox, Pending, ShipReport};
use crate::record::{AuditRecord, ChainHash, Entry, Who};
use crate::sink::Sink;
use crate::writer::{Request, Shared, Writer};

/// How to open an [`AuditLog`].
#[derive(Clone)]
pub struct AuditOptions {
    /// Who the log's own records (`audit.recovered`) are written as.
    pub identity: Who,
    /// Sign a checkpoint at the end of the first commit that brings the
    /// records since the last checkpoint to this many (default 1000; a
    /// large `append_batch` gets one checkpoint at its end).
    pub checkpoint_every: u64,
    /// The private signing key's path when it is kept outside the log
    /// directory (its public half is written beside it as `<path>.pub`);
    /// `None` keeps both in the log directory.
    pub signing_key: Option<PathBuf>,
    /// Where records are shipped; `None` keeps them all pending.
    pub sink: Option<Arc<dyn Sink>>,
    /// Ship from a background thread after every commit (default). Off,
    /// shipping happens only in [`AuditLog::ship_now`].
    pub background_shipping: bool,
    /// Records per shipped batch at most (default 1000).
    pub ship_batch: usize,
    /// Wait after a failed shipment; doubles up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl AuditOptions {
    pub fn new(identity: Who) -> AuditOptions {
        AuditOptions {
            identity,
            checkpoint_every: 1000,
            signing_key: None,
            sink: None,
            background_shipping: true,
            ship_batch: 1000,
            retry_min: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
        }
    }

    pub fn checkpoint_every(mut self, records: u64) -> AuditOptions {
        self.checkpoint_every = records;
        self
    }

    pub fn sink(mut self, sink: Arc<dyn Sink>) -> AuditOptions {
        self.sink = Some(sink);
        self
    }

    pub fn background_shipping(mut self, on: bool) -> AuditOptions {
        self.background_shipping = on;
        self
    }
}

/// Counters for tests and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Group commits (one `fdatasync` each).
    pub commits: u64,
    /// Records written by this handle, recovery records included.
    pub records: u64,
    /// The head: the last durable record.
    pub seq: u64,
    pub hash: ChainHash,
}

/// The audit trail of one directory: append-only, hash-chained, signed,
/// shipped. `Send + Sync`; share it behind an `Arc`. Every call blocks
/// (disk or sink), so async callers use `spawn_blocking`.
pub struct AuditLog {
    dir: PathBuf,
    requests: Option<Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    shipper: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    outbox: Arc<Outbox>,
    public_key: PublicKey,
}

impl AuditLog {
    /// Opens or creates the log in `dir` (0700; files 0600). Continues the
    /// chain from the last line, cutting a line torn by a crash and
    /// recording that as `audit.recovered`. Creates the signing key on
    /// first use. Fails when the last record does not match its own hash.
    pub fn open(dir: impl AsRef<Path>, options: AuditOptions) -> Result<AuditLog, AuditError> {
        let dir = dir.as_ref().to_path_buf();
        let shared = Arc::new(Shared::default());
        let writer = Writer::open(
            &dir,
            options.identity.clone(),
            options.checkpoint_every,
            options.signing_key.as_deref(),
            shared.clone(),
        )?;
        let public_key = writer.public_key();
        let outbox = Arc::new(Outbox::open(
            &dir,
            options.sink.clone(),
            options.ship_batch,
            shared.clone(),
        )?);
        let (sender, receiver) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(crate::error::io("start the writer thread for", &dir))?;
        let stop = Arc::new(AtomicBool::new(false));
        let shipper = if options.sink.is_some() && options.background_shipping {
            let (outbox, shared, stop) = (outbox.clone(), shared.clone(), stop.clone());
            let (min, max) = (options.retry_min, options.retry_max.max(options.retry_min));
            Some(
                std::thread::Builder::new()
                    .name("audit-shipper".into())
                    .spawn(move || ship_in_background(&outbox, &shared, &stop, min, max))
                    .map_err(crate::error::io("start the shipper thread for", &dir))?,
            )
        } else {
            None
        };
        Ok(AuditLog {
            dir,
            requests: Some(sender),
            writer: Some(writer),
            shipper,
            stop,
            shared,
            outbox,
            public_key,
        })
    }

    /// Appends one record; returns it (with `seq` and `hash`) once it is
    /// on disk. Concurrent appends share an fsync.
    pub fn append(&self, entry: Entry) -> Result<AuditRecord, AuditError> {
        let mut records = self.append_batch(vec![entry])?;
        records.pop().ok_or(AuditError::Closed)
    }

    /// Appends several records with one fsync, in order, consecutive.
    pub fn append_batch(&self, entries: Vec<Entry>) -> Result<Vec<AuditRecord>, AuditError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        // Counted while waiting, so the writer can tell that more records
        // are about to arrive for the group it is cutting.
        self.shared.appenders.fetch_add(1, Ordering::AcqRel);
        let _counted = Decrement(&self.shared.appenders);
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Request::Append { entries, reply })?;
        answer.recv().map_err(|_| AuditError::Closed)?
    }

    /// Signs the current head (after every append made before this call)
    /// into `checkpoints.jsonl`; the end of each run calls this. Returns
    /// the existing checkpoint when nothing was appended since.
    pub fn checkpoint(&self) -> Result<Checkpoint, AuditError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Request::Checkpoint { reply })?;
        answer.recv().map_err(|_| AuditError::Closed)?
    }

    /// Ships what is pending now, on this thread; `Err` when the sink
    /// fails (the records stay queued).
    pub fn ship_now(&self) -> Result<ShipReport, AuditError> {
        self.outbox.ship_pending()
    }

    /// What has not reached the sink yet (without a sink: everything).
    pub fn pending(&self) -> Pending {
        self.outbox.pending()
    }

    pub fn stats(&self) -> Stats {
        let head = self.shared.head();
        Stats {
            commits: self.shared.commits.load(Ordering::Relaxed),
            records: self.shared.records.load(Ordering::Relaxed),
            seq: head.seq,
            hash: head.hash,
        }
    }

    /// The key checkpoints are signed with (also in `signing-key.pub`).
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a sink is configured.
    pub fn ships(&self) -> bool {
        self.outbox.has_sink()
    }

    fn send(&self, request: Request) -> Result<(), AuditError> {
        self.requests
            .as_ref()
            .ok_or(AuditError::Closed)?
            .send(request)
            .map_err(|_| AuditError::Closed)
    }
}

struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        // Closing the channel ends the writer after the queued requests.
        drop(self.requests.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        {
            let _head = self.shared.head.lock().unwrap_or_else(|p| p.into_inner());
            self.stop.store(true, Ordering::Release);
        }
        self.shared.changed.notify_all();
        if let Some(shipper) = self.shipper.take() {
            let _ = shipper.join();
        }
    }
}

/// The shipper thread: ships after each commit; after a failure waits
/// (doubling from `min` to `max`) and tries again. Records not shipped
/// when the log is dropped stay in the outbox for the next open.
fn ship_in_background(
    outbox: &Outbox,
    shared: &Shared,
    stop: &AtomicBool,
    min: Duration,
    max: Duration,
) {
    let mut backoff: Option<Duration> = None;
    loop {
        let retry_at = backoff.map(|wait| Instant::now() + wait);
        {
            // Wait on the commit signal, whose mutex is the head's. `stop`
            // is set under the same mutex, so its wake-up cannot be missed.
            let mut head = shared.head.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                let wait = match retry_at {
                    None if !outbox.pending_at(&head).is_empty() => break,
                    None => Duration::from_secs(3600),
                    Some(at) => match at.checked_duration_since(Instant::now()) {
                        Some(left) if !left.is_zero() => left,
                        _ => break,
                    },
                };
                head = shared
                    .changed
                    .wait_timeout(head, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
        backoff = match outbox.ship_pending() {
            Ok(_) => None,
            Err(_) => Some(backoff.map_or(min, |b| (b * 2).min(max))),
        };
    }
}
