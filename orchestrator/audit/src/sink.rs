//! Where the trail is shipped off the machine (S2), and the directory sink.
//!
//! The log hands a sink batches in `seq` order: a run of consecutive
//! records, and the checkpoint that ends exactly at the batch's last
//! record when there is one (a checkpoint can also come alone, with no
//! records, when nothing was written since the previous one). A batch is
//! acknowledged by returning `Ok`; only then does the outbox move past it.
//!
//! A crash between the sink's acknowledgement and the outbox's own fsync
//! sends that batch again, perhaps cut differently. So a sink must store
//! each batch under a name derived from its content (its first and last
//! `seq`) and tolerate overlaps; identical records have identical bytes.
//!
//! The S3 sink (coming with the AWS issue) fits the same shape: one object
//! per batch, key `<prefix>/records-<first>-<last>.jsonl` with the lines as
//! [`AuditRecord`] serializes them, one `<prefix>/checkpoint-<seq>.json`
//! per checkpoint, each `PutObject` with Object Lock in compliance mode and
//! a retain-until date a year (R10) ahead, taken from the sink's own
//! configuration. `Ok` means S3 answered 200 for every object.

use std::path::{Path, PathBuf};

use crate::checkpoint::Checkpoint;
use crate::error::AuditError;
use crate::fsutil;
use crate::record::AuditRecord;

/// A destination off the deploy PC.
pub trait Sink: Send + Sync {
    /// For messages: `directory /mnt/audit`, `s3://bucket/prefix`.
    fn describe(&self) -> String;

    /// Stores one batch durably; returns only once the destination has it.
    /// Called from one thread at a time, batches in order.
    fn ship(
        &self,
        records: &[AuditRecord],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), SinkError>;
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Not reachable now (network, mount missing, throttled): retried later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The destination refused the batch (permissions, retention policy).
    #[error("refused: {0}")]
    Refused(String),
}

/// Copies batches into a directory, e.g. a mounted share; the sandbox's
/// and the tests' sink. Files are written atomically, so a reader never
/// sees half a batch.
#[derive(Debug, Clone)]
pub struct DirectorySink {
    dir: PathBuf,
}

impl DirectorySink {
    /// `dir` is created as 0700 when first shipped to, not here: a share
    /// that is not mounted yet must not become a local directory now.
    pub fn new(dir: impl Into<PathBuf>) -> DirectorySink {
        DirectorySink { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Sink for DirectorySink {
    fn describe(&self) -> String {
        format!("directory {}", self.dir.display())
    }

    fn ship(
        &self,
        records: &[AuditRecord],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), SinkError> {
        let unavailable = |e: AuditError| SinkError::Unavailable(e.to_string());
        fsutil::private_dir(&self.dir).map_err(unavailable)?;
        for (name, body) in batch_files(records, checkpoint)? {
            fsutil::write_atomic(&self.dir.join(name), &body).map_err(unavailable)?;
        }
        Ok(())
    }
}

/// A batch as the files (or objects) a sink keeps it in, named by its
/// content: `records-FIRST-LAST.jsonl` with the log's own lines (identical
/// records, identical bytes) and `checkpoint-SEQ.json`.
pub fn batch_files(
    records: &[AuditRecord],
    checkpoint: Option<&Checkpoint>,
) -> Result<Vec<(String, Vec<u8>)>, SinkError> {
    let mut files = Vec::with_capacity(2);
    if let (Some(first), Some(last)) = (records.first(), records.last()) {
        let mut body = Vec::with_capacity(records.len() * 512);
        for record in records {
            serde_json::to_writer(&mut body, record)
                .map_err(|e| SinkError::Refused(e.to_string()))?;
            body.push(b'\n');
        }
        let name = format!("records-{:020}-{:020}.jsonl", first.seq, last.seq);
        files.push((name, body));
    }
    if let Some(checkpoint) = checkpoint {
        let mut line = checkpoint.to_line();
        line.push(b'\n');
        files.push((format!("checkpoint-{:020}.json", checkpoint.seq), line));
    }
    Ok(files)
}

/// Ships every batch to each of its sinks in turn (the Object Lock copy,
/// then the team backend's copy every PC reads). A batch is acknowledged
/// once all have it; when one fails, the batch is shipped again later to
/// all of them, which is safe because each sink keeps a batch under a
/// name derived from its content and accepts the same bytes again.
pub struct Sinks(pub Vec<std::sync::Arc<dyn Sink>>);

impl Sink for Sinks {
    fn describe(&self) -> String {
        self.0
            .iter()
            .map(|sink| sink.describe())
            .collect::<Vec<_>>()
            .join(" and ")
    }

    fn ship(
        &self,
        records: &[AuditRecord],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), SinkError> {
        for sink in &self.0 {
            sink.ship(records, checkpoint)
                .map_err(|error| match error {
                    SinkError::Unavailable(why) => {
                        SinkError::Unavailable(format!("{}: {why}", sink.describe()))
                    }
                    SinkError::Refused(why) => {
                        SinkError::Refused(format!("{}: {why}", sink.describe()))
                    }
                    other => other,
                })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod sinks_tests {
    use super::*;

    #[test]
    fn a_batch_lands_in_every_sink_and_one_missing_directory_fails_it_for_all() {
        let dir = std::env::temp_dir().join(format!("deployctl-sinks-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (a, b) = (dir.join("a"), dir.join("b"));
        let sinks = Sinks(vec![
            std::sync::Arc::new(DirectorySink::new(&a)),
            std::sync::Arc::new(DirectorySink::new(&b)),
        ]);
        assert_eq!(
            sinks.describe(),
            format!("directory {} and directory {}", a.display(), b.display())
        );
        let checkpoint = None;
        sinks.ship(&[], checkpoint).unwrap();
        assert!(a.is_dir() && b.is_dir(), "both made when shipped to");
        // A file where the second directory should be: unavailable, named.
        std::fs::remove_dir_all(&b).unwrap();
        std::fs::write(&b, b"not a directory").unwrap();
        let failed = sinks.ship(&[], None).unwrap_err().to_string();
        assert!(failed.contains(&b.display().to_string()), "{failed}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
