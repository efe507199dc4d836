//! One part of a measurement (an alarm set, a metric), and how parts add
//! up to the gate's [`Measurement`]: a failure anywhere fails; a part that
//! could not be measured makes the whole an error; no data anywhere makes
//! it inconclusive; only a pass everywhere passes ("no data never
//! promotes").

use deployctl_adapter::Measurement;

/// What one part of a CloudWatch gate found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Finding {
    pub verdict: Verdict,
    pub value: Option<f64>,
    pub detail: String,
}

/// Ordered by precedence: a later variant outweighs an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Verdict {
    Pass,
    NoData,
    Error,
    Fail,
}

impl Finding {
    pub fn new(verdict: Verdict, value: Option<f64>, detail: impl Into<String>) -> Finding {
        Finding {
            verdict,
            value,
            detail: detail.into(),
        }
    }

    /// A call that failed: an error measurement (never a failing one: an
    /// unreachable API says nothing about the release), naming `what` was
    /// being read and the AWS request ID when there is one.
    pub fn failed_call(what: &str, error: &deployctl_adapter::AdapterError) -> Finding {
        let id = error
            .request_id()
            .map(|id| format!(" (request {id})"))
            .unwrap_or_default();
        Finding::new(Verdict::Error, None, format!("{what}: {error}{id}"))
    }
}

/// The gate's measurement from its parts. Every part's detail is kept (an
/// operator reading a failed gate wants to see what passed too); the value
/// is the one of the first part that decided the verdict.
pub(crate) fn combine(findings: Vec<Finding>) -> Measurement {
    let Some(verdict) = findings.iter().map(|f| f.verdict).max() else {
        return Measurement::Error {
            detail: "the gate measured nothing (no alarms, no metrics)".to_owned(),
        };
    };
    let value = findings
        .iter()
        .find(|f| f.verdict == verdict)
        .and_then(|f| f.value);
    let detail = findings
        .iter()
        .map(|f| f.detail.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    match verdict {
        Verdict::Pass => Measurement::Pass { value, detail },
        Verdict::Fail => Measurement::Fail { value, detail },
        Verdict::NoData => Measurement::NoData { detail },
        Verdict::Error => Measurement::Error { detail },
    }
}

/// ` (requests a, b)` for a detail, or nothing when there were none.
pub(crate) fn requests(ids: &[String]) -> String {
    if ids.is_empty() {
        String::new()
    } else {
        format!(" (requests {})", ids.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(verdict: Verdict, value: Option<f64>) -> Finding {
        Finding::new(verdict, value, format!("{verdict:?}"))
    }

    #[test]
    fn a_failure_anywhere_fails_and_keeps_every_detail() {
        let measured = combine(vec![
            part(Verdict::Pass, Some(0.1)),
            part(Verdict::NoData, None),
            part(Verdict::Fail, Some(7.0)),
            part(Verdict::Error, None),
        ]);
        assert_eq!(
            measured,
            Measurement::Fail {
                value: Some(7.0),
                detail: "Pass; NoData; Fail; Error".to_owned()
            }
        );
    }

    #[test]
    fn no_data_never_passes_and_errors_outweigh_it() {
        let quiet = combine(vec![part(Verdict::Pass, None), part(Verdict::NoData, None)]);
        assert!(matches!(quiet, Measurement::NoData { .. }), "{quiet:?}");
        let broken = combine(vec![
            part(Verdict::NoData, None),
            part(Verdict::Error, None),
        ]);
        assert!(matches!(broken, Measurement::Error { .. }), "{broken:?}");
    }

    #[test]
    fn all_passes_pass_with_the_first_value() {
        let measured = combine(vec![
            part(Verdict::Pass, None),
            part(Verdict::Pass, Some(2.0)),
        ]);
        assert_eq!(measured.value(), None);
        let measured = combine(vec![
            part(Verdict::Pass, Some(1.0)),
            part(Verdict::Pass, Some(2.0)),
        ]);
        assert_eq!(measured.value(), Some(1.0));
        assert!(matches!(measured, Measurement::Pass { .. }));
    }

    #[test]
    fn nothing_measured_is_an_error_not_a_pass() {
        assert!(matches!(combine(Vec::new()), Measurement::Error { .. }));
    }
}
