//! The diagnostics collector and the field-level checks every section of a
//! plan uses: names, non-empty strings, durations, ranges, "exactly one of",
//! URLs, comparisons, references to named entries.
//!
//! It is its own module, not part of [`crate::validate`], because two
//! sides use it: the plan walk in `validate` and each target kind's own
//! checks in [`crate::kinds`]. Keeping it below both means neither has to
//! import the other.
//!
//! Every check records what it finds and goes on; none stops at the first
//! problem, so one run shows the author everything to fix.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::diagnostic::{Diagnostic, suggest};
use crate::duration::parse_duration;
use crate::model::Comparison;

/// Collects the diagnostics of one validation run, in the order found.
#[derive(Default)]
pub(crate) struct Checker {
    pub(crate) diagnostics: Vec<Diagnostic>,
}

/// Plan names, target keys, stage names, gate and approval keys: DNS-label
/// style, because they end up in Kubernetes object names and AWS tags.
pub(crate) fn is_name(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

pub(crate) fn is_hex_digest(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Checker {
    pub(crate) fn error(
        &mut self,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.diagnostics.push(Diagnostic::error(path, message));
        self.diagnostics.last_mut().expect("just pushed")
    }

    pub(crate) fn warning(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::warning(path, message));
    }

    pub(crate) fn name(&mut self, path: &str, what: &str, name: &str) {
        if !is_name(name) {
            self.error(
                path,
                format!("{what} `{name}` is not a valid name"),
            )
            .hint = Some(
                "use 1–63 lowercase letters, digits and `-`, starting with a letter (e.g. `checkout-api`)"
                    .into(),
            );
        }
    }

    pub(crate) fn non_empty(&mut self, path: &str, value: &str) {
        if value.trim().is_empty() {
            self.error(path, "must not be empty");
        }
    }

    pub(crate) fn duration(&mut self, path: &str, text: &str) -> Option<Duration> {
        match parse_duration(text) {
            Ok(duration) => Some(duration),
            Err(error) => {
                self.error(path, error.to_string());
                None
            }
        }
    }

    pub(crate) fn optional_duration(
        &mut self,
        path: &str,
        text: Option<&String>,
        default: Duration,
    ) -> Duration {
        text.and_then(|text| self.duration(path, text))
            .unwrap_or(default)
    }

    /// An integer in `range`, or an error naming the range.
    pub(crate) fn int_in(&mut self, path: &str, value: i64, min: i64, max: i64) -> Option<u32> {
        if value < min || value > max {
            self.error(
                path,
                format!("must be between {min} and {max}, not {value}"),
            );
            None
        } else {
            u32::try_from(value).ok()
        }
    }

    pub(crate) fn percent(&mut self, path: &str, value: f64) -> f64 {
        if !(0.0..=100.0).contains(&value) {
            self.error(
                path,
                format!("is a percentage: must be between 0 and 100, not {value}"),
            );
        }
        value
    }

    /// Exactly one of the named sections must be present; returns its index.
    pub(crate) fn exactly_one(
        &mut self,
        path: &str,
        what: &str,
        present: &[(&str, bool)],
    ) -> Option<usize> {
        let chosen: Vec<usize> = present
            .iter()
            .enumerate()
            .filter(|(_, (_, here))| *here)
            .map(|(index, _)| index)
            .collect();
        let names = || {
            present
                .iter()
                .map(|(name, _)| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match chosen.as_slice() {
            [one] => Some(*one),
            [] => {
                let all = names();
                self.error(
                    path,
                    format!("{what} needs exactly one of {all}; none is given"),
                );
                None
            }
            several => {
                let given = several
                    .iter()
                    .map(|index| format!("`{}`", present[*index].0))
                    .collect::<Vec<_>>()
                    .join(" and ");
                self.error(
                    path,
                    format!("{what} needs exactly one of {}; {given} are given", names()),
                )
                .hint = Some("split them into separate entries or remove all but one".into());
                None
            }
        }
    }

    /// A URL that must be http(s), and https unless insecure is allowed.
    pub(crate) fn url(&mut self, path: &str, url: &str, allow_insecure: bool) {
        let (scheme, rest) = match url.split_once("://") {
            Some(parts) => parts,
            None => {
                self.error(path, format!("`{url}` is not an absolute URL"))
                    .hint = Some("write it as `https://host/path`".into());
                return;
            }
        };
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host_ok = !host.is_empty()
            && !host.contains(char::is_whitespace)
            && !url.contains(char::is_whitespace);
        match scheme {
            "https" if host_ok => {}
            "http" if host_ok && allow_insecure => {}
            "http" if host_ok => {
                self.error(path, format!("`{url}` is plain HTTP; probes and hooks use TLS"))
                    .hint = Some(
                    "use https://, or set `allowInsecureHttp: true` beside it if this endpoint truly has no TLS"
                        .into(),
                );
            }
            "http" | "https" => {
                self.error(path, format!("`{url}` has no valid host"));
            }
            other => {
                self.error(path, format!("`{url}` uses scheme `{other}`; only https (or http when allowed) is supported"));
            }
        }
    }

    pub(crate) fn comparison(&mut self, path: &str, symbol: &str) -> Option<Comparison> {
        let parsed = Comparison::parse(symbol);
        if parsed.is_none() {
            let hint = match suggest(symbol, Comparison::SYMBOLS) {
                Some(best) => format!("did you mean `{best}`?"),
                None => format!("use one of {}", Comparison::SYMBOLS.join(" ")),
            };
            self.error(path, format!("`{symbol}` is not a comparison"))
                .hint = Some(hint);
        }
        parsed
    }

    /// A reference to a named entry: reports unknown names with a suggestion.
    pub(crate) fn reference<'a, T>(
        &mut self,
        path: &str,
        what: &str,
        name: &str,
        defined: &'a BTreeMap<String, T>,
    ) -> Option<&'a T> {
        let found = defined.get(name);
        if found.is_none() {
            let diagnostic = self.error(path, format!("unknown {what} `{name}`"));
            diagnostic.hint = match suggest(name, defined.keys().map(String::as_str)) {
                Some(best) => Some(format!("did you mean `{best}`?")),
                None if defined.is_empty() => Some(format!("no {what}s are defined in this plan")),
                None => Some(format!(
                    "defined {what}s: {}",
                    defined
                        .keys()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            };
        }
        found
    }

    pub(crate) fn finite(&mut self, path: &str, value: f64) -> Option<f64> {
        if value.is_finite() {
            Some(value)
        } else {
            self.error(path, "must be a finite number");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dns_label_rules() {
        assert!(is_name("checkout-api"));
        assert!(is_name("a1"));
        assert!(!is_name("Checkout"));
        assert!(!is_name("1abc"));
        assert!(!is_name("abc-"));
        assert!(!is_name(""));
        assert!(!is_name(&"a".repeat(64)));
    }
}
