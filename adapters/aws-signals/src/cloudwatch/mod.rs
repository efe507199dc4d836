//! The probe behind `cloudwatch` gates (R7): named alarms must be OK and
//! metric thresholds must hold, in one measurement.

mod alarms;
mod metrics;

use aws_config::SdkConfig;
use aws_sdk_cloudwatch::Client;
use deployctl_adapter::{BoxFuture, HealthProbe, Measurement};
use deployctl_plan::model::{GateCheck, MetricCheck};

use crate::SignalsError;
use crate::finding::combine;
use crate::lazy::LazyClient;

/// The CloudWatch client configuration every probe uses: the shared SDK
/// settings with the adapters' one-attempt retry and bounded call times
/// (`deployctl_aws::config`), in `region` when the gate names one. Tests
/// add their interceptors to it before building.
pub fn cloudwatch_config(
    sdk: &SdkConfig,
    region: Option<&str>,
) -> aws_sdk_cloudwatch::config::Builder {
    let mut builder = aws_sdk_cloudwatch::config::Builder::from(sdk)
        .retry_config(deployctl_aws::config::retry())
        .timeout_config(deployctl_aws::config::timeouts());
    if let Some(region) = region {
        builder = builder.region(aws_sdk_cloudwatch::config::Region::new(region.to_owned()));
    }
    builder
}

fn build_client(sdk: &SdkConfig, region: Option<&str>) -> Client {
    Client::from_conf(cloudwatch_config(sdk, region).build())
}

/// Measures a `cloudwatch` gate: DescribeAlarms for the named alarms and
/// GetMetricData for the thresholds, each call bounded by the shared
/// timeouts (a hung call is an `Error` measurement the gate's
/// consecutive-error limit counts). The detail names every alarm's state,
/// every metric's value and the AWS request IDs (S7).
pub struct CloudWatchProbe {
    client: LazyClient<Client>,
    alarms: Vec<String>,
    metrics: Vec<MetricCheck>,
}

impl std::fmt::Debug for CloudWatchProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudWatchProbe")
            .field("alarms", &self.alarms)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

impl CloudWatchProbe {
    /// A probe whose client comes from the standard AWS chain (credentials,
    /// `AWS_ENDPOINT_URL`), in the gate's `region` or the chain's, loaded
    /// on the first measurement. What the binary uses.
    pub fn from_check(check: &GateCheck) -> Result<CloudWatchProbe, SignalsError> {
        let (region, alarms, metrics) = parts(check)?;
        Ok(CloudWatchProbe {
            client: LazyClient::from_chain(region.clone(), build_client),
            alarms,
            metrics,
        })
    }

    /// A probe with a ready client (built with [`cloudwatch_config`]).
    pub fn new(client: Client, check: &GateCheck) -> Result<CloudWatchProbe, SignalsError> {
        let (_, alarms, metrics) = parts(check)?;
        Ok(CloudWatchProbe {
            client: LazyClient::ready(client, build_client),
            alarms,
            metrics,
        })
    }

    async fn measure_now(&self) -> Measurement {
        let client = self.client.get().await;
        let region = client
            .config()
            .region()
            .map_or_else(|| "the default region".to_owned(), ToString::to_string);
        let mut findings = Vec::new();
        if !self.alarms.is_empty() {
            findings.push(alarms::check(&client, &self.alarms, &region).await);
        }
        if !self.metrics.is_empty() {
            findings.extend(metrics::check(&client, &self.metrics).await);
        }
        combine(findings)
    }
}

type Parts = (Option<String>, Vec<String>, Vec<MetricCheck>);

fn parts(check: &GateCheck) -> Result<Parts, SignalsError> {
    let GateCheck::CloudWatch {
        region,
        alarms,
        metrics,
    } = check
    else {
        return Err(SignalsError::NotCloudWatch {
            kind: check.kind().name(),
        });
    };
    if alarms.is_empty() && metrics.is_empty() {
        return Err(SignalsError::NothingToWatch);
    }
    Ok((region.clone(), alarms.clone(), metrics.clone()))
}

impl HealthProbe for CloudWatchProbe {
    fn measure(&self) -> BoxFuture<'_, Measurement> {
        Box::pin(self.measure_now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cloudwatch_gates_with_something_to_watch_get_a_probe() {
        let sim = GateCheck::Sim {
            min_success_rate: 99.0,
        };
        assert_eq!(
            CloudWatchProbe::from_check(&sim).unwrap_err(),
            SignalsError::NotCloudWatch { kind: "sim" }
        );
        let empty = GateCheck::CloudWatch {
            region: None,
            alarms: Vec::new(),
            metrics: Vec::new(),
        };
        assert_eq!(
            CloudWatchProbe::from_check(&empty).unwrap_err(),
            SignalsError::NothingToWatch
        );
        let alarms = GateCheck::CloudWatch {
            region: Some("eu-west-1".to_owned()),
            alarms: vec!["errors".to_owned()],
            metrics: Vec::new(),
        };
        assert!(CloudWatchProbe::from_check(&alarms).is_ok());
    }
}
