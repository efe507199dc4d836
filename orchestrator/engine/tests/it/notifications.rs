//! Run events reach the channels that asked for them, and their delivery
//! is journaled. The channel here is a recording double of the trait; the
//! webhook itself is tested against a real HTTP server in its crate.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use deployctl_adapter::{AdapterError, BoxFuture, Notification, Notifier};
use deployctl_engine::notify::Subscription;
use deployctl_engine::state::RunPhase;
use deployctl_plan::model::RunEvent;
use deployctl_sim::SimFaults;

use crate::support::{Harness, header};

#[derive(Default)]
struct Recorder(Mutex<Vec<(RunEvent, Option<String>)>>);

impl Notifier for Recorder {
    fn notify<'a>(
        &'a self,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), AdapterError>> {
        self.0
            .lock()
            .unwrap()
            .push((notification.event, notification.stage.clone()));
        Box::pin(async { Ok(()) })
    }

    fn describe(&self) -> String {
        "recorder".into()
    }
}

fn plan() -> String {
    header(&["api"])
        + "stages:
  - {name: api, target: api, canary: {steps: [{setWeight: 50}, {pause: {duration: 10s}}], gates: [h]}}
gates:
  h: {sim: {}, interval: 1s, count: 2}
"
}

async fn run_with(faults: &[(&str, SimFaults)], events: &[RunEvent]) -> (Harness, Vec<RunEvent>) {
    let harness = Harness::new(&plan(), faults);
    let recorder = Arc::new(Recorder::default());
    let mut context = harness.context();
    context.notifications = vec![Subscription {
        events: events.iter().copied().collect::<BTreeSet<_>>(),
        notifier: recorder.clone(),
    }];
    harness
        .execute_with(&harness.engine(), &context)
        .await
        .unwrap();
    let seen = recorder
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(event, _)| *event)
        .collect();
    (harness, seen)
}

#[tokio::test(start_paused = true)]
async fn a_rollback_announces_the_failed_gate_and_the_rollback() {
    let all = [
        RunEvent::Started,
        RunEvent::GateFailed,
        RunEvent::RolledBack,
        RunEvent::Succeeded,
    ];
    let (harness, seen) = run_with(
        &[("api", SimFaults::none().unhealthy_from_weight(50))],
        &all,
    )
    .await;
    assert_eq!(
        harness.journal.run(&harness.run_id).unwrap().phase,
        RunPhase::RolledBack
    );
    assert_eq!(
        seen,
        [
            RunEvent::Started,
            RunEvent::GateFailed,
            RunEvent::RolledBack
        ]
    );
    let notified = harness
        .events()
        .iter()
        .filter(|(kind, _)| kind == "notified")
        .count();
    assert_eq!(notified, 3, "every delivery is journaled");
}

#[tokio::test(start_paused = true)]
async fn channels_only_get_the_events_they_asked_for() {
    let (_, seen) = run_with(&[], &[RunEvent::Succeeded]).await;
    assert_eq!(seen, [RunEvent::Succeeded]);
}
