//! Leader election over a `coordination.k8s.io/v1` Lease
//! (kube-lease-manager): only the holder reconciles.
//!
//! A holder renews every `duration - grace` seconds; a holder that stops
//! renewing (killed, partitioned) loses the lease `duration` seconds after
//! its last renewal and another replica takes it. A holder that notices it
//! lost the lease stops its work at once (the controller cancels its runs;
//! the journal lets the next leader resume them).

use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::KubeReleaseError;

/// Leadership of one lease.
pub struct Leadership {
    /// `true` while this process holds the lease.
    pub is_leader: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
}

impl Leadership {
    /// Starts contending for `lease_name` in `namespace` as `identity`.
    /// `duration_seconds` is how long a lease outlives its holder's last
    /// renewal (at least 2).
    pub async fn start(
        client: Client,
        namespace: &str,
        lease_name: &str,
        identity: &str,
        duration_seconds: u64,
    ) -> Result<Leadership, KubeReleaseError> {
        let duration = duration_seconds.max(2);
        let grace = (duration / 3).max(1);
        let manager = LeaseManagerBuilder::new(client, lease_name)
            .with_namespace(namespace)
            .with_identity(identity)
            .with_duration(duration)
            .with_grace(grace)
            .build()
            .await
            .map_err(KubeReleaseError::Lease)?;
        let (is_leader, task) = manager.watch().await;
        Ok(Leadership { is_leader, task })
    }

    /// Gives the lease up (a graceful shutdown), waiting at most `timeout`.
    pub async fn release(self, timeout: Duration) {
        let Leadership { is_leader, task } = self;
        // Closing the channel is what tells the manager to release.
        drop(is_leader);
        let _ = tokio::time::timeout(timeout, task).await;
    }
}
