//! Simulated targets: in memory, for the sandbox and rehearsals. The
//! simulator stands in for every kind, so it supports every strategy and
//! every gate kind; it knows its own stable version, so the report can
//! name it without observing anything, and an artifact is just a version.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Kind;
use crate::model::{Capabilities, GateKind, StrategyKind};

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
}
