//! Test support for every AWS adapter crate (feature `testing`): the moto
//! URL, a fresh moto account per test, and SDK configuration pointing at
//! an emulator. Never used by the binary.

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_lambda::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_lambda::config::{ConfigBag, Credentials, Intercept, RuntimeComponents};
use aws_sdk_lambda::error::BoxError;

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
