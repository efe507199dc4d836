//! A sim world: a directory holding one JSON file per simulated target, so
//! several processes (a run, the run resumed after a SIGKILL, the test
//! checking on both) see and change the same targets.
//!
//! Every write goes to a temporary file that is fsynced and then renamed
//! over the target's file, so a reader, or a process killed mid-write,
//! only ever sees a whole state. Read-modify-write cycles hold an exclusive
//! lock on a per-target lock file, so two processes applying at once do
//! not lose each other's changes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::SimConfig;
use crate::error::SimError;
use crate::state::{STATE_FORMAT, SimState};
use crate::store::Store;
use crate::target::SimTarget;

/// A directory of persisted simulated targets.
#[derive(Debug, Clone)]
pub struct SimWorld {
    dir: PathBuf,
}

impl SimWorld {
    /// Opens the world in `dir`. The directory is created by the first
    /// change, not here: reading a world (`plan --observe`, a preflight)
    /// must leave no trace, and a missing directory reads as every target
    /// in its initial state.
    pub fn open(dir: impl Into<PathBuf>) -> Result<SimWorld, SimError> {
        Ok(SimWorld { dir: dir.into() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The simulated target `config.name` in this world. It starts from
    /// `config` only if the world does not hold it yet; otherwise the
    /// world's state wins (a resumed process continues where the killed one
    /// stopped).
    pub fn target(&self, config: SimConfig) -> SimTarget {
        let file = WorldFile {
            path: self.state_file(&config.name),
            lock: self.dir.join(format!(".{}.lock", file_stem(&config.name))),
            initial: SimState::initial(&config),
        };
        SimTarget::with_store(config, Store::World(file))
    }

    /// The file holding the target `name`'s state.
    pub fn state_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{}.json", file_stem(name)))
    }

    /// The target `name`'s state, `None` when nothing was applied to it yet.
    pub fn read(&self, name: &str) -> Result<Option<SimState>, SimError> {
        read_state(&self.state_file(name))
    }
}

/// One target's file in a world.
pub(crate) struct WorldFile {
    path: PathBuf,
    lock: PathBuf,
    /// The state before the first write.
    initial: SimState,
}

impl WorldFile {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl WorldFile {
    pub(crate) fn read(&self) -> Result<SimState, SimError> {
        Ok(read_state(&self.path)?.unwrap_or_else(|| self.initial.clone()))
    }

    pub(crate) fn update<R>(
        &self,
        change: impl FnOnce(&mut SimState) -> (R, bool),
    ) -> Result<R, SimError> {
        if let Some(dir) = self.lock.parent() {
            fs::create_dir_all(dir).map_err(SimError::io(dir))?;
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .map_err(SimError::io(&self.lock))?;
        // Released when `lock` is closed, including when the process dies.
        lock.lock().map_err(SimError::io(&self.lock))?;
        let mut state = self.read()?;
        let (result, commit) = change(&mut state);
        if commit {
            write_atomically(&self.path, &state)?;
        }
        Ok(result)
    }
}

fn read_state(path: &Path) -> Result<Option<SimState>, SimError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(SimError::io(path)(error)),
    };
    // Check the format before the typed parse, so a newer file is reported
    // as such rather than as an unknown field.
    #[derive(serde::Deserialize)]
    struct Header {
        format: u32,
    }
    let header: Header = serde_json::from_slice(&bytes).map_err(|source| SimError::Corrupt {
        path: path.to_path_buf(),
        source,
    })?;
    if header.format != STATE_FORMAT {
        return Err(SimError::Format {
            path: path.to_path_buf(),
            found: header.format,
            expected: STATE_FORMAT,
        });
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| SimError::Corrupt {
            path: path.to_path_buf(),
            source,
        })
}

/// Temp file, fsync, rename over `path`, fsync the directory: after a
/// crash at any point `path` holds either the old state or the new one.
fn write_atomically(path: &Path, state: &SimState) -> Result<(), SimError> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let temp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let mut bytes = serde_json::to_vec_pretty(state).map_err(|source| SimError::Corrupt {
        path: path.to_path_buf(),
        source,
    })?;
    bytes.push(b'\n');
    let written = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if let Err(error) = written {
        let _ = fs::remove_file(&temp);
        return Err(SimError::io(path)(error));
    }
    sync_dir(dir).map_err(SimError::io(dir))
}

/// Makes the rename itself durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Windows cannot open a directory as a file; its renames are journaled.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// A file name for a target name: plan names are simple, but nothing here
/// relies on that, so anything outside `[A-Za-z0-9_-]` is %-escaped (no
/// path separators, no leading dot).
fn file_stem(name: &str) -> String {
    let mut stem = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            stem.push(char::from(byte));
        } else {
            stem.push_str(&format!("%{byte:02X}"));
        }
    }
    stem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_never_escape_the_world() {
        assert_eq!(file_stem("api-v2_x"), "api-v2_x");
        assert_eq!(file_stem("../etc/passwd"), "%2E%2E%2Fetc%2Fpasswd");
        assert_eq!(file_stem(".hidden"), "%2Ehidden");
    }
}
