//! Which probes a simulated target offers, and what they measure.

use std::collections::BTreeMap;
use std::time::Duration;

use deployctl_adapter::{Measurement, Target};
use deployctl_plan::model::{Comparison, GateCheck, TargetKind};
use deployctl_sim::{SimFaults, SimTarget};

use crate::support::{apply, config, deploy, fleet_gate, sim_gate, wave, weight};

fn http() -> GateCheck {
    GateCheck::Http {
        url: "https://api.example.com/healthz".into(),
        method: "GET".into(),
        expect_status: vec![200],
        expect_body: None,
        timeout: Duration::from_secs(2),
        headers: BTreeMap::new(),
        allow_insecure_http: false,
    }
}

fn prometheus() -> GateCheck {
    GateCheck::Prometheus {
        address: "https://prometheus.example.com".into(),
        query: "sum(rate(errors[1m]))".into(),
        comparison: Comparison::Less,
        threshold: 0.01,
        allow_insecure_http: false,
    }
}

fn kubernetes() -> GateCheck {
    GateCheck::Kubernetes {
        min_ready_percent: 100.0,
    }
}

#[test]
fn probes_are_offered_for_the_target_bound_gates_of_the_kind_stood_in_for() {
    let offered = |kind| {
        let t = SimTarget::in_memory(config(kind));
        [
            sim_gate(99.0),
            kubernetes(),
            fleet_gate(95.0),
            http(),
            prometheus(),
        ]
        .map(|check| t.probe(&check).is_some())
    };
    assert_eq!(offered(TargetKind::Sim), [true, true, true, false, false]);
    assert_eq!(
        offered(TargetKind::Kubernetes),
        [false, true, false, false, false]
    );
    assert_eq!(
        offered(TargetKind::Fleet),
        [false, false, true, false, false]
    );
    assert_eq!(offered(TargetKind::Lambda), [false; 5]);
}

#[tokio::test]
async fn rehearsals_measure_any_gate_by_the_simulated_health() {
    let t = SimTarget::in_memory(
        config(TargetKind::Lambda).with_faults(SimFaults::none().unhealthy_from_weight(10)),
    );
    let http = t.simulated_probe(&http());
    let prometheus = t.simulated_probe(&prometheus());
    assert!(matches!(
        http.measure().await,
        Measurement::Pass {
            value: Some(100.0),
            ..
        }
    ));
    apply(&t, &deploy("2.0")).await.unwrap();
    apply(&t, &weight(10)).await.unwrap();
    assert!(matches!(http.measure().await, Measurement::Fail { .. }));
    assert!(matches!(
        prometheus.measure().await,
        Measurement::Fail { .. }
    ));
}

#[tokio::test]
async fn kubernetes_readiness_is_full_unless_faulted() {
    let t = SimTarget::in_memory(
        config(TargetKind::Kubernetes).with_faults(SimFaults::none().unhealthy_from_weight(0)),
    );
    let probe = t.probe(&kubernetes()).unwrap();
    assert!(matches!(
        probe.measure().await,
        Measurement::Pass {
            value: Some(100.0),
            ..
        }
    ));
    apply(&t, &deploy("2.0")).await.unwrap();
    assert!(matches!(
        probe.measure().await,
        Measurement::Fail {
            value: Some(50.0),
            ..
        }
    ));
}

#[tokio::test]
async fn a_fleet_gate_has_no_data_until_devices_report() {
    let t = SimTarget::in_memory(config(TargetKind::Fleet));
    let probe = t.probe(&fleet_gate(95.0)).unwrap();
    assert!(matches!(probe.measure().await, Measurement::NoData { .. }));
    apply(&t, &wave(0, 10)).await.unwrap();
    assert!(matches!(
        probe.measure().await,
        Measurement::Pass {
            value: Some(100.0),
            ..
        }
    ));
}
