//! Durations as plans write them: `500ms`, `30s`, `5m`, `1h30m`, `2d`.
//!
//! Deliberately small: whole numbers, units `ms s m h d`, largest first, no
//! spaces. Anything else is an error with the accepted form in the message.

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("`{0}` is not a duration; write e.g. `30s`, `5m`, `1h30m` (units ms, s, m, h, d)")]
    Malformed(String),
    #[error("`{0}` is zero; a duration here must be positive")]
    Zero(String),
    #[error("`{0}` is longer than 365 days")]
    TooLong(String),
}

const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses a positive duration of at most a year.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let malformed = || DurationError::Malformed(text.to_string());
    let mut rest = text;
    let mut total_ms: u64 = 0;
    let mut last_unit_rank = usize::MAX;
    if rest.is_empty() {
        return Err(malformed());
    }
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return Err(malformed());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| malformed())?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(char::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        let rank = UNITS
            .iter()
            .position(|(name, _)| *name == unit)
            .ok_or_else(malformed)?;
        // Units must go from largest to smallest, each at most once.
        if last_unit_rank != usize::MAX && rank <= last_unit_rank {
            return Err(malformed());
        }
        last_unit_rank = rank;
        total_ms = total_ms.saturating_add(number.saturating_mul(UNITS[rank].1));
        rest = &rest[unit_len..];
    }
    if total_ms == 0 {
        return Err(DurationError::Zero(text.to_string()));
    }
    if total_ms > 365 * 86_400_000 {
        return Err(DurationError::TooLong(text.to_string()));
    }
    Ok(Duration::from_millis(total_ms))
}

/// The compact form `parse_duration` reads: `1h30m`, `250ms`, `0s`.
pub fn format_duration(duration: Duration) -> String {
    let mut ms = duration.as_millis() as u64;
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (name, size) in UNITS {
        if ms >= size {
            out.push_str(&format!("{}{name}", ms / size));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(
            parse_duration("1m30s500ms"),
            Ok(Duration::from_millis(90_500))
        );
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            "5",
            "5 minutes",
            "m5",
            "1.5h",
            "30s1m",
            "1h1h",
            "-5s",
            "5S",
            "1000000000s",
        ] {
            assert!(
                matches!(parse_duration(bad), Err(DurationError::Malformed(_))),
                "{bad:?} was accepted"
            );
        }
        assert_eq!(parse_duration("0s"), Err(DurationError::Zero("0s".into())));
        assert_eq!(
            parse_duration("400d"),
            Err(DurationError::TooLong("400d".into()))
        );
    }

    #[test]
    fn formats_round_trip() {
        for text in ["500ms", "30s", "1h30m", "2d", "1m30s500ms"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }
}
