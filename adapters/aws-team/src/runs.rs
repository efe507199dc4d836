//! Run records and stop requests as S3 objects: `runs/RUN.json`, written
//! by the PC that drives the run, and `runs/RUN.stop.json`, written once
//! by whoever asks it to stop.
//!
//! A record is replaced only conditionally on the ETag just read and only
//! by a higher revision, so a slow or retried write never puts an older
//! state back; a stop request is written with `If-None-Match: *`, so the
//! first one asked stands.

use aws_sdk_s3::Client;
use deployctl_adapter::BoxFuture;
use deployctl_adapter::team::{SharedRun, StopAsked, TeamLockError, TeamRuns};
use deployctl_aws::s3_location::S3Location;

use crate::objects::{Condition, Objects, Written};

/// Conditional writes of one record before giving up (each lost race is
/// another writer: the driving PC's own retried write, or a stray one).
const ATTEMPTS: usize = 8;

/// Run records in `location`'s `runs/` folder.
pub struct S3Runs {
    objects: Objects,
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

impl S3Runs {
    pub fn new(client: Client, location: S3Location) -> S3Runs {
        S3Runs {
            objects: Objects { client, location },
        }
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
            if let Written::Done = written {
                return Ok(());
            }
        }
        Err(TeamLockError::Backend(format!(
            "the record of run {} changed under every one of {ATTEMPTS} writes",
            run.run
        )))
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
            if let Written::Done = self
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
