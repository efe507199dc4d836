//! Fault injection: the ways a simulated target can misbehave, chosen from
//! code (tests, `deployctl rehearse`) and entirely deterministic.
//!
//! Faults that fire a limited number of times ("the next 2 applies of
//! SetWeight are throttled") count their hits in the target's state, so in
//! a persisted world the count survives a crash of the process that was
//! using the target: a resumed run sees the remaining faults, not fresh ones.

use std::collections::BTreeMap;
use std::time::Duration;

use deployctl_adapter::{Action, AdapterError};
use serde::{Deserialize, Serialize};

/// The kind of an [`Action`], without its data: what a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ActionKind {
    Deploy,
    SetWeight,
    SetHeaderRoute,
    Promote,
    Retire,
    StartWave,
    Halt,
    Rollback,
}

impl ActionKind {
    pub fn of(action: &Action) -> ActionKind {
        match action {
            Action::Deploy { .. } => ActionKind::Deploy,
            Action::SetWeight { .. } => ActionKind::SetWeight,
            Action::SetHeaderRoute { .. } => ActionKind::SetHeaderRoute,
            Action::Promote => ActionKind::Promote,
            Action::Retire => ActionKind::Retire,
            Action::StartWave { .. } => ActionKind::StartWave,
            Action::Halt => ActionKind::Halt,
            Action::Rollback { .. } => ActionKind::Rollback,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Deploy => "Deploy",
            ActionKind::SetWeight => "SetWeight",
            ActionKind::SetHeaderRoute => "SetHeaderRoute",
            ActionKind::Promote => "Promote",
            ActionKind::Retire => "Retire",
            ActionKind::StartWave => "StartWave",
            ActionKind::Halt => "Halt",
            ActionKind::Rollback => "Rollback",
        }
    }
}

/// Which error an injected API fault returns; one per retry class the
/// engine distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ApiErrorKind {
    /// [`AdapterError::Throttled`] (transient).
    Throttled,
    /// [`AdapterError::Unavailable`] (transient).
    Unavailable,
    /// [`AdapterError::Timeout`] (transient).
    Timeout,
    /// [`AdapterError::Rejected`] (permanent).
    Rejected,
}

impl ApiErrorKind {
    /// The error an apply of `action` on `target` fails with.
    pub(crate) fn error(
        self,
        target: &str,
        action: ActionKind,
        request_id: String,
    ) -> AdapterError {
        let message = format!("simulated fault on {target} ({})", action.name());
        match self {
            // No retry-after: a delay here would make every engine test
            // that injects throttling slow in real time.
            ApiErrorKind::Throttled => AdapterError::Throttled {
                message,
                request_id: Some(request_id),
                retry_after: None,
            },
            ApiErrorKind::Unavailable => AdapterError::Unavailable {
                message,
                request_id: Some(request_id),
            },
            // A timed-out call has no response, so no request ID either.
            ApiErrorKind::Timeout => AdapterError::Timeout { message },
            ApiErrorKind::Rejected => AdapterError::Rejected {
                message,
                request_id: Some(request_id),
            },
        }
    }
}

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "camelCase", deny_unknown_fields)]
pub enum Fault {
    /// Health probes fail once a candidate is deployed with weight ≥
    /// `weight`; 0 means as soon as a candidate is deployed.
    UnhealthyFromWeight { weight: u8 },
    /// Health probes fail once a promoted version is the stable one (until
    /// a rollback moves away from it).
    UnhealthyAfterPromotion,
    /// The next `times` applies of `action` (every action when `None`)
    /// fail with `error` and change nothing.
    ApiErrors {
        action: Option<ActionKind>,
        error: ApiErrorKind,
        times: u32,
    },
    /// Every call (observe, apply, preflight, measure) takes this much
    /// longer, on top of the configured latency.
    Latency { per_call: Duration },
    /// The next `times` applies of `action` (every action when `None`)
    /// never complete. With `after_effect`, the change is made first and
    /// only the answer is lost: the engine's "maybe done" case.
    Hang {
        action: Option<ActionKind>,
        times: u32,
        after_effect: bool,
    },
    /// Every other health measurement fails (the first passes).
    FlappingHealth,
    /// This percentage of devices fails the update in wave rollouts. Which
    /// devices fail is fixed by the target's seed.
    DeviceFailures { percent: f64 },
}

/// The faults of one simulated target. Build with the chained methods:
///
/// ```
/// use deployctl_sim::{ActionKind, ApiErrorKind, SimFaults};
/// let faults = SimFaults::none()
///     .unhealthy_from_weight(50)
///     .api_errors(Some(ActionKind::SetWeight), ApiErrorKind::Throttled, 2);
/// assert_eq!(faults.faults.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SimFaults {
    /// In order: counted faults are identified by their position, so a
    /// process resuming on a persisted world must pass the same list.
    pub faults: Vec<Fault>,
    /// The success rate (percent) health probes report while a health
    /// fault is active.
    pub unhealthy_success_rate: f64,
}

impl Default for SimFaults {
    fn default() -> Self {
        SimFaults {
            faults: Vec::new(),
            unhealthy_success_rate: 50.0,
        }
    }
}

impl SimFaults {
    /// A well-behaved target.
    pub fn none() -> SimFaults {
        SimFaults::default()
    }

    pub fn with(mut self, fault: Fault) -> SimFaults {
        self.faults.push(fault);
        self
    }

    pub fn unhealthy_from_weight(self, weight: u8) -> SimFaults {
        self.with(Fault::UnhealthyFromWeight { weight })
    }

    pub fn unhealthy_after_promotion(self) -> SimFaults {
        self.with(Fault::UnhealthyAfterPromotion)
    }

    pub fn api_errors(
        self,
        action: Option<ActionKind>,
        error: ApiErrorKind,
        times: u32,
    ) -> SimFaults {
        self.with(Fault::ApiErrors {
            action,
            error,
            times,
        })
    }

    pub fn latency(self, per_call: Duration) -> SimFaults {
        self.with(Fault::Latency { per_call })
    }

    pub fn hang(self, action: Option<ActionKind>, times: u32) -> SimFaults {
        self.with(Fault::Hang {
            action,
            times,
            after_effect: false,
        })
    }

    pub fn hang_after_effect(self, action: Option<ActionKind>, times: u32) -> SimFaults {
        self.with(Fault::Hang {
            action,
            times,
            after_effect: true,
        })
    }

    pub fn flapping_health(self) -> SimFaults {
        self.with(Fault::FlappingHealth)
    }

    pub fn device_failures(self, percent: f64) -> SimFaults {
        self.with(Fault::DeviceFailures { percent })
    }

    pub fn with_unhealthy_success_rate(mut self, percent: f64) -> SimFaults {
        self.unhealthy_success_rate = percent;
        self
    }

    /// Latency added to every call.
    pub(crate) fn extra_latency(&self) -> Duration {
        self.faults
            .iter()
            .map(|fault| match fault {
                Fault::Latency { per_call } => *per_call,
                _ => Duration::ZERO,
            })
            .sum()
    }

    /// The lowest weight at which the candidate is unhealthy, if any.
    pub(crate) fn unhealthy_weight(&self) -> Option<u8> {
        self.faults
            .iter()
            .filter_map(|fault| match fault {
                Fault::UnhealthyFromWeight { weight } => Some(*weight),
                _ => None,
            })
            .min()
    }

    pub(crate) fn unhealthy_after_promotion_active(&self) -> bool {
        self.faults.contains(&Fault::UnhealthyAfterPromotion)
    }

    pub(crate) fn flapping(&self) -> bool {
        self.faults.contains(&Fault::FlappingHealth)
    }

    /// Percentage of devices that fail an update (the largest configured).
    pub(crate) fn device_failure_percent(&self) -> f64 {
        self.faults
            .iter()
            .filter_map(|fault| match fault {
                Fault::DeviceFailures { percent } => Some(percent.clamp(0.0, 100.0)),
                _ => None,
            })
            .fold(0.0, f64::max)
    }

    /// The first API-error fault for `action` with hits left: its position
    /// and error.
    pub(crate) fn next_api_error(
        &self,
        action: ActionKind,
        hits: &BTreeMap<usize, u32>,
    ) -> Option<(usize, ApiErrorKind)> {
        self.faults
            .iter()
            .enumerate()
            .find_map(|(at, fault)| match fault {
                Fault::ApiErrors {
                    action: on,
                    error,
                    times,
                } if matches(*on, action) && has_hits_left(hits, at, *times) => Some((at, *error)),
                _ => None,
            })
    }

    /// The first hang fault for `action` (before or after the effect, as
    /// asked) with hits left: its position.
    pub(crate) fn next_hang(
        &self,
        action: ActionKind,
        after: bool,
        hits: &BTreeMap<usize, u32>,
    ) -> Option<usize> {
        self.faults
            .iter()
            .enumerate()
            .find_map(|(at, fault)| match fault {
                Fault::Hang {
                    action: on,
                    times,
                    after_effect,
                } if *after_effect == after
                    && matches(*on, action)
                    && has_hits_left(hits, at, *times) =>
                {
                    Some(at)
                }
                _ => None,
            })
    }
}

fn matches(on: Option<ActionKind>, action: ActionKind) -> bool {
    on.is_none_or(|on| on == action)
}

fn has_hits_left(hits: &BTreeMap<usize, u32>, at: usize, times: u32) -> bool {
    hits.get(&at).copied().unwrap_or(0) < times
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_run_out() {
        let faults = SimFaults::none()
            .api_errors(Some(ActionKind::Deploy), ApiErrorKind::Unavailable, 2)
            .api_errors(None, ApiErrorKind::Rejected, 1);
        let mut hits = BTreeMap::new();
        assert_eq!(
            faults.next_api_error(ActionKind::Deploy, &hits),
            Some((0, ApiErrorKind::Unavailable))
        );
        hits.insert(0, 2);
        assert_eq!(
            faults.next_api_error(ActionKind::Deploy, &hits),
            Some((1, ApiErrorKind::Rejected))
        );
        hits.insert(1, 1);
        assert_eq!(faults.next_api_error(ActionKind::Deploy, &hits), None);
    }

    #[test]
    fn faults_round_trip_through_json() {
        let faults = SimFaults::none()
            .hang_after_effect(Some(ActionKind::Promote), 1)
            .latency(Duration::from_millis(5))
            .device_failures(12.5);
        let json = serde_json::to_string(&faults).unwrap();
        assert_eq!(serde_json::from_str::<SimFaults>(&json).unwrap(), faults);
        assert_eq!(faults.extra_latency(), Duration::from_millis(5));
        assert_eq!(faults.device_failure_percent(), 12.5);
    }
}
