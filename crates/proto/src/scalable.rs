//! The scalable overlay: a bounded set of neighbours, trigram Bloom filters
//! of their libraries, and searches that grow only as far as needed.
//!
//! It runs inside [`Overlay`] when [`Config::mode`](crate::Config::mode) is
//! [`Mode::Scalable`](crate::Mode::Scalable), beside the classic code, which
//! still serves classic peers (and rutella peers in classic mode). Every
//! message of the scalable overlay is a classic message carrying the
//! extension field `"Scalable": 2`; a message without it is handled
//! classically. The fields are described in `docs/PROTOCOL.md`.
//!
//! - **Neighbours.** A node keeps between [`ScalableConfig::min_degree`]
//!   and [`ScalableConfig::max_degree`] neighbours, aiming at
//!   [`ScalableConfig::target_degree`]. It asks a host to become a neighbour
//!   with a `Join` ping; the answer is a pong with `Accept`, carrying hosts
//!   it knows (the host cache) and, when accepted, its Bloom filter. A
//!   neighbour silent for a ping interval is pinged; one that does not
//!   answer within the pong timeout is dropped and replaced from the cache.
//! - **Filters.** Each node sends its neighbours a Bloom filter of the
//!   character trigrams of its (lowercased) file names. A query whose
//!   trigrams are not all in a neighbour's filter cannot match any of its
//!   names, so substring search keeps working while queries skip the
//!   neighbours that cannot answer (one-hop replication).
//! - **Queries** carry the search id as a GUID (duplicates are suppressed),
//!   a `"TTL"` and a `"Hops"` count. Hits go back along the query's path. The
//!   querier grows a search in steps (dynamic querying): first every
//!   neighbour with TTL 0 (each answers and asks those of its own
//!   neighbours whose filter matches), then, while fewer than
//!   [`ScalableConfig::enough_results`] peers have answered, deeper TTLs
//!   through more and more neighbours, doubling the estimated number of
//!   peers covered at each step, within [`ScalableConfig::query_budget`]
//!   estimated messages.

use crate::message::{Message, Ping, Pong, Ports, Query, QueryHit, MAX_DATAGRAM};
use crate::overlay::{
    echo_of, nonce_of, Config, Event, IncomingQuery, Overlay, Peer, SearchId, Transmit,
};
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// Version of the scalable overlay, the value of the `"Scalable"` field.
pub const SCALABLE_VERSION: u64 = 2;
/// Largest filter part carried by one message, in bytes (before base64).
pub const BLOOM_PART_BYTES: usize = 4096;
/// Smallest and largest filter sizes, in bits.
pub const BLOOM_MIN_BITS: usize = 256;
/// Largest filter size, in bits (a library with more trigrams gets a
/// fuller filter: more false positives, never a false negative).
pub const BLOOM_MAX_BITS: usize = 1 << 20;
/// Hash functions per trigram.
pub const BLOOM_HASHES: u32 = 4;
/// Highest TTL a node accepts on a query (higher ones are lowered): a
/// query flooded four levels deep already reaches degree⁴ peers.
pub const MAX_ACCEPTED_TTL: i64 = 4;
/// Longest join walk a node starts or passes on.
pub const MAX_WALK: i64 = 6;
/// Bytes an answer leaves free under [`MAX_DATAGRAM`]: the longest own
/// address the driver fills in, and what the first hop back adds.
pub(crate) const HIT_ROOM: usize = 64;

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
    /// most [`MAX_WALK`]).
    pub join_walk: i64,
    /// Answer datagrams of others passed back for one query, at most.
    pub hits_forwarded_per_query: u32,
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
        }
    }
}

// ---------------------------------------------------------------- filters

/// FNV-1a, 64 bits: the trigram hash of the protocol.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Calls `f` with the hash pair of every character trigram of the
/// lowercased `text`.
fn for_each_trigram(text: &str, mut f: impl FnMut(u32, u32)) {
    let lower = crate::matching::fold(text);
    let starts: Vec<usize> = lower.char_indices().map(|(i, _)| i).collect();
    for w in 0..starts.len().saturating_sub(2) {
        let end = starts.get(w + 3).copied().unwrap_or(lower.len());
        let h = fnv1a(&lower.as_bytes()[starts[w]..end]);
        f(h as u32, ((h >> 32) as u32) | 1);
    }
}

/// The trigram hashes of a query, computed once and tested against many
/// filters. A query of fewer than three characters has none and matches
/// every filter.
#[derive(Debug, Clone, Default)]
pub struct QueryTrigrams(Vec<(u32, u32)>);

impl QueryTrigrams {
    /// The trigrams of `query`.
    pub fn new(query: &str) -> Self {
        let mut v = Vec::new();
        for_each_trigram(query, |a, b| v.push((a, b)));
        v.sort_unstable();
        v.dedup();
        QueryTrigrams(v)
    }
}

/// A Bloom filter of the character trigrams of file names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrigramBloom {
    bits: Vec<u8>,
    hashes: u32,
}

impl TrigramBloom {
    /// The filter of these names, sized to their trigrams (a power of two
    /// of at least 8 bits per trigram, within the protocol's limits).
    pub fn from_names<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = BTreeSet::new();
        for name in names {
            for_each_trigram(crate::matching::searched_part(name.as_ref()), |a, b| {
                set.insert((a, b));
            });
        }
        let want = (set.len() * 8).next_power_of_two();
        let m = want.clamp(BLOOM_MIN_BITS, BLOOM_MAX_BITS);
        let mut f = TrigramBloom {
            bits: vec![0; m / 8],
            hashes: BLOOM_HASHES,
        };
        for (a, b) in set {
            f.insert(a, b);
        }
        f
    }

    fn mask(&self) -> u32 {
        (self.bits.len() * 8 - 1) as u32
    }

    fn insert(&mut self, a: u32, b: u32) {
        let mask = self.mask();
        for i in 0..self.hashes {
            let bit = (a.wrapping_add(i.wrapping_mul(b)) & mask) as usize;
            self.bits[bit / 8] |= 1 << (bit % 8);
        }
    }

    fn contains(&self, a: u32, b: u32) -> bool {
        let mask = self.mask();
        (0..self.hashes).all(|i| {
            let bit = (a.wrapping_add(i.wrapping_mul(b)) & mask) as usize;
            self.bits[bit / 8] & (1 << (bit % 8)) != 0
        })
    }

    /// Whether a name of the library may contain the query (false
    /// positives are possible, false negatives are not).
    pub fn may_match(&self, query: &QueryTrigrams) -> bool {
        query.0.iter().all(|(a, b)| self.contains(*a, *b))
    }

    /// Size in bits.
    pub fn bits(&self) -> usize {
        self.bits.len() * 8
    }

    /// The bit array, bit `i` at byte `i / 8`, mask `1 << (i % 8)`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }
}

/// A filter being received in parts.
#[derive(Debug)]
struct PartialBloom {
    gen: u64,
    hashes: u32,
    bits: Vec<u8>,
    got: BTreeSet<usize>,
}

// ---------------------------------------------------------------- base64

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b64_decode(text: &str) -> Option<Vec<u8>> {
    let s = text.as_bytes();
    if s.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        let mut pad = 0;
        for (i, c) in chunk.iter().enumerate() {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                b'=' if i >= 2 => {
                    pad += 1;
                    0
                }
                _ => return None,
            };
            if pad > 0 && *c != b'=' {
                return None;
            }
            n = (n << 6) | u32::from(v);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

// ---------------------------------------------------------------- fields

fn get_i64(m: &Map<String, Value>, k: &str) -> Option<i64> {
    m.get(k).and_then(Value::as_i64)
}

fn get_bool(m: &Map<String, Value>, k: &str) -> Option<bool> {
    m.get(k).and_then(Value::as_bool)
}

/// Version 1 nodes (answers sent straight to the querier, links made
/// without nonces) are served classically.
fn is_scalable(m: &Map<String, Value>) -> bool {
    get_i64(m, "Scalable").is_some_and(|v| v >= 2)
}

fn base_extra() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("Scalable".into(), Value::from(SCALABLE_VERSION));
    m
}

// ---------------------------------------------------------------- state

#[derive(Debug)]
struct Neighbour {
    info: Peer,
    degree: usize,
    filter: Option<TrigramBloom>,
    partial: Option<PartialBloom>,
    last_heard: Instant,
    ping_sent: Option<Instant>,
    filter_sent: bool,
    /// The nonce it gave us: our pongs to it echo it.
    their_nonce: Option<u64>,
}

/// A bounded set of known hosts, with random replacement when full.
#[derive(Debug, Default)]
struct HostCache {
    list: Vec<SocketAddrV4>,
    /// Membership only (never iterated, so its order does not matter).
    set: HashSet<SocketAddrV4>,
}

impl HostCache {
    fn add(&mut self, addr: SocketAddrV4, cap: usize, rng: &mut impl Rng) {
        if cap == 0 || self.set.contains(&addr) {
            return;
        }
        if self.list.len() >= cap {
            let i = rng.gen_range(0..self.list.len());
            self.set.remove(&self.list[i]);
            self.list[i] = addr;
        } else {
            self.list.push(addr);
        }
        self.set.insert(addr);
    }

    fn remove(&mut self, addr: &SocketAddrV4) {
        if self.set.remove(addr) {
            self.list.retain(|a| a != addr);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    /// Highest TTL handled: -2 none yet, -1 answered only.
    max_ttl: i64,
    hops: u64,
    /// The driver has not answered yet.
    awaiting_answer: bool,
    /// The neighbour it came from: answers go back there.
    prev: SocketAddrV4,
    /// Answers of others passed back for it so far.
    hits_forwarded: u32,
}

/// The scalable part of one of our searches (dynamic querying).
#[derive(Debug)]
pub(crate) struct Dq {
    /// No more steps: enough answers, nothing left to grow, or over budget.
    pub(crate) done: bool,
    next_step: Instant,
    /// TTL sent to each neighbour so far.
    depth: BTreeMap<SocketAddrV4, i64>,
    /// Peers that answered with at least one file.
    responders: BTreeSet<SocketAddrV4>,
    est_cost: f64,
    est_cover: f64,
}

/// Neighbours, filters, host cache and duplicate table of a scalable node.
#[derive(Debug)]
pub(crate) struct ScalableState {
    neighbours: BTreeMap<SocketAddrV4, Neighbour>,
    /// Join requests sent and not answered, with when they were sent.
    pending: BTreeMap<SocketAddrV4, Instant>,
    hosts: HostCache,
    /// Hosts that refused to be neighbours, not asked again before then.
    refused: BTreeMap<SocketAddrV4, Instant>,
    bootstrap: Vec<SocketAddrV4>,
    filter: TrigramBloom,
    filter_gen: u64,
    /// Looked up only, never iterated (eviction follows `seen_order`).
    seen: HashMap<u64, Seen>,
    seen_order: VecDeque<u64>,
    next_tick: Instant,
}

impl ScalableState {
    pub(crate) fn new(config: &Config, now: Instant) -> Self {
        ScalableState {
            neighbours: BTreeMap::new(),
            pending: BTreeMap::new(),
            hosts: HostCache::default(),
            refused: BTreeMap::new(),
            bootstrap: Vec::new(),
            filter: TrigramBloom::from_names(std::iter::empty::<&str>()),
            filter_gen: 0,
            seen: HashMap::new(),
            seen_order: VecDeque::new(),
            next_tick: now + tick_interval(&config.scalable),
        }
    }

    pub(crate) fn neighbour_peers(&self) -> impl Iterator<Item = Peer> + '_ {
        self.neighbours.values().map(|n| n.info)
    }

    /// Whether `addr` is a neighbour or a bootstrap peer the user gave.
    pub(crate) fn knows(&self, addr: &SocketAddrV4) -> bool {
        self.neighbours.contains_key(addr) || self.bootstrap.contains(addr)
    }
}

fn tick_interval(c: &ScalableConfig) -> Duration {
    c.pong_timeout
        .min(c.ping_interval)
        .max(Duration::from_millis(1))
}

/// Estimated messages of a query sent to a neighbour of degree `dn` with
/// TTL `r`, in a network of mean degree `d`.
fn est_cost(r: i64, dn: f64, d: f64) -> f64 {
    if r <= 0 {
        return 1.0;
    }
    let mut level = 1.0;
    let mut sum = 0.0;
    for _ in 0..r {
        sum += level;
        level *= (d - 1.0).max(1.0);
    }
    1.0 + (dn - 1.0).max(1.0) * sum
}

/// Estimated peers whose names are checked by that query (the nodes at the
/// last level and every neighbour whose filter they hold).
fn est_cover(r: i64, dn: f64, d: f64) -> f64 {
    match r {
        i64::MIN..=-1 => 0.0,
        0 => 1.0 + dn,
        _ => (dn - 1.0).max(1.0) * (d - 1.0).max(1.0).powi(r as i32 - 1) * d,
    }
}

impl Overlay {
    fn sc_config(&self) -> &ScalableConfig {
        &self.config.scalable
    }

    /// Which overlay this node runs.
    pub fn mode(&self) -> crate::Mode {
        self.config.mode
    }

    /// Number of neighbours in the scalable overlay (0 in classic mode).
    pub fn degree(&self) -> usize {
        self.sc.as_ref().map_or(0, |s| s.neighbours.len())
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
    pub fn known_hosts(&self) -> Vec<SocketAddrV4> {
        self.sc
            .as_ref()
            .map(|s| s.hosts.list.clone())
            .unwrap_or_default()
    }

    /// Adds a host to the scalable host cache: a candidate neighbour.
    pub fn add_known_host(&mut self, addr: SocketAddrV4) {
        let cap = self.config.scalable.host_cache;
        if self.is_self(addr) {
            return;
        }
        if let Some(sc) = &mut self.sc {
            sc.hosts.add(addr, cap, &mut self.rng);
        }
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
        let Some(sc) = &mut self.sc else { return };
        if sc.filter == filter {
            return;
        }
        sc.filter = filter;
        sc.filter_gen += 1;
        let addrs: Vec<SocketAddrV4> = sc.neighbours.keys().copied().collect();
        for a in addrs {
            self.send_filter(a, None);
        }
    }

    /// A scalable pong to `dest`; to a neighbour it echoes the nonce that
    /// neighbour gave us, which is how it knows the pong is ours.
    fn scalable_pong(&self, dest: SocketAddrV4, mut extra: Map<String, Value>) -> Message {
        extra.insert("Scalable".into(), Value::from(SCALABLE_VERSION));
        extra.insert("Degree".into(), Value::from(self.degree() as u64));
        if !extra.contains_key("Echo") {
            if let Some(n) = self
                .sc
                .as_ref()
                .and_then(|sc| sc.neighbours.get(&dest))
                .and_then(|n| n.their_nonce)
            {
                extra.insert("Echo".into(), Value::from(n));
            }
        }
        Message::Pong(Pong {
            ip: Ipv4Addr::UNSPECIFIED,
            ports: self.own_ports(),
            extra,
        })
    }

    fn send_self(&mut self, dest: SocketAddrV4, message: Message) {
        self.push_transmit(Transmit {
            dest,
            message,
            from_self: true,
        });
    }

    /// Our scalable ping to `dest`: a join request or a keep-alive. It
    /// carries the nonce that `dest` must echo.
    fn scalable_ping_to(&self, dest: SocketAddrV4, join: bool) -> Transmit {
        let mut extra = base_extra();
        extra.insert("Degree".into(), Value::from(self.degree() as u64));
        extra.insert("Nonce".into(), Value::from(self.guard.token(dest)));
        if join {
            extra.insert("Join".into(), Value::Bool(true));
            let walk = self.config.scalable.join_walk.clamp(0, MAX_WALK);
            if walk > 0 {
                extra.insert("Walk".into(), Value::from(walk));
            }
        }
        Transmit {
            dest,
            message: Message::Ping(Ping {
                ip: Ipv4Addr::UNSPECIFIED,
                ttl: 0,
                ports: self.own_ports(),
                extra,
            }),
            from_self: true,
        }
    }

    fn send_scalable_ping(&mut self, dest: SocketAddrV4, join: bool) {
        let t = self.scalable_ping_to(dest, join);
        self.push_transmit(t);
    }

    /// Asks `dest` to become a neighbour. A host that sent us nothing is
    /// asked only within the probe budget. Returns whether it was asked.
    fn send_join(&mut self, now: Instant, dest: SocketAddrV4) -> bool {
        let t = self.scalable_ping_to(dest, true);
        let sent = self.push_probe(now, t);
        if sent {
            self.guard.entry(dest).probed = Some(now);
        }
        sent
    }

    /// Sends our filter to a neighbour; with `first`, its first part rides
    /// in that pong (whose extra fields are given).
    fn send_filter(&mut self, dest: SocketAddrV4, first: Option<Map<String, Value>>) {
        let Some(sc) = &mut self.sc else { return };
        if let Some(n) = sc.neighbours.get_mut(&dest) {
            n.filter_sent = true;
        }
        let gen = sc.filter_gen;
        let bits = sc.filter.bits();
        let parts: Vec<(usize, String)> = sc
            .filter
            .as_bytes()
            .chunks(BLOOM_PART_BYTES)
            .enumerate()
            .map(|(i, c)| (i * BLOOM_PART_BYTES, b64_encode(c)))
            .collect();
        let mut first = first;
        for (offset, data) in parts {
            let mut extra = first.take().unwrap_or_default();
            extra.insert("Bloom".into(), Value::from(data));
            extra.insert("BloomBits".into(), Value::from(bits as u64));
            extra.insert("BloomHashes".into(), Value::from(BLOOM_HASHES));
            extra.insert("BloomOffset".into(), Value::from(offset as u64));
            extra.insert("BloomGen".into(), Value::from(gen));
            let m = self.scalable_pong(dest, extra);
            self.send_self(dest, m);
        }
    }

    fn hosts_value(&mut self, exclude: SocketAddrV4) -> Value {
        let want = self.config.scalable.hosts_per_pong;
        let Some(sc) = &self.sc else {
            return Value::Array(vec![]);
        };
        // Random hosts of the cache (which holds the neighbours too).
        let list = &sc.hosts.list;
        let picks: Vec<Value> =
            rand::seq::index::sample(&mut self.rng, list.len(), want.min(list.len()))
                .into_iter()
                .map(|i| list[i])
                .filter(|a| *a != exclude)
                .map(|a| Value::from(a.to_string()))
                .collect();
        Value::Array(picks)
    }

    pub(crate) fn scalable_connect(&mut self, now: Instant, addr: SocketAddrV4, _tcp_port: u16) {
        if self.is_self(addr) {
            return;
        }
        let Some(sc) = &mut self.sc else { return };
        if !sc.bootstrap.contains(&addr) && sc.bootstrap.len() < 64 {
            sc.bootstrap.push(addr);
        }
        if sc.neighbours.contains_key(&addr) {
            return;
        }
        sc.pending.insert(addr, now);
        self.guard.entry(addr).probed = Some(now);
        self.send_scalable_ping(addr, true);
    }

    /// Whether there is room for one more neighbour of degree `degree`:
    /// up to the target degree anyone is welcome; beyond it, up to the
    /// maximum, only peers that are still below the target.
    fn room_for(&self, degree: usize) -> bool {
        let cfg = &self.config.scalable;
        let limit = if degree < cfg.target_degree {
            cfg.max_degree
        } else {
            cfg.target_degree
        };
        let Some(sc) = &self.sc else { return false };
        sc.neighbours.len() + sc.pending.len() < limit.min(cfg.max_degree)
    }

    fn add_neighbour(
        &mut self,
        now: Instant,
        peer: Peer,
        degree: usize,
        limit: usize,
        their_nonce: Option<u64>,
    ) -> bool {
        let max = limit.min(self.config.scalable.max_degree);
        let cap = self.config.scalable.host_cache;
        let Some(sc) = &mut self.sc else { return false };
        if let Some(n) = sc.neighbours.get_mut(&peer.udp) {
            if their_nonce.is_some() {
                n.their_nonce = their_nonce;
            }
            return true;
        }
        // Links we asked for count against the limit as if made.
        if sc.neighbours.len() + sc.pending.len() >= max {
            return false;
        }
        sc.hosts.add(peer.udp, cap, &mut self.rng);
        sc.neighbours.insert(
            peer.udp,
            Neighbour {
                info: peer,
                degree,
                filter: None,
                partial: None,
                last_heard: now,
                ping_sent: None,
                filter_sent: false,
                their_nonce,
            },
        );
        self.push_event(Event::PeerAdded(peer));
        true
    }

    fn remove_neighbour(&mut self, addr: SocketAddrV4) {
        let Some(sc) = &mut self.sc else { return };
        if let Some(n) = sc.neighbours.remove(&addr) {
            tracing::debug!(peer = %addr, "neighbour dropped");
            self.push_event(Event::PeerRemoved(n.info));
        }
    }

    /// Asks more hosts to become neighbours while below the target degree.
    /// At most `burst` requests at a time (more when below the minimum).
    fn fill_degree(&mut self, now: Instant, burst: usize) {
        let target = self.config.scalable.target_degree;
        let min = self.config.scalable.min_degree;
        let Some(sc) = &self.sc else { return };
        let have = sc.neighbours.len() + sc.pending.len();
        if have >= target {
            return;
        }
        let burst = if sc.neighbours.len() < min {
            burst.max(min - sc.neighbours.len())
        } else {
            burst
        };
        let outstanding = sc.pending.len();
        if outstanding >= burst {
            return;
        }
        // A random sample of the cache, without the hosts already linked,
        // asked, or that refused lately.
        let list = &sc.hosts.list;
        let sample = (4 * target).min(list.len());
        let mut candidates: Vec<SocketAddrV4> =
            rand::seq::index::sample(&mut self.rng, list.len(), sample)
                .into_iter()
                .map(|i| list[i])
                .filter(|a| {
                    !sc.neighbours.contains_key(a)
                        && !sc.pending.contains_key(a)
                        && !sc.refused.contains_key(a)
                })
                .collect();
        if sc.neighbours.len() < min {
            // Few neighbours: the bootstrap peers are candidates too.
            let extra: Vec<SocketAddrV4> = sc
                .bootstrap
                .iter()
                .copied()
                .filter(|a| {
                    !sc.neighbours.contains_key(a)
                        && !sc.pending.contains_key(a)
                        && !candidates.contains(a)
                })
                .collect();
            candidates.extend(extra);
        }
        if candidates.is_empty() {
            // No other host known: join walks leave through the neighbours
            // and go on elsewhere.
            candidates = sc
                .neighbours
                .keys()
                .copied()
                .filter(|a| !sc.pending.contains_key(a))
                .collect();
        }
        let want = (target - have).min(burst - outstanding);
        let picks: Vec<SocketAddrV4> = candidates
            .choose_multiple(&mut self.rng, want)
            .copied()
            .collect();
        for a in picks {
            if self.send_join(now, a) {
                if let Some(sc) = &mut self.sc {
                    sc.pending.insert(a, now);
                }
            }
        }
    }

    fn heard_neighbour(&mut self, now: Instant, addr: SocketAddrV4, degree: Option<i64>) {
        let Some(sc) = &mut self.sc else { return };
        if let Some(n) = sc.neighbours.get_mut(&addr) {
            n.last_heard = now;
            n.ping_sent = None;
            if let Some(d) = degree {
                n.degree = d.clamp(0, 1024) as usize;
            }
        }
    }

    /// Handles a message of the scalable overlay; gives back any other
    /// message for the classic code.
    pub(crate) fn scalable_message(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        message: Message,
    ) -> Option<Message> {
        if self.sc.is_none() {
            return Some(message);
        }
        let scalable = match &message {
            Message::Ping(m) => is_scalable(&m.extra) && m.ports.is_rutella(),
            Message::Pong(m) => is_scalable(&m.extra) && m.ports.is_rutella(),
            Message::Query(m) => is_scalable(&m.extra) && m.ports.is_rutella(),
            Message::QueryHit(m) => is_scalable(&m.extra),
        };
        if !scalable {
            return Some(message);
        }
        match message {
            Message::Ping(p) => self.sc_on_ping(now, from, p),
            Message::Pong(p) => self.sc_on_pong(now, from, p),
            Message::Query(q) => self.sc_on_query(now, from, q),
            Message::QueryHit(h) => self.sc_on_hit(now, from, h),
        }
        None
    }

    fn is_neighbour(&self, addr: &SocketAddrV4) -> bool {
        self.sc
            .as_ref()
            .is_some_and(|s| s.neighbours.contains_key(addr))
    }

    fn sc_on_ping(&mut self, now: Instant, from: SocketAddrV4, p: Ping) {
        let degree = get_i64(&p.extra, "Degree");
        let join = get_bool(&p.extra, "Join") == Some(true);
        let nonce = nonce_of(&p.extra);
        let named = Peer::from_ports(p.ip, p.ports).udp;
        // The joiner: the sender as seen, unless a neighbour passes on a
        // walk that someone else started (whose first step named it as
        // seen).
        let walking = join && self.is_neighbour(&from) && named != from;
        let joiner = if walking { named } else { from };
        if self.is_self(joiner) || joiner.ip().is_unspecified() || joiner.port() == 0 {
            return;
        }
        let sender = Peer {
            udp: joiner,
            tcp_port: p.ports.tcp_or_classic(),
            rutella: true,
        };
        let walk = get_i64(&p.extra, "Walk").unwrap_or(0).min(MAX_WALK);
        if join && walk > 0 {
            // Pass the request on to a random neighbour, naming the joiner
            // as seen and nothing we do not know.
            let next = self.sc.as_ref().and_then(|sc| {
                let c: Vec<SocketAddrV4> = sc
                    .neighbours
                    .keys()
                    .copied()
                    .filter(|a| *a != joiner && *a != from)
                    .collect();
                c.choose(&mut self.rng).copied()
            });
            if let Some(next) = next {
                let mut extra = base_extra();
                extra.insert("Join".into(), Value::Bool(true));
                extra.insert("Walk".into(), Value::from(walk - 1));
                if let Some(d) = degree {
                    extra.insert("Degree".into(), Value::from(d.clamp(0, 1024)));
                }
                if let Some(n) = nonce {
                    extra.insert("Nonce".into(), Value::from(n));
                }
                let fwd = Ping {
                    ip: *joiner.ip(),
                    ttl: 0,
                    ports: Ports {
                        udp: Some(joiner.port()),
                        tcp: p.ports.tcp,
                    },
                    extra,
                };
                self.push_transmit(Transmit {
                    dest: next,
                    message: Message::Ping(fwd),
                    from_self: false,
                });
                return;
            }
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
            extra.insert("Hosts".into(), self.hosts_value(joiner));
            let m = self.scalable_pong(joiner, extra);
            if walking {
                self.send_unsolicited(now, joiner, m);
            } else {
                self.send_self(joiner, m);
            }
            return;
        }
        let mut extra = Map::new();
        if let Some(n) = nonce {
            extra.insert("Echo".into(), Value::from(n));
        }
        if join {
            // An offer: the joiner becomes a neighbour only when it
            // confirms, echoing our nonce from the address we sent it to.
            let d = degree.unwrap_or(0).clamp(0, 1024) as usize;
            extra.insert("Accept".into(), Value::Bool(self.room_for(d)));
            extra.insert("Nonce".into(), Value::from(self.guard.token(joiner)));
        } else {
            // It pings us as a neighbour, but we have no link with it (a
            // confirmation was lost, or we dropped it): it drops the link.
            extra.insert("Accept".into(), Value::Bool(false));
        }
        let m = self.scalable_pong(joiner, extra);
        if walking {
            // The joiner sent us nothing itself.
            self.send_unsolicited(now, joiner, m);
        } else {
            self.send_self(joiner, m);
        }
        let _ = sender;
    }

    /// Sends a message to an address that sent us nothing, within the
    /// probe budget.
    fn send_unsolicited(&mut self, now: Instant, dest: SocketAddrV4, message: Message) {
        let t = Transmit {
            dest,
            message,
            from_self: true,
        };
        self.push_probe(now, t);
    }

    fn sc_on_pong(&mut self, now: Instant, from: SocketAddrV4, p: Pong) {
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
        let own_echo = echo.is_some_and(|e| e == self.guard.token(from));
        let offer_for = match (accept, echo) {
            (Some(_), Some(e)) if !own_echo => self.sc.as_ref().and_then(|sc| {
                sc.pending
                    .keys()
                    .copied()
                    .find(|a| self.guard.token(*a) == e)
            }),
            (Some(_), Some(_)) => Some(from),
            _ => None,
        };
        if !own_echo && offer_for.is_none() {
            tracing::debug!(peer = %from, "scalable pong without a valid echo, dropped");
            return;
        }
        self.guard.entry(from).proven = true;
        let neighbour = self.is_neighbour(&from);
        if neighbour || offer_for.is_some() {
            if let Some(Value::Array(hosts)) = p.extra.get("Hosts") {
                for h in hosts.iter().take(64) {
                    if let Some(a) = h.as_str().and_then(|s| s.parse::<SocketAddrV4>().ok()) {
                        if !a.ip().is_unspecified() && a.port() != 0 {
                            self.add_known_host(a);
                        }
                    }
                }
            }
        }
        self.add_known_host(from);
        let before = self.degree();
        if confirm && own_echo && !neighbour {
            // The joiner confirms our offer from the address we sent it to.
            let d = degree.unwrap_or(0).clamp(0, 1024) as usize;
            let max = self.config.scalable.max_degree;
            if self.room_for(d) && self.add_neighbour(now, sender, d, max, their_nonce) {
                let mut extra = Map::new();
                extra.insert("Accept".into(), Value::Bool(true));
                self.send_filter(from, Some(extra));
            } else {
                let mut extra = Map::new();
                extra.insert("Accept".into(), Value::Bool(false));
                if let Some(n) = their_nonce {
                    extra.insert("Echo".into(), Value::from(n));
                }
                let m = self.scalable_pong(from, extra);
                self.send_self(from, m);
            }
        } else if let Some(asked) = offer_for {
            // The answer to one of our join requests.
            if let Some(sc) = &mut self.sc {
                sc.pending.remove(&asked);
            }
            match accept {
                Some(true) if !neighbour => {
                    let d = degree.unwrap_or(0).clamp(0, 1024) as usize;
                    let max = self.config.scalable.max_degree;
                    if self.add_neighbour(now, sender, d, max, their_nonce) {
                        let mut extra = Map::new();
                        extra.insert("Confirm".into(), Value::Bool(true));
                        extra.insert("Nonce".into(), Value::from(self.guard.token(from)));
                        if let Some(n) = their_nonce {
                            extra.insert("Echo".into(), Value::from(n));
                        }
                        self.send_filter(from, Some(extra));
                    }
                }
                Some(false) => {
                    let until = now + self.config.scalable.ping_interval;
                    if let Some(sc) = &mut self.sc {
                        if sc.refused.len() < self.config.scalable.host_cache {
                            sc.refused.insert(asked, until);
                        }
                    }
                    if neighbour && own_echo {
                        self.remove_neighbour(from);
                    }
                }
                _ => {}
            }
        } else if accept == Some(false) && neighbour {
            // A neighbour drops the link.
            let until = now + self.config.scalable.ping_interval;
            if let Some(sc) = &mut self.sc {
                if sc.refused.len() < self.config.scalable.host_cache {
                    sc.refused.insert(from, until);
                }
            }
            self.remove_neighbour(from);
        }
        self.heard_neighbour(now, from, degree);
        if p.extra.contains_key("Bloom") {
            self.take_filter_part(from, &p.extra);
        }
        if self.degree() > before {
            // Progress: go on looking right away while below the minimum.
            self.fill_degree(now, 0);
        }
    }
    fn take_filter_part(&mut self, addr: SocketAddrV4, extra: &Map<String, Value>) {
        let Some(sc) = &mut self.sc else { return };
        let Some(n) = sc.neighbours.get_mut(&addr) else {
            return;
        };
        let (Some(bits), Some(hashes), Some(offset), Some(gen), Some(data)) = (
            get_i64(extra, "BloomBits"),
            get_i64(extra, "BloomHashes"),
            get_i64(extra, "BloomOffset"),
            get_i64(extra, "BloomGen"),
            extra.get("Bloom").and_then(Value::as_str),
        ) else {
            tracing::debug!(peer = %addr, "filter part lacks a field, ignored");
            return;
        };
        let bits = bits as usize;
        let valid_size =
            bits.is_power_of_two() && (BLOOM_MIN_BITS..=BLOOM_MAX_BITS).contains(&bits);
        let offset = offset.max(0) as usize;
        let Some(data) = b64_decode(data) else {
            tracing::debug!(peer = %addr, "filter part is not base64, ignored");
            return;
        };
        let len = bits / 8;
        let expected = BLOOM_PART_BYTES.min(len.saturating_sub(offset));
        if !valid_size
            || !(1..=16).contains(&hashes)
            || offset % BLOOM_PART_BYTES != 0
            || offset >= len
            || data.len() != expected
        {
            tracing::debug!(peer = %addr, "invalid filter part, ignored");
            return;
        }
        let gen = gen as u64;
        let fresh = n
            .partial
            .as_ref()
            .is_none_or(|p| p.gen != gen || p.bits.len() != len || p.hashes != hashes as u32);
        if fresh {
            n.partial = Some(PartialBloom {
                gen,
                hashes: hashes as u32,
                bits: vec![0; len],
                got: BTreeSet::new(),
            });
        }
        let Some(p) = &mut n.partial else { return };
        p.bits[offset..offset + data.len()].copy_from_slice(&data);
        p.got.insert(offset);
        if p.got.len() == len.div_ceil(BLOOM_PART_BYTES) {
            if let Some(done) = n.partial.take() {
                n.filter = Some(TrigramBloom {
                    bits: done.bits,
                    hashes: done.hashes,
                });
            }
        }
    }

    fn remember(&mut self, id: u64, prev: SocketAddrV4) -> Seen {
        let cap = self.config.scalable.seen_queries.max(1);
        let fresh = Seen {
            max_ttl: -2,
            hops: 0,
            awaiting_answer: false,
            prev,
            hits_forwarded: 0,
        };
        let Some(sc) = &mut self.sc else {
            return fresh;
        };
        if let Some(s) = sc.seen.get(&id) {
            return *s;
        }
        while sc.seen.len() >= cap {
            match sc.seen_order.pop_front() {
                Some(old) => {
                    sc.seen.remove(&old);
                }
                None => break,
            }
        }
        sc.seen.insert(id, fresh);
        sc.seen_order.push_back(id);
        fresh
    }

    fn sc_on_query(&mut self, now: Instant, from: SocketAddrV4, q: Query) {
        let Some(id) = q.id else {
            tracing::debug!(%from, "scalable query without an id, dropped");
            return;
        };
        if !self.is_neighbour(&from) {
            // Queries travel between neighbours only; their answers go back
            // the way they came.
            tracing::debug!(%from, "scalable query from a host that is not a neighbour, dropped");
            return;
        }
        if q.text.len() > crate::message::MAX_QUERY_LEN {
            tracing::debug!(%from, "dropping over-long query");
            return;
        }
        if self.searches.contains_key(&SearchId(id)) {
            return;
        }
        self.heard_neighbour(now, from, get_i64(&q.extra, "Degree"));
        let ttl = get_i64(&q.extra, "TTL")
            .unwrap_or(0)
            .clamp(-1, MAX_ACCEPTED_TTL);
        let hops = get_i64(&q.extra, "Hops").unwrap_or(1).clamp(0, 255) as u64;
        // Duplicates are known by the query id alone, whoever claims to
        // have sent it.
        let mut seen = self.remember(id, from);
        let first = seen.max_ttl == -2;
        let prev = seen.max_ttl;
        if first {
            seen.hops = hops;
            seen.awaiting_answer = true;
        }
        seen.max_ttl = seen.max_ttl.max(ttl);
        if let Some(sc) = &mut self.sc {
            if let Some(s) = sc.seen.get_mut(&id) {
                *s = seen;
            }
        }
        if first {
            self.push_event(Event::Query(IncomingQuery {
                reply_to: seen.prev,
                from: Peer {
                    udp: from,
                    tcp_port: q.ports.tcp_or_classic(),
                    rutella: true,
                },
                text: q.text.clone(),
                id: Some(id),
            }));
        }
        tracing::trace!(search = id, ttl, prev, %from, "query");
        if ttl <= prev || ttl < 0 {
            return;
        }
        let Some(sc) = &self.sc else { return };
        let trigrams = (ttl == 0).then(|| QueryTrigrams::new(&q.text));
        let targets: Vec<SocketAddrV4> = sc
            .neighbours
            .iter()
            .filter(|(a, _)| **a != from && **a != seen.prev)
            .filter(|(_, n)| match &trigrams {
                // TTL 0: only the neighbours whose filter may match.
                Some(t) => n.filter.as_ref().is_none_or(|f| f.may_match(t)),
                None => true,
            })
            .map(|(a, _)| *a)
            .collect();
        let mut extra = base_extra();
        extra.insert(
            "TTL".into(),
            Value::from(if ttl == 0 { -1 } else { ttl - 1 }),
        );
        extra.insert("Hops".into(), Value::from(hops + 1));
        extra.insert("Degree".into(), Value::from(self.degree() as u64));
        // Only the fields we know travel on.
        let message = Message::Query(Query {
            ip: q.ip,
            text: q.text,
            id: Some(id),
            ports: q.ports,
            extra,
        });
        for dest in targets {
            self.push_transmit(Transmit {
                dest,
                message: message.clone(),
                from_self: false,
            });
        }
    }

    /// The fields of the answer to a scalable query, which counts as
    /// answered from now on; `None` when the query is not one (or was
    /// answered already).
    pub(crate) fn scalable_answer_template(&mut self, query: &IncomingQuery) -> Option<QueryHit> {
        let id = query.id?;
        let sc = self.sc.as_mut()?;
        let seen = sc.seen.get_mut(&id)?;
        if !seen.awaiting_answer || seen.prev != query.reply_to {
            return None;
        }
        seen.awaiting_answer = false;
        let mut extra = base_extra();
        extra.insert("Hops".into(), Value::from(seen.hops));
        Some(QueryHit {
            ip: Ipv4Addr::UNSPECIFIED,
            files: Vec::new(),
            id: Some(id),
            more: false,
            ports: self.own_ports(),
            extra,
        })
    }

    fn sc_on_hit(&mut self, _now: Instant, from: SocketAddrV4, hit: QueryHit) {
        let Some(id) = hit.id else { return };
        let search = SearchId(id);
        let via = get_bool(&hit.extra, "Via") == Some(true);
        if let Some(state) = self.searches.get_mut(&search) {
            // Ours: only from a neighbour the search was sent to.
            let asked = state
                .dq
                .as_ref()
                .is_some_and(|d| d.depth.contains_key(&from));
            if !asked {
                tracing::debug!(peer = %from, "dropping answer from a host the search did not reach");
                return;
            }
            // The holder: the sender as seen, or, for an answer that came
            // back through a neighbour, the address its first hop saw.
            let peer = if via {
                Peer::from_ports(hit.ip, hit.ports)
            } else {
                Peer {
                    udp: from,
                    tcp_port: hit.ports.tcp_or_classic(),
                    rutella: true,
                }
            };
            if let Some(dq) = state.dq.as_mut() {
                if !hit.files.is_empty() {
                    dq.responders.insert(peer.udp);
                }
            }
            self.push_event(Event::SearchResult {
                search,
                peer,
                files: hit.files,
            });
            return;
        }
        // Someone else's: back along the way the query came, from a
        // neighbour only, a bounded number of datagrams per query.
        if !self.is_neighbour(&from) {
            return;
        }
        let cap = self.config.scalable.hits_forwarded_per_query;
        let Some(sc) = &mut self.sc else { return };
        let Some(seen) = sc.seen.get_mut(&id) else {
            tracing::debug!(peer = %from, "dropping answer to a query not seen");
            return;
        };
        if seen.prev == from || seen.hits_forwarded >= cap {
            return;
        }
        seen.hits_forwarded += 1;
        let prev = seen.prev;
        let mut extra = base_extra();
        if let Some(h) = get_i64(&hit.extra, "Hops") {
            extra.insert("Hops".into(), Value::from(h.clamp(0, 255)));
        }
        extra.insert("Via".into(), Value::Bool(true));
        let (ip, ports) = if via {
            (hit.ip, hit.ports)
        } else {
            (
                *from.ip(),
                Ports {
                    udp: Some(from.port()),
                    tcp: hit.ports.tcp,
                },
            )
        };
        let fwd = QueryHit {
            ip,
            files: hit.files,
            id: Some(id),
            more: hit.more,
            ports,
            extra,
        };
        let message = Message::QueryHit(fwd);
        if message.encode().len() > MAX_DATAGRAM {
            return;
        }
        self.push_transmit(Transmit {
            dest: prev,
            message,
            from_self: false,
        });
    }
    fn send_scalable_query(&mut self, dest: SocketAddrV4, text: &str, id: SearchId, ttl: i64) {
        let mut extra = base_extra();
        extra.insert("TTL".into(), Value::from(ttl));
        extra.insert("Hops".into(), Value::from(1u64));
        extra.insert("Degree".into(), Value::from(self.degree() as u64));
        let message = Message::Query(Query {
            ip: Ipv4Addr::UNSPECIFIED,
            text: text.to_string(),
            id: Some(id.0),
            ports: self.own_ports(),
            extra,
        });
        self.send_self(dest, message);
    }

    pub(crate) fn scalable_search_start(&mut self, now: Instant, id: SearchId) {
        let wait = self.sc_config().step_wait;
        let Some(sc) = &self.sc else { return };
        let Some(state) = self.searches.get(&id) else {
            return;
        };
        let text = state.text.clone();
        let targets: Vec<(SocketAddrV4, usize)> =
            sc.neighbours.iter().map(|(a, n)| (*a, n.degree)).collect();
        let mut dq = Dq {
            done: false,
            next_step: now + wait,
            depth: BTreeMap::new(),
            responders: BTreeSet::new(),
            est_cost: 0.0,
            est_cover: 0.0,
        };
        for (dest, degree) in targets {
            self.send_scalable_query(dest, &text, id, 0);
            dq.depth.insert(dest, 0);
            dq.est_cost += 1.0;
            dq.est_cover += est_cover(0, degree as f64, 0.0);
        }
        if let Some(state) = self.searches.get_mut(&id) {
            state.dq = Some(dq);
        }
    }

    /// One step of dynamic querying: stop, or send deeper queries.
    fn dq_step(&mut self, now: Instant, id: SearchId) {
        let cfg = self.config.scalable.clone();
        let Some(sc) = &self.sc else { return };
        let Some(state) = self.searches.get(&id) else {
            return;
        };
        let Some(dq) = &state.dq else { return };
        let text = state.text.clone();
        let mut depth = dq.depth.clone();
        let mut est_cost_total = dq.est_cost;
        let mut cover_total = dq.est_cover;
        let mut sends: Vec<(SocketAddrV4, i64)> = Vec::new();
        if dq.responders.len() < cfg.enough_results {
            let n = sc.neighbours.len().max(1) as f64;
            let mean_degree = (sc
                .neighbours
                .values()
                .map(|x| x.degree.max(1) as f64)
                .sum::<f64>()
                / n)
                .max(2.0);
            let mut cands: Vec<(i64, u64, SocketAddrV4, usize)> = sc
                .neighbours
                .iter()
                .map(|(a, nb)| (*depth.get(a).unwrap_or(&-1), 0, *a, nb.degree.max(1)))
                .collect();
            for c in &mut cands {
                c.1 = self.rng.gen();
            }
            let target_gain = cover_total.max(1.0);
            let mut gained = 0.0;
            while gained < target_gain {
                cands.sort_unstable();
                let Some(c) = cands.first_mut() else { break };
                if c.0 >= cfg.max_ttl {
                    break;
                }
                let r = c.0 + 1;
                let dn = c.3 as f64;
                let cost = est_cost(r, dn, mean_degree);
                // Once something was found, the search grows only within a
                // quarter of the budget.
                let budget = if dq.responders.is_empty() {
                    f64::from(cfg.query_budget)
                } else {
                    f64::from(cfg.query_budget) / 4.0
                };
                if est_cost_total + cost > budget {
                    break;
                }
                est_cost_total += cost;
                let gain = est_cover(r, dn, mean_degree) - est_cover(c.0, dn, mean_degree);
                gained += gain;
                cover_total += gain;
                c.0 = r;
                depth.insert(c.2, r);
                sends.push((c.2, r));
            }
        }
        let done = sends.is_empty();
        tracing::debug!(
            search = id.0,
            responders = dq.responders.len(),
            sends = ?sends,
            est_cost = est_cost_total,
            est_cover = cover_total,
            "search step"
        );
        for (dest, ttl) in &sends {
            self.send_scalable_query(*dest, &text, id, *ttl);
        }
        let mut finished = false;
        if let Some(state) = self.searches.get_mut(&id) {
            if let Some(dq) = &mut state.dq {
                dq.depth = depth;
                dq.est_cost = est_cost_total;
                dq.est_cover = cover_total;
                dq.done = done;
                dq.next_step = now + cfg.step_wait;
            }
            finished = state.complete();
        }
        if finished {
            self.finish_search(id);
        }
    }

    pub(crate) fn scalable_timeout(&self) -> Option<Instant> {
        let sc = self.sc.as_ref()?;
        let steps = self
            .searches
            .values()
            .filter_map(|s| s.dq.as_ref())
            .filter(|d| !d.done)
            .map(|d| d.next_step)
            .min();
        Some(steps.map_or(sc.next_tick, |s| s.min(sc.next_tick)))
    }

    pub(crate) fn scalable_timeout_fired(&mut self, now: Instant) {
        let Some(sc) = &self.sc else { return };
        if sc.next_tick <= now {
            self.tick(now);
        }
        let due: Vec<SearchId> = self
            .searches
            .iter()
            .filter(|(_, s)| s.dq.as_ref().is_some_and(|d| !d.done && d.next_step <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.dq_step(now, id);
        }
    }

    /// Maintenance: ping silent neighbours, drop dead ones, look for more.
    fn tick(&mut self, now: Instant) {
        let cfg = self.config.scalable.clone();
        let own = SocketAddrV4::new(
            self.own_ips_first().unwrap_or(Ipv4Addr::UNSPECIFIED),
            self.config.udp_port,
        );
        let Some(sc) = &mut self.sc else { return };
        sc.next_tick = now + tick_interval(&cfg);
        let mut dead = Vec::new();
        let mut ping = Vec::new();
        for (addr, n) in &mut sc.neighbours {
            if let Some(sent) = n.ping_sent {
                if now >= sent + cfg.pong_timeout {
                    dead.push(*addr);
                }
                continue;
            }
            // The lower address pings; the other one only if the first
            // stays silent, so that a link costs one ping and one pong.
            let interval = if own < *addr {
                cfg.ping_interval
            } else {
                cfg.ping_interval + cfg.pong_timeout * 2
            };
            if now >= n.last_heard + interval {
                n.ping_sent = Some(now);
                ping.push(*addr);
            }
        }
        let expired: Vec<SocketAddrV4> = sc
            .pending
            .iter()
            .filter(|(_, t)| now >= **t + cfg.pong_timeout)
            .map(|(a, _)| *a)
            .collect();
        for a in &expired {
            sc.pending.remove(a);
            if sc.refused.len() < cfg.host_cache {
                sc.refused.insert(*a, now + cfg.ping_interval);
            }
        }
        sc.refused.retain(|_, until| *until > now);
        for a in &dead {
            sc.hosts.remove(a);
        }
        for a in dead {
            self.remove_neighbour(a);
        }
        for a in ping {
            self.send_scalable_ping(a, false);
        }
        self.fill_degree(now, 2);
        // Wake up again soon while something is awaited; otherwise at half
        // the ping interval, when the next pings may be due.
        let target = cfg.target_degree;
        if let Some(sc) = &mut self.sc {
            let busy = !sc.pending.is_empty()
                || sc.neighbours.len() < target
                || sc.neighbours.values().any(|n| n.ping_sent.is_some());
            if !busy {
                sc.next_tick = now + tick_interval(&cfg).max(cfg.ping_interval / 2);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testnet::Net;
    use crate::HitFile;
    use crate::{Config, Mode};
    use std::net::SocketAddr;

    #[test]
    fn base64_round_trips() {
        for n in 0..40u8 {
            let data: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            let text = b64_encode(&data);
            assert_eq!(b64_decode(&text).unwrap(), data);
        }
        assert_eq!(b64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(b64_encode(b"fo"), "Zm8=");
        assert!(b64_decode("Zm8").is_none());
        assert!(b64_decode("Z=8=").is_none());
        assert!(b64_decode("Zm!=").is_none());
    }

    #[test]
    fn bloom_has_no_false_negatives_for_substrings() {
        let names = ["Cloud - Cloud models.png", "Über Straße.txt", "ab"];
        let f = TrigramBloom::from_names(names);
        for q in ["cloud", "MODELS.P", "über st", "d - c", "ab", "x"] {
            assert!(f.may_match(&QueryTrigrams::new(q)), "{q}");
        }
        assert!(!f.may_match(&QueryTrigrams::new("zzzqqq")));
        assert!(f.bits().is_power_of_two() && f.bits() >= BLOOM_MIN_BITS);
    }

    #[test]
    fn bloom_false_positive_rate_is_low() {
        let names: Vec<String> = (0..200)
            .map(|i| format!("track number {i} of album.ogg"))
            .collect();
        let f = TrigramBloom::from_names(&names);
        let fp = (0..1000)
            .filter(|i| f.may_match(&QueryTrigrams::new(&format!("qz{i}xv"))))
            .count();
        assert!(fp < 20, "{fp} false positives in 1000");
    }

    fn scfg(port: u16, seed: u64) -> Config {
        Config {
            udp_port: port,
            tcp_port: port + 1,
            seed,
            mode: Mode::Scalable,
            scalable: ScalableConfig {
                min_degree: 2,
                target_degree: 4,
                max_degree: 6,
                ping_interval: Duration::from_millis(400),
                pong_timeout: Duration::from_millis(100),
                step_wait: Duration::from_millis(50),
                max_search_time: Duration::from_millis(2000),
                enough_results: 1,
                ..ScalableConfig::default()
            },
            ..Config::default()
        }
    }

    /// `n` scalable overlays, each sharing a file of its own and a common one.
    fn scalable_net(n: usize) -> Net {
        let now = Instant::now();
        let nodes = (0..n)
            .map(|i| {
                let addr = SocketAddrV4::new(Ipv4Addr::new(127, 0, 1, 1 + i as u8), 30000);
                let mut o = Overlay::new(scfg(30000, i as u64), now);
                o.add_own_ip(*addr.ip());
                let lib = vec![format!("Unique-{i}.txt"), "common.TXT".to_string()];
                o.set_library(&lib);
                (addr, o, lib)
            })
            .collect();
        Net::new(now, nodes)
    }

    fn joined(n: usize) -> Net {
        let mut net = scalable_net(n);
        let first = net.nodes[0].0;
        for i in 1..n {
            let now = net.now;
            net.nodes[i].1.connect(now, first, first.port() + 1);
            net.pump();
        }
        net.advance(Duration::from_millis(500));
        net
    }

    #[test]
    fn degrees_stay_in_range_and_filters_are_exchanged() {
        let net = joined(30);
        for (i, (_, o, _)) in net.nodes.iter().enumerate() {
            let d = o.degree();
            assert!((2..=6).contains(&d), "node {i} has degree {d}");
            let sc = o.sc.as_ref().unwrap();
            assert!(sc.neighbours.values().all(|n| n.filter.is_some()));
            // Links are symmetric.
            for nb in sc.neighbours.keys() {
                let j = net.idx(*nb).unwrap();
                assert!(net.nodes[j]
                    .1
                    .sc
                    .as_ref()
                    .unwrap()
                    .neighbours
                    .contains_key(&net.nodes[i].0));
            }
        }
    }

    #[test]
    fn unique_file_is_found_and_hits_come_back_the_way_the_query_went() {
        let mut net = joined(30);
        net.sent.clear();
        let now = net.now;
        let querier = net.nodes[3].0;
        let id = net.nodes[3].1.search(now, "unique-17.");
        net.pump();
        net.advance(Duration::from_millis(1000));
        let hits: Vec<_> = net.results.iter().filter(|r| r.1 == id).collect();
        assert_eq!(hits.len(), 1, "{hits:?}");
        // Shown at the holder's address as its first hop back saw it.
        assert_eq!(hits[0].2, net.nodes[17].0);
        assert_eq!(hits[0].3, vec!["Unique-17.txt".to_string()]);
        // Every answer datagram went to a neighbour of its sender, never
        // straight to an address named in the query.
        let neighbours_of = |a: SocketAddrV4| -> Vec<SocketAddrV4> {
            let i = net.idx(a).unwrap();
            net.nodes[i].1.neighbours().iter().map(|p| p.udp).collect()
        };
        let answers: Vec<_> = net
            .sent
            .iter()
            .filter(|(_, _, m)| matches!(m, Message::QueryHit(h) if h.id == Some(id.0)))
            .collect();
        assert!(!answers.is_empty());
        for (from, to, _) in &answers {
            assert!(neighbours_of(*from).contains(to), "{from} -> {to}");
        }
        let last = answers.iter().find(|(_, to, _)| *to == querier).unwrap();
        let Message::QueryHit(h) = &last.2 else {
            unreachable!()
        };
        assert!(get_i64(&h.extra, "Hops").is_some_and(|x| x >= 1));
        let queries = net
            .sent
            .iter()
            .filter(|(_, _, m)| matches!(m, Message::Query(_)))
            .count();
        assert!(queries < 30 * 6, "{queries} queries");
        assert!(net.finished.contains(&(3, id)));
    }

    #[test]
    fn a_popular_file_stops_the_search_early() {
        let mut net = joined(30);
        net.sent.clear();
        let now = net.now;
        let id = net.nodes[0].1.search(now, "common");
        net.pump();
        net.advance(Duration::from_millis(1000));
        assert!(net.results.iter().any(|r| r.1 == id && !r.3.is_empty()));
        let queries = net
            .sent
            .iter()
            .filter(|(_, _, m)| matches!(m, Message::Query(_)))
            .count();
        // Step 0 only: one query per neighbour and the probes they send.
        let deg = net.nodes[0].1.degree();
        assert!(queries <= deg * 7, "{queries} queries for degree {deg}");
        // Every node answers at most once (answers passed back carry "Via").
        let mut answerers: Vec<_> = net
            .sent
            .iter()
            .filter(|(_, _, m)| matches!(m, Message::QueryHit(h) if !h.extra.contains_key("Via")))
            .map(|s| s.0)
            .collect();
        let n = answerers.len();
        answerers.sort();
        answerers.dedup();
        assert_eq!(n, answerers.len());
    }

    #[test]
    fn dead_neighbours_are_replaced() {
        let mut net = joined(20);
        let victim = net.nodes[5].0;
        let watchers: Vec<usize> = (0..20)
            .filter(|&i| {
                net.nodes[i]
                    .1
                    .sc
                    .as_ref()
                    .unwrap()
                    .neighbours
                    .contains_key(&victim)
            })
            .collect();
        assert!(!watchers.is_empty());
        // Node 5 goes silent: a fresh overlay at another port never answers.
        net.nodes[5].0 = SocketAddrV4::new(Ipv4Addr::new(127, 0, 9, 9), 1);
        net.advance(Duration::from_millis(1500));
        for i in watchers {
            let o = &net.nodes[i].1;
            assert!(
                !o.sc.as_ref().unwrap().neighbours.contains_key(&victim),
                "node {i}"
            );
            assert!(o.degree() >= 2, "node {i} degree {}", o.degree());
        }
    }

    #[test]
    fn a_classic_peer_is_served_classically() {
        let now = Instant::now();
        let mut o = Overlay::new(scfg(30000, 1), now);
        o.add_own_ip(Ipv4Addr::new(127, 0, 0, 2));
        let src: SocketAddr = "127.0.0.7:20000".parse().unwrap();
        o.handle_datagram(now, src, br#"{"Command": 1, "IP": "127.0.0.7", "TTL": 1}"#);
        let t = o.poll_transmit().unwrap();
        assert_eq!(
            t.encode(Ipv4Addr::new(127, 0, 0, 2)),
            br#"{"Command": 2, "IP": "127.0.0.2", "TcpPort": 30001, "UdpPort": 30000}"#
        );
        // It is asked to show it is there, and answers as a classic peer.
        let probe = o.poll_transmit().unwrap();
        assert_eq!(SocketAddr::V4(probe.dest), src);
        assert!(matches!(probe.message, Message::Ping(_)));
        o.handle_datagram(now, src, br#"{"Command": 2, "IP": "127.0.0.7"}"#);
        o.handle_datagram(
            now,
            src,
            br#"{"Command": 3, "Contents": "a", "IP": "127.0.0.7"}"#,
        );
        let q = std::iter::from_fn(|| o.poll_event())
            .find_map(|e| match e {
                Event::Query(q) => Some(q),
                _ => None,
            })
            .unwrap();
        while o.poll_transmit().is_some() {}
        o.answer_query(&q, &[]);
        let t = o.poll_transmit().unwrap();
        assert_eq!(SocketAddr::V4(t.dest), src);
        assert!(t
            .encode(Ipv4Addr::new(127, 0, 0, 2))
            .starts_with(br#"{"Command": 4, "Contents": [], "IP": "127.0.0.2""#));
        assert_eq!(o.degree(), 0);
        assert_eq!(o.peers().len(), 1);
    }

    #[test]
    fn a_classic_bootstrap_becomes_a_classic_peer() {
        let now = Instant::now();
        let mut o = Overlay::new(scfg(30000, 1), now);
        o.add_own_ip(Ipv4Addr::new(127, 0, 0, 2));
        let classic = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 7), 20000);
        o.connect(now, classic, 10000);
        let t = o.poll_transmit().unwrap();
        // A join request is a plain TTL-0 ping to a classic peer.
        let text = String::from_utf8(t.encode(Ipv4Addr::new(127, 0, 0, 2))).unwrap();
        assert!(
            text.starts_with(
                r#"{"Command": 1, "Degree": 0, "IP": "127.0.0.2", "Join": true, "Nonce": "#
            ) && text.contains(r#""Scalable": 2, "TTL": 0"#),
            "{text}"
        );
        o.handle_datagram(
            now,
            SocketAddr::V4(classic),
            br#"{"Command": 2, "IP": "127.0.0.7"}"#,
        );
        assert_eq!(o.degree(), 0);
        let peers = o.peers();
        assert_eq!(peers.len(), 1);
        assert!(!peers[0].rutella && peers[0].udp == classic);
    }

    /// Makes `addr` a neighbour of `o` through the whole handshake: its
    /// join request, our offer, its confirmation echoing our nonce.
    fn link(o: &mut Overlay, now: Instant, addr: SocketAddrV4) {
        let join = format!(
            r#"{{"Command": 1, "IP": "{}", "TTL": 0, "Scalable": 2, "Join": true, "Nonce": 5, "UdpPort": {}, "TcpPort": 1}}"#,
            addr.ip(),
            addr.port()
        );
        o.handle_datagram(now, SocketAddr::V4(addr), join.as_bytes());
        let offer = std::iter::from_fn(|| o.poll_transmit())
            .find(|t| t.dest == addr)
            .unwrap();
        let Message::Pong(p) = &offer.message else {
            panic!("{offer:?}")
        };
        assert_eq!(get_bool(&p.extra, "Accept"), Some(true));
        assert_eq!(echo_of(&p.extra), Some(5));
        assert_eq!(o.degree(), 0, "not a neighbour before it confirms");
        let confirm = format!(
            r#"{{"Command": 2, "IP": "{}", "Scalable": 2, "Confirm": true, "Echo": {}, "Nonce": 6, "UdpPort": {}, "TcpPort": 1}}"#,
            addr.ip(),
            nonce_of(&p.extra).unwrap(),
            addr.port()
        );
        o.handle_datagram(now, SocketAddr::V4(addr), confirm.as_bytes());
        assert!(o.neighbours().iter().any(|n| n.udp == addr));
        while o.poll_transmit().is_some() {}
    }

    #[test]
    fn join_requests_walk_on_naming_the_joiner_as_seen() {
        let now = Instant::now();
        let mut o = Overlay::new(scfg(30000, 1), now);
        o.add_own_ip(Ipv4Addr::new(127, 0, 0, 2));
        let a: SocketAddrV4 = "127.0.0.10:30000".parse().unwrap();
        link(&mut o, now, a);
        assert_eq!(o.degree(), 1);
        // B names someone else in "IP": the walk names B as it was seen.
        let b: SocketAddr = "127.0.0.11:30005".parse().unwrap();
        o.handle_datagram(
            now,
            b,
            br#"{"Command": 1, "IP": "127.0.0.99", "TTL": 0, "Scalable": 2, "Join": true, "Walk": 9, "Nonce": 3, "Junk": "x", "UdpPort": 30000, "TcpPort": 30001}"#,
        );
        let t = o.poll_transmit().unwrap();
        assert_eq!(t.dest, a);
        assert!(!t.from_self);
        let Message::Ping(p) = &t.message else {
            panic!("{t:?}")
        };
        assert_eq!(p.ip, Ipv4Addr::new(127, 0, 0, 11));
        assert_eq!(p.ports.udp, Some(30005));
        assert!(
            !p.extra.contains_key("Junk"),
            "unknown fields do not travel"
        );
        // Walks longer than the limit are shortened.
        assert_eq!(get_i64(&p.extra, "Walk"), Some(MAX_WALK - 1));
        assert!(o.poll_transmit().is_none());
        assert_eq!(o.degree(), 1, "the walk goes on: no link here");
    }

    #[test]
    fn join_pings_naming_another_address_make_no_neighbour_of_it() {
        let now = Instant::now();
        let mut o = Overlay::new(scfg(30000, 1), now);
        o.add_own_ip(Ipv4Addr::new(127, 0, 0, 2));
        let attacker: SocketAddr = "127.0.0.66:4000".parse().unwrap();
        let victim = "127.0.0.99";
        let mut sent_bytes = 0;
        for port in 0..200u16 {
            let m = format!(
                r#"{{"Command": 1, "IP": "{victim}", "TTL": 0, "Scalable": 2, "Join": true, "UdpPort": {}, "TcpPort": 1}}"#,
                1000 + port
            );
            sent_bytes += m.len();
            o.handle_datagram(now, attacker, m.as_bytes());
        }
        let out: Vec<Transmit> = std::iter::from_fn(|| o.poll_transmit()).collect();
        assert!(out.iter().all(|t| t.dest.ip().to_string() != victim));
        let to_attacker: usize = out
            .iter()
            .map(|t| t.encode(Ipv4Addr::BROADCAST).len())
            .sum();
        assert!(
            to_attacker <= 3 * sent_bytes,
            "{to_attacker} bytes for {sent_bytes}"
        );
        assert_eq!(o.degree(), 0, "no link without a confirmation");
    }

    #[test]
    fn refusals_without_our_nonce_do_not_cut_a_link() {
        let now = Instant::now();
        let mut o = Overlay::new(scfg(30000, 1), now);
        o.add_own_ip(Ipv4Addr::new(127, 0, 0, 2));
        let a: SocketAddrV4 = "127.0.0.10:30000".parse().unwrap();
        link(&mut o, now, a);
        // From a third address naming the neighbour, and from the
        // neighbour's own address without the nonce we gave it.
        let spoof = br#"{"Command": 2, "IP": "127.0.0.10", "Scalable": 2, "Accept": false, "UdpPort": 30000, "TcpPort": 1}"#;
        o.handle_datagram(now, "127.0.0.66:4000".parse().unwrap(), spoof);
        o.handle_datagram(now, SocketAddr::V4(a), spoof);
        let wrong = br#"{"Command": 2, "IP": "127.0.0.10", "Scalable": 2, "Accept": false, "Echo": 12345, "UdpPort": 30000, "TcpPort": 1}"#;
        o.handle_datagram(now, SocketAddr::V4(a), wrong);
        assert_eq!(o.degree(), 1);
        // With the nonce, the neighbour itself can end the link.
        let real = format!(
            r#"{{"Command": 2, "IP": "127.0.0.10", "Scalable": 2, "Accept": false, "Echo": {}, "UdpPort": 30000, "TcpPort": 1}}"#,
            o.guard.token(a)
        );
        o.handle_datagram(now, SocketAddr::V4(a), real.as_bytes());
        assert_eq!(o.degree(), 0);
    }

    #[test]
    fn queries_from_strangers_are_not_answered_and_answers_go_to_the_sender() {
        let now = Instant::now();
        let mut o = Overlay::new(scfg(30000, 1), now);
        o.add_own_ip(Ipv4Addr::new(127, 0, 0, 2));
        let q = br#"{"Command": 3, "Contents": "a", "IP": "127.0.0.99", "Id": 7, "Scalable": 2, "TTL": 0, "UdpPort": 1, "TcpPort": 1}"#;
        o.handle_datagram(now, "127.0.0.66:4000".parse().unwrap(), q);
        assert!(std::iter::from_fn(|| o.poll_event()).all(|e| !matches!(e, Event::Query(_))));
        // From a neighbour, naming a victim: the answer goes to the neighbour.
        let a: SocketAddrV4 = "127.0.0.10:30000".parse().unwrap();
        link(&mut o, now, a);
        o.handle_datagram(now, SocketAddr::V4(a), q);
        let iq = std::iter::from_fn(|| o.poll_event())
            .find_map(|e| match e {
                Event::Query(q) => Some(q),
                _ => None,
            })
            .unwrap();
        o.answer_query(&iq, &[HitFile::named("a.txt")]);
        let t = o.poll_transmit().unwrap();
        assert_eq!(t.dest, a);
        // The same id again with another port is a duplicate.
        let q2 = br#"{"Command": 3, "Contents": "a", "IP": "127.0.0.99", "Id": 7, "Scalable": 2, "TTL": 0, "UdpPort": 2, "TcpPort": 1}"#;
        o.handle_datagram(now, SocketAddr::V4(a), q2);
        assert!(std::iter::from_fn(|| o.poll_event()).all(|e| !matches!(e, Event::Query(_))));
    }

    #[test]
    fn hits_count_only_from_where_the_search_went() {
        let now = Instant::now();
        let mut o = Overlay::new(scfg(30000, 1), now);
        o.add_own_ip(Ipv4Addr::new(127, 0, 0, 2));
        let a: SocketAddrV4 = "127.0.0.10:30000".parse().unwrap();
        link(&mut o, now, a);
        let id = o.search(now, "x");
        while o.poll_transmit().is_some() {}
        while o.poll_event().is_some() {}
        let hit = format!(
            r#"{{"Command": 4, "Contents": ["x.txt"], "IP": "127.0.0.10", "Id": {}, "Scalable": 2, "UdpPort": 30000, "TcpPort": 6666}}"#,
            id.0
        );
        o.handle_datagram(now, "127.0.0.66:30000".parse().unwrap(), hit.as_bytes());
        assert!(
            std::iter::from_fn(|| o.poll_event()).all(|e| !matches!(e, Event::SearchResult { .. }))
        );
        o.handle_datagram(now, SocketAddr::V4(a), hit.as_bytes());
        let peer = std::iter::from_fn(|| o.poll_event())
            .find_map(|e| match e {
                Event::SearchResult { peer, .. } => Some(peer),
                _ => None,
            })
            .unwrap();
        assert_eq!(peer.udp, a);
    }

    #[test]
    fn large_filters_are_split_under_the_datagram_limit() {
        let mut x: u64 = 1;
        let names: Vec<String> = (0..3000)
            .map(|_| {
                (0..30)
                    .map(|_| {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        (b'a' + (x >> 33) as u8 % 26) as char
                    })
                    .collect()
            })
            .collect();
        let mut net = scalable_net(2);
        net.nodes[1].1.set_library(&names);
        net.nodes[1].2 = names.clone();
        let first = net.nodes[0].0;
        let now = net.now;
        net.nodes[1].1.connect(now, first, 1);
        net.pump();
        let parts = net
            .sent
            .iter()
            .filter(|(s, _, m)| {
                *s == net.nodes[1].0
                    && matches!(m, Message::Pong(p) if p.extra.contains_key("Bloom"))
            })
            .count();
        assert!(parts > 1, "{parts} parts");
        let sc = net.nodes[0].1.sc.as_ref().unwrap();
        let f = sc
            .neighbours
            .values()
            .next()
            .unwrap()
            .filter
            .as_ref()
            .unwrap();
        assert!(f.may_match(&QueryTrigrams::new(&names[2021][3..12])));
        assert_eq!(f, &TrigramBloom::from_names(&names));
    }
}
