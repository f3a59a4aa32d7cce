//! Queries and answers: queries passed on between neighbours with
//! duplicate suppression, answers passed back the way their query came,
//! and our own searches, grown step by step as [`super::plan`] decides.

use super::guard;
use super::plan::{first_step_with_leaves, may_grow, next_step, Candidate, Progress};
use super::{
    base_extra, get_bool, get_i64, Ctx, QueryTrigrams, Scalable, FAR_ANSWER_COPIES,
    FAR_ANSWER_HOPS, LATE_ANSWER_STEPS, MAX_ACCEPTED_TTL,
};
use crate::message::{Message, Ports, Query, QueryHit, MAX_DATAGRAM};
use crate::types::{Event, IncomingQuery, Peer, SearchId, Transmit};
use rand::Rng;
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

/// The query a leaf is sent: the same, with TTL -1 (answer only).
fn leaf_query(m: &Message) -> Message {
    let mut m = m.clone();
    if let Message::Query(q) = &mut m {
        q.extra.insert("TTL".into(), Value::from(-1));
    }
    m
}

// `Seen::max_ttl` holds a TTL.
const _: () = assert!(MAX_ACCEPTED_TTL <= i8::MAX as i64);

/// What a node remembers of a query it has seen (40 bytes: a node keeps
/// up to [`ScalableConfig::seen_queries`] of them).
///
/// [`ScalableConfig::seen_queries`]: super::ScalableConfig::seen_queries
#[derive(Debug, Clone, Copy)]
pub(super) struct Seen {
    /// Highest TTL handled: -2 none yet, -1 answered only (a query's TTL
    /// is taken within -1..=[`MAX_ACCEPTED_TTL`]).
    max_ttl: i8,
    /// Its `"Hops"` (taken within 0..=255).
    hops: u8,
    /// The driver has not answered yet.
    awaiting_answer: bool,
    /// The neighbour it came from: answers go back there.
    prev: SocketAddr,
    /// Answers of others passed back for it so far.
    hits_forwarded: u32,
    /// Our leaves whose filters match were asked.
    leaves_asked: bool,
}

/// The scalable part of one of our searches (dynamic querying).
#[derive(Debug)]
pub(super) struct Dq {
    text: String,
    /// No more steps: enough answers, nothing left to grow, or over budget.
    pub(super) done: bool,
    pub(super) next_step: Instant,
    /// Peers that answered with at least one file.
    responders: BTreeSet<SocketAddr>,
    /// TTLs sent so far and the estimates of the planner.
    pub(super) progress: Progress,
    /// Run for this leaf of ours: answers go back to it.
    pub(super) for_leaf: Option<SocketAddr>,
    /// Ours, as a leaf: run by our ultrapeers, asked one after the other.
    leaf_run: bool,
    /// Run for a leaf: the estimated messages granted from its bucket
    /// (see `guard.rs`), its budget in place of the configured one.
    budget: Option<f64>,
    /// When it started: a search that could ask nobody yet (no link) waits
    /// for one until [`ScalableConfig::max_search_time`] after this.
    ///
    /// [`ScalableConfig::max_search_time`]: super::ScalableConfig::max_search_time
    started: Instant,
    /// It stopped growing and waits for the answers still on their way.
    pub(super) lingering: bool,
    /// Ours, as a leaf: the ultrapeers asked, in order, when, and what
    /// each said of the search (see [`LeafRun`]).
    runs: Vec<LeafRun>,
}

/// An ultrapeer a leaf's search asked. An ultrapeer that takes a leaf's
/// search says so at once (an empty answer with `"Running": true`) and
/// again when the search stops growing (`"Running": false`). The leaf
/// asks its next ultrapeer when the one asked last has not said it runs
/// the search within [`ScalableConfig::leaf_ack_wait`], or said its
/// search stopped, or ran it for [`ScalableConfig::leaf_retry_wait`],
/// while nothing came back; it ends the search once no ultrapeer that
/// runs it is still growing it (each given at most
/// [`ScalableConfig::leaf_search_wait`]).
///
/// [`ScalableConfig::leaf_ack_wait`]: super::ScalableConfig::leaf_ack_wait
/// [`ScalableConfig::leaf_retry_wait`]: super::ScalableConfig::leaf_retry_wait
/// [`ScalableConfig::leaf_search_wait`]: super::ScalableConfig::leaf_search_wait
#[derive(Debug, Clone, Copy)]
struct LeafRun {
    up: SocketAddr,
    asked: Instant,
    running: bool,
    over: bool,
}

/// The field of the empty answer by which an ultrapeer tells its leaf that
/// it runs the leaf's search (`true`) or that the search stopped growing
/// (`false`).
const RUNNING: &str = "Running";

/// Whether an answer comes from beyond the searcher's own leaves (its
/// `"Hops"`, the hops its query made, at least [`FAR_ANSWER_HOPS`]): the
/// search had to widen, so the file is rare and this answer may be its
/// only one. Such answers are passed back [`FAR_ANSWER_COPIES`] times on
/// every hop (each receiver passes one copy on).
fn far(hit: &QueryHit) -> bool {
    get_i64(&hit.extra, "Hops").unwrap_or(1) >= FAR_ANSWER_HOPS
}

impl Scalable {
    fn remember(&mut self, id: u64, prev: SocketAddr) -> Seen {
        let cap = self.cfg.seen_queries.max(1);
        let fresh = Seen {
            max_ttl: -2,
            hops: 0,
            awaiting_answer: false,
            prev,
            hits_forwarded: 0,
            leaves_asked: false,
        };
        if let Some(s) = self.seen.get(&id) {
            return *s;
        }
        while self.seen.len() >= cap {
            match self.seen_order.pop_front() {
                Some(old) => {
                    self.seen.remove(&old);
                }
                None => break,
            }
        }
        self.seen.insert(id, fresh);
        self.seen_order.push_back(id);
        fresh
    }

    /// Whether neighbour `from` may start one more search now (a token
    /// bucket: [`ScalableConfig::neighbour_search_burst`] searches, one
    /// more per [`ScalableConfig::neighbour_search_interval`]). One whose
    /// searches were dropped [`ScalableConfig::flooder_drops`] times since
    /// its allowance was last full is dropped.
    ///
    /// [`ScalableConfig::flooder_drops`]: super::ScalableConfig::flooder_drops
    ///
    /// [`ScalableConfig::neighbour_search_burst`]: super::ScalableConfig::neighbour_search_burst
    /// [`ScalableConfig::neighbour_search_interval`]: super::ScalableConfig::neighbour_search_interval
    fn allow_search(&mut self, cx: &mut Ctx<'_>, now: Instant, from: SocketAddr) -> bool {
        let burst = f64::from(self.cfg.neighbour_search_burst);
        let every = self.cfg.neighbour_search_interval.as_secs_f64();
        let limit = self.cfg.flooder_drops;
        let Some(n) = self.neighbours.get_mut(&from) else {
            return false;
        };
        let elapsed = now.saturating_duration_since(n.allowance_at).as_secs_f64();
        n.allowance_at = now;
        n.search_allowance = if every > 0.0 {
            (n.search_allowance + elapsed / every).min(burst)
        } else {
            burst
        };
        if n.search_allowance >= burst {
            // Quiet long enough to be back at a full allowance: earlier
            // excesses are forgiven.
            n.searches_dropped = 0;
        }
        if n.search_allowance >= 1.0 {
            n.search_allowance -= 1.0;
            return true;
        }
        n.searches_dropped += 1;
        tracing::debug!(peer = %from, "search over the neighbour's allowance, dropped");
        if n.searches_dropped >= limit {
            self.drop_flooder(cx, now, from);
        }
        false
    }

    pub(super) fn on_query(&mut self, cx: &mut Ctx<'_>, now: Instant, from: SocketAddr, q: Query) {
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
        let from_leaf = self.is_leaf(&from);
        if !from_leaf {
            self.heard_neighbour(now, from, get_i64(&q.extra, "Degree"));
        } else {
            self.heard_neighbour(now, from, None);
        }
        let hops = get_i64(&q.extra, "Hops").unwrap_or(1).clamp(0, 255) as u64;
        if (hops <= 1 || from_leaf)
            && !self.seen.contains_key(&id)
            && !self.allow_search(cx, now, from)
        {
            return;
        }
        if from_leaf {
            // A leaf's search: we run it for the leaf.
            self.run_for_leaf(cx, now, from, id, q);
            return;
        }
        let ttl = get_i64(&q.extra, "TTL")
            .unwrap_or(0)
            .clamp(-1, MAX_ACCEPTED_TTL);
        if hops <= 1 && ttl > self.seen.get(&id).map_or(-2, |s| i64::from(s.max_ttl)) {
            // The first hop of a neighbour's own search: paid from its
            // bucket, whenever it asks us deeper.
            let cost = guard::query_cost(ttl, self.degree());
            let cfg = &self.cfg;
            let paid = self
                .neighbours
                .get_mut(&from)
                .is_some_and(|n| n.guard.charge(cfg, now, cost));
            if !paid {
                tracing::debug!(peer = %from, ttl, "query over the neighbour's message budget, dropped");
                return;
            }
        }
        // Duplicates are known by the query id alone, whoever claims to
        // have sent it.
        let mut seen = self.remember(id, from);
        let first = seen.max_ttl == -2;
        let prev = i64::from(seen.max_ttl);
        if first {
            seen.hops = hops as u8;
            seen.awaiting_answer = true;
        }
        seen.max_ttl = seen.max_ttl.max(ttl as i8);
        if let Some(s) = self.seen.get_mut(&id) {
            *s = seen;
        }
        if first {
            cx.sh.push_event(Event::Query(IncomingQuery {
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
        if ttl <= prev || ttl < 0 || !self.ultrapeer {
            // (A leaf passes nothing on.)
            return;
        }
        let all = QueryTrigrams::new(&q.text);
        let trigrams = (ttl == 0).then_some(&all);
        let mut targets: Vec<(SocketAddr, bool)> = self
            .neighbours
            .iter()
            .filter(|(a, n)| !n.leaf && **a != from && **a != seen.prev)
            .filter(|(_, n)| match &trigrams {
                // TTL 0: only the neighbours whose filter may match.
                Some(t) => n.filter.as_ref().is_none_or(|f| f.may_match(t)),
                None => true,
            })
            .map(|(a, _)| (*a, false))
            .collect();
        if !seen.leaves_asked {
            // Our leaves whose filter may match, once per query.
            targets.extend(
                self.matching_leaves(&all, seen.prev)
                    .into_iter()
                    .map(|a| (a, true)),
            );
            if let Some(s) = self.seen.get_mut(&id) {
                s.leaves_asked = true;
            }
        }
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
        let mut to_leaf = None;
        for (dest, leaf) in targets {
            let message = if leaf {
                // A leaf only answers.
                to_leaf.get_or_insert_with(|| leaf_query(&message)).clone()
            } else {
                message.clone()
            };
            self.push_transmit(
                cx,
                Transmit {
                    dest,
                    message,
                    from_self: false,
                },
            );
        }
    }

    /// Our leaves whose filter may match (those without a filter yet are
    /// not asked), but `except`.
    fn matching_leaves(&self, t: &QueryTrigrams, except: SocketAddr) -> Vec<SocketAddr> {
        self.neighbours
            .iter()
            .filter(|(a, n)| {
                n.leaf && **a != except && n.filter.as_ref().is_some_and(|f| f.may_match(t))
            })
            .map(|(a, _)| *a)
            .collect()
    }

    /// Runs the search of our leaf `leaf`: we answer it, ask our other
    /// leaves whose filter matches, and grow it over the ultrapeers as one
    /// of ours; the answers go back to the leaf.
    fn run_for_leaf(
        &mut self,
        cx: &mut Ctx<'_>,
        now: Instant,
        leaf: SocketAddr,
        id: u64,
        q: Query,
    ) {
        if self.seen.contains_key(&id) {
            return;
        }
        let mut seen = self.remember(id, leaf);
        seen.max_ttl = 0;
        seen.hops = 1;
        seen.awaiting_answer = true;
        seen.leaves_asked = true;
        if let Some(s) = self.seen.get_mut(&id) {
            *s = seen;
        }
        cx.sh.push_event(Event::Query(IncomingQuery {
            reply_to: leaf,
            from: Peer {
                udp: leaf,
                tcp_port: q.ports.tcp_or_classic(),
                rutella: true,
            },
            text: q.text.clone(),
            id: Some(id),
        }));
        let cfg = &self.cfg;
        // In debt: no budget, so only our own leaves are asked (the search
        // stops growing at its first step, and the leaf may ask its next
        // ultrapeer then).
        let grant = self
            .neighbours
            .get_mut(&leaf)
            .map_or(0.0, |n| n.guard.grant(cfg, now));
        self.start_dq(cx, now, SearchId(id), q.text, Some(leaf));
        if let Some(dq) = self.searches.get_mut(&SearchId(id)) {
            dq.budget = Some(grant);
        }
        self.tell_leaf(cx, leaf, id, true);
    }

    /// Whether an answer `from` a neighbour, of its own (not passed back),
    /// may be true: its files fit the neighbour's filter. One that does
    /// not is a strike against the neighbour (see `guard.rs`).
    fn own_answer_fits(
        &mut self,
        cx: &mut Ctx<'_>,
        now: Instant,
        from: SocketAddr,
        files: &[crate::message::HitFile],
    ) -> bool {
        let filter = self.neighbours.get(&from).and_then(|n| n.filter.as_ref());
        if guard::answer_fits(filter, files) {
            return true;
        }
        let has_filter = filter.is_some();
        tracing::debug!(peer = %from, has_filter, "answer that does not fit the neighbour's filter, dropped");
        let cfg = &self.cfg;
        let out = has_filter
            && self
                .neighbours
                .get_mut(&from)
                .is_some_and(|n| n.guard.strike(cfg));
        if out {
            self.drop_flooder(cx, now, from);
        }
        false
    }

    /// The fields of the answer to a scalable query, which counts as
    /// answered from now on; `None` when the query is not one (or was
    /// answered already).
    pub(crate) fn answer_template(
        &mut self,
        ports: Ports,
        query: &IncomingQuery,
    ) -> Option<QueryHit> {
        let id = query.id?;
        let seen = self.seen.get_mut(&id)?;
        if !seen.awaiting_answer || seen.prev != query.reply_to {
            return None;
        }
        seen.awaiting_answer = false;
        let mut extra = base_extra();
        extra.insert("Hops".into(), Value::from(seen.hops));
        Some(QueryHit {
            ip: Ipv4Addr::UNSPECIFIED.into(),
            files: Vec::new(),
            id: Some(id),
            more: false,
            ports,
            extra,
        })
    }

    pub(super) fn on_hit(
        &mut self,
        cx: &mut Ctx<'_>,
        now: Instant,
        from: SocketAddr,
        hit: QueryHit,
    ) {
        let Some(id) = hit.id else { return };
        let search = SearchId(id);
        let via = get_bool(&hit.extra, "Via") == Some(true);
        if !via && !hit.files.is_empty() && !self.own_answer_fits(cx, now, from, &hit.files) {
            // Neither counted nor passed back.
            return;
        }
        if hit.files.is_empty() {
            if let Some(running) = get_bool(&hit.extra, RUNNING) {
                self.on_running(now, from, search, running);
                return;
            }
        }
        let from_leaf = self.is_leaf(&from);
        if let Some(dq) = self.searches.get_mut(&search) {
            // Ours: only from a neighbour the search was sent to, or from
            // one of our leaves (asked in the first step).
            if !dq.progress.depth.contains_key(&from) && !from_leaf {
                tracing::debug!(peer = %from, "dropping answer from a host the search did not reach");
                return;
            }
            if let Some(leaf) = dq.for_leaf.filter(|l| *l != from) {
                // Every answer a leaf's search brings us is paid by the leaf.
                self.debit_answer(now, leaf, &hit);
            }
            let Some(dq) = self.searches.get_mut(&search) else {
                return;
            };
            if dq.for_leaf == Some(from) || !self.fresh_hit(cx, from, &hit) {
                // (A copy of an answer already taken.)
                return;
            }
            let Some(dq) = self.searches.get_mut(&search) else {
                return;
            };
            if let Some(leaf) = dq.for_leaf {
                // A search we run for a leaf: its answers go to the leaf.
                if from == leaf {
                    return;
                }
                if !hit.files.is_empty() {
                    let holder = if via {
                        Peer::from_ports(hit.ip, hit.ports).udp
                    } else {
                        from
                    };
                    dq.responders.insert(holder);
                }
                if let Some(s) = self.seen.get_mut(&id) {
                    if s.hits_forwarded >= self.cfg.hits_forwarded_per_query {
                        return;
                    }
                    s.hits_forwarded += 1;
                }
                self.pass_back(cx, from, hit, leaf);
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
            if !hit.files.is_empty() {
                dq.responders.insert(peer.udp);
            }
            let push = crate::push::PushInfo::from_extra(&hit.extra);
            cx.sh.push_event(Event::SearchResult {
                search,
                peer,
                files: hit.files,
                push,
            });
            return;
        }
        // Someone else's: back along the way the query came, from a
        // neighbour only, a bounded number of datagrams per query.
        if !self.is_neighbour(&from) {
            return;
        }
        let cap = self.cfg.hits_forwarded_per_query;
        let Some(seen) = self.seen.get_mut(&id) else {
            tracing::debug!(peer = %from, "dropping answer to a query not seen");
            return;
        };
        if seen.prev == from {
            return;
        }
        let prev = seen.prev;
        let started_by_prev = seen.hops <= 1;
        let over_cap = seen.hits_forwarded >= cap;
        if started_by_prev {
            // An answer to a search `prev` started through us: paid by it.
            self.debit_answer(now, prev, &hit);
        }
        if over_cap {
            return;
        }
        if !self.fresh_hit(cx, from, &hit) {
            return;
        }
        if let Some(seen) = self.seen.get_mut(&id) {
            seen.hits_forwarded += 1;
        }
        self.pass_back(cx, from, hit, prev);
    }

    /// Charges an answer datagram received for a search that neighbour
    /// `who` started through us to its bucket (see `guard.rs`): as many
    /// messages as the hops its query made to the answering peer (the
    /// query's way there and the answer's way back cost about that much
    /// each).
    fn debit_answer(&mut self, now: Instant, who: SocketAddr, hit: &QueryHit) {
        let hops = get_i64(&hit.extra, "Hops")
            .unwrap_or(1)
            .clamp(1, MAX_ACCEPTED_TTL + 2);
        let cfg = &self.cfg;
        if let Some(n) = self.neighbours.get_mut(&who) {
            n.guard.debit(cfg, now, n.leaf, hops as f64);
        }
    }

    /// Passes an answer that came from `from` back to `prev`.
    fn pass_back(&mut self, cx: &mut Ctx<'_>, from: SocketAddr, hit: QueryHit, prev: SocketAddr) {
        let via = get_bool(&hit.extra, "Via") == Some(true);
        let copies = if far(&hit) { FAR_ANSWER_COPIES } else { 1 };
        let id = hit.id;
        let mut extra = base_extra();
        if let Some(h) = get_i64(&hit.extra, "Hops") {
            extra.insert("Hops".into(), Value::from(h.clamp(0, 255)));
        }
        extra.insert("Via".into(), Value::Bool(true));
        // How to reach the answering peer by push travels with its answer.
        crate::push::PushInfo::copy_fields(&hit.extra, &mut extra);
        let (ip, ports) = if via {
            (hit.ip, hit.ports)
        } else {
            (
                from.ip(),
                Ports {
                    udp: Some(from.port()),
                    tcp: hit.ports.tcp,
                },
            )
        };
        let fwd = QueryHit {
            ip,
            files: hit.files,
            id,
            more: hit.more,
            ports,
            extra,
        };
        let message = Message::QueryHit(fwd);
        if message.encode().len() > MAX_DATAGRAM {
            return;
        }
        for _ in 1..copies {
            self.push_transmit(
                cx,
                Transmit {
                    dest: prev,
                    message: message.clone(),
                    from_self: false,
                },
            );
        }
        self.push_transmit(
            cx,
            Transmit {
                dest: prev,
                message,
                from_self: false,
            },
        );
    }

    /// Sends a query of search `id` (ours, or one we run for a leaf: the
    /// answers come back to us either way).
    fn send_scalable_query(
        &mut self,
        cx: &mut Ctx<'_>,
        dest: SocketAddr,
        text: &str,
        id: SearchId,
        ttl: i64,
    ) {
        let mut extra = base_extra();
        extra.insert("TTL".into(), Value::from(ttl));
        extra.insert("Hops".into(), Value::from(1u64));
        extra.insert("Degree".into(), Value::from(self.degree() as u64));
        let message = Message::Query(Query {
            ip: Ipv4Addr::UNSPECIFIED.into(),
            text: text.to_string(),
            id: Some(id.0),
            ports: cx.sh.own_ports(),
            extra,
        });
        self.send_self(cx, dest, message);
    }

    /// Starts the scalable part of our search `id`. An ultrapeer asks
    /// every ultrapeer neighbour with TTL 0 and its leaves whose filter
    /// matches; a leaf asks one of its ultrapeers to run it.
    pub(crate) fn start_search(
        &mut self,
        cx: &mut Ctx<'_>,
        now: Instant,
        id: SearchId,
        text: String,
    ) {
        if self.ultrapeer {
            self.start_dq(cx, now, id, text, None);
            return;
        }
        let mut dq = Dq {
            text,
            done: false,
            next_step: now,
            responders: BTreeSet::new(),
            progress: Progress::default(),
            for_leaf: None,
            leaf_run: true,
            budget: None,
            started: now,
            lingering: false,
            runs: Vec::new(),
        };
        let sent = self.leaf_step(cx, now, &mut dq, id);
        // Without an ultrapeer yet, the search waits for one.
        dq.next_step = match dq.runs.last().filter(|_| sent) {
            Some(r) => self.turn_end(r),
            None => now + self.cfg.step_wait,
        };
        self.searches.insert(id, dq);
    }

    /// Our ultrapeers that search `dq` has not asked yet.
    fn not_asked(&self, dq: &Dq) -> Vec<SocketAddr> {
        self.neighbours
            .iter()
            .filter(|(a, n)| !n.leaf && !dq.progress.depth.contains_key(a))
            .map(|(a, _)| *a)
            .collect()
    }

    /// Asks one more of our ultrapeers (one not asked yet, at random) to
    /// run our search. Returns whether one was asked.
    fn leaf_step(&mut self, cx: &mut Ctx<'_>, now: Instant, dq: &mut Dq, id: SearchId) -> bool {
        let left = self.not_asked(dq);
        if left.is_empty() {
            return false;
        }
        let dest = left[cx.sh.rng.gen_range(0..left.len())];
        dq.runs.push(LeafRun {
            up: dest,
            asked: now,
            running: false,
            over: false,
        });
        dq.progress.depth.insert(dest, 0);
        dq.progress.est_cost += 1.0;
        let text = dq.text.clone();
        self.send_scalable_query(cx, dest, &text, id, 0);
        true
    }

    /// Starts growing search `id` over the ultrapeers, for us or for our
    /// leaf `for_leaf`.
    fn start_dq(
        &mut self,
        cx: &mut Ctx<'_>,
        now: Instant,
        id: SearchId,
        text: String,
        for_leaf: Option<SocketAddr>,
    ) {
        let neighbours: Vec<(SocketAddr, usize)> = self
            .neighbours
            .iter()
            .filter(|(_, n)| !n.leaf)
            .map(|(a, n)| (*a, n.degree))
            .collect();
        let mut step = first_step_with_leaves(&neighbours, self.n_leaves);
        for (dest, ttl) in &step.sends {
            self.send_scalable_query(cx, *dest, &text, id, *ttl);
        }
        // Our leaves whose filter may match only answer.
        let except = for_leaf.unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        let leaves = self.matching_leaves(&QueryTrigrams::new(&text), except);
        for dest in leaves {
            step.progress.est_cost += 1.0;
            self.send_scalable_query(cx, dest, &text, id, -1);
        }
        let dq = Dq {
            text,
            done: false,
            next_step: now + self.cfg.step_wait,
            responders: BTreeSet::new(),
            progress: step.progress,
            for_leaf,
            leaf_run: false,
            budget: None,
            started: now,
            lingering: false,
            runs: Vec::new(),
        };
        self.searches.insert(id, dq);
    }

    /// Whether a search that could ask nobody yet may still wait for a link.
    fn may_wait(&self, dq: &Dq, now: Instant) -> bool {
        now < dq.started + self.cfg.max_search_time
    }

    /// Whether `hit` (from `from`) was not seen before; remembers it. An
    /// answer is known by its search, its holder and its files, so that
    /// the copies of a far answer go on once.
    fn fresh_hit(&mut self, cx: &mut Ctx<'_>, from: SocketAddr, hit: &QueryHit) -> bool {
        use std::hash::{Hash, Hasher};
        let key = *self.hit_key.get_or_insert_with(|| cx.sh.rng.gen());
        let holder = if get_bool(&hit.extra, "Via") == Some(true) {
            Peer::from_ports(hit.ip, hit.ports).udp
        } else {
            from
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        hit.id.hash(&mut h);
        holder.hash(&mut h);
        hit.files.hash(&mut h);
        hit.more.hash(&mut h);
        let digest = h.finish();
        if !self.hits_seen.insert(digest) {
            return false;
        }
        self.hits_seen_order.push_back(digest);
        while self.hits_seen_order.len() > self.cfg.seen_queries.max(1) {
            if let Some(old) = self.hits_seen_order.pop_front() {
                self.hits_seen.remove(&old);
            }
        }
        true
    }

    /// Forgets our search `id` (it ended).
    pub(crate) fn forget_search(&mut self, id: SearchId) {
        self.searches.remove(&id);
    }

    /// Whether the scalable part of search `id` is over (or there is none).
    pub(crate) fn search_done(&self, id: SearchId) -> bool {
        self.searches.get(&id).is_none_or(|d| d.done)
    }

    /// A step of our search as a leaf: wait for the ultrapeer asked last,
    /// or ask the next one while nothing came back, then wait for those
    /// still growing it (see [`LeafRun`]). Returns whether it is over.
    fn leaf_search_step(
        &mut self,
        cx: &mut Ctx<'_>,
        now: Instant,
        id: SearchId,
        mut dq: Dq,
    ) -> bool {
        if let Some(r) = dq.runs.last().copied() {
            let turn = self.turn_end(&r);
            if now < turn {
                dq.next_step = turn;
                self.searches.insert(id, dq);
                return false;
            }
            if !r.running && !r.over && dq.responders.is_empty() {
                // It did not say it takes the search: perhaps it left.
                self.suspect(cx, now, r.up);
            }
        }
        let sent = dq.responders.is_empty() && self.leaf_step(cx, now, &mut dq, id);
        let waiting = !sent && dq.progress.depth.is_empty() && self.may_wait(&dq, now);
        // Those that may still be growing it, until when.
        let growing = dq
            .runs
            .iter()
            .filter(|r| !r.over)
            .map(|r| {
                r.asked
                    + if r.running {
                        self.cfg.leaf_search_wait
                    } else {
                        self.cfg.leaf_retry_wait
                    }
            })
            .filter(|t| *t > now)
            .min();
        dq.done = !sent && !waiting && growing.is_none();
        dq.next_step = if let Some(r) = dq.runs.last().filter(|_| sent) {
            self.turn_end(r)
        } else if waiting {
            now + self.cfg.step_wait
        } else {
            growing.unwrap_or(now + self.cfg.step_wait)
        };
        let done = dq.done;
        self.searches.insert(id, dq);
        done
    }

    /// When the turn of ultrapeer run `r` ends: the leaf asks its next
    /// ultrapeer then, if nothing came back.
    fn turn_end(&self, r: &LeafRun) -> Instant {
        if r.over {
            r.asked
        } else if r.running {
            r.asked + self.cfg.leaf_retry_wait
        } else {
            r.asked + self.cfg.leaf_ack_wait.min(self.cfg.leaf_retry_wait)
        }
    }

    /// Tells our leaf `leaf` that we run its search `id` (`running`), or
    /// that the search stopped growing.
    fn tell_leaf(&self, cx: &mut Ctx<'_>, leaf: SocketAddr, id: u64, running: bool) {
        let mut extra = base_extra();
        extra.insert(RUNNING.into(), Value::Bool(running));
        let message = Message::QueryHit(QueryHit {
            ip: Ipv4Addr::UNSPECIFIED.into(),
            files: Vec::new(),
            id: Some(id),
            more: false,
            ports: cx.sh.own_ports(),
            extra,
        });
        self.send_self(cx, leaf, message);
    }

    /// What an ultrapeer asked to run our search as a leaf says of it.
    fn on_running(&mut self, now: Instant, from: SocketAddr, search: SearchId, running: bool) {
        let linger = self.cfg.step_wait * LATE_ANSWER_STEPS;
        let Some(dq) = self
            .searches
            .get_mut(&search)
            .filter(|d| d.leaf_run && !d.done)
        else {
            return;
        };
        let last = dq.runs.len().saturating_sub(1);
        let Some((i, r)) = dq
            .runs
            .iter_mut()
            .enumerate()
            .find(|(_, r)| r.up == from && !r.over)
        else {
            return;
        };
        if running {
            r.running = true;
            if i == last {
                dq.next_step = r.asked + self.cfg.leaf_retry_wait;
            }
        } else {
            // The answers of its last step may still be on their way.
            r.over = true;
            dq.next_step = dq.next_step.min(now + linger);
        }
    }

    /// One step of dynamic querying: stop, or send deeper queries. Returns
    /// whether the search stopped growing.
    pub(super) fn search_step(&mut self, cx: &mut Ctx<'_>, now: Instant, id: SearchId) -> bool {
        let Some(dq) = self.searches.get(&id) else {
            return false;
        };
        if dq.leaf_run {
            let Some(dq) = self.searches.remove(&id) else {
                return false;
            };
            return self.leaf_search_step(cx, now, id, dq);
        }
        if dq.lingering {
            // The late answers had their time.
            if let Some(dq) = self.searches.get_mut(&id) {
                dq.done = true;
            }
            return true;
        }
        let mut progress = dq.progress.clone();
        progress.responders = dq.responders.len();
        // The tie-break keys are drawn only when the search may grow.
        let draw = may_grow(&self.cfg, progress.responders);
        let candidates: Vec<Candidate> = self
            .neighbours
            .iter()
            .filter(|(_, n)| !n.leaf)
            .map(|(a, n)| Candidate {
                addr: *a,
                degree: n.degree,
                key: if draw { cx.sh.rng.gen() } else { 0 },
            })
            .collect();
        let step = match dq.budget {
            // A leaf's search: within what its bucket granted.
            Some(b) => {
                let cfg = super::ScalableConfig {
                    query_budget: b as u32,
                    ..self.cfg.clone()
                };
                next_step(&cfg, &candidates, &progress)
            }
            None => next_step(&self.cfg, &candidates, &progress),
        };
        // A search that could ask nobody yet waits for a link.
        let waiting = step.done()
            && step.progress.depth.is_empty()
            && step.progress.est_cost == 0.0
            && self.may_wait(dq, now);
        let stops = step.done() && !waiting;
        // Our own search that asked someone stays open a little longer for
        // the answers still on their way (one we run for a leaf needs not:
        // its answers go back through the duplicate table).
        let linger = stops && dq.for_leaf.is_none() && step.progress.est_cost > 0.0;
        let done = stops && !linger;
        if let Some(leaf) = dq.for_leaf.filter(|_| stops) {
            self.tell_leaf(cx, leaf, id.0, false);
        }
        if stops {
            if let (Some(leaf), Some(b)) = (dq.for_leaf, dq.budget) {
                // What the leaf's search did not spend goes back.
                let unspent = b - step.progress.est_cost;
                let cfg = &self.cfg;
                if let Some(n) = self.neighbours.get_mut(&leaf) {
                    n.guard.refund(cfg, unspent);
                }
            }
        }
        tracing::debug!(
            search = id.0,
            responders = progress.responders,
            sends = ?step.sends,
            est_cost = step.progress.est_cost,
            est_cover = step.progress.est_cover,
            "search step"
        );
        let text = dq.text.clone();
        for (dest, ttl) in &step.sends {
            self.send_scalable_query(cx, *dest, &text, id, *ttl);
        }
        let wait = if linger {
            self.cfg.step_wait * LATE_ANSWER_STEPS
        } else {
            self.cfg.step_wait
        };
        if let Some(dq) = self.searches.get_mut(&id) {
            dq.progress = step.progress;
            dq.done = done;
            dq.lingering = linger;
            dq.next_step = now + wait;
        }
        done
    }
}
