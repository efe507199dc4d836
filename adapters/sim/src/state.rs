//! What a simulated target is, as data: the state kept in memory or in a
//! sim world file, and how it reads as an [`Observed`].

use std::collections::BTreeMap;

use deployctl_adapter::{Observed, WaveProgress};
use deployctl_plan::model::{HeaderMatch, TargetKind};
use serde::{Deserialize, Serialize};

use crate::config::SimConfig;
use crate::effects::EffectsLog;

/// The version of the sim world file format.
pub const STATE_FORMAT: u32 = 1;

/// A simulated target's whole state. In a persisted world this is the JSON
/// file, re-read on every call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SimState {
    /// [`STATE_FORMAT`] when written.
    pub format: u32,
    /// The target's name, for people reading the file.
    pub target: String,
    /// The version serving all traffic not sent to the candidate.
    pub stable: String,
    /// The new version, deployed beside the stable one (or being rolled
    /// out to devices).
    pub candidate: Option<String>,
    /// Percent of traffic on the candidate.
    pub weight: u8,
    /// The version that was stable before the last promotion, still
    /// running until `Retire` (blue during a blue-green scale-down delay).
    pub previous: Option<String>,
    /// The last version promoted; health faults "after promotion" apply
    /// while it is the stable one.
    pub promoted: Option<String>,
    /// The kill switch was used: nothing more is dispatched.
    pub halted: bool,
    /// The candidate's header routes by name (`setHeaderRoute`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub header_routes: BTreeMap<String, Vec<HeaderMatch>>,
    pub fleet: FleetState,
    /// Platform calls made so far; numbers the request IDs.
    pub requests: u64,
    /// How often each counted fault (by position in `SimFaults::faults`)
    /// has fired.
    pub fault_hits: BTreeMap<usize, u32>,
    pub effects: EffectsLog,
}

/// The simulated device fleet, for wave rollouts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetState {
    pub size: u32,
    /// Devices told to update so far; devices `0..dispatched` in order.
    pub dispatched: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub waves_started: u32,
}

impl FleetState {
    pub(crate) fn reported(&self) -> u32 {
        self.succeeded + self.failed
    }

    /// Back to "no device updated", keeping the fleet's size.
    pub(crate) fn reset(&mut self) {
        *self = FleetState {
            size: self.size,
            ..FleetState::default()
        };
    }
}

impl SimState {
    /// A fresh target on its stable version.
    pub fn initial(config: &SimConfig) -> SimState {
        SimState {
            format: STATE_FORMAT,
            target: config.name.clone(),
            stable: config.stable_version.clone(),
            candidate: None,
            weight: 0,
            previous: None,
            promoted: None,
            halted: false,
            header_routes: BTreeMap::new(),
            fleet: FleetState {
                size: config.fleet_size,
                ..FleetState::default()
            },
            requests: 0,
            fault_hits: BTreeMap::new(),
            effects: EffectsLog::default(),
        }
    }

    /// The state as far as an [`Observed`] tells it, for the pure `plan`:
    /// what `Observed` does not carry (the previous version, fault counts,
    /// the log) is left empty.
    pub(crate) fn from_observed(name: &str, observed: &Observed) -> SimState {
        let waves = observed.waves.clone().unwrap_or_default();
        SimState {
            format: STATE_FORMAT,
            target: name.to_string(),
            stable: observed.stable.clone().unwrap_or_default(),
            candidate: observed.candidate.clone(),
            weight: observed.weight,
            previous: None,
            promoted: None,
            halted: waves.halted,
            header_routes: BTreeMap::new(),
            fleet: FleetState {
                size: waves.fleet_size,
                dispatched: waves.dispatched,
                succeeded: waves.succeeded,
                failed: waves.failed,
                waves_started: waves.waves_started,
            },
            requests: 0,
            fault_hits: BTreeMap::new(),
            effects: EffectsLog::default(),
        }
    }

    /// Whether wave progress is part of what the target reports: always
    /// for fleets, and for other simulated kinds once waves or the kill
    /// switch were used (a canary target has no devices to talk about).
    pub(crate) fn shows_waves(&self, kind: TargetKind) -> bool {
        kind == TargetKind::Fleet || self.fleet.waves_started > 0 || self.halted
    }

    pub fn observed(&self, kind: TargetKind) -> Observed {
        Observed {
            stable: Some(self.stable.clone()),
            candidate: self.candidate.clone(),
            weight: self.weight,
            waves: self.shows_waves(kind).then_some(WaveProgress {
                fleet_size: self.fleet.size,
                dispatched: self.fleet.dispatched,
                succeeded: self.fleet.succeeded,
                failed: self.fleet.failed,
                // Devices report as soon as they are dispatched; see fleet.rs.
                timed_out: 0,
                waves_started: self.fleet.waves_started,
                halted: self.halted,
            }),
        }
    }

    /// The next request ID, `sim-<target>-<n>`, counting the call.
    pub(crate) fn next_request_id(&mut self) -> String {
        self.requests += 1;
        format!("sim-{}-{}", self.target, self.requests)
    }

    pub(crate) fn count_fault_hit(&mut self, fault: usize) {
        *self.fault_hits.entry(fault).or_default() += 1;
    }
}
