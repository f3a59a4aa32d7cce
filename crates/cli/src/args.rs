//! Command-line flags, parsed and checked apart from the objects built from them.

use clap::{Args, Parser, Subcommand};
use rutella_node::{NodeConfig, PeerAddr};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

/// rutella: peer-to-peer file sharing in the Gnutella family.
#[derive(Debug, Parser)]
#[command(
    name = "rutella",
    version,
    about,
    long_about = None,
    args_conflicts_with_subcommands = true,
    after_help = "Without a command, rutella opens the interactive console; the first time it asks \
for a folder to share and a peer to join.\n\nExamples:\n  rutella demo                      try it on a small local network\n  \
rutella                           open the console\n  rutella --share ~/Music --connect 192.168.1.100\n  \
rutella search cloud --connect 192.168.1.100 --json\n\nExit codes: 0 success, 1 failure, 2 usage error, \
3 network failure, 4 not found."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    #[command(flatten)]
    pub(crate) console: ConsoleArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a node without a console: share folders, answer searches, serve downloads.
    #[command(
        after_help = "Examples:\n  rutella serve --share ~/Music --connect 192.168.1.100\n  rutella serve --share ./files --bind 127.0.0.2"
    )]
    Serve(ServeArgs),
    /// Run a node with an HTTP JSON control API (and web page) on 127.0.0.1: for a node left running, e.g. as a service.
    #[command(
        after_help = "Examples:\n  rutella daemon --share ~/Music\n  rutella daemon --api-listen 127.0.0.1:8080\n\nThe API address goes into api.json and its token into api-token, both beside\nthe settings file (see `rutella config path`). SIGTERM or Ctrl-C stops it;\nunfinished downloads resume at the next start. See docs/API.md."
    )]
    Daemon(DaemonArgs),
    /// Search the network once for files whose path holds every word, and print the hits.
    #[command(
        after_help = "Examples:\n  rutella search despacito --connect 192.168.1.100\n  rutella search .png --connect 127.0.0.1:20002 --wait 2 --json"
    )]
    Search(SearchArgs),
    /// List the shared files of a Gnutella servent (browse host), and exit.
    #[command(
        after_help = "Examples:\n  rutella browse 192.168.1.7:6346\n  rutella browse 127.0.0.1:6346 --json\n\nIn the console, browse IP:PORT lists them as results that get N downloads."
    )]
    Browse(BrowseArgs),
    /// Download one file, by name from a peer or by hash from every peer that has it, and exit (0 only when the file is complete).
    #[command(
        after_help = "Examples:\n  rutella get --from 192.168.1.100 \"Cloud - Cloud models.png\"\n  rutella get --from 127.0.0.1:20002 music/song.ogg --out ./downloads\n  rutella get 3f1c…(64 hex digits) --connect 192.168.1.100\n\nBy name, the file comes from one peer with the classic exchange. By hash, it\ncomes from every peer that offers it at once, every piece verified.\nOn a terminal a progress bar is drawn (not on a pipe, nor with --json).\nRunning the same command again resumes an interrupted download (Ctrl-C\nstops it with exit code 130)."
    )]
    Get(GetArgs),
    /// Start three peers on this computer with sample files and open the console joined to them.
    #[command(
        after_help = "Examples:\n  rutella demo\n  then type: search ogg   get 1   downloads   quit\n\nEverything the demo creates is removed when it ends."
    )]
    Demo(DemoArgs),
    /// List the downloads of the running daemon (`rutella daemon`), with state, percent, speed and sources.
    #[command(
        after_help = "Examples:\n  rutella downloads\n  rutella downloads --json\n\nThe daemon is found through the settings folder (api.json, api-token);\nwithout one running there is nothing to list (exit code 1)."
    )]
    Downloads {
        /// One JSON object per download, one per line (as GET /api/v1/downloads).
        #[arg(long)]
        json: bool,
    },
    /// Show the running daemon's addresses, peers, shares and reachability, as the console's status.
    #[command(after_help = "Examples:\n  rutella status")]
    Status,
    /// Share one more folder: at once in the running daemon, else from the next start on (settings file).
    #[command(after_help = "Examples:\n  rutella share ~/Music")]
    Share {
        /// The folder.
        dir: PathBuf,
    },
    /// Stop sharing a folder: at once in the running daemon, else from the next start on (settings file).
    #[command(after_help = "Examples:\n  rutella unshare ~/Music")]
    Unshare {
        /// The folder.
        dir: PathBuf,
    },
    /// Show where the settings file is.
    #[command(
        after_help = "Examples:\n  rutella config path\n  RUTELLA_CONFIG=./test.toml rutella config path"
    )]
    Config {
        #[command(subcommand)]
        what: ConfigCommand,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  rutella completions bash > ~/.local/share/bash-completion/completions/rutella\n  rutella completions zsh > ~/.zfunc/_rutella\n  rutella completions fish > ~/.config/fish/completions/rutella.fish"
    )]
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the path of the settings file ($RUTELLA_CONFIG overrides it).
    #[command(after_help = "Examples:\n  rutella config path\n  cat \"$(rutella config path)\"")]
    Path,
}

/// Flags of the interactive console (`rutella` without a command). Flags
/// win over the settings file.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct ConsoleArgs {
    /// A folder to share (repeat for several).
    #[arg(long = "share", value_name = "DIR")]
    pub(crate) shares: Vec<PathBuf>,
    /// A peer to join through: IP (classic ports) or IP:UDPPORT (repeat for several).
    #[arg(long, value_name = "ADDR")]
    pub(crate) connect: Vec<PeerAddr>,
    /// Where downloads go [default: the platform's download folder, e.g.
    /// ~/Downloads, unless it is shared].
    #[arg(long, value_name = "DIR")]
    pub(crate) downloads: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
    /// Address to bind the UDP and TCP ports to [default: 0.0.0.0]; `::`
    /// for IPv6 and IPv4 on the same sockets.
    #[arg(long, value_name = "IP")]
    pub(crate) bind: Option<IpAddr>,
    /// UDP port for pings and searches [default: 20000].
    #[arg(long, value_name = "N")]
    pub(crate) udp_port: Option<u16>,
    /// TCP port for downloads [default: 10000].
    #[arg(long, value_name = "N")]
    pub(crate) tcp_port: Option<u16>,
    /// Address announced to peers.
    #[arg(long, value_name = "IP")]
    pub(crate) advertise: Option<IpAddr>,
    /// Time between ping rounds (e.g. 20s, 500ms).
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    pub(crate) ping_interval: Option<Duration>,
    /// How long a search collects answers.
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    pub(crate) search_timeout: Option<Duration>,
    /// Do not ask the router to forward the ports (UPnP, PCP, NAT-PMP).
    /// Also `port_mapping = false` in the settings file.
    #[arg(long)]
    pub(crate) no_port_mapping: bool,
    #[command(flatten)]
    pub(crate) lan: LanArgs,
    #[command(flatten)]
    pub(crate) dht: DhtArgs,
    /// Drive the running daemon (`rutella daemon`) instead of starting a
    /// node; fails when none runs. Without it the console attaches to a
    /// running daemon by itself, unless --standalone.
    #[arg(long, conflicts_with = "standalone")]
    pub(crate) attach: bool,
    /// Start a node of its own even when a daemon runs.
    #[arg(long)]
    pub(crate) standalone: bool,
    #[command(flatten)]
    pub(crate) gnutella: GnutellaArgs,
}

/// Speed limits over all transfers (flags win over the settings file's
/// `upload_limit` and `download_limit`).
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct LimitArgs {
    /// Upload speed limit of all uploads together: bytes per second, or
    /// with K, M or G (1024-based), e.g. 500K.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub(crate) upload_limit: Option<u64>,
    /// Download speed limit of all downloads together: bytes per second,
    /// or with K, M or G, e.g. 2M.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub(crate) download_limit: Option<u64>,
    /// Downloads running at once; further ones wait, queued, and start
    /// in the list's order as slots free. Default: no limit.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub(crate) max_downloads: Option<u64>,
}

impl LimitArgs {
    /// Sets the node's limits from these flags, else from the settings
    /// file.
    pub(crate) fn apply(&self, cfg: &mut NodeConfig, file: &crate::config_file::ConfigFile) {
        cfg.upload_limit = self.upload_limit.or(file.upload_limit);
        cfg.download_limit = self.download_limit.or(file.download_limit);
        cfg.max_active_downloads = self
            .max_downloads
            .and_then(|n| usize::try_from(n).ok())
            .or(file.max_downloads)
            .unwrap_or(0);
    }
}

/// `500000`, `500K`, `2M`, `1G` (1024-based), at least 1.
pub(crate) fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, scale) = match t.char_indices().last() {
        Some((i, c)) if c.eq_ignore_ascii_case(&'k') => (&t[..i], 1u64 << 10),
        Some((i, c)) if c.eq_ignore_ascii_case(&'m') => (&t[..i], 1 << 20),
        Some((i, c)) if c.eq_ignore_ascii_case(&'g') => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    match num
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
    {
        Some(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "{s:?} is not a speed: write bytes per second, e.g. 500000, 500K or 2M"
        )),
    }
}

/// Flags of LAN discovery.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct LanArgs {
    /// Do not look for peers on the local network, nor tell it about this node.
    #[arg(long)]
    pub(crate) no_lan_discovery: bool,
    /// UDP port of the LAN discovery group [default: 20099]. Given with a
    /// loopback --bind, discovery runs on loopback (off there otherwise).
    /// For tests.
    #[arg(long, value_name = "N", hide = true)]
    pub(crate) lan_port: Option<u16>,
}

impl LanArgs {
    /// The LAN discovery settings for a node bound to `bind`: `None` when
    /// turned off here or by the settings file (`off`), or when bound to
    /// a loopback address without `--lan-port` (loopback is no network).
    pub(crate) fn settings(&self, bind: IpAddr, off: bool) -> Option<rutella_node::LanSettings> {
        // LAN discovery is IPv4: `::` takes its peers, a node bound to one
        // IPv6 address could not talk to them.
        let bind = match bind {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(ip) if ip.is_unspecified() => Ipv4Addr::UNSPECIFIED,
            IpAddr::V6(_) => return None,
        };
        if self.no_lan_discovery || off || (bind.is_loopback() && self.lan_port.is_none()) {
            return None;
        }
        let mut s = rutella_node::LanSettings {
            interface: (!bind.is_unspecified()).then_some(bind),
            ..rutella_node::LanSettings::default()
        };
        if let Some(p) = self.lan_port {
            s.port = p;
        }
        Some(s)
    }
}

/// The BitTorrent DHT flags, for every command that runs a node.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct DhtArgs {
    /// Do not use the BitTorrent DHT to find peers and sources. With it,
    /// the DHT learns your address and the hashes of the files you share.
    #[arg(long, env = "RUTELLA_NO_DHT", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) no_dht: bool,
    /// A DHT node to bootstrap from instead of the public ones (repeat for
    /// several).
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) dht_bootstrap: Vec<String>,
    /// The network to find on the DHT: nodes with different names never
    /// find each other there [default: rutella].
    #[arg(long, value_name = "NAME")]
    pub(crate) network: Option<String>,
    /// Time between DHT announcements and lookups. For tests.
    #[arg(long, value_name = "TIME", hide = true, value_parser = parse_duration)]
    pub(crate) dht_interval: Option<Duration>,
    /// Peers that answered from which on the node stops looking the
    /// network up on the DHT [default: 8]. For tests.
    #[arg(long, value_name = "N", hide = true)]
    pub(crate) dht_enough_peers: Option<usize>,
}

impl DhtArgs {
    /// The DHT settings of these flags and the settings file's keys (the
    /// flags win): on with the public bootstrap nodes unless told otherwise.
    /// `announce`: whether the node announces itself and its files (not a
    /// one-shot command).
    pub(crate) fn config(
        &self,
        file: Option<&crate::config_file::ConfigFile>,
        announce: bool,
    ) -> rutella_node::DhtConfig {
        let file_off = file.and_then(|f| f.dht) == Some(false);
        if self.no_dht || file_off {
            return rutella_node::DhtConfig::default();
        }
        let mut cfg = rutella_node::DhtConfig::public();
        if !self.dht_bootstrap.is_empty() {
            cfg.bootstrap = self.dht_bootstrap.clone();
        } else if let Some(b) = file.and_then(|f| f.dht_bootstrap.clone()) {
            cfg.bootstrap = b;
        }
        if let Some(n) = self
            .network
            .clone()
            .or_else(|| file.and_then(|f| f.network.clone()))
        {
            cfg.network = n;
        }
        if let Some(t) = self.dht_interval {
            cfg.announce_interval = t;
            cfg.lookup_interval = t;
            cfg.hash_interval = t;
            cfg.request_timeout = cfg.request_timeout.min(t.max(Duration::from_millis(100)));
        }
        if let Some(n) = self.dht_enough_peers {
            cfg.enough_peers = n;
        }
        cfg.announce = announce;
        cfg
    }
}

/// The Gnutella 0.6 flags, for every command that runs a node.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct GnutellaArgs {
    /// Stay out of the Gnutella network (no ultrapeer is joined, nothing
    /// is searched or shared there). Also `gnutella = false` in the
    /// settings file.
    #[arg(long, env = "RUTELLA_NO_GNUTELLA", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) no_gnutella: bool,
    /// A Gnutella 0.6 ultrapeer to join as a leaf, IP:PORT (repeat for
    /// several), e.g. 192.0.2.7:6346. Ultrapeers learned meanwhile are
    /// kept in a host cache beside the settings file.
    #[arg(long, value_name = "IP:PORT")]
    pub(crate) gnutella_connect: Vec<std::net::SocketAddr>,
    /// A GWebCache to ask for ultrapeers when there is nothing to join,
    /// http://HOST[:PORT]/PATH (repeat for several; replaces the usual
    /// public ones).
    #[arg(long, value_name = "URL")]
    pub(crate) gnutella_cache: Vec<String>,
    /// A UDP host cache to ask for ultrapeers, HOST:PORT (repeat for
    /// several; replaces the usual public ones).
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) gnutella_uhc: Vec<String>,
    /// Time before a Gnutella ultrapeer that failed is tried again. For
    /// tests.
    #[arg(long, value_name = "TIME", hide = true, value_parser = parse_duration)]
    pub(crate) gnutella_retry: Option<Duration>,
}

impl GnutellaArgs {
    /// The Gnutella settings of these flags and the settings file (the
    /// flags win): on unless told otherwise, with a host cache file
    /// beside the settings file when there is one.
    pub(crate) fn config(
        &self,
        file: Option<&crate::config_file::ConfigFile>,
    ) -> Option<rutella_node::GnutellaSettings> {
        if self.no_gnutella || file.and_then(|f| f.gnutella) == Some(false) {
            return None;
        }
        let mut s = rutella_node::GnutellaSettings {
            connect: self.gnutella_connect.clone(),
            ..rutella_node::GnutellaSettings::default()
        };
        if let Some(t) = self.gnutella_retry {
            s.retry = t;
            s.tick = s.tick.min(t);
        }
        if file.is_some() {
            // Only beside a settings file that exists (never in a shared
            // temporary folder).
            s.host_cache = crate::config_file::path()
                .ok()
                .filter(|p| p.exists())
                .and_then(|p| p.parent().map(|d| d.join("gnutella_hosts")));
        }
        // The host caches: those given, else the usual public ones
        // (never under the test guard).
        let no_public =
            std::env::var(rutella_node::NO_PUBLIC_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
        let given = !self.gnutella_cache.is_empty() || !self.gnutella_uhc.is_empty();
        if given {
            s.gwebcaches = self.gnutella_cache.clone();
            s.udp_host_caches = self.gnutella_uhc.clone();
        } else if !no_public {
            s.gwebcaches = rutella_node::GWEBCACHES
                .iter()
                .map(|c| c.to_string())
                .collect();
            s.udp_host_caches = rutella_node::UDP_HOST_CACHES
                .iter()
                .map(|c| c.to_string())
                .collect();
        }
        // Nothing to join (no address given, none cached, no host cache to
        // ask): stay out.
        if s.connect.is_empty()
            && !s.host_cache.as_ref().is_some_and(|p| p.exists())
            && s.gwebcaches.is_empty()
            && s.udp_host_caches.is_empty()
        {
            return None;
        }
        Some(s)
    }
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How many sample peers to start (1 to 8).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=8))]
    pub(crate) peers: u8,
}

/// Flags every command that runs a node takes.
#[derive(Debug, Args, Clone)]
pub(crate) struct NetArgs {
    /// Address to bind the UDP and TCP ports to; `::` for IPv6 and IPv4 on
    /// the same sockets.
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    pub(crate) bind: IpAddr,
    /// UDP port for pings and searches.
    #[arg(long, value_name = "N", default_value_t = rutella_proto::CLASSIC_UDP_PORT)]
    pub(crate) udp_port: u16,
    /// TCP port for downloads.
    #[arg(long, value_name = "N", default_value_t = rutella_proto::CLASSIC_TCP_PORT)]
    pub(crate) tcp_port: u16,
    /// Address announced to peers (default: the local address that routes to each peer).
    #[arg(long, value_name = "IP")]
    pub(crate) advertise: Option<IpAddr>,
    /// Overlay with other rutella peers: classic (a full mesh, as the
    /// original program) or scalable (bounded neighbours, searches that grow
    /// only as far as needed). Classic peers are served classically in both.
    #[arg(long, value_enum, default_value_t = OverlayMode::Classic)]
    pub(crate) mode: OverlayMode,
    /// Time between ping rounds [default: 20s classic, 60s scalable].
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    pub(crate) ping_interval: Option<Duration>,
    /// How long a ping waits for its pong before the peer is dropped
    /// [default: 5s classic, 10s scalable].
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    pub(crate) pong_timeout: Option<Duration>,
    /// Scalable mode: the most neighbours kept (the target and minimum
    /// degrees are lowered to it). For tests of small networks.
    #[arg(long, value_name = "N", hide = true, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) max_degree: Option<u16>,
    /// Scalable mode: steps of the random walk our join requests take.
    /// For tests of small networks.
    #[arg(long, value_name = "N", hide = true)]
    pub(crate) join_walk: Option<u8>,
    /// Scalable mode: the tier this node may take: auto (a leaf that
    /// becomes an ultrapeer when reachable and ultrapeers are scarce),
    /// ultrapeer, or leaf [default: auto].
    #[arg(long, value_name = "auto|ultrapeer|leaf", value_parser = parse_tier)]
    pub(crate) tier: Option<rutella_proto::Tier>,
    /// Scalable mode: the most leaves an ultrapeer keeps.
    #[arg(long, value_name = "N", hide = true)]
    pub(crate) max_leaves: Option<usize>,
    /// Scalable mode: the ultrapeers a leaf keeps.
    #[arg(long, value_name = "N", hide = true, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) leaf_ultrapeers: Option<u16>,
    /// Scalable mode: how long a capable leaf short of ultrapeers waits
    /// before becoming one (times 1 to 2). For tests.
    #[arg(long, value_name = "TIME", hide = true, value_parser = parse_duration)]
    pub(crate) promote_wait: Option<Duration>,
    /// Scalable mode: the uptime an ultrapeer needs. For tests.
    #[arg(long, value_name = "TIME", hide = true, value_parser = parse_duration)]
    pub(crate) ultrapeer_min_uptime: Option<Duration>,
    /// Scalable mode: how long an ultrapeer with few leaves among many
    /// ultrapeers waits before becoming a leaf (times 1 to 2). For tests.
    #[arg(long, value_name = "TIME", hide = true, value_parser = parse_duration)]
    pub(crate) demote_after: Option<Duration>,
    /// Whether peers can connect to this node: yes, no, or unknown (the
    /// default). With "no", answers say so and downloaders push at once.
    /// For tests until a reachability check decides it.
    #[arg(long, value_name = "yes|no", hide = true, value_parser = parse_reachable)]
    pub(crate) reachable: Option<bool>,
    /// Time allowed to connect to a peer's TCP port.
    #[arg(long, value_name = "TIME", hide = true, value_parser = parse_duration)]
    pub(crate) connect_timeout: Option<Duration>,
    /// How long a download waits for a pushed connection.
    #[arg(long, value_name = "TIME", hide = true, value_parser = parse_duration)]
    pub(crate) push_timeout: Option<Duration>,
    #[command(flatten)]
    pub(crate) lan: LanArgs,
    #[command(flatten)]
    pub(crate) dht: DhtArgs,
    #[command(flatten)]
    pub(crate) gnutella: GnutellaArgs,
}

/// `--reachable yes|no`.
fn parse_tier(s: &str) -> Result<rutella_proto::Tier, String> {
    match s {
        "auto" => Ok(rutella_proto::Tier::Auto),
        "ultrapeer" => Ok(rutella_proto::Tier::Ultrapeer),
        "leaf" => Ok(rutella_proto::Tier::Leaf),
        _ => Err(format!("expected auto, ultrapeer or leaf, got {s:?}")),
    }
}

fn parse_reachable(s: &str) -> Result<bool, String> {
    match s {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(format!("{s:?}: write yes or no")),
    }
}

/// `--port-mapping-protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum MapProtocol {
    /// UPnP Internet Gateway Device.
    Upnp,
    /// Port Control Protocol.
    Pcp,
    /// NAT Port Mapping Protocol.
    Natpmp,
}

impl From<MapProtocol> for rutella_node::PortMapProtocol {
    fn from(p: MapProtocol) -> Self {
        match p {
            MapProtocol::Upnp => rutella_node::PortMapProtocol::Upnp,
            MapProtocol::Pcp => rutella_node::PortMapProtocol::Pcp,
            MapProtocol::Natpmp => rutella_node::PortMapProtocol::NatPmp,
        }
    }
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OverlayMode {
    /// A full mesh kept by ping rounds.
    Classic,
    /// Bounded neighbours, trigram filters, dynamic querying.
    Scalable,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// A folder to share (repeat for several).
    #[arg(long = "share", value_name = "DIR")]
    pub(crate) shares: Vec<PathBuf>,
    /// A peer to join through: IP (classic ports) or IP:UDPPORT (repeat for several).
    #[arg(long, value_name = "ADDR")]
    pub(crate) connect: Vec<PeerAddr>,
    /// Where downloads go (default: downloads/ inside the first share).
    #[arg(long, value_name = "DIR")]
    pub(crate) downloads: Option<PathBuf>,
    /// Upload speed limit of each upload, in bytes per second (see
    /// --upload-limit for all uploads together).
    #[arg(long, value_name = "BYTES")]
    pub(crate) rate_limit: Option<u64>,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
    /// How long a search collects answers.
    #[arg(long, value_name = "TIME", default_value = "5s", value_parser = parse_duration)]
    pub(crate) search_timeout: Duration,
    /// Do not ask the router to forward the ports (UPnP, PCP, NAT-PMP).
    /// Also `port_mapping = false` in the settings file.
    #[arg(long)]
    pub(crate) no_port_mapping: bool,
    /// Do not relay circuits for peers that cannot reach each other;
    /// they are refused with this reason. Also `relay = false` in the
    /// settings file.
    #[arg(long)]
    pub(crate) no_relay: bool,
    /// The most bytes one relayed circuit carries (both ways together);
    /// a circuit that reaches it is closed [default: 268435456].
    #[arg(long, value_name = "BYTES")]
    pub(crate) relay_max_bytes: Option<u64>,
    /// Try only this port-mapping protocol (repeat for several, in order).
    /// For tests of each protocol.
    #[arg(long, value_name = "PROTOCOL", value_enum, hide = true)]
    pub(crate) port_mapping_protocol: Vec<MapProtocol>,
    #[command(flatten)]
    pub(crate) net: NetArgs,
}

#[derive(Debug, Args)]
pub(crate) struct DaemonArgs {
    /// Where the control API listens [default: 127.0.0.1:6347, or a free
    /// port when it is taken]. An address other than loopback is refused
    /// until the token file exists (it is made at the first start).
    #[arg(long, value_name = "ADDR")]
    pub(crate) api_listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub(crate) serve: ServeArgs,
}

#[derive(Debug, Args)]
pub(crate) struct SearchArgs {
    /// Text to look for in file names (case-insensitive, partial).
    pub(crate) text: String,
    /// A peer to join through: IP or IP:UDPPORT. Without it, the search
    /// looks for peers on the local network and through the DHT.
    #[arg(long, value_name = "ADDR")]
    pub(crate) connect: Vec<PeerAddr>,
    /// Seconds to wait for answers.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub(crate) wait: f64,
    /// One JSON object per hit, one per line.
    #[arg(long)]
    pub(crate) json: bool,
    /// Start a node of its own even when a daemon runs (without it, a
    /// running daemon searches, and the node flags below are not used).
    #[arg(long)]
    pub(crate) standalone: bool,
    #[command(flatten)]
    pub(crate) net: NetArgs,
}

#[derive(Debug, Args)]
pub(crate) struct BrowseArgs {
    /// The servent: IP:PORT (its Gnutella port), or IP for port 6346.
    #[arg(value_name = "IP:PORT")]
    pub(crate) addr: String,
    /// Seconds the whole listing may take.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub(crate) wait: f64,
    /// One JSON object per file, one per line.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The file's name as the peer lists it (with --from), or its BLAKE3
    /// hash, 64 hex digits (with --connect).
    #[arg(value_name = "NAME|HASH")]
    pub(crate) name: String,
    /// The peer to download from by name: IP or IP:UDPPORT.
    #[arg(long, value_name = "ADDR")]
    pub(crate) from: Option<PeerAddr>,
    /// Download by hash: join through this peer (default: the sources and
    /// peers found through the DHT), find every peer that offers the hash,
    /// and fetch verified pieces from all of them at once. By name: peers
    /// to join as well (through them a peer that cannot be reached
    /// directly is asked to connect to us).
    #[arg(long, value_name = "ADDR")]
    pub(crate) connect: Vec<PeerAddr>,
    /// Folder to save into [default: the current folder; through a
    /// running daemon, the daemon's downloads folder]. Given, the download
    /// runs in a node of its own.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// Seconds to wait for peers to answer.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub(crate) wait: f64,
    /// Print a JSON report (path, size, resumed_from, received, sources) instead of the path.
    #[arg(long)]
    pub(crate) json: bool,
    /// Start a node of its own even when a daemon runs (without it, a
    /// running daemon downloads into its downloads folder, and the node
    /// flags below are not used).
    #[arg(long)]
    pub(crate) standalone: bool,
    /// Through a running daemon: start the download, print its number and
    /// exit at once (`rutella downloads` follows it).
    #[arg(long, conflicts_with = "standalone")]
    pub(crate) no_wait: bool,
    #[command(flatten)]
    pub(crate) net: NetArgs,
}

/// `150ms`, `20s`, `2m`, or plain seconds (`1.5`).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 && v * scale < 1e9 => {
            Ok(Duration::from_secs_f64(v * scale))
        }
        _ => Err(format!("{s:?} is not a time: write e.g. 500ms, 20s or 2m")),
    }
}

pub(crate) fn secs(v: f64) -> Result<Duration, String> {
    if v.is_finite() && (0.0..1e9).contains(&v) {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(format!("{v} is not a number of seconds"))
    }
}

impl NetArgs {
    /// The node settings these flags describe.
    pub(crate) fn node_config(&self) -> NodeConfig {
        let mut cfg = NodeConfig {
            bind: self.bind,
            udp_port: self.udp_port,
            tcp_port: self.tcp_port,
            advertise: self.advertise,
            reachable: self.reachable,
            ..NodeConfig::default()
        };
        if let Some(t) = self.connect_timeout {
            cfg.connect_timeout = t;
        }
        if let Some(t) = self.push_timeout {
            cfg.push_timeout = t;
        }
        if self.mode == OverlayMode::Scalable {
            cfg.overlay.mode = rutella_proto::Mode::Scalable;
        }
        if let Some(t) = self.ping_interval {
            cfg.overlay.ping_interval = t;
            cfg.overlay.scalable.ping_interval = t;
        }
        if let Some(t) = self.pong_timeout {
            cfg.overlay.pong_timeout = t;
            cfg.overlay.scalable.pong_timeout = t;
            cfg.overlay.scalable.step_wait = cfg.overlay.scalable.step_wait.min(t);
        }
        let sc = &mut cfg.overlay.scalable;
        if let Some(max) = self.max_degree {
            sc.max_degree = usize::from(max);
            sc.target_degree = sc.target_degree.min(sc.max_degree);
            sc.min_degree = sc.min_degree.min(sc.max_degree);
        }
        if let Some(walk) = self.join_walk {
            sc.join_walk = i64::from(walk);
        }
        if let Some(t) = self.tier {
            sc.tier = t;
        }
        if let Some(n) = self.max_leaves {
            sc.max_leaves = n;
        }
        if let Some(n) = self.leaf_ultrapeers {
            sc.leaf_ultrapeers = usize::from(n);
        }
        if let Some(t) = self.promote_wait {
            sc.promote_wait = t;
        }
        if let Some(t) = self.ultrapeer_min_uptime {
            sc.ultrapeer_min_uptime = t;
        }
        if let Some(t) = self.demote_after {
            sc.demote_after = t;
        }
        cfg.overlay.seed = seed();
        cfg.lan = self.lan.settings(self.bind, false);
        cfg.dht = self.dht.config(None, false);
        cfg.gnutella = self.gnutella.config(None);
        cfg
    }
}

pub(crate) fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("500000").unwrap(), 500_000);
        assert_eq!(parse_rate("500K").unwrap(), 500 << 10);
        assert_eq!(parse_rate("2m").unwrap(), 2 << 20);
        assert_eq!(parse_rate("1G").unwrap(), 1 << 30);
        for bad in ["", "0", "K", "-1", "1.5M", "99999999999G"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("150ms").unwrap(), Duration::from_millis(150));
        assert_eq!(parse_duration("20s").unwrap(), Duration::from_secs(20));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        for bad in ["", "x", "-1s", "1e30", "NaNs"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dht_flags_and_settings() {
        use crate::config_file::ConfigFile;
        // On for users, with the public list, announcing.
        let on = DhtArgs::default().config(None, true);
        assert!(on.enabled && on.announce);
        assert_eq!(on.bootstrap.len(), rutella_node::PUBLIC_BOOTSTRAP.len());
        assert_eq!(on.network, "rutella");
        // --no-dht, or dht = false in the file: off.
        let off = DhtArgs {
            no_dht: true,
            ..DhtArgs::default()
        };
        assert!(!off.config(None, true).enabled);
        let file = ConfigFile {
            dht: Some(false),
            ..ConfigFile::default()
        };
        assert!(!DhtArgs::default().config(Some(&file), true).enabled);
        // The file's bootstrap list and network, unless the flags say otherwise.
        let file = ConfigFile {
            dht_bootstrap: Some(vec!["127.0.0.1:6881".into()]),
            network: Some("friends".into()),
            ..ConfigFile::default()
        };
        let c = DhtArgs::default().config(Some(&file), false);
        assert_eq!(c.bootstrap, vec!["127.0.0.1:6881".to_string()]);
        assert_eq!(c.network, "friends");
        assert!(!c.announce);
        let flags = DhtArgs {
            dht_bootstrap: vec!["127.0.0.2:1".into()],
            network: Some("other".into()),
            ..DhtArgs::default()
        };
        let c = flags.config(Some(&file), true);
        assert_eq!(c.bootstrap, vec!["127.0.0.2:1".to_string()]);
        assert_eq!(c.network, "other");
        // The settings file's keys parse.
        let f: ConfigFile = toml::from_str(
            "dht = false\ndht_bootstrap = [\"127.0.0.1:6881\"]\nnetwork = \"friends\"\n",
        )
        .unwrap();
        assert_eq!(f.dht, Some(false));
        assert_eq!(f.network.as_deref(), Some("friends"));
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
