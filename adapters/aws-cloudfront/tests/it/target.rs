//! `CloudFrontTarget` against the emulator: the conformance suite, a canary
//! 5% → 15% → promote, rollbacks before and after promotion, the ETag race,
//! a restarted adapter, the bounded wait for Deployed, and weights
//! CloudFront cannot route.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use deployctl_adapter::conformance::{Options, run_all_with};
use deployctl_adapter::{Action, AdapterError, IdempotencyKey, Target};
use deployctl_aws::testing::sdk_config;
use deployctl_aws_cloudfront::tags;
use deployctl_aws_cloudfront::{
    CloudFrontTarget, Release, WaitOptions, WaitProgress, cloudfront_config,
};
use deployctl_plan::model::TargetKind;

use crate::support::{Account, NEW_ORIGIN, OLD_ORIGIN, cloudfront};

fn key(n: u32) -> IdempotencyKey {
    IdempotencyKey(format!("test/cloudfront/{n}"))
}

async fn apply(target: &CloudFrontTarget, action: Action, n: u32) -> deployctl_adapter::Applied {
    target
        .apply(&action, &key(n))
        .await
        .unwrap_or_else(|e| panic!("{action}: {e}"))
}

#[tokio::test]
async fn the_distribution_target_conforms() {
    let Some(url) = cloudfront("the_distribution_target_conforms") else {
        return;
    };
    let account = Account::new(&url).await;
    let options = Options {
        candidate_version: "v2".into(),
        wave_devices: 1,
    };
    let result = run_all_with(&options, async || account.fresh_target().await).await;
    if let Err(failures) = result {
        panic!("{}", failures.join("\n"));
    }
}

#[tokio::test]
async fn a_canary_moves_weights_then_promotes_the_staging_config() {
    let Some(url) = cloudfront("a_canary_moves_weights_then_promotes_the_staging_config") else {
        return;
    };
    let account = Account::new(&url).await;
    let primary = account.primary().await;
    let target = account.target(&primary);
    assert_eq!(target.kind(), TargetKind::CloudFront);
    let (before, _) = account.config(&primary).await;

    let preflight = target.preflight().await.unwrap();
    assert!(preflight.rollback_ready, "{}", preflight.detail);
    assert_eq!(preflight.stable_version, tags::UNLABELLED);

    let deployed = apply(
        &target,
        Action::Deploy {
            version: "v2".into(),
        },
        1,
    )
    .await;
    assert!(deployed.changed && !deployed.request_ids.is_empty());
    let staging = account
        .tag(&primary, tags::STAGING)
        .await
        .expect("staging tag");
    let (staging_config, _) = account.config(&staging).await;
    assert_eq!(staging_config.staging, Some(true));
    assert_eq!(account.origin(&staging).await, NEW_ORIGIN);
    assert_eq!(account.origin(&primary).await, OLD_ORIGIN);
    assert!(
        staging_config
            .aliases
            .as_ref()
            .is_none_or(|a| a.quantity == 0),
        "a staging distribution has no CNAMEs: {:?}",
        staging_config.aliases
    );
    let (attached, _) = account.config(&primary).await;
    let policy = attached
        .continuous_deployment_policy_id
        .clone()
        .filter(|p| !p.is_empty())
        .expect("a policy attached to the primary");
    assert_eq!(account.policy(&policy).await, (false, 0.0));

    for (n, percent) in [(2, 5u8), (3, 15)] {
        let applied = apply(&target, Action::SetWeight { percent }, n).await;
        assert!(applied.changed);
        assert_eq!(
            account.policy(&policy).await,
            (true, f32::from(percent) / 100.0)
        );
        let observed = target.observe().await.unwrap();
        assert_eq!(
            (
                observed.stable.as_deref(),
                observed.candidate.as_deref(),
                observed.weight
            ),
            (Some(tags::UNLABELLED), Some("v2"), percent)
        );
    }

    let promoted = apply(&target, Action::Promote, 4).await;
    assert!(promoted.changed);
    let (after, _) = account.config(&primary).await;
    assert_eq!(account.origin(&primary).await, NEW_ORIGIN);
    assert_eq!(
        after.aliases, before.aliases,
        "promotion keeps the primary's CNAMEs"
    );
    assert_eq!(after.caller_reference, before.caller_reference);
    assert_ne!(after.staging, Some(true));
    assert!(
        after
            .continuous_deployment_policy_id
            .as_deref()
            .is_none_or(str::is_empty),
        "the policy is detached: {:?}",
        after.continuous_deployment_policy_id
    );
    assert_eq!(account.policy(&policy).await, (false, 0.0));
    // The staging distribution now keeps what the primary served.
    assert_eq!(account.origin(&staging).await, OLD_ORIGIN);
    assert_eq!(
        account.tag(&staging, tags::ROLE).await.as_deref(),
        Some(tags::ROLE_PREVIOUS)
    );
    let observed = target.observe().await.unwrap();
    assert_eq!(
        (
            observed.stable.as_deref(),
            observed.candidate,
            observed.weight
        ),
        (Some("v2"), None, 0)
    );
    let retired = apply(&target, Action::Retire, 5).await;
    assert!(retired.changed);
    assert_eq!(account.tag(&primary, tags::PREVIOUS).await, None);
}

#[tokio::test]
async fn rollback_mid_canary_leaves_all_traffic_on_the_primary() {
    let Some(url) = cloudfront("rollback_mid_canary_leaves_all_traffic_on_the_primary") else {
        return;
    };
    let account = Account::new(&url).await;
    let primary = account.primary().await;
    let target = account.target(&primary);
    apply(
        &target,
        Action::Deploy {
            version: "v2".into(),
        },
        1,
    )
    .await;
    apply(&target, Action::SetWeight { percent: 10 }, 2).await;
    let (attached, _) = account.config(&primary).await;
    let policy = attached.continuous_deployment_policy_id.expect("attached");

    let rolled = apply(&target, Action::Rollback { to: None }, 3).await;
    assert!(rolled.changed && !rolled.request_ids.is_empty());
    let (config, _) = account.config(&primary).await;
    assert!(
        config
            .continuous_deployment_policy_id
            .as_deref()
            .is_none_or(str::is_empty)
    );
    assert_eq!(account.policy(&policy).await, (false, 0.0));
    assert_eq!(account.origin(&primary).await, OLD_ORIGIN);
    let observed = target.observe().await.unwrap();
    assert_eq!(
        (
            observed.stable.as_deref(),
            observed.candidate,
            observed.weight
        ),
        (Some(tags::UNLABELLED), None, 0)
    );
    // The next release reuses the staging distribution and its policy.
    apply(
        &target,
        Action::Deploy {
            version: "v3".into(),
        },
        4,
    )
    .await;
    assert_eq!(account.policies().await, vec![policy]);
}

#[tokio::test]
async fn rollback_after_promotion_restores_the_previous_config_even_from_a_new_process() {
    let Some(url) =
        cloudfront("rollback_after_promotion_restores_the_previous_config_even_from_a_new_process")
    else {
        return;
    };
    let account = Account::new(&url).await;
    let primary = account.primary().await;
    let (before, _) = account.config(&primary).await;
    let first = account.target(&primary);
    apply(
        &first,
        Action::Deploy {
            version: "v2".into(),
        },
        1,
    )
    .await;
    apply(&first, Action::SetWeight { percent: 10 }, 2).await;
    apply(&first, Action::Promote, 3).await;
    assert_eq!(account.origin(&primary).await, NEW_ORIGIN);

    // `deployctl resume` builds a new target: it must know from CloudFront
    // alone what to roll back to.
    let second = account.target(&primary);
    let observed = second.observe().await.unwrap();
    assert_eq!(observed.stable.as_deref(), Some("v2"));
    let planned = second
        .plan(&observed, &Action::Rollback { to: None })
        .unwrap();
    assert!(
        planned.iter().any(|c| c.description.contains("restore")),
        "{planned:?}"
    );
    let rolled = apply(&second, Action::Rollback { to: None }, 4).await;
    assert!(rolled.changed);
    let (after, _) = account.config(&primary).await;
    assert_eq!(account.origin(&primary).await, OLD_ORIGIN);
    assert_eq!(after.aliases, before.aliases);
    assert_eq!(after.caller_reference, before.caller_reference);
    assert_eq!(
        second.observe().await.unwrap().stable.as_deref(),
        Some(tags::UNLABELLED)
    );
    let again = apply(&second, Action::Rollback { to: None }, 5).await;
    assert!(!again.changed);
}

#[tokio::test]
async fn a_restarted_adapter_observes_the_same_release() {
    let Some(url) = cloudfront("a_restarted_adapter_observes_the_same_release") else {
        return;
    };
    let account = Account::new(&url).await;
    let primary = account.primary().await;
    let first = account.target(&primary);
    apply(
        &first,
        Action::Deploy {
            version: "v2".into(),
        },
        1,
    )
    .await;
    apply(&first, Action::SetWeight { percent: 15 }, 2).await;
    let seen = first.observe().await.unwrap();
    let second = account.target(&primary);
    assert_eq!(second.observe().await.unwrap(), seen);
    // And carries on where the first one stopped.
    assert!(
        !apply(&second, Action::SetWeight { percent: 15 }, 3)
            .await
            .changed
    );
    assert!(apply(&second, Action::Promote, 4).await.changed);
    assert_eq!(account.origin(&primary).await, NEW_ORIGIN);
}

#[tokio::test]
async fn a_change_behind_the_adapters_back_is_refused_even_after_observing_again() {
    let Some(url) =
        cloudfront("a_change_behind_the_adapters_back_is_refused_even_after_observing_again")
    else {
        return;
    };
    let account = Account::new(&url).await;
    let primary = account.primary().await;
    let target = account.target(&primary);
    apply(
        &target,
        Action::Deploy {
            version: "v2".into(),
        },
        1,
    )
    .await;
    target.observe().await.unwrap();

    // Another writer edits the primary between our observe and our apply.
    let (mut config, etag) = account.config(&primary).await;
    config.comment = "edited by someone else".into();
    account
        .cf
        .update_distribution()
        .id(&primary)
        .if_match(etag)
        .distribution_config(config)
        .send()
        .await
        .expect("the other writer's update");

    let error = target
        .apply(&Action::SetWeight { percent: 10 }, &key(2))
        .await
        .unwrap_err();
    assert!(matches!(error, AdapterError::Rejected { .. }), "{error:?}");
    assert!(error.to_string().contains("another writer"), "{error}");
    assert!(
        error.request_id().is_some_and(|id| !id.is_empty()),
        "{error:?}"
    );
    assert!(
        !error.is_retryable(),
        "a stranger's change is not retried over"
    );

    // The engine observes again after a conflict: that does not adopt the
    // change, and neither does a rollback overwrite it.
    target.observe().await.unwrap();
    for action in [
        Action::SetWeight { percent: 10 },
        Action::Rollback { to: None },
    ] {
        let error = target.apply(&action, &key(3)).await.unwrap_err();
        assert!(error.to_string().contains("another writer"), "{error}");
    }
    // A human's decision, in a new process (a fresh target): it proceeds.
    let fresh = account.target(&primary);
    fresh.observe().await.unwrap();
    let applied = apply(&fresh, Action::SetWeight { percent: 10 }, 4).await;
    assert!(applied.changed);
    let (config, _) = account.config(&primary).await;
    assert_eq!(
        config.comment, "edited by someone else",
        "their change stands"
    );
}

#[tokio::test]
async fn a_stale_etag_from_cloudfront_is_a_conflict() {
    let Some(url) = cloudfront("a_stale_etag_from_cloudfront_is_a_conflict") else {
        return;
    };
    let account = Account::new(&url).await;
    let primary = account.primary().await;
    let (config, etag) = account.config(&primary).await;
    let mut edited = config.clone();
    edited.comment = "first".into();
    account
        .cf
        .update_distribution()
        .id(&primary)
        .if_match(&etag)
        .distribution_config(edited)
        .send()
        .await
        .expect("first update");
    // The same (now stale) ETag again: CloudFront answers 412, which the
    // shared error mapping turns into a Conflict.
    let stale = account
        .cf
        .update_distribution()
        .id(&primary)
        .if_match(&etag)
        .distribution_config(config)
        .send()
        .await
        .unwrap_err();
    let mapped = deployctl_aws::map_sdk_error(stale, "update");
    assert!(
        matches!(mapped, AdapterError::Conflict { .. }),
        "{mapped:?}"
    );
}

#[tokio::test]
async fn waiting_for_deployed_reports_progress_and_times_out_cleanly() {
    let Some(url) = cloudfront("waiting_for_deployed_reports_progress_and_times_out_cleanly")
    else {
        return;
    };
    let account = Account::new(&url).await;
    let primary = account.primary().await;
    // From now on, writes stay InProgress for 1000 reads.
    assert_eq!(
        account.configure(r#"{"deployGets": 1000, "deploySeconds": 0}"#),
        200
    );
    let seen: Arc<Mutex<Vec<WaitProgress>>> = Arc::default();
    let sink = seen.clone();
    let target = account
        .target(&primary)
        .with_wait(WaitOptions {
            interval: Duration::from_millis(10),
            timeout: Duration::from_millis(600),
        })
        .on_progress(Arc::new(move |p: &WaitProgress| {
            sink.lock().expect("progress").push(p.clone())
        }));
    let started = std::time::Instant::now();
    let error = target
        .apply(
            &Action::Deploy {
                version: "v2".into(),
            },
            &key(1),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, AdapterError::Timeout { .. }), "{error:?}");
    assert!(error.to_string().contains("InProgress"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    {
        let progress = seen.lock().expect("progress");
        assert!(progress.len() >= 2, "{progress:?}");
        assert!(progress.iter().all(|p| p.status == "InProgress"));
        assert!(progress.windows(2).all(|w| w[0].elapsed <= w[1].elapsed));
    }
    // Nothing is routed while the staging distribution propagates.
    let observed = target.observe().await.unwrap();
    assert_eq!((observed.candidate, observed.weight), (None, 0));

    // Propagation finishes; applying again resumes where it stopped.
    assert_eq!(
        account.configure(r#"{"deployGets": 0, "deployNow": true}"#),
        200
    );
    target.observe().await.unwrap();
    let applied = apply(
        &target,
        Action::Deploy {
            version: "v2".into(),
        },
        2,
    )
    .await;
    assert!(applied.changed);
    assert_eq!(
        target.observe().await.unwrap().candidate.as_deref(),
        Some("v2")
    );
}

#[tokio::test]
async fn weights_above_fifteen_percent_are_refused_without_a_call() {
    // An endpoint nothing listens on: any call would fail as a Timeout.
    let sdk = sdk_config("http://127.0.0.1:9").await;
    let client = aws_sdk_cloudfront::Client::from_conf(cloudfront_config(&sdk).build());
    let target = CloudFrontTarget::with_client(
        "cdn",
        client,
        "E2EXAMPLE",
        Some(Release::OriginDomain(NEW_ORIGIN.into())),
    );
    for percent in [16u8, 50, 99] {
        let action = Action::SetWeight { percent };
        let error = target.apply(&action, &key(1)).await.unwrap_err();
        assert!(
            matches!(error, AdapterError::Rejected { .. }) && error.to_string().contains("15%"),
            "{error:?}"
        );
        let observed = deployctl_adapter::Observed {
            stable: Some("v1".into()),
            candidate: Some("v2".into()),
            weight: 5,
            waves: None,
        };
        assert!(matches!(
            target.plan(&observed, &action),
            Err(AdapterError::Rejected { .. })
        ));
    }
    // The control: an allowed weight does try to call, and fails to connect.
    let error = target
        .apply(&Action::SetWeight { percent: 10 }, &key(2))
        .await
        .unwrap_err();
    assert!(!matches!(error, AdapterError::Rejected { .. }), "{error:?}");
}

#[tokio::test]
async fn a_foreign_policy_fails_preflight_and_deploy() {
    let Some(url) = cloudfront("a_foreign_policy_fails_preflight_and_deploy") else {
        return;
    };
    let account = Account::new(&url).await;
    let primary = account.primary().await;
    // Someone else's release: their own staging copy and policy, attached.
    let target = account.target(&primary);
    apply(
        &target,
        Action::Deploy {
            version: "v2".into(),
        },
        1,
    )
    .await;
    // Forget that it was ours: drop our tags from the primary.
    let out = account
        .cf
        .get_distribution()
        .id(&primary)
        .send()
        .await
        .unwrap();
    let arn = out.distribution.unwrap().arn;
    account
        .cf
        .untag_resource()
        .resource(&arn)
        .tag_keys(
            aws_sdk_cloudfront::types::TagKeys::builder()
                .items(tags::STAGING)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let stranger = account.target(&primary);
    let preflight = stranger.preflight().await.unwrap();
    assert!(!preflight.rollback_ready, "{}", preflight.detail);
    assert!(
        preflight.detail.contains("did not create"),
        "{}",
        preflight.detail
    );
    let error = stranger
        .apply(
            &Action::Deploy {
                version: "v3".into(),
            },
            &key(2),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, AdapterError::Rejected { .. }), "{error:?}");
}
