//! `verify`: is the trail intact, and if not, where does it first go wrong?
//!
//! Three kinds of evidence, from weakest to strongest:
//!
//! 1. **The chain** (the log alone): every line's hash is recomputed from
//!    its bytes (an edit shows as a mismatch), `seq` must count up by one
//!    (a deletion leaves a gap, an insertion or a move breaks the order),
//!    and `prev` must be the hash of the line before. Someone who rewrites
//!    a record *and* every hash after it passes this check.
//! 2. **Signed checkpoints** (`checkpoints.jsonl`): each signature is
//!    checked with a public key the caller supplies, and the record at
//!    each checkpoint's `seq` must hash as signed. A log ending before its
//!    last checkpoint was truncated. A rewrite with re-signing needs the
//!    private key, which is on the deploy PC: hence the next item.
//! 3. **A shipped copy** (`against`): the sink's copy, off the machine
//!    (S2). Every record the copy has must be in the log with the same
//!    hash, and the log must not end before the copy does.
//!
//! Speed: lines are checked as bytes (`seq`, `prev` and `hash` sit at
//! fixed places in a canonical line) and hashed as read; no line is parsed
//! into structs. See `BENCHMARKS.md`.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use crate::canonical::{RECORD_PREFIX, body_hash, parse_record_line};
use crate::checkpoint::{CHECKPOINTS_FILE, check_line};
use crate::error::{AuditError, io};
use crate::keys::PublicKey;
use crate::record::ChainHash;
use crate::writer::LOG_FILE;

/// Problems kept in a report at most; the count of the rest is kept.
const MAX_PROBLEMS: usize = 1000;

/// What is wrong, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// Not a record line in canonical form.
    Malformed,
    /// The line's bytes do not hash to its `hash`: it was edited.
    HashMismatch,
    /// `seq` jumps forward: records are missing (deleted, or moved later).
    Gap,
    /// `seq` repeats or goes back: a record was inserted, repeated or moved.
    OutOfOrder,
    /// `prev` is not the previous line's hash: the previous record was
    /// rewritten with a new hash, or records were removed or added here.
    PrevMismatch,
    /// The record differs from what a signed checkpoint says.
    CheckpointMismatch,
    /// The record differs from the shipped copy's.
    ShippedMismatch,
    /// The log ends before a checkpoint or the shipped copy does.
    Truncated,
    /// A checkpoint does not verify (forged, altered, other key).
    BadCheckpoint,
    /// The shipped copy itself has a bad line.
    BadShippedCopy,
}

/// One finding, at a file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based; for [`ProblemKind::Truncated`], the line where the first
    /// missing record should be.
    pub line: u64,
    /// The record's `seq` as written (or, when truncated, the first missing).
    pub seq: Option<u64>,
    pub kind: ProblemKind,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        if let Some(seq) = self.seq {
            write!(f, "seq {seq}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub log: PathBuf,
    /// Complete lines read from the log.
    pub records: u64,
    /// `seq` and `hash` of the last line.
    pub last_seq: u64,
    pub last_hash: ChainHash,
    /// Checkpoints whose signature verified, and the highest `seq` among them.
    pub checkpoints: u64,
    pub last_checkpoint_seq: Option<u64>,
    /// Records in the shipped copy, when one was given.
    pub shipped_records: Option<u64>,
    /// In file order: log problems first, by line.
    pub problems: Vec<Problem>,
    /// Problems beyond [`MAX_PROBLEMS`], not listed.
    pub more_problems: u64,
    /// Worth knowing, not tampering (a torn last line, no checkpoints).
    pub warnings: Vec<String>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The first bad record of the log: the problem at the lowest line of
    /// `audit.jsonl` (a truncation counts as the first missing record).
    pub fn first_bad_record(&self) -> Option<&Problem> {
        self.problems
            .iter()
            .filter(|p| p.file == self.log)
            .min_by_key(|p| p.line)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ok() {
            writeln!(
                f,
                "audit trail intact: {} records (last seq {}), {} signed checkpoints{}",
                self.records,
                self.last_seq,
                self.checkpoints,
                self.last_checkpoint_seq
                    .map(|seq| format!(" (last at seq {seq})"))
                    .unwrap_or_default()
            )?;
            if let Some(shipped) = self.shipped_records {
                writeln!(f, "matches the shipped copy ({shipped} records)")?;
            }
        } else {
            match self.first_bad_record() {
                Some(first) => writeln!(f, "audit trail TAMPERED: first bad record: {first}")?,
                None => writeln!(f, "audit trail TAMPERED")?,
            }
            for problem in &self.problems {
                writeln!(f, "  {problem}")?;
            }
            if self.more_problems > 0 {
                writeln!(f, "  … and {} more", self.more_problems)?;
            }
        }
        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        Ok(())
    }
}

/// One file of a shipped copy that is not on a local disk (an object
/// fetched from S3): its name, for messages, and its bytes, as the sink
/// stored them (`records-*.jsonl` or `checkpoint-*.json` lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFile {
    pub name: PathBuf,
    pub bytes: Vec<u8>,
}

/// Verifies the trail in `dir` with the public key at `public_key` (keep a
/// copy off the machine: the one in `dir` could be swapped), optionally
/// against a shipped copy: a [`crate::DirectorySink`] directory, or a JSON
/// Lines file of records and/or checkpoints.
pub fn verify(dir: &Path, public_key: &Path, against: Option<&Path>) -> Result<Report, AuditError> {
    match against {
        None => verify_with(dir, public_key, None::<std::iter::Empty<_>>),
        Some(path) => verify_with(dir, public_key, Some(local_copy(path)?)),
    }
}

/// [`verify`] against a shipped copy held elsewhere (an S3 bucket), handed
/// over file by file; a file that cannot be fetched is an `Err` item and
/// ends the verification with that error. Files may come in any order.
pub fn verify_against_files<I>(dir: &Path, public_key: &Path, copy: I) -> Result<Report, AuditError>
where
    I: IntoIterator<Item = Result<CopyFile, AuditError>>,
{
    verify_with(dir, public_key, Some(copy.into_iter()))
}

fn verify_with<I>(dir: &Path, public_key: &Path, against: Option<I>) -> Result<Report, AuditError>
where
    I: Iterator<Item = Result<CopyFile, AuditError>>,
{
    let key = PublicKey::load(public_key)?;
    let log = dir.join(LOG_FILE);
    let mut problems = Problems::default();
    let mut warnings = Vec::new();

    // What the log must agree with: seq → (hash, where it was pinned).
    let mut pins: HashMap<u64, Vec<Pin>> = HashMap::new();
    let checkpoint_path = dir.join(CHECKPOINTS_FILE);
    let checkpoints = read_checkpoints(&checkpoint_path, &key, &mut pins, &mut problems)?;
    let last_checkpoint_seq = checkpoints.last_seq.as_ref().map(|(seq, _)| *seq);
    let mut highest_pin = checkpoints.last_seq;
    let mut shipped_records = None;
    if let Some(copy) = against {
        let copy = read_copy(copy, &key, &mut pins, &mut problems)?;
        shipped_records = Some(copy.records);
        highest_pin = highest_pin.max(copy.highest_seq);
    }
    if checkpoints.valid == 0 {
        warnings.push(format!(
            "no signed checkpoints in {}: a cut-off end of the log can only be seen against a shipped copy",
            checkpoint_path.display()
        ));
    }

    let chain = check_chain(&log, &pins, &mut problems, &mut warnings)?;

    if let Some((seq, source)) = highest_pin.filter(|(seq, _)| *seq > chain.last_seq) {
        problems.push(Problem {
            file: log.clone(),
            line: chain.lines + 1,
            seq: Some(chain.last_seq + 1),
            kind: ProblemKind::Truncated,
            message: format!(
                "the log ends at seq {} but {source} has seq {seq}: records {}..={seq} were removed",
                chain.last_seq,
                chain.last_seq + 1
            ),
        });
    }

    let Problems {
        mut list,
        more: more_problems,
    } = problems;
    // Log problems first, in line order; then the other files'.
    list.sort_by(|a, b| (a.file != log, &a.file, a.line).cmp(&(b.file != log, &b.file, b.line)));
    Ok(Report {
        log,
        records: chain.lines,
        last_seq: chain.last_seq,
        last_hash: chain.last_hash,
        checkpoints: checkpoints.valid,
        last_checkpoint_seq,
        shipped_records,
        problems: list,
        more_problems,
        warnings,
    })
}

/// A hash that some other evidence says a record must have.
#[derive(Debug, Clone)]
struct Pin {
    hash: ChainHash,
    kind: ProblemKind,
    /// "the checkpoint at checkpoints.jsonl:3".
    source: String,
}

#[derive(Default)]
struct Problems {
    list: Vec<Problem>,
    more: u64,
}

impl Problems {
    fn push(&mut self, problem: Problem) {
        if self.list.len() < MAX_PROBLEMS {
            self.list.push(problem);
        } else {
            self.more += 1;
        }
    }
}

struct Chain {
    lines: u64,
    last_seq: u64,
    last_hash: ChainHash,
}

/// The chain check over `audit.jsonl`, one pass, constant memory.
fn check_chain(
    log: &Path,
    pins: &HashMap<u64, Vec<Pin>>,
    problems: &mut Problems,
    warnings: &mut Vec<String>,
) -> Result<Chain, AuditError> {
    let file = File::open(log).map_err(io("open", log))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::with_capacity(1024);
    let mut number = 0u64;
    // The previous good anchor: (seq, hash as written). `None` after an
    // unreadable line, so one bad line is reported once, not twice.
    let mut anchor: Option<(u64, ChainHash)> = Some((0, ChainHash::ZERO));
    let mut last = (0, ChainHash::ZERO);
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(io("read", log))?;
        if read == 0 {
            break;
        }
        if line.pop() != Some(b'\n') {
            warnings.push(format!(
                "{}:{}: the last line is incomplete ({read} bytes, no newline): a crash during a write; opening the log repairs it",
                log.display(),
                number + 1
            ));
            break;
        }
        number += 1;
        let problem = |seq: Option<u64>, kind, message: String| Problem {
            file: log.to_path_buf(),
            line: number,
            seq,
            kind,
            message,
        };
        let parsed = match parse_record_line(&line) {
            Ok(parsed) => parsed,
            Err(why) => {
                problems.push(problem(None, ProblemKind::Malformed, why.to_string()));
                anchor = None;
                continue;
            }
        };
        let seq = parsed.seq;
        let computed = body_hash(&line);
        let found = if computed != parsed.hash {
            Some((
                ProblemKind::HashMismatch,
                "the record's content does not match its hash: it was edited after it was written"
                    .to_string(),
            ))
        } else {
            anchor.and_then(|(prev_seq, prev_hash)| continuity(prev_seq, prev_hash, &parsed))
        };
        let found = found.or_else(|| {
            pins.get(&seq)?
                .iter()
                .find(|pin| pin.hash != parsed.hash)
                .map(|pin| {
                    (
                        pin.kind,
                        format!("the record differs from {}: it was rewritten", pin.source),
                    )
                })
        });
        if let Some((kind, message)) = found {
            problems.push(problem(Some(seq), kind, message));
        }
        anchor = Some((seq, parsed.hash));
        last = (seq, parsed.hash);
    }
    Ok(Chain {
        lines: number,
        last_seq: last.0,
        last_hash: last.1,
    })
}

/// Does a line follow the one before it?
fn continuity(
    prev_seq: u64,
    prev_hash: ChainHash,
    line: &crate::canonical::RecordLine,
) -> Option<(ProblemKind, String)> {
    let expected = prev_seq + 1;
    if line.seq > expected {
        let missing = if line.seq == expected + 1 {
            format!("record {expected} is missing")
        } else {
            format!("records {expected}..={} are missing", line.seq - 1)
        };
        Some((
            ProblemKind::Gap,
            format!(
                "expected seq {expected}, found {}: {missing} (deleted or moved)",
                line.seq
            ),
        ))
    } else if line.seq < expected {
        Some((
            ProblemKind::OutOfOrder,
            format!(
                "seq {} comes after seq {prev_seq}: a record was inserted, repeated or moved",
                line.seq
            ),
        ))
    } else if line.prev != prev_hash {
        Some((
            ProblemKind::PrevMismatch,
            format!(
                "`prev` is not the hash of record {prev_seq} before it: record {prev_seq} was rewritten, or a record was removed or inserted here"
            ),
        ))
    } else {
        None
    }
}

struct Checkpoints {
    valid: u64,
    /// The highest verified checkpoint: (seq, description).
    last_seq: Option<(u64, String)>,
}

fn read_checkpoints(
    path: &Path,
    key: &PublicKey,
    pins: &mut HashMap<u64, Vec<Pin>>,
    problems: &mut Problems,
) -> Result<Checkpoints, AuditError> {
    let mut result = Checkpoints {
        valid: 0,
        last_seq: None,
    };
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(result),
        Err(e) => return Err(io("read", path)(e)),
    };
    let mut previous_seq = None;
    for (index, line) in complete_lines(&text).enumerate() {
        let number = index as u64 + 1;
        let source = format!("the signed checkpoint at {}:{number}", path.display());
        let problem = |seq, message: String| Problem {
            file: path.to_path_buf(),
            line: number,
            seq,
            kind: ProblemKind::BadCheckpoint,
            message,
        };
        match check_line(line, key) {
            Err(why) => problems.push(problem(None, why)),
            Ok(checkpoint) => {
                if previous_seq.is_some_and(|p| checkpoint.seq < p) {
                    problems.push(problem(
                        Some(checkpoint.seq),
                        format!(
                            "checkpoint seq {} comes after one at seq {}: checkpoints were reordered",
                            checkpoint.seq,
                            previous_seq.unwrap_or_default()
                        ),
                    ));
                }
                previous_seq = Some(checkpoint.seq);
                result.valid += 1;
                if result
                    .last_seq
                    .as_ref()
                    .is_none_or(|(seq, _)| checkpoint.seq > *seq)
                {
                    result.last_seq = Some((checkpoint.seq, source.clone()));
                }
                if checkpoint.seq > 0 {
                    pins.entry(checkpoint.seq).or_default().push(Pin {
                        hash: checkpoint.hash,
                        kind: ProblemKind::CheckpointMismatch,
                        source,
                    });
                }
            }
        }
    }
    Ok(result)
}

struct Copy {
    records: u64,
    highest_seq: Option<(u64, String)>,
}

/// The files of a local shipped copy: a directory as
/// [`crate::DirectorySink`] writes it, or one JSON Lines file; each is
/// read when its turn comes.
fn local_copy(
    path: &Path,
) -> Result<impl Iterator<Item = Result<CopyFile, AuditError>> + use<>, AuditError> {
    let mut files = Vec::new();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io("list", path))? {
            let entry = entry.map_err(io("list", path))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if (name.starts_with("records-") && name.ends_with(".jsonl"))
                || (name.starts_with("checkpoint-") && name.ends_with(".json"))
            {
                files.push(entry.path());
            }
        }
        // Zero-padded names: name order is seq order.
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    Ok(files.into_iter().map(|file| {
        let bytes = std::fs::read(&file).map_err(io("read", &file))?;
        Ok(CopyFile { name: file, bytes })
    }))
}

/// Reads a shipped copy, file by file. Its records and verified
/// checkpoints pin the log; its own bad lines are problems of the copy.
fn read_copy(
    files: impl Iterator<Item = Result<CopyFile, AuditError>>,
    key: &PublicKey,
    pins: &mut HashMap<u64, Vec<Pin>>,
    problems: &mut Problems,
) -> Result<Copy, AuditError> {
    let mut copy = Copy {
        records: 0,
        highest_seq: None,
    };
    let mut seen: HashMap<u64, ChainHash> = HashMap::new();
    for file in files {
        let CopyFile {
            name: file,
            bytes: text,
        } = file?;
        for (index, line) in complete_lines(&text).enumerate() {
            let number = index as u64 + 1;
            let at = format!("{}:{number}", file.display());
            let problem = |seq, message: String| Problem {
                file: file.clone(),
                line: number,
                seq,
                kind: ProblemKind::BadShippedCopy,
                message,
            };
            let (seq, hash, source) = if line.starts_with(RECORD_PREFIX) {
                let parsed = match parse_record_line(line) {
                    Ok(parsed) => parsed,
                    Err(why) => {
                        problems.push(problem(None, why.to_string()));
                        continue;
                    }
                };
                if body_hash(line) != parsed.hash {
                    problems.push(problem(
                        Some(parsed.seq),
                        "the shipped record does not match its own hash".into(),
                    ));
                    continue;
                }
                match seen.insert(parsed.seq, parsed.hash) {
                    Some(other) if other != parsed.hash => problems.push(problem(
                        Some(parsed.seq),
                        "the shipped copy has two different records with this seq".into(),
                    )),
                    Some(_) => {} // shipped twice after a crash: the same bytes
                    None => copy.records += 1,
                }
                (parsed.seq, parsed.hash, format!("the shipped copy ({at})"))
            } else {
                match check_line(line, key) {
                    Ok(checkpoint) => (
                        checkpoint.seq,
                        checkpoint.hash,
                        format!("the shipped signed checkpoint ({at})"),
                    ),
                    Err(why) => {
                        problems.push(problem(None, why));
                        continue;
                    }
                }
            };
            if copy
                .highest_seq
                .as_ref()
                .is_none_or(|(highest, _)| seq > *highest)
            {
                copy.highest_seq = Some((seq, source.clone()));
            }
            if seq > 0 {
                pins.entry(seq).or_default().push(Pin {
                    hash,
                    kind: ProblemKind::ShippedMismatch,
                    source,
                });
            }
        }
    }
    Ok(copy)
}

/// Lines ending in `\n`, without it; a last line without one is ignored
/// (a torn write, in a file that is only appended to).
fn complete_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let complete = text
        .iter()
        .rposition(|b| *b == b'\n')
        .map(|end| &text[..end]);
    complete
        .into_iter()
        .flat_map(|complete| complete.split(|b| *b == b'\n'))
}
