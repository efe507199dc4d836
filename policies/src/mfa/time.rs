//! Time as the MFA store keeps it: whole Unix seconds (TOTP counts in
//! seconds; nothing here needs finer). Callers pass `now` in, so tests can
//! move through lockouts and expiries without waiting.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch; instants before it count as 0.
pub(crate) fn unix_seconds(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
    })
}

pub(crate) fn from_unix_seconds(seconds: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

pub(crate) fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// Shows an instant as RFC 3339 UTC (`2026-11-24T09:15:23Z`), for messages.
pub(crate) struct Timestamp(pub SystemTime);

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&deployctl_time::format_seconds(unix_seconds(self.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        let at = |s| Timestamp(from_unix_seconds(s)).to_string();
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_795_511_723), "2026-11-24T09:15:23Z");
    }

    #[test]
    fn seconds_round_trip_and_saturate() {
        assert_eq!(
            unix_seconds(from_unix_seconds(1_795_511_723)),
            1_795_511_723
        );
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(5)), 0);
    }
}
