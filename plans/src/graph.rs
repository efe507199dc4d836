//! The stage DAG: `after:` edges between stages, acyclic by construction.
//!
//! [`ExecutionGraph::build`] refuses a cyclic graph (naming one cycle), so
//! every `ExecutionGraph` in existence has a topological order. The engine
//! walks it forwards to release and backwards to roll back.

use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::model::StageId;

#[derive(Debug, Clone)]
pub struct ExecutionGraph {
    graph: DiGraph<StageId, ()>,
    order: Vec<StageId>,
    depth: Vec<usize>,
}

impl ExecutionGraph {
    /// Builds the graph of `stage_count` stages with `edges` as
    /// (before, after) pairs. On a cycle, returns one cycle's stages in order.
    pub(crate) fn build(
        stage_count: usize,
        edges: &[(StageId, StageId)],
    ) -> Result<ExecutionGraph, Vec<StageId>> {
        let mut graph = DiGraph::with_capacity(stage_count, edges.len());
        let nodes: Vec<NodeIndex> = (0..stage_count)
            .map(|index| graph.add_node(StageId(index)))
            .collect();
        for (before, after) in edges {
            graph.update_edge(nodes[before.0], nodes[after.0], ());
        }
        let sorted = match toposort(&graph, None) {
            Ok(sorted) => sorted,
            Err(_) => return Err(find_cycle(&graph)),
        };
        // Depth = longest chain of predecessors; stages of equal depth have
        // no path between them and may run concurrently.
        let mut depth = vec![0usize; stage_count];
        for node in &sorted {
            let here = depth[node.index()];
            for edge in graph.edges(*node) {
                let next = edge.target().index();
                depth[next] = depth[next].max(here + 1);
            }
        }
        let mut order: Vec<StageId> = sorted.iter().map(|node| graph[*node]).collect();
        // A stable, readable order: by depth, then file order.
        order.sort_by_key(|id| (depth[id.0], id.0));
        Ok(ExecutionGraph {
            graph,
            order,
            depth,
        })
    }

    /// Every stage, each after all of its predecessors.
    pub fn order(&self) -> &[StageId] {
        &self.order
    }

    /// Stages grouped by depth: each group may run concurrently once the
    /// groups before it are done.
    pub fn levels(&self) -> Vec<Vec<StageId>> {
        let mut levels: Vec<Vec<StageId>> = Vec::new();
        for id in &self.order {
            let depth = self.depth[id.0];
            if levels.len() <= depth {
                levels.resize_with(depth + 1, Vec::new);
            }
            levels[depth].push(*id);
        }
        levels
    }

    /// Stages that must finish before `id` starts.
    pub fn predecessors(&self, id: StageId) -> Vec<StageId> {
        let mut found: Vec<StageId> = self
            .graph
            .neighbors_directed(NodeIndex::new(id.0), petgraph::Direction::Incoming)
            .map(|node| self.graph[node])
            .collect();
        found.sort();
        found
    }

    /// Stages that wait for `id`.
    pub fn successors(&self, id: StageId) -> Vec<StageId> {
        let mut found: Vec<StageId> = self
            .graph
            .neighbors_directed(NodeIndex::new(id.0), petgraph::Direction::Outgoing)
            .map(|node| self.graph[node])
            .collect();
        found.sort();
        found
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// One cycle of a cyclic graph, starting from its lowest stage.
fn find_cycle(graph: &DiGraph<StageId, ()>) -> Vec<StageId> {
    for component in tarjan_scc(graph) {
        let has_cycle = component.len() > 1
            || graph
                .edges(component[0])
                .any(|edge| edge.target() == component[0]);
        if !has_cycle {
            continue;
        }
        let start = *component.iter().min().expect("components are non-empty");
        // Walk inside the component until a node repeats.
        let mut path = vec![start];
        let mut current = start;
        loop {
            let next = graph
                .edges(current)
                .map(|edge| edge.target())
                .filter(|target| component.contains(target))
                .min()
                .expect("every node of a cyclic component has an edge inside it");
            if let Some(position) = path.iter().position(|node| *node == next) {
                return path[position..].iter().map(|node| graph[*node]).collect();
            }
            path.push(next);
            current = next;
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[usize]) -> Vec<StageId> {
        list.iter().map(|i| StageId(*i)).collect()
    }

    #[test]
    fn diamond_has_three_levels() {
        let edges = [(0, 1), (0, 2), (1, 3), (2, 3)].map(|(a, b)| (StageId(a), StageId(b)));
        let graph = ExecutionGraph::build(4, &edges).unwrap();
        assert_eq!(graph.order(), ids(&[0, 1, 2, 3]));
        assert_eq!(graph.levels(), vec![ids(&[0]), ids(&[1, 2]), ids(&[3])]);
        assert_eq!(graph.predecessors(StageId(3)), ids(&[1, 2]));
        assert_eq!(graph.successors(StageId(0)), ids(&[1, 2]));
    }

    #[test]
    fn cycles_are_named() {
        let edges = [(0, 1), (1, 2), (2, 0), (2, 3)].map(|(a, b)| (StageId(a), StageId(b)));
        assert_eq!(
            ExecutionGraph::build(4, &edges).unwrap_err(),
            ids(&[0, 1, 2])
        );
    }

    #[test]
    fn self_loops_are_cycles() {
        let edges = [(StageId(1), StageId(1))];
        assert_eq!(ExecutionGraph::build(2, &edges).unwrap_err(), ids(&[1]));
    }
}
