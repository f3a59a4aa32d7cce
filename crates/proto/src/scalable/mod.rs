//! The scalable overlay: a bounded set of neighbours, trigram Bloom filters
//! of their libraries, and searches that grow only as far as needed.
//!
//! It runs inside [`Overlay`] when [`Config::mode`](crate::Config::mode) is
//! [`Mode::Scalable`](crate::Mode::Scalable), beside the classic code, which
//! still serves classic peers (and rutella peers in classic mode). Every
//! message of the scalable overlay is a classic message carrying the
//! extension field `"Scalable": 3`; a message without it is handled
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
//!
//! The scalable side is a sub-machine, `Scalable`, that [`Overlay`]
//! owns in scalable mode. It is handed the shared state (configuration,
//! random generator, guard, outbox) with every call, in a `Ctx`, and
//! answers through it: `links.rs` keeps the neighbours and the host cache,
//! `bloom.rs` the filters, `search.rs` the queries and answers, and
//! `plan.rs` decides, as a pure function, each step of a growing search.
//!
//! [`Overlay`]: crate::Overlay

mod bloom;
mod guard;
mod links;
mod plan;
mod roles;
mod search;

pub use crate::types::{ScalableConfig, Tier};
pub use bloom::{QueryTrigrams, TrigramBloom};

use crate::message::Message;
use crate::shared::Shared;
use crate::types::{Peer, SearchId, Transmit};
use links::{HostCache, Neighbour};
use search::{Dq, Seen};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Version of the scalable overlay, the value of the `"Scalable"` field.
pub const SCALABLE_VERSION: u64 = 3;
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
/// Answers whose query made at least this many hops are "far" (from
/// beyond the searcher's own leaves)...
pub const FAR_ANSWER_HOPS: i64 = 2;
/// ...and are passed back this many times on every hop, so that the one
/// answer a rare file gets is not lost on the way (each receiver passes
/// the first copy on and drops the others).
pub const FAR_ANSWER_COPIES: usize = 2;
/// A search of ours that stopped growing still takes answers for this
/// many step waits ([`ScalableConfig::step_wait`]): the last step's
/// answers may come from several hops away.
pub const LATE_ANSWER_STEPS: u32 = 2;
/// Bytes an answer leaves free under [`MAX_DATAGRAM`]: the longest own
/// address the driver fills in, and what the first hop back adds.
pub(crate) const HIT_ROOM: usize = 64;

// ---------------------------------------------------------------- filters

// ---------------------------------------------------------------- fields

fn get_i64(m: &Map<String, Value>, k: &str) -> Option<i64> {
    m.get(k).and_then(Value::as_i64)
}

fn get_bool(m: &Map<String, Value>, k: &str) -> Option<bool> {
    m.get(k).and_then(Value::as_bool)
}

/// Nodes of versions 1 (answers sent straight to the querier, links made
/// without nonces) and 2 (one flat tier) are served classically.
fn is_scalable(m: &Map<String, Value>) -> bool {
    match get_i64(m, "Scalable") {
        Some(v) if v >= 3 => true,
        Some(v) => {
            tracing::debug!(
                version = v,
                "older scalable overlay version, served classically"
            );
            false
        }
        None => false,
    }
}

fn base_extra() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("Scalable".into(), Value::from(SCALABLE_VERSION));
    m
}

// ---------------------------------------------------------------- state

/// What the overlay hands the scalable side with every call: the state
/// both modes share, and whether the classic side knows an address.
pub(crate) struct Ctx<'a> {
    /// Configuration, random generator, guard and outbox.
    pub(crate) sh: &'a mut Shared,
    /// Whether an address is a classic peer or one the user gave, to
    /// which sends are not limited.
    pub(crate) classic_knows: &'a dyn Fn(&SocketAddr) -> bool,
}

/// Neighbours, filters, host cache, duplicate table and running searches
/// of a scalable node.
#[derive(Debug)]
pub(crate) struct Scalable {
    cfg: ScalableConfig,
    neighbours: BTreeMap<SocketAddr, Neighbour>,
    /// Join requests sent and not answered, with when they were sent.
    pending: BTreeMap<SocketAddr, Instant>,
    hosts: HostCache,
    /// Hosts that refused to be neighbours, not asked again before then.
    refused: BTreeMap<SocketAddr, Instant>,
    bootstrap: Vec<SocketAddr>,
    filter: TrigramBloom,
    filter_gen: u64,
    /// Looked up only, never iterated (eviction follows `seen_order`).
    seen: HashMap<u64, Seen>,
    seen_order: VecDeque<u64>,
    next_tick: Instant,
    /// The scalable part of each of our searches, and of the searches we
    /// run for our leaves.
    searches: BTreeMap<SearchId, Dq>,
    /// Whether this node is an ultrapeer (otherwise a leaf).
    ultrapeer: bool,
    /// How many of the neighbours are our leaves.
    n_leaves: usize,
    /// Whether others can reach us unasked (not firewalled).
    reachable: bool,
    /// Our upload bandwidth, kB/s.
    bandwidth: u32,
    /// When this node started.
    started: Instant,
    /// Tier changes: see `roles.rs`.
    roles: roles::RoleState,
    /// Digests of the answers taken lately (looked up only; eviction
    /// follows `hits_seen_order`), so that copies go on once.
    hits_seen: HashSet<u64>,
    hits_seen_order: VecDeque<u64>,
    /// The key of those digests, drawn at the first answer.
    hit_key: Option<u64>,
}

impl Scalable {
    pub(crate) fn new(cfg: &ScalableConfig, now: Instant) -> Self {
        Scalable {
            cfg: cfg.clone(),
            neighbours: BTreeMap::new(),
            pending: BTreeMap::new(),
            hosts: HostCache::default(),
            refused: BTreeMap::new(),
            bootstrap: Vec::new(),
            filter: TrigramBloom::from_names(std::iter::empty::<&str>()),
            filter_gen: 0,
            seen: HashMap::new(),
            seen_order: VecDeque::new(),
            next_tick: now + tick_interval(cfg),
            searches: BTreeMap::new(),
            ultrapeer: cfg.tier == Tier::Ultrapeer,
            n_leaves: 0,
            reachable: false,
            bandwidth: 0,
            started: now,
            roles: roles::RoleState::default(),
            hits_seen: HashSet::new(),
            hits_seen_order: VecDeque::new(),
            hit_key: None,
        }
    }

    /// Whether this node is an ultrapeer.
    pub(crate) fn is_ultrapeer(&self) -> bool {
        self.ultrapeer
    }

    /// Times this node changed tiers.
    pub(crate) fn tier_changes(&self) -> u32 {
        self.roles.changes
    }

    /// Number of our leaves (an ultrapeer's).
    pub(crate) fn leaf_count(&self) -> usize {
        self.n_leaves
    }

    /// Whether `addr` is our leaf and we hold its whole filter.
    pub(crate) fn holds_leaf_filter(&self, addr: &SocketAddr) -> bool {
        self.neighbours
            .get(addr)
            .is_some_and(|n| n.leaf && n.filter.is_some())
    }

    /// Tells whether others can reach us unasked (with the bandwidth,
    /// what becoming an ultrapeer needs).
    pub(crate) fn set_reachable(&mut self, reachable: bool) {
        self.reachable = reachable;
    }

    /// Tells our upload bandwidth in kB/s.
    pub(crate) fn set_bandwidth(&mut self, bandwidth: u32) {
        self.bandwidth = bandwidth;
    }

    pub(crate) fn neighbour_peers(&self) -> impl Iterator<Item = Peer> + '_ {
        self.neighbours.values().map(|n| n.info)
    }

    /// Number of neighbours of our tier: an ultrapeer's ultrapeer
    /// neighbours, a leaf's ultrapeers (leaves not counted).
    pub(crate) fn degree(&self) -> usize {
        self.neighbours.len() - self.n_leaves
    }

    /// Whether `addr` is one of our leaves.
    fn is_leaf(&self, addr: &SocketAddr) -> bool {
        self.neighbours.get(addr).is_some_and(|n| n.leaf)
    }

    /// The hosts of the host cache.
    pub(crate) fn known_hosts(&self) -> Vec<SocketAddr> {
        self.hosts.iter().collect()
    }

    /// Whether `addr` is a neighbour or a bootstrap peer the user gave.
    pub(crate) fn knows(&self, addr: &SocketAddr) -> bool {
        // (Leaves are in `neighbours` too.)
        self.neighbours.contains_key(addr) || self.bootstrap.contains(addr)
    }

    fn is_neighbour(&self, addr: &SocketAddr) -> bool {
        self.neighbours.contains_key(addr)
    }

    /// Whether sends to `addr` are not limited (see
    /// [`crate::guard`]): known to either side, or proven.
    fn known(&self, cx: &Ctx<'_>, addr: &SocketAddr) -> bool {
        // Most datagrams go to neighbours: asked first, as it is the
        // cheapest lookup.
        self.knows(addr) || (cx.classic_knows)(addr) || cx.sh.guard.proven(addr)
    }

    /// Queues a datagram within the guard's limits.
    fn push_transmit(&self, cx: &mut Ctx<'_>, t: Transmit) {
        let known = self.known(cx, &t.dest);
        cx.sh.push_transmit(t, known);
    }

    /// Queues a datagram that asks something of its destination, within
    /// the probe budget toward an unknown one. Returns whether it went.
    fn push_probe(&self, cx: &mut Ctx<'_>, now: Instant, t: Transmit) -> bool {
        let known = self.known(cx, &t.dest);
        cx.sh.push_probe(now, t, known)
    }

    fn send_self(&self, cx: &mut Ctx<'_>, dest: SocketAddr, message: Message) {
        self.push_transmit(
            cx,
            Transmit {
                dest,
                message,
                from_self: true,
            },
        );
    }

    /// Handles a message of the scalable overlay; gives back any other
    /// message for the classic code.
    pub(crate) fn handle(
        &mut self,
        cx: &mut Ctx<'_>,
        now: Instant,
        from: SocketAddr,
        message: Message,
    ) -> Option<Message> {
        let scalable = match &message {
            Message::Ping(m) => is_scalable(&m.extra) && m.ports.is_rutella(),
            Message::Pong(m) => is_scalable(&m.extra) && m.ports.is_rutella(),
            Message::Query(m) => is_scalable(&m.extra) && m.ports.is_rutella(),
            Message::QueryHit(m) => is_scalable(&m.extra),
            Message::Push(_) | Message::Punch(_) | Message::Relay(_) => false,
        };
        if !scalable {
            return Some(message);
        }
        match message {
            Message::Ping(p) => self.on_ping(cx, now, from, p),
            Message::Pong(p) => self.on_pong(cx, now, from, p),
            Message::Query(q) => self.on_query(cx, now, from, q),
            Message::QueryHit(h) => self.on_hit(cx, now, from, h),
            Message::Push(_) | Message::Punch(_) | Message::Relay(_) => {}
        }
        None
    }

    /// When [`Scalable::handle_timeout`] must run next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let steps = self
            .searches
            .values()
            .filter(|d| !d.done)
            .map(|d| d.next_step)
            .min();
        Some(steps.map_or(self.next_tick, |s| s.min(self.next_tick)))
    }

    /// Maintenance and search steps that are due. Returns the searches
    /// that stopped growing in this call.
    pub(crate) fn handle_timeout(&mut self, cx: &mut Ctx<'_>, now: Instant) -> Vec<SearchId> {
        if self.next_tick <= now {
            self.tick(cx, now);
        }
        let due: Vec<SearchId> = self
            .searches
            .iter()
            .filter(|(_, d)| !d.done && d.next_step <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut stopped = Vec::new();
        for id in due {
            if self.search_step(cx, now, id) {
                if self.searches.get(&id).is_some_and(|d| d.for_leaf.is_some()) {
                    // Run for a leaf: forgotten once it stops growing (late
                    // answers still go back through the duplicate table).
                    self.searches.remove(&id);
                } else {
                    stopped.push(id);
                }
            }
        }
        stopped
    }
}

fn tick_interval(c: &ScalableConfig) -> Duration {
    c.pong_timeout
        .min(c.ping_interval)
        .max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tier_tests;

#[cfg(test)]
mod guard_tests;

#[cfg(test)]
mod rare_tests;
