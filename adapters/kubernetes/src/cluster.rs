//! The API calls a release makes, in one namespace: typed reads, and
//! writes by server-side apply as field manager `deployctl`, each with the
//! `resourceVersion` it was decided on as a precondition (a write decided
//! on a stale read is a 409, never a lost update).

use std::collections::BTreeMap;

use deployctl_adapter::AdapterError;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::connect::Connection;
use crate::error::{is_not_found, map_kube_error};
use crate::names;
use crate::workload;

/// Gateway API HTTPRoutes, read and written as dynamic objects: the
/// gateway-api crate is built on another kube, and a release needs only
/// `spec.rules[].backendRefs` and `status.parents`.
pub fn http_route_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    )
}

/// One namespace of one cluster.
#[derive(Clone)]
pub struct Namespace {
    connection: Connection,
    pub name: String,
}

/// A write that landed: what to put in the journal and the audit trail.
pub fn written(kind: &str, namespace: &str, name: &str, meta: &kube::api::ObjectMeta) -> String {
    format!(
        "{kind} {namespace}/{name} resourceVersion {}",
        meta.resource_version.as_deref().unwrap_or("?")
    )
}

impl Namespace {
    pub fn new(connection: Connection, name: impl Into<String>) -> Self {
        Namespace {
            connection,
            name: name.into(),
        }
    }

    fn client(&self) -> Result<Client, AdapterError> {
        self.connection
            .client()
            .map_err(|e| AdapterError::Rejected {
                message: e.to_string(),
                request_id: None,
            })
    }

    fn api<K>(&self) -> Result<Api<K>, AdapterError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Ok(Api::namespaced(self.client()?, &self.name))
    }

    /// The namespace's Leases (the targets' platform locks).
    pub fn leases(&self) -> Result<Api<k8s_openapi::api::coordination::v1::Lease>, AdapterError> {
        self.api()
    }

    pub fn routes(&self, namespace: &str) -> Result<Api<DynamicObject>, AdapterError> {
        Ok(Api::namespaced_with(
            self.client()?,
            namespace,
            &http_route_resource(),
        ))
    }

    pub async fn deployment(&self, name: &str) -> Result<Option<Deployment>, AdapterError> {
        get_opt(
            &self.api()?,
            name,
            &format!("get Deployment {}/{name}", self.name),
        )
        .await
    }

    pub async fn service(&self, name: &str) -> Result<Option<Service>, AdapterError> {
        get_opt(
            &self.api()?,
            name,
            &format!("get Service {}/{name}", self.name),
        )
        .await
    }

    pub async fn route(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<DynamicObject>, AdapterError> {
        get_opt(
            &self.routes(namespace)?,
            name,
            &format!("get HTTPRoute {namespace}/{name}"),
        )
        .await
    }

    /// Deployments deployctl made for the plan's Deployment `base`.
    pub async fn made_for(&self, base: &str) -> Result<Vec<Deployment>, AdapterError> {
        let params = ListParams::default().labels(&format!("{}={base}", names::WORKLOAD));
        let list = self
            .api::<Deployment>()?
            .list(&params)
            .await
            .map_err(|e| map_kube_error(e, &format!("list Deployments {}", self.name)))?;
        Ok(list.items)
    }

    /// The pods of `deployment`'s newest ReplicaSet (its current template),
    /// and that ReplicaSet.
    pub async fn current_pods(
        &self,
        deployment: &Deployment,
    ) -> Result<(Option<ReplicaSet>, Vec<Pod>), AdapterError> {
        let selector = match_labels(deployment);
        let what = format!("list ReplicaSets {} ({selector})", self.name);
        let sets = self
            .api::<ReplicaSet>()?
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| map_kube_error(e, &what))?;
        let Some(newest) = workload::newest(deployment, &sets.items).cloned() else {
            return Ok((None, Vec::new()));
        };
        let Some(hash) = workload::template_hash(&newest) else {
            return Ok((Some(newest), Vec::new()));
        };
        let selector = format!("{selector},{}={hash}", names::POD_TEMPLATE_HASH);
        let what = format!("list Pods {} ({selector})", self.name);
        let pods = self
            .api::<Pod>()?
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| map_kube_error(e, &what))?;
        Ok((Some(newest), pods.items))
    }

    /// The Deployment `name`, which must exist.
    pub async fn require_deployment(&self, name: &str) -> Result<Deployment, AdapterError> {
        self.deployment(name)
            .await?
            .ok_or_else(|| AdapterError::NotFound {
                what: format!("Deployment {}/{name}", self.name),
            })
    }

    /// The `pod-template-hash` of `deployment`'s current pods: what a
    /// Service pins to select them alone. None yet is a `Conflict` (the
    /// Deployment controller has not made its ReplicaSet): read again.
    pub async fn template_hash(&self, deployment: &Deployment) -> Result<String, AdapterError> {
        let (set, _) = self.current_pods(deployment).await?;
        set.as_ref()
            .and_then(workload::template_hash)
            .map(str::to_owned)
            .ok_or_else(|| AdapterError::Conflict {
                message: format!(
                    "Deployment {}/{} has no ReplicaSet yet",
                    self.name,
                    deployment.metadata.name.as_deref().unwrap_or("?")
                ),
                request_id: None,
            })
    }

    /// The pods `service`'s EndpointSlices list, by name, with readiness.
    pub async fn endpoints(&self, service: &str) -> Result<BTreeMap<String, bool>, AdapterError> {
        let selector = format!("{}={service}", names::SERVICE_NAME);
        let what = format!("list EndpointSlices {} ({selector})", self.name);
        let slices = self
            .api::<EndpointSlice>()?
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| map_kube_error(e, &what))?;
        let mut pods = BTreeMap::new();
        for slice in slices.items {
            for endpoint in slice.endpoints {
                let Some(target) = endpoint.target_ref.as_ref().and_then(|t| t.name.clone()) else {
                    continue;
                };
                let ready = endpoint
                    .conditions
                    .as_ref()
                    .and_then(|c| c.ready)
                    .unwrap_or(true);
                pods.insert(target, ready);
            }
        }
        Ok(pods)
    }

    /// Applies a Deployment; the write, for the journal and audit trail.
    pub async fn apply_deployment(&self, name: &str, body: Value) -> Result<String, AdapterError> {
        let what = format!("apply Deployment {}/{name}", self.name);
        let out: Deployment = apply(&self.api()?, name, body, &what).await?;
        Ok(written("Deployment", &self.name, name, &out.metadata))
    }

    /// Applies a Service; the write, for the journal and audit trail.
    pub async fn apply_service(&self, name: &str, body: Value) -> Result<String, AdapterError> {
        let what = format!("apply Service {}/{name}", self.name);
        let out: Service = apply(&self.api()?, name, body, &what).await?;
        Ok(written("Service", &self.name, name, &out.metadata))
    }

    pub async fn apply_route(
        &self,
        namespace: &str,
        name: &str,
        body: Value,
    ) -> Result<DynamicObject, AdapterError> {
        apply(
            &self.routes(namespace)?,
            name,
            body,
            &format!("apply HTTPRoute {namespace}/{name}"),
        )
        .await
    }

    /// Sets a Deployment's replicas through its `scale` subresource: a
    /// write of that one field, which leaves whoever applied the rest of
    /// the object its owner (a server-side apply of `spec.replicas` alone
    /// would drop every other field deployctl applied before).
    /// `resource_version`: the Deployment as the decision read it.
    pub async fn scale(
        &self,
        name: &str,
        replicas: i32,
        resource_version: Option<&str>,
    ) -> Result<String, AdapterError> {
        let mut patch = serde_json::json!({"spec": {"replicas": replicas}});
        if let Some(version) = resource_version {
            patch["metadata"] = serde_json::json!({"resourceVersion": version});
        }
        let params = PatchParams {
            field_manager: Some(names::FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        let what = format!("scale Deployment {}/{name} to {replicas}", self.name);
        let scale = self
            .api::<Deployment>()?
            .patch_scale(name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| map_kube_error(e, &what))?;
        Ok(written(
            "Scale of Deployment",
            &self.name,
            name,
            &scale.metadata,
        ))
    }

    /// Deletes a Deployment deployctl made (its ReplicaSets and pods go
    /// with it, by owner references); gone already is done.
    pub async fn delete_deployment(&self, name: &str) -> Result<bool, AdapterError> {
        delete::<Deployment>(
            &self.api()?,
            name,
            &format!("delete Deployment {}/{name}", self.name),
        )
        .await
    }

    pub async fn delete_service(&self, name: &str) -> Result<bool, AdapterError> {
        delete::<Service>(
            &self.api()?,
            name,
            &format!("delete Service {}/{name}", self.name),
        )
        .await
    }
}

/// `deployment`'s `spec.selector.matchLabels` as a label selector.
pub fn match_labels(deployment: &Deployment) -> String {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

async fn get_opt<K>(api: &Api<K>, name: &str, what: &str) -> Result<Option<K>, AdapterError>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.get(name).await {
        Ok(object) => Ok(Some(object)),
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => Err(map_kube_error(error, what)),
    }
}

/// Server-side apply, taking over the fields in `body` (`force`): the
/// another-writer rule has already compared what is there with what this
/// run left, and `body`'s `metadata.resourceVersion`, when set, makes the
/// write land only on the object that comparison read.
async fn apply<K>(api: &Api<K>, name: &str, body: Value, what: &str) -> Result<K, AdapterError>
where
    K: Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let params = PatchParams::apply(names::FIELD_MANAGER).force();
    api.patch(name, &params, &Patch::Apply(&body))
        .await
        .map_err(|e| map_kube_error(e, what))
}

async fn delete<K>(api: &Api<K>, name: &str, what: &str) -> Result<bool, AdapterError>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(error) if is_not_found(&error) => Ok(false),
        Err(error) => Err(map_kube_error(error, what)),
    }
}
