//! Happy paths: promotion, ordering, concurrency.

use std::time::Duration;

use deployctl_engine::state::{RunPhase, StagePhase};

use crate::support::{Harness, header};

fn diamond() -> String {
    header(&["a", "b", "c", "d"])
        + "stages:
  - {name: a, target: a, canary: {steps: [{setWeight: 25}, {pause: {duration: 10s}}, {setWeight: 100}], gates: [h]}}
  - {name: b, target: b, after: [a], canary: {steps: [{setWeight: 50}, {pause: {duration: 60s}}]}}
  - {name: c, target: c, after: [a], blueGreen: {prePromotionGates: [h], scaleDownDelay: 60s}}
  - {name: d, target: d, after: [b, c], canary: {steps: [{setWeight: 10}, {analysis: {gates: [h]}}]}}
gates:
  h: {sim: {}, interval: 1s, count: 3}
"
}

#[tokio::test(start_paused = true)]
async fn a_diamond_plan_promotes_every_stage_in_dag_order() {
    let harness = Harness::new(&diamond(), &[]);
    let started = tokio::time::Instant::now();
    let outcome = harness.run().await;
    assert_eq!(outcome.phase, RunPhase::Succeeded, "{}", outcome.message);
    for name in ["a", "b", "c", "d"] {
        assert_eq!(harness.stage(name).phase, StagePhase::Succeeded);
        let (stable, candidate, _) = harness.observed(name).await;
        assert_eq!(
            (stable.as_deref(), candidate),
            (Some("2.0"), None),
            "{name}"
        );
    }
    // b and c wait for a; d waits for both.
    assert!(
        harness.event_position("stageSucceeded", "a") < harness.event_position("stageStarted", "b")
    );
    assert!(
        harness.event_position("stageSucceeded", "a") < harness.event_position("stageStarted", "c")
    );
    assert!(
        harness.event_position("stageSucceeded", "b") < harness.event_position("stageStarted", "d")
    );
    assert!(
        harness.event_position("stageSucceeded", "c") < harness.event_position("stageStarted", "d")
    );
    // b (60 s pause) and c (gates + 60 s scale-down) ran side by side: the
    // whole plan takes about a's 10 s + 60-odd s + d's gate, not their sum.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(70), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(100), "{elapsed:?}");
    assert_eq!(
        harness.journal.run(&harness.run_id).unwrap().phase,
        RunPhase::Succeeded
    );
    harness.journal.check_consistency(&harness.run_id).unwrap();
    harness.no_effect_applied_twice();
}

#[tokio::test(start_paused = true)]
async fn every_call_is_journaled_as_intent_then_outcome() {
    let harness = Harness::new(&diamond(), &[]);
    harness.run().await;
    let events = harness.events();
    let mut open = std::collections::BTreeSet::new();
    for (kind, stage) in &events {
        match kind.as_str() {
            "callIntent" => assert!(
                open.insert(stage.clone()),
                "two calls in flight on {stage:?}"
            ),
            "callDone" | "callFailed" => {
                assert!(open.remove(stage), "outcome without intent on {stage:?}")
            }
            _ => {}
        }
    }
    assert!(open.is_empty(), "calls without outcome: {open:?}");
    assert!(
        harness
            .journal
            .calls(&harness.run_id)
            .unwrap()
            .iter()
            .all(|call| call.state == "done")
    );
}

#[tokio::test(start_paused = true)]
async fn preflight_records_the_stable_version_before_anything_moves() {
    let harness = Harness::new(&diamond(), &[]);
    harness.run().await;
    for name in ["a", "b", "c", "d"] {
        assert_eq!(harness.stage(name).stable_version.as_deref(), Some("1.0"));
    }
    let first_call = harness
        .events()
        .iter()
        .position(|(kind, _)| kind == "callIntent")
        .unwrap();
    let last_preflight = harness
        .events()
        .iter()
        .rposition(|(kind, _)| kind == "preflight")
        .unwrap();
    assert!(last_preflight < first_call);
}

#[tokio::test(start_paused = true)]
async fn locks_are_released_when_the_run_ends() {
    let harness = Harness::new(&diamond(), &[]);
    harness.run().await;
    // Another run may now take the same targets.
    let mut next = harness.context();
    next.run_id = deployctl_engine::run::new_run_id() + "-next";
    harness
        .engine()
        .start(&next, &harness.request())
        .await
        .expect("targets are free again");
}
