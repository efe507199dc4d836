//! Failure paths: failed gates, errors, timeouts, kills, and what rolls
//! back in which order.

use std::time::Duration;

use deployctl_engine::state::{RunPhase, StagePhase};
use deployctl_sim::{ActionKind, ApiErrorKind, SimFaults};

use crate::support::{Harness, header};

/// api → cdn → edge, with a background gate on each.
fn chain(rollback: &str) -> String {
    header(&["api", "cdn", "edge"])
        + "stages:
  - {name: api, target: api, canary: {steps: [{setWeight: 20}, {pause: {duration: 30s}}, {setWeight: 100}], gates: [h]}}
  - {name: cdn, target: cdn, after: [api], canary: {steps: [{setWeight: 10}, {pause: {duration: 30s}}, {setWeight: 60}, {pause: {duration: 30s}}], gates: [h]}}
  - {name: edge, target: edge, after: [cdn], canary: {steps: [{setWeight: 50}, {pause: {duration: 30s}}], gates: [h]}}
gates:
  h: {sim: {}, interval: 5s, count: 2}
"
        + rollback
}

#[tokio::test(start_paused = true)]
async fn a_failed_gate_rolls_back_every_moved_stage_dependents_first() {
    let harness = Harness::new(
        &chain(""),
        &[("cdn", SimFaults::none().unhealthy_from_weight(60))],
    );
    let outcome = harness.run().await;
    assert_eq!(outcome.phase, RunPhase::RolledBack, "{}", outcome.message);
    assert!(
        outcome.message.contains("gate `h` failed"),
        "{}",
        outcome.message
    );
    for name in ["api", "cdn"] {
        assert_eq!(harness.stage(name).phase, StagePhase::RolledBack, "{name}");
        let (stable, candidate, weight) = harness.observed(name).await;
        assert_eq!(
            (stable.as_deref(), candidate, weight),
            (Some("1.0"), None, 0),
            "{name}"
        );
    }
    // edge never started: nothing to undo, and it says so.
    assert_eq!(harness.stage("edge").phase, StagePhase::Skipped);
    assert!(harness.sims["edge"].effects().unwrap().is_empty());
    // The CDN goes back before the API it depends on.
    let cdn_back = harness.event_position("callDone", "cdn");
    let events = harness.events();
    let api_rollback = events
        .iter()
        .rposition(|(kind, stage)| kind == "callIntent" && stage.as_deref() == Some("api"))
        .unwrap();
    assert!(cdn_back < api_rollback);
    assert!(
        api_rollback
            > events
                .iter()
                .rposition(|(kind, stage)| kind == "callIntent" && stage.as_deref() == Some("cdn"))
                .unwrap()
    );
    harness.journal.check_consistency(&harness.run_id).unwrap();
    harness.no_effect_applied_twice();
}

#[tokio::test(start_paused = true)]
async fn stage_scope_leaves_finished_stages_promoted() {
    let harness = Harness::new(
        &chain("rollback: {scope: stage}\n"),
        &[("cdn", SimFaults::none().unhealthy_from_weight(60))],
    );
    let outcome = harness.run().await;
    assert_eq!(outcome.phase, RunPhase::RolledBack);
    assert_eq!(harness.stage("api").phase, StagePhase::Succeeded);
    assert_eq!(harness.observed("api").await.0.as_deref(), Some("2.0"));
    assert_eq!(harness.stage("cdn").phase, StagePhase::RolledBack);
}

#[tokio::test(start_paused = true)]
async fn with_automatic_rollback_off_the_run_stops_for_a_human() {
    let harness = Harness::new(
        &chain("rollback: {automatic: false}\n"),
        &[("cdn", SimFaults::none().unhealthy_from_weight(60))],
    );
    let outcome = harness.run().await;
    assert_eq!(outcome.phase, RunPhase::Failed);
    assert!(
        outcome.message.contains("deployctl rollback"),
        "{}",
        outcome.message
    );
    // Traffic stays where it was: nobody moved it back.
    assert_eq!(harness.observed("cdn").await.2, 60);
}

#[tokio::test(start_paused = true)]
async fn transient_api_errors_are_retried_and_permanent_ones_roll_back() {
    let transient = Harness::new(
        &chain(""),
        &[(
            "api",
            SimFaults::none().api_errors(Some(ActionKind::SetWeight), ApiErrorKind::Throttled, 2),
        )],
    );
    assert_eq!(transient.run().await.phase, RunPhase::Succeeded);
    // Both throttled attempts are on record, though the call succeeded.
    let retried: Vec<_> = transient
        .events()
        .into_iter()
        .filter(|(kind, _)| kind == "callRetried")
        .collect();
    assert_eq!(retried.len(), 2, "{retried:?}");

    let permanent = Harness::new(
        &chain(""),
        &[(
            "api",
            SimFaults::none().api_errors(Some(ActionKind::SetWeight), ApiErrorKind::Rejected, 1),
        )],
    );
    let outcome = permanent.run().await;
    assert_eq!(outcome.phase, RunPhase::RolledBack);
    assert!(outcome.message.contains("rejected"), "{}", outcome.message);
    assert_eq!(permanent.observed("api").await.1, None);
    let failed: Vec<_> = permanent
        .journal
        .calls(&permanent.run_id)
        .unwrap()
        .into_iter()
        .filter(|call| call.state == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        permanent
            .events()
            .iter()
            .all(|(kind, _)| kind != "callRetried"),
        "a permanent error is not retried"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stage_that_outlives_its_timeout_rolls_back() {
    let yaml = header(&["api"])
        + "stages:
  - {name: api, target: api, timeout: 1m, canary: {steps: [{setWeight: 20}, {pause: {duration: 5m}}]}}
";
    let harness = Harness::new(&yaml, &[]);
    let started = tokio::time::Instant::now();
    let outcome = harness.run().await;
    assert_eq!(outcome.phase, RunPhase::RolledBack);
    assert!(outcome.message.contains("timed out"), "{}", outcome.message);
    assert!(started.elapsed() < Duration::from_secs(120));
    assert_eq!(harness.observed("api").await, (Some("1.0".into()), None, 0));
}

#[tokio::test(start_paused = true)]
async fn a_kill_stops_the_run_and_rolls_back() {
    let yaml = header(&["api"])
        + "stages:
  - {name: api, target: api, canary: {steps: [{setWeight: 20}, {pause: {duration: 1h}}]}}
";
    let harness = Harness::new(&yaml, &[]);
    let journal = harness.journal.clone();
    let run_id = harness.run_id.clone();
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        journal.request_kill(&run_id).unwrap();
    });
    let started = tokio::time::Instant::now();
    let outcome = harness.run().await;
    killer.await.unwrap();
    assert_eq!(outcome.phase, RunPhase::Killed);
    assert!(
        started.elapsed() < Duration::from_secs(32),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(harness.observed("api").await, (Some("1.0".into()), None, 0));
}

#[tokio::test(start_paused = true)]
async fn a_platform_that_refuses_deploys_is_rolled_back_and_the_rest_never_starts() {
    let yaml = header(&["api", "web"])
        + "stages:
  - {name: api, target: api, canary: {steps: [{setWeight: 100}]}}
  - {name: web, target: web, after: [api], canary: {steps: [{setWeight: 100}]}}
";
    let harness = Harness::new(
        &yaml,
        &[(
            "api",
            SimFaults::none().api_errors(Some(ActionKind::Deploy), ApiErrorKind::Unavailable, 100),
        )],
    );
    let outcome = harness.run().await;
    // Six attempts (the retry policy), then the stage fails; the deploy
    // may or may not have happened, so the stage is rolled back anyway.
    assert_eq!(outcome.phase, RunPhase::RolledBack, "{}", outcome.message);
    assert!(
        outcome.message.contains("service unavailable"),
        "{}",
        outcome.message
    );
    assert_eq!(harness.stage("api").phase, StagePhase::RolledBack);
    assert_eq!(harness.stage("web").phase, StagePhase::Skipped);
    assert!(harness.sims["web"].effects().unwrap().is_empty());
    assert_eq!(harness.observed("api").await, (Some("1.0".into()), None, 0));
}

#[tokio::test(start_paused = true)]
async fn no_data_never_promotes() {
    let yaml = header(&["api"])
        + "stages:
  - {name: api, target: api, canary: {steps: [{setWeight: 50}, {analysis: {gates: [fleet-health]}}]}}
gates:
  fleet-health: {fleet: {minSuccessRate: 95}, interval: 1s, count: 3, inconclusiveLimit: 2}
";
    // A fleet gate on a service that reports no device results: no data.
    let harness = Harness::new(&yaml, &[]);
    let outcome = harness.run().await;
    assert_eq!(outcome.phase, RunPhase::RolledBack, "{}", outcome.message);
    assert_eq!(harness.observed("api").await.0.as_deref(), Some("1.0"));
}

/// A target whose preflight read is throttled a few times before it
/// answers, as AWS does under load; everything else is the simulator's.
struct ThrottledPreflight {
    inner: std::sync::Arc<deployctl_sim::SimTarget>,
    throttles_left: std::sync::atomic::AtomicU32,
    error: deployctl_adapter::AdapterError,
}

impl deployctl_adapter::Target for ThrottledPreflight {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn kind(&self) -> deployctl_plan::model::TargetKind {
        self.inner.kind()
    }

    fn observe(
        &self,
    ) -> deployctl_adapter::BoxFuture<
        '_,
        Result<deployctl_adapter::Observed, deployctl_adapter::AdapterError>,
    > {
        self.inner.observe()
    }

    fn plan(
        &self,
        observed: &deployctl_adapter::Observed,
        action: &deployctl_adapter::Action,
    ) -> Result<Vec<deployctl_adapter::PlannedCall>, deployctl_adapter::AdapterError> {
        self.inner.plan(observed, action)
    }

    fn apply<'a>(
        &'a self,
        action: &'a deployctl_adapter::Action,
        key: &'a deployctl_adapter::IdempotencyKey,
    ) -> deployctl_adapter::BoxFuture<
        'a,
        Result<deployctl_adapter::Applied, deployctl_adapter::AdapterError>,
    > {
        self.inner.apply(action, key)
    }

    fn preflight(
        &self,
    ) -> deployctl_adapter::BoxFuture<
        '_,
        Result<deployctl_adapter::Preflight, deployctl_adapter::AdapterError>,
    > {
        use std::sync::atomic::Ordering;
        if self
            .throttles_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            let error = self.error.clone();
            return Box::pin(async move { Err(error) });
        }
        self.inner.preflight()
    }

    fn probe(
        &self,
        check: &deployctl_plan::model::GateCheck,
    ) -> Option<Box<dyn deployctl_adapter::HealthProbe>> {
        self.inner.probe(check)
    }

    fn moves(&self) -> deployctl_adapter::Moves<'_> {
        self.inner.moves()
    }
}

fn throttled(
    inner: std::sync::Arc<deployctl_sim::SimTarget>,
    times: u32,
    error: deployctl_adapter::AdapterError,
) -> std::sync::Arc<dyn deployctl_adapter::Target> {
    std::sync::Arc::new(ThrottledPreflight {
        inner,
        throttles_left: std::sync::atomic::AtomicU32::new(times),
        error,
    })
}

#[tokio::test(start_paused = true)]
async fn a_throttled_preflight_is_retried_and_a_refused_one_stops_the_run_untouched() {
    let throttle = deployctl_adapter::AdapterError::Throttled {
        message: "Rate exceeded".into(),
        request_id: None,
        retry_after: None,
    };
    let harness = Harness::new(&chain(""), &[]);
    let mut context = harness.context();
    context.targets.insert(
        "api".into(),
        throttled(harness.sims["api"].clone(), 2, throttle),
    );
    let outcome = harness
        .execute_with(&harness.engine(), &context)
        .await
        .unwrap();
    assert_eq!(outcome.phase, RunPhase::Succeeded, "{}", outcome.message);

    let refused = deployctl_adapter::AdapterError::Rejected {
        message: "AccessDenied".into(),
        request_id: None,
    };
    let harness = Harness::new(&chain(""), &[]);
    let mut context = harness.context();
    context.targets.insert(
        "api".into(),
        throttled(harness.sims["api"].clone(), 1, refused),
    );
    // A refused preflight is a refusal, not a run (issue 9): nothing moved
    // and nothing is left in the history.
    let refusal = harness
        .execute_with(&harness.engine(), &context)
        .await
        .unwrap_err();
    let message = refusal.to_string();
    assert!(
        matches!(
            refusal,
            deployctl_engine::executor::EngineError::Refused(
                deployctl_engine::start::Refusal::Preflight { .. }
            )
        ),
        "{message}"
    );
    assert!(message.contains("preflight"), "{message}");
    assert!(message.contains("AccessDenied"), "{message}");
    assert!(harness.journal.runs(None, 10).unwrap().is_empty());
    assert_eq!(harness.observed("api").await.0.as_deref(), Some("1.0"));
}
