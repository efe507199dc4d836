//! The `prometheus` gate: one instant query, one sample, one comparison.

use std::fmt;
use std::time::Duration;

use deployctl_adapter::{BoxFuture, HealthProbe, Measurement};
use deployctl_plan::model::{Comparison, GateCheck};
use reqwest::{Client, Url};

use crate::ProbeError;
use crate::query_result::{self, Answer};
use crate::transport::{self, BODY_LIMIT};

/// Runs an instant query (`GET {address}/api/v1/query`) and compares its
/// single sample with the gate's threshold: `Pass` or `Fail` with the
/// value. No series, or a `NaN` sample, is `NoData`; several series, an
/// API error or an unreadable answer is `Error`.
pub struct PrometheusProbe {
    client: Client,
    /// The query endpoint with the query already in its query string.
    url: Url,
    comparison: Comparison,
    threshold: f64,
    timeout: Duration,
    allow_insecure_http: bool,
    shown: String,
}

impl fmt::Debug for PrometheusProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusProbe")
            .field("endpoint", &self.shown)
            .field("comparison", &self.comparison)
            .field("threshold", &self.threshold)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl PrometheusProbe {
    /// The gate kind carries no timeout of its own, so a query gets this
    /// long. Far above a healthy Prometheus's answer time, far below a gate
    /// interval.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// A probe for a `prometheus` gate. Plain `http://` is allowed only
    /// when both the gate's own `allow_insecure_http` and the caller's
    /// `allow_insecure_http` say so; otherwise it is refused at every
    /// measurement, before anything is sent.
    pub fn new(
        check: &GateCheck,
        allow_insecure_http: bool,
    ) -> Result<PrometheusProbe, ProbeError> {
        let GateCheck::Prometheus {
            address,
            query,
            comparison,
            threshold,
            allow_insecure_http: plan_allows_http,
        } = check
        else {
            return Err(ProbeError::WrongKind {
                expected: "prometheus",
                found: check.kind().name(),
            });
        };
        let allow_insecure_http = allow_insecure_http && *plan_allows_http;
        let url = query_url(address, query)?;
        Ok(PrometheusProbe {
            client: transport::client(allow_insecure_http)?,
            shown: format!("prometheus {}", transport::shown(&url)),
            url,
            comparison: *comparison,
            threshold: *threshold,
            timeout: Self::DEFAULT_TIMEOUT,
            allow_insecure_http,
        })
    }

    /// Replaces [`Self::DEFAULT_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> PrometheusProbe {
        self.timeout = timeout;
        self
    }

    async fn exchange(&self) -> Measurement {
        let error = |detail: String| Measurement::Error {
            detail: format!("{}: {detail}", self.shown),
        };
        let mut response = match self.client.get(self.url.clone()).send().await {
            Ok(response) => response,
            Err(failure) => {
                return error(transport::describe_error(
                    failure,
                    &self.url,
                    self.allow_insecure_http,
                ));
            }
        };
        let status = response.status();
        let body = match transport::read_body(&mut response, BODY_LIMIT).await {
            Ok(body) => body,
            Err(failure) => {
                return error(transport::describe_error(
                    failure,
                    &self.url,
                    self.allow_insecure_http,
                ));
            }
        };
        if !status.is_success() {
            let reason = query_result::error_reason(&body.bytes).unwrap_or_default();
            return error(format!("answered {status}{reason}"));
        }
        if body.truncated {
            return error(
                "the answer is larger than 1 MiB; the query must return one series".to_owned(),
            );
        }
        let (answer, warnings) = match query_result::parse(&body.bytes) {
            Ok(parsed) => parsed,
            Err(reason) => return error(reason),
        };
        let warnings = if warnings.is_empty() {
            String::new()
        } else {
            format!(" (Prometheus warns: {})", warnings.join("; "))
        };
        match answer {
            Answer::Empty => Measurement::NoData {
                detail: format!(
                    "{}: no series matched: is the canary receiving traffic?{warnings}",
                    self.shown
                ),
            },
            Answer::Many { count, first } => error(format!(
                "the query returned {count} series (first {first}); it must return exactly \
                 one: aggregate it, e.g. `sum(...)`{warnings}"
            )),
            // NaN is what 0/0 rate ratios give with no traffic: nothing to
            // judge by, and `Comparison::holds` would fail it.
            Answer::One { value, series } if value.is_nan() => Measurement::NoData {
                detail: format!(
                    "{}: {series} is NaN: is the canary receiving traffic?{warnings}",
                    self.shown
                ),
            },
            Answer::One { value, series } => {
                let holds = self.comparison.holds(value, self.threshold);
                let detail = format!(
                    "{}: {series} = {value}; `{value} {} {}` {}{warnings}",
                    self.shown,
                    self.comparison.symbol(),
                    self.threshold,
                    if holds { "holds" } else { "does not hold" },
                );
                if holds {
                    Measurement::Pass {
                        value: Some(value),
                        detail,
                    }
                } else {
                    Measurement::Fail {
                        value: Some(value),
                        detail,
                    }
                }
            }
        }
    }
}

impl HealthProbe for PrometheusProbe {
    fn measure(&self) -> BoxFuture<'_, Measurement> {
        Box::pin(async move {
            match tokio::time::timeout(self.timeout, self.exchange()).await {
                Ok(measurement) => measurement,
                Err(_) => Measurement::Error {
                    detail: format!("{}: no answer within {:?}", self.shown, self.timeout),
                },
            }
        })
    }
}

/// `{address}/api/v1/query?query=...`, keeping any path prefix the address
/// has (Prometheus behind a reverse proxy at `/prometheus`). The query is
/// form-encoded by `Url`, so spaces, braces, quotes and `+` arrive intact.
fn query_url(address: &str, query: &str) -> Result<Url, ProbeError> {
    let mut url = transport::parse_url(address)?;
    let path = format!("{}/api/v1/query", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_fragment(None);
    url.set_query(None);
    url.query_pairs_mut().append_pair("query", query);
    Ok(url)
}
