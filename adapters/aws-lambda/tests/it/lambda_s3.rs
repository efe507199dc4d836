//! `LambdaTarget` releasing code from S3 (`lambda: {s3: {bucket, key,
//! objectVersion}}`) against moto, whose Lambda reads the object from
//! moto's S3 in the same account: published once as a new version (across
//! retries and restarts), released canary → promote, a missing object
//! refused for good with nothing published, and every call the target
//! makes on each code path covered by the IAM statements it declares.
//!
//! moto ignores `S3ObjectVersion` (it always reads the object's latest
//! version), so a pinned version here is always the latest one: these
//! tests check the adapter sends and names it, not which bytes AWS picks.

use std::path::Path;

use deployctl_adapter::iam::Scope;
use deployctl_adapter::{Action, ErrorClass, IdempotencyKey, Target};
use deployctl_aws::testing::CallRecorder;
use deployctl_aws_lambda::LambdaTarget;
use deployctl_plan::model::{Artifact, ArtifactSource};
use deployctl_plan::raw;

use crate::support::{Account, handler_zip, moto};

fn key(n: u32) -> IdempotencyKey {
    IdempotencyKey(format!("test/lambda-s3/{n}"))
}

fn deploy(label: &str) -> Action {
    Action::Deploy {
        version: label.into(),
    }
}

/// A release `label` of the S3 object `bucket/key` (at `object_version`).
fn s3_artifact(label: &str, bucket: &str, key: &str, object_version: Option<String>) -> Artifact {
    Artifact {
        version: label.into(),
        source: ArtifactSource::LambdaS3(raw::S3Location {
            bucket: bucket.into(),
            key: key.into(),
            object_version,
        }),
    }
}

/// A target on `function`'s `live` alias over `client`, releasing `artifact`.
fn releasing(client: &aws_sdk_lambda::Client, function: &str, artifact: &Artifact) -> LambdaTarget {
    LambdaTarget::with_client("t", client.clone(), function, "live")
        .with_release(artifact, Path::new("."))
        .expect("a valid Lambda release")
}

/// Base64 SHA-256 of `bytes`: the `CodeSha256` Lambda reports for them.
fn code_sha256(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = String::new();
    for chunk in digest.as_ref().chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The published version `number` of `function`: its description and CodeSha256.
async fn version_of(account: &Account, function: &str, number: &str) -> (String, String) {
    let out = account
        .lambda
        .get_function_configuration()
        .function_name(function)
        .qualifier(number)
        .send()
        .await
        .expect("lambda:GetFunctionConfiguration");
    (
        out.description().unwrap_or_default().to_owned(),
        out.code_sha256().unwrap_or_default().to_owned(),
    )
}

/// An S3 release (`pinned`: at its object version, in a versioned bucket)
/// is published once as version 3, deployed at weight 0, then canaried
/// and promoted; its version names the release and holds the object's code.
async fn s3_release_is_published_once_and_promoted(test: &str, pinned: bool) {
    let Some(url) = moto(test) else {
        return;
    };
    let account = Account::new(&url).await;
    let function = account.function().await;
    let bucket = account.bucket("code", pinned).await;
    let zip = handler_zip("s3-v3");
    let object_version = account.upload(&bucket, "app/v3.zip", zip.clone()).await;
    assert_eq!(object_version.is_some(), pinned, "{object_version:?}");
    let artifact = s3_artifact("2.0.0", &bucket, "app/v3.zip", object_version.clone());
    let target = releasing(&account.lambda, &function, &artifact);

    let planned = target
        .plan(&target.observe().await.unwrap(), &deploy("2.0.0"))
        .unwrap();
    assert!(
        planned
            .iter()
            .any(|c| c.description.starts_with("lambda:UpdateFunctionCode")),
        "{planned:?}"
    );
    let applied = target.apply(&deploy("2.0.0"), &key(1)).await.unwrap();
    assert!(applied.changed);
    // ListVersionsByFunction, UpdateFunctionCode, PublishVersion, GetAlias,
    // GetFunction (the new version exists), UpdateAlias.
    assert!(applied.request_ids.len() >= 5, "{:?}", applied.request_ids);
    assert_eq!(account.versions(&function).await, vec![1, 2, 3]);
    assert_eq!(
        account.alias(&function).await,
        ("1".into(), vec![("3".into(), 0.0)])
    );
    let (description, sha) = version_of(&account, &function, "3").await;
    assert_eq!(sha, code_sha256(&zip), "version 3 holds the object's code");
    let source = match &object_version {
        Some(v) => format!("s3://{bucket}/app/v3.zip?versionId={v}"),
        None => format!("s3://{bucket}/app/v3.zip"),
    };
    assert_eq!(
        description,
        format!("deployctl release 2.0.0; {source}; sha256 {sha}")
    );
    let observed = target.observe().await.unwrap();
    assert_eq!(
        (observed.stable.as_deref(), observed.candidate.as_deref()),
        (Some("1"), Some("2.0.0"))
    );

    assert!(
        target
            .apply(&Action::SetWeight { percent: 10 }, &key(2))
            .await
            .unwrap()
            .changed
    );
    assert_eq!(
        account.alias(&function).await,
        ("1".into(), vec![("3".into(), 0.1)])
    );
    assert!(
        target
            .apply(&Action::Promote, &key(3))
            .await
            .unwrap()
            .changed
    );
    assert_eq!(account.alias(&function).await, ("3".into(), vec![]));
    let observed = target.observe().await.unwrap();
    assert_eq!(
        (observed.stable.as_deref(), observed.candidate.as_deref()),
        (Some("2.0.0"), None)
    );
    assert_eq!(target.preflight().await.unwrap().stable_version, "2.0.0");
    assert_eq!(
        account.versions(&function).await,
        vec![1, 2, 3],
        "canary and promotion publish nothing"
    );
}

#[tokio::test]
async fn an_s3_release_is_published_once_and_promoted() {
    s3_release_is_published_once_and_promoted(
        "an_s3_release_is_published_once_and_promoted",
        false,
    )
    .await;
}

#[tokio::test]
async fn an_s3_release_pinned_to_an_object_version_is_published_once_and_promoted() {
    s3_release_is_published_once_and_promoted(
        "an_s3_release_pinned_to_an_object_version_is_published_once_and_promoted",
        true,
    )
    .await;
}

/// moto publishes a new version on every UpdateFunctionCode + PublishVersion
/// (AWS would not, for unchanged code), so only the adapter finding its
/// version keeps the count at 3.
#[tokio::test]
async fn a_retried_s3_deploy_finds_its_version_and_publishes_nothing() {
    let Some(url) = moto("a_retried_s3_deploy_finds_its_version_and_publishes_nothing") else {
        return;
    };
    let account = Account::new(&url).await;
    let function = account.function().await;
    let bucket = account.bucket("code", true).await;
    let object_version = account
        .upload(&bucket, "app.zip", handler_zip("s3-v3"))
        .await;
    let artifact = s3_artifact("2.0.0", &bucket, "app.zip", object_version);
    let target = releasing(&account.lambda, &function, &artifact);
    assert!(
        target
            .apply(&deploy("2.0.0"), &key(1))
            .await
            .unwrap()
            .changed
    );
    assert_eq!(account.versions(&function).await, vec![1, 2, 3]);

    // The same target retries (the answer was lost, say).
    let retried = target.apply(&deploy("2.0.0"), &key(2)).await.unwrap();
    assert!(!retried.changed);
    assert_eq!(account.versions(&function).await, vec![1, 2, 3]);

    // A new process after kill -9: it knows nothing, Lambda tells it.
    let restarted = releasing(&account.lambda, &function, &artifact);
    assert_eq!(
        restarted.observe().await.unwrap().candidate.as_deref(),
        Some("2.0.0")
    );
    assert!(
        !restarted
            .apply(&deploy("2.0.0"), &key(3))
            .await
            .unwrap()
            .changed
    );
    assert_eq!(account.versions(&function).await, vec![1, 2, 3]);

    // Killed between PublishVersion and UpdateAlias: the version exists
    // but the alias never got it. The next process routes to it without
    // publishing again.
    account
        .lambda
        .update_alias()
        .function_name(&function)
        .name("live")
        .function_version("1")
        .routing_config(
            aws_sdk_lambda::types::AliasRoutingConfiguration::builder()
                .set_additional_version_weights(Some(Default::default()))
                .build(),
        )
        .send()
        .await
        .expect("lambda:UpdateAlias");
    assert_eq!(account.alias(&function).await, ("1".into(), vec![]));
    let resumed = releasing(&account.lambda, &function, &artifact);
    assert!(
        resumed
            .apply(&deploy("2.0.0"), &key(4))
            .await
            .unwrap()
            .changed
    );
    assert_eq!(
        account.alias(&function).await,
        ("1".into(), vec![("3".into(), 0.0)])
    );
    assert_eq!(account.versions(&function).await, vec![1, 2, 3]);

    // The same object under another label is another release.
    let relabelled = s3_artifact(
        "2.0.1",
        &bucket,
        "app.zip",
        match &artifact.source {
            ArtifactSource::LambdaS3(s3) => s3.object_version.clone(),
            _ => None,
        },
    );
    let other = releasing(&account.lambda, &function, &relabelled);
    other
        .apply(&Action::Rollback { to: None }, &key(5))
        .await
        .unwrap();
    other.apply(&deploy("2.0.1"), &key(6)).await.unwrap();
    assert_eq!(account.versions(&function).await, vec![1, 2, 3, 4]);
}

/// A code object that is not there fails the deploy, names the object,
/// and publishes nothing; the alias is untouched. moto 5.2.5 answers a
/// missing key with success and an empty CodeSha256 (AWS: 400
/// `InvalidParameterValueException`, NoSuchKey), which the adapter refuses
/// as permanent, and a missing bucket with an HTTP 500 (an uncaught error
/// in moto; AWS: 400, NoSuchBucket), which is transient to any client, so
/// for the bucket only the message and the absence of a version are
/// checked here; AWS's own answer is classified in
/// `aws_refusing_the_code_object_is_permanent` below.
#[tokio::test]
async fn a_missing_s3_object_or_bucket_fails_the_deploy_and_publishes_nothing() {
    let Some(url) = moto("a_missing_s3_object_or_bucket_fails_the_deploy_and_publishes_nothing")
    else {
        return;
    };
    let account = Account::new(&url).await;
    let function = account.function().await;
    let bucket = account.bucket("code", false).await;
    let missing_bucket = format!("no-such-bucket-{}", account.id.0);
    for (artifact, source, permanent) in [
        (
            s3_artifact("2.0.0", &bucket, "missing.zip", None),
            format!("s3://{bucket}/missing.zip"),
            true,
        ),
        (
            s3_artifact("2.0.0", &missing_bucket, "app.zip", None),
            format!("s3://{missing_bucket}/app.zip"),
            false,
        ),
    ] {
        let target = releasing(&account.lambda, &function, &artifact);
        let error = target.apply(&deploy("2.0.0"), &key(1)).await.unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("lambda:UpdateFunctionCode") && message.contains(&source),
            "{message}"
        );
        if permanent {
            assert_eq!(error.class(), ErrorClass::Permanent, "{error:?}");
            assert!(message.contains("exists"), "says what to check: {message}");
        }
        assert_eq!(account.versions(&function).await, vec![1, 2], "{source}");
        assert_eq!(account.alias(&function).await, ("1".into(), vec![]));
        // Observing afterwards finds no candidate: nothing to clean up.
        let observed = target.observe().await.unwrap();
        assert_eq!(observed.candidate, None);
    }
}

/// What AWS answers UpdateFunctionCode for a missing object or bucket (400
/// `InvalidParameterValueException`, "Error occurred while GetObject. S3
/// Error Code: NoSuchKey"), which moto cannot produce, is a permanent
/// failure: retrying cannot make the object appear.
#[test]
fn aws_refusing_the_code_object_is_permanent() {
    use aws_sdk_lambda::error::{ErrorMetadata, SdkError};
    use aws_sdk_lambda::operation::update_function_code::UpdateFunctionCodeError;
    use aws_sdk_lambda::primitives::SdkBody;

    for s3_code in ["NoSuchKey", "NoSuchBucket", "AccessDenied"] {
        let text = format!(
            "Error occurred while GetObject. S3 Error Code: {s3_code}. S3 Error Message: not there"
        );
        let error = UpdateFunctionCodeError::generic(
            ErrorMetadata::builder()
                .code("InvalidParameterValueException")
                .message(&text)
                .build(),
        );
        let response = aws_sdk_lambda::config::http::HttpResponse::new(
            400u16.try_into().expect("a status code"),
            SdkBody::from(format!(r#"{{"Type":"User","message":"{text}"}}"#)),
        );
        let mapped = deployctl_aws::map_sdk_error(
            SdkError::service_error(error, response),
            "lambda:UpdateFunctionCode f from s3://b/k.zip",
        );
        assert_eq!(mapped.class(), ErrorClass::Permanent, "{mapped:?}");
        let message = mapped.to_string();
        assert!(
            message.contains("s3://b/k.zip") && message.contains(s3_code),
            "{message}"
        );
    }
}

fn scope() -> Scope {
    Scope {
        partition: "aws".into(),
        account: "123456789012".into(),
        default_region: "us-east-1".into(),
    }
}

/// `account`'s Lambda client with `recorder` on it.
fn recorded(account: &Account, recorder: &CallRecorder) -> aws_sdk_lambda::Client {
    aws_sdk_lambda::Client::from_conf(
        account
            .lambda
            .config()
            .to_builder()
            .interceptor(recorder.clone())
            .build(),
    )
}

/// Every action of a release (preflight, observe, deploy with publishing,
/// canary, promote, a retry after a restart, a rollback to the old
/// version, to the release by label, and a deploy that fails) through
/// `client`, for `artifact`.
async fn release_everything(
    account: &Account,
    client: &aws_sdk_lambda::Client,
    function: &str,
    artifact: &Artifact,
) {
    let target = releasing(client, function, artifact);
    target.preflight().await.unwrap();
    let label = artifact.version.as_str();
    for (n, action) in [
        deploy(label),
        Action::SetWeight { percent: 10 },
        Action::Promote,
        Action::Retire,
    ]
    .iter()
    .enumerate()
    {
        let observed = target.observe().await.unwrap();
        target.plan(&observed, action).unwrap();
        target.apply(action, &key(10 + n as u32)).await.unwrap();
    }
    let restarted = releasing(client, function, artifact);
    restarted.observe().await.unwrap();
    restarted
        .apply(
            &Action::Rollback {
                to: Some("1".into()),
            },
            &key(20),
        )
        .await
        .unwrap();
    let again = releasing(client, function, artifact);
    again
        .apply(
            &Action::Rollback {
                to: Some(label.into()),
            },
            &key(21),
        )
        .await
        .unwrap();
    assert_eq!(account.alias(function).await.0, "3", "{artifact:?}");
}

#[tokio::test]
async fn every_call_of_an_s3_release_is_in_the_declared_policy() {
    let Some(url) = moto("every_call_of_an_s3_release_is_in_the_declared_policy") else {
        return;
    };
    let account = Account::new(&url).await;
    let recorder = CallRecorder::default();
    let client = recorded(&account, &recorder);
    let function = account.function().await;
    let bucket = account.bucket("code", true).await;
    let object_version = account
        .upload(&bucket, "app.zip", handler_zip("s3-v3"))
        .await;
    let artifact = s3_artifact("2.0.0", &bucket, "app.zip", object_version);
    release_everything(&account, &client, &function, &artifact).await;
    // A missing object's UpdateFunctionCode is a call too.
    let missing = s3_artifact("3.0.0", &bucket, "missing.zip", None);
    releasing(&client, &function, &missing)
        .apply(&deploy("3.0.0"), &key(30))
        .await
        .unwrap_err();

    let spec = raw::LambdaTarget {
        function_name: function,
        alias: "live".into(),
        region: None,
    };
    let statements =
        deployctl_aws_lambda::iam::lambda_statements(&spec, Some(&artifact.source), &scope());
    recorder.assert_allowed_by(&statements);
    let actions = recorder.actions();
    for action in [
        "lambda:ListVersionsByFunction",
        "lambda:UpdateFunctionCode",
        "lambda:PublishVersion",
        "lambda:GetAlias",
        "lambda:UpdateAlias",
        "lambda:GetFunction",
    ] {
        assert!(actions.contains(action), "{action} not seen: {actions:?}");
    }
    // Lambda reads the object as the caller: the policy lets it.
    assert!(
        deployctl_adapter::iam::allows(&statements, "s3:GetObjectVersion"),
        "{statements:#?}"
    );
}

#[tokio::test]
async fn every_call_of_a_zip_release_is_in_the_declared_policy() {
    let Some(url) = moto("every_call_of_a_zip_release_is_in_the_declared_policy") else {
        return;
    };
    let account = Account::new(&url).await;
    let recorder = CallRecorder::default();
    let client = recorded(&account, &recorder);
    let function = account.function().await;
    let dir = std::env::temp_dir().join(format!(
        "deployctl-aws-iam-{}-{}",
        std::process::id(),
        account.id.0
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let zip = dir.join("code.zip");
    std::fs::write(&zip, handler_zip("zip-v3")).unwrap();
    let artifact = Artifact {
        version: "2.0.0".into(),
        source: ArtifactSource::LambdaZip(zip.to_string_lossy().into_owned()),
    };
    release_everything(&account, &client, &function, &artifact).await;
    let _ = std::fs::remove_dir_all(&dir);

    let spec = raw::LambdaTarget {
        function_name: function,
        alias: "live".into(),
        region: None,
    };
    let statements =
        deployctl_aws_lambda::iam::lambda_statements(&spec, Some(&artifact.source), &scope());
    recorder.assert_allowed_by(&statements);
    let actions = recorder.actions();
    for action in ["lambda:UpdateFunctionCode", "lambda:PublishVersion"] {
        assert!(actions.contains(action), "{action} not seen: {actions:?}");
    }
}

/// An already published version needs no publishing permissions, and the
/// target makes no publishing call.
#[tokio::test]
async fn every_call_of_a_published_release_is_in_the_declared_policy() {
    let Some(url) = moto("every_call_of_a_published_release_is_in_the_declared_policy") else {
        return;
    };
    let account = Account::new(&url).await;
    let recorder = CallRecorder::default();
    let client = recorded(&account, &recorder);
    let function = account.function().await;
    let artifact = Artifact {
        version: "v2".into(),
        source: ArtifactSource::LambdaPublished("2".into()),
    };
    let target = releasing(&client, &function, &artifact)
        .with_pinned_stable(&Artifact {
            version: "v1".into(),
            source: ArtifactSource::LambdaPublished("1".into()),
        })
        .unwrap();
    target.preflight().await.unwrap();
    for (n, action) in [
        deploy("v2"),
        Action::SetWeight { percent: 50 },
        Action::Rollback {
            to: Some("v1".into()),
        },
        deploy("v2"),
        Action::Promote,
        Action::Retire,
    ]
    .iter()
    .enumerate()
    {
        let observed = target.observe().await.unwrap();
        target.plan(&observed, action).unwrap();
        target.apply(action, &key(40 + n as u32)).await.unwrap();
    }
    assert_eq!(account.alias(&function).await, ("2".into(), vec![]));

    let spec = raw::LambdaTarget {
        function_name: function,
        alias: "live".into(),
        region: None,
    };
    let statements =
        deployctl_aws_lambda::iam::lambda_statements(&spec, Some(&artifact.source), &scope());
    recorder.assert_allowed_by(&statements);
    let actions = recorder.actions();
    assert!(
        !actions.contains("lambda:UpdateFunctionCode")
            && !actions.contains("lambda:ListVersionsByFunction"),
        "{actions:?}"
    );
}

/// What `deployctl plan --observe` does with a target: preflight, observe,
/// and plan every action of a release. Only reads, each in the declared
/// statements, for code from S3, from a zip and already published.
#[tokio::test]
async fn observing_a_release_only_reads_within_the_declared_policy() {
    let Some(url) = moto("observing_a_release_only_reads_within_the_declared_policy") else {
        return;
    };
    let account = Account::new(&url).await;
    let function = account.function().await;
    let bucket = account.bucket("code", true).await;
    let object_version = account
        .upload(&bucket, "app.zip", handler_zip("s3-observe"))
        .await;
    let dir = std::env::temp_dir().join(format!(
        "deployctl-aws-observe-{}-{}",
        std::process::id(),
        account.id.0
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let zip = dir.join("code.zip");
    std::fs::write(&zip, handler_zip("zip-observe")).unwrap();
    let artifacts = [
        s3_artifact("2.0.0", &bucket, "app.zip", object_version),
        Artifact {
            version: "2.1.0".into(),
            source: ArtifactSource::LambdaZip(zip.to_string_lossy().into_owned()),
        },
        Artifact {
            version: "v2".into(),
            source: ArtifactSource::LambdaPublished("2".into()),
        },
    ];
    for artifact in &artifacts {
        let recorder = CallRecorder::default();
        let client = recorded(&account, &recorder);
        let target = releasing(&client, &function, artifact);
        target.preflight().await.unwrap();
        let observed = target.observe().await.unwrap();
        for action in [
            deploy(&artifact.version),
            Action::SetWeight { percent: 10 },
            Action::Promote,
            Action::Retire,
            Action::Rollback { to: None },
        ] {
            // Only its calls matter here: planning is pure.
            target.plan(&observed, &action).ok();
        }
        let spec = raw::LambdaTarget {
            function_name: function.clone(),
            alias: "live".into(),
            region: None,
        };
        let statements =
            deployctl_aws_lambda::iam::lambda_statements(&spec, Some(&artifact.source), &scope());
        recorder.assert_allowed_by(&statements);
        let actions = recorder.actions();
        assert!(
            actions.iter().all(|action| {
                let operation = action.split_once(':').map_or("", |(_, op)| op);
                ["Get", "List", "Describe"]
                    .iter()
                    .any(|read| operation.starts_with(read))
            }),
            "{artifact:?}: {actions:?}"
        );
    }
    assert_eq!(account.alias(&function).await.0, "1", "nothing moved");
    let _ = std::fs::remove_dir_all(&dir);
}
