//! Integration tests of the audit trail, one binary (every extra test
//! binary costs a link on a 2-core machine). Modules:
//!
//! - `tamper`: the tamper matrix (edit, delete, insert, reorder, truncate),
//!   forged checkpoints, and the documented `sha256sum`/`openssl` checks;
//! - `recovery`: a line torn by a crash is cut, recorded, and the chain goes on;
//! - `permissions`: 0700 directory, 0600 files (J4);
//! - `outbox`: a failing sink keeps records, which ship later in order, once;
//! - `group_commit`: concurrent appends form one gap-free chain;
//! - `query`: `show` filters and the CSV/JSON exports.

mod group_commit;
mod outbox;
mod permissions;
mod query;
mod recovery;
mod tamper;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use deployctl_audit::{Action, AuditLog, AuditOptions, AuditRecord, Entry, Outcome, What, Who};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "deployctl-audit-it-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn who() -> Who {
    Who {
        operator: "alice".into(),
        os_user: "alice".into(),
        host: "deploy-pc".into(),
        aws_caller_arn: Some("arn:aws:sts::123456789012:assumed-role/deploy/alice".into()),
    }
}

/// The `i`-th entry of a made-up run: a mix of actions and fields.
pub fn entry(i: u64) -> Entry {
    let what = match i % 4 {
        0 => What::new(Action::StageWeightSet)
            .run("run-1")
            .stage(format!("canary-{i}"))
            .target("checkout")
            .change("10", "50"),
        1 => What::new(Action::GatePassed)
            .run("run-1")
            .stage(format!("canary-{i}"))
            .detail("errors 0.1% ≤ 1%"),
        2 => What::new(Action::StageDeployed)
            .run("run-2")
            .target("orders")
            .change("1.4.2", "1.5.0"),
        _ => What::new(Action::ApprovalGranted)
            .run("run-2")
            .plan_digest("sha256:00ff"),
    };
    Entry::new(who(), what, Outcome::ok()).request_id(format!("req-{i}"))
}

pub fn options() -> AuditOptions {
    AuditOptions::new(who()).background_shipping(false)
}

/// A log of `count` records, checkpointed every `every`.
pub fn write_log(dir: &Path, count: u64, every: u64) -> Vec<AuditRecord> {
    let log = AuditLog::open(dir, options().checkpoint_every(every)).unwrap();
    (1..=count).map(|i| log.append(entry(i)).unwrap()).collect()
}

pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

pub fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

/// The public key copied out of the log directory, as an auditor keeps it.
pub fn pinned_key(dir: &Path, keep: &TempDir) -> PathBuf {
    std::fs::create_dir_all(keep.path()).unwrap();
    let path = keep.join("trusted.pub");
    std::fs::copy(dir.join("signing-key.pub"), &path).unwrap();
    path
}
