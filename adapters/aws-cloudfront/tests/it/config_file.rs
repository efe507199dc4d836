//! Releasing a whole DistributionConfig from a JSON file (the plan's
//! `cloudfront.configFile`) against the emulator: the file's origins and
//! behaviors reach staging and, on promotion, the primary, which keeps its
//! CNAMEs and caller reference; a rollback after promotion restores the old
//! configuration; bad files are refused with the JSON path of the field
//! before anything is called.

use std::path::{Path, PathBuf};

use aws_sdk_cloudfront::types::DistributionConfig;
use deployctl_adapter::{Action, AdapterError, IdempotencyKey, Target};
use deployctl_aws_cloudfront::{CloudFrontTarget, Release, tags};
use deployctl_plan::model::{Artifact, ArtifactSource};

use crate::support::{Account, OLD_ORIGIN, cloudfront, fast};

/// The fixture: what `aws cloudfront get-distribution-config` prints.
const FIXTURE: &str = include_str!("../fixtures/get-distribution-config.json");

/// A directory of this test's own, emptied.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "deployctl-cloudfront-config-{}-{test}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the config file");
    path
}

fn key(n: u32) -> IdempotencyKey {
    IdempotencyKey(format!("test/cloudfront-config/{n}"))
}

async fn apply(target: &CloudFrontTarget, action: Action, n: u32) -> deployctl_adapter::Applied {
    target
        .apply(&action, &key(n))
        .await
        .unwrap_or_else(|e| panic!("{action}: {e}"))
}

fn file_target(account: &Account, primary: &str, file: &Path) -> CloudFrontTarget {
    let release = Release::config_file(file).expect("the config file is accepted");
    CloudFrontTarget::with_client(
        format!("cdn-{primary}"),
        account.cf.clone(),
        primary,
        Some(release),
    )
    .with_wait(fast())
}

/// `config` without what identifies a distribution (caller reference,
/// CNAMEs, staging flag, policy): what a release carries.
fn content(config: &DistributionConfig) -> DistributionConfig {
    let mut config = config.clone();
    config.caller_reference = String::new();
    config.aliases = None;
    config.staging = None;
    config.continuous_deployment_policy_id = None;
    config
}

fn file_config() -> DistributionConfig {
    let dir = scratch("parse");
    let Release::ConfigFile { config, .. } =
        Release::config_file(write(&dir, "production.json", FIXTURE)).expect("accepted")
    else {
        panic!("a config file release");
    };
    *config
}

#[tokio::test]
async fn a_config_file_canary_promotes_the_files_configuration_keeping_the_primarys_aliases() {
    let Some(url) = cloudfront(
        "a_config_file_canary_promotes_the_files_configuration_keeping_the_primarys_aliases",
    ) else {
        return;
    };
    let account = Account::new(&url).await;
    let primary = account.primary().await;
    let (before, _) = account.config(&primary).await;
    let dir = scratch("canary");
    // The wrapper `get-distribution-config` prints, as committed.
    let file = write(&dir, "production.json", FIXTURE);
    let target = file_target(&account, &primary, &file);
    let wanted = file_config();

    let observed = target.observe().await.expect("observe");
    let plan = target
        .plan(
            &observed,
            &Action::Deploy {
                version: "v2".into(),
            },
        )
        .expect("plan");
    assert!(
        plan.iter()
            .any(|c| c.description.contains("configuration from")
                && c.description.contains("production.json")),
        "{plan:?}"
    );

    let deployed = apply(
        &target,
        Action::Deploy {
            version: "v2".into(),
        },
        1,
    )
    .await;
    assert!(deployed.changed);
    let staging = account
        .tag(&primary, tags::STAGING)
        .await
        .expect("staging tag");
    let (staging_config, _) = account.config(&staging).await;
    // Everything the file says, through the SDK, the wire and back...
    assert_eq!(content(&staging_config), content(&wanted));
    // ...but the staging distribution stays a staging distribution.
    assert_eq!(staging_config.staging, Some(true));
    assert!(
        staging_config
            .aliases
            .as_ref()
            .is_none_or(|a| a.quantity == 0),
        "{:?}",
        staging_config.aliases
    );
    assert_ne!(staging_config.caller_reference, wanted.caller_reference);
    assert_ne!(staging_config.caller_reference, before.caller_reference);
    assert_eq!(account.origin(&primary).await, OLD_ORIGIN);

    // The same release again moves nothing.
    let again = apply(
        &target,
        Action::Deploy {
            version: "v2".into(),
        },
        2,
    )
    .await;
    assert!(!again.changed);

    apply(&target, Action::SetWeight { percent: 10 }, 3).await;
    let promoted = apply(&target, Action::Promote, 4).await;
    assert!(promoted.changed);

    let (after, _) = account.config(&primary).await;
    assert_eq!(content(&after), content(&wanted));
    let origins = after.origins.as_ref().expect("origins");
    assert_eq!(origins.quantity, 3);
    assert_eq!(origins.items[0].domain_name, "v2.origin.example.com");
    assert_eq!(
        after.cache_behaviors.as_ref().map(|b| b.quantity),
        Some(2),
        "the file's cache behaviors are on the primary"
    );
    assert_eq!(after.comment, "production site (v2)");
    // The primary keeps its own identity and CNAMEs, not the file's.
    assert_eq!(after.aliases, before.aliases);
    assert_eq!(after.caller_reference, before.caller_reference);
    assert_eq!(after.staging, before.staging);
    assert_eq!(
        account.tag(&primary, tags::VERSION).await.as_deref(),
        Some("v2")
    );
    let observed = target.observe().await.expect("observe");
    assert_eq!(observed.stable.as_deref(), Some("v2"));
    assert_eq!(observed.candidate, None);
}

#[tokio::test]
async fn a_rollback_after_a_config_file_promotion_restores_the_old_configuration() {
    let Some(url) =
        cloudfront("a_rollback_after_a_config_file_promotion_restores_the_old_configuration")
    else {
        return;
    };
    let account = Account::new(&url).await;
    let primary = account.primary().await;
    let (before, _) = account.config(&primary).await;
    let dir = scratch("rollback");
    // The bare DistributionConfig object works as well as the wrapper.
    let document: serde_json::Value = serde_json::from_str(FIXTURE).expect("fixture");
    let file = write(
        &dir,
        "bare.json",
        &document["DistributionConfig"].to_string(),
    );
    let target = file_target(&account, &primary, &file);

    apply(
        &target,
        Action::Deploy {
            version: "v2".into(),
        },
        1,
    )
    .await;
    apply(&target, Action::Promote, 2).await;
    let (promoted, _) = account.config(&primary).await;
    assert_eq!(content(&promoted), content(&file_config()));

    // A restarted process finds its way back from the platform alone.
    let restarted = file_target(&account, &primary, &file);
    restarted.observe().await.expect("observe");
    let rolled = apply(&restarted, Action::Rollback { to: None }, 3).await;
    assert!(rolled.changed);
    let (after, _) = account.config(&primary).await;
    assert_eq!(content(&after), content(&before));
    assert_eq!(after.aliases, before.aliases);
    assert_eq!(account.origin(&primary).await, OLD_ORIGIN);
    assert_eq!(after.cache_behaviors, before.cache_behaviors);
    assert_eq!(
        account.tag(&primary, tags::VERSION).await.as_deref(),
        Some(tags::UNLABELLED)
    );
}

fn refused(result: Result<Release, AdapterError>) -> String {
    match result {
        Err(AdapterError::Rejected { message, .. }) => message,
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[test]
fn bad_config_files_are_refused_with_the_file_and_the_json_path() {
    let dir = scratch("refused");
    let misspelt = FIXTURE.replacen("\"DomainName\"", "\"DomainNme\"", 1);
    let file = write(&dir, "misspelt.json", &misspelt);
    let message = refused(Release::config_file(&file));
    assert!(message.contains(&file.display().to_string()), "{message}");
    assert!(
        message.contains("DistributionConfig.Origins.Items[0].DomainNme"),
        "{message}"
    );
    assert!(message.contains("not supported yet"), "{message}");

    let file = write(&dir, "truncated.json", &FIXTURE[..FIXTURE.len() / 2]);
    let message = refused(Release::config_file(&file));
    assert!(message.contains("not JSON (line"), "{message}");
    assert!(message.contains("truncated.json"), "{message}");

    let message = refused(Release::config_file(dir.join("missing.json")));
    assert!(message.contains("missing.json"), "{message}");
    assert!(message.contains("relative to the plan"), "{message}");
}

#[test]
fn a_plans_config_file_is_read_relative_to_the_plans_directory() {
    let dir = scratch("artifact");
    std::fs::create_dir_all(dir.join("cdn")).expect("subdirectory");
    write(&dir.join("cdn"), "site.json", FIXTURE);
    let artifact = |path: &str| Artifact {
        version: "v7".into(),
        source: ArtifactSource::CloudFrontConfigFile(path.into()),
    };
    let release = Release::from_artifact(&artifact("cdn/site.json"), &dir).expect("accepted");
    assert!(
        matches!(&release, Release::ConfigFile { path, .. } if path == &dir.join("cdn/site.json")),
        "{release:?}"
    );
    let message = refused(Release::from_artifact(&artifact("site.json"), &dir));
    assert!(message.starts_with("artifact v7: "), "{message}");
    assert!(message.contains("site.json"), "{message}");

    let origin = Artifact {
        version: "v8".into(),
        source: ArtifactSource::CloudFrontOrigin("v8.example.com".into()),
    };
    assert_eq!(
        Release::from_artifact(&origin, &dir).expect("accepted"),
        Release::OriginDomain("v8.example.com".into())
    );
}

#[test]
fn the_example_plans_config_file_is_accepted() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let plan_file = examples.join("cloudfront-config-file.yaml");
    let bytes = std::fs::read(&plan_file).expect("the example plan");
    let loaded = deployctl_plan::load(&plan_file.to_string_lossy(), &bytes)
        .unwrap_or_else(|rejected| panic!("{}", rejected.render(false)));
    let stage = &loaded.plan.stages[0];
    let artifact = loaded
        .plan
        .target_of(stage)
        .artifact
        .as_ref()
        .expect("the example has an artifact");
    let Release::ConfigFile { config, .. } =
        Release::from_artifact(artifact, &examples).expect("the example's config file")
    else {
        panic!("a config file release");
    };
    let behaviors = config
        .cache_behaviors
        .and_then(|b| b.items)
        .expect("behaviors");
    assert_eq!(behaviors[0].path_pattern, "/api/*");
}
