//! [`S3ObjectLockSink`]: the audit trail shipped to S3, each object locked
//! in COMPLIANCE mode (S2, R10).
//!
//! One object per batch and one per checkpoint, named as
//! [`crate::S3Location`] says. Every `PutObject`:
//! - sets Object Lock mode COMPLIANCE and a retain-until date the
//!   configured [`Retention`] ahead: nobody, the root account included, can
//!   delete or shorten it until then;
//! - is conditional (`If-None-Match: *`), so it never replaces what is
//!   there. A batch shipped again after a crash finds its own object (412):
//!   the same bytes, locked, count as shipped; other bytes are refused,
//!   because someone else wrote there or the local trail was rewritten.
//!
//! The bucket must have Object Lock enabled: checked when the sink is
//! opened (refused with the fix when it is not) and, when S3 could not be
//! reached then, before the first shipment.
//!
//! Failures that may pass (throttling, 5xx, network, timeouts) are
//! [`SinkError::Unavailable`]: the records stay queued in the outbox and
//! are shipped later. Everything else (access denied, no bucket) is
//! [`SinkError::Refused`]. Both name the call and its request IDs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{ObjectLockEnabled, ObjectLockMode};
use deployctl_audit::{AuditRecord, Checkpoint, Sink, SinkError};

use crate::client;
use crate::error::{AwsAuditError, CallFailure};
use crate::location::{S3Location, TrailKeys};
use crate::retention::Retention;
use deployctl_aws::bridge::Bridge;

/// Ships the audit trail to `s3://bucket/prefix` under Object Lock.
pub struct S3ObjectLockSink {
    client: Client,
    location: S3Location,
    retention: Retention,
    /// The bucket's Object Lock was confirmed.
    checked: AtomicBool,
    bridge: Bridge,
}

impl S3ObjectLockSink {
    /// A sink with a client from the standard AWS chain
    /// ([`deployctl_aws::config::load`]; path-style when an endpoint is
    /// configured). Refused when the bucket is missing, has no Object Lock
    /// or cannot be inspected; when S3 cannot be reached now, the check is
    /// made again before the first shipment.
    pub fn open(location: S3Location, retention: Retention) -> Result<Self, AwsAuditError> {
        let bridge = Bridge::new()?;
        let config = client::load(&bridge)?;
        if config.region().is_none() {
            return Err(AwsAuditError::Refused(format!(
                "no AWS region for the audit sink {location}: set AWS_REGION (or a profile's region) to the bucket's region"
            )));
        }
        let client = client::s3_client(&config);
        Self::start(bridge, client, location, retention)
    }

    /// [`S3ObjectLockSink::open`] with a given client (tests, or callers
    /// with their own configuration).
    pub fn with_client(
        client: Client,
        location: S3Location,
        retention: Retention,
    ) -> Result<Self, AwsAuditError> {
        Self::start(Bridge::new()?, client, location, retention)
    }

    fn start(
        bridge: Bridge,
        client: Client,
        location: S3Location,
        retention: Retention,
    ) -> Result<Self, AwsAuditError> {
        let sink = S3ObjectLockSink {
            client,
            location,
            retention,
            checked: AtomicBool::new(false),
            bridge,
        };
        match sink.preflight() {
            Ok(()) | Err(SinkError::Unavailable(_)) => Ok(sink),
            Err(error) => Err(AwsAuditError::Refused(format!(
                "cannot ship the audit trail to {}: {}",
                sink.location,
                unwrap_sink_error(error)
            ))),
        }
    }

    pub fn location(&self) -> &S3Location {
        &self.location
    }

    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Checks that the bucket has Object Lock enabled (once it has passed,
    /// it is not asked again).
    pub fn preflight(&self) -> Result<(), SinkError> {
        if self.checked.load(Ordering::Acquire) {
            return Ok(());
        }
        let (client, bucket) = (self.client.clone(), self.location.bucket.clone());
        self.bridge
            .run(async move { object_lock_enabled(&client, &bucket).await })
            .map_err(|stopped| SinkError::Unavailable(stopped.to_string()))??;
        self.checked.store(true, Ordering::Release);
        Ok(())
    }
}

fn unwrap_sink_error(error: SinkError) -> String {
    match error {
        SinkError::Refused(message) | SinkError::Unavailable(message) => message,
        other => other.to_string(),
    }
}

impl Sink for S3ObjectLockSink {
    fn describe(&self) -> String {
        self.location.to_string()
    }

    fn ship(
        &self,
        records: &[AuditRecord],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), SinkError> {
        self.preflight()?;
        let mut objects = Vec::with_capacity(2);
        if let (Some(first), Some(last)) = (records.first(), records.last()) {
            let mut body = Vec::with_capacity(records.len() * 512);
            for record in records {
                // The same serialization as the log's lines (and the
                // directory sink's): identical records, identical bytes.
                serde_json_line(record, &mut body)?;
            }
            objects.push(Object {
                key: self.location.records_key(first.seq, last.seq),
                body,
                content_type: "application/x-ndjson",
            });
        }
        if let Some(checkpoint) = checkpoint {
            let mut body = checkpoint.to_line();
            body.push(b'\n');
            objects.push(Object {
                key: self.location.checkpoint_key(checkpoint.seq),
                body,
                content_type: "application/json",
            });
        }
        let until = DateTime::from(self.retention.until(SystemTime::now()));
        let (client, location) = (self.client.clone(), self.location.clone());
        self.bridge
            .run(async move {
                for object in objects {
                    put_locked(&client, &location, object, until).await?;
                }
                Ok(())
            })
            .map_err(|stopped| SinkError::Unavailable(stopped.to_string()))?
    }
}

fn serde_json_line(record: &AuditRecord, body: &mut Vec<u8>) -> Result<(), SinkError> {
    serde_json::to_writer(&mut *body, record)
        .map_err(|e| SinkError::Refused(format!("cannot encode record {}: {e}", record.seq)))?;
    body.push(b'\n');
    Ok(())
}

struct Object {
    key: String,
    body: Vec<u8>,
    content_type: &'static str,
}

/// GetObjectLockConfiguration: Object Lock must be enabled on the bucket.
async fn object_lock_enabled(client: &Client, bucket: &str) -> Result<(), SinkError> {
    let what = format!("GetObjectLockConfiguration s3://{bucket}");
    match client
        .get_object_lock_configuration()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(output) => {
            let enabled = output
                .object_lock_configuration()
                .and_then(|c| c.object_lock_enabled())
                == Some(&ObjectLockEnabled::Enabled);
            if enabled {
                Ok(())
            } else {
                Err(SinkError::Refused(no_object_lock(bucket, &what)))
            }
        }
        Err(error) => {
            let failure = CallFailure::new(error, &what);
            match failure.code.as_deref() {
                Some("ObjectLockConfigurationNotFoundError") => {
                    Err(SinkError::Refused(no_object_lock(bucket, &failure.message)))
                }
                Some("NoSuchBucket") => Err(SinkError::Refused(format!(
                    "{}: the bucket does not exist; create it with Object Lock: \
                     `aws s3api create-bucket --bucket {bucket} --object-lock-enabled-for-bucket` \
                     (plus --create-bucket-configuration LocationConstraint=REGION outside us-east-1)",
                    failure.message
                ))),
                Some("AccessDenied") | Some("AllAccessDisabled") => {
                    Err(SinkError::Refused(format!(
                        "{}: the identity deployctl runs as needs s3:GetBucketObjectLockConfiguration, \
                         s3:PutObject, s3:PutObjectRetention and s3:GetObject on arn:aws:s3:::{bucket}/*",
                        failure.message
                    )))
                }
                _ => Err(failure.into_sink_error()),
            }
        }
    }
}

fn no_object_lock(bucket: &str, context: &str) -> String {
    format!(
        "{context}: bucket {bucket} does not have S3 Object Lock enabled, so shipped audit records \
         could be deleted or overwritten. Enable it (it cannot be turned off again): \
         `aws s3api put-bucket-versioning --bucket {bucket} --versioning-configuration Status=Enabled` \
         then `aws s3api put-object-lock-configuration --bucket {bucket} \
         --object-lock-configuration ObjectLockEnabled=Enabled`, or ship to a bucket created with \
         --object-lock-enabled-for-bucket"
    )
}

/// One conditional, locked PutObject; a 412 is checked against what is there.
async fn put_locked(
    client: &Client,
    location: &S3Location,
    object: Object,
    until: DateTime,
) -> Result<(), SinkError> {
    let url = location.url(&object.key);
    let result = client
        .put_object()
        .bucket(&location.bucket)
        .key(&object.key)
        .body(ByteStream::from(object.body.clone()))
        .content_type(object.content_type)
        .if_none_match("*")
        .object_lock_mode(ObjectLockMode::Compliance)
        .object_lock_retain_until_date(until)
        .send()
        .await;
    let error = match result {
        Ok(_) => return Ok(()),
        Err(error) => CallFailure::new(error, &format!("PutObject {url}")),
    };
    if error.status == Some(412) || error.code.as_deref() == Some("PreconditionFailed") {
        return already_shipped(client, location, &object).await;
    }
    Err(error.into_sink_error())
}

/// The object exists (a batch shipped again after a crash, or someone
/// else's): it counts as shipped only with the same bytes, locked.
async fn already_shipped(
    client: &Client,
    location: &S3Location,
    object: &Object,
) -> Result<(), SinkError> {
    let url = location.url(&object.key);
    let existing = client
        .get_object()
        .bucket(&location.bucket)
        .key(&object.key)
        .send()
        .await
        .map_err(|e| CallFailure::new(e, &format!("GetObject {url}")).into_sink_error())?;
    let mode = existing.object_lock_mode().cloned();
    let until = existing.object_lock_retain_until_date().copied();
    let bytes = existing
        .body
        .collect()
        .await
        .map_err(|e| SinkError::Unavailable(format!("GetObject {url}: reading the body: {e}")))?
        .into_bytes();
    if bytes.as_ref() != object.body.as_slice() {
        return Err(SinkError::Refused(format!(
            "{url} already exists with other content: another writer uses this prefix, or this \
             machine's trail was rewritten after it was shipped. Nothing was overwritten; \
             `deployctl audit verify --against {location}` shows which records differ"
        )));
    }
    let now = DateTime::from(SystemTime::now());
    let locked = mode == Some(ObjectLockMode::Compliance)
        && until.is_some_and(|until| until.secs() > now.secs());
    if !locked {
        return Err(SinkError::Refused(format!(
            "{url} holds this batch but is not locked in COMPLIANCE mode (mode {}, retain until {}): \
             deployctl did not write it and it can be deleted; move it away or ship to another prefix",
            mode.as_ref().map_or("none", |m| m.as_str()),
            until.map_or_else(|| "none".to_string(), |u| u.to_string())
        )));
    }
    Ok(())
}
