//! The downloads a node runs in the background: owned by the node, told to
//! stop at shutdown and waited for.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The node's background tasks (downloads), and the stop signal they
/// watch. Cloned into every [`crate::Client`].
#[derive(Clone)]
pub(crate) struct Tasks {
    inner: Arc<Mutex<Inner>>,
    stop: watch::Receiver<bool>,
}

struct Inner {
    set: JoinSet<()>,
    /// Set at shutdown: no task starts after it.
    closed: bool,
}

impl Tasks {
    pub(crate) fn new(stop: watch::Receiver<bool>) -> Tasks {
        Tasks {
            inner: Arc::new(Mutex::new(Inner {
                set: JoinSet::new(),
                closed: false,
            })),
            stop,
        }
    }

    /// Runs `task` in the background, owned by the node; returns false,
    /// without running it, once the node is stopping.
    pub(crate) fn spawn<F>(&self, task: F) -> bool
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.closed {
            return false;
        }
        // Finished tasks are reaped here, so the set holds only running ones.
        while g.set.try_join_next().is_some() {}
        g.set.spawn(task);
        true
    }

    /// Completes once the node is told to stop.
    pub(crate) fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stop = self.stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    }

    /// After the stop signal: lets no more tasks start and waits for the
    /// running ones, at most `limit`; those still running then are aborted.
    pub(crate) async fn close(&self, limit: Duration) {
        let mut set = {
            let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            g.closed = true;
            std::mem::take(&mut g.set)
        };
        let all = async { while set.join_next().await.is_some() {} };
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!(
                running = set.len(),
                "downloads did not stop in time; aborting them"
            );
            set.shutdown().await;
        }
    }
}
