//! Wall-clock time as the journal stores it: Unix milliseconds, shown as
//! RFC 3339 UTC (`deployctl-time`). Durations inside a run use tokio's
//! clock, so tests can pause it; only records that outlive the process use
//! the wall clock.

pub use deployctl_time::{format_ms as rfc3339, now_ms};
