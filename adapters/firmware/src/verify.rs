//! What a device and a fleet stage refuse: a manifest whose signature does
//! not verify under the trusted key, an image whose digest or size
//! differs, hardware or a firmware line it was not built for, and a
//! downgrade that is not a signed rollback.

use crate::envelope::{self, Envelope, pae};
use crate::keys::PublicKey;
use crate::manifest::{Manifest, PAYLOAD_TYPE};
use crate::version::Version;

/// Manifests are small; anything larger is not one.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;

/// A manifest whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub manifest: Manifest,
    /// SHA-256 of the envelope file as read: what the trail records.
    pub digest: String,
    /// The `keyid` of the signature that verified.
    pub signer: String,
}

/// Why a manifest or an image is not installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the manifest is not a signed envelope: {0}")]
    Malformed(String),
    #[error("the manifest's signature does not verify with key {key}")]
    BadSignature { key: String },
    #[error("the manifest is invalid: {0}")]
    Invalid(String),
    #[error("the image's SHA-256 is {actual}, the manifest says {expected}")]
    Digest { expected: String, actual: String },
    #[error("the image is {actual} bytes, the manifest says {expected}")]
    Size { expected: u64, actual: u64 },
    #[error("the manifest is for firmware `{manifest}`, this device runs `{device}`")]
    Firmware { manifest: String, device: String },
    #[error("hardware `{device}` is not among the manifest's models ({})", models.join(", "))]
    Hardware { device: String, models: Vec<String> },
    #[error(
        "{version} is older than the installed {installed} and the manifest is not a signed rollback"
    )]
    Downgrade { version: String, installed: String },
    #[error(
        "the installed {installed} is older than {min}, the oldest version this image may replace"
    )]
    TooOld { installed: String, min: String },
    #[error("{0}")]
    Version(String),
}

/// Verifies a signed manifest's envelope under `key` and returns the
/// manifest it carries.
pub fn verify_manifest(file: &[u8], key: &PublicKey) -> Result<Verified, Refusal> {
    if file.len() > MAX_MANIFEST_BYTES {
        return Err(Refusal::Malformed(format!(
            "{} bytes, more than a manifest's {MAX_MANIFEST_BYTES}",
            file.len()
        )));
    }
    let envelope: Envelope =
        serde_json::from_slice(file).map_err(|e| Refusal::Malformed(e.to_string()))?;
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(Refusal::Malformed(format!(
            "payload type `{}` is not `{PAYLOAD_TYPE}`",
            envelope.payload_type
        )));
    }
    let payload = envelope::decode(&envelope.payload)
        .ok_or_else(|| Refusal::Malformed("the payload is not base64".into()))?;
    let message = pae(PAYLOAD_TYPE, &payload);
    let signer = envelope
        .signatures
        .iter()
        .find(|signature| {
            envelope::decode(&signature.sig).is_some_and(|sig| key.verify(&message, &sig))
        })
        .map(|signature| signature.keyid.clone())
        .ok_or_else(|| Refusal::BadSignature { key: key.key_id() })?;
    // Only now is the payload trusted enough to parse.
    let manifest: Manifest =
        serde_json::from_slice(&payload).map_err(|e| Refusal::Invalid(e.to_string()))?;
    manifest.check().map_err(Refusal::Invalid)?;
    Ok(Verified {
        manifest,
        digest: crate::sha256_hex(file),
        signer,
    })
}

/// Checks a downloaded image against its manifest (before decrypting it).
pub fn check_image(manifest: &Manifest, file: &[u8]) -> Result<(), Refusal> {
    let actual = file.len() as u64;
    if actual != manifest.image.size {
        return Err(Refusal::Size {
            expected: manifest.image.size,
            actual,
        });
    }
    let digest = crate::sha256_hex(file);
    if digest != manifest.image.sha256 {
        return Err(Refusal::Digest {
            expected: manifest.image.sha256.clone(),
            actual: digest,
        });
    }
    Ok(())
}

/// A device as the install check sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device<'a> {
    pub firmware: &'a str,
    pub hardware: &'a str,
    pub installed: &'a str,
}

/// What installing would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Install {
    Upgrade,
    /// A signed rollback to an older version.
    Rollback,
    /// The device already runs this version: nothing to write.
    AlreadyInstalled,
}

/// Whether `device` may install `manifest`'s image.
pub fn check_install(manifest: &Manifest, device: &Device<'_>) -> Result<Install, Refusal> {
    if manifest.firmware != device.firmware {
        return Err(Refusal::Firmware {
            manifest: manifest.firmware.clone(),
            device: device.firmware.to_owned(),
        });
    }
    if !manifest
        .hardware
        .iter()
        .any(|model| model == device.hardware)
    {
        return Err(Refusal::Hardware {
            device: device.hardware.to_owned(),
            models: manifest.hardware.clone(),
        });
    }
    let version = parse(&manifest.version)?;
    let installed = parse(device.installed)?;
    if version == installed {
        return Ok(Install::AlreadyInstalled);
    }
    if version < installed {
        return if manifest.rollback {
            Ok(Install::Rollback)
        } else {
            Err(Refusal::Downgrade {
                version: manifest.version.clone(),
                installed: device.installed.to_owned(),
            })
        };
    }
    if let Some(min) = &manifest.min_version
        && installed < parse(min)?
    {
        return Err(Refusal::TooOld {
            installed: device.installed.to_owned(),
            min: min.clone(),
        });
    }
    Ok(Install::Upgrade)
}

fn parse(text: &str) -> Result<Version, Refusal> {
    Version::parse(text).map_err(|e| Refusal::Version(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_on;
    use crate::keys::{Algorithm, LocalSigner};
    use crate::manifest::{FORMAT, Image};

    fn manifest(image: &[u8]) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            firmware: "t4-app".into(),
            version: "4.2.0".into(),
            hardware: vec!["t4-rev-a".into(), "t4-rev-b".into()],
            image: Image {
                sha256: crate::sha256_hex(image),
                size: image.len() as u64,
                encryption: None,
            },
            min_version: Some("4.0.0".into()),
            rollback: false,
            signed_at: "2026-12-03T00:00:00.000Z".into(),
        }
    }

    fn signed(manifest: &Manifest, signer: &LocalSigner) -> Vec<u8> {
        block_on(crate::envelope::sign(manifest, signer))
            .unwrap()
            .into_bytes()
    }

    #[test]
    fn a_signed_manifest_verifies_with_its_key_only() {
        for algorithm in [Algorithm::Ed25519, Algorithm::EcdsaP256] {
            let (signer, _) = LocalSigner::generate(algorithm).unwrap();
            let (other, _) = LocalSigner::generate(algorithm).unwrap();
            let file = signed(&manifest(b"img"), &signer);
            let verified = verify_manifest(&file, signer.public_key()).unwrap();
            assert_eq!(verified.manifest, manifest(b"img"));
            assert_eq!(verified.signer, signer.public_key().key_id());
            assert_eq!(verified.digest, crate::sha256_hex(&file));
            assert!(matches!(
                verify_manifest(&file, other.public_key()),
                Err(Refusal::BadSignature { .. })
            ));
        }
    }

    #[test]
    fn an_edited_payload_does_not_verify() {
        let (signer, _) = LocalSigner::generate(Algorithm::Ed25519).unwrap();
        let file = signed(&manifest(b"img"), &signer);
        let mut envelope: Envelope = serde_json::from_slice(&file).unwrap();
        let mut tampered = manifest(b"img");
        tampered.hardware.push("t5".into());
        envelope.payload = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            serde_json::to_vec_pretty(&tampered).unwrap(),
        );
        let file = serde_json::to_vec(&envelope).unwrap();
        assert!(matches!(
            verify_manifest(&file, signer.public_key()),
            Err(Refusal::BadSignature { .. })
        ));
        // A payload type swap is refused before any signature is checked.
        envelope.payload_type = "application/json".into();
        let file = serde_json::to_vec(&envelope).unwrap();
        assert!(matches!(
            verify_manifest(&file, signer.public_key()),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn a_signed_manifest_with_an_unknown_field_is_refused() {
        // Signed, but a field a device would not understand: never installed.
        struct Raw(Vec<u8>);
        let (signer, _) = LocalSigner::generate(Algorithm::Ed25519).unwrap();
        let mut value = serde_json::to_value(manifest(b"img")).unwrap();
        value["bootArgs"] = "init=/bin/sh".into();
        let Raw(payload) = Raw(serde_json::to_vec(&value).unwrap());
        let sig = block_on(crate::keys::Signer::sign(
            &signer,
            &pae(PAYLOAD_TYPE, &payload),
        ))
        .unwrap();
        let b64 = |bytes: &[u8]| {
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
        };
        let file = serde_json::to_vec(&Envelope {
            payload: b64(&payload),
            payload_type: PAYLOAD_TYPE.into(),
            signatures: vec![crate::envelope::EnvelopeSignature {
                keyid: "k".into(),
                sig: b64(&sig),
            }],
        })
        .unwrap();
        let error = verify_manifest(&file, signer.public_key()).unwrap_err();
        assert!(error.to_string().contains("bootArgs"), "{error}");
    }

    #[test]
    fn image_digest_and_size_are_checked() {
        let m = manifest(b"image");
        assert_eq!(check_image(&m, b"image"), Ok(()));
        assert!(matches!(
            check_image(&m, b"imagf"),
            Err(Refusal::Digest { .. })
        ));
        assert!(matches!(
            check_image(&m, b"image!"),
            Err(Refusal::Size { .. })
        ));
    }

    #[test]
    fn install_rules() {
        let device = |installed| Device {
            firmware: "t4-app",
            hardware: "t4-rev-a",
            installed,
        };
        let m = manifest(b"x");
        assert_eq!(check_install(&m, &device("4.1.3")), Ok(Install::Upgrade));
        assert_eq!(
            check_install(&m, &device("4.2.0")),
            Ok(Install::AlreadyInstalled)
        );
        assert!(matches!(
            check_install(&m, &device("4.10.0")),
            Err(Refusal::Downgrade { .. })
        ));
        assert!(matches!(
            check_install(&m, &device("3.9.9")),
            Err(Refusal::TooOld { .. })
        ));
        let rollback = Manifest {
            rollback: true,
            version: "4.1.3".into(),
            ..m.clone()
        };
        assert_eq!(
            check_install(&rollback, &device("4.2.0")),
            Ok(Install::Rollback)
        );
        let other_hw = Device {
            hardware: "t5",
            ..device("4.1.3")
        };
        assert!(matches!(
            check_install(&m, &other_hw),
            Err(Refusal::Hardware { .. })
        ));
        let other_line = Device {
            firmware: "t4-boot",
            ..device("4.1.3")
        };
        assert!(matches!(
            check_install(&m, &other_line),
            Err(Refusal::Firmware { .. })
        ));
    }
}
