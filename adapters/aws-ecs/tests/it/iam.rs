//! The IAM statements `iam::statements` declares cover every call the
//! target really makes: a task-set release with promotion, retirement and
//! a rollback, recorded from the SDK client itself.

use deployctl_adapter::iam::Scope;
use deployctl_adapter::{Action, IdempotencyKey, Target};
use deployctl_aws::testing::CallRecorder;
use deployctl_aws_ecs::{EcsTarget, iam};
use deployctl_plan::raw;

use crate::support::{CLUSTER, Moto, moto};

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
