//! Fixtures for driving `deployctl` against Lambda on moto, through the
//! fault-injecting proxy (`tests/emulators/faults.py`): one moto account
//! per test (the proxy maps a 12-digit access key to `x-moto-account-id`,
//! so the binary needs no extra header), a function with versions 1 and 2
//! and alias `live` on 1, the alias read straight over HTTP, and a tiny
//! HTTP health endpoint for gates that a test turns unhealthy.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::sandbox::{Finished, Running, Sandbox};

/// moto's and the proxy's URLs, or `None` after saying why `test` is skipped.
pub fn emulators(test: &str) -> Option<(String, String)> {
    crate::emulators::urls(
        test,
        ["DEPLOYCTL_TEST_MOTO_URL", "DEPLOYCTL_TEST_FAULTS_URL"],
    )
    .map(|[moto, faults]| (moto, faults))
}

/// One test's moto account, reached through the proxy.
pub struct LambdaAccount {
    pub id: String,
    pub proxy: String,
    pub function: String,
}

impl LambdaAccount {
    /// A fresh account with function `name` (versions 1 and 2 published,
    /// alias `live` on 1).
    pub fn new(proxy: &str, name: &str) -> LambdaAccount {
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{:06}{:06}",
            std::process::id() % 1_000_000,
            900_000 + N.fetch_add(1, Ordering::SeqCst)
        );
        let account = LambdaAccount {
            id,
            proxy: proxy.to_owned(),
            function: name.to_owned(),
        };
        account.python(&format!(
            "iam = boto3.client('iam', **kw)\n\
role = iam.create_role(RoleName='{name}-role', AssumeRolePolicyDocument='{{}}')['Role']['Arn']\n\
def code(n):\n    b = io.BytesIO()\n    with zipfile.ZipFile(b, 'w') as z: z.writestr('handler.py', 'def handler(e, c):\\n    return %d\\n' % n)\n    return b.getvalue()\n\
lam.create_function(FunctionName='{name}', Runtime='python3.12', Role=role, Handler='handler.handler', Code={{'ZipFile': code(1)}})\n\
lam.publish_version(FunctionName='{name}')\n\
lam.update_function_code(FunctionName='{name}', ZipFile=code(2))\n\
lam.publish_version(FunctionName='{name}')\n\
lam.create_alias(FunctionName='{name}', Name='live', FunctionVersion='1')\n"
        ));
        account
    }

    /// Runs Python with boto3 clients `lam` (Lambda) and `kw` (client
    /// arguments) in this account; returns stdout.
    pub fn python(&self, script: &str) -> String {
        crate::emulators::python(
            &[("PROXY", &self.proxy), ("ACCOUNT", &self.id)],
            "import boto3, io, json, os, zipfile\n\
from botocore.config import Config\n\
kw = dict(endpoint_url=os.environ['PROXY'], region_name='us-east-1', aws_access_key_id=os.environ['ACCOUNT'], aws_secret_access_key='testing', config=Config(retries={'total_max_attempts': 1}))\n\
lam = boto3.client('lambda', **kw)\n",
            script,
        )
    }

    /// The alias as Lambda has it: `"VERSION {weights JSON}"`, e.g.
    /// `1 {"2": 0.1}` or `2 {}` (one GET over HTTP: polls are cheap).
    pub fn alias(&self) -> String {
        self.alias_of(&self.function)
    }

    pub fn alias_of(&self, function: &str) -> String {
        let body = self.get(&format!("/2015-03-31/functions/{function}/aliases/live"));
        let alias: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        let weights = alias["RoutingConfig"]["AdditionalVersionWeights"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let weights: Vec<String> = weights
            .iter()
            .map(|(version, weight)| format!("\"{version}\": {weight}"))
            .collect();
        format!(
            "{} {{{}}}",
            alias["FunctionVersion"].as_str().unwrap_or("?"),
            weights.join(", ")
        )
    }

    /// A Lambda GET in this account (moto does not check signatures; the
    /// credential scope names the account and the service for the proxy).
    fn get(&self, path: &str) -> String {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/20250101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=0",
            self.id
        );
        let (status, body) = http(&self.proxy, "GET", path, &[("Authorization", &auth)], "");
        // moto answers GetAlias with 201.
        assert!((200..300).contains(&status), "GET {path}: {status} {body}");
        body
    }

    /// Sets the proxy's faults for this account (`spec`: the JSON fields
    /// after `account`, e.g. `"rate": 0.2, "seed": 7`).
    pub fn faults(&self, spec: &str) {
        let body = format!(r#"{{"account": "{}", {spec}}}"#, self.id);
        let (status, text) = http(&self.proxy, "POST", "/_emulator/faults", &[], &body);
        assert_eq!(status, 200, "{text}");
    }

    pub fn no_faults(&self) {
        let path = format!("/_emulator/faults?account={}", self.id);
        let (status, text) = http(&self.proxy, "DELETE", &path, &[], "");
        assert_eq!(status, 200, "{text}");
    }

    /// The calls the proxy forwarded (or failed) for this account.
    pub fn calls(&self) -> Vec<serde_json::Value> {
        let path = format!("/_emulator/calls?account={}", self.id);
        let (_, text) = http(&self.proxy, "GET", &path, &[], "");
        let calls: serde_json::Value = serde_json::from_str(&text).expect("calls JSON");
        calls["calls"].as_array().cloned().unwrap_or_default()
    }

    /// `deployctl ARGS` in `sandbox`, talking to AWS through the proxy in
    /// this account.
    pub fn command(&self, sandbox: &Sandbox, args: &[&str]) -> Command {
        let mut command = sandbox.command(args);
        command
            .env("AWS_ENDPOINT_URL", &self.proxy)
            .env("AWS_ACCESS_KEY_ID", &self.id)
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent/deployctl-test")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/deployctl-test")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN");
        command
    }

    pub fn run(&self, sandbox: &Sandbox, args: &[&str]) -> Finished {
        self.spawn(sandbox, args)
            .wait(crate::sandbox::COMMAND_TIMEOUT)
    }

    pub fn spawn(&self, sandbox: &Sandbox, args: &[&str]) -> Running {
        sandbox.spawn_command(self.command(sandbox, args), args, None)
    }
}

/// One HTTP/1.1 request over a fresh socket; (status, body).
fn http(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let address = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(address).expect("the proxy listens");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("request sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

/// A local health endpoint for HTTP gates: `healthy(n)` decides the
/// answer to the n-th request (0-based): 200 or 500.
pub struct HealthServer {
    pub url: String,
    pub requests: Arc<AtomicU32>,
}

impl HealthServer {
    pub fn start(healthy: impl Fn(u32) -> bool + Send + Sync + 'static) -> HealthServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a local port");
        let url = format!(
            "http://{}/health",
            listener.local_addr().expect("bound address")
        );
        let requests = Arc::new(AtomicU32::new(0));
        let counter = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer);
                let (status, text) = if healthy(n) {
                    ("200 OK", "ok")
                } else {
                    ("500 Internal Server Error", "unhealthy")
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        HealthServer { url, requests }
    }
}

/// A plan releasing `function`'s alias `live` by canary `steps` (YAML
/// flow list), judged by an HTTP gate `health` on `gate_url`, deploying
/// `artifact` (YAML flow mapping for `artifacts.fn`).
pub fn canary_plan(function: &str, steps: &str, gate_url: &str, artifact: &str) -> String {
    format!(
        "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {{name: lambda-e2e, environment: test}}\n\
targets:\n  fn:\n    lambda: {{functionName: {function}, alias: live, region: us-east-1}}\n\
artifacts:\n  fn: {artifact}\n\
stages:\n  - name: fn\n    target: fn\n    canary:\n      steps: {steps}\n\
gates:\n  health:\n    http: {{url: \"{gate_url}\", allowInsecureHttp: true}}\n    interval: 100ms\n    count: 2\n"
    )
}
