//! The plan fixtures: every valid plan loads, every invalid plan is
//! rejected with the diagnostic its first line announces (`# expect: …`,
//! or a sidecar `.expect` file for inputs that cannot hold a comment), and
//! the full rendering matches its `.snap` file.

use std::path::{Path, PathBuf};

use crate::{repo_root, snapshot};

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// What the diagnostic must contain, from the first line or the sidecar.
fn expectation(path: &Path, bytes: &[u8]) -> String {
    let sidecar = path.with_extension("expect");
    if let Ok(text) = std::fs::read_to_string(&sidecar) {
        return text.trim().to_string();
    }
    let first_line =
        String::from_utf8_lossy(bytes.split(|b| *b == b'\n').next().unwrap_or(b"")).to_string();
    first_line
        .strip_prefix("# expect: ")
        .unwrap_or_else(|| panic!("{} must start with `# expect: …`", path.display()))
        .trim()
        .to_string()
}

#[test]
fn every_invalid_plan_is_rejected_with_its_diagnostic() {
    let dir = repo_root().join("tests/fixtures/plans/invalid");
    let files = yaml_files(&dir);
    assert!(files.len() >= 40, "only {} invalid fixtures", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let bytes = std::fs::read(path).unwrap();
        let expected = expectation(path, &bytes);
        match deployctl_plan::load(&name, &bytes) {
            Ok(_) => failures.push(format!("{name}: accepted, expected `{expected}`")),
            Err(rejected) => {
                let rendered = rejected.render(false);
                let errors: Vec<&str> = rejected
                    .diagnostics
                    .iter()
                    .filter(|d| d.is_error())
                    .map(|d| d.path.as_str())
                    .collect();
                if !rendered.contains(&expected) {
                    failures.push(format!("{name}: expected `{expected}` in\n{rendered}"));
                }
                // Every error carries a position in the file.
                if rejected
                    .diagnostics
                    .iter()
                    .any(|d| d.is_error() && d.location.is_none())
                    && !name.contains("empty")
                {
                    failures.push(format!("{name}: an error has no line:column ({errors:?})"));
                }
                if let Err(mismatch) = snapshot::check(&path.with_extension("snap"), &rendered) {
                    failures.push(mismatch);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_valid_plan_and_example_loads_without_errors() {
    let root = repo_root();
    let mut files = yaml_files(&root.join("examples"));
    files.extend(yaml_files(&root.join("tests/fixtures/plans/valid")));
    assert!(files.len() >= 8 + 3);
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        if let Err(rejected) = deployctl_plan::load(&path.to_string_lossy(), &bytes) {
            panic!("{}", rejected.render(false));
        }
    }
}

#[test]
fn a_kubernetes_canary_without_a_route_loads_with_a_warning_that_its_weights_are_approximate() {
    let path =
        repo_root().join("tests/fixtures/plans/valid/kubernetes-canary-by-replica-ratios.yaml");
    let loaded = deployctl_plan::load("plan.yaml", &std::fs::read(path).unwrap())
        .unwrap_or_else(|rejected| panic!("{}", rejected.render(false)));
    let warning = loaded
        .warnings
        .iter()
        .find(|w| w.path == "stages[0].canary")
        .expect("a warning on the canary");
    assert!(
        warning.message.contains("replica ratios") && warning.message.contains("approximate"),
        "{}",
        warning.message
    );
    assert!(
        warning.location.is_some(),
        "the warning points into the file"
    );
    let web = &loaded.plan.targets["web"];
    assert_eq!(
        web.strategy,
        Some(deployctl_plan::model::StrategyKind::Canary)
    );
}

#[test]
fn the_examples_cover_every_target_kind_and_strategy() {
    use deployctl_plan::model::{StrategyKind, TargetKind};
    use std::collections::BTreeSet;
    let mut kinds = BTreeSet::new();
    let mut strategies = BTreeSet::new();
    for path in yaml_files(&repo_root().join("examples")) {
        let loaded = deployctl_plan::load("example", &std::fs::read(&path).unwrap()).unwrap();
        for stage in &loaded.plan.stages {
            kinds.insert(loaded.plan.target_of(stage).kind());
            strategies.insert(stage.strategy.kind());
        }
    }
    assert_eq!(kinds, TargetKind::ALL.into_iter().collect());
    assert_eq!(
        strategies,
        [
            StrategyKind::Canary,
            StrategyKind::BlueGreen,
            StrategyKind::Waves
        ]
        .into_iter()
        .collect()
    );
}

/// Hostile inputs end in diagnostics, never a panic or a hang. (How fast
/// is measured by the benchmark, not asserted here.)
#[test]
fn hostile_inputs_are_refused_cleanly() {
    let mut deep =
        String::from("apiVersion: deployctl.io/v1\nkind: Plan\nmetadata:\n  labels:\n    x: ");
    deep.push_str(&"[".repeat(100_000));
    let mut long_lines =
        String::from("apiVersion: deployctl.io/v1\nkind: Plan\nmetadata:\n  name: ");
    long_lines.push_str(&"a".repeat(7 * 1024 * 1024));
    let mut wide = String::from(
        "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata:\n  name: x\n  environment: y\n  labels:\n",
    );
    for i in 0..200_000 {
        wide.push_str(&format!("    k{i}: v\n"));
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("too large", vec![b'a'; deployctl_plan::MAX_PLAN_BYTES + 1]),
        ("deep", deep.into_bytes()),
        ("long scalar", long_lines.into_bytes()),
        ("many labels", wide.into_bytes()),
        (
            "random bytes",
            (0..100_000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
        ("only comments", b"# nothing here\n\n".to_vec()),
        ("a scalar", b"just words".to_vec()),
        (
            "kubernetes manifest",
            b"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n".to_vec(),
        ),
        (
            "argo rollout",
            b"apiVersion: argoproj.io/v1alpha1\nkind: Rollout\n".to_vec(),
        ),
        (
            "tabs",
            b"apiVersion: deployctl.io/v1\n\tkind: Plan\n".to_vec(),
        ),
    ];
    for (what, bytes) in cases {
        let rejected = deployctl_plan::load(what, &bytes)
            .err()
            .unwrap_or_else(|| panic!("{what}: accepted"));
        let rendered = rejected.render(false);
        assert!(rendered.contains("error"), "{what}: {rendered}");
        assert!(
            rendered.len() < 20_000,
            "{what}: {} bytes of diagnostics",
            rendered.len()
        );
    }
}
