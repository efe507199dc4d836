//! Where a simulated target's state lives: in this process's memory, or in
//! a sim world file that several processes share.
//!
//! Both give the same two operations: read the state, and update it in one
//! step that either commits entirely or not at all. Updates run
//! synchronously, inside a single poll of the caller's future, so dropping
//! that future can never leave half an effect behind.

use std::sync::{Mutex, PoisonError};

use crate::error::SimError;
use crate::state::SimState;
use crate::world::WorldFile;

pub(crate) enum Store {
    Memory(Mutex<SimState>),
    World(WorldFile),
}

impl Store {
    pub(crate) fn load(&self) -> Result<SimState, SimError> {
        match self {
            // Updates replace the state whole, so a panic elsewhere while
            // the lock was held cannot have left it half-written.
            Store::Memory(state) => {
                Ok(state.lock().unwrap_or_else(PoisonError::into_inner).clone())
            }
            Store::World(file) => file.read(),
        }
    }

    /// Runs `change` on a copy of the current state; when it returns
    /// `commit`, the copy becomes the state.
    pub(crate) fn update<R>(
        &self,
        change: impl FnOnce(&mut SimState) -> (R, bool),
    ) -> Result<R, SimError> {
        match self {
            Store::Memory(state) => {
                let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                let mut next = state.clone();
                let (result, commit) = change(&mut next);
                if commit {
                    *state = next;
                }
                Ok(result)
            }
            Store::World(file) => file.update(change),
        }
    }
}
