//! `s3://bucket/prefix`: where something deployctl keeps in S3 lives
//! (the audit trail's copy, the team backend), and the object names
//! under it.

use std::fmt;
use std::str::FromStr;

/// Why a text is not an `s3://BUCKET/PREFIX` location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid S3 location `{given}`: {reason}")]
pub struct InvalidS3Location {
    pub given: String,
    pub reason: String,
}

/// A bucket and a key prefix (without leading or trailing `/`; may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
}

impl S3Location {
    /// The key of an object named `name` under the prefix.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// What a listing of this location's objects asks for.
    pub fn list_prefix(&self) -> String {
        self.key("")
    }

    /// `s3://bucket/key` of one object, for messages.
    pub fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

impl FromStr for S3Location {
    type Err = InvalidS3Location;

    fn from_str(text: &str) -> Result<S3Location, InvalidS3Location> {
        let invalid = |reason: &str| InvalidS3Location {
            given: text.to_string(),
            reason: reason.to_string(),
        };
        let rest = text
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("expected s3://BUCKET/PREFIX"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket).map_err(invalid)?;
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|part| part == "." || part == "..") {
            return Err(invalid("the prefix must not contain `.` or `..` segments"));
        }
        if prefix.contains("//") {
            return Err(invalid("the prefix must not contain empty segments (`//`)"));
        }
        if prefix.chars().any(char::is_control) {
            return Err(invalid("the prefix must not contain control characters"));
        }
        Ok(S3Location {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

/// S3's bucket naming rules (the ones a typo breaks).
fn check_bucket(bucket: &str) -> Result<(), &'static str> {
    if bucket.is_empty() {
        return Err("no bucket name after s3://");
    }
    if !(3..=63).contains(&bucket.len()) {
        return Err("a bucket name is 3 to 63 characters long");
    }
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err("a bucket name has only lowercase letters, digits, `-` and `.`");
    }
    let edges = [bucket.as_bytes()[0], bucket.as_bytes()[bucket.len() - 1]];
    if edges.iter().any(|b| !b.is_ascii_alphanumeric()) {
        return Err("a bucket name starts and ends with a letter or digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bucket_and_prefix() {
        let location: S3Location = "s3://audit-bucket/deployctl/prod/".parse().unwrap();
        assert_eq!(location.bucket, "audit-bucket");
        assert_eq!(location.prefix, "deployctl/prod");
        assert_eq!(location.to_string(), "s3://audit-bucket/deployctl/prod");
        assert_eq!(location.key("locks/a.json"), "deployctl/prod/locks/a.json");
        let bare: S3Location = "s3://audit-bucket".parse().unwrap();
        assert_eq!(bare.prefix, "");
        assert_eq!(bare.key("x"), "x");
    }

    #[test]
    fn bad_locations_say_what_is_wrong() {
        for (text, why) in [
            ("audit-bucket/x", "expected s3://"),
            ("s3://", "no bucket"),
            ("s3://ab", "3 to 63"),
            ("s3://Audit/x", "lowercase"),
            ("s3://-audit/x", "starts and ends"),
            ("s3://audit-bucket/a/../b", "`..`"),
            ("s3://audit-bucket/a//b", "empty segments"),
        ] {
            let error = text.parse::<S3Location>().unwrap_err().to_string();
            assert!(error.contains(why), "{text}: {error}");
            assert!(error.contains(text), "{text}: {error}");
        }
    }
}
