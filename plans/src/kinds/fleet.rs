//! Fleet targets: IoT devices updated over the air in waves, chosen by
//! thing groups or by a fleet-index query. Fleets take waves only, and
//! fleet gates (device success and anomaly rates). An artifact is signed
//! firmware; since a device cannot report which firmware to go back to,
//! every stage moving a fleet needs `rollback.stable` to name it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Kind, Source, Spec};
use crate::check::{Checker, is_hex_digest};
use crate::model::{
    self, ArtifactSource, Capabilities, GateKind, SignatureAlgorithm, SignatureSource,
    StrategyKind, TargetKind, TargetSpec,
};
use crate::raw;

/// A fleet of IoT devices updated over the air in waves.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FleetTarget {
    /// Thing groups whose members receive the update.
    #[serde(default)]
    pub thing_groups: Vec<String>,
    /// Alternatively, a fleet-index query selecting the devices.
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// The IAM role AWS IoT assumes to presign each device's download
    /// URLs (the job's `presignedUrlConfig`): devices fetch firmware only
    /// through short-lived URLs issued for their own job execution.
    #[serde(default)]
    pub download_role: Option<String>,
    /// After the last wave, keep a continuous job on the thing groups, so
    /// devices that join them later get the release too (A1). Devices
    /// already on it answer at once that they are.
    #[serde(default)]
    pub continuous: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FirmwareArtifact {
    /// `s3://bucket/key` of the firmware file (served through CloudFront to devices).
    pub location: String,
    /// SHA-256 of the file, 64 hex digits.
    pub sha256: String,
    /// `s3://` location of the signed manifest (`deployctl artifact sign`);
    /// `LOCATION.manifest.json` when omitted, where `artifact publish` puts it.
    #[serde(default)]
    pub manifest: Option<String>,
    /// Where the signature that devices verify comes from.
    pub signature: FirmwareSignature,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FirmwareSignature {
    /// AWS Signer profile, or another signer's key reference.
    #[serde(default)]
    pub signer_profile: Option<String>,
    /// `s3://` location of a detached signature.
    #[serde(default)]
    pub location: Option<String>,
    /// The manifest's signing key as a `PUBLIC KEY` PEM file (relative to
    /// the plan), e.g. the `.pub` file `deployctl artifact keygen` wrote.
    #[serde(default)]
    pub public_key: Option<String>,
    /// The KMS key (ID, ARN or alias) that signed the manifest; its public
    /// key is read with `kms:GetPublicKey`.
    #[serde(default)]
    pub kms_key: Option<String>,
    /// `ed25519`, `ecdsa-p256` or `rsa-pss-sha256`.
    pub algorithm: String,
}

/// A fleet target, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSpec {
    pub devices: FleetSelector,
    pub region: Option<String>,
    pub download_role: Option<String>,
    /// Keep a continuous job for devices that join later.
    pub continuous: bool,
}

/// Which devices a fleet target updates.
#[derive(Debug, Clone, PartialEq)]
pub enum FleetSelector {
    ThingGroups(Vec<String>),
    Query(String),
}

pub(crate) struct Fleet;

impl Kind for Fleet {
    fn name(&self) -> &'static str {
        "fleet"
    }

    fn label(&self) -> &'static str {
        "fleet"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            strategies: &[StrategyKind::Waves],
            gates: &[
                GateKind::Http,
                GateKind::Prometheus,
                GateKind::CloudWatch,
                GateKind::Fleet,
            ],
            max_canary_weight: 100,
        }
    }

    fn artifact_sources(&self) -> &'static [&'static Source] {
        &[&FIRMWARE]
    }

    fn is_written(&self, target: &raw::Target) -> bool {
        target.fleet.is_some()
    }

    fn check(&self, checker: &mut Checker, path: &str, target: &raw::Target) -> Option<TargetSpec> {
        let fleet = target.fleet.clone()?;
        let at = format!("{path}.fleet");
        let chosen = checker.exactly_one(
            &at,
            "a fleet",
            &[
                ("thingGroups", !fleet.thing_groups.is_empty()),
                ("query", fleet.query.is_some()),
            ],
        )?;
        if let Some(role) = &fleet.download_role
            && !is_role_arn(role)
        {
            checker
                .error(
                    format!("{at}.downloadRole"),
                    format!("`{role}` is not an IAM role ARN"),
                )
                .hint = Some("write arn:aws:iam::ACCOUNT:role/NAME".into());
        }
        let devices = if chosen == 0 {
            for (index, group) in fleet.thing_groups.iter().enumerate() {
                checker.non_empty(&format!("{at}.thingGroups[{index}]"), group);
            }
            FleetSelector::ThingGroups(fleet.thing_groups)
        } else {
            let query = fleet.query.unwrap_or_default();
            checker.non_empty(&format!("{at}.query"), &query);
            FleetSelector::Query(query)
        };
        Some(TargetSpec::Fleet(FleetSpec {
            devices,
            region: fleet.region,
            download_role: fleet.download_role,
            continuous: fleet.continuous,
        }))
    }

    /// Devices cannot return to a firmware nobody named (S3).
    fn check_unpinned(&self, checker: &mut Checker, path: &str, target: &str) {
        checker
            .error(
                path,
                format!("fleet target `{target}` has no rollback path: devices cannot return to an unknown firmware"),
            )
            .hint = Some(format!(
            "add `rollback.stable.{target}` with the version and signed firmware devices go back to"
        ));
    }
}

fn is_role_arn(text: &str) -> bool {
    let parts: Vec<&str> = text.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, "iam", "", account, resource]
        if partition.starts_with("aws")
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && resource.strip_prefix("role/").is_some_and(|name| !name.is_empty()))
}

impl Spec for FleetSpec {
    fn kind(&self) -> TargetKind {
        TargetKind::Fleet
    }

    fn rollback(&self, _strategy: StrategyKind, stable: &str) -> String {
        format!("cancel the rollout job; updated devices are sent the stable firmware {stable}")
    }
}

pub(crate) const FIRMWARE: Source = Source {
    key: "firmware",
    written: |artifact| artifact.firmware.is_some(),
    check: check_firmware,
};

fn check_firmware(
    checker: &mut Checker,
    path: &str,
    artifact: &raw::Artifact,
) -> Option<ArtifactSource> {
    let firmware = artifact.firmware.as_ref()?;
    let at = format!("{path}.firmware");
    if !firmware.location.starts_with("s3://") || firmware.location.len() <= "s3://".len() {
        checker.error(
            format!("{at}.location"),
            format!("`{}` is not an s3:// location", firmware.location),
        );
    }
    if !is_hex_digest(&firmware.sha256) {
        checker.error(
            format!("{at}.sha256"),
            "must be the file's SHA-256: 64 lowercase hex digits",
        );
    }
    let signature = &firmware.signature;
    let algorithm = match signature.algorithm.as_str() {
        "ed25519" => Some(SignatureAlgorithm::Ed25519),
        "ecdsa-p256" => Some(SignatureAlgorithm::EcdsaP256),
        "rsa-pss-sha256" => Some(SignatureAlgorithm::RsaPssSha256),
        other => {
            checker
                .error(
                    format!("{at}.signature.algorithm"),
                    format!("`{other}` is not a supported signature algorithm"),
                )
                .hint = Some("use `ed25519`, `ecdsa-p256` or `rsa-pss-sha256`".into());
            None
        }
    };
    let which = checker.exactly_one(
        &format!("{at}.signature"),
        "a firmware signature",
        &[
            ("signerProfile", signature.signer_profile.is_some()),
            ("location", signature.location.is_some()),
            ("publicKey", signature.public_key.is_some()),
            ("kmsKey", signature.kms_key.is_some()),
        ],
    );
    let source = match which {
        Some(0) => SignatureSource::SignerProfile(signature.signer_profile.clone()?),
        Some(1) => SignatureSource::Detached(signature.location.clone()?),
        Some(2) => {
            let path = signature.public_key.clone()?;
            checker.non_empty(&format!("{at}.signature.publicKey"), &path);
            SignatureSource::PublicKey(path)
        }
        Some(_) => {
            let key = signature.kms_key.clone()?;
            checker.non_empty(&format!("{at}.signature.kmsKey"), &key);
            SignatureSource::KmsKey(key)
        }
        None => return None,
    };
    let manifest = match &firmware.manifest {
        Some(manifest) => {
            if !manifest.starts_with("s3://") || manifest.len() <= "s3://".len() {
                checker.error(
                    format!("{at}.manifest"),
                    format!("`{manifest}` is not an s3:// location"),
                );
            }
            manifest.clone()
        }
        None => format!("{}.manifest.json", firmware.location),
    };
    Some(ArtifactSource::Firmware {
        location: firmware.location.clone(),
        sha256: firmware.sha256.clone(),
        manifest,
        // The validated signature, not this module's wire `FirmwareSignature`.
        signature: model::FirmwareSignature {
            algorithm: algorithm?,
            source,
        },
    })
}
