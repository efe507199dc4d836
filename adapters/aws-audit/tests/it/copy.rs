//! `verify --against s3://…`: the shipped, locked copy catches what the
//! local chain cannot (a cut-off end with its checkpoints removed, a
//! record rewritten with every later hash recomputed) and a version
//! written over a shipped object.

use std::path::Path;
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use deployctl_audit::canonical::seal_record;
use deployctl_audit::{
    AuditRecord, ChainHash, ProblemKind, Report, keys, verify, verify_against_files,
};
use deployctl_aws_audit::{S3Copy, TrailKeys};

use crate::support::{Moto, TempDir, append, location, log, moto};

/// A trail of 6 records, checkpointed and shipped.
fn shipped(moto: &Moto) -> (TempDir, String) {
    let bucket = moto.locked_bucket();
    let dir = TempDir::new("copy");
    let log = log(dir.path(), Some(Arc::new(moto.sink(&bucket))));
    append(&log, 6);
    log.checkpoint().unwrap();
    log.ship_now().unwrap();
    (dir, bucket)
}

fn against_s3(moto: &Moto, dir: &Path, bucket: &str) -> (Report, Vec<String>) {
    let copy = S3Copy::list_with_client(moto.s3_at(&moto.url), location(bucket)).unwrap();
    let audit = dir.join("audit");
    let report =
        verify_against_files(&audit, &audit.join(keys::PUBLIC_KEY_FILE), copy.files()).unwrap();
    (report, copy.warnings().to_vec())
}

fn local_only(dir: &Path) -> Report {
    let audit = dir.join("audit");
    verify(&audit, &audit.join(keys::PUBLIC_KEY_FILE), None).unwrap()
}

fn lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("audit/audit.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(dir: &Path, lines: &[String]) {
    std::fs::write(dir.join("audit/audit.jsonl"), lines.join("\n") + "\n").unwrap();
}

#[test]
fn an_intact_trail_matches_its_shipped_copy() {
    let Some(url) = moto("an_intact_trail_matches_its_shipped_copy") else {
        return;
    };
    let moto = Moto::new(&url);
    let (dir, bucket) = shipped(&moto);
    let (report, warnings) = against_s3(&moto, dir.path(), &bucket);
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.shipped_records, Some(6));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(
        report
            .to_string()
            .contains("matches the shipped copy (6 records)")
    );
}

#[test]
fn a_cut_off_trail_is_caught_by_the_shipped_copy() {
    let Some(url) = moto("a_cut_off_trail_is_caught_by_the_shipped_copy") else {
        return;
    };
    let moto = Moto::new(&url);
    let (dir, bucket) = shipped(&moto);
    // The last two records go, and with them the local checkpoints that
    // would have told.
    let mut kept = lines(dir.path());
    kept.truncate(4);
    write_lines(dir.path(), &kept);
    std::fs::remove_file(dir.path().join("audit/checkpoints.jsonl")).unwrap();
    assert!(
        local_only(dir.path()).is_ok(),
        "the local chain alone cannot tell"
    );

    let (report, _) = against_s3(&moto, dir.path(), &bucket);
    let first = report.first_bad_record().expect("a problem in the log");
    assert_eq!(first.kind, ProblemKind::Truncated, "{report}");
    assert_eq!(first.seq, Some(5));
    assert!(first.message.contains("s3://"), "{}", first.message);
}

#[test]
fn a_rewritten_and_rehashed_trail_is_caught_by_the_shipped_copy() {
    let Some(url) = moto("a_rewritten_and_rehashed_trail_is_caught_by_the_shipped_copy") else {
        return;
    };
    let moto = Moto::new(&url);
    let (dir, bucket) = shipped(&moto);
    // Someone rewrites who did record 3 and recomputes every hash after
    // it, so the chain is consistent again, and drops the checkpoints.
    let mut records: Vec<AuditRecord> = lines(dir.path())
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    records[2].who.operator = "mallory".into();
    let mut prev = ChainHash::ZERO;
    let mut rewritten = Vec::new();
    for record in &mut records {
        record.prev = prev;
        let mut line = Vec::new();
        seal_record(record, &mut line).unwrap();
        prev = record.hash;
        rewritten.push(String::from_utf8(line).unwrap().trim_end().to_string());
    }
    write_lines(dir.path(), &rewritten);
    std::fs::remove_file(dir.path().join("audit/checkpoints.jsonl")).unwrap();
    assert!(
        local_only(dir.path()).is_ok(),
        "the rewritten chain is self-consistent"
    );

    let (report, _) = against_s3(&moto, dir.path(), &bucket);
    let first = report.first_bad_record().expect("a problem in the log");
    assert_eq!(first.kind, ProblemKind::ShippedMismatch, "{report}");
    assert_eq!(first.seq, Some(3), "{report}");
    assert!(report.to_string().contains("TAMPERED"));
}

#[test]
fn a_version_written_over_a_shipped_object_is_reported() {
    let Some(url) = moto("a_version_written_over_a_shipped_object_is_reported") else {
        return;
    };
    let moto = Moto::new(&url);
    let (dir, bucket) = shipped(&moto);
    let key = location(&bucket).records_key(1, 6);
    // Locked objects cannot be deleted, but a new version can be put over
    // the key: a plain GET would now return it.
    let mut forged = lines(dir.path());
    forged[1] = forged[1].replacen("\"operator\":\"", "\"operator\":\"mallory-", 1);
    moto.block_on(
        moto.s3
            .put_object()
            .bucket(&bucket)
            .key(&key)
            .body(ByteStream::from((forged.join("\n") + "\n").into_bytes()))
            .send(),
    )
    .unwrap();
    let (report, warnings) = against_s3(&moto, dir.path(), &bucket);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&key) && w.contains("2 versions")),
        "{warnings:?}"
    );
    assert!(!report.is_ok(), "{report}");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::BadShippedCopy && p.seq == Some(2)),
        "{report}"
    );
}
