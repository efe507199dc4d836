//! One API client per target, found the way kubectl finds it: the
//! target's `kubeconfig:` file (relative to the plan), else `KUBECONFIG`
//! or `~/.kube/config`, at the target's `context:` or the current one;
//! in a pod without any kubeconfig, the pod's service account. An EKS
//! kubeconfig whose user is an exec credential plugin (`aws eks
//! get-token`) works through kube's exec support.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Why no client could be made. Refused before anything moves.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot read kubeconfig {path}: {source}")]
    ReadKubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("kubeconfig {origin}: {source}")]
    Kubeconfig {
        origin: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error(
        "no kubeconfig found ({kubeconfig}) and not running in a pod ({in_cluster}); set KUBECONFIG or the target's `kubeconfig:`"
    )]
    Nowhere {
        kubeconfig: String,
        in_cluster: String,
    },
    #[error("cannot build the API client: {0}")]
    Client(#[source] kube::Error),
}

/// How to reach one API server, and the server (part of the target's
/// identity: two plans naming one cluster by different contexts still
/// lock the same Deployment).
///
/// The client itself is made on first use: kube's client runs a worker
/// task on the runtime it is made on, and a target is built on a short
/// construction runtime but used on the run's.
#[derive(Clone)]
pub struct Connection {
    config: Config,
    client: Arc<Mutex<Option<Client>>>,
    pub server: String,
}

impl Connection {
    /// The client, made on the calling runtime the first time.
    pub fn client(&self) -> Result<Client, ConnectError> {
        let mut slot = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let client = Client::try_from(self.config.clone()).map_err(ConnectError::Client)?;
        *slot = Some(client.clone());
        Ok(client)
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// The client for a target with `kubeconfig` (a path already resolved
/// against the plan's directory) and `context`.
pub async fn connect(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<Connection, ConnectError> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let file =
                Kubeconfig::read_from(path).map_err(|source| ConnectError::ReadKubeconfig {
                    path: path.display().to_string(),
                    source,
                })?;
            Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|source| ConnectError::Kubeconfig {
                    origin: path.display().to_string(),
                    source,
                })?
        }
        None => match Config::from_kubeconfig(&options).await {
            Ok(config) => config,
            // A context was asked for: its absence is the error to show,
            // not the pod fallback's.
            Err(source) if context.is_some() => {
                return Err(ConnectError::Kubeconfig {
                    origin: "KUBECONFIG".into(),
                    source,
                });
            }
            Err(kubeconfig) => Config::incluster().map_err(|in_cluster| ConnectError::Nowhere {
                kubeconfig: kubeconfig.to_string(),
                in_cluster: in_cluster.to_string(),
            })?,
        },
    };
    from_config(config)
}

/// The connection for an explicit configuration (tests, the controller).
/// Checked here by making a client once (TLS settings, credentials), so a
/// bad configuration is refused before anything moves.
pub fn from_config(config: Config) -> Result<Connection, ConnectError> {
    let server = config.cluster_url.to_string();
    let server = server.trim_end_matches('/').to_owned();
    drop(Client::try_from(config.clone()).map_err(ConnectError::Client)?);
    Ok(Connection {
        config,
        client: Arc::default(),
        server,
    })
}
