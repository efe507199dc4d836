//! The team's MFA enrollments on S3, shared by every deploy PC: one
//! object per person under `PREFIX/mfa/users/`, the store's key check and
//! the KMS-wrapped master key beside them. An enrollment's secret is
//! sealed (AES-256-GCM under the master key, which only KMS unwraps), so
//! the objects carry nothing secret in clear.
//!
//! Each check of a code is one conditional write of the person's object
//! (`If-Match` on the ETag just read, `If-None-Match: *` for a first
//! write): when two PCs check the same code in the same second, one write
//! wins and the other PC reads again and sees the step spent. Each write
//! adds a fresh change ID to the record's last few, so a write whose
//! answer was lost (retried, then refused with 412 because it had landed,
//! perhaps already followed by another PC's write) is recognised on the
//! re-read as this PC's own, and not mistaken for a replay.

use std::path::PathBuf;
use std::sync::Arc;

use deployctl_aws::bridge::Bridge;
use deployctl_aws::s3_location::S3Location;
use deployctl_policy::mfa::{EnrollmentRecord, Enrollments, MfaError, Update, WrappedKeyPlace};
use serde::{Deserialize, Serialize};

use crate::objects::{Condition, Objects, Written, hex};

/// Reads and conditional writes of one person's record before giving up
/// (each lost race means another PC's check won).
const ATTEMPTS: usize = 8;

/// Change IDs a record remembers: more than the writes other PCs can make
/// between one PC's lost answer and its re-read.
const RECENT_CHANGES: usize = 16;

/// One person's object. `removed` is a tombstone: S3 has no conditional
/// delete on every store, so a removal is a conditional write too.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserObject {
    user: String,
    /// The IDs of the last writes, oldest first.
    changes: Vec<String>,
    #[serde(default)]
    removed: bool,
    #[serde(default)]
    sealed_secret: String,
    #[serde(default)]
    confirmed: bool,
    #[serde(default)]
    enrolled_at: i64,
    confirmed_at: Option<i64>,
    last_step: Option<i64>,
    last_used_at: Option<i64>,
    #[serde(default)]
    failures: u32,
    locked_until: Option<i64>,
}

impl UserObject {
    fn record(&self) -> Result<Option<EnrollmentRecord>, MfaError> {
        if self.removed {
            return Ok(None);
        }
        Ok(Some(EnrollmentRecord {
            sealed_secret: unhex(&self.sealed_secret).ok_or_else(|| {
                MfaError::Corrupt(format!("the sealed secret of `{}` is not hex", self.user))
            })?,
            confirmed: self.confirmed,
            enrolled_at: self.enrolled_at,
            confirmed_at: self.confirmed_at,
            last_step: self.last_step,
            last_used_at: self.last_used_at,
            failures: self.failures,
            locked_until: self.locked_until,
        }))
    }

    fn new(user: &str, changes: Vec<String>, record: Option<&EnrollmentRecord>) -> UserObject {
        let removed = UserObject {
            user: user.to_owned(),
            changes,
            removed: true,
            sealed_secret: String::new(),
            confirmed: false,
            enrolled_at: 0,
            confirmed_at: None,
            last_step: None,
            last_used_at: None,
            failures: 0,
            locked_until: None,
        };
        match record {
            None => removed,
            Some(record) => UserObject {
                removed: false,
                sealed_secret: hex(&record.sealed_secret),
                confirmed: record.confirmed,
                enrolled_at: record.enrolled_at,
                confirmed_at: record.confirmed_at,
                last_step: record.last_step,
                last_used_at: record.last_used_at,
                failures: record.failures,
                locked_until: record.locked_until,
                ..removed
            },
        }
    }
}

/// A value written once (the key check, the wrapped key).
#[derive(Debug, Serialize, Deserialize)]
struct Once {
    value: String,
}

/// The team's MFA enrollments in `location`'s `mfa/` folder.
pub struct S3Enrollments {
    objects: Arc<Objects>,
    bridge: Bridge,
}

impl S3Enrollments {
    pub fn new(client: aws_sdk_s3::Client, location: S3Location) -> std::io::Result<S3Enrollments> {
        Ok(S3Enrollments {
            objects: Arc::new(Objects { client, location }),
            bridge: Bridge::new()?,
        })
    }

    /// Where the team's KMS-wrapped MFA key is kept (`mfa/key.kms.json`),
    /// so every PC unwraps the same key.
    pub fn wrapped_key(&self) -> std::io::Result<S3WrappedKey> {
        Ok(S3WrappedKey {
            objects: Arc::clone(&self.objects),
            bridge: Bridge::new()?,
        })
    }

    fn user_key(&self, user: &str) -> String {
        self.objects.location.key(&format!("mfa/users/{user}.json"))
    }

    fn read_object(&self, user: &str) -> Result<Option<(UserObject, String)>, MfaError> {
        let (objects, key) = (Arc::clone(&self.objects), self.user_key(user));
        let read = self
            .bridge
            .run(async move { objects.get_json::<UserObject>(&key).await })
            .map_err(|stopped| MfaError::Backend(stopped.to_string()))?
            .map_err(|error| MfaError::Backend(error.to_string()))?;
        if let Some((object, _)) = &read
            && object.user != user
        {
            return Err(MfaError::Corrupt(format!(
                "{} names `{}`, not `{user}`",
                self.objects.location.url(&self.user_key(user)),
                object.user
            )));
        }
        Ok(read)
    }

    fn write_object(&self, object: UserObject, etag: Option<String>) -> Result<Written, MfaError> {
        let (objects, key) = (Arc::clone(&self.objects), self.user_key(&object.user));
        self.bridge
            .run(async move {
                let condition = match &etag {
                    Some(etag) => Condition::Unchanged(etag),
                    None => Condition::Absent,
                };
                objects.put_json(&key, &object, condition).await
            })
            .map_err(|stopped| MfaError::Backend(stopped.to_string()))?
            .map_err(|error| MfaError::Backend(error.to_string()))
    }
}

impl Enrollments for S3Enrollments {
    fn place(&self) -> String {
        self.objects.location.url("mfa/")
    }

    fn change(
        &self,
        user: &str,
        decide: &mut dyn FnMut(Option<&EnrollmentRecord>) -> Update,
    ) -> Result<(), MfaError> {
        // The change ID of a write we made whose answer we did not get.
        let mut pending: Option<String> = None;
        for _ in 0..ATTEMPTS {
            let read = self.read_object(user)?;
            if let (Some(ours), Some((object, _))) = (&pending, &read)
                && object.changes.contains(ours)
            {
                // Our write landed; the answer decided for it stands.
                return Ok(());
            }
            let (record, mut changes, etag) = match read {
                Some((object, etag)) => (object.record()?, object.changes, Some(etag)),
                None => (None, Vec::new(), None),
            };
            let ours = change_id()?;
            changes.push(ours.clone());
            let excess = changes.len().saturating_sub(RECENT_CHANGES);
            changes.drain(..excess);
            let written = match decide(record.as_ref()) {
                Update::Keep => return Ok(()),
                Update::Put(record) => UserObject::new(user, changes, Some(&record)),
                Update::Remove if etag.is_none() => return Ok(()),
                Update::Remove => UserObject::new(user, changes, None),
            };
            match self.write_object(written, etag)? {
                Written::Done(_) => return Ok(()),
                Written::Raced => pending = Some(ours),
            }
        }
        Err(MfaError::Backend(format!(
            "the MFA record of `{user}` kept changing under this PC ({ATTEMPTS} attempts); try again"
        )))
    }

    fn read(&self, user: &str) -> Result<Option<EnrollmentRecord>, MfaError> {
        match self.read_object(user)? {
            Some((object, _)) => object.record(),
            None => Ok(None),
        }
    }

    fn users(&self) -> Result<Vec<String>, MfaError> {
        let objects = Arc::clone(&self.objects);
        let folder = self.objects.location.key("mfa/users/");
        let keys = self
            .bridge
            .run(async move { objects.list("mfa/users/").await })
            .map_err(|stopped| MfaError::Backend(stopped.to_string()))?
            .map_err(|error| MfaError::Backend(error.to_string()))?;
        let mut users = Vec::new();
        for key in keys {
            let Some(user) = key
                .strip_prefix(&folder)
                .and_then(|name| name.strip_suffix(".json"))
            else {
                continue;
            };
            // Removed enrollments stay as tombstones; they are nobody's.
            if self.read(user)?.is_some() {
                users.push(user.to_owned());
            }
        }
        users.sort();
        Ok(users)
    }

    fn key_check(&self, sealed: &[u8]) -> Result<Vec<u8>, MfaError> {
        let key = self.objects.location.key("mfa/key-check.json");
        write_once(&self.objects, &self.bridge, key, sealed).map_err(MfaError::Backend)
    }
}

/// The team's KMS-wrapped MFA key in the backend.
pub struct S3WrappedKey {
    objects: Arc<Objects>,
    bridge: Bridge,
}

impl S3WrappedKey {
    fn key(&self) -> String {
        self.objects.location.key("mfa/key.kms.json")
    }
}

impl WrappedKeyPlace for S3WrappedKey {
    fn place(&self) -> PathBuf {
        PathBuf::from(self.objects.location.url("mfa/key.kms.json"))
    }

    fn read(&self) -> std::io::Result<Option<Vec<u8>>> {
        let (objects, key) = (Arc::clone(&self.objects), self.key());
        let read = self
            .bridge
            .run(async move { objects.get_json::<Once>(&key).await })
            .map_err(std::io::Error::other)?
            .map_err(std::io::Error::other)?;
        read.map(|(once, _)| {
            unhex(&once.value).ok_or_else(|| std::io::Error::other("the wrapped key is not hex"))
        })
        .transpose()
    }

    fn create(&self, wrapped: &[u8]) -> std::io::Result<Vec<u8>> {
        write_once(&self.objects, &self.bridge, self.key(), wrapped).map_err(std::io::Error::other)
    }
}

/// Writes `value` at `key` unless something is there, and returns what
/// stands: the first writer wins.
fn write_once(
    objects: &Arc<Objects>,
    bridge: &Bridge,
    key: String,
    value: &[u8],
) -> Result<Vec<u8>, String> {
    let objects = Arc::clone(objects);
    let once = Once { value: hex(value) };
    let standing = bridge
        .run(async move {
            for _ in 0..ATTEMPTS {
                if let Some((standing, _)) = objects.get_json::<Once>(&key).await? {
                    return Ok(Some(standing.value));
                }
                if let Written::Done(_) = objects.put_json(&key, &once, Condition::Absent).await? {
                    return Ok(Some(once.value));
                }
            }
            Ok::<_, deployctl_adapter::team::TeamLockError>(None)
        })
        .map_err(|stopped| stopped.to_string())?
        .map_err(|error| error.to_string())?
        .ok_or_else(|| "the value kept changing; try again".to_owned())?;
    unhex(&standing).ok_or_else(|| "the stored value is not hex".to_owned())
}

fn change_id() -> Result<String, MfaError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| MfaError::Backend("the system random number generator failed".into()))?;
    Ok(hex(&bytes))
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}
