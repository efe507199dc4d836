//! The engine with a team backend: team locks are taken before a run is
//! recorded (a refusal leaves no run), renewed while it is driven, given
//! back when it ends, and a lock broken under a live run holds it. The
//! backend here is an in-memory stand-in for the trait; the S3 backend
//! itself is tested on moto (`adapters/aws-team`) and through the binary.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deployctl_adapter::BoxFuture;
use deployctl_adapter::team::{LockOwner, LockRecord, TeamLockError, TeamLocks};
use deployctl_engine::executor::{Engine, EngineError, EngineOptions};
use deployctl_engine::progress::ProgressSink;
use deployctl_engine::start::Refusal;
use deployctl_engine::state::RunPhase;
use deployctl_engine::team::TeamBackend;

use crate::support::{Harness, header};

#[derive(Default)]
struct MemoryLocks {
    locks: Mutex<BTreeMap<String, LockRecord>>,
    renewals: Mutex<u32>,
}

impl MemoryLocks {
    fn record(&self, key: &str) -> Option<LockRecord> {
        self.locks.lock().unwrap().get(key).cloned()
    }

    fn hold(&self, key: &str, owner: LockOwner) {
        self.locks
            .lock()
            .unwrap()
            .insert(key.to_owned(), held(key, owner));
    }
}

/// A lock `owner` holds on `key`, with a lease that never runs out.
fn held(key: &str, owner: LockOwner) -> LockRecord {
    LockRecord {
        target: key.to_owned(),
        owner,
        acquired_at: 0,
        renewed_at: 0,
        lease_until: i64::MAX,
        released: false,
        broken: None,
    }
}

impl TeamLocks for MemoryLocks {
    fn lease(&self) -> Duration {
        Duration::from_secs(3)
    }

    fn acquire<'a>(
        &'a self,
        keys: &'a [String],
        owner: &'a LockOwner,
    ) -> BoxFuture<'a, Result<(), TeamLockError>> {
        Box::pin(async move {
            let mut locks = self.locks.lock().unwrap();
            for key in keys {
                if let Some(held) = locks.get(key)
                    && !held.released
                    && held.owner.run != owner.run
                {
                    return Err(TeamLockError::Held {
                        target: key.clone(),
                        owner: held.owner.clone(),
                        lease_until_ms: held.lease_until,
                    });
                }
            }
            for key in keys {
                locks.insert(key.clone(), held(key, owner.clone()));
            }
            Ok(())
        })
    }

    fn renew<'a>(
        &'a self,
        keys: &'a [String],
        owner: &'a LockOwner,
    ) -> BoxFuture<'a, Result<(), TeamLockError>> {
        let run = owner.run.as_str();
        Box::pin(async move {
            *self.renewals.lock().unwrap() += 1;
            let locks = self.locks.lock().unwrap();
            for key in keys {
                match locks.get(key) {
                    Some(held) if held.owner.run == run && !held.released => {}
                    _ => {
                        return Err(TeamLockError::Lost {
                            target: key.clone(),
                            run: run.to_owned(),
                            detail: "broken".into(),
                        });
                    }
                }
            }
            Ok(())
        })
    }

    fn release<'a>(
        &'a self,
        keys: &'a [String],
        owner: &'a LockOwner,
    ) -> BoxFuture<'a, Result<(), TeamLockError>> {
        let run = owner.run.as_str();
        Box::pin(async move {
            let mut locks = self.locks.lock().unwrap();
            for key in keys {
                if let Some(held) = locks.get_mut(key)
                    && held.owner.run == run
                {
                    held.released = true;
                }
            }
            Ok(())
        })
    }

    fn inspect<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<LockRecord>, TeamLockError>> {
        Box::pin(async move { Ok(self.record(key)) })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<LockRecord>, TeamLockError>> {
        Box::pin(async move { Ok(self.locks.lock().unwrap().values().cloned().collect()) })
    }

    fn break_lock<'a>(
        &'a self,
        key: &'a str,
        _by: &'a str,
        _reason: &'a str,
    ) -> BoxFuture<'a, Result<LockRecord, TeamLockError>> {
        Box::pin(async move {
            let mut locks = self.locks.lock().unwrap();
            let held = locks.get_mut(key).ok_or(TeamLockError::NotLocked {
                target: key.to_owned(),
            })?;
            let before = held.clone();
            held.released = true;
            Ok(before)
        })
    }
}

fn engine(harness: &Harness, locks: &Arc<MemoryLocks>) -> Engine {
    Engine::new(
        harness.journal.clone(),
        EngineOptions {
            team: Some(TeamBackend {
                locks: locks.clone(),
                runs: None,
            }),
            ..EngineOptions::default()
        },
        ProgressSink::default(),
    )
}

fn canary() -> String {
    header(&["api"])
        + "stages:
  - {name: api, target: api, canary: {steps: [{setWeight: 10}, {pause: {duration: 1m}}, {setWeight: 50}]}}
"
}

#[tokio::test(start_paused = true)]
async fn a_team_lock_held_on_another_pc_refuses_the_run_and_records_nothing() {
    let harness = Harness::new(&canary(), &[]);
    let locks = Arc::new(MemoryLocks::default());
    let identity = harness.sims["api"].identity();
    locks.hold(
        &identity,
        LockOwner {
            run: "run-elsewhere".into(),
            pc: "pc-a".into(),
            operator: "alice".into(),
            environment: "test".into(),
        },
    );
    let refusal = engine(&harness, &locks)
        .start(&harness.context(), &harness.request())
        .await
        .unwrap_err();
    let message = refusal.to_string();
    let EngineError::Refused(Refusal::Locked {
        run,
        holder,
        target,
    }) = refusal
    else {
        panic!("not a lock refusal: {message}");
    };
    assert_eq!(
        (run.as_str(), holder.as_str(), target.as_str()),
        (
            "run-elsewhere",
            "operator alice on PC pc-a",
            identity.as_str()
        )
    );
    assert!(harness.journal.runs(None, 10).unwrap().is_empty(), "no run");
    assert!(harness.sims["api"].effects().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_run_holds_its_team_lock_while_driven_and_gives_it_back_when_it_ends() {
    let harness = Harness::new(&canary(), &[]);
    let locks = Arc::new(MemoryLocks::default());
    let engine = engine(&harness, &locks);
    let context = harness.context();
    engine.start(&context, &harness.request()).await.unwrap();
    let identity = harness.sims["api"].identity();
    let held = locks.record(&identity).expect("the team lock");
    assert!(!held.released);
    assert_eq!(held.owner.run, harness.run_id);
    assert_eq!(held.owner.environment, harness.plan.metadata.environment);

    let outcome = engine.execute(&context).await.unwrap();
    assert_eq!(outcome.phase, RunPhase::Succeeded, "{}", outcome.message);
    assert!(locks.record(&identity).unwrap().released, "given back");
    // The one-minute pause outlasts the 3 s lease many times: renewed.
    assert!(*locks.renewals.lock().unwrap() >= 10);
}

#[tokio::test(start_paused = true)]
async fn a_team_lock_broken_under_a_live_run_holds_it_before_its_next_step() {
    let harness = Harness::new(&canary(), &[]);
    let locks = Arc::new(MemoryLocks::default());
    let engine = Arc::new(engine(&harness, &locks));
    let context = harness.context();
    engine.start(&context, &harness.request()).await.unwrap();
    let identity = harness.sims["api"].identity();
    let driving = {
        let (engine, context) = (engine.clone(), harness.context());
        tokio::spawn(async move { engine.execute(&context).await })
    };
    // During the pause at 10 %, an operator elsewhere breaks the lock.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(harness.observed("api").await.2, 10);
    locks
        .break_lock(&identity, "bob", "thought it dead")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert!(
        harness.journal.hold_state(&harness.run_id).unwrap().held,
        "the run is held"
    );
    assert_eq!(
        harness.observed("api").await.2,
        10,
        "nothing moved past the pause"
    );
    assert!(!driving.is_finished());
    driving.abort();
}
