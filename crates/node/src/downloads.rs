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
    /// Paused by the user; the partial data (by hash: every verified
    /// piece) is kept and [`crate::Client::resume`] goes on from it.
    Paused,
}

/// What the user asked of a running download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    Run,
    Pause,
    Cancel,
}

/// How a download is started again after a pause or a failure.
#[derive(Debug, Clone)]
pub(crate) enum Recipe {
    /// By name from one peer (its TCP address).
    Classic { from: SocketAddr, name: String },
    /// By hash from these sources.
    Hash {
        hash: [u8; 32],
        name: String,
        size: Option<u64>,
        sources: Vec<SocketAddr>,
    },
    /// One file of a Gnutella hit, over HTTP.
    Gnutella {
        source: crate::gnutella_types::GnutellaSource,
        name: String,
        file: crate::gnutella_types::GnutellaFile,
        size: Option<u64>,
    },
}

impl Recipe {
    /// The network the download comes from.
    fn network(&self) -> &'static str {
        match self {
            Recipe::Classic { .. } => "classic",
            Recipe::Hash { .. } => "rutella",
            Recipe::Gnutella { .. } => "gnutella",
        }
    }
}

/// Why a download cannot be controlled as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No download has this number.
    #[error("there is no download {0}: type downloads to see them")]
    NoSuch(DownloadId),
    /// It is not running (pause).
    #[error("download {0} is not running")]
    NotRunning(DownloadId),
    /// It runs already (resume), or still runs (remove).
    #[error("download {0} is running: pause or cancel it first")]
    Running(DownloadId),
    /// It is complete (resume, cancel).
    #[error("download {0} is complete")]
    Done(DownloadId),
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
    /// How each source was reached, for those reached so far
    /// (`"direct"`, `"push via IP:PORT"`).
    pub paths: Vec<(SocketAddr, String)>,
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
    /// The network it comes from: `"classic"`, `"rutella"` or
    /// `"gnutella"`.
    pub network: &'static str,
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
    /// Tells the running download what the user asked.
    control: watch::Sender<Control>,
    recipe: Recipe,
}

/// The table, shared between the client handles and download tasks.
#[derive(Clone, Default)]
pub(crate) struct Downloads {
    inner: Arc<Mutex<(DownloadId, BTreeMap<DownloadId, Entry>)>>,
    /// Woken whenever a row changes state or goes.
    changed: Arc<tokio::sync::Notify>,
}

/// Finished rows kept for the table; older ones are forgotten.
const KEEP_FINISHED: usize = 256;

impl Downloads {
    pub(crate) fn add(
        &self,
        name: String,
        sources: Vec<SocketAddr>,
        progress: watch::Receiver<rutella_transfer::Progress>,
        recipe: Recipe,
    ) -> (DownloadId, watch::Receiver<Control>) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += 1;
        let id = g.0;
        let info = DownloadInfo {
            id,
            name,
            sources,
            paths: Vec::new(),
            state: DownloadState::Running,
            done: 0,
            received: 0,
            total: None,
            started: Instant::now(),
            network: recipe.network(),
        };
        let (control, control_rx) = watch::channel(Control::Run);
        g.1.insert(
            id,
            Entry {
                info,
                progress,
                control,
                recipe,
            },
        );
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
        (id, control_rx)
    }

    /// Makes a paused or failed row run again: its recipe, and the
    /// channel its new run is controlled through.
    pub(crate) fn restart(
        &self,
        id: DownloadId,
        progress: watch::Receiver<rutella_transfer::Progress>,
    ) -> Result<(Recipe, watch::Receiver<Control>), ControlError> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let e = g.1.get_mut(&id).ok_or(ControlError::NoSuch(id))?;
        match e.info.state {
            DownloadState::Running => return Err(ControlError::Running(id)),
            DownloadState::Done(_) => return Err(ControlError::Done(id)),
            DownloadState::Failed(_) | DownloadState::Paused => {}
        }
        let (control, control_rx) = watch::channel(Control::Run);
        e.control = control;
        e.progress = progress;
        e.info.state = DownloadState::Running;
        e.info.started = Instant::now();
        Ok((e.recipe.clone(), control_rx))
    }

    /// Tells a running download to pause or to be cancelled.
    pub(crate) fn signal(&self, id: DownloadId, c: Control) -> Result<(), ControlError> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let e = g.1.get(&id).ok_or(ControlError::NoSuch(id))?;
        match e.info.state {
            DownloadState::Running => {
                let _ = e.control.send(c);
                Ok(())
            }
            DownloadState::Done(_) => Err(ControlError::Done(id)),
            _ => Err(ControlError::NotRunning(id)),
        }
    }

    /// The state and recipe of a row.
    pub(crate) fn get(&self, id: DownloadId) -> Option<(DownloadState, Recipe)> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.1.get(&id)
            .map(|e| (e.info.state.clone(), e.recipe.clone()))
    }

    /// Removes a row that does not run.
    pub(crate) fn remove(&self, id: DownloadId) -> Result<(), ControlError> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match g.1.get(&id).map(|e| &e.info.state) {
            None => Err(ControlError::NoSuch(id)),
            Some(DownloadState::Running) => Err(ControlError::Running(id)),
            Some(_) => {
                g.1.remove(&id);
                drop(g);
                self.changed.notify_waiters();
                Ok(())
            }
        }
    }

    /// Removes every complete and failed row; returns how many.
    pub(crate) fn clear_finished(&self) -> usize {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let before = g.1.len();
        g.1.retain(|_, e| matches!(e.info.state, DownloadState::Running | DownloadState::Paused));
        before - g.1.len()
    }

    pub(crate) fn set_state(&self, id: DownloadId, state: DownloadState) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = g.1.get_mut(&id) {
            refresh(e);
            e.info.state = state;
        }
        drop(g);
        self.changed.notify_waiters();
    }

    /// Waits (at most `max`) until row `id` no longer runs (or is gone).
    pub(crate) async fn wait_stopped(&self, id: DownloadId, max: std::time::Duration) {
        let stopped = async {
            loop {
                let woken = self.changed.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                let running = {
                    let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                    g.1.get(&id)
                        .is_some_and(|e| e.info.state == DownloadState::Running)
                };
                if !running {
                    return;
                }
                woken.await;
            }
        };
        let _ = tokio::time::timeout(max, stopped).await;
    }

    /// Replaces the sources of a row (a download that found more).
    pub(crate) fn set_sources(&self, id: DownloadId, sources: Vec<SocketAddr>) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = g.1.get_mut(&id) {
            e.info.sources = sources;
        }
    }

    /// Notes how a source was reached (`"direct"`, `"push via …"`).
    pub(crate) fn set_path(&self, id: DownloadId, source: SocketAddr, path: String) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = g.1.get_mut(&id) {
            e.info.paths.retain(|(s, _)| *s != source);
            e.info.paths.push((source, path));
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
