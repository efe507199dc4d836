//! Helpers shared by the tests.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use deployctl_adapter::{Action, AdapterError, Applied, IdempotencyKey, Target};
use deployctl_plan::model::{GateCheck, TargetKind};
use deployctl_sim::SimConfig;

/// A directory removed when dropped (the crate avoids a dependency for it).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "deployctl-sim-{label}-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A sim-kind target `t` on 1.0 releasing 2.0, with a small fleet.
pub fn config(kind: TargetKind) -> SimConfig {
    SimConfig::new("t", kind, "1.0")
        .with_release("2.0")
        .with_fleet_size(100)
}

pub fn key(name: &str) -> IdempotencyKey {
    IdempotencyKey(name.to_string())
}

/// Applies with a key named after the action.
pub async fn apply(target: &dyn Target, action: &Action) -> Result<Applied, AdapterError> {
    target.apply(action, &key(&action.to_string())).await
}

pub fn deploy(version: &str) -> Action {
    Action::Deploy {
        version: version.into(),
    }
}

pub fn weight(percent: u8) -> Action {
    Action::SetWeight { percent }
}

pub fn wave(index: u32, devices: u32) -> Action {
    Action::StartWave { index, devices }
}

pub fn sim_gate(min_success_rate: f64) -> GateCheck {
    GateCheck::Sim { min_success_rate }
}

pub fn fleet_gate(min_success_rate: f64) -> GateCheck {
    GateCheck::Fleet {
        min_success_rate,
        max_anomaly_rate: None,
    }
}
