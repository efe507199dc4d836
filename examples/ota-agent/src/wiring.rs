//! What a device process builds before its agent runs, shared by the
//! one-device binary (`ota-agent`) and the in-process fleet (`ota-fleet`):
//! the trusted signing key, the IoT Jobs data-plane client, the content
//! keys, and the JSON line an outcome is reported as.

use std::path::{Path, PathBuf};

use aws_config::SdkConfig;
use deployctl_firmware::cipher::{ContentKeys, LocalKeys};
use deployctl_firmware::keys::PublicKey;

use crate::{Agent, Outcome};

/// How a device process reaches its platform and whom it trusts: the
/// flags both binaries take.
#[derive(clap::Args, Debug)]
pub struct DeviceArgs {
    /// The manifest signing key devices trust (`PUBLIC KEY` PEM).
    #[arg(long)]
    pub public_key: PathBuf,
    /// A CA the download host's certificate chains to (besides the system's).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// A provisioned key-encryption key for images.
    #[arg(long, conflicts_with = "content_kms")]
    pub content_key: Option<PathBuf>,
    /// Unwrap content keys with KMS (the device's role may `kms:Decrypt`).
    #[arg(long)]
    pub content_kms: bool,
    /// The IoT Jobs data-plane endpoint (else the AWS chain's).
    #[arg(long)]
    pub endpoint: Option<String>,
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,
}

/// What [`DeviceArgs::connect`] makes.
pub struct Connected {
    pub trusted: PublicKey,
    pub http: reqwest::Client,
    pub jobs: aws_sdk_iotjobsdataplane::Client,
    pub sdk: SdkConfig,
}

impl DeviceArgs {
    /// The trusted key, the download client, the data plane and the SDK
    /// configuration (the standard AWS chain: the device's credentials).
    pub async fn connect(&self) -> Result<Connected, String> {
        let trusted = trusted_key(&self.public_key)?;
        let http = downloads(self.ca.as_deref())?;
        let sdk = deployctl_aws::config::load(Some(&self.region)).await;
        let jobs = data_plane(&sdk, self.endpoint.as_deref());
        Ok(Connected {
            trusted,
            http,
            jobs,
            sdk,
        })
    }

    /// One agent's content keys (each agent owns its own).
    pub fn content_keys(&self, sdk: &SdkConfig) -> Result<Box<dyn ContentKeys>, String> {
        content_keys(sdk, self.content_key.as_deref(), self.content_kms)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The manifest signing key a device trusts (a PEM public key).
pub fn trusted_key(path: &Path) -> Result<PublicKey, String> {
    PublicKey::from_pem(&String::from_utf8_lossy(&read(path)?))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The HTTPS client downloads go through, trusting `ca` when given.
pub fn downloads(ca: Option<&Path>) -> Result<reqwest::Client, String> {
    let ca = ca.map(read).transpose()?;
    crate::https_client(ca.as_deref())
}

/// The IoT Jobs data plane, at `endpoint` when given.
pub fn data_plane(sdk: &SdkConfig, endpoint: Option<&str>) -> aws_sdk_iotjobsdataplane::Client {
    let mut jobs = aws_sdk_iotjobsdataplane::config::Builder::from(sdk);
    if let Some(endpoint) = endpoint {
        jobs = jobs.endpoint_url(endpoint);
    }
    aws_sdk_iotjobsdataplane::Client::from_conf(jobs.build())
}

/// How images are decrypted: a provisioned key file, or KMS.
pub fn content_keys(
    sdk: &SdkConfig,
    file: Option<&Path>,
    kms: bool,
) -> Result<Box<dyn ContentKeys>, String> {
    match (file, kms) {
        (Some(file), _) => Ok(Box::new(
            LocalKeys::from_text(&String::from_utf8_lossy(&read(file)?))
                .map_err(|e| format!("{}: {e}", file.display()))?,
        )),
        (None, true) => Ok(Box::new(deployctl_aws_firmware::KmsContentKeys::new(
            deployctl_aws_firmware::kms_client(sdk),
            String::new(),
        ))),
        (None, false) => {
            Err("name how images are decrypted: --content-key FILE or --content-kms".into())
        }
    }
}

/// An outcome as the JSON line a device reports it with.
pub fn line(thing: &str, outcome: &Outcome, agent: &Agent) -> serde_json::Value {
    let running = agent.slots().running().unwrap_or_default();
    let (kind, job, detail) = match outcome {
        Outcome::Idle => ("idle", "", String::new()),
        Outcome::Succeeded { job, version } => ("succeeded", job.as_str(), version.clone()),
        Outcome::AlreadyInstalled { job, version } => {
            ("alreadyInstalled", job.as_str(), version.clone())
        }
        Outcome::Failed { job, reason } => ("failed", job.as_str(), reason.clone()),
        Outcome::Rejected { job, reason } => ("rejected", job.as_str(), reason.clone()),
        Outcome::Abandoned { job } => ("abandoned", job.as_str(), String::new()),
    };
    serde_json::json!({"thing": thing, "outcome": kind, "job": job, "detail": detail, "running": running})
}
