//! The shipped copy in S3, read back for `deployctl audit verify --against`.
//!
//! Every *version* of every trail object is read, not just the latest: the
//! bucket is versioned (Object Lock requires it), so someone who cannot
//! delete a locked object can still put a newer version over its key, and
//! a plain `GetObject` would return theirs. The locked original stays
//! readable by version ID, and a second, different version of the same
//! records shows up in `verify` as a shipped copy with two different
//! records for one `seq`. Delete markers (someone tried to delete) are
//! reported as warnings.

use std::path::PathBuf;
use std::sync::Arc;

use aws_sdk_s3::Client;
use deployctl_audit::{AuditError, CopyFile};

use crate::client;
use crate::error::{AwsAuditError, CallFailure};
use crate::location::{S3Location, TrailKeys};
use deployctl_aws::bridge::Bridge;

/// One stored version of one trail object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    pub key: String,
    /// `None` when the bucket is not versioned (and so not locked).
    pub version_id: Option<String>,
    /// Other versions exist under the same key.
    pub overwritten: bool,
}

/// The trail objects under a location, listed; their bytes are fetched
/// one by one by [`S3Copy::files`].
pub struct S3Copy {
    location: S3Location,
    objects: Vec<ObjectVersion>,
    warnings: Vec<String>,
    client: Client,
    bridge: Arc<Bridge>,
}

impl S3Copy {
    /// Lists `location` with a client from the standard AWS chain.
    pub fn list(location: S3Location) -> Result<S3Copy, AwsAuditError> {
        let bridge = Bridge::new()?;
        let config = client::load(&bridge)?;
        let client = client::s3_client(&config);
        Self::list_on(bridge, client, location)
    }

    /// [`S3Copy::list`] with a given client.
    pub fn list_with_client(client: Client, location: S3Location) -> Result<S3Copy, AwsAuditError> {
        Self::list_on(Bridge::new()?, client, location)
    }

    fn list_on(
        bridge: Bridge,
        client: Client,
        location: S3Location,
    ) -> Result<S3Copy, AwsAuditError> {
        let (list_client, list_location) = (client.clone(), location.clone());
        let (objects, warnings) = bridge
            .run(async move { list_versions(&list_client, &list_location).await })
            .map_err(|stopped| AwsAuditError::Call(stopped.to_string()))??;
        Ok(S3Copy {
            location,
            objects,
            warnings,
            client,
            bridge: Arc::new(bridge),
        })
    }

    pub fn location(&self) -> &S3Location {
        &self.location
    }

    /// Every version of every trail object, in key order (oldest version
    /// first within a key).
    pub fn objects(&self) -> &[ObjectVersion] {
        &self.objects
    }

    /// What looks wrong in the bucket without being a verification problem
    /// by itself (delete markers, overwritten keys).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The objects' bytes, fetched as the iterator is consumed, named
    /// `s3://bucket/key` (with `?versionId=` when a key has several
    /// versions), ready for [`deployctl_audit::verify_against_files`].
    pub fn files(&self) -> impl Iterator<Item = Result<CopyFile, AuditError>> + '_ {
        self.objects.iter().map(|object| {
            let mut name = self.location.url(&object.key);
            if object.overwritten
                && let Some(version) = &object.version_id
            {
                name.push_str(&format!("?versionId={version}"));
            }
            let (client, bucket) = (self.client.clone(), self.location.bucket.clone());
            let (key, version) = (object.key.clone(), object.version_id.clone());
            let fetched = self
                .bridge
                .run(async move { fetch(&client, &bucket, &key, version.as_deref()).await })
                .map_err(|stopped| stopped.to_string())
                .and_then(|result| result);
            match fetched {
                Ok(bytes) => Ok(CopyFile {
                    name: PathBuf::from(name),
                    bytes,
                }),
                Err(message) => Err(AuditError::Io {
                    action: "fetch",
                    path: PathBuf::from(name),
                    source: std::io::Error::other(message),
                }),
            }
        })
    }
}

async fn list_versions(
    client: &Client,
    location: &S3Location,
) -> Result<(Vec<ObjectVersion>, Vec<String>), AwsAuditError> {
    let prefix = location.list_prefix();
    let mut found: Vec<(String, Option<String>, i64, bool)> = Vec::new();
    let mut warnings = Vec::new();
    let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
    loop {
        let page = client
            .list_object_versions()
            .bucket(&location.bucket)
            .prefix(&prefix)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .send()
            .await
            .map_err(|e| {
                AwsAuditError::Call(
                    CallFailure::new(e, &format!("ListObjectVersions {location}")).message,
                )
            })?;
        for version in page.versions() {
            let Some(key) = version.key().filter(|k| location.is_trail_object(k)) else {
                continue;
            };
            let modified = version.last_modified().map_or(0, |t| t.secs());
            found.push((
                key.to_string(),
                version
                    .version_id()
                    .map(str::to_owned)
                    .filter(|v| v != "null"),
                modified,
                version.is_latest().unwrap_or(false),
            ));
        }
        for marker in page.delete_markers() {
            if let Some(key) = marker.key().filter(|k| location.is_trail_object(k)) {
                warnings.push(format!(
                    "{} has a delete marker: someone tried to delete it; its locked versions are still read",
                    location.url(key)
                ));
            }
        }
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        version_marker = page.next_version_id_marker().map(str::to_owned);
        if key_marker.is_none() {
            break;
        }
    }
    // Key order is seq order; within a key, oldest first (the first write
    // is the one deployctl made).
    found.sort_by(|a, b| (&a.0, a.2, !a.3).cmp(&(&b.0, b.2, !b.3)));
    let mut versions: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for (key, ..) in &found {
        *versions.entry(key).or_default() += 1;
    }
    for (key, count) in &versions {
        if *count > 1 {
            warnings.push(format!(
                "{} has {count} versions: something wrote over it after it was shipped; every version is checked",
                location.url(key)
            ));
        }
    }
    let objects = found
        .iter()
        .map(|(key, version_id, ..)| ObjectVersion {
            key: key.clone(),
            version_id: version_id.clone(),
            overwritten: versions.get(key.as_str()).is_some_and(|count| *count > 1),
        })
        .collect();
    Ok((objects, warnings))
}

async fn fetch(
    client: &Client,
    bucket: &str,
    key: &str,
    version: Option<&str>,
) -> Result<Vec<u8>, String> {
    let what = format!("GetObject s3://{bucket}/{key}");
    let object = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version.map(str::to_owned))
        .send()
        .await
        .map_err(|e| CallFailure::new(e, &what).message)?;
    let bytes = object
        .body
        .collect()
        .await
        .map_err(|e| format!("{what}: reading the body: {e}"))?
        .into_bytes();
    Ok(bytes.to_vec())
}
