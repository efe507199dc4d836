//! Which sink the audit trail ships to (S2): the binary's choice, from the
//! environment, since the S3 Object Lock sink is an adapter. What the
//! trail records is `deployctl-trail`'s.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deployctl_audit::{AuditLog, AuditOptions, DirectorySink, Who};
use deployctl_trail::audit_dir;

/// Opens the trail with its sink (S2): `DEPLOYCTL_AUDIT_SINK=s3://bucket/prefix`
/// ships to S3 under Object Lock in COMPLIANCE mode for
/// `DEPLOYCTL_AUDIT_RETENTION_DAYS` (default and minimum 365), with the
/// standard AWS credential chain; `DEPLOYCTL_AUDIT_SHIP_DIR` copies to a
/// mounted share. At most one of them. A bucket without Object Lock is
/// refused here, before anything runs; an unreachable S3 is not (records
/// queue, and `apply` refuses new runs while they are stuck).
pub fn open(state_dir: &Path, operator: &str) -> Result<AuditLog, String> {
    let mut options = AuditOptions::new(Who::local(operator));
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
    AuditLog::open(audit_dir(state_dir), options)
        .map_err(|error| format!("cannot open the audit trail: {error}"))
}
