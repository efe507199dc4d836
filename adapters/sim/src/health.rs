//! Simulated health: what a simulated target's probes measure.
//!
//! A healthy service answers 100% of requests; while a health fault is
//! active it answers `SimFaults::unhealthy_success_rate` percent. Fleets
//! are measured by their devices' reports instead.

use deployctl_adapter::{BoxFuture, HealthProbe, Measurement};
use deployctl_plan::model::{GateCheck, GateKind};

use crate::faults::SimFaults;
use crate::fleet;
use crate::state::SimState;
use crate::target::SimTarget;

/// What one probe measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ProbeKind {
    /// `sim` gates: the service's success rate.
    SuccessRate { min: f64 },
    /// `kubernetes` gates: the share of ready pods.
    Readiness { min: f64 },
    /// `fleet` gates: the success rate of devices that reported.
    Devices { min: f64 },
    /// Gates measured outside any target (http, prometheus, cloudwatch),
    /// replaced in rehearsals by the service's simulated health.
    StandIn { gate: GateKind },
}

impl ProbeKind {
    pub(crate) fn for_check(check: &GateCheck) -> ProbeKind {
        match check {
            GateCheck::Sim { min_success_rate } => ProbeKind::SuccessRate {
                min: *min_success_rate,
            },
            GateCheck::Kubernetes { min_ready_percent } => ProbeKind::Readiness {
                min: *min_ready_percent,
            },
            // The simulator has no anomaly detector: its devices report
            // no anomalies, so only the success rate can fail the gate.
            GateCheck::Fleet {
                min_success_rate, ..
            } => ProbeKind::Devices {
                min: *min_success_rate,
            },
            GateCheck::Http { .. }
            | GateCheck::Prometheus { .. }
            | GateCheck::CloudWatch { .. } => ProbeKind::StandIn { gate: check.kind() },
        }
    }
}

/// A probe reading a simulated target.
pub(crate) struct SimProbe {
    pub(crate) target: SimTarget,
    pub(crate) kind: ProbeKind,
}

impl HealthProbe for SimProbe {
    fn measure(&self) -> BoxFuture<'_, Measurement> {
        Box::pin(async move {
            self.target.pause().await;
            let state = match self.target.state() {
                Ok(state) => state,
                Err(error) => {
                    return Measurement::Error {
                        detail: error.to_string(),
                    };
                }
            };
            let flap =
                self.target.config().faults.flapping() && self.target.next_measurement() % 2 == 1;
            measure(&state, &self.target.config().faults, flap, self.kind)
        })
    }
}

/// The service's success rate (percent) and whether a fault degrades it.
fn service_health(state: &SimState, faults: &SimFaults, flap: bool) -> (f64, bool) {
    let from_weight = faults
        .unhealthy_weight()
        .is_some_and(|weight| state.candidate.is_some() && state.weight >= weight);
    let after_promotion =
        faults.unhealthy_after_promotion_active() && state.promoted.as_ref() == Some(&state.stable);
    if from_weight || after_promotion || flap {
        (faults.unhealthy_success_rate, true)
    } else {
        (100.0, false)
    }
}

/// One measurement of `state`. `flap` is whether a flapping fault makes
/// this particular measurement fail.
pub(crate) fn measure(
    state: &SimState,
    faults: &SimFaults,
    flap: bool,
    kind: ProbeKind,
) -> Measurement {
    let (rate, degraded) = service_health(state, faults, flap);
    match kind {
        ProbeKind::SuccessRate { min } => judge(rate, min, "simulated success rate"),
        ProbeKind::Readiness { min } => judge(rate, min, "simulated pods ready"),
        ProbeKind::Devices { min } => match fleet::success_rate(&state.fleet) {
            None => Measurement::NoData {
                detail: "no device has reported yet".into(),
            },
            Some(devices) => {
                let devices = if flap {
                    devices.min(faults.unhealthy_success_rate)
                } else {
                    devices
                };
                judge(
                    devices,
                    min,
                    &format!("{} devices reported, success rate", state.fleet.reported()),
                )
            }
        },
        ProbeKind::StandIn { gate } => {
            let detail = format!(
                "simulated {} gate: service success rate {rate}%",
                gate.name()
            );
            if degraded {
                Measurement::Fail {
                    value: Some(rate),
                    detail,
                }
            } else {
                Measurement::Pass {
                    value: Some(rate),
                    detail,
                }
            }
        }
    }
}

fn judge(value: f64, min: f64, what: &str) -> Measurement {
    let detail = format!("{what} {value}% (minimum {min}%)");
    if value >= min {
        Measurement::Pass {
            value: Some(value),
            detail,
        }
    } else {
        Measurement::Fail {
            value: Some(value),
            detail,
        }
    }
}
