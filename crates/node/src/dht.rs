//! Finding the network and the sources of a file through the BitTorrent
//! Mainline DHT (BEP 5), which BitTorrent clients share: rutella runs no
//! bootstrap service of its own.
//!
//! A node with the DHT on (see [`DhtConfig`]; off by default in the
//! library) runs one `mainline` node (its own UDP socket, a separate port
//! from the overlay's, served by `mainline`'s actor thread) and one task
//! here, which:
//!
//! - announces the node under the network key ([`network_key`]) every
//!   `announce_interval`, with the node's overlay UDP port: the DHT stores
//!   the IP address the announcement came from and that port;
//! - looks the network key up every `lookup_interval` while fewer than
//!   `enough_peers` peers have answered, and gives every address found
//!   (at most `max_candidates`) to the overlay as a candidate, exactly as
//!   a `--connect` address: it becomes a peer only after it answered a ping
//!   from that address, and its pong tells its TCP port;
//! - announces the content hashes of the shared files ([`file_key`]), one
//!   every `hash_interval`, newest first, then round-robin over the library.
//!
//! The DHT only ever hands out candidate addresses; nothing it returns is
//! trusted further than that.

use futures_lite::StreamExt;
use mainline::async_dht::AsyncDht;
use mainline::Id;
use rutella_store::Library;
use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

/// The public DHT bootstrap nodes (those BitTorrent clients use). Only the
/// `rutella` program uses them, as its users' default; the library never
/// falls back to them, and tests never use them.
pub const PUBLIC_BOOTSTRAP: [&str; 4] = [
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "dht.libtorrent.org:25401",
    "relay.pkarr.org:6881",
];

/// When this environment variable is set (to anything but `0` or empty),
/// the node refuses every bootstrap address that is not a loopback
/// `IP:PORT` (host names included) and runs without the DHT instead: a
/// belt and braces for test suites, so that no test can reach the public
/// DHT by mistake.
pub const NO_PUBLIC_ENV: &str = "RUTELLA_TEST_NO_PUBLIC";

/// The network name used when none is given.
pub const DEFAULT_NETWORK: &str = "rutella";

/// DHT settings. The default is **off**, with no bootstrap node: a library
/// user or a test turns it on and names its bootstrap nodes itself.
#[derive(Debug, Clone)]
pub struct DhtConfig {
    /// Whether the node joins the DHT at all.
    pub enabled: bool,
    /// Bootstrap nodes, `HOST:PORT`. Empty: the node starts a DHT of its
    /// own (others may bootstrap from it).
    pub bootstrap: Vec<String>,
    /// The network's name; nodes with different names never find each
    /// other (nor each other's files) through the DHT.
    pub network: String,
    /// UDP port of the DHT node (0: any free port).
    pub port: u16,
    /// Whether the node announces itself and its files. A one-shot command
    /// only looks up.
    pub announce: bool,
    /// How often the node announces itself under the network key.
    pub announce_interval: Duration,
    /// How often the node looks up the network key while it has fewer than
    /// `enough_peers` peers that answered.
    pub lookup_interval: Duration,
    /// Peers that answered from which on the node stops looking up.
    pub enough_peers: usize,
    /// The most addresses one lookup hands to the overlay.
    pub max_candidates: usize,
    /// Time between two announcements of a shared file's hash (the default,
    /// 30 s, is 120 per hour whatever the library's size).
    pub hash_interval: Duration,
    /// The most hashes kept in the announcement queue (32 bytes each, plus
    /// the set that detects new ones): the newest beyond it wait for a
    /// place.
    pub max_hashes: usize,
    /// How long the DHT waits for one answer.
    pub request_timeout: Duration,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            enabled: false,
            bootstrap: Vec::new(),
            network: DEFAULT_NETWORK.to_string(),
            port: 0,
            announce: true,
            announce_interval: Duration::from_secs(15 * 60),
            lookup_interval: Duration::from_secs(60),
            enough_peers: 8,
            max_candidates: 32,
            hash_interval: Duration::from_secs(30),
            max_hashes: 100_000,
            request_timeout: Duration::from_secs(2),
        }
    }
}

impl DhtConfig {
    /// The settings the `rutella` program gives its users: on, with the
    /// public bootstrap nodes.
    pub fn public() -> Self {
        DhtConfig {
            enabled: true,
            bootstrap: PUBLIC_BOOTSTRAP.iter().map(|s| s.to_string()).collect(),
            ..DhtConfig::default()
        }
    }
}

fn sha1_20(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = sha1_smol::Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.digest().bytes()
}

/// The DHT key under which the nodes of a network announce themselves:
/// SHA-1 of `"rutella network:" + name`.
pub fn network_key(name: &str) -> [u8; 20] {
    sha1_20(&[b"rutella network:", name.as_bytes()])
}

/// The DHT key under which the nodes of a network that share a file
/// announce it: SHA-1 of `"rutella file:" + network name + "\0" + the 32
/// bytes of its BLAKE3 hash`. Hashed rather than truncated so that the
/// nodes storing the key learn only that someone shares something (to tell
/// what, they must already know the hash), and so that private networks'
/// files stay apart.
pub fn file_key(network: &str, hash: &[u8; 32]) -> [u8; 20] {
    sha1_20(&[b"rutella file:", network.as_bytes(), b"\0", hash])
}

/// Checks the bootstrap list against [`NO_PUBLIC_ENV`].
fn allowed_bootstrap(list: &[String]) -> Result<(), String> {
    let on = std::env::var(NO_PUBLIC_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
    if !on {
        return Ok(());
    }
    for b in list {
        match b.parse::<SocketAddrV4>() {
            Ok(a) if a.ip().is_loopback() => {}
            _ => {
                return Err(format!(
                    "{NO_PUBLIC_ENV} is set and {b:?} is not a loopback IP:PORT"
                ))
            }
        }
    }
    Ok(())
}

/// A running DHT node, shared by the node's task and its `Client`s.
#[derive(Clone)]
pub(crate) struct Dht {
    dht: Arc<AsyncDht>,
    cfg: Arc<DhtConfig>,
    /// Set once the first bootstrap query ended.
    bootstrapped: Arc<tokio::sync::OnceCell<bool>>,
    /// The UDP port its socket is bound to.
    port: u16,
}

impl Dht {
    /// Starts the DHT node, or says why not (the node runs on without it).
    /// Its settings.
    pub(crate) fn config(&self) -> &DhtConfig {
        &self.cfg
    }

    /// The UDP port the DHT's own socket is bound to.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The name of the network it finds and announces in.
    pub(crate) fn network(&self) -> &str {
        &self.cfg.network
    }

    pub(crate) async fn start(cfg: &DhtConfig, bind: Ipv4Addr) -> Option<Dht> {
        if !cfg.enabled {
            return None;
        }
        if let Err(why) = allowed_bootstrap(&cfg.bootstrap) {
            tracing::warn!("DHT not started: {why}");
            return None;
        }
        let c = cfg.clone();
        // Building resolves host names and spawns the DHT's thread.
        let built = tokio::task::spawn_blocking(move || {
            let mut b = mainline::Dht::builder();
            b.bootstrap(&c.bootstrap)
                .bind_address(bind)
                .request_timeout(c.request_timeout)
                .server_settings(mainline::ServerSettings {
                    // Stored peers of others, should the node become a DHT
                    // server: at most 1,000 keys of 100 peers each.
                    max_info_hashes: 1000,
                    max_peers_per_info_hash: 100,
                    max_immutable_values: 100,
                    max_mutable_values: 100,
                    ..Default::default()
                });
            if c.port != 0 {
                b.port(c.port);
            }
            b.build()
        })
        .await;
        match built {
            Ok(Ok(dht)) => {
                let dht = dht.as_async();
                let addr = dht.info().await.local_addr();
                tracing::info!(%addr, network = %cfg.network, "DHT started");
                Some(Dht {
                    dht: Arc::new(dht),
                    cfg: Arc::new(cfg.clone()),
                    bootstrapped: Arc::new(tokio::sync::OnceCell::new()),
                    port: addr.port(),
                })
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "DHT not started");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "DHT not started");
                None
            }
        }
    }

    /// The addresses announced under a key (at most `max_candidates`),
    /// once the lookup is done.
    /// The DHT (BEP 5) is IPv4: its addresses come back as IPv4 ones.
    pub(crate) async fn lookup(&self, key: [u8; 20]) -> Vec<SocketAddr> {
        let Ok(id) = Id::from_bytes(key) else {
            return Vec::new();
        };
        self.wait_bootstrap().await;
        let mut found = Vec::new();
        let mut seen = HashSet::new();
        let mut stream = self.dht.get_peers(id);
        while let Some(batch) = stream.next().await {
            for a in batch {
                if found.len() < self.cfg.max_candidates && seen.insert(a) {
                    found.push(SocketAddr::V4(a));
                }
            }
        }
        found
    }

    /// Waits (once) for the first bootstrap query to end: a lookup from an
    /// empty routing table may end before it has asked anyone.
    async fn wait_bootstrap(&self) {
        self.bootstrapped
            .get_or_init(|| async {
                let ok = self.dht.bootstrapped().await;
                tracing::debug!(ok, "DHT bootstrap done");
                ok
            })
            .await;
    }

    pub(crate) async fn announce(&self, key: [u8; 20], port: u16) -> bool {
        let Ok(id) = Id::from_bytes(key) else {
            return false;
        };
        self.wait_bootstrap().await;
        match self.dht.announce_peer(id, Some(port)).await {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(error = %e, "DHT announcement failed");
                false
            }
        }
    }
}

/// `own`: the overlay socket's address as bound (0.0.0.0 when bound to
/// every interface). Another node on another loopback address, or on
/// another machine, may well use the same port.
pub(crate) fn is_own(a: &SocketAddr, own: SocketAddr, advertise: Option<IpAddr>) -> bool {
    a.port() == own.port()
        && (a.ip() == own.ip()
            || (own.ip().is_unspecified() && a.ip().is_loopback())
            || advertise == Some(a.ip()))
}

/// The hashes of the shared files in announcement order: a hash not seen
/// before goes to the front (the newest files first), an announced one to
/// the back (round-robin), one gone from the library is dropped when its
/// turn comes. At most `max` hashes.
pub(crate) struct HashQueue {
    queue: VecDeque<[u8; 32]>,
    known: HashSet<[u8; 32]>,
    max: usize,
    generation: Option<(u64, u64, usize)>,
    current: HashSet<[u8; 32]>,
    calls: u32,
}

impl HashQueue {
    pub(crate) fn new(max: usize) -> Self {
        HashQueue {
            queue: VecDeque::new(),
            known: HashSet::new(),
            max,
            generation: None,
            current: HashSet::new(),
            calls: 0,
        }
    }

    /// Reads the library again if it changed since the last time, and
    /// every 20th call anyway (files hashed meanwhile get their turn).
    pub(crate) async fn refresh(&mut self, library: &Library) {
        let s = library.stats();
        let generation = (s.rescans, s.refreshes, library.len());
        self.calls = self.calls.wrapping_add(1);
        if self.generation == Some(generation) && self.calls % 20 != 0 {
            return;
        }
        self.generation = Some(generation);
        let lib = library.clone();
        let listed = tokio::task::spawn_blocking(move || {
            lib.list()
                .into_iter()
                .filter_map(|f| f.hash)
                .collect::<Vec<[u8; 32]>>()
        })
        .await;
        if let Ok(hashes) = listed {
            self.update(hashes);
        }
    }

    /// Takes the library's hashes as they are now.
    pub(crate) fn update(&mut self, hashes: Vec<[u8; 32]>) {
        self.current = hashes.into_iter().collect();
        let mut fresh: Vec<[u8; 32]> = self
            .current
            .iter()
            .filter(|h| !self.known.contains(*h))
            .copied()
            .collect();
        fresh.sort_unstable();
        for h in fresh {
            if self.queue.len() >= self.max {
                break;
            }
            self.known.insert(h);
            self.queue.push_front(h);
        }
    }

    /// The next hash to announce.
    pub(crate) fn next(&mut self) -> Option<[u8; 32]> {
        for _ in 0..self.queue.len() {
            let h = self.queue.pop_front()?;
            if self.current.contains(&h) {
                self.queue.push_back(h);
                return Some(h);
            }
            self.known.remove(&h);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_network_and_kind() {
        assert_ne!(network_key("rutella"), network_key("other"));
        let h = [7u8; 32];
        assert_ne!(file_key("rutella", &h), file_key("other", &h));
        assert_ne!(file_key("rutella", &h), file_key("rutella", &[8u8; 32]));
        // As `printf %s 'rutella network:rutella' | sha1sum` gives it.
        let hex: String = network_key("rutella")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, "58c133c9e35139f9e538214d326ccc541c2b8b7c");
    }

    #[test]
    fn hash_queue_newest_first_then_round_robin() {
        let mut q = HashQueue::new(10);
        q.update(vec![[1; 32], [2; 32]]);
        let a = q.next().unwrap();
        let b = q.next().unwrap();
        assert_ne!(a, b);
        assert_eq!(q.next(), Some(a));
        // A new file jumps the queue.
        q.update(vec![[1; 32], [2; 32], [3; 32]]);
        assert_eq!(q.next(), Some([3; 32]));
        // A removed file is dropped.
        q.update(vec![[3; 32]]);
        assert_eq!(q.next(), Some([3; 32]));
        assert_eq!(q.next(), Some([3; 32]));
        assert_eq!(q.queue.len(), 1);
    }

    #[test]
    fn own_address() {
        let own: SocketAddr = "127.0.66.2:20000".parse().unwrap();
        assert!(is_own(&own, own, None));
        // Another node on another loopback address, same port: not us.
        assert!(!is_own(&"127.0.66.3:20000".parse().unwrap(), own, None));
        assert!(!is_own(&"127.0.66.2:20001".parse().unwrap(), own, None));
        let any: SocketAddr = "0.0.0.0:20000".parse().unwrap();
        assert!(is_own(&"127.0.0.1:20000".parse().unwrap(), any, None));
        assert!(!is_own(&"192.0.2.7:20000".parse().unwrap(), any, None));
        assert!(is_own(
            &"192.0.2.7:20000".parse().unwrap(),
            any,
            Some("192.0.2.7".parse().unwrap())
        ));
    }

    #[test]
    fn hash_queue_is_bounded() {
        let mut q = HashQueue::new(3);
        q.update((0..10u8).map(|i| [i; 32]).collect());
        assert_eq!(q.queue.len(), 3);
        assert_eq!(q.known.len(), 3);
    }

    #[test]
    fn no_public_env_refuses_public_bootstrap() {
        // The variable is process-wide: this test only sets it, and every
        // other test in this crate runs with the DHT off.
        std::env::set_var(NO_PUBLIC_ENV, "1");
        let public: Vec<String> = PUBLIC_BOOTSTRAP.iter().map(|s| s.to_string()).collect();
        assert!(allowed_bootstrap(&public).is_err());
        assert!(allowed_bootstrap(&["10.0.0.1:6881".to_string()]).is_err());
        assert!(allowed_bootstrap(&["127.0.0.1:6881".to_string()]).is_ok());
    }
}
