//! Shipping to a locked bucket: COMPLIANCE on every object, deletes
//! refused, unlocked buckets refused, re-shipping idempotent.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ObjectLockMode;
use deployctl_audit::{Filter, Sink, SinkError, show};
use deployctl_aws_audit::{AwsAuditError, Retention, S3ObjectLockSink, TrailKeys};

use crate::support::{Moto, TempDir, append, location, log, moto};

const YEAR: Duration = Duration::from_secs(365 * 24 * 60 * 60);

#[test]
fn a_trail_ships_to_a_locked_bucket_in_compliance_mode() {
    let Some(url) = moto("a_trail_ships_to_a_locked_bucket_in_compliance_mode") else {
        return;
    };
    let moto = Moto::new(&url);
    let bucket = moto.locked_bucket();
    let dir = TempDir::new("ship");
    let log = log(dir.path(), Some(Arc::new(moto.sink(&bucket))));
    append(&log, 5);
    let checkpoint = log.checkpoint().unwrap();
    assert_eq!(checkpoint.seq, 5);
    let before = SystemTime::now();
    // From this plain thread, as `audit_shipped` does before a run.
    let report = log.ship_now().unwrap();
    assert_eq!((report.records, report.checkpoints), (5, 1));
    assert!(log.pending().is_empty());

    let keys = moto.keys(&bucket);
    assert_eq!(
        keys,
        [
            "trail/checkpoint-00000000000000000005.json",
            "trail/records-00000000000000000001-00000000000000000005.jsonl",
        ]
    );
    // The records object is the log's lines, byte for byte.
    let local = std::fs::read(dir.path().join("audit/audit.jsonl")).unwrap();
    assert_eq!(moto.body(&bucket, &keys[1]), local);
    let mut line = checkpoint.to_line();
    line.push(b'\n');
    assert_eq!(moto.body(&bucket, &keys[0]), line);

    for key in &keys {
        let head = moto
            .block_on(moto.s3.head_object().bucket(&bucket).key(key).send())
            .unwrap();
        assert_eq!(
            head.object_lock_mode(),
            Some(&ObjectLockMode::Compliance),
            "{key}"
        );
        let until = head
            .object_lock_retain_until_date()
            .expect("a retain-until date");
        let at_least = SystemTime::UNIX_EPOCH + Duration::from_secs(until.secs() as u64);
        assert!(
            at_least + Duration::from_secs(5) >= before + YEAR,
            "{key} is locked only until {until}"
        );
        assert!(at_least <= SystemTime::now() + YEAR + Duration::from_secs(5));
    }
}

#[test]
fn a_locked_version_cannot_be_deleted() {
    let Some(url) = moto("a_locked_version_cannot_be_deleted") else {
        return;
    };
    let moto = Moto::new(&url);
    let bucket = moto.locked_bucket();
    let dir = TempDir::new("delete");
    let log = log(dir.path(), Some(Arc::new(moto.sink(&bucket))));
    append(&log, 2);
    log.ship_now().unwrap();
    let key = &moto.keys(&bucket)[0];
    let version = moto
        .block_on(moto.s3.head_object().bucket(&bucket).key(key).send())
        .unwrap()
        .version_id()
        .expect("a versioned object")
        .to_string();
    for bypass in [false, true] {
        let error = moto
            .block_on(
                moto.s3
                    .delete_object()
                    .bucket(&bucket)
                    .key(key)
                    .version_id(&version)
                    .bypass_governance_retention(bypass)
                    .send(),
            )
            .expect_err("S3 must refuse to delete a COMPLIANCE-locked version");
        assert_eq!(
            error.code(),
            Some("AccessDenied"),
            "bypass {bypass}: {error:?}"
        );
        assert_eq!(error.raw_response().map(|r| r.status().as_u16()), Some(403));
    }
    // Still there, byte for byte.
    assert_eq!(
        moto.body(&bucket, key),
        std::fs::read(dir.path().join("audit/audit.jsonl")).unwrap()
    );
}

#[test]
fn a_bucket_without_object_lock_is_refused_up_front() {
    let Some(url) = moto("a_bucket_without_object_lock_is_refused_up_front") else {
        return;
    };
    let moto = Moto::new(&url);
    let bucket = moto.plain_bucket();
    let refused =
        S3ObjectLockSink::with_client(moto.s3_at(&url), location(&bucket), Retention::default())
            .err()
            .expect("a bucket without Object Lock is refused");
    assert!(matches!(refused, AwsAuditError::Refused(_)), "{refused:?}");
    let message = refused.to_string();
    assert!(
        message.contains("does not have S3 Object Lock enabled"),
        "{message}"
    );
    assert!(
        message.contains("put-object-lock-configuration"),
        "{message}"
    );
    assert!(
        message.contains(&format!("s3://{bucket}/trail")),
        "{message}"
    );
    assert!(moto.keys(&bucket).is_empty(), "nothing was written");

    let missing = S3ObjectLockSink::with_client(
        moto.s3_at(&url),
        location("deployctl-no-such-bucket-here"),
        Retention::default(),
    )
    .err()
    .expect("a missing bucket is refused");
    let message = missing.to_string();
    assert!(message.contains("does not exist"), "{message}");
    assert!(
        message.contains("--object-lock-enabled-for-bucket"),
        "{message}"
    );
}

/// Records and the checkpoint of a log that ships nowhere, to hand to a
/// sink by hand.
fn batch(
    dir: &TempDir,
    n: usize,
) -> (
    Vec<deployctl_audit::AuditRecord>,
    deployctl_audit::Checkpoint,
) {
    let log = log(dir.path(), None);
    append(&log, n);
    let checkpoint = log.checkpoint().unwrap();
    let records = show(&dir.path().join("audit"), &Filter::default()).unwrap();
    (records, checkpoint)
}

#[test]
fn shipping_the_same_batch_again_is_idempotent() {
    let Some(url) = moto("shipping_the_same_batch_again_is_idempotent") else {
        return;
    };
    let moto = Moto::new(&url);
    let bucket = moto.locked_bucket();
    let dir = TempDir::new("again");
    let (records, checkpoint) = batch(&dir, 4);
    let sink = moto.sink(&bucket);
    sink.ship(&records, Some(&checkpoint)).unwrap();
    // A crash before the outbox moved: the same batch again, then cut
    // differently (the first two records alone, then all four).
    sink.ship(&records, Some(&checkpoint)).unwrap();
    sink.ship(&records[..2], None).unwrap();
    sink.ship(&records, None).unwrap();

    let versions = moto
        .block_on(moto.s3.list_object_versions().bucket(&bucket).send())
        .unwrap();
    let mut keys: Vec<&str> = versions.versions().iter().filter_map(|v| v.key()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "trail/checkpoint-00000000000000000004.json",
            "trail/records-00000000000000000001-00000000000000000002.jsonl",
            "trail/records-00000000000000000001-00000000000000000004.jsonl",
        ],
        "one version per object: nothing was written twice"
    );
}

#[test]
fn someone_elses_object_under_a_batch_key_is_refused() {
    let Some(url) = moto("someone_elses_object_under_a_batch_key_is_refused") else {
        return;
    };
    let moto = Moto::new(&url);
    let bucket = moto.locked_bucket();
    let dir = TempDir::new("other");
    let (records, _) = batch(&dir, 3);
    let sink = moto.sink(&bucket);
    let key = sink.location().records_key(1, 3);

    // Other bytes, locked: nothing may be overwritten.
    let until = aws_sdk_s3::primitives::DateTime::from(SystemTime::now() + YEAR);
    moto.block_on(
        moto.s3
            .put_object()
            .bucket(&bucket)
            .key(&key)
            .body(ByteStream::from_static(b"not the trail\n"))
            .object_lock_mode(ObjectLockMode::Compliance)
            .object_lock_retain_until_date(until)
            .send(),
    )
    .unwrap();
    let Err(SinkError::Refused(message)) = sink.ship(&records, None) else {
        panic!("another writer's object must be refused");
    };
    assert!(
        message.contains("already exists with other content"),
        "{message}"
    );
    assert!(message.contains(&key), "{message}");
    assert_eq!(moto.body(&bucket, &key), b"not the trail\n");

    // The same bytes but unlocked: not deployctl's, deletable, refused.
    let key = sink.location().records_key(1, 2);
    let mut body = Vec::new();
    for record in &records[..2] {
        serde_json_line(record, &mut body);
    }
    moto.block_on(
        moto.s3
            .put_object()
            .bucket(&bucket)
            .key(&key)
            .body(ByteStream::from(body))
            .send(),
    )
    .unwrap();
    let Err(SinkError::Refused(message)) = sink.ship(&records[..2], None) else {
        panic!("an unlocked copy must be refused");
    };
    assert!(
        message.contains("not locked in COMPLIANCE mode"),
        "{message}"
    );
}

fn serde_json_line(record: &deployctl_audit::AuditRecord, out: &mut Vec<u8>) {
    out.extend_from_slice(&serde_json::to_vec(record).unwrap());
    out.push(b'\n');
}

#[tokio::test(flavor = "current_thread")]
async fn shipping_from_inside_a_tokio_runtime_does_not_panic() {
    let Some(url) = moto("shipping_from_inside_a_tokio_runtime_does_not_panic") else {
        return;
    };
    let account = deployctl_aws::testing::MotoAccount::fresh();
    let sdk = deployctl_aws::testing::sdk_config(&url).await;
    let client = || {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .interceptor(account.clone())
                .build(),
        )
    };
    let bucket = crate::support::unique("in-runtime");
    client()
        .create_bucket()
        .bucket(&bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    // Opened, shipped to and dropped on this runtime's thread: a sink that
    // used `block_on` here would panic.
    let sink =
        S3ObjectLockSink::with_client(client(), location(&bucket), Retention::default()).unwrap();
    let dir = TempDir::new("in-runtime");
    let log = log(dir.path(), Some(Arc::new(sink)));
    append(&log, 3);
    log.checkpoint().unwrap();
    let report = log.ship_now().unwrap();
    assert_eq!((report.records, report.checkpoints), (3, 1));
    drop(log);
    let listed = client()
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.contents().len(), 2);
}
