//! Each PC's audit trail, copied into the team backend
//! (`PREFIX/audit/PC/`), so `audit show` on any PC lists what every PC
//! recorded: who approved, killed, rolled back or broke a lock, wherever
//! they did it.
//!
//! [`S3TeamTrail`] is a [`Sink`]: the trail's outbox hands it batches as
//! it hands them to the Object Lock copy, and it stores each under a name
//! derived from its content (`records-FIRST-LAST.jsonl`,
//! `checkpoint-SEQ.json`, the lines exactly as the local log has them),
//! written only if absent. A batch shipped again after a crash finds its
//! own bytes there and counts as shipped; different bytes are refused
//! (another writer, or a rewritten local trail). This copy is for
//! reading across PCs; the tamper-evident copy stays the Object Lock
//! sink, and `audit verify` is each PC's own.

use std::sync::Arc;

use deployctl_audit::{AuditRecord, Checkpoint, Sink, SinkError};
use deployctl_aws::bridge::Bridge;
use deployctl_aws::s3_location::S3Location;

use crate::objects::{Condition, Objects, Written};

/// One PC's trail copy in the backend, and the reader of every PC's.
pub struct S3TeamTrail {
    objects: Arc<Objects>,
    bridge: Bridge,
    pc: String,
}

/// A record as another PC (or this one) shipped it.
#[derive(Debug, Clone)]
pub struct TeamRecord {
    pub pc: String,
    pub record: AuditRecord,
}

impl S3TeamTrail {
    /// The copy of `pc`'s trail (a host name: the folder it ships to).
    pub fn new(
        client: aws_sdk_s3::Client,
        location: S3Location,
        pc: &str,
    ) -> std::io::Result<S3TeamTrail> {
        Ok(S3TeamTrail {
            objects: Arc::new(Objects { client, location }),
            bridge: Bridge::new()?,
            pc: pc.to_owned(),
        })
    }

    fn key(&self, name: &str) -> String {
        self.objects
            .location
            .key(&format!("audit/{}/{name}", self.pc))
    }

    /// Every record every PC shipped, each PC's in `seq` order (a record
    /// in two overlapping batches once).
    pub fn read_all(&self) -> Result<Vec<TeamRecord>, String> {
        let objects = Arc::clone(&self.objects);
        let folder = self.objects.location.key("audit/");
        self.bridge
            .run(async move {
                let keys = objects.list("audit/").await.map_err(|e| e.to_string())?;
                let mut seen = std::collections::BTreeSet::new();
                let mut records = Vec::new();
                for key in keys {
                    let Some((pc, name)) = key
                        .strip_prefix(&folder)
                        .and_then(|rest| rest.split_once('/'))
                    else {
                        continue;
                    };
                    if !(name.starts_with("records-") && name.ends_with(".jsonl")) {
                        continue;
                    }
                    let Some((bytes, _)) =
                        objects.get_bytes(&key).await.map_err(|e| e.to_string())?
                    else {
                        continue;
                    };
                    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                        let record: AuditRecord = serde_json::from_slice(line).map_err(|e| {
                            format!(
                                "{} holds a line that is not an audit record: {e}",
                                objects.location.url(&key)
                            )
                        })?;
                        if seen.insert((pc.to_owned(), record.seq)) {
                            records.push(TeamRecord {
                                pc: pc.to_owned(),
                                record,
                            });
                        }
                    }
                }
                records.sort_by(|a, b| (&a.pc, a.record.seq).cmp(&(&b.pc, b.record.seq)));
                Ok(records)
            })
            .map_err(|stopped| stopped.to_string())?
    }
}

impl Sink for S3TeamTrail {
    fn describe(&self) -> String {
        format!(
            "the team backend's copy {}",
            self.objects.location.url(&format!("audit/{}/", self.pc))
        )
    }

    fn ship(
        &self,
        records: &[AuditRecord],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), SinkError> {
        let batches: Vec<(String, Vec<u8>)> = deployctl_audit::batch_files(records, checkpoint)?
            .into_iter()
            .map(|(name, body)| (self.key(&name), body))
            .collect();
        let objects = Arc::clone(&self.objects);
        self.bridge
            .run(async move {
                for (key, body) in batches {
                    let content_type = if key.ends_with(".jsonl") {
                        "application/x-ndjson"
                    } else {
                        "application/json"
                    };
                    let written = objects
                        .put_bytes(&key, body.clone(), content_type, Condition::Absent)
                        .await
                        .map_err(|e| SinkError::Unavailable(e.to_string()))?;
                    if let Written::Raced = written {
                        let there = objects
                            .get_bytes(&key)
                            .await
                            .map_err(|e| SinkError::Unavailable(e.to_string()))?;
                        if there.map(|(bytes, _)| bytes) != Some(body) {
                            return Err(SinkError::Refused(format!(
                                "{} holds other bytes than this trail's batch: another writer, or a rewritten local trail",
                                objects.location.url(&key)
                            )));
                        }
                    }
                }
                Ok(())
            })
            .map_err(|stopped| SinkError::Unavailable(stopped.to_string()))?
    }
}
