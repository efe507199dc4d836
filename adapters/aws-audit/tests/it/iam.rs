//! The IAM statements `iam` declares cover every call the audit trail's
//! AWS side really makes: shipping a trail, verifying against the shipped
//! copy, and creating then unwrapping the MFA master key with KMS,
//! recorded from the SDK clients themselves.

use std::sync::Arc;

use deployctl_adapter::iam::Scope;
use deployctl_aws::testing::CallRecorder;
use deployctl_aws_audit::iam::{audit_sink_statements, mfa_kms_statements};
use deployctl_aws_audit::{KmsKeyProvider, Retention, S3Copy, S3ObjectLockSink, WRAPPED_KEY_FILE};
use deployctl_policy::mfa::KeyProvider;

use crate::support::{Moto, TempDir, append, location, log, moto};

fn scope() -> Scope {
    Scope {
        partition: "aws".into(),
        account: "123456789012".into(),
        default_region: "us-east-1".into(),
    }
}

#[test]
fn shipping_and_verifying_call_only_what_the_policy_allows() {
    let Some(url) = moto("shipping_and_verifying_call_only_what_the_policy_allows") else {
        return;
    };
    let moto = Moto::new(&url);
    let bucket = moto.locked_bucket();
    let recorder = CallRecorder::default();
    let recorded = aws_sdk_s3::Client::from_conf(
        moto.s3_at(&url)
            .config()
            .to_builder()
            .interceptor(recorder.clone())
            .build(),
    );
    let sink =
        S3ObjectLockSink::with_client(recorded.clone(), location(&bucket), Retention::default())
            .expect("the sink opens");
    let dir = TempDir::new("iam-ship");
    let log = log(dir.path(), Some(Arc::new(sink)));
    append(&log, 3);
    log.checkpoint().unwrap();
    log.ship_now().unwrap();
    let copy = S3Copy::list_with_client(recorded, location(&bucket)).unwrap();
    assert!(copy.files().count() > 0);

    recorder.assert_allowed_by(&audit_sink_statements(&location(&bucket), &scope()));
    for action in [
        "s3:PutObject",
        "s3:ListBucketVersions",
        "s3:GetBucketObjectLockConfiguration",
    ] {
        assert!(
            recorder.actions().contains(action),
            "{action}: {:?}",
            recorder.actions()
        );
    }
}

#[test]
fn the_kms_key_source_calls_only_what_the_policy_allows() {
    let Some(url) = moto("the_kms_key_source_calls_only_what_the_policy_allows") else {
        return;
    };
    let moto = Moto::new(&url);
    let key = moto
        .block_on(moto.kms.create_key().send())
        .expect("kms:CreateKey")
        .key_metadata()
        .expect("key metadata")
        .arn()
        .expect("an ARN")
        .to_owned();
    let recorder = CallRecorder::default();
    let recorded = aws_sdk_kms::Client::from_conf(
        moto.kms_client()
            .config()
            .to_builder()
            .interceptor(recorder.clone())
            .build(),
    );
    let state = TempDir::new("iam-kms");
    let wrapped = state.path().join(WRAPPED_KEY_FILE);
    KmsKeyProvider::with_client(recorded.clone(), &key, &wrapped)
        .expect("the provider starts")
        .create_if_missing(true)
        .load_key()
        .expect("a new master key");
    KmsKeyProvider::with_client(recorded, &key, &wrapped)
        .expect("the provider starts")
        .load_key()
        .expect("the same master key, unwrapped");

    let statements = mfa_kms_statements(&key, &scope());
    assert_eq!(statements[0].resources.iter().collect::<Vec<_>>(), [&key]);
    recorder.assert_allowed_by(&statements);
    for action in ["kms:GenerateDataKey", "kms:Decrypt"] {
        assert!(
            recorder.actions().contains(action),
            "{action}: {:?}",
            recorder.actions()
        );
    }
}
