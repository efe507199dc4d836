//! A journal written by the first release (format 1, kept as a fixture:
//! `tests/fixtures/journal-v1/`, made by that release's `apply`,
//! `rehearse` and `rollback` on the sandbox) reads as typed events.

use std::path::PathBuf;

use deployctl_engine::event::Event;
use deployctl_engine::journal::Journal;
use deployctl_engine::state::{RunMode, RunPhase};
use deployctl_plan::model::RollbackScope;

fn fixture_copy() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "deployctl-journal-v1-{}-{}",
        std::process::id(),
        deployctl_engine::run::new_run_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/journal-v1/journal.sqlite3"
        ),
        dir.join("journal.sqlite3"),
    )
    .unwrap();
    dir
}

#[test]
fn a_journal_of_the_first_release_reads_as_typed_events() {
    let dir = fixture_copy();
    let journal = Journal::open(&dir).expect("a format-1 journal opens");
    let runs = journal.runs(None, 10).unwrap();
    let phases: Vec<(RunMode, RunPhase)> = runs.iter().map(|r| (r.mode, r.phase)).collect();
    assert_eq!(
        phases,
        [
            (RunMode::Rehearse, RunPhase::Succeeded),
            (RunMode::Rehearse, RunPhase::RolledBack),
            (RunMode::Apply, RunPhase::RolledBack),
        ]
    );
    let mut kinds = std::collections::BTreeSet::new();
    for run in &runs {
        let events = journal.events(&run.id).expect("every event reads");
        for record in &events {
            assert_eq!(record.event.kind(), record.kind);
            kinds.insert(record.kind.clone());
        }
        journal.check_consistency(&run.id).unwrap();
        assert!(!journal.stages(&run.id).unwrap().is_empty());
    }
    for kind in [
        "runCreated",
        "preflight",
        "callIntent",
        "callDone",
        "gateResult",
        "approvalRequested",
        "approved",
        "rollbackStarted",
        "stageFailed",
        "notified",
        "step",
    ] {
        assert!(kinds.contains(kind), "the fixture has no {kind} event");
    }
    // The runbook rollback of the applied run: its scope and end as the
    // first release recorded them.
    let applied = runs.iter().find(|r| r.mode == RunMode::Apply).unwrap();
    let rollback = journal
        .events(&applied.id)
        .unwrap()
        .into_iter()
        .find_map(|record| match record.event {
            Event::RollbackStarted {
                scope, final_phase, ..
            } => Some((scope, final_phase)),
            _ => None,
        });
    assert_eq!(rollback, Some((RollbackScope::Plan, RunPhase::RolledBack)));
    // Opening upgraded the format; the journal still reads afterwards.
    drop(journal);
    let reopened = Journal::open(&dir).unwrap();
    assert_eq!(reopened.runs(None, 10).unwrap().len(), 3);
    std::fs::remove_dir_all(dir).unwrap();
}
