//! A Release's plan through the plan language's own loader: the same
//! validation as `deployctl validate`, with diagnostics named after the
//! Release (`release/NS/NAME:LINE:COL`).

use deployctl_plan::{Loaded, Rejected, Severity};

/// The name diagnostics and the journal use for a Release's plan.
pub fn source_name(namespace: &str, name: &str) -> String {
    format!("release/{namespace}/{name}")
}

/// Loads `spec.plan`; a rejection comes back as one line per problem.
pub fn load(namespace: &str, name: &str, plan: &str) -> Result<Loaded, Vec<String>> {
    deployctl_plan::load(&source_name(namespace, name), plan.as_bytes())
        .map_err(|rejected| one_line_each(&rejected))
}

/// `file:line:col: error: path: message` per error (warnings too, after).
pub fn one_line_each(rejected: &Rejected) -> Vec<String> {
    let mut lines: Vec<(Severity, String)> = rejected
        .diagnostics
        .iter()
        .map(|d| {
            let place = match d.location {
                Some(at) => format!("{}:{}:{}", rejected.source.name, at.line, at.column),
                None => rejected.source.name.clone(),
            };
            let label = match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let what = if d.path.is_empty() {
                d.message.clone()
            } else {
                format!("{}: {}", d.path, d.message)
            };
            (d.severity, format!("{place}: {label}: {what}"))
        })
        .collect();
    lines.sort_by_key(|(severity, _)| *severity);
    lines.into_iter().map(|(_, line)| line).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_carry_the_release_and_line_and_column() {
        let plan = "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata:\n  name: x\n  environment: sandbox\ntargets:\n  api:\n    sim: {stableVersion: \"1\"}\nstages:\n  - name: api\n    target: nowhere\n    canary:\n      steps:\n        - setWeight: 100\n";
        let lines = load("prod", "checkout", plan).err().unwrap_or_default();
        assert!(!lines.is_empty());
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("release/prod/checkout:11:")),
            "{lines:?}"
        );
    }
}
