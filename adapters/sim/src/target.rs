//! [`SimTarget`]: a simulated deploy target implementing the adapter
//! contract (`docs/adapter-contract.md`) for every kind of target.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deployctl_adapter::{
    Action, AdapterError, Applied, BoxFuture, Capabilities, HealthProbe, IdempotencyKey, Moves,
    Observed, PlannedCall, Preflight, Target, TrafficAction, TrafficTarget, WaveAction, WaveTarget,
};
use deployctl_plan::model::{GateCheck, GateKind, TargetKind};

use crate::config::SimConfig;
use crate::effects::EffectsLog;
use crate::error::SimError;
use crate::faults::ActionKind;
use crate::health::{ProbeKind, SimProbe};
use crate::rules;
use crate::state::SimState;
use crate::store::Store;

/// A simulated target. Cheap to clone: clones share the same state, so a
/// test can keep a handle on a target the engine owns.
#[derive(Clone)]
pub struct SimTarget {
    inner: Arc<Inner>,
}

struct Inner {
    config: SimConfig,
    store: Store,
    /// Health measurements taken through this handle, for flapping health.
    /// Per process on purpose: it is measurement noise, not target state.
    measurements: AtomicU64,
}

/// What one apply came to, decided while the state is locked.
enum Outcome {
    Done(Applied),
    Failed(AdapterError),
    /// An injected hang: the call never answers.
    Hang,
}

impl fmt::Debug for SimTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let store = match self.inner.store {
            Store::Memory(_) => "memory",
            Store::World(_) => "world",
        };
        f.debug_struct("SimTarget")
            .field("name", &self.inner.config.name)
            .field("kind", &self.inner.config.kind)
            .field("store", &store)
            .finish_non_exhaustive()
    }
}

impl SimTarget {
    /// A target whose state lives in this process only. For a target
    /// several processes share, see [`crate::SimWorld::target`].
    pub fn in_memory(config: SimConfig) -> SimTarget {
        let state = SimState::initial(&config);
        SimTarget::with_store(config, Store::Memory(Mutex::new(state)))
    }

    pub(crate) fn with_store(config: SimConfig, store: Store) -> SimTarget {
        SimTarget {
            inner: Arc::new(Inner {
                config,
                store,
                measurements: AtomicU64::new(0),
            }),
        }
    }

    pub fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    /// The whole current state (fresh from the world file when persisted),
    /// without the simulated latency.
    pub fn state(&self) -> Result<SimState, SimError> {
        self.inner.store.load()
    }

    /// Every change applied so far.
    pub fn effects(&self) -> Result<EffectsLog, SimError> {
        Ok(self.state()?.effects)
    }

    /// A probe for any gate, for rehearsals: gates this target measures
    /// itself (sim, kubernetes, fleet) as [`Target::probe`] would, and gates
    /// measured elsewhere (http, prometheus, cloudwatch) by this target's
    /// simulated health, passing while no health fault is active.
    pub fn simulated_probe(&self, check: &GateCheck) -> Box<dyn HealthProbe> {
        Box::new(SimProbe {
            target: self.clone(),
            kind: ProbeKind::for_check(check),
        })
    }

    /// Waits out the simulated latency of one call.
    pub(crate) async fn pause(&self) {
        let latency = self.inner.config.call_latency();
        // Skipped when zero so that a latency-free target answers within
        // one poll.
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }

    /// What this simulator is, for locks: its world file when persisted
    /// (every process sharing the world sees the same target), this very
    /// instance when in memory.
    pub fn identity(&self) -> String {
        match &self.inner.store {
            Store::World(file) => format!("sim:{}", file.path().display()),
            Store::Memory(_) => format!(
                "sim:memory/{}#{:x}",
                self.inner.config.name,
                Arc::as_ptr(&self.inner) as usize
            ),
        }
    }

    /// What the simulated kind supports: a fleet takes waves, CloudFront
    /// at most 15 %, a plain simulator anything.
    fn capabilities(&self) -> Capabilities {
        let kind = self.inner.config.kind;
        match kind {
            TargetKind::Fleet => Capabilities::waves(),
            TargetKind::Sim => Capabilities {
                waves: true,
                header_routes: true,
                ..Capabilities::weights_up_to(100)
            },
            // A rehearsed Kubernetes target stands for one with a route.
            TargetKind::Kubernetes => Capabilities {
                header_routes: true,
                ..Capabilities::weights_up_to(100)
            },
            _ => Capabilities::weights_up_to(kind.capabilities().max_canary_weight),
        }
    }

    pub(crate) fn next_measurement(&self) -> u64 {
        self.inner.measurements.fetch_add(1, Ordering::Relaxed)
    }

    /// Applies `action` to `state` (a copy; committed when the bool says
    /// so): injected faults first, then idempotence, then the change.
    fn decide(
        &self,
        state: &mut SimState,
        action: &Action,
        key: &IdempotencyKey,
    ) -> (Outcome, bool) {
        let config = &self.inner.config;
        let faults = &config.faults;
        let kind = ActionKind::of(action);

        if let Some((fault, error)) = faults.next_api_error(kind, &state.fault_hits) {
            state.count_fault_hit(fault);
            let request_id = state.next_request_id();
            return (
                Outcome::Failed(error.error(&config.name, kind, request_id)),
                true,
            );
        }
        if let Some(fault) = faults.next_hang(kind, false, &state.fault_hits) {
            // Counted before hanging, so the engine's retry gets through.
            state.count_fault_hit(fault);
            return (Outcome::Hang, true);
        }
        if rules::is_present(state, action, true) {
            // Answered from a read: no platform write, no request ID, no log.
            let applied = Applied {
                changed: false,
                request_ids: Vec::new(),
            };
            return (Outcome::Done(applied), false);
        }

        let before = state.clone();
        let cx = rules::Context {
            release: config.release_version.as_deref(),
            seed: config.seed,
            device_failure_percent: faults.device_failure_percent(),
        };
        if let Err(reason) = rules::change(state, action, &cx) {
            *state = before;
            let request_id = state.next_request_id();
            let error = AdapterError::Rejected {
                message: format!("sim target {} refused to {action}: {reason}", config.name),
                request_id: Some(request_id),
            };
            return (Outcome::Failed(error), true);
        }

        let request_id = state.next_request_id();
        let after = state.observed(config.kind);
        state.effects.push(key, action, request_id.clone(), after);
        if let Some(fault) = faults.next_hang(kind, true, &state.fault_hits) {
            // The change is made (and committed with the log entry); only
            // the answer is lost.
            state.count_fault_hit(fault);
            return (Outcome::Hang, true);
        }
        let applied = Applied {
            changed: true,
            request_ids: vec![request_id],
        };
        (Outcome::Done(applied), true)
    }
}

/// Never completes, but as a tokio timer so tests with paused time can
/// time it out (or run past it) without waiting.
async fn hang(target: &str) -> AdapterError {
    tokio::time::sleep(Duration::MAX).await;
    AdapterError::Timeout {
        message: format!("simulated hang on {target}"),
    }
}

impl Target for SimTarget {
    fn name(&self) -> &str {
        &self.inner.config.name
    }

    fn kind(&self) -> TargetKind {
        self.inner.config.kind
    }

    fn observe(&self) -> BoxFuture<'_, Result<Observed, AdapterError>> {
        Box::pin(async move {
            self.pause().await;
            Ok(self.state()?.observed(self.kind()))
        })
    }

    fn preflight(&self) -> BoxFuture<'_, Result<Preflight, AdapterError>> {
        Box::pin(async move {
            self.pause().await;
            let state = self.state()?;
            Ok(Preflight {
                verified: Vec::new(),
                detail: format!(
                    "simulated: {} is running and can take all traffic",
                    state.stable
                ),
                stable_version: state.stable,
                rollback_ready: true,
                identity: self.identity(),
                capabilities: self.capabilities(),
            })
        })
    }

    fn moves(&self) -> Moves<'_> {
        // A simulator stands in for every kind: which actions its kind
        // takes is `rules::check`'s to say.
        Moves {
            traffic: Some(self),
            waves: Some(self),
        }
    }

    fn probe(&self, check: &GateCheck) -> Option<Box<dyn HealthProbe>> {
        let target_bound = matches!(
            check.kind(),
            GateKind::Kubernetes | GateKind::Fleet | GateKind::Sim
        );
        let declared = self.kind().capabilities().gates.contains(&check.kind());
        (target_bound && declared).then(|| self.simulated_probe(check))
    }
}

impl TrafficTarget for SimTarget {
    fn plan_traffic(
        &self,
        observed: &Observed,
        action: &TrafficAction,
    ) -> Result<Vec<PlannedCall>, AdapterError> {
        self.plan_any(observed, &action.clone().into())
    }

    fn apply_traffic<'a>(
        &'a self,
        action: &'a TrafficAction,
        key: &'a IdempotencyKey,
    ) -> BoxFuture<'a, Result<Applied, AdapterError>> {
        Box::pin(async move { self.apply_any(&action.clone().into(), key).await })
    }
}

impl WaveTarget for SimTarget {
    fn plan_wave(
        &self,
        observed: &Observed,
        action: &WaveAction,
    ) -> Result<Vec<PlannedCall>, AdapterError> {
        self.plan_any(observed, &action.clone().into())
    }

    fn apply_wave<'a>(
        &'a self,
        action: &'a WaveAction,
        key: &'a IdempotencyKey,
    ) -> BoxFuture<'a, Result<Applied, AdapterError>> {
        Box::pin(async move { self.apply_any(&action.clone().into(), key).await })
    }
}

impl SimTarget {
    fn plan_any(
        &self,
        observed: &Observed,
        action: &Action,
    ) -> Result<Vec<PlannedCall>, AdapterError> {
        rules::check(self.kind(), action)?;
        let state = SimState::from_observed(self.name(), observed);
        if rules::is_present(&state, action, false) {
            return Ok(Vec::new());
        }
        Ok(vec![PlannedCall {
            description: rules::describe(self.name(), &state, action),
        }])
    }

    async fn apply_any(
        &self,
        action: &Action,
        key: &IdempotencyKey,
    ) -> Result<Applied, AdapterError> {
        {
            // Refused before any call: declared, not discovered.
            rules::check(self.kind(), action)?;
            // The only await before the change: dropping the future here
            // leaves the target untouched.
            self.pause().await;
            let outcome = self
                .inner
                .store
                .update(|state| self.decide(state, action, key))?;
            match outcome {
                Outcome::Done(applied) => Ok(applied),
                Outcome::Failed(error) => Err(error),
                Outcome::Hang => Err(hang(self.name()).await),
            }
        }
    }
}
