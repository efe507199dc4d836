//! `EcsTarget` on an EXTERNAL-controller service, against moto: the
//! conformance suite, a canary and a blue/green release checked on moto's
//! own task sets, rollbacks, a retry after moto's 500, a stranger's change,
//! a restarted adapter, and what AWS refuses but moto accepts.

use deployctl_adapter::conformance::{Options, run_all_with};
use deployctl_adapter::{Action, AdapterError, IdempotencyKey, Target};
use deployctl_aws_ecs::EcsTarget;
use deployctl_plan::model::TargetKind;

use crate::support::{CLUSTER, Moto, moto, row};

fn key(n: u32) -> IdempotencyKey {
    IdempotencyKey(format!("test/ecs/{n}"))
}

fn deploy(version: &str) -> Action {
    Action::Deploy {
        version: version.into(),
    }
}

#[tokio::test]
async fn the_task_set_target_conforms() {
    let Some(url) = moto("the_task_set_target_conforms") else {
        return;
    };
    let account = Moto::new(&url).await;
    // No plan labels: the stable task set (no externalId) is `web:1` and
    // the candidate version is a task definition itself.
    let options = Options {
        candidate_version: "web:2".into(),
        wave_devices: 1,
    };
    let result = run_all_with(&options, async || {
        let service = account.service(None).await;
        EcsTarget::with_client("api", account.ecs.clone(), CLUSTER, service)
    })
    .await;
    if let Err(failures) = result {
        panic!("{}", failures.join("\n"));
    }
}

#[tokio::test]
async fn a_canary_moves_task_set_scales_then_promotes_and_retires() {
    let Some(url) = moto("a_canary_moves_task_set_scales_then_promotes_and_retires") else {
        return;
    };
    let account = Moto::new(&url).await;
    let service = account.service(Some("v1")).await;
    let target = account.target(&service);
    assert_eq!(target.kind(), TargetKind::Ecs);
    let preflight = target.preflight().await.unwrap();
    assert_eq!(preflight.stable_version, "v1");
    assert!(preflight.rollback_ready, "{}", preflight.detail);

    let steps = [
        (
            deploy("v2"),
            vec![
                row("v1", "PRIMARY", "web:1", 100.0),
                row("v2", "ACTIVE", "web:2", 0.0),
            ],
            (Some("v1"), Some("v2"), 0),
        ),
        (
            Action::SetWeight { percent: 10 },
            vec![
                row("v1", "PRIMARY", "web:1", 90.0),
                row("v2", "ACTIVE", "web:2", 10.0),
            ],
            (Some("v1"), Some("v2"), 10),
        ),
        (
            Action::SetWeight { percent: 50 },
            vec![
                row("v1", "PRIMARY", "web:1", 50.0),
                row("v2", "ACTIVE", "web:2", 50.0),
            ],
            (Some("v1"), Some("v2"), 50),
        ),
        (
            Action::Promote,
            vec![
                row("v2", "PRIMARY", "web:2", 100.0),
                row("v1", "ACTIVE", "web:1", 0.0),
            ],
            (Some("v2"), None, 0),
        ),
        (
            Action::Retire,
            vec![row("v2", "PRIMARY", "web:2", 100.0)],
            (Some("v2"), None, 0),
        ),
    ];
    for (n, (action, expected, (stable, candidate, weight))) in steps.into_iter().enumerate() {
        let observed = target.observe().await.unwrap();
        let planned = target.plan(&observed, &action).unwrap();
        assert!(
            planned.iter().any(|c| c.description.starts_with("ecs:")),
            "{action}: {planned:?}"
        );
        let applied = target.apply(&action, &key(n as u32)).await.unwrap();
        assert!(applied.changed, "{action}");
        assert!(
            !applied.request_ids.is_empty() && applied.request_ids.iter().all(|id| !id.is_empty()),
            "{action}: {:?}",
            applied.request_ids
        );
        assert_eq!(
            account.task_sets(&service).await,
            expected,
            "after {action}"
        );
        let observed = target.observe().await.unwrap();
        assert_eq!(
            (
                observed.stable.as_deref(),
                observed.candidate.as_deref(),
                observed.weight
            ),
            (stable, candidate, weight),
            "after {action}"
        );
    }
}

#[tokio::test]
async fn a_rollback_mid_canary_puts_blue_back_at_100_and_removes_green() {
    let Some(url) = moto("a_rollback_mid_canary_puts_blue_back_at_100_and_removes_green") else {
        return;
    };
    let account = Moto::new(&url).await;
    let service = account.service(Some("v1")).await;
    let target = account.target(&service);
    target.apply(&deploy("v2"), &key(1)).await.unwrap();
    target
        .apply(&Action::SetWeight { percent: 50 }, &key(2))
        .await
        .unwrap();
    let rollback = Action::Rollback {
        to: Some("v1".into()),
    };
    let applied = target.apply(&rollback, &key(3)).await.unwrap();
    assert!(applied.changed);
    assert_eq!(
        account.task_sets(&service).await,
        vec![row("v1", "PRIMARY", "web:1", 100.0)]
    );
    let again = target.apply(&rollback, &key(4)).await.unwrap();
    assert!(!again.changed);

    // Blue/green: after the switch to 100%, a rollback without a version
    // switches back to the kept blue task set.
    let service = account.service(Some("v1")).await;
    let target = account.target(&service);
    target.apply(&deploy("v2"), &key(5)).await.unwrap();
    target
        .apply(&Action::SetWeight { percent: 100 }, &key(6))
        .await
        .unwrap();
    assert_eq!(
        account.task_sets(&service).await,
        vec![
            row("v2", "PRIMARY", "web:2", 100.0),
            row("v1", "ACTIVE", "web:1", 0.0),
        ]
    );
    target
        .apply(&Action::Rollback { to: None }, &key(7))
        .await
        .unwrap();
    assert_eq!(
        account.task_sets(&service).await,
        vec![row("v1", "PRIMARY", "web:1", 100.0)]
    );
}

#[tokio::test]
async fn a_retry_after_a_moto_500_does_not_duplicate_the_task_set() {
    let Some(url) = moto("a_retry_after_a_moto_500_does_not_duplicate_the_task_set") else {
        return;
    };
    let account = Moto::new(&url).await;
    let service = account.service(Some("v1")).await;
    let target = account.target(&service);
    target.observe().await.unwrap();
    // moto creates the task set, then fails with 500 (a container without
    // its own memory): the call's outcome is unknown to the caller.
    let error = target.apply(&deploy("nomem:1"), &key(1)).await.unwrap_err();
    assert!(
        matches!(error, AdapterError::Unavailable { .. }),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert_eq!(account.task_sets(&service).await.len(), 2);
    // The engine retries the same action: found by externalId, not created again.
    let retried = target.apply(&deploy("nomem:1"), &key(1)).await.unwrap();
    assert!(!retried.changed);
    assert_eq!(
        account.task_sets(&service).await,
        vec![
            row("v1", "PRIMARY", "web:1", 100.0),
            row("nomem:1", "ACTIVE", "nomem:1", 0.0),
        ]
    );
    let observed = target.observe().await.unwrap();
    assert_eq!(observed.candidate.as_deref(), Some("nomem:1"));
    target
        .apply(&Action::SetWeight { percent: 10 }, &key(2))
        .await
        .unwrap();
    assert_eq!(account.task_sets(&service).await[1].3, 10.0);
}

#[tokio::test]
async fn a_change_behind_the_adapters_back_is_refused_even_after_observing_again() {
    let Some(url) = moto("a_change_behind_the_adapters_back_is_refused_even_after_observing_again")
    else {
        return;
    };
    let account = Moto::new(&url).await;
    let service = account.service(Some("v1")).await;
    let target = account.target(&service);
    target.apply(&deploy("v2"), &key(1)).await.unwrap();
    target.observe().await.unwrap();

    // Another writer scales the green task set between our observe and apply.
    let green = account
        .ecs
        .describe_services()
        .cluster(CLUSTER)
        .services(&service)
        .send()
        .await
        .unwrap()
        .services()[0]
        .task_sets()
        .iter()
        .find(|ts| ts.external_id() == Some("v2"))
        .and_then(|ts| ts.task_set_arn())
        .unwrap()
        .to_owned();
    account
        .ecs
        .update_task_set()
        .cluster(CLUSTER)
        .service(&service)
        .task_set(green)
        .scale(
            aws_sdk_ecs::types::Scale::builder()
                .value(30.0)
                .unit(aws_sdk_ecs::types::ScaleUnit::Percent)
                .build(),
        )
        .send()
        .await
        .unwrap();

    let error = target
        .apply(&Action::SetWeight { percent: 10 }, &key(2))
        .await
        .unwrap_err();
    assert!(matches!(error, AdapterError::Rejected { .. }), "{error:?}");
    assert!(error.to_string().contains("another writer"), "{error}");
    assert!(
        error.request_id().is_some_and(|id| !id.is_empty()),
        "{error:?}"
    );
    assert!(
        !error.is_retryable(),
        "a stranger's change is not retried over"
    );
    let theirs = vec![
        row("v1", "PRIMARY", "web:1", 100.0),
        row("v2", "ACTIVE", "web:2", 30.0),
    ];
    assert_eq!(account.task_sets(&service).await, theirs);
    // The engine observes again after a conflict: that does not adopt the
    // change, and neither does a rollback overwrite it.
    assert_eq!(target.observe().await.unwrap().weight, 30);
    for action in [
        Action::SetWeight { percent: 10 },
        Action::Rollback { to: None },
    ] {
        let error = target.apply(&action, &key(3)).await.unwrap_err();
        assert!(error.to_string().contains("another writer"), "{error}");
    }
    assert_eq!(account.task_sets(&service).await, theirs);
    // A human's `deployctl rollback` runs in a new process: the override.
    let fresh = account.target(&service);
    fresh.observe().await.unwrap();
    fresh
        .apply(&Action::Rollback { to: None }, &key(4))
        .await
        .unwrap();
    assert_eq!(
        account.task_sets(&service).await,
        vec![row("v1", "PRIMARY", "web:1", 100.0)]
    );
}

#[tokio::test]
async fn a_restarted_adapter_reads_the_release_from_the_platform_and_continues() {
    let Some(url) = moto("a_restarted_adapter_reads_the_release_from_the_platform_and_continues")
    else {
        return;
    };
    let account = Moto::new(&url).await;
    let service = account.service(Some("v1")).await;
    let first = account.target(&service);
    first.apply(&deploy("v2"), &key(1)).await.unwrap();
    first
        .apply(&Action::SetWeight { percent: 50 }, &key(2))
        .await
        .unwrap();
    let before = first.observe().await.unwrap();
    drop(first);

    // `deployctl resume` builds a new target: no memory, same answers.
    let second = account.target(&service);
    assert_eq!(second.observe().await.unwrap(), before);
    let applied = second
        .apply(&Action::SetWeight { percent: 50 }, &key(2))
        .await
        .unwrap();
    assert!(
        !applied.changed,
        "a replay of the last step changes nothing"
    );
    second.apply(&Action::Promote, &key(3)).await.unwrap();
    drop(second);

    // Restarted again between promotion and retirement: the kept blue
    // task set is still known as the version to switch back to.
    let third = account.target(&service);
    let observed = third.observe().await.unwrap();
    assert_eq!(
        (
            observed.stable.as_deref(),
            observed.candidate,
            observed.weight
        ),
        (Some("v2"), None, 0)
    );
    third
        .apply(&Action::Rollback { to: None }, &key(4))
        .await
        .unwrap();
    assert_eq!(
        account.task_sets(&service).await,
        vec![row("v1", "PRIMARY", "web:1", 100.0)]
    );
}

#[tokio::test]
async fn what_aws_would_refuse_is_refused_before_moto_can_accept_it() {
    let Some(url) = moto("what_aws_would_refuse_is_refused_before_moto_can_accept_it") else {
        return;
    };
    let account = Moto::new(&url).await;
    let service = account.service(Some("v1")).await;
    let target = account.target(&service);

    let missing = target.apply(&deploy("web:99"), &key(1)).await.unwrap_err();
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
    target.apply(&deploy("v2"), &key(3)).await.unwrap();
    for action in [
        Action::SetWeight { percent: 150 },
        Action::Retire,
        deploy("nomem:1"),
    ] {
        let error = target.apply(&action, &key(4)).await.unwrap_err();
        assert!(
            matches!(error, AdapterError::Rejected { .. }),
            "{action}: {error:?}"
        );
    }
    for action in [
        Action::Halt,
        Action::StartWave {
            index: 0,
            devices: 1,
        },
    ] {
        let error = target.apply(&action, &key(5)).await.unwrap_err();
        assert!(
            matches!(error, AdapterError::Unsupported { .. }),
            "{error:?}"
        );
    }
    assert_eq!(
        account.task_sets(&service).await,
        vec![
            row("v1", "PRIMARY", "web:1", 100.0),
            row("v2", "ACTIVE", "web:2", 0.0),
        ]
    );

    // A stable task definition that can no longer start tasks fails preflight.
    account
        .ecs
        .deregister_task_definition()
        .task_definition("web:1")
        .send()
        .await
        .unwrap();
    let preflight = target.preflight().await.unwrap();
    assert!(!preflight.rollback_ready, "{preflight:?}");
    assert!(
        preflight.detail.contains("INACTIVE"),
        "{}",
        preflight.detail
    );
}

#[tokio::test]
async fn a_missing_service_is_not_found() {
    let Some(url) = moto("a_missing_service_is_not_found") else {
        return;
    };
    let account = Moto::new(&url).await;
    for (cluster, service) in [(CLUSTER, "no-such-service"), ("no-such-cluster", "svc")] {
        let target = EcsTarget::with_client("api", account.ecs.clone(), cluster, service);
        let error = target.observe().await.unwrap_err();
        assert!(matches!(error, AdapterError::NotFound { .. }), "{error:?}");
        let error = target.preflight().await.unwrap_err();
        assert!(matches!(error, AdapterError::NotFound { .. }), "{error:?}");
    }
}

/// `from_spec` takes the task definition from the plan's artifact and
/// refuses an artifact of another kind before any call is made.
#[tokio::test]
async fn from_spec_needs_a_task_definition_artifact() {
    use deployctl_adapter::construct::PlanRelease;
    use deployctl_plan::model::{Artifact, ArtifactSource};
    let spec = deployctl_plan::raw::EcsTarget {
        cluster: CLUSTER.into(),
        service: "svc".into(),
        region: Some("us-east-1".into()),
    };
    let image = Artifact {
        version: "v2".into(),
        source: ArtifactSource::Image {
            reference: "registry/app@sha256:00".into(),
            container: None,
        },
    };
    let here = std::path::Path::new(".");
    let releasing = |artifact| PlanRelease {
        artifact: Some(artifact),
        pinned_stable: None,
        waves: None,
        strategy: None,
        plan_dir: here,
    };
    let error = EcsTarget::from_spec("api", &spec, &releasing(&image))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("taskDefinition"), "{error}");
    let release = Artifact {
        version: "v2".into(),
        source: ArtifactSource::TaskDefinition("web:2".into()),
    };
    let target = EcsTarget::from_spec("api", &spec, &releasing(&release))
        .await
        .unwrap();
    assert_eq!(target.name(), "api");
    assert_eq!(target.kind(), TargetKind::Ecs);
}
