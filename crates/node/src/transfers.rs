//! Downloads started through the [`Client`]: classic and by hash, tracked
//! in the downloads table, recorded in the pending journal until done.

use crate::client::Client;
use crate::command::NodeEvent;
use crate::downloads::{Control, ControlError, DownloadId, DownloadState, FailureKind, Recipe};
use crate::pending::Pending;
use crate::NodeError;
use rutella_proto::HitFile;
use rutella_transfer::{ClassicGet, DownloadReport, HashGet, Progress};
use std::net::SocketAddr;
use tokio::sync::{mpsc, oneshot, watch};

/// A download started by [`Client::download`].
#[derive(Debug)]
pub struct DownloadHandle {
    /// Its id in the downloads table.
    pub id: DownloadId,
    pub(crate) result: oneshot::Receiver<Result<DownloadReport, NodeError>>,
}

impl DownloadHandle {
    /// Waits for the download to end.
    pub async fn wait(self) -> Result<DownloadReport, NodeError> {
        self.result.await.unwrap_or(Err(NodeError::Stopped))
    }
}

impl Client {
    /// Starts downloading `name` from the peer whose TCP address is `from`,
    /// with the classic exchange, resuming a partial copy, in the background.
    pub fn download(&self, from: SocketAddr, name: &str) -> DownloadHandle {
        self.download_listed(from, name, None)
    }

    /// [`Client::download`] of a file whose search answer gave its size:
    /// a reply announcing more is refused.
    pub fn download_listed(
        &self,
        from: SocketAddr,
        name: &str,
        listed_size: Option<u64>,
    ) -> DownloadHandle {
        let recipe = Recipe::Classic {
            from,
            name: name.to_string(),
        };
        let row = self.downloads_row(name, vec![from], recipe);
        self.run_classic(row, from, name, listed_size)
    }

    /// [`Client::download`] again, into the row `again` (a resume).
    fn download_again(&self, again: Row, from: SocketAddr, name: &str) -> DownloadHandle {
        self.run_classic(again, from, name, None)
    }

    /// Runs a classic download of `name` from `from` in the row `row`.
    fn run_classic(
        &self,
        row: Row,
        from: SocketAddr,
        name: &str,
        listed_size: Option<u64>,
    ) -> DownloadHandle {
        let req = ClassicGet {
            peer: from,
            name: name.to_string(),
            downloads_dir: self.config.downloads_dir(),
            connect_timeout: self.config.connect_timeout,
            idle_timeout: self.config.idle_timeout,
            align_resume: true,
            listed_size,
            dialer: Some(self.dialer()),
            limit: Some(self.download_limit.clone()),
        };
        let client = self.clone();
        self.run_tracked(row, name, false, move |progress, _stop| async move {
            let known_rutella = client
                .peers()
                .await
                .map(|ps| ps.iter().any(|p| p.rutella && p.tcp() == from))
                .unwrap_or(false);
            let req = ClassicGet {
                align_resume: !known_rutella,
                ..req
            };
            rutella_transfer::classic_download(req, progress).await
        })
    }

    /// Starts downloading the file with this BLAKE3 hash from every source
    /// at once (the rutella protocol: every block verified before it
    /// counts), in the background. The download is recorded in the
    /// downloads folder until it completes, so a node killed meanwhile
    /// resumes it at its next start.
    pub fn download_hash(
        &self,
        hash: [u8; 32],
        name: &str,
        size: Option<u64>,
        sources: Vec<SocketAddr>,
    ) -> DownloadHandle {
        let (_, none) = mpsc::channel(1);
        self.download_hash_growing(hash, name, size, sources, none)
    }

    /// [`Client::download_hash`], with more sources to come: each peer
    /// sent on `more` (while the download runs) joins it as a source.
    pub fn download_hash_growing(
        &self,
        hash: [u8; 32],
        name: &str,
        size: Option<u64>,
        sources: Vec<SocketAddr>,
        more: mpsc::Receiver<SocketAddr>,
    ) -> DownloadHandle {
        let recipe = Recipe::Hash {
            hash,
            name: name.to_string(),
            size,
            sources: sources.clone(),
        };
        let row = self.downloads_row(name, sources.clone(), recipe);
        self.hash_download(row, hash, name, size, sources, more)
    }

    /// A download by hash in the row given (new or resumed).
    fn hash_download(
        &self,
        row: Row,
        hash: [u8; 32],
        name: &str,
        size: Option<u64>,
        sources: Vec<SocketAddr>,
        more: mpsc::Receiver<SocketAddr>,
    ) -> DownloadHandle {
        let dir = self.config.downloads_dir();
        let entry = Pending {
            hash: rutella_proto::message::hex32(&hash),
            name: name.to_string(),
            size,
            sources: sources.iter().map(|s| s.to_string()).collect(),
        };
        let mut req = HashGet::new(hash, sources.clone(), dir, name);
        req.size = size;
        req.connect_timeout = self.config.connect_timeout;
        req.idle_timeout = self.config.idle_timeout;
        req.dialer = Some(self.dialer());
        req.limit = Some(self.download_limit.clone());
        let journal = self.journal.clone();
        // Recorded at once, so that a download still queued when the node
        // stops is resumed at its next start too.
        let j = journal.clone();
        let (hash_hex, name_kept) = (entry.hash.clone(), entry.name.clone());
        let recorded = tokio::task::spawn_blocking(move || j.add(entry));
        self.run_tracked(row, name, true, move |progress, stopping| async move {
            let (hash, name) = (hash_hex, name_kept);
            let _ = recorded.await;
            let (more_tx, more_rx) = mpsc::channel(MORE_SOURCES);
            let fetch = rutella_transfer::fetch_by_hash_until(req, progress, more_rx, stopping);
            let result = tokio::select! {
                r = fetch => r,
                never = forward(more, more_tx) => match never {},
            };
            if result.is_ok() {
                let _ = tokio::task::spawn_blocking(move || journal.remove(&hash, &name)).await;
            }
            result
        })
    }

    /// Finds the peers that offer the file with this hash: asks every known
    /// peer for it and waits for their answers (at most the search time).
    /// Returns the file as one of them names it, and their TCP addresses.
    pub async fn find_sources(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<(HitFile, Vec<SocketAddr>)>, NodeError> {
        let mut stream = self.search(&rutella_proto::hash_query(hash)).await?;
        let mut file = None;
        let mut sources = Vec::new();
        while let Some(hit) = stream.next().await {
            if let Some(f) = hit
                .files
                .into_iter()
                .find(|f| f.hash.as_ref() == Some(hash))
            {
                if !sources.contains(&hit.peer.tcp()) {
                    sources.push(hit.peer.tcp());
                }
                file.get_or_insert(f);
            }
        }
        Ok(file.map(|f| (f, sources)))
    }

    /// Resumes the downloads by hash that a previous run left unfinished.
    pub(crate) fn resume_pending(&self) {
        for p in self.journal.load() {
            let Some(hash) = rutella_proto::message::parse_hex32(&p.hash) else {
                continue;
            };
            let sources: Vec<SocketAddr> =
                p.sources.iter().filter_map(|s| s.parse().ok()).collect();
            tracing::info!(name = ?p.name, sources = sources.len(), "resuming an unfinished download");
            let _ = self.download_hash(hash, &p.name, p.size, sources);
        }
    }

    /// Pauses a running download: it stops, keeping its partial data (by
    /// hash, every verified piece is recorded), until
    /// [`Client::resume`]. Returns once it stopped (at most the node's
    /// `stop_timeout`).
    pub async fn pause(&self, id: DownloadId) -> Result<(), ControlError> {
        self.downloads.signal(id, Control::Pause)?;
        self.downloads
            .wait_stopped(id, self.config.stop_timeout)
            .await;
        Ok(())
    }

    /// Cancels a download: a running one stops; its partial data is
    /// deleted and its row removed. Returns once that is done (for a
    /// running one, at most the node's `stop_timeout`).
    pub async fn cancel(&self, id: DownloadId) -> Result<(), ControlError> {
        match self.downloads.get(id) {
            None => Err(ControlError::NoSuch(id)),
            Some((DownloadState::Done(_), _)) => Err(ControlError::Done(id)),
            Some((DownloadState::Running, _)) => {
                self.downloads.signal(id, Control::Cancel)?;
                self.downloads
                    .wait_stopped(id, self.config.stop_timeout)
                    .await;
                Ok(())
            }
            Some((_, recipe)) => {
                self.downloads.discard(id)?;
                self.delete_partial(recipe).await;
                Ok(())
            }
        }
    }

    /// Resumes a paused or failed download from its partial data, from
    /// the sources it had.
    pub fn resume(&self, id: DownloadId) -> Result<DownloadHandle, ControlError> {
        let (progress_tx, progress_rx) = watch::channel(Progress::default());
        let (recipe, control) = self.downloads.restart(id, progress_rx)?;
        let row = Row {
            id,
            progress: progress_tx,
            control,
            recipe: recipe.clone(),
        };
        Ok(match recipe {
            Recipe::Classic { from, name } => self.download_again(row, from, &name),
            Recipe::Hash {
                hash,
                name,
                size,
                sources,
            } => {
                let (_, none) = mpsc::channel(1);
                self.hash_download(row, hash, &name, size, sources, none)
            }
            Recipe::Gnutella {
                source,
                name,
                file,
                size,
            } => self.gnutella_again(row.id, row.progress, row.control, source, name, file, size),
        })
    }

    /// Removes a download that does not run from the table (its files
    /// stay: a complete file, or partial data that `get` resumes).
    pub fn remove(&self, id: DownloadId) -> Result<(), ControlError> {
        self.downloads.remove(id)
    }

    /// Removes every complete and failed download from the table;
    /// returns how many.
    pub fn clear_finished(&self) -> usize {
        self.downloads.clear_finished()
    }

    /// Deletes what a download left to resume from.
    pub(crate) async fn delete_partial(&self, recipe: Recipe) {
        let dir = self.config.downloads_dir();
        let journal = self.journal.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let files: Vec<std::path::PathBuf> = match &recipe {
                Recipe::Classic { name, .. } => rutella_transfer::sanitize_basename(name)
                    .map(|b| vec![dir.join(format!("{b}.part"))])
                    .unwrap_or_default(),
                Recipe::Gnutella { name, .. } => crate::gnutella_types::part_path(&dir, name)
                    .map(|p| vec![p])
                    .unwrap_or_default(),
                Recipe::Hash { hash, name, .. } => {
                    journal.remove(&rutella_proto::message::hex32(hash), name);
                    rutella_transfer::part_paths(&dir, name, hash)
                        .map(|p| vec![p.part, p.tree, p.state])
                        .unwrap_or_default()
                }
            };
            for f in files {
                match std::fs::remove_file(&f) {
                    Ok(()) => tracing::info!(path = ?f, "deleted the partial data of a cancelled download"),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => tracing::warn!(path = ?f, error = %e, "cannot delete the partial data of a cancelled download"),
                }
            }
        })
        .await;
    }

    /// A new row in the downloads table.
    fn downloads_row(&self, name: &str, sources: Vec<SocketAddr>, recipe: Recipe) -> Row {
        let (progress_tx, progress_rx) = watch::channel(Progress::default());
        let (id, control) =
            self.downloads
                .add(name.to_string(), sources, progress_rx, recipe.clone());
        Row {
            id,
            progress: progress_tx,
            control,
            recipe,
        }
    }

    /// Runs one download in the background, owned by the node (stopped
    /// and waited for at shutdown, or when the user pauses or cancels
    /// it), recorded in the downloads table, announced when it ends.
    /// `work` is given the progress to report and the stop signal.
    fn run_tracked<F, Fut>(
        &self,
        row: Row,
        name: &str,
        stops_itself: bool,
        work: F,
    ) -> DownloadHandle
    where
        F: FnOnce(watch::Sender<Progress>, StopSignal) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<DownloadReport, rutella_transfer::DownloadError>>
            + Send
            + 'static,
    {
        let Row {
            id,
            progress: progress_tx,
            control,
            recipe,
        } = row;
        let downloads = self.downloads.clone();
        let events = self.events.clone();
        let name = name.to_string();
        let node_stop = self.tasks.stopping();
        let client = self.clone();
        let task = async move {
            let mut asked = control.clone();
            let stop: StopSignal = Box::pin(async move {
                tokio::select! {
                    () = node_stop => {}
                    _ = asked.wait_for(|c| *c != Control::Run) => {}
                }
            });
            // A download that stops by itself (by hash) is let finish its
            // stop, so that its verified data is recorded; any other is
            // dropped at the stop signal.
            let ran = if stops_itself {
                Some(work(progress_tx, stop).await)
            } else {
                tokio::select! {
                    r = work(progress_tx, Box::pin(std::future::pending())) => Some(r),
                    () = stop => None,
                }
            };
            let asked = *control.borrow();
            let sent = match (ran, asked) {
                (Some(Ok(report)), _) => {
                    tracing::info!(name = ?name, path = ?report.path, bytes = report.bytes_received, "download complete");
                    downloads.finish(
                        id,
                        DownloadState::Done(report.path.clone()),
                        None,
                        Some(report.clone()),
                    );
                    let _ = events.send(NodeEvent::DownloadDone {
                        id,
                        name,
                        path: report.path.clone(),
                    });
                    Ok(report)
                }
                (_, Control::Pause) => {
                    tracing::info!(name = ?name, "download paused");
                    downloads.set_state(id, DownloadState::Paused);
                    Err(NodeError::Download(
                        rutella_transfer::DownloadError::Cancelled,
                    ))
                }
                (_, Control::Cancel) => {
                    tracing::info!(name = ?name, "download cancelled");
                    client.delete_partial(recipe).await;
                    downloads.set_state(id, DownloadState::Failed("cancelled".into()));
                    let _ = downloads.remove(id);
                    Err(NodeError::Download(
                        rutella_transfer::DownloadError::Cancelled,
                    ))
                }
                (Some(Err(e)), Control::Run) if !is_stop(&e) => {
                    let reason = e.to_string();
                    tracing::warn!(name = ?name, reason = ?reason, "download failed");
                    downloads.finish(
                        id,
                        DownloadState::Failed(reason.clone()),
                        Some(FailureKind::of(&e)),
                        None,
                    );
                    let _ = events.send(NodeEvent::DownloadFailed { id, name, reason });
                    Err(NodeError::Download(e))
                }
                _ => {
                    tracing::info!(name = ?name, "download stopped with the node; it resumes at the next start");
                    downloads.finish(
                        id,
                        DownloadState::Failed(STOPPED.to_string()),
                        Some(FailureKind::Stopped),
                        None,
                    );
                    Err(NodeError::Stopped)
                }
            };
            sent
        };
        self.queue_download(id, task)
    }

    /// Puts `task` (a download's whole run, to its result) in the download
    /// queue as row `id`: it starts when a slot is free, its result goes to
    /// the handle returned, and its end lets the next queued download
    /// start.
    pub(crate) fn queue_download<T>(&self, id: DownloadId, task: T) -> DownloadHandle
    where
        T: std::future::Future<Output = Result<DownloadReport, NodeError>> + Send + 'static,
    {
        let (done_tx, done_rx) = oneshot::channel();
        let client = self.clone();
        let job = async move {
            let _ = done_tx.send(task.await);
            // Its slot is free: the next queued download starts.
            client.start_queued();
        };
        if let Some(job) = self.downloads.admit(id, Box::pin(job)) {
            self.spawn_download(id, job);
        }
        DownloadHandle {
            id,
            result: done_rx,
        }
    }
}

/// Completes when a download is to stop: the node stops, or the user
/// paused or cancelled it.
type StopSignal = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A row of the downloads table a run reports to.
struct Row {
    id: DownloadId,
    progress: watch::Sender<Progress>,
    control: watch::Receiver<Control>,
    recipe: Recipe,
}

/// The state of a download the node's shutdown stopped.
const STOPPED: &str = "the node stopped; the partial data is kept for a resume";

/// Peers waiting to join a growing download: the sender waits when the
/// download is this far behind.
const MORE_SOURCES: usize = 64;

/// Whether a download ended because it was told to stop.
fn is_stop(e: &rutella_transfer::DownloadError) -> bool {
    matches!(e, rutella_transfer::DownloadError::Cancelled)
}

/// Passes the peers arriving on `from` to a download (as the socket
/// addresses it takes); once `from` closes, closes `to` and waits forever.
async fn forward(
    mut from: mpsc::Receiver<SocketAddr>,
    to: mpsc::Sender<SocketAddr>,
) -> std::convert::Infallible {
    while let Some(peer) = from.recv().await {
        if to.send(peer).await.is_err() {
            break;
        }
    }
    drop(to);
    std::future::pending().await
}
