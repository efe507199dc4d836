//! Injected faults: API errors, latency, hangs and health faults.

use std::time::Duration;

use deployctl_adapter::{Action, AdapterError, ErrorClass, Measurement, Target};
use deployctl_plan::model::TargetKind;
use deployctl_sim::{ActionKind, ApiErrorKind, SimFaults, SimTarget};
use tokio::time::{Instant, timeout};

use crate::support::{apply, config, deploy, sim_gate, weight};

fn target(faults: SimFaults) -> SimTarget {
    SimTarget::in_memory(config(TargetKind::Sim).with_faults(faults))
}

#[tokio::test]
async fn api_errors_fail_the_next_applies_of_one_kind_then_stop() {
    let t = target(SimFaults::none().api_errors(
        Some(ActionKind::SetWeight),
        ApiErrorKind::Throttled,
        2,
    ));
    assert!(
        apply(&t, &deploy("2.0")).await.unwrap().changed,
        "other kinds are not affected"
    );
    for expected in ["sim-t-2", "sim-t-3"] {
        match apply(&t, &weight(10)).await {
            Err(AdapterError::Throttled { request_id, .. }) => {
                assert_eq!(request_id.as_deref(), Some(expected));
            }
            other => panic!("expected throttling, got {other:?}"),
        }
        assert_eq!(
            t.observe().await.unwrap().weight,
            0,
            "a failed call changes nothing"
        );
    }
    let applied = apply(&t, &weight(10)).await.unwrap();
    assert_eq!(applied.request_ids, ["sim-t-4"]);
    assert_eq!(
        t.effects().unwrap().len(),
        2,
        "failed calls are not effects"
    );
}

#[tokio::test]
async fn each_api_error_kind_has_its_retry_class() {
    for (kind, class) in [
        (ApiErrorKind::Throttled, ErrorClass::Transient),
        (ApiErrorKind::Unavailable, ErrorClass::Transient),
        (ApiErrorKind::Timeout, ErrorClass::Transient),
        (ApiErrorKind::Rejected, ErrorClass::Permanent),
    ] {
        let t = target(SimFaults::none().api_errors(None, kind, 1));
        let error = apply(&t, &Action::Rollback { to: None }).await.unwrap_err();
        assert_eq!(error.class(), class, "{kind:?}: {error}");
        assert_eq!(error.request_id().is_some(), kind != ApiErrorKind::Timeout);
    }
}

#[tokio::test(start_paused = true)]
async fn latency_applies_to_every_call() {
    let t = SimTarget::in_memory(
        config(TargetKind::Sim)
            .with_latency(Duration::from_millis(20))
            .with_faults(SimFaults::none().latency(Duration::from_millis(30))),
    );
    let probe = t.probe(&sim_gate(99.0)).unwrap();
    let start = Instant::now();
    t.observe().await.unwrap();
    apply(&t, &deploy("2.0")).await.unwrap();
    t.preflight().await.unwrap();
    probe.measure().await;
    assert_eq!(start.elapsed(), Duration::from_millis(200));
}

#[tokio::test(start_paused = true)]
async fn a_hang_before_the_effect_never_answers_and_changes_nothing() {
    let t = target(SimFaults::none().hang(Some(ActionKind::Promote), 1));
    apply(&t, &deploy("2.0")).await.unwrap();
    let hung = timeout(Duration::from_secs(60), apply(&t, &Action::Promote)).await;
    assert!(
        hung.is_err(),
        "the hang should outlast the timeout: {hung:?}"
    );
    assert_eq!(t.observe().await.unwrap().candidate.as_deref(), Some("2.0"));
    let retried = apply(&t, &Action::Promote).await.unwrap();
    assert!(retried.changed, "only the next apply hangs");
}

#[tokio::test(start_paused = true)]
async fn a_hang_after_the_effect_loses_only_the_answer() {
    let t = target(SimFaults::none().hang_after_effect(Some(ActionKind::Promote), 1));
    apply(&t, &deploy("2.0")).await.unwrap();
    assert!(
        timeout(Duration::from_secs(60), apply(&t, &Action::Promote))
            .await
            .is_err()
    );
    let observed = t.observe().await.unwrap();
    assert_eq!(
        (observed.stable.as_deref(), observed.candidate),
        (Some("2.0"), None)
    );
    // The engine's "maybe done" replay finds the effect present.
    assert!(!apply(&t, &Action::Promote).await.unwrap().changed);
    let promotes = t
        .effects()
        .unwrap()
        .actions()
        .filter(|a| **a == Action::Promote)
        .count();
    assert_eq!(promotes, 1);
}

#[tokio::test]
async fn a_candidate_is_unhealthy_from_a_weight() {
    let t = target(SimFaults::none().unhealthy_from_weight(20));
    let probe = t.probe(&sim_gate(99.0)).unwrap();
    apply(&t, &deploy("2.0")).await.unwrap();
    apply(&t, &weight(10)).await.unwrap();
    assert_eq!(probe.measure().await.value(), Some(100.0));
    apply(&t, &weight(20)).await.unwrap();
    let measured = probe.measure().await;
    assert!(
        matches!(
            measured,
            Measurement::Fail {
                value: Some(50.0),
                ..
            }
        ),
        "{measured:?}"
    );
    apply(&t, &Action::Rollback { to: None }).await.unwrap();
    assert!(matches!(probe.measure().await, Measurement::Pass { .. }));
}

#[tokio::test]
async fn weight_zero_makes_any_deployed_candidate_unhealthy() {
    let t = target(
        SimFaults::none()
            .unhealthy_from_weight(0)
            .with_unhealthy_success_rate(80.0),
    );
    let probe = t.probe(&sim_gate(99.0)).unwrap();
    assert!(matches!(probe.measure().await, Measurement::Pass { .. }));
    apply(&t, &deploy("2.0")).await.unwrap();
    assert!(matches!(
        probe.measure().await,
        Measurement::Fail {
            value: Some(80.0),
            ..
        }
    ));
    // The threshold is the gate's, not the fault's.
    let lenient = t.probe(&sim_gate(75.0)).unwrap();
    assert!(matches!(lenient.measure().await, Measurement::Pass { .. }));
}

#[tokio::test]
async fn a_promoted_version_can_turn_unhealthy_until_rolled_back() {
    let t = target(SimFaults::none().unhealthy_after_promotion());
    let probe = t.probe(&sim_gate(99.0)).unwrap();
    apply(&t, &deploy("2.0")).await.unwrap();
    apply(&t, &weight(100)).await.unwrap();
    assert!(matches!(probe.measure().await, Measurement::Pass { .. }));
    apply(&t, &Action::Promote).await.unwrap();
    assert!(matches!(probe.measure().await, Measurement::Fail { .. }));
    apply(
        &t,
        &Action::Rollback {
            to: Some("1.0".into()),
        },
    )
    .await
    .unwrap();
    assert!(matches!(probe.measure().await, Measurement::Pass { .. }));
}

#[tokio::test]
async fn flapping_health_fails_every_other_measurement() {
    let t = target(SimFaults::none().flapping_health());
    let probe = t.probe(&sim_gate(99.0)).unwrap();
    let mut verdicts = Vec::new();
    for _ in 0..4 {
        verdicts.push(matches!(probe.measure().await, Measurement::Pass { .. }));
    }
    assert_eq!(verdicts, [true, false, true, false]);
}

#[tokio::test(start_paused = true)]
async fn an_apply_dropped_during_its_latency_changes_nothing() {
    use std::task::{Context, Waker};

    let t = SimTarget::in_memory(config(TargetKind::Sim).with_latency(Duration::from_millis(50)));
    let action = deploy("2.0");
    let key = crate::support::key("k");
    {
        let mut apply = t.apply(&action, &key);
        let polled = apply.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert!(polled.is_pending(), "the latency is a pending point");
    }
    assert_eq!(t.observe().await.unwrap().candidate, None);
    assert!(t.effects().unwrap().is_empty());
}
