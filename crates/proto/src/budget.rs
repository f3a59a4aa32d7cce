//! Per-source budgets: token buckets keyed by a datagram's source address
//! and by its prefix (/24 for IPv4, /64 for IPv6), so that one address, or
//! many in one network, cannot take more than its share of the node.
//!
//! Every datagram is checked against the [`Kind::Datagram`] budget before
//! it is parsed (a hash-map lookup and a little arithmetic, no allocation);
//! pings, queries and answers (hits) then have budgets of their own. A
//! datagram passes only when both its source's bucket and its prefix's
//! bucket hold a token; then one token is taken from each.
//!
//! Memory is bounded: at most [`BudgetConfig::max_sources`] sources and as
//! many prefixes are tracked, the least recently seen evicted first, so
//! spoofed sources cannot grow the tables. The time is passed in; nothing
//! here reads a clock.

use crate::message::Message;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// A sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Tokens added per second.
    pub per_second: u32,
    /// Most tokens a bucket holds (and holds when first seen).
    pub burst: u32,
}

impl Limit {
    /// `per_second` sustained, `burst` at once.
    pub const fn new(per_second: u32, burst: u32) -> Self {
        Limit { per_second, burst }
    }
}

/// The limits of one kind of traffic: per source address and per prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindLimits {
    /// Per source address.
    pub source: Limit,
    /// Per /24 (IPv4) or /64 (IPv6).
    pub prefix: Limit,
}

/// Settings of the per-source budgets (see the module documentation).
///
/// The defaults let honest peers through with room to spare. The heaviest
/// honest load is the classic full mesh: every peer pings every peer each
/// round (20 s) and every peer forwards each ping it gets to all its
/// peers, so with N peers one peer sends us about N/20 pings a second
/// (25/s for N = 500), in bursts of up to N when rounds line up, and a
/// LAN whose N peers share one /24 sends us about N²/20 a second (12,500/s
/// for N = 500). A user's searches are a few a second at most (a LAN of 300
/// users each searching a few times a minute sends about 15 a second); a
/// scalable neighbour forwards the searches of others, a few a second in
/// a large network. An answer is at most a few dozen datagrams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetConfig {
    /// When false, nothing is limited.
    pub enabled: bool,
    /// Sources (and, separately, prefixes) tracked at once; the least
    /// recently seen is forgotten first.
    pub max_sources: usize,
    /// Every datagram, checked before parsing. Default: 1,000/s with bursts
    /// of 5,000 per source; 20,000/s with bursts of 40,000 per prefix.
    pub datagrams: KindLimits,
    /// Pings. Default: 500/s, bursts of 2,000 per source; 20,000/s, bursts
    /// of 40,000 per prefix.
    pub pings: KindLimits,
    /// Queries. Default: 20/s, bursts of 100 per source; 200/s, bursts of
    /// 1,000 per prefix.
    pub queries: KindLimits,
    /// Answers to searches. Default: 500/s, bursts of 3,000 per source;
    /// 5,000/s, bursts of 20,000 per prefix.
    pub hits: KindLimits,
    /// Drops are logged at most once per this interval (with the counts
    /// since the last line). Default 10 s.
    pub log_interval: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            enabled: true,
            max_sources: 4096,
            datagrams: KindLimits {
                source: Limit::new(1_000, 5_000),
                prefix: Limit::new(20_000, 40_000),
            },
            pings: KindLimits {
                source: Limit::new(500, 2_000),
                prefix: Limit::new(20_000, 40_000),
            },
            queries: KindLimits {
                source: Limit::new(20, 100),
                prefix: Limit::new(200, 1_000),
            },
            hits: KindLimits {
                source: Limit::new(500, 3_000),
                prefix: Limit::new(5_000, 20_000),
            },
            log_interval: Duration::from_secs(10),
        }
    }
}

impl BudgetConfig {
    /// No limits at all.
    pub fn unlimited() -> Self {
        BudgetConfig {
            enabled: false,
            ..BudgetConfig::default()
        }
    }

    fn limits(&self, kind: Kind) -> &KindLimits {
        match kind {
            Kind::Datagram => &self.datagrams,
            Kind::Ping => &self.pings,
            Kind::Query => &self.queries,
            Kind::Hit => &self.hits,
        }
    }
}

/// What a budget is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any datagram, before parsing.
    Datagram,
    /// A Ping.
    Ping,
    /// A Query.
    Query,
    /// A QueryHit.
    Hit,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Datagram, Kind::Ping, Kind::Query, Kind::Hit];

    fn index(self) -> usize {
        self as usize
    }

    /// The budget a parsed message counts against besides
    /// [`Kind::Datagram`]; none for a Pong.
    pub fn of(message: &Message) -> Option<Kind> {
        match message {
            Message::Ping(_) => Some(Kind::Ping),
            Message::Pong(_) => None,
            // A push asks as much of the node as a query: one lookup and
            // at most one datagram on.
            Message::Query(_) | Message::Push(_) => Some(Kind::Query),
            Message::QueryHit(_) => Some(Kind::Hit),
            // Control messages of hole punching and relays count as pings.
            Message::Punch(_) | Message::Relay(_) => Some(Kind::Ping),
        }
    }
}

/// Datagrams dropped for being over budget, by kind, since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops {
    /// Over the datagram budget (dropped unparsed).
    pub datagrams: u64,
    /// Pings over their budget.
    pub pings: u64,
    /// Queries over their budget.
    pub queries: u64,
    /// Answers over their budget.
    pub hits: u64,
}

impl Drops {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.datagrams + self.pings + self.queries + self.hits
    }

    fn count(&mut self, kind: Kind) {
        let c = match kind {
            Kind::Datagram => &mut self.datagrams,
            Kind::Ping => &mut self.pings,
            Kind::Query => &mut self.queries,
            Kind::Hit => &mut self.hits,
        };
        *c += 1;
    }
}

/// One nanotoken: buckets count in billionths of a token, so that
/// refilling by `elapsed nanoseconds × rate` loses nothing to rounding.
const TOKEN: u128 = 1_000_000_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// In nanotokens.
    level: u64,
    last: Instant,
}

impl Bucket {
    fn full(limit: Limit, now: Instant) -> Self {
        Bucket {
            level: cap(limit),
            last: now,
        }
    }

    /// Adds what accrued since the last refill; whether a token is there.
    fn refill(&mut self, limit: Limit, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        let added = elapsed.saturating_mul(u128::from(limit.per_second));
        let level = (u128::from(self.level) + added).min(u128::from(cap(limit)));
        self.level = level as u64;
        // An earlier `now` (clocks may be fed out of order) keeps `last`.
        self.last = self.last.max(now);
        u128::from(self.level) >= TOKEN
    }

    fn take(&mut self) {
        self.level = self.level.saturating_sub(TOKEN as u64);
    }
}

fn cap(limit: Limit) -> u64 {
    // At most u32::MAX tokens, so this cannot overflow a u64.
    (u128::from(limit.burst) * TOKEN) as u64
}

const NIL: usize = usize::MAX;

#[derive(Debug)]
struct Slot {
    key: IpAddr,
    prev: usize,
    next: usize,
    buckets: [Bucket; 4],
}

/// A bounded table of buckets, least recently used evicted first: a hash
/// map into a slab threaded by a doubly linked list (O(1) per lookup).
#[derive(Debug)]
struct Table {
    map: HashMap<IpAddr, usize>,
    slots: Vec<Slot>,
    /// Most recently used.
    head: usize,
    /// Least recently used.
    tail: usize,
    cap: usize,
}

impl Table {
    fn new(cap: usize) -> Self {
        Table {
            map: HashMap::new(),
            slots: Vec::new(),
            head: NIL,
            tail: NIL,
            cap: cap.max(1),
        }
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next) = (self.slots[i].prev, self.slots[i].next);
        match prev {
            NIL => self.head = next,
            p => self.slots[p].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n].prev = prev,
        }
    }

    fn push_front(&mut self, i: usize) {
        self.slots[i].prev = NIL;
        self.slots[i].next = self.head;
        if self.head != NIL {
            self.slots[self.head].prev = i;
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
    }

    /// The buckets of `key`, made full if it is new (evicting the least
    /// recently used key when the table is full); `key` becomes the most
    /// recently used.
    fn get(&mut self, key: IpAddr, fresh: impl Fn() -> [Bucket; 4]) -> &mut [Bucket; 4] {
        let i = match self.map.get(&key) {
            Some(&i) => {
                if self.head != i {
                    self.unlink(i);
                    self.push_front(i);
                }
                i
            }
            None => {
                let i = if self.slots.len() < self.cap {
                    self.slots.push(Slot {
                        key,
                        prev: NIL,
                        next: NIL,
                        buckets: fresh(),
                    });
                    self.slots.len() - 1
                } else {
                    let old = self.tail;
                    self.unlink(old);
                    self.map.remove(&self.slots[old].key);
                    self.slots[old].key = key;
                    self.slots[old].buckets = fresh();
                    old
                };
                self.map.insert(key, i);
                self.push_front(i);
                i
            }
        };
        &mut self.slots[i].buckets
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// The prefix an address belongs to: its /24 (IPv4) or /64 (IPv6).
pub fn prefix_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & 0xffff_ff00)),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !0u128 << 64)),
    }
}

/// The budgets of every source and prefix (see the module documentation).
#[derive(Debug)]
pub struct Budget {
    config: BudgetConfig,
    sources: Table,
    prefixes: Table,
    drops: Drops,
    /// Drops as of the last log line, and when it was written.
    logged: Drops,
    last_log: Option<Instant>,
}

impl Budget {
    /// Empty tables.
    pub fn new(config: BudgetConfig) -> Self {
        Budget {
            sources: Table::new(config.max_sources),
            prefixes: Table::new(config.max_sources),
            config,
            drops: Drops::default(),
            logged: Drops::default(),
            last_log: None,
        }
    }

    /// Whether one more `kind` from `ip` fits its budgets at `now`; if so,
    /// it is counted against them, else it is counted as dropped.
    pub fn allow(&mut self, now: Instant, ip: IpAddr, kind: Kind) -> bool {
        if !self.config.enabled {
            return true;
        }
        let ip = ip.to_canonical();
        let limits = *self.config.limits(kind);
        let k = kind.index();
        let fresh = |pick: fn(&KindLimits) -> Limit| {
            let config = &self.config;
            move || Kind::ALL.map(|kind| Bucket::full(pick(config.limits(kind)), now))
        };
        let source = self.sources.get(ip, fresh(|l| l.source));
        let source_ok = source[k].refill(limits.source, now);
        let prefix = self.prefixes.get(prefix_of(ip), fresh(|l| l.prefix));
        let prefix_ok = prefix[k].refill(limits.prefix, now);
        if source_ok && prefix_ok {
            source[k].take();
            prefix[k].take();
            return true;
        }
        self.drops.count(kind);
        self.log_drops(now, ip);
        false
    }

    fn log_drops(&mut self, now: Instant, ip: IpAddr) {
        if self
            .last_log
            .is_some_and(|t| now.saturating_duration_since(t) < self.config.log_interval)
        {
            return;
        }
        let d = self.drops;
        let l = self.logged;
        tracing::warn!(
            last_source = %ip,
            datagrams = d.datagrams - l.datagrams,
            pings = d.pings - l.pings,
            queries = d.queries - l.queries,
            hits = d.hits - l.hits,
            "dropping datagrams over their sources' budgets"
        );
        self.logged = d;
        self.last_log = Some(now);
    }

    /// Datagrams dropped so far, by kind.
    pub fn drops(&self) -> Drops {
        self.drops
    }

    /// Sources and prefixes tracked now.
    pub fn tracked(&self) -> (usize, usize) {
        (self.sources.len(), self.prefixes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn tight() -> BudgetConfig {
        let l = |s, p| KindLimits {
            source: Limit::new(s, s),
            prefix: Limit::new(p, p),
        };
        BudgetConfig {
            enabled: true,
            max_sources: 4,
            datagrams: l(10, 25),
            pings: l(2, 100),
            queries: l(1, 100),
            hits: l(5, 100),
            log_interval: Duration::from_secs(10),
        }
    }

    fn count(b: &mut Budget, now: Instant, ip: IpAddr, kind: Kind, n: usize) -> usize {
        (0..n).filter(|_| b.allow(now, ip, kind)).count()
    }

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Budget::new(tight());
        let a = ip("10.0.0.1");
        assert_eq!(count(&mut b, t0, a, Kind::Datagram, 100), 10);
        assert_eq!(b.drops().datagrams, 90);
        // Half a second later: five more tokens, not more.
        let t = t0 + Duration::from_millis(500);
        assert_eq!(count(&mut b, t, a, Kind::Datagram, 100), 5);
        // A long pause refills to the burst only.
        let t = t + Duration::from_secs(3600);
        assert_eq!(count(&mut b, t, a, Kind::Datagram, 100), 10);
    }

    #[test]
    fn fractions_of_a_token_accrue() {
        let t0 = Instant::now();
        let mut b = Budget::new(tight());
        let a = ip("10.0.0.1");
        assert_eq!(count(&mut b, t0, a, Kind::Query, 10), 1);
        // 1 query/s, asked every 100 ms for 10 s: ten get through.
        let passed = (1..=100)
            .filter(|i| b.allow(t0 + Duration::from_millis(100 * i), a, Kind::Query))
            .count();
        assert_eq!(passed, 10);
    }

    #[test]
    fn kinds_have_budgets_of_their_own() {
        let t0 = Instant::now();
        let mut b = Budget::new(tight());
        let a = ip("10.0.0.1");
        assert_eq!(count(&mut b, t0, a, Kind::Ping, 10), 2);
        assert_eq!(count(&mut b, t0, a, Kind::Query, 10), 1);
        assert_eq!(count(&mut b, t0, a, Kind::Hit, 10), 5);
        assert_eq!(count(&mut b, t0, a, Kind::Datagram, 20), 10);
        let d = b.drops();
        assert_eq!((d.pings, d.queries, d.hits, d.datagrams), (8, 9, 5, 10));
        assert_eq!(d.total(), 32);
    }

    #[test]
    fn sources_are_apart_but_share_their_prefix() {
        let t0 = Instant::now();
        let mut b = Budget::new(tight());
        // Same /24: 10 each, but the prefix holds 25 in all.
        let got: Vec<usize> = (1..=4)
            .map(|i| count(&mut b, t0, ip(&format!("10.0.0.{i}")), Kind::Datagram, 10))
            .collect();
        assert_eq!(got, vec![10, 10, 5, 0]);
        // Another /24 is not affected.
        assert_eq!(count(&mut b, t0, ip("10.0.1.1"), Kind::Datagram, 100), 10);
        // A dropped datagram takes no token from the source: 10.0.0.4 got
        // nothing, so after the prefix refills it has its whole burst.
        let t = t0 + Duration::from_secs(10);
        assert_eq!(count(&mut b, t, ip("10.0.0.4"), Kind::Datagram, 100), 10);
    }

    #[test]
    fn ipv6_prefixes_are_64_bits() {
        assert_eq!(prefix_of(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(prefix_of(ip("192.0.2.77")), ip("192.0.2.0"));
        assert_eq!(prefix_of(ip("::ffff:192.0.2.77")), ip("192.0.2.0"));
        let t0 = Instant::now();
        let mut b = Budget::new(tight());
        let n: usize = (1..=5)
            .map(|i| {
                count(
                    &mut b,
                    t0,
                    ip(&format!("2001:db8::{i}")),
                    Kind::Datagram,
                    10,
                )
            })
            .sum();
        assert_eq!(n, 25, "the /64 shares one prefix budget");
    }

    #[test]
    fn the_tables_are_bounded_and_forget_the_least_recent() {
        let t0 = Instant::now();
        let mut b = Budget::new(tight());
        let a = ip("10.0.0.1");
        assert_eq!(count(&mut b, t0, a, Kind::Datagram, 10), 10);
        assert!(!b.allow(t0, a, Kind::Datagram));
        // Three other sources in other prefixes, then `a` again: it is
        // still known (its bucket is empty).
        for i in 1..=3 {
            assert!(b.allow(t0, ip(&format!("10.0.{i}.1")), Kind::Datagram));
        }
        assert!(!b.allow(t0, a, Kind::Datagram));
        // Many spoofed sources: the tables stay at their bound, and `a`,
        // now the least recent, is forgotten (a full bucket again).
        for i in 0..1000u32 {
            b.allow(
                t0,
                IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + (i << 8))),
                Kind::Datagram,
            );
        }
        assert_eq!(b.tracked(), (4, 4));
        assert!(b.allow(t0, a, Kind::Datagram));
    }

    #[test]
    fn disabled_allows_everything() {
        let t0 = Instant::now();
        let mut b = Budget::new(BudgetConfig::unlimited());
        assert_eq!(
            count(&mut b, t0, ip("10.0.0.1"), Kind::Datagram, 100_000),
            100_000
        );
        assert_eq!(b.drops().total(), 0);
        assert_eq!(b.tracked(), (0, 0));
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = Budget::new(tight());
        let a = ip("10.0.0.1");
        assert_eq!(count(&mut b, t0, a, Kind::Datagram, 100), 10);
        let earlier = t0 - Duration::from_secs(5);
        assert_eq!(count(&mut b, earlier, a, Kind::Datagram, 100), 0);
        assert_eq!(count(&mut b, t0, a, Kind::Datagram, 100), 0);
    }

    #[test]
    fn defaults_carry_a_classic_mesh_of_500_peers_in_one_lan() {
        // Every peer of a 500-peer mesh on 192.168.0.0/24 and /23, pings
        // every 20 s: each forwards us the pings of all others, spread over
        // the round. Nothing is dropped.
        let t0 = Instant::now();
        let mut b = Budget::new(BudgetConfig::default());
        let peers: Vec<IpAddr> = (0..500u32)
            .map(|i| IpAddr::V4(Ipv4Addr::from(0xc0a8_0000 + i)))
            .collect();
        let round = Duration::from_secs(20);
        for step in 0..500u32 {
            // In each 40 ms step, every peer forwards us one ping.
            let now = t0 + round * step / 500;
            for &p in &peers {
                assert!(b.allow(now, p, Kind::Datagram));
                assert!(b.allow(now, p, Kind::Ping));
            }
        }
        assert_eq!(b.drops().total(), 0);
    }

    proptest::proptest! {
        /// The same decisions as a model written independently (token
        /// levels in thousandths, per source and per /24, per kind), for
        /// any arrivals of any kinds from sources in two prefixes.
        #[test]
        fn decisions_match_a_model(
            arrivals in proptest::collection::vec((0u8..8, 0u8..4, 0u64..80), 1..500),
        ) {
            let t0 = Instant::now();
            let cfg = BudgetConfig { max_sources: 64, ..tight() };
            let mut b = Budget::new(cfg.clone());
            // (key, kind) -> (level in millitokens, last time in ms)
            let mut model: HashMap<(u8, bool, usize), (u64, u64)> = HashMap::new();
            let mut take = |key: (u8, bool, usize), l: Limit, t: u64, commit: bool| -> bool {
                let e = model.entry(key).or_insert((u64::from(l.burst) * 1000, t));
                let level = (e.0 + (t - e.1) * u64::from(l.per_second)).min(u64::from(l.burst) * 1000);
                *e = (level, t);
                if commit { e.0 -= 1000; }
                level >= 1000
            };
            let mut t = 0u64;
            for (src, kind, gap_ms) in arrivals {
                t += gap_ms;
                let k = kind as usize;
                let kind = Kind::ALL[k];
                let ip = IpAddr::V4(Ipv4Addr::new(10, 0, src / 4, src % 4));
                let l = *cfg.limits(kind);
                let s_ok = take((src, false, k), l.source, t, false);
                let p_ok = take((src / 4, true, k), l.prefix, t, false);
                if s_ok && p_ok {
                    take((src, false, k), l.source, t, true);
                    take((src / 4, true, k), l.prefix, t, true);
                }
                let got = b.allow(t0 + Duration::from_millis(t), ip, kind);
                proptest::prop_assert_eq!(got, s_ok && p_ok);
            }
        }

        /// However many sources, the tables stay within their bound.
        #[test]
        fn tables_stay_bounded(sources in proptest::collection::vec(proptest::num::u32::ANY, 1..300)) {
            let t0 = Instant::now();
            let cfg = BudgetConfig { max_sources: 16, ..tight() };
            let mut b = Budget::new(cfg);
            for s in sources {
                b.allow(t0, IpAddr::V4(Ipv4Addr::from(s)), Kind::Datagram);
                let (s, p) = b.tracked();
                proptest::prop_assert!(s <= 16 && p <= 16);
            }
        }
    }
}
