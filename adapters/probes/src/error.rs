//! Why a probe could not be built from its gate.
//!
//! Messages never repeat a URL or a header value: either may carry a
//! credential, and these errors end up in run logs and the audit trail.

/// A gate that cannot be turned into a working probe.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("a {expected} probe cannot measure a `{found}` gate")]
    WrongKind {
        expected: &'static str,
        found: &'static str,
    },
    #[error("the URL is not valid: {0}")]
    Url(String),
    #[error("the URL's scheme `{0}` is not supported; use https (or http with allowInsecureHttp)")]
    Scheme(String),
    #[error("`{0}` is not an HTTP method")]
    Method(String),
    #[error("header name `{0}` is not valid")]
    HeaderName(String),
    #[error("the value of header `{0}` is not valid (it must be visible ASCII)")]
    HeaderValue(String),
    #[error("could not set up the HTTP client")]
    Client(#[source] reqwest::Error),
}
