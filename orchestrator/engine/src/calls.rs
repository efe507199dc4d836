//! One call to a target, retried as the one retry policy decides, with
//! every retried attempt journaled (S7).

use deployctl_adapter::{Action, AdapterError, IdempotencyKey, Target};

use crate::event::Event;
use crate::journal::Journal;
use crate::retry::{RetryDecision, RetryPolicy};

/// Where a retried call is recorded: every failed attempt the policy
/// retries leaves a `callRetried` event (error class, message, request ID),
/// so throttling, outages and conflicts met on the way are traceable (S7)
/// even when the call finally succeeds.
pub(crate) struct RetryLog<'a> {
    pub(crate) journal: &'a Journal,
    pub(crate) run_id: &'a str,
    pub(crate) stage: &'a str,
    pub(crate) key: &'a str,
}

impl RetryLog<'_> {
    fn retried(&self, attempt: u32, error: &AdapterError) {
        // A journal that cannot take this event fails the call's outcome
        // write right after; the record of a retry is not worth failing
        // the call for on its own.
        let _ = self.journal.append_run_event(
            self.run_id,
            &Event::CallRetried {
                stage: self.stage.to_string(),
                key: self.key.to_string(),
                attempt,
                class: format!("{:?}", error.class()),
                error: error.to_string(),
                request_id: error.request_id().map(str::to_string),
            },
        );
    }
}

/// Applies an action, retrying as the one retry policy decides.
pub(crate) async fn apply_with_retry(
    target: &dyn Target,
    action: &Action,
    key: &IdempotencyKey,
    policy: &RetryPolicy,
    log: &RetryLog<'_>,
) -> Result<deployctl_adapter::Applied, AdapterError> {
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let error = match target.apply(action, key).await {
            Ok(applied) => return Ok(applied),
            Err(error) => error,
        };
        match policy.decide(attempt, &error, crate::retry::jitter()) {
            RetryDecision::RetryAfter(delay) => {
                log.retried(attempt, &error);
                tokio::time::sleep(delay).await;
            }
            RetryDecision::ReobserveThenRetry(delay) => {
                log.retried(attempt, &error);
                tokio::time::sleep(delay).await;
                // A conflict means our view is stale; reading refreshes the
                // adapter's revision (RevisionId, ETag) before the retry.
                let _ = target.observe().await;
            }
            RetryDecision::GiveUp => return Err(error),
        }
    }
}
