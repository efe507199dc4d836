//! Test support for every AWS adapter crate (feature `testing`): the moto
//! URL, a fresh moto account per test, and SDK configuration pointing at
//! an emulator. Never used by the binary.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// The URL in environment variable `var` (set by `tests/moto.sh`), or
/// `None` after printing why `test` is skipped.
pub fn emulator(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            // Straight to stderr: libtest captures `eprintln!` of passing
            // tests, and a skip must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: {var} is not set; `bash tests/run.sh` (or \
                 `bash tests/moto.sh -- cargo test ...`) starts the emulators and sets it"
            );
            None
        }
    }
}

/// moto's URL, or `None` (and a message saying why the test is skipped).
pub fn moto(test: &str) -> Option<String> {
    emulator("DEPLOYCTL_TEST_MOTO_URL", test)
}

/// Sends every request in one moto account (`x-moto-account-id`), so tests
/// running in parallel never see each other's resources. Works on any
/// aws-sdk client: the interceptor trait is shared by all of them.
#[derive(Debug, Clone)]
pub struct MotoAccount(pub String);

static ACCOUNTS: AtomicU32 = AtomicU32::new(0);

impl MotoAccount {
    /// A 12-digit account no other test of any run of this server used:
    /// the process ID is part of it.
    pub fn fresh() -> MotoAccount {
        let n = ACCOUNTS.fetch_add(1, Ordering::SeqCst);
        MotoAccount(format!("{:06}{:06}", std::process::id() % 1_000_000, n))
    }
}

impl Intercept for MotoAccount {
    fn name(&self) -> &'static str {
        "MotoAccount"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        context
            .request_mut()
            .headers_mut()
            .insert("x-moto-account-id", self.0.clone());
        Ok(())
    }
}

/// SDK configuration for an emulator at `url`: static dummy credentials,
/// us-east-1, and the adapters' retry and timeout settings.
pub async fn sdk_config(url: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "static"))
        .endpoint_url(url)
        .retry_config(crate::config::retry())
        .timeout_config(crate::config::timeouts())
        .load()
        .await
}

/// Records every operation a client calls, as the IAM action it needs
/// (`lambda:UpdateAlias`), so a test can check the calls an adapter really
/// makes against the permissions it declares (`deployctl_adapter::iam`).
/// Works on any aws-sdk client, like [`MotoAccount`].
#[derive(Debug, Clone, Default)]
pub struct CallRecorder(Arc<Mutex<BTreeSet<String>>>);

impl CallRecorder {
    /// The IAM actions of the calls recorded so far, sorted.
    pub fn actions(&self) -> BTreeSet<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Panics naming every recorded call the statements do not allow.
    pub fn assert_allowed_by(&self, statements: &[deployctl_adapter::iam::Statement]) {
        let missing: Vec<String> = self
            .actions()
            .into_iter()
            .filter(|action| !deployctl_adapter::iam::allows(statements, action))
            .collect();
        assert!(
            missing.is_empty(),
            "the adapter called {missing:?}, which its IAM statements do not allow: {statements:#?}"
        );
        assert!(
            !self.actions().is_empty(),
            "no AWS call was recorded: is the recorder on the client?"
        );
    }
}

impl Intercept for CallRecorder {
    fn name(&self) -> &'static str {
        "CallRecorder"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(metadata) = cfg.load::<Metadata>() {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(iam_action(metadata.service(), metadata.name()));
        }
        Ok(())
    }
}

/// The IAM action for an SDK operation: the service's IAM prefix (the
/// SDK's service name in lower case; CloudWatch's is `monitoring` on the
/// wire but `cloudwatch` in IAM) and the operation name, except for the S3
/// operations whose permission has another name.
pub fn iam_action(service: &str, operation: &str) -> String {
    let prefix = match service.to_ascii_lowercase().as_str() {
        "monitoring" => "cloudwatch".to_owned(),
        other => other.replace(' ', ""),
    };
    let operation = match (prefix.as_str(), operation) {
        ("s3", "HeadObject") => "GetObject",
        ("s3", "ListObjectVersions") => "ListBucketVersions",
        ("s3", "ListObjectsV2" | "ListObjects") => "ListBucket",
        ("s3", "GetObjectLockConfiguration") => "GetBucketObjectLockConfiguration",
        ("s3", "PutObjectLockConfiguration") => "PutBucketObjectLockConfiguration",
        (_, operation) => operation,
    };
    format!("{prefix}:{operation}")
}
