//! The Gnutella leaf's settings and what its hits say (types only, so
//! that the configuration and the search results need nothing else of
//! the leaf).

use rutella_gnutella::leaf::LeafConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The Gnutella leaf's settings. Every timer and bound is here so tests
/// run in milliseconds.
#[derive(Debug, Clone)]
pub struct GnutellaSettings {
    /// Ultrapeers to join first (`--gnutella-connect IP:PORT`).
    pub connect: Vec<SocketAddr>,
    /// Ultrapeer links kept at once.
    pub max_ultrapeers: usize,
    /// File that keeps learned ultrapeer addresses across runs (one
    /// `IP:PORT` a line); `None`: kept in memory only.
    pub host_cache: Option<PathBuf>,
    /// Addresses kept in the host cache (oldest dropped first).
    pub host_cache_max: usize,
    /// Time before an address that failed or ended is tried again.
    pub retry: Duration,
    /// How often the manager checks its links, searches and the library.
    pub tick: Duration,
    /// Files in one answer to a routed query.
    pub max_results: usize,
    /// Searches running at once (more: the oldest is forgotten).
    pub max_searches: usize,
    /// Push limits and timers (both ways).
    pub push: rutella_gnutella::push::PushConfig,
    /// Downloads from several servents at once.
    pub multi: rutella_gnutella::multi::MultiConfig,
    /// The link's own settings (timers, bounds, deflate); its `listen`,
    /// `servent_guid` and `shared` are set by the node.
    pub leaf: LeafConfig,
    /// GWebCaches (`http://HOST[:PORT]/PATH`) asked for ultrapeers when no
    /// address is given and the host cache is empty. Empty by default; the
    /// command line fills in [`GWEBCACHES`].
    pub gwebcaches: Vec<String>,
    /// UDP host caches (`HOST:PORT`), asked before the GWebCaches. Empty by
    /// default; the command line fills in [`UDP_HOST_CACHES`].
    pub udp_host_caches: Vec<String>,
    /// Caches asked at most per start (UDP and web together).
    pub bootstrap_max_caches: usize,
    /// Time for one cache to answer (name lookup included).
    pub bootstrap_timeout: Duration,
}

/// The usual public GWebCaches (multi-network caches that also answer
/// `net=gnutella`).
pub const GWEBCACHES: &[&str] = &[
    "http://gwc.dyndns.info:28960/gwc.php",
    "http://cache.ce3c.be/",
    "http://dkac.trillinux.org/dkac/dkac.php",
    "http://tenafly5k.com/gwc/skulls.php",
];

/// The usual public UDP host caches.
pub const UDP_HOST_CACHES: &[&str] = &[
    "1.uhc.gtk-gnutella.nl:19104",
    "2.uhc.gtk-gnutella.nl:4876",
    "useast.gnutella.dyslexicfish.net:3558",
    "uswest.gnutella.dyslexicfish.net:3558",
    "uk.gnutella.dyslexicfish.net:3558",
    "au.gnutella.dyslexicfish.net:3558",
];

impl Default for GnutellaSettings {
    fn default() -> Self {
        GnutellaSettings {
            connect: Vec::new(),
            max_ultrapeers: 3,
            host_cache: None,
            host_cache_max: 1000,
            retry: Duration::from_secs(60),
            tick: Duration::from_millis(250),
            max_results: 64,
            max_searches: 64,
            push: rutella_gnutella::push::PushConfig::default(),
            multi: rutella_gnutella::multi::MultiConfig::default(),
            leaf: LeafConfig::default(),
            gwebcaches: Vec::new(),
            udp_host_caches: Vec::new(),
            bootstrap_max_caches: 4,
            bootstrap_timeout: Duration::from_secs(10),
        }
    }
}

/// Where a Gnutella hit came from and how to fetch its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GnutellaSource {
    /// The ultrapeer the hit came through (where a Push goes).
    pub via: Option<SocketAddr>,
    /// The servent's address (HTTP).
    pub servent: SocketAddr,
    /// The servent's GUID (for a Push).
    pub servent_guid: [u8; 16],
    /// The servent says it is firewalled.
    pub push: bool,
    /// Its vendor code (four printable ASCII characters, else `?`).
    pub vendor: String,
    /// Per file of the hit (same order as its `files`): index and SHA-1.
    pub files: Vec<GnutellaFile>,
}

/// What a Gnutella servent said of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GnutellaFile {
    /// Its index for `/get/INDEX/NAME`.
    pub index: u32,
    /// Its SHA-1 (`urn:sha1`), when the hit gave one.
    pub sha1: Option<[u8; 20]>,
    /// The root of its Tiger tree (`urn:tree:tiger` or a bitprint), when
    /// the hit gave one: the download checks each range against the tree.
    pub tth: Option<[u8; 24]>,
}

/// Where the partial file of a Gnutella download of `name` is kept.
pub(crate) fn part_path(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    let base = rutella_transfer::sanitize_basename(name).ok()?;
    Some(dir.join(format!("{base}.part")))
}
