//! The IAM permissions a Kubernetes target needs (S6): only when the plan
//! names an EKS cluster by `eks:` — reading that cluster's endpoint and CA.
//! The presigned token needs none (STS `GetCallerIdentity` is allowed to
//! every principal); what the token may do in the cluster is the cluster's
//! access entries' business, and `deployctl rbac` prints that side.

use deployctl_adapter::iam::{Scope, Statement};
use deployctl_plan::raw;

pub fn statements(spec: &raw::KubernetesTarget, scope: &Scope) -> Vec<Statement> {
    let Some(eks) = &spec.eks else {
        return Vec::new();
    };
    let region = scope.region(eks.region.as_deref());
    vec![Statement::new(
        format!("eks {}", eks.cluster),
        ["eks:DescribeCluster"],
        [scope.arn("eks", region, &format!("cluster/{}", eks.cluster))],
    )]
}
