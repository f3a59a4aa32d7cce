//! The event loop: one task owns the overlay and the UDP socket; everything
//! else talks to it through bounded channels.

use crate::config::{NodeConfig, PeerAddr};
use crate::downloads::{DownloadId, DownloadInfo, DownloadState, Downloads};
use crate::pending::{Journal, Pending};
use crate::source::LibrarySource;
use crate::NodeError;
use rutella_proto::{AnswerPlan, Drops, Event, HitFile, IncomingQuery, Overlay, Peer, SearchId};
use rutella_store::{Library, LibraryConfig};
use rutella_transfer::{ClassicGet, DownloadReport, HashGet, Progress, ServerConfig};
use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Things the user interface may want to announce.
#[derive(Debug, Clone)]
pub enum NodeEvent {
    /// A peer joined the list.
    PeerAdded(Peer),
    /// A peer left the list.
    PeerRemoved(Peer),
    /// A download completed.
    DownloadDone {
        /// Which.
        id: DownloadId,
        /// The name asked for.
        name: String,
        /// Where the file is.
        path: PathBuf,
    },
    /// A download stopped; its partial data is kept.
    DownloadFailed {
        /// Which.
        id: DownloadId,
        /// The name asked for.
        name: String,
        /// Why, in one sentence.
        reason: String,
    },
}

/// One peer's answer (or part of it) to a search.
#[derive(Debug, Clone)]
pub struct SearchHit {
    /// Who answered.
    pub peer: Peer,
    /// What it offers (possibly nothing).
    pub files: Vec<HitFile>,
}

/// The answers to one search, as they arrive. Ends when the search ends.
pub struct SearchStream {
    id: SearchId,
    rx: mpsc::Receiver<SearchHit>,
    tx: mpsc::Sender<Command>,
}

impl SearchStream {
    /// The next answer; `None` once every peer asked has answered or the
    /// search time ran out.
    pub async fn next(&mut self) -> Option<SearchHit> {
        self.rx.recv().await
    }
}

impl Drop for SearchStream {
    fn drop(&mut self) {
        let _ = self.tx.try_send(Command::CancelSearch(self.id));
    }
}

enum Command {
    Peers(oneshot::Sender<Vec<Peer>>),
    Answered(oneshot::Sender<usize>),
    Connect(PeerAddr),
    Search(String, mpsc::Sender<SearchHit>, oneshot::Sender<SearchId>),
    CancelSearch(SearchId),
    /// The ready datagrams of an answer to a query from this querier
    /// (possibly none), built off the loop.
    AnswerReady(Ipv4Addr, SocketAddrV4, Vec<Vec<u8>>),
    BudgetDrops(oneshot::Sender<Drops>),
    SetLibrary(Vec<String>),
}

/// A cloneable handle to a running node: the only way the user interface
/// talks to it.
#[derive(Clone)]
pub struct Client {
    tx: mpsc::Sender<Command>,
    events: broadcast::Sender<NodeEvent>,
    downloads: Downloads,
    journal: Journal,
    library: Library,
    config: Arc<NodeConfig>,
    udp_addr: SocketAddrV4,
    tcp_addr: SocketAddrV4,
}

/// A running node. Dropping it does not stop it: call [`Node::shutdown`].
pub struct Node {
    client: Client,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Answers to queries being computed at once; more are dropped.
const MAX_QUERIES_IN_FLIGHT: usize = 64;
/// Of those, at most this many for one querier's address, so that one
/// address cannot take every slot.
const MAX_QUERIES_IN_FLIGHT_PER_SOURCE: usize = 8;
/// Most files one answer names.
const MAX_ANSWER_FILES: usize = 500;
/// Datagrams read in one go before the timer and the commands get a turn.
const RECV_BATCH: usize = 256;

impl Node {
    /// Opens the library, binds the UDP and TCP ports, and starts the event
    /// loop and the transfer server.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        let downloads_dir = config.downloads_dir();
        // A folder the user named, or the one inside a share, is made now so
        // that a problem shows at start; a node that shares nothing and was
        // given no folder (a one-shot search) leaves the disk alone, and its
        // downloads make the folder when they need it.
        if config.downloads.is_some() || !config.shares.is_empty() {
            std::fs::create_dir_all(&downloads_dir).map_err(|source| NodeError::Downloads {
                path: downloads_dir.clone(),
                source,
            })?;
        }
        let udp = bind_udp(&config).await?;
        set_recv_buffer(&udp, config.udp_recv_buffer);
        let tcp = bind_tcp(&config).await?;
        let udp_addr = v4(udp
            .local_addr()
            .map_err(|e| NodeError::Other(e.to_string()))?);
        let tcp_addr = v4(tcp
            .local_addr()
            .map_err(|e| NodeError::Other(e.to_string()))?);
        if let Some(parent) = config.db_path.as_ref().and_then(|p| p.parent()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                NodeError::Other(format!(
                    "cannot create the folder {} for the library index: {e}",
                    parent.display()
                ))
            })?;
        }
        let lib_cfg = LibraryConfig {
            db_path: config.db_path.clone(),
            watch: config.watch,
            ..LibraryConfig::new(config.shares.clone())
        };
        let library = tokio::task::spawn_blocking(move || Library::open(lib_cfg))
            .await
            .map_err(|e| NodeError::Other(format!("library scan failed: {e}")))??;

        let mut overlay_cfg = config.overlay.clone();
        overlay_cfg.udp_port = udp_addr.port();
        overlay_cfg.tcp_port = tcp_addr.port();
        let now = Instant::now();
        let mut overlay = Overlay::new(overlay_cfg, now);
        let mut own = OwnAddress::new(config.bind, config.advertise);
        for ip in own.initial_ips() {
            overlay.add_own_ip(ip);
        }
        // The names a scalable overlay summarises for its neighbours.
        let lib = library.clone();
        let names = tokio::task::spawn_blocking(move || library_names(&lib))
            .await
            .unwrap_or_default();
        overlay.set_library(names);
        for p in &config.connect {
            overlay.connect(now, p.udp, p.tcp_port.unwrap_or(0));
        }
        // Ask the own address for the bootstrap peers now so they are known as own.
        for p in &config.connect {
            let ip = own.for_dest(*p.udp.ip());
            overlay.add_own_ip(ip);
        }

        let (tx, rx) = mpsc::channel(256);
        let (events, _) = broadcast::channel(256);
        let (stop, stop_rx) = watch::channel(false);
        let client = Client {
            tx: tx.clone(),
            events: events.clone(),
            downloads: Downloads::default(),
            journal: Journal::new(&downloads_dir),
            library: library.clone(),
            config: Arc::new(config.clone()),
            udp_addr,
            tcp_addr,
        };
        tracing::info!(udp = %udp_addr, tcp = %tcp_addr, shares = ?config.shares, "node started");

        let event_loop = EventLoop {
            overlay,
            socket: udp,
            own,
            library: library.clone(),
            rx,
            tx,
            events,
            searches: HashMap::new(),
            in_flight: InFlight::default(),
            answers: Vec::new(),
        };
        let mut tasks = vec![tokio::spawn(event_loop.run(stop_rx.clone()))];
        tasks.push(tokio::spawn(watch_library(
            library.clone(),
            client.tx.clone(),
            config.library_poll,
            stop_rx.clone(),
        )));
        let server_cfg = ServerConfig {
            rate_limit: config.upload_rate_limit,
            max_connections: config.max_uploads,
            limits: config.upload_limits.clone(),
            fault: config.upload_fault,
            shutdown_grace: config.shutdown_grace,
            ..ServerConfig::default()
        };
        let source = Arc::new(LibrarySource(library));
        let mut server_stop = stop_rx;
        tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = server_stop.wait_for(|s| *s).await;
            };
            if let Err(e) = rutella_transfer::run_server(tcp, source, server_cfg, shutdown).await {
                tracing::error!(error = %e, "transfer server stopped");
            }
        }));
        client.resume_pending();
        Ok(Node {
            client,
            stop,
            tasks,
        })
    }

    /// A handle for the user interface.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Stops the event loop and the transfer server and waits for them.
    /// Running downloads stop; their partial data stays for a resume.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        tracing::info!("node stopped");
    }
}

/// Asks for a larger receive buffer, so that a burst of datagrams waits in
/// the kernel instead of being lost before the loop reads it. The system
/// may give less (on Linux, at most `net.core.rmem_max`); that is logged.
fn set_recv_buffer(socket: &UdpSocket, bytes: usize) {
    if bytes == 0 {
        return;
    }
    let sock = socket2::SockRef::from(socket);
    if let Err(e) = sock.set_recv_buffer_size(bytes) {
        tracing::warn!(error = %e, bytes, "could not set the UDP receive buffer size");
        return;
    }
    match sock.recv_buffer_size() {
        // Linux reports twice what it grants (the other half is its bookkeeping).
        Ok(got) if got < bytes => tracing::info!(
            asked = bytes,
            got,
            "the system gave a smaller UDP receive buffer than asked (see net.core.rmem_max)"
        ),
        Ok(got) => tracing::debug!(bytes = got, "UDP receive buffer"),
        Err(e) => tracing::debug!(error = %e, "cannot read the UDP receive buffer size"),
    }
}

fn v4(a: SocketAddr) -> SocketAddrV4 {
    match a {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(a) => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, a.port()),
    }
}

async fn bind_udp(config: &NodeConfig) -> Result<UdpSocket, NodeError> {
    let first = UdpSocket::bind((config.bind, config.udp_port)).await;
    match first {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse && config.port_fallback => {
            let s = UdpSocket::bind((config.bind, 0))
                .await
                .map_err(|source| bind_error("UDP", config.bind, 0, source))?;
            if let Ok(a) = s.local_addr() {
                tracing::warn!(
                    "UDP port {} is in use, using {} instead",
                    config.udp_port,
                    a.port()
                );
            }
            Ok(s)
        }
        Err(e) => Err(bind_error("UDP", config.bind, config.udp_port, e)),
    }
}

async fn bind_tcp(config: &NodeConfig) -> Result<TcpListener, NodeError> {
    let first = TcpListener::bind((config.bind, config.tcp_port)).await;
    match first {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse && config.port_fallback => {
            let s = TcpListener::bind((config.bind, 0))
                .await
                .map_err(|source| bind_error("TCP", config.bind, 0, source))?;
            if let Ok(a) = s.local_addr() {
                tracing::warn!(
                    "TCP port {} is in use, using {} instead",
                    config.tcp_port,
                    a.port()
                );
            }
            Ok(s)
        }
        Err(e) => Err(bind_error("TCP", config.bind, config.tcp_port, e)),
    }
}

fn bind_error(proto: &'static str, ip: Ipv4Addr, port: u16, source: io::Error) -> NodeError {
    let flag = if proto == "UDP" {
        "--udp-port"
    } else {
        "--tcp-port"
    };
    match source.kind() {
        io::ErrorKind::AddrInUse => NodeError::PortInUse {
            proto,
            ip,
            port,
            flag,
        },
        _ => NodeError::Bind {
            proto,
            ip,
            port,
            source,
        },
    }
}

/// Which address of ours to write in `"IP"` for a given peer.
struct OwnAddress {
    bind: Ipv4Addr,
    advertise: Option<Ipv4Addr>,
    routes: HashMap<Ipv4Addr, Ipv4Addr>,
}

impl OwnAddress {
    fn new(bind: Ipv4Addr, advertise: Option<Ipv4Addr>) -> Self {
        OwnAddress {
            bind,
            advertise,
            routes: HashMap::new(),
        }
    }

    fn initial_ips(&self) -> Vec<Ipv4Addr> {
        let mut v = Vec::new();
        v.extend(self.advertise);
        if self.bind.is_unspecified() {
            v.push(Ipv4Addr::LOCALHOST);
        } else {
            v.push(self.bind);
        }
        v
    }

    /// The advertised address, else the bound one, else the local address
    /// the system routes to `dest` from (never 0.0.0.0).
    fn for_dest(&mut self, dest: Ipv4Addr) -> Ipv4Addr {
        if let Some(a) = self.advertise {
            return a;
        }
        if !self.bind.is_unspecified() {
            return self.bind;
        }
        if let Some(ip) = self.routes.get(&dest) {
            return *ip;
        }
        let ip = route_source(dest).unwrap_or(Ipv4Addr::LOCALHOST);
        if self.routes.len() >= 4096 {
            self.routes.clear();
        }
        self.routes.insert(dest, ip);
        ip
    }
}

/// The source address the system picks for datagrams to `dest`.
fn route_source(dest: Ipv4Addr) -> Option<Ipv4Addr> {
    let s = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    s.connect((dest, 9)).ok()?;
    match s.local_addr().ok()? {
        SocketAddr::V4(a) if !a.ip().is_unspecified() => Some(*a.ip()),
        _ => None,
    }
}

/// Queries whose answers are being computed, in all and by querier.
#[derive(Default)]
struct InFlight {
    total: usize,
    /// At most [`MAX_QUERIES_IN_FLIGHT`] entries.
    by_source: HashMap<Ipv4Addr, usize>,
}

impl InFlight {
    fn start(&mut self, source: Ipv4Addr) -> bool {
        let mine = self.by_source.entry(source).or_insert(0);
        if self.total >= MAX_QUERIES_IN_FLIGHT || *mine >= MAX_QUERIES_IN_FLIGHT_PER_SOURCE {
            if *mine == 0 {
                self.by_source.remove(&source);
            }
            return false;
        }
        *mine += 1;
        self.total += 1;
        true
    }

    fn end(&mut self, source: Ipv4Addr) {
        if let Some(n) = self.by_source.get_mut(&source) {
            *n -= 1;
            self.total -= 1;
            if *n == 0 {
                self.by_source.remove(&source);
            }
        }
    }
}

struct EventLoop {
    overlay: Overlay,
    socket: UdpSocket,
    own: OwnAddress,
    library: Library,
    rx: mpsc::Receiver<Command>,
    tx: mpsc::Sender<Command>,
    events: broadcast::Sender<NodeEvent>,
    searches: HashMap<SearchId, mpsc::Sender<SearchHit>>,
    in_flight: InFlight,
    /// Ready answers waiting to be sent (at most one batch of commands' worth).
    answers: Vec<(SocketAddrV4, Vec<Vec<u8>>)>,
}

impl EventLoop {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut buf = vec![0u8; 65_536];
        loop {
            self.flush().await;
            let timeout = self.overlay.poll_timeout();
            let sleep = async {
                match timeout {
                    Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        self.overlay.handle_datagram(Instant::now(), from, &buf[..n]);
                        self.drain(&mut buf);
                    }
                    Err(e) => tracing::debug!(error = %e, "UDP receive failed"),
                },
                _ = sleep => self.overlay.handle_timeout(Instant::now()),
                Some(cmd) = self.rx.recv() => self.command(cmd),
            }
        }
        let d = self.overlay.budget_drops();
        if d.total() > 0 {
            tracing::info!(
                datagrams = d.datagrams,
                pings = d.pings,
                queries = d.queries,
                hits = d.hits,
                "dropped since start for being over their sources' budgets"
            );
        }
    }

    /// Reads what else is waiting on the socket, up to one batch, without
    /// waiting: under a flood the loop keeps up with the socket, and the
    /// timer and commands still get their turn between batches. Nothing is
    /// allocated per datagram here; the overlay drops one over its source's
    /// budget before parsing it.
    fn drain(&mut self, buf: &mut [u8]) {
        for _ in 0..RECV_BATCH {
            match self.socket.try_recv_from(buf) {
                Ok((n, from)) => self
                    .overlay
                    .handle_datagram(Instant::now(), from, &buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!(error = %e, "UDP receive failed");
                    return;
                }
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Peers(reply) => {
                let _ = reply.send(self.overlay.peers());
            }
            Command::Answered(reply) => {
                let _ = reply.send(self.overlay.answered_peers());
            }
            Command::Connect(p) => {
                let ip = self.own.for_dest(*p.udp.ip());
                self.overlay.add_own_ip(ip);
                self.overlay.connect(now, p.udp, p.tcp_port.unwrap_or(0));
            }
            Command::Search(text, hits, reply) => {
                let id = self.overlay.search(now, &text);
                if self.overlay.search_running(id) {
                    self.searches.insert(id, hits);
                }
                let _ = reply.send(id);
            }
            Command::CancelSearch(id) => {
                self.searches.remove(&id);
                self.overlay.cancel_search(id);
            }
            Command::AnswerReady(source, dest, datagrams) => {
                self.in_flight.end(source);
                if !datagrams.is_empty() {
                    self.answers.push((dest, datagrams));
                }
            }
            Command::BudgetDrops(reply) => {
                let _ = reply.send(self.overlay.budget_drops());
            }
            Command::SetLibrary(names) => self.overlay.set_library(names),
        }
    }

    async fn flush(&mut self) {
        for (dest, datagrams) in std::mem::take(&mut self.answers) {
            for d in datagrams {
                if let Err(e) = self.socket.send_to(&d, dest).await {
                    tracing::debug!(%dest, error = %e, "UDP send failed");
                }
            }
        }
        while let Some(t) = self.overlay.poll_transmit() {
            let ip = self.own.for_dest(*t.dest.ip());
            let bytes = t.encode(ip);
            if let Err(e) = self.socket.send_to(&bytes, t.dest).await {
                tracing::debug!(dest = %t.dest, error = %e, "UDP send failed");
            }
        }
        while let Some(ev) = self.overlay.poll_event() {
            match ev {
                Event::PeerAdded(p) => {
                    tracing::info!(peer = %p.udp, rutella = p.rutella, degree = self.overlay.degree(), "peer joined");
                    let _ = self.events.send(NodeEvent::PeerAdded(p));
                }
                Event::PeerRemoved(p) => {
                    tracing::info!(peer = %p.udp, degree = self.overlay.degree(), "peer left");
                    let _ = self.events.send(NodeEvent::PeerRemoved(p));
                }
                Event::Query(q) => self.answer(q),
                Event::SearchResult {
                    search,
                    peer,
                    files,
                } => {
                    if let Some(tx) = self.searches.get(&search) {
                        match tx.try_send(SearchHit { peer, files }) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Full(_)) => {
                                tracing::warn!("search results arrive faster than they are read; dropping some")
                            }
                            Err(mpsc::error::TrySendError::Closed(_)) => {
                                self.searches.remove(&search);
                                self.overlay.cancel_search(search);
                            }
                        }
                    }
                }
                Event::SearchFinished { search } => {
                    self.searches.remove(&search);
                }
            }
        }
    }

    /// Looks the query up in the library and encodes the answer's
    /// datagrams off the event loop (on the blocking pool); the ready
    /// datagrams come back as a command, so the loop only sends them and a
    /// query, however many files it matches, never holds up pings.
    fn answer(&mut self, q: IncomingQuery) {
        let source = *q.reply_to.ip();
        if !self.in_flight.start(source) {
            tracing::debug!(from = %q.reply_to, "too many queries at once, dropping one");
            return;
        }
        let plan = self.overlay.plan_answer(&q);
        let own_ip = self.own.for_dest(*plan.dest().ip());
        let library = self.library.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let dest = plan.dest();
            let datagrams =
                tokio::task::spawn_blocking(move || build_answer(&library, &q, &plan, own_ip))
                    .await
                    .unwrap_or_default();
            let _ = tx.send(Command::AnswerReady(source, dest, datagrams)).await;
        });
    }
}

/// The datagrams answering `q`: the library lookup and the encoding, both
/// linear in the files found (at most [`MAX_ANSWER_FILES`]).
fn build_answer(
    library: &Library,
    q: &IncomingQuery,
    plan: &AnswerPlan,
    own_ip: Ipv4Addr,
) -> Vec<Vec<u8>> {
    let rutella = q.from.rutella;
    let found: Vec<HitFile> = match rutella_proto::parse_hash_query(&q.text) {
        // A query for a content hash: the file with that hash, whatever its name.
        Some(hash) => library
            .by_hash(&hash)
            .map(|f| HitFile {
                name: f.name,
                size: Some(f.size),
                hash: Some(hash),
            })
            .into_iter()
            .collect(),
        None => library
            .search(&q.text, MAX_ANSWER_FILES)
            .into_iter()
            .map(|f| HitFile {
                name: f.name,
                size: Some(f.size),
                hash: f.hash,
            })
            .collect(),
    };
    let files: Vec<HitFile> = found
        .into_iter()
        .map(|f| HitFile {
            // Classic peers cannot use sizes and hashes: leave room for names.
            size: f.size.filter(|_| rutella),
            hash: f.hash.filter(|_| rutella),
            name: f.name,
        })
        .collect();
    tracing::debug!(from = %q.reply_to, text = ?q.text, hits = files.len(), "answering query");
    plan.encode(own_ip, &files)
}

/// A download started by [`Client::download`].
pub struct DownloadHandle {
    /// Its id in the downloads table.
    pub id: DownloadId,
    result: oneshot::Receiver<Result<DownloadReport, rutella_transfer::DownloadError>>,
}

impl DownloadHandle {
    /// Waits for the download to end.
    pub async fn wait(self) -> Result<DownloadReport, NodeError> {
        match self.result.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(NodeError::Download(e)),
            Err(_) => Err(NodeError::Stopped),
        }
    }
}

impl Client {
    async fn send(&self, cmd: Command) -> Result<(), NodeError> {
        self.tx.send(cmd).await.map_err(|_| NodeError::Stopped)
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

    /// Searches every known peer (and every peer that joins meanwhile).
    pub async fn search(&self, text: &str) -> Result<SearchStream, NodeError> {
        let (hits_tx, hits_rx) = mpsc::channel(1024);
        let (tx, rx) = oneshot::channel();
        self.send(Command::Search(text.to_string(), hits_tx, tx))
            .await?;
        let id = rx.await.map_err(|_| NodeError::Stopped)?;
        Ok(SearchStream {
            id,
            rx: hits_rx,
            tx: self.tx.clone(),
        })
    }

    /// Starts downloading `name` from the peer whose TCP address is `from`,
    /// with the classic exchange, resuming a partial copy, in the background.
    pub fn download(&self, from: SocketAddrV4, name: &str) -> DownloadHandle {
        let req = ClassicGet {
            peer: SocketAddr::V4(from),
            name: name.to_string(),
            downloads_dir: self.config.downloads_dir(),
            connect_timeout: self.config.connect_timeout,
            idle_timeout: self.config.idle_timeout,
            align_resume: true,
        };
        let client = self.clone();
        self.track(name, vec![from], move |progress| async move {
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
        sources: Vec<SocketAddrV4>,
    ) -> DownloadHandle {
        let (_, none) = mpsc::unbounded_channel();
        self.download_hash_growing(hash, name, size, sources, none)
    }

    /// [`Client::download_hash`], with more sources to come: each peer
    /// sent on `more` (while the download runs) joins it as a source.
    pub fn download_hash_growing(
        &self,
        hash: [u8; 32],
        name: &str,
        size: Option<u64>,
        sources: Vec<SocketAddrV4>,
        mut more: mpsc::UnboundedReceiver<SocketAddrV4>,
    ) -> DownloadHandle {
        let dir = self.config.downloads_dir();
        let entry = Pending {
            hash: rutella_proto::message::hex32(&hash),
            name: name.to_string(),
            size,
            sources: sources.iter().map(|s| s.to_string()).collect(),
        };
        let mut req = HashGet::new(
            hash,
            sources.iter().map(|s| SocketAddr::V4(*s)).collect(),
            dir,
            name,
        );
        req.size = size;
        req.connect_timeout = self.config.connect_timeout;
        req.idle_timeout = self.config.idle_timeout;
        let journal = self.journal.clone();
        self.track(name, sources, move |progress| async move {
            let (hash, name) = (entry.hash.clone(), entry.name.clone());
            let j = journal.clone();
            let _ = tokio::task::spawn_blocking(move || j.add(entry)).await;
            let (more_tx, more_rx) = mpsc::unbounded_channel();
            let forward = tokio::spawn(async move {
                while let Some(peer) = more.recv().await {
                    if more_tx.send(SocketAddr::V4(peer)).is_err() {
                        break;
                    }
                }
            });
            let result = rutella_transfer::fetch_by_hash_growing(req, progress, more_rx).await;
            forward.abort();
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
    ) -> Result<Option<(HitFile, Vec<SocketAddrV4>)>, NodeError> {
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
    fn resume_pending(&self) {
        for p in self.journal.load() {
            let Some(hash) = rutella_proto::message::parse_hex32(&p.hash) else {
                continue;
            };
            let sources: Vec<SocketAddrV4> =
                p.sources.iter().filter_map(|s| s.parse().ok()).collect();
            tracing::info!(name = ?p.name, sources = sources.len(), "resuming an unfinished download");
            let _ = self.download_hash(hash, &p.name, p.size, sources);
        }
    }

    /// Runs one download in the background, recorded in the downloads
    /// table, announced when it ends.
    fn track<F, Fut>(&self, name: &str, sources: Vec<SocketAddrV4>, work: F) -> DownloadHandle
    where
        F: FnOnce(watch::Sender<Progress>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<DownloadReport, rutella_transfer::DownloadError>>
            + Send
            + 'static,
    {
        let (progress_tx, progress_rx) = watch::channel(Progress::default());
        let id = self.downloads.add(name.to_string(), sources, progress_rx);
        let (done_tx, done_rx) = oneshot::channel();
        let downloads = self.downloads.clone();
        let events = self.events.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let sent = match work(progress_tx).await {
                Ok(report) => {
                    tracing::info!(name = ?name, path = ?report.path, bytes = report.bytes_received, "download complete");
                    downloads.set_state(id, DownloadState::Done(report.path.clone()));
                    let _ = events.send(NodeEvent::DownloadDone {
                        id,
                        name,
                        path: report.path.clone(),
                    });
                    Ok(report)
                }
                Err(e) => {
                    let reason = e.to_string();
                    tracing::warn!(name = ?name, reason = ?reason, "download failed");
                    downloads.set_state(id, DownloadState::Failed(reason.clone()));
                    let _ = events.send(NodeEvent::DownloadFailed { id, name, reason });
                    Err(e)
                }
            };
            let _ = done_tx.send(sent);
        });
        DownloadHandle {
            id,
            result: done_rx,
        }
    }

    /// The downloads of this run, oldest first.
    pub fn downloads(&self) -> Vec<DownloadInfo> {
        self.downloads.list()
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
    pub fn udp_addr(&self) -> SocketAddrV4 {
        self.udp_addr
    }

    /// The node's TCP address as bound.
    pub fn tcp_addr(&self) -> SocketAddrV4 {
        self.tcp_addr
    }

    /// The folder downloads go to.
    pub fn downloads_dir(&self) -> PathBuf {
        self.config.downloads_dir()
    }
}

/// The file names of the library (last path components).
fn library_names(library: &Library) -> Vec<String> {
    library
        .list()
        .into_iter()
        .map(|f| match f.name.rsplit_once('/') {
            Some((_, base)) => base.to_string(),
            None => f.name,
        })
        .collect()
}

/// Tells the overlay the library's names again whenever the library
/// changed (a rescan or a refreshed path), checking every `every`.
async fn watch_library(
    library: Library,
    tx: mpsc::Sender<Command>,
    every: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) {
    let generation = |l: &Library| {
        let s = l.stats();
        (s.rescans, s.refreshes, l.len())
    };
    let mut last = generation(&library);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(every) => {}
        }
        let now = generation(&library);
        if now == last {
            continue;
        }
        last = now;
        let lib = library.clone();
        let names = tokio::task::spawn_blocking(move || library_names(&lib))
            .await
            .unwrap_or_default();
        if tx.send(Command::SetLibrary(names)).await.is_err() {
            return;
        }
    }
}
