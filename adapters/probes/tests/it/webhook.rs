//! `WebhookNotifier` against a real local server.

use deployctl_adapter::{AdapterError, Notification, Notifier};
use deployctl_plan::model::RunEvent;
use deployctl_probes::WebhookNotifier;

use crate::support::{Reply, Server};

fn notification() -> Notification {
    Notification {
        api_version: Notification::API_VERSION,
        kind: Notification::KIND,
        event: RunEvent::RolledBack,
        run: "r-1".into(),
        plan: "checkout".into(),
        environment: "production".into(),
        stage: Some("api".into()),
        message: "rolled back: gate `errors` failed".into(),
        at: "2026-11-24T10:00:00.000Z".into(),
    }
}

#[tokio::test]
async fn posts_the_notification_as_json() {
    let server = Server::replying(Reply::status(204)).await;
    let notifier = WebhookNotifier::new(&server.url("/hooks/deploys"), true).unwrap();
    notifier.notify(&notification()).await.unwrap();
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.path(), "/hooks/deploys");
    assert_eq!(request.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["event"], "rolledBack");
    assert_eq!(body["run"], "r-1");
    assert_eq!(body["kind"], "RunNotification");
    assert!(notifier.describe().contains("/hooks/deploys"));
}

#[tokio::test]
async fn server_errors_are_retryable_and_client_errors_are_not() {
    let failing = Server::replying(Reply::status(503)).await;
    let error = WebhookNotifier::new(&failing.url("/"), true)
        .unwrap()
        .notify(&notification())
        .await
        .unwrap_err();
    assert!(
        matches!(error, AdapterError::Unavailable { .. }),
        "{error:?}"
    );

    let refusing = Server::replying(Reply::status(403)).await;
    let error = WebhookNotifier::new(&refusing.url("/"), true)
        .unwrap()
        .notify(&notification())
        .await
        .unwrap_err();
    assert!(matches!(error, AdapterError::Rejected { .. }), "{error:?}");
}

#[tokio::test]
async fn plain_http_is_refused_unless_the_plan_allows_it() {
    let server = Server::replying(Reply::status(204)).await;
    assert!(WebhookNotifier::new(&server.url("/"), false).is_err());
    assert_eq!(server.connections(), 0);
}
