//! Reading a Prometheus instant-query answer down to the one number a gate
//! compares. Pure: bytes in, [`Answer`] out.
//!
//! The wire format is the HTTP API's
//! `{"status": "success", "data": {"resultType": ..., "result": ...}}`,
//! where a vector's result is `[{"metric": {...}, "value": [ts, "1.5"]}]`
//! and a scalar's is `[ts, "1.5"]`. Sample values are strings so that
//! `NaN` and `±Inf` survive JSON.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// What the query returned.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    /// One sample: the case a gate can judge.
    One {
        value: f64,
        /// The series, as Prometheus prints it (`name{label="v"}`).
        series: String,
    },
    /// No series matched.
    Empty,
    /// More than one series: the gate cannot tell which to judge.
    Many { count: usize, first: String },
}

/// The parts of the envelope we read. Unknown fields are fine: Prometheus
/// adds them over time (`infos`, stats).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: Value,
}

#[derive(Deserialize)]
struct VectorSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// The answer, and Prometheus's warnings about it.
pub(crate) fn parse(body: &[u8]) -> Result<(Answer, Vec<String>), String> {
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|error| format!("the answer is not Prometheus API JSON: {error}"))?;
    if envelope.status != "success" {
        return Err(format!(
            "Prometheus reported status `{}`{}",
            envelope.status,
            api_error(&envelope)
        ));
    }
    let data = envelope
        .data
        .ok_or("the answer has `status: success` but no `data`")?;
    let answer = match data.result_type.as_str() {
        "vector" => {
            let samples: Vec<VectorSample> = serde_json::from_value(data.result)
                .map_err(|error| format!("the vector result is malformed: {error}"))?;
            match samples.as_slice() {
                [] => Answer::Empty,
                [one] => Answer::One {
                    value: sample_value(&one.value.1)?,
                    series: series_name(&one.metric),
                },
                [first, ..] => Answer::Many {
                    count: samples.len(),
                    first: series_name(&first.metric),
                },
            }
        }
        "scalar" => {
            let (_, value): (f64, String) = serde_json::from_value(data.result)
                .map_err(|error| format!("the scalar result is malformed: {error}"))?;
            Answer::One {
                value: sample_value(&value)?,
                series: "scalar".to_owned(),
            }
        }
        "matrix" => {
            return Err(
                "the query returned a range vector (matrix); a gate needs an instant \
                        vector or a scalar: apply a function such as rate() to the range"
                    .to_owned(),
            );
        }
        other => return Err(format!("the query returned a `{other}`, not a number")),
    };
    Ok((answer, envelope.warnings))
}

/// Prometheus's own reason, when a failed answer carries one (it usually
/// does, even with a 4xx or 5xx status).
pub(crate) fn error_reason(body: &[u8]) -> Option<String> {
    let envelope: Envelope = serde_json::from_slice(body).ok()?;
    let reason = api_error(&envelope);
    (!reason.is_empty()).then_some(reason)
}

fn api_error(envelope: &Envelope) -> String {
    match (&envelope.error_type, &envelope.error) {
        (Some(kind), Some(error)) => format!(": {kind}: {error}"),
        (None, Some(error)) => format!(": {error}"),
        (Some(kind), None) => format!(": {kind}"),
        (None, None) => String::new(),
    }
}

/// Go's `strconv` spellings: digits, `NaN`, `+Inf`, `-Inf`; Rust's float
/// parser accepts all of them.
fn sample_value(text: &str) -> Result<f64, String> {
    text.parse()
        .map_err(|_| format!("the sample value `{text}` is not a number"))
}

fn series_name(metric: &BTreeMap<String, String>) -> String {
    let name = metric.get("__name__").map(String::as_str).unwrap_or("");
    let labels: Vec<String> = metric
        .iter()
        .filter(|(label, _)| *label != "__name__")
        .map(|(label, value)| format!("{label}={value:?}"))
        .collect();
    format!("{name}{{{}}}", labels.join(", "))
}
