//! Pushed connections, both ways.
//!
//! Downloading: [`NodeDialer`] gets a download's connection to a source by
//! the paths [`rutella_proto::path::PathSelector`] plans (direct, then a
//! push through the source's proxies); for a push it registers a token in
//! the table of pending pushes, asks the event loop to send the Push, and
//! waits for the transfer server to hand over the connection that comes
//! in introduced with that token ([`run_pushed`]).
//!
//! Uploading: on a push from a peer, the event loop calls [`connect_out`],
//! which opens the connection, introduces it, and gives it to the
//! transfer server to be served as an accepted one.

use crate::command::Command;
use rutella_proto::path::{Failure, Next, OwnFacts, Path, PathConfig, PathSelector, SourceFacts};
use rutella_proto::{PushInfo, PushRoute};
use rutella_transfer::dial::{DialFuture, Dialer};
use rutella_transfer::{DownloadError, PushedConn, SourceError};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// Pushes waiting for their connection, at most.
const MAX_PENDING: usize = 256;
/// Sources whose push fields are remembered, at most.
const MAX_SOURCES: usize = 4096;
/// Pushed connections being opened at once (uploading side), at most.
pub(crate) const MAX_CONNECTING: usize = 16;

/// A bounded map, the oldest key forgotten first.
#[derive(Debug)]
struct Bounded<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
    cap: usize,
}

impl<K: std::hash::Hash + Eq + Copy, V> Bounded<K, V> {
    fn new(cap: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    fn insert(&mut self, k: K, v: V) {
        if self.map.insert(k, v).is_none() {
            self.order.push_back(k);
            while self.map.len() > self.cap {
                match self.order.pop_front() {
                    Some(old) => {
                        self.map.remove(&old);
                    }
                    None => break,
                }
            }
        }
        if self.order.len() > 2 * self.cap {
            let map = &self.map;
            self.order.retain(|k| map.contains_key(k));
        }
    }

    fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    fn remove(&mut self, k: &K) -> Option<V> {
        self.map.remove(k)
    }
}

/// What the node keeps for pushed connections: the pending pushes (token
/// → the download waiting), what answers said of their senders, and the
/// path that worked for each source.
#[derive(Debug)]
pub(crate) struct PushTable {
    pending: Mutex<Bounded<u64, (Instant, oneshot::Sender<TcpStream>)>>,
    sources: Mutex<Bounded<SocketAddr, PushInfo>>,
    paths: Mutex<Bounded<SocketAddr, (Path, String)>>,
    /// Why the last path to a source ended early, for people (a relay's
    /// byte limit).
    notes: Mutex<Bounded<SocketAddr, String>>,
    /// Punches asked for, waiting for their go.
    pub(crate) gos: crate::paths::GoTable,
}

impl Default for PushTable {
    fn default() -> Self {
        PushTable {
            pending: Mutex::new(Bounded::new(MAX_PENDING)),
            sources: Mutex::new(Bounded::new(MAX_SOURCES)),
            paths: Mutex::new(Bounded::new(MAX_SOURCES)),
            notes: Mutex::new(Bounded::new(MAX_SOURCES)),
            gos: crate::paths::GoTable::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PushTable {
    /// An answer from the peer at TCP address `tcp` said this.
    pub(crate) fn note_source(&self, tcp: SocketAddr, info: PushInfo) {
        if info.push_id.is_some() || info.firewalled {
            lock(&self.sources).insert(tcp, info);
        }
    }

    fn source(&self, tcp: &SocketAddr) -> PushInfo {
        lock(&self.sources).get(tcp).cloned().unwrap_or_default()
    }

    /// The path last used to reach `tcp`, in words.
    pub(crate) fn path_of(&self, tcp: &SocketAddr) -> Option<String> {
        lock(&self.paths).get(tcp).map(|(_, s)| s.clone())
    }

    /// Why the last path to `tcp` ended early, when it did for a reason
    /// the downloader cannot see in the stream: `relay IP closed the
    /// circuit at its limit of N bytes per circuit`.
    pub(crate) fn note_of(&self, tcp: &SocketAddr) -> Option<String> {
        lock(&self.notes).get(tcp).cloned()
    }

    fn set_path(&self, tcp: SocketAddr, path: Path, words: String) {
        lock(&self.paths).insert(tcp, (path, words));
    }

    /// Waits for the connection introduced with `token` until `deadline`;
    /// `None` when too many pushes are pending already. Expired entries
    /// are dropped first.
    fn register(&self, token: u64, deadline: Instant) -> Option<oneshot::Receiver<TcpStream>> {
        let mut g = lock(&self.pending);
        let now = Instant::now();
        let expired: Vec<u64> = g
            .map
            .iter()
            .filter(|(_, (d, _))| *d <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in expired {
            g.remove(&t);
        }
        if g.map.len() >= MAX_PENDING {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        g.insert(token, (deadline, tx));
        Some(rx)
    }

    fn forget(&self, token: u64) {
        lock(&self.pending).remove(&token);
    }

    /// The download waiting for `token`, if it still waits.
    fn take(&self, token: u64) -> Option<oneshot::Sender<TcpStream>> {
        let (deadline, tx) = lock(&self.pending).remove(&token)?;
        (deadline > Instant::now()).then_some(tx)
    }
}

/// Hands every pushed connection the transfer server received to the
/// download waiting for its token; a connection nobody waits for is
/// closed. Ends when the node stops.
pub(crate) async fn run_pushed(
    table: Arc<PushTable>,
    mut rx: mpsc::Receiver<PushedConn>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let conn = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            c = rx.recv() => match c {
                Some(c) => c,
                None => return,
            },
        };
        match table.take(conn.token) {
            Some(tx) => {
                tracing::debug!(peer = %conn.peer, "pushed connection arrived");
                if tx.send(conn.stream).is_err() {
                    tracing::debug!(peer = %conn.peer, "pushed connection arrived after its download gave up");
                }
            }
            None => {
                tracing::info!(peer = %conn.peer, "pushed connection with an unknown token; closed");
                let _ = conn.stream.set_zero_linger();
            }
        }
    }
}

/// Uploading side: connects to `target` (at most `limit`), introduces the
/// connection with `token`, and gives it to the transfer server.
pub(crate) async fn connect_out(
    target: SocketAddr,
    token: u64,
    limit: Duration,
    server: mpsc::Sender<TcpStream>,
) {
    let stream = match tokio::time::timeout(limit, TcpStream::connect(target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::info!(%target, error = %e, "could not connect for a pushed upload");
            return;
        }
        Err(_) => {
            tracing::info!(%target, "connecting for a pushed upload timed out");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let mut stream = stream;
    let intro = rutella_transfer::wire::encode_push_intro(token);
    match tokio::time::timeout(limit, stream.write_all(&intro)).await {
        Ok(Ok(())) => {}
        _ => {
            tracing::info!(%target, "could not introduce a pushed connection");
            return;
        }
    }
    tracing::info!(%target, "pushed connection open; serving it");
    if server.try_send(stream).is_err() {
        tracing::info!(%target, "transfer server busy; pushed connection closed");
    }
}

/// Gets a download's connections: direct, or by push (see the module
/// documentation).
#[derive(Debug, Clone)]
pub(crate) struct NodeDialer {
    pub(crate) table: Arc<PushTable>,
    pub(crate) tx: mpsc::Sender<Command>,
    /// Our TCP port, where pushed connections come: the `TcpPort` of our
    /// Push. It is also the router's external port whenever the port
    /// mapper holds a mapping, since the mapper asks for this very port
    /// and gives up a mapping the router makes on any other.
    pub(crate) tcp_port: u16,
    pub(crate) own: OwnFacts,
    pub(crate) push_timeout: Duration,
}

impl Dialer for NodeDialer {
    fn dial(&self, peer: SocketAddr, connect_timeout: Duration) -> DialFuture<'_> {
        Box::pin(self.dial_paths(peer, connect_timeout))
    }
}

impl NodeDialer {
    async fn dial_paths(
        &self,
        peer: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<TcpStream, DownloadError> {
        let tcp = rutella_proto::addr::normalize(peer);
        let info = self.table.source(&tcp);
        let cfg = PathConfig {
            direct_timeout: connect_timeout,
            push_timeout: self.push_timeout,
            ..PathConfig::default()
        };
        // Whether a push can be asked is known only to the event loop (a
        // peer that told its push id); it says so when asked.
        // A punch and a relay go through a proxy of the source that is a
        // peer of ours; the event loop says whether there is one when
        // asked.
        let facts = SourceFacts {
            firewalled: info.firewalled,
            pushable: true,
            punchable: true,
            relayable: true,
        };
        let mut sel = PathSelector::new(cfg, facts, self.own);
        if let Some((path @ (Path::Push | Path::Punch | Path::Relay), _)) =
            lock(&self.table.paths).get(&tcp).cloned()
        {
            sel = sel.starting_with(path);
        }
        let mut went_further = false;
        let mut direct_error: Option<DownloadError> = None;
        let mut push_words: Option<String> = None;
        loop {
            match sel.poll(std::time::Instant::now()) {
                Next::Start { path, deadline } => {
                    let deadline = Instant::from_std(deadline);
                    match path {
                        Path::Direct => {
                            let left = deadline.saturating_duration_since(Instant::now());
                            match rutella_transfer::dial::connect_direct(peer, left).await {
                                Ok(s) => {
                                    sel.connected(Path::Direct);
                                    self.table.set_path(tcp, Path::Direct, "direct".into());
                                    return Ok(s);
                                }
                                Err(e) => {
                                    tracing::debug!(%peer, error = %e, "direct connection failed");
                                    sel.failed(Path::Direct, Failure::Failed(e.to_string()));
                                    direct_error = Some(e);
                                }
                            }
                        }
                        Path::Push => match self.push(tcp, &info, deadline).await {
                            Ok((s, words)) => {
                                sel.connected(Path::Push);
                                tracing::info!(%peer, path = %words, "connected by push");
                                self.table.set_path(tcp, Path::Push, words);
                                return Ok(s);
                            }
                            Err((why, words)) => {
                                push_words = words;
                                sel.failed(Path::Push, why);
                            }
                        },
                        Path::Punch | Path::Relay => {
                            let got = if path == Path::Punch {
                                crate::paths::punch(
                                    &self.table.gos,
                                    &self.tx,
                                    self.tcp_port,
                                    tcp,
                                    &info,
                                    deadline,
                                )
                                .await
                            } else {
                                match crate::paths::relay(&self.tx, tcp, &info, deadline).await {
                                    Ok((circuit, words)) => self
                                        .watch_relayed(tcp, circuit)
                                        .await
                                        .map(|s| (s, words))
                                        .map_err(|e| Failure::Failed(e.to_string())),
                                    Err(why) => Err(why),
                                }
                            };
                            match got {
                                Ok((s, words)) => {
                                    sel.connected(path);
                                    tracing::info!(%peer, path = %words, "connected");
                                    self.table.set_path(tcp, path, words);
                                    return Ok(s);
                                }
                                Err(why) => {
                                    tracing::info!(%peer, %path, error = %why, "path failed");
                                    // Only a path that got as far as asking
                                    // someone changes what the failure says.
                                    went_further |= !crate::paths::nobody_to_ask(&why);
                                    sel.failed(path, why);
                                }
                            }
                        }
                    }
                }
                // Every attempt above ends before the next poll.
                Next::Wait(_) | Next::Connected(_) => {
                    return Err(SourceError::Connect {
                        peer,
                        source: io::Error::other("path selection out of step"),
                    }
                    .into())
                }
                Next::Exhausted(failures) => {
                    let said: Vec<String> =
                        failures.iter().map(|(p, f)| format!("{p}: {f}")).collect();
                    tracing::info!(%peer, tried = ?said, "no path to the source");
                    if went_further {
                        return Err(SourceError::Connect {
                            peer,
                            source: io::Error::other(format!(
                                "no path to the source: {}",
                                said.join("; ")
                            )),
                        }
                        .into());
                    }
                    // A source that could not be pushed to fails as it did
                    // directly; otherwise with what the push came to.
                    let pushed = failures.iter().find(|(p, _)| *p == Path::Push);
                    return Err(match (direct_error, pushed, push_words) {
                        (Some(e), None, _) | (Some(e), Some(_), None) => e,
                        (_, Some((_, Failure::TimedOut)), _) => SourceError::ConnectTimeout {
                            peer,
                            after: self.push_timeout,
                        }
                        .into(),
                        (_, Some((_, f)), _) => SourceError::Connect {
                            peer,
                            source: io::Error::other(format!("push failed: {f}")),
                        }
                        .into(),
                        (None, None, _) => SourceError::Connect {
                            peer,
                            source: io::Error::other(
                                "no way to reach this source: it and we are both firewalled",
                            ),
                        }
                        .into(),
                    });
                }
            }
        }
    }

    /// A relayed circuit to source `tcp`, counted on its way to the
    /// transfer client: when the relay ends it at its byte limit, the
    /// source's note says so (see [`PushTable::note_of`]).
    async fn watch_relayed(
        &self,
        tcp: SocketAddr,
        circuit: crate::relay::Circuit,
    ) -> io::Result<TcpStream> {
        lock(&self.table.notes).remove(&tcp);
        let table = Arc::clone(&self.table);
        crate::relay::watch_limit(circuit, move |note| {
            lock(&table.notes).insert(tcp, note);
        })
        .await
    }

    /// One push attempt: sends the Push, waits for the connection until
    /// `deadline`. On failure, why, and where the push went if it went.
    async fn push(
        &self,
        tcp: SocketAddr,
        info: &PushInfo,
        deadline: Instant,
    ) -> Result<(TcpStream, String), (Failure, Option<String>)> {
        let token: u64 = rand::random();
        let Some(rx) = self.table.register(token, deadline) else {
            return Err((Failure::Failed("too many pushes pending".into()), None));
        };
        let (reply, route) = oneshot::channel();
        let cmd = Command::Push {
            tcp,
            info: info.clone(),
            token,
            tcp_port: self.tcp_port,
            reply,
        };
        let route: Option<PushRoute> = match self.tx.send(cmd).await {
            Ok(()) => route.await.unwrap_or(None),
            Err(_) => None,
        };
        let Some(route) = route else {
            self.table.forget(token);
            return Err((Failure::Failed("no way to ask for a push".into()), None));
        };
        let words = route.to_string();
        tracing::info!(source = %tcp, path = %words, "asked for a pushed connection");
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(stream)) => Ok((stream, words)),
            _ => {
                self.table.forget(token);
                Err((Failure::TimedOut, Some(words)))
            }
        }
    }
}
