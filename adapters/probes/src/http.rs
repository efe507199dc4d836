//! The `http` gate: one request, judged by status code and body.

use std::fmt;
use std::time::{Duration, Instant};

use deployctl_adapter::{BoxFuture, HealthProbe, Measurement};
use deployctl_plan::model::GateCheck;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, LOCATION};
use reqwest::{Client, Method, Response, Url};

use crate::ProbeError;
use crate::transport::{self, BODY_LIMIT};

/// Probes an HTTP endpoint: `Pass` when the status is one of the expected
/// ones and the body (its first 1 MiB) contains the expected
/// text, `Fail` otherwise, with the status code as the value. No answer at
/// all (timeout, refused, TLS failure) is `Error`.
pub struct HttpProbe {
    client: Client,
    method: Method,
    url: Url,
    headers: HeaderMap,
    expect_status: Vec<u16>,
    expect_body: Option<String>,
    timeout: Duration,
    allow_insecure_http: bool,
    /// `METHOD origin/path`, for details.
    shown: String,
}

// By hand: the derived form would print the URL whole and header values,
// either of which may be a credential.
impl fmt::Debug for HttpProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpProbe")
            .field("request", &self.shown)
            .field("expect_status", &self.expect_status)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpProbe {
    /// A probe for an `http` gate. Plain `http://` is allowed only when
    /// both the gate's own `allow_insecure_http` and the caller's
    /// `allow_insecure_http` say so; otherwise it is refused at every
    /// measurement, before anything is sent.
    pub fn new(check: &GateCheck, allow_insecure_http: bool) -> Result<HttpProbe, ProbeError> {
        let GateCheck::Http {
            url,
            method,
            expect_status,
            expect_body,
            timeout,
            headers,
            allow_insecure_http: plan_allows_http,
        } = check
        else {
            return Err(ProbeError::WrongKind {
                expected: "http",
                found: check.kind().name(),
            });
        };
        let allow_insecure_http = allow_insecure_http && *plan_allows_http;
        let url = transport::parse_url(url)?;
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| ProbeError::Method(method.clone()))?;
        let mut header_map = HeaderMap::new();
        for (name, value) in headers {
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ProbeError::HeaderName(name.clone()))?;
            let mut header_value =
                HeaderValue::from_str(value).map_err(|_| ProbeError::HeaderValue(name.clone()))?;
            // We cannot tell a token from a harmless value, so none is ever
            // printed by Debug.
            header_value.set_sensitive(true);
            header_map.append(header_name, header_value);
        }
        Ok(HttpProbe {
            client: transport::client(allow_insecure_http)?,
            shown: format!("{method} {}", transport::shown(&url)),
            method,
            url,
            headers: header_map,
            expect_status: expect_status.clone(),
            expect_body: expect_body.clone(),
            timeout: *timeout,
            allow_insecure_http,
        })
    }

    async fn exchange(&self) -> Measurement {
        let started = Instant::now();
        let request = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone());
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                return Measurement::Error {
                    detail: format!(
                        "{}: {}",
                        self.shown,
                        transport::describe_error(error, &self.url, self.allow_insecure_http)
                    ),
                };
            }
        };
        let status = response.status();
        let value = Some(f64::from(status.as_u16()));
        let tls = transport::tls_summary(&response);
        if !self.expect_status.contains(&status.as_u16()) {
            return Measurement::Fail {
                value,
                detail: format!(
                    "{} answered {status} ({tls}); expected {}{}",
                    self.shown,
                    expected_statuses(&self.expect_status),
                    unfollowed_redirect(&response),
                ),
            };
        }
        if let Some(expected) = &self.expect_body {
            let body = match transport::read_body(&mut response, BODY_LIMIT).await {
                Ok(body) => body,
                Err(error) => {
                    return Measurement::Error {
                        detail: format!(
                            "{} answered {status} but {}",
                            self.shown,
                            transport::describe_error(error, &self.url, self.allow_insecure_http)
                        ),
                    };
                }
            };
            // Lossy: the expected text is a string, and a body that is not
            // UTF-8 can still contain it.
            if !String::from_utf8_lossy(&body.bytes).contains(expected.as_str()) {
                let read = if body.truncated {
                    "its first 1 MiB does"
                } else {
                    "the body does"
                };
                return Measurement::Fail {
                    value,
                    detail: format!(
                        "{} answered {status} ({tls}) but {read} not contain `{expected}`",
                        self.shown
                    ),
                };
            }
        }
        Measurement::Pass {
            value,
            detail: format!(
                "{} answered {status} in {} ms ({tls})",
                self.shown,
                started.elapsed().as_millis()
            ),
        }
    }
}

impl HealthProbe for HttpProbe {
    fn measure(&self) -> BoxFuture<'_, Measurement> {
        Box::pin(async move {
            // One bound over connect, TLS, headers and body: the gate's
            // timeout is the most a measurement may take.
            match tokio::time::timeout(self.timeout, self.exchange()).await {
                Ok(measurement) => measurement,
                Err(_) => Measurement::Error {
                    detail: format!("{}: no answer within {:?}", self.shown, self.timeout),
                },
            }
        })
    }
}

fn expected_statuses(statuses: &[u16]) -> String {
    let listed: Vec<String> = statuses.iter().map(u16::to_string).collect();
    match listed.as_slice() {
        [one] => one.clone(),
        _ => format!("one of {}", listed.join(", ")),
    }
}

/// For a 3xx the redirect policy did not follow, where it pointed.
fn unfollowed_redirect(response: &Response) -> String {
    if !response.status().is_redirection() {
        return String::new();
    }
    let target = response
        .headers()
        .get(LOCATION)
        .and_then(|location| location.to_str().ok())
        .and_then(|location| response.url().join(location).ok());
    match target {
        Some(target) => format!(
            "; redirect to {} not followed (probes stay on the gate's origin)",
            transport::shown(&target)
        ),
        None => String::new(),
    }
}
