//! Who deployctl acts as on AWS: the caller ARN that STS `GetCallerIdentity`
//! reports for the credentials in use, so every audit record can name the
//! AWS principal behind the local operator (R10, S7: the same ARN appears
//! as `userIdentity.arn` in CloudTrail).

use aws_config::SdkConfig;
use aws_sdk_sts::Client;
use deployctl_adapter::AdapterError;

use crate::error::map_sdk_error;

/// The STS client configuration: the shared SDK settings with the
/// adapters' retry and timeout policy ([`crate::config`]). Tests add their
/// interceptors to it before building.
pub fn sts_config(sdk: &SdkConfig) -> aws_sdk_sts::config::Builder {
    aws_sdk_sts::config::Builder::from(sdk)
        .retry_config(crate::config::retry())
        .timeout_config(crate::config::timeouts())
}

/// The ARN of the principal `sdk`'s credentials belong to (an IAM user, or
/// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION` for a role).
/// `GetCallerIdentity` needs no permission, so a failure here means the
/// credentials themselves are missing, expired or invalid, or AWS is
/// unreachable.
pub async fn caller_arn(sdk: &SdkConfig) -> Result<String, AdapterError> {
    caller_arn_with(&Client::from_conf(sts_config(sdk).build())).await
}

/// [`caller_arn`] with a ready client (tests add a moto account to it).
pub async fn caller_arn_with(client: &Client) -> Result<String, AdapterError> {
    let identity = client
        .get_caller_identity()
        .send()
        .await
        .map_err(|error| map_sdk_error(error, "sts:GetCallerIdentity"))?;
    match identity.arn() {
        Some(arn) if !arn.is_empty() => Ok(arn.to_owned()),
        _ => Err(AdapterError::Rejected {
            message: "sts:GetCallerIdentity answered without an ARN".to_owned(),
            request_id: aws_sdk_sts::operation::RequestId::request_id(&identity).map(str::to_owned),
        }),
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::testing::{MotoAccount, moto, sdk_config};

    #[tokio::test]
    async fn moto_names_its_default_user() {
        let Some(url) = moto("identity::moto_names_its_default_user") else {
            return;
        };
        let arn = caller_arn(&sdk_config(&url).await)
            .await
            .expect("GetCallerIdentity");
        // moto answers `arn:aws:sts::123456789012:user/moto` (AWS would
        // say `arn:aws:iam::…` for a user; either way the account and name).
        assert!(
            arn.starts_with("arn:aws:") && arn.ends_with(":123456789012:user/moto"),
            "{arn}"
        );
    }

    #[tokio::test]
    async fn the_arn_names_the_callers_account() {
        let Some(url) = moto("identity::the_arn_names_the_callers_account") else {
            return;
        };
        let account = MotoAccount::fresh();
        let sdk = sdk_config(&url).await;
        let client = Client::from_conf(sts_config(&sdk).interceptor(account.clone()).build());
        let arn = caller_arn_with(&client).await.expect("GetCallerIdentity");
        assert!(arn.contains(&format!("::{}:", account.0)), "{arn}");
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_a_timeout_not_an_identity() {
        // Nothing listens on port 9 (discard) on the loopback interface.
        let sdk = sdk_config("http://127.0.0.1:9").await;
        let error = caller_arn(&sdk).await.expect_err("no STS there");
        assert!(matches!(error, AdapterError::Timeout { .. }), "{error:?}");
        assert!(
            error.to_string().contains("sts:GetCallerIdentity"),
            "{error}"
        );
    }
}
