//! One read of the service (`DescribeServices`) as the adapter needs it:
//! its deployment controller, its task sets (EXTERNAL) and its deployments
//! (ECS), with the request ID of the read.

use aws_sdk_ecs::Client;
use aws_sdk_ecs::operation::RequestId;
use aws_sdk_ecs::types::{DeploymentControllerType, TaskSet};
use deployctl_adapter::AdapterError;

use crate::error::{map_ecs_error, rejected};
use crate::versions::short;

/// Who moves the service's tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Controller {
    /// Rolling updates by ECS (with the deployment circuit breaker).
    Ecs,
    /// Task sets driven from outside: deployctl's blue/green.
    External,
    /// Anything else (CODE_DEPLOY): not deployctl's to drive.
    Other(String),
}

/// A task set, with what the adapter compares and copies.
#[derive(Debug, Clone)]
pub(crate) struct TaskSetView {
    pub(crate) arn: String,
    pub(crate) external_id: Option<String>,
    pub(crate) status: String,
    pub(crate) task_definition: String,
    /// Scale in percent of the service's desired count.
    pub(crate) scale: f64,
    /// Creation time in milliseconds, for telling the newer set from the older.
    pub(crate) created_ms: i64,
    /// Position in the service's list (ties on `created_ms`).
    pub(crate) position: usize,
    pub(crate) raw: TaskSet,
}

impl TaskSetView {
    pub(crate) fn is_primary(&self) -> bool {
        self.status == "PRIMARY"
    }

    /// Whether `self` was created after `other`.
    pub(crate) fn newer_than(&self, other: &TaskSetView) -> bool {
        (self.created_ms, self.position) > (other.created_ms, other.position)
    }

    pub(crate) fn percent(&self) -> u8 {
        self.scale.round().clamp(0.0, 100.0) as u8
    }
}

/// A deployment of the ECS controller.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeploymentView {
    pub(crate) id: String,
    pub(crate) status: String,
    pub(crate) task_definition: String,
    pub(crate) rollout_state: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) desired: i32,
    pub(crate) running: i32,
    pub(crate) pending: i32,
    pub(crate) failed: i32,
}

#[derive(Debug, Clone)]
pub(crate) struct ServiceView {
    /// The service's ARN: what it is, whatever the plan called it (its
    /// platform identity, for locks).
    pub(crate) arn: String,
    pub(crate) status: String,
    pub(crate) controller: Controller,
    pub(crate) task_definition: Option<String>,
    /// Task sets that are not DRAINING (those are on their way out).
    pub(crate) task_sets: Vec<TaskSetView>,
    pub(crate) deployments: Vec<DeploymentView>,
    /// `deploymentCircuitBreaker` as (enable, rollback), when configured.
    pub(crate) circuit_breaker: Option<(bool, bool)>,
    /// The service's recent event messages, newest first (ECS keeps the
    /// last 100): the only record of a deployment the circuit breaker
    /// failed once ECS's own rollback has completed and drained it.
    pub(crate) events: Vec<String>,
    pub(crate) request_id: Option<String>,
}

/// What another writer could change: compared between reads to detect a
/// conflict. Counts and stability move on their own and are left out.
pub(crate) type Fingerprint = Vec<(String, String, String, Option<String>, u64)>;

impl ServiceView {
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        let mut print: Fingerprint = self
            .task_sets
            .iter()
            .map(|ts| {
                (
                    ts.arn.clone(),
                    ts.status.clone(),
                    short(&ts.task_definition).to_owned(),
                    ts.external_id.clone(),
                    (ts.scale * 100.0).round() as u64,
                )
            })
            .collect();
        print.push((
            "service".into(),
            self.status.clone(),
            self.task_definition
                .as_deref()
                .map(short)
                .unwrap_or_default()
                .to_owned(),
            None,
            0,
        ));
        print.sort();
        print
    }

    pub(crate) fn primary(&self) -> Option<&TaskSetView> {
        self.task_sets.iter().find(|ts| ts.is_primary())
    }

    pub(crate) fn primary_deployment(&self) -> Option<&DeploymentView> {
        self.deployments.iter().find(|d| d.status == "PRIMARY")
    }

    /// The event in which ECS reports deployment `id` failed (the circuit
    /// breaker's "(deployment ecs-svc/…) deployment failed: …"), if any.
    pub(crate) fn failure_event(&self, id: &str) -> Option<&str> {
        if id.is_empty() {
            return None;
        }
        self.events
            .iter()
            .map(String::as_str)
            .find(|message| message.contains(id) && message.contains("deployment failed"))
    }
}

/// Reads the service; `NotFound` when ECS reports it missing.
pub(crate) async fn read(
    client: &Client,
    cluster: &str,
    service: &str,
) -> Result<ServiceView, AdapterError> {
    let what = format!("ecs:DescribeServices {cluster}/{service}");
    let out = client
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
        .map_err(|e| map_ecs_error(e, &what))?;
    let request_id = out.request_id().map(str::to_owned);
    let Some(found) = out.services().first() else {
        let reason = out
            .failures()
            .first()
            .and_then(|f| f.reason())
            .unwrap_or("no service returned");
        return Err(AdapterError::NotFound {
            what: format!(
                "service {service} in cluster {cluster} ({reason}); check the plan's ecs.cluster and ecs.service"
            ),
        }
        .with_request_id(request_id));
    };
    let controller = match found.deployment_controller().map(|c| c.r#type()) {
        None | Some(DeploymentControllerType::Ecs) => Controller::Ecs,
        Some(DeploymentControllerType::External) => Controller::External,
        Some(other) => Controller::Other(other.as_str().to_owned()),
    };
    let mut task_sets = Vec::new();
    for (position, ts) in found.task_sets().iter().enumerate() {
        let status = ts.status().unwrap_or_default().to_owned();
        if status == "DRAINING" {
            continue;
        }
        let arn = ts.task_set_arn().map(str::to_owned).ok_or_else(|| {
            rejected(format!(
                "a task set of service {service} has no ARN in the DescribeServices answer"
            ))
        })?;
        task_sets.push(TaskSetView {
            arn,
            external_id: ts
                .external_id()
                .filter(|id| !id.is_empty())
                .map(str::to_owned),
            status,
            task_definition: ts.task_definition().unwrap_or_default().to_owned(),
            scale: ts.scale().map(|s| s.value()).unwrap_or(0.0),
            created_ms: ts
                .created_at()
                .and_then(|t| t.to_millis().ok())
                .unwrap_or(0),
            position,
            raw: ts.clone(),
        });
    }
    let deployments = found
        .deployments()
        .iter()
        .map(|d| DeploymentView {
            id: d.id().unwrap_or_default().to_owned(),
            status: d.status().unwrap_or_default().to_owned(),
            task_definition: d.task_definition().unwrap_or_default().to_owned(),
            rollout_state: d.rollout_state().map(|s| s.as_str().to_owned()),
            reason: d.rollout_state_reason().map(str::to_owned),
            desired: d.desired_count(),
            running: d.running_count(),
            pending: d.pending_count(),
            failed: d.failed_tasks(),
        })
        .collect();
    let circuit_breaker = found
        .deployment_configuration()
        .and_then(|c| c.deployment_circuit_breaker())
        .map(|cb| (cb.enable(), cb.rollback()));
    let events = found
        .events()
        .iter()
        .filter_map(|e| e.message().map(str::to_owned))
        .collect();
    Ok(ServiceView {
        arn: found
            .service_arn()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("ecs:{cluster}/{service}")),
        status: found.status().unwrap_or_default().to_owned(),
        controller,
        task_definition: found.task_definition().map(str::to_owned),
        task_sets,
        deployments,
        circuit_breaker,
        events,
        request_id,
    })
}

/// Confirms a task definition exists and is ACTIVE (ECS refuses INACTIVE
/// ones for new tasks); returns the call's request ID.
pub(crate) async fn check_task_definition(
    client: &Client,
    task_definition: &str,
) -> Result<Option<String>, AdapterError> {
    let what = format!("ecs:DescribeTaskDefinition {task_definition}");
    let out = client
        .describe_task_definition()
        .task_definition(task_definition)
        .send()
        .await
        .map_err(|e| {
            // ECS reports an unknown task definition as a ClientException.
            let mapped = map_ecs_error(e, &what);
            match mapped {
                AdapterError::Rejected { message, .. }
                    if message.contains("ClientException")
                        && message.to_lowercase().contains("unable to describe") =>
                {
                    AdapterError::NotFound {
                        what: format!("task definition {task_definition}: {message}"),
                    }
                }
                other => other,
            }
        })?;
    let request_id = out.request_id().map(str::to_owned);
    let status = out
        .task_definition()
        .and_then(|td| td.status())
        .map(|s| s.as_str().to_owned());
    match status.as_deref() {
        Some("ACTIVE") | None => Ok(request_id),
        Some(other) => Err(AdapterError::Rejected {
            message: format!(
                "task definition {task_definition} is {other}; ECS starts no new tasks from it. Register a new revision and name it in the plan"
            ),
            request_id,
        }),
    }
}
