//! ECS targets: a service released with task sets (EXTERNAL deployment
//! controller) or a rolling update (ECS controller). An artifact is a
//! registered task definition, or an image for the service's current one.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Kind, SERVICE_GATES, Source, Spec, image};
use crate::check::Checker;
use crate::model::{ArtifactSource, Capabilities, StrategyKind, TargetKind, TargetSpec};
use crate::raw;

/// An ECS service released with task sets (EXTERNAL deployment controller).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EcsTarget {
    pub cluster: String,
    pub service: String,
    #[serde(default)]
    pub region: Option<String>,
}

pub(crate) struct Ecs;

impl Kind for Ecs {
    fn name(&self) -> &'static str {
        "ecs"
    }

    fn label(&self) -> &'static str {
        "ECS"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            strategies: &[StrategyKind::Canary, StrategyKind::BlueGreen],
            gates: SERVICE_GATES,
            max_canary_weight: 100,
        }
    }

    fn artifact_sources(&self) -> &'static [&'static Source] {
        &[&image::IMAGE, &TASK_DEFINITION]
    }

    fn is_written(&self, target: &raw::Target) -> bool {
        target.ecs.is_some()
    }

    fn check(&self, checker: &mut Checker, path: &str, target: &raw::Target) -> Option<TargetSpec> {
        let ecs = target.ecs.clone()?;
        checker.non_empty(&format!("{path}.ecs.cluster"), &ecs.cluster);
        checker.non_empty(&format!("{path}.ecs.service"), &ecs.service);
        Some(TargetSpec::Ecs(ecs))
    }
}

impl Spec for EcsTarget {
    fn kind(&self) -> TargetKind {
        TargetKind::Ecs
    }

    fn rollback(&self, _strategy: StrategyKind, stable: &str) -> String {
        format!(
            "service `{}` back on {stable}: its stable task set made primary again and the new one removed (EXTERNAL controller), or a rolling update back to the stable task definition (ECS controller)",
            self.service
        )
    }
}

/// `taskDefinition:`, a plain ARN rather than a section of its own.
pub(crate) const TASK_DEFINITION: Source = Source {
    key: "taskDefinition",
    written: |artifact| artifact.task_definition.is_some(),
    check: check_task_definition,
};

fn check_task_definition(
    checker: &mut Checker,
    path: &str,
    artifact: &raw::Artifact,
) -> Option<ArtifactSource> {
    let arn = artifact.task_definition.clone()?;
    if !arn.starts_with("arn:aws:ecs:") || !arn.contains(":task-definition/") {
        checker
            .error(
                format!("{path}.taskDefinition"),
                format!("`{arn}` is not an ECS task definition ARN"),
            )
            .hint = Some("e.g. `arn:aws:ecs:eu-west-1:123456789012:task-definition/web:42`".into());
    }
    Some(ArtifactSource::TaskDefinition(arn))
}
