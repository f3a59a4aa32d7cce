//! The overlay: membership, ping rounds, query fan-out and timeouts, as a
//! deterministic state machine with no sockets, no clock and no threads.
//!
//! The driver feeds it datagrams ([`Overlay::handle_datagram`]), the
//! passing of time ([`Overlay::handle_timeout`]) and user commands
//! ([`Overlay::connect`], [`Overlay::search`]), and after each call drains
//! [`Overlay::poll_transmit`] and [`Overlay::poll_event`] and re-arms its
//! timer from [`Overlay::poll_timeout`].

use crate::budget::{Budget, BudgetConfig, Kind};
use crate::message::{HitFile, Message, Ping, Pong, Ports, Query, QueryHit, MAX_QUERY_LEN};
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
    /// Seed of the random generator (search ids).
    pub seed: u64,
    /// Which overlay this peer builds with other rutella peers (default
    /// [`Mode::Classic`]). Classic peers are always served classically.
    pub mode: Mode,
    /// Settings of the scalable overlay, used in [`Mode::Scalable`].
    pub scalable: ScalableConfig,
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
            seed: 0,
            mode: Mode::Classic,
            scalable: ScalableConfig::default(),
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
    /// Some message from it has arrived (it is not only an address we were given).
    heard: bool,
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
    /// Per-source budgets of incoming datagrams.
    pub(crate) budget: Budget,
}

/// Cap on queued events and datagrams: a driver that polls after every call
/// never reaches it; it only bounds memory if one does not.
const MAX_QUEUE: usize = 65_536;

impl Overlay {
    /// A new overlay; `now` starts the ping-round clock.
    pub fn new(config: Config, now: Instant) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        let next_round = Some(now + config.ping_interval);
        let sc = (config.mode == Mode::Scalable).then(|| ScalableState::new(&config, now));
        Overlay {
            sc,
            budget: Budget::new(config.budget.clone()),
            config,
            rng,
            own_ips: HashSet::new(),
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

    /// How many peers have answered at least once: classic peers heard
    /// from, and scalable neighbours (which answered to become one).
    pub fn answered_peers(&self) -> usize {
        self.peers.values().filter(|p| p.heard).count() + self.degree()
    }

    /// Joins through `addr`: it becomes a peer and is pinged at once. It is
    /// also remembered, and pinged again at every round while the list is
    /// empty, so a node whose only peer was down rejoins when it comes back.
    /// `tcp_port` is 0 when unknown: the peer's answer will tell it.
    pub fn connect(&mut self, now: Instant, addr: SocketAddrV4, tcp_port: u16) {
        if self.sc.is_some() {
            // Ask it to become a neighbour. A classic peer (or a rutella
            // peer in classic mode) answers with a plain pong, which makes
            // it a classic peer.
            self.scalable_connect(now, addr, tcp_port);
            return;
        }
        if !self.bootstrap.contains(&addr) && self.bootstrap.len() < 64 {
            self.bootstrap.push(addr);
        }
        let peer = Peer {
            udp: addr,
            tcp_port,
            rutella: addr.port() != crate::CLASSIC_UDP_PORT,
        };
        self.add_peer(peer, false);
        self.send_ping(addr);
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

    /// Feeds one received datagram. Invalid ones are dropped with a debug log.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        // Over its source's budget: dropped before parsing, and counted.
        if !self.budget.allow(now, from.ip(), Kind::Datagram) {
            return;
        }
        let SocketAddr::V4(from) = from else {
            tracing::debug!(%from, "dropping datagram from an IPv6 address");
            return;
        };
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
        self.handle_message(now, from, message);
    }

    /// Feeds one parsed message (see [`Overlay::handle_datagram`]).
    pub fn handle_message(&mut self, now: Instant, from: SocketAddrV4, message: Message) {
        let message = match self.scalable_message(now, from, message) {
            Some(m) => m,
            None => return,
        };
        match message {
            Message::Ping(ping) => self.on_ping(ping),
            Message::Pong(pong) => {
                let peer = Peer::from_ports(pong.ip, pong.ports);
                self.heard_from(peer);
            }
            Message::Query(q) => {
                let peer = Peer::from_ports(q.ip, q.ports);
                self.heard_from(peer);
                if q.text.len() > MAX_QUERY_LEN {
                    tracing::debug!(%from, "dropping over-long query");
                    return;
                }
                self.push_event(Event::Query(IncomingQuery {
                    reply_to: from,
                    from: peer,
                    text: q.text,
                    id: q.id,
                }));
            }
            Message::QueryHit(hit) => self.on_hit(now, hit),
        }
    }

    fn on_ping(&mut self, mut ping: Ping) {
        let origin = Peer::from_ports(ping.ip, ping.ports);
        // Classic peers ignore pings "from" 127.0.0.1 when they carry no
        // ports: such a ping names no reachable peer.
        let classic_localhost = !ping.ports.is_rutella() && ping.ip == Ipv4Addr::LOCALHOST;
        if self.is_self(origin.udp) || classic_localhost {
            return;
        }
        self.push_transmit(Transmit {
            dest: origin.udp,
            message: Message::Pong(Pong {
                ip: Ipv4Addr::UNSPECIFIED,
                ports: self.own_ports(),
                extra: Map::new(),
            }),
            from_self: true,
        });
        self.heard_from(origin);
        if ping.ttl > 0 {
            ping.ttl -= 1;
            let message = Message::Ping(ping);
            let dests: Vec<SocketAddrV4> = self.peers.keys().copied().collect();
            for dest in dests {
                self.push_transmit(Transmit {
                    dest,
                    message: message.clone(),
                    from_self: false,
                });
            }
        }
    }

    fn on_hit(&mut self, _now: Instant, hit: QueryHit) {
        let peer = Peer::from_ports(hit.ip, hit.ports);
        let search = match hit.id {
            Some(id) => Some(SearchId(id)).filter(|s| self.searches.contains_key(s)),
            // Classic answers carry no id: the newest search that asked
            // this peer and still waits for it.
            None => self
                .searches
                .iter()
                .filter(|(_, s)| s.pending.contains(&peer.udp) || s.asked.contains(&peer.udp))
                .max_by_key(|(_, s)| (s.pending.contains(&peer.udp), s.started))
                .map(|(id, _)| *id),
        };
        let Some(search) = search else {
            tracing::debug!(peer = %peer.udp, "dropping answer to no running search");
            return;
        };
        self.heard_from(peer);
        let mut finished = false;
        if let Some(state) = self.searches.get_mut(&search) {
            if !hit.more {
                state.pending.remove(&peer.udp);
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

    /// A peer showed it is alive: add it if new, mark it as answered.
    fn heard_from(&mut self, peer: Peer) {
        self.add_peer(peer, true);
    }

    fn add_peer(&mut self, peer: Peer, heard: bool) {
        if self.is_self(peer.udp) || peer.udp.ip().is_unspecified() || peer.udp.port() == 0 {
            return;
        }
        if let Some(state) = self.peers.get_mut(&peer.udp) {
            if heard {
                state.awaiting_pong = false;
                state.heard = true;
                state.info.rutella |= peer.rutella;
                if peer.tcp_port != 0 {
                    state.info.tcp_port = peer.tcp_port;
                }
            }
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
                heard,
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
                    self.send_ping(addr);
                }
            }
            let addrs: Vec<SocketAddrV4> = self.peers.keys().copied().collect();
            for addr in addrs {
                if let Some(p) = self.peers.get_mut(&addr) {
                    p.awaiting_pong = true;
                }
                self.send_ping(addr);
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

    fn send_ping(&mut self, dest: SocketAddrV4) {
        let message = Message::Ping(Ping {
            ip: Ipv4Addr::UNSPECIFIED,
            ttl: self.config.ping_ttl,
            ports: self.own_ports(),
            extra: Map::new(),
        });
        self.push_transmit(Transmit {
            dest,
            message,
            from_self: true,
        });
    }

    pub(crate) fn own_ports(&self) -> Ports {
        Ports::rutella(self.config.udp_port, self.config.tcp_port)
    }

    pub(crate) fn push_transmit(&mut self, t: Transmit) {
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

    #[test]
    fn classic_pings_get_pongs_at_the_ip_field_and_are_forwarded() {
        let now = Instant::now();
        let mut o = Overlay::new(cfg(20000), now);
        o.add_own_ip(Ipv4Addr::new(127, 0, 0, 2));
        let known = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 3), 20000);
        o.connect(now, known, 10000);
        while o.poll_transmit().is_some() {}
        // A classic ping whose datagram comes from elsewhere: the pong goes to "IP":20000.
        let ping = br#"{"Command": 1, "IP": "127.0.0.4", "TTL": 1, "Extra": 5}"#;
        o.handle_datagram(now, "127.0.0.9:5555".parse().unwrap(), ping);
        let sent: Vec<Transmit> = std::iter::from_fn(|| o.poll_transmit()).collect();
        let pong = &sent[0];
        assert_eq!(pong.dest, "127.0.0.4:20000".parse().unwrap());
        assert!(matches!(pong.message, Message::Pong(_)));
        // Forwarded with TTL 0, IP and unknown fields unchanged, to every peer, originator included.
        let fwd: Vec<_> = sent[1..]
            .iter()
            .map(|t| {
                (
                    t.dest,
                    String::from_utf8(t.encode(Ipv4Addr::new(9, 9, 9, 9))).unwrap(),
                )
            })
            .collect();
        assert_eq!(fwd.len(), 2);
        for (_, text) in &fwd {
            assert_eq!(
                text,
                r#"{"Command": 1, "Extra": 5, "IP": "127.0.0.4", "TTL": 0}"#
            );
        }
        let dests: HashSet<_> = fwd.iter().map(|f| f.0).collect();
        assert!(dests.contains(&known) && dests.contains(&"127.0.0.4:20000".parse().unwrap()));
        // Pings naming ourselves or classic 127.0.0.1 are ignored.
        o.handle_datagram(
            now,
            "127.0.0.9:5555".parse().unwrap(),
            br#"{"Command": 1, "IP": "127.0.0.1", "TTL": 1}"#,
        );
        o.handle_datagram(
            now,
            "127.0.0.9:5555".parse().unwrap(),
            br#"{"Command": 1, "IP": "127.0.0.2", "TTL": 1}"#,
        );
        assert!(o.poll_transmit().is_none());
        // A TTL-0 ping is answered, not forwarded.
        o.handle_datagram(
            now,
            "127.0.0.9:5555".parse().unwrap(),
            br#"{"Command": 1, "IP": "127.0.0.5", "TTL": 0}"#,
        );
        assert_eq!(std::iter::from_fn(|| o.poll_transmit()).count(), 1);
    }

    #[test]
    fn classic_query_is_answered_to_the_source_and_adds_the_peer() {
        let now = Instant::now();
        let mut o = Overlay::new(cfg(20000), now);
        let src: SocketAddr = "127.0.0.7:40000".parse().unwrap();
        o.handle_datagram(
            now,
            src,
            br#"{"Command": 3, "Contents": "cl", "IP": "127.0.0.7"}"#,
        );
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
    }

    #[test]
    fn peers_count_as_answered_only_once_heard_from() {
        let mut net = classic_net(2);
        let first = net.nodes[0].0;
        net.down.insert(first);
        let now = net.now;
        net.nodes[1].1.connect(now, first, 1);
        net.pump();
        assert_eq!(net.nodes[1].1.peers().len(), 1);
        assert_eq!(net.nodes[1].1.answered_peers(), 0, "given, not heard");
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
            let msg = format!(
                r#"{{"Command": 2, "IP": "10.0.{}.{}"}}"#,
                i / 250,
                i % 250 + 1
            );
            o.handle_datagram(now, "10.9.9.9:1".parse().unwrap(), msg.as_bytes());
        }
        assert_eq!(o.peers().len(), 10);
    }
}
