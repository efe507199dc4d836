//! Reading plan files without trusting them: a size cap applied while
//! reading, so a huge or endless file (a FIFO, /dev/zero) is refused fast.

use std::io::Read;

use deployctl_plan::{Diagnostic, MAX_PLAN_BYTES};

/// The name that means standard input.
pub const STDIN: &str = "-";

/// What diagnostics call a plan read from `path`.
pub fn display_name(path: &str) -> &str {
    if path == STDIN { "<stdin>" } else { path }
}

/// The file's bytes, or a diagnostic saying why it could not be read.
/// Reads at most one byte past the limit, so the loader can name the size.
/// `-` is standard input (`deployctl validate -`), read with the same cap.
pub fn read_plan_file(path: &str) -> Result<Vec<u8>, Diagnostic> {
    let cannot_read = |error: std::io::Error| {
        Diagnostic::error("", format!("cannot read {path}: {error}"))
            .with_hint("check the path and that you may read the file")
    };
    if path == STDIN {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .take(MAX_PLAN_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(cannot_read)?;
        return Ok(bytes);
    }
    let file = std::fs::File::open(path).map_err(cannot_read)?;
    if let Ok(metadata) = file.metadata() {
        if metadata.is_dir() {
            return Err(Diagnostic::error(
                "",
                format!("{path} is a directory, not a plan file"),
            ));
        }
        if metadata.is_file() && metadata.len() > MAX_PLAN_BYTES as u64 {
            return Err(Diagnostic::error(
                "",
                format!(
                    "plan file is {} bytes; plans larger than {} MiB are refused",
                    metadata.len(),
                    MAX_PLAN_BYTES / (1024 * 1024)
                ),
            )
            .with_hint("split the release into several plans"));
        }
    }
    let mut bytes = Vec::new();
    file.take(MAX_PLAN_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot_read)?;
    Ok(bytes)
}
