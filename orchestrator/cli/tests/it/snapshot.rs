//! Expected-output files: compare, or rewrite with `UPDATE_SNAPSHOTS=1`.

use std::path::Path;

/// Compares `actual` with the file at `path`; returns a description of the
/// mismatch instead of panicking so callers can report every fixture at once.
pub fn check(path: &Path, actual: &str) -> Result<(), String> {
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, actual).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(());
    }
    match std::fs::read_to_string(path) {
        Ok(expected) if expected == actual => Ok(()),
        Ok(expected) => Err(format!(
            "{} differs (rerun with UPDATE_SNAPSHOTS=1 if intended)\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        )),
        Err(_) => Err(format!(
            "{} is missing; run with UPDATE_SNAPSHOTS=1 to create it\n--- actual\n{actual}",
            path.display()
        )),
    }
}
