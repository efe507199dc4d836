//! The DAG walk, one for both directions: forward to release, backward to
//! roll back (a stage is undone only after the stages that depend on it).
//!
//! [`Walk`] is the pure part: which stages may start now, given what has
//! finished. [`drive`] runs one walk's stages concurrently on a
//! `JoinSet`, starting each as soon as the walk allows.
//!
//! Expected flow: forward, a stage is ready once every predecessor
//! succeeded; the first failure halts the walk (no new stage starts, the
//! running ones finish or stop at their next await). Backward, a stage is
//! ready once every dependent in the walk has been undone — or failed to
//! be: like Terraform's walker, cleanup goes on after a failure, so one
//! target that cannot go back never strands the others on the new version.
//!
//! Guarantees: every stage starts at most once per walk; a stage whose
//! task panics is reported as that stage's failure, never lost.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;

use deployctl_plan::graph::ExecutionGraph;
use deployctl_plan::model::StageId;
use tokio::task::JoinSet;

/// Which way a walk goes over the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Release: predecessors first.
    Forward,
    /// Rollback: dependents first.
    Backward,
}

/// How a stage's part of the walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    Succeeded,
    Failed,
    /// Stopped early because the walk was halted or aborted (forward only).
    Stopped,
}

/// Where one walk stands: what may start, what is running, what is done.
#[derive(Debug, Clone)]
pub struct Walk {
    direction: Direction,
    /// The stages of this walk, in the order they are considered.
    order: Vec<StageId>,
    /// What each stage waits for (predecessors forward, dependents in the
    /// walk backward).
    waits_for: BTreeMap<StageId, Vec<StageId>>,
    /// Finished in a way that lets the stages waiting for them go on.
    cleared: BTreeSet<StageId>,
    started: BTreeSet<StageId>,
    running: BTreeSet<StageId>,
    halted: bool,
}

impl Walk {
    /// The forward walk over every stage; `done` already succeeded (a
    /// resumed run) and are neither started nor waited for again.
    pub fn forward(graph: &ExecutionGraph, done: &BTreeSet<StageId>) -> Walk {
        let order: Vec<StageId> = graph.order().to_vec();
        let waits_for = order
            .iter()
            .map(|id| (*id, graph.predecessors(*id)))
            .collect();
        Walk {
            direction: Direction::Forward,
            order,
            waits_for,
            cleared: done.clone(),
            started: done.clone(),
            running: BTreeSet::new(),
            halted: false,
        }
    }

    /// The backward walk over `members` (the stages to undo): each waits
    /// for its dependents that are members too.
    pub fn backward(graph: &ExecutionGraph, members: &BTreeSet<StageId>) -> Walk {
        let order: Vec<StageId> = graph
            .order()
            .iter()
            .rev()
            .copied()
            .filter(|id| members.contains(id))
            .collect();
        let waits_for = order
            .iter()
            .map(|id| {
                let dependents = graph
                    .successors(*id)
                    .into_iter()
                    .filter(|s| members.contains(s))
                    .collect();
                (*id, dependents)
            })
            .collect();
        Walk {
            direction: Direction::Backward,
            order,
            waits_for,
            cleared: BTreeSet::new(),
            started: BTreeSet::new(),
            running: BTreeSet::new(),
            halted: false,
        }
    }

    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The stages that may start now, marked as started.
    pub fn ready(&mut self) -> Vec<StageId> {
        let ready = self.startable();
        for id in &ready {
            self.started.insert(*id);
            self.running.insert(*id);
        }
        ready
    }

    fn startable(&self) -> Vec<StageId> {
        if self.halted {
            return Vec::new();
        }
        self.order
            .iter()
            .filter(|id| !self.started.contains(id))
            .filter(|id| self.waits_for[id].iter().all(|w| self.cleared.contains(w)))
            .copied()
            .collect()
    }

    /// Records how `id` ended.
    pub fn finish(&mut self, id: StageId, how: Finished) {
        self.running.remove(&id);
        match (self.direction, how) {
            (Direction::Forward, Finished::Succeeded) => {
                self.cleared.insert(id);
            }
            (Direction::Forward, Finished::Failed) => self.halted = true,
            (Direction::Forward, Finished::Stopped) => {}
            // Cleanup goes on: what waited for this stage may be undone
            // whether or not this one could be.
            (Direction::Backward, _) => {
                self.cleared.insert(id);
            }
        }
    }

    /// Start nothing more (a failure elsewhere, a kill).
    pub fn halt(&mut self) {
        self.halted = true;
    }

    pub fn is_halted(&self) -> bool {
        self.halted
    }

    /// Nothing runs and nothing more can start.
    pub fn is_over(&self) -> bool {
        self.running.is_empty() && self.startable().is_empty()
    }
}

/// Runs `walk`: `start` makes each ready stage's future, `settle` hears
/// each result and says how the stage finished (or stops the walk with a
/// value, e.g. an error that must end the run now). Stages run
/// concurrently; a panicking stage task is settled as `panicked(id)`.
pub async fn drive<T, E, Fut>(
    walk: &mut Walk,
    mut start: impl FnMut(StageId) -> Fut,
    mut settle: impl FnMut(&mut Walk, StageId, T) -> Result<Finished, E>,
    mut panicked: impl FnMut(StageId, String) -> T,
) -> Result<(), E>
where
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut tasks: JoinSet<T> = JoinSet::new();
    let mut ids: HashMap<tokio::task::Id, StageId> = HashMap::new();
    loop {
        for id in walk.ready() {
            let handle = tasks.spawn(start(id));
            ids.insert(handle.id(), id);
        }
        let Some(joined) = tasks.join_next_with_id().await else {
            return Ok(());
        };
        let (task, value) = match joined {
            Ok((task, value)) => (task, value),
            Err(error) => {
                let task = error.id();
                let id = ids.get(&task).copied();
                match id {
                    Some(id) => (task, panicked(id, error.to_string())),
                    // Unreachable: every task is spawned with its id noted.
                    None => continue,
                }
            }
        };
        let Some(id) = ids.remove(&task) else {
            continue;
        };
        match settle(walk, id, value) {
            Ok(how) => walk.finish(id, how),
            Err(stop) => {
                walk.halt();
                // The running stages stop at their next await (the abort
                // signal the caller sent); wait for them before returning.
                while tasks.join_next().await.is_some() {}
                return Err(stop);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(stages: &str) -> deployctl_plan::ValidatedPlan {
        let source = format!(
            "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {{name: t, environment: test}}\ntargets:\n  a: {{sim: {{}}}}\n  b: {{sim: {{}}}}\n  c: {{sim: {{}}}}\n  d: {{sim: {{}}}}\nartifacts:\n  a: {{version: v2}}\n  b: {{version: v2}}\n  c: {{version: v2}}\n  d: {{version: v2}}\nstages:\n{stages}"
        );
        deployctl_plan::load("test.yaml", source.as_bytes())
            .unwrap_or_else(|rejected| panic!("{}", rejected.render(false)))
            .plan
    }

    /// a → {b, c} → d
    fn diamond() -> deployctl_plan::ValidatedPlan {
        graph(
            "  - {name: a, target: a, blueGreen: {}}\n  - {name: b, target: b, after: [a], blueGreen: {}}\n  - {name: c, target: c, after: [a], blueGreen: {}}\n  - {name: d, target: d, after: [b, c], blueGreen: {}}\n",
        )
    }

    fn names(plan: &deployctl_plan::ValidatedPlan, ids: &[StageId]) -> Vec<String> {
        ids.iter().map(|id| plan.stage(*id).name.clone()).collect()
    }

    fn id(plan: &deployctl_plan::ValidatedPlan, name: &str) -> StageId {
        plan.stages.iter().find(|s| s.name == name).unwrap().id
    }

    #[test]
    fn forward_starts_a_stage_once_all_its_predecessors_succeeded() {
        let plan = diamond();
        let mut walk = Walk::forward(plan.graph(), &BTreeSet::new());
        assert_eq!(names(&plan, &walk.ready()), ["a"]);
        assert!(walk.ready().is_empty(), "a is running");
        walk.finish(id(&plan, "a"), Finished::Succeeded);
        assert_eq!(names(&plan, &walk.ready()), ["b", "c"]);
        walk.finish(id(&plan, "b"), Finished::Succeeded);
        assert!(walk.ready().is_empty(), "d waits for c too");
        walk.finish(id(&plan, "c"), Finished::Succeeded);
        assert_eq!(names(&plan, &walk.ready()), ["d"]);
        walk.finish(id(&plan, "d"), Finished::Succeeded);
        assert!(walk.is_over());
    }

    #[test]
    fn a_forward_failure_starts_nothing_more() {
        let plan = diamond();
        let mut walk = Walk::forward(plan.graph(), &BTreeSet::new());
        walk.ready();
        walk.finish(id(&plan, "a"), Finished::Succeeded);
        assert_eq!(walk.ready().len(), 2);
        walk.finish(id(&plan, "b"), Finished::Failed);
        walk.finish(id(&plan, "c"), Finished::Succeeded);
        assert!(walk.ready().is_empty(), "d never starts after b failed");
        assert!(walk.is_halted());
        assert!(walk.is_over());
    }

    #[test]
    fn a_resumed_forward_walk_skips_what_already_succeeded() {
        let plan = diamond();
        let done: BTreeSet<StageId> = [id(&plan, "a"), id(&plan, "b")].into();
        let mut walk = Walk::forward(plan.graph(), &done);
        assert_eq!(names(&plan, &walk.ready()), ["c"]);
    }

    #[test]
    fn backward_undoes_dependents_first() {
        let plan = diamond();
        let all: BTreeSet<StageId> = plan.stages.iter().map(|s| s.id).collect();
        let mut walk = Walk::backward(plan.graph(), &all);
        assert_eq!(names(&plan, &walk.ready()), ["d"]);
        walk.finish(id(&plan, "d"), Finished::Succeeded);
        let mut middle = names(&plan, &walk.ready());
        middle.sort();
        assert_eq!(middle, ["b", "c"]);
        walk.finish(id(&plan, "b"), Finished::Succeeded);
        assert!(walk.ready().is_empty(), "a waits for c");
        walk.finish(id(&plan, "c"), Finished::Succeeded);
        assert_eq!(names(&plan, &walk.ready()), ["a"]);
    }

    #[test]
    fn backward_cleanup_goes_on_after_a_failure() {
        let plan = diamond();
        let all: BTreeSet<StageId> = plan.stages.iter().map(|s| s.id).collect();
        let mut walk = Walk::backward(plan.graph(), &all);
        walk.ready();
        walk.finish(id(&plan, "d"), Finished::Failed);
        assert_eq!(
            walk.ready().len(),
            2,
            "b and c go back although d could not"
        );
        walk.finish(id(&plan, "b"), Finished::Failed);
        walk.finish(id(&plan, "c"), Finished::Succeeded);
        assert_eq!(names(&plan, &walk.ready()), ["a"]);
        walk.finish(id(&plan, "a"), Finished::Succeeded);
        assert!(walk.is_over());
    }

    #[test]
    fn backward_waits_only_for_dependents_that_are_undone_too() {
        let plan = diamond();
        // d never moved: b and c need not wait for it.
        let members: BTreeSet<StageId> = ["a", "b", "c"].map(|n| id(&plan, n)).into();
        let mut walk = Walk::backward(plan.graph(), &members);
        let mut first = names(&plan, &walk.ready());
        first.sort();
        assert_eq!(first, ["b", "c"]);
    }

    #[tokio::test]
    async fn drive_runs_ready_stages_concurrently_and_reports_panics() {
        let plan = diamond();
        let mut walk = Walk::forward(plan.graph(), &BTreeSet::new());
        let b = id(&plan, "b");
        let mut seen = Vec::new();
        let result: Result<(), String> = drive(
            &mut walk,
            |stage| async move {
                if stage == b {
                    panic!("adapter bug");
                }
                Ok::<StageId, String>(stage)
            },
            |_, stage, result| {
                seen.push((stage, result.is_ok()));
                Ok(if result.is_ok() {
                    Finished::Succeeded
                } else {
                    Finished::Failed
                })
            },
            |_, message| Err(message),
        )
        .await;
        assert_eq!(result, Ok(()));
        // a, then b (panicked) and c; d never starts.
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(seen.contains(&(b, false)), "{seen:?}");
        assert!(!seen.iter().any(|(s, _)| *s == id(&plan, "d")));
    }

    #[tokio::test]
    async fn a_settle_error_ends_the_walk_once_running_stages_return() {
        let plan = diamond();
        let mut walk = Walk::forward(plan.graph(), &BTreeSet::new());
        let result: Result<(), &str> = drive(
            &mut walk,
            |stage| async move { stage },
            |_, _, _| Err("journal down"),
            |stage, _| stage,
        )
        .await;
        assert_eq!(result, Err("journal down"));
        assert!(walk.is_halted());
    }
}
