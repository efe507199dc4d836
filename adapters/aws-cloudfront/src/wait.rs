//! Waiting for CloudFront to propagate a change (`InProgress` → `Deployed`):
//! a bounded poll with progress reports. On AWS this takes minutes, so the
//! interval and the limit are settings; tests make them milliseconds.

use std::sync::Arc;
use std::time::Duration;

/// How long `apply` waits for a distribution to be `Deployed`, and how often
/// it looks. Past `timeout` the apply fails with `AdapterError::Timeout`
/// (transient): applying the same action again resumes the wait, because
/// every step before it is already done and is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitOptions {
    pub interval: Duration,
    pub timeout: Duration,
}

impl Default for WaitOptions {
    /// Every 15 s for up to 25 minutes (CloudFront usually propagates in
    /// a few minutes).
    fn default() -> Self {
        WaitOptions {
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(25 * 60),
        }
    }
}

/// One look at a distribution that is still propagating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitProgress {
    /// The target's name in the plan.
    pub target: String,
    pub distribution_id: String,
    /// What the wait is for, e.g. "staging configuration".
    pub purpose: String,
    /// CloudFront's status as read (`InProgress`).
    pub status: String,
    pub elapsed: Duration,
    pub timeout: Duration,
}

impl std::fmt::Display for WaitProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: CloudFront distribution {} is {} ({}), {}s of at most {}s",
            self.target,
            self.distribution_id,
            self.status,
            self.purpose,
            self.elapsed.as_secs(),
            self.timeout.as_secs()
        )
    }
}

/// Receives progress while `apply` waits (the CLI prints it).
pub type ProgressFn = Arc<dyn Fn(&WaitProgress) + Send + Sync>;
