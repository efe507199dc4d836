//! Fleet targets: IoT devices updated over the air in waves, chosen by
//! thing groups or by a fleet-index query. Fleets take waves only, and
//! fleet gates (device success and anomaly rates). An artifact is signed
//! firmware; since a device cannot report which firmware to go back to,
//! every stage moving a fleet needs `rollback.stable` to name it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Kind;
use crate::model::{Capabilities, GateKind, StrategyKind};

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
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FirmwareArtifact {
    /// `s3://bucket/key` of the firmware file (served through CloudFront to devices).
    pub location: String,
    /// SHA-256 of the file, 64 hex digits.
    pub sha256: String,
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
    /// `ed25519`, `ecdsa-p256` or `rsa-pss-sha256`.
    pub algorithm: String,
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
}
