//! How a simulated target is set up: what it stands in for, where it
//! starts, how slow it is and how it misbehaves.

use std::time::Duration;

use deployctl_plan::model::{self, TargetKind, TargetSpec};

use crate::faults::SimFaults;

/// Devices in a simulated fleet unless told otherwise.
pub const DEFAULT_FLEET_SIZE: u32 = 1000;

/// The version label a simulated target starts on when the plan names none.
pub const DEFAULT_STABLE_VERSION: &str = "stable";

/// A simulated target's setup. Build with [`SimConfig::new`] or
/// [`SimConfig::for_plan_target`] and the `with_*` methods.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// The target's name in the plan; also names its file in a sim world.
    pub name: String,
    /// The kind it stands in for: `Sim` for sim targets, the real kind in
    /// rehearsals. Decides which actions and gates it supports.
    pub kind: TargetKind,
    /// The version it starts on (ignored when a sim world already holds
    /// the target: the world's state wins).
    pub stable_version: String,
    /// The version wave rollouts dispatch when no candidate was deployed
    /// first (fleets have no `Deploy`: the release is the plan's artifact).
    pub release_version: Option<String>,
    /// How long every call takes.
    pub latency: Duration,
    /// Devices in the simulated fleet.
    pub fleet_size: u32,
    /// Fixes which devices fail under a device-failure fault.
    pub seed: u64,
    pub faults: SimFaults,
}

impl SimConfig {
    pub fn new(
        name: impl Into<String>,
        kind: TargetKind,
        stable_version: impl Into<String>,
    ) -> Self {
        SimConfig {
            name: name.into(),
            kind,
            stable_version: stable_version.into(),
            release_version: None,
            latency: Duration::ZERO,
            fleet_size: DEFAULT_FLEET_SIZE,
            seed: 0,
            faults: SimFaults::none(),
        }
    }

    /// A simulator standing in for a plan's target: a `sim` target as
    /// written (its stable version and latency), or any other kind for a
    /// rehearsal, starting on the plan's pinned stable version and
    /// releasing the plan's artifact.
    pub fn for_plan_target(target: &model::Target) -> Self {
        let (stable, latency) = match &target.spec {
            TargetSpec::Sim(sim) => (sim.stable_version.clone(), sim.latency),
            _ => (DEFAULT_STABLE_VERSION.to_string(), Duration::ZERO),
        };
        let stable = target
            .pinned_stable
            .as_ref()
            .map_or(stable, |pinned| pinned.version.clone());
        let mut config = SimConfig::new(&target.name, target.kind(), stable).with_latency(latency);
        config.release_version = target.artifact.as_ref().map(|a| a.version.clone());
        config
    }

    pub fn with_release(mut self, version: impl Into<String>) -> Self {
        self.release_version = Some(version.into());
        self
    }

    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    pub fn with_fleet_size(mut self, devices: u32) -> Self {
        self.fleet_size = devices;
        self
    }

    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn with_faults(mut self, faults: SimFaults) -> Self {
        self.faults = faults;
        self
    }

    /// Time every call takes: the configured latency plus injected latency.
    pub(crate) fn call_latency(&self) -> Duration {
        self.latency + self.faults.extra_latency()
    }
}
