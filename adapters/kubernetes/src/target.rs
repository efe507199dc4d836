//! [`KubernetesTarget`]: construction, the another-writer memory, the
//! waits every step shares, and the `Target` implementation that hands
//! each action to the traffic router the target has: the HTTPRoute
//! (`canary.rs`) or the Service selector (`bluegreen.rs`).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use deployctl_adapter::construct::PlanRelease;
use deployctl_adapter::team::PlatformLock;
use deployctl_adapter::writer::{AnotherWriter, LastWrite};
use deployctl_adapter::{
    AdapterError, Applied, BoxFuture, Capabilities, HealthProbe, IdempotencyKey, Moves, Observed,
    PlannedCall, Preflight, Target, TrafficAction, TrafficTarget, Weights,
};
use deployctl_plan::model::{ArtifactSource, GateCheck, StrategyKind, TargetKind};
use deployctl_plan::raw;

use crate::cluster::Namespace;
use crate::connect::{ConnectError, Connection, connect, connect_eks};
use crate::error::rejected;
use crate::lease_lock::LeaseLock;
use crate::route::{self, Acceptance};
use crate::view::{Fingerprint, Place, View};
use crate::workload::{self, Rollout};
use crate::{bluegreen, canary, probe};

/// How long one step may wait for the cluster, and how often it looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KubernetesOptions {
    pub poll_interval: Duration,
    /// The longest one step waits for pods, endpoints or the route's
    /// controller before it reports `Timeout` (the engine retries, which
    /// waits again without writing twice, or rolls back).
    pub wait_timeout: Duration,
    /// The lease of the Deployment's platform lock (its Lease), renewed
    /// every third of it while a run drives the Deployment.
    pub lock_lease: Duration,
}

impl Default for KubernetesOptions {
    fn default() -> Self {
        KubernetesOptions {
            poll_interval: Duration::from_millis(250),
            wait_timeout: Duration::from_secs(10 * 60),
            lock_lease: Duration::from_secs(60),
        }
    }
}

/// Why a target could not be built from the plan: refused before any call.
#[derive(Debug, thiserror::Error)]
pub enum ConstructError {
    #[error(
        "artifact version {version} has no image; a kubernetes target releases a container image (`artifacts.{target}.image.reference`)"
    )]
    NoImage { target: String, version: String },
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

/// The release this target makes: the plan's version and its image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Release {
    pub version: String,
    pub image: String,
}

/// How a target splits traffic between its stable and new pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Router {
    /// The HTTPRoute's backendRefs weights (exact).
    Route,
    /// The stable Service over both Deployments' pods, weighted by their
    /// replica counts (a canary without a route: approximate).
    Replicas,
    /// The Service's selector, all at once (blue-green).
    Selector,
}

/// A Kubernetes Deployment behind a Service as a deploy target.
pub struct KubernetesTarget {
    pub(crate) name: String,
    pub(crate) place: Place,
    pub(crate) router: Router,
    pub(crate) ns: Namespace,
    pub(crate) server: String,
    /// The container a release changes (`None`: the first).
    pub(crate) container: Option<String>,
    pub(crate) release: Option<Release>,
    pub(crate) options: KubernetesOptions,
    written: Arc<Mutex<LastWrite<Fingerprint>>>,
}

impl std::fmt::Debug for KubernetesTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesTarget")
            .field("name", &self.name)
            .field("place", &self.place)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// One poll of a wait: done, or what it still waits for.
pub(crate) enum Poll<T> {
    Done(T),
    Waiting(String),
}

impl KubernetesTarget {
    /// A target for the plan's `kubernetes` section, connected as kubectl
    /// would be (`kubeconfig:` relative to the plan, else `KUBECONFIG`).
    pub async fn from_spec(
        name: &str,
        spec: &raw::KubernetesTarget,
        release: &PlanRelease<'_>,
    ) -> Result<Self, ConstructError> {
        let kubeconfig = spec
            .kubeconfig
            .as_deref()
            .map(|path| release.plan_dir.join(path));
        let connection = match &spec.eks {
            Some(cluster) => connect_eks(cluster).await?,
            None => connect(kubeconfig.as_deref(), spec.context.as_deref()).await?,
        };
        Self::with_connection(
            name,
            spec,
            release,
            connection,
            KubernetesOptions::default(),
        )
    }

    /// A target over an existing connection (tests, the controller).
    pub fn with_connection(
        name: &str,
        spec: &raw::KubernetesTarget,
        release: &PlanRelease<'_>,
        connection: Connection,
        options: KubernetesOptions,
    ) -> Result<Self, ConstructError> {
        let router = match (&spec.http_route, release.strategy) {
            (Some(_), _) => Router::Route,
            (None, Some(StrategyKind::Canary)) => Router::Replicas,
            (None, _) => Router::Selector,
        };
        let (release, container) = match release.artifact {
            None => (None, None),
            Some(artifact) => match &artifact.source {
                ArtifactSource::Image {
                    reference,
                    container,
                } => (
                    Some(Release {
                        version: artifact.version.clone(),
                        image: reference.clone(),
                    }),
                    container.clone(),
                ),
                _ => {
                    return Err(ConstructError::NoImage {
                        target: name.to_owned(),
                        version: artifact.version.clone(),
                    });
                }
            },
        };
        let route = spec.http_route.as_ref().map(|r| {
            (
                r.namespace
                    .clone()
                    .unwrap_or_else(|| spec.namespace.clone()),
                r.name.clone(),
            )
        });
        Ok(KubernetesTarget {
            name: name.to_owned(),
            router,
            place: Place {
                namespace: spec.namespace.clone(),
                base: spec.deployment.clone(),
                service: spec.service.clone(),
                preview: spec.preview_service.clone(),
                route,
            },
            server: connection.server.clone(),
            ns: Namespace::new(connection, spec.namespace.clone()),
            container,
            release,
            options,
            written: Arc::default(),
        })
    }

    pub fn with_options(mut self, options: KubernetesOptions) -> Self {
        self.options = options;
        self
    }

    fn memory(&self) -> MutexGuard<'_, LastWrite<Fingerprint>> {
        self.written.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) async fn view(&self) -> Result<View, AdapterError> {
        View::read(&self.ns, &self.place).await
    }

    pub(crate) fn release(&self, action: &str) -> Result<&Release, AdapterError> {
        self.release
            .as_ref()
            .ok_or_else(|| AdapterError::Unsupported {
                what: format!(
                    "target `{}` has no artifact in the plan, so it cannot {action}",
                    self.name
                ),
            })
    }

    /// Whether releases go through a canary Deployment beside the primary
    /// (by route weights or replica ratios) rather than a selector switch.
    pub(crate) fn canary_model(&self) -> bool {
        self.router != Router::Selector
    }

    pub(crate) fn describe(&self) -> String {
        format!("Deployment {}/{}", self.place.namespace, self.place.base)
    }

    /// Polls `poll` until it is done, for at most the wait timeout.
    pub(crate) async fn wait<T, F, P>(&self, what: &str, mut poll: P) -> Result<T, AdapterError>
    where
        P: FnMut() -> F,
        F: Future<Output = Result<Poll<T>, AdapterError>>,
    {
        let started = Instant::now();
        loop {
            let last = match poll().await? {
                Poll::Done(value) => return Ok(value),
                Poll::Waiting(detail) => detail,
            };
            if started.elapsed() >= self.options.wait_timeout {
                return Err(AdapterError::Timeout {
                    message: format!(
                        "waited {:?} for {what}; still {last}",
                        self.options.wait_timeout
                    ),
                });
            }
            tokio::time::sleep(self.options.poll_interval).await;
        }
    }

    /// Waits until `deployment` has rolled out (with `at_least` ready pods
    /// of its current template, when given); a rollout that cannot finish
    /// (crash loop, image pull, progress deadline) is a rejection naming
    /// the pod, container and reason.
    pub(crate) async fn wait_rollout(
        &self,
        deployment: &str,
        at_least: Option<i32>,
    ) -> Result<(), AdapterError> {
        let what = format!(
            "Deployment {}/{deployment} to roll out",
            self.place.namespace
        );
        self.wait(&what, move || async move {
            let found = self.ns.require_deployment(deployment).await?;
            let (_, pods) = self.ns.current_pods(&found).await?;
            Ok(match workload::rollout(&found, &pods) {
                Rollout::Complete { .. } => Poll::Done(()),
                Rollout::Failed { detail, .. } => return Err(rejected(detail)),
                Rollout::Progressing { ready, detail, .. } => match at_least {
                    Some(n) if ready >= n => Poll::Done(()),
                    _ => Poll::Waiting(detail),
                },
            })
        })
        .await
    }

    /// Waits until `service`'s EndpointSlices list only pods of
    /// `deployment`'s current template, at least one of them ready: the
    /// switch counts as done only when traffic can reach nothing else.
    pub(crate) async fn wait_endpoints(
        &self,
        service: &str,
        deployment: &str,
    ) -> Result<(), AdapterError> {
        self.wait_endpoints_of(service, &[deployment], EndpointsReady::One)
            .await
    }

    /// Waits until `service`'s EndpointSlices list only pods of the
    /// current templates of `deployments`, with ready pods of each as
    /// `ready` asks.
    pub(crate) async fn wait_endpoints_of(
        &self,
        service: &str,
        deployments: &[&str],
        ready: EndpointsReady,
    ) -> Result<(), AdapterError> {
        let what = format!(
            "Service {}/{service} to send traffic only to Deployment {}",
            self.place.namespace,
            deployments.join(" and ")
        );
        self.wait(&what, move || async move {
            let mut each = Vec::new();
            for deployment in deployments {
                let found = self.ns.require_deployment(deployment).await?;
                let (_, pods) = self.ns.current_pods(&found).await?;
                let names: BTreeSet<String> = pods
                    .iter()
                    .filter_map(|p| p.metadata.name.clone())
                    .collect();
                let wanted = match ready {
                    EndpointsReady::One => 1,
                    EndpointsReady::EveryReplica => found
                        .spec
                        .as_ref()
                        .and_then(|s| s.replicas)
                        .unwrap_or(1)
                        .max(1),
                };
                each.push((*deployment, names, usize::try_from(wanted).unwrap_or(1)));
            }
            let endpoints = self.ns.endpoints(service).await?;
            let strangers: Vec<&String> = endpoints
                .keys()
                .filter(|p| !each.iter().any(|(_, ours, _)| ours.contains(*p)))
                .collect();
            let unready: Vec<String> = each
                .iter()
                .filter_map(|(deployment, ours, wanted)| {
                    let serving = endpoints
                        .iter()
                        .filter(|(p, ready)| **ready && ours.contains(*p))
                        .count();
                    (serving < *wanted).then(|| format!("{deployment} ({serving} of {wanted})"))
                })
                .collect();
            Ok(if !strangers.is_empty() {
                Poll::Waiting(format!("endpoints list other pods: {strangers:?}"))
            } else if !unready.is_empty() {
                Poll::Waiting(format!("no ready endpoint of {} yet", unready.join(", ")))
            } else {
                Poll::Done(())
            })
        })
        .await
    }

    /// Waits until the route's controller reports `generation` Accepted
    /// with ResolvedRefs on every parent; a refusal is a rejection.
    pub(crate) async fn wait_route(&self, generation: i64) -> Result<(), AdapterError> {
        let Some((namespace, name)) = self.place.route.clone() else {
            return Ok(());
        };
        let what = format!("HTTPRoute {namespace}/{name} generation {generation} to be accepted");
        let (namespace, name) = (namespace.as_str(), name.as_str());
        self.wait(&what, move || async move {
            let Some(found) = self.ns.route(namespace, name).await? else {
                return Err(AdapterError::NotFound {
                    what: format!("HTTPRoute {namespace}/{name}"),
                });
            };
            let mut object = found.data.clone();
            object["metadata"]["generation"] = found.metadata.generation.into();
            Ok(match route::acceptance(&object, generation) {
                Acceptance::Accepted => Poll::Done(()),
                Acceptance::Waiting(detail) => Poll::Waiting(detail),
                // A backend that is not there yet (the canary Service just
                // made) resolves on its own; anything else is final.
                Acceptance::Refused(detail) if detail.contains("BackendNotFound") => {
                    Poll::Waiting(detail)
                }
                Acceptance::Refused(detail) => {
                    return Err(rejected(format!("HTTPRoute {namespace}/{name}: {detail}")));
                }
            })
        })
        .await
    }

    fn refusal(&self, left: &Fingerprint, now: &Fingerprint, view: &View) -> AdapterError {
        let managers = view.other_managers();
        let by = match managers.first() {
            Some(manager) => format!("{now}; last changed by {manager}"),
            None => now.to_string(),
        };
        AnotherWriter {
            resource: self.describe(),
            left: left.to_string(),
            now: by,
            rollback: if self.router == Router::Route {
                "send the route back to the stable Service and remove the canary"
            } else if self.router == Router::Replicas {
                "point the Service back at the primary's pods and remove the canary"
            } else {
                "switch the Service back to the stable Deployment"
            },
        }
        .refusal()
    }

    async fn apply_checked(&self, action: &TrafficAction) -> Result<Applied, AdapterError> {
        let view = self.view().await?;
        let now = view.fingerprint(self.container.as_deref());
        if let Err(changed) = self.memory().check(&now) {
            return Err(self.refusal(&changed.left, &now, &view));
        }
        let outcome = if self.canary_model() {
            canary::apply(self, action, view).await
        } else {
            bluegreen::apply(self, action, view).await
        };
        match outcome {
            Ok(applied) => {
                let after = self.view().await?;
                self.memory()
                    .wrote(after.fingerprint(self.container.as_deref()));
                Ok(applied)
            }
            Err(error) => {
                // Our own step failed partway: what it wrote may have
                // landed unseen, so the next read is not another writer's.
                self.memory().forget();
                Err(error)
            }
        }
    }

    async fn preflight_now(&self) -> Result<Preflight, AdapterError> {
        let view = self.view().await?;
        let Some(_) = view.base.as_ref() else {
            return Err(AdapterError::NotFound {
                what: format!("{} (the target's `deployment`)", self.describe()),
            });
        };
        if view.service.is_none() {
            return Err(AdapterError::NotFound {
                what: format!(
                    "Service {}/{} (the target's `service`)",
                    self.place.namespace, self.place.service
                ),
            });
        }
        if let (Some(name), None) = (&self.place.preview, &view.preview) {
            return Err(AdapterError::NotFound {
                what: format!(
                    "Service {}/{name} (the target's `previewService`)",
                    self.place.namespace
                ),
            });
        }
        let capabilities = match (&self.place.route, self.router) {
            (Some((namespace, name)), _) => {
                let Some(found) = &view.route else {
                    return Err(AdapterError::NotFound {
                        what: format!("HTTPRoute {namespace}/{name} (the target's `httpRoute`)"),
                    });
                };
                if route::carrying(&found.data["spec"], &self.place.service).is_empty() {
                    return Err(rejected(format!(
                        "HTTPRoute {namespace}/{name} sends no traffic to Service {}; its backendRefs must name it",
                        self.place.service
                    )));
                }
                Capabilities {
                    header_routes: true,
                    ..Capabilities::weights_up_to(100)
                }
            }
            (None, Router::Replicas) => Capabilities {
                weights: Weights::Approximate {
                    max: 100,
                    how: format!(
                        "replica ratios: without an HTTPRoute, Service {} spreads traffic over the primary's and the canary's pods, so a weight is the canary's share of the pods",
                        self.place.service
                    ),
                },
                waves: false,
                header_routes: false,
            },
            (None, _) => Capabilities::switch_only(format!(
                "without an HTTPRoute, Service {} can only switch all traffic at once (blue-green)",
                self.place.service
            )),
        };
        let stable_name = if self.canary_model() {
            self.place.base.clone()
        } else {
            bluegreen::stable_name(self, &view)
        };
        let Some(stable) = view.deployment(&stable_name) else {
            return Err(AdapterError::NotFound {
                what: format!(
                    "Deployment {}/{stable_name} (the stable one)",
                    self.place.namespace
                ),
            });
        };
        let stable_version =
            workload::version_of(stable, self.container.as_deref()).ok_or_else(|| {
                rejected(format!(
                    "Deployment {}/{stable_name} has no container {}",
                    self.place.namespace,
                    self.container.as_deref().unwrap_or("at all")
                ))
            })?;
        let (_, pods) = self.ns.current_pods(stable).await?;
        let rollout = workload::rollout(stable, &pods);
        let rollback_ready = matches!(rollout, Rollout::Complete { ready, .. } if ready > 0);
        let detail = match &rollout {
            Rollout::Complete { ready, desired } => {
                format!(
                    "Deployment {stable_name} runs {stable_version} on {ready}/{desired} ready pods"
                )
            }
            Rollout::Progressing { detail, .. } | Rollout::Failed { detail, .. } => {
                format!("the stable Deployment is not settled: {detail}")
            }
        };
        Ok(Preflight {
            verified: Vec::new(),
            stable_version,
            rollback_ready,
            detail,
            identity: format!(
                "kubernetes:{}/namespaces/{}/deployments/{}",
                self.server, self.place.namespace, self.place.base
            ),
            capabilities,
        })
    }
}

impl Target for KubernetesTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> TargetKind {
        TargetKind::Kubernetes
    }

    fn observe(&self) -> BoxFuture<'_, Result<Observed, AdapterError>> {
        Box::pin(async move {
            let view = self.view().await?;
            self.memory()
                .observed(view.fingerprint(self.container.as_deref()));
            Ok(if self.canary_model() {
                canary::observe(self, &view)
            } else {
                bluegreen::observe(self, &view)
            })
        })
    }

    fn preflight(&self) -> BoxFuture<'_, Result<Preflight, AdapterError>> {
        Box::pin(self.preflight_now())
    }

    fn platform_lock(&self) -> Option<Arc<dyn PlatformLock>> {
        Some(Arc::new(LeaseLock::new(
            self.ns.clone(),
            &self.place.base,
            self.options.lock_lease,
        )))
    }

    fn moves(&self) -> Moves<'_> {
        Moves::traffic(self)
    }

    fn probe(&self, check: &GateCheck) -> Option<Box<dyn HealthProbe>> {
        match check {
            GateCheck::Kubernetes { min_ready_percent } => Some(Box::new(probe::Readiness {
                ns: self.ns.clone(),
                place: self.place.clone(),
                canary: self.canary_model(),
                container: self.container.clone(),
                candidate: self.release.as_ref().map(|r| r.version.clone()),
                min_ready_percent: *min_ready_percent,
            })),
            _ => None,
        }
    }
}

impl TrafficTarget for KubernetesTarget {
    fn plan_traffic(
        &self,
        observed: &Observed,
        action: &TrafficAction,
    ) -> Result<Vec<PlannedCall>, AdapterError> {
        if self.canary_model() {
            canary::plan(self, observed, action)
        } else {
            bluegreen::plan(self, observed, action)
        }
    }

    fn apply_traffic<'a>(
        &'a self,
        action: &'a TrafficAction,
        _key: &'a IdempotencyKey,
    ) -> BoxFuture<'a, Result<Applied, AdapterError>> {
        Box::pin(self.apply_checked(action))
    }
}

/// How many of a Deployment's pods must be ready endpoints of a Service.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EndpointsReady {
    /// One: traffic can reach the Deployment (a selector switch).
    One,
    /// Every replica it wants: the traffic share is the share of pods (a
    /// canary by replica ratios), so it holds only once all serve.
    EveryReplica,
}
