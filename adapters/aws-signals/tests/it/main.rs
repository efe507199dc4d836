//! deployctl-aws-signals against moto's server mode (`tests/moto.sh`;
//! `bash tests/run.sh` starts it and sets `DEPLOYCTL_TEST_MOTO_URL`).
//! Without that variable every test here is skipped with a message.
//!
//! Each test works in its own moto account (`x-moto-account-id`), so tests
//! run in parallel on one server without seeing each other's alarms,
//! metrics, topics or queues.

mod cloudwatch;
mod iam;
mod sns;

use aws_config::SdkConfig;
use deployctl_aws::testing::{MotoAccount, sdk_config};

/// One test's account and the SDK settings to reach it.
pub struct Moto {
    pub sdk: SdkConfig,
    pub account: MotoAccount,
}

impl Moto {
    pub async fn new(url: &str) -> Moto {
        Moto {
            sdk: sdk_config(url).await,
            account: MotoAccount::fresh(),
        }
    }

    pub fn cloudwatch(&self) -> aws_sdk_cloudwatch::Client {
        aws_sdk_cloudwatch::Client::from_conf(
            deployctl_aws_signals::cloudwatch_config(&self.sdk, None)
                .interceptor(self.account.clone())
                .build(),
        )
    }

    pub fn sns(&self, region: &str) -> aws_sdk_sns::Client {
        aws_sdk_sns::Client::from_conf(
            deployctl_aws_signals::sns_config(&self.sdk, Some(region))
                .interceptor(self.account.clone())
                .build(),
        )
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&self.sdk)
                .interceptor(self.account.clone())
                .build(),
        )
    }
}
