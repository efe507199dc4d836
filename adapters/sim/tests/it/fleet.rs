//! Wave rollouts on a simulated fleet.

use deployctl_adapter::{Action, AdapterError, Measurement, Target};
use deployctl_plan::model::TargetKind;
use deployctl_sim::{DEFAULT_FLEET_SIZE, SimConfig, SimFaults, SimTarget};

use crate::support::{apply, fleet_gate, wave};

fn fleet(seed: u64, failure_percent: f64) -> SimTarget {
    SimTarget::in_memory(
        SimConfig::new("devices", TargetKind::Fleet, "fw-1")
            .with_release("fw-2")
            .with_seed(seed)
            .with_faults(SimFaults::none().device_failures(failure_percent)),
    )
}

#[tokio::test]
async fn waves_dispatch_devices_once_per_index() {
    let t = fleet(1, 0.0);
    let observed = t.observe().await.unwrap();
    let progress = observed.waves.unwrap();
    assert_eq!(
        (progress.fleet_size, progress.dispatched),
        (DEFAULT_FLEET_SIZE, 0)
    );

    let first = apply(&t, &wave(0, 100)).await.unwrap();
    assert_eq!(first.request_ids, ["sim-devices-1"]);
    assert!(!apply(&t, &wave(0, 100)).await.unwrap().changed);
    apply(&t, &wave(1, 2000)).await.unwrap();
    let observed = t.observe().await.unwrap();
    assert_eq!(observed.candidate.as_deref(), Some("fw-2"));
    let progress = observed.waves.unwrap();
    assert_eq!(
        (
            progress.waves_started,
            progress.dispatched,
            progress.succeeded
        ),
        (2, 1000, 1000)
    );
}

#[tokio::test]
async fn device_failures_follow_the_rate_and_the_seed() {
    let outcome = async |seed| {
        let t = fleet(seed, 10.0);
        apply(&t, &wave(0, 500)).await.unwrap();
        let measured = t.probe(&fleet_gate(95.0)).unwrap().measure().await;
        (t.observe().await.unwrap().waves.unwrap(), measured)
    };
    let (a, measured) = outcome(7).await;
    assert!((30..70).contains(&a.failed), "{a:?}");
    assert_eq!(a.succeeded + a.failed, 500);
    let Measurement::Fail {
        value: Some(rate), ..
    } = measured
    else {
        panic!("{measured:?}")
    };
    assert!((86.0..94.0).contains(&rate), "{rate}");
    assert_eq!(
        outcome(7).await.0,
        a,
        "the same seed gives the same devices"
    );
}

#[tokio::test]
async fn halt_stops_dispatch_and_rollback_brings_devices_back() {
    let t = fleet(1, 0.0);
    apply(&t, &wave(0, 10)).await.unwrap();
    apply(&t, &Action::Halt).await.unwrap();
    let refused = apply(&t, &wave(1, 10)).await.unwrap_err();
    assert!(
        matches!(refused, AdapterError::Rejected { .. }),
        "{refused}"
    );
    assert_eq!(t.observe().await.unwrap().waves.unwrap().dispatched, 10);

    apply(
        &t,
        &Action::Rollback {
            to: Some("fw-1".into()),
        },
    )
    .await
    .unwrap();
    let observed = t.observe().await.unwrap();
    let progress = observed.waves.clone().unwrap();
    assert_eq!(
        (observed.stable.as_deref(), observed.candidate),
        (Some("fw-1"), None)
    );
    assert_eq!(
        (progress.dispatched, progress.halted),
        (0, true),
        "a halted rollout stays halted"
    );
}

#[tokio::test]
async fn a_fleet_without_a_release_version_refuses_to_start() {
    let t = SimTarget::in_memory(SimConfig::new("devices", TargetKind::Fleet, "fw-1"));
    let refused = apply(&t, &wave(0, 10)).await.unwrap_err();
    assert!(
        matches!(refused, AdapterError::Rejected { .. }),
        "{refused}"
    );
    assert!(t.effects().unwrap().is_empty());
}
