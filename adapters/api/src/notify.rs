//! Notifications: telling people about a run as it happens (S5, O8).

use deployctl_plan::model::RunEvent;
use serde::Serialize;

use crate::{AdapterError, BoxFuture};

/// What a notification says. Serialized as the JSON body of webhooks and
/// the message of SNS notifications (a versioned wire shape).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub event: RunEvent,
    pub run: String,
    pub plan: String,
    pub environment: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    pub message: String,
    /// RFC 3339 UTC.
    pub at: String,
}

impl Notification {
    pub const API_VERSION: &'static str = "deployctl.io/v1";
    pub const KIND: &'static str = "RunNotification";
}

/// A channel people are told through (a webhook, an SNS topic).
pub trait Notifier: Send + Sync {
    /// Delivers one notification. Must bound its own time.
    fn notify<'a>(
        &'a self,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), AdapterError>>;

    /// Where it goes, for the journal (no secrets: no tokens, no query strings).
    fn describe(&self) -> String;
}
