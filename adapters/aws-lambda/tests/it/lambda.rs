//! `LambdaTarget` against moto: the conformance suite, a canary release
//! step by step, the RevisionId race, and what moto accepts but AWS refuses.

use deployctl_adapter::conformance::{Options, run_all_with};
use deployctl_adapter::construct::PlanRelease;
use deployctl_adapter::{Action, AdapterError, IdempotencyKey, Target};
use deployctl_aws_lambda::LambdaTarget;
use deployctl_plan::model::TargetKind;

use crate::support::{Account, moto};

/// An alias's version and its additional version weights.
type AliasRouting = (&'static str, Vec<(String, f64)>);

fn key(n: u32) -> IdempotencyKey {
    IdempotencyKey(format!("test/lambda/{n}"))
}

#[tokio::test]
async fn the_alias_target_conforms() {
    let Some(url) = moto("the_alias_target_conforms") else {
        return;
    };
    let account = Account::new(&url).await;
    let options = Options {
        candidate_version: "2".into(),
        wave_devices: 1,
    };
    let result = run_all_with(&options, async || account.target().await.0).await;
    if let Err(failures) = result {
        panic!("{}", failures.join("\n"));
    }
}

#[tokio::test]
async fn a_canary_moves_the_alias_weights_then_promotes_and_rolls_back() {
    let Some(url) = moto("a_canary_moves_the_alias_weights_then_promotes_and_rolls_back") else {
        return;
    };
    let account = Account::new(&url).await;
    let (target, function) = account.target().await;
    assert_eq!(target.kind(), TargetKind::Lambda);

    let preflight = target.preflight().await.unwrap();
    assert_eq!(preflight.stable_version, "1");
    assert!(preflight.rollback_ready, "{}", preflight.detail);

    let steps: [(Action, AliasRouting); 5] = [
        (
            Action::Deploy {
                version: "2".into(),
            },
            ("1", vec![("2".into(), 0.0)]),
        ),
        (
            Action::SetWeight { percent: 10 },
            ("1", vec![("2".into(), 0.1)]),
        ),
        (
            Action::SetWeight { percent: 50 },
            ("1", vec![("2".into(), 0.5)]),
        ),
        (Action::Promote, ("2", vec![])),
        (
            Action::Rollback {
                to: Some("1".into()),
            },
            ("1", vec![]),
        ),
    ];
    for (n, (action, (version, weights))) in steps.into_iter().enumerate() {
        let observed = target.observe().await.unwrap();
        let planned = target.plan(&observed, &action).unwrap();
        assert!(
            planned
                .iter()
                .any(|c| c.description.starts_with("lambda:UpdateAlias")),
            "{action}: {planned:?}"
        );
        let applied = target.apply(&action, &key(n as u32)).await.unwrap();
        assert!(applied.changed, "{action}");
        assert!(
            !applied.request_ids.is_empty() && applied.request_ids.iter().all(|id| !id.is_empty()),
            "{action}: request IDs {:?}",
            applied.request_ids
        );
        let (got_version, got_weights) = account.alias(&function).await;
        assert_eq!(
            (got_version.as_str(), &got_weights),
            (version, &weights),
            "after {action}"
        );
    }
    let observed = target.observe().await.unwrap();
    assert_eq!(
        (
            observed.stable.as_deref(),
            observed.candidate,
            observed.weight
        ),
        (Some("1"), None, 0)
    );
}

#[tokio::test]
async fn blue_green_switches_the_whole_alias_and_rolls_back_without_a_version() {
    let Some(url) = moto("blue_green_switches_the_whole_alias_and_rolls_back_without_a_version")
    else {
        return;
    };
    let account = Account::new(&url).await;
    let (target, function) = account.target().await;
    for (n, action) in [
        Action::Deploy {
            version: "2".into(),
        },
        Action::SetWeight { percent: 100 },
    ]
    .iter()
    .enumerate()
    {
        target.apply(action, &key(n as u32)).await.unwrap();
    }
    assert_eq!(account.alias(&function).await, ("2".into(), vec![]));
    // Applied again (a "maybe done" replay), the switch changes nothing.
    let again = target
        .apply(&Action::SetWeight { percent: 100 }, &key(9))
        .await
        .unwrap();
    assert!(!again.changed);
    let rollback = target
        .apply(&Action::Rollback { to: None }, &key(10))
        .await
        .unwrap();
    assert!(rollback.changed);
    assert_eq!(account.alias(&function).await, ("1".into(), vec![]));
}

/// Another writer moves the alias mid-release: deployctl neither
/// continues over it nor "rolls back" over it (both would overwrite
/// someone's traffic decision); a new process (the runbook's
/// `deployctl rollback`, a human's explicit decision) may.
#[tokio::test]
async fn another_writers_change_is_never_overwritten_by_the_run() {
    let Some(url) = moto("another_writers_change_is_never_overwritten_by_the_run") else {
        return;
    };
    let account = Account::new(&url).await;
    let (target, function) = account.target().await;
    let deploy = Action::Deploy {
        version: "2".into(),
    };
    target.apply(&deploy, &key(1)).await.unwrap();
    target
        .apply(&Action::SetWeight { percent: 10 }, &key(2))
        .await
        .unwrap();

    // Another writer shifts more traffic to the candidate.
    account
        .lambda
        .update_alias()
        .function_name(&function)
        .name("live")
        .routing_config(
            aws_sdk_lambda::types::AliasRoutingConfiguration::builder()
                .additional_version_weights("2", 0.3)
                .build(),
        )
        .send()
        .await
        .unwrap();

    let error = target
        .apply(&Action::SetWeight { percent: 50 }, &key(3))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, AdapterError::Rejected { message, .. } if message.contains("another writer") && message.contains("30%")),
        "{error:?}"
    );
    assert!(
        !error.is_retryable(),
        "a foreign change is not retried over"
    );
    assert!(
        error.request_id().is_some_and(|id| !id.is_empty()),
        "{error:?}"
    );
    // Observing again changes nothing: the run still does not own it.
    let observed = target.observe().await.unwrap();
    assert_eq!(observed.weight, 30);
    let again = target
        .apply(&Action::SetWeight { percent: 50 }, &key(4))
        .await
        .unwrap_err();
    assert!(matches!(again, AdapterError::Rejected { .. }), "{again:?}");
    // The run's rollback refuses too: the alias is not where it would put it.
    let rollback = Action::Rollback {
        to: Some("1".into()),
    };
    let refused = target.apply(&rollback, &key(5)).await.unwrap_err();
    assert!(
        matches!(refused, AdapterError::Rejected { .. }),
        "{refused:?}"
    );
    assert_eq!(
        account.alias(&function).await,
        ("1".into(), vec![("2".into(), 0.3)]),
        "the other writer's change stands"
    );

    // The runbook's rollback, a new process, is the human's override.
    let runbook = LambdaTarget::with_client("t", account.lambda.clone(), &function, "live");
    assert!(runbook.apply(&rollback, &key(6)).await.unwrap().changed);
    assert_eq!(account.alias(&function).await, ("1".into(), vec![]));
}

/// The common emergency: someone puts the alias back on the stable version
/// by hand mid-release. The run's next step refuses, and its rollback
/// finds nothing to do.
#[tokio::test]
async fn a_manual_rollback_by_someone_else_lets_the_runs_rollback_succeed() {
    let Some(url) = moto("a_manual_rollback_by_someone_else_lets_the_runs_rollback_succeed") else {
        return;
    };
    let account = Account::new(&url).await;
    let (target, function) = account.target().await;
    for (n, action) in [
        Action::Deploy {
            version: "2".into(),
        },
        Action::SetWeight { percent: 20 },
    ]
    .iter()
    .enumerate()
    {
        target.apply(action, &key(n as u32)).await.unwrap();
    }
    account
        .lambda
        .update_alias()
        .function_name(&function)
        .name("live")
        .function_version("1")
        .routing_config(aws_sdk_lambda::types::AliasRoutingConfiguration::builder().build())
        .send()
        .await
        .unwrap();
    let error = target
        .apply(&Action::SetWeight { percent: 50 }, &key(3))
        .await
        .unwrap_err();
    assert!(matches!(error, AdapterError::Rejected { .. }), "{error:?}");
    let rollback = target
        .apply(
            &Action::Rollback {
                to: Some("1".into()),
            },
            &key(4),
        )
        .await
        .unwrap();
    assert!(!rollback.changed);
    assert_eq!(account.alias(&function).await, ("1".into(), vec![]));
}

#[tokio::test]
async fn what_aws_would_refuse_is_refused_before_moto_can_accept_it() {
    let Some(url) = moto("what_aws_would_refuse_is_refused_before_moto_can_accept_it") else {
        return;
    };
    let account = Account::new(&url).await;
    let (target, function) = account.target().await;

    let missing = target
        .apply(
            &Action::Deploy {
                version: "99".into(),
            },
            &key(1),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(missing, AdapterError::NotFound { .. }),
        "{missing:?}"
    );

    let no_candidate = target
        .apply(&Action::SetWeight { percent: 10 }, &key(2))
        .await
        .unwrap_err();
    assert!(
        matches!(no_candidate, AdapterError::Rejected { .. }),
        "{no_candidate:?}"
    );

    target
        .apply(
            &Action::Deploy {
                version: "2".into(),
            },
            &key(3),
        )
        .await
        .unwrap();
    let too_much = target
        .apply(&Action::SetWeight { percent: 150 }, &key(4))
        .await
        .unwrap_err();
    assert!(
        matches!(too_much, AdapterError::Rejected { .. }),
        "{too_much:?}"
    );
    let missing_rollback = target
        .apply(
            &Action::Rollback {
                to: Some("42".into()),
            },
            &key(5),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(missing_rollback, AdapterError::NotFound { .. }),
        "{missing_rollback:?}"
    );
    for action in [
        Action::Halt,
        Action::StartWave {
            index: 0,
            devices: 1,
        },
    ] {
        let error = target.apply(&action, &key(6)).await.unwrap_err();
        assert!(
            matches!(error, AdapterError::Unsupported { .. }),
            "{error:?}"
        );
    }
    assert_eq!(
        account.alias(&function).await,
        ("1".into(), vec![("2".into(), 0.0)])
    );
}

#[tokio::test]
async fn a_missing_alias_or_function_is_not_found() {
    let Some(url) = moto("a_missing_alias_or_function_is_not_found") else {
        return;
    };
    let account = Account::new(&url).await;
    let (_, function) = account.target().await;
    for (function, alias) in [(function.as_str(), "canary"), ("no-such-function", "live")] {
        let target = LambdaTarget::with_client("t", account.lambda.clone(), function, alias);
        let error = target.observe().await.unwrap_err();
        assert!(matches!(error, AdapterError::NotFound { .. }), "{error:?}");
        let error = target.preflight().await.unwrap_err();
        assert!(matches!(error, AdapterError::NotFound { .. }), "{error:?}");
    }
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_timeout_to_retry() {
    // Needs no moto: port 9 on localhost refuses connections.
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_lambda::config::Credentials::new(
            "testing", "testing", None, None, "static",
        ))
        .endpoint_url("http://127.0.0.1:9")
        .load()
        .await;
    let client =
        aws_sdk_lambda::Client::from_conf(deployctl_aws_lambda::lambda_config(&sdk).build());
    let target = LambdaTarget::with_client("t", client, "fn", "live");
    let error = target.observe().await.unwrap_err();
    assert!(matches!(error, AdapterError::Timeout { .. }), "{error:?}");
    assert!(error.is_retryable());
}

/// `LambdaTarget::from_spec` takes credentials from the environment, the
/// region from the plan and the endpoint from `AWS_ENDPOINT_URL`: the same
/// code talks to AWS or to moto. Environment variables are process-wide, so
/// the check runs in a child process of this test binary.
#[tokio::test]
async fn the_standard_chain_finds_the_endpoint_in_aws_endpoint_url() {
    const CHILD: &str = "DEPLOYCTL_TEST_AWS_CHAIN_CHILD";
    const NAME: &str = "lambda::the_standard_chain_finds_the_endpoint_in_aws_endpoint_url";
    if std::env::var_os(CHILD).is_some() {
        let spec = deployctl_plan::raw::LambdaTarget {
            function_name: "no-such-function".into(),
            alias: "live".into(),
            region: Some("us-east-1".into()),
        };
        let nothing = PlanRelease::none(std::path::Path::new("."));
        let target = LambdaTarget::from_spec("chain", &spec, &nothing)
            .await
            .expect("nothing to release, nothing to refuse");
        // An answer from moto (not a connection or credentials error).
        let error = target.observe().await.unwrap_err();
        assert!(matches!(error, AdapterError::NotFound { .. }), "{error:?}");
        return;
    }
    let Some(url) = moto("the_standard_chain_finds_the_endpoint_in_aws_endpoint_url") else {
        return;
    };
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("AWS_ENDPOINT_URL", &url)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/deployctl-test")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/deployctl-test")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
