//! The tamper matrix: each way of altering the log is caught, and the
//! report names the first bad record (line and seq) and what is wrong.

use std::path::Path;
use std::process::Command;

use deployctl_audit::canonical::{body_hash, seal_record};
use deployctl_audit::{
    AuditLog, AuditRecord, CopyFile, DirectorySink, ProblemKind, Report, verify,
    verify_against_files,
};

use crate::{TempDir, entry, options, pinned_key, read_lines, write_lines, write_log};

/// 20 records, checkpoints at 5, 10, 15, 20; returns the records.
fn setup(dir: &Path) -> Vec<AuditRecord> {
    write_log(dir, 20, 5)
}

fn check(dir: &Path, keep: &TempDir, against: Option<&Path>) -> Report {
    verify(dir, &pinned_key(dir, keep), against).unwrap()
}

/// Asserts the report's first bad record.
fn assert_first(report: &Report, line: u64, seq: u64, kind: ProblemKind) {
    assert!(!report.is_ok(), "expected a problem:\n{report}");
    let first = report.first_bad_record().expect("a bad record");
    assert_eq!(
        (first.line, first.seq, first.kind),
        (line, Some(seq), kind),
        "\n{report}"
    );
    // The rendered report leads with it.
    let text = report.to_string();
    assert!(
        text.starts_with("audit trail TAMPERED: first bad record: ")
            && text.contains(&format!("audit.jsonl:{line}: seq {seq}: ")),
        "{text}"
    );
}

/// Recomputes a line's `hash` after an edit, as a careful forger would.
fn rehash(line: &str) -> String {
    let hash = body_hash(line.as_bytes()).to_hex();
    format!("{}{hash}\"}}", &line[..line.len() - 66])
}

#[test]
fn a_clean_log_verifies() {
    let (dir, keep) = (TempDir::new("clean"), TempDir::new("clean-key"));
    let records = setup(dir.path());
    let report = check(dir.path(), &keep, None);
    assert!(report.is_ok(), "{report}");
    assert!(report.warnings.is_empty(), "{report}");
    assert_eq!((report.records, report.last_seq), (20, 20));
    assert_eq!(report.last_hash, records[19].hash);
    assert_eq!(
        (report.checkpoints, report.last_checkpoint_seq),
        (4, Some(20))
    );
    assert!(
        report
            .to_string()
            .starts_with("audit trail intact: 20 records")
    );
    // The chain as written: seq from 1, prev links, first prev all zeros.
    assert_eq!(records[0].prev.to_hex(), "0".repeat(64));
    for pair in records.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1);
        assert_eq!(pair[1].prev, pair[0].hash);
    }
}

#[test]
fn an_edited_record_is_named() {
    let (dir, keep) = (TempDir::new("edit"), TempDir::new("edit-key"));
    setup(dir.path());
    let log = dir.join("audit.jsonl");
    let mut lines = read_lines(&log);
    lines[6] = lines[6].replacen("\"alice\"", "\"mallory\"", 1);
    write_lines(&log, &lines);
    let report = check(dir.path(), &keep, None);
    assert_first(&report, 7, 7, ProblemKind::HashMismatch);
    assert_eq!(report.problems.len(), 1, "one edit, one problem:\n{report}");
}

#[test]
fn an_edited_and_rehashed_record_breaks_the_next_link() {
    let (dir, keep) = (TempDir::new("rehash"), TempDir::new("rehash-key"));
    setup(dir.path());
    let log = dir.join("audit.jsonl");
    let mut lines = read_lines(&log);
    lines[6] = rehash(&lines[6].replacen("\"alice\"", "\"mallory\"", 1));
    write_lines(&log, &lines);
    let report = check(dir.path(), &keep, None);
    assert_first(&report, 8, 8, ProblemKind::PrevMismatch);
    assert!(
        report
            .first_bad_record()
            .unwrap()
            .message
            .contains("record 7 was rewritten")
    );
}

#[test]
fn a_rewritten_tail_is_caught_by_the_checkpoint_and_pinned_by_the_shipped_copy() {
    let (dir, keep, copy) = (
        TempDir::new("rewrite"),
        TempDir::new("rewrite-key"),
        TempDir::new("rewrite-copy"),
    );
    {
        let log = AuditLog::open(
            dir.path(),
            options()
                .checkpoint_every(5)
                .sink(std::sync::Arc::new(DirectorySink::new(copy.path()))),
        )
        .unwrap();
        for i in 1..=20 {
            log.append(entry(i)).unwrap();
        }
        log.ship_now().unwrap();
    }
    // Rewrite record 7 and re-chain every record after it: the chain
    // alone is valid again.
    let path = dir.join("audit.jsonl");
    let mut lines = read_lines(&path);
    lines[6] = lines[6].replacen("\"alice\"", "\"mallory\"", 1);
    let mut prev = String::new();
    for line in lines.iter_mut().skip(6) {
        if !prev.is_empty() {
            let at = line.len() - 66 - 64 - 10;
            line.replace_range(at..at + 64, &prev);
        }
        *line = rehash(line);
        prev = line[line.len() - 66..line.len() - 2].to_string();
    }
    write_lines(&path, &lines);

    // The signed checkpoint at seq 10 no longer matches record 10.
    let report = check(dir.path(), &keep, None);
    assert_first(&report, 10, 10, ProblemKind::CheckpointMismatch);
    // The shipped copy names the rewritten record itself.
    let report = check(dir.path(), &keep, Some(copy.path()));
    assert_first(&report, 7, 7, ProblemKind::ShippedMismatch);
}

#[test]
fn a_deleted_record_is_named() {
    let (dir, keep) = (TempDir::new("delete"), TempDir::new("delete-key"));
    setup(dir.path());
    let log = dir.join("audit.jsonl");
    let mut lines = read_lines(&log);
    lines.remove(6);
    write_lines(&log, &lines);
    let report = check(dir.path(), &keep, None);
    assert_first(&report, 7, 8, ProblemKind::Gap);
    assert!(
        report
            .first_bad_record()
            .unwrap()
            .message
            .contains("record 7 is missing"),
        "{report}"
    );
}

#[test]
fn an_inserted_record_is_named() {
    let (dir, keep) = (TempDir::new("insert"), TempDir::new("insert-key"));
    setup(dir.path());
    let log = dir.join("audit.jsonl");
    let original = read_lines(&log);
    // A copy of an old record slipped in after record 6.
    let mut lines = original.clone();
    lines.insert(6, original[2].clone());
    write_lines(&log, &lines);
    let report = check(dir.path(), &keep, None);
    assert_first(&report, 7, 3, ProblemKind::OutOfOrder);
}

#[test]
fn a_well_forged_insertion_is_named_against_the_shipped_copy() {
    let (dir, keep, copy) = (
        TempDir::new("forge"),
        TempDir::new("forge-key"),
        TempDir::new("forge-copy"),
    );
    let records = {
        let log = AuditLog::open(
            dir.path(),
            options()
                .checkpoint_every(5)
                .sink(std::sync::Arc::new(DirectorySink::new(copy.path()))),
        )
        .unwrap();
        let records: Vec<_> = (1..=20).map(|i| log.append(entry(i)).unwrap()).collect();
        log.ship_now().unwrap();
        records
    };
    // A record that is a valid successor of record 6: seq 7, prev = hash 6.
    let mut forged = records[6].clone();
    forged.what.detail = Some("approved by the change board".into());
    let mut line = Vec::new();
    seal_record(&mut forged, &mut line).unwrap();
    let path = dir.join("audit.jsonl");
    let mut lines = read_lines(&path);
    lines.insert(6, String::from_utf8(line).unwrap().trim_end().to_string());
    write_lines(&path, &lines);

    // The chain sees the genuine record 7 repeat its seq, one line late.
    let report = check(dir.path(), &keep, None);
    assert_first(&report, 8, 7, ProblemKind::OutOfOrder);
    // The shipped copy names the forged line.
    let report = check(dir.path(), &keep, Some(copy.path()));
    assert_first(&report, 7, 7, ProblemKind::ShippedMismatch);
}

#[test]
fn reordered_records_are_named() {
    let (dir, keep) = (TempDir::new("reorder"), TempDir::new("reorder-key"));
    setup(dir.path());
    let log = dir.join("audit.jsonl");
    let mut lines = read_lines(&log);
    lines.swap(6, 7);
    write_lines(&log, &lines);
    let report = check(dir.path(), &keep, None);
    assert_first(&report, 7, 8, ProblemKind::Gap);
    assert_eq!(report.problems[1].kind, ProblemKind::OutOfOrder, "{report}");
    assert_eq!(report.problems[1].line, 8);
}

#[test]
fn truncation_before_the_last_checkpoint_is_named() {
    let (dir, keep) = (TempDir::new("truncate"), TempDir::new("truncate-key"));
    setup(dir.path());
    let log = dir.join("audit.jsonl");
    let lines = read_lines(&log);
    write_lines(&log, &lines[..17]);
    let report = check(dir.path(), &keep, None);
    assert_first(&report, 18, 18, ProblemKind::Truncated);
    let message = &report.first_bad_record().unwrap().message;
    assert!(
        message.contains("records 18..=20 were removed"),
        "{message}"
    );
}

#[test]
fn truncation_after_the_last_checkpoint_needs_the_shipped_copy() {
    let (dir, keep, copy) = (
        TempDir::new("truncate-tail"),
        TempDir::new("truncate-tail-key"),
        TempDir::new("truncate-tail-copy"),
    );
    {
        let log = AuditLog::open(
            dir.path(),
            options()
                .checkpoint_every(5)
                .sink(std::sync::Arc::new(DirectorySink::new(copy.path()))),
        )
        .unwrap();
        for i in 1..=22 {
            log.append(entry(i)).unwrap();
        }
        log.ship_now().unwrap();
    }
    let log = dir.join("audit.jsonl");
    let lines = read_lines(&log);
    write_lines(&log, &lines[..21]);
    // The chain and the checkpoints (last at 20) cannot see it…
    assert!(check(dir.path(), &keep, None).is_ok());
    // …the copy off the machine can.
    let report = check(dir.path(), &keep, Some(copy.path()));
    assert_first(&report, 22, 22, ProblemKind::Truncated);
    // A single shipped file works as well as a directory.
    let report = check(
        dir.path(),
        &keep,
        Some(&copy.join(&format!("records-{:020}-{:020}.jsonl", 21, 22))),
    );
    assert_first(&report, 22, 22, ProblemKind::Truncated);
}

#[test]
fn a_forged_checkpoint_fails() {
    let (dir, keep) = (TempDir::new("forged-cp"), TempDir::new("forged-cp-key"));
    setup(dir.path());
    let path = dir.join("checkpoints.jsonl");
    let original = read_lines(&path);

    // Moving a checkpoint's seq (to hide a truncation) breaks its signature.
    let mut lines = original.clone();
    lines[3] = lines[3].replacen("\"seq\":20", "\"seq\":17", 1);
    write_lines(&path, &lines);
    let report = check(dir.path(), &keep, None);
    let bad: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::BadCheckpoint)
        .collect();
    assert_eq!(bad.len(), 1, "{report}");
    assert_eq!(bad[0].line, 4);
    assert!(
        bad[0].message.contains("signature does not match"),
        "{report}"
    );

    // A checkpoint signed by another key (another log's) is refused.
    let (other, other_keep) = (
        TempDir::new("forged-cp-other"),
        TempDir::new("forged-cp-ok"),
    );
    write_log(other.path(), 5, 5);
    let foreign = read_lines(&other.join("checkpoints.jsonl"));
    let mut lines = original.clone();
    lines.push(foreign[0].clone());
    write_lines(&path, &lines);
    let report = check(dir.path(), &keep, None);
    assert_eq!(report.problems.len(), 1, "{report}");
    assert_eq!(report.problems[0].kind, ProblemKind::BadCheckpoint);
    assert!(
        report.problems[0].message.contains("signed by key"),
        "{report}"
    );

    // And the right key is needed: every checkpoint fails under another.
    write_lines(&path, &original);
    let report = verify(dir.path(), &pinned_key(other.path(), &other_keep), None).unwrap();
    assert_eq!(report.checkpoints, 0);
    assert_eq!(report.problems.len(), 4, "{report}");
}

#[test]
fn the_documented_sha256sum_check_matches() {
    let dir = TempDir::new("sha256sum");
    let records = write_log(dir.path(), 3, 1000);
    let command = r#"sed -n 2p audit.jsonl | sed -E 's/,"hash":"[0-9a-f]{64}"}$/}/' | tr -d '\n' | sha256sum"#;
    let Ok(output) = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir.path())
        .output()
    else {
        eprintln!("no sh: skipped");
        return;
    };
    if !output.status.success() {
        eprintln!("sha256sum unavailable: skipped");
        return;
    }
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        printed.split_whitespace().next(),
        Some(&*records[1].hash.to_hex())
    );
    assert_eq!(records[2].prev, records[1].hash);
}

#[test]
fn the_documented_openssl_check_verifies_a_checkpoint() {
    let dir = TempDir::new("openssl");
    write_log(dir.path(), 3, 3);
    let script = r#"
        command -v openssl >/dev/null && command -v xxd >/dev/null || exit 77
        line=$(tail -n 1 checkpoints.jsonl)
        printf '%s' "$line" | sed -E 's/,"signature":"[0-9a-f]{128}"}$/}/' > message
        printf '%s' "$line" | sed -E 's/.*"signature":"([0-9a-f]{128})"}$/\1/' | xxd -r -p > signature
        openssl pkeyutl -verify -pubin -inkey signing-key.pub -rawin -in message -sigfile signature
    "#;
    let output = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir.path())
        .output()
        .unwrap();
    if output.status.code() == Some(77) {
        eprintln!("openssl or xxd unavailable: skipped");
        return;
    }
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && text.contains("Signature Verified Successfully"),
        "{text}"
    );
}

#[test]
fn a_copy_handed_over_file_by_file_pins_the_log_like_a_directory() {
    let (dir, keep, copy) = (
        TempDir::new("copy-files"),
        TempDir::new("copy-files-key"),
        TempDir::new("copy-files-copy"),
    );
    {
        let log = AuditLog::open(
            dir.path(),
            options()
                .checkpoint_every(5)
                .sink(std::sync::Arc::new(DirectorySink::new(copy.path()))),
        )
        .unwrap();
        for i in 1..=12 {
            log.append(entry(i)).unwrap();
        }
        log.ship_now().unwrap();
    }
    // The copy as a remote store would hand it over: names and bytes, in
    // no particular order.
    let mut names: Vec<_> = std::fs::read_dir(copy.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names.reverse();
    let files = || {
        names.iter().map(|name| {
            Ok(CopyFile {
                name: Path::new("s3://bucket/trail").join(name.file_name().unwrap()),
                bytes: std::fs::read(name).unwrap(),
            })
        })
    };
    let key = pinned_key(dir.path(), &keep);
    let report = verify_against_files(dir.path(), &key, files()).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.shipped_records, Some(12));

    let log = dir.join("audit.jsonl");
    let lines = read_lines(&log);
    write_lines(&log, &lines[..11]);
    let report = verify_against_files(dir.path(), &key, files()).unwrap();
    assert_first(&report, 12, 12, ProblemKind::Truncated);
    assert!(
        report.to_string().contains("s3://bucket/trail/records-"),
        "{report}"
    );

    // A file that cannot be fetched ends the check with that error.
    let failing = std::iter::once(Err(deployctl_audit::AuditError::Io {
        action: "fetch",
        path: "s3://bucket/trail/records-1-2.jsonl".into(),
        source: std::io::Error::other("AccessDenied"),
    }));
    let error = verify_against_files(dir.path(), &key, failing).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("cannot fetch s3://bucket/trail/records-1-2.jsonl")
    );
}
