//! The emulator fixture: per-test accounts, a primary distribution serving
//! `v1.origin.example.com`, targets with millisecond waits, and the
//! emulator's control endpoint.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_sdk_cloudfront::Client;
use aws_sdk_cloudfront::types::{
    Aliases, CustomOriginConfig, DefaultCacheBehavior, DistributionConfig, Origin,
    OriginProtocolPolicy, Origins, ViewerProtocolPolicy,
};
use deployctl_aws::testing::{MotoAccount, emulator, sdk_config};
use deployctl_aws_cloudfront::{CloudFrontTarget, Release, WaitOptions, cloudfront_config};

pub const OLD_ORIGIN: &str = "v1.origin.example.com";
pub const NEW_ORIGIN: &str = "v2.origin.example.com";

/// The emulator's URL, or `None` (and why the test is skipped).
pub fn cloudfront(test: &str) -> Option<String> {
    emulator("DEPLOYCTL_TEST_CLOUDFRONT_URL", test)
}

/// Waits for tests: 5 ms between looks, 5 s at most.
pub fn fast() -> WaitOptions {
    WaitOptions {
        interval: Duration::from_millis(5),
        timeout: Duration::from_secs(5),
    }
}

/// One test's account on the emulator.
pub struct Account {
    pub url: String,
    pub account: MotoAccount,
    pub cf: Client,
    primaries: AtomicU32,
}

impl Account {
    pub async fn new(url: &str) -> Account {
        let sdk = sdk_config(url).await;
        let account = MotoAccount::fresh();
        let cf = Client::from_conf(cloudfront_config(&sdk).interceptor(account.clone()).build());
        Account {
            url: url.to_owned(),
            account,
            cf,
            primaries: AtomicU32::new(0),
        }
    }

    /// `POST /_emulator/config` for this account; returns the HTTP status.
    pub fn configure(&self, json: &str) -> u16 {
        control(&self.url, "/_emulator/config", &self.account.0, json)
    }

    /// A new, Deployed primary distribution with one CNAME, serving OLD_ORIGIN.
    pub async fn primary(&self) -> String {
        let n = self.primaries.fetch_add(1, Ordering::SeqCst);
        let out = self
            .cf
            .create_distribution()
            .distribution_config(config(&format!("primary-{n}"), OLD_ORIGIN))
            .send()
            .await
            .expect("cloudfront:CreateDistribution");
        let id = out.distribution.expect("a distribution").id;
        self.until_deployed(&id).await;
        id
    }

    pub async fn until_deployed(&self, id: &str) {
        for _ in 0..100 {
            let out = self.cf.get_distribution().id(id).send().await.expect("get");
            if out.distribution.expect("a distribution").status == "Deployed" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{id} never became Deployed");
    }

    /// A target on `primary` releasing NEW_ORIGIN, with fast waits.
    pub fn target(&self, primary: &str) -> CloudFrontTarget {
        CloudFrontTarget::with_client(
            format!("cdn-{primary}"),
            self.cf.clone(),
            primary,
            Some(Release::OriginDomain(NEW_ORIGIN.into())),
        )
        .with_wait(fast())
    }

    /// A target on a new primary.
    pub async fn fresh_target(&self) -> CloudFrontTarget {
        let primary = self.primary().await;
        self.target(&primary)
    }

    /// The distribution's config and ETag as CloudFront has it.
    pub async fn config(&self, id: &str) -> (DistributionConfig, String) {
        let out = self
            .cf
            .get_distribution_config()
            .id(id)
            .send()
            .await
            .expect("cloudfront:GetDistributionConfig");
        let etag = out.e_tag.clone().expect("an ETag");
        (out.distribution_config.expect("a config"), etag)
    }

    pub async fn origin(&self, id: &str) -> String {
        let (config, _) = self.config(id).await;
        config.origins.expect("origins").items[0]
            .domain_name
            .clone()
    }

    pub async fn tags(&self, id: &str) -> Vec<(String, String)> {
        let out = self.cf.get_distribution().id(id).send().await.expect("get");
        let arn = out.distribution.expect("a distribution").arn;
        let tags = self
            .cf
            .list_tags_for_resource()
            .resource(arn)
            .send()
            .await
            .expect("cloudfront:ListTagsForResource");
        tags.tags
            .and_then(|t| t.items)
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.key, t.value.unwrap_or_default()))
            .collect()
    }

    pub async fn tag(&self, id: &str, key: &str) -> Option<String> {
        self.tags(id)
            .await
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// (enabled, weight) of a policy.
    pub async fn policy(&self, id: &str) -> (bool, f32) {
        let out = self
            .cf
            .get_continuous_deployment_policy()
            .id(id)
            .send()
            .await
            .expect("cloudfront:GetContinuousDeploymentPolicy");
        let config = out
            .continuous_deployment_policy
            .expect("a policy")
            .continuous_deployment_policy_config
            .expect("a config");
        let weight = config
            .traffic_config
            .and_then(|t| t.single_weight_config)
            .map_or(-1.0, |w| w.weight);
        (config.enabled, weight)
    }

    /// Every policy ID in the account.
    pub async fn policies(&self) -> Vec<String> {
        let out = self
            .cf
            .list_continuous_deployment_policies()
            .send()
            .await
            .expect("cloudfront:ListContinuousDeploymentPolicies");
        out.continuous_deployment_policy_list
            .and_then(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| s.continuous_deployment_policy.map(|p| p.id))
            .collect()
    }
}

/// A minimal distribution configuration with one custom origin and a CNAME.
pub fn config(reference: &str, origin: &str) -> DistributionConfig {
    DistributionConfig::builder()
        .caller_reference(reference)
        .comment("deployctl test")
        .enabled(true)
        .aliases(
            Aliases::builder()
                .quantity(1)
                .items(format!("{reference}.example.com"))
                .build()
                .expect("aliases"),
        )
        .origins(
            Origins::builder()
                .quantity(1)
                .items(
                    Origin::builder()
                        .id("app")
                        .domain_name(origin)
                        .custom_origin_config(
                            CustomOriginConfig::builder()
                                .http_port(80)
                                .https_port(443)
                                .origin_protocol_policy(OriginProtocolPolicy::HttpsOnly)
                                .build()
                                .expect("origin config"),
                        )
                        .build()
                        .expect("origin"),
                )
                .build()
                .expect("origins"),
        )
        .default_cache_behavior(
            DefaultCacheBehavior::builder()
                .target_origin_id("app")
                .viewer_protocol_policy(ViewerProtocolPolicy::RedirectToHttps)
                .cache_policy_id("658327ea-f89d-4fab-a63d-7e88639e58f6")
                .build()
                .expect("default cache behavior"),
        )
        .build()
        .expect("distribution config")
}

/// A JSON POST to the emulator's control endpoint over plain HTTP/1.1
/// (the tests have no HTTP client crate, and need none for this).
pub fn control(url: &str, path: &str, account: &str, json: &str) -> u16 {
    let host = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut stream = std::net::TcpStream::connect(&host).expect("connect to the emulator");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nx-moto-account-id: {account}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
