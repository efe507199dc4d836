//! Reading, watching and writing Releases with optimistic concurrency.
//!
//! Every write carries the `resourceVersion` it was computed from: status
//! by a `PUT …/status` of the object as read, spec changes (approvals,
//! finalizers) by a JSON patch whose first operation tests the
//! `resourceVersion`. When someone else wrote in between, the server
//! answers 409 (or 422 for a failed test) and the write is recomputed from
//! a fresh read, a bounded number of times. Status writes also check,
//! before every attempt, that this controller still holds the lease: a
//! deposed leader never overwrites what its successor wrote (fencing).

use futures::{Stream, StreamExt};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::KubeReleaseError;
use crate::crd::{ApprovalEntry, FINALIZER, Release, ReleaseStatus, RequestEntry};
use crate::error::status_code;

/// How many times a write is recomputed after a conflict.
const ATTEMPTS: u32 = 8;

/// The Releases of one namespace.
#[derive(Clone)]
pub struct Releases {
    api: Api<Release>,
    namespace: String,
}

/// `NAMESPACE/NAME` as two parts.
pub fn parse_reference(text: &str) -> Result<(String, String), KubeReleaseError> {
    match text.split_once('/') {
        Some((namespace, name))
            if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
        {
            Ok((namespace.to_string(), name.to_string()))
        }
        _ => Err(KubeReleaseError::BadReference(text.to_string())),
    }
}

impl Releases {
    pub fn new(client: Client, namespace: &str) -> Releases {
        Releases {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn what(&self, verb: &str, name: &str) -> String {
        format!("{verb} Release {}/{name}", self.namespace)
    }

    pub async fn get(&self, name: &str) -> Result<Option<Release>, KubeReleaseError> {
        self.api
            .get_opt(name)
            .await
            .map_err(|e| KubeReleaseError::api(self.what("reading", name), e))
    }

    async fn get_existing(&self, name: &str) -> Result<Release, KubeReleaseError> {
        self.get(name)
            .await?
            .ok_or_else(|| KubeReleaseError::NotFound {
                namespace: self.namespace.clone(),
                name: name.to_string(),
            })
    }

    pub async fn list(&self) -> Result<Vec<Release>, KubeReleaseError> {
        self.api
            .list(&ListParams::default())
            .await
            .map(|list| list.items)
            .map_err(|e| {
                KubeReleaseError::api(format!("listing Releases in {}", self.namespace), e)
            })
    }

    pub async fn create(&self, release: &Release) -> Result<Release, KubeReleaseError> {
        self.api
            .create(&PostParams::default(), release)
            .await
            .map_err(|e| KubeReleaseError::api(self.what("creating", &release.name_any()), e))
    }

    /// Every change to the namespace's Releases, relisting after a broken
    /// watch (kube-runtime's watcher).
    pub fn watch(
        &self,
    ) -> impl Stream<Item = Result<watcher::Event<Release>, watcher::Error>> + Send + use<> {
        watcher(self.api.clone(), watcher::Config::default())
    }

    /// The watch as a channel of [`Change`]s, driven by a task that backs
    /// off after errors and relists after a broken watch; it stops when
    /// the returned [`Changes`] is dropped.
    pub fn changes(&self) -> Changes {
        let (sender, receiver) = mpsc::channel(256);
        let stream = self.watch().default_backoff();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let change = match event {
                    Ok(watcher::Event::Apply(release) | watcher::Event::InitApply(release)) => {
                        Change::Applied(Box::new(release))
                    }
                    Ok(watcher::Event::Delete(release)) => Change::Deleted(Box::new(release)),
                    Ok(watcher::Event::Init | watcher::Event::InitDone) => continue,
                    Err(error) => Change::WatchError(error.to_string()),
                };
                if sender.send(change).await.is_err() {
                    return;
                }
            }
        });
        Changes { receiver, task }
    }

    /// Writes the status `compute` derives from the object as it is now,
    /// starting from `current`. `compute` returns `None` when the status
    /// already says what it would write (nothing is sent). Returns the
    /// object as written, or `None` when nothing needed writing.
    pub async fn write_status(
        &self,
        current: &Release,
        compute: impl Fn(&Release) -> Option<ReleaseStatus>,
        still_leader: impl Fn() -> bool,
    ) -> Result<Option<Release>, KubeReleaseError> {
        let name = current.name_any();
        let mut object = current.clone();
        for _ in 0..ATTEMPTS {
            if !still_leader() {
                return Err(KubeReleaseError::NotLeader { what: "status" });
            }
            let Some(status) = compute(&object) else {
                return Ok(None);
            };
            let mut updated = object.clone();
            updated.status = Some(status);
            match self
                .api
                .replace_status(&name, &PostParams::default(), &updated)
                .await
            {
                Ok(written) => return Ok(Some(written)),
                Err(error) if status_code(&error) == Some(409) => {
                    object = self.get_existing(&name).await?;
                }
                Err(error) => {
                    return Err(KubeReleaseError::api(
                        self.what("writing the status of", &name),
                        error,
                    ));
                }
            }
        }
        Err(KubeReleaseError::Contended {
            namespace: self.namespace.clone(),
            name,
            what: "status",
            attempts: ATTEMPTS,
        })
    }

    /// Applies the JSON patch operations `build` makes from the object,
    /// guarded by a test of its `resourceVersion`; recomputed from the
    /// object as read after a conflict. The first attempt builds from
    /// `known` when given (no read: the controller's cache is usually
    /// current); `build` returning `None` there is checked against a fresh
    /// read. `build` returns `None` when there is nothing to change.
    /// Returns `build`'s value and the object as patched.
    async fn patch_spec<T>(
        &self,
        name: &str,
        what: &'static str,
        known: Option<&Release>,
        build: impl Fn(&Release) -> Option<(Vec<Value>, T)>,
    ) -> Result<Option<(T, Release)>, KubeReleaseError> {
        // The object to build from, and whether it came from the caller.
        let mut next = known.map(|object| (object.clone(), true));
        for _ in 0..ATTEMPTS {
            let (object, from_caller) = match next.take() {
                Some(known) => known,
                None => (self.get_existing(name).await?, false),
            };
            let Some((operations, result)) = build(&object) else {
                if from_caller {
                    let fresh = self.get_existing(name).await?;
                    if fresh.resource_version() != object.resource_version() {
                        next = Some((fresh, false));
                        continue;
                    }
                }
                return Ok(None);
            };
            let mut guarded = vec![json!({
                "op": "test",
                "path": "/metadata/resourceVersion",
                "value": object.resource_version().unwrap_or_default(),
            })];
            guarded.extend(operations);
            let patch = serde_json::from_value(Value::Array(guarded)).map_err(|e| {
                KubeReleaseError::api(self.what(what, name), kube::Error::SerdeError(e))
            })?;
            match self
                .api
                .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
                .await
            {
                Ok(patched) => return Ok(Some((result, patched))),
                // 409: the resourceVersion moved on; 422: the test failed
                // (the server reports a failed `test` operation that way).
                Err(error) if matches!(status_code(&error), Some(409 | 422)) => continue,
                // Gone since the caller saw it: as when the read finds none.
                Err(error) if status_code(&error) == Some(404) => {
                    return Err(KubeReleaseError::NotFound {
                        namespace: self.namespace.clone(),
                        name: name.to_string(),
                    });
                }
                Err(error) => return Err(KubeReleaseError::api(self.what(what, name), error)),
            }
        }
        Err(KubeReleaseError::Contended {
            namespace: self.namespace.clone(),
            name: name.to_string(),
            what,
            attempts: ATTEMPTS,
        })
    }

    /// Appends an approval (or rejection) to `spec.approvals`; returns its
    /// index there.
    pub async fn append_approval(
        &self,
        name: &str,
        entry: &ApprovalEntry,
    ) -> Result<u32, KubeReleaseError> {
        self.append_entry(
            name,
            "approvals",
            "recording an approval on",
            entry,
            |release| release.spec.approvals.len(),
        )
        .await
    }

    /// Appends a rollout verb (`pause`, `promote`, `abort`) to
    /// `spec.requests`; returns its index there.
    pub async fn append_request(
        &self,
        name: &str,
        entry: &RequestEntry,
    ) -> Result<u32, KubeReleaseError> {
        self.append_entry(
            name,
            "requests",
            "recording a request on",
            entry,
            |release| release.spec.requests.len(),
        )
        .await
    }

    /// Appends `entry` to the list `spec.FIELD` (made when absent) at the
    /// `resourceVersion` read, so two writers never lose an entry; returns
    /// its index.
    async fn append_entry(
        &self,
        name: &str,
        field: &str,
        what: &'static str,
        entry: &impl Serialize,
        count: impl Fn(&Release) -> usize,
    ) -> Result<u32, KubeReleaseError> {
        let value = serde_json::to_value(entry).map_err(|e| {
            KubeReleaseError::api(self.what(what, name), kube::Error::SerdeError(e))
        })?;
        let index = self
            .patch_spec(name, what, None, |release| {
                let count = count(release);
                let operation = if count == 0 {
                    json!({"op": "add", "path": format!("/spec/{field}"), "value": [value.clone()]})
                } else {
                    json!({"op": "add", "path": format!("/spec/{field}/-"), "value": value.clone()})
                };
                Some((vec![operation], u32::try_from(count).unwrap_or(u32::MAX)))
            })
            .await?;
        Ok(index.map(|(index, _)| index).unwrap_or_default())
    }

    /// Adds the rollback finalizer unless it is there already, starting
    /// from `current` (the object as the caller knows it). Returns the
    /// object as patched, or `None` when the finalizer was there.
    pub async fn add_finalizer(
        &self,
        current: &Release,
    ) -> Result<Option<Release>, KubeReleaseError> {
        let name = current.name_any();
        self.patch_spec(&name, "adding the finalizer to", Some(current), |release| {
            let finalizers = release.finalizers();
            if finalizers.iter().any(|f| f == FINALIZER) {
                return None;
            }
            let operation = if finalizers.is_empty() {
                json!({"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]})
            } else {
                json!({"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER})
            };
            Some((vec![operation], ()))
        })
        .await
        .map(|patched| patched.map(|(_, release)| release))
    }

    /// Removes the rollback finalizer (the run ended or never moved
    /// anything), letting a deleted Release go; starts from `current`.
    /// Returns the object as patched, or `None` when there was nothing to
    /// remove (or the object is gone).
    pub async fn remove_finalizer(
        &self,
        current: &Release,
    ) -> Result<Option<Release>, KubeReleaseError> {
        let name = current.name_any();
        match self
            .patch_spec(
                &name,
                "removing the finalizer from",
                Some(current),
                |release| {
                    let at = release.finalizers().iter().position(|f| f == FINALIZER)?;
                    Some((
                        vec![json!({"op": "remove", "path": format!("/metadata/finalizers/{at}")})],
                        (),
                    ))
                },
            )
            .await
        {
            // Gone already: nothing holds it any more.
            Err(KubeReleaseError::NotFound { .. }) => Ok(None),
            other => other.map(|patched| patched.map(|(_, release)| release)),
        }
    }
}

/// What the watch saw.
#[derive(Debug)]
pub enum Change {
    /// Created or changed (or listed after a (re)start of the watch).
    Applied(Box<Release>),
    /// Gone from the API server.
    Deleted(Box<Release>),
    /// The watch failed; it is retried with backoff.
    WatchError(String),
}

/// A running watch; dropping it stops the watch.
pub struct Changes {
    receiver: mpsc::Receiver<Change>,
    task: JoinHandle<()>,
}

impl Changes {
    /// The next change; `None` when the watch task ended.
    pub async fn next(&mut self) -> Option<Change> {
        self.receiver.recv().await
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A status that differs from the one the object carries, or `None`.
pub fn changed(release: &Release, status: ReleaseStatus) -> Option<ReleaseStatus> {
    (release.status.as_ref() != Some(&status)).then_some(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_namespace_slash_name() {
        assert_eq!(
            parse_reference("prod/checkout").ok(),
            Some(("prod".to_string(), "checkout".to_string()))
        );
        for bad in ["checkout", "/checkout", "prod/", "a/b/c"] {
            assert!(parse_reference(bad).is_err(), "{bad}");
        }
    }
}
