//! The node's table of downloads, for the user interface.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::watch;

/// Identifies one download of this node.
pub type DownloadId = u64;

/// Where a download stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadState {
    /// Bytes are moving.
    Running,
    /// Complete, at this path.
    Done(PathBuf),
    /// Stopped with this reason; the partial data is kept for a resume.
    Failed(String),
}

/// One row of the downloads table.
#[derive(Debug, Clone)]
pub struct DownloadInfo {
    /// Its id.
    pub id: DownloadId,
    /// The name asked for.
    pub name: String,
    /// The peers it comes from.
    pub sources: Vec<SocketAddr>,
    /// Its state.
    pub state: DownloadState,
    /// Bytes on disk so far.
    pub done: u64,
    /// Bytes received in this run.
    pub received: u64,
    /// Total size, once known.
    pub total: Option<u64>,
    /// When this run started.
    pub started: Instant,
}

impl DownloadInfo {
    /// Average speed of this run, bytes per second.
    pub fn speed(&self) -> f64 {
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 {
            self.received as f64 / secs
        } else {
            0.0
        }
    }
}

struct Entry {
    info: DownloadInfo,
    progress: watch::Receiver<rutella_transfer::Progress>,
}

/// The table, shared between the client handles and download tasks.
#[derive(Clone, Default)]
pub(crate) struct Downloads {
    inner: Arc<Mutex<(DownloadId, BTreeMap<DownloadId, Entry>)>>,
}

/// Finished rows kept for the table; older ones are forgotten.
const KEEP_FINISHED: usize = 256;

impl Downloads {
    pub(crate) fn add(
        &self,
        name: String,
        sources: Vec<SocketAddr>,
        progress: watch::Receiver<rutella_transfer::Progress>,
    ) -> DownloadId {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += 1;
        let id = g.0;
        let info = DownloadInfo {
            id,
            name,
            sources,
            state: DownloadState::Running,
            done: 0,
            received: 0,
            total: None,
            started: Instant::now(),
        };
        g.1.insert(id, Entry { info, progress });
        let finished: Vec<DownloadId> =
            g.1.iter()
                .filter(|(_, e)| e.info.state != DownloadState::Running)
                .map(|(id, _)| *id)
                .collect();
        if finished.len() > KEEP_FINISHED {
            for old in &finished[..finished.len() - KEEP_FINISHED] {
                g.1.remove(old);
            }
        }
        id
    }

    pub(crate) fn set_state(&self, id: DownloadId, state: DownloadState) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = g.1.get_mut(&id) {
            refresh(e);
            e.info.state = state;
        }
    }

    pub(crate) fn progress(
        &self,
        id: DownloadId,
    ) -> Option<watch::Receiver<rutella_transfer::Progress>> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.1.get(&id).map(|e| e.progress.clone())
    }

    pub(crate) fn list(&self) -> Vec<DownloadInfo> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.1.values_mut()
            .map(|e| {
                refresh(e);
                e.info.clone()
            })
            .collect()
    }
}

fn refresh(e: &mut Entry) {
    let p = *e.progress.borrow();
    e.info.done = p.done;
    e.info.received = p.received;
    e.info.total = p.total;
}
