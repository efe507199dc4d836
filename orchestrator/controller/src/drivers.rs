//! The runs this replica drives, one background task per Release, shared
//! by the leader's concurrent reconciles. Stopping (the lease lost, the
//! controller shutting down) aborts every task and closes the set, so a
//! reconcile still finishing cannot start a run's driver after the leader
//! stopped: a run left undriven resumes from the journal under the next
//! leader, while a run driven by a replica that no longer leads could be
//! driven twice.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// A run's driver, as tracked here.
struct Driven {
    run_id: String,
    task: JoinHandle<()>,
    started: Instant,
}

#[derive(Default)]
struct Inner {
    by_release: HashMap<String, Driven>,
    closed: bool,
}

#[derive(Default)]
pub(crate) struct Drivers {
    inner: Mutex<Inner>,
    /// Where the drivers run: a runtime of their own in the controller,
    /// so a run's blocking work (a journal commit, a simulator's file)
    /// never holds up the watch and the reconciles; the current runtime
    /// when `None`.
    runtime: Option<Handle>,
}

/// How long a finished driver still counts as driving: its run's last
/// journal writes may not have been read back yet.
const SETTLING: Duration = Duration::from_secs(5);

impl Drivers {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A set whose drivers run on `runtime`.
    pub(crate) fn on(runtime: Handle) -> Drivers {
        Drivers {
            runtime: Some(runtime),
            ..Drivers::default()
        }
    }

    /// Whether this replica drives (or just drove) `run_id` for `release`.
    pub(crate) fn drives(&self, release: &str, run_id: &str) -> bool {
        self.inner().by_release.get(release).is_some_and(|driven| {
            driven.run_id == run_id
                && (!driven.task.is_finished() || driven.started.elapsed() < SETTLING)
        })
    }

    /// Spawns `driver` for `release`'s run, unless the set is closed.
    /// Returns whether it was spawned.
    pub(crate) fn spawn(
        &self,
        release: &str,
        run_id: &str,
        driver: impl Future<Output = ()> + Send + 'static,
    ) -> bool {
        let mut inner = self.inner();
        if inner.closed {
            return false;
        }
        // Spawned under the lock: `stop` either sees this task or closes
        // the set before it exists.
        let task = match &self.runtime {
            Some(runtime) => runtime.spawn(driver),
            None => tokio::spawn(driver),
        };
        inner.by_release.insert(
            release.to_string(),
            Driven {
                run_id: run_id.to_string(),
                task,
                started: Instant::now(),
            },
        );
        true
    }

    /// Drops the entry of a Release whose run ended (or that is gone),
    /// once its driver has finished.
    pub(crate) fn forget_finished(&self, release: &str) {
        let mut inner = self.inner();
        if inner
            .by_release
            .get(release)
            .is_some_and(|driven| driven.task.is_finished())
        {
            inner.by_release.remove(release);
        }
    }

    /// Aborts every driver and refuses new ones.
    pub(crate) fn stop(&self) {
        let mut inner = self.inner();
        inner.closed = true;
        for (_, driven) in inner.by_release.drain() {
            driven.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stopped_set_aborts_its_drivers_and_starts_no_more() {
        let drivers = Drivers::default();
        let (sender, receiver) = tokio::sync::oneshot::channel::<()>();
        assert!(drivers.spawn("a", "run-1", async move {
            let _ = receiver.await;
        }));
        assert!(drivers.drives("a", "run-1"));
        assert!(
            !drivers.drives("a", "run-2"),
            "another run of the same Release"
        );
        assert!(!drivers.drives("b", "run-1"));
        drivers.stop();
        // The driver was aborted: its end of the channel is gone.
        tokio::time::timeout(Duration::from_secs(5), async {
            while !sender.is_closed() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the driver aborted");
        assert!(!drivers.spawn("b", "run-2", async {}), "closed");
        assert!(!drivers.drives("b", "run-2"));
    }

    /// In the controller the drivers run on a runtime of their own, so a
    /// run blocking its thread (a journal commit) holds up no reconcile.
    #[tokio::test]
    async fn drivers_run_on_the_runtime_they_were_given() {
        let runs = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("test-run-driver")
            .enable_all()
            .build()
            .expect("a runtime");
        let drivers = Drivers::on(runs.handle().clone());
        let (sender, receiver) = tokio::sync::oneshot::channel();
        assert!(drivers.spawn("a", "run-1", async move {
            let _ = sender.send(std::thread::current().name().map(str::to_owned));
        }));
        let thread = tokio::time::timeout(Duration::from_secs(5), receiver)
            .await
            .expect("the driver ran")
            .expect("it said where");
        assert_eq!(thread.as_deref(), Some("test-run-driver"));
        drivers.stop();
        runs.shutdown_background();
    }

    #[tokio::test]
    async fn a_finished_driver_counts_while_settling_and_is_forgotten_after() {
        let drivers = Drivers::default();
        assert!(drivers.spawn("a", "run-1", async {}));
        tokio::time::timeout(Duration::from_secs(5), async {
            while !drivers.inner().by_release["a"].task.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the driver finished");
        assert!(drivers.drives("a", "run-1"), "finished just now: settling");
        drivers.forget_finished("a");
        assert!(!drivers.drives("a", "run-1"));
    }
}
