//! The simulation state and its main loop: the peers are split into
//! partitions that play a window of virtual time each on their own thread
//! (see [`part`]), and exchange their datagrams between windows.
//!
//! No datagram arrives sooner than the smallest link latency, twice the
//! access latency floor ([`access_floor`]), and the windows are exactly
//! that long: what a peer sends during a window arrives in a later one, so
//! the partitions need not see each other's datagrams until the window
//! ends. Every event is ordered by (time, sending peer, that peer's own
//! count of events), every random draw of a peer comes from its own
//! generator, and what a peer reads of the others (who is online to join
//! through) is a snapshot taken at the start of the window: the run is the
//! same for any number of partitions, bit for bit.

use crate::config::SimConfig;
pub(crate) mod part;
use crate::records::{Class, Diag, QRec};
use crate::workload::Workload;
use part::{Part, Shared, Snap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rutella_proto::{Config, Message, Overlay};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

/// A datagram in flight: parsed, or as bytes with `wire`.
#[derive(Debug)]
pub(crate) enum Payload {
    Msg(Box<Message>),
    Bytes(Vec<u8>),
}

/// What happens at an instant of virtual time, to one peer slot.
#[derive(Debug)]
pub(crate) enum Ev {
    /// A datagram for the peer at `dest` (dropped if another peer holds
    /// the slot by then).
    Deliver {
        to: usize,
        dest: SocketAddr,
        from: SocketAddr,
        payload: Payload,
    },
    Timer {
        slot: usize,
        gen: u32,
    },
    Start {
        slot: usize,
    },
    Leave {
        slot: usize,
        gen: u32,
    },
    /// The peer of `slot` (if still generation `gen`) starts search `qi`.
    Issue {
        qi: usize,
        slot: usize,
        gen: u32,
    },
    /// A flooding peer starts one more search.
    Flood {
        slot: usize,
    },
}

impl Ev {
    /// The slot whose peer the event is for.
    pub(crate) fn slot(&self) -> usize {
        match *self {
            Ev::Deliver { to, .. } => to,
            Ev::Timer { slot, .. }
            | Ev::Start { slot }
            | Ev::Leave { slot, .. }
            | Ev::Issue { slot, .. }
            | Ev::Flood { slot } => slot,
        }
    }
}

/// How the peer of a slot behaves (see [`crate::Hostile`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Honest,
    Drop,
    FalseHits,
    Flood,
    Liar,
}

impl Role {
    /// Whether the peer answers queries with what it really holds.
    pub(crate) fn answers_truly(self) -> bool {
        !matches!(self, Role::Drop | Role::FalseHits)
    }
}

/// One peer slot: the peer online in it now (a newcomer takes the slot
/// of one that left, with a new generation `gen`).
pub(crate) struct Node {
    pub(crate) gen: u32,
    pub(crate) addr: SocketAddr,
    pub(crate) overlay: Option<Overlay>,
    pub(crate) timer_at: Option<u64>,
    /// The slot's own random generator (loss, latency, sessions, joins).
    pub(crate) rng: ChaCha8Rng,
    /// Events this slot has queued, for their order among equal times.
    pub(crate) sent: u64,
    /// Datagrams delivered to the slot during the measured window.
    pub(crate) load: u32,
    /// Of those, answers (query hits).
    pub(crate) load_hits: u32,
    /// Whether the slot had an event in the current window.
    pub(crate) touched: bool,
    /// When the peer of the slot started (ns of virtual time).
    pub(crate) joined: u64,
    /// Whether it has had a link of its tier (for a leaf, an ultrapeer).
    pub(crate) attached: bool,
}

impl Node {
    /// The key of the next event this slot queues.
    pub(crate) fn next_key(&mut self, slot: usize) -> u64 {
        self.sent += 1;
        key(slot, self.sent)
    }
}

/// The order among events at the same time: by sending slot, then by the
/// sender's count. Searches issued by the simulator come after the peers'
/// own events.
pub(crate) fn key(src: usize, n: u64) -> u64 {
    ((src as u64).min(SIM_SRC) << 40) | (n & ((1 << 40) - 1))
}

/// The sender number of the simulator itself (searches).
const SIM_SRC: u64 = (1 << 24) - 1;

/// Nanoseconds of virtual time.
pub(crate) const MS: u64 = 1_000_000;
pub(crate) const SEC: u64 = 1_000_000_000;

/// The whole simulation state.
pub(crate) struct Sim {
    pub(crate) cfg: SimConfig,
    pub(crate) base: Instant,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) nodes: Vec<Node>,
    /// Access latency of each slot in ns (half of a link's base latency).
    pub(crate) access: Vec<f64>,
    pub(crate) work: Workload,
    pub(crate) queries: Vec<QRec>,
    /// Looked up only, never iterated.
    pub(crate) by_id: HashMap<u64, usize>,
    /// Looked up only, never iterated.
    pub(crate) text_matches: HashMap<String, Arc<Vec<u32>>>,
    pub(crate) datagrams: u64,
    pub(crate) maintenance: u64,
    pub(crate) max_datagram: usize,
    pub(crate) departures: u64,
    pub(crate) events: u64,
    /// The behaviour of each slot.
    pub(crate) roles: Vec<Role>,
    /// Datagrams delivered to each slot during the measured window.
    pub(crate) load: Vec<u32>,
    /// Of those, answers (query hits).
    pub(crate) load_hits: Vec<u32>,
    /// Answers from peers that hold nothing of the kind, received by
    /// honest searchers.
    pub(crate) false_hits: u64,
    /// Searches started by flooding peers.
    pub(crate) flood_searches: u64,
    /// Attachment counters (see [`part::Attach`]).
    pub(crate) attach: part::Attach,
    /// What each slot could offer as an ultrapeer.
    pub(crate) caps: Vec<crate::capability::Capability>,
    /// Datagrams from or to this address are logged (`RUTELLA_SIM_TRACE`).
    pub(crate) trace: Option<Ipv4Addr>,
    /// Partitions played in parallel.
    pub(crate) threads: usize,
    /// Events queued by the setup, as (time, key, event).
    pending: Vec<(u64, u64, Ev)>,
}

pub(crate) fn addr_of(slot: usize, gen: u32) -> SocketAddr {
    let ip = Ipv4Addr::from(0x7f00_0002u32 + slot as u32);
    SocketAddr::new(IpAddr::V4(ip), 21000u16.wrapping_add((gen % 40000) as u16))
}

pub(crate) fn slot_of(addr: &SocketAddr) -> Option<usize> {
    let SocketAddr::V4(addr) = addr else {
        return None;
    };
    u32::from(*addr.ip())
        .checked_sub(0x7f00_0002)
        .map(|s| s as usize)
}

/// The smallest access latency of a peer, in ns: a quarter of the median
/// (about 0.3% of the log-normal draws fall below and are raised to it),
/// and at least 0.5 µs. A link's latency is at least twice this.
pub(crate) fn access_floor(cfg: &SimConfig) -> f64 {
    (cfg.latency_median.as_nanos() as f64 / 8.0).max(500.0)
}

/// The settings of the peer of `slot`, generation `gen`.
pub(crate) fn node_config(cfg: &SimConfig, slot: usize, gen: u32) -> Config {
    let addr = addr_of(slot, gen);
    Config {
        udp_port: addr.port(),
        tcp_port: addr.port().wrapping_add(1),
        seed: cfg.seed ^ ((slot as u64) << 32) ^ u64::from(gen).wrapping_mul(0x9e37),
        mode: cfg.mode,
        scalable: cfg.scalable.clone(),
        ping_interval: cfg.classic_ping_interval,
        max_peers: 1 << 20,
        ..Config::default()
    }
}

impl Sim {
    /// A simulation of `cfg`, before its peers and queries are set up.
    pub(crate) fn new(cfg: &SimConfig, threads: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let work = Workload::generate(cfg.nodes, rng.gen());
        Sim {
            cfg: cfg.clone(),
            base: Instant::now(),
            rng,
            nodes: Vec::with_capacity(cfg.nodes),
            access: Vec::with_capacity(cfg.nodes),
            work,
            queries: Vec::new(),
            by_id: HashMap::new(),
            text_matches: HashMap::new(),
            datagrams: 0,
            maintenance: 0,
            max_datagram: 0,
            departures: 0,
            events: 0,
            roles: Vec::new(),
            load: Vec::new(),
            load_hits: Vec::new(),
            false_hits: 0,
            flood_searches: 0,
            attach: part::Attach::default(),
            caps: crate::capability::capabilities(cfg),
            trace: std::env::var("RUTELLA_SIM_TRACE")
                .ok()
                .and_then(|s| s.parse().ok()),
            threads: threads.max(1),
            pending: Vec::new(),
        }
    }

    fn push(&mut self, t: u64, ev: Ev) {
        let slot = ev.slot();
        let key = self.nodes[slot].next_key(slot);
        self.pending.push((t, key, ev));
    }

    pub(crate) fn end(&self) -> u64 {
        self.cfg.duration.as_nanos() as u64
    }

    pub(crate) fn warmup(&self) -> u64 {
        self.cfg.warmup.as_nanos() as u64
    }

    pub(crate) fn setup(&mut self) {
        let n = self.cfg.nodes;
        let median_access = self.cfg.latency_median.as_nanos() as f64 / 2.0;
        let floor = access_floor(&self.cfg);
        for slot in 0..n {
            // Log-normal access latency, sigma 0.5, above the floor.
            let z: f64 = normal(&mut self.rng);
            let access = (median_access * (0.5 * z).exp()).max(floor);
            self.access.push(access);
            let mut rng = ChaCha8Rng::seed_from_u64(self.cfg.seed ^ 0x7065_6572_2072_6e67);
            rng.set_stream(slot as u64);
            self.nodes.push(Node {
                gen: 0,
                addr: addr_of(slot, 0),
                overlay: None,
                timer_at: None,
                rng,
                sent: 0,
                load: 0,
                load_hits: 0,
                touched: false,
                joined: 0,
                attached: false,
            });
        }
        self.roles = assign_roles(&self.cfg);
        self.load = vec![0; n];
        // Flooding peers start searching once the overlay has formed.
        for slot in 0..n {
            if self.roles[slot] == Role::Flood {
                let every = self.cfg.hostile.flood_interval.as_nanos().max(1) as u64;
                let t = self.warmup() + self.rng.gen_range(0..every);
                self.push(t, Ev::Flood { slot });
            }
        }
        // Peers arrive over the first minute (a tenth of the warm-up at most).
        let spread = (self.warmup() / 3).clamp(1, 60 * SEC);
        for slot in 0..n {
            let t = spread * slot as u64 / n.max(1) as u64;
            self.push(t, Ev::Start { slot });
        }
        // Queries: uniform over the measured window, leaving time to finish.
        let tail = (self.cfg.scalable.max_search_time.as_nanos() as u64 + 5 * SEC)
            .max(Config::default().search_timeout.as_nanos() as u64 + SEC);
        let start = self.warmup();
        let stop = self.end().saturating_sub(tail).max(start + 1);
        let mut times: Vec<u64> = (0..self.cfg.queries)
            .map(|_| self.rng.gen_range(start..stop))
            .collect();
        times.sort_unstable();
        for t in times {
            let target = self.work.pick_target(&mut self.rng);
            let text = self.work.query_text(target, &mut self.rng);
            self.queries.push(QRec {
                t0: t,
                text,
                matches: Arc::new(Vec::new()),
                querier: None,
                search: None,
                class: Class::Unanswerable,
                msgs: 0,
                first_hit: None,
                diag: None,
            });
        }
    }

    /// Plays the whole run, window after window.
    pub(crate) fn run_loop(&mut self) {
        let n = self.nodes.len();
        if n == 0 {
            return;
        }
        let k = self.threads.clamp(1, n);
        let mut nodes = std::mem::take(&mut self.nodes);
        {
            // Slot `s` is played by partition `s % k`: the peers that
            // arrive first, which become the ultrapeers and do most of
            // the work, are spread over all of them (in two blocks of
            // slots, the first block's events took five times as long as
            // the second's at 10,000 peers).
            let mut slots: Vec<Vec<&mut Node>> =
                (0..k).map(|_| Vec::with_capacity(n.div_ceil(k))).collect();
            for (slot, node) in nodes.iter_mut().enumerate() {
                slots[slot % k].push(node);
            }
            let mut parts: Vec<Part> = slots
                .into_iter()
                .enumerate()
                .map(|(i, s)| Part::new(i, s, k))
                .collect();
            for (t, key, ev) in std::mem::take(&mut self.pending) {
                let p = ev.slot() % k;
                parts[p].queue.push(t, key, ev);
            }
            let pool = if parts.len() > 1 {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(parts.len())
                    .build()
                    .ok()
            } else {
                None
            };
            match &pool {
                Some(pool) => pool.install(|| self.windows(&mut parts, true)),
                None => self.windows(&mut parts, false),
            }
        }
        self.load = nodes.iter().map(|n| n.load).collect();
        self.load_hits = nodes.iter().map(|n| n.load_hits).collect();
        self.nodes = nodes;
    }

    /// The windows, from the first event to the end of the run.
    fn windows(&mut self, parts: &mut [Part], parallel: bool) {
        let k = parts.len();
        let end = self.end();
        let window = (2.0 * access_floor(&self.cfg)) as u64;
        let mut snap = vec![Snap::default(); self.access.len()];
        let mut next_q = 0;
        loop {
            let mut next = self.queries.get(next_q).map(|q| q.t0);
            for p in parts.iter_mut() {
                if let Some(t) = p.queue.peek_t() {
                    next = Some(next.map_or(t, |n: u64| n.min(t)));
                }
            }
            let Some(next) = next.filter(|&t| t <= end) else {
                break;
            };
            let w0 = next / window * window;
            let stop = (w0 + window).min(end.saturating_add(1));
            // The searches of the window are given to their peers.
            while next_q < self.queries.len() && self.queries[next_q].t0 < stop {
                if let Some((slot, gen)) = self.issue(next_q, &snap) {
                    if let Some(d) = self.queries[next_q].diag.as_deref_mut() {
                        diagnose_start(d, parts, slot);
                    }
                    let t = self.queries[next_q].t0;
                    parts[slot % k].queue.push(
                        t,
                        key(usize::MAX, next_q as u64),
                        Ev::Issue {
                            qi: next_q,
                            slot,
                            gen,
                        },
                    );
                }
                next_q += 1;
            }
            let shared = Shared {
                cfg: &self.cfg,
                base: self.base,
                work: &self.work,
                roles: &self.roles,
                caps: &self.caps,
                access: &self.access,
                text_matches: &self.text_matches,
                by_id: &self.by_id,
                queries: &self.queries,
                snap: &snap,
                trace: self.trace,
                parts: k,
                end,
                warmup: self.warmup(),
            };
            if parallel {
                use rayon::prelude::*;
                parts.par_iter_mut().for_each(|p| p.run(&shared, stop));
            } else {
                for p in parts.iter_mut() {
                    p.run(&shared, stop);
                }
            }
            // What crosses partitions, in an order that does not matter:
            // the queue orders by (time, key) and sums commute.
            for i in 0..parts.len() {
                let mut out = std::mem::take(&mut parts[i].out);
                for (j, evs) in out.iter_mut().enumerate() {
                    for (t, key, ev) in evs.drain(..) {
                        parts[j].queue.push(t, key, ev);
                    }
                }
                let p = &mut parts[i];
                p.out = out;
                self.by_id.extend(p.local_ids.drain());
                for (qi, id) in p.search_ids.drain(..) {
                    self.queries[qi].search = Some(id);
                }
                for qi in p.msgs.drain(..) {
                    self.queries[qi].msgs += 1;
                }
                for (qi, dt, hops) in p.first_hits.drain(..) {
                    let q = &mut self.queries[qi];
                    if q.first_hit.is_none() {
                        q.first_hit = Some((dt, hops));
                    }
                }
                for (qi, ev) in p.diag.drain(..) {
                    if let Some(d) = self.queries[qi].diag.as_deref_mut() {
                        d.apply(ev);
                    }
                }
                for (slot, s) in p.snap_updates.drain(..) {
                    snap[slot] = s;
                }
            }
        }
        for p in parts.iter() {
            let s = &p.stats;
            self.datagrams += s.datagrams;
            self.maintenance += s.maintenance;
            self.max_datagram = self.max_datagram.max(s.max_datagram);
            self.departures += s.departures;
            self.events += s.events;
            self.false_hits += s.false_hits;
            self.flood_searches += s.flood_searches;
            self.attach.merge(&s.attach);
        }
    }
}

/// Notes the state of a search's holder and searcher when it starts: its
/// tier, and which ultrapeers hold its filter.
fn diagnose_start(d: &mut Diag, parts: &[Part], querier: usize) {
    let node = |slot: usize| {
        parts
            .get(slot % parts.len().max(1))
            .and_then(|p| p.node_ref(slot))
    };
    if let Some(o) = node(querier).and_then(|n| n.overlay.as_ref()) {
        d.querier_links = o.degree() + o.leaf_count();
        d.querier_ultrapeer = o.is_ultrapeer() == Some(true);
    }
    let Some(h) = node(d.holder) else { return };
    d.holder_gen = h.gen;
    let Some(o) = &h.overlay else { return };
    d.holder_online = true;
    d.holder_ultrapeer = o.is_ultrapeer() == Some(true);
    if d.holder_ultrapeer {
        return;
    }
    let addr = h.addr;
    let ups: Vec<usize> = o
        .neighbours()
        .iter()
        .filter_map(|p| slot_of(&p.udp))
        .collect();
    d.holder_links = ups.len();
    d.indexers = ups
        .into_iter()
        .filter(|&u| {
            node(u)
                .and_then(|n| n.overlay.as_ref())
                .is_some_and(|o| o.holds_leaf_filter(&addr))
        })
        .collect();
}

/// The highest degree a node believes (it clamps what it hears).
const LIE_DEGREE: i64 = 1024;

/// Makes a message announce the largest believable degree.
pub(crate) fn lie_about_degree(m: &mut Message) {
    let extra = match m {
        Message::Ping(p) => &mut p.extra,
        Message::Pong(p) => &mut p.extra,
        Message::Query(q) => &mut q.extra,
        _ => return,
    };
    if extra.contains_key("Degree") {
        extra.insert("Degree".into(), serde_json::Value::from(LIE_DEGREE));
    }
}

/// The role of every slot, drawn from its own generator so that the
/// honest peers' randomness does not depend on the hostile shares. Slot 0
/// (the peer of last resort for joining) stays honest.
fn assign_roles(cfg: &SimConfig) -> Vec<Role> {
    let h = &cfg.hostile;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x686f_7374_696c_6521);
    (0..cfg.nodes)
        .map(|slot| {
            if h.none() || slot == 0 {
                return Role::Honest;
            }
            let u: f64 = rng.gen();
            let mut acc = h.drop;
            if u < acc {
                return Role::Drop;
            }
            acc += h.false_hits;
            if u < acc {
                return Role::FalseHits;
            }
            acc += h.flood;
            if u < acc {
                return Role::Flood;
            }
            acc += h.liar;
            if u < acc {
                return Role::Liar;
            }
            Role::Honest
        })
        .collect()
}

/// Standard normal draw (Box-Muller).
fn normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.gen_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}
