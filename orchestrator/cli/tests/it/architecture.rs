//! Boundaries checked by machine, not by hope: the crates that make up the
//! engine must never depend on a cloud SDK, the Kubernetes client or an
//! HTTP client. Those belong to adapter crates, wired in by the binary.
//! Inside the workspace: adapter crates depend on the contract and the
//! shared AWS crate, never on each other; only the binary depends on
//! concrete adapters; the engine names no target kind.

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
    "deployctl-trail",
    "deployctl-approvals",
    "deployctl-firmware",
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

/// Concrete adapters: what the binary wires in, and nothing else may
/// depend on (dev-dependencies aside: tests may use the simulator).
const ADAPTER_CRATES: &[&str] = &[
    "deployctl-sim",
    "deployctl-probes",
    "deployctl-aws-lambda",
    "deployctl-aws-cloudfront",
    "deployctl-aws-ecs",
    "deployctl-kubernetes",
    "deployctl-aws-signals",
    "deployctl-aws-audit",
    "deployctl-aws-iot",
    "deployctl-aws-team",
    "deployctl-kube-release",
];

/// What an adapter crate may build on: the contract, the plan, the shared
/// AWS plumbing (firmware artifacts' AWS side included: the binary's
/// `artifact` commands and the fleet adapter share it), and the core
/// traits some adapters implement (the audit trail's sink, the MFA key
/// source, firmware keys).
const ADAPTER_MAY_USE: &[&str] = &[
    "deployctl-plan",
    "deployctl-adapter",
    "deployctl-aws",
    "deployctl-aws-firmware",
    "deployctl-firmware",
    "deployctl-audit",
    "deployctl-policy",
    "deployctl-time",
];

/// Normal (non-dev, non-build) dependencies of each workspace crate on
/// other workspace crates, by name.
fn workspace_edges() -> BTreeMap<String, BTreeSet<String>> {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--no-deps"])
        .current_dir(repo_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let members: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    packages
        .iter()
        .map(|package| {
            let deps = package["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|dep| dep["kind"].is_null())
                .map(|dep| dep["name"].as_str().unwrap().to_string())
                .filter(|name| members.contains(name))
                .collect();
            (package["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn adapter_crates_build_on_the_contract_and_never_on_each_other() {
    let edges = workspace_edges();
    let mut violations = Vec::new();
    for adapter in ADAPTER_CRATES {
        let deps = edges
            .get(*adapter)
            .unwrap_or_else(|| panic!("{adapter} is not in the workspace"));
        for dep in deps {
            if !ADAPTER_MAY_USE.contains(&dep.as_str()) {
                violations.push(format!("{adapter} → {dep}"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "adapter crates may depend only on {ADAPTER_MAY_USE:?}:\n{}",
        violations.join("\n")
    );
}

/// The one edge to an adapter crate outside the binary: the controller
/// library and its own Kubernetes edge (the Release resources, the
/// lease), which moves no target.
const CONTROLLER_EDGE: (&str, &str) = ("deployctl-controller", "deployctl-kube-release");

#[test]
fn only_the_binary_depends_on_concrete_adapters() {
    let edges = workspace_edges();
    let mut violations = Vec::new();
    for (krate, deps) in &edges {
        if krate == "deployctl" {
            continue;
        }
        for dep in deps {
            if (krate.as_str(), dep.as_str()) == CONTROLLER_EDGE {
                continue;
            }
            if ADAPTER_CRATES.contains(&dep.as_str()) {
                violations.push(format!("{krate} → {dep}"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "only the binary wires concrete adapters in:\n{}",
        violations.join("\n")
    );
}

/// The engine learns what a target is and can do from its adapter's
/// preflight; a `match` on target kinds there would be a second home for
/// every kind.
#[test]
fn the_engine_names_no_target_kind() {
    let mut offenders = Vec::new();
    let mut dirs = vec![repo_root().join("orchestrator/engine/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                if line.contains("TargetSpec") || line.contains("TargetKind::") {
                    offenders.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
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
