//! The staging traffic guard against moto's CloudWatch (and the CloudFront
//! emulator for finding the staging distribution): no requests on staging
//! is inconclusive, never a pass.

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use deployctl_adapter::{Action, BoxFuture, HealthProbe, IdempotencyKey, Measurement, Target};
use deployctl_aws::testing::{MotoAccount, moto, sdk_config};
use deployctl_aws_cloudfront::{StagingTrafficGuard, cloudwatch_config, tags, traffic_guard};

use crate::support::{Account, cloudfront};

/// A probe standing for any gate's probe (HTTP, Prometheus): it always
/// passes, so only the guard can make a measurement inconclusive.
struct Healthy;

impl HealthProbe for Healthy {
    fn measure(&self) -> BoxFuture<'_, Measurement> {
        Box::pin(async {
            Measurement::Pass {
                value: Some(0.0),
                detail: "error rate 0".into(),
            }
        })
    }
}

async fn cloudwatch(url: &str) -> aws_sdk_cloudwatch::Client {
    let sdk = sdk_config(url).await;
    aws_sdk_cloudwatch::Client::from_conf(
        cloudwatch_config(&sdk)
            .interceptor(MotoAccount::fresh())
            .build(),
    )
}

async fn put_requests(cw: &aws_sdk_cloudwatch::Client, staging: &str, requests: f64) {
    cw.put_metric_data()
        .namespace("AWS/CloudFront")
        .metric_data(
            MetricDatum::builder()
                .metric_name("Requests")
                .dimensions(
                    Dimension::builder()
                        .name("DistributionId")
                        .value(staging)
                        .build(),
                )
                .dimensions(Dimension::builder().name("Region").value("Global").build())
                .timestamp(DateTime::from(SystemTime::now()))
                .value(requests)
                .unit(StandardUnit::None)
                .build(),
        )
        .send()
        .await
        .expect("cloudwatch:PutMetricData");
}

#[tokio::test]
async fn no_staging_traffic_is_inconclusive_and_traffic_lets_the_probe_decide() {
    let Some(url) = moto("no_staging_traffic_is_inconclusive_and_traffic_lets_the_probe_decide")
    else {
        return;
    };
    let cw = cloudwatch(&url).await;
    let window = Duration::from_secs(300);

    let quiet =
        StagingTrafficGuard::for_staging(cw.clone(), "ESTAGINGQUIET", window, Box::new(Healthy));
    let measured = quiet.measure().await;
    assert!(
        matches!(measured, Measurement::NoData { .. }),
        "{measured:?}"
    );
    assert!(measured.detail().contains("no requests"), "{measured:?}");

    // Datapoints that say zero requests are no traffic either.
    put_requests(&cw, "ESTAGINGZERO", 0.0).await;
    let zero =
        StagingTrafficGuard::for_staging(cw.clone(), "ESTAGINGZERO", window, Box::new(Healthy));
    let measured = zero.measure().await;
    assert!(
        matches!(measured, Measurement::NoData { .. }),
        "{measured:?}"
    );

    put_requests(&cw, "ESTAGINGBUSY", 42.0).await;
    let busy =
        StagingTrafficGuard::for_staging(cw.clone(), "ESTAGINGBUSY", window, Box::new(Healthy));
    let measured = busy.measure().await;
    assert!(matches!(measured, Measurement::Pass { .. }), "{measured:?}");
    assert!(measured.detail().contains("42"), "{measured:?}");

    // Another distribution's traffic does not count.
    let other = StagingTrafficGuard::for_staging(cw, "ESTAGINGOTHER", window, Box::new(Healthy));
    assert!(matches!(other.measure().await, Measurement::NoData { .. }));
}

#[tokio::test]
async fn the_guard_finds_the_staging_distribution_through_the_primary() {
    let test = "the_guard_finds_the_staging_distribution_through_the_primary";
    let (Some(moto_url), Some(cf_url)) = (moto(test), cloudfront(test)) else {
        return;
    };
    let account = Account::new(&cf_url).await;
    let primary = account.primary().await;
    let cw = cloudwatch(&moto_url).await;
    let guard = traffic_guard(
        account.cf.clone(),
        cw.clone(),
        &primary,
        Duration::from_secs(300),
        Box::new(Healthy),
    );
    // Before Deploy there is no staging distribution to have traffic.
    assert!(matches!(guard.measure().await, Measurement::NoData { .. }));

    let target = account.target(&primary);
    target
        .apply(
            &Action::Deploy {
                version: "v2".into(),
            },
            &IdempotencyKey("guard/1".into()),
        )
        .await
        .unwrap();
    let staging = account.tag(&primary, tags::STAGING).await.expect("staging");
    assert!(matches!(guard.measure().await, Measurement::NoData { .. }));
    put_requests(&cw, &staging, 7.0).await;
    let measured = guard.measure().await;
    assert!(matches!(measured, Measurement::Pass { .. }), "{measured:?}");
}

/// The engine reaches the guard through `Target::guard`: a target built
/// with a traffic guard wraps any gate's probe, one without leaves it be.
#[tokio::test]
async fn the_target_guards_every_gate_through_the_adapter_contract() {
    let Some(moto_url) = moto("the_target_guards_every_gate_through_the_adapter_contract") else {
        return;
    };
    let Some(cf_url) = cloudfront("the_target_guards_every_gate_through_the_adapter_contract")
    else {
        return;
    };
    let account = Account::new(&cf_url).await;
    let primary = account.primary().await;
    let guarded = account
        .target(&primary)
        .with_traffic_guard(cloudwatch(&moto_url).await, Duration::from_secs(300));
    guarded
        .apply(
            &Action::Deploy {
                version: "v2".into(),
            },
            &IdempotencyKey("test/cf-guard/1".into()),
        )
        .await
        .unwrap();
    let measured = guarded.guard(Box::new(Healthy)).measure().await;
    assert!(
        matches!(measured, Measurement::NoData { .. }),
        "no staging traffic must not pass: {measured:?}"
    );
    let unguarded = account
        .target(&primary)
        .guard(Box::new(Healthy))
        .measure()
        .await;
    assert!(
        matches!(unguarded, Measurement::Pass { .. }),
        "{unguarded:?}"
    );
}
