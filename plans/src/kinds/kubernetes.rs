//! Kubernetes targets: a Deployment behind a Service. Blue-green switches
//! the Service's selector; a canary is weighted exactly by a Gateway API
//! HTTPRoute's backend weights, or, without one, approximately by replica
//! ratios, which the validator warns about before anything runs.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Kind, Source, Spec, image};
use crate::check::Checker;
use crate::model::{Capabilities, GateKind, StrategyKind, TargetKind, TargetSpec};
use crate::raw;

/// A Kubernetes Deployment behind a Service (blue-green switches the
/// Service selector), optionally weighted through a Gateway API HTTPRoute
/// (canary).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubernetesTarget {
    /// The kubeconfig file, relative to the plan's directory; `KUBECONFIG`
    /// (or `~/.kube/config`) when omitted, as kubectl reads it.
    #[serde(default)]
    pub kubeconfig: Option<String>,
    /// kubeconfig context; the current context when omitted.
    #[serde(default)]
    pub context: Option<String>,
    /// An EKS cluster by name, instead of a kubeconfig: its endpoint and CA
    /// from EKS DescribeCluster, and the bearer token `aws eks get-token`
    /// makes, from the AWS credentials of the standard chain.
    #[serde(default)]
    pub eks: Option<EksCluster>,
    pub namespace: String,
    pub deployment: String,
    /// The Service that carries production traffic.
    pub service: String,
    /// Service that exposes the new version before promotion (blue-green).
    #[serde(default)]
    pub preview_service: Option<String>,
    /// Gateway API route whose backend weights split traffic (canary).
    #[serde(default)]
    pub http_route: Option<HttpRouteRef>,
}

/// An EKS cluster, named as `aws eks update-kubeconfig` names it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EksCluster {
    pub cluster: String,
    /// The standard chain's region (`AWS_REGION`) when omitted.
    #[serde(default)]
    pub region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRouteRef {
    pub name: String,
    /// The target's namespace when omitted.
    #[serde(default)]
    pub namespace: Option<String>,
}

pub(crate) struct Kubernetes;

impl Kind for Kubernetes {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn label(&self) -> &'static str {
        "Kubernetes"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            strategies: &[StrategyKind::Canary, StrategyKind::BlueGreen],
            // Readiness of the new pods: a gate only the cluster can answer.
            gates: &[
                GateKind::Http,
                GateKind::Prometheus,
                GateKind::CloudWatch,
                GateKind::Kubernetes,
            ],
            max_canary_weight: 100,
        }
    }

    fn artifact_sources(&self) -> &'static [&'static Source] {
        &[&image::IMAGE]
    }

    fn is_written(&self, target: &raw::Target) -> bool {
        target.kubernetes.is_some()
    }

    fn check(&self, checker: &mut Checker, path: &str, target: &raw::Target) -> Option<TargetSpec> {
        let k8s = target.kubernetes.clone()?;
        let at = format!("{path}.kubernetes");
        checker.non_empty(&format!("{at}.namespace"), &k8s.namespace);
        checker.non_empty(&format!("{at}.deployment"), &k8s.deployment);
        checker.non_empty(&format!("{at}.service"), &k8s.service);
        if let Some(path) = &k8s.kubeconfig {
            checker.non_empty(&format!("{at}.kubeconfig"), path);
        }
        if let Some(eks) = &k8s.eks {
            checker.non_empty(&format!("{at}.eks.cluster"), &eks.cluster);
            if k8s.kubeconfig.is_some() || k8s.context.is_some() {
                checker
                    .error(
                        format!("{at}.eks"),
                        "a target reaches its cluster either by `eks` or by `kubeconfig`/`context`, not both",
                    )
                    .hint = Some("keep `eks: {cluster, region}` and drop `kubeconfig` and `context`, or the other way round".into());
            }
        }
        if k8s.preview_service.as_deref() == Some(k8s.service.as_str()) {
            checker.error(
                format!("{at}.previewService"),
                "the preview Service must differ from the production Service",
            );
        }
        Some(TargetSpec::Kubernetes(k8s))
    }
}

impl Spec for KubernetesTarget {
    fn kind(&self) -> TargetKind {
        TargetKind::Kubernetes
    }

    fn check_strategy(
        &self,
        checker: &mut Checker,
        target: &str,
        path: &str,
        strategy: StrategyKind,
    ) {
        if strategy == StrategyKind::Canary && self.http_route.is_none() {
            checker.warning(
                path,
                format!(
                    "target `{target}` has no HTTPRoute, so its canary weights are replica ratios and only approximate \
                     (the canary's share of the Service's pods: 10% beside 4 pods is 1 pod in 5, 20%); \
                     add `targets.{target}.kubernetes.httpRoute` for exact weights"
                ),
            );
        }
    }

    fn header_routes_refused(&self, target: &str) -> Option<(String, String)> {
        self.http_route.is_none().then(|| {
            (
                format!("target `{target}` has no HTTPRoute, so it cannot route requests by header"),
                format!("add `targets.{target}.kubernetes.httpRoute`, or remove the `setHeaderRoute` step"),
            )
        })
    }

    fn rollback(&self, strategy: StrategyKind, stable: &str) -> String {
        match strategy {
            StrategyKind::BlueGreen => format!(
                "Service `{}` selector back to the stable pods ({stable})",
                self.service
            ),
            StrategyKind::Canary | StrategyKind::Waves => match &self.http_route {
                Some(route) => format!(
                    "HTTPRoute `{}` weights back to 100% stable ({stable}); canary pods scaled down",
                    route.name
                ),
                None => format!(
                    "Service `{}` pinned back to the stable pods ({stable}); canary pods removed",
                    self.service
                ),
            },
        }
    }
}
