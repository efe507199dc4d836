//! Starting a run: a refusal (a held lock, a failed preflight, a strategy
//! the target instance cannot take) moves nothing and records no run.

use std::sync::Arc;

use deployctl_adapter::{
    Action, AdapterError, Applied, BoxFuture, Capabilities, HealthProbe, IdempotencyKey, Observed,
    PlannedCall, Preflight, Target,
};
use deployctl_engine::executor::EngineError;
use deployctl_engine::start::Refusal;
use deployctl_engine::state::RunPhase;
use deployctl_plan::model::{GateCheck, TargetKind};
use deployctl_sim::SimTarget;

use crate::support::{Harness, header};

fn canary() -> String {
    header(&["api"])
        + "stages:
  - {name: api, target: api, canary: {steps: [{setWeight: 10}, {pause: {duration: 1m}}, {setWeight: 50}]}}
"
}

#[tokio::test(start_paused = true)]
async fn a_second_run_on_a_locked_target_is_refused_and_leaves_no_run() {
    let first = Harness::new(&canary(), &[]);
    first
        .engine()
        .start(&first.context(), &first.request())
        .await
        .expect("the first run starts");

    // Another run of the same plan against the same target (the same
    // simulator instance: the same platform identity), in the same journal.
    let mut second = first.context();
    second.run_id = deployctl_engine::run::new_run_id() + "-second";
    let refusal = first
        .engine()
        .start(&second, &first.request())
        .await
        .unwrap_err();
    let message = refusal.to_string();
    let EngineError::Refused(Refusal::Locked { run, target, .. }) = refusal else {
        panic!("not a lock refusal: {message}");
    };
    assert_eq!(run, first.run_id);
    assert_eq!(target, first.sims["api"].identity());
    assert!(message.contains("Nothing was changed"), "{message}");
    let runs: Vec<String> = first
        .journal
        .runs(None, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(runs, std::slice::from_ref(&first.run_id));
    assert!(first.sims["api"].effects().unwrap().is_empty());

    // The first run still goes through, and frees the target.
    let outcome = first.run().await;
    assert_eq!(outcome.phase, RunPhase::Succeeded, "{}", outcome.message);
    first
        .engine()
        .start(&second, &first.request())
        .await
        .expect("the target is free again");
}

#[tokio::test(start_paused = true)]
async fn locks_and_stages_carry_the_identity_preflight_resolved() {
    let harness = Harness::new(&canary(), &[]);
    let outcome = harness.run().await;
    assert_eq!(outcome.phase, RunPhase::Succeeded, "{}", outcome.message);
    assert_eq!(
        harness.stage("api").target_key,
        harness.sims["api"].identity()
    );
    let preflight = harness
        .journal
        .events(&harness.run_id)
        .unwrap()
        .into_iter()
        .find_map(|record| match record.event {
            deployctl_engine::event::Event::Preflight { identity, .. } => identity,
            _ => None,
        });
    assert_eq!(preflight, Some(harness.sims["api"].identity()));
}

/// A simulator that reports what a switch-only platform would (an ECS
/// service on the rolling controller).
struct SwitchOnly(Arc<SimTarget>);

impl Target for SwitchOnly {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn kind(&self) -> TargetKind {
        self.0.kind()
    }

    fn observe(&self) -> BoxFuture<'_, Result<Observed, AdapterError>> {
        self.0.observe()
    }

    fn plan(&self, observed: &Observed, action: &Action) -> Result<Vec<PlannedCall>, AdapterError> {
        self.0.plan(observed, action)
    }

    fn apply<'a>(
        &'a self,
        action: &'a Action,
        key: &'a IdempotencyKey,
    ) -> BoxFuture<'a, Result<Applied, AdapterError>> {
        self.0.apply(action, key)
    }

    fn preflight(&self) -> BoxFuture<'_, Result<Preflight, AdapterError>> {
        Box::pin(async move {
            let mut preflight = self.0.preflight().await?;
            preflight.capabilities =
                Capabilities::switch_only("this service moves all traffic at once");
            Ok(preflight)
        })
    }

    fn probe(&self, check: &GateCheck) -> Option<Box<dyn HealthProbe>> {
        self.0.probe(check)
    }

    fn moves(&self) -> deployctl_adapter::Moves<'_> {
        self.0.moves()
    }
}

#[tokio::test(start_paused = true)]
async fn a_canary_on_a_switch_only_instance_is_refused_before_anything_moves() {
    let harness = Harness::new(&canary(), &[]);
    let mut context = harness.context();
    context.targets.insert(
        "api".into(),
        Arc::new(SwitchOnly(harness.sims["api"].clone())),
    );
    let refusal = harness
        .engine()
        .start(&context, &harness.request())
        .await
        .unwrap_err();
    let message = refusal.to_string();
    assert!(
        matches!(refusal, EngineError::Refused(Refusal::Unsupported { .. })),
        "{message}"
    );
    assert!(
        message.contains("cannot take a 10% canary weight"),
        "{message}"
    );
    assert!(message.contains("moves all traffic at once"), "{message}");
    assert!(harness.journal.runs(None, 10).unwrap().is_empty());
    assert!(harness.sims["api"].effects().unwrap().is_empty());
}
