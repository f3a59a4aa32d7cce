//! Pushes: downloading from a peer that cannot be connected to.
//!
//! A node behind a router that drops unsolicited traffic can still upload:
//! a downloader asks it, through a peer it keeps a path open with (its
//! *push proxy*), to connect out to the downloader, and the transfer runs
//! over that connection.
//!
//! - Every node draws a random 64-bit **push id** per run and sends it as
//!   `"PushId"` in its rutella Pings (those with a `"Nonce"`). A node that
//!   has the sender as a proven peer records push id → peer: it is now a
//!   push proxy for that peer, whose pings keep its router's path open.
//! - A node not known to be reachable adds `"PushId"`, `"Proxies"` (up to
//!   [`MAX_PROXIES`] of its proven rutella peers) and, when it knows it is
//!   not reachable, `"Firewalled": true` to its answers ([`PushInfo`]).
//! - A **Push** (`"Command": 5`) goes from the downloader to a proxy,
//!   which forwards it to the peer with that push id, writing into `"IP"`
//!   the downloader's address *as the proxy saw it*: a downloader can only
//!   make the firewalled node connect to the downloader's own address.
//!   The proxy forwards only from a proven address, only to a current
//!   peer, and within budgets per source /24 and for the whole node.
//! - The firewalled node accepts a Push only from a current peer, connects
//!   to one target address at most [`PushConfig::connect_per_ip`] times
//!   and in all at most [`PushConfig::connect_total`] times, and reports
//!   it to its driver ([`crate::Event::PushRequest`]), which connects.
//!
//! Everything here is pure: the time is passed in.

use crate::message::{hex16, parse_hex16};
use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The most proxies named in one answer.
pub const MAX_PROXIES: usize = 4;

/// At most `count` events per `per`, `count` of them at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed in one `per` (and at once after a quiet time).
    pub count: u32,
    /// The period.
    pub per: Duration,
}

impl Rate {
    /// `count` per `per`.
    pub const fn new(count: u32, per: Duration) -> Self {
        Rate { count, per }
    }
}

/// The limits of pushes (see `docs/SECURITY.md`).
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// Pushes a proxy forwards for one source /24. Default 20 per 10 s.
    pub forward_per_prefix: Rate,
    /// Pushes a proxy forwards in all. Default 200 per 10 s.
    pub forward_total: Rate,
    /// Connections a firewalled node opens to one IP address on request.
    /// Default 4 per 10 s.
    pub connect_per_ip: Rate,
    /// Connections a firewalled node opens on request in all. Default 32
    /// per 10 s.
    pub connect_total: Rate,
    /// Push ids of peers remembered (one per peer at most). Default 4096.
    pub max_push_ids: usize,
    /// Source prefixes and target addresses tracked by the budgets; the
    /// oldest is forgotten first. Default 1024.
    pub max_tracked: usize,
    /// Timers and budgets of the hole punches this node sets up as a
    /// proxy (see [`crate::punch`]).
    pub punch: crate::punch::PunchConfig,
}

impl Default for PushConfig {
    fn default() -> Self {
        let ten = Duration::from_secs(10);
        PushConfig {
            forward_per_prefix: Rate::new(20, ten),
            forward_total: Rate::new(200, ten),
            connect_per_ip: Rate::new(4, ten),
            connect_total: Rate::new(32, ten),
            max_push_ids: 4096,
            max_tracked: 1024,
            punch: crate::punch::PunchConfig::default(),
        }
    }
}

/// What an answer says about reaching its sender other than directly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushInfo {
    /// `"PushId"`: the sender's push id.
    pub push_id: Option<u64>,
    /// `"Proxies"`: UDP addresses of peers that relay pushes to it.
    pub proxies: Vec<SocketAddr>,
    /// `"Firewalled": true`: the sender knows it cannot be connected to.
    pub firewalled: bool,
}

impl PushInfo {
    /// The fields of a message's unknown fields; invalid ones are ignored,
    /// proxies beyond [`MAX_PROXIES`] too.
    pub fn from_extra(extra: &Map<String, Value>) -> Self {
        let push_id = push_id_of(extra);
        let proxies = match extra.get("Proxies") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| {
                    v.as_str()?
                        .parse::<SocketAddr>()
                        .ok()
                        .map(crate::addr::normalize)
                })
                .filter(|a| !a.ip().is_unspecified() && a.port() != 0)
                .take(MAX_PROXIES)
                .collect(),
            _ => Vec::new(),
        };
        PushInfo {
            push_id,
            proxies,
            firewalled: extra.get("Firewalled") == Some(&Value::Bool(true)),
        }
    }

    /// Writes the fields into a message's unknown fields.
    pub fn write_extra(&self, extra: &mut Map<String, Value>) {
        if let Some(id) = self.push_id {
            extra.insert("PushId".into(), Value::from(hex16(id)));
            let proxies: Vec<Value> = self
                .proxies
                .iter()
                .take(MAX_PROXIES)
                .map(|a| Value::from(a.to_string()))
                .collect();
            extra.insert("Proxies".into(), Value::Array(proxies));
        }
        if self.firewalled {
            extra.insert("Firewalled".into(), Value::Bool(true));
        }
    }

    /// Copies the push fields of one message's unknown fields into
    /// another's (an answer passed on keeps them).
    pub fn copy_fields(from: &Map<String, Value>, to: &mut Map<String, Value>) {
        PushInfo::from_extra(from).write_extra(to);
    }

    /// Whether a push can be asked for at all.
    pub fn can_push(&self) -> bool {
        self.push_id.is_some() && !self.proxies.is_empty()
    }
}

/// The `"PushId"` of a message's unknown fields.
pub fn push_id_of(extra: &Map<String, Value>) -> Option<u64> {
    extra.get("PushId")?.as_str().and_then(parse_hex16)
}

/// A token bucket (the time is passed in).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Self {
        Bucket {
            tokens: f64::from(rate.count),
            last: now,
        }
    }

    /// Takes a token if there is one.
    fn take(&mut self, rate: Rate, now: Instant) -> bool {
        let per = rate.per.as_secs_f64();
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        let refill = if per > 0.0 {
            elapsed * f64::from(rate.count) / per
        } else {
            f64::INFINITY
        };
        self.tokens = (self.tokens + refill).min(f64::from(rate.count));
        self.last = self.last.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Buckets by key, at most `cap` of them, the oldest forgotten first.
#[derive(Debug)]
struct Buckets<K> {
    map: HashMap<K, Bucket>,
    order: VecDeque<K>,
    cap: usize,
}

impl<K: std::hash::Hash + Eq + Copy> Buckets<K> {
    fn new(cap: usize) -> Self {
        Buckets {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    fn take(&mut self, key: K, rate: Rate, now: Instant) -> bool {
        if !self.map.contains_key(&key) {
            while self.map.len() >= self.cap {
                match self.order.pop_front() {
                    Some(old) => {
                        self.map.remove(&old);
                    }
                    None => break,
                }
            }
            self.order.push_back(key);
        }
        self.map
            .entry(key)
            .or_insert_with(|| Bucket::full(rate, now))
            .take(rate, now)
    }
}

/// Why a push was not passed on or not acted upon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushDrop {
    /// No current peer has that push id.
    UnknownId,
    /// The sender's /24 spent its budget.
    PrefixBudget,
    /// The node spent its budget.
    TotalBudget,
    /// That target address was connected to too often lately.
    TargetBudget,
}

/// What the overlay keeps for pushes.
#[derive(Debug)]
pub(crate) struct PushState {
    pub(crate) cfg: PushConfig,
    /// Our push id, drawn at start.
    pub(crate) own_id: u64,
    /// Whether we can be connected to: `None` while unknown.
    pub(crate) reachable: Option<bool>,
    ids: HashMap<u64, SocketAddr>,
    by_peer: HashMap<SocketAddr, u64>,
    forward_prefix: Buckets<IpAddr>,
    forward_total: Bucket,
    connect_ip: Buckets<IpAddr>,
    connect_total: Bucket,
}

impl PushState {
    pub(crate) fn new(cfg: PushConfig, own_id: u64, now: Instant) -> Self {
        PushState {
            forward_prefix: Buckets::new(cfg.max_tracked),
            forward_total: Bucket::full(cfg.forward_total, now),
            connect_ip: Buckets::new(cfg.max_tracked),
            connect_total: Bucket::full(cfg.connect_total, now),
            cfg,
            own_id,
            reachable: None,
            ids: HashMap::new(),
            by_peer: HashMap::new(),
        }
    }

    /// Peer `peer` told its push id: we are its proxy from now on. A peer
    /// has one id (a new one replaces the old); an id taken by another
    /// peer is not moved (the first keeps it until it leaves).
    pub(crate) fn record(&mut self, peer: SocketAddr, id: u64) {
        if id == self.own_id {
            return;
        }
        if let Some(holder) = self.ids.get(&id) {
            if *holder != peer {
                tracing::debug!(%peer, "push id already held by another peer, ignored");
            }
            return;
        }
        if let Some(old) = self.by_peer.remove(&peer) {
            self.ids.remove(&old);
        }
        if self.ids.len() >= self.cfg.max_push_ids {
            tracing::debug!(%peer, "push id table full, not recording");
            return;
        }
        self.ids.insert(id, peer);
        self.by_peer.insert(peer, id);
    }

    /// Peer `peer` left: its push id goes with it.
    pub(crate) fn forget(&mut self, peer: &SocketAddr) {
        if let Some(id) = self.by_peer.remove(peer) {
            self.ids.remove(&id);
        }
    }

    /// The peer holding push id `id`.
    pub(crate) fn peer_of(&self, id: u64) -> Option<SocketAddr> {
        self.ids.get(&id).copied()
    }

    /// The push id peer `peer` told.
    pub(crate) fn id_of(&self, peer: &SocketAddr) -> Option<u64> {
        self.by_peer.get(peer).copied()
    }

    /// Takes a forwarding token for a push from `source`.
    pub(crate) fn allow_forward(&mut self, source: IpAddr, now: Instant) -> Result<(), PushDrop> {
        if !self.forward_prefix.take(
            crate::budget::prefix_of(source),
            self.cfg.forward_per_prefix,
            now,
        ) {
            return Err(PushDrop::PrefixBudget);
        }
        if !self.forward_total.take(self.cfg.forward_total, now) {
            return Err(PushDrop::TotalBudget);
        }
        Ok(())
    }

    /// Takes a connection token toward `target`.
    pub(crate) fn allow_connect(&mut self, target: IpAddr, now: Instant) -> Result<(), PushDrop> {
        if !self.connect_ip.take(target, self.cfg.connect_per_ip, now) {
            return Err(PushDrop::TargetBudget);
        }
        if !self.connect_total.take(self.cfg.connect_total, now) {
            return Err(PushDrop::TotalBudget);
        }
        Ok(())
    }
}

/// Whether an address is of a local network (loopback, private,
/// link-local, shared or unspecified): a proxy there helps only a
/// downloader on the same network.
pub fn is_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => {
            let o = ip.octets();
            ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(ip) => {
            let first = ip.segments()[0];
            ip.is_loopback()
                || ip.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local, fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local, fe80::/10
        }
    }
}

/// How a download reaches a source: where the Push went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushRoute {
    /// Straight to the source, which is a peer of ours.
    Peer(SocketAddr),
    /// Through these proxies.
    Proxies(Vec<SocketAddr>),
}

impl std::fmt::Display for PushRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushRoute::Peer(p) => write!(f, "push to peer {p}"),
            PushRoute::Proxies(list) => {
                f.write_str("push via ")?;
                for (i, p) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{p}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod punch_tests;
#[cfg(test)]
mod tests;
