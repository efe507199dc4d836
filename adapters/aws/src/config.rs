//! Client configuration every AWS adapter shares: the standard chain for
//! credentials, region and endpoint, one attempt per call (retries are the
//! engine's, decided from the error class) and bounded call times.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

/// The shared SDK configuration from the standard AWS chain: credentials
/// and profile from the environment and files, `region` when the plan
/// names one (else the chain's), and the endpoint from `AWS_ENDPOINT_URL`
/// or `AWS_ENDPOINT_URL_<SERVICE>` when set, so the same binary talks to
/// AWS or to an emulator.
pub async fn load(region: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(retry())
        .timeout_config(timeouts());
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    loader.load().await
}

/// One attempt per call: the engine's retry policy (`retry.rs`) decides
/// whether and when to try again, from the error class.
pub fn retry() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(1)
}

/// A connection must open within 5 s and one attempt finish within 30 s:
/// a hung call becomes a `Timeout` the engine can retry or roll back on.
pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(30))
        .build()
}

/// `sdk` with `region` when the chain found none: some services (STS)
/// answer in every region, but the SDK refuses a call without one. Reuses
/// the loaded chain instead of loading it again.
pub fn or_region(sdk: SdkConfig, region: &str) -> SdkConfig {
    if sdk.region().is_some() {
        return sdk;
    }
    sdk.to_builder()
        .region(Region::new(region.to_owned()))
        .build()
}

/// Whether S3 clients address buckets path-style: whenever an endpoint is
/// configured (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`), since emulators
/// and S3-compatible stores listen on an IP or a single host name where
/// `bucket.host` does not resolve. AWS itself keeps virtual-hosted style.
pub fn s3_path_style(sdk: &SdkConfig) -> bool {
    sdk.endpoint_url().is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some_and(|v| !v.is_empty())
}
