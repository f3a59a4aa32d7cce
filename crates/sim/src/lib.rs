//! A deterministic discrete-event simulator of rutella overlays.
//!
//! Thousands of [`rutella_proto::Overlay`] state machines, the very code the
//! node runs, share one event queue with virtual time. Every datagram the
//! overlays emit is delivered after a latency drawn for its link, or lost;
//! peers leave and new ones join (churn); every peer shares a library drawn
//! from a Zipf-skewed catalogue plus files nobody else has. Queries for
//! names of that catalogue are issued at random peers, and the simulator
//! measures what the scaling study needs (see [`Summary`]).
//!
//! The same [`SimConfig`] (seed included) gives the same [`Summary`], bit
//! for bit: all randomness comes from seeded generators, and every
//! collection whose order matters is ordered.
#![warn(missing_docs)]

pub mod figures;
mod workload;

pub use workload::Workload;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rutella_proto::{
    Config, Event, HitFile, IncomingQuery, Message, Mode, Overlay, ScalableConfig, SearchId,
    MAX_DATAGRAM,
};
use serde::Serialize;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of peers online at any time.
    pub nodes: usize,
    /// Overlay mode of every peer.
    pub mode: Mode,
    /// Searches issued during the measured window.
    pub queries: usize,
    /// Seed of everything random.
    pub seed: u64,
    /// Simulated time in all.
    pub duration: Duration,
    /// Time at the start that is not measured (the overlay forms).
    pub warmup: Duration,
    /// Median session length; `None` for no churn.
    pub churn_median: Option<Duration>,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Median one-way latency of a link.
    pub latency_median: Duration,
    /// Encode every datagram to bytes and parse it at the receiver, as on
    /// a real network (slower; otherwise messages are handed over parsed).
    pub wire: bool,
    /// Settings of the scalable overlay.
    pub scalable: ScalableConfig,
    /// Classic ping interval.
    pub classic_ping_interval: Duration,
}

impl SimConfig {
    /// A configuration with the protocol's defaults.
    pub fn new(nodes: usize, mode: Mode, queries: usize, seed: u64) -> Self {
        SimConfig {
            nodes,
            mode,
            queries,
            seed,
            duration: Duration::from_secs(30 * 60),
            warmup: Duration::from_secs(180),
            churn_median: None,
            loss: 0.01,
            latency_median: Duration::from_millis(40),
            wire: false,
            scalable: ScalableConfig::default(),
            classic_ping_interval: Config::default().ping_interval,
        }
    }
}

/// Figures for one class of queries.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ClassFigures {
    /// Queries of this class issued.
    pub queries: usize,
    /// Share of them that got at least one hit.
    pub success_rate: f64,
    /// Median datagrams (queries and hits) caused by one query.
    pub messages_median: f64,
    /// 95th percentile of the same.
    pub messages_p95: f64,
    /// Median overlay hops from the querier to the first peer that answered.
    pub hops_to_first_hit_median: f64,
    /// Median virtual time from the search to its first hit, in ms.
    pub time_to_first_hit_ms_median: f64,
}

/// The result of one simulation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Peers.
    pub nodes: usize,
    /// `classic` or `scalable`.
    pub mode: String,
    /// The seed.
    pub seed: u64,
    /// Simulated minutes in all.
    pub minutes: f64,
    /// Minutes measured (after the warm-up).
    pub measured_minutes: f64,
    /// Median session length in seconds, if there was churn.
    pub churn_median_secs: Option<f64>,
    /// Datagram loss probability.
    pub loss: f64,
    /// Searches issued.
    pub queries: usize,
    /// Searches that some other peer could answer.
    pub answerable_queries: usize,
    /// Success rate over answerable searches.
    pub success_rate: f64,
    /// Figures over all answerable searches.
    pub all: ClassFigures,
    /// Searches for names held by at least 0.5% of the peers.
    pub popular: ClassFigures,
    /// Searches for names held by one peer only.
    pub unique: ClassFigures,
    /// Number of peers a query must reach to count as popular.
    pub popular_threshold: usize,
    /// Ping and pong datagrams per online peer per second, measured window.
    pub maintenance_msgs_per_peer_per_sec: f64,
    /// Datagrams sent in all.
    pub datagrams: u64,
    /// Largest datagram seen, in bytes (only measured with `wire`).
    pub max_datagram_bytes: usize,
    /// Degree (neighbours, or known peers in classic mode) at the end: min.
    pub degree_min: usize,
    /// Mean.
    pub degree_mean: f64,
    /// Max.
    pub degree_max: usize,
    /// Peers that left (and were replaced by newcomers).
    pub departures: u64,
    /// Events processed.
    pub events: u64,
}

#[derive(Debug)]
enum Payload {
    Msg(Box<Message>),
    Bytes(Vec<u8>),
}

#[derive(Debug)]
enum Ev {
    Deliver {
        to: usize,
        gen: u32,
        from: SocketAddrV4,
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
}

struct Entry {
    t: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.seq) == (o.t, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> Ordering {
        (o.t, o.seq).cmp(&(self.t, self.seq))
    }
}

struct Node {
    gen: u32,
    addr: SocketAddrV4,
    overlay: Option<Overlay>,
    timer_at: Option<u64>,
    /// Access latency in ns (half of a link's base latency).
    access: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Unanswerable,
    Unique,
    Middle,
    Popular,
}

struct QRec {
    t0: u64,
    text: String,
    matches: Rc<Vec<u32>>,
    querier: Option<(usize, u32)>,
    search: Option<SearchId>,
    class: Class,
    msgs: u64,
    first_hit: Option<(u64, u64)>,
}

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

struct Sim {
    cfg: SimConfig,
    base: Instant,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Entry>,
    rng: ChaCha8Rng,
    nodes: Vec<Node>,
    work: Workload,
    queries: Vec<QRec>,
    by_id: BTreeMap<u64, usize>,
    /// Looked up only, never iterated.
    text_matches: HashMap<String, Rc<Vec<u32>>>,
    datagrams: u64,
    maintenance: u64,
    max_datagram: usize,
    departures: u64,
    events: u64,
    /// Hops of the hit being delivered, for the first-hit figure.
    delivering_hops: u64,
    /// Datagrams from or to this address are logged (`RUTELLA_SIM_TRACE`).
    trace: Option<Ipv4Addr>,
}

fn addr_of(slot: usize, gen: u32) -> SocketAddrV4 {
    let ip = Ipv4Addr::from(0x7f00_0002u32 + slot as u32);
    SocketAddrV4::new(ip, 21000u16.wrapping_add((gen % 40000) as u16))
}

fn slot_of(addr: &SocketAddrV4) -> Option<usize> {
    u32::from(*addr.ip())
        .checked_sub(0x7f00_0002)
        .map(|s| s as usize)
}

/// Runs one simulation.
pub fn run(cfg: &SimConfig) -> Summary {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let work = Workload::generate(cfg.nodes, rng.gen());
    let mut sim = Sim {
        cfg: cfg.clone(),
        base: Instant::now(),
        now: 0,
        seq: 0,
        queue: BinaryHeap::new(),
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
        trace: std::env::var("RUTELLA_SIM_TRACE")
            .ok()
            .and_then(|s| s.parse().ok()),
    };
    sim.setup();
    sim.run_loop();
    sim.summary()
}

impl Sim {
    fn push(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Entry {
            t,
            seq: self.seq,
            ev,
        });
    }

    fn end(&self) -> u64 {
        self.cfg.duration.as_nanos() as u64
    }

    fn warmup(&self) -> u64 {
        self.cfg.warmup.as_nanos() as u64
    }

    fn instant(&self, t: u64) -> Instant {
        self.base + Duration::from_nanos(t)
    }

    fn setup(&mut self) {
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

    fn session(&mut self) -> u64 {
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

    fn node_config(&self, slot: usize, gen: u32) -> Config {
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

    fn start(&mut self, slot: usize) {
        let gen = self.nodes[slot].gen;
        let addr = addr_of(slot, gen);
        let now = self.instant(self.now);
        let mut o = Overlay::new(self.node_config(slot, gen), now);
        o.add_own_ip(*addr.ip());
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

    fn run_loop(&mut self) {
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
            }
        }
    }

    fn deliver(&mut self, to: usize, gen: u32, from: SocketAddrV4, payload: Payload) {
        let now = self.instant(self.now);
        let Some(node) = self.nodes.get_mut(to) else {
            return;
        };
        if node.gen != gen {
            return;
        }
        let Some(o) = &mut node.overlay else { return };
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
                o.handle_datagram(now, SocketAddr::V4(from), &b);
            }
        }
        self.drain(to);
    }

    fn issue(&mut self, qi: usize) {
        // A random online peer searches.
        let n = self.nodes.len();
        let mut slot = self.rng.gen_range(0..n);
        for _ in 0..n {
            if self.nodes[slot].overlay.is_some() {
                break;
            }
            slot = (slot + 1) % n;
        }
        let text = self.queries[qi].text.clone();
        let matches = match self.text_matches.get(&text) {
            Some(m) => m.clone(),
            None => {
                let m = Rc::new(self.work.matching(&text));
                self.text_matches.insert(text.clone(), m.clone());
                m
            }
        };
        let holders = self.work.holders_of(&matches, slot);
        let threshold = self.popular_threshold();
        let class = match holders {
            0 => Class::Unanswerable,
            1 => Class::Unique,
            h if h >= threshold => Class::Popular,
            _ => Class::Middle,
        };
        let now = self.instant(self.now);
        let gen = self.nodes[slot].gen;
        let Some(o) = &mut self.nodes[slot].overlay else {
            return;
        };
        let id = o.search(now, &text);
        let q = &mut self.queries[qi];
        q.matches = matches;
        q.class = class;
        q.querier = Some((slot, gen));
        q.search = Some(id);
        self.by_id.insert(id.0, qi);
        self.drain(slot);
    }

    fn popular_threshold(&self) -> usize {
        ((self.cfg.nodes as f64 * 0.005).ceil() as usize).max(2)
    }

    /// Takes everything an overlay has to say after an input.
    fn drain(&mut self, slot: usize) {
        let gen = self.nodes[slot].gen;
        let src = self.nodes[slot].addr;
        loop {
            let Some(o) = &mut self.nodes[slot].overlay else {
                return;
            };
            let Some(ev) = o.poll_event() else { break };
            match ev {
                Event::Query(q) => self.answer(slot, &q),
                Event::SearchResult { search, files, .. } => {
                    if files.is_empty() {
                        continue;
                    }
                    if let Some(&qi) = self.by_id.get(&search.0) {
                        let q = &mut self.queries[qi];
                        if q.querier == Some((slot, gen)) && q.first_hit.is_none() {
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
            }
            let payload = if self.cfg.wire {
                let bytes = t.encode(*src.ip());
                self.max_datagram = self.max_datagram.max(bytes.len());
                if bytes.len() > MAX_DATAGRAM {
                    tracing::warn!(len = bytes.len(), "datagram over the limit");
                }
                Payload::Bytes(bytes)
            } else {
                let mut m = t.message;
                if t.from_self {
                    m.set_ip(*src.ip());
                }
                Payload::Msg(Box::new(m))
            };
            if self.rng.gen_bool(self.cfg.loss.clamp(0.0, 1.0)) {
                continue;
            }
            if let Some(w) = &self.trace {
                if *w == *src.ip() || *w == *t.dest.ip() {
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

    fn count_query_msg(&mut self, id: Option<u64>) {
        if let Some(qi) = id.and_then(|id| self.by_id.get(&id)) {
            self.queries[*qi].msgs += 1;
        }
    }

    fn answer(&mut self, slot: usize, q: &IncomingQuery) {
        let files: Vec<HitFile> = match self.text_matches.get(&q.text) {
            Some(m) => {
                let lib = self.work.library(slot);
                m.iter()
                    .filter(|f| lib.binary_search(f).is_ok())
                    .map(|&f| HitFile::named(self.work.name(f)))
                    .collect()
            }
            None => self
                .work
                .library(slot)
                .iter()
                .filter(|&&f| rutella_proto::name_matches(&q.text, self.work.name(f)))
                .map(|&f| HitFile::named(self.work.name(f)))
                .collect(),
        };
        if let Some(o) = &mut self.nodes[slot].overlay {
            o.answer_query(q, &files);
        }
    }

    fn neighbours_of(&self, slot: usize) -> Vec<usize> {
        self.nodes[slot]
            .overlay
            .as_ref()
            .map(|o| {
                o.neighbours()
                    .iter()
                    .filter_map(|p| slot_of(&p.udp))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn bfs(&self, from: usize) -> Vec<u32> {
        let mut d = vec![u32::MAX; self.nodes.len()];
        d[from] = 0;
        let mut q = std::collections::VecDeque::from([from]);
        while let Some(x) = q.pop_front() {
            for y in self.neighbours_of(x) {
                if y < d.len() && d[y] == u32::MAX {
                    d[y] = d[x] + 1;
                    q.push_back(y);
                }
            }
        }
        d
    }

    fn ball(&self, from: usize) -> Vec<usize> {
        let d = self.bfs(from);
        let comp: Vec<usize> = (0..d.len()).filter(|i| d[*i] != u32::MAX).collect();
        if comp.len() < self.nodes.len() / 2 {
            let asym = comp
                .iter()
                .map(|&x| {
                    self.neighbours_of(x)
                        .iter()
                        .filter(|&&y| !self.neighbours_of(y).contains(&x))
                        .count()
                })
                .sum::<usize>();
            tracing::info!(first = ?comp.iter().take(10).collect::<Vec<_>>(), last = ?comp.iter().rev().take(5).collect::<Vec<_>>(), asym, "small component");
        }
        (1..6)
            .map(|r| d.iter().filter(|x| **x <= r).count())
            .collect()
    }

    fn dist(&self, a: usize, b: usize) -> u32 {
        self.bfs(a)[b]
    }

    fn summary(&self) -> Summary {
        if std::env::var_os("RUTELLA_SIM_DEBUG").is_some() {
            for (i, n) in self.nodes.iter().enumerate() {
                if let Some(o) = &n.overlay {
                    if o.degree() < 4 {
                        tracing::info!(slot = i, degree = o.degree(), hosts = o.known_hosts().len(), nb = ?o.neighbours().iter().map(|p| p.udp).collect::<Vec<_>>(), "low degree");
                    }
                }
            }
            for q in &self.queries {
                if q.class != Class::Unanswerable && q.first_hit.is_none() {
                    let (slot, gen) = q.querier.unwrap_or((0, 0));
                    let deg = self.nodes[slot].overlay.as_ref().map(|o| o.degree());
                    tracing::info!(
                        text = %q.text, search = q.search.map(|s| s.0).unwrap_or(0), class = ?q.class, msgs = q.msgs, slot, gen,
                        now_gen = self.nodes[slot].gen, ?deg,
                        holders = self.work.holders_of(&q.matches, slot),
                        ball = ?self.ball(slot),
                        dist = ?q.matches.iter().flat_map(|f| self.work.holder_slots(*f)).map(|h| self.dist(slot, *h as usize)).collect::<Vec<_>>(),
                        holder_slots = ?q.matches.iter().flat_map(|f| self.work.holder_slots(*f)).collect::<Vec<_>>(),
                        "failed query"
                    );
                }
            }
        }
        let figures = |pred: &dyn Fn(Class) -> bool| -> ClassFigures {
            let qs: Vec<&QRec> = self
                .queries
                .iter()
                .filter(|q| q.querier.is_some() && pred(q.class))
                .collect();
            let n = qs.len();
            let ok = qs.iter().filter(|q| q.first_hit.is_some()).count();
            let msgs: Vec<f64> = qs.iter().map(|q| q.msgs as f64).collect();
            let hops: Vec<f64> = qs
                .iter()
                .filter_map(|q| q.first_hit.map(|h| h.1 as f64))
                .collect();
            let times: Vec<f64> = qs
                .iter()
                .filter_map(|q| q.first_hit.map(|h| h.0 as f64 / MS as f64))
                .collect();
            ClassFigures {
                queries: n,
                success_rate: if n == 0 { 0.0 } else { ok as f64 / n as f64 },
                messages_median: quantile(&msgs, 0.5),
                messages_p95: quantile(&msgs, 0.95),
                hops_to_first_hit_median: quantile(&hops, 0.5),
                time_to_first_hit_ms_median: quantile(&times, 0.5),
            }
        };
        let all = figures(&|c| c != Class::Unanswerable);
        let popular = figures(&|c| c == Class::Popular);
        let unique = figures(&|c| c == Class::Unique);
        let window = (self.end() - self.warmup().min(self.end())) as f64 / SEC as f64;
        let online = self
            .nodes
            .iter()
            .filter(|n| n.overlay.is_some())
            .count()
            .max(1);
        let degrees: Vec<usize> = self
            .nodes
            .iter()
            .filter_map(|n| n.overlay.as_ref())
            .map(|o| match o.mode() {
                Mode::Scalable => o.degree(),
                Mode::Classic => o.peers().len(),
            })
            .collect();
        Summary {
            nodes: self.cfg.nodes,
            mode: match self.cfg.mode {
                Mode::Classic => "classic".into(),
                Mode::Scalable => "scalable".into(),
            },
            seed: self.cfg.seed,
            minutes: self.cfg.duration.as_secs_f64() / 60.0,
            measured_minutes: window / 60.0,
            churn_median_secs: self.cfg.churn_median.map(|d| d.as_secs_f64()),
            loss: self.cfg.loss,
            queries: self.queries.len(),
            answerable_queries: all.queries,
            success_rate: all.success_rate,
            all,
            popular,
            unique,
            popular_threshold: self.popular_threshold(),
            maintenance_msgs_per_peer_per_sec: if window > 0.0 {
                self.maintenance as f64 / online as f64 / window
            } else {
                0.0
            },
            datagrams: self.datagrams,
            max_datagram_bytes: self.max_datagram,
            degree_min: degrees.iter().copied().min().unwrap_or(0),
            degree_mean: if degrees.is_empty() {
                0.0
            } else {
                degrees.iter().sum::<usize>() as f64 / degrees.len() as f64
            },
            degree_max: degrees.iter().copied().max().unwrap_or(0),
            departures: self.departures,
            events: self.events,
        }
    }
}

fn hops_of(extra: &serde_json::Map<String, serde_json::Value>) -> u64 {
    extra.get("Hops").and_then(|v| v.as_u64()).unwrap_or(1)
}

/// Standard normal draw (Box-Muller).
fn normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.gen_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// The `q` quantile (nearest rank) of `v`; 0 when empty.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}
