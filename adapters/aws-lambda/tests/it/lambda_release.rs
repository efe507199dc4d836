//! `LambdaTarget` given the plan's artifact: code published from a zip or
//! S3 exactly once (across retries and restarts), versions named by the
//! release's label, and writes whose answers were lost (through the
//! fault-injecting proxy) recognised as our own.

use std::path::Path;

use deployctl_adapter::conformance::{Options, run_all_with};
use deployctl_adapter::{Action, AdapterError, IdempotencyKey, Target};
use deployctl_aws_lambda::LambdaTarget;
use deployctl_plan::model::{Artifact, ArtifactSource};
use deployctl_plan::raw::S3Location;

use crate::support::{Account, control, faults, handler_zip, moto};

fn key(n: u32) -> IdempotencyKey {
    IdempotencyKey(format!("test/lambda-release/{n}"))
}

/// A zip release `label` of code tagged `tag`, written under a new
/// temporary directory; returns the artifact and the directory.
fn zip_artifact(label: &str, tag: &str) -> (Artifact, tempdir::Dir) {
    let dir = tempdir::Dir::new(label);
    std::fs::write(dir.path().join("code.zip"), handler_zip(tag)).unwrap();
    (
        Artifact {
            version: label.into(),
            source: ArtifactSource::LambdaZip("code.zip".into()),
        },
        dir,
    )
}

/// A temporary directory removed on drop (std only).
mod tempdir {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    pub struct Dir(PathBuf);

    static N: AtomicU32 = AtomicU32::new(0);

    impl Dir {
        pub fn new(label: &str) -> Dir {
            let path = std::env::temp_dir().join(format!(
                "deployctl-aws-{}-{}-{label}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn releasing(account: &Account, function: &str, artifact: &Artifact, dir: &Path) -> LambdaTarget {
    LambdaTarget::with_client("t", account.lambda.clone(), function, "live")
        .with_release(artifact, dir)
        .unwrap()
}

#[tokio::test]
async fn a_zip_release_conforms_under_its_label() {
    let Some(url) = moto("a_zip_release_conforms_under_its_label") else {
        return;
    };
    let account = Account::new(&url).await;
    let (artifact, dir) = zip_artifact("conformance-candidate", "v3");
    let options = Options {
        candidate_version: "conformance-candidate".into(),
        wave_devices: 1,
    };
    let result = run_all_with(&options, async || {
        let function = account.function().await;
        releasing(&account, &function, &artifact, dir.path())
    })
    .await;
    if let Err(failures) = result {
        panic!("{}", failures.join("\n"));
    }
}

#[tokio::test]
async fn a_zip_release_is_published_once_across_retries_and_restarts() {
    let Some(url) = moto("a_zip_release_is_published_once_across_retries_and_restarts") else {
        return;
    };
    let account = Account::new(&url).await;
    let function = account.function().await;
    let (artifact, dir) = zip_artifact("2.0.0", "v3");
    let target = releasing(&account, &function, &artifact, dir.path());

    // Before anything: observe and preflight speak version numbers.
    let preflight = target.preflight().await.unwrap();
    assert_eq!(preflight.stable_version, "1");
    let deploy = Action::Deploy {
        version: "2.0.0".into(),
    };
    let planned = target
        .plan(&target.observe().await.unwrap(), &deploy)
        .unwrap();
    assert!(
        planned
            .iter()
            .any(|c| c.description.starts_with("lambda:PublishVersion")),
        "{planned:?}"
    );

    let applied = target.apply(&deploy, &key(1)).await.unwrap();
    assert!(applied.changed);
    assert!(applied.request_ids.len() >= 4, "{:?}", applied.request_ids);
    assert_eq!(account.versions(&function).await, vec![1, 2, 3]);
    assert_eq!(
        account.alias(&function).await,
        ("1".into(), vec![("3".into(), 0.0)])
    );
    let version = account
        .lambda
        .get_function_configuration()
        .function_name(&function)
        .qualifier("3")
        .send()
        .await
        .unwrap();
    assert!(
        version
            .description()
            .is_some_and(|d| d.starts_with("deployctl release 2.0.0; zip code.zip; sha256 ")),
        "{:?}",
        version.description()
    );
    let observed = target.observe().await.unwrap();
    assert_eq!(observed.candidate.as_deref(), Some("2.0.0"));
    assert_eq!(observed.stable.as_deref(), Some("1"));

    // A retry in the same process, and a new process (after kill -9):
    // moto would publish a new version for the same code; deployctl finds
    // the one it published.
    assert!(!target.apply(&deploy, &key(2)).await.unwrap().changed);
    let restarted = releasing(&account, &function, &artifact, dir.path());
    assert_eq!(
        restarted.observe().await.unwrap().candidate.as_deref(),
        Some("2.0.0"),
        "a restarted target names the candidate by its label"
    );
    assert!(!restarted.apply(&deploy, &key(3)).await.unwrap().changed);
    assert_eq!(account.versions(&function).await, vec![1, 2, 3]);

    // The switch to 100%, replayed after a restart, is recognised as done.
    restarted
        .apply(&Action::SetWeight { percent: 100 }, &key(4))
        .await
        .unwrap();
    let again = releasing(&account, &function, &artifact, dir.path());
    assert!(
        !again
            .apply(&Action::SetWeight { percent: 100 }, &key(5))
            .await
            .unwrap()
            .changed
    );
    // A re-run of the plan finds the release live: preflight names it.
    assert_eq!(again.preflight().await.unwrap().stable_version, "2.0.0");
    again
        .apply(
            &Action::Rollback {
                to: Some("1".into()),
            },
            &key(6),
        )
        .await
        .unwrap();
    assert_eq!(account.alias(&function).await, ("1".into(), vec![]));
}

#[tokio::test]
async fn a_changed_zip_is_a_new_release_and_a_missing_zip_is_refused() {
    let Some(url) = moto("a_changed_zip_is_a_new_release_and_a_missing_zip_is_refused") else {
        return;
    };
    let account = Account::new(&url).await;
    let function = account.function().await;
    let (artifact, dir) = zip_artifact("2.0.0", "v3");
    let target = releasing(&account, &function, &artifact, dir.path());
    let deploy = Action::Deploy {
        version: "2.0.0".into(),
    };
    target.apply(&deploy, &key(1)).await.unwrap();
    target
        .apply(&Action::Rollback { to: None }, &key(2))
        .await
        .unwrap();
    // Same label, different bytes: not the version published before.
    std::fs::write(dir.path().join("code.zip"), handler_zip("v4")).unwrap();
    let changed = releasing(&account, &function, &artifact, dir.path());
    changed.apply(&deploy, &key(3)).await.unwrap();
    assert_eq!(account.versions(&function).await, vec![1, 2, 3, 4]);
    assert_eq!(
        account.alias(&function).await,
        ("1".into(), vec![("4".into(), 0.0)])
    );

    std::fs::remove_file(dir.path().join("code.zip")).unwrap();
    let missing = releasing(&account, &function, &artifact, dir.path());
    let error = missing.apply(&deploy, &key(4)).await.unwrap_err();
    assert!(
        matches!(&error, AdapterError::Rejected { message, .. } if message.contains("code.zip")),
        "{error:?}"
    );
    // Rolling back never needs the code.
    assert!(
        missing
            .apply(&Action::Rollback { to: None }, &key(5))
            .await
            .unwrap()
            .changed
    );
    assert_eq!(account.alias(&function).await, ("1".into(), vec![]));
}

#[tokio::test]
async fn labels_that_would_be_ambiguous_are_refused_before_anything_runs() {
    let artifact = |label: &str, source: ArtifactSource| Artifact {
        version: label.into(),
        source,
    };
    let target = || {
        let sdk = aws_sdk_lambda::Config::builder()
            .behavior_version(aws_sdk_lambda::config::BehaviorVersion::latest())
            .build();
        LambdaTarget::with_client("t", aws_sdk_lambda::Client::from_conf(sdk), "f", "live")
    };
    let here = Path::new(".");
    let error = target()
        .with_release(
            &artifact("3", ArtifactSource::LambdaZip("c.zip".into())),
            here,
        )
        .unwrap_err();
    assert!(error.to_string().contains("bare number"), "{error}");
    assert!(
        target()
            .with_release(
                &artifact("2", ArtifactSource::LambdaPublished("2".into())),
                here
            )
            .is_ok()
    );
    let error = target()
        .with_pinned_stable(&artifact(
            "v1",
            ArtifactSource::LambdaS3(S3Location {
                bucket: "b".into(),
                key: "k".into(),
                object_version: None,
            }),
        ))
        .unwrap_err();
    assert!(
        error.to_string().contains("published Lambda version"),
        "{error}"
    );
    let error = target()
        .with_release(
            &artifact("v1", ArtifactSource::TaskDefinition("td".into())),
            here,
        )
        .unwrap_err();
    assert!(error.to_string().contains("not Lambda code"), "{error}");
}

#[tokio::test]
async fn a_published_release_and_a_pinned_stable_are_named_by_their_labels() {
    let Some(url) = moto("a_published_release_and_a_pinned_stable_are_named_by_their_labels")
    else {
        return;
    };
    let account = Account::new(&url).await;
    let function = account.function().await;
    let target = LambdaTarget::with_client("t", account.lambda.clone(), &function, "live")
        .with_release(
            &Artifact {
                version: "v2".into(),
                source: ArtifactSource::LambdaPublished("2".into()),
            },
            Path::new("."),
        )
        .unwrap()
        .with_pinned_stable(&Artifact {
            version: "v1".into(),
            source: ArtifactSource::LambdaPublished("1".into()),
        })
        .unwrap();
    assert_eq!(target.preflight().await.unwrap().stable_version, "v1");
    target
        .apply(
            &Action::Deploy {
                version: "v2".into(),
            },
            &key(1),
        )
        .await
        .unwrap();
    target
        .apply(&Action::SetWeight { percent: 25 }, &key(2))
        .await
        .unwrap();
    let observed = target.observe().await.unwrap();
    assert_eq!(
        (
            observed.stable.as_deref(),
            observed.candidate.as_deref(),
            observed.weight
        ),
        (Some("v1"), Some("v2"), 25)
    );
    target
        .apply(
            &Action::Rollback {
                to: Some("v1".into()),
            },
            &key(3),
        )
        .await
        .unwrap();
    assert_eq!(account.alias(&function).await, ("1".into(), vec![]));
    let error = target
        .apply(
            &Action::Rollback {
                to: Some("v0".into()),
            },
            &key(4),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, AdapterError::Rejected { message, .. } if message.contains("v0")),
        "{error:?}"
    );
}

/// An `UpdateAlias` that reached Lambda but whose answer was lost (the
/// proxy resets the connection after forwarding it) is a timeout to retry;
/// the retry finds the alias as the lost write left it and does not
/// mistake it for another writer's change.
#[tokio::test]
async fn a_write_whose_answer_was_lost_is_recognised_as_ours() {
    let test = "a_write_whose_answer_was_lost_is_recognised_as_ours";
    let (Some(url), Some(proxy)) = (moto(test), faults(test)) else {
        return;
    };
    let account = Account::new(&url).await;
    let function = account.function().await;
    let client = account.lambda_via(&proxy).await;
    let target = LambdaTarget::with_client("t", client, &function, "live");
    target
        .apply(
            &Action::Deploy {
                version: "2".into(),
            },
            &key(1),
        )
        .await
        .unwrap();
    let faults = format!(
        r#"{{"account": "{}", "rate": 1.0, "kinds": ["reset"], "only": ["UpdateAlias"]}}"#,
        account.id.0
    );
    control(&proxy, "POST", "/_emulator/faults", &faults);
    let lost = target
        .apply(&Action::SetWeight { percent: 10 }, &key(2))
        .await
        .unwrap_err();
    assert!(matches!(lost, AdapterError::Timeout { .. }), "{lost:?}");
    assert_eq!(
        account.alias(&function).await,
        ("1".into(), vec![("2".into(), 0.1)]),
        "the write landed"
    );
    control(
        &proxy,
        "DELETE",
        &format!("/_emulator/faults?account={}", account.id.0),
        "",
    );
    let retried = target
        .apply(&Action::SetWeight { percent: 10 }, &key(3))
        .await
        .unwrap();
    assert!(!retried.changed);
    assert!(
        target
            .apply(&Action::SetWeight { percent: 50 }, &key(4))
            .await
            .unwrap()
            .changed
    );
    // The proxy saw the calls, with their operation names.
    let calls = control(
        &proxy,
        "GET",
        &format!("/_emulator/calls?account={}", account.id.0),
        "",
    );
    for operation in ["GetAlias", "GetFunction", "UpdateAlias"] {
        assert!(calls.contains(&format!("\"{operation}\"")), "{calls}");
    }
    assert!(calls.contains("\"reset\""), "{calls}");
}
