//! The outbox: nothing is dropped while the sink is down, and once it is
//! back every record arrives in order, exactly once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deployctl_audit::{
    AuditError, AuditLog, AuditRecord, Checkpoint, DirectorySink, Sink, SinkError, verify,
};

use crate::{TempDir, entry, options, pinned_key};

/// A sink that can be switched off, and remembers what it acknowledged.
#[derive(Default)]
struct FlakySink {
    state: Mutex<FlakyState>,
}

#[derive(Default)]
struct FlakyState {
    down: bool,
    /// Acknowledge this many more batches, then go down (None: no limit).
    budget: Option<u32>,
    attempts: u32,
    delivered: Vec<u64>,
    checkpoints: Vec<u64>,
}

impl FlakySink {
    fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }
}

impl Sink for FlakySink {
    fn describe(&self) -> String {
        "flaky test sink".into()
    }

    fn ship(
        &self,
        records: &[AuditRecord],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), SinkError> {
        let mut state = self.state.lock().unwrap();
        state.attempts += 1;
        if state.budget == Some(0) {
            state.down = true;
        }
        if state.down {
            return Err(SinkError::Unavailable("connection refused".into()));
        }
        if let Some(budget) = &mut state.budget {
            *budget -= 1;
        }
        if let Some(checkpoint) = checkpoint {
            // A checkpoint travels with the batch that ends on it.
            assert!(records.last().is_none_or(|r| r.seq == checkpoint.seq));
            state.checkpoints.push(checkpoint.seq);
        }
        state.delivered.extend(records.iter().map(|r| r.seq));
        Ok(())
    }
}

#[test]
fn records_wait_for_a_failing_sink_and_ship_later_in_order_exactly_once() {
    let dir = TempDir::new("outbox");
    let sink = Arc::new(FlakySink::default());
    sink.set_down(true);
    let open = || {
        let mut options = options().checkpoint_every(5).sink(sink.clone());
        options.ship_batch = 4;
        AuditLog::open(dir.path(), options).unwrap()
    };

    let log = open();
    for i in 1..=12 {
        log.append(entry(i)).unwrap();
    }
    match log.ship_now() {
        Err(AuditError::Ship { sink, source }) => {
            assert_eq!(sink, "flaky test sink");
            assert!(source.to_string().contains("connection refused"));
        }
        other => panic!("expected a shipping error, got {other:?}"),
    }
    let pending = log.pending();
    assert_eq!((pending.records, pending.oldest_seq), (12, Some(1)));
    assert!(pending.checkpoint);
    assert!(pending.last_error.unwrap().contains("connection refused"));
    assert!(pending.failing_since.is_some());
    drop(log);

    // Still queued after a restart: the outbox is on disk.
    let log = open();
    assert_eq!(log.pending().records, 12);
    // The sink comes back for two batches only, then fails again.
    {
        let mut state = sink.state.lock().unwrap();
        state.down = false;
        state.budget = Some(2);
    }
    assert!(log.ship_now().is_err());
    assert_eq!(
        sink.state.lock().unwrap().delivered,
        (1..=5).collect::<Vec<_>>()
    );
    assert_eq!(log.pending().records, 7);

    // Back for good.
    {
        let mut state = sink.state.lock().unwrap();
        state.down = false;
        state.budget = None;
    }
    let report = log.ship_now().unwrap();
    assert_eq!(report.records, 7);
    assert!(log.pending().is_empty(), "{:?}", log.pending());
    assert!(log.pending().last_error.is_none());
    // Nothing left to ship: no further calls deliver anything.
    assert_eq!(log.ship_now().unwrap().records, 0);

    let state = sink.state.lock().unwrap();
    assert_eq!(
        state.delivered,
        (1..=12).collect::<Vec<_>>(),
        "in order, once each"
    );
    assert_eq!(state.checkpoints, vec![5, 10]);
}

#[test]
fn background_shipping_reaches_a_directory_that_verifies() {
    let (dir, copy, keep) = (
        TempDir::new("ship-bg"),
        TempDir::new("ship-bg-copy"),
        TempDir::new("ship-bg-key"),
    );
    let mut options = options()
        .checkpoint_every(10)
        .sink(Arc::new(DirectorySink::new(copy.path())))
        .background_shipping(true);
    options.retry_min = Duration::from_millis(10);
    let log = AuditLog::open(dir.path(), options).unwrap();
    for i in 1..=30 {
        log.append(entry(i)).unwrap();
    }
    log.checkpoint().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log.pending().is_empty() {
        assert!(
            Instant::now() < deadline,
            "not shipped: {:?}",
            log.pending()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(log);
    let report = verify(
        dir.path(),
        &pinned_key(dir.path(), &keep),
        Some(copy.path()),
    )
    .unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.shipped_records, Some(30));
}

#[test]
fn a_sink_that_comes_back_is_retried_in_the_background() {
    let dir = TempDir::new("ship-retry");
    let sink = Arc::new(FlakySink::default());
    sink.set_down(true);
    let mut options = options().sink(sink.clone()).background_shipping(true);
    options.retry_min = Duration::from_millis(5);
    options.retry_max = Duration::from_millis(20);
    let log = AuditLog::open(dir.path(), options).unwrap();
    for i in 1..=3 {
        log.append(entry(i)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while sink.state.lock().unwrap().attempts < 2 {
        assert!(Instant::now() < deadline, "no retry");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(log.pending().records, 3);
    sink.set_down(false);
    while !log.pending().is_empty() {
        assert!(
            Instant::now() < deadline,
            "not shipped: {:?}",
            log.pending()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(sink.state.lock().unwrap().delivered, vec![1, 2, 3]);
}
