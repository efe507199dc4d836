//! The tags that make the release's state readable from CloudFront alone,
//! so a restarted `deployctl resume` (a new target instance) observes what
//! the previous process left.
//!
//! On the primary distribution:
//! - [`VERSION`]: the release label it serves (absent: [`UNLABELLED`]);
//! - [`STAGING`]: the ID of its staging distribution;
//! - [`PREVIOUS`]: after a promotion, the label it served before; the
//!   configuration it served is kept on the staging distribution until
//!   `Retire`.
//!
//! On the staging distribution:
//! - [`PRIMARY`]: the primary's ID;
//! - [`ROLE`]: [`ROLE_CANDIDATE`] (serves the new release beside the
//!   primary), [`ROLE_PREVIOUS`] (holds the primary's configuration from
//!   before the last promotion) or [`ROLE_IDLE`] (kept for the next release);
//! - [`VERSION`]: the label of the configuration it holds.

pub const VERSION: &str = "deployctl:version";
pub const STAGING: &str = "deployctl:staging";
pub const PREVIOUS: &str = "deployctl:previous";
pub const PRIMARY: &str = "deployctl:primary";
pub const ROLE: &str = "deployctl:role";

pub const ROLE_CANDIDATE: &str = "candidate";
pub const ROLE_PREVIOUS: &str = "previous";
pub const ROLE_IDLE: &str = "idle";

/// The stable version of a primary that no release of deployctl labelled yet.
pub const UNLABELLED: &str = "unlabelled";

/// Whether `label` can be a tag value (CloudFront allows letters, digits,
/// spaces and `_ . : / = + - @`, up to 256 characters).
pub fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 256
        && label
            .chars()
            .all(|c| c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_must_fit_in_a_tag_value() {
        assert!(valid_label("v2.1.0-rc1"));
        assert!(valid_label("2026-05-01 build@42"));
        assert!(!valid_label(""));
        assert!(!valid_label("v2;rm -rf"));
        assert!(!valid_label(&"x".repeat(257)));
    }
}
