//! Blue-green by Service selector (Argo Rollouts' active/preview model,
//! with Deployments). The production Service's annotations say which
//! Deployment is active, stable and previous; its selector is pinned to
//! the active one's pods by `pod-template-hash`.
//!
//! - `Deploy`: pin the Service to blue's pods (no traffic moves), create
//!   green beside blue from blue's template with the new image, and point
//!   the preview Service at green's pods only.
//! - `SetWeight 100`: once green has rolled out, switch the selector to
//!   green's pods; done only when the EndpointSlices list green's pods and
//!   nothing else.
//! - `Promote`: green becomes stable, blue the previous one.
//! - `Retire` (after the plan's `scaleDownDelay`): blue scaled to zero
//!   (kept, for a fast rollback), older greens deleted.
//! - `Rollback`: scale the stable one back up if needed, wait for it, switch
//!   the selector back, release the preview, delete green.
//!
//! Every step reads the cluster first and does only what is missing, so a
//! retry or a restarted process continues where the last one stopped.

use std::collections::BTreeMap;

use deployctl_adapter::{AdapterError, Applied, Observed, PlannedCall, TrafficAction};
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};

use crate::error::rejected;
use crate::names;
use crate::target::KubernetesTarget;
use crate::view::View;
use crate::workload;

/// The Deployment the release treats as stable.
pub(crate) fn stable_name(target: &KubernetesTarget, view: &View) -> String {
    view.service_annotation(names::STABLE)
        .filter(|name| view.deployment(name).is_some())
        .map_or_else(|| target.place.base.clone(), str::to_owned)
}

fn active_name(target: &KubernetesTarget, view: &View) -> String {
    view.service_annotation(names::ACTIVE)
        .filter(|name| view.deployment(name).is_some())
        .map_or_else(|| stable_name(target, view), str::to_owned)
}

/// The green Deployment of this plan's release.
fn green_name(target: &KubernetesTarget) -> Option<String> {
    target
        .release
        .as_ref()
        .map(|r| names::green(&target.place.base, &r.version))
}

pub(crate) fn observe(target: &KubernetesTarget, view: &View) -> Observed {
    let container = target.container.as_deref();
    let stable = stable_name(target, view);
    let active = active_name(target, view);
    let version = |name: &str| {
        view.deployment(name)
            .and_then(|d| workload::version_of(d, container))
    };
    // A candidate: a Deployment deployctl made that is neither stable nor
    // scaled to zero (green before promotion).
    let candidate = view
        .made
        .iter()
        .filter(|d| d.metadata.name.as_deref() != Some(stable.as_str()))
        .find(|d| workload::desired_replicas(d) > 0)
        .and_then(|d| d.metadata.name.clone());
    Observed {
        stable: version(&stable),
        candidate: candidate.as_deref().and_then(version),
        weight: if candidate.as_deref() == Some(active.as_str()) {
            100
        } else {
            0
        },
        waves: None,
    }
}

pub(crate) fn plan(
    target: &KubernetesTarget,
    observed: &Observed,
    action: &TrafficAction,
) -> Result<Vec<PlannedCall>, AdapterError> {
    let ns = &target.place.namespace;
    let service = &target.place.service;
    let call = |text: String| PlannedCall { description: text };
    Ok(match action {
        TrafficAction::SetHeaderRoute { .. } => return Err(no_header_routes(target)),
        TrafficAction::Deploy { version } => {
            if observed.candidate.as_deref() == Some(version)
                || observed.stable.as_deref() == Some(version)
            {
                return Ok(Vec::new());
            }
            let green = names::green(&target.place.base, version);
            let mut calls = vec![
                call(format!(
                    "apply Service {ns}/{service}: selector pinned to the stable pods (pod-template-hash)"
                )),
                call(format!(
                    "apply Deployment {ns}/{green}: blue's template with the image of {version}"
                )),
            ];
            if let Some(preview) = &target.place.preview {
                calls.push(call(format!(
                    "apply Service {ns}/{preview}: selector on {green}'s pods"
                )));
            }
            calls
        }
        TrafficAction::SetWeight { percent: 100 } => {
            if observed.weight == 100 {
                return Ok(Vec::new());
            }
            vec![call(format!(
                "apply Service {ns}/{service}: selector on green's pods, then wait for its EndpointSlices"
            ))]
        }
        TrafficAction::SetWeight { percent } => {
            return Err(AdapterError::Unsupported {
                what: format!(
                    "Service {service} switches all traffic at once; {percent}% needs an HTTPRoute (`httpRoute`)"
                ),
            });
        }
        TrafficAction::Promote => {
            if observed.candidate.is_none() {
                return Ok(Vec::new());
            }
            vec![call(format!(
                "apply Service {ns}/{service}: annotations mark green stable"
            ))]
        }
        TrafficAction::Retire => vec![call(format!(
            "apply Deployment {ns}/<previous>: replicas 0 (kept for rollback); delete older greens"
        ))],
        TrafficAction::Rollback { .. } => {
            if observed.candidate.is_none() && observed.weight == 0 {
                return Ok(Vec::new());
            }
            vec![
                call(format!(
                    "apply Deployment {ns}/<stable>: scaled back up if it was scaled down"
                )),
                call(format!(
                    "apply Service {ns}/{service}: selector back on the stable pods"
                )),
                call(format!("delete Deployment {ns}/<green>")),
            ]
        }
    })
}

pub(crate) async fn apply(
    target: &KubernetesTarget,
    action: &TrafficAction,
    view: View,
) -> Result<Applied, AdapterError> {
    let mut step = Step::default();
    match action {
        TrafficAction::Deploy { .. } => deploy(target, &view, &mut step).await?,
        TrafficAction::SetWeight { percent: 100 } => switch(target, &view, &mut step).await?,
        TrafficAction::SetWeight { percent } => {
            return Err(AdapterError::Unsupported {
                what: format!(
                    "Service {} switches all traffic at once; {percent}% needs an HTTPRoute (`httpRoute`)",
                    target.place.service
                ),
            });
        }
        TrafficAction::SetHeaderRoute { .. } => return Err(no_header_routes(target)),
        TrafficAction::Promote => promote(target, &view, &mut step).await?,
        TrafficAction::Retire => retire(target, &view, &mut step).await?,
        TrafficAction::Rollback { to } => rollback(target, &view, to.as_deref(), &mut step).await?,
    }
    Ok(step.applied())
}

/// A header route needs an HTTPRoute: a Service cannot tell requests
/// apart (the validator and preflight's capabilities refuse it first).
pub(crate) fn no_header_routes(target: &KubernetesTarget) -> AdapterError {
    AdapterError::Unsupported {
        what: format!(
            "Service {} cannot route requests by header; that needs an HTTPRoute (`httpRoute`)",
            target.place.service
        ),
    }
}

/// What one step wrote, for the journal and the audit trail.
#[derive(Default)]
pub(crate) struct Step {
    pub writes: Vec<String>,
}

impl Step {
    pub fn applied(self) -> Applied {
        Applied {
            changed: !self.writes.is_empty(),
            request_ids: self.writes,
        }
    }
}

/// The Service's annotations with traffic on `active` and `stable` as the
/// release's stable one, the rollback point after a promotion kept.
fn routing<'v>(
    active: &'v str,
    stable: &'v str,
    view: &'v View,
) -> BTreeMap<&'static str, &'v str> {
    let mut annotations = BTreeMap::from([(names::ACTIVE, active), (names::STABLE, stable)]);
    if let Some(previous) = view.service_annotation(names::PREVIOUS) {
        annotations.insert(names::PREVIOUS, previous);
    }
    annotations
}

/// The Service's selector without deployctl's pin.
fn base_selector(view: &View) -> BTreeMap<String, String> {
    let mut selector = view.service_selector();
    selector.remove(names::POD_TEMPLATE_HASH);
    selector
}

/// Applies the production Service: selector = its own keys + the pin to
/// `hash`, and deployctl's annotations.
async fn apply_service(
    target: &KubernetesTarget,
    view: &View,
    hash: &str,
    annotations: BTreeMap<&str, &str>,
    step: &mut Step,
) -> Result<(), AdapterError> {
    let mut selector = base_selector(view);
    selector.insert(names::POD_TEMPLATE_HASH.into(), hash.into());
    let same_selector = selector == view.service_selector();
    let same_annotations = [names::ACTIVE, names::STABLE, names::PREVIOUS]
        .iter()
        .all(|key| view.service_annotation(key) == annotations.get(key).copied());
    if same_selector && same_annotations {
        return Ok(());
    }
    let service = view
        .service
        .as_ref()
        .ok_or_else(|| AdapterError::NotFound {
            what: format!(
                "Service {}/{}",
                target.place.namespace, target.place.service
            ),
        })?;
    let body = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": target.place.service,
            "namespace": target.place.namespace,
            "resourceVersion": service.metadata.resource_version,
            "annotations": annotations,
        },
        "spec": {"selector": selector},
    });
    step.writes
        .push(target.ns.apply_service(&target.place.service, body).await?);
    Ok(())
}

async fn deploy(
    target: &KubernetesTarget,
    view: &View,
    step: &mut Step,
) -> Result<(), AdapterError> {
    let release = target.release("deploy")?.clone();
    let green = names::green(&target.place.base, &release.version);
    let stable = stable_name(target, view);
    if stable == green {
        return Ok(()); // released already
    }
    let blue = view
        .deployment(&stable)
        .ok_or_else(|| AdapterError::NotFound {
            what: format!("Deployment {}/{stable}", target.place.namespace),
        })?;
    let blue_hash = target.ns.template_hash(blue).await?;
    let active = active_name(target, view);
    let annotations = routing(&active, &stable, view);
    if active == stable {
        apply_service(target, view, &blue_hash, annotations, step).await?;
        // Green's pods carry blue's labels: they must not come up before
        // the Service's endpoints follow the pin.
        target
            .wait_endpoints(&target.place.service, &stable)
            .await?;
    }
    if view.deployment(&green).is_none() {
        let body = green_body(
            target,
            blue,
            &green,
            &stable,
            &release.image,
            &release.version,
        )?;
        step.writes
            .push(target.ns.apply_deployment(&green, body).await?);
    }
    point_preview(target, view, Some(&green), step).await?;
    // Gates run against the preview next: green must be up and the
    // preview's endpoints must list it alone, or they would judge nothing
    // (or blue).
    target.wait_rollout(&green, None).await?;
    if let Some(preview) = &target.place.preview {
        target.wait_endpoints(preview, &green).await?;
    }
    Ok(())
}

/// Points the preview Service (if the target has one) at `green`'s pods
/// alone, or (`None`) gives it back its own selector.
async fn point_preview(
    target: &KubernetesTarget,
    view: &View,
    green: Option<&str>,
    step: &mut Step,
) -> Result<(), AdapterError> {
    let (Some(preview), Some(current)) = (&target.place.preview, &view.preview) else {
        return Ok(());
    };
    let before = current
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    let mut selector = before.clone();
    match green {
        Some(green) => selector.insert(names::DEPLOYMENT.into(), green.into()),
        None => selector.remove(names::DEPLOYMENT),
    };
    if selector == before {
        return Ok(());
    }
    let body = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": preview, "namespace": target.place.namespace,
                     "resourceVersion": current.metadata.resource_version},
        "spec": {"selector": selector},
    });
    step.writes
        .push(target.ns.apply_service(preview, body).await?);
    Ok(())
}

/// Green: blue's pod template with the new image, its own selector label
/// (so its pods never overlap blue's Deployment), deployctl's labels and
/// annotations; blue's metadata labels are not copied, so a GitOps tool's
/// tracking label does not claim (and prune) it.
pub(crate) fn green_body(
    target: &KubernetesTarget,
    blue: &Deployment,
    green: &str,
    previous: &str,
    image: &str,
    version: &str,
) -> Result<Value, AdapterError> {
    let spec = blue
        .spec
        .as_ref()
        .ok_or_else(|| rejected(format!("Deployment {previous} has no spec")))?;
    let mut spec =
        serde_json::to_value(spec).map_err(|e| rejected(format!("Deployment {previous}: {e}")))?;
    spec["replicas"] = json!(workload::desired_replicas(blue).max(1));
    spec["selector"]["matchLabels"][names::DEPLOYMENT] = json!(green);
    spec["template"]["metadata"]["labels"][names::DEPLOYMENT] = json!(green);
    spec["template"]["metadata"]["labels"][names::WORKLOAD] = json!(target.place.base);
    set_image(&mut spec, target.container.as_deref(), image, previous)?;
    Ok(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": green,
            "namespace": target.place.namespace,
            "labels": {names::WORKLOAD: target.place.base, names::DEPLOYMENT: green},
            "annotations": {names::VERSION: version, names::PREVIOUS: previous},
        },
        "spec": spec,
    }))
}

/// Sets the release container's image in a Deployment spec (JSON).
fn set_image(
    spec: &mut Value,
    container: Option<&str>,
    image: &str,
    of: &str,
) -> Result<(), AdapterError> {
    let containers = spec["template"]["spec"]["containers"]
        .as_array_mut()
        .ok_or_else(|| rejected(format!("Deployment {of} has no containers")))?;
    let slot = match container {
        Some(name) => containers.iter_mut().find(|c| c["name"] == name),
        None => containers.first_mut(),
    }
    .ok_or_else(|| {
        rejected(format!(
            "Deployment {of} has no container {}",
            container.unwrap_or("at all")
        ))
    })?;
    slot["image"] = json!(image);
    Ok(())
}

async fn switch(
    target: &KubernetesTarget,
    view: &View,
    step: &mut Step,
) -> Result<(), AdapterError> {
    let green = green_name(target).ok_or_else(|| {
        target
            .release("switch traffic")
            .err()
            .unwrap_or_else(|| rejected("no release"))
    })?;
    let Some(found) = view.deployment(&green) else {
        return Err(AdapterError::NotFound {
            what: format!(
                "Deployment {}/{green} (green; `Deploy` makes it)",
                target.place.namespace
            ),
        });
    };
    target.wait_rollout(&green, None).await?;
    let hash = target.ns.template_hash(found).await?;
    let stable = stable_name(target, view);
    let annotations = routing(&green, &stable, view);
    apply_service(target, view, &hash, annotations, step).await?;
    target.wait_endpoints(&target.place.service, &green).await
}

async fn promote(
    target: &KubernetesTarget,
    view: &View,
    step: &mut Step,
) -> Result<(), AdapterError> {
    let Some(green) = green_name(target) else {
        return Ok(());
    };
    let stable = stable_name(target, view);
    if stable == green {
        return Ok(());
    }
    if active_name(target, view) != green {
        return Err(rejected(format!(
            "Service {} does not send traffic to {green} yet; switch before promoting",
            target.place.service
        )));
    }
    let hash = view
        .service_selector()
        .get(names::POD_TEMPLATE_HASH)
        .cloned()
        .unwrap_or_default();
    let annotations = BTreeMap::from([
        (names::ACTIVE, green.as_str()),
        (names::STABLE, green.as_str()),
        (names::PREVIOUS, stable.as_str()),
    ]);
    apply_service(target, view, &hash, annotations, step).await
}

async fn retire(
    target: &KubernetesTarget,
    view: &View,
    step: &mut Step,
) -> Result<(), AdapterError> {
    let stable = stable_name(target, view);
    let previous = view.service_annotation(names::PREVIOUS).map(str::to_owned);
    if let Some(previous) = &previous
        && let Some(blue) = view.deployment(previous)
        && workload::desired_replicas(blue) > 0
    {
        let write = target
            .ns
            .scale(previous, 0, blue.metadata.resource_version.as_deref())
            .await?;
        step.writes.push(write);
    }
    // One previous release is kept for a fast rollback; older greens go.
    for old in &view.made {
        let Some(name) = old.metadata.name.as_deref() else {
            continue;
        };
        if name == stable
            || Some(name) == previous.as_deref()
            || workload::desired_replicas(old) > 0
        {
            continue;
        }
        if target.ns.delete_deployment(name).await? {
            step.writes.push(format!(
                "deleted Deployment {}/{name}",
                target.place.namespace
            ));
        }
    }
    Ok(())
}

/// The Deployment a rollback returns to: the one running `to` among the
/// stable, previous and plan's Deployments, else the stable one (before
/// promotion) or the previous one (after).
fn rollback_point(target: &KubernetesTarget, view: &View, to: Option<&str>) -> String {
    let stable = stable_name(target, view);
    let previous = view.service_annotation(names::PREVIOUS).map(str::to_owned);
    let green = green_name(target);
    let candidates: Vec<String> = [
        Some(stable.clone()),
        previous.clone(),
        Some(target.place.base.clone()),
    ]
    .into_iter()
    .flatten()
    .filter(|name| Some(name) != green.as_ref())
    .collect();
    if let Some(to) = to {
        let container = target.container.as_deref();
        if let Some(found) = candidates.iter().find(|name| {
            view.deployment(name)
                .and_then(|d| workload::version_of(d, container))
                .as_deref()
                == Some(to)
        }) {
            return found.clone();
        }
    }
    if Some(&stable) == green.as_ref() {
        return previous.unwrap_or_else(|| target.place.base.clone());
    }
    stable
}

async fn rollback(
    target: &KubernetesTarget,
    view: &View,
    to: Option<&str>,
    step: &mut Step,
) -> Result<(), AdapterError> {
    let back = rollback_point(target, view, to);
    let Some(found) = view.deployment(&back) else {
        return Err(AdapterError::NotFound {
            what: format!(
                "Deployment {}/{back} (the rollback's)",
                target.place.namespace
            ),
        });
    };
    if workload::desired_replicas(found) == 0 {
        // As many pods as the release that replaced it runs (green was
        // made with blue's count), so traffic returns to the same capacity.
        let replicas = green_name(target)
            .and_then(|green| view.deployment(&green))
            .or_else(|| view.deployment(&active_name(target, view)))
            .map(workload::desired_replicas)
            .filter(|n| *n > 0)
            .unwrap_or(1);
        let write = target
            .ns
            .scale(&back, replicas, found.metadata.resource_version.as_deref())
            .await?;
        step.writes.push(write);
    }
    target.wait_rollout(&back, None).await?;
    let current = target
        .ns
        .deployment(&back)
        .await?
        .ok_or_else(|| AdapterError::NotFound {
            what: format!("Deployment {}/{back}", target.place.namespace),
        })?;
    let hash = target.ns.template_hash(&current).await?;
    let annotations = BTreeMap::from([
        (names::ACTIVE, back.as_str()),
        (names::STABLE, back.as_str()),
    ]);
    apply_service(target, view, &hash, annotations, step).await?;
    target.wait_endpoints(&target.place.service, &back).await?;
    point_preview(target, view, None, step).await?;
    if let Some(green) = green_name(target)
        && green != back
        && target.ns.delete_deployment(&green).await?
    {
        step.writes.push(format!(
            "deleted Deployment {}/{green}",
            target.place.namespace
        ));
    }
    Ok(())
}
