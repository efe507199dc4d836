//! How long shipped objects stay locked (R10: at least a year).

use std::time::{Duration, SystemTime};

use crate::error::AwsAuditError;

/// R10 keeps the trail for a year; S3 refuses nothing shorter from us.
pub const MIN_RETENTION_DAYS: u32 = 365;
/// A century: anything longer is a typo, and COMPLIANCE cannot be undone.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The COMPLIANCE retention every shipped object gets, in whole days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    days: u32,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            days: MIN_RETENTION_DAYS,
        }
    }
}

impl Retention {
    /// Refuses less than [`MIN_RETENTION_DAYS`] and more than
    /// [`MAX_RETENTION_DAYS`].
    pub fn days(days: u32) -> Result<Retention, AwsAuditError> {
        let invalid = |reason: String| AwsAuditError::Retention {
            given: days.to_string(),
            reason,
        };
        if days < MIN_RETENTION_DAYS {
            return Err(invalid(format!(
                "the audit trail must stay locked for at least {MIN_RETENTION_DAYS} days (R10); \
                 set DEPLOYCTL_AUDIT_RETENTION_DAYS to {MIN_RETENTION_DAYS} or more"
            )));
        }
        if days > MAX_RETENTION_DAYS {
            return Err(invalid(format!(
                "more than {MAX_RETENTION_DAYS} days is surely a typo, and a COMPLIANCE lock \
                 cannot be shortened afterwards"
            )));
        }
        Ok(Retention { days })
    }

    /// Days as written in `DEPLOYCTL_AUDIT_RETENTION_DAYS`; `None` or an
    /// empty value is the default (365).
    pub fn parse(text: Option<&str>) -> Result<Retention, AwsAuditError> {
        let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(Retention::default());
        };
        let days = text.parse::<u32>().map_err(|_| AwsAuditError::Retention {
            given: text.to_string(),
            reason: "expected a whole number of days, such as 365".into(),
        })?;
        Retention::days(days)
    }

    pub fn in_days(&self) -> u32 {
        self.days
    }

    /// The retain-until date of an object written at `now`.
    pub fn until(&self, now: SystemTime) -> SystemTime {
        now + DAY * self.days
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn less_than_a_year_is_refused_with_the_fix() {
        let error = Retention::days(30).unwrap_err().to_string();
        assert!(error.contains("at least 365 days"), "{error}");
        assert!(error.contains("DEPLOYCTL_AUDIT_RETENTION_DAYS"), "{error}");
        assert!(Retention::days(364).is_err());
        assert_eq!(Retention::days(365).unwrap().in_days(), 365);
        assert!(Retention::days(MAX_RETENTION_DAYS + 1).is_err());
    }

    #[test]
    fn parses_the_environment_value() {
        assert_eq!(Retention::parse(None).unwrap().in_days(), 365);
        assert_eq!(Retention::parse(Some(" ")).unwrap().in_days(), 365);
        assert_eq!(Retention::parse(Some("400")).unwrap().in_days(), 400);
        let error = Retention::parse(Some("1y")).unwrap_err().to_string();
        assert!(
            error.contains("`1y`") && error.contains("whole number"),
            "{error}"
        );
        assert!(Retention::parse(Some("-5")).is_err());
    }

    #[test]
    fn until_is_whole_days_ahead() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let until = Retention::days(400).unwrap().until(now);
        assert_eq!(
            until.duration_since(now).unwrap(),
            Duration::from_secs(400 * 86_400)
        );
    }
}
