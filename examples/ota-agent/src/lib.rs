//! The reference device agent for deployctl's OTA waves: the device side
//! of the protocol, so it is tested for real, and the same code the fleet
//! simulator runs in-process.
//!
//! Start at [`Agent::poll_once`]: ask AWS IoT Jobs (the HTTPS data plane,
//! SigV4 with the device's own credentials) for the next pending job;
//! download the signed manifest over HTTPS only (an `http://` URL is
//! refused), check it against the digest the job names and verify its
//! signature under the trusted key *before* anything else is read; refuse
//! another firmware line, another hardware model, or an older version
//! that is not a signed rollback; download the image, check its digest,
//! decrypt it (the content key unwrapped by KMS or a provisioned key),
//! write it to the inactive A/B slot ([`slots`]), boot it on trial, run
//! the self-test and report SUCCEEDED with the device's health metrics, or
//! boot the old slot again and report FAILED with the reason. A job whose
//! execution was canceled meanwhile (the kill switch) is abandoned.

pub mod slots;
pub mod wiring;

use std::collections::HashMap;

use aws_sdk_iotjobsdataplane::Client;
use aws_sdk_iotjobsdataplane::types::JobExecutionStatus;
use deployctl_firmware::cipher::{self, ContentKeys};
use deployctl_firmware::keys::PublicKey;
use deployctl_firmware::verify::{self, Device, Install};

pub use slots::Slots;

/// The job documents this agent understands (deployctl's fleet adapter writes them).
pub const OPERATION: &str = "deployctl.io/ota/v1";

/// The most a download may be.
const MAX_DOWNLOAD: u64 = 512 << 20;

/// What the device is, as the install check needs it.
#[derive(Debug, Clone)]
pub struct Identity {
    pub thing: String,
    pub firmware: String,
    pub hardware: String,
}

/// The self-test after booting a new image: `Err(reason)` fails it.
pub type SelfTest = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The device's health after an update (A2): what the fleet gate reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    pub crashes: u32,
    pub resets: u32,
    /// 0–100.
    pub score: u32,
}

impl Health {
    /// An anomaly: crashes or resets since boot, or a low health score.
    pub fn anomalous(&self) -> bool {
        self.crashes > 0 || self.resets > 1 || self.score < 60
    }
}

/// How a poll ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No job is pending.
    Idle,
    Succeeded {
        job: String,
        version: String,
    },
    /// Already on that version: nothing written.
    AlreadyInstalled {
        job: String,
        version: String,
    },
    Failed {
        job: String,
        reason: String,
    },
    /// Refused before anything was written (signature, digest, hardware,
    /// downgrade, an insecure URL).
    Rejected {
        job: String,
        reason: String,
    },
    /// The execution was canceled while installing; the old slot runs.
    Abandoned {
        job: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("IoT Jobs: {0}")]
    Jobs(String),
    #[error("slots: {0}")]
    Slots(#[from] std::io::Error),
}

/// One device's agent.
pub struct Agent {
    pub identity: Identity,
    jobs: Client,
    http: reqwest::Client,
    trusted: PublicKey,
    keys: Box<dyn ContentKeys>,
    slots: Slots,
    self_test: SelfTest,
    health: Box<dyn Fn(&str) -> Health + Send + Sync>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// What a job document says.
struct Job {
    version: String,
    manifest_url: String,
    manifest_sha256: String,
    image_url: String,
}

fn field<'a>(doc: &'a serde_json::Value, path: &[&str]) -> Option<&'a str> {
    let mut value = doc;
    for key in path {
        value = value.get(key)?;
    }
    value.as_str()
}

impl Agent {
    /// An agent over its clients. `http` MUST trust the download host's CA
    /// and nothing weaker than TLS 1.2 ([`https_client`] builds one).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        identity: Identity,
        jobs: Client,
        http: reqwest::Client,
        trusted: PublicKey,
        keys: Box<dyn ContentKeys>,
        slots: Slots,
        self_test: SelfTest,
        health: Box<dyn Fn(&str) -> Health + Send + Sync>,
    ) -> Agent {
        Agent {
            identity,
            jobs,
            http,
            trusted,
            keys,
            slots,
            self_test,
            health,
        }
    }

    pub fn slots(&self) -> &Slots {
        &self.slots
    }

    /// Takes the next pending job, if any, to its end.
    pub async fn poll_once(&self) -> Result<Outcome, AgentError> {
        let started = self
            .jobs
            .start_next_pending_job_execution()
            .thing_name(&self.identity.thing)
            .send()
            .await
            .map_err(|e| {
                AgentError::Jobs(format!("StartNextPendingJobExecution: {}", describe(&e)))
            })?;
        let Some(execution) = started.execution() else {
            return Ok(Outcome::Idle);
        };
        let job = execution.job_id().unwrap_or_default().to_owned();
        let document: serde_json::Value = execution
            .job_document()
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or_default();
        if field(&document, &["operation"]) != Some(OPERATION) {
            return self
                .report_rejected(&job, "not a deployctl OTA job".into())
                .await;
        }
        let parsed = match (
            field(&document, &["version"]),
            field(&document, &["manifest", "url"]),
            field(&document, &["manifest", "sha256"]),
            field(&document, &["image", "url"]),
        ) {
            (Some(version), Some(manifest_url), Some(manifest_sha256), Some(image_url)) => Job {
                version: version.to_owned(),
                manifest_url: manifest_url.to_owned(),
                manifest_sha256: manifest_sha256.to_owned(),
                image_url: image_url.to_owned(),
            },
            _ => {
                return self
                    .report_rejected(&job, "the job document is incomplete".into())
                    .await;
            }
        };
        match self.install(&parsed).await? {
            Err(Refused(reason)) => self.report_rejected(&job, reason).await,
            Ok(Installed::Already(version)) => {
                let outcome = self
                    .report(&job, JobExecutionStatus::Succeeded, &version, None)
                    .await?;
                Ok(match outcome {
                    Some(()) => Outcome::AlreadyInstalled { job, version },
                    None => Outcome::Abandoned { job },
                })
            }
            Ok(Installed::Booted(version)) => match (self.self_test)(&version) {
                Ok(()) => match self
                    .report(&job, JobExecutionStatus::Succeeded, &version, None)
                    .await?
                {
                    Some(()) => {
                        self.slots.confirm()?;
                        Ok(Outcome::Succeeded { job, version })
                    }
                    None => {
                        // Canceled while on trial: the old slot again.
                        self.slots.fall_back()?;
                        Ok(Outcome::Abandoned { job })
                    }
                },
                Err(reason) => {
                    self.slots.fall_back()?;
                    let reason = format!(
                        "self-test failed on {version}: {reason}; back on {}",
                        self.slots.running()?
                    );
                    self.report(&job, JobExecutionStatus::Failed, &version, Some(&reason))
                        .await?;
                    Ok(Outcome::Failed { job, reason })
                }
            },
        }
    }

    /// Download, verify, decrypt, write and boot; nothing is written
    /// before every check passed.
    async fn install(&self, parsed: &Job) -> Result<Result<Installed, Refused>, AgentError> {
        let manifest = match self.download(&parsed.manifest_url).await {
            Ok(bytes) => bytes,
            Err(reason) => return Ok(Err(Refused(reason))),
        };
        if deployctl_firmware::sha256_hex(&manifest) != parsed.manifest_sha256 {
            return Ok(Err(Refused(
                "the manifest is not the one the job names (SHA-256 differs)".into(),
            )));
        }
        let verified = match verify::verify_manifest(&manifest, &self.trusted) {
            Ok(verified) => verified,
            Err(refusal) => return Ok(Err(Refused(refusal.to_string()))),
        };
        let manifest = verified.manifest;
        if manifest.version != parsed.version {
            return Ok(Err(Refused(format!(
                "the job says {}, its signed manifest {}",
                parsed.version, manifest.version
            ))));
        }
        let installed = self.slots.running()?;
        let device = Device {
            firmware: &self.identity.firmware,
            hardware: &self.identity.hardware,
            installed: &installed,
        };
        match verify::check_install(&manifest, &device) {
            Err(refusal) => return Ok(Err(Refused(refusal.to_string()))),
            Ok(Install::AlreadyInstalled) => return Ok(Ok(Installed::Already(manifest.version))),
            Ok(Install::Upgrade | Install::Rollback) => {}
        }
        let image = match self.download(&parsed.image_url).await {
            Ok(bytes) => bytes,
            Err(reason) => return Ok(Err(Refused(reason))),
        };
        if let Err(refusal) = verify::check_image(&manifest, &image) {
            return Ok(Err(Refused(refusal.to_string())));
        }
        let plain = match &manifest.image.encryption {
            None => image,
            Some(encryption) => {
                let plain = match cipher::decrypt(&image, self.keys.as_ref()).await {
                    Ok(plain) => plain,
                    Err(error) => {
                        return Ok(Err(Refused(format!("the image does not decrypt: {error}"))));
                    }
                };
                if deployctl_firmware::sha256_hex(&plain) != encryption.plaintext_sha256 {
                    return Ok(Err(Refused(
                        "the decrypted image's SHA-256 differs from the manifest".into(),
                    )));
                }
                plain
            }
        };
        self.slots.install_and_boot(&manifest.version, &plain)?;
        Ok(Ok(Installed::Booted(manifest.version)))
    }

    /// GETs `url` over HTTPS; `Err(reason)` for anything else.
    async fn download(&self, url: &str) -> Result<Vec<u8>, String> {
        if !url.starts_with("https://") {
            return Err(format!(
                "refusing to download over anything but HTTPS: {url}"
            ));
        }
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("download failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("download refused: HTTP {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|len| len > MAX_DOWNLOAD)
        {
            return Err("the download is larger than any firmware".into());
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("download cut off: {e}"))?;
        Ok(bytes.to_vec())
    }

    /// Reports a status with the device's health; `Ok(None)` when the
    /// execution was canceled meanwhile (the update is abandoned).
    async fn report(
        &self,
        job: &str,
        status: JobExecutionStatus,
        version: &str,
        reason: Option<&str>,
    ) -> Result<Option<()>, AgentError> {
        let health = (self.health)(version);
        let mut details: HashMap<String, String> = HashMap::from([
            ("installed".into(), self.slots.running()?),
            ("crashes".into(), health.crashes.to_string()),
            ("resets".into(), health.resets.to_string()),
            ("healthScore".into(), health.score.to_string()),
            ("anomaly".into(), health.anomalous().to_string()),
        ]);
        if let Some(reason) = reason {
            details.insert("reason".into(), reason.chars().take(1024).collect());
        }
        let sent = self
            .jobs
            .update_job_execution()
            .thing_name(&self.identity.thing)
            .job_id(job)
            .status(status)
            .set_status_details(Some(details))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(Some(())),
            Err(error) if describe(&error).contains("InvalidStateTransition") => Ok(None),
            Err(error) => Err(AgentError::Jobs(format!(
                "UpdateJobExecution: {}",
                describe(&error)
            ))),
        }
    }

    async fn report_rejected(&self, job: &str, reason: String) -> Result<Outcome, AgentError> {
        let version = self.slots.running()?;
        self.report(job, JobExecutionStatus::Rejected, &version, Some(&reason))
            .await?;
        Ok(Outcome::Rejected {
            job: job.to_owned(),
            reason,
        })
    }
}

enum Installed {
    Already(String),
    Booted(String),
}

struct Refused(String);

fn describe<E>(error: &aws_sdk_iotjobsdataplane::error::SdkError<E>) -> String
where
    E: std::error::Error + aws_sdk_iotjobsdataplane::error::ProvideErrorMetadata,
{
    match error.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("error"),
            service.message().unwrap_or_default()
        ),
        None => format!("{error}"),
    }
}

/// An HTTPS-only client trusting `ca_pem` besides the system's roots.
pub fn https_client(ca_pem: Option<&[u8]>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .https_only(true)
        .tls_version_min(reqwest::tls::Version::TLS_1_2)
        .timeout(std::time::Duration::from_secs(300));
    if let Some(pem) = ca_pem {
        let certificate =
            reqwest::Certificate::from_pem(pem).map_err(|e| format!("the CA file: {e}"))?;
        builder = builder.add_root_certificate(certificate);
    }
    builder
        .build()
        .map_err(|e| format!("the HTTPS client: {e}"))
}
