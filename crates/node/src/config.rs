//! Node settings.

use rutella_proto::lan::{LanConfig, DEFAULT_GROUP, DEFAULT_PORT};
use rutella_proto::{CLASSIC_TCP_PORT, CLASSIC_UDP_PORT};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// How a peer is named by the user: `IP` (a classic peer: UDP 20000, TCP
/// 10000) or `IP:UDPPORT` (a rutella peer, whose TCP port it announces);
/// an IPv6 address is written `[IP]:UDPPORT` (or bare, for the classic
/// ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr {
    /// Its UDP address (never IPv4-mapped).
    pub udp: SocketAddr,
    /// Its TCP port, when known.
    pub tcp_port: Option<u16>,
}

impl PeerAddr {
    /// A peer at this address with the classic ports.
    pub fn classic(ip: IpAddr) -> Self {
        PeerAddr {
            udp: SocketAddr::new(rutella_proto::addr::normalize_ip(ip), CLASSIC_UDP_PORT),
            tcp_port: Some(CLASSIC_TCP_PORT),
        }
    }
}

impl FromStr for PeerAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bare = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(s);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return check(PeerAddr::classic(ip));
        }
        match s.parse::<SocketAddr>() {
            Ok(udp) if udp.port() != 0 => {
                let udp = rutella_proto::addr::normalize(udp);
                check(PeerAddr {
                    udp,
                    tcp_port: (udp.port() == CLASSIC_UDP_PORT).then_some(CLASSIC_TCP_PORT),
                })
            }
            _ => Err(format!(
                "{s:?} is not a peer address: write an IP address such as 192.168.1.100, or IP:UDPPORT such as 127.0.0.1:20001 or [2001:db8::5]:20000"
            )),
        }
    }
}

fn check(p: PeerAddr) -> Result<PeerAddr, String> {
    let ip = p.udp.ip();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if ip.is_unspecified() || broadcast || ip.is_multicast() {
        return Err(format!(
            "{ip} cannot be a peer's address: give the address of a computer running rutella"
        ));
    }
    Ok(p)
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.udp.port() == CLASSIC_UDP_PORT && self.udp.is_ipv4() {
            write!(f, "{}", self.udp.ip())
        } else {
            write!(f, "{}", self.udp)
        }
    }
}

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Shared folders.
    pub shares: Vec<PathBuf>,
    /// Where downloads go; default: `downloads/` inside the first share
    /// (or the current folder when nothing is shared).
    pub downloads: Option<PathBuf>,
    /// Address the sockets bind to. An IPv6 address makes dual-stack
    /// sockets (`::` also takes IPv4 peers); LAN discovery and port mapping
    /// stay IPv4.
    pub bind: IpAddr,
    /// UDP port.
    pub udp_port: u16,
    /// TCP port.
    pub tcp_port: u16,
    /// When a port is taken, use a free one instead of failing (one-shot
    /// commands), saying so in the log.
    pub port_fallback: bool,
    /// Address announced to peers; default: the local address the system
    /// routes to each peer from.
    pub advertise: Option<IpAddr>,
    /// Peers to join through.
    pub connect: Vec<PeerAddr>,
    /// Overlay timers and limits.
    pub overlay: rutella_proto::Config,
    /// Receive buffer asked for the UDP socket, in bytes (0: the system's
    /// default). Default 4 MiB: thousands of small datagrams (the kernel
    /// counts each with its overhead). The system may grant less (Linux: `net.core.rmem_max`).
    pub udp_recv_buffer: usize,
    /// Upload speed limit per upload, bytes per second.
    pub upload_rate_limit: Option<u64>,
    /// Upload speed limit of all uploads together, bytes per second.
    pub upload_limit: Option<u64>,
    /// Download speed limit of all downloads together, bytes per second.
    pub download_limit: Option<u64>,
    /// The most uploads served at once.
    pub max_uploads: usize,
    /// The most downloads running at once (0: no limit); further ones
    /// wait, queued, for a slot.
    pub max_active_downloads: usize,
    /// Deadlines and per-source caps of the transfer server: the time to
    /// send a request header, connections and upload slots per address,
    /// the waiting queue, the idle limit of rutella sessions, and how often
    /// refused connections are logged.
    pub upload_limits: rutella_transfer::ServerLimits,
    /// SQLite file of the library index; `None` keeps it in memory.
    pub db_path: Option<PathBuf>,
    /// Whether the library watches the shares for changes.
    pub watch: bool,
    /// Time allowed to reach a peer's TCP port.
    pub connect_timeout: Duration,
    /// A download that receives nothing for this long fails (resumable).
    pub idle_timeout: Duration,
    /// How often the node checks whether the library changed, to refresh
    /// the summary of its names that a scalable overlay gives neighbours.
    pub library_poll: Duration,
    /// On shutdown, how long uploads in progress may go on before they are cut.
    pub shutdown_grace: Duration,
    /// On shutdown, how long downloads may take to record their progress
    /// and stop before they are aborted.
    pub stop_timeout: Duration,
    /// Deliberately corrupt what this node uploads. Only for testing how
    /// downloaders deal with a bad peer; never set it otherwise.
    pub upload_fault: Option<rutella_transfer::Fault>,
    /// Finding peers on the local link by multicast; `None`: off.
    pub lan: Option<LanSettings>,
    /// Ask the router to forward the ports (UPnP IGD, PCP, NAT-PMP) and
    /// tell peers its external address; `None`: leave the router alone.
    pub port_mapping: Option<crate::PortMapConfig>,
    /// The Mainline DHT: finding peers and sources without an address.
    /// Off by default (the `rutella` program turns it on for its users).
    pub dht: crate::dht::DhtConfig,
    /// Relaying circuits for peers that cannot reach each other: on, with
    /// its limits, unless `enabled` is false (`--no-relay`), in which case
    /// circuits are refused with that reason.
    pub relay: rutella_proto::relay::RelayConfig,
    /// Whether peers can connect to this node: `None` unknown (the
    /// default), `Some(false)` known not (answers then say
    /// `"Firewalled"`, and downloaders push at once). See
    /// [`rutella_proto::Overlay::set_reachable`].
    pub reachable: Option<bool>,
    /// How long a download waits for a pushed connection after sending
    /// the push.
    pub push_timeout: Duration,
    /// The reachability check: asking peers to connect back, and doing it
    /// for peers that ask.
    pub reach: ReachSettings,
    /// Being a leaf of the Gnutella 0.6 network; `None`: off (the
    /// `rutella` program turns it on unless told `--no-gnutella`).
    pub gnutella: Option<crate::gnutella_types::GnutellaSettings>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            shares: Vec::new(),
            downloads: None,
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            udp_port: CLASSIC_UDP_PORT,
            tcp_port: CLASSIC_TCP_PORT,
            port_fallback: false,
            advertise: None,
            connect: Vec::new(),
            overlay: rutella_proto::Config::default(),
            udp_recv_buffer: 4 << 20,
            upload_rate_limit: None,
            upload_limit: None,
            download_limit: None,
            max_uploads: 32,
            max_active_downloads: 0,
            upload_limits: rutella_transfer::ServerLimits::default(),
            db_path: None,
            watch: true,
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            library_poll: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(2),
            stop_timeout: Duration::from_secs(10),
            upload_fault: None,
            lan: None,
            port_mapping: None,
            dht: crate::dht::DhtConfig::default(),
            relay: rutella_proto::relay::RelayConfig::default(),
            reachable: None,
            push_timeout: Duration::from_secs(10),
            reach: ReachSettings::default(),
            gnutella: None,
        }
    }
}

impl NodeConfig {
    /// Where a node keeps its library index by default: `.rutella/library.sqlite`
    /// in the first shared folder (hidden, so never shared), so that hashes
    /// survive restarts. `None` when nothing is shared.
    pub fn default_db_path(&self) -> Option<PathBuf> {
        self.shares
            .first()
            .map(|s| s.join(".rutella").join("library.sqlite"))
    }

    /// The downloads folder this configuration uses.
    pub fn downloads_dir(&self) -> PathBuf {
        match (&self.downloads, self.shares.first()) {
            (Some(d), _) => d.clone(),
            (None, Some(share)) => share.join("downloads"),
            (None, None) => PathBuf::from("downloads"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_addresses() {
        let p: PeerAddr = "192.168.1.100".parse().unwrap();
        assert_eq!(p.udp, "192.168.1.100:20000".parse().unwrap());
        assert_eq!(p.tcp_port, Some(10000));
        let p: PeerAddr = "127.0.0.1:20002".parse().unwrap();
        assert_eq!(p.tcp_port, None);
        assert_eq!(p.to_string(), "127.0.0.1:20002");
        for bad in [
            "",
            "host",
            "1.2.3",
            "0.0.0.0",
            "1.2.3.4:0",
            "1.2.3.4:99999",
            "::",
            "[::]:20000",
            "[::1]:0",
            "::1:20000x",
            "ff02::1",
            "[ff02::1]:20000",
            "255.255.255.255",
        ] {
            assert!(bad.parse::<PeerAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ipv6_peer_addresses() {
        let p: PeerAddr = "[2001:db8::5]:20001".parse().unwrap();
        assert_eq!(p.udp, "[2001:db8::5]:20001".parse().unwrap());
        assert_eq!(p.tcp_port, None);
        assert_eq!(p.to_string(), "[2001:db8::5]:20001");
        // Bare (with or without brackets): the default ports, printed with
        // brackets so that the port cannot be mistaken for part of it.
        for bare in ["::1", "[::1]", "[::1]:20000"] {
            let p: PeerAddr = bare.parse().unwrap();
            assert_eq!(p.udp, "[::1]:20000".parse().unwrap(), "{bare}");
            assert_eq!(p.tcp_port, Some(10000));
            assert_eq!(p.to_string(), "[::1]:20000");
            assert_eq!(p.to_string().parse::<PeerAddr>().unwrap(), p);
        }
        // An IPv4-mapped address is the IPv4 peer.
        let p: PeerAddr = "[::ffff:192.0.2.7]:20001".parse().unwrap();
        assert_eq!(p.udp, "192.0.2.7:20001".parse().unwrap());
        let p: PeerAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(p.to_string(), "192.0.2.7");
    }
}

/// Where and how often LAN discovery talks.
#[derive(Debug, Clone)]
pub struct LanSettings {
    /// The multicast group.
    pub group: Ipv4Addr,
    /// The group's port.
    pub port: u16,
    /// The address of the interface to send and listen on; `None`: the
    /// interface the system routes the group to.
    pub interface: Option<Ipv4Addr>,
    /// Timers and limits.
    pub timers: LanConfig,
}

impl Default for LanSettings {
    fn default() -> Self {
        LanSettings {
            group: DEFAULT_GROUP,
            port: DEFAULT_PORT,
            interface: None,
            timers: LanConfig::default(),
        }
    }
}

/// Settings of the reachability check.
#[derive(Debug, Clone)]
pub struct ReachSettings {
    /// The state machine's timers and budgets (whether to check at all,
    /// how long probers have, how often to check again, the prober side's
    /// rate limits). Its ports and seed are filled in at start.
    pub machine: rutella_proto::reach::ReachConfig,
    /// The TCP port probers are asked to connect to; default: ours (a
    /// port mapping keeps the number). Only for tests and odd setups.
    pub external_tcp_port: Option<u16>,
    /// The UDP port probers send their datagram to; default: ours.
    pub external_udp_port: Option<u16>,
    /// Prober side: the time allowed to connect and exchange the hello.
    pub dial_timeout: Duration,
}

impl Default for ReachSettings {
    fn default() -> Self {
        ReachSettings {
            machine: rutella_proto::reach::ReachConfig::default(),
            external_tcp_port: None,
            external_udp_port: None,
            dial_timeout: Duration::from_secs(5),
        }
    }
}

impl ReachSettings {
    /// The machine's configuration for a node bound to these ports.
    pub(crate) fn machine_config(
        &self,
        udp_port: u16,
        tcp_port: u16,
    ) -> rutella_proto::reach::ReachConfig {
        let mut c = self.machine.clone();
        c.udp_port = self.external_udp_port.unwrap_or(udp_port);
        c.tcp_port = self.external_tcp_port.unwrap_or(tcp_port);
        if c.seed == 0 {
            c.seed = random_seed();
        }
        // A prober must be given the time to try before it is given up on.
        c.timeout = c
            .timeout
            .max(self.dial_timeout + Duration::from_millis(500));
        c
    }
}

/// Tokens must not be guessed: drawn from the process's random keys.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    h.finish()
}
