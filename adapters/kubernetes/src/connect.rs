//! One API client per target, found the way kubectl finds it: the
//! target's `kubeconfig:` file (relative to the plan), else `KUBECONFIG`
//! or `~/.kube/config`, at the target's `context:` or the current one;
//! in a pod without any kubeconfig, the pod's service account. An EKS
//! kubeconfig whose user is an exec credential plugin (`aws eks
//! get-token`) works through kube's exec support.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use deployctl_plan::raw::EksCluster;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::eks::{self, EksAuth};

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
    #[error("{0}")]
    Eks(String),
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
    /// An EKS cluster reached by name: its token is made again with
    /// every client.
    eks: Option<Arc<EksAuth>>,
    client: Arc<Mutex<Option<(Client, Instant)>>>,
    pub server: String,
}

/// EKS tokens are accepted for 15 minutes: a client older than this is
/// made again with a fresh one.
const TOKEN_REFRESH: Duration = Duration::from_secs(10 * 60);

impl Connection {
    /// The client, made on the calling runtime the first time (and, for
    /// EKS by name, again once its token ages).
    pub fn client(&self) -> Result<Client, ConnectError> {
        let mut slot = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((client, made)) = slot.as_ref()
            && (self.eks.is_none() || made.elapsed() < TOKEN_REFRESH)
        {
            return Ok(client.clone());
        }
        let mut config = self.config.clone();
        if let Some(eks) = &self.eks {
            config.auth_info.token = Some(eks.token()?.into());
        }
        let client = Client::try_from(config).map_err(ConnectError::Client)?;
        *slot = Some((client.clone(), Instant::now()));
        Ok(client)
    }
}

/// The connection to an EKS cluster by name (see `eks.rs`).
pub async fn connect_eks(cluster: &EksCluster) -> Result<Connection, ConnectError> {
    let (described, auth) = eks::resolve(cluster).await?;
    let config = eks::config(&described, &auth)?;
    let mut connection = from_config(config)?;
    // The identity names the cluster as AWS does, whatever its endpoint.
    if !described.arn.is_empty() {
        connection.server = described.arn.clone();
    }
    connection.eks = Some(Arc::new(auth));
    Ok(connection)
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
        eks: None,
        client: Arc::default(),
        server,
    })
}
