//! The overlay: membership, ping rounds, query fan-out and timeouts, as a
//! deterministic state machine with no sockets, no clock and no threads.
//!
//! The driver feeds it datagrams ([`Overlay::handle_datagram`]), the
//! passing of time ([`Overlay::handle_timeout`]) and user commands
//! ([`Overlay::connect`], [`Overlay::search`]), and after each call drains
//! [`Overlay::poll_transmit`] and [`Overlay::poll_event`] and re-arms its
//! timer from [`Overlay::poll_timeout`].

use crate::budget::{Budget, BudgetConfig, Kind};
use crate::guard::Guard;
use crate::message::{
    HitFile, Message, Ping, Pong, Ports, Query, QueryHit, MAX_DATAGRAM, MAX_QUERY_LEN,
};
use crate::scalable::{Dq, ScalableConfig, ScalableState};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Map;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

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
            amplification: 3,
            probes_per_sec: 20.0,
            probe_burst: 40.0,
            ledger_size: 4096,
            budget: BudgetConfig::default(),
        }
    }
}

/// A peer of the overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Peer {
    /// Its UDP address (IP and UDP port).
    pub udp: SocketAddrV4,
    /// Its TCP port, for downloads.
    pub tcp_port: u16,
    /// Whether it announced rutella's extensions.
    pub rutella: bool,
}

impl Peer {
    /// The peer whose datagram came from `from`: its address as seen, its
    /// TCP port from the message (the classic one when absent).
    pub fn seen(from: SocketAddrV4, ports: Ports) -> Self {
        Peer {
            udp: from,
            tcp_port: ports.tcp_or_classic(),
            rutella: ports.is_rutella(),
        }
    }

    pub(crate) fn from_ports(ip: Ipv4Addr, ports: Ports) -> Self {
        Peer {
            udp: SocketAddrV4::new(ip, ports.udp_or_classic()),
            tcp_port: ports.tcp_or_classic(),
            rutella: ports.is_rutella(),
        }
    }

    /// Its TCP address, for downloads.
    pub fn tcp(&self) -> SocketAddrV4 {
        SocketAddrV4::new(*self.udp.ip(), self.tcp_port)
    }
}

/// Identifies one search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SearchId(pub u64);

/// A datagram the driver must send.
#[derive(Debug, Clone, PartialEq)]
pub struct Transmit {
    /// Where to.
    pub dest: SocketAddrV4,
    /// What.
    pub message: Message,
    /// The message speaks for us: the driver sets its `"IP"` to our address
    /// as seen from `dest` (see [`Transmit::encode`]).
    pub from_self: bool,
}

impl Transmit {
    /// The bytes to send, with `own_ip` as our address when the message
    /// speaks for us.
    pub fn encode(&self, own_ip: Ipv4Addr) -> Vec<u8> {
        if self.from_self {
            let mut m = self.message.clone();
            m.set_ip(own_ip);
            m.encode()
        } else {
            self.message.encode()
        }
    }
}

/// A query from another peer that the driver should answer with
/// [`Overlay::answer_query`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingQuery {
    /// Where the answer goes: the datagram's source.
    pub reply_to: SocketAddrV4,
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
    /// A peer asks for files: answer with [`Overlay::answer_query`].
    Query(IncomingQuery),
    /// Part of a peer's answer to one of our searches (`files` may be empty).
    SearchResult {
        /// Our search.
        search: SearchId,
        /// Who answered.
        peer: Peer,
        /// The files it offers.
        files: Vec<HitFile>,
    },
    /// A search ended: its time ran out, or every peer asked has answered.
    SearchFinished {
        /// Our search.
        search: SearchId,
    },
}

#[derive(Debug)]
struct PeerState {
    info: Peer,
    /// Pinged in the current round and not heard from since.
    awaiting_pong: bool,
    /// When a ping it started was last forwarded.
    last_forward: Option<Instant>,
}

#[derive(Debug)]
pub(crate) struct SearchState {
    pub(crate) text: String,
    pub(crate) deadline: Instant,
    pub(crate) started: u64,
    /// Peers asked that have not sent their last part.
    pub(crate) pending: HashSet<SocketAddrV4>,
    pub(crate) asked: HashSet<SocketAddrV4>,
    /// The scalable part of the search (scalable mode only).
    pub(crate) dq: Option<Dq>,
}

impl SearchState {
    /// Whether nothing more is expected: every classic peer asked has
    /// answered and the scalable part, if any, is over.
    pub(crate) fn complete(&self) -> bool {
        self.pending.is_empty() && self.dq.as_ref().is_none_or(|d| d.done)
    }
}

/// The overlay state machine of one peer (classic mode: a full mesh
/// maintained by ping rounds, queries sent to every known peer).
#[derive(Debug)]
pub struct Overlay {
    pub(crate) config: Config,
    pub(crate) rng: ChaCha8Rng,
    own_ips: HashSet<Ipv4Addr>,
    /// Our address as rutella peers report seeing it (`"Seen"`).
    seen: crate::seen::SeenAddress,
    peers: BTreeMap<SocketAddrV4, PeerState>,
    pub(crate) bootstrap: Vec<SocketAddrV4>,
    next_round: Option<Instant>,
    round_deadline: Option<Instant>,
    pub(crate) searches: BTreeMap<SearchId, SearchState>,
    search_counter: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Neighbours, filters and host cache of the scalable mode.
    pub(crate) sc: Option<ScalableState>,
    /// Addresses that have not proven themselves yet (see [`crate::guard`]).
    pub(crate) guard: Guard,
    /// Per-source budgets of incoming datagrams.
    pub(crate) budget: Budget,
}

/// Cap on queued events and datagrams: a driver that polls after every call
/// never reaches it; it only bounds memory if one does not.
const MAX_QUEUE: usize = 65_536;

impl Overlay {
    /// A new overlay; `now` starts the ping-round clock.
    pub fn new(config: Config, now: Instant) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        let guard = Guard::new(
            key,
            config.ledger_size,
            config.probes_per_sec,
            config.probe_burst,
            now,
        );
        let next_round = Some(now + config.ping_interval);
        let sc = (config.mode == Mode::Scalable).then(|| ScalableState::new(&config, now));
        Overlay {
            sc,
            guard,
            budget: Budget::new(config.budget.clone()),
            config,
            rng,
            own_ips: HashSet::new(),
            seen: crate::seen::SeenAddress::default(),
            peers: BTreeMap::new(),
            bootstrap: Vec::new(),
            next_round,
            round_deadline: None,
            searches: BTreeMap::new(),
            search_counter: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Tells the overlay one of the addresses that name this peer, so that it
    /// never adds itself to its list.
    pub fn add_own_ip(&mut self, ip: Ipv4Addr) {
        self.own_ips.insert(ip);
    }

    /// Our external address as two rutella peers at different addresses
    /// report seeing it (`"Seen"` in their pongs), if they agree.
    pub fn seen_address(&self) -> Option<Ipv4Addr> {
        self.seen.learned()
    }

    /// The lowest of our own addresses, if any is known.
    pub(crate) fn own_ips_first(&self) -> Option<Ipv4Addr> {
        self.own_ips.iter().min().copied()
    }

    pub(crate) fn is_self(&self, addr: SocketAddrV4) -> bool {
        addr.port() == self.config.udp_port && self.own_ips.contains(addr.ip())
    }

    /// The peers currently known.
    pub fn peers(&self) -> Vec<Peer> {
        let mut all: Vec<Peer> = self.peers.values().map(|p| p.info).collect();
        if let Some(sc) = &self.sc {
            all.extend(sc.neighbour_peers());
        }
        all
    }

    /// How many peers have answered: classic peers (an address becomes
    /// one only once it answered us) and scalable neighbours.
    pub fn answered_peers(&self) -> usize {
        self.peers.len() + self.degree()
    }

    /// Joins through `addr`: it is pinged at once, and becomes a peer when
    /// it answers. It is also remembered, and pinged again at every round
    /// while the list is empty, so a node whose only peer was down rejoins
    /// when it comes back. `tcp_port` is unused: the answer tells it.
    pub fn connect(&mut self, now: Instant, addr: SocketAddrV4, tcp_port: u16) {
        if self.sc.is_some() {
            // Ask it to become a neighbour. A classic peer (or a rutella
            // peer in classic mode) answers with a plain pong, which makes
            // it a classic peer.
            self.scalable_connect(now, addr, tcp_port);
            return;
        }
        let _ = tcp_port;
        if self.is_self(addr) {
            return;
        }
        if !self.bootstrap.contains(&addr) && self.bootstrap.len() < 64 {
            self.bootstrap.push(addr);
        }
        self.send_ping(now, addr);
    }

    /// Starts a search: a Query goes to every known peer, and to every peer
    /// that joins while the search runs. Results arrive as
    /// [`Event::SearchResult`], then one [`Event::SearchFinished`].
    pub fn search(&mut self, now: Instant, text: &str) -> SearchId {
        let mut text = text.to_string();
        if text.len() > MAX_QUERY_LEN {
            let mut cut = MAX_QUERY_LEN;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        let id = loop {
            let id = SearchId(self.rng.next_u64());
            if !self.searches.contains_key(&id) {
                break id;
            }
        };
        while self.searches.len() >= self.config.max_searches {
            let oldest = self
                .searches
                .iter()
                .min_by_key(|(_, s)| s.started)
                .map(|(id, _)| *id);
            if let Some(old) = oldest {
                self.finish_search(old);
            }
        }
        self.search_counter += 1;
        let mut state = SearchState {
            text,
            deadline: now + self.config.search_timeout,
            started: self.search_counter,
            pending: HashSet::new(),
            asked: HashSet::new(),
            dq: None,
        };
        if self.sc.is_some() {
            let extra = self.config.scalable.max_search_time;
            state.deadline = state.deadline.max(now + extra);
        }
        let targets: Vec<SocketAddrV4> = self.peers.keys().copied().collect();
        for dest in targets {
            self.send_query(id, &mut state, dest);
        }
        self.searches.insert(id, state);
        if self.sc.is_some() {
            self.scalable_search_start(now, id);
        }
        id
    }

    /// Ends a search early.
    pub fn cancel_search(&mut self, id: SearchId) {
        self.finish_search(id);
    }

    fn send_query(&mut self, id: SearchId, state: &mut SearchState, dest: SocketAddrV4) {
        if !state.asked.insert(dest) {
            return;
        }
        state.pending.insert(dest);
        let message = Message::Query(Query {
            ip: Ipv4Addr::UNSPECIFIED,
            text: state.text.clone(),
            id: Some(id.0),
            ports: self.own_ports(),
            extra: Map::new(),
        });
        self.push_transmit(Transmit {
            dest,
            message,
            from_self: true,
        });
    }

    /// Answers a query reported by [`Event::Query`] with these files (split
    /// into several datagrams when they do not fit in one; an empty list
    /// still sends an empty answer to a classic query). A driver that
    /// builds answers off its event loop uses [`Overlay::plan_answer`].
    pub fn answer_query(&mut self, query: &IncomingQuery, files: &[HitFile]) {
        let plan = self.plan_answer(query);
        for hit in plan.hits(files) {
            self.push_transmit(Transmit {
                dest: plan.dest(),
                message: Message::QueryHit(hit),
                from_self: true,
            });
        }
    }

    /// Feeds one received datagram. Invalid ones, and ones longer than
    /// [`MAX_DATAGRAM`] (which a classic peer would cut), are dropped with a
    /// debug log.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        // Over its source's budget: dropped before parsing, and counted.
        if !self.budget.allow(now, from.ip(), Kind::Datagram) {
            return;
        }
        let SocketAddr::V4(from) = from else {
            tracing::debug!(%from, "dropping datagram from an IPv6 address");
            return;
        };
        if bytes.len() > MAX_DATAGRAM {
            tracing::debug!(%from, len = bytes.len(), "dropping over-long datagram");
            return;
        }
        let message = match Message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(%from, error = %e, "dropping invalid datagram");
                return;
            }
        };
        if let Some(kind) = Kind::of(&message) {
            if !self.budget.allow(now, (*from.ip()).into(), kind) {
                return;
            }
        }
        self.handle_parsed(now, from, message, Some(bytes.len()));
    }

    /// Feeds one parsed message (see [`Overlay::handle_datagram`]).
    pub fn handle_message(&mut self, now: Instant, from: SocketAddrV4, message: Message) {
        self.handle_parsed(now, from, message, None);
    }

    fn handle_parsed(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        message: Message,
        len: Option<usize>,
    ) {
        if self.is_self(from) || from.ip().is_unspecified() || from.port() == 0 {
            return;
        }
        if !self.is_known(&from) {
            // What an unproven address sent pays for what we may send it.
            let len = len.unwrap_or_else(|| message.encode().len());
            self.guard.received(from, len);
        }
        let message = match self.scalable_message(now, from, message) {
            Some(m) => m,
            None => return,
        };
        match message {
            Message::Ping(ping) => self.on_ping(now, from, ping),
            Message::Pong(pong) => self.on_pong(now, from, pong),
            Message::Query(q) => self.on_query(now, from, q),
            Message::QueryHit(hit) => self.on_hit(now, from, hit),
        }
    }

    /// Whether sends to `addr` are not limited: a peer, a scalable
    /// neighbour, an address that answered a probe, or one the user gave.
    pub(crate) fn is_known(&self, addr: &SocketAddrV4) -> bool {
        self.peers.contains_key(addr)
            || self.bootstrap.contains(addr)
            || self.guard.proven(addr)
            || self.sc.as_ref().is_some_and(|sc| sc.knows(addr))
    }

    fn on_ping(&mut self, now: Instant, from: SocketAddrV4, ping: Ping) {
        // The answer goes to the datagram's source, never to the address
        // the message names (for a classic peer they are the same).
        let mut extra = Map::new();
        if let Some(n) = nonce_of(&ping.extra) {
            extra.insert("Echo".into(), serde_json::Value::from(n));
            // Only to rutella pings: classic peers never see the field.
            extra.insert("Seen".into(), serde_json::Value::from(from.to_string()));
        }
        self.push_transmit(Transmit {
            dest: from,
            message: Message::Pong(Pong {
                ip: Ipv4Addr::UNSPECIFIED,
                ports: self.own_ports(),
                extra,
            }),
            from_self: true,
        });
        let ttl = ping.ttl.clamp(0, self.config.max_ping_ttl.max(0));
        let named = Peer::from_ports(ping.ip, ping.ports).udp;
        if ttl == 0 && named != from && self.peers.contains_key(&from) {
            // A ping a peer forwarded: its originator may be new to us.
            // It sent us nothing, so this is a probe from the global budget.
            if !self.is_self(named) && !named.ip().is_unspecified() && !self.is_known(&named) {
                self.probe(now, named);
            }
            // Its ports are the originator's, not the forwarder's.
            self.mark_alive(from, Ports::default());
            return;
        }
        // Sent by `from` itself (behind a NAT its "IP" may differ: the
        // address as seen is what counts).
        let fwd = Ping {
            ip: *from.ip(),
            ttl: ttl - 1,
            ports: Ports {
                udp: (ping.ports.udp.is_some() || from.port() != crate::CLASSIC_UDP_PORT)
                    .then_some(from.port()),
                tcp: ping.ports.tcp,
            },
            extra: Map::new(),
        };
        if self.peers.contains_key(&from) {
            self.mark_alive(from, ping.ports);
            if ttl > 0 {
                self.forward_ping(now, from, fwd);
            }
        } else {
            if ttl > 0 {
                self.guard.entry(from).ping = Some(fwd);
            }
            self.probe(now, from);
        }
    }

    fn on_pong(&mut self, now: Instant, from: SocketAddrV4, pong: Pong) {
        let echo = echo_of(&pong.extra);
        if echo.is_some_and(|e| e != self.guard.token(from)) {
            tracing::debug!(peer = %from, "pong with a wrong echo, dropped");
            return;
        }
        if let (Some(_), Some(seen)) = (echo, crate::seen::parse_seen(&pong.extra)) {
            if let Some(ip) = self.seen.report(*from.ip(), seen) {
                tracing::debug!(external = %ip, "peers agree on our external address");
            }
        }
        if self.peers.contains_key(&from) {
            self.mark_alive(from, pong.ports);
            return;
        }
        // It answers one of our pings: it echoes the nonce we sent to
        // this address, or (a classic peer, which cannot echo) it comes
        // from an address we pinged within the pong timeout.
        let answered = echo.is_some()
            || !pong.ports.is_rutella()
                && self.guard.probed_within(
                    &from,
                    now,
                    self.config.pong_timeout.max(Duration::from_millis(1)) * 2,
                );
        if answered {
            self.validate(now, from, pong.ports);
        } else {
            self.probe(now, from);
        }
    }

    fn on_query(&mut self, now: Instant, from: SocketAddrV4, q: Query) {
        if q.text.len() > MAX_QUERY_LEN {
            tracing::debug!(%from, "dropping over-long query");
            return;
        }
        if self.peers.contains_key(&from) || self.guard.proven(&from) {
            self.mark_alive(from, q.ports);
            self.emit_query(from, q);
        } else {
            // Answered once it has shown it is at that address.
            self.guard.entry(from).query = Some((q, now));
            self.probe(now, from);
        }
    }

    fn emit_query(&mut self, from: SocketAddrV4, q: Query) {
        self.push_event(Event::Query(IncomingQuery {
            reply_to: from,
            from: Peer::seen(from, q.ports),
            text: q.text,
            id: q.id,
        }));
    }

    /// `from` answered one of our pings: it becomes a peer; a ping it
    /// sent is forwarded and a query it sent is answered now.
    fn validate(&mut self, now: Instant, from: SocketAddrV4, ports: Ports) {
        let e = self.guard.entry(from);
        e.proven = true;
        let ping = e.ping.take();
        let query = e.query.take();
        self.add_peer(Peer::seen(from, ports));
        if let Some(fwd) = ping {
            if self.peers.contains_key(&from) {
                self.forward_ping(now, from, fwd);
            }
        }
        if let Some((q, at)) = query {
            if now.saturating_duration_since(at) <= self.config.search_timeout {
                self.emit_query(from, q);
            }
        }
    }

    /// Forwards a ping that peer `from` started to every other peer, at
    /// most once per half ping interval per originator, without fields we
    /// do not know.
    fn forward_ping(&mut self, now: Instant, from: SocketAddrV4, fwd: Ping) {
        let window = self.config.ping_interval / 2;
        let Some(state) = self.peers.get_mut(&from) else {
            return;
        };
        if state
            .last_forward
            .is_some_and(|t| now.saturating_duration_since(t) < window)
        {
            tracing::debug!(peer = %from, "ping forwarded lately, not again");
            return;
        }
        state.last_forward = Some(now);
        let message = Message::Ping(fwd);
        if message.encode().len() > MAX_DATAGRAM {
            return;
        }
        let dests: Vec<SocketAddrV4> = self.peers.keys().copied().filter(|d| *d != from).collect();
        for dest in dests {
            self.push_transmit(Transmit {
                dest,
                message: message.clone(),
                from_self: false,
            });
        }
    }

    /// Sends `dest` a ping asking for a pong that echoes its nonce, at
    /// most once per pong timeout, paid by what `dest` sent us or, failing
    /// that, by the global probe budget.
    pub(crate) fn probe(&mut self, now: Instant, dest: SocketAddrV4) {
        if self.is_self(dest) || dest.ip().is_unspecified() || dest.port() == 0 {
            return;
        }
        if self
            .guard
            .probed_within(&dest, now, self.config.pong_timeout)
        {
            return;
        }
        let t = self.ping_to(dest);
        if self.push_probe(now, t) {
            self.guard.entry(dest).probed = Some(now);
        }
    }

    /// Queues a datagram that asks something of `t.dest` (a probe, a join
    /// request, an offer): free toward a known address, else paid by what
    /// that address sent us, else by the node-wide probe budget. Returns
    /// whether it was queued.
    pub(crate) fn push_probe(&mut self, now: Instant, t: Transmit) -> bool {
        let dest = t.dest;
        let ok = self.is_known(&dest) || {
            let size = t.encode(Ipv4Addr::BROADCAST).len();
            self.guard.entry(dest);
            self.guard.spend(dest, size, self.config.amplification) || self.guard.take_probe(now)
        };
        if ok {
            self.push_unchecked(t);
        } else {
            tracing::debug!(peer = %dest, "probe budget spent, not sending");
        }
        ok
    }

    fn on_hit(&mut self, _now: Instant, from: SocketAddrV4, hit: QueryHit) {
        // Only from a peer a search of ours asked, and for that search.
        let search = match hit.id {
            Some(id) => Some(SearchId(id)).filter(|s| {
                self.searches
                    .get(s)
                    .is_some_and(|st| st.asked.contains(&from))
            }),
            // Classic answers carry no id: the newest search that asked
            // this peer and still waits for it.
            None => self
                .searches
                .iter()
                .filter(|(_, s)| s.asked.contains(&from))
                .max_by_key(|(_, s)| (s.pending.contains(&from), s.started))
                .map(|(id, _)| *id),
        };
        let Some(search) = search else {
            tracing::debug!(peer = %from, "dropping answer to no search that asked it");
            return;
        };
        let peer = Peer::seen(from, hit.ports);
        self.mark_alive(from, hit.ports);
        let mut finished = false;
        if let Some(state) = self.searches.get_mut(&search) {
            if !hit.more {
                state.pending.remove(&from);
            }
            finished = state.complete();
        }
        self.push_event(Event::SearchResult {
            search,
            peer,
            files: hit.files,
        });
        if finished {
            self.finish_search(search);
        }
    }

    /// Whether a search still runs.
    pub fn search_running(&self, id: SearchId) -> bool {
        self.searches.contains_key(&id)
    }

    pub(crate) fn finish_search(&mut self, id: SearchId) {
        if self.searches.remove(&id).is_some() {
            self.push_event(Event::SearchFinished { search: id });
        }
    }

    /// A message came from peer `from`: it is alive this round.
    fn mark_alive(&mut self, from: SocketAddrV4, ports: Ports) {
        if let Some(state) = self.peers.get_mut(&from) {
            state.awaiting_pong = false;
            state.info.rutella |= ports.is_rutella();
            if let Some(tcp) = ports.tcp.filter(|p| *p != 0) {
                state.info.tcp_port = tcp;
            }
        }
    }

    fn add_peer(&mut self, peer: Peer) {
        if self.is_self(peer.udp) || peer.udp.ip().is_unspecified() || peer.udp.port() == 0 {
            return;
        }
        if self.peers.contains_key(&peer.udp) {
            self.mark_alive(
                peer.udp,
                Ports {
                    udp: peer.rutella.then_some(peer.udp.port()),
                    tcp: Some(peer.tcp_port),
                },
            );
            return;
        }
        if self.peers.len() >= self.config.max_peers {
            tracing::debug!(peer = %peer.udp, "peer list full, not adding");
            return;
        }
        self.peers.insert(
            peer.udp,
            PeerState {
                info: peer,
                awaiting_pong: false,
                last_forward: None,
            },
        );
        self.push_event(Event::PeerAdded(peer));
        // A search that is running reaches the newcomer too.
        let running: Vec<SearchId> = self.searches.keys().copied().collect();
        for id in running {
            if let Some(mut state) = self.searches.remove(&id) {
                self.send_query(id, &mut state, peer.udp);
                self.searches.insert(id, state);
            }
        }
    }

    /// When the driver must call [`Overlay::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let searches = self.searches.values().map(|s| s.deadline).min();
        let scalable = self.scalable_timeout();
        [self.next_round, self.round_deadline, searches, scalable]
            .into_iter()
            .flatten()
            .min()
    }

    /// Advances the clock: starts ping rounds, drops silent peers, ends
    /// searches whose time ran out.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.scalable_timeout_fired(now);
        if self.round_deadline.is_some_and(|d| d <= now) {
            self.round_deadline = None;
            let silent: Vec<SocketAddrV4> = self
                .peers
                .iter()
                .filter(|(_, p)| p.awaiting_pong)
                .map(|(a, _)| *a)
                .collect();
            for addr in silent {
                if let Some(p) = self.peers.remove(&addr) {
                    if let Some(e) = self.guard.get_mut(&addr) {
                        e.proven = false;
                    }
                    tracing::debug!(peer = %addr, "peer missed a ping round, removed");
                    self.push_event(Event::PeerRemoved(p.info));
                }
            }
        }
        if self.next_round.is_some_and(|t| t <= now) {
            self.next_round = Some(now + self.config.ping_interval);
            self.round_deadline = Some(now + self.config.pong_timeout);
            if self.peers.is_empty() {
                for addr in self.bootstrap.clone() {
                    self.send_ping(now, addr);
                }
            }
            let addrs: Vec<SocketAddrV4> = self.peers.keys().copied().collect();
            for addr in addrs {
                if let Some(p) = self.peers.get_mut(&addr) {
                    p.awaiting_pong = true;
                }
                self.send_ping(now, addr);
            }
        }
        let expired: Vec<SearchId> = self
            .searches
            .iter()
            .filter(|(_, s)| s.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.finish_search(id);
        }
    }

    /// Our ping to `dest`, with the nonce its pong must echo.
    fn ping_to(&self, dest: SocketAddrV4) -> Transmit {
        let mut extra = Map::new();
        extra.insert(
            "Nonce".into(),
            serde_json::Value::from(self.guard.token(dest)),
        );
        Transmit {
            dest,
            message: Message::Ping(Ping {
                ip: Ipv4Addr::UNSPECIFIED,
                ttl: self.config.ping_ttl,
                ports: self.own_ports(),
                extra,
            }),
            from_self: true,
        }
    }

    /// Pings a peer or an address the user gave.
    fn send_ping(&mut self, now: Instant, dest: SocketAddrV4) {
        let t = self.ping_to(dest);
        self.guard.entry(dest).probed = Some(now);
        self.push_transmit(t);
    }

    pub(crate) fn own_ports(&self) -> Ports {
        Ports::rutella(self.config.udp_port, self.config.tcp_port)
    }

    /// Queues a datagram. Toward an address that has not proven itself it
    /// goes only within the anti-amplification limit (see [`crate::guard`]).
    pub(crate) fn push_transmit(&mut self, t: Transmit) {
        if !self.is_known(&t.dest) {
            let size = t.encode(Ipv4Addr::BROADCAST).len();
            self.guard.entry(t.dest);
            if !self.guard.spend(t.dest, size, self.config.amplification) {
                tracing::debug!(dest = %t.dest, size, "not sending more to an unproven address");
                return;
            }
        }
        self.push_unchecked(t);
    }

    /// Queues a datagram whose cost was checked by the caller.
    pub(crate) fn push_unchecked(&mut self, t: Transmit) {
        if self.transmits.len() >= MAX_QUEUE {
            tracing::warn!("outgoing datagram queue full, dropping one");
            return;
        }
        self.transmits.push_back(t);
    }

    pub(crate) fn push_event(&mut self, e: Event) {
        if self.events.len() >= MAX_QUEUE {
            tracing::warn!("event queue full, dropping one");
            return;
        }
        self.events.push_back(e);
    }

    /// The next datagram to send. Call until `None` after every input.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event. Call until `None` after every input.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

/// The `"Nonce"` of a ping: what its pong must echo.
pub(crate) fn nonce_of(extra: &Map<String, serde_json::Value>) -> Option<u64> {
    extra.get("Nonce").and_then(serde_json::Value::as_u64)
}

/// The `"Echo"` of a pong: the nonce of the ping it answers.
pub(crate) fn echo_of(extra: &Map<String, serde_json::Value>) -> Option<u64> {
    extra.get("Echo").and_then(serde_json::Value::as_u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testnet::Net;

    fn cfg(port: u16) -> Config {
        Config {
            udp_port: port,
            tcp_port: port + 1,
            ping_interval: Duration::from_millis(200),
            pong_timeout: Duration::from_millis(50),
            search_timeout: Duration::from_millis(100),
            ..Config::default()
        }
    }

    /// `n` classic overlays on 127.0.0.1, each sharing a file of its own
    /// and a common one.
    fn classic_net(n: usize) -> Net {
        let now = Instant::now();
        let nodes = (0..n)
            .map(|i| {
                let addr = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 20000 + 2 * i as u16);
                let mut o = Overlay::new(cfg(addr.port()), now);
                o.add_own_ip(*addr.ip());
                (
                    addr,
                    o,
                    vec![format!("File-{i}.txt"), "common.TXT".to_string()],
                )
            })
            .collect();
        Net::new(now, nodes)
    }

    /// Every node joins through node 0, one after the other.
    fn star(n: usize) -> Net {
        let mut net = classic_net(n);
        let first = net.nodes[0].0;
        for i in 1..n {
            let now = net.now;
            net.nodes[i].1.connect(now, first, first.port() + 1);
            net.pump();
        }
        net
    }

    #[test]
    fn everyone_comes_to_know_everyone() {
        let mut net = star(5);
        net.advance(Duration::from_millis(450));
        for i in 0..5 {
            let mut expect: Vec<_> = net
                .nodes
                .iter()
                .map(|n| n.0)
                .filter(|a| *a != net.nodes[i].0)
                .collect();
            expect.sort();
            assert_eq!(net.peer_set(i), expect, "node {i}");
            assert!(net.nodes[i]
                .1
                .peers()
                .iter()
                .all(|p| p.rutella && p.tcp_port == p.udp.port() + 1));
        }
    }

    #[test]
    fn a_silent_peer_is_removed_after_one_round() {
        let mut net = star(4);
        net.advance(Duration::from_millis(250));
        let dead = net.nodes[3].0;
        assert!(net.peer_set(0).contains(&dead));
        net.down.insert(dead);
        // Next round starts by t=400ms at the latest and ends 50ms later.
        net.advance(Duration::from_millis(210));
        for i in 0..3 {
            assert!(
                !net.peer_set(i).contains(&dead),
                "node {i} still lists the dead peer"
            );
            assert_eq!(net.peer_set(i).len(), 2);
        }
    }

    #[test]
    fn search_reaches_every_peer_and_finishes_when_all_answered() {
        let mut net = star(4);
        net.advance(Duration::from_millis(250));
        let now = net.now;
        let id = net.nodes[1].1.search(now, "FILE-");
        net.pump();
        let mine: Vec<_> = net
            .results
            .iter()
            .filter(|r| r.0 == 1 && r.1 == id)
            .collect();
        assert_eq!(mine.len(), 3, "one answer per peer");
        let mut names: Vec<String> = mine.iter().flat_map(|r| r.3.clone()).collect();
        names.sort();
        assert_eq!(names, vec!["File-0.txt", "File-2.txt", "File-3.txt"]);
        assert!(
            net.finished.contains(&(1, id)),
            "finished early once all answered"
        );
    }

    #[test]
    fn empty_answers_are_answers_and_searches_time_out() {
        let mut net = star(3);
        net.advance(Duration::from_millis(250));
        net.down.insert(net.nodes[2].0);
        let now = net.now;
        let id = net.nodes[0].1.search(now, "no such thing");
        net.pump();
        let mine: Vec<_> = net.results.iter().filter(|r| r.1 == id).collect();
        assert_eq!(mine.len(), 1);
        assert!(mine[0].3.is_empty());
        assert!(
            !net.finished.contains(&(0, id)),
            "still waits for the silent peer"
        );
        net.advance(Duration::from_millis(101));
        assert!(net.finished.contains(&(0, id)));
    }

    fn drain(o: &mut Overlay) -> Vec<Transmit> {
        std::iter::from_fn(|| o.poll_transmit()).collect()
    }

    /// An overlay at 127.0.0.2:20000 with one classic peer, 127.0.0.3.
    fn with_classic_peer(now: Instant) -> (Overlay, SocketAddrV4) {
        let mut o = Overlay::new(cfg(20000), now);
        o.add_own_ip(Ipv4Addr::new(127, 0, 0, 2));
        let known = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 3), 20000);
        o.connect(now, known, 10000);
        drain(&mut o);
        o.handle_datagram(
            now,
            SocketAddr::V4(known),
            br#"{"Command": 2, "IP": "127.0.0.3"}"#,
        );
        assert_eq!(o.peers().len(), 1);
        drain(&mut o);
        while o.poll_event().is_some() {}
        (o, known)
    }

    #[test]
    fn pongs_tell_rutella_pingers_where_they_are_seen_and_two_agreeing_peers_teach_it() {
        let now = Instant::now();
        let mut o = Overlay::new(cfg(20000), now);
        o.add_own_ip(Ipv4Addr::new(192, 168, 1, 10));
        // A classic ping gets a classic pong: no "Seen".
        let src: SocketAddrV4 = "11.0.0.2:20000".parse().unwrap();
        o.handle_datagram(
            now,
            SocketAddr::V4(src),
            br#"{"Command": 1, "IP": "11.0.0.2", "TTL": 0}"#,
        );
        let sent = drain(&mut o);
        let pong = sent[0].encode(Ipv4Addr::new(192, 168, 1, 10));
        assert!(!String::from_utf8_lossy(&pong).contains("Seen"), "{sent:?}");
        // A rutella ping (with a nonce) learns the address it came from.
        let src2: SocketAddrV4 = "11.0.0.3:20001".parse().unwrap();
        o.handle_datagram(
            now,
            SocketAddr::V4(src2),
            br#"{"Command": 1, "IP": "1.2.3.4", "TTL": 0, "Nonce": 7, "UdpPort": 20001}"#,
        );
        let sent = drain(&mut o);
        let pong =
            String::from_utf8_lossy(&sent[0].encode(Ipv4Addr::new(192, 168, 1, 10))).into_owned();
        assert!(pong.contains(r#""Seen": "11.0.0.3:20001""#), "{pong}");
        // Two peers at different addresses that answer our pings with the
        // right echo and the same "Seen" teach us our external address;
        // one alone, or a wrong echo, does not.
        let p1: SocketAddrV4 = "11.0.0.4:20000".parse().unwrap();
        let p2: SocketAddrV4 = "11.0.0.5:20000".parse().unwrap();
        for p in [p1, p2] {
            o.connect(now, p, 0);
        }
        let nonces: Vec<(SocketAddrV4, u64)> = drain(&mut o)
            .iter()
            .filter_map(|t| match &t.message {
                Message::Ping(pi) => nonce_of(&pi.extra).map(|n| (t.dest, n)),
                _ => None,
            })
            .collect();
        assert_eq!(nonces.len(), 2, "{nonces:?}");
        let pong = |n: u64| {
            format!(
                r#"{{"Command": 2, "IP": "0.0.0.0", "Echo": {n}, "UdpPort": 20000, "Seen": "11.0.0.11:20000"}}"#
            )
        };
        o.handle_datagram(
            now,
            SocketAddr::V4(nonces[0].0),
            pong(nonces[0].1 ^ 1).as_bytes(),
        );
        o.handle_datagram(
            now,
            SocketAddr::V4(nonces[0].0),
            pong(nonces[0].1).as_bytes(),
        );
        assert_eq!(o.seen_address(), None, "one reporter is not enough");
        o.handle_datagram(
            now,
            SocketAddr::V4(nonces[1].0),
            pong(nonces[1].1 ^ 1).as_bytes(),
        );
        assert_eq!(o.seen_address(), None, "a wrong echo does not count");
        let unproven =
            r#"{"Command": 2, "IP": "0.0.0.0", "UdpPort": 20000, "Seen": "11.0.0.11:20000"}"#;
        o.handle_datagram(now, SocketAddr::V4(nonces[1].0), unproven.as_bytes());
        assert_eq!(
            o.seen_address(),
            None,
            "a pong without our nonce does not count"
        );
        o.handle_datagram(
            now,
            SocketAddr::V4(nonces[1].0),
            pong(nonces[1].1).as_bytes(),
        );
        assert_eq!(o.seen_address(), Some(Ipv4Addr::new(11, 0, 0, 11)));
    }

    #[test]
    fn pings_are_answered_at_their_source_and_forwarded_once_it_answered() {
        let now = Instant::now();
        let (mut o, known) = with_classic_peer(now);
        let src: SocketAddrV4 = "127.0.0.9:5555".parse().unwrap();
        // "IP" names someone else: only the source matters.
        let ping = br#"{"Command": 1, "IP": "127.0.0.4", "TTL": 1000000000, "Extra": 5}"#;
        o.handle_datagram(now, SocketAddr::V4(src), ping);
        let sent = drain(&mut o);
        assert!(sent.iter().all(|t| t.dest == src), "{sent:?}");
        assert!(matches!(sent[0].message, Message::Pong(_)));
        let Message::Ping(probe) = &sent[1].message else {
            panic!("{sent:?}")
        };
        let nonce = nonce_of(&probe.extra).unwrap();
        assert_eq!(sent.len(), 2);
        // It answers from that address: it is a peer, and its ping goes on
        // with TTL 0, naming it as seen and nothing we do not know.
        let pong =
            format!(r#"{{"Command": 2, "IP": "127.0.0.9", "Echo": {nonce}, "UdpPort": 5555}}"#);
        o.handle_datagram(now, SocketAddr::V4(src), pong.as_bytes());
        assert!(o.peers().iter().any(|p| p.udp == src));
        let fwd = drain(&mut o);
        assert_eq!(fwd.len(), 1, "{fwd:?}");
        assert_eq!(fwd[0].dest, known, "never back to its sender");
        assert_eq!(
            fwd[0].encode(Ipv4Addr::new(9, 9, 9, 9)),
            br#"{"Command": 1, "IP": "127.0.0.9", "TTL": 0, "UdpPort": 5555}"#
        );
        // The same originator again soon after: answered, not forwarded.
        o.handle_datagram(now, SocketAddr::V4(src), ping);
        let again = drain(&mut o);
        assert_eq!(again.len(), 1);
        assert!(matches!(again[0].message, Message::Pong(_)));
    }

    #[test]
    fn a_forwarded_ping_makes_one_probe_of_its_originator() {
        let now = Instant::now();
        let (mut o, known) = with_classic_peer(now);
        let fwd = br#"{"Command": 1, "IP": "127.0.0.4", "TTL": 0}"#;
        for _ in 0..5 {
            o.handle_datagram(now, SocketAddr::V4(known), fwd);
        }
        let sent = drain(&mut o);
        let origin: SocketAddrV4 = "127.0.0.4:20000".parse().unwrap();
        let probes: Vec<_> = sent.iter().filter(|t| t.dest == origin).collect();
        assert_eq!(probes.len(), 1, "{sent:?}");
        assert!(matches!(probes[0].message, Message::Ping(_)));
        // From a stranger, a forwarded ping makes no probe at all.
        o.handle_datagram(
            now,
            "127.0.0.8:20000".parse().unwrap(),
            br#"{"Command": 1, "IP": "127.0.0.5", "TTL": 0}"#,
        );
        assert!(drain(&mut o)
            .iter()
            .all(|t| t.dest != "127.0.0.5:20000".parse().unwrap()));
    }

    #[test]
    fn an_unproven_address_gets_at_most_three_times_its_bytes() {
        let now = Instant::now();
        let (mut o, _) = with_classic_peer(now);
        let attacker: SocketAddr = "127.0.0.66:4000".parse().unwrap();
        let mut received = 0;
        for i in 0..4096u32 {
            let m = format!(
                r#"{{"Command": 2, "IP": "127.1.{}.{}", "UdpPort": {}}}"#,
                i / 250,
                i % 250,
                1000 + i % 50
            );
            received += m.len();
            o.handle_datagram(now, attacker, m.as_bytes());
            let q = br#"{"Command": 3, "Contents": "a", "IP": "127.0.0.99"}"#;
            received += q.len();
            o.handle_datagram(now, attacker, q);
        }
        let sent = drain(&mut o);
        assert!(sent.iter().all(|t| SocketAddr::V4(t.dest) == attacker));
        let bytes: usize = sent
            .iter()
            .map(|t| t.encode(Ipv4Addr::BROADCAST).len())
            .sum();
        assert!(bytes <= 3 * received, "{bytes} for {received}");
        assert!(
            o.peers().iter().all(|p| p.udp.ip().octets()[1] != 1),
            "named addresses are not peers"
        );
        assert!(std::iter::from_fn(|| o.poll_event()).all(|e| !matches!(e, Event::Query(_))));
        // Over-long datagrams are dropped unread.
        let big = format!(
            r#"{{"Command": 1, "IP": "127.0.0.9", "TTL": 1, "X": "{}"}}"#,
            "a".repeat(60_000)
        );
        o.handle_datagram(now, attacker, big.as_bytes());
        assert!(o.poll_transmit().is_none());
    }

    #[test]
    fn default_search_ids_are_not_predictable() {
        let now = Instant::now();
        let mut a = Overlay::new(Config::default(), now);
        let mut b = Overlay::new(Config::default(), now);
        assert_ne!(a.search(now, "x"), b.search(now, "x"));
    }

    #[test]
    fn a_query_from_an_unproven_address_is_answered_once_it_answered() {
        let now = Instant::now();
        let mut o = Overlay::new(cfg(20000), now);
        let src: SocketAddr = "127.0.0.7:20000".parse().unwrap();
        o.handle_datagram(
            now,
            src,
            br#"{"Command": 3, "Contents": "cl", "IP": "127.0.0.99"}"#,
        );
        assert!(std::iter::from_fn(|| o.poll_event()).all(|e| !matches!(e, Event::Query(_))));
        let probe = o.poll_transmit().unwrap();
        assert_eq!(SocketAddr::V4(probe.dest), src);
        // A classic peer answers the probe with a plain pong.
        o.handle_datagram(now, src, br#"{"Command": 2, "IP": "127.0.0.7"}"#);
        let mut q = None;
        while let Some(e) = o.poll_event() {
            if let Event::Query(iq) = e {
                q = Some(iq);
            }
        }
        let q = q.expect("query event");
        assert_eq!(q.text, "cl");
        o.answer_query(&q, &[]);
        let t = o.poll_transmit().unwrap();
        assert_eq!(SocketAddr::V4(t.dest), src);
        assert!(t
            .encode(Ipv4Addr::new(127, 0, 0, 2))
            .starts_with(br#"{"Command": 4, "Contents": [], "IP": "127.0.0.2""#));
        assert_eq!(o.peers()[0].udp, "127.0.0.7:20000".parse().unwrap());
        assert!(!o.peers()[0].rutella);
    }

    #[test]
    fn classic_hits_without_id_go_to_the_newest_search() {
        let now = Instant::now();
        let mut o = Overlay::new(cfg(20000), now);
        let classic = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 3), 20000);
        o.connect(now, classic, 10000);
        o.handle_datagram(
            now,
            SocketAddr::V4(classic),
            br#"{"Command": 2, "IP": "127.0.0.3"}"#,
        );
        let _old = o.search(now, "a");
        let new = o.search(now, "b");
        while o.poll_transmit().is_some() {}
        while o.poll_event().is_some() {}
        o.handle_datagram(
            now,
            SocketAddr::V4(classic),
            br#"{"Command": 4, "Contents": ["b.txt"], "IP": "127.0.0.3"}"#,
        );
        let evs: Vec<Event> = std::iter::from_fn(|| o.poll_event()).collect();
        assert!(evs.iter().any(|e| matches!(e, Event::SearchResult { search, files, .. } if *search == new && files[0].name == "b.txt")));
        // The same answer from an address no search asked counts for nothing.
        o.handle_datagram(
            now,
            "127.0.0.66:20000".parse().unwrap(),
            br#"{"Command": 4, "Contents": ["b.txt"], "IP": "127.0.0.3", "TcpPort": 6666}"#,
        );
        assert!(
            std::iter::from_fn(|| o.poll_event()).all(|e| !matches!(e, Event::SearchResult { .. }))
        );
    }

    #[test]
    fn peers_count_as_answered_only_once_heard_from() {
        let mut net = classic_net(2);
        let first = net.nodes[0].0;
        net.down.insert(first);
        let now = net.now;
        net.nodes[1].1.connect(now, first, 1);
        net.pump();
        assert_eq!(net.nodes[1].1.peers().len(), 0, "given, not heard");
        assert_eq!(net.nodes[1].1.answered_peers(), 0);
        net.down.clear();
        let now = net.now;
        net.nodes[1].1.connect(now, first, 1);
        net.pump();
        assert_eq!(net.nodes[1].1.answered_peers(), 1);
    }

    #[test]
    fn a_dead_bootstrap_is_retried_while_alone() {
        let mut net = classic_net(2);
        let first = net.nodes[0].0;
        net.down.insert(first);
        let now = net.now;
        net.nodes[1].1.connect(now, first, 1);
        net.pump();
        net.advance(Duration::from_millis(260));
        assert!(net.peer_set(1).is_empty(), "removed after a silent round");
        net.down.clear();
        net.advance(Duration::from_millis(200));
        assert_eq!(net.peer_set(1), vec![first]);
        assert_eq!(net.peer_set(0), vec![net.nodes[1].0]);
    }

    #[test]
    fn peer_list_is_bounded() {
        let now = Instant::now();
        let mut o = Overlay::new(
            Config {
                max_peers: 10,
                ..cfg(20000)
            },
            now,
        );
        for i in 0..100u32 {
            let src: SocketAddr = format!("10.0.{}.{}:20000", i / 250, i % 250 + 1)
                .parse()
                .unwrap();
            o.handle_datagram(now, src, br#"{"Command": 1, "IP": "10.9.9.9", "TTL": 0}"#);
            o.handle_datagram(now, src, br#"{"Command": 2, "IP": "10.9.9.9"}"#);
        }
        assert_eq!(o.peers().len(), 10);
    }
}
