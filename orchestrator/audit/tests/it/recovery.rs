//! Crash recovery: a torn last line is cut on open, the cut is recorded
//! as `audit.recovered`, and the chain continues unbroken.

use std::io::Write;

use deployctl_audit::{Action, AuditError, AuditLog, Filter, show, verify};

use crate::{TempDir, entry, options, pinned_key, read_lines, write_lines, write_log};

/// Appends the first half of a real record line, no newline: what a crash
/// in the middle of a write leaves.
fn tear(path: &std::path::Path, line: &str) {
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(&line.as_bytes()[..line.len() / 2]).unwrap();
}

#[test]
fn a_torn_last_line_is_repaired_and_the_chain_continues() {
    let (dir, keep) = (TempDir::new("torn"), TempDir::new("torn-key"));
    let records = write_log(dir.path(), 5, 1000);
    let path = dir.join("audit.jsonl");
    let sample = read_lines(&path)[4].replace("\"seq\":5", "\"seq\":6");
    tear(&path, &sample);

    // Before repair: the verifier warns but does not call it tampering.
    let report = verify(dir.path(), &pinned_key(dir.path(), &keep), None).unwrap();
    assert!(report.is_ok(), "{report}");
    assert!(
        report.warnings.iter().any(|w| w.contains("incomplete")),
        "{report}"
    );

    let log = AuditLog::open(dir.path(), options()).unwrap();
    let next = log.append(entry(7)).unwrap();
    drop(log);

    let all = show(dir.path(), &Filter::default()).unwrap();
    assert_eq!(all.len(), 7);
    let recovered = &all[5];
    assert_eq!(
        (recovered.seq, recovered.what.action),
        (6, Action::AuditRecovered)
    );
    assert_eq!(recovered.prev, records[4].hash);
    let detail = recovered.what.detail.as_deref().unwrap();
    assert!(
        detail.contains("audit.jsonl: cut an incomplete last line of")
            && detail.contains("after seq 5"),
        "{detail}"
    );
    assert_eq!((next.seq, next.prev), (7, recovered.hash));
    assert!(std::fs::read(&path).unwrap().ends_with(b"\n"));
    let report = verify(dir.path(), &pinned_key(dir.path(), &keep), None).unwrap();
    assert!(report.is_ok(), "{report}");
    assert!(
        !report.warnings.iter().any(|w| w.contains("incomplete")),
        "{report}"
    );
}

#[test]
fn a_torn_checkpoint_line_is_repaired_too() {
    let (dir, keep) = (TempDir::new("torn-cp"), TempDir::new("torn-cp-key"));
    write_log(dir.path(), 4, 2);
    let path = dir.join("checkpoints.jsonl");
    let sample = read_lines(&path)[1].clone();
    tear(&path, &sample);

    let log = AuditLog::open(dir.path(), options().checkpoint_every(2)).unwrap();
    assert_eq!(log.stats().seq, 5, "one audit.recovered record");
    log.append(entry(6)).unwrap();
    drop(log);
    let recovered = show(dir.path(), &Filter::default()).unwrap().remove(4);
    assert!(
        recovered
            .what
            .detail
            .unwrap()
            .contains("checkpoints.jsonl: cut an incomplete last line"),
    );
    let report = verify(dir.path(), &pinned_key(dir.path(), &keep), None).unwrap();
    assert!(report.is_ok() && report.warnings.is_empty(), "{report}");
    assert_eq!(report.last_checkpoint_seq, Some(6));
}

#[test]
fn an_empty_torn_log_starts_a_fresh_chain() {
    let dir = TempDir::new("torn-empty");
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(dir.join("audit.jsonl"), b"{\"apiVersion\":\"deployc").unwrap();
    let log = AuditLog::open(dir.path(), options()).unwrap();
    let record = log.append(entry(1)).unwrap();
    assert_eq!(record.seq, 2);
    assert_eq!(log.stats().seq, 2);
}

#[test]
fn opening_refuses_a_log_whose_last_record_was_altered() {
    let dir = TempDir::new("altered-head");
    write_log(dir.path(), 3, 1000);
    let path = dir.join("audit.jsonl");
    let mut lines = read_lines(&path);
    lines[2] = lines[2].replacen("alice", "mallory", 1);
    write_lines(&path, &lines);
    match AuditLog::open(dir.path(), options()) {
        Err(AuditError::Corrupt { message, .. }) => {
            assert!(message.contains("does not match its hash"), "{message}");
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("appended to an altered log"),
    }
}
