//! J4: only the owner can read the trail.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use deployctl_audit::{AuditLog, DirectorySink};

use crate::{TempDir, entry, options};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_directory_is_0700_and_every_file_0600() {
    let (dir, copy) = (TempDir::new("perms"), TempDir::new("perms-copy"));
    let log = AuditLog::open(
        dir.path(),
        options().sink(Arc::new(DirectorySink::new(copy.path()))),
    )
    .unwrap();
    log.append(entry(1)).unwrap();
    log.checkpoint().unwrap();
    log.ship_now().unwrap();
    drop(log);
    assert_eq!(mode(dir.path()), 0o700);
    let mut files = 0;
    for file in std::fs::read_dir(dir.path()).unwrap() {
        let file = file.unwrap().path();
        assert_eq!(mode(&file), 0o600, "{}", file.display());
        files += 1;
    }
    // audit.jsonl, checkpoints.jsonl, both keys, outbox.json, two locks.
    assert_eq!(files, 7);
    assert_eq!(mode(copy.path()), 0o700);
    for file in std::fs::read_dir(copy.path()).unwrap() {
        let file = file.unwrap().path();
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

#[test]
fn opening_narrows_loose_permissions() {
    let dir = TempDir::new("perms-loose");
    drop(AuditLog::open(dir.path(), options()).unwrap());
    let set = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    set(dir.path(), 0o755);
    set(&dir.join("audit.jsonl"), 0o644);
    set(&dir.join("signing-key.pk8"), 0o644);
    let log = AuditLog::open(dir.path(), options()).unwrap();
    log.append(entry(1)).unwrap();
    assert_eq!(mode(dir.path()), 0o700);
    assert_eq!(mode(&dir.join("audit.jsonl")), 0o600);
    assert_eq!(mode(&dir.join("signing-key.pk8")), 0o600);
}
