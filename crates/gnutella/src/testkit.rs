//! A small Gnutella 0.6 ultrapeer and HTTP servent for tests and
//! benchmarks, written from the specification, that listen on loopback
//! only.
//!
//! [`TestUltrapeer`] accepts leaves (the three-step handshake, deflate
//! when the leaf accepts it, refusing uncompressed leaves like
//! gtk-gnutella when asked to), answers pings, keeps each leaf's QRP table,
//! answers a leaf's queries from a fixed list of files as if another
//! servent had them, and routes queries to its leaves, collecting their
//! hits. [`TestServent`] serves files over HTTP (N2R and `/get/`) with the
//! crate's uploader.
//!
//! Nothing here trusts more than the rest of the crate: every read is
//! bounded, and failures end the connection, never the process.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::deflate::{Deflater, Inflater};
use crate::descriptor::{
    Descriptor, Extensions, Guid, HitResult, Payload, Pong, Push, Query, QueryHit, Trailer,
};
use crate::framer::Framer;
use crate::handshake::{self, Handshake, StartLine};
use crate::huge::Urn;
use crate::leaf::new_guid;
use crate::qrp::{self, Receiver};
use crate::tiger::HashTree;
use crate::upload::{self, UploadConfig, Uploader};

/// Largest handshake accepted from a leaf.
const MAX_HANDSHAKE: usize = 16 * 1024;
/// Descriptors queued toward one leaf.
const LEAF_QUEUE: usize = 256;

/// A file the ultrapeer's network "has": hits for it name `servent`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestFile {
    /// Its name.
    pub name: String,
    /// Its size.
    pub size: u64,
    /// Its SHA-1, sent as `urn:sha1` in the hit.
    pub sha1: Option<[u8; 20]>,
    /// Its index for `/get/INDEX/NAME`.
    pub index: u32,
}

/// How the test ultrapeer behaves.
#[derive(Clone, Debug)]
pub struct UltrapeerConfig {
    /// Refuse a leaf that does not offer deflate with `403 Gnet connection
    /// not compressed` (as gtk-gnutella does).
    pub require_deflate: bool,
    /// Compress what we send when the leaf accepts it.
    pub compress: bool,
    /// Files answered for a leaf's queries.
    pub files: Vec<TestFile>,
    /// The servent the hits name (where the files can be fetched).
    pub servent: SocketAddrV4,
    /// Hits say the servent is firewalled.
    pub servent_push: bool,
    /// Extra pongs sent in answer to each ping (hosts for host caches).
    pub pong_hosts: Vec<SocketAddrV4>,
    /// `X-Try-Ultrapeers` in the handshake answer.
    pub try_ultrapeers: Vec<SocketAddrV4>,
    /// Time before a leaf's query is answered.
    pub hit_delay: Duration,
    /// The servent GUID the hits give (the one Pushes name).
    pub servent_guid: Guid,
}

impl Default for UltrapeerConfig {
    fn default() -> Self {
        UltrapeerConfig {
            require_deflate: true,
            compress: true,
            files: Vec::new(),
            servent: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 6346),
            servent_push: false,
            pong_hosts: Vec::new(),
            try_ultrapeers: Vec::new(),
            hit_delay: Duration::ZERO,
            servent_guid: [7; 16],
        }
    }
}

/// What a leaf's handshake said.
#[derive(Clone, Debug)]
pub struct LeafInfo {
    /// Its address.
    pub addr: SocketAddr,
    /// Its first handshake message.
    pub hello: Handshake,
    /// It compresses what it sends.
    pub compresses: bool,
    /// We compress what we send it.
    pub compressed: bool,
}

#[derive(Default)]
struct State {
    next_leaf: u64,
    leaves: HashMap<u64, (LeafInfo, mpsc::Sender<Descriptor>)>,
    refused: usize,
    /// Complete route tables, by leaf.
    tables: HashMap<u64, Receiver>,
    /// Route tables completed so far (all leaves).
    tables_done: usize,
    /// Query texts received from leaves.
    queries: Vec<String>,
    /// Hits received from leaves, by query GUID.
    hits: HashMap<Guid, Vec<QueryHit>>,
    /// Byes received.
    byes: Vec<(u16, String)>,
    /// Pushes received from leaves.
    pushes: Vec<Push>,
}

struct Shared {
    cfg: UltrapeerConfig,
    addr: SocketAddr,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    /// Pushes from leaves, for the firewalled servents of the test.
    push_tx: broadcast::Sender<Push>,
}

impl Shared {
    fn update<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let out = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut st)
        };
        self.changed.send_modify(|g| *g += 1);
        out
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&st)
    }
}

/// A running test ultrapeer; dropping it stops accepting (connections end
/// with their leaves).
pub struct TestUltrapeer {
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Drop for TestUltrapeer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl TestUltrapeer {
    /// Listens on `127.0.0.1`, any port.
    pub async fn start(cfg: UltrapeerConfig) -> std::io::Result<TestUltrapeer> {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        TestUltrapeer::start_on(l, cfg)
    }

    /// Serves on a listener the caller bound (loopback, for tests).
    pub fn start_on(l: TcpListener, cfg: UltrapeerConfig) -> std::io::Result<TestUltrapeer> {
        let addr = l.local_addr()?;
        let (changed, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            cfg,
            addr,
            state: Mutex::new(State::default()),
            changed,
            push_tx: broadcast::channel(64).0,
        });
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, peer)) = l.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_leaf(s, stream, peer).await {
                        tracing::debug!(%peer, "test ultrapeer: leaf connection ended: {e}");
                    }
                });
            }
        });
        Ok(TestUltrapeer { shared, accept })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Waits at most `limit` until `cond` holds of the state.
    async fn wait<T>(
        &self,
        limit: Duration,
        mut cond: impl FnMut(&State) -> Option<T>,
    ) -> Option<T> {
        let mut rx = self.shared.changed.subscribe();
        timeout(limit, async {
            loop {
                if let Some(t) = self.shared.read(&mut cond) {
                    return Some(t);
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// The leaves connected now.
    pub fn leaves(&self) -> Vec<LeafInfo> {
        self.shared
            .read(|s| s.leaves.values().map(|(i, _)| i.clone()).collect())
    }

    /// Waits for at least `n` leaves; returns them.
    pub async fn wait_leaves(&self, n: usize, limit: Duration) -> Option<Vec<LeafInfo>> {
        self.wait(limit, |s| {
            (s.leaves.len() >= n).then(|| s.leaves.values().map(|(i, _)| i.clone()).collect())
        })
        .await
    }

    /// Leaves refused (no deflate while it is required).
    pub fn refused(&self) -> usize {
        self.shared.read(|s| s.refused)
    }

    /// Waits until `n` route tables have been completed in all, and
    /// returns the latest complete table of some leaf.
    pub async fn wait_table(&self, n: usize, limit: Duration) -> Option<Receiver> {
        self.wait(limit, |s| {
            (s.tables_done >= n)
                .then(|| s.tables.values().next().cloned())
                .flatten()
        })
        .await
    }

    /// Route tables completed so far.
    pub fn tables_done(&self) -> usize {
        self.shared.read(|s| s.tables_done)
    }

    /// Query texts received from leaves so far.
    pub fn queries(&self) -> Vec<String> {
        self.shared.read(|s| s.queries.clone())
    }

    /// Waits until a query whose text contains `text` has come.
    pub async fn wait_query(&self, text: &str, limit: Duration) -> Option<String> {
        self.wait(limit, |s| {
            s.queries.iter().find(|q| q.contains(text)).cloned()
        })
        .await
    }

    /// Byes received from leaves so far (code, message lossily decoded).
    pub fn byes(&self) -> Vec<(u16, String)> {
        self.shared.read(|s| s.byes.clone())
    }

    /// Pushes received from leaves so far.
    pub fn pushes(&self) -> Vec<Push> {
        self.shared.read(|s| s.pushes.clone())
    }

    /// Waits until `n` Pushes have come from leaves; returns them.
    pub async fn wait_pushes(&self, n: usize, limit: Duration) -> Option<Vec<Push>> {
        self.wait(limit, |s| (s.pushes.len() >= n).then(|| s.pushes.clone()))
            .await
    }

    /// Delivers a Push (TTL 1, hops 1, as routed from another servent) to
    /// every leaf; returns how many leaves it went to.
    pub async fn deliver_push(&self, push: Push) -> usize {
        let d = Descriptor {
            guid: new_guid(),
            ttl: 1,
            hops: 1,
            payload: Payload::Push(push),
        };
        let targets: Vec<mpsc::Sender<Descriptor>> = self
            .shared
            .read(|s| s.leaves.values().map(|(_, tx)| tx.clone()).collect());
        let mut n = 0;
        for tx in targets {
            n += usize::from(tx.send(d.clone()).await.is_ok());
        }
        n
    }

    /// Routes a query (TTL 1, hops 1, as from another servent) to every
    /// leaf whose route table matches it, and collects their hits for at
    /// most `limit` (returning as soon as `want` hits came). Returns the
    /// number of leaves it went to and the hits.
    pub async fn route_query(
        &self,
        text: &str,
        urns: Vec<Urn>,
        want: usize,
        limit: Duration,
    ) -> (usize, Vec<QueryHit>) {
        let guid = new_guid();
        let d = Descriptor {
            guid,
            ttl: 1,
            hops: 1,
            payload: Payload::Query(Query {
                flags: crate::descriptor::query_flags::MARKED,
                criteria: text.as_bytes().to_vec(),
                ext: Extensions {
                    urns,
                    ..Extensions::default()
                },
            }),
        };
        let targets: Vec<mpsc::Sender<Descriptor>> = self.shared.read(|s| {
            s.leaves
                .iter()
                .filter(|(id, _)| s.tables.get(id).is_some_and(|t| t.matches_query(text)))
                .map(|(_, (_, tx))| tx.clone())
                .collect()
        });
        let sent = targets.len();
        for tx in targets {
            let _ = tx.send(d.clone()).await;
        }
        if sent == 0 {
            return (0, Vec::new());
        }
        let hits = self
            .wait(limit, |s| {
                s.hits
                    .get(&guid)
                    .filter(|h| h.iter().map(|h| h.results.len()).sum::<usize>() >= want)
                    .cloned()
            })
            .await
            .unwrap_or_else(|| {
                self.shared
                    .read(|s| s.hits.get(&guid).cloned().unwrap_or_default())
            });
        (sent, hits)
    }
}

async fn read_handshake(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<(Handshake, Vec<u8>)> {
    loop {
        match handshake::parse(buf) {
            Ok(Some((h, used))) => return Ok((h, buf[used..].to_vec())),
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
        if buf.len() > MAX_HANDSHAKE {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        let mut chunk = [0u8; 1024];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn hit_for(cfg: &UltrapeerConfig, files: Vec<HitResult>) -> QueryHit {
    QueryHit {
        port: cfg.servent.port(),
        ip: *cfg.servent.ip(),
        speed: 1000,
        results: files,
        trailer: Some(Trailer::plain(*b"TEST", cfg.servent_push)),
        servent: cfg.servent_guid,
    }
}

/// Whether every keyword of the query is in the name (the usual rule).
fn name_matches(query: &str, name: &str) -> bool {
    let words = qrp::keywords(query);
    let have = qrp::keywords(name);
    !words.is_empty()
        && words
            .iter()
            .all(|w| have.iter().any(|h| h.contains(w.as_str())))
}

async fn serve_leaf(sh: Arc<Shared>, mut s: TcpStream, peer: SocketAddr) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let (hello, _) = read_handshake(&mut s, &mut buf).await?;
    if !matches!(hello.start, StartLine::Connect { .. }) {
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    let leaf_accepts = hello.header_has_token("Accept-Encoding", "deflate");
    if sh.cfg.require_deflate && !leaf_accepts {
        sh.update(|st| st.refused += 1);
        let refuse = Handshake::status(403, "Gnet connection not compressed", vec![]);
        s.write_all(&refuse.encode()).await?;
        return Ok(());
    }
    let compress = sh.cfg.compress && leaf_accepts;
    let mut h = vec![
        ("User-Agent".to_string(), "TestUltrapeer/0.6".to_string()),
        ("X-Ultrapeer".to_string(), "True".to_string()),
        ("X-Query-Routing".to_string(), "0.2".to_string()),
        ("Accept-Encoding".to_string(), "deflate".to_string()),
    ];
    if compress {
        h.push(("Content-Encoding".to_string(), "deflate".to_string()));
    }
    if !sh.cfg.try_ultrapeers.is_empty() {
        let list: Vec<String> = sh
            .cfg
            .try_ultrapeers
            .iter()
            .map(|a| a.to_string())
            .collect();
        h.push(("X-Try-Ultrapeers".to_string(), list.join(",")));
    }
    s.write_all(&Handshake::status(200, "OK", h).encode())
        .await?;
    let mut buf = Vec::new();
    let (fin, rest) = read_handshake(&mut s, &mut buf).await?;
    if fin.code() != Some(200) {
        return Ok(());
    }
    let compresses = fin
        .header("Content-Encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("deflate"));
    let (tx, mut rx) = mpsc::channel(LEAF_QUEUE);
    let info = LeafInfo {
        addr: peer,
        hello,
        compresses,
        compressed: compress,
    };
    let id = sh.update(|st| {
        st.next_leaf += 1;
        let id = st.next_leaf;
        st.leaves.insert(id, (info, tx.clone()));
        id
    });
    let r = leaf_loop(&sh, id, &mut s, rest, compresses, compress, &tx, &mut rx).await;
    sh.update(|st| {
        st.leaves.remove(&id);
    });
    r
}

#[allow(clippy::too_many_arguments)]
async fn leaf_loop(
    sh: &Arc<Shared>,
    id: u64,
    s: &mut TcpStream,
    mut raw: Vec<u8>,
    compresses: bool,
    compress: bool,
    tx: &mpsc::Sender<Descriptor>,
    rx: &mut mpsc::Receiver<Descriptor>,
) -> std::io::Result<()> {
    let mut inflater = compresses.then(Inflater::new);
    let mut deflater = compress.then(Deflater::new);
    let mut framer = Framer::new();
    let mut table = Receiver::new();
    loop {
        // Decode what came.
        let mut plain = Vec::new();
        match &mut inflater {
            Some(z) => loop {
                let before = plain.len();
                let used = z.inflate(&raw, &mut plain, 64 * 1024).map_err(bad)?;
                raw.drain(..used);
                if used == 0 && plain.len() == before {
                    break;
                }
            },
            None => plain = std::mem::take(&mut raw),
        }
        let mut p = 0;
        while p < plain.len() {
            let (n, f) = framer.push(&plain[p..]).map_err(bad)?;
            p += n;
            let Some((h, payload)) = f else { continue };
            let Ok(d) = Descriptor::decode(&h, &payload) else {
                continue;
            };
            match d.payload {
                Payload::Ping(_) => {
                    let mut pongs = vec![SocketAddrV4::new(Ipv4Addr::LOCALHOST, sh.addr.port())];
                    pongs.extend(sh.cfg.pong_hosts.iter().copied());
                    for a in pongs {
                        let _ = tx.try_send(Descriptor {
                            guid: d.guid,
                            ttl: 1,
                            hops: 0,
                            payload: Payload::Pong(Pong {
                                port: a.port(),
                                ip: *a.ip(),
                                files: 0,
                                kbytes: 0,
                                ggep: vec![],
                            }),
                        });
                    }
                }
                Payload::RouteTable(m) => {
                    if table.apply(&m).is_err() {
                        table = Receiver::new();
                        continue;
                    }
                    if table.is_complete() {
                        let t = table.clone();
                        sh.update(|st| {
                            st.tables.insert(id, t);
                            st.tables_done += 1;
                        });
                    }
                }
                Payload::Query(q) => {
                    let text = String::from_utf8_lossy(&q.criteria).into_owned();
                    sh.update(|st| st.queries.push(text.clone()));
                    let files: Vec<HitResult> = sh
                        .cfg
                        .files
                        .iter()
                        .filter(|f| {
                            name_matches(&text, &f.name)
                                || q.ext
                                    .urns
                                    .iter()
                                    .any(|u| u.sha1().is_some_and(|h| Some(*h) == f.sha1))
                        })
                        .map(|f| HitResult {
                            index: f.index,
                            size: f.size,
                            name: f.name.as_bytes().to_vec(),
                            ext: Extensions {
                                urns: f.sha1.map(Urn::Sha1).into_iter().collect(),
                                ..Extensions::default()
                            },
                        })
                        .collect();
                    if !files.is_empty() {
                        let hit = Descriptor {
                            guid: d.guid,
                            ttl: 3,
                            hops: 1,
                            payload: Payload::QueryHit(hit_for(&sh.cfg, files)),
                        };
                        let tx = tx.clone();
                        let delay = sh.cfg.hit_delay;
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = tx.send(hit).await;
                        });
                    }
                }
                Payload::QueryHit(hit) => {
                    sh.update(|st| st.hits.entry(d.guid).or_default().push(hit));
                }
                Payload::Push(p) => {
                    let _ = sh.push_tx.send(p.clone());
                    sh.update(|st| st.pushes.push(p));
                }
                Payload::Bye(b) => {
                    let msg = String::from_utf8_lossy(&b.message).into_owned();
                    sh.update(|st| st.byes.push((b.code, msg)));
                    return Ok(());
                }
                _ => {}
            }
        }
        tokio::select! {
            r = async {
                let mut chunk = [0u8; 16 * 1024];
                let n = s.read(&mut chunk).await?;
                Ok::<_, std::io::Error>(chunk[..n].to_vec())
            } => {
                let got = r?;
                if got.is_empty() {
                    return Ok(());
                }
                raw.extend_from_slice(&got);
            }
            Some(d) = rx.recv() => {
                let bytes = d.encode();
                let wire = match &mut deflater {
                    Some(z) => {
                        let mut w = Vec::new();
                        z.compress(&bytes, &mut w);
                        w
                    }
                    None => bytes,
                };
                s.write_all(&wire).await?;
            }
        }
    }
}

fn bad<E>(_: E) -> std::io::Error {
    std::io::ErrorKind::InvalidData.into()
}

/// A file a [`TestServent`] serves.
#[derive(Clone, Debug)]
pub struct ServedFile {
    /// Its index.
    pub index: u32,
    /// Its name.
    pub name: String,
    /// Where its bytes are.
    pub path: PathBuf,
    /// Its size.
    pub size: u64,
    /// Its SHA-1.
    pub sha1: [u8; 20],
}

struct ServedLibrary(
    Vec<ServedFile>,
    Vec<SocketAddrV4>,
    Vec<([u8; 20], HashTree)>,
);

impl ServedLibrary {
    fn shared(&self, f: &ServedFile) -> upload::SharedFile {
        upload::SharedFile {
            path: f.path.clone(),
            size: f.size,
            sha1: f.sha1,
            alt_locs: self.1.clone(),
            tth: self
                .2
                .iter()
                .find(|(h, _)| *h == f.sha1)
                .map(|(_, t)| t.root()),
        }
    }
}

impl upload::Library for ServedLibrary {
    fn by_sha1(&self, sha1: &[u8; 20]) -> Option<upload::SharedFile> {
        self.0
            .iter()
            .find(|f| &f.sha1 == sha1)
            .map(|f| self.shared(f))
    }
    fn by_index(&self, index: u32, name: &str) -> Option<upload::SharedFile> {
        self.0
            .iter()
            .find(|f| f.index == index && f.name == name)
            .map(|f| self.shared(f))
    }
    fn tree(&self, file: &upload::SharedFile) -> Option<HashTree> {
        self.2
            .iter()
            .find(|(h, _)| *h == file.sha1)
            .map(|(_, t)| t.clone())
    }
}

/// A Gnutella HTTP servent on loopback serving fixed files.
pub struct TestServent {
    addr: SocketAddrV4,
    task: JoinHandle<()>,
}

impl Drop for TestServent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServent {
    /// Serves `files` on `127.0.0.1`, any port.
    pub async fn start(files: Vec<ServedFile>) -> std::io::Result<TestServent> {
        TestServent::start_with_alts(files, vec![]).await
    }

    /// Serves `files`, naming `alt_locs` in `X-Alt`.
    pub async fn start_with_alts(
        files: Vec<ServedFile>,
        alt_locs: Vec<SocketAddrV4>,
    ) -> std::io::Result<TestServent> {
        TestServent::start_with(files, alt_locs, vec![]).await
    }

    /// Serves `files`, naming `alt_locs` in `X-Alt`, and offers for the
    /// file of each SHA-1 of `trees` that Tiger tree (its root in
    /// `X-Thex-URI`, its THEX at N2X): a tree of other bytes than the
    /// file's makes a servent that serves corrupt ranges under a good
    /// tree, or a good file under a wrong one.
    pub async fn start_with(
        files: Vec<ServedFile>,
        alt_locs: Vec<SocketAddrV4>,
        trees: Vec<([u8; 20], HashTree)>,
    ) -> std::io::Result<TestServent> {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = match l.local_addr()? {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => return Err(std::io::ErrorKind::InvalidInput.into()),
        };
        let up = Uploader::new(
            Arc::new(ServedLibrary(files, alt_locs, trees)),
            UploadConfig::default(),
        );
        let task = tokio::spawn(async move {
            let _ = up.run(l).await;
        });
        Ok(TestServent { addr, task })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddrV4 {
        self.addr
    }
}

/// A firewalled servent: it accepts no connection, but answers each Push
/// for its GUID that reaches the test ultrapeer by connecting to the
/// address the Push names, sending `GIV INDEX:GUID/NAME` and serving the
/// HTTP requests that follow with the crate's uploader.
pub struct FirewalledServent {
    task: JoinHandle<()>,
    givs: Arc<std::sync::atomic::AtomicUsize>,
}

impl Drop for FirewalledServent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FirewalledServent {
    /// Serves `files` under `guid` through the Pushes `ultrapeer` receives.
    pub fn start(guid: Guid, files: Vec<ServedFile>, ultrapeer: &TestUltrapeer) -> Self {
        let mut pushes = ultrapeer.shared.push_tx.subscribe();
        let givs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = givs.clone();
        let up = Uploader::new(
            Arc::new(ServedLibrary(files.clone(), vec![], vec![])),
            UploadConfig::default(),
        );
        let task = tokio::spawn(async move {
            loop {
                let p = match pushes.recv().await {
                    Ok(p) => p,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if p.servent != guid {
                    continue;
                }
                let name = files
                    .iter()
                    .find(|f| f.index == p.index)
                    .map(|f| f.name.clone())
                    .unwrap_or_default();
                let up = up.clone();
                let count = count.clone();
                tokio::spawn(async move {
                    let to = SocketAddrV4::new(p.ip, p.port);
                    let Ok(Ok(mut s)) =
                        timeout(Duration::from_secs(5), TcpStream::connect(to)).await
                    else {
                        return;
                    };
                    let giv = crate::http::Giv {
                        index: p.index,
                        guid,
                        name,
                    };
                    if s.write_all(&giv.encode()).await.is_err() {
                        return;
                    }
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let r = up.serve(s).await;
                    tracing::debug!(%to, ?r, "firewalled test servent: pushed connection ended");
                });
            }
        });
        FirewalledServent { task, givs }
    }

    /// GIV connections opened so far.
    pub fn givs(&self) -> usize {
        self.givs.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Reads the `GIV` line a servent sends first on a connection it opened
/// for a Push, within `limit`: the GIV and the connection (nothing follows
/// a GIV before our request).
pub async fn read_giv(
    mut s: TcpStream,
    limit: Duration,
) -> std::io::Result<(crate::http::Giv, TcpStream)> {
    let mut buf = Vec::new();
    let giv = timeout(limit, async {
        loop {
            if !buf.is_empty() {
                match crate::http::parse_giv(&buf) {
                    Ok(Some((g, used))) if used == buf.len() => return Ok(g),
                    Ok(Some(_)) | Err(_) => return Err(bad(())),
                    Ok(None) => {}
                }
            }
            let mut chunk = [0u8; 512];
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    Ok((giv, s))
}
