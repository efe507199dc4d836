//! The IAM statements `iam::statements` declares cover every CloudFront
//! call the target really makes: a canary, a promotion, a rollback after
//! it, a second release reusing the staging distribution, and what
//! `deployctl plan --observe` does before and during a release, recorded
//! from the SDK client itself.

use deployctl_adapter::iam::Scope;
use deployctl_adapter::{Action, IdempotencyKey, Target};
use deployctl_aws::testing::CallRecorder;
use deployctl_aws_cloudfront::{CloudFrontTarget, Release, iam};
use deployctl_plan::raw;

use crate::support::{Account, NEW_ORIGIN, cloudfront, fast};

#[tokio::test]
async fn every_call_of_a_release_is_in_the_declared_policy() {
    let Some(url) = cloudfront("every_call_of_a_release_is_in_the_declared_policy") else {
        return;
    };
    let account = Account::new(&url).await;
    let primary = account.primary().await;
    let recorder = CallRecorder::default();
    let recorded = aws_sdk_cloudfront::Client::from_conf(
        account
            .cf
            .config()
            .to_builder()
            .interceptor(recorder.clone())
            .build(),
    );
    let target = CloudFrontTarget::with_client(
        "cdn",
        recorded,
        &primary,
        Some(Release::OriginDomain(NEW_ORIGIN.into())),
    )
    .with_wait(fast());
    let deploy = Action::Deploy {
        version: "v2".into(),
    };
    let actions = [
        deploy.clone(),
        Action::SetWeight { percent: 5 },
        Action::Promote,
        Action::Rollback { to: None },
        deploy,
        Action::SetWeight { percent: 10 },
        Action::Rollback { to: None },
    ];
    target.preflight().await.unwrap();
    for (n, action) in actions.iter().enumerate() {
        target.observe().await.unwrap();
        target
            .apply(action, &IdempotencyKey(format!("test/cf-iam/{n}")))
            .await
            .unwrap_or_else(|e| panic!("{action}: {e}"));
    }

    let spec = raw::CloudFrontTarget {
        distribution_id: primary,
    };
    let scope = Scope {
        partition: "aws".into(),
        account: "123456789012".into(),
        default_region: "us-east-1".into(),
    };
    recorder.assert_allowed_by(&iam::statements(&spec, &scope));
    for action in [
        "cloudfront:CopyDistribution",
        "cloudfront:UpdateDistributionWithStagingConfig",
        "cloudfront:CreateContinuousDeploymentPolicy",
    ] {
        assert!(
            recorder.actions().contains(action),
            "{action} was not called: {:?}",
            recorder.actions()
        );
    }
}

/// What `plan --observe` does with a target (preflight, observe, the plan
/// of a release's every action) on a distribution before any release and
/// on one whose staging copy and policy exist: only reads, all declared.
#[tokio::test]
async fn observing_a_distribution_only_reads_within_the_declared_policy() {
    let Some(url) = cloudfront("observing_a_distribution_only_reads_within_the_declared_policy")
    else {
        return;
    };
    let account = Account::new(&url).await;
    let primary = account.primary().await;
    let scope = Scope {
        partition: "aws".into(),
        account: "123456789012".into(),
        default_region: "us-east-1".into(),
    };
    let statements = iam::statements(
        &raw::CloudFrontTarget {
            distribution_id: primary.clone(),
        },
        &scope,
    );
    let deploy = Action::Deploy {
        version: "v2".into(),
    };
    for released in [false, true] {
        if released {
            // Someone's release in flight: staging copy, policy at 5 %.
            let writer = account.target(&primary);
            writer.preflight().await.unwrap();
            for (n, action) in [deploy.clone(), Action::SetWeight { percent: 5 }]
                .iter()
                .enumerate()
            {
                writer.observe().await.unwrap();
                writer
                    .apply(action, &IdempotencyKey(format!("test/cf-observe/{n}")))
                    .await
                    .unwrap();
            }
        }
        let recorder = CallRecorder::default();
        let recorded = aws_sdk_cloudfront::Client::from_conf(
            account
                .cf
                .config()
                .to_builder()
                .interceptor(recorder.clone())
                .build(),
        );
        let target = CloudFrontTarget::with_client(
            "cdn",
            recorded,
            &primary,
            Some(Release::OriginDomain(NEW_ORIGIN.into())),
        )
        .with_wait(fast());
        target.preflight().await.unwrap();
        let observed = target.observe().await.unwrap();
        assert_eq!(observed.weight, if released { 5 } else { 0 });
        for action in [
            deploy.clone(),
            Action::SetWeight { percent: 10 },
            Action::Promote,
            Action::Retire,
            Action::Rollback { to: None },
        ] {
            // Only its calls matter here: planning is pure.
            target.plan(&observed, &action).ok();
        }
        recorder.assert_allowed_by(&statements);
        let actions = recorder.actions();
        assert!(
            actions.iter().all(|action| {
                let operation = action.split_once(':').map_or("", |(_, op)| op);
                operation.starts_with("Get") || operation.starts_with("List")
            }),
            "released: {released}: {actions:?}"
        );
    }
}
