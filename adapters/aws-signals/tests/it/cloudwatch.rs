//! `cloudwatch` gates measured on moto: alarm states driven with
//! SetAlarmState (moto never evaluates alarms from data), thresholds fed
//! with PutMetricData.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, MetricDatum, StateValue, Statistic,
};
use deployctl_adapter::{HealthProbe, Measurement};
use deployctl_aws::testing::moto;
use deployctl_aws_signals::{CloudWatchProbe, cloudwatch_config};
use deployctl_plan::model::{Comparison, GateCheck, MetricCheck};

use crate::Moto;

fn alarm_gate(alarms: &[&str]) -> GateCheck {
    GateCheck::CloudWatch {
        region: Some("us-east-1".to_owned()),
        alarms: alarms.iter().map(|a| (*a).to_owned()).collect(),
        metrics: Vec::new(),
    }
}

pub fn metric(name: &str, comparison: Comparison, threshold: f64) -> MetricCheck {
    MetricCheck {
        namespace: "deployctl/test".to_owned(),
        metric_name: name.to_owned(),
        dimensions: BTreeMap::from([("Service".to_owned(), "checkout".to_owned())]),
        statistic: "Sum".to_owned(),
        period: Duration::from_secs(60),
        comparison,
        threshold,
    }
}

pub async fn create_alarm(client: &aws_sdk_cloudwatch::Client, name: &str) {
    client
        .put_metric_alarm()
        .alarm_name(name)
        .namespace("AWS/Lambda")
        .metric_name("Errors")
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(1.0)
        .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
        .send()
        .await
        .expect("cloudwatch:PutMetricAlarm");
}

pub async fn set_state(client: &aws_sdk_cloudwatch::Client, name: &str, state: StateValue) {
    client
        .set_alarm_state()
        .alarm_name(name)
        .state_value(state)
        .state_reason("set by the test")
        .send()
        .await
        .expect("cloudwatch:SetAlarmState");
}

pub async fn put(client: &aws_sdk_cloudwatch::Client, name: &str, value: f64) {
    put_at(client, name, value, None).await;
}

/// A datapoint at `at` (Unix seconds; now when `None`). Datapoints meant
/// for one period share a timestamp: two puts a moment apart may fall on
/// either side of a minute boundary.
pub async fn put_at(client: &aws_sdk_cloudwatch::Client, name: &str, value: f64, at: Option<i64>) {
    client
        .put_metric_data()
        .namespace("deployctl/test")
        .metric_data(
            MetricDatum::builder()
                .metric_name(name)
                .dimensions(
                    Dimension::builder()
                        .name("Service")
                        .value("checkout")
                        .build(),
                )
                .value(value)
                .set_timestamp(at.map(aws_sdk_cloudwatch::primitives::DateTime::from_secs))
                .build(),
        )
        .send()
        .await
        .expect("cloudwatch:PutMetricData");
}

#[tokio::test]
async fn alarms_pass_only_while_every_one_is_ok() {
    let Some(url) = moto("cloudwatch::alarms_pass_only_while_every_one_is_ok") else {
        return;
    };
    let moto = Moto::new(&url).await;
    let client = moto.cloudwatch();
    create_alarm(&client, "checkout-errors").await;
    create_alarm(&client, "checkout-latency").await;
    let probe = CloudWatchProbe::new(
        client.clone(),
        &alarm_gate(&["checkout-errors", "checkout-latency"]),
    )
    .unwrap();

    // moto creates alarms in OK (AWS would start in INSUFFICIENT_DATA);
    // set it explicitly so the test says what it means.
    set_state(&client, "checkout-errors", StateValue::Ok).await;
    set_state(&client, "checkout-latency", StateValue::Ok).await;
    let measured = probe.measure().await;
    assert!(matches!(measured, Measurement::Pass { .. }), "{measured:?}");
    assert!(
        measured
            .detail()
            .contains("checkout-errors=OK, checkout-latency=OK"),
        "{measured:?}"
    );
    assert!(
        measured.detail().contains("(requests "),
        "request IDs: {measured:?}"
    );

    set_state(&client, "checkout-latency", StateValue::Alarm).await;
    let measured = probe.measure().await;
    assert!(matches!(measured, Measurement::Fail { .. }), "{measured:?}");
    assert!(
        measured.detail().starts_with("in ALARM: checkout-latency;"),
        "{measured:?}"
    );

    set_state(&client, "checkout-latency", StateValue::InsufficientData).await;
    let measured = probe.measure().await;
    assert!(
        matches!(measured, Measurement::NoData { .. }),
        "{measured:?}"
    );
    assert!(
        measured
            .detail()
            .contains("checkout-latency=INSUFFICIENT_DATA"),
        "{measured:?}"
    );

    set_state(&client, "checkout-latency", StateValue::Ok).await;
    assert!(matches!(probe.measure().await, Measurement::Pass { .. }));
}

#[tokio::test]
async fn a_missing_alarm_is_inconclusive_and_named() {
    let Some(url) = moto("cloudwatch::a_missing_alarm_is_inconclusive_and_named") else {
        return;
    };
    let moto = Moto::new(&url).await;
    let client = moto.cloudwatch();
    create_alarm(&client, "checkout-errors").await;
    let probe =
        CloudWatchProbe::new(client, &alarm_gate(&["checkout-errors", "checkout-eror"])).unwrap();
    let measured = probe.measure().await;
    assert!(
        matches!(measured, Measurement::NoData { .. }),
        "{measured:?}"
    );
    assert!(
        measured
            .detail()
            .contains("no alarm named `checkout-eror` exists in us-east-1"),
        "{measured:?}"
    );
}

#[tokio::test]
async fn metric_thresholds_compare_the_newest_datapoint() {
    let Some(url) = moto("cloudwatch::metric_thresholds_compare_the_newest_datapoint") else {
        return;
    };
    let moto = Moto::new(&url).await;
    let client = moto.cloudwatch();
    // One instant for every datapoint: the sum of a period is tested.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
        - 1;
    put_at(&client, "Errors", 0.0, Some(now)).await;
    put_at(&client, "Throttles", 4.0, Some(now)).await;
    put_at(&client, "Throttles", 3.0, Some(now)).await;

    let gate = |metrics: Vec<MetricCheck>| GateCheck::CloudWatch {
        region: None,
        alarms: Vec::new(),
        metrics,
    };
    let healthy = CloudWatchProbe::new(
        client.clone(),
        &gate(vec![metric("Errors", Comparison::Less, 1.0)]),
    )
    .unwrap();
    let measured = healthy.measure().await;
    assert_eq!(measured.value(), Some(0.0), "{measured:?}");
    assert!(matches!(measured, Measurement::Pass { .. }), "{measured:?}");
    assert!(
        measured
            .detail()
            .starts_with("deployctl/test Errors{Service=checkout} Sum/60s = 0 (needs < 1)"),
        "{measured:?}"
    );

    // Sum over the period: 4 + 3 = 7, which breaches <= 5.
    let breaching = CloudWatchProbe::new(
        client.clone(),
        &gate(vec![
            metric("Errors", Comparison::Less, 1.0),
            metric("Throttles", Comparison::LessOrEqual, 5.0),
        ]),
    )
    .unwrap();
    let measured = breaching.measure().await;
    assert!(matches!(measured, Measurement::Fail { .. }), "{measured:?}");
    assert_eq!(measured.value(), Some(7.0), "{measured:?}");

    let quiet = CloudWatchProbe::new(
        client,
        &gate(vec![metric("NeverWritten", Comparison::Less, 1.0)]),
    )
    .unwrap();
    let measured = quiet.measure().await;
    assert!(
        matches!(measured, Measurement::NoData { .. }),
        "{measured:?}"
    );
    assert!(
        measured.detail().contains("no datapoints in the last 60s"),
        "{measured:?}"
    );
}

#[tokio::test]
async fn an_unreachable_cloudwatch_is_an_error_measurement() {
    // Port 9 (discard) on loopback: nothing listens, the connection is refused.
    let sdk = deployctl_aws::testing::sdk_config("http://127.0.0.1:9").await;
    let client = aws_sdk_cloudwatch::Client::from_conf(cloudwatch_config(&sdk, None).build());
    let probe = CloudWatchProbe::new(client, &alarm_gate(&["checkout-errors"])).unwrap();
    let measured = probe.measure().await;
    assert!(
        matches!(measured, Measurement::Error { .. }),
        "{measured:?}"
    );
    assert!(
        measured.detail().contains("cloudwatch:DescribeAlarms"),
        "{measured:?}"
    );
}
