//! Sim worlds: state shared through files, written atomically, with the
//! effects log that crash tests read.

use std::sync::Arc;

use deployctl_adapter::{Action, AdapterError, IdempotencyKey, Target};
use deployctl_plan::model::TargetKind;
use deployctl_sim::{ActionKind, ApiErrorKind, SimError, SimFaults, SimState, SimWorld};

use crate::support::{TempDir, apply, config, deploy, key, weight};

#[tokio::test]
async fn handles_on_one_world_see_each_others_changes() {
    let dir = TempDir::new("shared");
    let world = SimWorld::open(dir.path()).unwrap();
    let a = world.target(config(TargetKind::Sim));
    let b = world.target(config(TargetKind::Sim));
    apply(&a, &deploy("2.0")).await.unwrap();
    apply(&b, &weight(10)).await.unwrap();
    assert_eq!(a.observe().await.unwrap().weight, 10);
    assert!(!apply(&a, &weight(10)).await.unwrap().changed);
}

#[tokio::test]
async fn the_world_wins_over_a_later_config() {
    let dir = TempDir::new("wins");
    let world = SimWorld::open(dir.path()).unwrap();
    assert_eq!(world.read("t").unwrap(), None, "observing writes nothing");
    apply(&world.target(config(TargetKind::Sim)), &deploy("2.0"))
        .await
        .unwrap();
    let mut other = config(TargetKind::Sim);
    other.stable_version = "0.9".into();
    let resumed = world.target(other).observe().await.unwrap();
    assert_eq!(
        (resumed.stable.as_deref(), resumed.candidate.as_deref()),
        (Some("1.0"), Some("2.0"))
    );
}

#[tokio::test]
async fn the_effects_log_records_each_change_once() {
    let dir = TempDir::new("log");
    let world = SimWorld::open(dir.path()).unwrap();
    let t = world.target(config(TargetKind::Sim));
    let steps = [
        ("run/1/1", deploy("2.0")),
        ("run/1/2", weight(10)),
        ("run/1/2", weight(10)), // a replay after a "crash"
        ("run/1/3", weight(50)),
        ("run/1/4", Action::Promote),
        ("run/1/4", Action::Promote),
        ("run/1/5", Action::Retire),
    ];
    for (k, action) in &steps {
        t.apply(action, &key(k)).await.unwrap();
    }
    let log = world.read("t").unwrap().unwrap().effects;
    assert_eq!(log.len(), 5);
    assert!(log.keys_applied_twice().is_empty());
    assert_eq!(log.weights(), [10, 50]);
    let last = &log.entries()[4];
    assert_eq!(
        (last.seq, &last.key, last.request_id.as_str()),
        (5, &IdempotencyKey("run/1/5".into()), "sim-t-5")
    );
    assert_eq!(last.after.stable.as_deref(), Some("2.0"));

    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [".t.lock", "t.json"],
        "no temporary file is left behind"
    );
}

#[tokio::test]
async fn fault_counts_survive_a_restart() {
    let dir = TempDir::new("faults");
    let world = SimWorld::open(dir.path()).unwrap();
    let faulty = || {
        world.target(
            config(TargetKind::Sim).with_faults(SimFaults::none().api_errors(
                Some(ActionKind::Deploy),
                ApiErrorKind::Unavailable,
                1,
            )),
        )
    };
    assert!(apply(&faulty(), &deploy("2.0")).await.is_err());
    // A new process with the same faults: the fault already fired.
    assert!(apply(&faulty(), &deploy("2.0")).await.unwrap().changed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_no_update() {
    let dir = TempDir::new("race");
    let world = SimWorld::open(dir.path()).unwrap();
    let faults = SimFaults::none().api_errors(None, ApiErrorKind::Unavailable, 1000);
    let handles =
        [0, 1].map(|_| Arc::new(world.target(config(TargetKind::Sim).with_faults(faults.clone()))));
    let mut tasks = Vec::new();
    for n in 0..40 {
        let target = Arc::clone(&handles[n % 2]);
        tasks.push(tokio::spawn(async move {
            let error = apply(target.as_ref(), &Action::Halt).await.unwrap_err();
            error.request_id().unwrap().to_string()
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40, "every call got its own request ID");
    let state = world.read("t").unwrap().unwrap();
    assert_eq!((state.requests, state.fault_hits[&0]), (40, 40));
}

#[tokio::test]
async fn an_unreadable_world_is_reported_not_reset() {
    let dir = TempDir::new("corrupt");
    let world = SimWorld::open(dir.path()).unwrap();
    let t = world.target(config(TargetKind::Sim));
    std::fs::write(world.state_file("t"), "{not json").unwrap();
    assert!(matches!(
        t.observe().await,
        Err(AdapterError::Rejected { .. })
    ));
    assert!(matches!(world.read("t"), Err(SimError::Corrupt { .. })));

    let mut newer = serde_json::to_value(SimState::initial(&config(TargetKind::Sim))).unwrap();
    newer["format"] = 99.into();
    std::fs::write(world.state_file("t"), newer.to_string()).unwrap();
    assert!(matches!(
        world.read("t"),
        Err(SimError::Format { found: 99, .. })
    ));
    assert!(apply(&t, &deploy("2.0")).await.is_err());
}
