//! The emulator's rules that the adapter relies on, checked through the
//! real SDK: If-Match handling, ETags that change, staging and policy
//! constraints, and AWS-format errors with request IDs.

use aws_sdk_cloudfront::error::ProvideErrorMetadata;
use aws_sdk_cloudfront::operation::RequestId;
use aws_sdk_cloudfront::types::{
    ContinuousDeploymentPolicyConfig, ContinuousDeploymentPolicyType,
    ContinuousDeploymentSingleWeightConfig, StagingDistributionDnsNames, TrafficConfig,
};

use crate::support::{Account, cloudfront};

fn weight_policy(domain: &str, weight: f32) -> ContinuousDeploymentPolicyConfig {
    ContinuousDeploymentPolicyConfig::builder()
        .enabled(true)
        .staging_distribution_dns_names(
            StagingDistributionDnsNames::builder()
                .quantity(1)
                .items(domain)
                .build()
                .unwrap(),
        )
        .traffic_config(
            TrafficConfig::builder()
                .r#type(ContinuousDeploymentPolicyType::SingleWeight)
                .single_weight_config(
                    ContinuousDeploymentSingleWeightConfig::builder()
                        .weight(weight)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

/// A staging copy of `primary`: (id, domain, ETag).
async fn staging_copy(account: &Account, primary: &str, reference: &str) -> (String, String) {
    let (_, etag) = account.config(primary).await;
    let out = account
        .cf
        .copy_distribution()
        .primary_distribution_id(primary)
        .staging(true)
        .if_match(etag)
        .caller_reference(reference)
        .send()
        .await
        .expect("cloudfront:CopyDistribution");
    let dist = out.distribution.expect("a distribution");
    (dist.id, dist.domain_name)
}

#[tokio::test]
async fn if_match_is_required_and_checked_and_every_write_changes_the_etag() {
    let Some(url) = cloudfront("if_match_is_required_and_checked_and_every_write_changes_the_etag")
    else {
        return;
    };
    let account = Account::new(&url).await;
    let primary = account.primary().await;
    let (config, etag) = account.config(&primary).await;

    let missing = account
        .cf
        .update_distribution()
        .id(&primary)
        .distribution_config(config.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Some("InvalidIfMatchVersion"));
    assert_eq!(
        missing.raw_response().map(|r| r.status().as_u16()),
        Some(400)
    );
    assert!(missing.request_id().is_some_and(|id| !id.is_empty()));

    let out = account
        .cf
        .update_distribution()
        .id(&primary)
        .if_match(&etag)
        .distribution_config(config.clone())
        .send()
        .await
        .expect("update");
    let new_etag = out.e_tag.expect("an ETag");
    assert_ne!(new_etag, etag, "a write changes the ETag");
    assert_eq!(
        out.distribution.expect("a distribution").status,
        "InProgress",
        "a write puts the distribution InProgress"
    );
    let stale = account
        .cf
        .update_distribution()
        .id(&primary)
        .if_match(&etag)
        .distribution_config(config)
        .send()
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Some("PreconditionFailed"));
    assert_eq!(stale.raw_response().map(|r| r.status().as_u16()), Some(412));
}

#[tokio::test]
async fn policies_follow_cloudfronts_rules() {
    let Some(url) = cloudfront("policies_follow_cloudfronts_rules") else {
        return;
    };
    let account = Account::new(&url).await;
    let primary = account.primary().await;
    let (staging, domain) = staging_copy(&account, &primary, "copy-1").await;

    // The copy is a staging distribution without CNAMEs.
    let (copy, _) = account.config(&staging).await;
    assert_eq!(copy.staging, Some(true));
    assert!(copy.aliases.is_none_or(|a| a.quantity == 0));

    // Over 15% is refused.
    let too_much = account
        .cf
        .create_continuous_deployment_policy()
        .continuous_deployment_policy_config(weight_policy(&domain, 0.2))
        .send()
        .await
        .unwrap_err();
    assert_eq!(too_much.code(), Some("InvalidArgument"));

    // A primary's domain is not a staging distribution.
    let (_, primary_domain) = {
        let out = account
            .cf
            .get_distribution()
            .id(&primary)
            .send()
            .await
            .unwrap();
        let d = out.distribution.unwrap();
        (d.id, d.domain_name)
    };
    let not_staging = account
        .cf
        .create_continuous_deployment_policy()
        .continuous_deployment_policy_config(weight_policy(&primary_domain, 0.1))
        .send()
        .await
        .unwrap_err();
    assert_eq!(not_staging.code(), Some("InvalidArgument"));

    let policy = account
        .cf
        .create_continuous_deployment_policy()
        .continuous_deployment_policy_config(weight_policy(&domain, 0.1))
        .send()
        .await
        .expect("a policy");
    let policy_id = policy.continuous_deployment_policy.unwrap().id;
    let second = account
        .cf
        .create_continuous_deployment_policy()
        .continuous_deployment_policy_config(weight_policy(&domain, 0.05))
        .send()
        .await
        .unwrap_err();
    assert_eq!(second.code(), Some("StagingDistributionInUse"));

    // Attaching waits for the staging distribution to be Deployed.
    let (copy, etag) = account.config(&staging).await;
    account
        .cf
        .update_distribution()
        .id(&staging)
        .if_match(etag)
        .distribution_config(copy)
        .send()
        .await
        .expect("touch the staging copy");
    assert_eq!(account.configure(r#"{"deployGets": 5}"#), 200);
    let (copy, etag) = account.config(&staging).await;
    account
        .cf
        .update_distribution()
        .id(&staging)
        .if_match(etag)
        .distribution_config(copy)
        .send()
        .await
        .expect("touch again, now slow to deploy");
    let (mut config, etag) = account.config(&primary).await;
    config.continuous_deployment_policy_id = Some(policy_id.clone());
    let early = account
        .cf
        .update_distribution()
        .id(&primary)
        .if_match(&etag)
        .distribution_config(config.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(early.code(), Some("InvalidArgument"), "{early:?}");
    assert!(
        early
            .message()
            .unwrap_or_default()
            .contains("not yet deployed")
    );
    assert_eq!(
        account.configure(r#"{"deployGets": 0, "deployNow": true}"#),
        200
    );
    account
        .cf
        .update_distribution()
        .id(&primary)
        .if_match(&etag)
        .distribution_config(config)
        .send()
        .await
        .expect("attach once Deployed");

    // An attached policy cannot be deleted; an enabled distribution neither.
    let policy_etag = account
        .cf
        .get_continuous_deployment_policy()
        .id(&policy_id)
        .send()
        .await
        .unwrap()
        .e_tag
        .unwrap();
    let in_use = account
        .cf
        .delete_continuous_deployment_policy()
        .id(&policy_id)
        .if_match(policy_etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(in_use.code(), Some("ContinuousDeploymentPolicyInUse"));
    let (_, staging_etag) = account.config(&staging).await;
    let enabled = account
        .cf
        .delete_distribution()
        .id(&staging)
        .if_match(staging_etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(enabled.code(), Some("DistributionNotDisabled"));
}

#[tokio::test]
async fn promotion_copies_staging_into_the_primary_and_disables_the_policy() {
    let Some(url) = cloudfront("promotion_copies_staging_into_the_primary_and_disables_the_policy")
    else {
        return;
    };
    let account = Account::new(&url).await;
    let primary = account.primary().await;
    let (staging, domain) = staging_copy(&account, &primary, "copy-2").await;
    let (mut copy, etag) = account.config(&staging).await;
    copy.comment = "staged".into();
    if let Some(origins) = copy.origins.as_mut() {
        origins.items[0].domain_name = "v9.origin.example.com".into();
    }
    account
        .cf
        .update_distribution()
        .id(&staging)
        .if_match(etag)
        .distribution_config(copy)
        .send()
        .await
        .unwrap();
    account.until_deployed(&staging).await;
    let policy = account
        .cf
        .create_continuous_deployment_policy()
        .continuous_deployment_policy_config(weight_policy(&domain, 0.1))
        .send()
        .await
        .unwrap()
        .continuous_deployment_policy
        .unwrap()
        .id;
    let (mut config, etag) = account.config(&primary).await;
    let before = config.clone();
    config.continuous_deployment_policy_id = Some(policy.clone());
    account
        .cf
        .update_distribution()
        .id(&primary)
        .if_match(etag)
        .distribution_config(config)
        .send()
        .await
        .unwrap();
    let (_, primary_etag) = account.config(&primary).await;
    let (_, staging_etag) = account.config(&staging).await;

    let wrong = account
        .cf
        .update_distribution_with_staging_config()
        .id(&primary)
        .staging_distribution_id(&staging)
        .if_match(primary_etag.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Some("InvalidIfMatchVersion"));

    account
        .cf
        .update_distribution_with_staging_config()
        .id(&primary)
        .staging_distribution_id(&staging)
        .if_match(format!("{primary_etag}, {staging_etag}"))
        .send()
        .await
        .expect("promotion");
    let (after, _) = account.config(&primary).await;
    assert_eq!(after.comment, "staged");
    assert_eq!(account.origin(&primary).await, "v9.origin.example.com");
    assert_eq!(after.aliases, before.aliases);
    assert_eq!(after.caller_reference, before.caller_reference);
    assert_eq!(after.continuous_deployment_policy_id, Some(policy.clone()));
    assert_ne!(after.staging, Some(true));
    assert_eq!(account.policy(&policy).await, (false, 0.1));
}
