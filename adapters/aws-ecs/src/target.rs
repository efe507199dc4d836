//! [`EcsTarget`]: construction, the memory shared by both release paths,
//! and the `Target` implementation that picks the path from the service's
//! deployment controller on every call (`EXTERNAL` → task sets, `ECS` →
//! rolling update).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_ecs::Client;
use deployctl_adapter::construct::PlanRelease;
use deployctl_adapter::writer::LastWrite;
use deployctl_adapter::{
    AdapterError, Applied, BoxFuture, Capabilities, HealthProbe, IdempotencyKey, Moves, Observed,
    PlannedCall, Preflight, Target, TrafficAction, TrafficTarget,
};
use deployctl_plan::model::{ArtifactSource, GateCheck, TargetKind};
use deployctl_plan::raw;

use crate::service::{self, Controller, Fingerprint, ServiceView};
use crate::versions::Versions;

/// The ECS client configuration every [`EcsTarget`] uses, from a loaded
/// [`SdkConfig`] with the shared retry and timeout settings. Tests add
/// their interceptors to it before building.
pub fn ecs_config(sdk: &SdkConfig) -> aws_sdk_ecs::config::Builder {
    aws_sdk_ecs::config::Builder::from(sdk)
        .retry_config(deployctl_aws::config::retry())
        .timeout_config(deployctl_aws::config::timeouts())
}

/// How long a rolling update may take, and how often it is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcsOptions {
    /// Time between two `DescribeServices` while waiting for a rollout.
    pub poll_interval: Duration,
    /// The longest one apply waits for a rollout to reach COMPLETED before
    /// it reports `Timeout` (the engine retries, which waits again without
    /// starting a second rollout, or rolls back).
    pub rollout_timeout: Duration,
}

impl Default for EcsOptions {
    fn default() -> Self {
        EcsOptions {
            poll_interval: Duration::from_secs(10),
            rollout_timeout: Duration::from_secs(15 * 60),
        }
    }
}

/// Why a target could not be built from the plan: refused before any
/// call. The messages name the plan's values; the binary adds which target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstructError {
    /// The release (or the pinned stable version) is not a task
    /// definition (validation only offers task definitions for ECS
    /// targets; a caller building one by hand may not).
    #[error(
        "artifact version {version} has no taskDefinition; an ecs target releases a task definition (`artifacts.{target}.taskDefinition: family:revision` or its ARN)"
    )]
    NoTaskDefinition { target: String, version: String },
}

/// An ECS service as a deploy target (see the crate docs for the mapping).
pub struct EcsTarget {
    pub(crate) name: String,
    pub(crate) cluster: String,
    pub(crate) service: String,
    pub(crate) client: Client,
    pub(crate) versions: Versions,
    pub(crate) options: EcsOptions,
    memory: Arc<Mutex<Memory>>,
}

impl std::fmt::Debug for EcsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcsTarget")
            .field("name", &self.name)
            .field("cluster", &self.cluster)
            .field("service", &self.service)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// What this process knows beyond the platform. Everything here is an
/// optimisation or a conflict check: a restarted process rebuilds what it
/// needs from the service (task sets and their externalIds, deployments).
#[derive(Debug, Default)]
pub(crate) struct Memory {
    /// The task sets as first read, then as written here (EXTERNAL
    /// controller); an apply that finds them different refuses, naming
    /// another writer. Forgotten only after our own failed step.
    pub(crate) written: LastWrite<Fingerprint>,
    /// The controller at the last read, for the pure `plan`.
    pub(crate) controller: Option<Controller>,
    /// Labels of task sets seen on the platform, with their task
    /// definitions (a rollback to a retired label can recreate it).
    pub(crate) labels: Vec<(String, String)>,
    /// The version `Deploy` announced (the rolling path has nothing to
    /// show on the platform until the switch).
    pub(crate) deployed: Option<String>,
    /// The stable version when `Deploy` ran (rolling path, `Rollback` without a version).
    pub(crate) previous_stable: Option<String>,
    /// The last rolling update this process started or waited for: (task
    /// definition, deployment ID). Once the circuit breaker's rollback has
    /// completed, ECS lists only the rollback deployment; the failed one is
    /// named in the service's events alone, by this ID.
    pub(crate) rollout: Option<(String, String)>,
}

impl EcsTarget {
    /// A target for the plan's `ecs` section, with a client from the
    /// standard AWS chain (region from the plan, else the environment;
    /// endpoint from `AWS_ENDPOINT_URL` when set). `release.artifact` is
    /// the plan's artifact for this target (its `taskDefinition` is what
    /// `Deploy { version }` releases); `release.pinned_stable` the version
    /// a rollback returns to when the plan pins one.
    pub async fn from_spec(
        name: impl Into<String>,
        spec: &raw::EcsTarget,
        release: &PlanRelease<'_>,
    ) -> Result<Self, ConstructError> {
        let name = name.into();
        let mut versions = Versions::default();
        for (artifact, releasing) in [(release.pinned_stable, false), (release.artifact, true)] {
            let Some(artifact) = artifact else { continue };
            match &artifact.source {
                ArtifactSource::TaskDefinition(td) => {
                    versions.add(artifact.version.clone(), td.clone(), releasing);
                }
                _ => {
                    return Err(ConstructError::NoTaskDefinition {
                        target: name,
                        version: artifact.version.clone(),
                    });
                }
            }
        }
        let sdk = deployctl_aws::config::load(spec.region.as_deref()).await;
        let client = Client::from_conf(ecs_config(&sdk).build());
        let mut target = EcsTarget::with_client(name, client, &spec.cluster, &spec.service);
        target.versions = versions;
        Ok(target)
    }

    /// A target over an existing client (tests, shared clients), knowing
    /// no version labels yet: every label is read as a task definition
    /// until [`EcsTarget::with_version`] names one.
    pub fn with_client(
        name: impl Into<String>,
        client: Client,
        cluster: impl Into<String>,
        service: impl Into<String>,
    ) -> Self {
        EcsTarget {
            name: name.into(),
            cluster: cluster.into(),
            service: service.into(),
            client,
            versions: Versions::default(),
            options: EcsOptions::default(),
            memory: Arc::default(),
        }
    }

    /// Names a version: `label` (the plan's `artifacts.X.version`) stands
    /// for `task_definition`. `release`: this is the version the plan
    /// releases (a restarted rolling update switches to it).
    pub fn with_version(
        mut self,
        label: impl Into<String>,
        task_definition: impl Into<String>,
        release: bool,
    ) -> Self {
        self.versions
            .add(label.into(), task_definition.into(), release);
        self
    }

    /// Replaces the rollout wait settings.
    pub fn with_options(mut self, options: EcsOptions) -> Self {
        self.options = options;
        self
    }

    pub(crate) fn memory(&self) -> MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) async fn read(&self) -> Result<ServiceView, AdapterError> {
        let view = service::read(&self.client, &self.cluster, &self.service).await?;
        let mut memory = self.memory();
        memory.controller = Some(view.controller.clone());
        for ts in &view.task_sets {
            if let Some(id) = &ts.external_id {
                memory.labels.retain(|(label, _)| label != id);
                memory.labels.push((id.clone(), ts.task_definition.clone()));
            }
        }
        Ok(view)
    }

    /// The task definition a version label stands for: the plan's pairs,
    /// then task sets seen carrying the label, else the label itself.
    pub(crate) fn task_definition_of(&self, label: &str) -> String {
        if let Some(td) = self.versions.known_task_definition(label) {
            return td;
        }
        self.memory()
            .labels
            .iter()
            .find(|(known, _)| known == label)
            .map(|(_, td)| td.clone())
            .unwrap_or_else(|| label.to_owned())
    }

    pub(crate) fn service_name(&self) -> String {
        format!("{}/{}", self.cluster, self.service)
    }

    /// What this service can do: task sets take any weight; a rolling
    /// update moves every task at once, so a canary's partial weights are
    /// refused before anything moves.
    pub(crate) fn capabilities(&self, view: &ServiceView) -> Capabilities {
        match &view.controller {
            Controller::External => Capabilities::weights_up_to(100),
            Controller::Ecs | Controller::Other(_) => Capabilities::switch_only(format!(
                "ECS service {} uses the ECS (rolling update) deployment controller, which replaces every task at once; release it with a blueGreen stage, or switch the service to the EXTERNAL deployment controller (task sets) for canary weights",
                self.service_name()
            )),
        }
    }

    fn other_controller(&self, kind: &str) -> AdapterError {
        AdapterError::Unsupported {
            what: format!(
                "ECS service {} uses the {kind} deployment controller; deployctl releases services on the EXTERNAL (task sets) or ECS (rolling update) controller",
                self.service_name()
            ),
        }
    }

    async fn apply_inner(
        &self,
        action: &TrafficAction,
        key: &IdempotencyKey,
    ) -> Result<Applied, AdapterError> {
        let view = self.read().await?;
        match view.controller.clone() {
            Controller::External => self.apply_task_sets(view, action, key).await,
            Controller::Ecs => self.apply_rolling(view, action).await,
            Controller::Other(kind) => Err(self.other_controller(&kind)),
        }
    }
}

impl Target for EcsTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> TargetKind {
        TargetKind::Ecs
    }

    fn observe(&self) -> BoxFuture<'_, Result<Observed, AdapterError>> {
        Box::pin(async move {
            let view = self.read().await?;
            match view.controller.clone() {
                Controller::External => {
                    let observed = self.observe_task_sets(&view)?;
                    // Only when none is held: a re-read (the engine's, before
                    // retrying a conflict) must not adopt another writer's change.
                    self.memory().written.observed(view.fingerprint());
                    Ok(observed)
                }
                Controller::Ecs => Ok(self.observe_rolling(&view)),
                Controller::Other(kind) => Err(self.other_controller(&kind)),
            }
        })
    }

    fn preflight(&self) -> BoxFuture<'_, Result<Preflight, AdapterError>> {
        Box::pin(async move {
            let view = self.read().await?;
            if view.status != "ACTIVE" {
                return Ok(Preflight {
                    verified: Vec::new(),
                    stable_version: String::new(),
                    rollback_ready: false,
                    detail: format!(
                        "ECS service {} is {}, not ACTIVE",
                        self.service_name(),
                        view.status
                    ),
                    identity: view.arn.clone(),
                    capabilities: self.capabilities(&view),
                });
            }
            match view.controller.clone() {
                Controller::External => self.preflight_task_sets(&view).await,
                Controller::Ecs => self.preflight_rolling(&view).await,
                Controller::Other(kind) => Err(self.other_controller(&kind)),
            }
        })
    }

    fn probe(&self, _check: &GateCheck) -> Option<Box<dyn HealthProbe>> {
        // HTTP, Prometheus and CloudWatch gates are not target-bound.
        None
    }

    fn moves(&self) -> Moves<'_> {
        Moves::traffic(self)
    }
}

impl TrafficTarget for EcsTarget {
    fn plan_traffic(
        &self,
        observed: &Observed,
        action: &TrafficAction,
    ) -> Result<Vec<PlannedCall>, AdapterError> {
        let controller = self.memory().controller.clone();
        match controller {
            Some(Controller::Ecs) => self.plan_rolling(observed, action),
            Some(Controller::Other(kind)) => Err(self.other_controller(&kind)),
            Some(Controller::External) | None => self.plan_task_sets(observed, action),
        }
    }

    fn apply_traffic<'a>(
        &'a self,
        action: &'a TrafficAction,
        key: &'a IdempotencyKey,
    ) -> BoxFuture<'a, Result<Applied, AdapterError>> {
        Box::pin(self.apply_inner(action, key))
    }
}

/// Confirms a task definition for preflight: `Ok(None)` when it is ACTIVE,
/// `Ok(Some(why))` when it cannot be rolled back to.
pub(crate) async fn rollback_blocker(
    client: &Client,
    task_definition: &str,
) -> Result<Option<String>, AdapterError> {
    match service::check_task_definition(client, task_definition).await {
        Ok(_) => Ok(None),
        Err(AdapterError::NotFound { what }) => Ok(Some(format!("not found: {what}"))),
        Err(AdapterError::Rejected { message, .. }) => Ok(Some(message)),
        Err(other) => Err(other),
    }
}
