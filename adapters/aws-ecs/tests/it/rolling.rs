//! `EcsTarget` on an ECS-controller service (rolling update with the
//! deployment circuit breaker), against tests/emulators/ecs.py: the switch
//! reaches COMPLETED, a failing task definition trips the circuit breaker
//! and the rollback ends on the stable version, waits are bounded, canary
//! weights are refused and preflight wants the circuit breaker.

use std::time::{Duration, Instant};

use deployctl_adapter::{Action, AdapterError, IdempotencyKey, Target};

use crate::support::{Emulator, emulator};

const VAR: &str = "DEPLOYCTL_TEST_ECS_URL";

fn key(n: u32) -> IdempotencyKey {
    IdempotencyKey(format!("test/ecs-rolling/{n}"))
}

fn settled(td: &str) -> Vec<(String, String, String)> {
    vec![("PRIMARY".into(), td.into(), "COMPLETED".into())]
}

#[tokio::test]
async fn a_rolling_update_reaches_completed_at_the_switch() {
    let Some(url) = emulator(VAR, "a_rolling_update_reaches_completed_at_the_switch") else {
        return;
    };
    let account = Emulator::new(&url).await;
    account.service("api", Some((true, true))).await;
    let target = account.target("api");

    let preflight = target.preflight().await.unwrap();
    assert_eq!(preflight.stable_version, "v1");
    assert!(preflight.rollback_ready, "{}", preflight.detail);

    // Deploy announces the version; the service does not move yet.
    let deployed = target
        .apply(
            &Action::Deploy {
                version: "v2".into(),
            },
            &key(1),
        )
        .await
        .unwrap();
    assert!(!deployed.changed);
    assert!(!deployed.request_ids.is_empty());
    assert_eq!(account.deployments("api").await, settled("web:1"));
    let observed = target.observe().await.unwrap();
    assert_eq!(
        (
            observed.stable.as_deref(),
            observed.candidate.as_deref(),
            observed.weight
        ),
        (Some("v1"), Some("v2"), 0)
    );

    // Canary weights cannot be held by a rolling update.
    let error = target
        .apply(&Action::SetWeight { percent: 10 }, &key(2))
        .await
        .unwrap_err();
    assert!(
        matches!(error, AdapterError::Unsupported { .. }),
        "{error:?}"
    );
    assert!(
        target
            .plan(&observed, &Action::SetWeight { percent: 50 })
            .is_err_and(|e| matches!(e, AdapterError::Unsupported { .. }))
    );

    // Steps of 100 ms: the rollout takes several, so the state read right
    // after the apply shows whether the apply waited for it.
    account.step_seconds(0.1);
    let planned = target
        .plan(&observed, &Action::SetWeight { percent: 100 })
        .unwrap();
    assert!(
        planned[0].description.starts_with("ecs:UpdateService"),
        "{planned:?}"
    );
    let switched = target
        .apply(&Action::SetWeight { percent: 100 }, &key(3))
        .await
        .unwrap();
    assert!(switched.changed);
    assert!(
        switched.request_ids.len() >= 3,
        "{:?}",
        switched.request_ids
    );
    // The apply returned when ECS had finished: new deployment COMPLETED,
    // the old one drained and gone.
    assert_eq!(account.deployments("api").await, settled("web:2"));
    let observed = target.observe().await.unwrap();
    assert_eq!(
        (
            observed.stable.as_deref(),
            observed.candidate,
            observed.weight
        ),
        (Some("v2"), None, 0)
    );
    for (n, action) in [Action::Promote, Action::Retire].into_iter().enumerate() {
        let again = target.apply(&action, &key(4 + n as u32)).await.unwrap();
        assert!(!again.changed, "{action}");
    }
    assert_eq!(account.deployments_started("api").await, 2);
}

#[tokio::test]
async fn a_failing_task_definition_trips_the_circuit_breaker_and_rollback_ends_on_stable() {
    let Some(url) = emulator(
        VAR,
        "a_failing_task_definition_trips_the_circuit_breaker_and_rollback_ends_on_stable",
    ) else {
        return;
    };
    let account = Emulator::new(&url).await;
    account.service("api", Some((true, true))).await;
    account.fail("web:3");
    let target = account.target("api").with_version("v3", "web:3", true);
    let stable = target.preflight().await.unwrap().stable_version;
    assert_eq!(stable, "v1");

    target
        .apply(
            &Action::Deploy {
                version: "v3".into(),
            },
            &key(1),
        )
        .await
        .unwrap();
    let error = target
        .apply(&Action::SetWeight { percent: 100 }, &key(2))
        .await
        .unwrap_err();
    assert!(matches!(error, AdapterError::Rejected { .. }), "{error:?}");
    assert!(
        !error.is_retryable(),
        "a FAILED rollout must make the engine roll back"
    );
    assert!(error.to_string().contains("FAILED"), "{error}");
    assert!(error.request_id().is_some(), "{error:?}");

    // The engine rolls back to the stable version recorded at preflight.
    // (Slower steps: the state read after the apply shows it waited.)
    account.step_seconds(0.1);
    let rollback = Action::Rollback { to: Some(stable) };
    target.apply(&rollback, &key(3)).await.unwrap();
    assert_eq!(account.deployments("api").await, settled("web:1"));
    let observed = target.observe().await.unwrap();
    assert_eq!(
        (
            observed.stable.as_deref(),
            observed.candidate,
            observed.weight
        ),
        (Some("v1"), None, 0)
    );
    let again = target.apply(&rollback, &key(4)).await.unwrap();
    assert!(!again.changed);
}

/// The poll after the switch comes only once the circuit breaker has
/// failed the rollout and ECS's own rollback has completed: the failed
/// deployment is gone from the service and the rollback's reason says
/// "completed". It is still a failure (the events say so), not another
/// writer, and the engine's retry must not start the failing rollout again.
#[tokio::test]
async fn a_circuit_breaker_rollback_finished_between_two_polls_is_a_failure_not_a_conflict() {
    let Some(url) = emulator(
        VAR,
        "a_circuit_breaker_rollback_finished_between_two_polls_is_a_failure_not_a_conflict",
    ) else {
        return;
    };
    let account = Emulator::new(&url).await;
    account.service("api", Some((true, true))).await;
    account.fail("web:3");
    let mut options = crate::support::fast();
    options.poll_interval = Duration::from_millis(300);
    let target = std::sync::Arc::new(
        account
            .target("api")
            .with_version("v3", "web:3", true)
            .with_options(options),
    );
    target
        .apply(
            &Action::Deploy {
                version: "v3".into(),
            },
            &key(1),
        )
        .await
        .unwrap();
    // The clock stops: the rollout stays where the switch leaves it until
    // the test moves it, all at once, between two of the adapter's polls
    // (or before its first: either way no poll sees the breaker at work).
    account.step_seconds(0.0);
    let switching = tokio::spawn({
        let target = target.clone();
        async move {
            target
                .apply(&Action::SetWeight { percent: 100 }, &key(2))
                .await
        }
    });
    let started = Instant::now();
    while account.deployments("api").await.len() < 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "no rollout");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Fail, trip the breaker, roll back, drain.
    account.control("/_emulator/advance", r#"{"steps": 10}"#);
    assert_eq!(account.deployments("api").await, settled("web:1"));
    let error = switching.await.unwrap().unwrap_err();
    assert!(matches!(error, AdapterError::Rejected { .. }), "{error:?}");
    assert!(!error.is_retryable(), "{error:?}");
    assert!(
        error.to_string().contains("FAILED") && error.to_string().contains("deployment failed"),
        "{error}"
    );
    assert_eq!(account.deployments_started("api").await, 3);

    // Applied again (a retry): still the failure, and no new rollout.
    let again = target
        .apply(&Action::SetWeight { percent: 100 }, &key(2))
        .await
        .unwrap_err();
    assert!(matches!(again, AdapterError::Rejected { .. }), "{again:?}");
    assert_eq!(account.deployments_started("api").await, 3);
    assert_eq!(account.deployments("api").await, settled("web:1"));
}

#[tokio::test]
async fn without_circuit_breaker_rollback_deployctl_rolls_back_itself() {
    let Some(url) = emulator(
        VAR,
        "without_circuit_breaker_rollback_deployctl_rolls_back_itself",
    ) else {
        return;
    };
    let account = Emulator::new(&url).await;
    account.service("api", Some((true, false))).await;
    account.fail("web:3");
    let target = account.target("api").with_version("v3", "web:3", true);
    let preflight = target.preflight().await.unwrap();
    assert!(preflight.rollback_ready, "{}", preflight.detail);
    target
        .apply(
            &Action::Deploy {
                version: "v3".into(),
            },
            &key(1),
        )
        .await
        .unwrap();
    let error = target.apply(&Action::Promote, &key(2)).await.unwrap_err();
    assert!(matches!(error, AdapterError::Rejected { .. }), "{error:?}");
    // ECS left the FAILED deployment in place; the rollback is ours.
    let rollback = target
        .apply(&Action::Rollback { to: None }, &key(3))
        .await
        .unwrap();
    assert!(rollback.changed);
    assert_eq!(account.deployments("api").await, settled("web:1"));
}

#[tokio::test]
async fn a_rollout_that_does_not_finish_in_time_times_out_and_resumes_without_a_second_rollout() {
    let Some(url) = emulator(
        VAR,
        "a_rollout_that_does_not_finish_in_time_times_out_and_resumes_without_a_second_rollout",
    ) else {
        return;
    };
    let account = Emulator::new(&url).await;
    account.service("api", Some((true, true))).await;
    // The emulator's clock stops: the rollout cannot progress.
    account.step_seconds(0.0);
    let mut options = crate::support::fast();
    options.rollout_timeout = Duration::from_millis(300);
    let target = account.target("api").with_options(options);
    let started = Instant::now();
    let error = target.apply(&Action::Promote, &key(1)).await.unwrap_err();
    assert!(matches!(error, AdapterError::Timeout { .. }), "{error:?}");
    assert!(error.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let deployments = account.deployments("api").await;
    assert_eq!(
        deployments[0],
        ("PRIMARY".into(), "web:2".into(), "IN_PROGRESS".into())
    );
    let observed = target.observe().await.unwrap();
    assert_eq!(
        (observed.stable.as_deref(), observed.candidate.as_deref()),
        (Some("v1"), Some("v2"))
    );

    // Time moves again; the engine's retry waits for the same rollout.
    account.step_seconds(0.02);
    let target = target.with_options(crate::support::fast());
    let applied = target.apply(&Action::Promote, &key(1)).await.unwrap();
    assert!(!applied.changed);
    assert_eq!(account.deployments("api").await, settled("web:2"));
    assert_eq!(account.deployments_started("api").await, 2);
}

#[tokio::test]
async fn preflight_wants_the_circuit_breaker_and_a_finished_rollout() {
    let Some(url) = emulator(
        VAR,
        "preflight_wants_the_circuit_breaker_and_a_finished_rollout",
    ) else {
        return;
    };
    let account = Emulator::new(&url).await;
    account.service("bare", None).await;
    let preflight = account.target("bare").preflight().await.unwrap();
    assert_eq!(preflight.stable_version, "v1");
    assert!(!preflight.rollback_ready);
    assert!(
        preflight.detail.contains("deploymentCircuitBreaker"),
        "{}",
        preflight.detail
    );

    let error = account.target("missing").observe().await.unwrap_err();
    assert!(matches!(error, AdapterError::NotFound { .. }), "{error:?}");
}
