//! The another-writer rule (docs/adapter-contract.md): once a run has moved
//! a target, a change to it that the adapter did not make is refused as
//! `Rejected`, never overwritten, and never retried over as a `Conflict`.
//!
//! Expected flow, in an adapter:
//!
//! - the adapter reduces the platform state it must not lose track of to a
//!   fingerprint `F` it computes (Lambda: the alias's routing; CloudFront:
//!   ETags and tags; ECS: the task sets), and keeps one [`LastWrite<F>`]
//!   per target;
//! - `observe` calls [`LastWrite::observed`] (adopted only while nothing is
//!   held), every `apply` reads the platform and calls [`LastWrite::check`]
//!   before writing;
//! - before a write whose answer may be lost it calls [`LastWrite::sending`],
//!   after it (or after finding the action's effect already there)
//!   [`LastWrite::wrote`]; when its own step failed partway and its writes
//!   may have landed unseen, [`LastWrite::forget`];
//! - a [`Changed`] from `check` becomes the refusal with
//!   [`AnotherWriter::refusal`], the one wording every adapter shares.
//!
//! Guarantees: `check` passes only for the state this target holds as its
//! own, for a write of its own whose answer was lost, or when it holds
//! nothing. Re-observing never adopts a change over a held state: the
//! engine observes again before retrying a `Conflict`, and adopting there
//! would let the retry overwrite the other writer.
//!
//! Assumptions: the fingerprint leaves out what moves on its own (running
//! counts, propagation status), or every such move would read as another
//! writer. A new process holds nothing, which is what makes `deployctl
//! rollback` the human's explicit override.

use std::fmt;

use crate::AdapterError;

/// What one target last left on the platform, as the adapter's fingerprint
/// `F` of it, and a write that may have landed without an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWrite<F> {
    /// The state this target wrote, confirmed, or first found; `None`
    /// until then (or after [`LastWrite::forget`]): anything goes.
    ours: Option<F>,
    /// A write whose answer never came (dropped, timed out, connection
    /// reset): finding its state is finding our own.
    in_flight: Option<F>,
}

impl<F> Default for LastWrite<F> {
    fn default() -> Self {
        LastWrite {
            ours: None,
            in_flight: None,
        }
    }
}

/// The state changed behind this target's back: how it left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed<F> {
    pub left: F,
}

impl<F: Clone + PartialEq> LastWrite<F> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The state this target holds as its own, if any.
    pub fn ours(&self) -> Option<&F> {
        self.ours.as_ref()
    }

    /// A read outside an apply (`observe`): the state becomes ours only
    /// when nothing is held, so a re-read cannot adopt another writer's
    /// change.
    pub fn observed(&mut self, found: F) {
        self.ours.get_or_insert(found);
    }

    /// A write of `next` is about to be sent; until [`LastWrite::wrote`],
    /// finding `next` on the platform is not another writer.
    pub fn sending(&mut self, next: F) {
        self.in_flight = Some(next);
    }

    /// This target wrote `state` (or found its action's effect already
    /// there): from now on it is what the platform must show.
    pub fn wrote(&mut self, state: F) {
        self.ours = Some(state);
        self.in_flight = None;
    }

    /// This target's own step failed partway and may have changed the
    /// platform unseen: hold nothing, so the next read is not taken for
    /// someone else's change.
    pub fn forget(&mut self) {
        self.ours = None;
        self.in_flight = None;
    }

    /// Whether `current` is what this target left. A write of ours whose
    /// answer was lost and that did land is adopted here.
    pub fn check(&mut self, current: &F) -> Result<(), Changed<F>> {
        let Some(ours) = &self.ours else {
            return Ok(());
        };
        if ours == current {
            return Ok(());
        }
        if self.in_flight.as_ref() == Some(current) {
            self.wrote(current.clone());
            return Ok(());
        }
        Err(Changed { left: ours.clone() })
    }
}

/// The refusal of another writer's change, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnotherWriter {
    /// What was changed, as the person would look it up:
    /// `alias my-fn:live`, `ECS service prod/web`.
    pub resource: String,
    /// How this run left it.
    pub left: String,
    /// How it is now.
    pub now: String,
    /// What `deployctl rollback` for the run would do about it
    /// ("put the alias back on the stable version").
    pub rollback: &'static str,
}

impl AnotherWriter {
    /// `Rejected` (permanent: the run stops for a human), with no request
    /// ID yet ([`AdapterError::with_request_id`] adds the read's).
    pub fn refusal(&self) -> AdapterError {
        AdapterError::Rejected {
            message: self.to_string(),
            request_id: None,
        }
    }
}

impl fmt::Display for AnotherWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "another writer changed {} during this run (deployctl left: {}; now: {}). \
             deployctl does not overwrite a change it did not make; find out who made it, \
             then either leave it or run `deployctl rollback` for this run to {}",
            self.resource, self.left, self.now, self.rollback
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorClass;

    #[test]
    fn nothing_held_accepts_any_state() {
        let mut last: LastWrite<u32> = LastWrite::new();
        assert_eq!(last.check(&7), Ok(()));
        assert_eq!(last.ours(), None, "a check adopts nothing");
    }

    #[test]
    fn our_own_state_passes_and_any_other_is_a_change() {
        let mut last = LastWrite::new();
        last.wrote(1);
        assert_eq!(last.check(&1), Ok(()));
        assert_eq!(last.check(&2), Err(Changed { left: 1 }));
        // Refused again: a failed check adopts nothing either.
        assert_eq!(last.check(&2), Err(Changed { left: 1 }));
    }

    #[test]
    fn a_re_observe_never_adopts_a_change_over_a_held_state() {
        let mut last = LastWrite::new();
        last.observed(1);
        assert_eq!(last.ours(), Some(&1), "the first read is adopted");
        last.observed(2);
        assert_eq!(last.ours(), Some(&1));
        assert_eq!(last.check(&2), Err(Changed { left: 1 }));
    }

    #[test]
    fn a_write_whose_answer_was_lost_is_ours_when_found() {
        let mut last = LastWrite::new();
        last.wrote(1);
        last.sending(2);
        assert_eq!(last.check(&2), Ok(()));
        assert_eq!(last.ours(), Some(&2), "adopted as written");
        // Once adopted, the in-flight write is no excuse for anything else.
        last.sending(3);
        last.wrote(3);
        assert_eq!(last.check(&2), Err(Changed { left: 3 }));
    }

    #[test]
    fn a_lost_write_that_did_not_land_does_not_excuse_a_third_state() {
        let mut last = LastWrite::new();
        last.wrote(1);
        last.sending(2);
        assert_eq!(last.check(&1), Ok(()), "it did not land");
        assert_eq!(last.check(&3), Err(Changed { left: 1 }));
    }

    #[test]
    fn forgetting_accepts_the_next_read() {
        let mut last = LastWrite::new();
        last.wrote(1);
        last.sending(2);
        last.forget();
        assert_eq!(last.ours(), None);
        assert_eq!(last.check(&5), Ok(()));
        last.observed(5);
        assert_eq!(last.ours(), Some(&5));
    }

    #[test]
    fn the_refusal_names_the_other_writer_and_is_permanent() {
        let refusal = AnotherWriter {
            resource: "alias f:live".into(),
            left: "version 1 + 2 at 10%".into(),
            now: "version 1 + 2 at 30%".into(),
            rollback: "put the alias back on the stable version",
        }
        .refusal();
        assert_eq!(refusal.class(), ErrorClass::Permanent);
        assert_eq!(refusal.request_id(), None);
        assert_eq!(
            refusal.to_string(),
            "rejected: another writer changed alias f:live during this run (deployctl left: \
             version 1 + 2 at 10%; now: version 1 + 2 at 30%). deployctl does not overwrite a \
             change it did not make; find out who made it, then either leave it or run \
             `deployctl rollback` for this run to put the alias back on the stable version"
        );
    }
}
