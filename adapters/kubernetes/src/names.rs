//! What deployctl writes on objects, and how it names the ones it makes.
//! Everything needed to resume or roll back after a crash is in these
//! labels and annotations, on the cluster: a restarted process rebuilds
//! its view from them, never from memory.

/// The field manager of every write (server-side apply).
pub const FIELD_MANAGER: &str = "deployctl";

/// The version a Deployment runs, as the plan names it.
pub const VERSION: &str = "deployctl.io/version";
/// On Deployments deployctl makes: the plan's Deployment they belong to.
pub const WORKLOAD: &str = "deployctl.io/workload";
/// In the selector and pod labels of Deployments deployctl makes, so their
/// pods never overlap another Deployment's selector.
pub const DEPLOYMENT: &str = "deployctl.io/deployment";
/// On the production Service (blue-green): the Deployment it sends
/// traffic to, the one the release treats as stable, and the one a
/// rollback returns to after promotion.
pub const ACTIVE: &str = "deployctl.io/active-deployment";
pub const STABLE: &str = "deployctl.io/stable-deployment";
pub const PREVIOUS: &str = "deployctl.io/previous-deployment";
/// On the primary of a promoted canary: the version and container images
/// it ran before, for a rollback after promotion.
/// On the stable Service of a canary without a route: the weight the
/// replica ratio was set for (the real share is the canary's pods' part).
pub const CANARY_WEIGHT: &str = "deployctl.io/canary-weight";
/// On the HTTPRoute: the canary's header routes by name (JSON), so a step
/// can replace or remove one by its name.
pub const HEADER_ROUTES: &str = "deployctl.io/header-routes";
pub const ROLLBACK_VERSION: &str = "deployctl.io/rollback-version";
pub const ROLLBACK_IMAGES: &str = "deployctl.io/rollback-images";
/// The label Deployments give their pods and ReplicaSets (Kubernetes'
/// own): the active Service selects one template's pods by it.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The label linking an EndpointSlice to its Service (Kubernetes' own).
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The ReplicaSet revision annotation (Kubernetes' own).
pub const REVISION: &str = "deployment.kubernetes.io/revision";

/// The green Deployment of a blue-green release of `version`.
pub fn green(base: &str, version: &str) -> String {
    bounded(&format!("{base}-{}", dns_label(version)))
}

/// The canary Deployment of `base`.
pub fn canary(base: &str) -> String {
    bounded(&format!("{base}-canary"))
}

/// The Service deployctl makes for a canary of `service`.
pub fn canary_service(service: &str) -> String {
    bounded(&format!("{service}-canary"))
}

/// `text` as a DNS label: lowercase letters, digits and single dashes.
fn dns_label(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// Pod names are their ReplicaSet's plus 16 characters and must stay a
/// DNS label (63): long names keep a prefix and a hash of the whole.
fn bounded(name: &str) -> String {
    const MAX: usize = 47;
    if name.len() <= MAX {
        return name.to_owned();
    }
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let keep = &name[..MAX - 9];
    format!("{}-{:08x}", keep.trim_end_matches('-'), hash as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_become_dns_labels() {
        assert_eq!(green("checkout-api", "2024.11.3"), "checkout-api-2024-11-3");
        assert_eq!(green("web", "V1.2+build_7"), "web-v1-2-build-7");
        assert_eq!(canary("storefront"), "storefront-canary");
    }

    #[test]
    fn long_names_stay_short_and_distinct() {
        let a = green("a-very-long-deployment-name-for-checkout", "2024.11.3-rc.1");
        let b = green("a-very-long-deployment-name-for-checkout", "2024.11.3-rc.2");
        assert!(a.len() <= 47 && b.len() <= 47, "{a} {b}");
        assert_ne!(a, b);
        assert!(!a.contains("--"), "{a}");
    }
}
