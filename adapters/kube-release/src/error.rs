//! What can go wrong at the Kubernetes edge, each variant naming what was
//! attempted and how to fix it.

use std::path::PathBuf;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum KubeReleaseError {
    #[error("cannot read the kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error(
        "no Kubernetes configuration: pass --kubeconfig FILE, set KUBECONFIG, or run in a pod with a service account ({0})"
    )]
    Infer(#[source] kube::config::InferConfigError),
    #[error("cannot build a Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "the Release CRD ({crd}) is not Established after {seconds} s: {detail}. Check `kubectl describe crd {crd}`"
    )]
    NotEstablished {
        crd: &'static str,
        seconds: u64,
        detail: String,
    },
    #[error(
        "the Release CRD ({0}) is not installed and installing it was not allowed; install it with `deployctl controller --print-crd | kubectl apply -f -`"
    )]
    CrdMissing(&'static str),
    #[error("Release {namespace}/{name} not found")]
    NotFound { namespace: String, name: String },
    #[error(
        "Release {namespace}/{name} kept changing while writing {what} ({attempts} attempts); try again"
    )]
    Contended {
        namespace: String,
        name: String,
        what: &'static str,
        attempts: u32,
    },
    #[error("this controller no longer holds the lease; {what} was not written")]
    NotLeader { what: &'static str },
    #[error("leader election: {0}")]
    Lease(#[source] kube_lease_manager::LeaseManagerError),
    #[error("`{0}` is not NAMESPACE/NAME")]
    BadReference(String),
}

impl KubeReleaseError {
    pub(crate) fn api(what: impl Into<String>, source: kube::Error) -> KubeReleaseError {
        KubeReleaseError::Api {
            what: what.into(),
            source,
        }
    }
}

/// HTTP status of an API error, when the server answered.
pub(crate) fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}
