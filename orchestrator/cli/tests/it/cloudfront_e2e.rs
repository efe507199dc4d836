//! CloudFront releases end to end through the binary: the distribution on
//! the repository's CloudFront emulator (`tests/emulators/cloudfront.py`),
//! everything else (STS for the caller, CloudWatch for the staging traffic
//! guard) on moto. Skipped, with a message, when either URL is unset.
//!
//! The binary cannot carry a per-test account header, so these tests use
//! the default account of both emulators with a distribution per test. The
//! emulator is told to propagate writes at once in that account: the
//! adapter polls every 15 s (its default, right for AWS) whenever a
//! distribution is still `InProgress`, and a release waits several times.
//! The waits themselves are tested in `adapters/aws-cloudfront`.
//!
//! Every gate on a CloudFront target is guarded by the staging traffic
//! check, so the tests publish `AWS/CloudFront` `Requests` for the staging
//! distribution as soon as it exists (its ID is in the primary's
//! `deployctl:staging` tag), except the one about no traffic. The HTTP gate
//! answers from what the emulator says the policy's weight is at the time,
//! so "fails at 15 %" is the platform's 15 %, not a request count.
//!
//! The small HTTP and environment helpers here are shared with `ecs_e2e.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::emulators::urls;
use crate::lambda_support::HealthServer;
use crate::sandbox::{Finished, Running, Sandbox, wait_until};

const OLD_ORIGIN: &str = "v1.origin.example.com";
const NEW_ORIGIN: &str = "v2.origin.example.com";

/// One HTTP/1.1 request over a fresh socket; (status, body).
pub(crate) fn http(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let (status, _, body) = exchange(base, method, path, headers, body)
        .unwrap_or_else(|error| panic!("{method} {base}{path}: {error}"));
    (status, body)
}

/// One HTTP/1.1 request; (status, response head, body), or why it failed.
pub(crate) fn exchange(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String, String)> {
    let address = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(address)?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // A real API server behind `kubectl proxy` chunks larger answers.
    let body = if header(head, "Transfer-Encoding").is_some_and(|v| v.contains("chunked")) {
        dechunked(body)
    } else {
        body.to_owned()
    };
    Ok((status, head.to_owned(), body))
}

/// A `Transfer-Encoding: chunked` body's content (chunks are counted in
/// bytes, and may split a character).
fn dechunked(body: &str) -> String {
    let mut rest = body.as_bytes();
    let mut content = Vec::new();
    while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
        let line = String::from_utf8_lossy(&rest[..end]);
        let Ok(size) = usize::from_str_radix(line.split(';').next().unwrap_or_default().trim(), 16)
        else {
            break;
        };
        let data = &rest[end + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        content.extend_from_slice(&data[..size]);
        rest = data[size..].strip_prefix(b"\r\n").unwrap_or(&data[size..]);
    }
    String::from_utf8_lossy(&content).into_owned()
}

/// A response header's value (names are case-insensitive).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then_some(value.trim())
    })
}

/// An `Authorization` header naming `service` in the credential scope:
/// moto routes a request by it (it checks no signature), and the access
/// key `testing` is its default account.
pub(crate) fn scope(service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
    )
}

/// `deployctl ARGS` in `sandbox` with test credentials, every AWS service
/// on moto except the `AWS_ENDPOINT_URL_<SERVICE>` overrides in `services`.
pub(crate) fn aws_command(
    sandbox: &Sandbox,
    args: &[&str],
    moto: &str,
    services: &[(&str, &str)],
) -> Command {
    let mut command = sandbox.command(args);
    command
        .env("AWS_ENDPOINT_URL", moto)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/deployctl-test")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/deployctl-test")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_ENDPOINT_URL_CLOUDFRONT")
        .env_remove("AWS_ENDPOINT_URL_ECS");
    for (service, url) in services {
        command.env(format!("AWS_ENDPOINT_URL_{service}"), url);
    }
    command
}

/// A unique name for this process and `label` (the emulators' default
/// accounts are shared by every test and every run of the suite).
pub(crate) fn unique(label: &str) -> String {
    format!("e2e-{label}-{}", std::process::id())
}

/// The run the sandbox created.
pub(crate) fn only_run(sandbox: &Sandbox) -> String {
    sandbox
        .run_ids()
        .first()
        .cloned()
        .expect("a run was created")
}

/// Whether the sandbox's run is in a timed pause: its last write is done,
/// and the adapter has read back what it wrote (a stranger acting earlier
/// races that read, which is not what the other-writer tests are about).
pub(crate) fn pausing(sandbox: &Sandbox) -> bool {
    if !sandbox.state_dir().join("journal.sqlite3").exists() {
        return false;
    }
    let Some(run) = sandbox.run_ids().first().cloned() else {
        return false;
    };
    let stages = sandbox.journal().stages(&run).expect("stages");
    stages
        .first()
        .is_some_and(|stage| stage.pause_until.is_some())
}

/// The emulator's whole view of its default account.
fn emulator_state(emulator: &str) -> serde_json::Value {
    let (status, text) = http(emulator, "GET", "/_emulator/state", &[], "");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The share of requests `primary`'s policy sends to staging right now:
/// 0 without an attached, enabled policy.
fn live_weight(emulator: &str, primary: &str) -> f64 {
    let state = emulator_state(emulator);
    let Some(policy_id) = state["distributions"][primary]["continuousDeploymentPolicyId"]
        .as_str()
        .filter(|id| !id.is_empty())
    else {
        return 0.0;
    };
    let policy = &state["policies"][policy_id];
    if policy["enabled"] != true {
        return 0.0;
    }
    policy["weight"]
        .as_str()
        .and_then(|w| w.parse().ok())
        .unwrap_or(0.0)
}

/// The policy in `state` routing to `staging`: (id, enabled, weight).
fn policy_routing_to(state: &serde_json::Value, staging: &str) -> Option<(String, bool, f64)> {
    let domain = &state["distributions"][staging]["domainName"];
    state["policies"]
        .as_object()?
        .iter()
        .find(|(_, policy)| policy["stagingDomainName"] == *domain)
        .map(|(id, policy)| {
            (
                id.clone(),
                policy["enabled"] == true,
                policy["weight"]
                    .as_str()
                    .and_then(|w| w.parse().ok())
                    .unwrap_or(-1.0),
            )
        })
}

/// One test's primary distribution on the emulator, and the run's wiring.
struct Cdn {
    moto: String,
    emulator: String,
    primary: String,
}

/// Deletes what a test made, whatever happened to it: CloudFront allows
/// 20 staging distributions per account (the emulator too), and every run
/// of these tests would leave one in the shared default account otherwise.
impl Drop for Cdn {
    fn drop(&mut self) {
        if let Err(error) = self.delete_all() {
            // Not a test failure: the next run may meet the quota, and says so.
            let _ = writeln!(
                std::io::stderr(),
                "cleanup of distribution {}: {error}",
                self.primary
            );
        }
    }
}

impl Cdn {
    /// One CloudFront call for the cleanup; (ETag, body) of a 2xx answer.
    fn call(
        &self,
        method: &str,
        path: &str,
        if_match: Option<&str>,
        body: &str,
    ) -> Result<(String, String), String> {
        let auth = scope("cloudfront");
        let mut headers = vec![("Authorization", auth.as_str())];
        headers.extend(if_match.map(|etag| ("If-Match", etag)));
        let (status, head, body) = exchange(
            &self.emulator,
            method,
            &format!("/2020-05-31/{path}"),
            &headers,
            body,
        )
        .map_err(|e| format!("{method} {path}: {e}"))?;
        if !(200..300).contains(&status) {
            return Err(format!("{method} {path}: {status} {body}"));
        }
        Ok((header(&head, "ETag").unwrap_or_default().to_owned(), body))
    }

    /// The policy, the staging distribution and the primary, in the order
    /// CloudFront lets them go: a policy once no distribution uses it, a
    /// distribution once disabled.
    fn delete_all(&self) -> Result<(), String> {
        // Nothing here may panic: this runs while a failed test unwinds.
        let (_, _, text) = exchange(&self.emulator, "GET", "/_emulator/state", &[], "")
            .map_err(|e| format!("reading the emulator's state: {e}"))?;
        let state: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("the emulator's state: {e}"))?;
        let attached = state["distributions"][&self.primary]["continuousDeploymentPolicyId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !attached.is_empty() {
            // A failed test may leave the policy attached.
            let path = format!("distribution/{}/config", self.primary);
            let (etag, config) = self.call("GET", &path, None, "")?;
            let detached = config.replace(
                &format!("<ContinuousDeploymentPolicyId>{attached}</ContinuousDeploymentPolicyId>"),
                "<ContinuousDeploymentPolicyId></ContinuousDeploymentPolicyId>",
            );
            self.call("PUT", &path, Some(&etag), &detached)?;
        }
        let stagings: Vec<String> = state["distributions"]
            .as_object()
            .map(|all| {
                all.iter()
                    .filter(|(_, d)| d["tags"]["deployctl:primary"] == self.primary.as_str())
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default();
        for staging in &stagings {
            if let Some((policy, _, _)) = policy_routing_to(&state, staging) {
                let path = format!("continuous-deployment-policy/{policy}");
                let (etag, _) = self.call("GET", &path, None, "")?;
                self.call("DELETE", &path, Some(&etag), "")?;
            }
        }
        for id in stagings.iter().chain([&self.primary]) {
            let path = format!("distribution/{id}/config");
            let (etag, config) = self.call("GET", &path, None, "")?;
            let disabled = config.replace("<Enabled>true</Enabled>", "<Enabled>false</Enabled>");
            self.call("PUT", &path, Some(&etag), &disabled)?;
            // Propagated at once in this account; the read settles it.
            let path = format!("distribution/{id}");
            let (etag, _) = self.call("GET", &path, None, "")?;
            self.call("DELETE", &path, Some(&etag), "")?;
        }
        Ok(())
    }
}

impl Cdn {
    /// A Deployed primary distribution with one CNAME serving OLD_ORIGIN,
    /// in the emulator's default account, which propagates at once.
    fn new(test: &str, label: &str) -> Option<Cdn> {
        let [moto, emulator] = urls(
            test,
            ["DEPLOYCTL_TEST_MOTO_URL", "DEPLOYCTL_TEST_CLOUDFRONT_URL"],
        )?;
        let (status, text) = http(
            &emulator,
            "POST",
            "/_emulator/config",
            &[],
            r#"{"deployGets": 0, "deploySeconds": 0}"#,
        );
        assert_eq!(status, 200, "{text}");
        let reference = unique(label);
        let config = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<DistributionConfig xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/">
<CallerReference>{reference}</CallerReference>
<Aliases><Quantity>1</Quantity><Items><CNAME>{reference}.example.com</CNAME></Items></Aliases>
<Origins><Quantity>1</Quantity><Items><Origin><Id>app</Id><DomainName>{OLD_ORIGIN}</DomainName>
<CustomOriginConfig><HTTPPort>80</HTTPPort><HTTPSPort>443</HTTPSPort><OriginProtocolPolicy>https-only</OriginProtocolPolicy></CustomOriginConfig>
</Origin></Items></Origins>
<DefaultCacheBehavior><TargetOriginId>app</TargetOriginId><ViewerProtocolPolicy>redirect-to-https</ViewerProtocolPolicy>
<CachePolicyId>658327ea-f89d-4fab-a63d-7e88639e58f6</CachePolicyId></DefaultCacheBehavior>
<Comment>deployctl e2e</Comment>
<Enabled>true</Enabled>
</DistributionConfig>"#
        );
        let (status, text) = http(
            &emulator,
            "POST",
            "/2020-05-31/distribution",
            &[
                ("Content-Type", "application/xml"),
                ("Authorization", &scope("cloudfront")),
            ],
            &config,
        );
        assert_eq!(status, 201, "cloudfront:CreateDistribution: {text}");
        let primary = text
            .split_once("<Id>")
            .and_then(|(_, rest)| rest.split_once("</Id>"))
            .map(|(id, _)| id.to_owned())
            .unwrap_or_else(|| panic!("no distribution ID in {text}"));
        let cdn = Cdn {
            moto,
            emulator,
            primary,
        };
        assert_eq!(cdn.distribution(&cdn.primary)["status"], "Deployed");
        Some(cdn)
    }

    /// The emulator's whole view of the default account.
    fn state(&self) -> serde_json::Value {
        emulator_state(&self.emulator)
    }

    /// A distribution as CloudFront holds it: status, origins, policy, tags.
    fn distribution(&self, id: &str) -> serde_json::Value {
        self.state()["distributions"][id].clone()
    }

    /// The staging distribution's ID, once the primary's tag names it.
    fn staging(&self) -> Option<String> {
        self.distribution(&self.primary)["tags"]["deployctl:staging"]
            .as_str()
            .map(str::to_owned)
    }

    /// The policy routing to `staging` (there is at most one, CloudFront
    /// refuses a second): (id, enabled, weight).
    fn policy_for(&self, staging: &str) -> Option<(String, bool, f64)> {
        policy_routing_to(&self.state(), staging)
    }

    /// Publishes staging traffic as soon as the staging distribution exists
    /// (a thread: the run creates it), the way CloudFront's metrics would
    /// once viewers reach it. Returns the staging ID when done.
    fn feed_staging_traffic(self: &Arc<Self>) -> std::thread::JoinHandle<String> {
        let cdn = Arc::clone(self);
        std::thread::spawn(move || {
            let mut staging = None;
            wait_until(
                Duration::from_secs(60),
                "the primary names its staging distribution",
                || {
                    staging = cdn.staging();
                    staging.is_some()
                },
            );
            let staging = staging.unwrap_or_default();
            let body = format!(
                "Action=PutMetricData&Version=2010-08-01&Namespace=AWS%2FCloudFront\
&MetricData.member.1.MetricName=Requests&MetricData.member.1.Value=250&MetricData.member.1.Unit=None\
&MetricData.member.1.Dimensions.member.1.Name=DistributionId&MetricData.member.1.Dimensions.member.1.Value={staging}\
&MetricData.member.1.Dimensions.member.2.Name=Region&MetricData.member.1.Dimensions.member.2.Value=Global"
            );
            let (status, text) = http(
                &cdn.moto,
                "POST",
                "/",
                &[
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    ("Authorization", &scope("monitoring")),
                ],
                &body,
            );
            assert_eq!(status, 200, "cloudwatch:PutMetricData: {text}");
            staging
        })
    }

    /// A health endpoint for the HTTP gate that answers by the policy's
    /// weight at the time (`healthy(weight)`), recording each weight seen.
    fn health(
        self: &Arc<Self>,
        healthy: impl Fn(f64) -> bool + Send + Sync + 'static,
    ) -> (HealthServer, Arc<Mutex<Vec<f64>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        // Not the `Cdn` itself: the server thread outlives the test, and
        // dropping the `Cdn` cleans up.
        let (emulator, primary, record) = (
            self.emulator.clone(),
            self.primary.clone(),
            Arc::clone(&seen),
        );
        let server = HealthServer::start(move |_| {
            let weight = live_weight(&emulator, &primary);
            record.lock().expect("weights").push(weight);
            healthy(weight)
        });
        (server, seen)
    }

    /// A canary to 5 % then 15 %, each step judged by the HTTP gate.
    fn plan(&self, sandbox: &Sandbox, gate_url: &str, inconclusive_limit: u32) -> String {
        let plan = format!(
            "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {{name: cloudfront-e2e, environment: test}}\n\
targets:\n  cdn:\n    cloudfront: {{distributionId: {}}}\n\
artifacts:\n  cdn: {{version: v2, cloudfront: {{originDomain: {NEW_ORIGIN}}}}}\n\
stages:\n  - name: cdn\n    target: cdn\n    canary:\n      steps: [{{setWeight: 5}}, {{analysis: {{gates: [health]}}}}, {{setWeight: 15}}, {{analysis: {{gates: [health]}}}}]\n\
gates:\n  health:\n    http: {{url: \"{gate_url}\", allowInsecureHttp: true}}\n    interval: 100ms\n    count: 2\n    inconclusiveLimit: {inconclusive_limit}\n",
            self.primary
        );
        let path = sandbox.root().join("plan.yaml");
        std::fs::write(&path, plan).expect("plan written");
        path.to_string_lossy().into_owned()
    }

    fn apply(&self, sandbox: &Sandbox, plan: &str) -> Finished {
        let args = ["apply", plan, "--yes"];
        let command = aws_command(
            sandbox,
            &args,
            &self.moto,
            &[("CLOUDFRONT", &self.emulator)],
        );
        sandbox
            .spawn_command(command, &args, None)
            .wait(crate::sandbox::COMMAND_TIMEOUT)
    }

    /// What a run that did not promote must leave: the primary on the old
    /// origin with no policy attached, Deployed, no release tags; the
    /// policy disabled at weight 0; the staging distribution idle.
    fn assert_untouched(&self, out: &Finished) {
        let primary = self.distribution(&self.primary);
        assert_eq!(primary["origins"], serde_json::json!([OLD_ORIGIN]), "{out}");
        assert_eq!(primary["continuousDeploymentPolicyId"], "", "{primary:#}");
        assert_eq!(primary["status"], "Deployed", "{primary:#}");
        assert_eq!(primary["enabled"], true, "{primary:#}");
        assert!(
            primary["tags"]["deployctl:version"].is_null(),
            "{primary:#}"
        );
        assert!(
            primary["tags"]["deployctl:previous"].is_null(),
            "{primary:#}"
        );
        let staging = self.staging().expect("a staging distribution was made");
        let (_, enabled, weight) = self.policy_for(&staging).expect("a policy");
        assert_eq!((enabled, weight), (false, 0.0), "the policy routes nothing");
        let staging = self.distribution(&staging);
        assert_eq!(staging["tags"]["deployctl:role"], "idle", "{staging:#}");
    }
}

#[test]
fn a_cloudfront_canary_with_staging_traffic_and_a_passing_gate_promotes() {
    let Some(cdn) = Cdn::new(
        "a_cloudfront_canary_with_staging_traffic_and_a_passing_gate_promotes",
        "cf-promote",
    ) else {
        return;
    };
    let cdn = Arc::new(cdn);
    let (health, seen) = cdn.health(|_| true);
    let sandbox = Sandbox::new("cloudfront-promote");
    let plan = cdn.plan(&sandbox, &health.url, 10);
    let feeder = cdn.feed_staging_traffic();
    let out = cdn.apply(&sandbox, &plan);
    out.expect_code(0);
    let staging = feeder.join().expect("traffic published");

    let status = sandbox.status(Some(&only_run(&sandbox)));
    assert_eq!(status["phase"], "Succeeded", "{status:#}");
    // The HTTP check ran at both steps, with CloudFront routing 5 % then
    // 15 % to staging.
    let seen = seen.lock().expect("weights").clone();
    assert!(seen.len() >= 4, "{seen:?}");
    for share in [0.05, 0.15] {
        assert!(
            seen.iter().any(|w| (w - share).abs() < 1e-6),
            "the gate never measured at {share}: {seen:?}"
        );
    }
    // The primary serves the new origin, with its CNAME, and nothing
    // routes to staging any more.
    let primary = cdn.distribution(&cdn.primary);
    assert_eq!(primary["origins"], serde_json::json!([NEW_ORIGIN]), "{out}");
    assert_eq!(primary["continuousDeploymentPolicyId"], "", "{primary:#}");
    assert_eq!(primary["status"], "Deployed", "{primary:#}");
    assert_eq!(primary["tags"]["deployctl:version"], "v2", "{primary:#}");
    let (_, enabled, weight) = cdn.policy_for(&staging).expect("the policy is kept");
    assert_eq!((enabled, weight), (false, 0.0), "the policy is disabled");
    // The staging distribution keeps what the primary served before, for
    // a rollback after promotion.
    let staging = cdn.distribution(&staging);
    assert_eq!(staging["origins"], serde_json::json!([OLD_ORIGIN]));
    assert_eq!(staging["tags"]["deployctl:role"], "previous", "{staging:#}");
}

#[test]
fn a_cloudfront_gate_failing_at_15_percent_rolls_back_to_the_old_origin() {
    let Some(cdn) = Cdn::new(
        "a_cloudfront_gate_failing_at_15_percent_rolls_back_to_the_old_origin",
        "cf-rollback",
    ) else {
        return;
    };
    let cdn = Arc::new(cdn);
    // Healthy while staging gets 5 %, failing once it gets 15 %.
    let (health, seen) = cdn.health(|weight| weight < 0.1);
    let sandbox = Sandbox::new("cloudfront-rollback");
    let plan = cdn.plan(&sandbox, &health.url, 10);
    let feeder = cdn.feed_staging_traffic();
    let out = cdn.apply(&sandbox, &plan);
    // README "Exit codes": 1, rolled back cleanly, targets on their stable versions.
    out.expect_code(1);
    feeder.join().expect("traffic published");

    let status = sandbox.status(Some(&only_run(&sandbox)));
    assert_eq!(status["phase"], "RolledBack", "{status:#}");
    assert_eq!(status["stages"][0]["weight"], 0, "{status:#}");
    assert_eq!(status["rollbackIncomplete"], false, "{status:#}");
    let seen = seen.lock().expect("weights").clone();
    assert!(
        seen.iter().any(|w| (w - 0.15).abs() < 1e-6),
        "the failing measurement was taken at 15 %: {seen:?}"
    );
    cdn.assert_untouched(&out);
}

#[test]
fn a_cloudfront_canary_without_staging_traffic_never_promotes() {
    let Some(cdn) = Cdn::new(
        "a_cloudfront_canary_without_staging_traffic_never_promotes",
        "cf-no-traffic",
    ) else {
        return;
    };
    let cdn = Arc::new(cdn);
    // The endpoint is healthy: only the missing staging traffic can stop
    // the release.
    let (health, seen) = cdn.health(|_| true);
    let sandbox = Sandbox::new("cloudfront-no-traffic");
    let plan = cdn.plan(&sandbox, &health.url, 2);
    let out = cdn.apply(&sandbox, &plan);
    // More inconclusive results than the limit fail the gate: a rollback.
    out.expect_code(1);

    let run = only_run(&sandbox);
    let status = sandbox.status(Some(&run));
    assert_eq!(status["phase"], "RolledBack", "{status:#}");
    let gate = sandbox
        .journal()
        .events(&run)
        .expect("events")
        .into_iter()
        .find(|e| e.kind == "gateResult")
        .expect("the gate's result is journaled");
    let verdict = gate.data.to_string();
    assert!(
        verdict.contains("noData") && verdict.contains("served no requests"),
        "the gate failed for want of staging traffic: {verdict}"
    );
    assert!(
        seen.lock().expect("weights").is_empty(),
        "no staging traffic: the HTTP check is never asked"
    );
    cdn.assert_untouched(&out);
}

/// A whole DistributionConfig (two origins, an `/api/*` behavior) in the
/// JSON `aws cloudfront get-distribution-config` prints; `origin_key` is
/// the name of the first origin's domain field (misspelt to break it).
fn config_file_json(origin_key: &str) -> String {
    let custom = r#"{"HTTPPort": 80, "HTTPSPort": 443, "OriginProtocolPolicy": "https-only"}"#;
    format!(
        r#"{{"ETag": "E1", "DistributionConfig": {{
  "CallerReference": "copied-from-production", "Comment": "from a file", "Enabled": true,
  "Aliases": {{"Quantity": 1, "Items": ["www.example.com"]}},
  "Origins": {{"Quantity": 2, "Items": [
    {{"Id": "app", "{origin_key}": "{NEW_ORIGIN}", "CustomOriginConfig": {custom}}},
    {{"Id": "api", "DomainName": "api.origin.example.com", "CustomOriginConfig": {custom}}}]}},
  "DefaultCacheBehavior": {{"TargetOriginId": "app", "ViewerProtocolPolicy": "redirect-to-https",
    "CachePolicyId": "658327ea-f89d-4fab-a63d-7e88639e58f6"}},
  "CacheBehaviors": {{"Quantity": 1, "Items": [{{"PathPattern": "/api/*", "TargetOriginId": "api",
    "ViewerProtocolPolicy": "https-only", "CachePolicyId": "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"}}]}},
  "ContinuousDeploymentPolicyId": "", "Staging": false}}}}"#
    )
}

#[test]
fn a_cloudfront_config_file_is_checked_before_anything_moves_then_released() {
    let Some(cdn) = Cdn::new(
        "a_cloudfront_config_file_is_checked_before_anything_moves_then_released",
        "cf-config-file",
    ) else {
        return;
    };
    let cdn = Arc::new(cdn);
    let (health, _) = cdn.health(|_| true);
    let sandbox = Sandbox::new("cloudfront-config-file");
    // The test's usual canary plan, releasing a config file beside it.
    let plan = cdn.plan(&sandbox, &health.url, 10);
    let text = std::fs::read_to_string(&plan).expect("plan");
    let text = text.replace(
        &format!("originDomain: {NEW_ORIGIN}"),
        "configFile: cdn/site.json",
    );
    assert!(text.contains("configFile"), "{text}");
    std::fs::write(&plan, text).expect("plan written");
    let file = sandbox.root().join("cdn/site.json");
    std::fs::create_dir_all(sandbox.root().join("cdn")).expect("cdn directory");

    // A misspelt field: refused with its JSON path, exit 2, nothing touched.
    std::fs::write(&file, config_file_json("DomainNme")).expect("config file");
    let out = cdn.apply(&sandbox, &plan);
    out.expect_code(2);
    assert!(
        out.stderr
            .contains("DistributionConfig.Origins.Items[0].DomainNme")
            && out.stderr.contains("site.json"),
        "{out}"
    );
    assert_eq!(cdn.staging(), None, "no staging distribution was made");
    let primary = cdn.distribution(&cdn.primary);
    assert_eq!(primary["origins"], serde_json::json!([OLD_ORIGIN]), "{out}");
    assert!(
        primary["tags"]["deployctl:version"].is_null(),
        "{primary:#}"
    );

    // Fixed: the canary releases the file; promotion puts its origins on
    // the primary, which keeps its own CNAME.
    std::fs::write(&file, config_file_json("DomainName")).expect("config file");
    let feeder = cdn.feed_staging_traffic();
    let out = cdn.apply(&sandbox, &plan);
    out.expect_code(0);
    feeder.join().expect("traffic published");
    let primary = cdn.distribution(&cdn.primary);
    assert_eq!(
        primary["origins"],
        serde_json::json!([NEW_ORIGIN, "api.origin.example.com"]),
        "{out}"
    );
    assert_eq!(primary["tags"]["deployctl:version"], "v2", "{primary:#}");
    assert_eq!(primary["status"], "Deployed", "{primary:#}");
    let path = format!("distribution/{}/config", cdn.primary);
    let (_, config) = cdn
        .call("GET", &path, None, "")
        .expect("the primary's config");
    assert!(
        config.contains("<PathPattern>/api/*</PathPattern>"),
        "{config}"
    );
    assert!(
        config.contains("<Comment>from a file</Comment>"),
        "{config}"
    );
    assert!(
        config.contains(".example.com</CNAME>") && !config.contains("www.example.com"),
        "the primary keeps its own CNAME, not the file's: {config}"
    );
    assert!(!config.contains("copied-from-production"), "{config}");
}

/// The runbook's commands and a stranger's edits, for the tests below.
impl Cdn {
    /// `deployctl ARGS` started with CloudFront on the emulator.
    fn spawn(&self, sandbox: &Sandbox, args: &[&str]) -> Running {
        let command = aws_command(sandbox, args, &self.moto, &[("CLOUDFRONT", &self.emulator)]);
        sandbox.spawn_command(command, args, None)
    }

    fn run(&self, sandbox: &Sandbox, args: &[&str]) -> Finished {
        self.spawn(sandbox, args)
            .wait(crate::sandbox::COMMAND_TIMEOUT)
    }

    /// A canary of NEW_ORIGIN by `steps`, the gate `health` at `gate_url`.
    fn plan_steps(&self, sandbox: &Sandbox, steps: &str, gate_url: &str) -> String {
        let plan = format!(
            "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {{name: cloudfront-e2e, environment: test}}\n\
targets:\n  cdn:\n    cloudfront: {{distributionId: {}}}\n\
artifacts:\n  cdn: {{version: v2, cloudfront: {{originDomain: {NEW_ORIGIN}}}}}\n\
stages:\n  - name: cdn\n    target: cdn\n    canary:\n      steps: {steps}\n\
gates:\n  health:\n    http: {{url: \"{gate_url}\", allowInsecureHttp: true}}\n    interval: 100ms\n    count: 2\n",
            self.primary
        );
        let path = sandbox.root().join("plan.yaml");
        std::fs::write(&path, plan).expect("plan written");
        path.to_string_lossy().into_owned()
    }

    /// Another writer sets the policy routing to `staging` to `weight`, the
    /// way a console or script would: read the config and its ETag, write
    /// it back with If-Match.
    fn stranger_sets_weight(&self, staging: &str, weight: &str) {
        let (policy, _, _) = self.policy_for(staging).expect("a policy");
        let (etag, config) = self
            .call(
                "GET",
                &format!("continuous-deployment-policy/{policy}/config"),
                None,
                "",
            )
            .expect("the policy's config");
        let (before, rest) = config.split_once("<Weight>").expect("a weight");
        let (_, after) = rest.split_once("</Weight>").expect("a weight");
        let edited = format!("{before}<Weight>{weight}</Weight>{after}");
        self.call(
            "PUT",
            &format!("continuous-deployment-policy/{policy}"),
            Some(&etag),
            &edited,
        )
        .expect("the other writer's policy update");
    }

    /// Another writer edits the primary's comment (with If-Match).
    fn stranger_edits_the_primary(&self, comment: &str) {
        let path = format!("distribution/{}/config", self.primary);
        let (etag, config) = self
            .call("GET", &path, None, "")
            .expect("the primary's config");
        assert!(
            config.contains("<Comment>deployctl e2e</Comment>"),
            "{config}"
        );
        let edited = config.replace(
            "<Comment>deployctl e2e</Comment>",
            &format!("<Comment>{comment}</Comment>"),
        );
        self.call("PUT", &path, Some(&etag), &edited)
            .expect("the other writer's distribution update");
    }

    /// What this test's run manages, as CloudFront holds it (the default
    /// account is shared with the other tests): the primary, the staging
    /// distribution and the policy, with their ETags.
    fn mine(&self, staging: &str) -> serde_json::Value {
        let state = self.state();
        let policy = policy_routing_to(&state, staging).map(|(id, _, _)| id);
        serde_json::json!({
            "primary": state["distributions"][&self.primary],
            "staging": state["distributions"][staging],
            "policy": policy.map(|id| state["policies"][&id].clone()),
        })
    }
}

/// The process SIGKILLed while the canary pauses at 5 % or 15 %: nothing
/// moves after the kill, and the runbook's command finishes the run from
/// the platform's state: `resume` promotes (the primary on the new origin,
/// the policy detached and disabled), `rollback` puts all traffic back on
/// the primary's old origin.
#[test]
fn a_cloudfront_canary_killed_mid_pause_is_resumed_or_rolled_back() {
    let test = "a_cloudfront_canary_killed_mid_pause_is_resumed_or_rolled_back";
    let steps = "[{setWeight: 5}, {pause: {duration: 1500ms}}, {setWeight: 15}, {pause: {duration: 1500ms}}, {analysis: {gates: [health]}}]";
    // (the share of requests on staging to kill at, the command after)
    let cases = [(0.05, "resume"), (0.15, "resume"), (0.15, "rollback")];
    for (n, (kill_at, command)) in cases.into_iter().enumerate() {
        let Some(cdn) = Cdn::new(test, &format!("cf-kill-{n}")) else {
            return;
        };
        let cdn = Arc::new(cdn);
        let (health, seen) = cdn.health(|_| true);
        let sandbox = Sandbox::new("cloudfront-kill");
        let plan = cdn.plan_steps(&sandbox, steps, &health.url);
        let feeder = cdn.feed_staging_traffic();
        let running = cdn.spawn(&sandbox, &["apply", &plan, "--yes"]);
        wait_until(
            Duration::from_secs(60),
            &format!("case {n}: staging gets {kill_at}"),
            || (live_weight(&cdn.emulator, &cdn.primary) - kill_at).abs() < 1e-6,
        );
        assert!(!running.sigkill(), "the run was still going when killed");
        let staging = feeder.join().expect("traffic published");
        let before = cdn.mine(&staging);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            cdn.mine(&staging),
            before,
            "case {n}: nothing moves after SIGKILL"
        );
        let run = only_run(&sandbox);
        let status = sandbox.status(Some(&run));
        assert_eq!(status["interrupted"], true, "{status:#}");

        let out = cdn.run(&sandbox, &[command, &run, "--yes"]);
        out.expect_code(0);
        let status = sandbox.status(Some(&run));
        assert_eq!(status["rollbackIncomplete"], false, "{status:#}");
        if command == "rollback" {
            assert_eq!(status["phase"], "RolledBack", "case {n}: {status:#}");
            assert!(seen.lock().expect("weights").is_empty(), "no gate ran");
            cdn.assert_untouched(&out);
            continue;
        }
        assert_eq!(status["phase"], "Succeeded", "case {n}: {status:#}\n{out}");
        // The resumed run's gate measured with 15 % on staging.
        let seen = seen.lock().expect("weights").clone();
        assert!(
            seen.iter().any(|w| (w - 0.15).abs() < 1e-6),
            "case {n}: {seen:?}"
        );
        let primary = cdn.distribution(&cdn.primary);
        assert_eq!(primary["origins"], serde_json::json!([NEW_ORIGIN]), "{out}");
        assert_eq!(primary["continuousDeploymentPolicyId"], "", "{primary:#}");
        assert_eq!(primary["status"], "Deployed", "{primary:#}");
        assert_eq!(primary["tags"]["deployctl:version"], "v2", "{primary:#}");
        let (_, enabled, weight) = cdn.policy_for(&staging).expect("the policy is kept");
        assert_eq!(
            (enabled, weight),
            (false, 0.0),
            "case {n}: the policy is disabled"
        );
    }
}

/// Another writer changes what the run manages while its canary pauses at
/// 5 %: the policy's weight, or the primary's configuration. deployctl does
/// not overwrite a change it did not make, neither by continuing nor by
/// rolling back over it: the run ends "rollback incomplete" (exit 3) naming
/// another writer, in its status and its journal, and the change stands.
/// The runbook's `deployctl rollback` is the human's explicit override.
#[test]
fn another_writer_changing_the_distribution_stops_the_run_for_a_human() {
    let test = "another_writer_changing_the_distribution_stops_the_run_for_a_human";
    let steps =
        "[{setWeight: 5}, {pause: {duration: 2s}}, {setWeight: 15}, {analysis: {gates: [health]}}]";
    for (n, stranger) in ["weight", "primary"].into_iter().enumerate() {
        let Some(cdn) = Cdn::new(test, &format!("cf-stranger-{n}")) else {
            return;
        };
        let cdn = Arc::new(cdn);
        let (health, _) = cdn.health(|_| true);
        let sandbox = Sandbox::new("cloudfront-stranger");
        let plan = cdn.plan_steps(&sandbox, steps, &health.url);
        let feeder = cdn.feed_staging_traffic();
        let running = cdn.spawn(&sandbox, &["apply", &plan, "--yes"]);
        wait_until(Duration::from_secs(60), "the pause at 5 %", || {
            pausing(&sandbox)
        });
        let weight = live_weight(&cdn.emulator, &cdn.primary);
        assert!((weight - 0.05).abs() < 1e-6, "{weight}");
        let staging = feeder.join().expect("traffic published");
        match stranger {
            "weight" => cdn.stranger_sets_weight(&staging, "0.1"),
            _ => cdn.stranger_edits_the_primary("edited by someone else"),
        }
        let theirs = cdn.mine(&staging);
        let out = running.wait(Duration::from_secs(60));
        // README "Exit codes": 3, rollback incomplete, a human must act.
        out.expect_code(3);
        assert!(out.stderr.contains("another writer"), "{stranger}: {out}");
        assert_eq!(
            cdn.mine(&staging),
            theirs,
            "{stranger}: the other writer's change stands, untouched\n{out}"
        );
        let weight = live_weight(&cdn.emulator, &cdn.primary);
        let expected = if stranger == "weight" { 0.1 } else { 0.05 };
        assert!((weight - expected).abs() < 1e-6, "{stranger}: {weight}");
        let run = only_run(&sandbox);
        let status = sandbox.status(Some(&run));
        assert_eq!(status["rollbackIncomplete"], true, "{status:#}");
        assert!(
            status["stages"][0]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("another writer")),
            "{status:#}"
        );
        // The journal keeps the refusal: the failed call and its reason.
        let events = sandbox.journal().events(&run).expect("events");
        assert!(
            events
                .iter()
                .any(|e| e.data.to_string().contains("another writer")),
            "{stranger}: {events:#?}"
        );

        // The human decides: the runbook's rollback puts all traffic back
        // on the primary, over the other writer's change to the policy, and
        // keeps their edit to the primary's configuration.
        cdn.run(&sandbox, &["rollback", &run, "--yes"])
            .expect_code(0);
        let status = sandbox.status(Some(&run));
        assert_eq!(status["rollbackIncomplete"], false, "{status:#}");
        assert_eq!(status["phase"], "RolledBack", "{status:#}");
        cdn.assert_untouched(&out);
        let comment = &cdn.distribution(&cdn.primary)["comment"];
        let kept = if stranger == "primary" {
            "edited by someone else"
        } else {
            "deployctl e2e"
        };
        assert_eq!(comment, kept, "{stranger}");
    }
}
