//! Firmware versions: dotted numbers (`4.2.0`), compared numerically, so
//! `4.10.0` is newer than `4.9.3`. Anything else is refused rather than
//! guessed at: a wrong order would let a downgrade through.

use std::cmp::Ordering;
use std::fmt;

/// A parsed dotted version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    parts: Vec<u64>,
    text: String,
}

/// A version that is not dotted numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a firmware version: write dotted numbers such as 4.2.0")]
pub struct BadVersion(pub String);

impl Version {
    pub fn parse(text: &str) -> Result<Version, BadVersion> {
        let parts: Option<Vec<u64>> = text
            .split('.')
            .map(|part| {
                (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| part.parse().ok())
                    .flatten()
            })
            .collect();
        match parts {
            Some(parts) if !parts.is_empty() && parts.len() <= 8 => Ok(Version {
                parts,
                text: text.to_owned(),
            }),
            _ => Err(BadVersion(text.to_owned())),
        }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let len = self.parts.len().max(other.parts.len());
        // Missing parts are zeros: 4.2 == 4.2.0.
        (0..len)
            .map(|i| {
                let a = self.parts.get(i).copied().unwrap_or(0);
                let b = other.parts.get(i).copied().unwrap_or(0);
                a.cmp(&b)
            })
            .find(|order| order.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn versions_compare_as_numbers() {
        assert!(v("4.10.0") > v("4.9.3"));
        assert!(v("4.2.0") > v("4.1.3"));
        assert_eq!(v("4.2").cmp(&v("4.2.0")), Ordering::Equal);
        assert!(v("5") > v("4.99.99"));
    }

    #[test]
    fn anything_but_dotted_numbers_is_refused() {
        for bad in [
            "",
            "4..2",
            "v4.2",
            "4.2.0-rc1",
            "4.2.x",
            " 4.2",
            "99999999999999999999999",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
