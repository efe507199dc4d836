//! Record times: UTC RFC 3339 with milliseconds (`2026-11-24T09:15:23.123Z`),
//! from `deployctl-time`, shared with the journal and the MFA store.

pub use deployctl_time::{format_ms, now_ms};

use crate::AuditError;

/// Parses `YYYY-MM-DD`, or `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, to
/// Unix milliseconds.
pub fn parse_time(text: &str) -> Result<i64, AuditError> {
    deployctl_time::parse(text.trim()).ok_or_else(|| AuditError::Time(text.to_string()))
}
