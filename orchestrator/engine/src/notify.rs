//! Routing run events to the plan's notification channels (S5, O8).
//!
//! Deliveries run beside the release, never in its way: each is bounded
//! in time, its result is journaled, and a run waits for outstanding ones
//! (briefly) only when it ends, so "rolled back" reaches people even when
//! the process exits right after.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deployctl_adapter::{Notification, Notifier};
use deployctl_plan::model::RunEvent;
use tokio::task::JoinSet;

use crate::clock::{now_ms, rfc3339};
use crate::event::Event;
use crate::journal::Journal;

/// One channel and the events it wants.
#[derive(Clone)]
pub struct Subscription {
    pub events: BTreeSet<RunEvent>,
    pub notifier: Arc<dyn Notifier>,
}

/// How long one delivery may take before it counts as failed.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a finishing run waits for deliveries still in flight.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(15);

/// Sends a run's notifications; cheap to clone into stage tasks.
#[derive(Clone)]
pub struct NotifyHub {
    subscriptions: Arc<Vec<Subscription>>,
    deliveries: Arc<Mutex<JoinSet<()>>>,
    journal: Arc<Journal>,
    run_id: String,
    plan: String,
    environment: String,
}

impl NotifyHub {
    pub fn new(
        subscriptions: Vec<Subscription>,
        journal: Arc<Journal>,
        run_id: &str,
        plan: &str,
        environment: &str,
    ) -> NotifyHub {
        NotifyHub {
            subscriptions: Arc::new(subscriptions),
            deliveries: Arc::new(Mutex::new(JoinSet::new())),
            journal,
            run_id: run_id.to_string(),
            plan: plan.to_string(),
            environment: environment.to_string(),
        }
    }

    /// Starts delivering `event` to every channel that wants it.
    pub fn send(&self, event: RunEvent, stage: Option<&str>, message: &str) {
        let notification = Notification {
            api_version: Notification::API_VERSION,
            kind: Notification::KIND,
            event,
            run: self.run_id.clone(),
            plan: self.plan.clone(),
            environment: self.environment.clone(),
            stage: stage.map(str::to_string),
            message: message.to_string(),
            at: rfc3339(now_ms()),
        };
        let mut deliveries = self
            .deliveries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for subscription in self.subscriptions.iter() {
            if !subscription.events.contains(&event) {
                continue;
            }
            let notifier = subscription.notifier.clone();
            let notification = notification.clone();
            let journal = self.journal.clone();
            let run_id = self.run_id.clone();
            deliveries.spawn(async move {
                let result =
                    tokio::time::timeout(DELIVERY_TIMEOUT, notifier.notify(&notification)).await;
                let channel = notifier.describe();
                let event = match result {
                    Ok(Ok(())) => Event::Notified {
                        event: notification.event,
                        channel,
                    },
                    Ok(Err(error)) => Event::NotificationFailed {
                        event: notification.event,
                        channel,
                        error: Some(error.to_string()),
                    },
                    Err(_) => Event::NotificationFailed {
                        event: notification.event,
                        channel,
                        error: Some("timed out".to_string()),
                    },
                };
                let _ = journal.append_run_event(&run_id, &event);
            });
        }
    }

    /// Waits (bounded) for deliveries still in flight.
    pub async fn flush(&self) {
        let mut pending = std::mem::take(
            &mut *self
                .deliveries
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        let _ = tokio::time::timeout(FLUSH_TIMEOUT, async {
            while pending.join_next().await.is_some() {}
        })
        .await;
    }
}
