//! What a firmware image is, as its publisher signs it.

use serde::{Deserialize, Serialize};

/// The manifest format this crate writes and accepts.
pub const FORMAT: &str = "deployctl.io/firmware-manifest/v1";

/// The DSSE payload type of a signed manifest.
pub const PAYLOAD_TYPE: &str = "application/vnd.deployctl.firmware-manifest+json";

/// One firmware image, as signed. Unknown fields are refused: a device
/// must not skip a field it does not understand and install anyway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The firmware line (`t4-app`): an image of another line is never installed.
    pub firmware: String,
    pub version: String,
    /// Hardware models the image runs on; a device of another model refuses it.
    pub hardware: Vec<String>,
    /// The file devices download.
    pub image: Image,
    /// The oldest installed version this image may replace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
    /// A signed rollback: the only way a device accepts an older version.
    #[serde(default)]
    pub rollback: bool,
    /// When it was signed (RFC 3339 UTC), for the trail.
    pub signed_at: String,
}

/// The image file and how to read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Image {
    /// SHA-256 of the file as downloaded (encrypted), 64 lowercase hex digits.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Absent: the image is not encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
}

/// How the image was encrypted (envelope encryption).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Encryption {
    /// Always `AES-256-GCM`.
    pub algorithm: String,
    /// The key-encryption key that wraps the content key (a KMS key ARN,
    /// or `local:…` for a key file). Rotating it needs no re-signing: the
    /// image's own header carries the wrapped content key.
    pub key_id: String,
    /// SHA-256 of the decrypted image, checked after decryption.
    pub plaintext_sha256: String,
}

impl Manifest {
    /// The manifest's own problems (not its signature's).
    pub fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "manifest format `{}` is not `{FORMAT}`",
                self.format
            ));
        }
        if self.firmware.trim().is_empty() {
            return Err("the manifest names no firmware".into());
        }
        crate::version::Version::parse(&self.version).map_err(|e| e.to_string())?;
        if let Some(min) = &self.min_version {
            crate::version::Version::parse(min).map_err(|e| e.to_string())?;
        }
        if self.hardware.is_empty() {
            return Err("the manifest names no hardware model".into());
        }
        if !is_hex_digest(&self.image.sha256) {
            return Err("image.sha256 is not 64 lowercase hex digits".into());
        }
        if let Some(encryption) = &self.image.encryption {
            if encryption.algorithm != crate::cipher::ALGORITHM {
                return Err(format!(
                    "image encryption `{}` is not {}",
                    encryption.algorithm,
                    crate::cipher::ALGORITHM
                ));
            }
            if !is_hex_digest(&encryption.plaintext_sha256) {
                return Err(
                    "image.encryption.plaintextSha256 is not 64 lowercase hex digits".into(),
                );
            }
        }
        Ok(())
    }
}

pub(crate) fn is_hex_digest(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
