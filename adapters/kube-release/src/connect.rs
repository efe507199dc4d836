//! A Kubernetes client from a kubeconfig file, `KUBECONFIG`/`~/.kube/config`,
//! or the pod's service account, in that order of preference.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::KubeReleaseError;

/// The client and the namespace the configuration names (the kubeconfig
/// context's, the pod's own, or `default`).
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, KubeReleaseError> {
    let config = match kubeconfig {
        Some(path) => {
            let file =
                Kubeconfig::read_from(path).map_err(|source| KubeReleaseError::Kubeconfig {
                    path: path.to_path_buf(),
                    source,
                })?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|source| KubeReleaseError::Kubeconfig {
                    path: path.to_path_buf(),
                    source,
                })?
        }
        None => Config::infer().await.map_err(KubeReleaseError::Infer)?,
    };
    Client::try_from(config).map_err(KubeReleaseError::Client)
}
