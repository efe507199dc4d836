//! The firmware operations against moto with the real SDK clients: KMS
//! signatures verified offline, KMS content keys, publishing to a
//! versioned bucket, and every call checked against `iam`.

use deployctl_adapter::iam::Scope;
use deployctl_aws::testing::{CallRecorder, MotoAccount, moto, sdk_config};
use deployctl_aws_firmware::bucket::{self, S3Object};
use deployctl_aws_firmware::{KmsContentKeys, KmsSigner, iam, kms_public_key};
use deployctl_firmware::cipher;
use deployctl_firmware::manifest::{FORMAT, Image, Manifest};
use deployctl_firmware::verify::{Refusal, verify_manifest};

/// One moto account: the clients the operations use (their calls
/// recorded for the `iam` check) and the test's own, for setting up keys
/// and buckets.
struct Aws {
    kms: aws_sdk_kms::Client,
    s3: aws_sdk_s3::Client,
    calls: CallRecorder,
    admin_kms: aws_sdk_kms::Client,
    admin_s3: aws_sdk_s3::Client,
}

async fn aws(url: &str) -> Aws {
    let sdk = sdk_config(url).await;
    let account = MotoAccount::fresh();
    let calls = CallRecorder::default();
    let kms = |recorded: bool| {
        let mut config = aws_sdk_kms::config::Builder::from(&sdk).interceptor(account.clone());
        if recorded {
            config = config.interceptor(calls.clone());
        }
        aws_sdk_kms::Client::from_conf(config.build())
    };
    let s3 = |recorded: bool| {
        let mut config = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .interceptor(account.clone());
        if recorded {
            config = config.interceptor(calls.clone());
        }
        aws_sdk_s3::Client::from_conf(config.build())
    };
    Aws {
        kms: kms(true),
        s3: s3(true),
        admin_kms: kms(false),
        admin_s3: s3(false),
        calls,
    }
}

fn scope() -> Scope {
    Scope {
        partition: "aws".into(),
        account: "*".into(),
        default_region: "us-east-1".into(),
    }
}

async fn signing_key(aws: &Aws) -> String {
    let created = aws
        .admin_kms
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .expect("kms:CreateKey ECC_NIST_P256");
    created.key_metadata().unwrap().arn().unwrap().to_owned()
}

async fn symmetric_key(aws: &Aws) -> String {
    let created = aws
        .admin_kms
        .create_key()
        .send()
        .await
        .expect("kms:CreateKey");
    created.key_metadata().unwrap().arn().unwrap().to_owned()
}

fn manifest(image: &[u8]) -> Manifest {
    Manifest {
        format: FORMAT.into(),
        firmware: "t4-app".into(),
        version: "4.2.0".into(),
        hardware: vec!["t4-rev-a".into()],
        image: Image {
            sha256: deployctl_firmware::sha256_hex(image),
            size: image.len() as u64,
            encryption: None,
        },
        min_version: None,
        rollback: false,
        signed_at: "2026-12-03T00:00:00.000Z".into(),
    }
}

#[tokio::test]
async fn a_kms_signed_manifest_verifies_offline_with_the_kms_public_key() {
    let Some(url) = moto("a_kms_signed_manifest_verifies_offline_with_the_kms_public_key") else {
        return;
    };
    let aws = aws(&url).await;
    let key = signing_key(&aws).await;
    let signer = KmsSigner::new(aws.kms.clone(), &key).await.unwrap();
    let envelope = deployctl_firmware::envelope::sign(&manifest(b"img"), &signer)
        .await
        .unwrap();

    let public = kms_public_key(&aws.kms, &key).await.unwrap();
    let verified = verify_manifest(envelope.as_bytes(), &public).unwrap();
    assert_eq!(verified.signer, key, "the trail names the KMS key");
    assert_eq!(verified.manifest.version, "4.2.0");

    // Another KMS key's public key does not verify it.
    let other = signing_key(&aws).await;
    let other_public = kms_public_key(&aws.kms, &other).await.unwrap();
    assert!(matches!(
        verify_manifest(envelope.as_bytes(), &other_public),
        Err(Refusal::BadSignature { .. })
    ));
    aws.calls
        .assert_allowed_by(&iam::sign_statements(&key, &scope()));
}

#[tokio::test]
async fn a_symmetric_key_is_refused_as_a_signing_key() {
    let Some(url) = moto("a_symmetric_key_is_refused_as_a_signing_key") else {
        return;
    };
    let aws = aws(&url).await;
    let key = symmetric_key(&aws).await;
    let error = KmsSigner::new(aws.kms.clone(), &key).await.unwrap_err();
    assert!(error.to_string().contains("ECC_NIST_P256"), "{error}");
}

#[tokio::test]
async fn images_encrypted_under_kms_content_keys_decrypt_only_with_kms() {
    let Some(url) = moto("images_encrypted_under_kms_content_keys_decrypt_only_with_kms") else {
        return;
    };
    let aws = aws(&url).await;
    let key = symmetric_key(&aws).await;
    let keys = KmsContentKeys::new(aws.kms.clone(), &key);
    let image: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let file = cipher::encrypt(&image, &keys).await.unwrap();
    let header = cipher::Header::read(&file).unwrap();
    assert_eq!(
        header.wrapped.key_id, key,
        "the header names the wrapping key"
    );
    assert!(
        !file
            .windows(64)
            .any(|w| image.windows(64).next() == Some(w)),
        "ciphertext, not the image"
    );
    assert_eq!(cipher::decrypt(&file, &keys).await.unwrap(), image);

    // The blob unwraps only in the firmware context: moto enforces it.
    let (other_context, _) = aws
        .admin_kms
        .decrypt()
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(
            header.wrapped.blob.clone(),
        ))
        .send()
        .await
        .map(|a| (a.plaintext().is_some(), ()))
        .unwrap_or((false, ()));
    assert!(
        !other_context,
        "a blob unwrapped without the firmware encryption context"
    );
    aws.calls
        .assert_allowed_by(&iam::content_key_statements(&key, &scope()));
}

#[tokio::test]
async fn publishing_needs_a_versioned_bucket_and_pins_what_was_signed() {
    let Some(url) = moto("publishing_needs_a_versioned_bucket_and_pins_what_was_signed") else {
        return;
    };
    let aws = aws(&url).await;
    let bucket = format!("fw-{}", std::process::id());
    aws.admin_s3
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();

    let prefix = format!("s3://{bucket}/t4/4.2.0");
    let refused = bucket::publish(&aws.s3, &prefix, "t4-app.bin", b"image", b"{}", None)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("does not keep versions"),
        "{refused}"
    );
    assert!(
        aws.admin_s3
            .head_object()
            .bucket(&bucket)
            .key("t4/4.2.0/t4-app.bin.manifest.json")
            .send()
            .await
            .is_err(),
        "no manifest is published to an unversioned bucket"
    );
    let prefix = format!("s3://{bucket}/t4/4.2.0-b");

    set_versioning(
        &aws,
        &bucket,
        aws_sdk_s3::types::BucketVersioningStatus::Enabled,
    )
    .await;
    let [image, manifest] = bucket::publish(
        &aws.s3,
        &prefix,
        "t4-app.bin",
        b"image v1",
        b"{\"m\":1}",
        Some("https://d111.cloudfront.net/"),
    )
    .await
    .unwrap();
    assert_eq!(image.object.key, "t4/4.2.0-b/t4-app.bin");
    assert_eq!(manifest.object.key, "t4/4.2.0-b/t4-app.bin.manifest.json");
    let version = image.object.version_id.clone().expect("a version ID");
    assert_eq!(
        image.url,
        format!("https://d111.cloudfront.net/t4/4.2.0-b/t4-app.bin?versionId={version}")
    );
    // Publishing again to the same names is refused: nothing changes under devices.
    let again = bucket::publish(&aws.s3, &prefix, "t4-app.bin", b"image v2", b"{}", None)
        .await
        .unwrap_err();
    assert!(again.to_string().contains("already published"), "{again}");
    let pinned: S3Object = image.object.to_string().parse().unwrap();
    assert_eq!(bucket::fetch(&aws.s3, &pinned).await.unwrap(), b"image v1");
    let latest = S3Object {
        version_id: None,
        ..pinned
    };
    assert_eq!(bucket::fetch(&aws.s3, &latest).await.unwrap(), b"image v1");
    let mut statements = iam::publish_statements(&bucket, "t4", &scope());
    statements.extend(iam::read_statements(&bucket, "t4/*", &scope()));
    aws.calls.assert_allowed_by(&statements);
}

async fn set_versioning(
    aws: &Aws,
    bucket: &str,
    status: aws_sdk_s3::types::BucketVersioningStatus,
) {
    aws.admin_s3
        .put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(status)
                .build(),
        )
        .send()
        .await
        .expect("s3:PutBucketVersioning");
}
