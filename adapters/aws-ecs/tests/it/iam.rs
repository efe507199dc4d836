//! The IAM statements `iam::statements` declares cover every call the
//! target really makes: a task-set release with promotion, retirement and
//! a rollback, and what `deployctl plan --observe` does on task sets and
//! on a rolling-update service, recorded from the SDK client itself.

use deployctl_adapter::iam::Scope;
use deployctl_adapter::{Action, IdempotencyKey, Target};
use deployctl_aws::testing::CallRecorder;
use deployctl_aws_ecs::{EcsTarget, iam};
use deployctl_plan::raw;

use crate::support::{CLUSTER, Emulator, Moto, emulator, moto};

#[tokio::test]
async fn every_call_of_a_task_set_release_is_in_the_declared_policy() {
    let Some(url) = moto("every_call_of_a_task_set_release_is_in_the_declared_policy") else {
        return;
    };
    let account = Moto::new(&url).await;
    let recorder = CallRecorder::default();
    let recorded = aws_sdk_ecs::Client::from_conf(
        account
            .ecs
            .config()
            .to_builder()
            .interceptor(recorder.clone())
            .build(),
    );
    let target_for = |service: &str| {
        EcsTarget::with_client("api", recorded.clone(), CLUSTER, service)
            .with_version("v1", "web:1", false)
            .with_version("v2", "web:2", true)
    };
    let key = |n: u32| IdempotencyKey(format!("test/ecs-iam/{n}"));
    let deploy = Action::Deploy {
        version: "v2".into(),
    };

    let promoted = account.service(Some("v1")).await;
    let target = target_for(&promoted);
    target.preflight().await.unwrap();
    for (n, action) in [
        deploy.clone(),
        Action::SetWeight { percent: 10 },
        Action::Promote,
        Action::Retire,
    ]
    .iter()
    .enumerate()
    {
        target.observe().await.unwrap();
        target.apply(action, &key(n as u32)).await.unwrap();
    }
    let rolled_back = account.service(Some("v1")).await;
    let target = target_for(&rolled_back);
    for (n, action) in [
        deploy,
        Action::SetWeight { percent: 50 },
        Action::Rollback { to: None },
    ]
    .iter()
    .enumerate()
    {
        target.observe().await.unwrap();
        target.apply(action, &key(10 + n as u32)).await.unwrap();
    }

    let spec = raw::EcsTarget {
        cluster: CLUSTER.into(),
        service: promoted,
        region: None,
    };
    let scope = Scope {
        partition: "aws".into(),
        account: "123456789012".into(),
        default_region: "us-east-1".into(),
    };
    recorder.assert_allowed_by(&iam::statements(&spec, &scope));
    for action in [
        "ecs:CreateTaskSet",
        "ecs:UpdateServicePrimaryTaskSet",
        "ecs:DeleteTaskSet",
    ] {
        assert!(
            recorder.actions().contains(action),
            "{action} was not called: {:?}",
            recorder.actions()
        );
    }
}

/// `target`'s preflight and observe, and the plan of a release's every
/// action (what `plan --observe` does): only reads, all declared.
async fn observe_only(target: &EcsTarget, recorder: &CallRecorder, service: &str) {
    target.preflight().await.unwrap();
    let observed = target.observe().await.unwrap();
    for action in [
        Action::Deploy {
            version: "v2".into(),
        },
        Action::SetWeight { percent: 100 },
        Action::Promote,
        Action::Retire,
    ] {
        // Only its calls matter here: planning is pure.
        target.plan(&observed, &action).ok();
    }
    let spec = raw::EcsTarget {
        cluster: CLUSTER.into(),
        service: service.into(),
        region: None,
    };
    let scope = Scope {
        partition: "aws".into(),
        account: "123456789012".into(),
        default_region: "us-east-1".into(),
    };
    recorder.assert_allowed_by(&iam::statements(&spec, &scope));
    let actions = recorder.actions();
    assert!(
        actions
            .iter()
            .all(|action| action.starts_with("ecs:Describe")),
        "{actions:?}"
    );
}

#[tokio::test]
async fn observing_task_sets_only_reads_within_the_declared_policy() {
    let Some(url) = moto("observing_task_sets_only_reads_within_the_declared_policy") else {
        return;
    };
    let account = Moto::new(&url).await;
    let service = account.service(Some("v1")).await;
    let before = account.task_sets(&service).await;
    let recorder = CallRecorder::default();
    let recorded = aws_sdk_ecs::Client::from_conf(
        account
            .ecs
            .config()
            .to_builder()
            .interceptor(recorder.clone())
            .build(),
    );
    let target = EcsTarget::with_client("api", recorded, CLUSTER, &service)
        .with_version("v1", "web:1", false)
        .with_version("v2", "web:2", true);
    observe_only(&target, &recorder, &service).await;
    assert_eq!(account.task_sets(&service).await, before, "nothing moved");
}

#[tokio::test]
async fn observing_a_rolling_service_only_reads_within_the_declared_policy() {
    let Some(url) = emulator(
        "DEPLOYCTL_TEST_ECS_URL",
        "observing_a_rolling_service_only_reads_within_the_declared_policy",
    ) else {
        return;
    };
    let account = Emulator::new(&url).await;
    account.service("api", Some((true, true))).await;
    let recorder = CallRecorder::default();
    let recorded = aws_sdk_ecs::Client::from_conf(
        account
            .ecs
            .config()
            .to_builder()
            .interceptor(recorder.clone())
            .build(),
    );
    let target = EcsTarget::with_client("api", recorded, CLUSTER, "api")
        .with_version("v1", "web:1", false)
        .with_version("v2", "web:2", true);
    observe_only(&target, &recorder, "api").await;
    assert_eq!(
        account.deployments("api").await,
        [("PRIMARY".into(), "web:1".into(), "COMPLETED".into())],
        "nothing moved"
    );
}
