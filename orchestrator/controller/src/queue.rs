//! The leader's work queue of Release names, as controller-runtime's
//! workqueue keeps one: a name asked for many times waits once, and one
//! Release is never reconciled by two workers at once (a name asked for
//! while it is being reconciled waits until that reconcile ends, then
//! goes round again, so the change that asked is not missed).

use std::collections::{HashSet, VecDeque};

#[derive(Debug, Default)]
pub(crate) struct Queue {
    waiting: VecDeque<String>,
    queued: HashSet<String>,
    running: HashSet<String>,
    /// Asked for while running: queued again when that reconcile ends.
    again: HashSet<String>,
}

impl Queue {
    /// Asks for one reconcile of `name`.
    pub(crate) fn push(&mut self, name: &str) {
        if self.running.contains(name) {
            self.again.insert(name.to_string());
        } else if self.queued.insert(name.to_string()) {
            self.waiting.push_back(name.to_string());
        }
    }

    /// The next name to reconcile, now marked running.
    pub(crate) fn pop(&mut self) -> Option<String> {
        let name = self.waiting.pop_front()?;
        self.queued.remove(&name);
        self.running.insert(name.clone());
        Some(name)
    }

    /// The reconcile of `name` ended.
    pub(crate) fn done(&mut self, name: &str) {
        self.running.remove(name);
        if self.again.remove(name) {
            self.push(name);
        }
    }

    /// Forgets a name that is gone (deleted): it is not reconciled again
    /// unless asked for anew.
    pub(crate) fn forget(&mut self, name: &str) {
        self.again.remove(name);
        if self.queued.remove(name) {
            self.waiting.retain(|waiting| waiting != name);
        }
    }

    /// Names waiting, not counting those being reconciled.
    pub(crate) fn depth(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(queue: &mut Queue) -> Vec<String> {
        let mut popped = Vec::new();
        while let Some(name) = queue.pop() {
            popped.push(name);
        }
        popped
    }

    #[test]
    fn a_name_asked_for_twice_waits_once_in_first_come_order() {
        let mut queue = Queue::default();
        for name in ["a", "b", "a", "c", "b"] {
            queue.push(name);
        }
        assert_eq!(queue.depth(), 3);
        assert_eq!(drain(&mut queue), ["a", "b", "c"]);
        assert_eq!(queue.depth(), 0);
    }

    #[test]
    fn a_running_name_is_not_handed_out_again_until_it_is_done() {
        let mut queue = Queue::default();
        queue.push("a");
        assert_eq!(queue.pop().as_deref(), Some("a"));
        queue.push("a");
        queue.push("a");
        assert_eq!(queue.pop(), None, "a is still running");
        queue.done("a");
        assert_eq!(
            drain(&mut queue),
            ["a"],
            "asked for while running: once more"
        );
        queue.done("a");
        assert_eq!(queue.pop(), None, "nothing asked for since");
    }

    #[test]
    fn a_forgotten_name_leaves_the_queue_and_is_not_rerun() {
        let mut queue = Queue::default();
        queue.push("a");
        queue.push("b");
        queue.forget("a");
        assert_eq!(drain(&mut queue), ["b"]);
        queue.push("b");
        queue.forget("b");
        queue.done("b");
        assert_eq!(queue.pop(), None);
        queue.push("a");
        assert_eq!(drain(&mut queue), ["a"], "asked for anew after forgetting");
    }
}
