//! Boundaries checked by machine, not by hope: the crates that make up the
//! engine must never depend on a cloud SDK, the Kubernetes client or an
//! HTTP client. Those belong to adapter crates, wired in by the binary.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use crate::repo_root;

/// Crates no core crate may reach, directly or through another crate.
const FORBIDDEN_PREFIXES: &[&str] = &[
    "kube",
    "k8s-openapi",
    "aws-sdk-",
    "aws-config",
    "reqwest",
    "hyper",
];

/// Workspace crates that must stay free of them.
const CORE_CRATES: &[&str] = &[
    "deployctl-plan",
    "deployctl-engine",
    "deployctl-adapter",
    "deployctl-sim",
    "deployctl-policy",
    "deployctl-audit",
    "deployctl-time",
];

#[test]
fn core_crates_never_depend_on_cloud_or_http_clients() {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(repo_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    let names: BTreeMap<&str, &str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    // Normal (non-dev, non-build) dependency edges from the resolve graph.
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for node in metadata["resolve"]["nodes"].as_array().unwrap() {
        let id = node["id"].as_str().unwrap();
        let deps = node["deps"].as_array().unwrap().iter().filter(|dep| {
            dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|kind| kind["kind"].is_null())
        });
        edges.insert(id, deps.map(|dep| dep["pkg"].as_str().unwrap()).collect());
    }

    let mut checked = 0;
    let mut violations = Vec::new();
    for (id, name) in &names {
        if !CORE_CRATES.contains(name) {
            continue;
        }
        checked += 1;
        let mut seen = BTreeSet::new();
        let mut stack = vec![(*id, vec![*name])];
        while let Some((current, chain)) = stack.pop() {
            for dep in edges.get(current).into_iter().flatten() {
                if !seen.insert(*dep) {
                    continue;
                }
                let dep_name = names[dep];
                let mut next = chain.clone();
                next.push(dep_name);
                if FORBIDDEN_PREFIXES.iter().any(|p| dep_name.starts_with(p)) {
                    violations.push(next.join(" → "));
                } else {
                    stack.push((dep, next));
                }
            }
        }
    }
    assert!(
        checked >= 4,
        "core crates missing from cargo metadata: found {checked}"
    );
    assert!(
        violations.is_empty(),
        "forbidden dependencies:\n{}",
        violations.join("\n")
    );
}

/// The one-TLS-stack rule: ring must never enter the tree.
#[test]
fn ring_is_not_in_the_dependency_graph() {
    let output = Command::new(env!("CARGO"))
        .args(["tree", "--locked", "-i", "ring", "--workspace"])
        .current_dir(repo_root())
        .output()
        .expect("cargo tree runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Absent, `cargo tree -i` prints nothing on stdout and says so on
    // stderr ("did not match any packages" or "nothing to print").
    assert!(
        output.stdout.is_empty()
            && (stderr.contains("did not match") || stderr.contains("nothing to print")),
        "ring is in the tree:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}
