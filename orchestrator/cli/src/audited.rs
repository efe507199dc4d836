//! What every command that acts shares about its audit trail: the journal
//! opened with the trail attached, the refusal of new runs while records
//! are stuck (S2), the checkpoint and shipping when a command ends, and
//! records a command writes itself.

use std::path::Path;
use std::sync::{Arc, Mutex};

use deployctl_audit::{AuditLog, Outcome, What};
use deployctl_engine::journal::Journal;
use deployctl_trail::Trail;

use crate::audit_sink;

/// Every trail a command opened: each is sealed (checkpointed and
/// shipped) when the command ends, refused or not ([`seal_opened`]).
static OPENED: Mutex<Vec<Trail>> = Mutex::new(Vec::new());

/// The journal with the audit trail attached: every action and decision
/// of the commands that change targets is audited before it happens.
pub fn open(state_dir: &Path) -> Result<(Arc<Journal>, Trail), u8> {
    let operator = deployctl_engine::run::initiator();
    let trail = audit_sink::open(state_dir, &operator)
        .map(|log| Trail::new(Arc::new(log)))
        .map_err(crate::report::refused)?;
    OPENED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(trail.clone());
    let journal = Journal::open(state_dir)
        .map(|journal| Arc::new(journal.with_observer(Arc::new(trail.bridge(&operator)))))
        .map_err(crate::report::refused)?;
    Ok((journal, trail))
}

/// S2: the trail must leave the deploy PC. When a sink is configured and
/// records are stuck (the sink is failing), a new run is refused until
/// they are shipped, unless `DEPLOYCTL_AUDIT_UNSHIPPED=warn` says to go on.
/// Runbook commands (rollback, kill) are never refused for this: undoing
/// a release must not wait for the audit share.
pub fn shipped(audit: &AuditLog) -> Result<(), u8> {
    if !audit.ships() {
        return Ok(());
    }
    let _ = audit.ship_now();
    let pending = audit.pending();
    let Some(error) = pending.last_error.filter(|_| pending.records > 0) else {
        return Ok(());
    };
    let message = format!(
        "{} audit records have not left this machine (shipping fails since {}: {error})",
        pending.records,
        pending.failing_since.as_deref().unwrap_or("?")
    );
    if std::env::var("DEPLOYCTL_AUDIT_UNSHIPPED").as_deref() == Ok("warn") {
        eprintln!("warning: {message}; going on as DEPLOYCTL_AUDIT_UNSHIPPED=warn says");
        return Ok(());
    }
    Err(crate::report::refused(format!(
        "{message}. Fix the audit sink, or set DEPLOYCTL_AUDIT_UNSHIPPED=warn to run anyway. Nothing was changed."
    )))
}

pub use deployctl_trail::Seal;

/// The end of every command: a signed checkpoint over whatever each trail
/// it opened took in (a refusal, a failed code), so deleting a command's
/// last records cannot go unnoticed by `audit verify`. A trail whose
/// records a checkpoint already covers is left as it is.
pub fn seal_opened() {
    let opened = std::mem::take(
        &mut *OPENED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    for trail in opened {
        drop(Seal(trail));
    }
}

/// Appends a record the command writes itself (see
/// [`Trail::record_or_warn`]).
pub fn record(trail: &Trail, user: &str, what: What, outcome: Outcome) {
    trail.record_or_warn(user, what, outcome);
}
