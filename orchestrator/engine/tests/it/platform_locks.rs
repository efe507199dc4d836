//! Platform locks (a Kubernetes Lease beside the Deployment) through the
//! engine: taken before a run is recorded (held by another driver: the run
//! is refused and nothing is recorded), renewed while it is driven, given
//! back when it ends; one taken from a live run holds it for a human. The
//! lock here is an in-memory stand-in for the trait; the Lease itself is
//! tested through the binary on the test API server (`kube_e2e`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use deployctl_adapter::team::{LockOwner, PlatformLock, TeamLockError};
use deployctl_adapter::{AdapterError, BoxFuture, HealthProbe, Moves, Observed, Preflight, Target};
use deployctl_engine::executor::{EngineError, RunContext};
use deployctl_engine::start::Refusal;
use deployctl_engine::state::RunPhase;
use deployctl_plan::model::{GateCheck, TargetKind};
use deployctl_sim::SimTarget;

use crate::support::{Harness, header};

#[derive(Default)]
struct MemoryLease {
    holder: Mutex<Option<LockOwner>>,
    renewals: Mutex<u32>,
}

impl MemoryLease {
    fn holder(&self) -> Option<LockOwner> {
        self.holder.lock().unwrap().clone()
    }
}

impl PlatformLock for MemoryLease {
    fn place(&self) -> String {
        "Lease test/deployctl-lock-api".into()
    }

    fn lease(&self) -> Duration {
        Duration::from_secs(3)
    }

    fn acquire<'a>(&'a self, owner: &'a LockOwner) -> BoxFuture<'a, Result<(), TeamLockError>> {
        Box::pin(async move {
            let mut holder = self.holder.lock().unwrap();
            match holder.as_ref() {
                Some(held) if held.run != owner.run => Err(TeamLockError::Held {
                    target: self.place(),
                    owner: held.clone(),
                    lease_until_ms: i64::MAX,
                }),
                _ => {
                    *holder = Some(owner.clone());
                    Ok(())
                }
            }
        })
    }

    fn renew<'a>(&'a self, owner: &'a LockOwner) -> BoxFuture<'a, Result<(), TeamLockError>> {
        Box::pin(async move {
            *self.renewals.lock().unwrap() += 1;
            match self.holder.lock().unwrap().as_ref() {
                Some(held) if held.run == owner.run => Ok(()),
                _ => Err(TeamLockError::Lost {
                    target: self.place(),
                    run: owner.run.clone(),
                    detail: "taken".into(),
                }),
            }
        })
    }

    fn release<'a>(&'a self, owner: &'a LockOwner) -> BoxFuture<'a, Result<(), TeamLockError>> {
        Box::pin(async move {
            let mut holder = self.holder.lock().unwrap();
            if holder.as_ref().is_some_and(|held| held.run == owner.run) {
                *holder = None;
            }
            Ok(())
        })
    }
}

/// A simulator whose platform keeps a lock for it.
struct Leased {
    sim: Arc<SimTarget>,
    lease: Arc<MemoryLease>,
}

impl Target for Leased {
    fn name(&self) -> &str {
        self.sim.name()
    }

    fn kind(&self) -> TargetKind {
        self.sim.kind()
    }

    fn observe(&self) -> BoxFuture<'_, Result<Observed, AdapterError>> {
        self.sim.observe()
    }

    fn preflight(&self) -> BoxFuture<'_, Result<Preflight, AdapterError>> {
        self.sim.preflight()
    }

    fn moves(&self) -> Moves<'_> {
        self.sim.moves()
    }

    fn probe(&self, check: &GateCheck) -> Option<Box<dyn HealthProbe>> {
        self.sim.probe(check)
    }

    fn platform_lock(&self) -> Option<Arc<dyn PlatformLock>> {
        Some(self.lease.clone())
    }
}

fn canary() -> String {
    header(&["api"])
        + "stages:
  - {name: api, target: api, canary: {steps: [{setWeight: 10}, {pause: {duration: 1m}}, {setWeight: 50}]}}
"
}

fn leased(harness: &Harness, lease: &Arc<MemoryLease>) -> RunContext {
    let mut context = harness.context();
    context.targets.insert(
        "api".into(),
        Arc::new(Leased {
            sim: harness.sims["api"].clone(),
            lease: lease.clone(),
        }),
    );
    context
}

#[tokio::test(start_paused = true)]
async fn a_platform_lock_held_by_another_driver_refuses_the_run_and_records_nothing() {
    let harness = Harness::new(&canary(), &[]);
    let lease = Arc::new(MemoryLease::default());
    *lease.holder.lock().unwrap() = Some(LockOwner {
        run: "run-of-a-release".into(),
        pc: "deployctl-controller-0".into(),
        operator: "alice".into(),
        environment: "test".into(),
    });
    let refusal = harness
        .engine()
        .start(&leased(&harness, &lease), &harness.request())
        .await
        .unwrap_err();
    let message = refusal.to_string();
    let EngineError::Refused(Refusal::Locked { run, holder, .. }) = refusal else {
        panic!("not a lock refusal: {message}");
    };
    assert_eq!(run, "run-of-a-release");
    assert_eq!(
        holder,
        "operator alice on deployctl-controller-0 (Lease test/deployctl-lock-api)"
    );
    assert!(harness.journal.runs(None, 10).unwrap().is_empty(), "no run");
    assert!(harness.sims["api"].effects().unwrap().is_empty());
    assert_eq!(lease.holder().unwrap().run, "run-of-a-release", "untouched");
}

#[tokio::test(start_paused = true)]
async fn a_run_holds_its_platform_lock_while_driven_and_gives_it_back_when_it_ends() {
    let harness = Harness::new(&canary(), &[]);
    let lease = Arc::new(MemoryLease::default());
    let engine = harness.engine();
    let context = leased(&harness, &lease);
    engine.start(&context, &harness.request()).await.unwrap();
    let holder = lease.holder().expect("taken before the run is driven");
    assert_eq!(holder.run, harness.run_id);
    assert_eq!(holder.environment, harness.plan.metadata.environment);

    // A process that died before driving: the next one takes it again as
    // the same run's and drives it to the end.
    let resumed = harness.engine();
    let outcome = resumed.execute(&context).await.unwrap();
    assert_eq!(outcome.phase, RunPhase::Succeeded, "{}", outcome.message);
    assert_eq!(lease.holder(), None, "given back");
    // The one-minute pause outlasts the 3 s lease many times: renewed.
    assert!(*lease.renewals.lock().unwrap() >= 10);
}

#[tokio::test(start_paused = true)]
async fn a_platform_lock_taken_from_a_live_run_holds_it_before_its_next_step() {
    let harness = Harness::new(&canary(), &[]);
    let lease = Arc::new(MemoryLease::default());
    let engine = Arc::new(harness.engine());
    let context = leased(&harness, &lease);
    engine.start(&context, &harness.request()).await.unwrap();
    let driving = {
        let (engine, context) = (engine.clone(), leased(&harness, &lease));
        tokio::spawn(async move { engine.execute(&context).await })
    };
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(harness.observed("api").await.2, 10);
    // Someone deletes the Lease and another driver takes it.
    *lease.holder.lock().unwrap() = Some(LockOwner {
        run: "another".into(),
        pc: "pc-b".into(),
        operator: "bob".into(),
        environment: "test".into(),
    });
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert!(
        harness.journal.hold_state(&harness.run_id).unwrap().held,
        "the run is held"
    );
    assert_eq!(harness.observed("api").await.2, 10, "nothing moved");
    assert!(!driving.is_finished());
    driving.abort();
}
