//! `HttpProbe` against a real local server.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use deployctl_adapter::{HealthProbe, Measurement};
use deployctl_probes::HttpProbe;

use crate::support::{HttpGate, Reply, Server, closed_port};

fn probe(gate: HttpGate, allow_insecure_http: bool) -> HttpProbe {
    HttpProbe::new(&gate.check(), allow_insecure_http).expect("probe builds")
}

#[tokio::test]
async fn expected_status_and_body_pass_with_the_status_as_value() {
    let server = Server::replying(Reply::status(200).body("status: ready")).await;
    let gate = HttpGate {
        expect_body: Some("ready".to_owned()),
        ..HttpGate::new(&server.url("/health"))
    };

    let measurement = probe(gate, true).measure().await;

    let Measurement::Pass { value, detail } = &measurement else {
        panic!("expected a pass, got {measurement:?}");
    };
    assert_eq!(*value, Some(200.0));
    assert!(
        detail.contains("200 OK") && detail.contains("plain HTTP"),
        "{detail}"
    );
    assert_eq!(server.requests().len(), 1);
    assert_eq!(server.requests()[0].path(), "/health");
}

#[tokio::test]
async fn an_unexpected_status_fails_with_the_status_as_value() {
    let server = Server::replying(Reply::status(503).body("ready")).await;
    let gate = HttpGate {
        expect_status: vec![200, 204],
        ..HttpGate::new(&server.url("/health"))
    };

    let measurement = probe(gate, true).measure().await;

    let Measurement::Fail { value, detail } = &measurement else {
        panic!("expected a failure, got {measurement:?}");
    };
    assert_eq!(*value, Some(503.0));
    assert!(
        detail.contains("503") && detail.contains("one of 200, 204"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_body_without_the_expected_text_fails() {
    let server = Server::replying(Reply::status(200).body("status: starting")).await;
    let gate = HttpGate {
        expect_body: Some("ready".to_owned()),
        ..HttpGate::new(&server.url("/health"))
    };

    let measurement = probe(gate, true).measure().await;

    let Measurement::Fail { value, detail } = &measurement else {
        panic!("expected a failure, got {measurement:?}");
    };
    assert_eq!(*value, Some(200.0));
    assert!(detail.contains("not contain `ready`"), "{detail}");
}

#[tokio::test]
async fn only_the_first_mebibyte_of_the_body_is_read() {
    let mut body = vec![b'a'; 2 * 1024 * 1024];
    body.extend_from_slice(b"ready");
    let server = Server::replying(Reply::status(200).body(body)).await;
    let gate = HttpGate {
        expect_body: Some("ready".to_owned()),
        ..HttpGate::new(&server.url("/health"))
    };

    let measurement = probe(gate, true).measure().await;

    let Measurement::Fail { detail, .. } = &measurement else {
        panic!("expected a failure, got {measurement:?}");
    };
    assert!(detail.contains("first 1 MiB"), "{detail}");
}

#[tokio::test]
async fn the_method_and_headers_are_sent() {
    let server = Server::replying(Reply::status(204)).await;
    let gate = HttpGate {
        method: "POST".to_owned(),
        expect_status: vec![204],
        headers: BTreeMap::from([
            ("Authorization".to_owned(), "Bearer s3cret".to_owned()),
            ("X-Probe".to_owned(), "canary".to_owned()),
        ]),
        ..HttpGate::new(&server.url("/health"))
    };
    let probe = probe(gate, true);

    let measurement = probe.measure().await;

    assert!(
        matches!(measurement, Measurement::Pass { .. }),
        "{measurement:?}"
    );
    let requests = server.requests();
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].header("authorization"), Some("Bearer s3cret"));
    assert_eq!(requests[0].header("x-probe"), Some("canary"));
    assert!(
        requests[0]
            .header("user-agent")
            .is_some_and(|agent| agent.starts_with("deployctl-probes/"))
    );
    // Header values may be credentials: Debug never shows them.
    assert!(!format!("{probe:?}").contains("s3cret"));
}

#[tokio::test]
async fn a_server_slower_than_the_timeout_is_an_error() {
    let server = Server::replying(Reply::status(200).after(Duration::from_secs(10))).await;
    let gate = HttpGate {
        timeout: Duration::from_millis(200),
        ..HttpGate::new(&server.url("/health"))
    };

    let started = Instant::now();
    let measurement = probe(gate, true).measure().await;

    let Measurement::Error { detail } = &measurement else {
        panic!("expected an error, got {measurement:?}");
    };
    assert!(detail.contains("no answer within 200ms"), "{detail}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_refused_connection_is_an_error_not_a_failure() {
    let url = format!("http://127.0.0.1:{}/health", closed_port().await);

    let measurement = probe(HttpGate::new(&url), true).measure().await;

    let Measurement::Error { detail } = &measurement else {
        panic!("expected an error, got {measurement:?}");
    };
    assert!(detail.contains("could not connect"), "{detail}");
}

#[tokio::test]
async fn plain_http_without_the_flag_is_refused_before_anything_is_sent() {
    let server = Server::replying(Reply::status(200)).await;

    let measurement = probe(HttpGate::new(&server.url("/health")), false)
        .measure()
        .await;

    let Measurement::Error { detail } = &measurement else {
        panic!("expected an error, got {measurement:?}");
    };
    assert!(detail.contains("allowInsecureHttp"), "{detail}");
    // Give a stray connection time to show up before asserting none did.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn plain_http_the_plan_did_not_allow_is_refused_whatever_the_caller_says() {
    let server = Server::replying(Reply::status(200)).await;
    let gate = HttpGate {
        allow_insecure_http: false,
        ..HttpGate::new(&server.url("/health"))
    };

    let measurement = probe(gate, true).measure().await;

    assert!(
        matches!(measurement, Measurement::Error { .. }),
        "{measurement:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn a_failed_tls_handshake_is_an_error() {
    // The test server speaks plain HTTP, so the ClientHello gets a
    // plain-text answer and rustls gives up.
    let server = Server::replying(Reply::status(200)).await;

    let measurement = probe(HttpGate::new(&server.https_url("/health")), false)
        .measure()
        .await;

    let Measurement::Error { detail } = &measurement else {
        panic!("expected an error, got {measurement:?}");
    };
    assert!(detail.contains("could not connect"), "{detail}");
    assert_eq!(server.connections(), 1);
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn a_redirect_within_the_origin_is_followed() {
    let server = Server::start(|request| match request.path() {
        "/old" => Reply::status(302).header("Location", "/health"),
        _ => Reply::status(200).body("ready"),
    })
    .await;

    let measurement = probe(HttpGate::new(&server.url("/old")), true)
        .measure()
        .await;

    assert!(
        matches!(measurement, Measurement::Pass { .. }),
        "{measurement:?}"
    );
    let paths: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.path().to_owned())
        .collect();
    assert_eq!(paths, ["/old", "/health"]);
}

#[tokio::test]
async fn a_redirect_to_another_host_is_not_followed() {
    // `localhost` and `127.0.0.1` reach the same server but are different
    // origins, so following would show up as a second request.
    let server = Server::start(|request| match request.path() {
        "/old" => {
            let port = request
                .header("host")
                .and_then(|host| host.rsplit(':').next());
            let target = format!("http://localhost:{}/health", port.unwrap_or("0"));
            Reply::status(302).header("Location", &target)
        }
        _ => Reply::status(200),
    })
    .await;

    let measurement = probe(HttpGate::new(&server.url("/old")), true)
        .measure()
        .await;

    let Measurement::Fail { value, detail } = &measurement else {
        panic!("expected a failure, got {measurement:?}");
    };
    assert_eq!(*value, Some(302.0));
    assert!(detail.contains("not followed"), "{detail}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_redirect_loop_is_an_error_after_a_few_hops() {
    let server = Server::replying(Reply::status(302).header("Location", "/loop")).await;

    let measurement = probe(HttpGate::new(&server.url("/loop")), true)
        .measure()
        .await;

    let Measurement::Error { detail } = &measurement else {
        panic!("expected an error, got {measurement:?}");
    };
    assert!(detail.contains("redirects"), "{detail}");
    assert_eq!(
        server.requests().len(),
        4,
        "the first request and three redirects"
    );
}

#[tokio::test]
async fn details_never_show_credentials_from_the_url() {
    let server = Server::replying(Reply::status(500)).await;
    let url = format!(
        "http://probe:hunter2@127.0.0.1:{}/health?token=t0ken",
        server.port()
    );

    let measurement = probe(HttpGate::new(&url), true).measure().await;

    let detail = measurement.detail();
    assert!(detail.contains("/health"), "{detail}");
    assert!(
        !detail.contains("hunter2") && !detail.contains("t0ken"),
        "{detail}"
    );
}
