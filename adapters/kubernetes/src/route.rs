//! Gateway API HTTPRoute weights, edited without IO: which rules carry the
//! stable Service, what share the canary has, the rules with a new share,
//! and whether the route's controller has taken the generation written.

use serde_json::{Value, json};

/// A backendRef names `service` (kind Service in the core group, the
/// defaults Gateway API gives an unqualified ref).
fn refers_to(backend: &Value, service: &str) -> bool {
    backend["name"] == service
        && backend["kind"].as_str().unwrap_or("Service") == "Service"
        && backend["group"].as_str().unwrap_or("").is_empty()
}

fn weight(backend: &Value) -> u64 {
    backend["weight"].as_u64().unwrap_or(1)
}

/// The rules of `spec` that send traffic to `stable`.
pub fn carrying<'s>(spec: &'s Value, stable: &str) -> Vec<&'s Value> {
    spec["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|rule| {
            rule["backendRefs"]
                .as_array()
                .is_some_and(|refs| refs.iter().any(|b| refers_to(b, stable)))
        })
        .collect()
}

/// The canary's share, in percent, on the first rule carrying `stable`
/// (every rule deployctl writes carries the same one).
pub fn canary_percent(spec: &Value, stable: &str, canary: &str) -> Option<u8> {
    let rule = carrying(spec, stable).into_iter().next()?;
    let refs = rule["backendRefs"].as_array()?;
    let total: u64 = refs
        .iter()
        .filter(|b| refers_to(b, stable) || refers_to(b, canary))
        .map(weight)
        .sum();
    let ours: u64 = refs
        .iter()
        .filter(|b| refers_to(b, canary))
        .map(weight)
        .sum();
    if total == 0 {
        return Some(0);
    }
    Some(((ours * 100 + total / 2) / total) as u8)
}

/// `spec.rules` with every rule carrying `stable` split `100 - percent`
/// to `stable` and `percent` to `canary` (the canary's ref copies the
/// stable one's port and namespace). At 0 the canary's ref is removed, so
/// a rolled-back route lists only what it listed before the release.
pub fn with_percent(spec: &Value, stable: &str, canary: &str, percent: u8) -> Value {
    let rules = spec["rules"].as_array().cloned().unwrap_or_default();
    let rules: Vec<Value> = rules
        .into_iter()
        .map(|mut rule| {
            let Some(refs) = rule["backendRefs"].as_array().cloned() else {
                return rule;
            };
            let Some(stable_ref) = refs.iter().find(|b| refers_to(b, stable)).cloned() else {
                return rule;
            };
            let mut next: Vec<Value> = refs
                .into_iter()
                .filter(|b| !refers_to(b, stable) && !refers_to(b, canary))
                .collect();
            let mut stable_ref = stable_ref;
            stable_ref["weight"] = json!(100 - u64::from(percent));
            let mut canary_ref = stable_ref.clone();
            canary_ref["name"] = json!(canary);
            canary_ref["weight"] = json!(u64::from(percent));
            next.insert(0, stable_ref);
            if percent > 0 {
                next.insert(1, canary_ref);
            }
            rule["backendRefs"] = Value::Array(next);
            rule
        })
        .collect();
    Value::Array(rules)
}

/// Who the route's backends are and their weights, rule by rule: what
/// the another-writer rule compares (status and metadata move on their own).
pub fn backends(spec: &Value) -> String {
    spec["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|rule| {
            rule["backendRefs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| format!("{}={}", b["name"].as_str().unwrap_or("?"), weight(b)))
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether the route's controller has accepted `generation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acceptance {
    /// Every parent reports Accepted and ResolvedRefs for it.
    Accepted,
    /// Not yet (no status for this generation), with what is missing.
    Waiting(String),
    /// A parent refused it: the reason and message.
    Refused(String),
}

/// The route's `status.parents` for `generation`: Accepted only when every
/// parent names the generation written and both conditions are True.
pub fn acceptance(route: &Value, generation: i64) -> Acceptance {
    let parents = route["spec"]["parentRefs"].as_array().map_or(0, Vec::len);
    let status = route["status"]["parents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if status.is_empty() {
        return Acceptance::Waiting("no parent has reported on the route yet".into());
    }
    for parent in &status {
        let gateway = parent["parentRef"]["name"].as_str().unwrap_or("?");
        for wanted in ["Accepted", "ResolvedRefs"] {
            let condition = parent["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == wanted));
            let Some(condition) = condition else {
                return Acceptance::Waiting(format!(
                    "parent {gateway} has no {wanted} condition yet"
                ));
            };
            let observed = condition["observedGeneration"].as_i64().unwrap_or(0);
            if observed < generation {
                return Acceptance::Waiting(format!(
                    "parent {gateway} reports generation {observed}, not yet {generation}"
                ));
            }
            if condition["status"] != "True" {
                return Acceptance::Refused(format!(
                    "parent {gateway}: {wanted}={} {}: {}",
                    condition["status"].as_str().unwrap_or("?"),
                    condition["reason"].as_str().unwrap_or(""),
                    condition["message"].as_str().unwrap_or("")
                ));
            }
        }
    }
    if status.len() < parents {
        return Acceptance::Waiting(format!(
            "{} of {parents} parents have reported",
            status.len()
        ));
    }
    Acceptance::Accepted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Value {
        json!({"parentRefs": [{"name": "shared", "namespace": "gateway-system"}],
               "rules": [
                 {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                  "backendRefs": [{"name": "web", "port": 80}]},
                 {"backendRefs": [{"name": "other", "port": 8080}]}]})
    }

    #[test]
    fn a_weight_splits_every_rule_carrying_stable_and_zero_restores_it() {
        let mut spec = spec();
        assert_eq!(canary_percent(&spec, "web", "web-canary"), Some(0));
        spec["rules"] = with_percent(&spec, "web", "web-canary", 10);
        assert_eq!(
            spec["rules"][0]["backendRefs"],
            json!([{"name": "web", "port": 80, "weight": 90}, {"name": "web-canary", "port": 80, "weight": 10}])
        );
        assert_eq!(
            spec["rules"][1],
            json!({"backendRefs": [{"name": "other", "port": 8080}]})
        );
        assert_eq!(canary_percent(&spec, "web", "web-canary"), Some(10));
        assert_eq!(backends(&spec), "web=90+web-canary=10; other=1");
        spec["rules"] = with_percent(&spec, "web", "web-canary", 0);
        assert_eq!(
            spec["rules"][0]["backendRefs"],
            json!([{"name": "web", "port": 80, "weight": 100}])
        );
        assert_eq!(canary_percent(&spec, "web", "web-canary"), Some(0));
    }

    #[test]
    fn acceptance_needs_the_generation_written_and_both_conditions() {
        let mut route = json!({"spec": spec(), "status": {"parents": []}});
        assert!(matches!(acceptance(&route, 2), Acceptance::Waiting(_)));
        let ok = |g: i64| {
            json!([{"type": "Accepted", "status": "True", "observedGeneration": g},
                                {"type": "ResolvedRefs", "status": "True", "observedGeneration": g}])
        };
        route["status"]["parents"] =
            json!([{"parentRef": {"name": "shared"}, "conditions": ok(1)}]);
        assert!(matches!(acceptance(&route, 2), Acceptance::Waiting(_)));
        route["status"]["parents"][0]["conditions"] = ok(2);
        assert_eq!(acceptance(&route, 2), Acceptance::Accepted);
        route["status"]["parents"][0]["conditions"][1] = json!({"type": "ResolvedRefs", "status": "False",
            "reason": "BackendNotFound", "message": "Service web-canary not found", "observedGeneration": 2});
        match acceptance(&route, 2) {
            Acceptance::Refused(why) => assert!(why.contains("BackendNotFound"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
