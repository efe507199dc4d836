//! SDK clients from the standard AWS chain.

use aws_config::SdkConfig;

use crate::bridge::Bridge;

/// The shared configuration from the standard chain
/// ([`deployctl_aws::config::load`]: environment, profile, one attempt per
/// call, bounded call times), loaded on `bridge`.
pub(crate) fn load(bridge: &Bridge) -> Result<SdkConfig, crate::AwsAuditError> {
    bridge
        .run(deployctl_aws::config::load(None))
        .map_err(|stopped| crate::AwsAuditError::Call(stopped.to_string()))
}

/// An S3 client for `config`. Path-style addressing whenever an endpoint
/// is configured (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`): emulators
/// and S3-compatible stores listen on an IP or a single host name, where
/// `bucket.host` does not resolve. AWS itself keeps virtual-hosted style.
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let overridden = config.endpoint_url().is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some_and(|v| !v.is_empty());
    let s3 = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(overridden)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}
