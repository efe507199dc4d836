//! Rolling updates on the ECS deployment controller, guarded by the
//! deployment circuit breaker.
//!
//! ECS replaces tasks itself; there is no traffic split to hold, so only a
//! blue-green-shaped stage fits: `Deploy` checks the task definition and
//! remembers it (nothing changes on the service yet), the switch
//! (`SetWeight 100` or `Promote`) is `UpdateService` with the new task
//! definition followed by a bounded wait for the new deployment to reach
//! COMPLETED. A FAILED deployment (the circuit breaker tripped) is a
//! permanent error, so the engine rolls back; `Rollback` returns the
//! service to the stable task definition (or waits for the circuit
//! breaker's own rollback to finish) and waits for COMPLETED too.
//! Weights between 0 and 100 are `Unsupported`.

use std::time::Instant;

use aws_sdk_ecs::config::AsyncSleep;
use aws_sdk_ecs::operation::RequestId;
use deployctl_adapter::writer::AnotherWriter;
use deployctl_adapter::{AdapterError, Applied, Observed, PlannedCall, Preflight, TrafficAction};

use crate::error::{map_ecs_error, rejected};
use crate::service::{self, DeploymentView, ServiceView};
use crate::target::{EcsTarget, rollback_blocker};
use crate::versions::short_eq;

/// Whether a wait is for a release or for a rollback (a rollback accepts
/// the circuit breaker's own rollback to the same task definition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Release,
    Rollback,
}

fn completed(deployment: &DeploymentView, view: &ServiceView) -> bool {
    match deployment.rollout_state.as_deref() {
        Some("COMPLETED") => true,
        Some(_) => false,
        // Without rollout states: steady when it alone runs every task.
        None => view.deployments.len() == 1 && deployment.running >= deployment.desired,
    }
}

fn progress(deployment: &DeploymentView) -> String {
    format!(
        "deployment {} of {}: {} (running {}/{}, pending {}, failed tasks {}){}",
        deployment.id,
        crate::versions::short(&deployment.task_definition),
        deployment
            .rollout_state
            .as_deref()
            .unwrap_or("no rollout state"),
        deployment.running,
        deployment.desired,
        deployment.pending,
        deployment.failed,
        deployment
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    )
}

impl EcsTarget {
    fn rolling_unsupported(&self, percent: u8) -> AdapterError {
        AdapterError::Unsupported {
            what: format!(
                "weight {percent}% on ECS service {}: it uses the ECS rolling update controller, which replaces tasks instead of splitting traffic. Use a blueGreen stage (the switch is the rolling update), or move the service to the EXTERNAL deployment controller for canary weights",
                self.service_name()
            ),
        }
    }

    /// The version a switch rolls out: what `Deploy` announced, else the
    /// plan's artifact (after a restart).
    fn release_label(&self) -> Option<String> {
        self.memory()
            .deployed
            .clone()
            .or_else(|| self.versions.release.clone())
    }

    pub(crate) fn observe_rolling(&self, view: &ServiceView) -> Observed {
        let label = |td: &str| self.versions.label(td);
        let weight = |d: &DeploymentView| {
            if d.desired <= 0 {
                0
            } else {
                ((i64::from(d.running) * 100) / i64::from(d.desired)).clamp(0, 100) as u8
            }
        };
        let Some(primary) = view.primary_deployment() else {
            return Observed {
                stable: view.task_definition.as_deref().map(label),
                ..Observed::default()
            };
        };
        let others: Vec<&DeploymentView> = view
            .deployments
            .iter()
            .filter(|d| d.status != "PRIMARY")
            .collect();
        if let Some(failed) = others
            .iter()
            .find(|d| d.rollout_state.as_deref() == Some("FAILED"))
        {
            // The circuit breaker is rolling back to the primary's task definition.
            return Observed {
                stable: Some(label(&primary.task_definition)),
                candidate: Some(label(&failed.task_definition)),
                weight: weight(failed),
                waves: None,
            };
        }
        if completed(primary, view) || others.is_empty() {
            let stable = label(&primary.task_definition);
            let candidate = self.memory().deployed.clone().filter(|d| *d != stable);
            return Observed {
                stable: Some(stable),
                candidate,
                weight: 0,
                waves: None,
            };
        }
        Observed {
            stable: others.first().map(|d| label(&d.task_definition)),
            candidate: Some(label(&primary.task_definition)),
            weight: weight(primary),
            waves: None,
        }
    }

    pub(crate) fn plan_rolling(
        &self,
        observed: &Observed,
        action: &TrafficAction,
    ) -> Result<Vec<PlannedCall>, AdapterError> {
        let service = self.service_name();
        let update = |label: &str| PlannedCall {
            description: format!(
                "ecs:UpdateService {service} taskDefinition {} (then wait for the rollout to reach COMPLETED)",
                self.task_definition_of(label)
            ),
        };
        let settled = |label: &str| {
            observed.stable.as_deref() == Some(label)
                && observed.weight == 0
                && observed.candidate.as_deref().is_none_or(|c| c == label)
        };
        match action {
            TrafficAction::Deploy { version } => {
                Ok(if observed.stable.as_deref() == Some(version) {
                    Vec::new()
                } else {
                    vec![PlannedCall {
                        description: format!(
                            "ecs:DescribeTaskDefinition {} (the rolling update starts at the switch)",
                            self.task_definition_of(version)
                        ),
                    }]
                })
            }
            TrafficAction::SetWeight { percent } if *percent > 100 => {
                Err(rejected(format!("weight {percent}% is above 100%")))
            }
            TrafficAction::SetWeight { percent } if *percent > 0 && *percent < 100 => {
                Err(self.rolling_unsupported(*percent))
            }
            TrafficAction::SetWeight { percent: 0 } | TrafficAction::Retire => Ok(Vec::new()),
            TrafficAction::SetHeaderRoute { .. } => Err(AdapterError::no_header_routes(format!(
                "ECS service {}",
                self.service_name()
            ))),
            TrafficAction::SetWeight { .. } | TrafficAction::Promote => {
                let label = observed
                    .candidate
                    .clone()
                    .or_else(|| self.release_label())
                    .ok_or_else(|| {
                        rejected(format!("nothing is deployed on ECS service {service}"))
                    })?;
                Ok(if settled(&label) && observed.candidate.is_none() {
                    Vec::new()
                } else {
                    vec![update(&label)]
                })
            }
            TrafficAction::Rollback { to } => {
                let label = to
                    .clone()
                    .or_else(|| self.memory().previous_stable.clone())
                    .or_else(|| observed.stable.clone());
                Ok(match label {
                    Some(label) if !(settled(&label) && observed.candidate.is_none()) => {
                        vec![update(&label)]
                    }
                    _ => Vec::new(),
                })
            }
        }
    }

    pub(crate) async fn apply_rolling(
        &self,
        view: ServiceView,
        action: &TrafficAction,
    ) -> Result<Applied, AdapterError> {
        let mut request_ids: Vec<String> = view.request_id.iter().cloned().collect();
        let service = self.service_name();
        match action {
            TrafficAction::SetHeaderRoute { .. } => Err(AdapterError::no_header_routes(format!(
                "ECS service {service}"
            ))),
            TrafficAction::Deploy { version } => {
                let td = self.task_definition_of(version);
                request_ids.extend(service::check_task_definition(&self.client, &td).await?);
                let stable = self.observe_rolling(&view).stable;
                let mut memory = self.memory();
                if stable.as_deref() != Some(version.as_str()) {
                    memory.previous_stable = stable;
                    memory.deployed = Some(version.clone());
                }
                // Nothing changes on the service until the switch.
                Ok(Applied {
                    changed: false,
                    request_ids,
                })
            }
            TrafficAction::SetWeight { percent } if *percent > 100 => {
                Err(rejected(format!("weight {percent}% is above 100%")))
            }
            TrafficAction::SetWeight { percent } if *percent > 0 && *percent < 100 => {
                Err(self.rolling_unsupported(*percent))
            }
            TrafficAction::SetWeight { percent: 0 } => {
                let in_flight = view.deployments.len() > 1;
                if in_flight {
                    return Err(self.rolling_unsupported(0));
                }
                Ok(Applied {
                    changed: false,
                    request_ids,
                })
            }
            TrafficAction::SetWeight { .. } | TrafficAction::Promote => {
                let label = self.release_label().ok_or_else(|| {
                    rejected(format!(
                        "nothing is deployed on ECS service {service}: Deploy names the task definition first"
                    ))
                })?;
                self.roll(view, &label, Purpose::Release, request_ids).await
            }
            // ECS drains the old deployment itself.
            TrafficAction::Retire => Ok(Applied {
                changed: false,
                request_ids,
            }),
            TrafficAction::Rollback { to } => {
                let label = match to {
                    Some(to) => to.clone(),
                    None => {
                        let remembered = self.memory().previous_stable.clone();
                        match remembered {
                            Some(label) => label,
                            None => self.observe_rolling(&view).stable.ok_or_else(|| {
                                rejected(format!(
                                    "ECS service {service} names no task definition to roll back to"
                                ))
                            })?,
                        }
                    }
                };
                let applied = self
                    .roll(view, &label, Purpose::Rollback, request_ids)
                    .await?;
                let mut memory = self.memory();
                memory.deployed = None;
                memory.previous_stable = None;
                memory.rollout = None;
                Ok(applied)
            }
        }
    }

    /// Points the service at `label`'s task definition (unless it already
    /// is) and waits for that deployment to reach COMPLETED.
    async fn roll(
        &self,
        view: ServiceView,
        label: &str,
        purpose: Purpose,
        mut request_ids: Vec<String>,
    ) -> Result<Applied, AdapterError> {
        let service = self.service_name();
        let td = self.task_definition_of(label);
        let on_it = view
            .task_definition
            .as_deref()
            .is_some_and(|current| short_eq(current, &td));
        let mut changed = false;
        if !on_it {
            // The circuit breaker failed this task definition already (its
            // deployment is still listed, or, drained after ECS's own
            // rollback, only named in the events): starting it again would
            // launch failing tasks again, and a retry would loop.
            let circuit_breaker_rolled_back = purpose == Purpose::Release
                && (view.deployments.iter().any(|d| {
                    short_eq(&d.task_definition, &td)
                        && d.rollout_state.as_deref() == Some("FAILED")
                }) || self.our_failure_event(&view, &td).is_some());
            if circuit_breaker_rolled_back {
                return Err(self.failed(&view, &td, request_ids));
            }
            request_ids.extend(service::check_task_definition(&self.client, &td).await?);
            let what = format!("ecs:UpdateService {service} taskDefinition {td}");
            let out = self
                .client
                .update_service()
                .cluster(&self.cluster)
                .service(&self.service)
                .task_definition(&td)
                .send()
                .await
                .map_err(|e| map_ecs_error(e, &what))?;
            request_ids.extend(out.request_id().map(str::to_owned));
            let started = out.service().and_then(|service| {
                service
                    .deployments()
                    .iter()
                    .find(|d| {
                        d.status() == Some("PRIMARY")
                            && d.task_definition().is_some_and(|t| short_eq(t, &td))
                    })
                    .and_then(|d| d.id())
            });
            if let Some(id) = started {
                self.memory().rollout = Some((td.clone(), id.to_owned()));
            }
            changed = true;
        }
        self.wait_completed(&td, purpose, &mut request_ids).await?;
        Ok(Applied {
            changed,
            request_ids,
        })
    }

    /// ECS's event saying the last rollout of `td` this process started
    /// (or waited for) failed, if the service still lists it.
    fn our_failure_event<'v>(&self, view: &'v ServiceView, td: &str) -> Option<&'v str> {
        let id = self
            .memory()
            .rollout
            .as_ref()
            .filter(|(t, _)| short_eq(t, td))
            .map(|(_, id)| id.clone())?;
        view.failure_event(&id)
    }

    fn failed(&self, view: &ServiceView, td: &str, request_ids: Vec<String>) -> AdapterError {
        let failed = view
            .deployments
            .iter()
            .find(|d| short_eq(&d.task_definition, td))
            .map(progress)
            .or_else(|| {
                self.our_failure_event(view, td)
                    .map(|event| format!("the deployment of {td} (ECS: {event})"))
            })
            .unwrap_or_else(|| format!("the deployment of {td}"));
        let now = view
            .primary_deployment()
            .map(|d| format!("; the service is now on {}", progress(d)))
            .unwrap_or_default();
        rejected(format!(
            "the rolling update of ECS service {} FAILED: {failed}{now}",
            self.service_name()
        ))
        .with_request_id(request_ids.last())
    }

    async fn wait_completed(
        &self,
        td: &str,
        purpose: Purpose,
        request_ids: &mut Vec<String>,
    ) -> Result<(), AdapterError> {
        let service = self.service_name();
        let started = Instant::now();
        let sleep = self.client.config().sleep_impl();
        loop {
            let view = self.read().await?;
            let primary = view.primary_deployment().cloned();
            if let Some(primary) = primary
                .as_ref()
                .filter(|d| short_eq(&d.task_definition, td))
            {
                let mut memory = self.memory();
                let known = memory
                    .rollout
                    .as_ref()
                    .is_some_and(|(t, id)| short_eq(t, td) && *id == primary.id);
                if !known {
                    memory.rollout = Some((td.to_owned(), primary.id.clone()));
                }
            }
            match primary {
                Some(primary) if short_eq(&primary.task_definition, td) => {
                    if primary.rollout_state.as_deref() == Some("FAILED") {
                        return Err(self.failed(&view, td, request_ids.clone()));
                    }
                    if completed(&primary, &view) {
                        request_ids.extend(view.request_id.clone());
                        return Ok(());
                    }
                }
                primary => {
                    let ours_failed = view.deployments.iter().any(|d| {
                        short_eq(&d.task_definition, td)
                            && d.rollout_state.as_deref() == Some("FAILED")
                    });
                    let moved = view
                        .task_definition
                        .as_deref()
                        .is_some_and(|current| !short_eq(current, td));
                    // The circuit breaker's rollback deployment says so; the
                    // failed deployment itself may already have drained.
                    let breaker_rollback = primary
                        .as_ref()
                        .and_then(|d| d.reason.as_deref())
                        .is_some_and(|reason| reason.contains("circuit breaker"));
                    // Once that rollback has completed, its reason says only
                    // "completed" and the failed deployment has drained: the
                    // service's events still say ours failed.
                    let failure_event = self.our_failure_event(&view, td).is_some();
                    if purpose == Purpose::Release
                        && (ours_failed || (moved && (breaker_rollback || failure_event)))
                    {
                        return Err(self.failed(&view, td, request_ids.clone()));
                    }
                    // Someone else rolled the service out while we waited:
                    // retrying would roll our task definition out over
                    // theirs. Refused, as every adapter refuses another
                    // writer's change during a run; a human decides (a new
                    // `deployctl rollback` process is the override).
                    if moved {
                        return Err(AnotherWriter {
                            resource: format!("ECS service {service}"),
                            left: format!("task definition {td}, rolling out"),
                            now: format!(
                                "task definition {}",
                                view.task_definition.as_deref().unwrap_or("none")
                            ),
                            rollback: "put the service back on its stable task definition",
                        }
                        .refusal()
                        .with_request_id(view.request_id.as_ref()));
                    }
                }
            }
            if started.elapsed() >= self.options.rollout_timeout {
                let now = view
                    .primary_deployment()
                    .map(progress)
                    .unwrap_or_else(|| "no deployment".into());
                return Err(AdapterError::Timeout {
                    message: format!(
                        "the rolling update of ECS service {service} to {td} did not reach COMPLETED within {:?}: {now}. Nothing more was changed; applying again waits again",
                        self.options.rollout_timeout
                    ),
                });
            }
            match &sleep {
                Some(sleep) => sleep.sleep(self.options.poll_interval).await,
                None => {
                    return Err(rejected(
                        "the ECS client has no async sleep implementation to poll the rollout with (build it from aws_config with the rt-tokio feature)",
                    ));
                }
            }
        }
    }

    pub(crate) async fn preflight_rolling(
        &self,
        view: &ServiceView,
    ) -> Result<Preflight, AdapterError> {
        let service = self.service_name();
        let not_ready = |stable: String, detail: String| {
            Ok(Preflight {
                verified: Vec::new(),
                stable_version: stable,
                rollback_ready: false,
                detail,
                identity: view.arn.clone(),
                capabilities: self.capabilities(view),
            })
        };
        let Some(primary) = view.primary_deployment() else {
            return not_ready(
                String::new(),
                format!("ECS service {service} has no PRIMARY deployment"),
            );
        };
        let stable = self.versions.label(&primary.task_definition);
        if !completed(primary, view) {
            return not_ready(
                stable,
                format!(
                    "ECS service {service} is in the middle of a rollout ({}); wait for it to finish",
                    progress(primary)
                ),
            );
        }
        let breaker = match view.circuit_breaker {
            Some((true, true)) => "the deployment circuit breaker is on, with rollback".to_owned(),
            Some((true, false)) => "the deployment circuit breaker is on without rollback (deployctl rolls back itself; turning on rollback lets ECS start it sooner)".to_owned(),
            _ => {
                return not_ready(
                    stable,
                    format!(
                        "ECS service {service} has no deployment circuit breaker: a failing task definition would keep launching tasks and only time out. Turn it on (deploymentConfiguration.deploymentCircuitBreaker {{enable: true, rollback: true}})"
                    ),
                );
            }
        };
        if let Some(why) = rollback_blocker(&self.client, &primary.task_definition).await? {
            return not_ready(
                stable.clone(),
                format!(
                    "ECS service {service} runs {stable} on {}, which cannot start new tasks: {why}",
                    primary.task_definition
                ),
            );
        }
        Ok(Preflight {
            verified: Vec::new(),
            detail: format!(
                "ECS service {service} runs {stable} ({}, ACTIVE, rollout COMPLETED); {breaker}",
                primary.task_definition
            ),
            stable_version: stable,
            rollback_ready: true,
            identity: view.arn.clone(),
            capabilities: self.capabilities(view),
        })
    }
}
