//! What preflight checks before any wave is dispatched (O3, O6): both the
//! release's manifest and the rollback's verify under the plan's trusted
//! key, name the versions and image digests the plan pins, match the
//! images in the bucket byte for byte, and say the rollback is a signed
//! rollback (devices refuse an older version otherwise). A failure here
//! refuses the run: nothing dispatched, exit 2.

use deployctl_adapter::AdapterError;
use deployctl_aws_firmware::bucket::{self, S3Object};
use deployctl_firmware::keys::PublicKey;
use deployctl_firmware::verify::{self, Verified};
use deployctl_firmware::version::Version;
use deployctl_plan::model::{Artifact, ArtifactSource};

use crate::document::{Firmware, S3Ref};

/// One firmware the plan names, before it is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Named {
    pub(crate) version: String,
    pub(crate) image: S3Object,
    pub(crate) sha256: String,
    pub(crate) manifest: S3Object,
}

impl Named {
    /// `None` when the artifact is not firmware (validation offers only
    /// firmware for fleets; a caller building one by hand may not).
    pub(crate) fn of(artifact: &Artifact) -> Option<Result<Named, String>> {
        let ArtifactSource::Firmware {
            location,
            sha256,
            manifest,
            ..
        } = &artifact.source
        else {
            return None;
        };
        Some((|| {
            Ok(Named {
                version: artifact.version.clone(),
                image: location.parse()?,
                sha256: sha256.clone(),
                manifest: manifest.parse()?,
            })
        })())
    }
}

/// A verified firmware: the document devices get, and what the trail keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checked {
    pub(crate) firmware: Firmware,
    pub(crate) verified: Verified,
}

fn refused(message: String) -> AdapterError {
    AdapterError::Rejected {
        message,
        request_id: None,
    }
}

/// Fetches and verifies `named` (`rollback`: it must be a signed rollback).
pub(crate) async fn check(
    s3: &aws_sdk_s3::Client,
    region: &str,
    key: &PublicKey,
    named: &Named,
    rollback: bool,
) -> Result<Checked, AdapterError> {
    let what = if rollback {
        "the rollback firmware"
    } else {
        "the release firmware"
    };
    let envelope = bucket::fetch(s3, &named.manifest).await?;
    let verified = verify::verify_manifest(&envelope, key).map_err(|e| {
        refused(format!(
            "{what} {}: {} ({})",
            named.version, e, named.manifest
        ))
    })?;
    let manifest = &verified.manifest;
    if manifest.version != named.version {
        return Err(refused(format!(
            "{what}: the manifest at {} is for version {}, the plan says {}",
            named.manifest, manifest.version, named.version
        )));
    }
    if manifest.image.sha256 != named.sha256 {
        return Err(refused(format!(
            "{what} {}: the manifest's image SHA-256 is {}, the plan pins {}",
            named.version, manifest.image.sha256, named.sha256
        )));
    }
    if rollback && !manifest.rollback {
        return Err(refused(format!(
            "{what} {}: its manifest is not a signed rollback, so devices that took the new version would refuse it; sign one with `deployctl artifact sign … --rollback`",
            named.version
        )));
    }
    let image = bucket::fetch(s3, &named.image).await?;
    verify::check_image(manifest, &image)
        .map_err(|e| refused(format!("{what} {} at {}: {e}", named.version, named.image)))?;
    let object = |o: &S3Object| S3Ref {
        region: region.to_owned(),
        bucket: o.bucket.clone(),
        key: o.key.clone(),
    };
    Ok(Checked {
        firmware: Firmware {
            firmware: manifest.firmware.clone(),
            version: manifest.version.clone(),
            rollback: manifest.rollback,
            manifest: object(&named.manifest),
            manifest_sha256: verified.digest.clone(),
            image: object(&named.image),
            image_sha256: manifest.image.sha256.clone(),
            image_size: manifest.image.size,
        },
        verified,
    })
}

/// The two firmwares belong together: one line, and the release is not a
/// downgrade from the stable version unless it is itself a signed rollback.
pub(crate) fn check_pair(release: &Checked, stable: &Checked) -> Result<(), AdapterError> {
    let (new, old) = (&release.verified.manifest, &stable.verified.manifest);
    if new.firmware != old.firmware {
        return Err(refused(format!(
            "the release is firmware `{}`, the stable version is `{}`: one fleet runs one firmware line",
            new.firmware, old.firmware
        )));
    }
    let parse = |v: &str| Version::parse(v).map_err(|e| refused(e.to_string()));
    if parse(&new.version)? < parse(&old.version)? && !new.rollback {
        return Err(refused(format!(
            "{} is older than the stable {} and its manifest is not a signed rollback",
            new.version, old.version
        )));
    }
    Ok(())
}

/// Every model in `models` (the devices' thing types) is one the release
/// runs on.
pub(crate) fn check_hardware(
    release: &Checked,
    models: &[(String, Option<String>)],
) -> Result<(), AdapterError> {
    let allowed = &release.verified.manifest.hardware;
    let untyped: Vec<&str> = models
        .iter()
        .filter(|(_, model)| model.is_none())
        .map(|(thing, _)| thing.as_str())
        .take(5)
        .collect();
    if !untyped.is_empty() {
        return Err(refused(format!(
            "device {} has no thing type, so its hardware cannot be checked against the manifest's models ({})",
            untyped.join(", "),
            allowed.join(", ")
        )));
    }
    let wrong: Vec<String> = models
        .iter()
        .filter_map(|(thing, model)| {
            let model = model.as_deref()?;
            (!allowed.iter().any(|m| m == model)).then(|| format!("{thing} ({model})"))
        })
        .take(5)
        .collect();
    if !wrong.is_empty() {
        return Err(refused(format!(
            "the release runs on {}, not on {}",
            allowed.join(", "),
            wrong.join(", ")
        )));
    }
    Ok(())
}
