//! The device's two firmware slots (A/B): the active one runs, the other
//! takes the next image. A new image is written to the inactive slot and
//! booted "on trial"; it becomes the confirmed slot only after its
//! self-test passes, and a failed self-test boots the old slot again. The
//! state is one small JSON file replaced atomically, so a power cut at any
//! point leaves either the old or the new state.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotState {
    /// `a` or `b`: the slot the device boots.
    pub active: char,
    /// The version in each slot (`None`: empty).
    pub a: Option<String>,
    pub b: Option<String>,
    /// The active slot is on trial (booted, self-test not yet passed).
    pub trial: bool,
}

/// The slots in a directory: `slot-a.img`, `slot-b.img`, `slots.json`.
#[derive(Debug, Clone)]
pub struct Slots {
    dir: PathBuf,
}

impl Slots {
    /// Opens (or, on first boot, creates) the slots with `factory` in A.
    pub fn open(dir: &Path, factory: &str) -> std::io::Result<Slots> {
        std::fs::create_dir_all(dir)?;
        let slots = Slots {
            dir: dir.to_owned(),
        };
        if !slots.state_path().exists() {
            slots.save(&SlotState {
                active: 'a',
                a: Some(factory.to_owned()),
                b: None,
                trial: false,
            })?;
        }
        Ok(slots)
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("slots.json")
    }

    pub fn state(&self) -> std::io::Result<SlotState> {
        let text = std::fs::read_to_string(self.state_path())?;
        serde_json::from_str(&text).map_err(std::io::Error::other)
    }

    fn save(&self, state: &SlotState) -> std::io::Result<()> {
        let temp = self.dir.join("slots.json.tmp");
        std::fs::write(
            &temp,
            serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(temp, self.state_path())
    }

    /// The version the device runs.
    pub fn running(&self) -> std::io::Result<String> {
        let state = self.state()?;
        let version = if state.active == 'a' {
            state.a
        } else {
            state.b
        };
        Ok(version.unwrap_or_default())
    }

    /// Writes `image` (`version`) to the inactive slot and boots it on trial.
    pub fn install_and_boot(&self, version: &str, image: &[u8]) -> std::io::Result<()> {
        let mut state = self.state()?;
        let target = if state.active == 'a' { 'b' } else { 'a' };
        std::fs::write(self.dir.join(format!("slot-{target}.img")), image)?;
        match target {
            'a' => state.a = Some(version.to_owned()),
            _ => state.b = Some(version.to_owned()),
        }
        state.active = target;
        state.trial = true;
        self.save(&state)
    }

    /// The self-test passed: the trial slot is the device's firmware now.
    pub fn confirm(&self) -> std::io::Result<()> {
        let mut state = self.state()?;
        state.trial = false;
        self.save(&state)
    }

    /// The self-test failed (or the install was called off): boot the
    /// other slot again.
    pub fn fall_back(&self) -> std::io::Result<()> {
        let mut state = self.state()?;
        if state.trial {
            state.active = if state.active == 'a' { 'b' } else { 'a' };
            state.trial = false;
            self.save(&state)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ota-slots-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_confirmed_install_runs_the_new_version_and_a_failed_one_the_old() {
        let slots = Slots::open(&dir("slots"), "4.1.3").unwrap();
        slots.install_and_boot("4.2.0", b"new").unwrap();
        assert_eq!(slots.running().unwrap(), "4.2.0");
        assert!(slots.state().unwrap().trial);
        slots.fall_back().unwrap();
        assert_eq!(slots.running().unwrap(), "4.1.3");
        slots.install_and_boot("4.2.0", b"new").unwrap();
        slots.confirm().unwrap();
        assert_eq!(slots.running().unwrap(), "4.2.0");
        // A fallback with nothing on trial changes nothing.
        slots.fall_back().unwrap();
        assert_eq!(slots.running().unwrap(), "4.2.0");
        // The next install goes to the other slot, keeping this one.
        slots.install_and_boot("4.3.0", b"newer").unwrap();
        let state = slots.state().unwrap();
        assert_eq!(
            (state.a.as_deref(), state.b.as_deref()),
            (Some("4.3.0"), Some("4.2.0"))
        );
    }
}
