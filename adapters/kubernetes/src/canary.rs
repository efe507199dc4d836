//! Canary by Gateway API HTTPRoute weights (Flagger's primary/canary
//! model), or, without a route, by replica ratios. The plan's Deployment is the primary and stays the stable one;
//! the canary is a second Deployment (`NAME-canary`) behind its own
//! Service (`SERVICE-canary`), and the route's `backendRefs` weights split
//! traffic between the two Services. While the canary exists the stable
//! Service is pinned to the primary's pods (`pod-template-hash`): both
//! Deployments' pods carry the labels it selects by.
//!
//!
//! Without a route the stable Service is the router: unpinned, it spreads
//! requests over the primary's and the canary's pods, so a weight is
//! approximate, the canary's part of the pods (`ratio`); 0 % pins it to the
//! primary, 100 % to the canary. The weight set is kept on the Service
//! (`deployctl.io/canary-weight`), as a route keeps it in its backendRefs.
//!
//! - `Deploy`: pin, create the canary from the primary's template with the
//!   new image and its Service.
//! - `SetWeight N`: scale the canary to carry its share, wait for its pods,
//!   write the weights, and wait until the route's controller reports the
//!   generation written Accepted with ResolvedRefs.
//! - `Promote`: all traffic on the canary, the primary updated to the new
//!   image and rolled out, the pin moved to its new pods, all traffic back
//!   on the primary; the canary and its Service deleted, the pin released.
//! - `Rollback`: all traffic on the primary, the canary deleted; after a
//!   promotion, the primary's images put back as they were.

use std::collections::BTreeMap;

use deployctl_adapter::{AdapterError, Applied, Observed, PlannedCall, TrafficAction};
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};

use crate::bluegreen::Step;
use crate::cluster::written;
use crate::error::rejected;
use crate::names;
use crate::route::{self, HeaderRoutes};
use crate::target::{EndpointsReady, KubernetesTarget, Router};
use crate::view::View;
use crate::workload;
use deployctl_plan::model::HeaderRoute;

fn canary_name(target: &KubernetesTarget) -> String {
    names::canary(&target.place.base)
}

fn canary_service(target: &KubernetesTarget) -> String {
    names::canary_service(&target.place.service)
}

pub(crate) fn observe(target: &KubernetesTarget, view: &View) -> Observed {
    let container = target.container.as_deref();
    let canary = view.deployment(&canary_name(target));
    let percent = match target.router {
        Router::Route => route::canary_percent(
            &view.route_spec(),
            &target.place.service,
            &canary_service(target),
        ),
        Router::Replicas | Router::Selector => view.replica_weight(),
    };
    Observed {
        stable: view
            .base
            .as_ref()
            .and_then(|d| workload::version_of(d, container)),
        candidate: canary.and_then(|d| workload::version_of(d, container)),
        weight: if canary.is_some() {
            percent.unwrap_or(0)
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
    let router = match &target.place.route {
        Some((route_ns, route_name)) => format!("HTTPRoute {route_ns}/{route_name}"),
        None => format!("Service {ns}/{}", target.place.service),
    };
    let canary = canary_name(target);
    let call = |text: String| PlannedCall { description: text };
    Ok(match action {
        TrafficAction::Deploy { version } => {
            if observed.candidate.as_deref() == Some(version)
                || observed.stable.as_deref() == Some(version)
            {
                return Ok(Vec::new());
            }
            vec![
                call(format!(
                    "apply Service {ns}/{}: selector pinned to the primary's pods",
                    target.place.service
                )),
                call(format!(
                    "apply Deployment {ns}/{canary}: the primary's template with the image of {version}"
                )),
                call(format!(
                    "apply Service {ns}/{}: selector on the canary's pods",
                    canary_service(target)
                )),
            ]
        }
        TrafficAction::SetWeight { percent } => {
            if observed.weight == *percent {
                return Ok(Vec::new());
            }
            if target.router == Router::Replicas {
                let service = &target.place.service;
                return Ok(vec![
                    call(format!(
                        "apply Deployment {ns}/{canary}: replicas for about {percent}% of the pods"
                    )),
                    call(match percent {
                        0 => format!(
                            "apply Service {ns}/{service}: selector pinned to the primary's pods"
                        ),
                        100 => format!(
                            "apply Service {ns}/{service}: selector pinned to the canary's pods"
                        ),
                        _ => format!(
                            "apply Service {ns}/{service}: selector over the primary's and the canary's pods"
                        ),
                    }),
                ]);
            }
            vec![
                call(format!(
                    "apply Deployment {ns}/{canary}: replicas for {percent}% of the primary's"
                )),
                call(format!(
                    "apply {router}: backendRefs {} {}%, {} {percent}%",
                    target.place.service,
                    100 - u16::from(*percent),
                    canary_service(target)
                )),
            ]
        }
        TrafficAction::Promote => {
            if observed.candidate.is_none() {
                return Ok(Vec::new());
            }
            vec![
                call(format!("apply {router}: all traffic on the canary")),
                call(format!(
                    "apply Deployment {ns}/{}: the new image, then wait for its rollout",
                    target.place.base
                )),
                call(format!("apply {router}: all traffic on the primary")),
                call(format!(
                    "delete Deployment {ns}/{canary} and Service {ns}/{}",
                    canary_service(target)
                )),
            ]
        }
        TrafficAction::Retire => Vec::new(),
        TrafficAction::SetHeaderRoute { route } => {
            if target.router != Router::Route {
                return Err(crate::bluegreen::no_header_routes(target));
            }
            vec![call(format!("apply {router}: {route}"))]
        }
        TrafficAction::Rollback { .. } => {
            if observed.candidate.is_none() && observed.weight == 0 {
                return Ok(Vec::new());
            }
            vec![
                call(format!("apply {router}: all traffic on the primary")),
                call(format!(
                    "delete Deployment {ns}/{canary} and Service {ns}/{}",
                    canary_service(target)
                )),
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
        TrafficAction::SetWeight { percent } => {
            set_weight(target, &view, *percent, &mut step).await?
        }
        TrafficAction::SetHeaderRoute { route } => {
            if target.router != Router::Route {
                return Err(crate::bluegreen::no_header_routes(target));
            }
            deployed(target, &view, &canary_name(target))?;
            write_route(target, RouteChange::Header(route), &mut step).await?;
        }
        TrafficAction::Promote => promote(target, &view, &mut step).await?,
        TrafficAction::Retire => {}
        TrafficAction::Rollback { to } => rollback(target, to.as_deref(), &mut step).await?,
    }
    Ok(step.applied())
}

fn primary(view: &View, target: &KubernetesTarget) -> Result<Deployment, AdapterError> {
    view.base.clone().ok_or_else(|| AdapterError::NotFound {
        what: format!("{} (the primary)", target.describe()),
    })
}

/// Pins the stable Service to the primary's current pods (`Some`), or
/// releases the pin (`None`).
async fn pin(
    target: &KubernetesTarget,
    view: &View,
    hash: Option<&str>,
    step: &mut Step,
) -> Result<(), AdapterError> {
    point(target, view, hash, None, step).await
}

/// Points the stable Service at the pods of template `hash` (or at every
/// pod of the workload), noting the replica-ratio `weight` it stands for.
async fn point(
    target: &KubernetesTarget,
    view: &View,
    hash: Option<&str>,
    weight: Option<u8>,
    step: &mut Step,
) -> Result<(), AdapterError> {
    let current = view.service_selector();
    let mut selector = current.clone();
    selector.remove(names::POD_TEMPLATE_HASH);
    if let Some(hash) = hash {
        selector.insert(names::POD_TEMPLATE_HASH.into(), hash.into());
    }
    if selector == current && weight == view.replica_weight() {
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
    let mut body = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": target.place.service, "namespace": target.place.namespace,
                     "resourceVersion": service.metadata.resource_version},
        "spec": {"selector": selector},
    });
    // Left out, the annotation is released: server-side apply removes the
    // fields deployctl stops applying.
    if let Some(weight) = weight {
        body["metadata"]["annotations"] = json!({names::CANARY_WEIGHT: weight.to_string()});
    }
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
    let primary = primary(view, target)?;
    let container = target.container.as_deref();
    if workload::version_of(&primary, container).as_deref() == Some(release.version.as_str())
        && view.deployment(&canary_name(target)).is_none()
    {
        return Ok(()); // promoted already
    }
    let hash = target.ns.template_hash(&primary).await?;
    pin(target, view, Some(&hash), step).await?;
    // The canary's pods carry the primary's labels: they must not come up
    // before the stable Service's endpoints follow the pin.
    target
        .wait_endpoints(&target.place.service, &target.place.base)
        .await?;
    let canary = canary_name(target);
    let wanted_image = release.image.as_str();
    let current_image = view
        .deployment(&canary)
        .and_then(|d| workload::release_container(d, container))
        .and_then(|c| c.image.as_deref());
    if current_image != Some(wanted_image) {
        let mut body = crate::bluegreen::green_body(
            target,
            &primary,
            &canary,
            &target.place.base,
            wanted_image,
            &release.version,
        )?;
        // A canary starts with one pod: enough for the readiness gate,
        // no share of traffic until its first weight.
        body["spec"]["replicas"] = json!(1);
        if let Some(previous) = view.deployment(&canary) {
            body["metadata"]["resourceVersion"] = json!(previous.metadata.resource_version);
        }
        step.writes
            .push(target.ns.apply_deployment(&canary, body).await?);
    }
    let service_name = canary_service(target);
    if target.ns.service(&service_name).await?.is_none() {
        let stable = view
            .service
            .as_ref()
            .ok_or_else(|| AdapterError::NotFound {
                what: format!(
                    "Service {}/{}",
                    target.place.namespace, target.place.service
                ),
            })?;
        let ports: Vec<Value> = stable
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let mut port =
                    json!({"port": p.port, "protocol": p.protocol.unwrap_or_else(|| "TCP".into())});
                if let Some(name) = p.name {
                    port["name"] = json!(name);
                }
                if let Some(target_port) = p.target_port {
                    port["targetPort"] = serde_json::to_value(target_port).unwrap_or(Value::Null);
                }
                port
            })
            .collect();
        let mut selector = base_selector(stable);
        selector.insert(names::DEPLOYMENT.into(), canary.clone());
        let body = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": service_name, "namespace": target.place.namespace,
                         "labels": {names::WORKLOAD: target.place.base}},
            "spec": {"selector": selector, "ports": ports},
        });
        step.writes
            .push(target.ns.apply_service(&service_name, body).await?);
    }
    Ok(())
}

fn base_selector(service: &k8s_openapi::api::core::v1::Service) -> BTreeMap<String, String> {
    let mut selector = service
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    selector.remove(names::POD_TEMPLATE_HASH);
    selector
}

/// Sends `percent` of the traffic to the canary and waits until it goes
/// there.
async fn weigh(
    target: &KubernetesTarget,
    percent: u8,
    step: &mut Step,
) -> Result<(), AdapterError> {
    match target.router {
        Router::Route => weigh_route(target, percent, step).await,
        Router::Replicas | Router::Selector => weigh_replicas(target, percent, step).await,
    }
}

/// Points the stable Service at the primary (0 %), the canary (100 %) or
/// both (their replica counts set the share), and waits for its
/// EndpointSlices to follow.
async fn weigh_replicas(
    target: &KubernetesTarget,
    percent: u8,
    step: &mut Step,
) -> Result<(), AdapterError> {
    let view = target.view().await?;
    let service = &target.place.service;
    let base = target.place.base.as_str();
    let canary = canary_name(target);
    match percent {
        // Without a canary every pod is the primary's: no pin is needed.
        0 if view.deployment(&canary).is_none() => {
            point(target, &view, None, None, step).await?;
            target.wait_endpoints(service, base).await
        }
        0 => {
            let hash = target.ns.template_hash(&primary(&view, target)?).await?;
            point(target, &view, Some(&hash), None, step).await?;
            target.wait_endpoints(service, base).await
        }
        100 => {
            let found = view
                .deployment(&canary)
                .ok_or_else(|| not_deployed(target, &canary))?;
            let hash = target.ns.template_hash(found).await?;
            point(target, &view, Some(&hash), Some(100), step).await?;
            target.wait_endpoints(service, &canary).await
        }
        _ => {
            deployed(target, &view, &canary)?;
            point(target, &view, None, Some(percent), step).await?;
            target
                .wait_endpoints_of(service, &[base, &canary], EndpointsReady::EveryReplica)
                .await
        }
    }
}

/// Writes the route's weights (when they differ) and waits for its
/// controller to accept them.
async fn weigh_route(
    target: &KubernetesTarget,
    percent: u8,
    step: &mut Step,
) -> Result<(), AdapterError> {
    write_route(target, RouteChange::Weight(percent), step).await
}

/// One edit of the route deployctl makes.
enum RouteChange<'a> {
    /// The canary's share of the weighted rules.
    Weight(u8),
    /// Add, replace or (no matches) remove one header route.
    Header(&'a HeaderRoute),
    /// Remove every header route (promotion, rollback).
    ClearHeaders,
}

/// Reads the route, applies `change` (the header rules follow the weighted
/// rule they copy, and their names are kept in an annotation beside
/// them), writes it when it differs, and waits until the route's
/// controller accepts the generation.
async fn write_route(
    target: &KubernetesTarget,
    change: RouteChange<'_>,
    step: &mut Step,
) -> Result<(), AdapterError> {
    let (namespace, name) = target
        .place
        .route
        .clone()
        .ok_or_else(|| rejected("no HTTPRoute"))?;
    let found =
        target
            .ns
            .route(&namespace, &name)
            .await?
            .ok_or_else(|| AdapterError::NotFound {
                what: format!("HTTPRoute {namespace}/{name}"),
            })?;
    let spec = &found.data["spec"];
    let stable = &target.place.service;
    let canary = canary_service(target);
    let annotated = found
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(names::HEADER_ROUTES))
        .cloned();
    let mut routes: HeaderRoutes = annotated
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    let weighted = match change {
        RouteChange::Weight(percent) => route::with_percent(spec, stable, &canary, percent),
        RouteChange::Header(header) => {
            if header.matches.is_empty() {
                routes.remove(&header.name);
            } else {
                routes.insert(header.name.clone(), header.matches.clone());
            }
            spec["rules"].clone()
        }
        RouteChange::ClearHeaders => {
            routes.clear();
            spec["rules"].clone()
        }
    };
    let rules = route::with_header_routes(&json!({"rules": weighted}), stable, &canary, &routes);
    let annotation =
        (!routes.is_empty()).then(|| serde_json::to_string(&routes).unwrap_or_default());
    let generation = if rules == spec["rules"] && annotation == annotated {
        found.metadata.generation.unwrap_or(0)
    } else {
        let mut body = json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": namespace,
                         "resourceVersion": found.metadata.resource_version},
            "spec": {"rules": rules},
        });
        // Left out, the annotation is released with the last header route.
        if let Some(annotation) = annotation {
            body["metadata"]["annotations"] = json!({names::HEADER_ROUTES: annotation});
        }
        let out = target.ns.apply_route(&namespace, &name, body).await?;
        step.writes
            .push(written("HTTPRoute", &namespace, &name, &out.metadata));
        out.metadata.generation.unwrap_or(0)
    };
    target.wait_route(generation).await
}

/// The canary must exist before it takes traffic: `Deploy` makes it.
fn deployed(target: &KubernetesTarget, view: &View, canary: &str) -> Result<(), AdapterError> {
    match view.deployment(canary) {
        Some(_) => Ok(()),
        None => Err(not_deployed(target, canary)),
    }
}

fn not_deployed(target: &KubernetesTarget, canary: &str) -> AdapterError {
    AdapterError::NotFound {
        what: format!(
            "Deployment {}/{canary} (the canary; `Deploy` makes it)",
            target.place.namespace
        ),
    }
}

/// Replicas for the canary to carry `percent` of the primary's load.
fn share(primary: i32, percent: u8) -> i32 {
    ((i64::from(primary) * i64::from(percent) + 99) / 100).max(1) as i32
}

/// Replicas for the canary to be `percent` of all the Service's pods
/// beside the primary's `primary` (rounded up, at least one); at 100 % the
/// Service is pinned to the canary, which then needs the primary's count.
fn ratio(primary: i32, percent: u8) -> i32 {
    if percent >= 100 {
        return primary.max(1);
    }
    let (n, p) = (i64::from(primary), i64::from(percent));
    ((n * p + 99 - p) / (100 - p)).max(1) as i32
}

/// The canary's replicas for `percent` under `router`.
fn canary_replicas(router: Router, primary: i32, percent: u8) -> i32 {
    match router {
        Router::Route => share(primary, percent),
        Router::Replicas | Router::Selector => ratio(primary, percent),
    }
}

async fn scale(
    target: &KubernetesTarget,
    name: &str,
    replicas: i32,
    step: &mut Step,
) -> Result<(), AdapterError> {
    let found = target
        .ns
        .deployment(name)
        .await?
        .ok_or_else(|| AdapterError::NotFound {
            what: format!("Deployment {}/{name}", target.place.namespace),
        })?;
    if workload::desired_replicas(&found) != replicas {
        let write = target
            .ns
            .scale(name, replicas, found.metadata.resource_version.as_deref())
            .await?;
        step.writes.push(write);
    }
    target.wait_rollout(name, None).await
}

/// `view`: the target as the another-writer check just read it.
async fn set_weight(
    target: &KubernetesTarget,
    view: &View,
    percent: u8,
    step: &mut Step,
) -> Result<(), AdapterError> {
    let primary = primary(view, target)?;
    let canary = canary_name(target);
    deployed(target, view, &canary)?;
    scale(
        target,
        &canary,
        canary_replicas(target.router, workload::desired_replicas(&primary), percent),
        step,
    )
    .await?;
    weigh(target, percent, step).await
}

async fn promote(
    target: &KubernetesTarget,
    view: &View,
    step: &mut Step,
) -> Result<(), AdapterError> {
    let release = target.release("promote")?.clone();
    let container = target.container.as_deref();
    let primary_now = primary(view, target)?;
    let canary = canary_name(target);
    let promoted =
        workload::version_of(&primary_now, container).as_deref() == Some(release.version.as_str());
    if !promoted {
        deployed(target, view, &canary)?;
        // 1. Everything on the canary while the primary rolls.
        scale(
            target,
            &canary,
            workload::desired_replicas(&primary_now),
            step,
        )
        .await?;
        weigh(target, 100, step).await?;
        // 2. The primary takes the new image; what it ran is kept for a
        //    rollback after promotion.
        let images = workload::images(&primary_now);
        let released = workload::release_container(&primary_now, container)
            .ok_or_else(|| {
                rejected(format!(
                    "{} has no container {}",
                    target.describe(),
                    container.unwrap_or("at all")
                ))
            })?
            .name
            .clone();
        let mut next = images.clone();
        next.insert(released, release.image.clone());
        let before = workload::version_of(&primary_now, container).unwrap_or_default();
        let annotations = json!({names::VERSION: release.version,
                                 names::ROLLBACK_VERSION: before,
                                 names::ROLLBACK_IMAGES: serde_json::to_string(&images).unwrap_or_default()});
        set_primary_images(target, &primary_now, &next, annotations, step).await?;
    }
    target.wait_rollout(&target.place.base, None).await?;
    // 3. Header routes end with the canary; the pin follows the primary's
    //    new pods, then traffic goes back.
    if target.router == Router::Route {
        write_route(target, RouteChange::ClearHeaders, step).await?;
    }
    let view = target.view().await?;
    let primary_new = primary(&view, target)?;
    if view.deployment(&canary).is_some() {
        let hash = target.ns.template_hash(&primary_new).await?;
        pin(target, &view, Some(&hash), step).await?;
        target
            .wait_endpoints(&target.place.service, &target.place.base)
            .await?;
    }
    weigh(target, 0, step).await?;
    // 4. The canary goes, and with it the need for the pin.
    remove_canary(target, step).await
}

async fn remove_canary(target: &KubernetesTarget, step: &mut Step) -> Result<(), AdapterError> {
    let canary = canary_name(target);
    if target.ns.delete_deployment(&canary).await? {
        step.writes.push(format!(
            "deleted Deployment {}/{canary}",
            target.place.namespace
        ));
    }
    let service = canary_service(target);
    if target.ns.delete_service(&service).await? {
        step.writes.push(format!(
            "deleted Service {}/{service}",
            target.place.namespace
        ));
    }
    let view = target.view().await?;
    pin(target, &view, None, step).await
}

async fn rollback(
    target: &KubernetesTarget,
    to: Option<&str>,
    step: &mut Step,
) -> Result<(), AdapterError> {
    if target.router == Router::Route {
        write_route(target, RouteChange::ClearHeaders, step).await?;
    }
    weigh(target, 0, step).await?;
    remove_canary(target, step).await?;
    // After a promotion the primary runs the release: its images go back.
    let view = target.view().await?;
    let primary_now = primary(&view, target)?;
    let container = target.container.as_deref();
    let running = workload::version_of(&primary_now, container);
    let saved_version =
        workload::annotation(&primary_now, names::ROLLBACK_VERSION).map(str::to_owned);
    // Only a rollback to a version names what to put back; without one
    // (after retirement) the release stays.
    let wants_back =
        to.is_some_and(|to| running.as_deref() != Some(to) && saved_version.as_deref() == Some(to));
    if wants_back {
        let images: BTreeMap<String, String> =
            workload::annotation(&primary_now, names::ROLLBACK_IMAGES)
                .and_then(|text| serde_json::from_str(text).ok())
                .ok_or_else(|| {
                    rejected(format!(
                        "{} has no {} to roll back to",
                        target.describe(),
                        names::ROLLBACK_IMAGES
                    ))
                })?;
        let annotations = json!({names::VERSION: saved_version});
        set_primary_images(target, &primary_now, &images, annotations, step).await?;
        target.wait_rollout(&target.place.base, None).await?;
        // Rolled out is not yet rolled back: the Service's endpoints must
        // list every replica of the restored template and nothing else,
        // or some requests still reach the release (or a pod that is gone).
        target
            .wait_endpoints_of(
                &target.place.service,
                &[&target.place.base],
                EndpointsReady::EveryReplica,
            )
            .await?;
    }
    Ok(())
}

/// Applies `images` (container name → image) and deployctl's
/// `annotations` to the primary, as read in `primary_now`: only those
/// fields, so whoever applied the rest of the Deployment keeps it.
async fn set_primary_images(
    target: &KubernetesTarget,
    primary_now: &Deployment,
    images: &BTreeMap<String, String>,
    annotations: Value,
    step: &mut Step,
) -> Result<(), AdapterError> {
    let containers: Vec<Value> = images
        .iter()
        .map(|(name, image)| json!({"name": name, "image": image}))
        .collect();
    let body = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": target.place.base, "namespace": target.place.namespace,
                     "resourceVersion": primary_now.metadata.resource_version,
                     "annotations": annotations},
        "spec": {"template": {"spec": {"containers": containers}}},
    });
    step.writes
        .push(target.ns.apply_deployment(&target.place.base, body).await?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{ratio, share};

    #[test]
    fn a_replica_ratio_is_the_canarys_part_of_all_pods() {
        // 4 primary pods: 10 % of the pods is one canary pod in five
        // (20 %, the nearest a pod can come), 50 % is four beside four.
        assert_eq!(ratio(4, 10), 1);
        assert_eq!(ratio(4, 50), 4);
        assert_eq!(ratio(9, 10), 1);
        assert_eq!(ratio(9, 25), 3);
        assert_eq!(ratio(4, 75), 12);
        assert_eq!(ratio(4, 100), 4);
        assert_eq!(ratio(0, 30), 1);
    }

    #[test]
    fn the_canary_gets_at_least_one_pod_and_rounds_up() {
        assert_eq!(share(4, 10), 1);
        assert_eq!(share(10, 25), 3);
        assert_eq!(share(4, 100), 4);
        assert_eq!(share(0, 50), 1);
    }
}
