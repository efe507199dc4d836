//! The IAM permissions the ECS target's calls need (S6): the service the
//! plan names and its task sets, nothing else of the cluster.

use deployctl_adapter::iam::{Scope, Statement};
use deployctl_plan::raw;

/// Statements for releasing `spec`'s service: reading it, rolling it
/// (`UpdateService`) or moving its task sets. Task-set calls are granted
/// on the service and on its task sets, since IAM checks these calls
/// against either depending on the action.
pub fn statements(spec: &raw::EcsTarget, scope: &Scope) -> Vec<Statement> {
    let region = scope.region(spec.region.as_deref());
    let service = scope.arn(
        "ecs",
        region,
        &format!("service/{}/{}", spec.cluster, spec.service),
    );
    let task_sets = scope.arn(
        "ecs",
        region,
        &format!("task-set/{}/{}/*", spec.cluster, spec.service),
    );
    vec![
        Statement::new(
            format!("ecs {} {}", spec.cluster, spec.service),
            [
                "ecs:DescribeServices",
                "ecs:UpdateService",
                "ecs:CreateTaskSet",
                "ecs:UpdateTaskSet",
                "ecs:DeleteTaskSet",
                "ecs:UpdateServicePrimaryTaskSet",
            ],
            [service, task_sets],
        ),
        // Task definitions are read to check the release's is ACTIVE; ECS
        // has no resource-level permission for reading them.
        Statement::new(
            "ecs task definition reads",
            ["ecs:DescribeTaskDefinition"],
            ["*"],
        ),
    ]
}
