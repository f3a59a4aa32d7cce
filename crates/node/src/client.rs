//! The [`Client`] handle: the user interface's only way to talk to a
//! running node (peers, searches, the library; downloads are in
//! `transfers`).

use crate::command::{Command, NodeEvent, SearchStream};
use crate::config::{NodeConfig, PeerAddr};
use crate::downloads::{ControlError, DownloadId, DownloadInfo, Downloads};
use crate::pending::Journal;
use crate::tasks::Tasks;
use crate::NodeError;
use rutella_proto::{Drops, Peer};
use rutella_store::Library;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// Answers to one search waiting for its reader; while the queue is full
/// the loop drops further answers to it (it never waits on a reader).
const SEARCH_HITS: usize = 1024;

/// The global limits of a node, shared by all its transfers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes per second of all uploads together; `None`: no limit.
    pub upload_limit: Option<u64>,
    /// Bytes per second of all downloads together; `None`: no limit.
    pub download_limit: Option<u64>,
    /// Uploads served at once (at least 1).
    pub upload_slots: usize,
}

/// A cloneable handle to a running node: the only way the user interface
/// talks to it.
#[derive(Clone)]
pub struct Client {
    pub(crate) tx: mpsc::Sender<Command>,
    pub(crate) events: broadcast::Sender<NodeEvent>,
    pub(crate) downloads: Downloads,
    pub(crate) journal: Journal,
    pub(crate) library: Library,
    pub(crate) config: Arc<NodeConfig>,
    pub(crate) udp_addr: SocketAddr,
    pub(crate) tcp_addr: SocketAddr,
    pub(crate) tasks: Tasks,
    /// How many peers LAN discovery found so far.
    pub(crate) lan_found: watch::Receiver<usize>,
    pub(crate) dht: Option<crate::dht::Dht>,
    /// Pending pushes, what answers said of pushes, paths used.
    pub(crate) push: Arc<crate::push::PushTable>,
    /// The limit all downloads share (unlimited until set).
    pub(crate) download_limit: rutella_transfer::RateLimiter,
    /// The limit all uploads share (unlimited until set).
    pub(crate) upload_limit: rutella_transfer::RateLimiter,
    /// The upload slots of the transfer server.
    pub(crate) upload_slots: rutella_transfer::UploadSlots,
    /// Uploads in progress.
    pub(crate) uploads: crate::uploads::Uploads,
    /// The reachability check's verdict.
    pub(crate) reachability: watch::Receiver<rutella_proto::Reachability>,
    /// The port mapper's status, when it runs.
    pub(crate) port_mapping: Option<watch::Receiver<crate::PortMapStatus>>,
    /// The Gnutella leaf, when on.
    pub(crate) gnutella: Option<crate::gnutella::GnutellaHandle>,
}

impl Client {
    async fn send(&self, cmd: Command) -> Result<(), NodeError> {
        self.tx.send(cmd).await.map_err(|_| NodeError::Stopped)
    }

    /// Whether the node looks for peers on the local link.
    pub fn lan_discovery(&self) -> bool {
        self.config.lan.is_some()
    }

    /// How many peers LAN discovery found so far (each handed to the
    /// normal join; see [`Client::peers`] for those that answered).
    pub fn lan_found(&self) -> watch::Receiver<usize> {
        self.lan_found.clone()
    }

    /// Whether others can reach this node, as last checked; it changes as
    /// checks conclude (a [`NodeEvent::Reachability`] says so too).
    pub fn reachability(&self) -> watch::Receiver<rutella_proto::Reachability> {
        self.reachability.clone()
    }

    /// The port mapper's status, when port mapping is on.
    pub fn port_mapping(&self) -> Option<watch::Receiver<crate::PortMapStatus>> {
        self.port_mapping.clone()
    }

    /// The peers the node knows.
    pub async fn peers(&self) -> Result<Vec<Peer>, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Peers(tx)).await?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// How many known peers have answered at least once (a peer given by
    /// address only counts once it answers).
    pub async fn answered_peers(&self) -> Result<usize, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Answered(tx)).await?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// The scalable overlay's tier: `Some((true, leaves))` for an
    /// ultrapeer, `Some((false, 0))` for a leaf, `None` in classic mode.
    pub async fn tier(&self) -> Result<Option<(bool, usize)>, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Tier(tx)).await?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// Datagrams the node dropped so far for being over their source's
    /// budget.
    pub async fn budget_drops(&self) -> Result<Drops, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::BudgetDrops(tx)).await?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// Joins the network through another peer.
    pub async fn connect(&self, peer: PeerAddr) -> Result<(), NodeError> {
        self.send(Command::Connect(peer)).await
    }

    /// Gives up on an address given to [`Client::connect`] that did not
    /// answer: it is not pinged again (a peer it became stays).
    pub async fn forget(&self, udp: SocketAddr) -> Result<(), NodeError> {
        self.send(Command::Forget(udp)).await
    }

    /// Searches every known peer (and every peer that joins meanwhile).
    pub async fn search(&self, text: &str) -> Result<SearchStream, NodeError> {
        let (hits_tx, hits_rx) = mpsc::channel(SEARCH_HITS);
        let (tx, rx) = oneshot::channel();
        self.send(Command::Search(text.to_string(), hits_tx.clone(), tx))
            .await?;
        let id = rx.await.map_err(|_| NodeError::Stopped)?;
        if let Some(g) = &self.gnutella {
            let until = tokio::time::Instant::now() + self.config.overlay.search_timeout;
            g.search(text, hits_tx, until).await;
        }
        Ok(SearchStream {
            id,
            rx: hits_rx,
            tx: self.tx.clone(),
        })
    }

    /// Whether Gnutella is on with an ultrapeer to join given
    /// (`--gnutella-connect`).
    pub fn gnutella_configured(&self) -> bool {
        self.config
            .gnutella
            .as_ref()
            .is_some_and(|g| !g.connect.is_empty())
    }

    /// How many Gnutella ultrapeers the node is a leaf of, as it changes;
    /// `None` when Gnutella is off.
    pub fn gnutella_links(&self) -> Option<watch::Receiver<usize>> {
        self.gnutella.as_ref().map(|g| g.links())
    }

    /// The downloads of this run, oldest first.
    pub fn downloads(&self) -> Vec<DownloadInfo> {
        let mut list = self.downloads.list();
        // Gnutella rows say their paths themselves.
        for d in list.iter_mut().filter(|d| d.network != "gnutella") {
            d.paths = d
                .sources
                .iter()
                .filter_map(|s| Some((*s, self.push.path_of(s)?)))
                .collect();
        }
        list
    }

    /// How the node last reached the source at this TCP address
    /// (`"direct"`, `"push via IP:PORT"`, `"push to peer IP:PORT"`).
    pub fn path_to(&self, source: SocketAddr) -> Option<String> {
        self.push.path_of(&source)
    }

    /// Why the last path to the source at this TCP address ended early,
    /// when the stream could not say it (`relay IP closed the circuit at
    /// its limit of N bytes per circuit`).
    pub fn path_note(&self, source: SocketAddr) -> Option<String> {
        self.push.note_of(&source)
    }

    /// The dialer of this node's downloads: direct, then by push.
    pub(crate) fn dialer(&self) -> rutella_transfer::dial::SharedDialer {
        Arc::new(crate::push::NodeDialer {
            table: self.push.clone(),
            tx: self.tx.clone(),
            tcp_port: self.tcp_addr.port(),
            own: rutella_proto::path::OwnFacts {
                // A setting wins over the check's verdict.
                firewalled: self
                    .config
                    .reachable
                    .or_else(|| self.reachability.borrow().tcp_reachable())
                    == Some(false),
            },
            push_timeout: self.config.push_timeout,
        })
    }

    /// The progress of one download of this run, as it changes: waiting
    /// on it replaces polling the table. Its senders are the download's
    /// own; once the download has ended (every thread of it), the channel
    /// is closed.
    pub fn progress(&self, id: DownloadId) -> Option<watch::Receiver<rutella_transfer::Progress>> {
        self.downloads.progress(id)
    }

    /// Node events (peers, finished downloads) from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// Shares one more folder.
    pub async fn share(&self, dir: &Path) -> Result<(), NodeError> {
        let lib = self.library.clone();
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || lib.add_share(&dir))
            .await
            .map_err(|e| NodeError::Other(e.to_string()))??;
        Ok(())
    }

    /// Stops sharing a folder; returns whether it was shared.
    pub async fn unshare(&self, dir: &Path) -> bool {
        let lib = self.library.clone();
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || lib.remove_share(&dir))
            .await
            .unwrap_or(false)
    }

    /// The shared folders.
    pub fn shares(&self) -> Vec<PathBuf> {
        self.library.shares()
    }

    /// The library of shared files.
    pub fn library(&self) -> &Library {
        &self.library
    }

    /// The node's UDP address as bound.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The node's TCP address as bound.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// Looks up on the DHT the nodes that announced a file, gives them to
    /// the overlay to join (as `--connect` addresses) and returns their UDP
    /// addresses; none when the DHT is off. A search by hash then reaches
    /// them as they answer.
    pub async fn dht_sources(&self, hash: &[u8; 32]) -> Vec<SocketAddr> {
        match &self.dht {
            Some(d) => {
                let found = d.lookup(crate::dht::file_key(d.network(), hash)).await;
                let own = (self.udp_addr, self.config.advertise);
                let found: Vec<SocketAddr> = found
                    .into_iter()
                    .filter(|a| !crate::dht::is_own(a, own.0, own.1))
                    .collect();
                tracing::info!(sources = found.len(), "sources found through the DHT");
                for a in &found {
                    let _ = self
                        .connect(PeerAddr {
                            udp: *a,
                            tcp_port: None,
                        })
                        .await;
                }
                found
            }
            None => Vec::new(),
        }
    }

    /// Whether the node runs a DHT node.
    pub fn dht_running(&self) -> bool {
        self.dht.is_some()
    }

    /// The global limits in force now.
    pub fn limits(&self) -> Limits {
        Limits {
            upload_limit: self.upload_limit.rate(),
            download_limit: self.download_limit.rate(),
            upload_slots: self.upload_slots.total(),
        }
    }

    /// Changes the global limits, live: every transfer running and to
    /// come follows them from its next wait (upload slots: more are given
    /// at once; fewer are taken back as uploads end).
    pub fn set_limits(&self, limits: Limits) {
        self.upload_limit.set_rate(limits.upload_limit);
        self.download_limit.set_rate(limits.download_limit);
        self.upload_slots.set_total(limits.upload_slots);
        tracing::info!(
            upload_limit = ?limits.upload_limit,
            download_limit = ?limits.download_limit,
            upload_slots = limits.upload_slots,
            "limits changed"
        );
    }

    /// Uploads in progress, oldest first.
    pub fn uploads(&self) -> Vec<crate::UploadInfo> {
        self.uploads.list()
    }

    /// File bytes sent by uploads that ended, since the start.
    pub fn bytes_uploaded(&self) -> u64 {
        self.uploads.sent()
    }

    /// How many downloads run at once; `None`: no limit. Further
    /// downloads wait as [`crate::DownloadState::Queued`] and start in the
    /// order of the list as running ones end.
    pub fn max_active_downloads(&self) -> Option<usize> {
        Some(self.downloads.max_active()).filter(|n| *n > 0)
    }

    /// Changes how many downloads run at once, live (`None`: no limit).
    /// More slots start queued downloads at once; fewer stop none: the
    /// queue waits until enough have ended.
    pub fn set_max_active_downloads(&self, max: Option<usize>) {
        self.downloads.set_max_active(max.unwrap_or(0));
        tracing::info!(max_active_downloads = ?max, "download slots changed");
        self.start_queued();
    }

    /// Moves a download to `position` (0 = first) in the list: queued
    /// downloads start in the list's order.
    pub fn move_download(&self, id: DownloadId, position: usize) -> Result<(), ControlError> {
        self.downloads.move_to(id, position)
    }

    /// Starts the queued downloads that have a free slot now.
    pub(crate) fn start_queued(&self) {
        for (id, job) in self.downloads.next_ready() {
            self.spawn_download(id, job);
        }
    }

    /// Runs a download's job, owned by the node.
    pub(crate) fn spawn_download(&self, id: DownloadId, job: crate::downloads::Job) {
        if !self.tasks.spawn(job) {
            self.downloads.finish(
                id,
                crate::DownloadState::Failed(
                    "the node stopped; the partial data is kept for a resume".to_string(),
                ),
                Some(crate::FailureKind::Stopped),
                None,
            );
        }
    }

    /// The folder downloads go to.
    pub fn downloads_dir(&self) -> PathBuf {
        self.config.downloads_dir()
    }
}
