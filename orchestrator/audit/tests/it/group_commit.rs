//! Group commit: concurrent appenders share fsyncs and still form one
//! gap-free chain.

use std::collections::BTreeSet;
use std::sync::Arc;

use deployctl_audit::{AuditLog, Filter, show, verify};

use crate::{TempDir, entry, options, pinned_key};

#[test]
fn concurrent_appends_from_many_threads_form_one_chain() {
    let (dir, keep) = (TempDir::new("group"), TempDir::new("group-key"));
    let log = Arc::new(AuditLog::open(dir.path(), options().checkpoint_every(100)).unwrap());
    const THREADS: u64 = 8;
    const EACH: u64 = 150;
    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..EACH)
                    .map(|i| log.append(entry(thread * EACH + i)).unwrap().seq)
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut all = BTreeSet::new();
    for handle in handles {
        let seqs = handle.join().unwrap();
        // Each thread's own records are in the order it wrote them.
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        all.extend(seqs);
    }
    let total = THREADS * EACH;
    assert_eq!(all, (1..=total).collect(), "every seq once, no gaps");
    let stats = log.stats();
    assert_eq!((stats.seq, stats.records), (total, total));
    assert!(stats.commits <= total);
    eprintln!(
        "{total} appends from {THREADS} threads: {} fsynced commits",
        stats.commits
    );
    log.checkpoint().unwrap();
    drop(log);

    let report = verify(dir.path(), &pinned_key(dir.path(), &keep), None).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records, total);
    assert_eq!(report.last_checkpoint_seq, Some(total));
}

#[test]
fn a_batch_is_one_commit_of_consecutive_records() {
    let dir = TempDir::new("batch");
    let log = AuditLog::open(dir.path(), options()).unwrap();
    log.append(entry(0)).unwrap();
    let before = log.stats().commits;
    let records = log.append_batch((1..=100).map(entry).collect()).unwrap();
    assert_eq!(log.stats().commits, before + 1);
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (2..=101).collect::<Vec<_>>());
    assert!(records.windows(2).all(|w| w[1].prev == w[0].hash));
}

#[test]
fn two_handles_on_one_directory_share_the_chain() {
    // What two processes (an `apply` and a `kill`) do: each commit takes
    // the lock and re-reads the head the other one moved.
    let (dir, keep) = (TempDir::new("two"), TempDir::new("two-key"));
    let first = AuditLog::open(dir.path(), options().checkpoint_every(7)).unwrap();
    let second = AuditLog::open(dir.path(), options().checkpoint_every(7)).unwrap();
    for i in 0..20 {
        let log = if i % 3 == 0 { &second } else { &first };
        assert_eq!(log.append(entry(i)).unwrap().seq, i + 1);
    }
    first.checkpoint().unwrap();
    drop((first, second));
    assert_eq!(show(dir.path(), &Filter::default()).unwrap().len(), 20);
    let report = verify(dir.path(), &pinned_key(dir.path(), &keep), None).unwrap();
    assert!(report.is_ok(), "{report}");
}

#[test]
fn checkpoints_come_every_n_records_and_on_request() {
    let dir = TempDir::new("every");
    let log = AuditLog::open(dir.path(), options().checkpoint_every(5)).unwrap();
    for i in 1..=12 {
        log.append(entry(i)).unwrap();
    }
    let explicit = log.checkpoint().unwrap();
    assert_eq!(explicit.seq, 12);
    // Nothing new: the same checkpoint, no new line.
    assert_eq!(log.checkpoint().unwrap(), explicit);
    drop(log);
    let seqs: Vec<u64> = std::fs::read_to_string(dir.join("checkpoints.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<deployctl_audit::Checkpoint>(line)
                .unwrap()
                .seq
        })
        .collect();
    assert_eq!(seqs, vec![5, 10, 12]);
}
