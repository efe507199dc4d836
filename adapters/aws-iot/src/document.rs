//! The job document a device reads: which firmware, where its signed
//! manifest and image are, and what their digests must be. The URLs are
//! IoT Jobs' presigned-URL placeholders, which the service replaces per
//! job execution with a short-lived S3 URL signed by the plan's download
//! role (O2): nothing in the document is a standing credential.

use serde_json::json;

/// The document's `operation`, which agents dispatch on.
pub(crate) const OPERATION: &str = "deployctl.io/ota/v1";

/// How long a presigned download URL lives (IoT Jobs allows 60–3600 s).
pub(crate) const URL_LIFETIME_SECS: i64 = 3600;

/// What one firmware release looks like to devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Firmware {
    pub(crate) firmware: String,
    pub(crate) version: String,
    pub(crate) rollback: bool,
    pub(crate) manifest: S3Ref,
    /// SHA-256 of the signed manifest file.
    pub(crate) manifest_sha256: String,
    pub(crate) image: S3Ref,
    pub(crate) image_sha256: String,
    pub(crate) image_size: u64,
}

/// A bucket and key in a region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct S3Ref {
    pub(crate) region: String,
    pub(crate) bucket: String,
    pub(crate) key: String,
}

impl S3Ref {
    /// IoT Jobs' placeholder for a presigned GET of this object.
    fn placeholder(&self) -> String {
        format!(
            "${{aws:iot:s3-presigned-url:https://s3.{}.amazonaws.com/{}/{}}}",
            self.region, self.bucket, self.key
        )
    }
}

/// The job document's JSON text.
pub(crate) fn job_document(firmware: &Firmware) -> String {
    json!({
        "operation": OPERATION,
        "firmware": firmware.firmware,
        "version": firmware.version,
        "rollback": firmware.rollback,
        "manifest": {
            "url": firmware.manifest.placeholder(),
            "sha256": firmware.manifest_sha256,
        },
        "image": {
            "url": firmware.image.placeholder(),
            "sha256": firmware.image_sha256,
            "size": firmware.image_size,
        },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_presigned_placeholders_never_plain_links() {
        let object = |key: &str| S3Ref {
            region: "us-east-1".into(),
            bucket: "fw".into(),
            key: key.into(),
        };
        let text = job_document(&Firmware {
            firmware: "t4-app".into(),
            version: "4.2.0".into(),
            rollback: false,
            manifest: object("t4/4.2.0/app.bin.manifest.json"),
            manifest_sha256: "a".repeat(64),
            image: object("t4/4.2.0/app.bin"),
            image_sha256: "b".repeat(64),
            image_size: 42,
        });
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["operation"], OPERATION);
        assert_eq!(
            doc["image"]["url"],
            "${aws:iot:s3-presigned-url:https://s3.us-east-1.amazonaws.com/fw/t4/4.2.0/app.bin}"
        );
        assert_eq!(doc["image"]["size"], 42);
    }
}
