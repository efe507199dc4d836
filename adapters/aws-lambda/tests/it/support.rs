//! The moto fixture: per-test accounts, clients, and a Lambda function with
//! published versions 1 and 2 and an alias on 1.

use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{FunctionCode, Runtime};
use deployctl_aws::testing::{MotoAccount, sdk_config};
use deployctl_aws_lambda::{LambdaTarget, lambda_config};

pub use deployctl_aws::testing::moto;

/// One test's AWS account on moto, with its clients.
pub struct Account {
    pub lambda: aws_sdk_lambda::Client,
    /// S3 in the same account: moto's Lambda reads release code from it.
    pub s3: aws_sdk_s3::Client,
    /// The account's ID, as the `x-moto-account-id` header sends it.
    pub id: MotoAccount,
    role_arn: String,
    functions: AtomicU32,
}

impl Account {
    /// A fresh account (never used by another test of any run of this
    /// server: the process ID is part of it) with the Lambda execution role.
    pub async fn new(url: &str) -> Account {
        let sdk = sdk_config(url).await;
        let account = MotoAccount::fresh();
        let lambda = aws_sdk_lambda::Client::from_conf(
            lambda_config(&sdk).interceptor(account.clone()).build(),
        );
        // Path-style: virtual-host buckets cannot work on an IP endpoint.
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .interceptor(account.clone())
                .build(),
        );
        let iam = aws_sdk_iam::Client::from_conf(
            aws_sdk_iam::config::Builder::from(&sdk)
                .interceptor(account.clone())
                .build(),
        );
        let role = iam
            .create_role()
            .role_name("deployctl-test-lambda")
            .assume_role_policy_document(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
            )
            .send()
            .await
            .expect("iam:CreateRole");
        let role_arn = role.role().expect("a role").arn().to_owned();
        Account {
            lambda,
            s3,
            id: account,
            role_arn,
            functions: AtomicU32::new(0),
        }
    }

    /// A new function with versions 1 and 2 published and alias `live` on 1.
    pub async fn function(&self) -> String {
        let name = format!("fn-{}", self.functions.fetch_add(1, Ordering::SeqCst));
        self.lambda
            .create_function()
            .function_name(&name)
            .runtime(Runtime::Python312)
            .role(&self.role_arn)
            .handler("handler.main")
            .code(
                FunctionCode::builder()
                    .zip_file(Blob::new(handler_zip("v1")))
                    .build(),
            )
            .send()
            .await
            .expect("lambda:CreateFunction");
        let v1 = self.publish(&name).await;
        self.lambda
            .update_function_code()
            .function_name(&name)
            .zip_file(Blob::new(handler_zip("v2")))
            .send()
            .await
            .expect("lambda:UpdateFunctionCode");
        let v2 = self.publish(&name).await;
        assert_eq!((v1.as_str(), v2.as_str()), ("1", "2"));
        self.lambda
            .create_alias()
            .function_name(&name)
            .name("live")
            .function_version("1")
            .send()
            .await
            .expect("lambda:CreateAlias");
        name
    }

    async fn publish(&self, name: &str) -> String {
        let out = self
            .lambda
            .publish_version()
            .function_name(name)
            .send()
            .await
            .expect("lambda:PublishVersion");
        out.version().expect("a version").to_owned()
    }

    /// A Lambda client in this account that goes through `url` (the
    /// fault-injecting proxy) instead of straight to moto.
    pub async fn lambda_via(&self, url: &str) -> aws_sdk_lambda::Client {
        let sdk = sdk_config(url).await;
        aws_sdk_lambda::Client::from_conf(lambda_config(&sdk).interceptor(self.id.clone()).build())
    }

    /// Published versions of `function` (numbers, ascending).
    pub async fn versions(&self, function: &str) -> Vec<u64> {
        let out = self
            .lambda
            .list_versions_by_function()
            .function_name(function)
            .send()
            .await
            .expect("lambda:ListVersionsByFunction");
        let mut versions: Vec<u64> = out
            .versions()
            .iter()
            .filter_map(|v| v.version()?.parse().ok())
            .collect();
        versions.sort_unstable();
        versions
    }

    /// A new bucket in this account (named after it: moto, like S3, keeps
    /// bucket names unique across accounts), versioned when `versioned`.
    pub async fn bucket(&self, name: &str, versioned: bool) -> String {
        let bucket = format!("{name}-{}", self.id.0);
        self.s3
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("s3:CreateBucket");
        if versioned {
            self.s3
                .put_bucket_versioning()
                .bucket(&bucket)
                .versioning_configuration(
                    aws_sdk_s3::types::VersioningConfiguration::builder()
                        .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await
                .expect("s3:PutBucketVersioning");
        }
        bucket
    }

    /// Uploads `bytes` as `bucket/key`; returns the object's version ID
    /// (in a versioned bucket).
    pub async fn upload(&self, bucket: &str, key: &str, bytes: Vec<u8>) -> Option<String> {
        let out = self
            .s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(aws_sdk_s3::primitives::ByteStream::from(bytes))
            .send()
            .await
            .expect("s3:PutObject");
        out.version_id().map(str::to_owned)
    }

    /// A target on a new function's `live` alias.
    pub async fn target(&self) -> (LambdaTarget, String) {
        let function = self.function().await;
        let target = LambdaTarget::with_client(
            format!("lambda-{function}"),
            self.lambda.clone(),
            &function,
            "live",
        );
        (target, function)
    }

    /// The alias as Lambda has it: version and sorted extra weights.
    pub async fn alias(&self, function: &str) -> (String, Vec<(String, f64)>) {
        let out = self
            .lambda
            .get_alias()
            .function_name(function)
            .name("live")
            .send()
            .await
            .expect("lambda:GetAlias");
        let mut weights: Vec<_> = out
            .routing_config()
            .and_then(|r| r.additional_version_weights())
            .map(|w| w.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        weights.sort_by(|a, b| a.0.cmp(&b.0));
        (
            out.function_version().unwrap_or_default().to_owned(),
            weights,
        )
    }
}

/// A zip archive (stored, not compressed) holding `handler.py`.
pub fn handler_zip(tag: &str) -> Vec<u8> {
    let name = b"handler.py";
    let body = format!("def main(event, context):\n    return {{\"version\": \"{tag}\"}}\n");
    let body = body.as_bytes();
    let crc = crc32(body);
    let size = u32::try_from(body.len()).expect("small file");
    let mut zip = Vec::new();
    // Local file header.
    zip.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    zip.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // version, flags, method, time, date
    zip.extend_from_slice(&crc.to_le_bytes());
    zip.extend_from_slice(&size.to_le_bytes());
    zip.extend_from_slice(&size.to_le_bytes());
    zip.extend_from_slice(&(name.len() as u16).to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes());
    zip.extend_from_slice(name);
    zip.extend_from_slice(body);
    let central = zip.len() as u32;
    // Central directory entry.
    zip.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    zip.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // made by, needed, flags, method, time, date
    zip.extend_from_slice(&crc.to_le_bytes());
    zip.extend_from_slice(&size.to_le_bytes());
    zip.extend_from_slice(&size.to_le_bytes());
    zip.extend_from_slice(&(name.len() as u16).to_le_bytes());
    zip.extend_from_slice(&[0; 12]); // extra, comment, disk, internal attrs, external attrs
    zip.extend_from_slice(&0u32.to_le_bytes()); // local header offset
    zip.extend_from_slice(name);
    let central_size = zip.len() as u32 - central;
    // End of central directory.
    zip.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    zip.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
    zip.extend_from_slice(&central_size.to_le_bytes());
    zip.extend_from_slice(&central.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes());
    zip
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The fault-injecting proxy's URL (`tests/emulators/faults.py`), or
/// `None` (and a message saying why `test` is skipped).
pub fn faults(test: &str) -> Option<String> {
    deployctl_aws::testing::emulator("DEPLOYCTL_TEST_FAULTS_URL", test)
}

/// One call to an emulator's control endpoint (plain HTTP/1.1 over a
/// socket: the tests need no HTTP client crate for it); returns the body.
pub fn control(url: &str, method: &str, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(address).expect("the emulator listens");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("request sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "{method} {path}: {response}"
    );
    body.to_owned()
}
