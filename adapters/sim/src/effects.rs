//! The effects log: an append-only record of every apply that changed the
//! target, kept in the target's state.
//!
//! It is what lets a test prove, after crashes and resumes, that no effect
//! was applied twice in a way the target can tell: applies that found their
//! effect already present are not logged at all, so a key appearing twice
//! means the same logical call really changed the target twice.

use std::collections::BTreeMap;

use deployctl_adapter::{Action, IdempotencyKey, Observed};
use serde::{Deserialize, Serialize};

/// One change the target made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Effect {
    /// 1-based position in the log.
    pub seq: u64,
    pub key: IdempotencyKey,
    pub action: Action,
    pub request_id: String,
    /// The target as observed right after the change.
    pub after: Observed,
}

/// Every change, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EffectsLog(Vec<Effect>);

impl EffectsLog {
    pub fn entries(&self) -> &[Effect] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Effect> {
        self.0.iter()
    }

    /// Idempotency keys that changed the target more than once, each
    /// listed once. Empty when every logical call took effect at most once.
    pub fn keys_applied_twice(&self) -> Vec<&IdempotencyKey> {
        let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
        let mut twice = Vec::new();
        for effect in &self.0 {
            let count = seen.entry(&effect.key.0).or_default();
            *count += 1;
            if *count == 2 {
                twice.push(&effect.key);
            }
        }
        twice
    }

    /// The traffic weights set, in order.
    pub fn weights(&self) -> Vec<u8> {
        self.0
            .iter()
            .filter_map(|effect| match effect.action {
                Action::SetWeight { percent } => Some(percent),
                _ => None,
            })
            .collect()
    }

    /// The actions applied, in order.
    pub fn actions(&self) -> impl Iterator<Item = &Action> {
        self.0.iter().map(|effect| &effect.action)
    }

    pub(crate) fn push(
        &mut self,
        key: &IdempotencyKey,
        action: &Action,
        request_id: String,
        after: Observed,
    ) {
        let seq = self.0.len() as u64 + 1;
        self.0.push(Effect {
            seq,
            key: key.clone(),
            action: action.clone(),
            request_id,
            after,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_that_changed_the_target_twice_is_reported_once() {
        let mut log = EffectsLog::default();
        let key = |k: &str| IdempotencyKey(k.into());
        for (k, percent) in [("a", 10), ("b", 50), ("a", 10), ("a", 10)] {
            log.push(
                &key(k),
                &Action::SetWeight { percent },
                format!("r{percent}"),
                Observed::default(),
            );
        }
        assert_eq!(log.keys_applied_twice(), vec![&key("a")]);
        assert_eq!(log.weights(), vec![10, 50, 10, 10]);
        assert_eq!(log.entries()[3].seq, 4);
    }
}
