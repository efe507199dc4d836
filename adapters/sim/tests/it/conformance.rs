//! The adapter conformance suite, over every kind a simulator stands in
//! for, in memory and in a sim world, with and without latency (latency
//! gives `apply` a pending point for the cancellation check to drop it at).

use std::time::Duration;

use deployctl_adapter::conformance::run_all;
use deployctl_plan::model::TargetKind;
use deployctl_sim::{SimConfig, SimTarget, SimWorld};

use crate::support::TempDir;

async fn suite(persisted: bool, latency: Duration) {
    let dir = TempDir::new("conformance");
    let world = SimWorld::open(dir.path()).unwrap();
    let mut failures = Vec::new();
    for kind in TargetKind::ALL {
        let mut made = 0;
        let make = async || {
            made += 1;
            let config = SimConfig::new(format!("{}-{made}", kind.name()), kind, "1.0")
                .with_release("conformance-candidate")
                .with_fleet_size(50)
                .with_latency(latency);
            if persisted {
                world.target(config)
            } else {
                SimTarget::in_memory(config)
            }
        };
        if let Err(errors) = run_all(make).await {
            failures.extend(errors.into_iter().map(|e| format!("{}: {e}", kind.name())));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn every_kind_conforms_in_memory() {
    suite(false, Duration::ZERO).await;
}

#[tokio::test]
async fn every_kind_conforms_in_a_sim_world() {
    suite(true, Duration::ZERO).await;
}

#[tokio::test(start_paused = true)]
async fn every_kind_conforms_with_latency_in_memory() {
    suite(false, Duration::from_millis(20)).await;
}

#[tokio::test(start_paused = true)]
async fn every_kind_conforms_with_latency_in_a_sim_world() {
    suite(true, Duration::from_millis(20)).await;
}

#[tokio::test]
async fn a_plain_closure_returning_a_future_is_a_factory_too() {
    let mut made = 0;
    let make = move || {
        made += 1;
        let config = SimConfig::new(format!("lambda-{made}"), TargetKind::Lambda, "41");
        async move { SimTarget::in_memory(config) }
    };
    let options = deployctl_adapter::conformance::Options {
        candidate_version: "42".into(),
        wave_devices: 1,
    };
    let result = deployctl_adapter::conformance::run_all_with(&options, make).await;
    assert_eq!(result, Ok(()));
}
