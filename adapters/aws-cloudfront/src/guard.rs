//! The staging traffic guard: a health gate on a CloudFront canary must not
//! pass on a staging distribution that served nothing. CloudFront may send
//! every request to the primary (under load, whatever the policy says), and
//! then an HTTP check or an error-rate query says nothing about the new
//! configuration. The guard reads the staging distribution's `Requests`
//! metric first: none → `NoData` (inconclusive), else the inner probe's
//! verdict.

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use deployctl_adapter::{BoxFuture, HealthProbe, Measurement};

use crate::platform::Api;
use crate::tags;

/// The CloudWatch client configuration for the guard (CloudFront metrics
/// live in us-east-1), with the shared retry and timeout settings.
pub fn cloudwatch_config(sdk: &SdkConfig) -> aws_sdk_cloudwatch::config::Builder {
    aws_sdk_cloudwatch::config::Builder::from(sdk)
        .retry_config(deployctl_aws::config::retry())
        .timeout_config(deployctl_aws::config::timeouts())
}

/// Where the guard finds the staging distribution.
#[derive(Debug, Clone)]
enum Staging {
    /// Known up front.
    Fixed(String),
    /// The one the primary's `deployctl:staging` tag names at measuring
    /// time (it exists only after Deploy).
    OfPrimary { api: Api, primary: String },
}

/// Wraps a probe: no staging traffic in the window is inconclusive.
pub struct StagingTrafficGuard {
    cloudwatch: aws_sdk_cloudwatch::Client,
    staging: Staging,
    window: Duration,
    inner: Box<dyn HealthProbe>,
}

/// Guards `inner` with the `Requests` metric of `primary_distribution_id`'s
/// staging distribution (found through its tags) over the last `window`
/// (at least a minute: CloudFront publishes per-minute sums).
pub fn traffic_guard(
    cloudfront: aws_sdk_cloudfront::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
    primary_distribution_id: impl Into<String>,
    window: Duration,
    inner: Box<dyn HealthProbe>,
) -> Box<dyn HealthProbe> {
    Box::new(StagingTrafficGuard {
        cloudwatch,
        staging: Staging::OfPrimary {
            api: Api { client: cloudfront },
            primary: primary_distribution_id.into(),
        },
        window,
        inner,
    })
}

impl StagingTrafficGuard {
    /// A guard for a known staging distribution.
    pub fn for_staging(
        cloudwatch: aws_sdk_cloudwatch::Client,
        staging_distribution_id: impl Into<String>,
        window: Duration,
        inner: Box<dyn HealthProbe>,
    ) -> Self {
        StagingTrafficGuard {
            cloudwatch,
            staging: Staging::Fixed(staging_distribution_id.into()),
            window,
            inner,
        }
    }

    async fn staging_id(&self) -> Result<Option<String>, String> {
        match &self.staging {
            Staging::Fixed(id) => Ok(Some(id.clone())),
            Staging::OfPrimary { api, primary } => {
                let dist = api
                    .distribution(primary, &mut Vec::new())
                    .await
                    .map_err(|e| e.to_string())?;
                let tags = api
                    .tags(&dist.arn, &mut Vec::new())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(tags.get(tags::STAGING).cloned())
            }
        }
    }

    /// The staging distribution's request count over the window.
    async fn requests(&self, staging: &str) -> Result<(f64, usize), String> {
        let window = self.window.max(Duration::from_secs(60));
        let now = SystemTime::now();
        let start = now.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
        // A minute past now: the current minute's datapoint counts, also
        // where the end time is truncated to whole seconds (moto does).
        let end = now + Duration::from_secs(60);
        let out = self
            .cloudwatch
            .get_metric_statistics()
            .namespace("AWS/CloudFront")
            .metric_name("Requests")
            .dimensions(
                Dimension::builder()
                    .name("DistributionId")
                    .value(staging)
                    .build(),
            )
            .dimensions(Dimension::builder().name("Region").value("Global").build())
            .start_time(DateTime::from(start))
            .end_time(DateTime::from(end))
            .period(60)
            .statistics(Statistic::Sum)
            .send()
            .await
            .map_err(|e| {
                deployctl_aws::map_sdk_error(e, "cloudwatch:GetMetricStatistics").to_string()
            })?;
        let points = out.datapoints.unwrap_or_default();
        let sum = points.iter().filter_map(|p| p.sum).sum();
        Ok((sum, points.len()))
    }
}

impl HealthProbe for StagingTrafficGuard {
    fn measure(&self) -> BoxFuture<'_, Measurement> {
        Box::pin(async move {
            let staging = match self.staging_id().await {
                Ok(Some(id)) => id,
                Ok(None) => {
                    return Measurement::NoData {
                        detail:
                            "no staging distribution is deployed yet, so nothing was measured on it"
                                .into(),
                    };
                }
                Err(error) => {
                    return Measurement::Error {
                        detail: format!("finding the staging distribution: {error}"),
                    };
                }
            };
            let minutes = self.window.max(Duration::from_secs(60)).as_secs() / 60;
            match self.requests(&staging).await {
                Err(error) => Measurement::Error {
                    detail: format!("reading staging distribution {staging}'s requests: {error}"),
                },
                // NaN or a non-positive sum: no traffic worth judging by.
                Ok((sum, _)) if sum.is_nan() || sum <= 0.0 => Measurement::NoData {
                    detail: format!(
                        "staging distribution {staging} served no requests in the last {minutes} min \
                         (CloudFront may be sending all traffic to the primary): inconclusive"
                    ),
                },
                Ok((sum, _)) => match self.inner.measure().await {
                    Measurement::Pass { value, detail } => Measurement::Pass {
                        value,
                        detail: format!(
                            "{detail} (staging served {sum} requests in {minutes} min)"
                        ),
                    },
                    Measurement::Fail { value, detail } => Measurement::Fail {
                        value,
                        detail: format!(
                            "{detail} (staging served {sum} requests in {minutes} min)"
                        ),
                    },
                    other => other,
                },
            }
        })
    }
}
