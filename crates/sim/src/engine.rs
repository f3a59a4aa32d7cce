//! The event engine: one queue of events in virtual time, the peers'
//! overlays, and the datagrams between them (latency, loss, churn).

use crate::config::SimConfig;
use crate::queue::EventQueue;
use crate::records::{hops_of, Class, QRec};
use crate::workload::Workload;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rutella_proto::{Config, Event, Message, Overlay, MAX_DATAGRAM};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A datagram in flight: parsed, or as bytes with `wire`.
#[derive(Debug)]
pub(crate) enum Payload {
    Msg(Box<Message>),
    Bytes(Vec<u8>),
}

/// What happens at an instant of virtual time.
#[derive(Debug)]
pub(crate) enum Ev {
    Deliver {
        to: usize,
        gen: u32,
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
    Query {
        qi: usize,
    },
    /// A flooding peer starts one more search.
    Flood {
        slot: usize,
    },
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
    /// Access latency in ns (half of a link's base latency).
    pub(crate) access: f64,
}

/// Nanoseconds of virtual time.
pub(crate) const MS: u64 = 1_000_000;
pub(crate) const SEC: u64 = 1_000_000_000;

/// The whole simulation state.
pub(crate) struct Sim {
    pub(crate) cfg: SimConfig,
    pub(crate) base: Instant,
    pub(crate) now: u64,
    pub(crate) queue: EventQueue<Ev>,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) nodes: Vec<Node>,
    pub(crate) work: Workload,
    pub(crate) queries: Vec<QRec>,
    pub(crate) by_id: BTreeMap<u64, usize>,
    /// Looked up only, never iterated.
    pub(crate) text_matches: HashMap<String, Rc<Vec<u32>>>,
    pub(crate) datagrams: u64,
    pub(crate) maintenance: u64,
    pub(crate) max_datagram: usize,
    pub(crate) departures: u64,
    pub(crate) events: u64,
    /// Hops of the hit being delivered, for the first-hit figure.
    pub(crate) delivering_hops: u64,
    /// The behaviour of each slot.
    pub(crate) roles: Vec<Role>,
    /// Datagrams delivered to each slot during the measured window.
    pub(crate) load: Vec<u32>,
    /// Answers from peers that hold nothing of the kind, received by
    /// honest searchers.
    pub(crate) false_hits: u64,
    /// Searches started by flooding peers.
    pub(crate) flood_searches: u64,
    /// What each slot could offer as an ultrapeer.
    pub(crate) caps: Vec<crate::capability::Capability>,
    /// Datagrams from or to this address are logged (`RUTELLA_SIM_TRACE`).
    pub(crate) trace: Option<Ipv4Addr>,
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

impl Sim {
    /// A simulation of `cfg`, before its peers and queries are set up.
    pub(crate) fn new(cfg: &SimConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let work = Workload::generate(cfg.nodes, rng.gen());
        Sim {
            cfg: cfg.clone(),
            base: Instant::now(),
            now: 0,
            queue: EventQueue::new(),
            rng,
            nodes: Vec::with_capacity(cfg.nodes),
            work,
            queries: Vec::new(),
            by_id: BTreeMap::new(),
            text_matches: HashMap::new(),
            datagrams: 0,
            maintenance: 0,
            max_datagram: 0,
            departures: 0,
            events: 0,
            delivering_hops: 0,
            roles: Vec::new(),
            load: Vec::new(),
            false_hits: 0,
            flood_searches: 0,
            caps: crate::capability::capabilities(cfg),
            trace: std::env::var("RUTELLA_SIM_TRACE")
                .ok()
                .and_then(|s| s.parse().ok()),
        }
    }

    pub(crate) fn push(&mut self, t: u64, ev: Ev) {
        self.queue.push(t, ev);
    }

    pub(crate) fn end(&self) -> u64 {
        self.cfg.duration.as_nanos() as u64
    }

    pub(crate) fn warmup(&self) -> u64 {
        self.cfg.warmup.as_nanos() as u64
    }

    pub(crate) fn instant(&self, t: u64) -> Instant {
        self.base + Duration::from_nanos(t)
    }

    pub(crate) fn setup(&mut self) {
        let n = self.cfg.nodes;
        let median_access = self.cfg.latency_median.as_nanos() as f64 / 2.0;
        for slot in 0..n {
            // Log-normal access latency, sigma 0.5.
            let z: f64 = normal(&mut self.rng);
            let access = median_access * (0.5 * z).exp();
            self.nodes.push(Node {
                gen: 0,
                addr: addr_of(slot, 0),
                overlay: None,
                timer_at: None,
                access,
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
        for (qi, t) in times.into_iter().enumerate() {
            let target = self.work.pick_target(&mut self.rng);
            let text = self.work.query_text(target, &mut self.rng);
            self.queries.push(QRec {
                t0: t,
                text,
                matches: Rc::new(Vec::new()),
                querier: None,
                search: None,
                class: Class::Unanswerable,
                msgs: 0,
                first_hit: None,
            });
            self.push(t, Ev::Query { qi });
        }
    }

    pub(crate) fn session(&mut self) -> u64 {
        match self.cfg.churn_median {
            None => u64::MAX,
            Some(m) => {
                // Exponential with the given median.
                let u: f64 = self.rng.gen_range(f64::MIN_POSITIVE..1.0);
                let mean = m.as_nanos() as f64 / std::f64::consts::LN_2;
                (-u.ln() * mean) as u64
            }
        }
    }

    pub(crate) fn node_config(&self, slot: usize, gen: u32) -> Config {
        let addr = addr_of(slot, gen);
        Config {
            udp_port: addr.port(),
            tcp_port: addr.port().wrapping_add(1),
            seed: self.cfg.seed ^ ((slot as u64) << 32) ^ u64::from(gen).wrapping_mul(0x9e37),
            mode: self.cfg.mode,
            scalable: self.cfg.scalable.clone(),
            ping_interval: self.cfg.classic_ping_interval,
            max_peers: 1 << 20,
            ..Config::default()
        }
    }

    pub(crate) fn start(&mut self, slot: usize) {
        let gen = self.nodes[slot].gen;
        let addr = addr_of(slot, gen);
        let now = self.instant(self.now);
        let mut o = Overlay::new(self.node_config(slot, gen), now);
        o.add_own_ip(addr.ip());
        let cap = self.caps[slot];
        o.set_capability(cap.reachable, cap.bandwidth);
        o.set_library(self.work.library(slot).iter().map(|&f| self.work.name(f)));
        // Join through peers already online and connected: one at the first
        // start (as a user types one address), three from a saved host list
        // later.
        let n = self.nodes.len();
        let wanted = if gen == 0 { 1 } else { 3 };
        let mut online = Vec::new();
        for _ in 0..64 {
            if online.len() >= wanted {
                break;
            }
            let other = self.rng.gen_range(0..n);
            let connected = self.nodes[other]
                .overlay
                .as_ref()
                .is_some_and(|o| !o.peers().is_empty());
            if other != slot && connected {
                online.push(other);
            }
        }
        if online.is_empty() && slot != 0 && self.nodes[0].overlay.is_some() {
            online.push(0);
        }
        for other in online {
            if other == slot || self.nodes[other].overlay.is_none() {
                continue;
            }
            let a = self.nodes[other].addr;
            o.connect(now, a, a.port().wrapping_add(1));
        }
        let node = &mut self.nodes[slot];
        node.addr = addr;
        node.overlay = Some(o);
        node.timer_at = None;
        let life = self.session();
        if life != u64::MAX {
            let t = self.now.saturating_add(life);
            self.push(t, Ev::Leave { slot, gen });
        }
        self.drain(slot);
    }

    pub(crate) fn run_loop(&mut self) {
        let end = self.end();
        while let Some(e) = self.queue.pop() {
            if e.t > end {
                break;
            }
            self.now = e.t;
            self.events += 1;
            match e.ev {
                Ev::Start { slot } => self.start(slot),
                Ev::Leave { slot, gen } => {
                    if self.nodes[slot].gen == gen {
                        self.departures += 1;
                        let node = &mut self.nodes[slot];
                        node.overlay = None;
                        node.gen += 1;
                        // A newcomer takes its place (same library).
                        self.start(slot);
                    }
                }
                Ev::Timer { slot, gen } => {
                    let node = &mut self.nodes[slot];
                    if node.gen != gen || node.timer_at != Some(e.t) {
                        continue;
                    }
                    node.timer_at = None;
                    let now = self.base + Duration::from_nanos(e.t);
                    if let Some(o) = &mut node.overlay {
                        o.handle_timeout(now);
                    }
                    self.drain(slot);
                }
                Ev::Deliver {
                    to,
                    gen,
                    from,
                    payload,
                } => self.deliver(to, gen, from, payload),
                Ev::Query { qi } => self.issue(qi),
                Ev::Flood { slot } => self.flood(slot),
            }
        }
    }

    pub(crate) fn deliver(&mut self, to: usize, gen: u32, from: SocketAddr, payload: Payload) {
        let now = self.instant(self.now);
        let Some(node) = self.nodes.get_mut(to) else {
            return;
        };
        if node.gen != gen {
            return;
        }
        let Some(o) = &mut node.overlay else { return };
        if self.now >= self.cfg.warmup.as_nanos() as u64 {
            if let Some(l) = self.load.get_mut(to) {
                *l = l.saturating_add(1);
            }
        }
        if self.roles.get(to) == Some(&Role::Drop) {
            let query = match &payload {
                Payload::Msg(m) => matches!(**m, Message::Query(_)),
                Payload::Bytes(b) => matches!(Message::parse(b), Ok(Message::Query(_))),
            };
            if query {
                return;
            }
        }
        self.delivering_hops = 1;
        match payload {
            Payload::Msg(m) => {
                if let Message::QueryHit(h) = &*m {
                    self.delivering_hops = hops_of(&h.extra);
                }
                o.handle_message(now, from, *m);
            }
            Payload::Bytes(b) => {
                if let Ok(Message::QueryHit(h)) = Message::parse(&b) {
                    self.delivering_hops = hops_of(&h.extra);
                }
                o.handle_datagram(now, from, &b);
            }
        }
        self.drain(to);
    }

    /// Takes everything an overlay has to say after an input.
    pub(crate) fn drain(&mut self, slot: usize) {
        let gen = self.nodes[slot].gen;
        let src = self.nodes[slot].addr;
        loop {
            let Some(o) = &mut self.nodes[slot].overlay else {
                return;
            };
            let Some(ev) = o.poll_event() else { break };
            match ev {
                Event::Query(q) => self.answer(slot, &q),
                Event::SearchResult {
                    search,
                    files,
                    peer,
                    ..
                } => {
                    if files.is_empty() {
                        continue;
                    }
                    if let Some(&qi) = self.by_id.get(&search.0) {
                        let truthful = slot_of(&peer.udp)
                            .and_then(|s| self.roles.get(s))
                            .is_none_or(|r| r.answers_truly());
                        let q = &mut self.queries[qi];
                        if q.querier != Some((slot, gen)) {
                            continue;
                        }
                        if !truthful {
                            self.false_hits += 1;
                            continue;
                        }
                        if q.first_hit.is_none() {
                            q.first_hit = Some((self.now - q.t0, self.delivering_hops));
                        }
                    }
                }
                _ => {}
            }
        }
        loop {
            let Some(o) = &mut self.nodes[slot].overlay else {
                return;
            };
            let Some(t) = o.poll_transmit() else { break };
            self.datagrams += 1;
            let measured = self.now >= self.warmup();
            match &t.message {
                Message::Ping(_) | Message::Pong(_) => {
                    if measured {
                        self.maintenance += 1;
                    }
                }
                Message::Query(q) => self.count_query_msg(q.id),
                Message::QueryHit(h) => self.count_query_msg(h.id),
                Message::Push(_) | Message::Punch(_) | Message::Relay(_) => {}
            }
            let mut t = t;
            if self.roles[slot] == Role::Liar {
                lie_about_degree(&mut t.message);
            }
            let payload = if self.cfg.wire {
                let bytes = t.encode(src.ip());
                self.max_datagram = self.max_datagram.max(bytes.len());
                if bytes.len() > MAX_DATAGRAM {
                    tracing::warn!(len = bytes.len(), "datagram over the limit");
                }
                Payload::Bytes(bytes)
            } else {
                let mut m = t.message;
                if t.from_self {
                    m.set_ip(src.ip());
                }
                Payload::Msg(Box::new(m))
            };
            if self.rng.gen_bool(self.cfg.loss.clamp(0.0, 1.0)) {
                continue;
            }
            if let Some(w) = &self.trace {
                if *w == src.ip() || *w == t.dest.ip() {
                    tracing::info!(t = self.now, %src, dest = %t.dest, msg = ?payload, "send");
                }
            }
            let Some(to) = slot_of(&t.dest).filter(|&s| s < self.nodes.len()) else {
                continue;
            };
            if self.nodes[to].addr != t.dest || self.nodes[to].overlay.is_none() {
                continue;
            }
            let base = self.nodes[slot].access + self.nodes[to].access;
            let jitter: f64 = self.rng.gen_range(0.0..0.2);
            let delay = (base * (1.0 + jitter)) as u64 + 1;
            let to_gen = self.nodes[to].gen;
            self.push(
                self.now + delay,
                Ev::Deliver {
                    to,
                    gen: to_gen,
                    from: src,
                    payload,
                },
            );
        }
        let Some(o) = &self.nodes[slot].overlay else {
            return;
        };
        if let Some(t) = o.poll_timeout() {
            let t = t.saturating_duration_since(self.base).as_nanos() as u64;
            let t = t.max(self.now);
            let node = &mut self.nodes[slot];
            if node.timer_at.is_none_or(|cur| t < cur) {
                node.timer_at = Some(t);
                self.push(t, Ev::Timer { slot, gen });
            }
        }
    }
}

/// The highest degree a node believes (it clamps what it hears).
const LIE_DEGREE: i64 = 1024;

/// Makes a message announce the largest believable degree.
fn lie_about_degree(m: &mut Message) {
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
