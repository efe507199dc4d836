//! Gateway API HTTPRoute weights, edited without IO: which rules carry the
//! stable Service, what share the canary has, the rules with a new share,
//! the header rules that send matching requests to the canary, and whether
//! the route's controller has taken the generation written.

use std::collections::BTreeMap;

use deployctl_plan::model::HeaderMatch;
use serde_json::{Value, json};

/// A canary's header routes by name: the headers each one matches.
pub type HeaderRoutes = BTreeMap<String, Vec<HeaderMatch>>;

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

/// A rule deployctl added for a header route: it sends only to `canary`.
fn is_header_rule(rule: &Value, canary: &str) -> bool {
    rule["backendRefs"]
        .as_array()
        .is_some_and(|refs| !refs.is_empty() && refs.iter().all(|b| refers_to(b, canary)))
}

/// `spec.rules` with deployctl's header rules replaced by one per entry
/// of `routes`: each matches what the first rule carrying `stable`
/// matches (path, method, its own headers) and the route's headers too,
/// and sends everything to `canary` (its ref copies the stable one's port
/// and namespace). Gateway API prefers the match with more headers, so
/// the header rule wins for the requests that carry them.
pub fn with_header_routes(
    spec: &Value,
    stable: &str,
    canary: &str,
    routes: &HeaderRoutes,
) -> Value {
    let mut rules: Vec<Value> = spec["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|rule| !is_header_rule(rule, canary))
        .cloned()
        .collect();
    let Some(carrier) = carrying(spec, stable).into_iter().next().cloned() else {
        return Value::Array(rules);
    };
    let Some(mut backend) = carrier["backendRefs"]
        .as_array()
        .and_then(|refs| refs.iter().find(|b| refers_to(b, stable)))
        .cloned()
    else {
        return Value::Array(rules);
    };
    // Its one backend takes everything; 1 is what the API server defaults
    // it to, so a rule written again compares equal.
    backend["name"] = json!(canary);
    backend["weight"] = json!(1);
    let matches = carrier["matches"]
        .as_array()
        .cloned()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| vec![json!({})]);
    for headers in routes.values().filter(|h| !h.is_empty()) {
        let matches: Vec<Value> = matches
            .iter()
            .map(|m| {
                let mut m = m.clone();
                let mut all = m["headers"].as_array().cloned().unwrap_or_default();
                all.extend(
                    headers
                        .iter()
                        .map(|h| json!({"type": "Exact", "name": h.name, "value": h.value})),
                );
                m["headers"] = Value::Array(all);
                m
            })
            .collect();
        rules.push(json!({"matches": matches, "backendRefs": [backend.clone()]}));
    }
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
    #[test]
    fn a_header_route_adds_a_more_specific_rule_to_the_canary_and_is_removed_again() {
        use super::{HeaderRoutes, with_header_routes};
        use deployctl_plan::model::HeaderMatch;
        let spec = serde_json::json!({"rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
             "backendRefs": [{"name": "web", "port": 80, "weight": 90}, {"name": "web-canary", "port": 80, "weight": 10}]},
        ]});
        let mut routes = HeaderRoutes::new();
        routes.insert(
            "beta".into(),
            vec![HeaderMatch {
                name: "X-Canary".into(),
                value: "always".into(),
            }],
        );
        let rules = with_header_routes(&spec, "web", "web-canary", &routes);
        assert_eq!(rules.as_array().map(Vec::len), Some(2), "{rules:#}");
        assert_eq!(
            rules[0], spec["rules"][0],
            "the weighted rule is kept as it was"
        );
        assert_eq!(
            rules[1],
            serde_json::json!({
                "matches": [{"path": {"type": "PathPrefix", "value": "/api"},
                             "headers": [{"type": "Exact", "name": "X-Canary", "value": "always"}]}],
                "backendRefs": [{"name": "web-canary", "port": 80, "weight": 1}],
            })
        );
        // Written again, it is replaced, not added twice; no routes, gone.
        let again = with_header_routes(
            &serde_json::json!({"rules": rules}),
            "web",
            "web-canary",
            &routes,
        );
        assert_eq!(again, rules);
        let none = with_header_routes(
            &serde_json::json!({"rules": rules}),
            "web",
            "web-canary",
            &HeaderRoutes::new(),
        );
        assert_eq!(none, spec["rules"]);
    }

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
