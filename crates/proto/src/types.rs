//! The overlay's public types: its settings (the scalable mode's too),
//! peers, datagrams to send and events. Both overlay modes and what they
//! share take them from here; only [`crate::overlay`] holds and calls the
//! scalable sub-machine.

use crate::budget::BudgetConfig;
use crate::message::{HitFile, Message, Ports, PunchRole};
use crate::push::{PushConfig, PushInfo};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Settings of an overlay. Every interval and timeout is here so that tests
/// can run in milliseconds.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our UDP port (announced as `"UdpPort"`).
    pub udp_port: u16,
    /// Our TCP port (announced as `"TcpPort"`).
    pub tcp_port: u16,
    /// Time between ping rounds (classic: 20 s).
    pub ping_interval: Duration,
    /// How long a ping round waits for pongs before dropping silent peers (classic: 5 s).
    pub pong_timeout: Duration,
    /// How long a search collects hits (classic: 5 s).
    pub search_timeout: Duration,
    /// TTL of the pings we start (classic: 1).
    pub ping_ttl: i64,
    /// The most peers kept in the list; others are ignored.
    pub max_peers: usize,
    /// The most searches running at once; the oldest is ended to make room.
    pub max_searches: usize,
    /// The most files named in one answer to a query.
    pub max_hits_per_answer: usize,
    /// Seed of the random generator (search ids, the key of the nonces).
    /// The default is drawn from the system's random source; the
    /// simulator and tests set it to be reproducible.
    pub seed: u64,
    /// Which overlay this peer builds with other rutella peers (default
    /// [`Mode::Classic`]). Classic peers are always served classically.
    pub mode: Mode,
    /// Settings of the scalable overlay, used in [`Mode::Scalable`].
    pub scalable: ScalableConfig,
    /// Highest TTL honoured on a classic ping (higher ones are lowered).
    /// The classic program sends 1; every forwarded copy is answered by
    /// all the peers it reaches, so each step multiplies the traffic.
    pub max_ping_ttl: i64,
    /// A short-lived node (a one-shot search or download): its pings and
    /// pongs say `"Transient": true`, so that other nodes answer it but do
    /// not take it for a peer (nor remember or forward it).
    pub transient: bool,
    /// Toward an address that has not answered us from that address, at
    /// most this many times the bytes it sent us (see [`crate::guard`]).
    pub amplification: u64,
    /// Probes per second (pings asking for a pong) toward addresses that
    /// sent us nothing or too little to pay for one: the originators of
    /// forwarded pings, hosts named by others.
    pub probes_per_sec: f64,
    /// How many such probes may go at once after a quiet time.
    pub probe_burst: f64,
    /// Addresses remembered while they prove themselves (bytes in and out,
    /// a ping to forward, a query to answer); the oldest is forgotten.
    pub ledger_size: usize,
    /// Per-source budgets of incoming datagrams (see [`crate::budget`]).
    pub budget: BudgetConfig,
    /// Limits of pushes (see [`crate::push`]).
    pub push: PushConfig,
}

/// The overlay a peer builds with other rutella peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The original program's overlay: a full mesh kept by ping rounds,
    /// every query sent to every known peer.
    #[default]
    Classic,
    /// A bounded neighbour set, trigram Bloom filters of the neighbours'
    /// libraries, and searches that grow only as far as needed (see
    /// [`crate::scalable`]).
    Scalable,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            udp_port: crate::CLASSIC_UDP_PORT,
            tcp_port: crate::CLASSIC_TCP_PORT,
            ping_interval: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(5),
            search_timeout: Duration::from_secs(5),
            ping_ttl: 1,
            max_peers: 4096,
            max_searches: 64,
            max_hits_per_answer: 500,
            // Search ids and nonces must not be predictable: a fresh seed
            // from the system for every overlay, unless a test sets one.
            seed: rand::random(),
            mode: Mode::Classic,
            scalable: ScalableConfig::default(),
            max_ping_ttl: 1,
            transient: false,
            amplification: 3,
            probes_per_sec: 20.0,
            probe_burst: 40.0,
            ledger_size: 4096,
            budget: BudgetConfig::default(),
            push: PushConfig::default(),
        }
    }
}

/// A peer of the overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Peer {
    /// Its UDP address (IP and UDP port), IPv4 or IPv6 (never IPv4-mapped).
    pub udp: SocketAddr,
    /// Its TCP port, for downloads.
    pub tcp_port: u16,
    /// Whether it announced rutella's extensions.
    pub rutella: bool,
}

impl Peer {
    /// The peer whose datagram came from `from`: its address as seen, its
    /// TCP port from the message (the classic one when absent).
    pub fn seen(from: SocketAddr, ports: Ports) -> Self {
        Peer {
            udp: from,
            tcp_port: ports.tcp_or_classic(),
            rutella: ports.is_rutella(),
        }
    }

    pub(crate) fn from_ports(ip: IpAddr, ports: Ports) -> Self {
        Peer {
            udp: SocketAddr::new(ip, ports.udp_or_classic()),
            tcp_port: ports.tcp_or_classic(),
            rutella: ports.is_rutella(),
        }
    }

    /// Its TCP address, for downloads.
    pub fn tcp(&self) -> SocketAddr {
        SocketAddr::new(self.udp.ip(), self.tcp_port)
    }
}

/// Identifies one search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SearchId(pub u64);

/// A datagram the driver must send.
#[derive(Debug, Clone, PartialEq)]
pub struct Transmit {
    /// Where to.
    pub dest: SocketAddr,
    /// What.
    pub message: Message,
    /// The message speaks for us: the driver sets its `"IP"` to our address
    /// as seen from `dest` (see [`Transmit::encode`]).
    pub from_self: bool,
}

impl Transmit {
    /// The bytes to send, with `own_ip` as our address when the message
    /// speaks for us.
    pub fn encode(&self, own_ip: IpAddr) -> Vec<u8> {
        if self.from_self {
            self.message.encode_as(Some(own_ip))
        } else {
            self.message.encode()
        }
    }
}

/// A query from another peer that the driver should answer with
/// [`crate::Overlay::answer_query`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingQuery {
    /// Where the answer goes: the datagram's source.
    pub reply_to: SocketAddr,
    /// The querier.
    pub from: Peer,
    /// What is searched for.
    pub text: String,
    /// The querier's search id, echoed in the answer.
    pub id: Option<u64>,
}

/// Something that happened, for the driver and the user.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A peer joined our list.
    PeerAdded(Peer),
    /// A peer left our list (it missed a ping round).
    PeerRemoved(Peer),
    /// A peer asks for files: answer with [`crate::Overlay::answer_query`].
    Query(IncomingQuery),
    /// Part of a peer's answer to one of our searches (`files` may be empty).
    SearchResult {
        /// Our search.
        search: SearchId,
        /// Who answered.
        peer: Peer,
        /// The files it offers.
        files: Vec<HitFile>,
        /// How it can be reached other than directly (`"PushId"`,
        /// `"Proxies"`, `"Firewalled"`).
        push: PushInfo,
    },
    /// A search ended: its time ran out, or every peer asked has answered.
    SearchFinished {
        /// Our search.
        search: SearchId,
    },
    /// A peer passed on a downloader's push: connect to `target` (TCP) and
    /// start the connection with the pushed introduction and `token`.
    PushRequest {
        /// The downloader's TCP address: the IP its push came from as the
        /// proxy saw it, and the port it gave.
        target: SocketAddr,
        /// What the connection is introduced with.
        token: u64,
        /// The peer that passed the push on.
        via: SocketAddr,
    },
    /// A dial-back message (`"Command"` 6 or 7): for [`crate::Reach`].
    DialBack {
        /// Its source address.
        from: SocketAddr,
        /// Whether the source is a proven rutella peer (a classic peer
        /// or a scalable neighbour that answered our ping with its ports).
        proven_peer: bool,
        /// The message.
        message: crate::message::DialBack,
    },
    /// A proxy (a current peer) set up a hole punch: from the start
    /// moment, open a TCP connection to `peer` from our listening port.
    /// As [`PunchRole::Server`] (we are the firewalled uploader) serve it
    /// like a pushed connection; as [`PunchRole::Client`] it answers an ask
    /// of ours with `token` (the driver drops a go it did not ask for).
    PunchGo {
        /// The other side's external TCP address as the proxy saw it.
        peer: SocketAddr,
        /// Time until both sides start.
        start_in: std::time::Duration,
        /// Which end of the transfer we are.
        role: PunchRole,
        /// The punch's token.
        token: u64,
        /// The proxy.
        via: SocketAddr,
    },
    /// A downloader, through a proxy (a current peer), invites us to a
    /// relay circuit: connect to `relay` as the server side of `circuit`.
    RelayInvite {
        /// The relay's TCP address.
        relay: SocketAddr,
        /// The circuit id.
        circuit: [u8; 16],
        /// The proxy.
        via: SocketAddr,
    },
}

/// Settings of the scalable overlay. The defaults are those measured in
/// `docs/SCALING.md`.
#[derive(Debug, Clone)]
pub struct ScalableConfig {
    /// Below this many neighbours a node looks for more at every chance.
    pub min_degree: usize,
    /// The number of neighbours a node looks for.
    pub target_degree: usize,
    /// The most neighbours a node accepts.
    pub max_degree: usize,
    /// A neighbour silent this long is pinged.
    pub ping_interval: Duration,
    /// A pinged neighbour silent this long after the ping is dropped; also
    /// how long a join request waits for its answer, and the period of the
    /// maintenance timer.
    pub pong_timeout: Duration,
    /// The most hosts kept in the host cache.
    pub host_cache: usize,
    /// Hosts named in one pong.
    pub hosts_per_pong: usize,
    /// Time between two steps of a search.
    pub step_wait: Duration,
    /// The longest a scalable search runs.
    pub max_search_time: Duration,
    /// A search stops growing once this many peers have answered with files.
    pub enough_results: usize,
    /// Estimated messages a search may cost before it stops growing (a
    /// quarter of it once some peer has answered).
    pub query_budget: u32,
    /// Highest TTL a search sends.
    pub max_ttl: i64,
    /// Queries remembered for duplicate suppression.
    pub seen_queries: usize,
    /// Length of the random walk a join request takes before a peer
    /// decides on it, so that neighbours are spread over the network (at
    /// most [`MAX_WALK`](crate::scalable::MAX_WALK)).
    pub join_walk: i64,
    /// Answer datagrams of others passed back for one query, at most.
    pub hits_forwarded_per_query: u32,
    /// A neighbour may start one search (a query it sends as its first
    /// hop) per this interval on average...
    pub neighbour_search_interval: Duration,
    /// ...and this many in a burst. Searches beyond are dropped.
    pub neighbour_search_burst: u32,
    /// A neighbour whose searches were dropped this many times since its
    /// allowance was last full is dropped and refused for
    /// [`ScalableConfig::flooder_refused_for`].
    pub flooder_drops: u32,
    /// How long a neighbour dropped for flooding is refused.
    pub flooder_refused_for: Duration,
    /// The searches a neighbour starts through us (a leaf's run by us, or
    /// the first hop of a neighbour's own) may cost, in estimated
    /// messages, one [`ScalableConfig::query_budget`] per this window on
    /// average...
    pub search_cost_window: Duration,
    /// ...and this many budgets in a burst; a new link to an ultrapeer
    /// starts with one (to a leaf, see
    /// [`ScalableConfig::leaf_search_cost_window`]).
    /// A leaf's search gets what is left (a search of a leaf searching far
    /// more often than a person stays small); a neighbour's query beyond
    /// it is dropped.
    pub search_cost_burst: u32,
    /// A leaf is one searcher: its searches, and the answers they bring,
    /// may cost one [`ScalableConfig::query_budget`] per this window in
    /// all. Each of its [`ScalableConfig::leaf_ultrapeers`] ultrapeers
    /// refills the leaf's bucket at that share of the rate, and runs its
    /// search with a whole budget whenever the bucket is not in debt.
    pub leaf_search_cost_window: Duration,
    /// A leaf linked for less than this is lent no budget: its search
    /// gets only what its bucket holds. Zero (the default) turns this
    /// off: a new leaf's first search, such as a one-shot `rutella
    /// search`, is always young. An ultrapeer under floods of leaves that
    /// link again each time they are dropped can set it (10 s in the
    /// simulator's study).
    pub leaf_loan_after: Duration,
    /// A neighbour whose own answers did not fit its filter this many
    /// times (files whose names it cannot share) is dropped and refused for
    /// [`ScalableConfig::flooder_refused_for`].
    pub false_answer_strikes: u32,
    /// A filter with more than this share of its bits set, in thousandths,
    /// is refused (a node with it is not asked as a leaf, and its answers
    /// are not taken): a filter of all ones would draw every query.
    pub max_filter_fill_permille: u32,
    /// Which tier this node may take (see [`Tier`]).
    pub tier: Tier,
    /// The ultrapeers a leaf keeps links with.
    pub leaf_ultrapeers: usize,
    /// The most leaves an ultrapeer keeps (each with its own filter).
    pub max_leaves: usize,
    /// Upload bandwidth, in kB/s, a node needs to become an ultrapeer.
    pub ultrapeer_min_bandwidth: u32,
    /// Time since its start a node needs to become an ultrapeer.
    pub ultrapeer_min_uptime: Duration,
    /// A capable leaf that has had fewer than
    /// [`ScalableConfig::leaf_ultrapeers`] ultrapeers for this long (times
    /// a random factor between 1 and 2), while ultrapeers refused it for
    /// lack of slots or none was known, becomes an ultrapeer.
    pub promote_wait: Duration,
    /// An ultrapeer with fewer leaves than this...
    pub demote_below_leaves: usize,
    /// ...for this long (times a random factor between 1 and 2), while it
    /// has at least [`ScalableConfig::min_degree`] ultrapeer neighbours
    /// and gains no leaf, becomes a leaf.
    pub demote_after: Duration,
    /// A leaf's search asks one of its ultrapeers to run it; when nothing
    /// came back after this long it asks the next one.
    pub leaf_retry_wait: Duration,
    /// ...or after this long, when that ultrapeer has not said that it
    /// runs the search.
    pub leaf_ack_wait: Duration,
    /// A leaf's search is over once none of the ultrapeers running it is
    /// still growing it, each given at most this long.
    pub leaf_search_wait: Duration,
}

/// The tier a node of the scalable overlay may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tier {
    /// Starts as a leaf; becomes an ultrapeer when reachable, capable and
    /// ultrapeers are scarce, and a leaf again when they are too many.
    #[default]
    Auto,
    /// Always an ultrapeer (a network of these alone is the flat overlay).
    Ultrapeer,
    /// Always a leaf.
    Leaf,
}

impl Default for ScalableConfig {
    fn default() -> Self {
        ScalableConfig {
            min_degree: 8,
            target_degree: 16,
            max_degree: 32,
            ping_interval: Duration::from_secs(60),
            pong_timeout: Duration::from_secs(10),
            host_cache: 1024,
            hosts_per_pong: 8,
            step_wait: Duration::from_millis(800),
            max_search_time: Duration::from_secs(20),
            enough_results: 3,
            query_budget: 3000,
            max_ttl: 3,
            seen_queries: 4096,
            join_walk: 6,
            hits_forwarded_per_query: 64,
            neighbour_search_interval: Duration::from_secs(30),
            neighbour_search_burst: 3,
            flooder_drops: 10,
            flooder_refused_for: Duration::from_secs(600),
            search_cost_window: Duration::from_secs(600),
            search_cost_burst: 3,
            leaf_search_cost_window: Duration::from_secs(7200),
            leaf_loan_after: Duration::ZERO,
            false_answer_strikes: 3,
            max_filter_fill_permille: 500,
            tier: Tier::Auto,
            leaf_ultrapeers: 3,
            max_leaves: 200,
            ultrapeer_min_bandwidth: 64,
            ultrapeer_min_uptime: Duration::from_secs(10),
            promote_wait: Duration::from_secs(20),
            demote_below_leaves: 60,
            demote_after: Duration::from_secs(60),
            leaf_retry_wait: Duration::from_secs(6),
            leaf_ack_wait: Duration::from_secs(2),
            leaf_search_wait: Duration::from_secs(20),
        }
    }
}
