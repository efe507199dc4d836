//! The Kubernetes permissions this adapter's calls need, per namespace:
//! what `deployctl rbac` turns into least-privilege Roles, as
//! `deployctl iam-policy` does for AWS. Kept beside the calls it covers
//! (`cluster.rs`), and tested against the requests real releases make.

use deployctl_plan::model::StrategyKind;
use deployctl_plan::raw;

use crate::names;

/// One RBAC rule in one namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    pub namespace: String,
    pub api_group: &'static str,
    pub resource: &'static str,
    pub verbs: Vec<&'static str>,
    /// Empty: any name (RBAC cannot name objects for `list` or `create`,
    /// nor objects whose names the release derives from its version).
    pub resource_names: Vec<String>,
}

/// Every rule a release of `spec` by `strategy` needs.
pub fn rules(spec: &raw::KubernetesTarget, strategy: Option<StrategyKind>) -> Vec<Rule> {
    let ns = spec.namespace.clone();
    let rule = |api_group, resource, verbs: &[&'static str], names: Vec<String>| Rule {
        namespace: ns.clone(),
        api_group,
        resource,
        verbs: verbs.to_vec(),
        resource_names: names,
    };
    let mut rules = vec![
        // Read by name, listed by label (greens), written by server-side
        // apply (a PATCH; `create` too, for API servers that check it when
        // an apply creates the object), deleted (older greens, the canary):
        // green names come from versions, so no names here.
        rule(
            "apps",
            "deployments",
            &["get", "list", "create", "patch", "delete"],
            Vec::new(),
        ),
        // Replica counts go through the scale subresource (canary shares,
        // blue scaled down and back up), on names derived from versions.
        rule("apps", "deployments/scale", &["patch"], Vec::new()),
        // A Deployment's current template: its newest ReplicaSet and pods.
        rule("apps", "replicasets", &["list"], Vec::new()),
        rule("", "pods", &["list"], Vec::new()),
        // The switch is done only when the Service's endpoints follow.
        rule("discovery.k8s.io", "endpointslices", &["list"], Vec::new()),
        // The Deployment's platform lock (`lease_lock.rs`): read and
        // renewed by name, made once (`create` cannot be limited by name).
        rule(
            "coordination.k8s.io",
            "leases",
            &["get", "update"],
            vec![crate::lease_lock::lease_name(&spec.deployment)],
        ),
        rule("coordination.k8s.io", "leases", &["create"], Vec::new()),
    ];
    let mut services = vec![spec.service.clone()];
    services.extend(spec.preview_service.clone());
    // A canary (by route weights or, without a route, replica ratios) runs
    // beside the primary behind a Service of its own.
    let canary_model = spec.http_route.is_some() || strategy == Some(StrategyKind::Canary);
    if canary_model {
        let canary = names::canary_service(&spec.service);
        services.push(canary.clone());
        rules.push(rule("", "services", &["get", "patch"], services));
        // The canary's Service is made by server-side apply (`create`
        // cannot be limited by name) and deleted by name.
        rules.push(rule("", "services", &["create"], Vec::new()));
        rules.push(rule("", "services", &["delete"], vec![canary]));
    } else {
        rules.push(rule("", "services", &["get", "patch"], services));
    }
    if let Some(route) = &spec.http_route {
        rules.push(Rule {
            namespace: route.namespace.clone().unwrap_or_else(|| ns.clone()),
            api_group: "gateway.networking.k8s.io",
            resource: "httproutes",
            verbs: vec!["get", "patch"],
            resource_names: vec![route.name.clone()],
        });
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(route: bool) -> raw::KubernetesTarget {
        serde_json::from_value(serde_json::json!({
            "namespace": "shop", "deployment": "web", "service": "web",
            "previewService": if route { serde_json::Value::Null } else { "web-preview".into() },
            "httpRoute": if route { serde_json::json!({"name": "web", "namespace": "edge"}) } else { serde_json::Value::Null },
        }))
        .expect("a target")
    }

    #[test]
    fn the_platform_lock_is_renewed_by_name() {
        let rules = rules(&spec(false), Some(StrategyKind::BlueGreen));
        let leases: Vec<_> = rules.iter().filter(|r| r.resource == "leases").collect();
        assert_eq!(leases.len(), 2, "{leases:?}");
        assert_eq!(leases[0].verbs, ["get", "update"]);
        assert_eq!(leases[0].resource_names, ["deployctl-lock-web"]);
        assert_eq!(leases[1].verbs, ["create"]);
    }

    #[test]
    fn blue_green_needs_no_route_and_no_service_creation() {
        let rules = rules(&spec(false), Some(StrategyKind::BlueGreen));
        assert!(rules.iter().all(|r| r.resource != "httproutes"));
        let services: Vec<_> = rules.iter().filter(|r| r.resource == "services").collect();
        assert_eq!(services.len(), 1);
        assert_eq!(services[0].verbs, ["get", "patch"]);
        assert_eq!(services[0].resource_names, ["web", "web-preview"]);
    }

    #[test]
    fn a_routed_canary_patches_its_route_by_name_in_the_route_namespace() {
        let rules = rules(&spec(true), Some(StrategyKind::Canary));
        let route = rules
            .iter()
            .find(|r| r.resource == "httproutes")
            .expect("a route rule");
        assert_eq!(
            (route.namespace.as_str(), route.resource_names.as_slice()),
            ("edge", &["web".to_owned()][..])
        );
        assert!(rules.iter().any(|r| r.resource == "services"
            && r.verbs == ["delete"]
            && r.resource_names == ["web-canary"]));
        assert!(rules.iter().all(|r| !r.verbs.contains(&"*")));
    }

    #[test]
    fn a_canary_without_a_route_makes_its_service_and_touches_no_route() {
        let mut unrouted = spec(false);
        unrouted.preview_service = None;
        let rules = rules(&unrouted, Some(StrategyKind::Canary));
        assert!(rules.iter().all(|r| r.resource != "httproutes"));
        assert!(rules.iter().any(|r| r.resource == "services"
            && r.verbs == ["get", "patch"]
            && r.resource_names == ["web", "web-canary"]));
        assert!(rules.iter().any(|r| r.resource == "services"
            && r.verbs == ["delete"]
            && r.resource_names == ["web-canary"]));
    }
}
