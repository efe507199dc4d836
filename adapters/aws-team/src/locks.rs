//! Team locks as S3 objects, one per target, changed only by conditional
//! writes.
//!
//! Every decision is made on what was just read, and every write is
//! conditional on that read (its ETag, or the object's absence), so a
//! write that loses a race fails with 412 and the loop reads again. That
//! also makes lost answers safe: a write that reached S3 but whose answer
//! was lost is retried by the SDK, meets its own ETag change (412), and
//! the re-read finds the lock already this run's.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;
use deployctl_adapter::team::{BrokenLock, LockOwner, LockRecord, TeamLockError, TeamLocks};
use deployctl_adapter::{AdapterError, BoxFuture};
use deployctl_aws_audit::S3Location;

/// A lease: long enough that a PC under load renews well before it ends
/// (every third of it), short enough that a dead PC's lock is reported
/// expired within a couple of minutes.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(120);

/// Reads and conditional writes per key before giving up on a key that
/// keeps changing under us (each lost race means another writer won).
const ATTEMPTS: usize = 8;

/// Attempts of one call that failed transiently, before the backend is
/// reported unavailable (50 ms doubling: about 3 s in all).
const TRANSIENT_RETRIES: u32 = 6;

/// Team locks in `location`'s `locks/` folder.
pub struct S3Locks {
    client: Client,
    location: S3Location,
    lease: Duration,
}

impl std::fmt::Debug for S3Locks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Locks")
            .field("location", &self.location.to_string())
            .field("lease", &self.lease)
            .finish()
    }
}

/// How a write is conditioned.
enum Condition<'a> {
    /// Nobody ever wrote this key (`If-None-Match: *`).
    Absent,
    /// Nobody changed it since we read this ETag (`If-Match`).
    Unchanged(&'a str),
}

/// The outcome of a conditional write.
enum Written {
    Done,
    /// Someone else wrote first (412, or S3's 409 for concurrent
    /// conditional writes): read again.
    Raced,
}

impl S3Locks {
    pub fn new(client: Client, location: S3Location, lease: Duration) -> S3Locks {
        S3Locks {
            client,
            location,
            lease,
        }
    }

    /// The object of `target`'s lock: identities hold `:` and `/`, so the
    /// name is their digest and the identity is inside.
    fn object_key(&self, target: &str) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, target.as_bytes());
        let hex: String = digest
            .as_ref()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        self.location.key(&format!("locks/{hex}.json"))
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }

    async fn read(&self, target: &str) -> Result<Option<(LockRecord, String)>, TeamLockError> {
        let key = self.object_key(target);
        let read = self.read_object(&key).await?;
        if let Some((record, _)) = &read
            && record.target != target
        {
            return Err(TeamLockError::Backend(format!(
                "{} names target {}, not {target}",
                self.location.url(&key),
                record.target
            )));
        }
        Ok(read)
    }

    /// One lock object and its ETag; `None` if there is none.
    async fn read_object(&self, key: &str) -> Result<Option<(LockRecord, String)>, TeamLockError> {
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
        let record: LockRecord = serde_json::from_slice(&bytes).map_err(|e| {
            TeamLockError::Backend(format!(
                "{url} is not a deployctl lock ({e}); nothing is assumed about its target"
            ))
        })?;
        Ok(Some((record, etag)))
    }

    async fn write(
        &self,
        record: &LockRecord,
        condition: Condition<'_>,
    ) -> Result<Written, TeamLockError> {
        let key = self.object_key(&record.target);
        let body = serde_json::to_vec(record)
            .map_err(|e| TeamLockError::Backend(format!("encoding a lock: {e}")))?;
        let mut attempt = 0;
        loop {
            let request = self
                .client
                .put_object()
                .bucket(&self.location.bucket)
                .key(&key)
                .content_type("application/json")
                .body(ByteStream::from(body.clone()));
            let request = match condition {
                Condition::Absent => request.if_none_match("*"),
                Condition::Unchanged(etag) => request.if_match(etag),
            };
            match request.send().await {
                Ok(_) => return Ok(Written::Done),
                Err(error) => {
                    // 412: the condition failed; S3's 409 for two
                    // conditional writes at once. Either way, read again.
                    // A retried write whose first attempt landed meets its
                    // own change here, and the re-read finds it.
                    let status = error.raw_response().map(|r| r.status().as_u16());
                    if matches!(status, Some(412 | 409)) {
                        return Ok(Written::Raced);
                    }
                    let what = format!("PutObject {}", self.location.url(&key));
                    backoff(&mut attempt, deployctl_aws::map_sdk_error(error, &what)).await?;
                }
            }
        }
    }

    async fn take(&self, target: &str, owner: &LockOwner) -> Result<(), TeamLockError> {
        for _ in 0..ATTEMPTS {
            let now = now_ms();
            let fresh = LockRecord {
                target: target.to_owned(),
                owner: owner.clone(),
                acquired_at: now,
                renewed_at: now,
                lease_until: now + self.lease_ms(),
                released: false,
                broken: None,
            };
            let written = match self.read(target).await? {
                None => self.write(&fresh, Condition::Absent).await?,
                Some((held, etag)) if held.released => {
                    self.write(&fresh, Condition::Unchanged(&etag)).await?
                }
                // A resumed run takes its own lock again, even after its
                // lease ran out while it was down: nobody broke it.
                Some((held, etag)) if held.owner.run == owner.run => {
                    let renewed = LockRecord {
                        acquired_at: held.acquired_at,
                        ..fresh
                    };
                    self.write(&renewed, Condition::Unchanged(&etag)).await?
                }
                Some((held, _)) if held.expired(now) => {
                    return Err(TeamLockError::Expired {
                        target: target.to_owned(),
                        expired_for_s: (now - held.lease_until) / 1000,
                        owner: held.owner,
                    });
                }
                Some((held, _)) => {
                    return Err(TeamLockError::Held {
                        target: target.to_owned(),
                        owner: held.owner,
                        lease_until_ms: held.lease_until,
                    });
                }
            };
            if let Written::Done = written {
                return Ok(());
            }
        }
        Err(contended(target))
    }

    async fn renew_one(&self, target: &str, run: &str) -> Result<(), TeamLockError> {
        for _ in 0..ATTEMPTS {
            let now = now_ms();
            let Some((held, etag)) = self.read(target).await? else {
                return Err(lost(target, run, "the lock object is gone"));
            };
            if held.owner.run != run {
                return Err(lost(target, run, &format!("it is held by {}", held.owner)));
            }
            if held.released {
                let why = match &held.broken {
                    Some(broken) => format!("{} broke it: {}", broken.by, broken.reason),
                    None => "it was released".to_owned(),
                };
                return Err(lost(target, run, &why));
            }
            let renewed = LockRecord {
                renewed_at: now,
                lease_until: now + self.lease_ms(),
                ..held
            };
            if let Written::Done = self.write(&renewed, Condition::Unchanged(&etag)).await? {
                return Ok(());
            }
        }
        Err(contended(target))
    }

    async fn release_one(&self, target: &str, run: &str) -> Result<(), TeamLockError> {
        for _ in 0..ATTEMPTS {
            let Some((held, etag)) = self.read(target).await? else {
                return Ok(());
            };
            if held.owner.run != run || held.released {
                return Ok(());
            }
            let released = LockRecord {
                released: true,
                renewed_at: now_ms(),
                ..held
            };
            if let Written::Done = self.write(&released, Condition::Unchanged(&etag)).await? {
                return Ok(());
            }
        }
        Err(contended(target))
    }

    async fn break_one(
        &self,
        target: &str,
        by: &str,
        reason: &str,
    ) -> Result<LockRecord, TeamLockError> {
        let mut before = None;
        for _ in 0..ATTEMPTS {
            let now = now_ms();
            let Some((held, etag)) = self.read(target).await? else {
                return Err(TeamLockError::NotLocked {
                    target: target.to_owned(),
                });
            };
            if held.released {
                // Our own break whose answer was lost reads back as ours.
                let ours = held
                    .broken
                    .as_ref()
                    .is_some_and(|b| b.by == by && b.reason == reason);
                return match (ours, before) {
                    (true, Some(before)) => Ok(before),
                    _ => Err(TeamLockError::NotLocked {
                        target: target.to_owned(),
                    }),
                };
            }
            if !held.expired(now) {
                return Err(TeamLockError::Alive {
                    target: target.to_owned(),
                    owner: held.owner,
                    lease_until_ms: held.lease_until,
                });
            }
            let broken = LockRecord {
                released: true,
                broken: Some(BrokenLock {
                    by: by.to_owned(),
                    reason: reason.to_owned(),
                    at: now,
                }),
                ..held.clone()
            };
            before = Some(held);
            if let Written::Done = self.write(&broken, Condition::Unchanged(&etag)).await? {
                return Ok(before.unwrap_or(broken));
            }
        }
        Err(contended(target))
    }

    async fn list_all(&self) -> Result<Vec<LockRecord>, TeamLockError> {
        let prefix = self.location.key("locks/");
        let mut records = Vec::new();
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
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                if let Some((record, _)) = self.read_object(key).await? {
                    records.push(record);
                }
            }
        }
        records.sort_by(|a, b| a.target.cmp(&b.target));
        Ok(records)
    }
}

impl TeamLocks for S3Locks {
    fn lease(&self) -> Duration {
        self.lease
    }

    fn acquire<'a>(
        &'a self,
        keys: &'a [String],
        owner: &'a LockOwner,
    ) -> BoxFuture<'a, Result<(), TeamLockError>> {
        Box::pin(async move {
            let mut taken: Vec<String> = Vec::new();
            for key in keys {
                if let Err(error) = self.take(key, owner).await {
                    // All or none: what this call took is given back. If
                    // that fails too, the leases run out and an operator
                    // sees them as this run's in `lock list`.
                    let _ = self.release(&taken, &owner.run).await;
                    return Err(error);
                }
                taken.push(key.clone());
            }
            Ok(())
        })
    }

    fn renew<'a>(
        &'a self,
        keys: &'a [String],
        run: &'a str,
    ) -> BoxFuture<'a, Result<(), TeamLockError>> {
        Box::pin(async move {
            for key in keys {
                self.renew_one(key, run).await?;
            }
            Ok(())
        })
    }

    fn release<'a>(
        &'a self,
        keys: &'a [String],
        run: &'a str,
    ) -> BoxFuture<'a, Result<(), TeamLockError>> {
        Box::pin(async move {
            let mut first_error = None;
            for key in keys {
                if let Err(error) = self.release_one(key, run).await {
                    first_error.get_or_insert(error);
                }
            }
            first_error.map_or(Ok(()), Err)
        })
    }

    fn inspect<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<LockRecord>, TeamLockError>> {
        Box::pin(async move { Ok(self.read(key).await?.map(|(record, _)| record)) })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<LockRecord>, TeamLockError>> {
        Box::pin(self.list_all())
    }

    fn break_lock<'a>(
        &'a self,
        key: &'a str,
        by: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<LockRecord, TeamLockError>> {
        Box::pin(self.break_one(key, by, reason))
    }
}

fn now_ms() -> i64 {
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
/// (throttled, 5xx, a reset or a timeout: the SDK makes one attempt per
/// call); any other failure, or too many, is the backend's error.
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

fn lost(target: &str, run: &str, detail: &str) -> TeamLockError {
    TeamLockError::Lost {
        target: target.to_owned(),
        run: run.to_owned(),
        detail: detail.to_owned(),
    }
}

fn contended(target: &str) -> TeamLockError {
    TeamLockError::Backend(format!(
        "the lock on {target} changed under every one of {ATTEMPTS} conditional writes; try again"
    ))
}
