//! File-system helpers: private modes (J4), atomic replacement, and
//! reading a JSON Lines file's last line without reading the file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{AuditError, io};

/// Creates `dir` (and missing parents) as 0700, or narrows an existing one
/// to 0700: the trail names people and is readable by its owner only.
pub fn private_dir(dir: &Path) -> Result<(), AuditError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io("create directory", dir))?;
    tighten(dir, 0o700)
}

/// Sets `mode` unless the file already has it (then no write happens, so
/// a read-only verifier can run on a copy it does not own).
pub fn tighten(path: &Path, mode: u32) -> Result<(), AuditError> {
    let metadata = std::fs::metadata(path).map_err(io("stat", path))?;
    if metadata.permissions().mode() & 0o777 != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(io("set permissions of", path))?;
    }
    Ok(())
}

/// Opens (creating as 0600) a file for reading and appending.
pub fn open_append(path: &Path) -> Result<File, AuditError> {
    let existed = path.exists();
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(io("open", path))?;
    tighten(path, 0o600)?;
    if !existed {
        // The new name must survive a crash too, not only the data.
        sync_parent(path)?;
    }
    Ok(file)
}

/// Replaces `path` with `bytes` atomically and durably (temp file 0600,
/// fsync, rename, fsync of the directory).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AuditError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .map_err(io("create", &temp))?;
    file.write_all(bytes).map_err(io("write", &temp))?;
    file.sync_all().map_err(io("fsync", &temp))?;
    drop(file);
    std::fs::rename(&temp, path).map_err(io("rename into place", path))?;
    sync_parent(path)
}

pub fn sync_parent(path: &Path) -> Result<(), AuditError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(io("fsync directory", parent))
}

/// The end of a JSON Lines file.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tail {
    /// The last complete line, without `\n`; `None` when there is none.
    pub last_line: Option<Vec<u8>>,
    /// Where the complete lines end (just after the last `\n`).
    pub complete_len: u64,
    /// Bytes after the last `\n`: a line cut short by a crash.
    pub torn_len: u64,
}

/// Reads backwards from `len` in 64 KiB steps to find the last complete
/// line, so opening a year of audit log costs one small read.
pub fn read_tail(file: &mut File, len: u64, path: &Path) -> Result<Tail, AuditError> {
    const STEP: u64 = 64 * 1024;
    let mut buffer: Vec<u8> = Vec::new();
    let mut start = len;
    let mut last_newline: Option<u64> = None;
    loop {
        // Look for the last `\n`, then for the one before it.
        let newlines: Vec<u64> = buffer
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| start + i as u64)
            .collect();
        if last_newline.is_none() {
            last_newline = newlines.last().copied();
        }
        if let Some(end) = last_newline {
            let before = newlines.iter().rev().find(|&&at| at < end).copied();
            if before.is_some() || start == 0 {
                let line_start = before.map_or(0, |at| at + 1);
                let line = buffer[(line_start - start) as usize..(end - start) as usize].to_vec();
                return Ok(Tail {
                    last_line: Some(line),
                    complete_len: end + 1,
                    torn_len: len - end - 1,
                });
            }
        } else if start == 0 {
            return Ok(Tail {
                last_line: None,
                complete_len: 0,
                torn_len: len,
            });
        }
        let step = STEP.min(start);
        start -= step;
        let mut chunk = vec![0; step as usize];
        file.seek(SeekFrom::Start(start))
            .and_then(|_| file.read_exact(&mut chunk))
            .map_err(io("read", path))?;
        chunk.extend_from_slice(&buffer);
        buffer = chunk;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail_of(content: &[u8]) -> Tail {
        let dir = std::env::temp_dir().join(format!(
            "deployctl-audit-tail-{}-{}",
            std::process::id(),
            content.len()
        ));
        private_dir(&dir).unwrap();
        let path = dir.join("lines");
        std::fs::write(&path, content).unwrap();
        let mut file = File::open(&path).unwrap();
        let tail = read_tail(&mut file, content.len() as u64, &path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        tail
    }

    #[test]
    fn finds_the_last_complete_line_and_a_torn_tail() {
        assert_eq!(tail_of(b""), Tail::default());
        assert_eq!(
            tail_of(b"partial"),
            Tail {
                last_line: None,
                complete_len: 0,
                torn_len: 7
            }
        );
        let tail = tail_of(b"one\ntwo\nthr");
        assert_eq!(tail.last_line.as_deref(), Some(&b"two"[..]));
        assert_eq!((tail.complete_len, tail.torn_len), (8, 3));
        let tail = tail_of(b"only\n");
        assert_eq!(tail.last_line.as_deref(), Some(&b"only"[..]));
        // A last line longer than one read step.
        let mut long = b"first\n".to_vec();
        long.extend(std::iter::repeat_n(b'x', 200_000));
        long.push(b'\n');
        let tail = tail_of(&long);
        assert_eq!(tail.last_line.map(|l| l.len()), Some(200_000));
    }
}
