//! One read of everything a release of one target touches, and the
//! fingerprint the another-writer rule compares: what deployctl decides
//! on (selectors, route weights, images), never what moves on its own
//! (replica counts under an autoscaler, status).

use std::collections::BTreeMap;
use std::fmt;

use deployctl_adapter::AdapterError;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{DynamicObject, ObjectMeta};
use serde_json::Value;

use crate::cluster::Namespace;
use crate::names;
use crate::route;
use crate::workload;

/// What the target's objects say, read together.
#[derive(Debug, Clone)]
pub struct View {
    /// The plan's Deployment.
    pub base: Option<Deployment>,
    /// Deployments deployctl made for it (greens, the canary).
    pub made: Vec<Deployment>,
    /// The production Service.
    pub service: Option<Service>,
    pub preview: Option<Service>,
    pub route: Option<DynamicObject>,
}

/// Where the target's objects are.
#[derive(Debug, Clone)]
pub struct Place {
    pub namespace: String,
    pub base: String,
    pub service: String,
    pub preview: Option<String>,
    /// (namespace, name) of the HTTPRoute.
    pub route: Option<(String, String)>,
}

impl View {
    pub async fn read(ns: &Namespace, place: &Place) -> Result<View, AdapterError> {
        let base = ns.deployment(&place.base).await?;
        let made = ns.made_for(&place.base).await?;
        let service = ns.service(&place.service).await?;
        let preview = match &place.preview {
            Some(name) => ns.service(name).await?,
            None => None,
        };
        let route = match &place.route {
            Some((namespace, name)) => ns.route(namespace, name).await?,
            None => None,
        };
        Ok(View {
            base,
            made,
            service,
            preview,
            route,
        })
    }

    /// A Deployment of this target by name: the plan's or one deployctl made.
    pub fn deployment(&self, name: &str) -> Option<&Deployment> {
        self.base
            .iter()
            .chain(&self.made)
            .find(|d| d.metadata.name.as_deref() == Some(name))
    }

    pub fn service_annotation(&self, key: &str) -> Option<&str> {
        self.service
            .as_ref()?
            .metadata
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }

    pub fn service_selector(&self) -> BTreeMap<String, String> {
        selector(self.service.as_ref())
    }

    /// The weight a replica-ratio canary was set to (on the Service).
    pub fn replica_weight(&self) -> Option<u8> {
        self.service
            .as_ref()?
            .metadata
            .annotations
            .as_ref()?
            .get(names::CANARY_WEIGHT)?
            .parse()
            .ok()
    }

    pub fn route_spec(&self) -> Value {
        self.route
            .as_ref()
            .map(|r| r.data["spec"].clone())
            .unwrap_or(Value::Null)
    }

    pub fn fingerprint(&self, container: Option<&str>) -> Fingerprint {
        let images = self
            .base
            .iter()
            .chain(&self.made)
            .filter_map(|d| {
                let image = workload::release_container(d, container)?.image.clone()?;
                Some((d.metadata.name.clone()?, image))
            })
            .collect();
        Fingerprint {
            selector: self.service_selector(),
            preview: selector(self.preview.as_ref()),
            route: self
                .route
                .as_ref()
                .map(|r| route::backends(&r.data["spec"])),
            images,
        }
    }

    /// The last writer of the objects in the fingerprint other than
    /// deployctl and the cluster's own controllers, newest first: who the
    /// person should ask about a change deployctl did not make.
    pub fn other_managers(&self) -> Vec<String> {
        let metas: Vec<(&str, &ObjectMeta)> = self
            .base
            .iter()
            .chain(&self.made)
            .map(|d| ("Deployment", &d.metadata))
            .chain(self.service.iter().map(|s| ("Service", &s.metadata)))
            .chain(self.preview.iter().map(|s| ("Service", &s.metadata)))
            .chain(self.route.iter().map(|r| ("HTTPRoute", &r.metadata)))
            .collect();
        let mut found: Vec<(String, String)> = Vec::new();
        for (kind, meta) in metas {
            for entry in meta.managed_fields.iter().flatten() {
                let manager = entry.manager.clone().unwrap_or_default();
                if manager.is_empty() || manager == names::FIELD_MANAGER || is_controller(&manager)
                {
                    continue;
                }
                if entry.subresource.as_deref().is_some_and(|s| !s.is_empty()) {
                    continue;
                }
                let when = entry
                    .time
                    .as_ref()
                    .map(|t| t.0.to_string())
                    .unwrap_or_default();
                found.push((
                    when.clone(),
                    format!(
                        "field manager `{manager}` ({} of {kind} {} at {when})",
                        entry.operation.as_deref().unwrap_or("write"),
                        meta.name.as_deref().unwrap_or("?")
                    ),
                ));
            }
        }
        found.sort_by(|a, b| b.0.cmp(&a.0));
        found.into_iter().map(|(_, text)| text).collect()
    }
}

/// Managers that write on the cluster's behalf, never a person's change.
fn is_controller(manager: &str) -> bool {
    manager == "kube-controller-manager"
        || manager.ends_with("controller.k8s.io")
        || manager.starts_with("deployctl.test/")
}

fn selector(service: Option<&Service>) -> BTreeMap<String, String> {
    service
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.selector.clone())
        .unwrap_or_default()
}

/// What the another-writer rule compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub selector: BTreeMap<String, String>,
    pub preview: BTreeMap<String, String>,
    pub route: Option<String>,
    /// The release container's image, per Deployment.
    pub images: BTreeMap<String, String>,
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |m: &BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        write!(f, "selector {{{}}}", join(&self.selector))?;
        if !self.preview.is_empty() {
            write!(f, ", preview selector {{{}}}", join(&self.preview))?;
        }
        if let Some(route) = &self.route {
            write!(f, ", route backends {route}")?;
        }
        write!(f, ", images {{{}}}", join(&self.images))
    }
}
