//! The target's platform lock: a `coordination.k8s.io/v1` Lease beside
//! the Deployment (`deployctl-lock-<deployment>` in its namespace), held
//! by every run of the Deployment, whether a deploy PC or the in-cluster
//! controller drives it, so they exclude each other with or without a team
//! backend.
//!
//! The holder is `spec.holderIdentity` (`RUN@PC`) with the owner's run,
//! PC, operator and environment in annotations (so a refusal names them);
//! the lease is `renewTime` + `leaseDurationSeconds`, as Kubernetes'
//! leader election reads it. Every change is a create (409 if another was
//! first) or a replace at the `resourceVersion` just read (409 if it
//! changed since), then read again: two drivers never both hold it. A
//! lease that ran out is not taken over: the run may be alive but cut off
//! from the API server. The same run takes its own back (resumed, or
//! driven by the controller's next leader).

use std::collections::BTreeMap;
use std::time::Duration;

use deployctl_adapter::BoxFuture;
use deployctl_adapter::team::{LockOwner, PlatformLock, TeamLockError};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};

use crate::cluster::Namespace;
use crate::error::{is_not_found, map_kube_error};

const RUN: &str = "deployctl.io/lock-run";
const PC: &str = "deployctl.io/lock-pc";
const OPERATOR: &str = "deployctl.io/lock-operator";
const ENVIRONMENT: &str = "deployctl.io/lock-environment";

/// Reads and writes before giving up on a Lease that keeps changing.
const ATTEMPTS: usize = 8;

/// The lock on one Deployment.
pub struct LeaseLock {
    ns: Namespace,
    name: String,
    lease: Duration,
}

impl LeaseLock {
    pub fn new(ns: Namespace, deployment: &str, lease: Duration) -> LeaseLock {
        LeaseLock {
            ns,
            name: lease_name(deployment),
            lease,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn backend(&self, error: kube::Error, what: &str) -> TeamLockError {
        TeamLockError::Backend(
            map_kube_error(error, &format!("{what} {}", self.place())).to_string(),
        )
    }

    async fn read(&self) -> Result<Option<Lease>, TeamLockError> {
        match self.ns.leases().map_err(adapter)?.get(&self.name).await {
            Ok(lease) => Ok(Some(lease)),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(self.backend(error, "reading")),
        }
    }

    /// Writes `lease` over what was read (`read` with its resourceVersion,
    /// or nothing): `false` when another writer was first.
    async fn write(&self, lease: Lease, over: Option<&Lease>) -> Result<bool, TeamLockError> {
        let api = self.ns.leases().map_err(adapter)?;
        let written = match over {
            None => api.create(&PostParams::default(), &lease).await,
            Some(_) => {
                api.replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(self.backend(error, "writing")),
        }
    }

    /// The Lease held by `owner` from now, built on what was read.
    fn held_by(&self, owner: &LockOwner, read: Option<&Lease>, acquired: bool) -> Lease {
        let now = MicroTime(jiff_now());
        let mut annotations: BTreeMap<String, String> = read
            .and_then(|lease| lease.metadata.annotations.clone())
            .unwrap_or_default();
        annotations.insert(RUN.into(), owner.run.clone());
        annotations.insert(PC.into(), owner.pc.clone());
        annotations.insert(OPERATOR.into(), owner.operator.clone());
        annotations.insert(ENVIRONMENT.into(), owner.environment.clone());
        let spec = read
            .and_then(|lease| lease.spec.clone())
            .unwrap_or_default();
        let transitions = spec.lease_transitions.unwrap_or(0);
        Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.ns.name.clone()),
                annotations: Some(annotations),
                resource_version: read.and_then(|lease| lease.metadata.resource_version.clone()),
                ..read.map(|lease| lease.metadata.clone()).unwrap_or_default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder_identity(owner)),
                lease_duration_seconds: Some(
                    i32::try_from(self.lease.as_secs())
                        .unwrap_or(i32::MAX)
                        .max(1),
                ),
                acquire_time: if acquired {
                    Some(now.clone())
                } else {
                    spec.acquire_time.clone()
                },
                renew_time: Some(now),
                lease_transitions: Some(if acquired {
                    transitions + 1
                } else {
                    transitions
                }),
                ..spec
            }),
        }
    }
}

fn adapter(error: deployctl_adapter::AdapterError) -> TeamLockError {
    TeamLockError::Backend(error.to_string())
}

/// The Lease's name for `deployment` (a DNS subdomain, at most 253).
pub fn lease_name(deployment: &str) -> String {
    let name = format!("deployctl-lock-{deployment}");
    name.chars().take(253).collect()
}

fn holder_identity(owner: &LockOwner) -> String {
    format!("{}@{}", owner.run, owner.pc)
}

fn jiff_now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

/// Who holds a Lease as read, and until when (Unix ms); `None` when
/// nobody does (released, or never held).
fn holder(lease: &Lease) -> Option<(LockOwner, i64)> {
    let spec = lease.spec.as_ref()?;
    let identity = spec.holder_identity.as_deref().filter(|h| !h.is_empty())?;
    let annotations = lease.metadata.annotations.clone().unwrap_or_default();
    let get = |key: &str| annotations.get(key).cloned().unwrap_or_default();
    let run = annotations
        .get(RUN)
        .cloned()
        .unwrap_or_else(|| identity.to_owned());
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map_or(0, |time| time.0.as_millisecond());
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0)) * 1000;
    Some((
        LockOwner {
            run,
            pc: get(PC),
            operator: get(OPERATOR),
            environment: get(ENVIRONMENT),
        },
        renewed + duration,
    ))
}

fn now_ms() -> i64 {
    jiff_now().as_millisecond()
}

impl PlatformLock for LeaseLock {
    fn place(&self) -> String {
        format!("Lease {}/{}", self.ns.name, self.name)
    }

    fn lease(&self) -> Duration {
        self.lease
    }

    fn acquire<'a>(&'a self, owner: &'a LockOwner) -> BoxFuture<'a, Result<(), TeamLockError>> {
        Box::pin(async move {
            for _ in 0..ATTEMPTS {
                let read = self.read().await?;
                let acquired = match read.as_ref().and_then(holder) {
                    None => true,
                    // Its own, wherever it was driven from before: the
                    // journal that names this run moved with it.
                    Some((held, _)) if held.run == owner.run => false,
                    Some((held, until)) if until <= now_ms() => {
                        return Err(TeamLockError::PlatformExpired {
                            place: self.place(),
                            expired_for_s: (now_ms() - until) / 1000,
                            owner: held,
                            remedy: format!(
                                "`kubectl delete lease {} -n {}`",
                                self.name, self.ns.name
                            ),
                        });
                    }
                    Some((held, until)) => {
                        return Err(TeamLockError::Held {
                            target: self.place(),
                            owner: held,
                            lease_until_ms: until,
                        });
                    }
                };
                let lease = self.held_by(owner, read.as_ref(), acquired);
                if self.write(lease, read.as_ref()).await? {
                    return Ok(());
                }
            }
            Err(TeamLockError::Backend(format!(
                "{} kept changing under this run ({ATTEMPTS} attempts)",
                self.place()
            )))
        })
    }

    fn renew<'a>(&'a self, owner: &'a LockOwner) -> BoxFuture<'a, Result<(), TeamLockError>> {
        Box::pin(async move {
            for _ in 0..ATTEMPTS {
                let read = self.read().await?;
                match read.as_ref().and_then(holder) {
                    Some((held, _)) if held.run == owner.run => {}
                    other => {
                        return Err(TeamLockError::Lost {
                            target: self.place(),
                            run: owner.run.clone(),
                            detail: match other {
                                Some((held, _)) => format!("it is held by {held}"),
                                None => "it was deleted or released".to_owned(),
                            },
                        });
                    }
                }
                let lease = self.held_by(owner, read.as_ref(), false);
                if self.write(lease, read.as_ref()).await? {
                    return Ok(());
                }
            }
            Err(TeamLockError::Backend(format!(
                "{} kept changing under this run ({ATTEMPTS} attempts)",
                self.place()
            )))
        })
    }

    fn release<'a>(&'a self, owner: &'a LockOwner) -> BoxFuture<'a, Result<(), TeamLockError>> {
        Box::pin(async move {
            for _ in 0..ATTEMPTS {
                let Some(read) = self.read().await? else {
                    return Ok(());
                };
                if holder(&read).is_none_or(|(held, _)| held.run != owner.run) {
                    return Ok(());
                }
                let mut released = read.clone();
                if let Some(spec) = released.spec.as_mut() {
                    spec.holder_identity = None;
                    spec.renew_time = None;
                }
                if let Some(annotations) = released.metadata.annotations.as_mut() {
                    for key in [RUN, PC, OPERATOR, ENVIRONMENT] {
                        annotations.remove(key);
                    }
                }
                if self.write(released, Some(&read)).await? {
                    return Ok(());
                }
            }
            Err(TeamLockError::Backend(format!(
                "{} kept changing under this run ({ATTEMPTS} attempts)",
                self.place()
            )))
        })
    }
}
