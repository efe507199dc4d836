//! A run whose process died is continued from its journal by a new engine.
//! (Killing a real process is the CLI's crash test; here the engine's
//! future is dropped at chosen instants, which is what SIGKILL does to it.)

use std::time::Duration;

use deployctl_engine::state::RunPhase;
use deployctl_sim::SimFaults;

use crate::support::{Harness, header};

fn two_stages() -> String {
    header(&["api", "web"])
        + "stages:
  - {name: api, target: api, canary: {steps: [{setWeight: 20}, {pause: {duration: 20s}}, {setWeight: 60}, {pause: {duration: 20s}}], gates: [h]}}
  - {name: web, target: web, after: [api], blueGreen: {prePromotionGates: [h], scaleDownDelay: 20s}}
gates:
  h: {sim: {}, interval: 2s, count: 2}
"
}

#[tokio::test(start_paused = true)]
async fn a_run_interrupted_at_any_instant_finishes_when_resumed() {
    for seconds in [0u64, 1, 5, 21, 30, 45, 50, 61, 70, 90] {
        let harness = Harness::new(&two_stages(), &[]);
        let first = harness.engine();
        let context = harness.context();
        let interrupted = tokio::time::timeout(
            Duration::from_secs(seconds),
            harness.execute_with(&first, &context),
        )
        .await;
        drop(first);
        if let Ok(outcome) = interrupted {
            assert_eq!(outcome.unwrap().phase, RunPhase::Succeeded);
            continue;
        }
        let outcome = harness
            .execute_with(&harness.engine(), &harness.context())
            .await
            .unwrap();
        assert_eq!(
            outcome.phase,
            RunPhase::Succeeded,
            "interrupted at {seconds}s: {}",
            outcome.message
        );
        for name in ["api", "web"] {
            let (stable, candidate, _) = harness.observed(name).await;
            assert_eq!(
                (stable.as_deref(), candidate),
                (Some("2.0"), None),
                "{name} at {seconds}s"
            );
        }
        harness.journal.check_consistency(&harness.run_id).unwrap();
        harness.no_effect_applied_twice();
    }
}

#[tokio::test(start_paused = true)]
async fn a_run_interrupted_during_rollback_finishes_the_rollback_when_resumed() {
    let faults = [("web", SimFaults::none().unhealthy_from_weight(0))];
    // Slow calls, so that the rollback takes long enough to be caught in
    // the middle.
    let slow = two_stages().replace(
        "stableVersion: \"1.0\"",
        "stableVersion: \"1.0\", latencyMs: 2000",
    );
    let harness = Harness::new(&slow, &faults);
    let first = harness.engine();
    let context = harness.context();
    // Run until the rollback has started, then "crash".
    let journal = harness.journal.clone();
    let run_id = harness.run_id.clone();
    let crash_when_rolling_back = async {
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            // The run exists once its preflight is done.
            if journal
                .run(&run_id)
                .is_ok_and(|run| run.phase == RunPhase::RollingBack)
            {
                return;
            }
        }
    };
    tokio::select! {
        _ = harness.execute_with(&first, &context) => panic!("the run should still be rolling back"),
        _ = crash_when_rolling_back => {}
    }
    drop(first);
    let outcome = harness
        .execute_with(&harness.engine(), &harness.context())
        .await
        .unwrap();
    assert_eq!(outcome.phase, RunPhase::RolledBack, "{}", outcome.message);
    for name in ["api", "web"] {
        assert_eq!(
            harness.observed(name).await,
            (Some("1.0".into()), None, 0),
            "{name}"
        );
    }
    harness.no_effect_applied_twice();
}

#[tokio::test(start_paused = true)]
async fn the_runbook_rollback_is_safe_to_run_twice() {
    let harness = Harness::new(&two_stages(), &[]);
    assert_eq!(harness.run().await.phase, RunPhase::Succeeded);
    let engine = harness.engine();
    let first = engine
        .rollback(&harness.context(), "bad release")
        .await
        .unwrap();
    assert_eq!(first.phase, RunPhase::RolledBack);
    let effects_after_first: usize = harness
        .sims
        .values()
        .map(|s| s.effects().unwrap().len())
        .sum();
    let second = engine.rollback(&harness.context(), "again").await.unwrap();
    assert_eq!(second.phase, RunPhase::RolledBack);
    let effects_after_second: usize = harness
        .sims
        .values()
        .map(|s| s.effects().unwrap().len())
        .sum();
    assert_eq!(
        effects_after_first, effects_after_second,
        "the second rollback changed something"
    );
    for name in ["api", "web"] {
        assert_eq!(harness.observed(name).await, (Some("1.0".into()), None, 0));
    }
}
