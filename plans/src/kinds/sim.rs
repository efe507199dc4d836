//! Simulated targets: in memory, for the sandbox and rehearsals. The
//! simulator stands in for every kind, so it supports every strategy and
//! every gate kind; it knows its own stable version, so the report can
//! name it without observing anything, and an artifact is just a version.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Kind, Source, Spec};
use crate::check::Checker;
use crate::model::{Capabilities, GateKind, StrategyKind, TargetKind, TargetSpec};
use crate::raw;

/// A simulated target living in memory: the sandbox and rehearsals use it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SimTarget {
    /// The version the simulator starts on (the stable version).
    #[serde(default)]
    pub stable_version: Option<String>,
    /// Milliseconds each simulated API call takes.
    #[serde(default)]
    pub latency_ms: Option<i64>,
}

/// A checked simulated target.
#[derive(Debug, Clone, PartialEq)]
pub struct SimSpec {
    pub stable_version: String,
    pub latency: Duration,
}

pub(crate) struct Sim;

impl Kind for Sim {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn label(&self) -> &'static str {
        "simulated"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            strategies: &[
                StrategyKind::Canary,
                StrategyKind::BlueGreen,
                StrategyKind::Waves,
            ],
            gates: &[
                GateKind::Http,
                GateKind::Prometheus,
                GateKind::CloudWatch,
                GateKind::Kubernetes,
                GateKind::Fleet,
                GateKind::Sim,
            ],
            max_canary_weight: 100,
        }
    }

    fn artifact_sources(&self) -> &'static [&'static Source] {
        &[]
    }

    fn is_written(&self, target: &raw::Target) -> bool {
        target.sim.is_some()
    }

    fn check(&self, checker: &mut Checker, path: &str, target: &raw::Target) -> Option<TargetSpec> {
        let sim = target.sim.clone().unwrap_or_default();
        let latency = match sim.latency_ms {
            Some(ms) => checker
                .int_in(&format!("{path}.sim.latencyMs"), ms, 0, 60_000)
                .map_or(Duration::ZERO, |ms| Duration::from_millis(ms.into())),
            None => Duration::ZERO,
        };
        Some(TargetSpec::Sim(SimSpec {
            stable_version: sim.stable_version.unwrap_or_else(|| "stable".to_string()),
            latency,
        }))
    }
}

impl Spec for SimSpec {
    fn kind(&self) -> TargetKind {
        TargetKind::Sim
    }

    fn known_stable(&self) -> Option<&str> {
        Some(&self.stable_version)
    }

    /// A simulator takes every step a real target can.
    fn header_routes_refused(&self, _target: &str) -> Option<(String, String)> {
        None
    }

    fn rollback(&self, _strategy: StrategyKind, stable: &str) -> String {
        format!("simulated traffic back to the stable version ({stable})")
    }
}
