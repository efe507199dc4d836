//! A client built on first use. The binary builds probes and notifiers
//! synchronously (inside or outside the engine's runtime), while loading the
//! AWS chain is async; so the chain is loaded by the first call that needs
//! it, and shared by every call after.

use std::sync::OnceLock;

use aws_config::SdkConfig;

/// Builds a service client from loaded SDK settings and the region the
/// plan names (`None`: the chain's region).
pub(crate) type Build<C> = fn(&SdkConfig, Option<&str>) -> C;

/// A client given up front (tests: moto with an account interceptor) or
/// built from the standard chain on first use.
pub(crate) struct LazyClient<C> {
    cell: OnceLock<C>,
    region: Option<String>,
    build: Build<C>,
}

impl<C: Clone> LazyClient<C> {
    pub(crate) fn ready(client: C, build: Build<C>) -> LazyClient<C> {
        LazyClient {
            cell: OnceLock::from(client),
            region: None,
            build,
        }
    }

    pub(crate) fn from_chain(region: Option<String>, build: Build<C>) -> LazyClient<C> {
        LazyClient {
            cell: OnceLock::new(),
            region,
            build,
        }
    }

    /// The client, loading the chain on the first call. Two first calls at
    /// once both load it and one result is kept: loading reads only the
    /// environment and files, so doing it twice is harmless.
    pub(crate) async fn get(&self) -> C {
        if let Some(client) = self.cell.get() {
            return client.clone();
        }
        let sdk = deployctl_aws::config::load(self.region.as_deref()).await;
        let client = (self.build)(&sdk, self.region.as_deref());
        self.cell.get_or_init(|| client).clone()
    }
}
