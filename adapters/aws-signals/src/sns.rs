//! SNS notifications (S5, O8): each run event published to the plan's
//! topic, its JSON wire shape as the message, with a short Subject for
//! e-mail subscribers and MessageAttributes (`event`, `severity`, `run`,
//! `plan`, `environment`, `stage`) that subscription filter policies can
//! select on, e.g. `{"severity": ["critical"]}` for the pager.

use aws_config::SdkConfig;
use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;
use deployctl_adapter::{AdapterError, BoxFuture, Notification, Notifier};
use deployctl_aws::map_sdk_error;
use deployctl_plan::model::RunEvent;

use crate::SignalsError;
use crate::lazy::LazyClient;

/// SNS limits a message with its attributes to 256 KiB; the body is kept
/// under this, leaving room for the attributes.
const MAX_BODY: usize = 250 * 1024;
/// SNS subjects: at most 100 ASCII characters, no line breaks.
const MAX_SUBJECT: usize = 100;
/// FIFO group and deduplication IDs: at most 128 characters.
const MAX_FIFO_ID: usize = 128;

/// How urgent an event is, for subscription filters and routing.
pub fn severity(event: RunEvent) -> &'static str {
    match event {
        RunEvent::Started
        | RunEvent::Succeeded
        | RunEvent::Paused
        | RunEvent::ApprovalRequested => "info",
        RunEvent::GateFailed | RunEvent::RolledBack | RunEvent::Killed => "warning",
        // A human must act: the release is half undone, or someone failed
        // to prove who they are on a protected run.
        RunEvent::RollbackIncomplete | RunEvent::SecurityEvent => "critical",
    }
}

/// The event's name as plans spell it (`rolledBack`).
pub fn event_name(event: RunEvent) -> &'static str {
    RunEvent::ALL
        .iter()
        .find(|(_, known)| *known == event)
        .map_or("unknown", |(name, _)| *name)
}

/// A topic ARN's parts that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicArn {
    pub arn: String,
    pub region: String,
    pub fifo: bool,
}

impl TopicArn {
    /// Parses `arn:PARTITION:sns:REGION:ACCOUNT:TOPIC`.
    pub fn parse(arn: &str) -> Result<TopicArn, SignalsError> {
        let bad = |reason| SignalsError::TopicArn {
            arn: arn.to_owned(),
            reason,
        };
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [prefix, partition, service, region, account, topic] = parts[..] else {
            return Err(bad("it has fewer than six `:`-separated parts"));
        };
        if prefix != "arn" || partition.is_empty() {
            return Err(bad("it does not start with arn:PARTITION"));
        }
        if service != "sns" {
            return Err(bad("its service is not sns"));
        }
        if region.is_empty() {
            return Err(bad("it names no region"));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("its account is not 12 digits"));
        }
        if topic.is_empty() || topic.contains(':') {
            return Err(bad("its topic name is empty or has a subscription suffix"));
        }
        Ok(TopicArn {
            arn: arn.to_owned(),
            region: region.to_owned(),
            fifo: topic.ends_with(".fifo"),
        })
    }
}

/// The SNS client configuration: the shared SDK settings with the
/// adapters' retry and timeouts, in `region` (the topic's). Tests add their
/// interceptors to it before building.
pub fn sns_config(sdk: &SdkConfig, region: Option<&str>) -> aws_sdk_sns::config::Builder {
    let mut builder = aws_sdk_sns::config::Builder::from(sdk)
        .retry_config(deployctl_aws::config::retry())
        .timeout_config(deployctl_aws::config::timeouts());
    if let Some(region) = region {
        builder = builder.region(aws_sdk_sns::config::Region::new(region.to_owned()));
    }
    builder
}

fn build_client(sdk: &SdkConfig, region: Option<&str>) -> Client {
    Client::from_conf(sns_config(sdk, region).build())
}

/// Publishes each notification to one SNS topic.
pub struct SnsNotifier {
    client: LazyClient<Client>,
    topic: TopicArn,
}

impl std::fmt::Debug for SnsNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnsNotifier")
            .field("topic", &self.topic.arn)
            .finish_non_exhaustive()
    }
}

impl SnsNotifier {
    /// A notifier whose client comes from the standard AWS chain
    /// (credentials, `AWS_ENDPOINT_URL`) in the topic's region, loaded on
    /// the first delivery. What the binary uses.
    pub fn from_topic_arn(topic_arn: &str) -> Result<SnsNotifier, SignalsError> {
        let topic = TopicArn::parse(topic_arn)?;
        Ok(SnsNotifier {
            client: LazyClient::from_chain(Some(topic.region.clone()), build_client),
            topic,
        })
    }

    /// A notifier with a ready client (built with [`sns_config`] in the
    /// topic's region).
    pub fn new(client: Client, topic_arn: &str) -> Result<SnsNotifier, SignalsError> {
        Ok(SnsNotifier {
            client: LazyClient::ready(client, build_client),
            topic: TopicArn::parse(topic_arn)?,
        })
    }

    /// The topic ARN's region, for building the client of [`SnsNotifier::new`].
    pub fn region_of(topic_arn: &str) -> Result<String, SignalsError> {
        TopicArn::parse(topic_arn).map(|topic| topic.region)
    }

    async fn publish(&self, notification: &Notification) -> Result<(), AdapterError> {
        let client = self.client.get().await;
        let mut request = client
            .publish()
            .topic_arn(&self.topic.arn)
            .subject(subject(notification))
            .message(body(notification)?);
        for (name, value) in attributes(notification) {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|error| AdapterError::Rejected {
                    message: format!("SNS message attribute `{name}`: {error}"),
                    request_id: None,
                })?;
            request = request.message_attributes(name, value);
        }
        if self.topic.fifo {
            // One group per run keeps a run's events in order; the
            // deduplication ID makes a retried delivery of the same event
            // harmless within SNS's five-minute window.
            request = request
                .message_group_id(fifo_id(&notification.run))
                .message_deduplication_id(fifo_id(&format!(
                    "{}:{}:{}:{}",
                    notification.run,
                    event_name(notification.event),
                    notification.stage.as_deref().unwrap_or("-"),
                    notification.at
                )));
        }
        request
            .send()
            .await
            .map(|_| ())
            .map_err(|error| map_sdk_error(error, &format!("sns:Publish to {}", self.topic.arn)))
    }
}

impl Notifier for SnsNotifier {
    fn notify<'a>(
        &'a self,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(self.publish(notification))
    }

    fn describe(&self) -> String {
        format!("SNS {}", self.topic.arn)
    }
}

/// `deployctl rolledBack: checkout (prod) stage api, run r-1`, made safe for
/// SNS (printable ASCII, no line breaks, at most 100 characters).
pub fn subject(notification: &Notification) -> String {
    let mut subject = format!(
        "deployctl {}: {} ({})",
        event_name(notification.event),
        notification.plan,
        notification.environment
    );
    if let Some(stage) = &notification.stage {
        subject.push_str(&format!(" stage {stage}"));
    }
    subject.push_str(&format!(", run {}", notification.run));
    subject
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(MAX_SUBJECT)
        .collect()
}

/// The attributes subscribers filter on. SNS refuses empty values, so an
/// absent or empty field is left out rather than sent blank.
pub fn attributes(notification: &Notification) -> Vec<(&'static str, String)> {
    let mut attributes = vec![
        ("event", event_name(notification.event).to_owned()),
        ("severity", severity(notification.event).to_owned()),
        ("run", notification.run.clone()),
        ("plan", notification.plan.clone()),
        ("environment", notification.environment.clone()),
    ];
    if let Some(stage) = &notification.stage {
        attributes.push(("stage", stage.clone()));
    }
    attributes.retain(|(_, value)| !value.trim().is_empty());
    attributes
}

/// The notification's JSON wire shape; an oversized message text is cut
/// (on a character boundary) so the event itself still gets through.
fn body(notification: &Notification) -> Result<String, AdapterError> {
    let encode = |n: &Notification| {
        serde_json::to_string(n).map_err(|error| AdapterError::Rejected {
            message: format!("cannot encode the notification: {error}"),
            request_id: None,
        })
    };
    let json = encode(notification)?;
    if json.len() <= MAX_BODY {
        return Ok(json);
    }
    let mut cut = notification.clone();
    let keep = MAX_BODY.saturating_sub(json.len() - notification.message.len() + 64);
    let mut end = keep.min(cut.message.len());
    while !cut.message.is_char_boundary(end) {
        end -= 1;
    }
    cut.message.truncate(end);
    cut.message.push_str(" … (cut to fit SNS)");
    encode(&cut)
}

/// A FIFO group or deduplication ID: SNS allows letters, digits and ASCII
/// punctuation, at most 128 of them.
fn fifo_id(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(MAX_FIFO_ID)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(event: RunEvent, stage: Option<&str>) -> Notification {
        Notification {
            api_version: Notification::API_VERSION,
            kind: Notification::KIND,
            event,
            run: "r-42".to_owned(),
            plan: "checkout".to_owned(),
            environment: "prod".to_owned(),
            stage: stage.map(str::to_owned),
            message: "gate api-health failed".to_owned(),
            at: "2026-11-24T12:00:00.000Z".to_owned(),
        }
    }

    #[test]
    fn topic_arns_give_their_region() {
        let topic = TopicArn::parse("arn:aws:sns:eu-west-1:123456789012:deploys").unwrap();
        assert_eq!((topic.region.as_str(), topic.fifo), ("eu-west-1", false));
        let fifo = TopicArn::parse("arn:aws-cn:sns:cn-north-1:123456789012:d.fifo").unwrap();
        assert!(fifo.fifo);
    }

    #[test]
    fn malformed_topic_arns_say_what_is_wrong() {
        for (arn, reason) in [
            ("deploys", "fewer than six"),
            ("arn:aws:sqs:us-east-1:123456789012:q", "service is not sns"),
            ("arn:aws:sns::123456789012:t", "no region"),
            ("arn:aws:sns:us-east-1:1234:t", "12 digits"),
            (
                "arn:aws:sns:us-east-1:123456789012:t:0c1d-sub",
                "subscription suffix",
            ),
        ] {
            let error = TopicArn::parse(arn).unwrap_err().to_string();
            assert!(error.contains(reason) && error.contains(arn), "{error}");
        }
    }

    #[test]
    fn every_event_has_a_name_and_a_severity() {
        for (name, event) in RunEvent::ALL {
            assert_eq!(event_name(event), name);
            assert!(["info", "warning", "critical"].contains(&severity(event)));
        }
        assert_eq!(severity(RunEvent::RollbackIncomplete), "critical");
        assert_eq!(severity(RunEvent::RolledBack), "warning");
    }

    #[test]
    fn subjects_are_short_printable_ascii() {
        let mut long = notification(RunEvent::RolledBack, Some("api"));
        assert_eq!(
            subject(&long),
            "deployctl rolledBack: checkout (prod) stage api, run r-42"
        );
        long.plan = "ünïcode\nplan-".repeat(20);
        let shown = subject(&long);
        assert!(shown.len() <= 100, "{shown}");
        assert!(
            shown.chars().all(|c| c.is_ascii_graphic() || c == ' '),
            "{shown}"
        );
    }

    #[test]
    fn attributes_leave_out_what_is_absent() {
        let with_stage = attributes(&notification(RunEvent::GateFailed, Some("api")));
        assert_eq!(
            with_stage,
            [
                ("event", "gateFailed".to_owned()),
                ("severity", "warning".to_owned()),
                ("run", "r-42".to_owned()),
                ("plan", "checkout".to_owned()),
                ("environment", "prod".to_owned()),
                ("stage", "api".to_owned()),
            ]
        );
        let without = attributes(&notification(RunEvent::Started, None));
        assert!(without.iter().all(|(name, _)| *name != "stage"));
    }

    #[test]
    fn oversized_messages_are_cut_to_fit() {
        let mut huge = notification(RunEvent::RollbackIncomplete, None);
        huge.message = "é".repeat(200_000);
        let sent = body(&huge).unwrap();
        assert!(sent.len() <= MAX_BODY, "{}", sent.len());
        let parsed: serde_json::Value = serde_json::from_str(&sent).unwrap();
        assert_eq!(parsed["event"], "rollbackIncomplete");
        assert!(
            parsed["message"]
                .as_str()
                .unwrap()
                .ends_with("(cut to fit SNS)")
        );
    }

    #[test]
    fn fifo_ids_are_bounded_ascii() {
        let id = fifo_id(&format!("run ü {}", "x".repeat(300)));
        assert_eq!(id.len(), 128);
        assert!(
            id.starts_with("run_?_x") || id.starts_with("run___x"),
            "{id}"
        );
    }
}
