//! Team locks as S3 objects, one per target, changed only by conditional
//! writes.
//!
//! Every decision is made on what was just read, and every write is
//! conditional on that read (its ETag, or the object's absence), so a
//! write that loses a race fails with 412 and the loop reads again. That
//! also makes lost answers safe: a write that reached S3 but whose answer
//! was lost is retried by the SDK, meets its own ETag change (412), and
//! the re-read finds the lock already this run's.

use std::time::Duration;

use aws_sdk_s3::Client;
use deployctl_adapter::BoxFuture;
use deployctl_adapter::team::{BrokenLock, LockOwner, LockRecord, TeamLockError, TeamLocks};
use deployctl_aws::s3_location::S3Location;

use crate::objects::{Condition, Objects, Written, hex, now_ms};

/// A lease: long enough that a PC under load renews well before it ends
/// (every third of it), short enough that a dead PC's lock is reported
/// expired within a couple of minutes.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(120);

/// Reads and conditional writes per key before giving up on a key that
/// keeps changing under us (each lost race means another writer won).
const ATTEMPTS: usize = 8;

/// Team locks in `location`'s `locks/` folder.
pub struct S3Locks {
    objects: Objects,
    lease: Duration,
}

impl std::fmt::Debug for S3Locks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Locks")
            .field("location", &self.objects.location.to_string())
            .field("lease", &self.lease)
            .finish()
    }
}

/// What [`S3Locks::change`] does with a lock it read.
enum Step<T> {
    /// Write this (conditional on the read) and answer `T` once written.
    Write(LockRecord, T),
    /// Write nothing: this is the answer.
    Answer(Result<T, TeamLockError>),
}

impl S3Locks {
    pub fn new(client: Client, location: S3Location, lease: Duration) -> S3Locks {
        S3Locks {
            objects: Objects { client, location },
            lease,
        }
    }

    /// The object of `target`'s lock: identities hold `:` and `/`, so the
    /// name is their digest and the identity is inside.
    fn object_key(&self, target: &str) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, target.as_bytes());
        let name = hex(digest.as_ref());
        self.objects.location.key(&format!("locks/{name}.json"))
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }

    async fn read(&self, target: &str) -> Result<Option<(LockRecord, String)>, TeamLockError> {
        let key = self.object_key(target);
        let read = self.objects.get_json::<LockRecord>(&key).await?;
        if let Some((record, _)) = &read
            && record.target != target
        {
            return Err(TeamLockError::Backend(format!(
                "{} names target {}, not {target}",
                self.objects.location.url(&key),
                record.target
            )));
        }
        Ok(read)
    }

    async fn write(
        &self,
        record: &LockRecord,
        condition: Condition<'_>,
    ) -> Result<Written, TeamLockError> {
        self.objects
            .put_json(&self.object_key(&record.target), record, condition)
            .await
    }

    /// Reads `target`'s lock and lets `decide` say what to write (or what
    /// to answer), conditional on what was read; a lost race reads again.
    async fn change<T>(
        &self,
        target: &str,
        mut decide: impl FnMut(Option<LockRecord>, i64) -> Step<T>,
    ) -> Result<T, TeamLockError> {
        for _ in 0..ATTEMPTS {
            let (read, etag) = match self.read(target).await? {
                Some((record, etag)) => (Some(record), Some(etag)),
                None => (None, None),
            };
            let (record, answer) = match decide(read, now_ms()) {
                Step::Answer(answer) => return answer,
                Step::Write(record, answer) => (record, answer),
            };
            let condition = match &etag {
                Some(etag) => Condition::Unchanged(etag),
                None => Condition::Absent,
            };
            if let Written::Done(_) = self.write(&record, condition).await? {
                return Ok(answer);
            }
        }
        Err(contended(target))
    }

    async fn take(&self, target: &str, owner: &LockOwner) -> Result<(), TeamLockError> {
        let lease = self.lease_ms();
        self.change(target, |read, now| {
            let fresh = LockRecord {
                target: target.to_owned(),
                owner: owner.clone(),
                acquired_at: now,
                renewed_at: now,
                lease_until: now + lease,
                released: false,
                broken: None,
            };
            match read {
                None => Step::Write(fresh, ()),
                Some(held) if held.released => Step::Write(fresh, ()),
                // A resumed run takes its own lock again, even after its
                // lease ran out while it was down: nobody broke it. So does
                // another PC taking a dead PC's run over; never a live one.
                Some(held)
                    if held.owner.run == owner.run
                        && (held.owner.pc == owner.pc || held.expired(now)) =>
                {
                    let renewed = LockRecord {
                        acquired_at: held.acquired_at,
                        ..fresh
                    };
                    Step::Write(renewed, ())
                }
                Some(held) if held.expired(now) => Step::Answer(Err(TeamLockError::Expired {
                    target: target.to_owned(),
                    expired_for_s: (now - held.lease_until) / 1000,
                    owner: held.owner,
                })),
                Some(held) => Step::Answer(Err(TeamLockError::Held {
                    target: target.to_owned(),
                    owner: held.owner,
                    lease_until_ms: held.lease_until,
                })),
            }
        })
        .await
    }

    async fn renew_one(&self, target: &str, owner: &LockOwner) -> Result<(), TeamLockError> {
        let run = owner.run.as_str();
        let lease = self.lease_ms();
        self.change(target, |read, now| {
            let Some(held) = read else {
                return Step::Answer(Err(lost(target, run, "the lock object is gone")));
            };
            if held.owner.run != run || held.owner.pc != owner.pc {
                let why = format!("it is held by {}", held.owner);
                return Step::Answer(Err(lost(target, run, &why)));
            }
            if held.released {
                let why = match &held.broken {
                    Some(broken) => format!("{} broke it: {}", broken.by, broken.reason),
                    None => "it was released".to_owned(),
                };
                return Step::Answer(Err(lost(target, run, &why)));
            }
            let renewed = LockRecord {
                renewed_at: now,
                lease_until: now + lease,
                ..held
            };
            Step::Write(renewed, ())
        })
        .await
    }

    async fn release_one(&self, target: &str, owner: &LockOwner) -> Result<(), TeamLockError> {
        self.change(target, |read, now| match read {
            Some(held)
                if held.owner.run == owner.run && held.owner.pc == owner.pc && !held.released =>
            {
                let released = LockRecord {
                    released: true,
                    renewed_at: now,
                    ..held
                };
                Step::Write(released, ())
            }
            _ => Step::Answer(Ok(())),
        })
        .await
    }

    async fn break_one(
        &self,
        target: &str,
        by: &str,
        reason: &str,
    ) -> Result<LockRecord, TeamLockError> {
        let not_locked = || TeamLockError::NotLocked {
            target: target.to_owned(),
        };
        let mut before: Option<LockRecord> = None;
        self.change(target, |read, now| {
            let Some(held) = read else {
                return Step::Answer(Err(not_locked()));
            };
            if held.released {
                // Our own break whose answer was lost reads back as ours.
                let ours = held
                    .broken
                    .as_ref()
                    .is_some_and(|b| b.by == by && b.reason == reason);
                return Step::Answer(match (ours, before.clone()) {
                    (true, Some(before)) => Ok(before),
                    _ => Err(not_locked()),
                });
            }
            if !held.expired(now) {
                return Step::Answer(Err(TeamLockError::Alive {
                    target: target.to_owned(),
                    owner: held.owner,
                    lease_until_ms: held.lease_until,
                }));
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
            before = Some(held.clone());
            Step::Write(broken, held)
        })
        .await
    }

    async fn list_all(&self) -> Result<Vec<LockRecord>, TeamLockError> {
        let mut records = Vec::new();
        for key in self.objects.list("locks/").await? {
            if let Some((record, _)) = self.objects.get_json::<LockRecord>(&key).await? {
                records.push(record);
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
                    let _ = self.release(&taken, owner).await;
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
        owner: &'a LockOwner,
    ) -> BoxFuture<'a, Result<(), TeamLockError>> {
        Box::pin(async move {
            for key in keys {
                self.renew_one(key, owner).await?;
            }
            Ok(())
        })
    }

    fn release<'a>(
        &'a self,
        keys: &'a [String],
        owner: &'a LockOwner,
    ) -> BoxFuture<'a, Result<(), TeamLockError>> {
        Box::pin(async move {
            let mut first_error = None;
            for key in keys {
                if let Err(error) = self.release_one(key, owner).await {
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
