//! The firmware bucket: images and manifests published side by side in a
//! versioned S3 bucket (meant to sit behind CloudFront, O4), and read back
//! by the fleet stage's preflight.
//!
//! Publishing writes each object only if its key is free (`If-None-Match:
//! *`), so a published image or manifest is never replaced under devices
//! mid-rollout; sends each object's SHA-256 for S3 to check on arrival;
//! and needs the bucket to keep versions (S3 answers a put with a version
//! ID), so the URLs it prints name exactly the bytes that were signed.
//! The versioning check reads the image upload's answer rather than
//! `GetBucketVersioning` (which moto answers with a root element the SDK
//! refuses); the image goes first, so an unversioned bucket is found
//! before any manifest exists and no device can be sent the image.

use std::fmt;
use std::str::FromStr;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use deployctl_adapter::AdapterError;
use deployctl_aws::map_sdk_error;

/// Firmware objects are read whole; a manifest or image larger than this
/// is refused rather than buffered.
pub const MAX_OBJECT_BYTES: u64 = 512 << 20;

/// `s3://bucket/key`, optionally pinned to one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Object {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
}

impl FromStr for S3Object {
    type Err = String;

    fn from_str(text: &str) -> Result<S3Object, String> {
        let rest = text
            .strip_prefix("s3://")
            .ok_or_else(|| format!("`{text}` is not an s3:// location"))?;
        let (path, version_id) = match rest.split_once("?versionId=") {
            Some((path, version)) => (path, Some(version.to_owned())),
            None => (rest, None),
        };
        match path.split_once('/') {
            Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok(S3Object {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                version_id,
            }),
            _ => Err(format!("`{text}` names no object: write s3://BUCKET/KEY")),
        }
    }
}

impl fmt::Display for S3Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)?;
        if let Some(version) = &self.version_id {
            write!(f, "?versionId={version}")?;
        }
        Ok(())
    }
}

/// An S3 client for `sdk`, path-style where
/// [`deployctl_aws::config::s3_path_style`] says.
pub fn s3_client(sdk: &aws_config::SdkConfig) -> Client {
    Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(deployctl_aws::config::s3_path_style(sdk))
            .build(),
    )
}

/// One published object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub object: S3Object,
    /// The HTTPS URL devices fetch it from (the CDN's when one was given).
    pub url: String,
}

/// Publishes `image` and `manifest` under `prefix` (`s3://bucket/path`),
/// as `NAME` and `NAME.manifest.json`. `cdn`, an `https://` base URL, is
/// what the printed URLs start with instead of the bucket's own.
pub async fn publish(
    client: &Client,
    prefix: &str,
    name: &str,
    image: &[u8],
    manifest: &[u8],
    cdn: Option<&str>,
) -> Result<[Published; 2], AdapterError> {
    let (bucket, path) = split_prefix(prefix)?;
    let region = client
        .config()
        .region()
        .map(|r| r.as_ref().to_owned())
        .unwrap_or_else(|| "us-east-1".into());
    let manifest_name = format!("{name}.manifest.json");
    let mut out = Vec::with_capacity(2);
    for (file, bytes) in [(name, image), (manifest_name.as_str(), manifest)] {
        let key = if path.is_empty() {
            file.to_owned()
        } else {
            format!("{path}/{file}")
        };
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
        let answer = client
            .put_object()
            .bucket(&bucket)
            .key(&key)
            .body(ByteStream::from(bytes.to_vec()))
            .checksum_sha256(STANDARD.encode(digest.as_ref()))
            .if_none_match("*")
            .content_type(if file.ends_with(".json") {
                "application/json"
            } else {
                "application/octet-stream"
            })
            .send()
            .await
            .map_err(|e| {
                // `If-None-Match: *` lost: the key is taken.
                let taken = e.as_service_error().and_then(|s| s.meta().code())
                    == Some("PreconditionFailed");
                let error = map_sdk_error(e, &format!("S3 PutObject s3://{bucket}/{key}"));
                if taken {
                    AdapterError::Rejected {
                        message: format!(
                            "s3://{bucket}/{key} is already published: a firmware object is never replaced; publish the new version under its own prefix"
                        ),
                        request_id: error.request_id().map(str::to_owned),
                    }
                } else {
                    error
                }
            })?;
        let version_id = answer
            .version_id()
            .filter(|v| *v != "null")
            .map(str::to_owned);
        if version_id.is_none() {
            return Err(AdapterError::Rejected {
                message: format!(
                    "bucket {bucket} does not keep versions: enable versioning and publish again under a new prefix \
                     (s3://{bucket}/{key} was written, but no manifest was, so no device will install it)"
                ),
                request_id: None,
            });
        }
        let base = match cdn {
            Some(cdn) => cdn.trim_end_matches('/').to_owned(),
            None => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        };
        let url = match &version_id {
            Some(version) => format!("{base}/{key}?versionId={version}"),
            None => format!("{base}/{key}"),
        };
        out.push(Published {
            object: S3Object {
                bucket: bucket.clone(),
                key,
                version_id,
            },
            url,
        });
    }
    let [image, manifest]: [Published; 2] = out.try_into().expect("two objects were published");
    Ok([image, manifest])
}

/// Reads one object whole (at most [`MAX_OBJECT_BYTES`]).
pub async fn fetch(client: &Client, object: &S3Object) -> Result<Vec<u8>, AdapterError> {
    let answer = client
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .set_version_id(object.version_id.clone())
        .send()
        .await
        .map_err(|e| map_sdk_error(e, &format!("S3 GetObject {object}")))?;
    if answer
        .content_length()
        .is_some_and(|len| len as u64 > MAX_OBJECT_BYTES)
    {
        return Err(AdapterError::Rejected {
            message: format!("{object} is larger than {MAX_OBJECT_BYTES} bytes"),
            request_id: None,
        });
    }
    let bytes = answer
        .body
        .collect()
        .await
        .map_err(|e| AdapterError::Timeout {
            message: format!("reading {object}: {e}"),
        })?;
    Ok(bytes.into_bytes().to_vec())
}

fn split_prefix(prefix: &str) -> Result<(String, String), AdapterError> {
    let rest = prefix
        .strip_prefix("s3://")
        .filter(|r| !r.is_empty() && !r.starts_with('/'));
    let Some(rest) = rest else {
        return Err(AdapterError::Rejected {
            message: format!("`{prefix}` is not an s3://BUCKET/PREFIX location"),
            request_id: None,
        });
    };
    let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
    Ok((bucket.to_owned(), path.trim_matches('/').to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_locations_parse_and_print_back() {
        let object: S3Object = "s3://fw/t4/4.2.0/app.bin?versionId=abc".parse().unwrap();
        assert_eq!(object.bucket, "fw");
        assert_eq!(object.key, "t4/4.2.0/app.bin");
        assert_eq!(object.version_id.as_deref(), Some("abc"));
        assert_eq!(object.to_string(), "s3://fw/t4/4.2.0/app.bin?versionId=abc");
        for bad in ["s3://", "s3://fw", "s3://fw/", "https://fw/a", "s3:///a"] {
            assert!(bad.parse::<S3Object>().is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixes_split_into_bucket_and_path() {
        assert_eq!(split_prefix("s3://fw").unwrap(), ("fw".into(), "".into()));
        assert_eq!(
            split_prefix("s3://fw/t4/4.2.0/").unwrap(),
            ("fw".into(), "t4/4.2.0".into())
        );
        assert!(split_prefix("fw/t4").is_err());
        assert!(split_prefix("s3:///t4").is_err());
    }
}
