//! The IAM statements `iam` declares cover every call a CloudWatch gate
//! and an SNS channel really make, recorded from the SDK clients.

use aws_sdk_cloudwatch::types::StateValue;
use deployctl_adapter::iam::Scope;
use deployctl_adapter::{HealthProbe, Measurement, Notifier};
use deployctl_aws::testing::{CallRecorder, moto};
use deployctl_aws_signals::iam::{cloudwatch_gate_statements, sns_statement};
use deployctl_aws_signals::{CloudWatchProbe, SnsNotifier};
use deployctl_plan::model::{Comparison, GateCheck, RunEvent};

use crate::Moto;
use crate::cloudwatch::{create_alarm, metric, put, set_state};

#[tokio::test]
async fn a_gate_and_a_channel_call_only_what_the_policy_allows() {
    let Some(url) = moto("iam::a_gate_and_a_channel_call_only_what_the_policy_allows") else {
        return;
    };
    let moto = Moto::new(&url).await;
    let setup = moto.cloudwatch();
    create_alarm(&setup, "errors").await;
    set_state(&setup, "errors", StateValue::Ok).await;
    put(&setup, "Errors", 0.0).await;

    let recorder = CallRecorder::default();
    let cloudwatch = aws_sdk_cloudwatch::Client::from_conf(
        setup
            .config()
            .to_builder()
            .interceptor(recorder.clone())
            .build(),
    );
    let check = GateCheck::CloudWatch {
        region: Some("us-east-1".into()),
        alarms: vec!["errors".into()],
        metrics: vec![metric("Errors", Comparison::Less, 1.0)],
    };
    let measured = CloudWatchProbe::new(cloudwatch, &check)
        .unwrap()
        .measure()
        .await;
    assert!(matches!(measured, Measurement::Pass { .. }), "{measured:?}");

    let topic = moto
        .sns("us-east-1")
        .create_topic()
        .name("deploys")
        .send()
        .await
        .expect("sns:CreateTopic")
        .topic_arn
        .expect("a topic ARN");
    let sns = aws_sdk_sns::Client::from_conf(
        moto.sns("us-east-1")
            .config()
            .to_builder()
            .interceptor(recorder.clone())
            .build(),
    );
    SnsNotifier::new(sns, &topic)
        .unwrap()
        .notify(&crate::sns::notification(
            RunEvent::Started,
            None,
            "started",
        ))
        .await
        .expect("published");

    let scope = Scope {
        partition: "aws".into(),
        account: "123456789012".into(),
        default_region: "us-east-1".into(),
    };
    let mut statements =
        cloudwatch_gate_statements(Some("us-east-1"), &["errors".into()], true, &scope);
    statements.push(sns_statement(&topic));
    recorder.assert_allowed_by(&statements);
    for action in [
        "cloudwatch:DescribeAlarms",
        "cloudwatch:GetMetricData",
        "sns:Publish",
    ] {
        assert!(
            recorder.actions().contains(action),
            "{action}: {:?}",
            recorder.actions()
        );
    }
}
