//! Neighbours: join requests and their walks, offers and confirmations,
//! keep-alive pings, dropped links, the host cache, and the filters sent
//! to the neighbours.

use super::bloom::{take_part, PartialBloom};
use super::{
    base_extra, get_bool, get_i64, tick_interval, Ctx, Scalable, TrigramBloom, BLOOM_HASHES,
    MAX_WALK, SCALABLE_VERSION,
};
use crate::message::{Message, Ping, Pong, Ports};
use crate::shared::{echo_of, nonce_of};
use crate::types::{Event, Peer, Transmit};
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Instant;

/// A neighbour: a peer of the scalable overlay.
#[derive(Debug)]
pub(super) struct Neighbour {
    pub(super) info: Peer,
    /// It is our leaf (we are its ultrapeer); otherwise a neighbour of our
    /// own tier, or, for a leaf, one of its ultrapeers.
    pub(super) leaf: bool,
    /// The number of neighbours it announced.
    pub(super) degree: usize,
    /// Its filter, once every part has arrived.
    pub(super) filter: Option<TrigramBloom>,
    partial: Option<Box<PartialBloom>>,
    last_heard: Instant,
    ping_sent: Option<Instant>,
    filter_sent: bool,
    /// The nonce it gave us: our pongs to it echo it.
    their_nonce: Option<u64>,
    /// Searches it may still start now (refilled over time).
    pub(super) search_allowance: f64,
    /// When the allowance was last refilled.
    pub(super) allowance_at: Instant,
    /// Its searches dropped in a row for going over the allowance.
    pub(super) searches_dropped: u32,
    /// Its false answers and the cost of its searches (`guard.rs`).
    pub(super) guard: super::guard::Record,
}

/// How a host cache stores its hosts: an IPv4 address and port packed in
/// 8 bytes instead of a `SocketAddr`'s 32 (every node keeps up to
/// [`ScalableConfig::host_cache`] hosts, twice: in the list and in the
/// set).
///
/// [`ScalableConfig::host_cache`]: super::ScalableConfig::host_cache
trait HostKey: Copy + Eq + std::hash::Hash {
    /// The key of `addr`, if this kind of key can hold it.
    fn key(addr: SocketAddr) -> Option<Self>;
    fn addr(self) -> SocketAddr;
}

/// An IPv4 host: the address in bits 16..48, the port in bits 0..16.
impl HostKey for u64 {
    fn key(addr: SocketAddr) -> Option<Self> {
        match addr {
            SocketAddr::V4(a) => Some(u64::from(u32::from(*a.ip())) << 16 | u64::from(a.port())),
            SocketAddr::V6(_) => None,
        }
    }

    fn addr(self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::from((self >> 16) as u32),
            self as u16,
        ))
    }
}

impl HostKey for SocketAddr {
    fn key(addr: SocketAddr) -> Option<Self> {
        Some(addr)
    }

    fn addr(self) -> SocketAddr {
        self
    }
}

/// The hosts of a cache, in the order of the list.
#[derive(Debug)]
struct Hosts<K> {
    list: Vec<K>,
    /// Membership only (never iterated, so its order does not matter).
    set: HashSet<K>,
}

impl<K: HostKey> Hosts<K> {
    fn add(&mut self, host: K, cap: usize, rng: &mut impl Rng) {
        if cap == 0 || self.set.contains(&host) {
            return;
        }
        if self.list.len() >= cap {
            let i = rng.gen_range(0..self.list.len());
            self.set.remove(&self.list[i]);
            self.list[i] = host;
        } else {
            self.list.push(host);
        }
        self.set.insert(host);
    }

    fn remove(&mut self, host: &K) {
        if self.set.remove(host) {
            self.list.retain(|a| a != host);
        }
    }
}

/// A bounded set of known hosts, with random replacement when full. It
/// holds IPv4 hosts packed until a first IPv6 one comes.
#[derive(Debug)]
pub(super) struct HostCache(Store);

#[derive(Debug)]
enum Store {
    V4(Hosts<u64>),
    Any(Hosts<SocketAddr>),
}

impl Default for HostCache {
    fn default() -> Self {
        HostCache(Store::V4(Hosts {
            list: Vec::new(),
            set: HashSet::new(),
        }))
    }
}

impl HostCache {
    fn add(&mut self, addr: SocketAddr, cap: usize, rng: &mut impl Rng) {
        if let Store::V4(h) = &mut self.0 {
            match u64::key(addr) {
                Some(k) => return h.add(k, cap, rng),
                None => {
                    let list: Vec<SocketAddr> = h.list.iter().map(|k| k.addr()).collect();
                    let set = list.iter().copied().collect();
                    self.0 = Store::Any(Hosts { list, set });
                }
            }
        }
        if let Store::Any(h) = &mut self.0 {
            h.add(addr, cap, rng);
        }
    }

    fn remove(&mut self, addr: &SocketAddr) {
        match &mut self.0 {
            Store::V4(h) => {
                if let Some(k) = u64::key(*addr) {
                    h.remove(&k);
                }
            }
            Store::Any(h) => h.remove(addr),
        }
    }

    pub(super) fn len(&self) -> usize {
        match &self.0 {
            Store::V4(h) => h.list.len(),
            Store::Any(h) => h.list.len(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The host at `i` of the list (in the order of arrival, a replaced
    /// one at the place of the one it replaced).
    pub(super) fn get(&self, i: usize) -> SocketAddr {
        match &self.0 {
            Store::V4(h) => h.list[i].addr(),
            Store::Any(h) => h.list[i],
        }
    }

    /// The hosts, in the order of the list.
    pub(super) fn iter(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

/// `addr.to_string()`, without the formatting machinery for IPv4 (every
/// pong names a few hosts).
fn addr_text(addr: SocketAddr) -> String {
    let SocketAddr::V4(a) = addr else {
        return addr.to_string();
    };
    let mut s = String::with_capacity(21);
    for (i, o) in a.ip().octets().into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        push_decimal(&mut s, u32::from(o));
    }
    s.push(':');
    push_decimal(&mut s, u32::from(a.port()));
    s
}

fn push_decimal(s: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    s.extend(digits[i..].iter().map(|&d| char::from(d)));
}

/// The degree a neighbour announced, believed up to our own maximum: a
/// peer that claims more (to look like a better relay) counts as one with
/// that many neighbours, so that its claim cannot swell a search's
/// estimates.
pub(super) fn believed_degree(cfg: &super::ScalableConfig, announced: i64) -> usize {
    announced.clamp(0, cfg.max_degree.min(1024) as i64) as usize
}

impl Scalable {
    /// Drops a neighbour that floods us with searches, and refuses it for
    /// a while.
    pub(super) fn drop_flooder(&mut self, cx: &mut Ctx<'_>, now: Instant, addr: SocketAddr) {
        tracing::debug!(peer = %addr, "neighbour floods searches, dropped");
        self.refused
            .insert(addr, now + self.cfg.flooder_refused_for);
        let mut extra = Map::new();
        extra.insert("Accept".into(), Value::Bool(false));
        let m = self.scalable_pong(cx, addr, extra);
        self.send_self(cx, addr, m);
        self.remove_neighbour(cx, addr);
    }

    /// Adds a host to the scalable host cache: a candidate neighbour.
    pub(crate) fn add_known_host(&mut self, cx: &mut Ctx<'_>, addr: SocketAddr) {
        let cap = self.cfg.host_cache;
        if cx.sh.is_self(addr) {
            return;
        }
        self.hosts.add(addr, cap, &mut cx.sh.rng);
    }

    /// Sets the trigram filter of the files this node shares, built by the
    /// caller (with [`TrigramBloom::from_names`], which takes time for a
    /// large library: a driver builds it off its event loop), and sends it
    /// to every neighbour when it changed.
    pub(crate) fn set_filter(&mut self, cx: &mut Ctx<'_>, filter: TrigramBloom) {
        if self.filter == filter {
            return;
        }
        self.filter = filter;
        self.filter_gen += 1;
        let addrs: Vec<SocketAddr> = self.neighbours.keys().copied().collect();
        for a in addrs {
            self.send_filter(cx, a, None);
        }
    }

    /// A scalable pong to `dest`; to a neighbour it echoes the nonce that
    /// neighbour gave us, which is how it knows the pong is ours.
    pub(super) fn scalable_pong(
        &self,
        cx: &mut Ctx<'_>,
        dest: SocketAddr,
        mut extra: Map<String, Value>,
    ) -> Message {
        extra.insert("Scalable".into(), Value::from(SCALABLE_VERSION));
        extra.insert("Degree".into(), Value::from(self.degree() as u64));
        if !extra.contains_key("Echo") {
            if let Some(n) = self.neighbours.get(&dest).and_then(|n| n.their_nonce) {
                extra.insert("Echo".into(), Value::from(n));
            }
        }
        extra.insert("Ultrapeer".into(), Value::Bool(self.ultrapeer));
        Message::Pong(Pong {
            ip: Ipv4Addr::UNSPECIFIED.into(),
            ports: cx.sh.own_ports(),
            extra,
        })
    }

    /// Our scalable ping to `dest`: a join request or a keep-alive. It
    /// carries the nonce that `dest` must echo.
    fn scalable_ping_to(&self, cx: &mut Ctx<'_>, dest: SocketAddr, join: bool) -> Transmit {
        let mut extra = base_extra();
        extra.insert("Degree".into(), Value::from(self.degree() as u64));
        extra.insert("Nonce".into(), Value::from(cx.sh.guard.token(dest)));
        extra.insert("Ultrapeer".into(), Value::Bool(self.ultrapeer));
        if join {
            extra.insert("Join".into(), Value::Bool(true));
            if !self.ultrapeer {
                extra.insert("Leaf".into(), Value::Bool(true));
            }
            let walk = self.cfg.join_walk.clamp(0, MAX_WALK);
            if walk > 0 {
                extra.insert("Walk".into(), Value::from(walk));
            }
        }
        Transmit {
            dest,
            message: Message::Ping(Ping {
                ip: Ipv4Addr::UNSPECIFIED.into(),
                ttl: 0,
                ports: cx.sh.own_ports(),
                extra,
            }),
            from_self: true,
        }
    }

    fn send_scalable_ping(&mut self, cx: &mut Ctx<'_>, dest: SocketAddr, join: bool) {
        let t = self.scalable_ping_to(cx, dest, join);
        self.push_transmit(cx, t);
    }

    /// Asks `dest` to become a neighbour. A host that sent us nothing is
    /// asked only within the probe budget. Returns whether it was asked.
    fn send_join(&mut self, cx: &mut Ctx<'_>, now: Instant, dest: SocketAddr) -> bool {
        let t = self.scalable_ping_to(cx, dest, true);
        let sent = self.push_probe(cx, now, t);
        if sent {
            cx.sh.guard.entry(dest).probed = Some(now);
        }
        sent
    }

    /// Sends our filter to a neighbour; with `first`, its first part rides
    /// in that pong (whose extra fields are given).
    fn send_filter(
        &mut self,
        cx: &mut Ctx<'_>,
        dest: SocketAddr,
        first: Option<Map<String, Value>>,
    ) {
        if let Some(n) = self.neighbours.get_mut(&dest) {
            n.filter_sent = true;
        }
        let gen = self.filter_gen;
        let bits = self.filter.bits();
        let parts = self.filter.parts();
        let mut first = first;
        for (offset, data) in parts {
            let mut extra = first.take().unwrap_or_default();
            extra.insert("Bloom".into(), Value::from(data));
            extra.insert("BloomBits".into(), Value::from(bits as u64));
            extra.insert("BloomHashes".into(), Value::from(BLOOM_HASHES));
            extra.insert("BloomOffset".into(), Value::from(offset as u64));
            extra.insert("BloomGen".into(), Value::from(gen));
            if self.filter.has_quads() {
                extra.insert("BloomGrams".into(), Value::from(4));
            }
            let m = self.scalable_pong(cx, dest, extra);
            self.send_self(cx, dest, m);
        }
    }

    /// Hosts to name in a pong to `exclude`: first our ultrapeers of the
    /// moment (a leaf's ultrapeers, an ultrapeer's ultrapeer neighbours),
    /// which are alive, then random hosts of the cache, some of which may
    /// have left since we learnt them.
    pub(super) fn hosts_value(&mut self, cx: &mut Ctx<'_>, exclude: SocketAddr) -> Value {
        let want = self.cfg.hosts_per_pong;
        let linked: Vec<SocketAddr> = self
            .neighbours
            .iter()
            .filter(|(a, n)| !n.leaf && **a != exclude)
            .map(|(a, _)| *a)
            .collect();
        let mut picks: Vec<SocketAddr> = linked
            .choose_multiple(&mut cx.sh.rng, want)
            .copied()
            .collect();
        let list = &self.hosts;
        let more = want.saturating_sub(picks.len()).min(list.len());
        for i in rand::seq::index::sample(&mut cx.sh.rng, list.len(), more) {
            let a = list.get(i);
            if a != exclude && !picks.contains(&a) {
                picks.push(a);
            }
        }
        Value::Array(
            picks
                .into_iter()
                .map(|a| Value::from(addr_text(a)))
                .collect(),
        )
    }

    pub(crate) fn connect(&mut self, cx: &mut Ctx<'_>, now: Instant, addr: SocketAddr) {
        if cx.sh.is_self(addr) {
            return;
        }
        if !self.bootstrap.contains(&addr) && self.bootstrap.len() < 64 {
            self.bootstrap.push(addr);
        }
        if self.neighbours.contains_key(&addr) {
            return;
        }
        self.pending.insert(addr, now);
        self.wake_at_expiry(now);
        cx.sh.guard.entry(addr).probed = Some(now);
        self.send_scalable_ping(cx, addr, true);
    }

    /// Makes the maintenance timer run when a join request sent at `sent`
    /// expires, not up to a tick later: a host that does not answer is
    /// replaced after the pong timeout, not after up to twice that.
    fn wake_at_expiry(&mut self, sent: Instant) {
        self.next_tick = self.next_tick.min(sent + self.cfg.pong_timeout);
    }

    /// Whether there is room for one more neighbour of degree `degree`:
    /// up to the target degree anyone is welcome; beyond it, up to the
    /// maximum, only peers that are still below the target.
    fn room_for(&self, degree: usize) -> bool {
        let cfg = &self.cfg;
        if !self.ultrapeer {
            // A leaf links with ultrapeers only, which it asks itself.
            return false;
        }
        let limit = if degree < cfg.target_degree {
            cfg.max_degree
        } else {
            cfg.target_degree
        };
        self.degree() + self.pending.len() < limit.min(cfg.max_degree)
    }

    /// Whether there is room for one more leaf.
    pub(super) fn room_for_leaf(&self) -> bool {
        self.ultrapeer && self.n_leaves < self.cfg.max_leaves
    }

    /// The number of links of our tier we look for.
    pub(super) fn target(&self) -> usize {
        if self.ultrapeer {
            self.cfg.target_degree
        } else {
            self.cfg.leaf_ultrapeers
        }
    }

    /// Below this many links of our tier we look for more at every chance.
    fn min_links(&self) -> usize {
        if self.ultrapeer {
            self.cfg.min_degree
        } else {
            self.cfg.leaf_ultrapeers
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn add_neighbour(
        &mut self,
        cx: &mut Ctx<'_>,
        now: Instant,
        peer: Peer,
        degree: usize,
        limit: usize,
        their_nonce: Option<u64>,
        leaf: bool,
    ) -> bool {
        let max = limit.min(self.cfg.max_degree);
        let cap = self.cfg.host_cache;
        if let Some(n) = self.neighbours.get_mut(&peer.udp) {
            if their_nonce.is_some() {
                n.their_nonce = their_nonce;
            }
            return true;
        }
        if leaf {
            if !self.room_for_leaf() {
                return false;
            }
        } else if self.degree() + self.pending.len() >= max {
            // Links we asked for count against the limit as if made.
            return false;
        }
        if leaf {
            self.n_leaves += 1;
            // Leaves still come: we are needed, the wait to demotion
            // starts again.
            self.roles.demote_at = None;
        } else {
            // A new ultrapeer of ours: slots are not that scarce.
            if !self.ultrapeer {
                self.roles.full_refusals = 0;
            }
            // Only ultrapeers go into the host cache.
            self.hosts.add(peer.udp, cap, &mut cx.sh.rng);
        }
        self.neighbours.insert(
            peer.udp,
            Neighbour {
                leaf,
                info: peer,
                degree,
                filter: None,
                partial: None,
                last_heard: now,
                ping_sent: None,
                filter_sent: false,
                their_nonce,
                // A new link grants one search, not a whole burst: a
                // flooder that keeps making new links gains little.
                search_allowance: 1.0_f64.min(f64::from(self.cfg.neighbour_search_burst)),
                allowance_at: now,
                searches_dropped: 0,
                guard: super::guard::Record::new(&self.cfg, now, leaf),
            },
        );
        cx.sh.push_event(Event::PeerAdded(peer));
        true
    }

    pub(super) fn remove_neighbour(&mut self, cx: &mut Ctx<'_>, addr: SocketAddr) {
        if let Some(n) = self.neighbours.remove(&addr) {
            if n.leaf {
                self.n_leaves = self.n_leaves.saturating_sub(1);
            }
            tracing::debug!(peer = %addr, "neighbour dropped");
            cx.sh.push_event(Event::PeerRemoved(n.info));
        }
    }

    /// Asks more hosts to become neighbours while below the target degree.
    /// At most `burst` requests at a time (more when below the minimum).
    pub(super) fn fill_degree(&mut self, cx: &mut Ctx<'_>, now: Instant, burst: usize) {
        let target = self.target();
        let min = self.min_links();
        let linked = self.degree();
        let have = linked + self.pending.len();
        if have >= target {
            return;
        }
        let burst = if linked < min {
            burst.max(min - linked)
        } else {
            burst
        };
        let outstanding = self.pending.len();
        if outstanding >= burst {
            return;
        }
        // A random sample of the cache, without the hosts already linked,
        // asked, or that refused lately.
        let list = &self.hosts;
        let sample = (4 * target).min(list.len());
        let mut candidates: Vec<SocketAddr> =
            rand::seq::index::sample(&mut cx.sh.rng, list.len(), sample)
                .into_iter()
                .map(|i| list.get(i))
                .filter(|a| {
                    !self.neighbours.contains_key(a)
                        && !self.pending.contains_key(a)
                        && !self.refused.contains_key(a)
                })
                .collect();
        if linked < min {
            // Few neighbours: the bootstrap peers are candidates too.
            let extra: Vec<SocketAddr> = self
                .bootstrap
                .iter()
                .copied()
                .filter(|a| {
                    !self.neighbours.contains_key(a)
                        && !self.pending.contains_key(a)
                        && !candidates.contains(a)
                })
                .collect();
            candidates.extend(extra);
        }
        if candidates.is_empty() {
            // No other host known: join walks leave through the neighbours
            // and go on elsewhere.
            candidates = self
                .neighbours
                .iter()
                .filter(|(a, n)| !n.leaf && !self.pending.contains_key(a))
                .map(|(a, _)| *a)
                .collect();
        }
        let want = (target - have).min(burst - outstanding);
        let picks: Vec<SocketAddr> = candidates
            .choose_multiple(&mut cx.sh.rng, want)
            .copied()
            .collect();
        for a in picks {
            if self.send_join(cx, now, a) {
                self.pending.insert(a, now);
                self.wake_at_expiry(now);
            }
        }
    }

    /// Pings a neighbour of our tier at once, unless heard from lately or
    /// already pinged: one that left is then dropped after the pong
    /// timeout, not a ping interval later (a leaf's ultrapeer that did
    /// not run its search).
    pub(super) fn suspect(&mut self, cx: &mut Ctx<'_>, now: Instant, addr: SocketAddr) {
        let recent = self.cfg.leaf_retry_wait;
        let Some(n) = self.neighbours.get_mut(&addr) else {
            return;
        };
        if n.leaf || n.ping_sent.is_some() || now < n.last_heard + recent {
            return;
        }
        n.ping_sent = Some(now);
        self.send_scalable_ping(cx, addr, false);
        self.next_tick = self.next_tick.min(now + tick_interval(&self.cfg));
    }

    pub(super) fn heard_neighbour(&mut self, now: Instant, addr: SocketAddr, degree: Option<i64>) {
        if let Some(n) = self.neighbours.get_mut(&addr) {
            n.last_heard = now;
            n.ping_sent = None;
            if let Some(d) = degree {
                n.degree = believed_degree(&self.cfg, d);
            }
        }
    }

    pub(super) fn on_ping(&mut self, cx: &mut Ctx<'_>, now: Instant, from: SocketAddr, p: Ping) {
        let degree = get_i64(&p.extra, "Degree");
        let join = get_bool(&p.extra, "Join") == Some(true);
        let nonce = nonce_of(&p.extra);
        let named = Peer::from_ports(p.ip, p.ports).udp;
        // The joiner: the sender as seen, unless a neighbour passes on a
        // walk that someone else started (whose first step named it as
        // seen).
        let walking = join && self.is_neighbour(&from) && named != from;
        let joiner = if walking { named } else { from };
        if cx.sh.is_self(joiner) || joiner.ip().is_unspecified() || joiner.port() == 0 {
            return;
        }
        let walk = get_i64(&p.extra, "Walk").unwrap_or(0).min(MAX_WALK);
        let leaf_join = join && get_bool(&p.extra, "Leaf") == Some(true);
        // A leaf takes no links of its own: it passes every join request
        // on to one of its ultrapeers (not back to one it came from).
        let leaf_passes = join && !self.ultrapeer && !self.is_neighbour(&joiner);
        // A leaf asking us itself is taken at once while we have a slot
        // (its walk only matters to find a slot elsewhere): the answer goes
        // back to a host that just wrote to us, not as an unsolicited
        // offer, which the probe budget of the few first ultrapeers would
        // hold back while thousands of leaves arrive.
        let take_leaf_here = leaf_join
            && !walking
            && self.ultrapeer
            && self.room_for_leaf()
            && !self.is_neighbour(&joiner);
        if leaf_passes && !walking && !self.hosts.is_empty() {
            // A leaf asked by a newcomer itself names ultrapeers it knows,
            // which the newcomer then asks itself (see above).
            let mut extra = Map::new();
            extra.insert("Accept".into(), Value::Bool(false));
            if let Some(n) = nonce {
                extra.insert("Echo".into(), Value::from(n));
            }
            extra.insert("Hosts".into(), self.hosts_value(cx, joiner));
            let m = self.scalable_pong(cx, joiner, extra);
            self.send_self(cx, joiner, m);
            return;
        }
        if join && (walk > 0 || leaf_passes) && !take_leaf_here {
            // Pass the request on to a random neighbour of our tier (never
            // a leaf), naming the joiner as seen and nothing we do not
            // know.
            let c: Vec<SocketAddr> = self
                .neighbours
                .iter()
                .filter(|(a, n)| !n.leaf && **a != joiner && **a != from)
                .map(|(a, _)| *a)
                .collect();
            let next = c.choose(&mut cx.sh.rng).copied();
            if let Some(next) = next {
                let mut extra = base_extra();
                extra.insert("Join".into(), Value::Bool(true));
                extra.insert("Walk".into(), Value::from((walk - 1).max(0)));
                if leaf_join {
                    extra.insert("Leaf".into(), Value::Bool(true));
                }
                if let Some(d) = degree {
                    extra.insert("Degree".into(), Value::from(d.clamp(0, 1024)));
                }
                if let Some(n) = nonce {
                    extra.insert("Nonce".into(), Value::from(n));
                }
                let fwd = Ping {
                    ip: joiner.ip(),
                    ttl: 0,
                    ports: Ports {
                        udp: Some(joiner.port()),
                        tcp: p.ports.tcp,
                    },
                    extra,
                };
                self.push_transmit(
                    cx,
                    Transmit {
                        dest: next,
                        message: Message::Ping(fwd),
                        from_self: false,
                    },
                );
                return;
            }
        }
        if join
            && self
                .neighbours
                .get(&joiner)
                .is_some_and(|n| n.leaf != leaf_join)
        {
            // It changed tiers: the old link goes, a new one may be made.
            self.remove_neighbour(cx, joiner);
        }
        if self.is_neighbour(&joiner) {
            if !walking {
                self.heard_neighbour(now, joiner, degree);
            }
            let mut extra = Map::new();
            if join {
                extra.insert("Accept".into(), Value::Bool(true));
            }
            if let Some(n) = nonce {
                extra.insert("Echo".into(), Value::from(n));
            }
            extra.insert("Hosts".into(), self.hosts_value(cx, joiner));
            let m = self.scalable_pong(cx, joiner, extra);
            if walking {
                self.send_unsolicited(cx, now, joiner, m);
            } else {
                self.send_self(cx, joiner, m);
            }
            return;
        }
        let mut extra = Map::new();
        if let Some(n) = nonce {
            extra.insert("Echo".into(), Value::from(n));
        }
        if join {
            // An offer: the joiner becomes a neighbour (or our leaf) only
            // when it confirms, echoing our nonce from the address we sent
            // it to.
            let d = believed_degree(&self.cfg, degree.unwrap_or(0));
            let room = if leaf_join {
                self.room_for_leaf()
            } else {
                self.room_for(d)
            };
            extra.insert("Accept".into(), Value::Bool(room));
            extra.insert("Nonce".into(), Value::from(cx.sh.guard.token(joiner)));
            if !room {
                // Where else to ask; "Full" when an ultrapeer has no slot
                // left (the sign that ultrapeers are scarce).
                if self.ultrapeer && leaf_join {
                    extra.insert("Full".into(), Value::Bool(true));
                }
            }
            if !room || leaf_join {
                // A leaf taken also learns other ultrapeers for its next
                // links (it may have known only us).
                extra.insert("Hosts".into(), self.hosts_value(cx, joiner));
            }
        } else {
            // It pings us as a neighbour, but we have no link with it (a
            // confirmation was lost, or we dropped it): it drops the link.
            extra.insert("Accept".into(), Value::Bool(false));
        }
        let m = self.scalable_pong(cx, joiner, extra);
        if walking {
            // The joiner sent us nothing itself.
            self.send_unsolicited(cx, now, joiner, m);
        } else {
            self.send_self(cx, joiner, m);
        }
    }

    /// Sends a message to an address that sent us nothing, within the
    /// probe budget.
    fn send_unsolicited(
        &mut self,
        cx: &mut Ctx<'_>,
        now: Instant,
        dest: SocketAddr,
        message: Message,
    ) {
        let t = Transmit {
            dest,
            message,
            from_self: true,
        };
        self.push_probe(cx, now, t);
    }

    pub(super) fn on_pong(&mut self, cx: &mut Ctx<'_>, now: Instant, from: SocketAddr, p: Pong) {
        let sender = Peer {
            udp: from,
            tcp_port: p.ports.tcp_or_classic(),
            rutella: true,
        };
        let degree = get_i64(&p.extra, "Degree");
        let accept = get_bool(&p.extra, "Accept");
        let confirm = get_bool(&p.extra, "Confirm") == Some(true);
        let echo = echo_of(&p.extra);
        let their_nonce = nonce_of(&p.extra);
        // A pong counts only if it echoes the nonce we gave its sender (a
        // neighbour, or a host we pinged), or, for an offer from the end of
        // a join walk, the nonce of one of our join requests.
        let own_echo = echo.is_some_and(|e| e == cx.sh.guard.token(from));
        let offer_for = match (accept, echo) {
            (Some(_), Some(e)) if !own_echo => self
                .pending
                .keys()
                .copied()
                .find(|a| cx.sh.guard.token(*a) == e),
            (Some(_), Some(_)) => Some(from),
            _ => None,
        };
        if !own_echo && offer_for.is_none() {
            tracing::debug!(peer = %from, "scalable pong without a valid echo, dropped");
            return;
        }
        cx.sh.guard.entry(from).proven = true;
        let neighbour = self.is_neighbour(&from);
        // A host we asked to become a neighbour may answer with hosts to
        // try instead (a leaf passing our request on).
        let asked = own_echo && self.pending.contains_key(&from);
        if neighbour || offer_for.is_some() || asked {
            if let Some(Value::Array(hosts)) = p.extra.get("Hosts") {
                for h in hosts.iter().take(64) {
                    if let Some(a) = h
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .map(crate::addr::normalize)
                    {
                        if !a.ip().is_unspecified() && a.port() != 0 {
                            self.add_known_host(cx, a);
                        }
                    }
                }
            }
        }
        // Only ultrapeers are kept as candidates.
        if get_bool(&p.extra, "Ultrapeer") == Some(false) {
            self.hosts.remove(&from);
        } else {
            self.add_known_host(cx, from);
        }
        if accept == Some(false) && get_bool(&p.extra, "Full") == Some(true) {
            self.roles.full_refusals = self.roles.full_refusals.saturating_add(1);
        }
        let before = self.degree();
        // Refused, or told hosts to try instead: ask another at once
        // rather than at the next tick.
        let retry = asked || (offer_for.is_some() && accept == Some(false));
        if confirm && own_echo && !neighbour {
            // The joiner confirms our offer from the address we sent it to.
            let d = believed_degree(&self.cfg, degree.unwrap_or(0));
            let max = self.cfg.max_degree;
            let leaf = get_bool(&p.extra, "Leaf") == Some(true);
            let room = if leaf {
                self.room_for_leaf()
            } else {
                self.room_for(d)
            };
            if room && self.add_neighbour(cx, now, sender, d, max, their_nonce, leaf) {
                let mut extra = Map::new();
                extra.insert("Accept".into(), Value::Bool(true));
                self.send_filter(cx, from, Some(extra));
            } else {
                let mut extra = Map::new();
                extra.insert("Accept".into(), Value::Bool(false));
                if let Some(n) = their_nonce {
                    extra.insert("Echo".into(), Value::from(n));
                }
                let m = self.scalable_pong(cx, from, extra);
                self.send_self(cx, from, m);
            }
        } else if let Some(asked) = offer_for {
            // The answer to one of our join requests.
            self.pending.remove(&asked);
            match accept {
                Some(true) if !neighbour => {
                    let d = believed_degree(&self.cfg, degree.unwrap_or(0));
                    let max = self.cfg.max_degree;
                    if self.add_neighbour(cx, now, sender, d, max, their_nonce, false) {
                        let mut extra = Map::new();
                        extra.insert("Confirm".into(), Value::Bool(true));
                        if !self.ultrapeer {
                            extra.insert("Leaf".into(), Value::Bool(true));
                        }
                        extra.insert("Nonce".into(), Value::from(cx.sh.guard.token(from)));
                        if let Some(n) = their_nonce {
                            extra.insert("Echo".into(), Value::from(n));
                        }
                        self.send_filter(cx, from, Some(extra));
                    }
                }
                Some(false) => {
                    let until = now + self.cfg.ping_interval;
                    if self.refused.len() < self.cfg.host_cache {
                        self.refused.insert(asked, until);
                    }
                    if neighbour && own_echo {
                        self.remove_neighbour(cx, from);
                    }
                }
                _ => {}
            }
        } else if accept == Some(false) && neighbour {
            // A neighbour drops the link.
            let until = now + self.cfg.ping_interval;
            if self.refused.len() < self.cfg.host_cache {
                self.refused.insert(from, until);
            }
            self.remove_neighbour(cx, from);
        }
        self.heard_neighbour(now, from, degree);
        if p.extra.contains_key("Bloom") {
            self.take_filter_part(from, &p.extra);
        }
        if self.degree() > before || (retry && self.degree() < self.min_links()) {
            // Progress, or a host to try: go on looking right away while
            // below the minimum.
            self.fill_degree(cx, now, 0);
        }
    }

    /// Takes a part of a neighbour's filter.
    fn take_filter_part(&mut self, addr: SocketAddr, extra: &Map<String, Value>) {
        let Some(n) = self.neighbours.get_mut(&addr) else {
            return;
        };
        if let Some(filter) = take_part(&mut n.partial, addr, extra) {
            if super::guard::too_full(&self.cfg, &filter) {
                tracing::debug!(peer = %addr, "neighbour's filter too full, refused");
                n.filter = None;
            } else {
                n.filter = Some(filter);
            }
        }
    }

    /// Maintenance: ping silent neighbours, drop dead ones, look for more.
    pub(super) fn tick(&mut self, cx: &mut Ctx<'_>, now: Instant) {
        let cfg = self.cfg.clone();
        let own = SocketAddr::new(
            cx.sh
                .own_ips_first()
                .unwrap_or(Ipv4Addr::UNSPECIFIED.into()),
            cx.sh.config.udp_port,
        );
        self.next_tick = now + tick_interval(&cfg);
        let mut dead = Vec::new();
        let mut ping = Vec::new();
        for (addr, n) in &mut self.neighbours {
            if let Some(sent) = n.ping_sent {
                if now >= sent + cfg.pong_timeout {
                    dead.push(*addr);
                }
                continue;
            }
            // The leaf pings (its ultrapeers' pongs name other ultrapeers
            // to keep in its cache); between ultrapeers the lower address
            // does. The other side pings only if the first stays silent,
            // so that a link costs one ping and one pong.
            let first = if self.ultrapeer {
                !n.leaf && own < *addr
            } else {
                true
            };
            let interval = if first {
                cfg.ping_interval
            } else {
                cfg.ping_interval + cfg.pong_timeout * 2
            };
            if now >= n.last_heard + interval {
                n.ping_sent = Some(now);
                ping.push(*addr);
            }
        }
        let expired: Vec<SocketAddr> = self
            .pending
            .iter()
            .filter(|(_, t)| now >= **t + cfg.pong_timeout)
            .map(|(a, _)| *a)
            .collect();
        for a in &expired {
            self.pending.remove(a);
            // No answer to a join request: most likely gone (under churn
            // the cache fills with hosts that left); it is forgotten, so
            // that the next requests go to hosts still there.
            self.hosts.remove(a);
            if self.refused.len() < cfg.host_cache {
                self.refused.insert(*a, now + cfg.ping_interval);
            }
        }
        self.refused.retain(|_, until| *until > now);
        for a in &dead {
            self.hosts.remove(a);
        }
        for a in dead {
            self.remove_neighbour(cx, a);
        }
        for a in ping {
            self.send_scalable_ping(cx, a, false);
        }
        self.fill_degree(cx, now, 2);
        self.manage_tier(cx, now);
        // Wake up again soon while something is awaited; otherwise at half
        // the ping interval, when the next pings may be due.
        let target = self.target();
        let busy = !self.pending.is_empty()
            || self.degree() < target
            || self.neighbours.values().any(|n| n.ping_sent.is_some());
        if !busy {
            self.next_tick = now + tick_interval(&cfg).max(cfg.ping_interval / 2);
        }
        if let Some(first) = self.pending.values().min().copied() {
            self.wake_at_expiry(first);
        }
    }
}

#[cfg(test)]
mod host_cache_tests {
    use super::{addr_text, HostCache};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::net::SocketAddr;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn keeps_order_and_membership_across_address_families() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut c = HostCache::default();
        for s in ["10.0.0.1:6346", "255.255.255.255:65535", "0.0.0.0:0"] {
            c.add(a(s), 8, &mut rng);
        }
        c.add(a("10.0.0.1:6346"), 8, &mut rng);
        c.remove(&a("0.0.0.0:0"));
        assert_eq!(
            c.iter().collect::<Vec<_>>(),
            [a("10.0.0.1:6346"), a("255.255.255.255:65535")]
        );
        // A first IPv6 host: the IPv4 ones stay, in their order.
        c.add(a("[2001:db8::1]:6346"), 8, &mut rng);
        c.add(a("10.0.0.1:6346"), 8, &mut rng);
        c.add(a("10.0.0.2:6346"), 8, &mut rng);
        c.remove(&a("255.255.255.255:65535"));
        assert_eq!(
            c.iter().collect::<Vec<_>>(),
            [
                a("10.0.0.1:6346"),
                a("[2001:db8::1]:6346"),
                a("10.0.0.2:6346")
            ]
        );
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(1), a("[2001:db8::1]:6346"));
    }

    #[test]
    fn a_full_cache_replaces_a_random_host() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut c = HostCache::default();
        for i in 0..20u8 {
            c.add(SocketAddr::from(([10, 0, 0, i], 1000)), 4, &mut rng);
        }
        assert_eq!(c.len(), 4);
        let hosts: Vec<SocketAddr> = c.iter().collect();
        let mut unique = hosts.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 4);
    }

    #[test]
    fn addr_text_is_to_string() {
        use rand::Rng;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut addrs = vec![
            a("0.0.0.0:0"),
            a("255.255.255.255:65535"),
            a("10.0.0.1:6346"),
            a("[2001:db8::1]:6346"),
            a("[::ffff:1.2.3.4]:1"),
        ];
        for _ in 0..10_000 {
            let ip: [u8; 4] = rng.gen();
            addrs.push(SocketAddr::from((ip, rng.gen::<u16>())));
        }
        for addr in addrs {
            assert_eq!(addr_text(addr), addr.to_string());
        }
    }
}
