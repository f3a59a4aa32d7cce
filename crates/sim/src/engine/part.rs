//! One partition of the peers: its slots, its queue of events, and what it
//! hands to the others at the end of a window (datagrams for their peers,
//! counts for the searches). A partition reads the rest of the simulation
//! only through [`Shared`], which does not change during a window.

use super::{addr_of, lie_about_degree, node_config, slot_of, Ev, Node, Payload, Role};
use crate::config::SimConfig;
use crate::queue::EventQueue;
use crate::records::{hops_of, DiagEv, QRec};
use crate::workload::Workload;
use rand::Rng;
use rutella_proto::{Event, HitFile, IncomingQuery, Message, Overlay, SearchId, MAX_DATAGRAM};
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the others know of a slot: its state at the start of the window.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Snap {
    pub(crate) gen: u32,
    pub(crate) online: bool,
    /// Online with at least one peer (a peer to join through).
    pub(crate) connected: bool,
}

/// The simulation as the partitions see it during a window (read only).
pub(crate) struct Shared<'a> {
    pub(crate) cfg: &'a SimConfig,
    pub(crate) base: Instant,
    pub(crate) work: &'a Workload,
    pub(crate) roles: &'a [Role],
    /// What each slot could offer as an ultrapeer.
    pub(crate) caps: &'a [crate::capability::Capability],
    pub(crate) access: &'a [f64],
    pub(crate) text_matches: &'a HashMap<String, Arc<Vec<u32>>>,
    pub(crate) by_id: &'a HashMap<u64, usize>,
    pub(crate) queries: &'a [QRec],
    pub(crate) snap: &'a [Snap],
    pub(crate) trace: Option<Ipv4Addr>,
    /// Partitions (slot `s` is in partition `s % parts`).
    pub(crate) parts: usize,
    pub(crate) end: u64,
    pub(crate) warmup: u64,
}

/// Counters summed over the partitions at the end.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) datagrams: u64,
    pub(crate) maintenance: u64,
    pub(crate) max_datagram: usize,
    pub(crate) departures: u64,
    pub(crate) events: u64,
    pub(crate) false_hits: u64,
    pub(crate) flood_searches: u64,
    pub(crate) attach: Attach,
}

/// How fast leaves find ultrapeers, summed over the partitions.
#[derive(Debug, Default, Clone)]
pub(crate) struct Attach {
    /// Time from its start to its first link of its tier (ns), for each
    /// peer started in the measured window that got one.
    pub(crate) times: Vec<u64>,
    /// Peers started in the measured window that left without ever
    /// having a link of their tier.
    pub(crate) never: u64,
    /// Searches issued by leaves, by the leaf's ultrapeers at that
    /// instant: 0, 1, 2, 3 or more.
    pub(crate) leaf_searches: [u64; 4],
    /// Searches issued by ultrapeers.
    pub(crate) ultrapeer_searches: u64,
    /// Tier changes of the peers that left.
    pub(crate) tier_changes: u64,
}

impl Attach {
    pub(crate) fn merge(&mut self, o: &Attach) {
        self.times.extend_from_slice(&o.times);
        self.never += o.never;
        for (a, b) in self.leaf_searches.iter_mut().zip(o.leaf_searches) {
            *a += b;
        }
        self.ultrapeer_searches += o.ultrapeer_searches;
        self.tier_changes += o.tier_changes;
    }
}

/// A datagram or event for another partition: (time, key, event).
type Out = (u64, u64, Ev);

/// The slots `index`, `index + k`, `index + 2k`... of `k` partitions, and
/// their events.
pub(crate) struct Part<'a> {
    index: usize,
    k: usize,
    /// Slot `s` at `s / k`.
    nodes: Vec<&'a mut Node>,
    pub(crate) queue: EventQueue<Ev>,
    now: u64,
    /// Events for the peers of each partition, handed over at the window's end.
    pub(crate) out: Vec<Vec<Out>>,
    pub(crate) stats: Stats,
    /// Searches issued in this window, by id.
    pub(crate) local_ids: HashMap<u64, usize>,
    /// The id of each search issued in this window.
    pub(crate) search_ids: Vec<(usize, SearchId)>,
    /// One entry per datagram of a search.
    pub(crate) msgs: Vec<usize>,
    /// First hits: (search, time since it started, hops).
    pub(crate) first_hits: Vec<(usize, u64, u64)>,
    /// Searches of this partition's peers that already had a first hit.
    hit: HashSet<usize>,
    touched: Vec<usize>,
    /// The new state of the slots that had events in the window.
    pub(crate) snap_updates: Vec<(usize, Snap)>,
    /// Hops of the hit being delivered, for the first-hit figure.
    delivering_hops: u64,
    /// What happened to the searches under diagnosis in this window.
    pub(crate) diag: Vec<(usize, DiagEv)>,
}

impl<'a> Part<'a> {
    pub(crate) fn new(index: usize, nodes: Vec<&'a mut Node>, parts: usize) -> Self {
        Part {
            index,
            k: parts.max(1),
            nodes,
            queue: EventQueue::new(),
            now: 0,
            out: (0..parts).map(|_| Vec::new()).collect(),
            stats: Stats::default(),
            local_ids: HashMap::new(),
            search_ids: Vec::new(),
            msgs: Vec::new(),
            first_hits: Vec::new(),
            hit: HashSet::new(),
            touched: Vec::new(),
            snap_updates: Vec::new(),
            delivering_hops: 1,
            diag: Vec::new(),
        }
    }

    /// The slot's node, if it is in this partition.
    pub(crate) fn node_ref(&self, slot: usize) -> Option<&Node> {
        if slot % self.k != self.index {
            return None;
        }
        self.nodes.get(slot / self.k).map(|n| &**n)
    }

    fn node(&mut self, slot: usize) -> &mut Node {
        &mut *self.nodes[slot / self.k]
    }

    fn instant(&self, sh: &Shared, t: u64) -> Instant {
        sh.base + Duration::from_nanos(t)
    }

    /// Queues `ev` from `src` (a slot of this partition) at `t`.
    fn push(&mut self, sh: &Shared, src: usize, t: u64, ev: Ev) {
        let key = self.node(src).next_key(src);
        let p = ev.slot() % sh.parts;
        if p == self.index {
            self.queue.push(t, key, ev);
        } else if let Some(out) = self.out.get_mut(p) {
            out.push((t, key, ev));
        }
    }

    /// Plays the events before `stop`, then notes the new state of the
    /// slots that had any.
    pub(crate) fn run(&mut self, sh: &Shared, stop: u64) {
        while self.queue.peek_t().is_some_and(|t| t < stop) {
            let Some(e) = self.queue.pop() else { break };
            self.now = e.t;
            self.stats.events += 1;
            let slot = e.ev.slot();
            let node = self.node(slot);
            if !node.touched {
                node.touched = true;
                self.touched.push(slot);
            }
            match e.ev {
                Ev::Start { slot } => self.start(sh, slot),
                Ev::Leave { slot, gen } => {
                    let warmup = sh.warmup;
                    let node = self.node(slot);
                    if node.gen == gen {
                        let changes = node.overlay.as_ref().map_or(0, |o| o.tier_changes());
                        let never = !node.attached && node.joined >= warmup;
                        self.stats.attach.tier_changes += u64::from(changes);
                        self.stats.attach.never += u64::from(never);
                        let node = self.node(slot);
                        node.overlay = None;
                        node.gen += 1;
                        self.stats.departures += 1;
                        // A newcomer takes its place (same library).
                        self.start(sh, slot);
                    }
                }
                Ev::Timer { slot, gen } => {
                    let now = self.instant(sh, e.t);
                    let node = self.node(slot);
                    if node.gen != gen || node.timer_at != Some(e.t) {
                        continue;
                    }
                    node.timer_at = None;
                    if let Some(o) = &mut node.overlay {
                        o.handle_timeout(now);
                    }
                    self.drain(sh, slot);
                }
                Ev::Deliver {
                    to,
                    dest,
                    from,
                    payload,
                } => self.deliver(sh, to, dest, from, payload),
                Ev::Issue { qi, slot, gen } => self.issue(sh, qi, slot, gen),
                Ev::Flood { slot } => self.flood(sh, slot),
            }
        }
        for slot in std::mem::take(&mut self.touched) {
            let node = self.node(slot);
            node.touched = false;
            let s = Snap {
                gen: node.gen,
                online: node.overlay.is_some(),
                connected: node
                    .overlay
                    .as_ref()
                    .is_some_and(|o| o.answered_peers() > 0),
            };
            self.snap_updates.push((slot, s));
        }
    }

    fn start(&mut self, sh: &Shared, slot: usize) {
        let now = self.instant(sh, self.now);
        let t_now = self.now;
        let n = sh.snap.len();
        let node = self.node(slot);
        let gen = node.gen;
        let addr = addr_of(slot, gen);
        let mut o = Overlay::new(node_config(sh.cfg, slot, gen), now);
        o.add_own_ip(addr.ip());
        if let Some(cap) = sh.caps.get(slot) {
            o.set_capability(cap.reachable, cap.bandwidth);
        }
        o.set_library(sh.work.library(slot).iter().map(|&f| sh.work.name(f)));
        // Join through peers online and connected at the start of the
        // window: one at the first start (as a user types one address),
        // three from a saved host list later.
        let wanted = if gen == 0 { 1 } else { 3 };
        let mut online = Vec::new();
        for _ in 0..64 {
            if online.len() >= wanted {
                break;
            }
            let other = node.rng.gen_range(0..n);
            if other != slot && sh.snap[other].connected {
                online.push(other);
            }
        }
        if online.is_empty() && slot != 0 {
            // The peer of last resort (online from the first instant).
            online.push(0);
        }
        for other in online {
            if other == slot {
                continue;
            }
            let a = addr_of(other, sh.snap[other].gen);
            o.connect(now, a, a.port().wrapping_add(1));
        }
        node.addr = addr;
        node.overlay = Some(o);
        node.joined = t_now;
        node.attached = false;
        node.timer_at = None;
        let life = session(sh.cfg, &mut node.rng);
        if life != u64::MAX {
            let t = t_now.saturating_add(life);
            self.push(sh, slot, t, Ev::Leave { slot, gen });
        }
        self.drain(sh, slot);
    }

    fn deliver(
        &mut self,
        sh: &Shared,
        to: usize,
        dest: SocketAddr,
        from: SocketAddr,
        payload: Payload,
    ) {
        let now = self.instant(sh, self.now);
        let measured = self.now >= sh.warmup;
        if let Some(ev) = self.diag_delivery(sh, to, dest, from, &payload) {
            self.diag.push(ev);
        }
        let node = self.node(to);
        if node.addr != dest {
            return;
        }
        let Some(o) = &mut node.overlay else { return };
        if measured {
            node.load = node.load.saturating_add(1);
            let hit = match &payload {
                Payload::Msg(m) => matches!(**m, Message::QueryHit(_)),
                Payload::Bytes(b) => matches!(Message::parse(b), Ok(Message::QueryHit(_))),
            };
            if hit {
                node.load_hits = node.load_hits.saturating_add(1);
            }
        }
        if sh.roles.get(to) == Some(&Role::Drop) {
            let query = match &payload {
                Payload::Msg(m) => matches!(**m, Message::Query(_)),
                Payload::Bytes(b) => matches!(Message::parse(b), Ok(Message::Query(_))),
            };
            if query {
                return;
            }
        }
        let mut hops = 1;
        match payload {
            Payload::Msg(m) => {
                if let Message::QueryHit(h) = &*m {
                    hops = hops_of(&h.extra);
                }
                o.handle_message(now, from, *m);
            }
            Payload::Bytes(b) => {
                if let Ok(Message::QueryHit(h)) = Message::parse(&b) {
                    hops = hops_of(&h.extra);
                }
                o.handle_datagram(now, from, &b);
            }
        }
        self.delivering_hops = hops;
        self.drain(sh, to);
        self.delivering_hops = 1;
    }

    fn search_of(&self, sh: &Shared, id: u64) -> Option<usize> {
        self.local_ids
            .get(&id)
            .or_else(|| sh.by_id.get(&id))
            .copied()
    }

    /// What delivering `payload` to `to` means for a search under
    /// diagnosis (before the peer sees it).
    fn diag_delivery(
        &self,
        sh: &Shared,
        to: usize,
        dest: SocketAddr,
        from: SocketAddr,
        payload: &Payload,
    ) -> Option<(usize, DiagEv)> {
        let (id, query, holder) = search_msg(payload, from)?;
        let qi = self.search_of(sh, id)?;
        let q = &sh.queries[qi];
        q.diag.as_ref()?;
        let node = self.node_ref(to)?;
        let o = node.overlay.as_ref().filter(|_| node.addr == dest)?;
        if query {
            if sh.roles.get(to) == Some(&Role::Drop) {
                return None;
            }
            let ultrapeer = o.is_ultrapeer() == Some(true);
            Some((
                qi,
                DiagEv::Reached {
                    slot: to,
                    ultrapeer,
                },
            ))
        } else if let Some(holder) = holder.filter(|_| q.querier == Some((to, node.gen))) {
            let truthful = slot_of(&holder)
                .and_then(|s| sh.roles.get(s))
                .is_none_or(|r| r.answers_truly());
            Some((
                qi,
                if truthful {
                    DiagEv::HitArrived {
                        after: self.now.saturating_sub(q.t0),
                    }
                } else {
                    DiagEv::FalseHitArrived
                },
            ))
        } else {
            None
        }
    }

    /// The search under diagnosis a datagram sent by `src` belongs to,
    /// and whether it is a query (otherwise an answer with the holder's
    /// files); `None` for others (answers of other peers among them).
    fn diag_of(&self, sh: &Shared, src: SocketAddr, m: &Message) -> Option<(usize, bool)> {
        let (id, query, holder) = search_msg_of(m, src)?;
        if !query && holder.is_none() {
            return None;
        }
        let qi = self.search_of(sh, id)?;
        let d = sh.queries[qi].diag.as_ref()?;
        if holder.is_some_and(|h| slot_of(&h) != Some(d.holder)) {
            return None;
        }
        Some((qi, query))
    }

    fn count_query_msg(&mut self, sh: &Shared, id: Option<u64>) {
        if let Some(qi) = id.and_then(|id| self.search_of(sh, id)) {
            self.msgs.push(qi);
        }
    }

    /// Takes everything an overlay has to say after an input.
    fn drain(&mut self, sh: &Shared, slot: usize) {
        let i = slot / self.k;
        let gen = self.nodes[i].gen;
        let src = self.nodes[i].addr;
        loop {
            let Some(o) = &mut self.nodes[i].overlay else {
                return;
            };
            let Some(ev) = o.poll_event() else { break };
            match ev {
                Event::Query(q) => self.answer(sh, slot, &q),
                Event::SearchResult {
                    search,
                    files,
                    peer,
                    ..
                } => {
                    if files.is_empty() {
                        continue;
                    }
                    if let Some(qi) = self.search_of(sh, search.0) {
                        let truthful = slot_of(&peer.udp)
                            .and_then(|s| sh.roles.get(s))
                            .is_none_or(|r| r.answers_truly());
                        let q = &sh.queries[qi];
                        if q.querier != Some((slot, gen)) {
                            continue;
                        }
                        if !truthful {
                            self.stats.false_hits += 1;
                            continue;
                        }
                        if q.first_hit.is_none() && self.hit.insert(qi) {
                            self.first_hits
                                .push((qi, self.now - q.t0, self.delivering_hops));
                        }
                    }
                }
                _ => {}
            }
        }
        loop {
            let Some(o) = &mut self.nodes[i].overlay else {
                return;
            };
            let Some(t) = o.poll_transmit() else { break };
            self.stats.datagrams += 1;
            let measured = self.now >= sh.warmup;
            match &t.message {
                Message::Ping(_) | Message::Pong(_) => {
                    if measured {
                        self.stats.maintenance += 1;
                    }
                }
                Message::Query(q) => self.count_query_msg(sh, q.id),
                Message::QueryHit(h) => self.count_query_msg(sh, h.id),
                Message::Push(_) | Message::Punch(_) | Message::Relay(_) => {}
            }
            let diag = self.diag_of(sh, src, &t.message);
            let mut t = t;
            if sh.roles[slot] == Role::Liar {
                lie_about_degree(&mut t.message);
            }
            let payload = if sh.cfg.wire {
                let bytes = t.encode(src.ip());
                self.stats.max_datagram = self.stats.max_datagram.max(bytes.len());
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
            if let Some((qi, query)) = diag {
                if !query
                    && slot
                        == sh.queries[qi]
                            .diag
                            .as_ref()
                            .map_or(usize::MAX, |d| d.holder)
                {
                    self.diag.push((qi, DiagEv::HolderAnswered));
                }
            }
            let node = &mut self.nodes[i];
            if node.rng.gen_bool(sh.cfg.loss.clamp(0.0, 1.0)) {
                if let Some((qi, query)) = diag {
                    let ev = match slot_of(&t.dest) {
                        Some(s) if query => DiagEv::LostQuery { slot: s },
                        _ => DiagEv::LostHit,
                    };
                    self.diag.push((qi, ev));
                }
                continue;
            }
            if let Some(w) = &sh.trace {
                if *w == src.ip() || *w == t.dest.ip() {
                    tracing::info!(t = self.now, %src, dest = %t.dest, msg = ?payload, "send");
                }
            }
            let Some(to) = slot_of(&t.dest).filter(|&s| s < sh.access.len()) else {
                continue;
            };
            let base = sh.access[slot] + sh.access[to];
            let jitter: f64 = node.rng.gen_range(0.0..0.2);
            let delay = (base * (1.0 + jitter)) as u64 + 1;
            self.push(
                sh,
                slot,
                self.now + delay,
                Ev::Deliver {
                    to,
                    dest: t.dest,
                    from: src,
                    payload,
                },
            );
        }
        let base = sh.base;
        let now = self.now;
        let node = &mut self.nodes[i];
        let Some(o) = &node.overlay else {
            return;
        };
        if !node.attached && o.degree() > 0 {
            node.attached = true;
            if node.joined >= sh.warmup {
                self.stats.attach.times.push(now - node.joined);
            }
        }
        if let Some(t) = o.poll_timeout() {
            let t = t.saturating_duration_since(base).as_nanos() as u64;
            let t = t.max(now);
            if node.timer_at.is_none_or(|cur| t < cur) {
                node.timer_at = Some(t);
                self.push(sh, slot, t, Ev::Timer { slot, gen });
            }
        }
    }

    /// The peer of `slot` starts search `qi` (if it is still the one the
    /// search was given to).
    fn issue(&mut self, sh: &Shared, qi: usize, slot: usize, gen: u32) {
        let now = self.instant(sh, self.now);
        let node = self.node(slot);
        if node.gen != gen {
            return;
        }
        let Some(o) = &mut node.overlay else {
            return;
        };
        let Some(q) = sh.queries.get(qi) else { return };
        let tier = (o.is_ultrapeer(), o.degree().min(3));
        let id = o.search(now, &q.text);
        match tier {
            (Some(true), _) => self.stats.attach.ultrapeer_searches += 1,
            (Some(false), d) => self.stats.attach.leaf_searches[d] += 1,
            (None, _) => {}
        }
        self.search_ids.push((qi, id));
        self.local_ids.insert(id.0, qi);
        self.drain(sh, slot);
    }

    /// A flooding peer starts a search for a random catalogue text, and
    /// will start another one after the flood interval.
    fn flood(&mut self, sh: &Shared, slot: usize) {
        let every = sh.cfg.hostile.flood_interval.as_nanos().max(1) as u64;
        let next = self.now + every.max(super::SEC / 1000);
        if next < sh.end {
            self.push(sh, slot, next, Ev::Flood { slot });
        }
        let now = self.instant(sh, self.now);
        let node = self.node(slot);
        let Some(o) = &mut node.overlay else {
            return;
        };
        let target = sh.work.pick_target(&mut node.rng);
        let text = sh.work.query_text(target, &mut node.rng);
        o.search(now, &text);
        self.stats.flood_searches += 1;
        self.drain(sh, slot);
    }

    fn answer(&mut self, sh: &Shared, slot: usize, q: &IncomingQuery) {
        if sh.roles[slot] == Role::FalseHits {
            // A file that does not exist, named to match the query.
            let fake = HitFile::named(format!("{} (complete).exe", q.text));
            if let Some(o) = &mut self.node(slot).overlay {
                o.answer_query(q, &[fake]);
            }
            return;
        }
        let lib = sh.work.library(slot);
        let files: Vec<HitFile> = match sh.text_matches.get(&q.text) {
            Some(m) => m
                .iter()
                .filter(|f| lib.binary_search(f).is_ok())
                .map(|&f| HitFile::named(sh.work.name(f)))
                .collect(),
            None => lib
                .iter()
                .filter(|&&f| rutella_proto::name_matches(&q.text, sh.work.name(f)))
                .map(|&f| HitFile::named(sh.work.name(f)))
                .collect(),
        };
        if let Some(o) = &mut self.node(slot).overlay {
            o.answer_query(q, &files);
        }
    }
}

/// A session length in ns: exponential with the configured median, or
/// endless without churn.
fn session(cfg: &SimConfig, rng: &mut impl Rng) -> u64 {
    match cfg.churn_median {
        None => u64::MAX,
        Some(m) => {
            let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
            let mean = m.as_nanos() as f64 / std::f64::consts::LN_2;
            (-u.ln() * mean) as u64
        }
    }
}

/// The search id of a query or answer, whether it is a query, and for an
/// answer with files the address of the peer that holds them (the sender,
/// or for an answer passed back, the address its first hop saw).
fn search_msg(p: &Payload, from: SocketAddr) -> Option<(u64, bool, Option<SocketAddr>)> {
    match p {
        Payload::Msg(m) => search_msg_of(m, from),
        Payload::Bytes(b) => search_msg_of(&Message::parse(b).ok()?, from),
    }
}

/// [`search_msg`] of a message.
fn search_msg_of(m: &Message, from: SocketAddr) -> Option<(u64, bool, Option<SocketAddr>)> {
    match m {
        Message::Query(q) => Some((q.id?, true, None)),
        Message::QueryHit(h) => {
            let via = h.extra.get("Via").and_then(|v| v.as_bool()) == Some(true);
            let holder = if via {
                SocketAddr::new(h.ip, h.ports.udp_or_classic())
            } else {
                from
            };
            Some((h.id?, false, (!h.files.is_empty()).then_some(holder)))
        }
        _ => None,
    }
}
