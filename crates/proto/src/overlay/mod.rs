//! The overlay: membership, ping rounds, query fan-out and timeouts, as a
//! deterministic state machine with no sockets, no clock and no threads.
//!
//! The driver feeds it datagrams ([`Overlay::handle_datagram`]), the
//! passing of time ([`Overlay::handle_timeout`]) and user commands
//! ([`Overlay::connect`], [`Overlay::search`]), and after each call drains
//! [`Overlay::poll_transmit`] and [`Overlay::poll_event`] and re-arms its
//! timer from [`Overlay::poll_timeout`].
//!
//! [`Overlay`] holds the classic overlay (`classic.rs`: peers, ping
//! rounds, queries to every peer) and, in [`Mode::Scalable`], the scalable
//! sub-machine (`scalable::Scalable`). Both write into one
//! `Shared` (configuration, random generator, guard, outbox), which the
//! overlay hands to the scalable side with every call.

mod classic;
mod paths;

pub use crate::types::{Config, Event, IncomingQuery, Mode, Peer, SearchId, Transmit};

use crate::answer::{AnswerPlan, ANSWER_LIMIT};
use crate::budget::{Budget, Drops, Kind};
use crate::message::{
    DialBack, HitFile, Message, ParseError, Push, QueryHit, MAX_DATAGRAM, MAX_QUERY_LEN,
};
use crate::push::{is_local, PushInfo, PushRoute, PushState, MAX_PROXIES};
use crate::scalable::{Ctx, Scalable, TrigramBloom, HIT_ROOM};
use crate::shared::Shared;
use classic::{PeerState, SearchState};
use rand::RngCore;
use serde_json::Map;
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

/// The overlay state machine of one peer: the classic overlay, and the
/// scalable one beside it in [`Mode::Scalable`].
#[derive(Debug)]
pub struct Overlay {
    /// Configuration, random generator, guard and outbox of both modes.
    sh: Shared,
    /// Per-source budgets of incoming datagrams.
    budget: Budget,
    peers: BTreeMap<SocketAddr, PeerState>,
    bootstrap: Vec<SocketAddr>,
    next_round: Option<Instant>,
    round_deadline: Option<Instant>,
    searches: BTreeMap<SearchId, SearchState>,
    search_counter: u64,
    /// Neighbours, filters and host cache of the scalable mode.
    sc: Option<Scalable>,
    /// Our address as rutella peers report seeing it (`"Seen"`).
    seen: crate::seen::SeenAddress,
    /// Our push id, the push ids of our peers, the push budgets.
    push: PushState,
    /// The punches we set up as a proxy, and their budgets.
    rendezvous: crate::punch::Rendezvous,
    /// Tokens of the punch goes we acted on.
    punch_seen: crate::punch::SeenTokens,
    /// Peers added so far (orders peers by age).
    joined: u64,
}

impl Overlay {
    /// A new overlay; `now` starts the ping-round clock.
    pub fn new(config: Config, now: Instant) -> Self {
        let next_round = Some(now + config.ping_interval);
        let sc = (config.mode == Mode::Scalable).then(|| Scalable::new(&config.scalable, now));
        let budget = Budget::new(config.budget.clone());
        let push_cfg = config.push.clone();
        let rendezvous = crate::punch::Rendezvous::new(push_cfg.punch);
        let mut sh = Shared::new(config, now);
        let push = PushState::new(push_cfg, sh.rng.next_u64(), now);
        Overlay {
            sh,
            budget,
            peers: BTreeMap::new(),
            bootstrap: Vec::new(),
            next_round,
            round_deadline: None,
            searches: BTreeMap::new(),
            search_counter: 0,
            sc,
            seen: crate::seen::SeenAddress::default(),
            push,
            rendezvous,
            punch_seen: crate::punch::SeenTokens::default(),
            joined: 0,
        }
    }

    /// Our push id (drawn at start), sent in our pings as `"PushId"`.
    pub fn push_id(&self) -> u64 {
        self.push.own_id
    }

    /// Whether this node can be connected to from outside: `Some(true)`
    /// known reachable, `Some(false)` known not, `None` unknown. A node not
    /// known to be reachable names its push proxies in its answers, and
    /// says `"Firewalled"` when known not to be.
    pub fn set_reachable(&mut self, reachable: Option<bool>) {
        self.push.reachable = reachable;
        if let Some(sc) = &mut self.sc {
            // Only a node known to be reachable may become an ultrapeer.
            sc.set_reachable(reachable == Some(true));
        }
    }

    /// What [`Overlay::set_reachable`] set.
    pub fn reachable(&self) -> Option<bool> {
        self.push.reachable
    }

    /// What our answers say about reaching us by push: nothing when we are
    /// known to be reachable, or not known to be unreachable and without a
    /// proxy; else our push id, up to four proven rutella peers as proxies
    /// (addresses outside the local networks first, then the
    /// longest-lived), and whether we know we are not reachable.
    pub fn own_push_info(&self) -> PushInfo {
        if self.push.reachable == Some(true) {
            return PushInfo::default();
        }
        let mut peers: Vec<(bool, u64, SocketAddr)> = self
            .peers
            .values()
            .filter(|p| p.info.rutella)
            .map(|p| (is_local(&p.info.udp.ip()), p.joined, p.info.udp))
            .collect();
        peers.sort();
        let firewalled = self.push.reachable == Some(false);
        if peers.is_empty() && !firewalled {
            // No way to push to us: the answer stays as it was.
            return PushInfo::default();
        }
        PushInfo {
            push_id: Some(self.push.own_id),
            proxies: peers
                .into_iter()
                .take(MAX_PROXIES)
                .map(|(_, _, a)| a)
                .collect(),
            firewalled,
        }
    }

    /// The push id peer `udp` told us in its pings, if it is a peer.
    pub fn peer_push_id(&self, udp: &SocketAddr) -> Option<u64> {
        self.push
            .id_of(udp)
            .filter(|_| self.peers.contains_key(udp))
    }

    /// Asks a source to connect to our TCP port `tcp_port` and introduce the
    /// connection with `token`. `tcp` is the source's TCP address as known,
    /// `info` what its answers said. The push goes straight to the source
    /// when it is a peer of ours that told us its push id (the peer whose
    /// TCP address is `tcp`, or the one with `info`'s push id), else to
    /// each of its proxies. `None` when there is no way to ask.
    pub fn send_push(
        &mut self,
        tcp: SocketAddr,
        info: &PushInfo,
        token: u64,
        tcp_port: u16,
    ) -> Option<PushRoute> {
        let direct = self
            .peers
            .values()
            .find(|p| p.info.tcp() == tcp && self.push.id_of(&p.info.udp).is_some())
            .map(|p| p.info.udp)
            .or_else(|| {
                info.push_id
                    .and_then(|id| self.push.peer_of(id))
                    .filter(|p| self.peers.contains_key(p))
            });
        let (push_id, route) = match direct {
            Some(peer) => (self.push.id_of(&peer)?, PushRoute::Peer(peer)),
            None => {
                let id = info.push_id?;
                let proxies: Vec<SocketAddr> = info
                    .proxies
                    .iter()
                    .copied()
                    .filter(|p| !self.sh.is_self(*p))
                    .take(MAX_PROXIES)
                    .collect();
                if proxies.is_empty() {
                    return None;
                }
                (id, PushRoute::Proxies(proxies))
            }
        };
        let message = Message::Push(Push {
            ip: None,
            push_id,
            token,
            tcp_port,
        });
        let dests = match &route {
            PushRoute::Peer(p) => vec![*p],
            PushRoute::Proxies(list) => list.clone(),
        };
        for dest in dests {
            // Asked for by our user, like a connect: not an answer to
            // anything, so not limited by what the address sent us.
            self.sh.push_unchecked(Transmit {
                dest,
                message: message.clone(),
                from_self: false,
            });
        }
        Some(route)
    }

    /// Runs `f` on the scalable sub-machine (if this node runs one) with
    /// the shared state and what the classic side knows.
    fn with_scalable<R>(&mut self, f: impl FnOnce(&mut Scalable, &mut Ctx<'_>) -> R) -> Option<R> {
        let sc = self.sc.as_mut()?;
        let peers = &self.peers;
        let bootstrap = &self.bootstrap;
        let classic_knows = |a: &SocketAddr| peers.contains_key(a) || bootstrap.contains(a);
        let mut cx = Ctx {
            sh: &mut self.sh,
            classic_knows: &classic_knows,
        };
        Some(f(sc, &mut cx))
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.sh.config
    }

    /// Which overlay this node runs.
    pub fn mode(&self) -> Mode {
        self.sh.config.mode
    }

    /// Tells the overlay one of the addresses that name this peer, so that it
    /// never adds itself to its list.
    pub fn add_own_ip(&mut self, ip: IpAddr) {
        self.sh.add_own_ip(ip);
    }

    /// Our external address as two rutella peers at different addresses
    /// report seeing it (`"Seen"` in their pongs), if they agree.
    pub fn seen_address(&self) -> Option<Ipv4Addr> {
        self.seen.learned()
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

    /// Number of neighbours in the scalable overlay (0 in classic mode).
    pub fn degree(&self) -> usize {
        self.sc.as_ref().map_or(0, Scalable::degree)
    }

    /// Whether this node is an ultrapeer of the scalable overlay (`None`
    /// in classic mode; otherwise a leaf).
    pub fn is_ultrapeer(&self) -> Option<bool> {
        self.sc.as_ref().map(Scalable::is_ultrapeer)
    }

    /// Number of leaves of this ultrapeer (0 for a leaf or in classic
    /// mode).
    pub fn leaf_count(&self) -> usize {
        self.sc.as_ref().map_or(0, Scalable::leaf_count)
    }

    /// Whether this ultrapeer holds the filter of its leaf `addr` (so that
    /// a query reaching it can reach that leaf).
    pub fn holds_leaf_filter(&self, addr: &SocketAddr) -> bool {
        self.sc.as_ref().is_some_and(|s| s.holds_leaf_filter(addr))
    }

    /// Tells the scalable overlay whether others can reach this node
    /// unasked (not firewalled) and its upload bandwidth in kB/s: what it
    /// needs to become an ultrapeer (with its uptime, which it counts
    /// itself). Until told, a node counts as firewalled.
    pub fn set_capability(&mut self, reachable: bool, bandwidth_kbps: u32) {
        if let Some(sc) = &mut self.sc {
            sc.set_reachable(reachable);
            sc.set_bandwidth(bandwidth_kbps);
        }
    }

    /// Tells the scalable overlay our upload bandwidth in kB/s (see
    /// [`Overlay::set_capability`]); the reachability comes from
    /// [`Overlay::set_reachable`].
    pub fn set_bandwidth(&mut self, bandwidth_kbps: u32) {
        if let Some(sc) = &mut self.sc {
            sc.set_bandwidth(bandwidth_kbps);
        }
    }

    /// The neighbours in the scalable overlay (empty in classic mode).
    pub fn neighbours(&self) -> Vec<Peer> {
        self.sc
            .as_ref()
            .map(|s| s.neighbour_peers().collect())
            .unwrap_or_default()
    }

    /// The hosts of the scalable host cache (to save and give back with
    /// [`Overlay::add_known_host`] at the next start).
    pub fn known_hosts(&self) -> Vec<SocketAddr> {
        self.sc
            .as_ref()
            .map(Scalable::known_hosts)
            .unwrap_or_default()
    }

    /// Adds a host to the scalable host cache: a candidate neighbour.
    pub fn add_known_host(&mut self, addr: SocketAddr) {
        self.with_scalable(|sc, cx| sc.add_known_host(cx, addr));
    }

    /// Sets the names of the files this node shares; in scalable mode they
    /// make the trigram filter sent to the neighbours (again whenever it
    /// changes). Call at start and after every change of the shared files.
    pub fn set_library<I, S>(&mut self, names: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        // Only the scalable overlay sends a filter: a classic node builds
        // none.
        if self.sc.is_some() {
            self.set_filter(TrigramBloom::from_names(names));
        }
    }

    /// Sets the trigram filter of the files this node shares, built by the
    /// caller (with [`TrigramBloom::from_names`], which takes time for a
    /// large library: a driver builds it off its event loop). Does nothing
    /// in classic mode.
    pub fn set_filter(&mut self, filter: TrigramBloom) {
        self.with_scalable(|sc, cx| sc.set_filter(cx, filter));
    }

    /// Joins through `addr`: it is pinged at once, and becomes a peer when
    /// it answers. It is also remembered, and pinged again at every round
    /// while the list is empty, so a node whose only peer was down rejoins
    /// when it comes back. `tcp_port` is unused: the answer tells it.
    pub fn connect(&mut self, now: Instant, addr: SocketAddr, tcp_port: u16) {
        let _ = tcp_port;
        if self.sc.is_some() {
            // Ask it to become a neighbour. A classic peer (or a rutella
            // peer in classic mode) answers with a plain pong, which makes
            // it a classic peer.
            self.with_scalable(|sc, cx| sc.connect(cx, now, addr));
            return;
        }
        if self.sh.is_self(addr) {
            return;
        }
        if !self.bootstrap.contains(&addr) && self.bootstrap.len() < 64 {
            self.bootstrap.push(addr);
        }
        self.send_ping(now, addr);
    }

    /// Forgets an address given to [`Overlay::connect`] that never
    /// answered: it is no longer pinged at every round. A peer it already
    /// became stays (it answered).
    pub fn forget(&mut self, addr: SocketAddr) {
        self.bootstrap.retain(|a| *a != addr);
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
            let id = SearchId(self.sh.rng.next_u64());
            if !self.searches.contains_key(&id) {
                break id;
            }
        };
        while self.searches.len() >= self.sh.config.max_searches {
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
            deadline: now + self.sh.config.search_timeout,
            started: self.search_counter,
            pending: HashSet::new(),
            asked: HashSet::new(),
        };
        if self.sc.is_some() {
            let extra = self.sh.config.scalable.max_search_time;
            state.deadline = state.deadline.max(now + extra);
        }
        let targets: Vec<SocketAddr> = self.peers.keys().copied().collect();
        for dest in targets {
            self.send_query(id, &mut state, dest);
        }
        let text = state.text.clone();
        self.searches.insert(id, state);
        self.with_scalable(|sc, cx| sc.start_search(cx, now, id, text));
        id
    }

    /// Ends a search early.
    pub fn cancel_search(&mut self, id: SearchId) {
        self.finish_search(id);
    }

    /// Whether a search still runs.
    pub fn search_running(&self, id: SearchId) -> bool {
        self.searches.contains_key(&id)
    }

    fn finish_search(&mut self, id: SearchId) {
        if let Some(sc) = &mut self.sc {
            sc.forget_search(id);
        }
        if self.searches.remove(&id).is_some() {
            self.sh.push_event(Event::SearchFinished { search: id });
        }
    }

    /// Whether the scalable part of a search, if any, has stopped growing.
    fn growth_over(&self, id: SearchId) -> bool {
        self.sc.as_ref().is_none_or(|sc| sc.search_done(id))
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

    /// Decides how to answer a query reported by [`crate::Event::Query`];
    /// the query counts as answered from now on. Cheap: the files are
    /// turned into datagrams later, by [`AnswerPlan::encode`], which the
    /// driver may run off its event loop. [`Overlay::answer_query`] does
    /// both at once.
    pub fn plan_answer(&mut self, query: &IncomingQuery) -> AnswerPlan {
        let max_files = self.sh.config.max_hits_per_answer;
        let ports = self.sh.own_ports();
        let push = self.own_push_info();
        let scalable = self
            .sc
            .as_mut()
            .and_then(|sc| sc.answer_template(ports, query))
            .map(|mut t| {
                push.write_extra(&mut t.extra);
                t
            });
        if let Some(template) = scalable {
            // Only the querier waits for answers, and only for files.
            return AnswerPlan::new(
                query.reply_to,
                template,
                MAX_DATAGRAM - HIT_ROOM,
                max_files,
                false,
            );
        }
        let mut extra = Map::new();
        if query.from.rutella {
            self.own_push_info().write_extra(&mut extra);
        }
        let template = QueryHit {
            ip: Ipv4Addr::UNSPECIFIED.into(),
            files: Vec::new(),
            id: query.id,
            more: false,
            ports,
            extra,
        };
        AnswerPlan::new(query.reply_to, template, ANSWER_LIMIT, max_files, true)
    }

    /// Feeds one received datagram. Invalid ones, and ones longer than
    /// [`MAX_DATAGRAM`] (which a classic peer would cut), are dropped with a
    /// debug log.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        // Over its source's budget: dropped before parsing, and counted.
        // One address per peer whichever socket saw it.
        let from = crate::addr::normalize(from);
        if !self.budget.allow(now, from.ip(), Kind::Datagram) {
            return;
        }
        if bytes.len() > MAX_DATAGRAM {
            tracing::debug!(%from, len = bytes.len(), "dropping over-long datagram");
            return;
        }
        let message = match Message::parse(bytes) {
            Ok(m) => m,
            Err(ParseError::UnknownCommand(6 | 7)) => {
                self.on_dial_back(from, bytes);
                return;
            }
            Err(e) => {
                tracing::debug!(%from, error = %e, "dropping invalid datagram");
                return;
            }
        };
        if let Some(kind) = Kind::of(&message) {
            if !self.budget.allow(now, from.ip(), kind) {
                return;
            }
        }
        self.handle_parsed(now, from, message, Some(bytes.len()));
    }

    /// Feeds one parsed message (see [`Overlay::handle_datagram`]).
    pub fn handle_message(&mut self, now: Instant, from: SocketAddr, message: Message) {
        self.handle_parsed(now, from, message, None);
    }

    fn handle_parsed(
        &mut self,
        now: Instant,
        from: SocketAddr,
        message: Message,
        len: Option<usize>,
    ) {
        if self.sh.is_self(from) || from.ip().is_unspecified() || from.port() == 0 {
            return;
        }
        if from.is_ipv6() && !speaks_rutella(&message) {
            // Classic peers are IPv4 only: what comes over IPv6 without
            // "UdpPort" is no peer of ours.
            tracing::debug!(%from, "dropping a classic message from an IPv6 address");
            return;
        }
        if !self.is_known(&from) {
            // What an unproven address sent pays for what we may send it.
            let len = len.unwrap_or_else(|| message.encode().len());
            self.sh.guard.received(from, len);
        }
        // The scalable side takes the messages of the scalable overlay and
        // gives back every other one.
        let message = if self.sc.is_some() {
            match self.with_scalable(|sc, cx| sc.handle(cx, now, from, message)) {
                Some(Some(m)) => m,
                _ => return,
            }
        } else {
            message
        };
        self.handle_classic(now, from, message);
    }

    /// A dial-back message goes to the driver's [`crate::Reach`], with
    /// whether its source is a proven rutella peer.
    fn on_dial_back(&mut self, from: SocketAddr, bytes: &[u8]) {
        if self.sh.is_self(from) {
            return;
        }
        match DialBack::parse(bytes) {
            Ok(message) => {
                let proven_peer = self.is_rutella_peer(&from);
                self.sh.push_event(Event::DialBack {
                    from,
                    proven_peer,
                    message,
                });
            }
            Err(e) => tracing::debug!(%from, error = %e, "dropping invalid dial-back datagram"),
        }
    }

    /// Whether `addr` is a proven rutella peer: in the peer list (it
    /// answered our ping from that address) with rutella's ports, or a
    /// scalable neighbour.
    pub fn is_rutella_peer(&self, addr: &SocketAddr) -> bool {
        self.peers.get(addr).is_some_and(|p| p.info.rutella)
            || self
                .sc
                .as_ref()
                .is_some_and(|sc| sc.neighbour_peers().any(|p| p.udp == *addr))
    }

    /// When the driver must call [`Overlay::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let searches = self.searches.values().map(|s| s.deadline).min();
        let scalable = self.sc.as_ref().and_then(Scalable::poll_timeout);
        [self.next_round, self.round_deadline, searches, scalable]
            .into_iter()
            .flatten()
            .min()
    }

    /// Advances the clock: starts ping rounds, drops silent peers, ends
    /// searches whose time ran out.
    pub fn handle_timeout(&mut self, now: Instant) {
        let stopped = self
            .with_scalable(|sc, cx| sc.handle_timeout(cx, now))
            .unwrap_or_default();
        for id in stopped {
            // Its scalable part stopped growing: it is over once every
            // classic peer asked has answered too.
            if self.searches.get(&id).is_some_and(|s| s.pending.is_empty()) {
                self.finish_search(id);
            }
        }
        self.classic_timeout(now);
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

    /// Datagrams dropped so far for being over their source's budget.
    pub fn budget_drops(&self) -> Drops {
        self.budget.drops()
    }

    /// The next datagram to send. Call until `None` after every input.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.sh.poll_transmit()
    }

    /// The next event. Call until `None` after every input.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.sh.poll_event()
    }

    /// The scalable sub-machine, for tests.
    #[cfg(test)]
    pub(crate) fn scalable_part(&self) -> Option<&Scalable> {
        self.sc.as_ref()
    }

    /// The nonce a pong from `addr` must echo, for tests.
    #[cfg(test)]
    pub(crate) fn token(&self, addr: SocketAddr) -> u64 {
        self.sh.guard.token(addr)
    }
}

/// Whether a message is a rutella one: classic messages carry no
/// `"UdpPort"`, and only rutella peers send Push, Punch and Relay.
fn speaks_rutella(message: &Message) -> bool {
    match message {
        Message::Ping(m) => m.ports.is_rutella(),
        Message::Pong(m) => m.ports.is_rutella(),
        Message::Query(m) => m.ports.is_rutella(),
        Message::QueryHit(m) => m.ports.is_rutella(),
        Message::Push(_) | Message::Punch(_) | Message::Relay(_) => true,
    }
}

#[cfg(test)]
mod tests;
