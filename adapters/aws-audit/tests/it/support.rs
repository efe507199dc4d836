//! The moto fixture: one account per test, its S3 and KMS clients, locked
//! buckets, and audit logs in temporary directories.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use deployctl_audit::{AuditLog, AuditOptions, Entry, Outcome, Sink, What, Who};
use deployctl_aws::testing::{MotoAccount, sdk_config};
use deployctl_aws_audit::{Retention, S3Location, S3ObjectLockSink};

pub use deployctl_aws::testing::moto;

static NAMES: AtomicU32 = AtomicU32::new(0);

/// A name no other test of any run uses.
pub fn unique(label: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{label}-{}-{}-{nanos}",
        std::process::id(),
        NAMES.fetch_add(1, Ordering::SeqCst)
    )
}

/// One test's moto account: a runtime for the test's own calls (kept for
/// the whole test, so pooled connections stay valid) and its clients.
pub struct Moto {
    pub url: String,
    pub account: MotoAccount,
    pub runtime: tokio::runtime::Runtime,
    pub s3: aws_sdk_s3::Client,
    pub kms: aws_sdk_kms::Client,
}

impl Moto {
    pub fn new(url: &str) -> Moto {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let account = MotoAccount::fresh();
        let s3 = s3_client(&runtime, url, &account);
        let kms = kms_client(&runtime, url, &account);
        Moto {
            url: url.to_string(),
            account,
            runtime,
            s3,
            kms,
        }
    }

    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// A new S3 client for this account at `url` (the sink gets its own,
    /// as the binary's would be).
    pub fn s3_at(&self, url: &str) -> aws_sdk_s3::Client {
        s3_client(&self.runtime, url, &self.account)
    }

    pub fn kms_client(&self) -> aws_sdk_kms::Client {
        kms_client(&self.runtime, &self.url, &self.account)
    }

    /// A bucket created with Object Lock enabled.
    pub fn locked_bucket(&self) -> String {
        let bucket = unique("audit");
        self.block_on(
            self.s3
                .create_bucket()
                .bucket(&bucket)
                .object_lock_enabled_for_bucket(true)
                .send(),
        )
        .expect("s3:CreateBucket with Object Lock");
        bucket
    }

    /// A plain bucket.
    pub fn plain_bucket(&self) -> String {
        let bucket = unique("plain");
        self.block_on(self.s3.create_bucket().bucket(&bucket).send())
            .expect("s3:CreateBucket");
        bucket
    }

    /// A sink on `s3://bucket/trail` with its own client.
    pub fn sink(&self, bucket: &str) -> S3ObjectLockSink {
        S3ObjectLockSink::with_client(
            self.s3_at(&self.url),
            location(bucket),
            Retention::default(),
        )
        .expect("the sink opens")
    }

    /// Keys under `s3://bucket/trail/`, sorted.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let listed = self
            .block_on(
                self.s3
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix("trail/")
                    .send(),
            )
            .expect("s3:ListObjectsV2");
        let mut keys: Vec<String> = listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
        keys.sort();
        keys
    }

    pub fn body(&self, bucket: &str, key: &str) -> Vec<u8> {
        self.block_on(async {
            let object = self
                .s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .expect("s3:GetObject");
            object.body.collect().await.expect("a body").to_vec()
        })
    }
}

fn s3_client(
    runtime: &tokio::runtime::Runtime,
    url: &str,
    account: &MotoAccount,
) -> aws_sdk_s3::Client {
    let sdk = runtime.block_on(sdk_config(url));
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .interceptor(account.clone())
            .build(),
    )
}

fn kms_client(
    runtime: &tokio::runtime::Runtime,
    url: &str,
    account: &MotoAccount,
) -> aws_sdk_kms::Client {
    let sdk = runtime.block_on(sdk_config(url));
    aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::config::Builder::from(&sdk)
            .interceptor(account.clone())
            .build(),
    )
}

pub fn location(bucket: &str) -> S3Location {
    format!("s3://{bucket}/trail").parse().expect("a location")
}

/// A temporary directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("deployctl-aws-audit-{}", unique(label)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An audit log in `dir/audit`, shipping to `sink` only when asked.
pub fn log(dir: &Path, sink: Option<Arc<dyn Sink>>) -> AuditLog {
    let mut options = AuditOptions::new(Who::local("tester"))
        .checkpoint_every(1_000_000)
        .background_shipping(false);
    if let Some(sink) = sink {
        options = options.sink(sink);
    }
    AuditLog::open(dir.join("audit"), options).expect("the audit log opens")
}

/// Appends `n` records of a pretend run.
pub fn append(log: &AuditLog, n: usize) {
    let entries = (0..n)
        .map(|i| {
            Entry::new(
                Who::local("tester"),
                What::new(deployctl_audit::Action::StageWeightSet)
                    .run("run-1")
                    .stage("api")
                    .change(format!("{i}"), format!("{}", i + 1)),
                Outcome::ok(),
            )
            .request_id(format!("req-{i}"))
        })
        .collect();
    log.append_batch(entries).expect("appended");
}
