//! Run records and stop requests as S3 objects: `runs/RUN.json`, written
//! by the PC that drives the run, and `runs/RUN.stop.json`, written once
//! by whoever asks it to stop.
//!
//! A record is replaced only conditionally on the ETag just read and only
//! by a higher revision, so a slow or retried write never puts an older
//! state back; a stop request is written with `If-None-Match: *`, so the
//! first one asked stands.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use aws_sdk_s3::Client;
use deployctl_adapter::BoxFuture;
use deployctl_adapter::team::{SharedDecision, SharedRun, StopAsked, TeamLockError, TeamRuns};
use deployctl_aws::s3_location::S3Location;

use crate::objects::{Condition, Objects, Written};

/// Conditional writes of one record before giving up (each lost race is
/// another writer: the driving PC's own retried write, or a stray one).
const ATTEMPTS: usize = 8;

/// Run records in `location`'s `runs/` folder.
pub struct S3Runs {
    objects: Objects,
    /// The revision and ETag of the record this client last wrote, per
    /// run: the driving PC writes its record every time it changes, and
    /// with the ETag it wrote it needs no read first. Anyone else's write
    /// since changes the ETag, and the write falls back to reading.
    written: Mutex<HashMap<String, (u64, String)>>,
    /// Decisions already read, by object key: each is written once and
    /// never changes, so a poll reads only the new ones.
    decisions_read: Mutex<HashMap<String, SharedDecision>>,
}

impl std::fmt::Debug for S3Runs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Runs")
            .field("location", &self.objects.location.to_string())
            .finish()
    }
}

/// Run IDs name objects: only the characters deployctl's IDs use.
fn checked(run: &str) -> Result<&str, String> {
    if !run.is_empty()
        && run.len() <= 128
        && run
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(run)
    } else {
        Err(format!("`{run}` is not a run ID"))
    }
}

/// Gate and user names become object names: the characters plans and
/// access files allow in them.
fn name_part(text: &str) -> Result<&str, String> {
    if !text.is_empty()
        && text.len() <= 128
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !text.starts_with('.')
    {
        Ok(text)
    } else {
        Err(format!("`{text}` cannot name a gate or an approver"))
    }
}

impl S3Runs {
    pub fn new(client: Client, location: S3Location) -> S3Runs {
        S3Runs {
            objects: Objects { client, location },
            written: Mutex::new(HashMap::new()),
            decisions_read: Mutex::new(HashMap::new()),
        }
    }

    fn decisions_folder(&self, run: &str) -> Result<String, String> {
        Ok(format!("decisions/{}/", checked(run)?))
    }

    async fn keep_decision(
        &self,
        run: &str,
        decision: &SharedDecision,
    ) -> Result<bool, TeamLockError> {
        let key = (|| {
            Ok::<_, String>(self.objects.location.key(&format!(
                "{}{}/{}.json",
                self.decisions_folder(run)?,
                name_part(&decision.gate)?,
                name_part(&decision.user)?
            )))
        })()
        .map_err(TeamLockError::Backend)?;
        match self
            .objects
            .put_json(&key, decision, Condition::Absent)
            .await?
        {
            Written::Done(_) => Ok(true),
            // A retried write whose first attempt landed is this decision.
            Written::Raced => Ok(self
                .objects
                .get_json::<SharedDecision>(&key)
                .await?
                .is_some_and(|(kept, _)| &kept == decision)),
        }
    }

    async fn all_decisions(&self, run: &str) -> Result<Vec<SharedDecision>, TeamLockError> {
        let folder = self.decisions_folder(run).map_err(TeamLockError::Backend)?;
        let mut decisions = Vec::new();
        for key in self.objects.list(&folder).await? {
            let known = lock(&self.decisions_read).get(&key).cloned();
            let decision = match known {
                Some(decision) => decision,
                None => {
                    let Some((decision, _)) = self.objects.get_json::<SharedDecision>(&key).await?
                    else {
                        continue;
                    };
                    lock(&self.decisions_read).insert(key, decision.clone());
                    decision
                }
            };
            decisions.push(decision);
        }
        Ok(decisions)
    }

    fn record_key(&self, run: &str) -> Result<String, String> {
        Ok(self
            .objects
            .location
            .key(&format!("runs/{}.json", checked(run)?)))
    }

    fn stop_key(&self, run: &str) -> Result<String, String> {
        Ok(self
            .objects
            .location
            .key(&format!("runs/{}.stop.json", checked(run)?)))
    }

    async fn publish_record(&self, run: &SharedRun) -> Result<(), TeamLockError> {
        let key = self.record_key(&run.run).map_err(TeamLockError::Backend)?;
        let last = lock(&self.written).get(&run.run).cloned();
        if let Some((revision, etag)) = last {
            if revision >= run.revision {
                return Ok(());
            }
            let written = self
                .objects
                .put_json(&key, run, Condition::Unchanged(&etag))
                .await?;
            if self.wrote(run, written) {
                return Ok(());
            }
        }
        for _ in 0..ATTEMPTS {
            let written = match self.objects.get_json::<SharedRun>(&key).await? {
                None => self.objects.put_json(&key, run, Condition::Absent).await?,
                Some((kept, _)) if kept.revision >= run.revision => return Ok(()),
                Some((_, etag)) => {
                    self.objects
                        .put_json(&key, run, Condition::Unchanged(&etag))
                        .await?
                }
            };
            if self.wrote(run, written) {
                return Ok(());
            }
        }
        Err(TeamLockError::Backend(format!(
            "the record of run {} changed under every one of {ATTEMPTS} writes",
            run.run
        )))
    }

    /// Whether `written` landed; remembers its ETag for the next write.
    fn wrote(&self, run: &SharedRun, written: Written) -> bool {
        let mut known = lock(&self.written);
        match written {
            Written::Done(Some(etag)) => {
                known.insert(run.run.clone(), (run.revision, etag));
                true
            }
            Written::Done(None) => {
                known.remove(&run.run);
                true
            }
            Written::Raced => {
                known.remove(&run.run);
                false
            }
        }
    }

    async fn all(&self) -> Result<Vec<SharedRun>, TeamLockError> {
        let mut runs = Vec::new();
        for key in self.objects.list("runs/").await? {
            if key.ends_with(".stop.json") {
                continue;
            }
            if let Some((run, _)) = self.objects.get_json::<SharedRun>(&key).await? {
                runs.push(run);
            }
        }
        runs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.run.cmp(&a.run)));
        Ok(runs)
    }

    async fn ask(&self, run: &str, asked: &StopAsked) -> Result<StopAsked, TeamLockError> {
        let key = self.stop_key(run).map_err(TeamLockError::Backend)?;
        for _ in 0..ATTEMPTS {
            if let Some((standing, _)) = self.objects.get_json::<StopAsked>(&key).await? {
                return Ok(standing);
            }
            if let Written::Done(_) = self
                .objects
                .put_json(&key, asked, Condition::Absent)
                .await?
            {
                return Ok(asked.clone());
            }
        }
        Err(TeamLockError::Backend(format!(
            "the stop request of run {run} could not be written"
        )))
    }
}

impl TeamRuns for S3Runs {
    fn publish<'a>(&'a self, run: &'a SharedRun) -> BoxFuture<'a, Result<(), TeamLockError>> {
        Box::pin(self.publish_record(run))
    }

    fn fetch<'a>(
        &'a self,
        run: &'a str,
    ) -> BoxFuture<'a, Result<Option<SharedRun>, TeamLockError>> {
        Box::pin(async move {
            let key = self.record_key(run).map_err(TeamLockError::Backend)?;
            Ok(self
                .objects
                .get_json::<SharedRun>(&key)
                .await?
                .map(|(record, _)| record))
        })
    }

    fn runs(&self) -> BoxFuture<'_, Result<Vec<SharedRun>, TeamLockError>> {
        Box::pin(self.all())
    }

    fn ask_stop<'a>(
        &'a self,
        run: &'a str,
        asked: &'a StopAsked,
    ) -> BoxFuture<'a, Result<StopAsked, TeamLockError>> {
        Box::pin(self.ask(run, asked))
    }

    fn decide<'a>(
        &'a self,
        run: &'a str,
        decision: &'a SharedDecision,
    ) -> BoxFuture<'a, Result<bool, TeamLockError>> {
        Box::pin(self.keep_decision(run, decision))
    }

    fn decisions<'a>(
        &'a self,
        run: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SharedDecision>, TeamLockError>> {
        Box::pin(self.all_decisions(run))
    }

    fn stop_asked<'a>(
        &'a self,
        run: &'a str,
    ) -> BoxFuture<'a, Result<Option<StopAsked>, TeamLockError>> {
        Box::pin(async move {
            let key = self.stop_key(run).map_err(TeamLockError::Backend)?;
            Ok(self
                .objects
                .get_json::<StopAsked>(&key)
                .await?
                .map(|(asked, _)| asked))
        })
    }
}

/// A cache's lock: a panic elsewhere leaves a cache that is still right
/// (entries are whole), so a poisoned one is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
