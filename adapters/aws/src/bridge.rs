//! Driving the async SDK from synchronous callers.
//!
//! Some callers of the AWS adapters are synchronous (the audit sink's
//! `ship`, the MFA key provider and store), and
//! the binary calls them from plain threads (the audit shipper thread, the
//! main thread before or after its own runtime) as well as from code that
//! may run inside a tokio runtime. `Runtime::block_on` panics in the
//! latter ("cannot start a runtime from within a runtime") and
//! `block_in_place` panics on a current-thread runtime, so neither is
//! safe for every caller. Instead each [`Bridge`] owns a one-worker
//! runtime: the future is spawned onto it and the caller waits on a plain
//! channel, which works from any thread. The runtime is shut down in the
//! background when the bridge is dropped, so dropping it inside an async
//! context does not panic either.

use std::future::Future;

use tokio::runtime::{Builder, Runtime};

pub struct Bridge {
    runtime: Option<Runtime>,
}

/// The bridge's runtime is gone (a task panicked, or it is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the AWS client's runtime stopped before the call finished")]
pub struct Stopped;

impl Bridge {
    pub fn new() -> std::io::Result<Bridge> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("deployctl-aws-bridge")
            .enable_all()
            .build()?;
        Ok(Bridge {
            runtime: Some(runtime),
        })
    }

    /// Runs `future` to completion on the bridge's runtime and returns its
    /// output; blocks the calling thread meanwhile.
    pub fn run<F>(&self, future: F) -> Result<F::Output, Stopped>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let runtime = self.runtime.as_ref().ok_or(Stopped)?;
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            // The receiver only goes away if the caller is gone.
            let _ = reply.send(future.await);
        });
        answer.recv().map_err(|_| Stopped)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_from_a_plain_thread() {
        let bridge = Bridge::new().unwrap();
        assert_eq!(bridge.run(async { 40 + 2 }).unwrap(), 42);
    }

    #[test]
    fn runs_and_drops_inside_a_current_thread_runtime() {
        let outer = Builder::new_current_thread().enable_all().build().unwrap();
        outer.block_on(async {
            let bridge = Bridge::new().unwrap();
            let value = bridge
                .run(async {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    7
                })
                .unwrap();
            assert_eq!(value, 7);
            drop(bridge);
        });
    }

    #[test]
    fn runs_inside_a_multi_thread_runtime() {
        let outer = Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let value = outer.block_on(async {
            tokio::spawn(async {
                let bridge = Bridge::new().unwrap();
                bridge.run(async { 9 }).unwrap()
            })
            .await
            .unwrap()
        });
        assert_eq!(value, 9);
    }

    #[test]
    fn a_panicking_future_is_an_error_not_a_hang() {
        let bridge = Bridge::new().unwrap();
        let result = bridge.run(async {
            if std::hint::black_box(true) {
                panic!("boom");
            }
            1
        });
        assert!(result.is_err());
    }
}
