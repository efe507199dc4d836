//! SNS notifications on moto, read back the way a subscriber sees them:
//! through an SQS queue subscribed to the topic.

use deployctl_adapter::{AdapterError, Notification, Notifier};
use deployctl_aws::testing::moto;
use deployctl_aws_signals::SnsNotifier;
use deployctl_plan::model::RunEvent;

use crate::Moto;

pub fn notification(event: RunEvent, stage: Option<&str>, message: &str) -> Notification {
    Notification {
        api_version: Notification::API_VERSION,
        kind: Notification::KIND,
        event,
        run: "r-20261124-0001".to_owned(),
        plan: "checkout".to_owned(),
        environment: "prod".to_owned(),
        stage: stage.map(str::to_owned),
        message: message.to_owned(),
        at: "2026-11-24T12:00:00.000Z".to_owned(),
    }
}

/// A topic and a queue subscribed to it (optionally through a filter
/// policy); returns (topic ARN, queue URL).
async fn topic_with_queue(moto: &Moto, topic: &str, filter: Option<&str>) -> (String, String) {
    let sns = moto.sns("us-east-1");
    let sqs = moto.sqs();
    let topic_arn = sns
        .create_topic()
        .name(topic)
        .send()
        .await
        .expect("sns:CreateTopic")
        .topic_arn()
        .expect("a topic ARN")
        .to_owned();
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("{topic}-inbox"))
        .send()
        .await
        .expect("sqs:CreateQueue")
        .queue_url()
        .expect("a queue URL")
        .to_owned();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("sqs:GetQueueAttributes")
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .expect("a queue ARN")
        .clone();
    let mut subscribe = sns
        .subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn);
    if let Some(filter) = filter {
        subscribe = subscribe.attributes("FilterPolicy", filter);
    }
    subscribe.send().await.expect("sns:Subscribe");
    (topic_arn, queue_url)
}

/// Every SNS envelope waiting in the queue, parsed.
async fn receive(moto: &Moto, queue_url: &str) -> Vec<serde_json::Value> {
    let answer = moto
        .sqs()
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("sqs:ReceiveMessage");
    answer
        .messages()
        .iter()
        .map(|m| serde_json::from_str(m.body().expect("a body")).expect("an SNS envelope"))
        .collect()
}

#[tokio::test]
async fn a_rollback_reaches_a_subscribed_queue_with_its_attributes() {
    let Some(url) = moto("sns::a_rollback_reaches_a_subscribed_queue_with_its_attributes") else {
        return;
    };
    let moto = Moto::new(&url).await;
    let (topic_arn, queue) = topic_with_queue(&moto, "deploys", None).await;
    let notifier = SnsNotifier::new(moto.sns("us-east-1"), &topic_arn).unwrap();
    assert_eq!(notifier.describe(), format!("SNS {topic_arn}"));

    notifier
        .notify(&notification(
            RunEvent::RolledBack,
            Some("api-canary"),
            "gate api-health failed: in ALARM: checkout-errors",
        ))
        .await
        .expect("published");

    let received = receive(&moto, &queue).await;
    assert_eq!(received.len(), 1, "{received:?}");
    let envelope = &received[0];
    assert_eq!(envelope["Type"], "Notification");
    assert_eq!(envelope["TopicArn"], topic_arn.as_str());
    assert_eq!(
        envelope["Subject"],
        "deployctl rolledBack: checkout (prod) stage api-canary, run r-20261124-0001"
    );
    let message: serde_json::Value =
        serde_json::from_str(envelope["Message"].as_str().expect("a message")).unwrap();
    assert_eq!(message["apiVersion"], "deployctl.io/v1");
    assert_eq!(message["kind"], "RunNotification");
    assert_eq!(message["event"], "rolledBack");
    assert_eq!(message["run"], "r-20261124-0001");
    assert_eq!(message["stage"], "api-canary");
    assert_eq!(
        message["message"],
        "gate api-health failed: in ALARM: checkout-errors"
    );
    let attributes = &envelope["MessageAttributes"];
    for (name, value) in [
        ("event", "rolledBack"),
        ("severity", "warning"),
        ("run", "r-20261124-0001"),
        ("plan", "checkout"),
        ("environment", "prod"),
        ("stage", "api-canary"),
    ] {
        assert_eq!(attributes[name]["Type"], "String", "{name}: {attributes}");
        assert_eq!(attributes[name]["Value"], value, "{name}: {attributes}");
    }
}

#[tokio::test]
async fn subscribers_can_filter_on_severity() {
    let Some(url) = moto("sns::subscribers_can_filter_on_severity") else {
        return;
    };
    let moto = Moto::new(&url).await;
    let (topic_arn, everything) = topic_with_queue(&moto, "deploys", None).await;
    let sqs = moto.sqs();
    // A second queue that only wants what needs a human now.
    let pager = sqs
        .create_queue()
        .queue_name("pager")
        .send()
        .await
        .expect("sqs:CreateQueue")
        .queue_url()
        .expect("a queue URL")
        .to_owned();
    let pager_arn = sqs
        .get_queue_attributes()
        .queue_url(&pager)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("sqs:GetQueueAttributes")
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .expect("a queue ARN")
        .clone();
    moto.sns("us-east-1")
        .subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(pager_arn)
        .attributes("FilterPolicy", r#"{"severity": ["critical"]}"#)
        .send()
        .await
        .expect("sns:Subscribe");

    let notifier = SnsNotifier::new(moto.sns("us-east-1"), &topic_arn).unwrap();
    for event in [RunEvent::Started, RunEvent::RollbackIncomplete] {
        notifier
            .notify(&notification(event, None, "see the run"))
            .await
            .expect("published");
    }

    let paged = receive(&moto, &pager).await;
    assert_eq!(paged.len(), 1, "{paged:?}");
    assert_eq!(
        paged[0]["MessageAttributes"]["event"]["Value"],
        "rollbackIncomplete"
    );
    assert_eq!(
        paged[0]["MessageAttributes"]["severity"]["Value"],
        "critical"
    );
    assert!(
        paged[0]["MessageAttributes"].get("stage").is_none(),
        "no stage, no empty attribute: {}",
        paged[0]
    );
    let mut all = receive(&moto, &everything).await;
    all.extend(receive(&moto, &everything).await);
    assert_eq!(all.len(), 2, "{all:?}");
}

#[tokio::test]
async fn a_missing_topic_is_not_found() {
    let Some(url) = moto("sns::a_missing_topic_is_not_found") else {
        return;
    };
    let moto = Moto::new(&url).await;
    let arn = format!("arn:aws:sns:us-east-1:{}:nobody-made-this", moto.account.0);
    let notifier = SnsNotifier::new(moto.sns("us-east-1"), &arn).unwrap();
    let error = notifier
        .notify(&notification(RunEvent::Started, None, "hello"))
        .await
        .expect_err("no such topic");
    assert!(matches!(error, AdapterError::NotFound { .. }), "{error:?}");
    assert!(error.to_string().contains("sns:Publish"), "{error}");
}
