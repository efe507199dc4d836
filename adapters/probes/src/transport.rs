//! The HTTP transport rules both probes share, in one place so they cannot
//! drift apart.
//!
//! - https only, unless the plan set `allowInsecureHttp` on the gate.
//!   Validation refuses `http://` without it already; reqwest's
//!   `https_only` enforces it again at the socket, redirects included.
//! - TLS 1.2 or newer, rustls with aws-lc-rs (the workspace's one TLS stack).
//! - Redirects are followed at most [`MAX_REDIRECTS`] times and only within
//!   the first URL's origin: a probe measures the endpoint the plan names,
//!   not wherever it points.
//! - A fresh connection per measurement: the probe should see what a new
//!   client sees (DNS, TCP, TLS handshake), not ride a pooled connection.
//! - Response bodies are read up to [`BODY_LIMIT`].

use std::error::Error as StdError;

use reqwest::redirect::Policy;
use reqwest::tls::{TlsInfo, Version};
use reqwest::{Client, Response, Url};

use crate::ProbeError;

/// The most of a response body a probe reads.
pub(crate) const BODY_LIMIT: usize = 1024 * 1024;

/// Redirects followed within one measurement.
const MAX_REDIRECTS: usize = 3;

const USER_AGENT: &str = concat!("deployctl-probes/", env!("CARGO_PKG_VERSION"));

/// A client for one probe. The probe's timeout is applied around the whole
/// measurement by the caller, body included, so none is set here.
pub(crate) fn client(allow_insecure_http: bool) -> Result<Client, ProbeError> {
    Client::builder()
        .tls_backend_rustls()
        .tls_version_min(Version::TLS_1_2)
        .tls_info(true)
        .https_only(!allow_insecure_http)
        .redirect(redirect_policy())
        .pool_max_idle_per_host(0)
        .user_agent(USER_AGENT)
        .build()
        .map_err(ProbeError::Client)
}

#[derive(Debug, thiserror::Error)]
#[error("more than {MAX_REDIRECTS} redirects")]
struct TooManyRedirects;

fn redirect_policy() -> Policy {
    Policy::custom(|attempt| {
        // `previous` starts with the URL first requested.
        let Some(first) = attempt.previous().first() else {
            return attempt.stop();
        };
        if first.origin() != attempt.url().origin() {
            // Hand the 3xx back: the probe reports it as the answer.
            attempt.stop()
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(TooManyRedirects)
        } else {
            attempt.follow()
        }
    })
}

/// Checks a gate's URL before any request: absolute, http or https.
pub(crate) fn parse_url(text: &str) -> Result<Url, ProbeError> {
    let url = Url::parse(text).map_err(|error| ProbeError::Url(error.to_string()))?;
    match url.scheme() {
        "https" | "http" => Ok(url),
        other => Err(ProbeError::Scheme(other.to_owned())),
    }
}

/// The URL as details show it: origin and path only, because user info and
/// query strings may carry credentials.
pub(crate) fn shown(url: &Url) -> String {
    format!("{}{}", url.origin().ascii_serialization(), url.path())
}

/// How the answer was protected, for the measurement's detail.
pub(crate) fn tls_summary(response: &Response) -> &'static str {
    if response.url().scheme() != "https" {
        return "plain HTTP";
    }
    // reqwest's `TlsInfo` reports the protocol version and the peer
    // certificate, not the negotiated cipher suite. Showing the cipher (J5)
    // would mean building and driving our own rustls connector; until that
    // is worth it, the version is what the detail carries.
    match response
        .extensions()
        .get::<TlsInfo>()
        .and_then(TlsInfo::version)
    {
        Some(Version::TLS_1_3) => "TLS 1.3",
        Some(Version::TLS_1_2) => "TLS 1.2",
        // Refused by `tls_version_min`; kept total rather than panicking.
        Some(_) => "TLS older than 1.2",
        None => "TLS (version not reported)",
    }
}

/// A response body, cut at the limit.
pub(crate) struct Body {
    pub(crate) bytes: Vec<u8>,
    /// The server had more to send than `limit`.
    pub(crate) truncated: bool,
}

/// Reads at most `limit` bytes of the body, however much the server sends.
pub(crate) async fn read_body(
    response: &mut Response,
    limit: usize,
) -> Result<Body, reqwest::Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(Body {
                bytes,
                truncated: true,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Body {
        bytes,
        truncated: false,
    })
}

/// Why a request got no answer, in words for the detail. The URL is
/// stripped from reqwest's error (it may carry credentials); callers
/// prefix the [`shown`] URL instead.
pub(crate) fn describe_error(
    error: reqwest::Error,
    url: &Url,
    allow_insecure_http: bool,
) -> String {
    if error.is_builder() && url.scheme() == "http" && !allow_insecure_http {
        return "refused before sending: plain http:// needs `allowInsecureHttp: true` on the \
                gate; probes use TLS"
            .to_owned();
    }
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        // TLS handshake failures surface here too, with rustls's reason in
        // the chain.
        "could not connect"
    } else if error.is_redirect() {
        "gave up on redirects"
    } else if error.is_body() || error.is_decode() {
        "could not read the answer"
    } else {
        "request failed"
    };
    format!("{what}: {}", error_chain(&error.without_url()))
}

/// An error and its sources, `outer: inner: innermost`, skipping a source
/// its parent already quotes.
pub(crate) fn error_chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}
