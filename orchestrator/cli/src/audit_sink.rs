//! Which sink the audit trail ships to (S2): the binary's choice, from the
//! environment, since the S3 Object Lock sink is an adapter. What the
//! trail records is `deployctl-trail`'s.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deployctl_audit::{AuditLog, AuditOptions, DirectorySink, Who};
use deployctl_trail::audit_dir;

/// Names the checkpoint signing key's path when it is kept away from the
/// trail, so that write access to the state directory is not enough to
/// re-sign a rewritten trail. Its public half is `<path>.pub`.
pub const SIGNING_KEY_ENV: &str = "DEPLOYCTL_AUDIT_SIGNING_KEY";

/// The private signing key's path from [`SIGNING_KEY_ENV`], if set.
pub fn signing_key() -> Option<PathBuf> {
    std::env::var_os(SIGNING_KEY_ENV)
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
}

/// The public key `audit verify` checks against when none is given: the
/// half beside a key kept elsewhere, else the one beside the trail; and
/// whether that one lies inside the state directory, where whoever can
/// rewrite the trail can replace it too.
pub fn default_public_key(state_dir: &Path) -> (PathBuf, bool) {
    match signing_key() {
        Some(private) => {
            let public = deployctl_audit::public_key_path(&private);
            let inside = absolute(&public).starts_with(absolute(state_dir));
            (public, inside)
        }
        None => (
            audit_dir(state_dir).join(deployctl_audit::keys::PUBLIC_KEY_FILE),
            true,
        ),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Opens the trail with its sink (S2): `DEPLOYCTL_AUDIT_SINK=s3://bucket/prefix`
/// ships to S3 under Object Lock in COMPLIANCE mode for
/// `DEPLOYCTL_AUDIT_RETENTION_DAYS` (default and minimum 365), with the
/// standard AWS credential chain; `DEPLOYCTL_AUDIT_SHIP_DIR` copies to a
/// mounted share. At most one of them. With a team backend, the trail is
/// also copied there (`PREFIX/audit/PC/`) for `audit show` on other PCs. A bucket without Object Lock is
/// refused here, before anything runs; an unreachable S3 is not (records
/// queue, and `apply` refuses new runs while they are stuck).
pub fn open(state_dir: &Path, operator: &str) -> Result<AuditLog, String> {
    let mut options = AuditOptions::new(Who::local(operator));
    options.signing_key = signing_key();
    let ship_dir = std::env::var_os("DEPLOYCTL_AUDIT_SHIP_DIR").filter(|d| !d.is_empty());
    let s3 = std::env::var(deployctl_aws_audit::SINK_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty());
    match (s3, ship_dir) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "both {} and DEPLOYCTL_AUDIT_SHIP_DIR are set; choose one audit sink",
                deployctl_aws_audit::SINK_ENV
            ));
        }
        (Some(uri), None) => {
            let location: deployctl_aws_audit::S3Location =
                uri.trim().parse().map_err(|e| format!("{e}"))?;
            let retention = deployctl_aws_audit::Retention::parse(
                std::env::var(deployctl_aws_audit::RETENTION_ENV)
                    .ok()
                    .as_deref(),
            )
            .map_err(|e| format!("{}: {e}", deployctl_aws_audit::RETENTION_ENV))?;
            let sink = deployctl_aws_audit::S3ObjectLockSink::open(location, retention)
                .map_err(|e| format!("{}: {e}", deployctl_aws_audit::SINK_ENV))?;
            options = options.sink(Arc::new(sink));
        }
        (None, Some(dir)) => {
            options = options.sink(Arc::new(DirectorySink::new(PathBuf::from(dir))));
        }
        (None, None) => {}
    }
    // With a team backend every PC's trail is copied there too, so
    // `audit show` on any PC lists what the team did.
    if let Some(backend) = crate::team::configured() {
        let copy: Arc<dyn deployctl_audit::Sink> = Arc::new(crate::team::team_trail(backend)?);
        let sinks: Vec<Arc<dyn deployctl_audit::Sink>> =
            options.sink.take().into_iter().chain([copy]).collect();
        options = options.sink(Arc::new(deployctl_audit::Sinks(sinks)));
    }
    AuditLog::open(audit_dir(state_dir), options)
        .map_err(|error| format!("cannot open the audit trail: {error}"))
}
