//! `deployctl rbac FILE`: the least-privilege Kubernetes Roles exactly
//! this plan needs, one per namespace it touches, as `iam-policy` is for
//! AWS. Each adapter states the permissions of its own calls; this module
//! asks each target's kind (`registry`) and groups them by namespace.

use std::collections::BTreeMap;

use deployctl_kubernetes::rbac::Rule;
use deployctl_plan::{Loaded, ValidatedPlan};
use serde_json::{Value, json};

use crate::{exit, registry};

/// Every rule the plan's targets need, each target once.
pub fn rules(plan: &ValidatedPlan) -> Vec<Rule> {
    let mut seen = std::collections::BTreeSet::new();
    let mut rules = Vec::new();
    for stage in &plan.stages {
        let target = plan.target_of(stage);
        if seen.insert(target.name.clone()) {
            rules.extend(registry::lookup(target).rbac_rules());
        }
    }
    rules
}

/// (API group, resource, names): rules that agree on these share verbs.
type RuleKey = (String, String, Vec<String>);

/// The Roles (a `v1` `List`, for `kubectl apply -f -`), named after the
/// plan; rules of several targets in one namespace are merged where they
/// name the same resource and objects.
pub fn roles(plan: &ValidatedPlan) -> Value {
    let mut by_namespace: BTreeMap<String, BTreeMap<RuleKey, Vec<String>>> = BTreeMap::new();
    for rule in rules(plan) {
        let verbs = by_namespace
            .entry(rule.namespace.clone())
            .or_default()
            .entry((
                rule.api_group.to_owned(),
                rule.resource.to_owned(),
                rule.resource_names.clone(),
            ))
            .or_default();
        for verb in rule.verbs {
            if !verbs.iter().any(|v| v == verb) {
                verbs.push(verb.to_owned());
            }
        }
    }
    let name = format!("deployctl-{}", plan.metadata.name);
    let items: Vec<Value> = by_namespace
        .into_iter()
        .map(|(namespace, rules)| {
            let rules: Vec<Value> = rules
                .into_iter()
                .map(|((group, resource, names), verbs)| {
                    let mut rule =
                        json!({"apiGroups": [group], "resources": [resource], "verbs": verbs});
                    if !names.is_empty() {
                        rule["resourceNames"] = json!(names);
                    }
                    rule
                })
                .collect();
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": {"app.kubernetes.io/managed-by": "deployctl"},
                },
                "rules": rules,
            })
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// `deployctl rbac`: prints the Roles as pretty JSON. A plan with no
/// Kubernetes target prints an empty list. `load` reads and validates the
/// plan, printing its diagnostics.
pub fn command(file: &str, load: impl FnOnce(&str) -> Option<Loaded>) -> u8 {
    let Some(loaded) = load(file) else {
        return exit::INVALID_INPUT;
    };
    outln!(
        "{}",
        serde_json::to_string_pretty(&roles(&loaded.plan)).expect("JSON values serialize")
    );
    exit::OK
}
