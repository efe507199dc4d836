//! The backend's JSON objects: read with their ETag, written only
//! conditionally, each call retried while it fails transiently (the SDK
//! makes one attempt per call).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;
use deployctl_adapter::AdapterError;
use deployctl_adapter::team::TeamLockError;
use deployctl_aws::s3_location::S3Location;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Attempts of one call that failed transiently, before the backend is
/// reported unavailable (50 ms doubling: about 3 s in all).
const TRANSIENT_RETRIES: u32 = 6;

/// How a write is conditioned.
#[derive(Clone, Copy)]
pub(crate) enum Condition<'a> {
    /// Nobody ever wrote this key (`If-None-Match: *`).
    Absent,
    /// Nobody changed it since we read this ETag (`If-Match`).
    Unchanged(&'a str),
}

/// The outcome of a conditional write.
pub(crate) enum Written {
    /// Written; the object's new ETag, when S3 said it.
    Done(Option<String>),
    /// Someone else wrote first (412, or S3's 409 for concurrent
    /// conditional writes): read again.
    Raced,
}

/// The bucket and prefix of one backend, and the client that reaches it.
pub(crate) struct Objects {
    pub(crate) client: Client,
    pub(crate) location: S3Location,
}

impl Objects {
    /// One object decoded and its ETag; `None` if there is none.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, String)>, TeamLockError> {
        let Some((bytes, etag)) = self.get_bytes(key).await? else {
            return Ok(None);
        };
        let value = serde_json::from_slice(&bytes).map_err(|e| {
            TeamLockError::Backend(format!(
                "{} was not written by deployctl ({e}); nothing is assumed from it",
                self.location.url(key)
            ))
        })?;
        Ok(Some((value, etag)))
    }

    /// One object's bytes and its ETag; `None` if there is none.
    pub(crate) async fn get_bytes(
        &self,
        key: &str,
    ) -> Result<Option<(Vec<u8>, String)>, TeamLockError> {
        let url = self.location.url(key);
        let mut attempt = 0;
        let object = loop {
            let got = self
                .client
                .get_object()
                .bucket(&self.location.bucket)
                .key(key)
                .send()
                .await;
            match got {
                Ok(object) => break object,
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(GetObjectError::is_no_such_key) =>
                {
                    return Ok(None);
                }
                Err(error) => {
                    let failure = deployctl_aws::map_sdk_error(error, &format!("GetObject {url}"));
                    backoff(&mut attempt, failure).await?;
                }
            }
        };
        let etag = object
            .e_tag()
            .map(str::to_owned)
            .ok_or_else(|| TeamLockError::Backend(format!("{url}: no ETag")))?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| TeamLockError::Backend(format!("reading {url}: {e}")))?
            .into_bytes();
        Ok(Some((bytes.to_vec(), etag)))
    }

    /// Writes `value` at `key` if `condition` still holds.
    pub(crate) async fn put_json<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        condition: Condition<'_>,
    ) -> Result<Written, TeamLockError> {
        let body = serde_json::to_vec(value)
            .map_err(|e| TeamLockError::Backend(format!("encoding {key}: {e}")))?;
        self.put_bytes(key, body, "application/json", condition)
            .await
    }

    /// Writes `body` at `key` if `condition` still holds.
    pub(crate) async fn put_bytes(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        condition: Condition<'_>,
    ) -> Result<Written, TeamLockError> {
        let mut attempt = 0;
        loop {
            let request = self
                .client
                .put_object()
                .bucket(&self.location.bucket)
                .key(key)
                .content_type(content_type)
                .body(ByteStream::from(body.clone()));
            let request = match condition {
                Condition::Absent => request.if_none_match("*"),
                Condition::Unchanged(etag) => request.if_match(etag),
            };
            match request.send().await {
                Ok(put) => return Ok(Written::Done(put.e_tag().map(str::to_owned))),
                Err(error) => {
                    // 412: the condition failed; S3's 409 for two
                    // conditional writes at once. Either way, read again.
                    // A retried write whose first attempt landed meets its
                    // own change here, and the re-read finds it.
                    let status = error.raw_response().map(|r| r.status().as_u16());
                    if matches!(status, Some(412 | 409)) {
                        return Ok(Written::Raced);
                    }
                    let what = format!("PutObject {}", self.location.url(key));
                    backoff(&mut attempt, deployctl_aws::map_sdk_error(error, &what)).await?;
                }
            }
        }
    }

    /// The keys under `folder` (relative to the prefix).
    pub(crate) async fn list(&self, folder: &str) -> Result<Vec<String>, TeamLockError> {
        let prefix = self.location.key(folder);
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.location.bucket)
            .prefix(&prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                backend(e, &format!("ListObjectsV2 {}", self.location.url(&prefix)))
            })?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .map(str::to_owned),
            );
        }
        Ok(keys)
    }
}

/// Bytes as lowercase hex (digests in object names, sealed values in JSON).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn backend<E>(error: aws_sdk_s3::error::SdkError<E, HttpResponse>, what: &str) -> TeamLockError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    TeamLockError::Backend(deployctl_aws::map_sdk_error(error, what).to_string())
}

/// Waits before the next attempt of a call that failed transiently
/// (throttled, 5xx, a reset or a timeout); any other failure, or too
/// many, is the backend's error.
async fn backoff(attempt: &mut u32, failure: AdapterError) -> Result<(), TeamLockError> {
    let transient = matches!(
        failure,
        AdapterError::Throttled { .. }
            | AdapterError::Unavailable { .. }
            | AdapterError::Timeout { .. }
    );
    if !transient || *attempt >= TRANSIENT_RETRIES {
        return Err(TeamLockError::Backend(failure.to_string()));
    }
    *attempt += 1;
    let delay = match &failure {
        AdapterError::Throttled {
            retry_after: Some(after),
            ..
        } => *after,
        _ => Duration::from_millis(50 << (*attempt).min(5)),
    };
    tokio::time::sleep(delay).await;
    Ok(())
}
