//! The `kubernetes` gate: readiness of the new version's pods. It fails at
//! once, naming pod, container and reason, when a pod cannot run
//! (CrashLoopBackOff, ImagePullBackOff…) or the rollout passed its
//! progress deadline; while the rollout is still moving it has nothing to
//! judge (never a pass); once rolled out it passes when at least
//! `minReadyPercent` of the desired pods are ready.

use deployctl_adapter::{BoxFuture, HealthProbe, Measurement};

use crate::cluster::Namespace;
use crate::names;
use crate::view::Place;
use crate::workload::{self, Rollout};

pub(crate) struct Readiness {
    pub ns: Namespace,
    pub place: Place,
    /// Whether the new version runs in a canary Deployment (else green).
    pub canary: bool,
    pub container: Option<String>,
    /// The version released, whose Deployment is judged.
    pub candidate: Option<String>,
    pub min_ready_percent: f64,
}

impl Readiness {
    /// The Deployment running the new version: green or the canary while
    /// they exist, else the plan's (a promoted canary runs there).
    fn candidates(&self) -> Vec<String> {
        let mut names = Vec::new();
        if let Some(version) = &self.candidate {
            if self.canary {
                names.push(names::canary(&self.place.base));
            } else {
                names.push(names::green(&self.place.base, version));
            }
        }
        names.push(self.place.base.clone());
        names
    }

    async fn measure_now(&self) -> Measurement {
        for name in self.candidates() {
            let deployment = match self.ns.deployment(&name).await {
                Ok(Some(found)) => found,
                Ok(None) => continue,
                Err(error) => {
                    return Measurement::Error {
                        detail: error.to_string(),
                    };
                }
            };
            let pods = match self.ns.current_pods(&deployment).await {
                Ok((_, pods)) => pods,
                Err(error) => {
                    return Measurement::Error {
                        detail: error.to_string(),
                    };
                }
            };
            let rollout = workload::rollout(&deployment, &pods);
            let percent = rollout.ready_percent();
            let version =
                workload::version_of(&deployment, self.container.as_deref()).unwrap_or_default();
            return match rollout {
                Rollout::Failed { detail, .. } => Measurement::Fail {
                    value: Some(percent),
                    detail,
                },
                Rollout::Progressing { detail, .. } => Measurement::NoData {
                    detail: format!("{version} still rolling out: {detail}"),
                },
                Rollout::Complete { ready, desired } if percent >= self.min_ready_percent => {
                    Measurement::Pass {
                        value: Some(percent),
                        detail: format!(
                            "Deployment {name} ({version}): {ready}/{desired} pods ready"
                        ),
                    }
                }
                Rollout::Complete { ready, desired } => Measurement::Fail {
                    value: Some(percent),
                    detail: format!(
                        "Deployment {name} ({version}): {ready}/{desired} pods ready, below {}%",
                        self.min_ready_percent
                    ),
                },
            };
        }
        Measurement::Error {
            detail: format!(
                "no Deployment {} in namespace {}",
                self.candidates().join(" or "),
                self.place.namespace
            ),
        }
    }
}

impl HealthProbe for Readiness {
    fn measure(&self) -> BoxFuture<'_, Measurement> {
        Box::pin(self.measure_now())
    }
}
