//! What a Deployment says about itself, read without IO: the version it
//! runs, the container a release changes, and how far its rollout is.
//! Kept pure so the readiness rules are unit-tested on objects as the API
//! server returns them.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::names;

/// The container a release changes: the artifact's `container`, else the
/// pod's first one.
pub fn release_container<'d>(
    deployment: &'d Deployment,
    container: Option<&str>,
) -> Option<&'d Container> {
    let containers = &deployment.spec.as_ref()?.template.spec.as_ref()?.containers;
    match container {
        Some(name) => containers.iter().find(|c| c.name == name),
        None => containers.first(),
    }
}

/// The version `deployment` runs: the one deployctl wrote, else the
/// `app.kubernetes.io/version` label, else the release container's image.
pub fn version_of(deployment: &Deployment, container: Option<&str>) -> Option<String> {
    let meta = &deployment.metadata;
    if let Some(version) = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(names::VERSION))
    {
        return Some(version.clone());
    }
    let template_labels = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.as_ref());
    for labels in [meta.labels.as_ref(), template_labels]
        .into_iter()
        .flatten()
    {
        if let Some(version) = labels.get("app.kubernetes.io/version") {
            return Some(version.clone());
        }
    }
    release_container(deployment, container).and_then(|c| c.image.clone())
}

/// The image of every container, by name (what a rollback restores).
pub fn images(deployment: &Deployment) -> BTreeMap<String, String> {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|pod| {
            pod.containers
                .iter()
                .filter_map(|c| Some((c.name.clone(), c.image.clone()?)))
                .collect()
        })
        .unwrap_or_default()
}

pub fn desired_replicas(deployment: &Deployment) -> i32 {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
}

pub fn annotation<'d>(deployment: &'d Deployment, key: &str) -> Option<&'d str> {
    deployment
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Where a Deployment's rollout stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Rollout {
    /// Its current template runs on every replica and enough are
    /// available (`ready` of `desired`).
    Complete { ready: i32, desired: i32 },
    /// Still moving, with what it waits for.
    Progressing {
        ready: i32,
        desired: i32,
        detail: String,
    },
    /// It will not get there by itself: the progress deadline passed, or
    /// a pod cannot run (`detail` names the pod, container and reason).
    Failed {
        ready: i32,
        desired: i32,
        detail: String,
    },
}

impl Rollout {
    pub fn ready_percent(&self) -> f64 {
        let (ready, desired) = match self {
            Rollout::Complete { ready, desired }
            | Rollout::Progressing { ready, desired, .. }
            | Rollout::Failed { ready, desired, .. } => (*ready, *desired),
        };
        if desired <= 0 {
            return 100.0;
        }
        f64::from(ready.min(desired)) * 100.0 / f64::from(desired)
    }
}

/// Container states that never heal by waiting (kubectl shows them).
const STUCK: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// The rollout of `deployment`, from its status and its current pods
/// (`pods`: those of its newest ReplicaSet).
pub fn rollout(deployment: &Deployment, pods: &[Pod]) -> Rollout {
    let desired = desired_replicas(deployment);
    let status = deployment.status.clone().unwrap_or_default();
    let generation = deployment.metadata.generation.unwrap_or(0);
    let observed = status.observed_generation.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let ready_pods = pods.iter().filter(|p| pod_ready(p)).count() as i32;
    // The new version's own pods when they were listed (old ReplicaSets'
    // available pods say nothing of it), else the Deployment's count.
    let ready = match (observed >= generation, pods.is_empty()) {
        (false, _) => 0,
        (true, true) => available,
        (true, false) => ready_pods,
    };
    if let Some(problem) = pods.iter().find_map(pod_problem) {
        return Rollout::Failed {
            ready,
            desired,
            detail: problem,
        };
    }
    let deadline = status.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if let Some(condition) = deadline {
        return Rollout::Failed {
            ready,
            desired,
            detail: format!(
                "Deployment {}: ProgressDeadlineExceeded: {}",
                name(deployment),
                condition.message.clone().unwrap_or_default()
            ),
        };
    }
    if observed < generation {
        return Rollout::Progressing {
            ready,
            desired,
            detail: format!(
                "Deployment {} not yet observed (generation {generation}, observed {observed})",
                name(deployment)
            ),
        };
    }
    if updated < desired || replicas > updated || available < desired {
        return Rollout::Progressing {
            ready,
            desired,
            detail: format!(
                "Deployment {}: {updated} of {desired} updated, {available} available, {replicas} in total",
                name(deployment)
            ),
        };
    }
    Rollout::Complete { ready, desired }
}

fn name(deployment: &Deployment) -> String {
    deployment.metadata.name.clone().unwrap_or_default()
}

pub fn pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `pod NAME container C: REASON (message)` for a pod that cannot run.
fn pod_problem(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let statuses = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for container in statuses {
        let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = waiting.reason.as_deref().unwrap_or_default();
        if STUCK.contains(&reason) {
            let message = waiting.message.as_deref().unwrap_or_default();
            return Some(format!(
                "pod {} container {}: {reason}{}",
                pod.metadata.name.as_deref().unwrap_or_default(),
                container.name,
                if message.is_empty() {
                    String::new()
                } else {
                    format!(" ({message})")
                }
            ));
        }
    }
    None
}

/// The newest of `deployment`'s ReplicaSets (by Kubernetes' revision
/// annotation): the one its current template runs on.
pub fn newest<'r>(deployment: &Deployment, sets: &'r [ReplicaSet]) -> Option<&'r ReplicaSet> {
    let uid = deployment.metadata.uid.as_deref()?;
    sets.iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == uid && o.controller == Some(true))
        })
        .max_by_key(|rs| {
            rs.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(names::REVISION))
                .and_then(|r| r.parse::<u64>().ok())
                .unwrap_or(0)
        })
}

/// The pod-template-hash of a ReplicaSet.
pub fn template_hash(set: &ReplicaSet) -> Option<&str> {
    set.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(names::POD_TEMPLATE_HASH))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "generation": 2, "uid": "u1"},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "api", "image": "web:1"}]}}},
            "status": status,
        }))
        .expect("a Deployment")
    }

    fn pod(ready: bool, waiting: Option<&str>) -> Pod {
        let state = match waiting {
            Some(reason) => json!({"waiting": {"reason": reason, "message": "back-off 10s"}}),
            None => json!({"running": {}}),
        };
        serde_json::from_value(json!({
            "metadata": {"name": "web-abc-x1"},
            "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}],
                       "containerStatuses": [{"name": "api", "image": "web:1", "imageID": "",
                                              "ready": ready, "restartCount": 3, "state": state}]},
        }))
        .expect("a Pod")
    }

    #[test]
    fn complete_when_every_replica_runs_the_template_and_is_available() {
        let d = deployment(
            json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 4, "availableReplicas": 4}),
        );
        let pods = vec![pod(true, None); 4];
        assert_eq!(
            rollout(&d, &pods),
            Rollout::Complete {
                ready: 4,
                desired: 4
            }
        );
    }

    #[test]
    fn an_unobserved_generation_is_still_progressing_whatever_the_counts() {
        let d = deployment(
            json!({"observedGeneration": 1, "replicas": 4, "updatedReplicas": 4, "availableReplicas": 4}),
        );
        let r = rollout(&d, &[]);
        assert!(matches!(r, Rollout::Progressing { ready: 0, .. }), "{r:?}");
        assert_eq!(r.ready_percent(), 0.0);
    }

    #[test]
    fn old_replicas_left_mean_progressing() {
        let d = deployment(
            json!({"observedGeneration": 2, "replicas": 5, "updatedReplicas": 4, "availableReplicas": 4}),
        );
        assert!(matches!(rollout(&d, &[]), Rollout::Progressing { .. }));
    }

    #[test]
    fn a_crash_looping_pod_fails_naming_pod_container_and_reason() {
        let d = deployment(
            json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 4, "availableReplicas": 3}),
        );
        let pods = vec![pod(true, None), pod(false, Some("CrashLoopBackOff"))];
        match rollout(&d, &pods) {
            Rollout::Failed { detail, .. } => {
                assert!(
                    detail.contains("pod web-abc-x1 container api: CrashLoopBackOff"),
                    "{detail}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_progress_deadline_fails_the_rollout() {
        let d = deployment(
            json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 4, "availableReplicas": 1,
            "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                            "message": "ReplicaSet \"web-abc\" has timed out progressing."}]}),
        );
        match rollout(&d, &[]) {
            Rollout::Failed { detail, ready, .. } => {
                assert!(detail.contains("ProgressDeadlineExceeded"), "{detail}");
                assert_eq!(ready, 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_version_is_deployctls_then_the_label_then_the_image() {
        let mut d = deployment(json!({}));
        assert_eq!(version_of(&d, Some("api")).as_deref(), Some("web:1"));
        d.metadata.labels =
            Some([("app.kubernetes.io/version".to_owned(), "1.0".to_owned())].into());
        assert_eq!(version_of(&d, None).as_deref(), Some("1.0"));
        d.metadata.annotations = Some([(names::VERSION.to_owned(), "1.1".to_owned())].into());
        assert_eq!(version_of(&d, None).as_deref(), Some("1.1"));
        assert_eq!(version_of(&d, Some("missing")).as_deref(), Some("1.1"));
    }
}
