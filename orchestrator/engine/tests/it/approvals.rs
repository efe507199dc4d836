//! Approval steps pause a stage until enough approvers are recorded.
//! (Who may approve, with which MFA code, is checked before the journal
//! records an approval; here the journal is fed directly.)

use std::time::Duration;

use deployctl_engine::state::{RunPhase, StagePhase};

use crate::support::{Harness, header};

fn plan(on_timeout: &str) -> String {
    header(&["api"])
        + &format!(
            "stages:
  - {{name: api, target: api, canary: {{steps: [{{setWeight: 10}}, {{approval: go}}, {{setWeight: 100}}]}}}}
approvals:
  go: {{role: release-approver, required: 2, timeout: 1h, onTimeout: {on_timeout}}}
"
        )
}

#[tokio::test(start_paused = true)]
async fn an_approval_step_waits_for_enough_distinct_approvers() {
    let harness = Harness::new(&plan("rollback"), &[]);
    let journal = harness.journal.clone();
    let run_id = harness.run_id.clone();
    let approvers = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        journal.record_approval(&run_id, "go", "carol").unwrap();
        // The same approver twice still counts once.
        journal.record_approval(&run_id, "go", "carol").unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            journal.stages(&run_id).unwrap()[0].phase,
            StagePhase::Paused
        );
        journal.record_approval(&run_id, "go", "dave").unwrap();
    });
    let started = tokio::time::Instant::now();
    let outcome = harness.run().await;
    approvers.await.unwrap();
    assert_eq!(outcome.phase, RunPhase::Succeeded, "{}", outcome.message);
    assert!(started.elapsed() >= Duration::from_secs(120));
    let kinds: Vec<String> = harness.events().into_iter().map(|(kind, _)| kind).collect();
    assert!(kinds.contains(&"approvalRequested".to_string()));
}

#[tokio::test(start_paused = true)]
async fn an_approval_that_never_comes_rolls_back_after_its_timeout() {
    let harness = Harness::new(&plan("rollback"), &[]);
    let started = tokio::time::Instant::now();
    let outcome = harness.run().await;
    assert_eq!(outcome.phase, RunPhase::RolledBack);
    assert!(
        outcome.message.contains("approval `go`"),
        "{}",
        outcome.message
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(3600) && waited < Duration::from_secs(3700),
        "{waited:?}"
    );
    assert_eq!(harness.observed("api").await, (Some("1.0".into()), None, 0));
}
