//! The node's table of downloads, for the user interface.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::watch;

/// Identifies one download of this node.
pub type DownloadId = u64;

/// Where a download stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadState {
    /// Waiting for a free slot ([`crate::Client::set_max_active_downloads`]);
    /// queued downloads start in the order of the list.
    Queued,
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

/// What kind of failure ended a download: stable, for scripts and the
/// control API (`as_str` gives its name there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The peer does not offer the file.
    NotFound,
    /// Nobody offers the file (by hash: no source, or none has it).
    NoSource,
    /// Data or a tree did not match the file's hash.
    HashMismatch,
    /// The peer refused the connection.
    Refused,
    /// The peer could not be reached (timeout, no route).
    Unreachable,
    /// The transfer broke off, or the peer answered wrongly.
    Network,
    /// The file's name cannot be a local file name.
    InvalidName,
    /// The downloads folder cannot be written (a full disk, permissions).
    Disk,
    /// The user cancelled it.
    Cancelled,
    /// The node stopped; the partial data is kept for a resume.
    Stopped,
}

impl FailureKind {
    /// The kind of a download error.
    pub fn of(e: &rutella_transfer::DownloadError) -> FailureKind {
        use rutella_transfer::SourceError as S;
        use rutella_transfer::{DownloadError as D, ExhaustedError as X, LocalError as L};
        match e {
            D::Source(S::NotFound { .. }) => FailureKind::NotFound,
            D::Source(S::Refused { .. }) => FailureKind::Refused,
            D::Source(S::ConnectTimeout { .. } | S::Connect { .. }) => FailureKind::Unreachable,
            D::Source(_) => FailureKind::Network,
            D::Verify(_) => FailureKind::HashMismatch,
            D::Exhausted(x) if x.nobody_has_it() => FailureKind::NoSource,
            D::Exhausted(X::NoSources { .. }) => FailureKind::NoSource,
            D::Exhausted(_) => FailureKind::Network,
            D::Local(L::InvalidName { .. }) => FailureKind::InvalidName,
            D::Local(_) => FailureKind::Disk,
            D::Cancelled => FailureKind::Cancelled,
        }
    }

    /// Its name: `not_found`, `no_source`, `hash_mismatch`, `refused`,
    /// `unreachable`, `network`, `invalid_name`, `disk`, `cancelled`,
    /// `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::NotFound => "not_found",
            FailureKind::NoSource => "no_source",
            FailureKind::HashMismatch => "hash_mismatch",
            FailureKind::Refused => "refused",
            FailureKind::Unreachable => "unreachable",
            FailureKind::Network => "network",
            FailureKind::InvalidName => "invalid_name",
            FailureKind::Disk => "disk",
            FailureKind::Cancelled => "cancelled",
            FailureKind::Stopped => "stopped",
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
    /// It waits for a slot (resume, remove).
    #[error("download {0} is queued: it starts when a slot frees (pause or cancel it)")]
    Queued(DownloadId),
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
    /// Why it failed, when it did.
    pub failure: Option<FailureKind>,
    /// What its last run did, once it is complete.
    pub report: Option<rutella_transfer::DownloadReport>,
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

/// A download waiting for its slot: the run, not yet polled.
pub(crate) type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Entry {
    info: DownloadInfo,
    /// The run of a queued download, started when a slot frees.
    job: Option<Job>,
    progress: watch::Receiver<rutella_transfer::Progress>,
    /// Tells the running download what the user asked.
    control: watch::Sender<Control>,
    recipe: Recipe,
}

#[derive(Default)]
struct Table {
    last: DownloadId,
    rows: BTreeMap<DownloadId, Entry>,
    /// Every id of `rows`, in the user's order: queued downloads start in
    /// this order, and lists follow it.
    order: Vec<DownloadId>,
}

impl Table {
    fn running(&self) -> usize {
        self.rows
            .values()
            .filter(|e| e.info.state == DownloadState::Running)
            .count()
    }

    fn remove(&mut self, id: DownloadId) -> Option<Entry> {
        self.order.retain(|o| *o != id);
        self.rows.remove(&id)
    }
}

/// The table, shared between the client handles and download tasks.
#[derive(Clone, Default)]
pub(crate) struct Downloads {
    inner: Arc<Mutex<Table>>,
    /// Woken whenever a row changes state or goes.
    changed: Arc<tokio::sync::Notify>,
    /// Downloads running at once; 0: no limit.
    max_active: Arc<AtomicUsize>,
}

/// Finished rows kept for the table; older ones are forgotten.
const KEEP_FINISHED: usize = 256;

impl Downloads {
    /// A new row, queued until its run is handed to [`Downloads::admit`].
    pub(crate) fn add(
        &self,
        name: String,
        sources: Vec<SocketAddr>,
        progress: watch::Receiver<rutella_transfer::Progress>,
        recipe: Recipe,
    ) -> (DownloadId, watch::Receiver<Control>) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.last += 1;
        let id = g.last;
        let info = DownloadInfo {
            id,
            name,
            sources,
            paths: Vec::new(),
            state: DownloadState::Queued,
            done: 0,
            received: 0,
            total: None,
            started: Instant::now(),
            network: recipe.network(),
            failure: None,
            report: None,
        };
        let (control, control_rx) = watch::channel(Control::Run);
        g.rows.insert(
            id,
            Entry {
                info,
                job: None,
                progress,
                control,
                recipe,
            },
        );
        g.order.push(id);
        let finished: Vec<DownloadId> = g
            .order
            .iter()
            .copied()
            .filter(|id| {
                g.rows.get(id).is_some_and(|e| {
                    matches!(
                        e.info.state,
                        DownloadState::Done(_) | DownloadState::Failed(_)
                    )
                })
            })
            .collect();
        if finished.len() > KEEP_FINISHED {
            for old in &finished[..finished.len() - KEEP_FINISHED] {
                g.remove(*old);
            }
        }
        (id, control_rx)
    }

    /// Hands the run of a new (or restarted) row: returned to be spawned
    /// at once when a slot is free, else kept (the row stays queued)
    /// until [`Downloads::next_ready`] gives it out.
    pub(crate) fn admit(&self, id: DownloadId, job: Job) -> Option<Job> {
        let max = self.max_active.load(Ordering::Relaxed);
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let free = max == 0 || g.running() < max;
        let e = g.rows.get_mut(&id)?;
        if free {
            e.info.state = DownloadState::Running;
            e.info.started = Instant::now();
            drop(g);
            self.changed.notify_waiters();
            Some(job)
        } else {
            e.info.state = DownloadState::Queued;
            e.job = Some(job);
            None
        }
    }

    /// The queued runs that may start now (the first of the queue, as
    /// many as slots are free), each row marked running.
    pub(crate) fn next_ready(&self) -> Vec<(DownloadId, Job)> {
        let max = self.max_active.load(Ordering::Relaxed);
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut running = g.running();
        let mut ready = Vec::new();
        let order = g.order.clone();
        for id in order {
            if max != 0 && running >= max {
                break;
            }
            let Some(e) = g.rows.get_mut(&id) else {
                continue;
            };
            if e.info.state != DownloadState::Queued {
                continue;
            }
            if let Some(job) = e.job.take() {
                e.info.state = DownloadState::Running;
                e.info.started = Instant::now();
                running += 1;
                ready.push((id, job));
            }
        }
        ready
    }

    /// Downloads running at once (0: no limit).
    pub(crate) fn max_active(&self) -> usize {
        self.max_active.load(Ordering::Relaxed)
    }

    /// Sets how many downloads run at once (0: no limit); the caller then
    /// starts what [`Downloads::next_ready`] gives. Fewer than run now
    /// stop none: the queue waits until enough ended.
    pub(crate) fn set_max_active(&self, n: usize) {
        self.max_active.store(n, Ordering::Relaxed);
    }

    /// Moves a row to `position` (0 = first) in the list and the queue.
    pub(crate) fn move_to(&self, id: DownloadId, position: usize) -> Result<(), ControlError> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !g.rows.contains_key(&id) {
            return Err(ControlError::NoSuch(id));
        }
        g.order.retain(|o| *o != id);
        let at = position.min(g.order.len());
        g.order.insert(at, id);
        Ok(())
    }

    /// Makes a paused or failed row run again: its recipe, and the
    /// channel its new run is controlled through. The row is queued until
    /// its run is admitted.
    pub(crate) fn restart(
        &self,
        id: DownloadId,
        progress: watch::Receiver<rutella_transfer::Progress>,
    ) -> Result<(Recipe, watch::Receiver<Control>), ControlError> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let e = g.rows.get_mut(&id).ok_or(ControlError::NoSuch(id))?;
        match e.info.state {
            DownloadState::Running => return Err(ControlError::Running(id)),
            DownloadState::Queued => return Err(ControlError::Queued(id)),
            DownloadState::Done(_) => return Err(ControlError::Done(id)),
            DownloadState::Failed(_) | DownloadState::Paused => {}
        }
        let (control, control_rx) = watch::channel(Control::Run);
        e.control = control;
        e.progress = progress;
        e.info.state = DownloadState::Queued;
        e.info.failure = None;
        e.info.report = None;
        e.info.started = Instant::now();
        Ok((e.recipe.clone(), control_rx))
    }

    /// Tells a running download to pause or to be cancelled. A queued
    /// one told to pause is paused at once (its run, never started, is
    /// dropped; a resume starts it again from its recipe).
    pub(crate) fn signal(&self, id: DownloadId, c: Control) -> Result<(), ControlError> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let e = g.rows.get_mut(&id).ok_or(ControlError::NoSuch(id))?;
        match e.info.state {
            DownloadState::Running => {
                let _ = e.control.send(c);
                Ok(())
            }
            DownloadState::Queued if c == Control::Pause => {
                let _ = e.control.send(c);
                e.job = None;
                e.info.state = DownloadState::Paused;
                drop(g);
                self.changed.notify_waiters();
                Ok(())
            }
            DownloadState::Done(_) => Err(ControlError::Done(id)),
            _ => Err(ControlError::NotRunning(id)),
        }
    }

    /// The state and recipe of a row.
    pub(crate) fn get(&self, id: DownloadId) -> Option<(DownloadState, Recipe)> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.rows
            .get(&id)
            .map(|e| (e.info.state.clone(), e.recipe.clone()))
    }

    /// Removes a row that does not run and is not queued.
    pub(crate) fn remove(&self, id: DownloadId) -> Result<(), ControlError> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match g.rows.get(&id).map(|e| &e.info.state) {
            None => Err(ControlError::NoSuch(id)),
            Some(DownloadState::Running) => Err(ControlError::Running(id)),
            Some(DownloadState::Queued) => Err(ControlError::Queued(id)),
            Some(_) => {
                g.remove(id);
                drop(g);
                self.changed.notify_waiters();
                Ok(())
            }
        }
    }

    /// Removes a row that does not run (a queued one's run is dropped).
    pub(crate) fn discard(&self, id: DownloadId) -> Result<(), ControlError> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match g.rows.get(&id).map(|e| &e.info.state) {
            None => Err(ControlError::NoSuch(id)),
            Some(DownloadState::Running) => Err(ControlError::Running(id)),
            Some(_) => {
                g.remove(id);
                drop(g);
                self.changed.notify_waiters();
                Ok(())
            }
        }
    }

    /// Removes every complete and failed row; returns how many.
    pub(crate) fn clear_finished(&self) -> usize {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let before = g.rows.len();
        g.rows.retain(|_, e| {
            matches!(
                e.info.state,
                DownloadState::Running | DownloadState::Paused | DownloadState::Queued
            )
        });
        let Table { rows, order, .. } = &mut *g;
        order.retain(|id| rows.contains_key(id));
        before - g.rows.len()
    }

    pub(crate) fn set_state(&self, id: DownloadId, state: DownloadState) {
        self.finish(id, state, None, None);
    }

    /// Sets the state a run ended in, with why it failed or what it did.
    pub(crate) fn finish(
        &self,
        id: DownloadId,
        state: DownloadState,
        failure: Option<FailureKind>,
        report: Option<rutella_transfer::DownloadReport>,
    ) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = g.rows.get_mut(&id) {
            refresh(e);
            e.info.state = state;
            e.info.failure = failure;
            e.info.report = report;
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
                    g.rows
                        .get(&id)
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
        if let Some(e) = g.rows.get_mut(&id) {
            e.info.sources = sources;
        }
    }

    /// Notes how a source was reached (`"direct"`, `"push via …"`).
    pub(crate) fn set_path(&self, id: DownloadId, source: SocketAddr, path: String) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = g.rows.get_mut(&id) {
            e.info.paths.retain(|(s, _)| *s != source);
            e.info.paths.push((source, path));
        }
    }

    pub(crate) fn progress(
        &self,
        id: DownloadId,
    ) -> Option<watch::Receiver<rutella_transfer::Progress>> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.rows.get(&id).map(|e| e.progress.clone())
    }

    /// Every row, in the list's order.
    pub(crate) fn list(&self) -> Vec<DownloadInfo> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let order = g.order.clone();
        order
            .iter()
            .filter_map(|id| {
                let e = g.rows.get_mut(id)?;
                refresh(e);
                Some(e.info.clone())
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
