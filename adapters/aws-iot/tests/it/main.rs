//! The fleet target with the real SDK clients: AWS IoT against the repo's
//! IoT Jobs emulator (moto has no per-thing executions), the firmware in
//! moto's S3, devices played through the IoT Jobs data plane
//! (aws-sdk-iotjobsdataplane). Skipped with a message when the emulators
//! are not running (`bash tests/run.sh` starts them).

mod support;

use std::collections::BTreeSet;

use deployctl_adapter::conformance::{Options, run_all_with};
use deployctl_adapter::{Action, AdapterError, IdempotencyKey, Target};
use deployctl_aws::testing::CallRecorder;

use support::{World, emulators};

fn key(run: &str, step: u32) -> IdempotencyKey {
    IdempotencyKey(format!("{run}/ota/{step}"))
}

fn wave(index: u32, devices: u32) -> Action {
    Action::StartWave { index, devices }
}

#[tokio::test]
async fn preflight_verifies_both_firmwares_and_names_the_thing_group() {
    let Some(urls) = emulators("preflight_verifies_both_firmwares_and_names_the_thing_group")
    else {
        return;
    };
    let world = World::new(&urls, 20).await;
    let target = world.target(&world.plan().await).await;
    let preflight = target.preflight().await.unwrap();
    assert_eq!(preflight.stable_version, "4.1.3");
    assert!(preflight.capabilities.waves);
    assert_eq!(
        preflight.identity,
        format!(
            "arn:aws:iot:us-east-1:{}:thinggroup/{}",
            world.account.0, world.group
        )
    );
    assert!(
        preflight.detail.contains("20 devices"),
        "{}",
        preflight.detail
    );
    assert!(
        preflight
            .detail
            .contains(&format!("signed by {}", world.signer_id())),
        "the signer is named: {}",
        preflight.detail
    );
}

#[tokio::test]
async fn nothing_that_does_not_verify_is_dispatched() {
    let Some(urls) = emulators("nothing_that_does_not_verify_is_dispatched") else {
        return;
    };
    let world = World::new(&urls, 5).await;

    // A manifest signed by another key.
    let plan = world
        .plan_with(|p| p.release_signed_by_other_key = true)
        .await;
    let error = world.target(&plan).await.preflight().await.unwrap_err();
    assert!(
        error.to_string().contains("signature does not verify"),
        "{error}"
    );

    // The image in the bucket is not the one the manifest names.
    let plan = world.plan_with(|p| p.release_image_tampered = true).await;
    let error = world.target(&plan).await.preflight().await.unwrap_err();
    assert!(error.to_string().contains("SHA-256"), "{error}");

    // The stable firmware's manifest is not a signed rollback.
    let plan = world.plan_with(|p| p.stable_not_rollback = true).await;
    let error = world.target(&plan).await.preflight().await.unwrap_err();
    assert!(
        error.to_string().contains("not a signed rollback"),
        "{error}"
    );

    // A device of a model the release was not built for.
    world.add_device("odd-one", Some("t5-rev-a")).await;
    let error = world
        .target(&world.plan().await)
        .await
        .preflight()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("odd-one (t5-rev-a)"), "{error}");

    // No wave job exists in the account after any of it.
    assert!(world.job_ids().await.is_empty());
}

#[tokio::test]
async fn waves_take_disjoint_seeded_devices_with_the_plans_job_settings() {
    let Some(urls) = emulators("waves_take_disjoint_seeded_devices_with_the_plans_job_settings")
    else {
        return;
    };
    let world = World::new(&urls, 40).await;
    let plan = world.plan().await;
    let target = world.target(&plan).await;
    target.preflight().await.unwrap();
    target.attach("run-a", "ota");
    let applied = target.apply(&wave(0, 4), &key("run-a", 1)).await.unwrap();
    assert!(
        applied.changed && !applied.request_ids.is_empty(),
        "{applied:?}"
    );
    let again = target.apply(&wave(0, 4), &key("run-a", 1)).await.unwrap();
    assert!(!again.changed, "a retried wave creates nothing");
    target.apply(&wave(1, 12), &key("run-a", 2)).await.unwrap();

    let jobs = world.job_ids().await;
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    let first = world.group_members(&jobs[0]).await;
    let second = world.group_members(&jobs[1]).await;
    assert_eq!((first.len(), second.len()), (4, 12));
    assert!(first.is_disjoint(&second), "a device in two waves");

    // The job carries the plan's rollout rate, abort and timeout, and
    // presigned download URLs instead of links.
    let job = world.describe_job(&jobs[0]).await;
    assert_eq!(job["rollout"], 200);
    assert_eq!(job["abort"], "ALL CANCEL 5 25");
    assert_eq!(job["timeout"], 120);
    assert_eq!(job["presignRole"], support::DOWNLOAD_ROLE);
    let document: serde_json::Value =
        serde_json::from_str(job["document"].as_str().unwrap()).unwrap();
    assert!(
        document["image"]["url"]
            .as_str()
            .unwrap()
            .starts_with("${aws:iot:s3-presigned-url:https://"),
        "{document}"
    );
    assert_eq!(document["version"], "4.2.0");

    // Another run of the same plan orders the fleet differently; the same
    // run in a fresh process picks the same devices.
    let fresh = world.target(&plan).await;
    fresh.attach("run-a", "ota");
    let observed = fresh.observe().await.unwrap();
    let progress = observed.waves.unwrap();
    assert_eq!(
        (
            progress.dispatched,
            progress.waves_started,
            progress.fleet_size
        ),
        (16, 2, 40)
    );
    assert_eq!(observed.candidate.as_deref(), Some("4.2.0"));
    assert_eq!(observed.weight, 40);
    let world_b = World::new(&urls, 40).await;
    let other = world_b.target(&world_b.plan().await).await;
    other.preflight().await.unwrap();
    other.apply(&wave(0, 4), &key("run-b", 1)).await.unwrap();
    let other_first = world_b.group_members(&world_b.job_ids().await[0]).await;
    assert_ne!(
        first, other_first,
        "a different run's seed orders devices differently"
    );
}

#[tokio::test]
async fn progress_counts_device_reports_and_rollback_reaches_exactly_who_took_it() {
    let Some(urls) =
        emulators("progress_counts_device_reports_and_rollback_reaches_exactly_who_took_it")
    else {
        return;
    };
    let world = World::new(&urls, 30).await;
    let target = world.target(&world.plan().await).await;
    target.preflight().await.unwrap();
    target.attach("run-r", "ota");
    target.apply(&wave(0, 10), &key("run-r", 1)).await.unwrap();
    let job = world.job_ids().await.remove(0);
    let devices: Vec<String> = world.group_members(&job).await.into_iter().collect();

    // Six install, one fails, one is mid-install, two have not asked yet.
    for thing in &devices[..6] {
        world.device_reports(thing, "SUCCEEDED").await;
    }
    world.device_reports(&devices[6], "FAILED").await;
    world.device_reports(&devices[7], "IN_PROGRESS").await;
    let progress = target.observe().await.unwrap().waves.unwrap();
    assert_eq!(
        (
            progress.dispatched,
            progress.succeeded,
            progress.failed,
            progress.in_progress()
        ),
        (10, 6, 1, 3)
    );

    let applied = target
        .apply(
            &Action::Rollback {
                to: Some("4.1.3".into()),
            },
            &IdempotencyKey("run-r/ota/rollback".into()),
        )
        .await
        .unwrap();
    assert!(applied.changed);
    // The wave job is force-canceled: the queued devices never get it.
    let wave_job = world.describe_job(&job).await;
    assert_eq!(wave_job["status"], "CANCELED");
    for thing in &devices[8..] {
        assert!(
            world.next_job(thing).await.is_none(),
            "{thing} was still offered an update"
        );
    }
    // Exactly the devices that took the update (or were taking it) get the rollback.
    let rollback: BTreeSet<String> = world
        .group_members(&format!("{}rollback", job.trim_end_matches("w1")))
        .await;
    let expected: BTreeSet<String> = devices[..6].iter().chain([&devices[7]]).cloned().collect();
    assert_eq!(rollback, expected);
    let document = world.next_job(&devices[0]).await.expect("the rollback job");
    assert_eq!(document["version"], "4.1.3");
    assert_eq!(document["rollback"], true);
    // A second rollback does nothing.
    let again = target
        .apply(
            &Action::Rollback {
                to: Some("4.1.3".into()),
            },
            &IdempotencyKey("run-r/ota/rollback".into()),
        )
        .await
        .unwrap();
    assert!(!again.changed);
}

#[tokio::test]
async fn halt_cancels_every_wave_and_nothing_more_is_dispatched() {
    let Some(urls) = emulators("halt_cancels_every_wave_and_nothing_more_is_dispatched") else {
        return;
    };
    let world = World::new(&urls, 20).await;
    let target = world.target(&world.plan().await).await;
    target.preflight().await.unwrap();
    target.apply(&wave(0, 5), &key("run-h", 1)).await.unwrap();
    let job = world.job_ids().await.remove(0);
    let devices: Vec<String> = world.group_members(&job).await.into_iter().collect();
    world.device_reports(&devices[0], "IN_PROGRESS").await;
    target.apply(&Action::Halt, &key("run-h", 2)).await.unwrap();
    let described = world.describe_job(&job).await;
    assert_eq!(described["status"], "CANCELED");
    assert_eq!(
        described["forceCanceled"], true,
        "in-progress executions are canceled too"
    );
    for thing in &devices[1..] {
        assert!(world.next_job(thing).await.is_none());
    }
    let refused = target
        .apply(&wave(1, 5), &key("run-h", 3))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, AdapterError::Rejected { .. }),
        "{refused}"
    );
    assert!(target.observe().await.unwrap().waves.unwrap().halted);
}

#[tokio::test]
async fn the_fleet_gate_reads_outcomes_and_device_anomalies() {
    let Some(urls) = emulators("the_fleet_gate_reads_outcomes_and_device_anomalies") else {
        return;
    };
    let world = World::new(&urls, 10).await;
    let target = world.target(&world.plan().await).await;
    target.preflight().await.unwrap();
    target.attach("run-g", "ota");
    let probe = target
        .probe(&deployctl_plan::model::GateCheck::Fleet {
            min_success_rate: 90.0,
            max_anomaly_rate: Some(20.0),
        })
        .expect("a fleet probe");
    target.apply(&wave(0, 10), &key("run-g", 1)).await.unwrap();
    let measured = probe.measure().await;
    assert!(
        matches!(measured, deployctl_adapter::Measurement::NoData { .. }),
        "{measured:?}"
    );
    let job = world.job_ids().await.remove(0);
    let devices: Vec<String> = world.group_members(&job).await.into_iter().collect();
    for thing in &devices[..6] {
        world.device_reports(thing, "SUCCEEDED").await;
    }
    let measured = probe.measure().await;
    assert!(
        matches!(measured, deployctl_adapter::Measurement::Pass { .. }),
        "{measured:?}"
    );
    // Three more install but crash after the reboot: a third of the updated
    // devices report anomalies, over the 20 % bound.
    for thing in &devices[6..9] {
        world.device_reports_anomaly(thing).await;
    }
    let measured = probe.measure().await;
    assert!(
        matches!(measured, deployctl_adapter::Measurement::Fail { .. }),
        "{measured:?}"
    );
    world.device_reports(&devices[9], "FAILED").await;
    let strict = target
        .probe(&deployctl_plan::model::GateCheck::Fleet {
            min_success_rate: 95.0,
            max_anomaly_rate: None,
        })
        .unwrap();
    let measured = strict.measure().await;
    assert!(
        matches!(measured, deployctl_adapter::Measurement::Fail { .. }),
        "{measured:?}"
    );
}

#[tokio::test]
async fn one_anomaly_in_a_small_sample_waits_for_more_devices_before_it_fails() {
    let Some(urls) =
        emulators("one_anomaly_in_a_small_sample_waits_for_more_devices_before_it_fails")
    else {
        return;
    };
    let world = World::new(&urls, 150).await;
    let target = world.target(&world.plan().await).await;
    target.preflight().await.unwrap();
    target.attach("run-s", "ota");
    target.apply(&wave(0, 150), &key("run-s", 1)).await.unwrap();
    let job = world.job_ids().await.remove(0);
    let devices = world.execution_order(&job).await;
    assert_eq!(devices.len(), 150);
    // The first device the gate reads crashes after its reboot; the other
    // 149 are healthy.
    world.device_reports_anomaly(&devices[0]).await;
    for thing in &devices[1..] {
        world.device_reports(thing, "SUCCEEDED").await;
    }
    let gate = |max: f64| deployctl_plan::model::GateCheck::Fleet {
        min_success_rate: 90.0,
        max_anomaly_rate: Some(max),
    };
    let lenient = target.probe(&gate(1.5)).expect("a fleet probe");
    // 1 of the first 50 read is 2 %, over 1.5 %, but not surely so.
    let measured = lenient.measure().await;
    let deployctl_adapter::Measurement::NoData { detail } = &measured else {
        panic!("one anomaly in 50 failed the gate: {measured:?}");
    };
    assert!(detail.contains("50 sampled of 150"), "{detail}");
    assert!(detail.contains("not conclusive"), "{detail}");
    // The next measurement reads 50 more: 1 in 100 is under the bound.
    let measured = lenient.measure().await;
    let deployctl_adapter::Measurement::Pass { detail, .. } = &measured else {
        panic!("{measured:?}");
    };
    assert!(detail.contains("100 sampled of 150"), "{detail}");
    // Then the whole wave: 1 in 150.
    let measured = lenient.measure().await;
    let deployctl_adapter::Measurement::Pass { detail, .. } = &measured else {
        panic!("{measured:?}");
    };
    assert!(detail.contains("of 150 updated devices"), "{detail}");
    assert!(!detail.contains("sampled"), "{detail}");
    // Over a stricter bound, with every device read, the rate is sure.
    let strict = target.probe(&gate(0.5)).unwrap();
    let measured = strict.measure().await;
    assert!(
        matches!(measured, deployctl_adapter::Measurement::Fail { .. }),
        "{measured:?}"
    );
}

#[tokio::test]
async fn every_call_is_in_the_declared_iam_statements() {
    let Some(urls) = emulators("every_call_is_in_the_declared_iam_statements") else {
        return;
    };
    let calls = CallRecorder::default();
    let world = World::recorded(&urls, 10, calls.clone()).await;
    let plan = world.plan().await;
    let target = world.target(&plan).await;
    target.preflight().await.unwrap();
    target.apply(&wave(0, 5), &key("run-i", 1)).await.unwrap();
    target.observe().await.unwrap();
    target.apply(&Action::Halt, &key("run-i", 2)).await.unwrap();
    target
        .apply(
            &Action::Rollback { to: None },
            &IdempotencyKey("run-i/ota/rollback".into()),
        )
        .await
        .unwrap();
    calls.assert_allowed_by(&world.iam_statements(&plan));
}

#[tokio::test]
async fn the_fleet_target_conforms() {
    let Some(urls) = emulators("the_fleet_target_conforms") else {
        return;
    };
    let options = Options {
        candidate_version: "4.2.0".into(),
        wave_devices: 3,
    };
    let result = run_all_with(&options, async || {
        let world = World::new(&urls, 12).await;
        let plan = world.plan().await;
        let target = world.target(&plan).await;
        // Kept alive by the target's clients; the world's buckets stay.
        std::mem::forget(world);
        target
    })
    .await;
    if let Err(failures) = result {
        panic!("{}", failures.join("\n"));
    }
}
