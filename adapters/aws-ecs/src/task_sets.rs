//! Blue/green and canary releases with task sets (EXTERNAL controller).
//!
//! The service's PRIMARY task set is the stable version. `Deploy` creates
//! the candidate ("green") task set beside it at scale 0 with the version
//! label as its `externalId`; weights move the two scales so that they add
//! up to 100% of the service's desired count. Both task sets sit behind
//! the service's load balancer target group, which spreads requests over
//! running tasks, so the share of traffic follows the share of tasks.
//!
//! Which non-primary task set is what comes from the platform alone: one
//! created after the primary is the candidate; one created before it is
//! the previous release kept (at scale 0) after a promotion until `Retire`
//! deletes it, so a rollback can switch back to it.

use aws_sdk_ecs::operation::RequestId;
use aws_sdk_ecs::types::{Scale, ScaleUnit};
use deployctl_adapter::writer::{AnotherWriter, Changed};
use deployctl_adapter::{
    AdapterError, Applied, IdempotencyKey, Observed, PlannedCall, Preflight, TrafficAction,
};

use crate::error::{map_ecs_error, rejected};
use crate::service::{self, ServiceView, TaskSetView};
use crate::target::{EcsTarget, rollback_blocker};

/// A task set as the release logic sees it.
#[derive(Debug, Clone, PartialEq)]
struct Slot {
    label: String,
    /// `None` when built from an `Observed` (dry runs).
    arn: Option<String>,
    task_definition: String,
    percent: u8,
}

/// The service's task sets by role.
#[derive(Debug, Clone, Default)]
struct Layout {
    primary: Option<Slot>,
    candidate: Option<Slot>,
    previous: Option<Slot>,
}

/// A task set a step acts on: one that exists, or the one created earlier
/// in the same apply.
#[derive(Debug, Clone, PartialEq)]
enum Ref {
    Existing(Slot),
    Created(String),
}

impl Ref {
    fn label(&self) -> &str {
        match self {
            Ref::Existing(slot) => &slot.label,
            Ref::Created(label) => label,
        }
    }
}

/// One platform call of a task-set release.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    CheckTaskDefinition(String),
    Create {
        label: String,
        task_definition: String,
    },
    Scale(Ref, u8),
    MakePrimary(Ref),
    Delete(Ref),
}

impl EcsTarget {
    fn label_of(&self, ts: &TaskSetView) -> String {
        ts.external_id
            .clone()
            .unwrap_or_else(|| self.versions.label(&ts.task_definition))
    }

    fn slot(&self, ts: &TaskSetView) -> Slot {
        Slot {
            label: self.label_of(ts),
            arn: Some(ts.arn.clone()),
            task_definition: ts.task_definition.clone(),
            percent: ts.percent(),
        }
    }

    fn layout(&self, view: &ServiceView) -> Result<Layout, AdapterError> {
        let primary = view.primary();
        let others: Vec<&TaskSetView> = view
            .task_sets
            .iter()
            .filter(|ts| !ts.is_primary())
            .collect();
        if others.len() > 1 {
            return Err(rejected(format!(
                "ECS service {} has {} non-primary task sets ({}); deployctl manages the primary and at most one more. Delete the extra task sets first",
                self.service_name(),
                others.len(),
                others
                    .iter()
                    .map(|ts| self.label_of(ts))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let Some(primary) = primary else {
            if let Some(other) = others.first() {
                return Err(rejected(format!(
                    "ECS service {} has task set {} but none is PRIMARY; make one primary (ecs:UpdateServicePrimaryTaskSet) before releasing with deployctl",
                    self.service_name(),
                    self.label_of(other)
                )));
            }
            return Ok(Layout::default());
        };
        let mut layout = Layout {
            primary: Some(self.slot(primary)),
            ..Layout::default()
        };
        if let Some(other) = others.first() {
            if other.newer_than(primary) {
                layout.candidate = Some(self.slot(other));
            } else {
                layout.previous = Some(self.slot(other));
            }
        }
        Ok(layout)
    }

    pub(crate) fn observe_task_sets(&self, view: &ServiceView) -> Result<Observed, AdapterError> {
        let layout = self.layout(view)?;
        Ok(Observed {
            stable: layout.primary.map(|p| p.label),
            weight: layout.candidate.as_ref().map(|c| c.percent).unwrap_or(0),
            candidate: layout.candidate.map(|c| c.label),
            waves: None,
        })
    }

    /// Whether `label` is the version this release deployed (memory, or
    /// the plan's artifact after a restart).
    fn is_release(&self, label: &str) -> bool {
        self.memory().deployed.as_deref() == Some(label)
            || self.versions.release.as_deref() == Some(label)
    }

    /// The calls that take `layout` to `action`'s effect; empty when it is
    /// already there. Pure.
    fn steps(&self, layout: &Layout, action: &TrafficAction) -> Result<Vec<Step>, AdapterError> {
        let service = self.service_name();
        let no_primary = || {
            rejected(format!(
                "ECS service {service} has no PRIMARY task set to release beside; create one and make it primary first"
            ))
        };
        match action {
            TrafficAction::SetHeaderRoute { .. } => Err(AdapterError::no_header_routes(format!(
                "ECS service {service}"
            ))),
            TrafficAction::Deploy { version } => {
                let primary = layout.primary.as_ref().ok_or_else(no_primary)?;
                if primary.label == *version {
                    return Ok(Vec::new());
                }
                if let Some(candidate) = &layout.candidate {
                    if candidate.label == *version {
                        return Ok(Vec::new());
                    }
                    return Err(rejected(format!(
                        "cannot deploy {version} on ECS service {service}: task set {} is already deployed beside the primary (at {}%); finish or roll back that release first",
                        candidate.label, candidate.percent
                    )));
                }
                if let Some(previous) = &layout.previous {
                    return Err(rejected(format!(
                        "cannot deploy {version} on ECS service {service}: the task set of the previous release ({}) is still there; retire it first",
                        previous.label
                    )));
                }
                let task_definition = self.task_definition_of(version);
                Ok(vec![
                    Step::CheckTaskDefinition(task_definition.clone()),
                    Step::Create {
                        label: version.clone(),
                        task_definition,
                    },
                ])
            }
            TrafficAction::SetWeight { percent } => {
                if *percent > 100 {
                    return Err(rejected(format!(
                        "weight {percent}% is above 100%: a task set's scale is 0 to 100 percent"
                    )));
                }
                let primary = layout.primary.as_ref().ok_or_else(no_primary)?;
                let Some(candidate) = &layout.candidate else {
                    if *percent == 100
                        && (layout.previous.is_some() || self.is_release(&primary.label))
                    {
                        // Already switched: finish a switch that was cut short.
                        return Ok(promoted(layout));
                    }
                    return Err(rejected(format!(
                        "cannot set weight {percent}% on ECS service {service}: no candidate task set is deployed"
                    )));
                };
                if *percent == 100 {
                    return Ok(promote(primary, candidate));
                }
                let rest = 100 - percent;
                let up = (candidate.percent != *percent)
                    .then(|| Step::Scale(Ref::Existing(candidate.clone()), *percent));
                let down = (primary.percent != rest)
                    .then(|| Step::Scale(Ref::Existing(primary.clone()), rest));
                // Grow one task set before shrinking the other: capacity
                // never drops below the service's desired count.
                Ok(if *percent > candidate.percent {
                    up.into_iter().chain(down).collect()
                } else {
                    down.into_iter().chain(up).collect()
                })
            }
            TrafficAction::Promote => {
                let primary = layout.primary.as_ref().ok_or_else(no_primary)?;
                Ok(match &layout.candidate {
                    Some(candidate) => promote(primary, candidate),
                    None => promoted(layout),
                })
            }
            TrafficAction::Retire => {
                if let Some(candidate) = &layout.candidate {
                    return Err(rejected(format!(
                        "cannot retire on ECS service {service}: candidate {} has not been promoted; promote or roll back first",
                        candidate.label
                    )));
                }
                Ok(layout
                    .previous
                    .iter()
                    .map(|previous| Step::Delete(Ref::Existing(previous.clone())))
                    .collect())
            }
            TrafficAction::Rollback { to } => {
                let primary = layout.primary.as_ref();
                let to = match (to, &layout.candidate, &layout.previous, primary) {
                    (Some(to), _, _, _) => to.clone(),
                    (None, Some(_), _, Some(primary)) => primary.label.clone(),
                    (None, None, Some(previous), _) => previous.label.clone(),
                    (None, _, _, Some(primary)) => primary.label.clone(),
                    (None, _, _, None) => return Err(no_primary()),
                };
                let all: Vec<&Slot> = [&layout.primary, &layout.candidate, &layout.previous]
                    .into_iter()
                    .flatten()
                    .collect();
                let mut steps = Vec::new();
                let keep = match all.iter().find(|slot| slot.label == to) {
                    Some(slot) => {
                        let keep = Ref::Existing((*slot).clone());
                        if slot.percent != 100 {
                            steps.push(Step::Scale(keep.clone(), 100));
                        }
                        if Some(*slot) != primary {
                            steps.push(Step::MakePrimary(keep.clone()));
                        }
                        keep
                    }
                    None => {
                        // Retired already: bring the version back as a new task set.
                        let task_definition = self.task_definition_of(&to);
                        steps.push(Step::CheckTaskDefinition(task_definition.clone()));
                        steps.push(Step::Create {
                            label: to.clone(),
                            task_definition,
                        });
                        let keep = Ref::Created(to.clone());
                        steps.push(Step::Scale(keep.clone(), 100));
                        steps.push(Step::MakePrimary(keep.clone()));
                        keep
                    }
                };
                for slot in all {
                    if slot.label != keep.label() {
                        steps.push(Step::Delete(Ref::Existing(slot.clone())));
                    }
                }
                Ok(steps)
            }
        }
    }

    fn describe(&self, step: &Step) -> PlannedCall {
        let service = self.service_name();
        let description = match step {
            Step::CheckTaskDefinition(td) => format!("ecs:DescribeTaskDefinition {td}"),
            Step::Create {
                label,
                task_definition,
            } => format!(
                "ecs:CreateTaskSet {service} {task_definition} (externalId {label}, scale 0%)"
            ),
            Step::Scale(target, percent) => {
                format!(
                    "ecs:UpdateTaskSet {service} {} → scale {percent}%",
                    target.label()
                )
            }
            Step::MakePrimary(target) => format!(
                "ecs:UpdateServicePrimaryTaskSet {service} → {}",
                target.label()
            ),
            Step::Delete(target) => format!("ecs:DeleteTaskSet {service} {}", target.label()),
        };
        PlannedCall { description }
    }

    pub(crate) fn plan_task_sets(
        &self,
        observed: &Observed,
        action: &TrafficAction,
    ) -> Result<Vec<PlannedCall>, AdapterError> {
        let Some(stable) = &observed.stable else {
            return Err(AdapterError::NotFound {
                what: format!("a PRIMARY task set of ECS service {}", self.service_name()),
            });
        };
        let slot = |label: &String, percent: u8| Slot {
            label: label.clone(),
            arn: None,
            task_definition: self.task_definition_of(label),
            percent,
        };
        let layout = Layout {
            primary: Some(slot(
                stable,
                if observed.candidate.is_some() {
                    100 - observed.weight.min(100)
                } else {
                    100
                },
            )),
            candidate: observed
                .candidate
                .as_ref()
                .map(|c| slot(c, observed.weight)),
            previous: None,
        };
        if let TrafficAction::SetWeight { percent } = action
            && layout.candidate.is_none()
            && !self.is_release(stable)
        {
            // A dry run of a whole release plans every step from today's
            // service, before anything is deployed: name the calls anyway.
            return Ok(vec![PlannedCall {
                description: format!(
                    "ecs:UpdateTaskSet {} the deployed task set → scale {percent}% (and {stable} → {}%)",
                    self.service_name(),
                    100u8.saturating_sub(*percent)
                ),
            }]);
        }
        if *action == TrafficAction::Retire {
            // `Observed` does not show the previous release's task set.
            return Ok(vec![PlannedCall {
                description: format!(
                    "ecs:DeleteTaskSet {} the task set of the previous release, if it is still there",
                    self.service_name()
                ),
            }]);
        }
        Ok(self
            .steps(&layout, action)?
            .iter()
            .map(|step| self.describe(step))
            .collect())
    }

    pub(crate) async fn apply_task_sets(
        &self,
        view: ServiceView,
        action: &TrafficAction,
        key: &IdempotencyKey,
    ) -> Result<Applied, AdapterError> {
        let mut request_ids: Vec<String> = view.request_id.iter().cloned().collect();
        let fresh = view.fingerprint();
        let checked = self.memory().written.check(&fresh);
        if let Err(Changed { left }) = checked {
            // Another writer, not a stale read: `observe` does not adopt a
            // change over a fingerprint this target holds, and our own failed
            // steps forget it. deployctl does not overwrite a change it did
            // not make (neither by continuing nor by rolling back over it).
            return Err(AnotherWriter {
                resource: format!("the task sets of ECS service {}", self.service_name()),
                left: summary(&left),
                now: summary(&fresh),
                rollback: "put the service back on its stable task set",
            }
            .refusal()
            .with_request_id(request_ids.first()));
        }
        let layout = self.layout(&view)?;
        let steps = self.steps(&layout, action)?;
        if steps.is_empty() {
            self.remember(action, &layout);
            self.memory().written.wrote(fresh);
            return Ok(Applied {
                changed: false,
                request_ids,
            });
        }
        let template = view.primary().map(|p| p.raw.clone());
        let mut primary = layout.primary.as_ref().and_then(|p| p.arn.clone());
        let mut created: Option<String> = None;
        for step in &steps {
            let result = self
                .run(step, template.as_ref(), &mut primary, &mut created, key)
                .await;
            match result {
                Ok(id) => request_ids.extend(id),
                Err(error) => {
                    // The service may or may not have changed: the next
                    // apply reads it afresh instead of calling our own
                    // half-done write someone else's.
                    self.memory().written.forget();
                    return Err(error);
                }
            }
        }
        let after = self.read().await;
        match &after {
            Ok(after) => {
                self.memory().written.wrote(after.fingerprint());
                request_ids.extend(after.request_id.clone());
            }
            // Unread, our writes would look like someone else's next time.
            Err(_) => self.memory().written.forget(),
        }
        self.remember(action, &layout);
        Ok(Applied {
            changed: true,
            request_ids,
        })
    }

    fn remember(&self, action: &TrafficAction, before: &Layout) {
        let mut memory = self.memory();
        match action {
            TrafficAction::Deploy { version } => {
                memory.deployed = Some(version.clone());
                memory.previous_stable = before.primary.as_ref().map(|p| p.label.clone());
            }
            TrafficAction::Rollback { .. } => {
                memory.deployed = None;
                memory.previous_stable = None;
            }
            _ => {}
        }
    }

    /// Makes one call; returns its request ID.
    async fn run(
        &self,
        step: &Step,
        template: Option<&aws_sdk_ecs::types::TaskSet>,
        primary: &mut Option<String>,
        created: &mut Option<String>,
        key: &IdempotencyKey,
    ) -> Result<Option<String>, AdapterError> {
        let service = self.service_name();
        let arn_of = |target: &Ref| -> Result<String, AdapterError> {
            match target {
                Ref::Existing(slot) => slot.arn.clone(),
                Ref::Created(_) => created.clone(),
            }
            .ok_or_else(|| {
                rejected(format!(
                    "task set {} of {service} has no ARN",
                    target.label()
                ))
            })
        };
        match step {
            Step::CheckTaskDefinition(td) => service::check_task_definition(&self.client, td).await,
            Step::Create {
                label,
                task_definition,
            } => {
                let template = template.ok_or_else(|| {
                    rejected(format!(
                        "ECS service {service} has no PRIMARY task set to copy the network and load balancer settings from"
                    ))
                })?;
                let what = format!("ecs:CreateTaskSet {service} {task_definition}");
                let mut request = self
                    .client
                    .create_task_set()
                    .cluster(&self.cluster)
                    .service(&self.service)
                    .task_definition(task_definition)
                    .external_id(label)
                    .client_token(client_token(key, label))
                    .scale(percent_scale(0)?)
                    .set_network_configuration(template.network_configuration().cloned())
                    .set_load_balancers(non_empty(template.load_balancers()))
                    .set_service_registries(non_empty(template.service_registries()))
                    .set_platform_version(template.platform_version().map(str::to_owned));
                if template.capacity_provider_strategy().is_empty() {
                    request = request.set_launch_type(template.launch_type().cloned());
                } else {
                    request = request.set_capacity_provider_strategy(non_empty(
                        template.capacity_provider_strategy(),
                    ));
                }
                let out = request.send().await.map_err(|e| map_ecs_error(e, &what))?;
                *created = out
                    .task_set()
                    .and_then(|ts| ts.task_set_arn())
                    .map(str::to_owned);
                if created.is_none() {
                    return Err(rejected(format!("{what}: the answer names no task set")));
                }
                Ok(out.request_id().map(str::to_owned))
            }
            Step::Scale(target, percent) => {
                let arn = arn_of(target)?;
                let what = format!(
                    "ecs:UpdateTaskSet {service} {} → {percent}%",
                    target.label()
                );
                let out = self
                    .client
                    .update_task_set()
                    .cluster(&self.cluster)
                    .service(&self.service)
                    .task_set(arn)
                    .scale(percent_scale(*percent)?)
                    .send()
                    .await
                    .map_err(|e| map_ecs_error(e, &what))?;
                Ok(out.request_id().map(str::to_owned))
            }
            Step::MakePrimary(target) => {
                let arn = arn_of(target)?;
                let what = format!(
                    "ecs:UpdateServicePrimaryTaskSet {service} → {}",
                    target.label()
                );
                let out = self
                    .client
                    .update_service_primary_task_set()
                    .cluster(&self.cluster)
                    .service(&self.service)
                    .primary_task_set(&arn)
                    .send()
                    .await
                    .map_err(|e| map_ecs_error(e, &what))?;
                *primary = Some(arn);
                Ok(out.request_id().map(str::to_owned))
            }
            Step::Delete(target) => {
                let arn = arn_of(target)?;
                if primary.as_deref() == Some(arn.as_str()) {
                    // AWS refuses this too; moto deletes it.
                    return Err(rejected(format!(
                        "refusing to delete task set {} of {service}: it is the PRIMARY task set",
                        target.label()
                    )));
                }
                let what = format!("ecs:DeleteTaskSet {service} {}", target.label());
                let out = self
                    .client
                    .delete_task_set()
                    .cluster(&self.cluster)
                    .service(&self.service)
                    .task_set(arn)
                    .force(true)
                    .send()
                    .await
                    .map_err(|e| map_ecs_error(e, &what))?;
                Ok(out.request_id().map(str::to_owned))
            }
        }
    }

    pub(crate) async fn preflight_task_sets(
        &self,
        view: &ServiceView,
    ) -> Result<Preflight, AdapterError> {
        let layout = match self.layout(view) {
            Ok(layout) => layout,
            Err(error) => {
                return Ok(Preflight {
                    verified: Vec::new(),
                    stable_version: String::new(),
                    rollback_ready: false,
                    detail: error.to_string(),
                    identity: view.arn.clone(),
                    capabilities: self.capabilities(view),
                });
            }
        };
        let Some(primary) = layout.primary else {
            return Ok(Preflight {
                verified: Vec::new(),
                stable_version: String::new(),
                rollback_ready: false,
                detail: format!(
                    "ECS service {} has no PRIMARY task set: nothing to roll back to",
                    self.service_name()
                ),
                identity: view.arn.clone(),
                capabilities: self.capabilities(view),
            });
        };
        let blocker = rollback_blocker(&self.client, &primary.task_definition).await?;
        let (rollback_ready, detail) = match blocker {
            None => (
                true,
                format!(
                    "ECS service {} runs {} (task set {}, task definition {}, ACTIVE) as its PRIMARY task set",
                    self.service_name(),
                    primary.label,
                    primary.arn.as_deref().unwrap_or_default(),
                    primary.task_definition
                ),
            ),
            Some(why) => (
                false,
                format!(
                    "ECS service {} runs {} on task definition {}, which cannot start new tasks: {why}",
                    self.service_name(),
                    primary.label,
                    primary.task_definition
                ),
            ),
        };
        Ok(Preflight {
            verified: Vec::new(),
            stable_version: primary.label,
            rollback_ready,
            detail,
            identity: view.arn.clone(),
            capabilities: self.capabilities(view),
        })
    }
}

/// Candidate to 100%, made primary, the old primary to 0% (kept for a
/// switch-back until `Retire`).
fn promote(primary: &Slot, candidate: &Slot) -> Vec<Step> {
    let mut steps = Vec::new();
    if candidate.percent != 100 {
        steps.push(Step::Scale(Ref::Existing(candidate.clone()), 100));
    }
    steps.push(Step::MakePrimary(Ref::Existing(candidate.clone())));
    if primary.percent != 0 {
        steps.push(Step::Scale(Ref::Existing(primary.clone()), 0));
    }
    steps
}

/// After a switch: the primary at 100%, the previous release at 0%.
fn promoted(layout: &Layout) -> Vec<Step> {
    let mut steps = Vec::new();
    if let Some(primary) = &layout.primary
        && primary.percent != 100
    {
        steps.push(Step::Scale(Ref::Existing(primary.clone()), 100));
    }
    if let Some(previous) = &layout.previous
        && previous.percent != 0
    {
        steps.push(Step::Scale(Ref::Existing(previous.clone()), 0));
    }
    steps
}

/// A task set's scale as ECS takes it; 0 to 100 percent (moto accepts more).
fn percent_scale(percent: u8) -> Result<Scale, AdapterError> {
    if percent > 100 {
        return Err(rejected(format!(
            "task set scale {percent}% is outside 0 to 100 percent"
        )));
    }
    Ok(Scale::builder()
        .value(f64::from(percent))
        .unit(ScaleUnit::Percent)
        .build())
}

fn non_empty<T: Clone>(items: &[T]) -> Option<Vec<T>> {
    (!items.is_empty()).then(|| items.to_vec())
}

/// `CreateTaskSet`'s client token: at most 36 printable ASCII characters,
/// the same for every retry of one logical call (the idempotency key and
/// the version), so AWS itself refuses to create a second task set.
fn client_token(key: &IdempotencyKey, label: &str) -> String {
    // FNV-1a, 64 bits: stable across processes and releases (std's
    // hasher is randomly seeded).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.0.bytes().chain([0]).chain(label.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("deployctl-{hash:016x}")
}

fn summary(print: &crate::service::Fingerprint) -> String {
    print
        .iter()
        .filter(|(arn, ..)| arn != "service")
        .map(|(_, status, td, id, scale)| {
            format!(
                "{} {status} {td} {}%",
                id.as_deref().unwrap_or("-"),
                *scale as f64 / 100.0
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_fit_ecs_and_are_stable() {
        let key = IdempotencyKey("run-1/stage/3".into());
        let token = client_token(&key, "v2");
        assert!(
            token.len() <= 36 && token.bytes().all(|b| (33..=126).contains(&b)),
            "{token}"
        );
        assert_eq!(token, client_token(&key, "v2"));
        assert_ne!(token, client_token(&key, "v3"));
    }

    #[test]
    fn scales_outside_0_to_100_are_refused() {
        assert!(percent_scale(101).is_err());
        assert_eq!(percent_scale(40).map(|s| s.value()), Ok(40.0));
    }
}
