//! `PrometheusProbe` against a real local server speaking the Prometheus
//! HTTP API's instant-query format.

use std::time::{Duration, Instant};

use deployctl_adapter::{HealthProbe, Measurement};
use deployctl_plan::model::{Comparison, GateCheck};
use deployctl_probes::PrometheusProbe;

use crate::support::{Reply, Server, closed_port, prometheus_check};

/// An instant-vector answer with one series per value.
fn vector(values: &[&str]) -> String {
    let samples: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(index, value)| {
            format!(
                r#"{{"metric":{{"__name__":"errors","instance":"pod-{index}"}},"value":[1700000000.5,"{value}"]}}"#
            )
        })
        .collect();
    format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
        samples.join(",")
    )
}

async fn measure_against(reply: Reply, comparison: Comparison, threshold: f64) -> Measurement {
    let server = Server::replying(reply).await;
    let check = prometheus_check(&server.url(""), comparison, threshold);
    PrometheusProbe::new(&check, true)
        .expect("probe builds")
        .measure()
        .await
}

#[tokio::test]
async fn one_sample_is_compared_in_every_direction() {
    use Comparison::*;
    // (comparison, sample, threshold, passes)
    let cases = [
        (Less, "0.01", 0.05, true),
        (Less, "0.05", 0.05, false),
        (LessOrEqual, "0.05", 0.05, true),
        (LessOrEqual, "0.06", 0.05, false),
        (Greater, "99.9", 99.0, true),
        (Greater, "99", 99.0, false),
        (GreaterOrEqual, "99", 99.0, true),
        (GreaterOrEqual, "98.99", 99.0, false),
        (Equal, "1", 1.0, true),
        (Equal, "0", 1.0, false),
        (NotEqual, "0", 1.0, true),
        (NotEqual, "1", 1.0, false),
        // Prometheus spells infinities `+Inf` and `-Inf`.
        (Less, "+Inf", 0.05, false),
        (Greater, "-Inf", 0.0, false),
    ];
    for (comparison, sample, threshold, passes) in cases {
        let measurement =
            measure_against(Reply::json(200, vector(&[sample])), comparison, threshold).await;
        let case = format!("{sample} {} {threshold}", comparison.symbol());
        let expected: f64 = sample.parse().expect("a number");
        match (&measurement, passes) {
            (Measurement::Pass { value, detail }, true) => {
                assert_eq!(*value, Some(expected), "{case}");
                assert!(detail.contains("holds"), "{case}: {detail}");
            }
            (Measurement::Fail { value, detail }, false) => {
                assert_eq!(*value, Some(expected), "{case}");
                assert!(detail.contains("does not hold"), "{case}: {detail}");
            }
            _ => panic!("{case}: expected passes={passes}, got {measurement:?}"),
        }
    }
}

#[tokio::test]
async fn a_scalar_answer_is_one_sample() {
    let body = r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"0.2"]}}"#;

    let measurement = measure_against(Reply::json(200, body), Comparison::Greater, 0.5).await;

    assert!(
        matches!(measurement, Measurement::Fail { value: Some(v), .. } if v == 0.2),
        "{measurement:?}"
    );
}

#[tokio::test]
async fn no_series_is_no_data() {
    let measurement = measure_against(Reply::json(200, vector(&[])), Comparison::Less, 1.0).await;

    let Measurement::NoData { detail } = &measurement else {
        panic!("expected no data, got {measurement:?}");
    };
    assert!(
        detail.contains("no series matched: is the canary receiving traffic?"),
        "{detail}"
    );
}

#[tokio::test]
async fn two_series_are_an_error_suggesting_an_aggregation() {
    let measurement = measure_against(
        Reply::json(200, vector(&["0.1", "0.2"])),
        Comparison::Less,
        1.0,
    )
    .await;

    let Measurement::Error { detail } = &measurement else {
        panic!("expected an error, got {measurement:?}");
    };
    assert!(
        detail.contains("2 series") && detail.contains("sum(...)"),
        "{detail}"
    );
    assert!(detail.contains(r#"errors{instance="pod-0"}"#), "{detail}");
}

#[tokio::test]
async fn a_nan_sample_is_no_data() {
    // NaN is never equal to anything, so `!=` would be the one comparison
    // to let it through if it were judged.
    let measurement = measure_against(
        Reply::json(200, vector(&["NaN"])),
        Comparison::NotEqual,
        1.0,
    )
    .await;

    assert!(
        matches!(measurement, Measurement::NoData { .. }),
        "{measurement:?}"
    );
}

#[tokio::test]
async fn malformed_json_is_an_error() {
    for body in [
        r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"#,
        r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,0.5]}]}}"#,
        r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"fast"]}]}}"#,
        r#"{"status":"success"}"#,
        "<html>proxy login</html>",
    ] {
        let measurement = measure_against(Reply::json(200, body), Comparison::Less, 1.0).await;
        assert!(
            matches!(measurement, Measurement::Error { .. }),
            "{body}: {measurement:?}"
        );
    }
}

#[tokio::test]
async fn a_range_vector_is_an_error() {
    let body = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;

    let measurement = measure_against(Reply::json(200, body), Comparison::Less, 1.0).await;

    let Measurement::Error { detail } = &measurement else {
        panic!("expected an error, got {measurement:?}");
    };
    assert!(detail.contains("range vector"), "{detail}");
}

#[tokio::test]
async fn a_server_error_is_an_error() {
    let measurement = measure_against(
        Reply::status(500).body("internal error"),
        Comparison::Less,
        1.0,
    )
    .await;

    let Measurement::Error { detail } = &measurement else {
        panic!("expected an error, got {measurement:?}");
    };
    assert!(detail.contains("500"), "{detail}");
}

#[tokio::test]
async fn an_api_error_carries_the_reason_prometheus_gave() {
    let body = r#"{"status":"error","errorType":"bad_data","error":"parse error at char 4"}"#;

    let measurement = measure_against(Reply::json(400, body), Comparison::Less, 1.0).await;

    let Measurement::Error { detail } = &measurement else {
        panic!("expected an error, got {measurement:?}");
    };
    assert!(
        detail.contains("bad_data: parse error at char 4"),
        "{detail}"
    );
}

#[tokio::test]
async fn the_query_reaches_the_server_intact() {
    let query = r#"sum(rate(http_requests_total{job="api", code=~"5.."}[5m])) / sum(rate(http_requests_total{job="api"}[5m])) + 0 & #x %20"#;
    let server = Server::replying(Reply::json(200, vector(&["0"]))).await;
    // A path prefix and a trailing slash, as behind a reverse proxy.
    let check = GateCheck::Prometheus {
        address: server.url("/prometheus/"),
        query: query.to_owned(),
        comparison: Comparison::Less,
        threshold: 1.0,
        allow_insecure_http: true,
    };

    let measurement = PrometheusProbe::new(&check, true)
        .expect("probe builds")
        .measure()
        .await;

    assert!(
        matches!(measurement, Measurement::Pass { .. }),
        "{measurement:?}"
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path(), "/prometheus/api/v1/query");
    assert_eq!(requests[0].query_param("query").as_deref(), Some(query));
}

#[tokio::test]
async fn plain_http_without_the_flag_is_refused_before_anything_is_sent() {
    let server = Server::replying(Reply::json(200, vector(&["0"]))).await;
    let check = prometheus_check(&server.url(""), Comparison::Less, 1.0);

    let measurement = PrometheusProbe::new(&check, false)
        .expect("probe builds")
        .measure()
        .await;

    let Measurement::Error { detail } = &measurement else {
        panic!("expected an error, got {measurement:?}");
    };
    assert!(detail.contains("allowInsecureHttp"), "{detail}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn a_slow_prometheus_is_an_error_within_the_timeout() {
    let server =
        Server::replying(Reply::json(200, vector(&["0"])).after(Duration::from_secs(10))).await;
    let check = prometheus_check(&server.url(""), Comparison::Less, 1.0);
    let probe = PrometheusProbe::new(&check, true)
        .expect("probe builds")
        .with_timeout(Duration::from_millis(200));

    let started = Instant::now();
    let measurement = probe.measure().await;

    assert!(
        matches!(measurement, Measurement::Error { .. }),
        "{measurement:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_unreachable_prometheus_is_an_error() {
    let address = format!("http://127.0.0.1:{}", closed_port().await);
    let check = prometheus_check(&address, Comparison::Less, 1.0);

    let measurement = PrometheusProbe::new(&check, true)
        .expect("probe builds")
        .with_timeout(Duration::from_secs(2))
        .measure()
        .await;

    assert!(
        matches!(measurement, Measurement::Error { .. }),
        "{measurement:?}"
    );
}
