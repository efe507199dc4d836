//! Webhook notifications: a JSON POST of the run event to a URL
//! (requirement S5), over the same transport rules as the probes.

use std::time::Duration;

use deployctl_adapter::{AdapterError, BoxFuture, Notification, Notifier};
use reqwest::{Client, Url};

use crate::ProbeError;
use crate::transport;

/// Per-delivery timeout; the engine bounds deliveries too.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Posts each notification as JSON to one URL.
#[derive(Debug)]
pub struct WebhookNotifier {
    client: Client,
    url: Url,
}

impl WebhookNotifier {
    pub fn new(url: &str, allow_insecure_http: bool) -> Result<WebhookNotifier, ProbeError> {
        let url = transport::parse_url(url)?;
        if url.scheme() == "http" && !allow_insecure_http {
            return Err(ProbeError::Scheme("http".to_owned()));
        }
        Ok(WebhookNotifier {
            client: transport::client(allow_insecure_http)?,
            url,
        })
    }
}

impl Notifier for WebhookNotifier {
    fn notify<'a>(
        &'a self,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(async move {
            let response = self
                .client
                .post(self.url.clone())
                .timeout(TIMEOUT)
                .json(notification)
                .send()
                .await
                .map_err(|error| AdapterError::Timeout {
                    message: format!(
                        "{}: {}",
                        transport::shown(&self.url),
                        transport::describe_error(error, &self.url, false)
                    ),
                })?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            let message = format!("{} answered {status}", transport::shown(&self.url));
            Err(if status.is_server_error() || status.as_u16() == 429 {
                AdapterError::Unavailable {
                    message,
                    request_id: None,
                }
            } else {
                AdapterError::Rejected {
                    message,
                    request_id: None,
                }
            })
        })
    }

    fn describe(&self) -> String {
        format!("webhook {}", transport::shown(&self.url))
    }
}
