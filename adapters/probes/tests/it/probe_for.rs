//! `probe_for`: which gates get a probe, and what a broken one reports.

use std::collections::BTreeMap;

use deployctl_adapter::Measurement;
use deployctl_plan::model::{Comparison, GateCheck};
use deployctl_probes::{HttpProbe, ProbeError, probe_for};

use crate::support::{HttpGate, Reply, Server, prometheus_check};

#[tokio::test]
async fn http_and_prometheus_gates_get_a_working_probe() {
    let server = Server::start(|request| match request.path() {
        "/api/v1/query" => Reply::json(
            200,
            r#"{"status":"success","data":{"resultType":"scalar","result":[1,"0.5"]}}"#,
        ),
        _ => Reply::status(200),
    })
    .await;

    let http = probe_for(&HttpGate::new(&server.url("/health")).check(), true)
        .expect("a probe for an http gate");
    let prometheus = probe_for(
        &prometheus_check(&server.url(""), Comparison::Less, 1.0),
        true,
    )
    .expect("a probe for a prometheus gate");

    assert!(matches!(http.measure().await, Measurement::Pass { .. }));
    assert!(matches!(
        prometheus.measure().await,
        Measurement::Pass { .. }
    ));
}

#[test]
fn target_bound_gates_get_none() {
    let checks = [
        GateCheck::CloudWatch {
            region: None,
            alarms: vec!["errors".to_owned()],
            metrics: Vec::new(),
        },
        GateCheck::Kubernetes {
            min_ready_percent: 100.0,
        },
        GateCheck::Fleet {
            min_success_rate: 99.0,
            max_anomaly_rate: None,
        },
        GateCheck::Sim {
            min_success_rate: 99.0,
        },
    ];
    for check in &checks {
        assert!(probe_for(check, false).is_none(), "{:?}", check.kind());
    }
}

#[tokio::test]
async fn a_gate_that_cannot_be_probed_reports_errors_naming_the_reason() {
    let gate = HttpGate {
        headers: BTreeMap::from([("X-Token".to_owned(), "line\nbreak-s3cret".to_owned())]),
        ..HttpGate::new("https://example.invalid/health")
    };

    let probe = probe_for(&gate.check(), false).expect("still a probe");
    let measurement = probe.measure().await;

    let Measurement::Error { detail } = &measurement else {
        panic!("expected an error, got {measurement:?}");
    };
    assert!(detail.contains("X-Token"), "{detail}");
    assert!(!detail.contains("s3cret"), "{detail}");
}

#[test]
fn a_probe_for_the_wrong_kind_is_refused() {
    let check = prometheus_check("https://prometheus.example", Comparison::Less, 1.0);

    let error = HttpProbe::new(&check, false).expect_err("not an http gate");

    assert!(matches!(
        error,
        ProbeError::WrongKind {
            found: "prometheus",
            ..
        }
    ));
}
