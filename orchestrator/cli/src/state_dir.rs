//! Where runs are kept: `--state-dir`, `DEPLOYCTL_STATE_DIR`, else the
//! user's state directory (`$XDG_STATE_HOME/deployctl`, or
//! `~/.local/state/deployctl`).

use std::path::PathBuf;

pub fn resolve(flag: Option<PathBuf>) -> PathBuf {
    if let Some(dir) = flag {
        return dir;
    }
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(state).join("deployctl");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/state/deployctl"),
        None => PathBuf::from(".deployctl"),
    }
}
