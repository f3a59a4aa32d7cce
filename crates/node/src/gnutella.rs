//! The node as a leaf of the Gnutella 0.6 network: a thin driver around
//! `rutella_gnutella`'s link driver.
//!
//! One manager task keeps up to [`GnutellaSettings::max_ultrapeers`] links
//! to ultrapeers (the addresses given, then the persisted host cache), each
//! driven by its own task. It sends every link the QRP table of the
//! library's names (again when the library changes), sends searches out on
//! every link under one GUID and hands their hits to the search's stream,
//! answers the queries ultrapeers route to us from the library, and learns
//! ultrapeer addresses from pongs and refusals for the host cache.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;

use rutella_gnutella::descriptor::{Extensions, Guid, HitResult};
use rutella_gnutella::handshake::Refusal;
use rutella_gnutella::huge::Urn;
use rutella_gnutella::leaf::{new_guid, IncomingQuery, LeafConfig, LeafEvent};
use rutella_gnutella::link::{LeafLink, LinkError};
use rutella_gnutella::qrp::RouteTable;
use rutella_proto::{HitFile, Peer, PushInfo};
use rutella_store::Library;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::command::SearchHit;
use crate::gnutella_types::{GnutellaFile, GnutellaSettings, GnutellaSource};

/// Searches waiting to go out to the manager.
const COMMAND_QUEUE: usize = 64;
/// Events from all links waiting for the manager.
const EVENT_QUEUE: usize = 1024;
/// Commands waiting for one link.
const LINK_QUEUE: usize = 64;
/// Bytes read at most from the host cache file.
const MAX_HOST_FILE: u64 = 256 * 1024;

/// The index our hits give a shared file: a hash of its shared name (so
/// `/get/INDEX/NAME` finds it again without a table).
pub(crate) fn index_of(rel: &str) -> u32 {
    // FNV-1a, 32 bits.
    let mut h: u32 = 0x811c_9dc5;
    for b in rel.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The last component of a shared name: what hits and `/get/` name.
pub(crate) fn file_name(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

enum Cmd {
    Search {
        text: String,
        hits: mpsc::Sender<SearchHit>,
        until: Instant,
    },
}

enum LinkCmd {
    Query(Guid, String),
    Answer(IncomingQuery, Vec<HitResult>),
    Table(Arc<RouteTable>),
}

enum FromLink {
    Up(SocketAddr, mpsc::Sender<LinkCmd>),
    Event(SocketAddr, LeafEvent),
    Down(SocketAddr, String, Vec<SocketAddrV4>),
}

/// The handle the client keeps.
#[derive(Clone)]
pub(crate) struct GnutellaHandle {
    tx: mpsc::Sender<Cmd>,
    links: watch::Receiver<usize>,
}

impl GnutellaHandle {
    /// Sends a search out on every link (and on links that come up while
    /// it runs); hits go to `hits` until `until`.
    pub(crate) async fn search(&self, text: &str, hits: mpsc::Sender<SearchHit>, until: Instant) {
        let _ = self
            .tx
            .send(Cmd::Search {
                text: text.to_string(),
                hits,
                until,
            })
            .await;
    }

    /// Ultrapeer links up now, as it changes.
    pub(crate) fn links(&self) -> watch::Receiver<usize> {
        self.links.clone()
    }
}

/// What the manager needs of the node.
pub(crate) struct Context {
    pub(crate) library: Library,
    pub(crate) bind: IpAddr,
    pub(crate) advertise: Option<IpAddr>,
    pub(crate) tcp_port: u16,
    pub(crate) firewalled: bool,
    /// Our servent GUID (hits, browse host, pushes).
    pub(crate) servent_guid: Guid,
}

/// Starts the manager.
pub(crate) fn spawn(
    s: GnutellaSettings,
    ctx: Context,
    stop: watch::Receiver<bool>,
) -> (GnutellaHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let (links_tx, links) = watch::channel(0);
    let hosts = HostCache::load(&s);
    let mut leaf = s.leaf.clone();
    leaf.servent_guid = ctx.servent_guid;
    let m = Manager {
        s,
        ctx,
        leaf,
        links: HashMap::new(),
        connecting: HashSet::new(),
        tried: HashMap::new(),
        hosts,
        searches: HashMap::new(),
        table: None,
        library_gen: None,
        links_tx,
    };
    let task = tokio::spawn(m.run(rx, stop));
    (GnutellaHandle { tx, links }, task)
}

struct Search {
    text: String,
    hits: mpsc::Sender<SearchHit>,
    until: Instant,
}

struct Manager {
    s: GnutellaSettings,
    ctx: Context,
    leaf: LeafConfig,
    links: HashMap<SocketAddr, mpsc::Sender<LinkCmd>>,
    connecting: HashSet<SocketAddr>,
    tried: HashMap<SocketAddr, Instant>,
    hosts: HostCache,
    searches: HashMap<Guid, Search>,
    table: Option<Arc<RouteTable>>,
    library_gen: Option<(u64, u64, usize, u64)>,
    links_tx: watch::Sender<usize>,
}

impl Manager {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>, mut stop: watch::Receiver<bool>) {
        let (ev_tx, mut ev_rx) = mpsc::channel(EVENT_QUEUE);
        // Nothing to join: ask the host caches, once per start.
        let (boot_tx, mut boot_rx) = tokio::sync::oneshot::channel();
        let mut booting = self.s.connect.is_empty()
            && self.hosts.iter().next().is_none()
            && !(self.s.gwebcaches.is_empty() && self.s.udp_host_caches.is_empty());
        let boot_task = booting.then(|| {
            let s = self.s.clone();
            tokio::spawn(async move {
                let _ = boot_tx.send(crate::gnutella_bootstrap::bootstrap(&s).await);
            })
        });
        let mut tick = tokio::time::interval(self.s.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
                c = rx.recv() => match c {
                    Some(c) => self.command(c).await,
                    None => break,
                },
                Some(e) = ev_rx.recv() => self.link_said(e).await,
                found = &mut boot_rx, if booting => {
                    booting = false;
                    let found = found.unwrap_or_default();
                    tracing::info!(hosts = found.len(), "Gnutella host caches asked");
                    for a in found {
                        self.hosts.add(SocketAddr::V4(a));
                    }
                    self.maintain(&ev_tx);
                }
                _ = tick.tick() => {
                    self.refresh_table().await;
                    self.expire();
                    self.maintain(&ev_tx);
                    self.hosts.save_if_dirty();
                }
            }
        }
        if let Some(t) = boot_task {
            t.abort();
        }
        // Dropping the link senders makes each link say Bye.
        self.links.clear();
        self.hosts.save();
    }

    async fn command(&mut self, c: Cmd) {
        match c {
            Cmd::Search { text, hits, until } => {
                // No link up and none being opened: nothing could answer,
                // and holding `hits` would keep the search open until its
                // time runs out although every other peer has answered.
                if self.links.is_empty() && self.connecting.is_empty() {
                    return;
                }
                let guid = new_guid();
                for tx in self.links.values() {
                    let _ = tx.try_send(LinkCmd::Query(guid, text.clone()));
                }
                if self.searches.len() >= self.s.max_searches {
                    if let Some(oldest) = self
                        .searches
                        .iter()
                        .min_by_key(|(_, s)| s.until)
                        .map(|(g, _)| *g)
                    {
                        self.searches.remove(&oldest);
                    }
                }
                self.searches.insert(guid, Search { text, hits, until });
            }
        }
    }

    fn expire(&mut self) {
        let now = Instant::now();
        self.searches
            .retain(|_, s| s.until > now && !s.hits.is_closed());
    }

    /// Opens links up to the limit: the given addresses first, then the
    /// host cache; an address is tried again only after `retry`.
    fn maintain(&mut self, ev_tx: &mpsc::Sender<FromLink>) {
        let now = Instant::now();
        let want = self
            .s
            .max_ultrapeers
            .saturating_sub(self.links.len() + self.connecting.len());
        if want == 0 {
            return;
        }
        let retry = self.s.retry;
        let candidates: Vec<SocketAddr> = self
            .s
            .connect
            .iter()
            .copied()
            .chain(self.hosts.iter())
            .filter(|a| !self.links.contains_key(a) && !self.connecting.contains(a))
            .filter(|a| self.tried.get(a).is_none_or(|t| now >= *t + retry))
            .collect();
        let mut seen = HashSet::new();
        for addr in candidates
            .into_iter()
            .filter(|a| seen.insert(*a))
            .take(want)
        {
            self.tried.insert(addr, now);
            self.connecting.insert(addr);
            let cfg = self.link_config(addr);
            let tx = ev_tx.clone();
            tokio::spawn(run_link(addr, cfg, tx));
        }
        // Forget old attempts (bounded by the candidates anyway).
        if self.tried.len() > 4 * self.s.host_cache_max.max(16) {
            self.tried.retain(|_, t| now < *t + retry);
        }
    }

    fn link_config(&self, addr: SocketAddr) -> LeafConfig {
        let mut cfg = self.leaf.clone();
        cfg.listen = if self.ctx.firewalled {
            None
        } else {
            let mut own = crate::own_address::OwnAddress::new(self.ctx.bind, self.ctx.advertise);
            match own.for_dest(addr.ip()) {
                IpAddr::V4(v4) if !v4.is_unspecified() => {
                    Some(SocketAddrV4::new(v4, self.ctx.tcp_port))
                }
                _ => None,
            }
        };
        let files = self.ctx.library.len();
        cfg.shared = (
            u32::try_from(files).unwrap_or(u32::MAX),
            u32::try_from(self.ctx.library.progress().bytes_total / 1024).unwrap_or(u32::MAX),
        );
        cfg
    }

    async fn link_said(&mut self, e: FromLink) {
        match e {
            FromLink::Up(addr, tx) => {
                self.connecting.remove(&addr);
                tracing::info!(ultrapeer = %addr, "joined the Gnutella network as a leaf");
                self.hosts.add(addr);
                if let Some(t) = &self.table {
                    let _ = tx.try_send(LinkCmd::Table(t.clone()));
                }
                for (g, s) in &self.searches {
                    let _ = tx.try_send(LinkCmd::Query(*g, s.text.clone()));
                }
                self.links.insert(addr, tx);
                self.links_tx.send_replace(self.links.len());
            }
            FromLink::Down(addr, why, tries) => {
                self.connecting.remove(&addr);
                if self.links.remove(&addr).is_some() {
                    tracing::info!(ultrapeer = %addr, reason = %why, "Gnutella link ended");
                    self.links_tx.send_replace(self.links.len());
                } else {
                    tracing::debug!(ultrapeer = %addr, reason = %why, "could not join a Gnutella ultrapeer");
                }
                // Nothing left that could answer: the searches end here.
                if self.links.is_empty() && self.connecting.is_empty() {
                    self.searches.clear();
                }
                for t in tries {
                    self.hosts.add(SocketAddr::V4(t));
                }
            }
            FromLink::Event(addr, ev) => self.event(addr, ev),
        }
    }

    fn event(&mut self, addr: SocketAddr, ev: LeafEvent) {
        match ev {
            LeafEvent::Hit { query, hit } => {
                let Some(s) = self.searches.get(&query) else {
                    return;
                };
                let servent = SocketAddr::new(IpAddr::V4(hit.ip), hit.port);
                if hit.port == 0 || hit.ip.is_unspecified() || hit.results.is_empty() {
                    return;
                }
                let vendor = hit
                    .trailer
                    .as_ref()
                    .map(|t| {
                        t.vendor
                            .iter()
                            .map(|b| {
                                if b.is_ascii_alphanumeric() {
                                    char::from(*b)
                                } else {
                                    '?'
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let push = hit.needs_push();
                let files = hit
                    .results
                    .iter()
                    .map(|r| HitFile {
                        name: String::from_utf8_lossy(&r.name).into_owned(),
                        size: Some(r.size),
                        hash: None,
                    })
                    .collect();
                let refs = hit
                    .results
                    .iter()
                    .map(|r| GnutellaFile {
                        index: r.index,
                        sha1: r.ext.urns.iter().find_map(|u| u.sha1().copied()),
                    })
                    .collect();
                let out = SearchHit {
                    peer: Peer {
                        udp: servent,
                        tcp_port: hit.port,
                        rutella: false,
                    },
                    files,
                    push: PushInfo {
                        firewalled: push,
                        ..PushInfo::default()
                    },
                    gnutella: Some(GnutellaSource {
                        servent,
                        servent_guid: hit.servent,
                        push,
                        vendor,
                        files: refs,
                    }),
                };
                if let Err(mpsc::error::TrySendError::Full(_)) = s.hits.try_send(out) {
                    tracing::debug!(
                        "Gnutella hits arrive faster than they are read; dropping some"
                    );
                }
            }
            LeafEvent::Query(q) => {
                let results = self.answer(&q);
                if results.is_empty() {
                    return;
                }
                if let Some(tx) = self.links.get(&addr) {
                    let _ = tx.try_send(LinkCmd::Answer(q, results));
                }
            }
            LeafEvent::Pong(p)
                if p.port != 0
                    && !p.ip.is_unspecified()
                    && !p.ip.is_broadcast()
                    && !p.ip.is_multicast() =>
            {
                self.hosts
                    .add(SocketAddr::V4(SocketAddrV4::new(p.ip, p.port)));
            }
            _ => {}
        }
    }

    /// The library's files that match a routed query (by words, or by
    /// `urn:sha1`).
    fn answer(&self, q: &IncomingQuery) -> Vec<HitResult> {
        let lib = &self.ctx.library;
        let max = self.s.max_results.min(255);
        let text = q.text();
        let mut found = Vec::new();
        if let Some(sha1) = q.query.ext.urns.iter().find_map(|u| u.sha1().copied()) {
            if let Some(f) = lib.by_sha1(&sha1) {
                found.push((f.name, f.size, f.sha1));
            }
        }
        if found.is_empty() && !text.trim().is_empty() && text.trim() != "\\" {
            found.extend(
                lib.search(&text, max)
                    .into_iter()
                    .map(|f| (f.name, f.size, f.sha1)),
            );
        }
        found
            .into_iter()
            .take(max)
            .map(|(rel, size, sha1)| HitResult {
                index: index_of(&rel),
                size,
                name: file_name(&rel).as_bytes().to_vec(),
                ext: Extensions {
                    urns: sha1.map(Urn::Sha1).into_iter().collect(),
                    ..Extensions::default()
                },
            })
            .collect()
    }

    /// Builds the QRP table again (off the loop) when the library changed,
    /// and sends it to every link.
    async fn refresh_table(&mut self) {
        let lib = &self.ctx.library;
        let st = lib.stats();
        let gen = (
            st.rescans,
            st.refreshes,
            lib.len(),
            lib.progress().files_hashed,
        );
        if self.library_gen == Some(gen) {
            return;
        }
        self.library_gen = Some(gen);
        let lib = lib.clone();
        let bits = self.leaf.qrp_bits;
        let Ok(table) = tokio::task::spawn_blocking(move || {
            let names = lib.list();
            let mut t = RouteTable::new(bits);
            for f in &names {
                t.add_name(&f.name);
            }
            t
        })
        .await
        else {
            return;
        };
        if self.table.as_deref() == Some(&table) {
            return;
        }
        let table = Arc::new(table);
        for tx in self.links.values() {
            let _ = tx.try_send(LinkCmd::Table(table.clone()));
        }
        self.table = Some(table);
    }
}

async fn run_link(addr: SocketAddr, cfg: LeafConfig, to_mgr: mpsc::Sender<FromLink>) {
    let mut link = match LeafLink::connect(addr, cfg).await {
        Ok(l) => l,
        Err(e) => {
            let tries = match &e {
                LinkError::Refused(Refusal::Status { try_ultrapeers, .. }) => {
                    try_ultrapeers.clone()
                }
                _ => Vec::new(),
            };
            let _ = to_mgr
                .send(FromLink::Down(addr, e.to_string(), tries))
                .await;
            return;
        }
    };
    let (tx, mut rx) = mpsc::channel(LINK_QUEUE);
    if to_mgr.send(FromLink::Up(addr, tx)).await.is_err() {
        let _ = link.bye(200, "Closing").await;
        return;
    }
    loop {
        tokio::select! {
            e = link.next_event() => match e {
                Some(e) => {
                    if to_mgr.send(FromLink::Event(addr, e)).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            c = rx.recv() => {
                let sent = match c {
                    Some(LinkCmd::Query(g, text)) => link.query_with_guid(g, &text, vec![]).await,
                    Some(LinkCmd::Answer(q, r)) => link.answer(q, r).await,
                    Some(LinkCmd::Table(t)) => link.send_route_table((*t).clone()).await,
                    None => {
                        let r = link.bye(200, "Closing").await;
                        tracing::debug!(ultrapeer = %addr, ?r, "Gnutella link closed");
                        return;
                    }
                };
                if sent.is_err() {
                    break;
                }
            }
        }
    }
    let why = match link.finish().await {
        Ok(()) => "closed".to_string(),
        Err(e) => e.to_string(),
    };
    let _ = to_mgr.send(FromLink::Down(addr, why, Vec::new())).await;
}

/// Ultrapeer addresses learned (pongs, refusals' `X-Try-Ultrapeers`,
/// links that worked), newest last, bounded, kept in a file.
struct HostCache {
    path: Option<PathBuf>,
    max: usize,
    list: VecDeque<SocketAddr>,
    dirty: bool,
}

impl HostCache {
    fn load(s: &GnutellaSettings) -> HostCache {
        let mut c = HostCache {
            path: s.host_cache.clone(),
            max: s.host_cache_max,
            list: VecDeque::new(),
            dirty: false,
        };
        if let Some(p) = &c.path {
            if let Ok(text) = read_bounded(p) {
                for line in text.lines() {
                    if let Ok(a) = line.trim().parse::<SocketAddr>() {
                        c.add(a);
                    }
                }
            }
        }
        c.dirty = false;
        c
    }

    fn add(&mut self, a: SocketAddr) {
        if a.port() == 0 || a.ip().is_unspecified() || self.max == 0 {
            return;
        }
        if let Some(i) = self.list.iter().position(|x| *x == a) {
            self.list.remove(i);
        }
        self.list.push_back(a);
        while self.list.len() > self.max {
            self.list.pop_front();
        }
        self.dirty = true;
    }

    /// Newest first.
    fn iter(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.list.iter().rev().copied()
    }

    fn save_if_dirty(&mut self) {
        if self.dirty {
            self.save();
        }
    }

    fn save(&mut self) {
        self.dirty = false;
        let Some(p) = &self.path else { return };
        let text: String = self.list.iter().map(|a| format!("{a}\n")).collect();
        if let Some(dir) = p.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = p.with_extension("tmp");
        let r = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, p));
        if let Err(e) = r {
            tracing::debug!(file = %p.display(), "cannot save the Gnutella host cache: {e}");
        }
    }
}

fn read_bounded(p: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let f = std::fs::File::open(p)?;
    let mut s = String::new();
    f.take(MAX_HOST_FILE).read_to_string(&mut s)?;
    Ok(s)
}

/// The library as the Gnutella uploader sees it: files by SHA-1, or by
/// the index and name our hits gave them, and (for browse host) every file
/// as a result with the origin our hits name.
struct UploadLibrary(Library, Option<rutella_gnutella::browse::HitOrigin>);

impl rutella_gnutella::upload::Library for UploadLibrary {
    fn by_sha1(&self, sha1: &[u8; 20]) -> Option<rutella_gnutella::upload::SharedFile> {
        let f = self.0.by_sha1(sha1)?;
        Some(rutella_gnutella::upload::SharedFile {
            path: f.path,
            size: f.size,
            sha1: *sha1,
            alt_locs: Vec::new(),
        })
    }

    fn by_index(&self, index: u32, name: &str) -> Option<rutella_gnutella::upload::SharedFile> {
        // The name is the last component; the index tells which file of
        // that name (a hash of its shared path).
        let rel = self
            .0
            .search(name, 256)
            .into_iter()
            .find(|f| file_name(&f.name) == name && index_of(&f.name) == index)?;
        let f = self.0.resolve(&rel.name).ok()?;
        // A file is served by index only once its SHA-1 is known (the
        // uploader names it in `X-Gnutella-Content-URN`).
        let sha1 = f.sha1?;
        Some(rutella_gnutella::upload::SharedFile {
            path: f.path,
            size: f.size,
            sha1,
            alt_locs: Vec::new(),
        })
    }

    fn browse(&self, max: usize) -> Option<(rutella_gnutella::browse::HitOrigin, Vec<HitResult>)> {
        let origin = self.1?;
        Some((origin, browse_results(&self.0, max)))
    }
}

/// What the hits of browse host say of us, but the address a connection
/// came in on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Origin {
    /// `--advertise`: named instead of the connection's local address.
    pub(crate) advertise: Option<IpAddr>,
    /// Our TCP port.
    pub(crate) tcp_port: u16,
    /// Configured as not reachable: the hits ask for a push.
    pub(crate) firewalled: bool,
    /// Our servent GUID.
    pub(crate) servent_guid: Guid,
}

impl Origin {
    /// The origin for a connection that came in on `local` (IPv4 only:
    /// hits carry an IPv4 address; `None` otherwise).
    pub(crate) fn for_connection(
        &self,
        local: Option<SocketAddr>,
    ) -> Option<rutella_gnutella::browse::HitOrigin> {
        let ip = match (self.advertise, local.map(|a| a.ip().to_canonical())) {
            (Some(IpAddr::V4(a)), _) => a,
            (_, Some(IpAddr::V4(a))) => a,
            _ => return None,
        };
        Some(rutella_gnutella::browse::HitOrigin {
            ip,
            port: self.tcp_port,
            servent: self.servent_guid,
            push: self.firewalled,
            vendor: rutella_gnutella::leaf::VENDOR_CODE,
        })
    }
}

/// Every shared file as a browse result (at most `max`), as our query hits
/// give them: the last name component, the index that `/get/` finds again,
/// `urn:sha1` once hashed.
fn browse_results(lib: &Library, max: usize) -> Vec<HitResult> {
    let mut files = lib.list();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
        .into_iter()
        .take(max)
        .map(|f| HitResult {
            index: index_of(&f.name),
            size: f.size,
            name: file_name(&f.name).as_bytes().to_vec(),
            ext: Extensions {
                urns: f.sha1.map(Urn::Sha1).into_iter().collect(),
                ..Extensions::default()
            },
        })
        .collect()
}

/// The hook that takes HTTP connections on the node's TCP port and serves
/// the library to Gnutella servents (N2R and `/get/`, with `Range` and
/// `HEAD`), `slots` uploads at once.
pub(crate) fn http_hook(
    library: Library,
    slots: usize,
    origin: Origin,
) -> rutella_transfer::HttpHook {
    let cfg = rutella_gnutella::upload::UploadConfig {
        slots: slots.max(1),
        ..rutella_gnutella::upload::UploadConfig::default()
    };
    let up = rutella_gnutella::upload::Uploader::new(
        Arc::new(UploadLibrary(library.clone(), None)),
        cfg,
    );
    rutella_transfer::HttpHook(Arc::new(move |stream, peer, prefix| {
        // Browse host names the address this connection came in on.
        let hits = origin.for_connection(stream.local_addr().ok());
        let up = up.with_library(Arc::new(UploadLibrary(library.clone(), hits)));
        Box::pin(async move {
            match up.serve_after(stream, &prefix).await {
                Ok(s) => {
                    tracing::debug!(%peer, requests = s.requests, bytes = s.bytes, "Gnutella HTTP connection ended");
                    s.bytes
                }
                Err(e) => {
                    tracing::debug!(%peer, "Gnutella HTTP connection failed: {e}");
                    0
                }
            }
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_cache_is_bounded_persisted_and_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/gnutella_hosts");
        let s = GnutellaSettings {
            host_cache: Some(path.clone()),
            host_cache_max: 3,
            ..GnutellaSettings::default()
        };
        let mut c = HostCache::load(&s);
        for p in 1..=5u16 {
            c.add(SocketAddr::from(([127, 0, 0, 1], p)));
        }
        c.add(SocketAddr::from(([0, 0, 0, 0], 7)));
        c.add(SocketAddr::from(([127, 0, 0, 1], 0)));
        c.add(SocketAddr::from(([127, 0, 0, 1], 4)));
        c.save_if_dirty();
        let ports: Vec<u16> = c.iter().map(|a| a.port()).collect();
        assert_eq!(ports, vec![4, 5, 3]);
        let again = HostCache::load(&s);
        let ports: Vec<u16> = again.iter().map(|a| a.port()).collect();
        assert_eq!(ports, vec![4, 5, 3]);
        // Garbage lines are skipped.
        std::fs::write(&path, "junk\n127.0.0.1:9\n\u{1b}[31m\n").unwrap();
        let c = HostCache::load(&s);
        assert_eq!(
            c.iter().collect::<Vec<_>>(),
            vec![SocketAddr::from(([127, 0, 0, 1], 9))]
        );
    }

    #[test]
    fn index_and_file_name() {
        assert_eq!(file_name("a/b/c.mp3"), "c.mp3");
        assert_eq!(file_name("c.mp3"), "c.mp3");
        assert_ne!(index_of("a/c.mp3"), index_of("b/c.mp3"));
        assert_eq!(index_of("a/c.mp3"), index_of("a/c.mp3"));
    }
}
