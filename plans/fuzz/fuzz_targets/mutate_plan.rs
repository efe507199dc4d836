//! Structure-aware: start from a valid plan (an example or a valid fixture),
//! apply a few mutations chosen by the fuzzer's bytes to its tree (values
//! swapped for ones that sit on a validator boundary, names of other
//! stages, targets and gates, keys dropped, list items repeated or moved,
//! subtrees grafted elsewhere), and load the result. Byte-level mutation
//! rarely gets past the YAML and type checks; this reaches the validator's
//! cross-references, ranges, DAG and kind-specific checks. A plan that
//! loads is also put through the impact report, as `deployctl plan` does.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const SEEDS: &[&str] = &[
    include_str!("../../../examples/quickstart.yaml"),
    include_str!("../../../examples/cloudfront-config-file.yaml"),
    include_str!("../../../examples/cloudfront-staging-canary.yaml"),
    include_str!("../../../examples/ecs-blue-green.yaml"),
    include_str!("../../../examples/eks-blue-green.yaml"),
    include_str!("../../../examples/eks-canary-gateway-api.yaml"),
    include_str!("../../../examples/fleet-ota-waves.yaml"),
    include_str!("../../../examples/lambda-canary.yaml"),
    include_str!("../../../examples/multi-target-release.yaml"),
    include_str!("../../../tests/fixtures/plans/valid/approval-two-approvers.yaml"),
    include_str!("../../../tests/fixtures/plans/valid/concurrent-stages.yaml"),
    include_str!("../../../tests/fixtures/plans/valid/kubernetes-canary-by-replica-ratios.yaml"),
    include_str!("../../../tests/fixtures/plans/valid/minimal.yaml"),
    include_str!("../../../tests/fixtures/plans/valid/run-long-pause.yaml"),
];

/// Scalars on the edges the validator checks: weights, limits, durations,
/// URLs, names.
const BOUNDARY_VALUES: &[&str] = &[
    "0", "-1", "1", "15", "16", "50", "99", "99.5", "100", "101", "1000", "1e9", "0.0", "-0.5",
    "0s", "1ms", "999ms", "30s", "5m", "1h30m", "24h", "25h", "400d", "1x", "-1s", "",
    "http://example.test/health", "https://example.test/health", "https://", "not a url",
    "Production", "a--b", "UPPER", "x", "true", "false", "null",
];

/// The seeds as trees, parsed once per process.
fn seeds() -> &'static [Value] {
    static TREES: OnceLock<Vec<Value>> = OnceLock::new();
    TREES.get_or_init(|| {
        SEEDS
            .iter()
            .map(|text| serde_saphyr::from_str::<Value>(text).expect("seed plans parse"))
            .collect()
    })
}

/// Every path to a node, as a list of steps from the root.
#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn paths(value: &Value, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(prefix.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                prefix.push(Step::Key(key.clone()));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                prefix.push(Step::Index(index));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn at<'a>(value: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |node, step| match step {
        Step::Key(key) => node.get_mut(key.as_str()),
        Step::Index(index) => node.get_mut(*index),
    })
}

/// Names the plan defines (stages, targets, gates, approvals), so that a
/// reference can be pointed at something that exists, or at the wrong kind.
fn names(plan: &Value) -> Vec<String> {
    let mut names: Vec<String> = ["targets", "gates", "approvals", "artifacts"]
        .iter()
        .filter_map(|section| plan.get(section)?.as_object())
        .flat_map(|map| map.keys().cloned())
        .collect();
    if let Some(stages) = plan.get("stages").and_then(Value::as_array) {
        names.extend(
            stages
                .iter()
                .filter_map(|stage| stage.get("name")?.as_str().map(str::to_string)),
        );
    }
    names
}

fn scalar(text: &str) -> Value {
    serde_saphyr::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

fn mutate(plan: &mut Value, u: &mut Unstructured) -> Result<()> {
    let mut all = Vec::new();
    paths(plan, &mut Vec::new(), &mut all);
    let path = u.choose(&all)?.clone();
    let names = names(plan);
    match u.int_in_range(0..=6)? {
        // A boundary value in place of a scalar (or of anything).
        0 => {
            let replacement = scalar(u.choose(BOUNDARY_VALUES)?);
            if let Some(node) = at(plan, &path) {
                *node = replacement;
            }
        }
        // Another defined name: a reference to the wrong thing, a
        // dependency that makes a cycle, a duplicate stage name.
        1 if !names.is_empty() => {
            let name = Value::String(u.choose(&names)?.clone());
            if let Some(node) = at(plan, &path) {
                *node = match node {
                    Value::Array(_) => Value::Array(vec![name]),
                    _ => name,
                };
            }
        }
        // Drop a field or a list item.
        2 => {
            if let Some((last, parent)) = path.split_last()
                && let Some(parent) = at(plan, parent)
            {
                match (parent, last) {
                    (Value::Object(map), Step::Key(key)) => {
                        map.remove(key);
                    }
                    (Value::Array(items), Step::Index(index)) if *index < items.len() => {
                        items.remove(*index);
                    }
                    _ => {}
                }
            }
        }
        // Repeat a list item (two stages of the same name, a weight twice).
        3 => {
            if let Some((Step::Index(index), parent)) = path.split_last()
                && let Some(Value::Array(items)) = at(plan, parent)
                && let Some(item) = items.get(*index).cloned()
            {
                let to = u.int_in_range(0..=items.len())?;
                items.insert(to, item);
            }
        }
        // Graft a copy of one subtree over another (steps of a canary into
        // a blue-green, a fleet section into a lambda target, …).
        4 => {
            let from = u.choose(&all)?.clone();
            let graft = at(plan, &from).map(|node| node.clone());
            if let (Some(graft), Some(node)) = (graft, at(plan, &path)) {
                *node = graft;
            }
        }
        // Rename a key to another key written somewhere in the plan.
        5 => {
            let keys: Vec<String> = all
                .iter()
                .filter_map(|p| match p.last() {
                    Some(Step::Key(key)) => Some(key.clone()),
                    _ => None,
                })
                .collect();
            let new_key = u.choose(&keys)?.clone();
            if let Some((Step::Key(old), parent)) = path.split_last()
                && let Some(Value::Object(map)) = at(plan, parent)
                && let Some(value) = map.remove(old)
            {
                map.insert(new_key, value);
            }
        }
        // Empty a collection.
        _ => {
            if let Some(node) = at(plan, &path) {
                match node {
                    Value::Array(items) => items.clear(),
                    Value::Object(map) => map.clear(),
                    _ => *node = Value::Null,
                }
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(seed) = u.choose(seeds()) else { return };
    let mut plan = seed.clone();
    let rounds = u.int_in_range(1..=6u8).unwrap_or(1);
    for _ in 0..rounds {
        if mutate(&mut plan, &mut u).is_err() {
            break;
        }
    }
    // JSON is YAML: the loader reads it like any plan file.
    let text = serde_json::to_string_pretty(&plan).expect("a JSON tree serializes");
    match deployctl_plan::load("mutated.yaml", text.as_bytes()) {
        Ok(loaded) => {
            let report = deployctl_plan::report::ImpactReport::new(&loaded.plan);
            std::hint::black_box(report.render_text());
            std::hint::black_box(report.render_release());
        }
        Err(rejected) => {
            std::hint::black_box(rejected.render(false));
        }
    }
});
