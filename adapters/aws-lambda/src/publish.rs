//! A release's code → a published Lambda version, exactly once.
//!
//! The plan names a release by a label (`artifacts.X.version`, e.g.
//! `2.7.0`) and its code (`lambda: {version | s3 | zipFile}`). The engine
//! only ever speaks the label (`Deploy { version: label }`), so this module
//! turns it into the published version number Lambda routes to:
//!
//! - `version: N`: N itself (it must exist).
//! - `s3` / `zipFile`: `UpdateFunctionCode` then `PublishVersion` with the
//!   `CodeSha256` (and `RevisionId`) the update returned as preconditions,
//!   so a version is never published over someone else's code.
//!
//! Publishing must happen once per release across retries and `kill -9`:
//! AWS publishes nothing when the code did not change since the last
//! version, but moto publishes a new version every time. So the version's
//! `Description` carries the release's identity (label, code source and the
//! code's SHA-256) and every publish looks for an existing version with
//! that identity first (`ListVersionsByFunction`). A version counts only if
//! its own `CodeSha256` is the one its description names, so a version that
//! lost a race for `$LATEST` (published over another writer's code, which
//! moto allows) is never taken for ours. For a local zip the SHA-256 is
//! computed here, so a changed file is a different release.
//!
//! Labels and version numbers share the engine's version strings, so a
//! label that is a bare number must be that published version: otherwise
//! "roll back to 3" could mean the label or the version.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_lambda::Client;
use aws_sdk_lambda::config::AsyncSleep;
use aws_sdk_lambda::operation::RequestId;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::LastUpdateStatus;
use deployctl_adapter::AdapterError;
use deployctl_plan::model::{Artifact, ArtifactSource};

use deployctl_aws::map_sdk_error;

use crate::error::ConstructError;

/// Lambda's limit on a version description.
const DESCRIPTION_LIMIT: usize = 256;
/// Lambda's limit on a zip uploaded in the request (larger code goes through S3).
const ZIP_LIMIT: u64 = 50 * 1024 * 1024;
/// How long a code update may stay `InProgress` before publishing gives up
/// (retryable: the engine tries again).
const UPDATE_WAIT: Duration = Duration::from_secs(60);

/// A release of a Lambda function: its label and where its code comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LambdaRelease {
    label: String,
    code: Code,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Code {
    /// Already published: the version number.
    Published(String),
    S3 {
        bucket: String,
        key: String,
        object_version: Option<String>,
    },
    /// A zip file on this machine.
    Zip(PathBuf),
}

/// True for what Lambda calls a published version (`1`, `42`).
pub(super) fn is_version_number(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

impl LambdaRelease {
    /// The release a plan's artifact describes; a relative `zipFile` is
    /// resolved against `plan_dir` (the plan file's directory). Refuses
    /// what cannot work before anything is touched: a non-Lambda source, a
    /// bare-number label that is not the published version, a description
    /// over Lambda's limit.
    pub(crate) fn from_artifact(
        artifact: &Artifact,
        plan_dir: &Path,
    ) -> Result<LambdaRelease, ConstructError> {
        let code = match &artifact.source {
            ArtifactSource::LambdaPublished(version) => Code::Published(version.clone()),
            ArtifactSource::LambdaS3(s3) => Code::S3 {
                bucket: s3.bucket.clone(),
                key: s3.key.clone(),
                object_version: s3.object_version.clone(),
            },
            ArtifactSource::LambdaZip(path) => Code::Zip(plan_dir.join(path)),
            other => {
                return Err(ConstructError::NotLambdaCode {
                    version: artifact.version.clone(),
                    given: format!("{other:?}"),
                });
            }
        };
        let release = LambdaRelease {
            label: artifact.version.clone(),
            code,
        };
        release.check()?;
        Ok(release)
    }

    /// A release of an already published version under `label`.
    pub(crate) fn published(
        label: impl Into<String>,
        version: impl Into<String>,
    ) -> Result<Self, ConstructError> {
        let release = LambdaRelease {
            label: label.into(),
            code: Code::Published(version.into()),
        };
        release.check()?;
        Ok(release)
    }

    /// A release of the zip file at `path` under `label`.
    #[cfg(test)]
    fn zip(label: impl Into<String>, path: impl Into<PathBuf>) -> Result<Self, ConstructError> {
        let release = LambdaRelease {
            label: label.into(),
            code: Code::Zip(path.into()),
        };
        release.check()?;
        Ok(release)
    }

    /// A release of the S3 object `bucket/key` (at `object_version`) under `label`.
    #[cfg(test)]
    fn s3(
        label: impl Into<String>,
        bucket: impl Into<String>,
        key: impl Into<String>,
        object_version: Option<String>,
    ) -> Result<Self, ConstructError> {
        let release = LambdaRelease {
            label: label.into(),
            code: Code::S3 {
                bucket: bucket.into(),
                key: key.into(),
                object_version,
            },
        };
        release.check()?;
        Ok(release)
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// The published version, when the plan names one.
    pub(super) fn published_version(&self) -> Option<&str> {
        match &self.code {
            Code::Published(version) => Some(version),
            _ => None,
        }
    }

    fn check(&self) -> Result<(), ConstructError> {
        if self.label.is_empty() {
            return Err(ConstructError::NoLabel);
        }
        if let Code::Published(version) = &self.code
            && !is_version_number(version)
        {
            return Err(ConstructError::NotAVersionNumber {
                version: version.clone(),
            });
        }
        if is_version_number(&self.label) && self.published_version() != Some(self.label.as_str()) {
            return Err(ConstructError::BareNumberLabel {
                label: self.label.clone(),
            });
        }
        // The longest description: a SHA-256 in base64 is 44 characters.
        let longest = self.identity("x".repeat(44).as_str());
        if longest.len() > DESCRIPTION_LIMIT {
            return Err(ConstructError::DescriptionTooLong {
                label: self.label.clone(),
                length: longest.len(),
                limit: DESCRIPTION_LIMIT,
            });
        }
        Ok(())
    }

    /// What the code source is, for the version's description.
    fn source(&self) -> String {
        match &self.code {
            Code::Published(version) => format!("version {version}"),
            Code::S3 {
                bucket,
                key,
                object_version,
            } => match object_version {
                Some(v) => format!("s3://{bucket}/{key}?versionId={v}"),
                None => format!("s3://{bucket}/{key}"),
            },
            Code::Zip(path) => format!(
                "zip {}",
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
        }
    }

    /// The version description that identifies this release's code.
    fn identity(&self, code_sha256: &str) -> String {
        format!(
            "deployctl release {}; {}; sha256 {code_sha256}",
            self.label,
            self.source()
        )
    }

    /// The zip's bytes and their `CodeSha256` (base64 SHA-256, as Lambda
    /// reports it).
    fn read_zip(path: &Path) -> Result<(Vec<u8>, String), AdapterError> {
        let unreadable = |error: std::io::Error| AdapterError::Rejected {
            message: format!(
                "cannot read the release's zip file {}: {error}",
                path.display()
            ),
            request_id: None,
        };
        let size = std::fs::metadata(path).map_err(unreadable)?.len();
        if size > ZIP_LIMIT {
            return Err(AdapterError::Rejected {
                message: format!(
                    "{} is {size} bytes; Lambda takes at most {ZIP_LIMIT} bytes in the request: upload it to S3 and use `lambda.s3`",
                    path.display()
                ),
                request_id: None,
            });
        }
        let bytes = std::fs::read(path).map_err(unreadable)?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
        Ok((bytes, base64(digest.as_ref())))
    }
}

/// Finds or publishes releases on one function.
pub(super) struct Publisher<'a> {
    pub client: &'a Client,
    pub function: &'a str,
}

impl Publisher<'_> {
    /// The version already published for `release`, without publishing.
    /// `None` when there is none yet.
    pub async fn find(
        &self,
        release: &LambdaRelease,
        request_ids: &mut Vec<String>,
    ) -> Result<Option<String>, AdapterError> {
        let expected_sha = match &release.code {
            Code::Published(version) => return Ok(Some(version.clone())),
            Code::Zip(path) => Some(LambdaRelease::read_zip(path)?.1),
            Code::S3 { .. } => None,
        };
        let prefix = release.identity("");
        let mut marker: Option<String> = None;
        let mut best: Option<u64> = None;
        loop {
            let out = self
                .client
                .list_versions_by_function()
                .function_name(self.function)
                .set_marker(marker.clone())
                .send()
                .await
                .map_err(|e| {
                    map_sdk_error(
                        e,
                        &format!("lambda:ListVersionsByFunction {}", self.function),
                    )
                })?;
            request_ids.extend(out.request_id().map(str::to_owned));
            for version in out.versions() {
                let (Some(number), Some(description), Some(sha)) = (
                    version.version(),
                    version.description(),
                    version.code_sha256(),
                ) else {
                    continue;
                };
                let ours = description.strip_prefix(&prefix) == Some(sha)
                    && expected_sha
                        .as_deref()
                        .is_none_or(|expected| expected == sha);
                if ours && let Ok(n) = number.parse::<u64>() {
                    best = best.max(Some(n));
                }
            }
            match out.next_marker() {
                Some(next) if !next.is_empty() => marker = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(best.map(|n| n.to_string()))
    }

    /// The release's published version: found, or published now.
    pub async fn publish(
        &self,
        release: &LambdaRelease,
        request_ids: &mut Vec<String>,
    ) -> Result<String, AdapterError> {
        if let Some(found) = self.find(release, request_ids).await? {
            return Ok(found);
        }
        // The code's source in every message: a missing or unreadable
        // object is the usual cause of a failed update, and the fix.
        let what = format!(
            "lambda:UpdateFunctionCode {} from {}",
            self.function,
            release.source()
        );
        let update = self
            .client
            .update_function_code()
            .function_name(self.function);
        let (update, local_sha) = match &release.code {
            Code::Published(version) => return Ok(version.clone()),
            Code::S3 {
                bucket,
                key,
                object_version,
            } => (
                update
                    .s3_bucket(bucket)
                    .s3_key(key)
                    .set_s3_object_version(object_version.clone()),
                None,
            ),
            Code::Zip(path) => {
                let (bytes, sha) = LambdaRelease::read_zip(path)?;
                (update.zip_file(Blob::new(bytes)), Some(sha))
            }
        };
        let updated = update.send().await.map_err(|e| map_sdk_error(e, &what))?;
        request_ids.extend(updated.request_id().map(str::to_owned));
        // An empty CodeSha256 is no code at all: moto answers a missing S3
        // key that way (AWS refuses the update), and publishing it would
        // release an empty function.
        let sha = updated
            .code_sha256()
            .filter(|sha| !sha.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| AdapterError::Rejected {
                message: format!(
                    "{what}: Lambda reports no code for the release (no CodeSha256); \
                     check that it exists, is a zip, and the deploying identity can read it"
                ),
                request_id: updated.request_id().map(str::to_owned),
            })?;
        if let Some(local) = &local_sha
            && *local != sha
        {
            return Err(AdapterError::Conflict {
                message: format!(
                    "{what}: Lambda stored code with SHA-256 {sha}, not the zip's {local}"
                ),
                request_id: updated.request_id().map(str::to_owned),
            });
        }
        let mut revision = updated.revision_id().map(str::to_owned);
        if updated.last_update_status() == Some(&LastUpdateStatus::InProgress) {
            revision = self.await_update(request_ids).await?;
        }
        let what = format!("lambda:PublishVersion {}", self.function);
        let published = self
            .client
            .publish_version()
            .function_name(self.function)
            .code_sha256(&sha)
            .description(release.identity(&sha))
            .set_revision_id(revision)
            .send()
            .await
            .map_err(|e| map_sdk_error(e, &what))?;
        request_ids.extend(published.request_id().map(str::to_owned));
        let request_id = published.request_id().map(str::to_owned);
        // AWS refuses a stale CodeSha256; moto does not, so check the
        // version holds the code we uploaded.
        if published.code_sha256() != Some(sha.as_str()) {
            return Err(AdapterError::Conflict {
                message: format!(
                    "{what}: another writer changed the function's code between the update and the publish \
                     (published SHA-256 {:?}, uploaded {sha})",
                    published.code_sha256()
                ),
                request_id,
            });
        }
        published
            .version()
            .filter(|v| is_version_number(v))
            .map(str::to_owned)
            .ok_or_else(|| AdapterError::Rejected {
                message: format!(
                    "{what}: the response names no version ({:?})",
                    published.version()
                ),
                request_id,
            })
    }

    /// Waits while the code update is `InProgress` (AWS refuses to publish
    /// meanwhile); returns the function's revision once it is done.
    async fn await_update(
        &self,
        request_ids: &mut Vec<String>,
    ) -> Result<Option<String>, AdapterError> {
        let what = format!("lambda:GetFunctionConfiguration {}", self.function);
        let started = Instant::now();
        let sleep = self.client.config().sleep_impl();
        loop {
            let out = self
                .client
                .get_function_configuration()
                .function_name(self.function)
                .send()
                .await
                .map_err(|e| map_sdk_error(e, &what))?;
            request_ids.extend(out.request_id().map(str::to_owned));
            match out.last_update_status() {
                Some(LastUpdateStatus::InProgress) => {}
                Some(LastUpdateStatus::Failed) => {
                    return Err(AdapterError::Rejected {
                        message: format!(
                            "{what}: the code update failed: {}",
                            out.last_update_status_reason().unwrap_or("no reason given")
                        ),
                        request_id: out.request_id().map(str::to_owned),
                    });
                }
                _ => return Ok(out.revision_id().map(str::to_owned)),
            }
            let (Some(sleep), true) = (&sleep, started.elapsed() < UPDATE_WAIT) else {
                return Err(AdapterError::Timeout {
                    message: format!(
                        "{what}: the code update is still in progress after {} s",
                        started.elapsed().as_secs()
                    ),
                });
            };
            sleep.sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Standard base64 with padding (how Lambda writes `CodeSha256`).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected, "{input:?}");
        }
    }

    #[test]
    fn a_bare_number_label_must_be_the_published_version() {
        assert!(LambdaRelease::published("2", "2").is_ok());
        assert!(LambdaRelease::published("v2", "7").is_ok());
        let error = LambdaRelease::published("3", "7").unwrap_err();
        assert!(error.to_string().contains("bare number"), "{error}");
        assert!(LambdaRelease::zip("3", "code.zip").is_err());
        assert!(LambdaRelease::zip("3.0.0", "code.zip").is_ok());
        assert!(LambdaRelease::published("v2", "latest").is_err());
    }

    #[test]
    fn a_description_over_lambdas_limit_is_refused_up_front() {
        let error = LambdaRelease::s3("v1", "bucket", "k".repeat(300), None).unwrap_err();
        assert!(error.to_string().contains("256"), "{error}");
    }

    #[test]
    fn the_identity_names_label_source_and_code() {
        let release = LambdaRelease::s3("2.7.0", "b", "k.zip", Some("x1".into())).unwrap();
        assert_eq!(
            release.identity("abc="),
            "deployctl release 2.7.0; s3://b/k.zip?versionId=x1; sha256 abc="
        );
    }
}
