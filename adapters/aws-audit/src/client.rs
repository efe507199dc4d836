//! SDK clients from the standard AWS chain.

use aws_config::SdkConfig;

use deployctl_aws::bridge::Bridge;

/// The shared configuration from the standard chain
/// ([`deployctl_aws::config::load`]: environment, profile, one attempt per
/// call, bounded call times), loaded on `bridge`.
pub(crate) fn load(bridge: &Bridge) -> Result<SdkConfig, crate::AwsAuditError> {
    bridge
        .run(deployctl_aws::config::load(None))
        .map_err(|stopped| crate::AwsAuditError::Call(stopped.to_string()))
}

/// An S3 client for `config`, path-style where
/// [`deployctl_aws::config::s3_path_style`] says.
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let s3 = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(deployctl_aws::config::s3_path_style(config))
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}
