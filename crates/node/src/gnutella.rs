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
use rutella_gnutella::http::Giv;
use rutella_gnutella::huge::Urn;
use rutella_gnutella::leaf::{new_guid, IncomingQuery, LeafConfig, LeafEvent};
use rutella_gnutella::link::{LeafLink, LinkError};
use rutella_gnutella::push::PushGate;
use rutella_gnutella::qrp::RouteTable;
use rutella_gnutella::upload::{UploadConfig, Uploader};

use rutella_store::Library;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::command::SearchHit;
use crate::gnutella_types::GnutellaSettings;

pub(crate) mod push;

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
    Push {
        via: Option<SocketAddr>,
        servent: Guid,
        index: u32,
        reply: oneshot::Sender<Result<SocketAddr, String>>,
    },
    Sources {
        sha1: [u8; 20],
        reply: oneshot::Sender<Vec<SocketAddr>>,
    },
}

/// Files whose servents are remembered (from hits), and servents per file.
const SEEN_FILES: usize = 1024;
const SERVENTS_PER_FILE: usize = 16;
/// Files whose verified sources are remembered for `X-Alt`, and sources
/// per file.
const ALT_FILES: usize = 1024;
const ALTS_PER_FILE: usize = 16;

/// Servents by SHA-1, and the SHA-1s in the order they came (the oldest
/// forgotten first).
type AltMap = (
    HashMap<[u8; 20], VecDeque<SocketAddrV4>>,
    VecDeque<[u8; 20]>,
);

/// Gnutella servents that served us a file whose SHA-1 then checked out,
/// by that SHA-1, most recent first (bounded both ways): our uploads name
/// them in `X-Alt`.
#[derive(Default)]
pub(crate) struct AltLocs {
    inner: std::sync::Mutex<AltMap>,
}

impl AltLocs {
    /// Notes that `servents` delivered verified data of the file of `sha1`.
    pub(crate) fn served(&self, sha1: [u8; 20], servents: impl IntoIterator<Item = SocketAddr>) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (map, order) = &mut *g;
        for s in servents {
            let SocketAddr::V4(a) = s else { continue };
            if a.port() == 0 || a.ip().is_unspecified() {
                continue;
            }
            let list = map.entry(sha1).or_insert_with(|| {
                order.push_back(sha1);
                VecDeque::new()
            });
            list.retain(|x| *x != a);
            list.push_front(a);
            list.truncate(ALTS_PER_FILE);
        }
        while order.len() > ALT_FILES {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }

    /// The servents known to have the file of `sha1`, most recent first.
    pub(crate) fn of(&self, sha1: &[u8; 20]) -> Vec<SocketAddrV4> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0.get(sha1)
            .map(|l| l.iter().copied().collect())
            .unwrap_or_default()
    }
}

enum LinkCmd {
    Query(Guid, String),
    Answer(IncomingQuery, Vec<HitResult>),
    Table(Arc<RouteTable>),
    Push(Guid, u32, SocketAddrV4),
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
    hub: crate::gnutella::push::GivHub,
    uploader: Uploader<UploadLibrary>,
    library: Library,
    origin: Origin,
    reachable: bool,
    settings: Arc<GnutellaSettings>,
    alts: Arc<AltLocs>,
}

impl GnutellaHandle {
    /// Notes servents that served us verified data of the file of `sha1`
    /// (named in `X-Alt` when we upload it).
    pub(crate) fn served_by(&self, sha1: [u8; 20], servents: impl IntoIterator<Item = SocketAddr>) {
        self.alts.served(sha1, servents);
    }

    /// Downloads waiting for a `GIV`.
    pub(crate) fn hub(&self) -> &crate::gnutella::push::GivHub {
        &self.hub
    }

    /// Whether servents can connect to us (so a Push can be answered).
    pub(crate) fn reachable(&self) -> bool {
        self.reachable
    }

    /// The settings.
    pub(crate) fn settings(&self) -> &GnutellaSettings {
        &self.settings
    }

    /// Sends a Push for file `index` of `servent` through the ultrapeer
    /// `via` (when it is still linked; else through every link). Returns
    /// the ultrapeer it went through.
    pub(crate) async fn push(
        &self,
        via: Option<SocketAddr>,
        servent: Guid,
        index: u32,
    ) -> Result<SocketAddr, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Push {
                via,
                servent,
                index,
                reply,
            })
            .await
            .map_err(|_| "the Gnutella leaf has stopped".to_string())?;
        rx.await
            .map_err(|_| "the Gnutella leaf has stopped".to_string())?
    }

    /// The servents (that take connections) whose hits named this SHA-1.
    pub(crate) async fn sources_of(&self, sha1: [u8; 20]) -> Vec<SocketAddr> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Cmd::Sources { sha1, reply }).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// The hook that takes HTTP connections (and `GIV` connections)
    /// on the node's TCP port.
    pub(crate) fn http_hook(&self) -> rutella_transfer::HttpHook {
        http_hook(
            self.uploader.clone(),
            self.hub.clone(),
            self.library.clone(),
            self.origin,
            self.alts.clone(),
        )
    }

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
    /// Upload slots of Gnutella HTTP (inbound and pushed connections).
    pub(crate) slots: usize,
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
    let hub = crate::gnutella::push::GivHub::new(s.push.clone(), s.leaf.handshake_timeout);
    let alts = Arc::new(AltLocs::default());
    let uploader = Uploader::new(
        Arc::new(UploadLibrary(ctx.library.clone(), None, alts.clone())),
        UploadConfig {
            slots: ctx.slots.max(1),
            ..UploadConfig::default()
        },
    );
    let reachable = !ctx.firewalled;
    let library_for_hook = ctx.library.clone();
    let origin = Origin {
        advertise: ctx.advertise,
        tcp_port: ctx.tcp_port,
        firewalled: ctx.firewalled,
        servent_guid: ctx.servent_guid,
    };
    let settings = Arc::new(s.clone());
    let (cb_tx, cb_rx) = mpsc::channel(s.push.max_connect_backs.max(1));
    let m = Manager {
        seen: HashMap::new(),
        seen_order: VecDeque::new(),
        gate: PushGate::new(s.push.clone()),
        uploader: uploader.clone(),
        cb_tx,
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
    let task = tokio::spawn(m.run(rx, cb_rx, stop));
    (
        GnutellaHandle {
            tx,
            links,
            hub,
            uploader,
            library: library_for_hook,
            origin,
            reachable,
            settings,
            alts,
        },
        task,
    )
}

struct Search {
    text: String,
    hits: mpsc::Sender<SearchHit>,
    until: Instant,
}

struct Manager {
    /// Servents (direct) by the SHA-1 of files their hits named.
    seen: HashMap<[u8; 20], Vec<SocketAddr>>,
    seen_order: VecDeque<[u8; 20]>,
    gate: PushGate,
    uploader: Uploader<UploadLibrary>,
    /// Connect-backs that ended (their gate ids).
    cb_tx: mpsc::Sender<u64>,
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
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Cmd>,
        mut cb_rx: mpsc::Receiver<u64>,
        mut stop: watch::Receiver<bool>,
    ) {
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
        // Links are opened before any command is read, so that a search
        // sent at once finds them being opened (and is not dropped as one
        // nothing could answer).
        self.maintain(&ev_tx);
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
                Some(id) = cb_rx.recv() => self.gate.finished(id),
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
            Cmd::Push {
                via,
                servent,
                index,
                reply,
            } => {
                let _ = reply.send(self.send_push(via, servent, index));
            }
            Cmd::Sources { sha1, reply } => {
                let _ = reply.send(self.seen.get(&sha1).cloned().unwrap_or_default());
            }
        }
    }

    /// Sends a Push through `via` when it is linked, else through every
    /// link; says which ultrapeer it went through.
    fn send_push(
        &self,
        via: Option<SocketAddr>,
        servent: Guid,
        index: u32,
    ) -> Result<SocketAddr, String> {
        if self.ctx.firewalled {
            return Err("this node does not accept connections, so it cannot take a GIV".into());
        }
        let targets: Vec<SocketAddr> = match via.filter(|v| self.links.contains_key(v)) {
            Some(v) => vec![v],
            None => self.links.keys().copied().collect(),
        };
        let mut sent = None;
        for up in targets {
            let Some(me) = self.link_config(up).listen else {
                continue;
            };
            if let Some(tx) = self.links.get(&up) {
                if tx.try_send(LinkCmd::Push(servent, index, me)).is_ok() {
                    sent = sent.or(Some(up));
                }
            }
        }
        sent.ok_or_else(|| "no ultrapeer link to send the push through".to_string())
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
            tokio::spawn(run_link(addr, cfg, self.s.push.push_ttl, tx));
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
                if !self.searches.contains_key(&query) {
                    return;
                }
                let servent = SocketAddr::new(IpAddr::V4(hit.ip), hit.port);
                if hit.port == 0 || hit.ip.is_unspecified() || hit.results.is_empty() {
                    return;
                }
                let push = hit.needs_push();
                if !push {
                    for r in &hit.results {
                        if let Some(h) = r.ext.urns.iter().find_map(|u| u.sha1().copied()) {
                            remember(&mut self.seen, &mut self.seen_order, h, servent);
                        }
                    }
                }
                let Some(s) = self.searches.get(&query) else {
                    return;
                };
                let out = search_hit(hit, servent, Some(addr));
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
            LeafEvent::Push(p) => self.pushed(addr, p),
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

    /// A Push that names us: connect back when the gate admits it (only
    /// to the address it names, within the budgets) and the index is one
    /// of our files.
    fn pushed(&mut self, via: SocketAddr, p: rutella_gnutella::descriptor::Push) {
        let Some(rel) = self
            .ctx
            .library
            .list()
            .into_iter()
            .find(|f| index_of(&f.name) == p.index)
        else {
            tracing::debug!(ultrapeer = %via, index = p.index, "push for a file we do not share; ignored");
            return;
        };
        let cb = match self.gate.admit(&p, std::time::Instant::now()) {
            Ok(cb) => cb,
            Err(e) => {
                tracing::debug!(ultrapeer = %via, to = %SocketAddrV4::new(p.ip, p.port), "push not answered: {e}");
                return;
            }
        };
        let giv = Giv {
            index: cb.index,
            guid: self.leaf.servent_guid,
            name: file_name(&rel.name).to_string(),
        };
        let up = self.uploader.clone();
        let done = self.cb_tx.clone();
        let limit = self.s.push.connect_timeout;
        tokio::spawn(async move {
            let r = crate::gnutella::push::connect_back(cb.to, giv, limit, up).await;
            tracing::debug!(to = %cb.to, ?r, "Gnutella connect-back ended");
            let _ = done.send(cb.id).await;
        });
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
                found.push((f.name, f.size, f.sha1, f.tth));
            }
        }
        if found.is_empty() && !text.trim().is_empty() && text.trim() != "\\" {
            found.extend(
                lib.search(&text, max)
                    .into_iter()
                    .map(|f| (f.name, f.size, f.sha1, f.tth)),
            );
        }
        found
            .into_iter()
            .take(max)
            .map(|(rel, size, sha1, tth)| HitResult {
                index: index_of(&rel),
                size,
                name: file_name(&rel).as_bytes().to_vec(),
                ext: Extensions {
                    urns: hit_urns(sha1, tth),
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

/// Notes that `servent` has the file of `sha1` (bounded both ways).
fn remember(
    seen: &mut HashMap<[u8; 20], Vec<SocketAddr>>,
    order: &mut VecDeque<[u8; 20]>,
    sha1: [u8; 20],
    servent: SocketAddr,
) {
    let list = seen.entry(sha1).or_insert_with(|| {
        order.push_back(sha1);
        Vec::new()
    });
    if !list.contains(&servent) && list.len() < SERVENTS_PER_FILE {
        list.push(servent);
    }
    while order.len() > SEEN_FILES {
        if let Some(old) = order.pop_front() {
            seen.remove(&old);
        }
    }
}

async fn run_link(addr: SocketAddr, cfg: LeafConfig, push_ttl: u8, to_mgr: mpsc::Sender<FromLink>) {
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
                    Some(LinkCmd::Push(g, i, me)) => link.push(g, i, me, push_ttl).await,
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

/// A QueryHit as a search hit. `servent` is where its files are fetched
/// from: the hit's own address, or for browse host the address browsed;
/// `via` the ultrapeer it came through (where a Push goes), if any.
pub(crate) fn search_hit(
    hit: rutella_gnutella::descriptor::QueryHit,
    servent: SocketAddr,
    via: Option<SocketAddr>,
) -> SearchHit {
    let vendor = hit.vendor_code();
    let push = hit.needs_push();
    let files = hit
        .results
        .iter()
        .map(|r| rutella_proto::HitFile {
            name: String::from_utf8_lossy(&r.name).into_owned(),
            size: Some(r.size),
            hash: None,
        })
        .collect();
    let refs = hit
        .results
        .iter()
        .map(|r| crate::gnutella_types::GnutellaFile {
            index: r.index,
            sha1: r.ext.urns.iter().find_map(|u| u.sha1().copied()),
            tth: r.ext.urns.iter().find_map(|u| u.tiger().copied()),
        })
        .collect();
    SearchHit {
        peer: rutella_proto::Peer {
            udp: servent,
            tcp_port: servent.port(),
            rutella: false,
        },
        files,
        push: rutella_proto::PushInfo {
            firewalled: push,
            ..rutella_proto::PushInfo::default()
        },
        gnutella: Some(crate::gnutella_types::GnutellaSource {
            via,
            servent,
            servent_guid: hit.servent,
            push,
            vendor,
            files: refs,
        }),
    }
}

/// The library as the Gnutella uploader sees it: files by SHA-1, or by
/// the index and name our hits gave them, and (for browse host) every file
/// as a result with the origin our hits name.
pub(crate) struct UploadLibrary(
    Library,
    Option<rutella_gnutella::browse::HitOrigin>,
    Arc<AltLocs>,
);

impl rutella_gnutella::upload::Library for UploadLibrary {
    fn by_sha1(&self, sha1: &[u8; 20]) -> Option<rutella_gnutella::upload::SharedFile> {
        let f = self.0.by_sha1(sha1)?;
        Some(rutella_gnutella::upload::SharedFile {
            path: f.path,
            size: f.size,
            sha1: *sha1,
            alt_locs: self.2.of(sha1),
            tth: f.tth,
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
            alt_locs: self.2.of(&sha1),
            tth: f.tth,
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
                urns: hit_urns(f.sha1, f.tth),
                ..Extensions::default()
            },
        })
        .collect()
}

/// The HUGE URNs our hits give a file: `urn:sha1` and, when known,
/// `urn:tree:tiger/:` (only beside a SHA-1, as servents pair them).
fn hit_urns(sha1: Option<[u8; 20]>, tth: Option<[u8; 24]>) -> Vec<Urn> {
    match (sha1, tth) {
        (Some(s), Some(t)) => vec![Urn::Sha1(s), Urn::TreeTiger(t)],
        (Some(s), None) => vec![Urn::Sha1(s)],
        (None, _) => Vec::new(),
    }
}

/// The hook that takes HTTP connections on the node's TCP port and serves
/// the library to Gnutella servents (N2R and `/get/`, with `Range` and
/// `HEAD`, and browse host) with `up`, the hits of browse host naming
/// the address each connection came in on; a connection that starts with
/// `GIV ` goes to the download waiting for it.
fn http_hook(
    up: Uploader<UploadLibrary>,
    hub: crate::gnutella::push::GivHub,
    library: Library,
    origin: Origin,
    alts: Arc<AltLocs>,
) -> rutella_transfer::HttpHook {
    rutella_transfer::HttpHook(Arc::new(move |stream, peer, prefix| {
        let hits = origin.for_connection(stream.local_addr().ok());
        let up = up.with_library(Arc::new(UploadLibrary(library.clone(), hits, alts.clone())));
        let hub = hub.clone();
        Box::pin(async move {
            if prefix.starts_with(b"GIV ") {
                hub.take(stream, peer, prefix).await;
                return 0;
            }
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
