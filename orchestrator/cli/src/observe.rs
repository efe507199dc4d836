//! `deployctl plan FILE --observe`: the live impact analysis. It builds
//! the plan's adapters as `apply` does, reads every target with the
//! contract's read-only calls (`preflight`, then `observe`), looks up in
//! the journal which live run holds each target, and prints per stage
//! what would change from what runs now ([`report`]).
//!
//! Guarantees: nothing is written. No run is recorded and no lock is
//! taken (the journal is opened only when it exists, and only read), no
//! audit record is needed, and no platform call writes: `observe` and
//! `preflight` MUST NOT change anything (docs/adapter-contract.md) and
//! `Target::plan` is pure. Reads are retried as the engine retries them.
//!
//! Exit codes: 0 when every target was read (drift or not: it is a
//! report), 1 when a read failed (the report says which and is
//! incomplete), 2 for refusals before anything is read: an invalid plan,
//! targets this build cannot run (as `apply` refuses them), an unreadable
//! journal.

pub mod report;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use deployctl_adapter::Target;
use deployctl_engine::journal::Journal;
use deployctl_engine::retry::{RetryPolicy, retry};
use deployctl_plan::Loaded;
use tokio::task::JoinSet;

use crate::exit;
use crate::wiring::{self, Mode};
use report::{Holder, Inputs, ObservedImpactReport, Reading};

/// `deployctl plan FILE --observe`.
pub fn command(loaded: &Loaded, plan_file: &str, state_dir: &Path, json: bool) -> u8 {
    let plan = &loaded.plan;
    let targets = match wiring::targets(plan, Path::new(plan_file), Mode::Apply, state_dir) {
        Ok(targets) => targets,
        Err(message) => {
            return crate::report::refused(message);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return crate::report::failed(format!("cannot start the async runtime: {error}"));
        }
    };
    let observed_at = deployctl_time::format_ms(deployctl_time::now_ms());
    let readings = runtime.block_on(read_targets(&targets));
    let locks = match lock_holders(state_dir, &readings) {
        Ok(locks) => locks,
        Err(message) => {
            return crate::report::refused(message);
        }
    };
    let report = ObservedImpactReport::new(&Inputs {
        plan,
        targets: &targets,
        readings: &readings,
        locks: &locks,
        observed_at,
    });
    if json {
        crate::print_json(&report);
    } else {
        out!("{}", report.render_text());
    }
    if report.incomplete() {
        exit::FAILED
    } else {
        exit::OK
    }
}

/// Every target's preflight, then its observed state, targets
/// concurrently. Each read is retried as the engine's retry policy says:
/// a throttled read is no verdict on the target.
async fn read_targets(targets: &BTreeMap<String, Arc<dyn Target>>) -> BTreeMap<String, Reading> {
    let mut reads = JoinSet::new();
    for (name, target) in targets {
        let (name, target) = (name.clone(), target.clone());
        reads.spawn(async move {
            let policy = RetryPolicy::default();
            // Preflight first, as a run does: adapters learn there what
            // their release is (a Lambda version published earlier),
            // which observe then names by the plan's label.
            let preflight = retry(&policy, |_| target.preflight())
                .await
                .map_err(|gave_up| gave_up.to_string());
            let observed = retry(&policy, |_| target.observe())
                .await
                .map_err(|gave_up| gave_up.to_string());
            (
                name,
                Reading {
                    preflight,
                    observed,
                },
            )
        });
    }
    let mut readings = BTreeMap::new();
    while let Some(joined) = reads.join_next().await {
        // A panicking adapter leaves its target without a reading, which
        // the report shows as a failed read.
        if let Ok((name, reading)) = joined {
            readings.insert(name, reading);
        }
    }
    readings
}

/// The live runs holding the platform identities preflight resolved, from
/// the state directory's journal. A state directory without a journal has
/// never recorded a run, so nothing holds a lock there; it is not opened
/// then, since opening creates it.
fn lock_holders(
    state_dir: &Path,
    readings: &BTreeMap<String, Reading>,
) -> Result<BTreeMap<String, Holder>, String> {
    let mut locks = BTreeMap::new();
    if !state_dir.join("journal.sqlite3").exists() {
        return Ok(locks);
    }
    let journal = Journal::open(state_dir).map_err(|error| error.to_string())?;
    for reading in readings.values() {
        let Ok(preflight) = &reading.preflight else {
            continue;
        };
        if let Some((run, holder)) = journal
            .lock_holder(&preflight.identity)
            .map_err(|error| error.to_string())?
        {
            locks.insert(preflight.identity.clone(), Holder { run, holder });
        }
    }
    Ok(locks)
}
