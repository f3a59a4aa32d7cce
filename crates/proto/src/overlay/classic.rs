//! The classic overlay: a full mesh kept by ping rounds, every query sent
//! to every known peer, and the guard's rules for addresses that have not
//! proven themselves. Used by both modes: a scalable node still serves
//! classic peers this way.

use super::{Event, IncomingQuery, Overlay, Peer, SearchId, Transmit};
use crate::message::{
    hex16, Message, Ping, Pong, Ports, Push, Query, QueryHit, MAX_DATAGRAM, MAX_QUERY_LEN,
};
use crate::push::{push_id_of, PushInfo};
use crate::shared::{echo_of, nonce_of};
use serde_json::Map;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// The field by which a short-lived node marks its pings and pongs.
const TRANSIENT: &str = "Transient";

/// Whether a ping or pong comes from a short-lived node.
fn is_transient(extra: &Map<String, serde_json::Value>) -> bool {
    extra.get(TRANSIENT).and_then(serde_json::Value::as_bool) == Some(true)
}

#[derive(Debug)]
pub(super) struct PeerState {
    pub(super) info: Peer,
    /// When the oldest ping of ours it has not answered went out (any
    /// message from it answers): it is removed once that is a pong
    /// timeout ago, also when rounds come faster than the pong timeout.
    awaiting_since: Option<Instant>,
    /// The `"Nonce"` of its own pings: the node now at this address (a
    /// node draws the key of its nonces at every start). Another one is
    /// a new node there, which is introduced again.
    session: Option<u64>,
    /// When a ping it started was last forwarded.
    last_forward: Option<Instant>,
    /// Order of arrival: lower is older.
    pub(super) joined: u64,
}

/// The classic part of one of our searches.
#[derive(Debug)]
pub(super) struct SearchState {
    pub(super) text: String,
    pub(super) deadline: Instant,
    pub(super) started: u64,
    /// Peers asked that have not sent their last part.
    pub(super) pending: HashSet<SocketAddr>,
    pub(super) asked: HashSet<SocketAddr>,
}

/// How many of our peers a short-lived node is told of when it proves its
/// address (it is not a peer, so it hears of no others).
const INTRODUCED: usize = 16;

impl Overlay {
    /// Handles a message of the classic overlay.
    pub(super) fn handle_classic(&mut self, now: Instant, from: SocketAddr, message: Message) {
        match message {
            Message::Ping(ping) => self.on_ping(now, from, ping),
            Message::Pong(pong) => self.on_pong(now, from, pong),
            Message::Query(q) => self.on_query(now, from, q),
            Message::QueryHit(hit) => self.on_hit(now, from, hit),
            Message::Punch(p) => self.on_punch(now, from, p),
            Message::Relay(r) => self.on_relay_invite(now, from, r),
            Message::Push(push) => self.on_push(now, from, push),
        }
    }

    /// Whether sends to `addr` are not limited: a peer, a scalable
    /// neighbour, an address that answered a probe, or one the user gave.
    pub(super) fn is_known(&self, addr: &SocketAddr) -> bool {
        // The cheapest tests first: a scalable neighbour is the usual
        // sender, and the guard is the largest table.
        self.peers.contains_key(addr)
            || self.sc.as_ref().is_some_and(|sc| sc.knows(addr))
            || self.bootstrap.contains(addr)
            || self.sh.guard.proven(addr)
    }

    /// Queues a datagram within the guard's limits (see
    /// `Shared::push_transmit`).
    pub(super) fn push_transmit(&mut self, t: Transmit) {
        let known = self.is_known(&t.dest);
        self.sh.push_transmit(t, known);
    }

    pub(super) fn send_query(&mut self, id: SearchId, state: &mut SearchState, dest: SocketAddr) {
        if !state.asked.insert(dest) {
            return;
        }
        state.pending.insert(dest);
        let message = Message::Query(Query {
            ip: Ipv4Addr::UNSPECIFIED.into(),
            text: state.text.clone(),
            id: Some(id.0),
            ports: self.sh.own_ports(),
            extra: Map::new(),
        });
        self.push_transmit(Transmit {
            dest,
            message,
            from_self: true,
        });
    }

    fn on_ping(&mut self, now: Instant, from: SocketAddr, ping: Ping) {
        // The answer goes to the datagram's source, never to the address
        // the message names (for a classic peer they are the same).
        let mut extra = Map::new();
        // A peer's ping with another nonce than before comes from a new
        // node at that address (a one-shot command run again): it is
        // introduced again, below, paid by this ping's bytes.
        let renewed = match nonce_of(&ping.extra) {
            Some(n) if self.peers.contains_key(&from) => self
                .renew_session(from, n)
                .then(|| Message::Ping(ping.clone()).encode().len()),
            Some(n) => {
                self.sh.guard.entry(from).nonce = Some(n);
                None
            }
            None => None,
        };
        // A rutella ping of the sender itself (forwarded ones carry no
        // unknown fields) tells its push id: we relay pushes to it while
        // it is a peer.
        if let (Some(_), Some(id)) = (nonce_of(&ping.extra), push_id_of(&ping.extra)) {
            if self.peers.contains_key(&from) {
                self.push.record(from, id);
            } else {
                self.sh.guard.entry(from).push_id = Some(id);
            }
        }
        if let Some(n) = nonce_of(&ping.extra) {
            extra.insert("Echo".into(), serde_json::Value::from(n));
            // Only to rutella pings: classic peers never see the field.
            extra.insert("Seen".into(), serde_json::Value::from(from.to_string()));
            if self.sh.config.transient {
                extra.insert(TRANSIENT.into(), serde_json::Value::Bool(true));
            }
        }
        self.push_transmit(Transmit {
            dest: from,
            message: Message::Pong(Pong {
                ip: Ipv4Addr::UNSPECIFIED.into(),
                ports: self.sh.own_ports(),
                extra,
            }),
            from_self: true,
        });
        let ttl = ping.ttl.clamp(0, self.sh.config.max_ping_ttl.max(0));
        let named = Peer::from_ports(ping.ip, ping.ports).udp;
        if ttl == 0 && named != from && self.peers.contains_key(&from) {
            // A ping a peer forwarded: its originator may be new to us.
            // It sent us nothing, so this is a probe from the global budget.
            if !self.sh.is_self(named) && !named.ip().is_unspecified() && !self.is_known(&named) {
                self.probe(now, named);
            }
            // Its ports are the originator's, not the forwarder's.
            self.mark_alive(from, Ports::default());
            return;
        }
        // Sent by `from` itself (behind a NAT its "IP" may differ: the
        // address as seen is what counts).
        let fwd = Ping {
            ip: from.ip(),
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
            if let Some(len) = renewed {
                self.reintroduce(from, len);
            }
        } else {
            if ttl > 0 {
                self.sh.guard.entry(from).held().ping = Some(fwd);
            }
            // A rutella ping from it says the way back is open now: behind
            // a router, a probe we sent before it sent to us was dropped.
            // So it is probed again, paid by what it sent.
            if nonce_of(&ping.extra).is_some() {
                self.sh.guard.entry(from).probed = None;
            }
            self.probe(now, from);
        }
    }

    fn on_pong(&mut self, now: Instant, from: SocketAddr, pong: Pong) {
        let echo = echo_of(&pong.extra);
        if echo.is_some_and(|e| e != self.sh.guard.token(from)) {
            tracing::debug!(peer = %from, "pong with a wrong echo, dropped");
            return;
        }
        // Only IPv4 addresses are learned this way (the NAT's external one).
        let seen = crate::seen::parse_seen(&pong.extra);
        if let (Some(_), Some(seen), IpAddr::V4(reporter)) = (echo, seen, from.ip()) {
            if let Some(ip) = self.seen.report(reporter, seen) {
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
                && self.sh.guard.probed_within(
                    &from,
                    now,
                    self.sh.config.pong_timeout.max(Duration::from_millis(1)) * 2,
                );
        if answered && is_transient(&pong.extra) {
            self.validate_transient(now, from);
        } else if answered {
            self.validate(now, from, pong.ports);
        } else {
            self.probe(now, from);
        }
    }

    fn on_query(&mut self, now: Instant, from: SocketAddr, q: Query) {
        if q.text.len() > MAX_QUERY_LEN {
            tracing::debug!(%from, "dropping over-long query");
            return;
        }
        if self.peers.contains_key(&from) || self.sh.guard.proven(&from) {
            self.mark_alive(from, q.ports);
            self.emit_query(from, q);
        } else {
            // Answered once it has shown it is at that address.
            self.sh.guard.entry(from).held().query = Some((q, now));
            self.probe(now, from);
        }
    }

    fn emit_query(&mut self, from: SocketAddr, q: Query) {
        self.sh.push_event(Event::Query(IncomingQuery {
            reply_to: from,
            from: Peer::seen(from, q.ports),
            text: q.text,
            id: q.id,
        }));
    }

    /// `from` answered one of our pings: it becomes a peer; a ping it
    /// sent is forwarded and a query it sent is answered now.
    fn validate(&mut self, now: Instant, from: SocketAddr, ports: Ports) {
        let e = self.sh.guard.entry(from);
        e.proven = true;
        let (ping, query, push) = match e.held.take() {
            Some(h) => (h.ping, h.query, h.push),
            None => (None, None, None),
        };
        let push_id = e.push_id.take();
        let nonce = e.nonce.take();
        let new = !self.peers.contains_key(&from);
        self.add_peer(Peer::seen(from, ports));
        if let Some(state) = self.peers.get_mut(&from) {
            state.session = state.session.or(nonce);
        }
        if new && ports.is_rutella() && self.peers.contains_key(&from) {
            self.introduce(from);
        }
        if let Some(id) = push_id.filter(|_| self.peers.contains_key(&from)) {
            self.push.record(from, id);
        }
        if let Some((p, at)) = push {
            if now.saturating_duration_since(at) <= self.sh.config.search_timeout {
                self.forward_push(now, from, p);
            }
        }
        if let Some(fwd) = ping {
            if self.peers.contains_key(&from) {
                self.forward_ping(now, from, fwd);
            }
        }
        if let Some((q, at)) = query {
            if now.saturating_duration_since(at) <= self.sh.config.search_timeout {
                self.emit_query(from, q);
            }
        }
    }

    /// `from` answered one of our pings but is a short-lived node (a
    /// one-shot command): its address is proven, so its query is answered
    /// and sends to it are not limited, but it does not become a peer (it
    /// is not announced, remembered, pinged or asked). Its ping is passed
    /// on, so that the other peers answer it and it finds the network
    /// (at most once per pong timeout: its address is probed no more
    /// often).
    fn validate_transient(&mut self, now: Instant, from: SocketAddr) {
        let e = self.sh.guard.entry(from);
        e.proven = true;
        let (ping, query) = match e.held.as_mut() {
            Some(h) => (h.ping.take(), h.query.take()),
            None => (None, None),
        };
        if let Some(fwd) = ping {
            let message = Message::Ping(fwd);
            if message.encode().len() <= MAX_DATAGRAM {
                let dests: Vec<SocketAddr> =
                    self.peers.keys().copied().filter(|d| *d != from).collect();
                for dest in dests {
                    self.push_transmit(Transmit {
                        dest,
                        message: message.clone(),
                        from_self: false,
                    });
                }
            }
            // It is not a peer, so the pings of our peers are not passed
            // on to it: it is told of some of them once.
            self.introduce(from);
        }
        if let Some((q, at)) = query {
            if now.saturating_duration_since(at) <= self.sh.config.search_timeout {
                self.emit_query(from, q);
            }
        }
    }

    /// Tells `to` (a rutella node that just proved its address) of up to
    /// [`INTRODUCED`] of our peers at once, as a forwarded ping names its
    /// originator, rather than over the next ping rounds. Each side then
    /// probes the other, which also opens both sides' routers (a peer
    /// behind a NAT answers only whom it sent to).
    fn introduce(&mut self, to: SocketAddr) {
        for ping in self.introductions(to) {
            self.push_transmit(Transmit {
                dest: to,
                message: Message::Ping(ping),
                from_self: false,
            });
        }
    }

    /// Records `nonce` as the session of peer `from`; whether it is
    /// another node than the one proven there before (a node draws the
    /// key of its nonces at every start). Then its next ping is passed
    /// on at once.
    fn renew_session(&mut self, from: SocketAddr, nonce: u64) -> bool {
        let Some(state) = self.peers.get_mut(&from) else {
            return false;
        };
        let renewed = state.session.replace(nonce).is_some_and(|n| n != nonce);
        if renewed {
            state.last_forward = None;
        }
        renewed
    }

    /// [`Overlay::introduce`] to a peer whose address now holds a new node
    /// (see [`Overlay::renew_session`]). Anyone can send a ping from a
    /// peer's address with a new nonce, so these introductions are paid
    /// as sends to an unproven address: at most the amplification factor
    /// times the bytes of the pings that announced new nodes there
    /// (`len` this one's), never more than it sent us.
    fn reintroduce(&mut self, to: SocketAddr, len: usize) {
        self.sh.guard.received(to, len);
        tracing::debug!(peer = %to, "a new node at a peer's address, introduced again");
        for ping in self.introductions(to) {
            let t = Transmit {
                dest: to,
                message: Message::Ping(ping),
                from_self: false,
            };
            self.sh.push_transmit(t, false);
        }
    }

    /// The TTL-0 pings that tell `to` of up to [`INTRODUCED`] of our
    /// other peers.
    fn introductions(&self, to: SocketAddr) -> Vec<Ping> {
        self.peers
            .iter()
            .filter(|(d, _)| **d != to)
            .take(INTRODUCED)
            .map(|(d, p)| Ping {
                ip: d.ip(),
                ttl: 0,
                ports: Ports {
                    udp: p.info.rutella.then_some(d.port()),
                    tcp: p.info.rutella.then_some(p.info.tcp_port),
                },
                extra: Map::new(),
            })
            .collect()
    }

    /// Forwards a ping that peer `from` started to every other peer, at
    /// most once per half ping interval per originator, without fields we
    /// do not know.
    fn forward_ping(&mut self, now: Instant, from: SocketAddr, fwd: Ping) {
        let window = self.sh.config.ping_interval / 2;
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
        // A classic peer never sees an IPv6 address.
        let to_classic = message.ip().is_ipv4();
        let dests: Vec<SocketAddr> = self
            .peers
            .iter()
            .filter(|(d, p)| **d != from && (to_classic || p.info.rutella))
            .map(|(d, _)| *d)
            .collect();
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
    pub(super) fn probe(&mut self, now: Instant, dest: SocketAddr) {
        if self.sh.is_self(dest) || dest.ip().is_unspecified() || dest.port() == 0 {
            return;
        }
        if self
            .sh
            .guard
            .probed_within(&dest, now, self.sh.config.pong_timeout)
        {
            return;
        }
        let t = self.ping_to(dest);
        let known = self.is_known(&dest);
        if self.sh.push_probe(now, t, known) {
            self.sh.guard.entry(dest).probed = Some(now);
        }
    }

    fn on_hit(&mut self, _now: Instant, from: SocketAddr, hit: QueryHit) {
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
        let push = PushInfo::from_extra(&hit.extra);
        self.mark_alive(from, hit.ports);
        let mut finished = false;
        let grown = self.growth_over(search);
        if let Some(state) = self.searches.get_mut(&search) {
            if !hit.more {
                state.pending.remove(&from);
            }
            // Nothing more is expected: every classic peer asked has
            // answered and the scalable part, if any, is over.
            finished = state.pending.is_empty() && grown;
        }
        self.sh.push_event(Event::SearchResult {
            search,
            peer,
            files: hit.files,
            push,
        });
        if finished {
            self.finish_search(search);
        }
    }

    /// A message came from peer `from`: it is alive this round.
    pub(super) fn mark_alive(&mut self, from: SocketAddr, ports: Ports) {
        if let Some(state) = self.peers.get_mut(&from) {
            state.awaiting_since = None;
            state.info.rutella |= ports.is_rutella();
            if let Some(tcp) = ports.tcp.filter(|p| *p != 0) {
                state.info.tcp_port = tcp;
            }
        }
    }

    fn add_peer(&mut self, peer: Peer) {
        if self.sh.is_self(peer.udp) || peer.udp.ip().is_unspecified() || peer.udp.port() == 0 {
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
        if self.peers.len() >= self.sh.config.max_peers {
            tracing::debug!(peer = %peer.udp, "peer list full, not adding");
            return;
        }
        self.joined += 1;
        self.peers.insert(
            peer.udp,
            PeerState {
                info: peer,
                awaiting_since: None,
                session: None,
                last_forward: None,
                joined: self.joined,
            },
        );
        self.sh.push_event(Event::PeerAdded(peer));
        // A search that is running reaches the newcomer too.
        let running: Vec<SearchId> = self.searches.keys().copied().collect();
        for id in running {
            if let Some(mut state) = self.searches.remove(&id) {
                self.send_query(id, &mut state, peer.udp);
                self.searches.insert(id, state);
            }
        }
    }

    /// Classic timers: ping rounds, and silent peers dropped.
    pub(super) fn classic_timeout(&mut self, now: Instant) {
        let timeout = self.sh.config.pong_timeout;
        if self.round_deadline.is_some_and(|d| d <= now) {
            let silent: Vec<SocketAddr> = self
                .peers
                .iter()
                .filter(|(_, p)| {
                    p.awaiting_since
                        .is_some_and(|t| now.saturating_duration_since(t) >= timeout)
                })
                .map(|(a, _)| *a)
                .collect();
            for addr in silent {
                if let Some(p) = self.peers.remove(&addr) {
                    if let Some(e) = self.sh.guard.get_mut(&addr) {
                        e.proven = false;
                    }
                    self.push.forget(&addr);
                    tracing::debug!(peer = %addr, "peer missed a ping round, removed");
                    self.sh.push_event(Event::PeerRemoved(p.info));
                }
            }
            self.round_deadline = self.pong_deadline();
        }
        if self.next_round.is_some_and(|t| t <= now) {
            self.next_round = Some(now + self.sh.config.ping_interval);
            if self.peers.is_empty() {
                for addr in self.bootstrap.clone() {
                    self.send_ping(now, addr);
                }
            }
            let addrs: Vec<SocketAddr> = self.peers.keys().copied().collect();
            for addr in addrs {
                if let Some(p) = self.peers.get_mut(&addr) {
                    // A later round does not move the wait of an earlier
                    // unanswered ping.
                    p.awaiting_since.get_or_insert(now);
                }
                self.send_ping(now, addr);
            }
            self.round_deadline = self.pong_deadline();
        }
    }

    /// When the oldest unanswered ping to a peer is a pong timeout old.
    fn pong_deadline(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter_map(|p| p.awaiting_since)
            .min()
            .map(|t| t + self.sh.config.pong_timeout)
    }

    /// Our ping to `dest`, with the nonce its pong must echo.
    fn ping_to(&self, dest: SocketAddr) -> Transmit {
        let mut extra = Map::new();
        extra.insert(
            "Nonce".into(),
            serde_json::Value::from(self.sh.guard.token(dest)),
        );
        extra.insert(
            "PushId".into(),
            serde_json::Value::from(hex16(self.push.own_id)),
        );
        if self.sh.config.transient {
            extra.insert(TRANSIENT.into(), serde_json::Value::Bool(true));
        }
        Transmit {
            dest,
            message: Message::Ping(Ping {
                ip: Ipv4Addr::UNSPECIFIED.into(),
                ttl: self.sh.config.ping_ttl,
                ports: self.sh.own_ports(),
                extra,
            }),
            from_self: true,
        }
    }

    /// Pings a peer or an address the user gave.
    pub(super) fn send_ping(&mut self, now: Instant, dest: SocketAddr) {
        let t = self.ping_to(dest);
        self.sh.guard.entry(dest).probed = Some(now);
        self.push_transmit(t);
    }
}

impl Overlay {
    /// A Push: for us (our push id), from a current peer, it asks us to
    /// connect out; for a peer of ours, we pass it on from a proven
    /// address (an unproven one is probed first, and its push passed on
    /// once it answers).
    fn on_push(&mut self, now: Instant, from: SocketAddr, push: Push) {
        if push.push_id == self.push.own_id {
            // From a peer (a proxy, or the downloader itself), or from an
            // address that proved itself by echoing our nonce (a one-shot
            // downloader, which is not kept as a peer): never from an
            // address that could be forged.
            let ip = if self.peers.contains_key(&from) {
                self.mark_alive(from, Ports::default());
                // Passed on by a proxy: the downloader as the proxy saw
                // it; sent by the downloader itself: its address as seen.
                push.ip.unwrap_or(from.ip())
            } else if self.sh.guard.proven(&from) {
                // Not a proxy: it can only ask us to connect to itself.
                from.ip()
            } else {
                tracing::debug!(%from, "push from an address that is neither a peer nor proven, dropped");
                return;
            };
            if ip.is_unspecified() || ip == IpAddr::V4(Ipv4Addr::BROADCAST) || ip.is_multicast() {
                tracing::debug!(%from, %ip, "push to an address that cannot be one, dropped");
                return;
            }
            if let Err(why) = self.push.allow_connect(ip, now) {
                tracing::debug!(%from, target = %ip, ?why, "push over its budget, dropped");
                return;
            }
            self.sh.push_event(Event::PushRequest {
                target: SocketAddr::new(ip, push.tcp_port),
                token: push.token,
                via: from,
            });
            return;
        }
        if self.peers.contains_key(&from) || self.sh.guard.proven(&from) {
            self.mark_alive(from, Ports::default());
            self.forward_push(now, from, push);
        } else {
            self.sh.guard.entry(from).held().push = Some((push, now));
            self.probe(now, from);
        }
    }

    /// Passes a push from proven address `from` on to the peer with its
    /// push id, naming `from`'s IP as the downloader, within the budgets.
    pub(super) fn forward_push(&mut self, now: Instant, from: SocketAddr, push: Push) {
        let Some(peer) = self
            .push
            .peer_of(push.push_id)
            .filter(|p| self.peers.contains_key(p) && *p != from)
        else {
            tracing::debug!(%from, "push for no current peer, dropped");
            return;
        };
        if let Err(why) = self.push.allow_forward(from.ip(), now) {
            tracing::debug!(%from, ?why, "push over its budget, dropped");
            return;
        }
        tracing::debug!(%from, to = %peer, "passing a push on");
        self.push_transmit(Transmit {
            dest: peer,
            message: Message::Push(Push {
                ip: Some(from.ip()),
                ..push
            }),
            from_self: false,
        });
    }
}
