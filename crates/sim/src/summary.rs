//! The figures of a simulation and the topology probes of its debug
//! report.

use crate::engine::{slot_of, Sim, MS, SEC};
use crate::records::{Class, QRec};
use rutella_proto::Mode;
use serde::{Deserialize, Serialize};

/// Figures for one class of queries.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
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

/// Why searches for a file held by one peer failed: each failed search
/// counts once, under the first reason that applies, in this order.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Misses {
    /// Failed searches for a file held by one peer.
    pub failed: usize,
    /// The holder was offline when the search started, or left during it.
    pub holder_offline: usize,
    /// The searcher was a leaf without any ultrapeer when the search
    /// started.
    pub searcher_leaf_unlinked: usize,
    /// The searcher was an ultrapeer without any link (just promoted).
    pub searcher_ultrapeer_unlinked: usize,
    /// A true answer with files reached the searcher, but the search no longer
    /// took it (it was over, or refused the answer's sender).
    pub hit_late: usize,
    /// Of those: median time from the search to that answer, in ms.
    #[serde(default)]
    pub hit_late_ms_median: f64,
    /// The holder answered and an answer was lost on the way back.
    pub hit_lost: usize,
    /// The holder answered, nothing was lost, and the answer did not come
    /// back (the return path was broken).
    pub hit_dropped: usize,
    /// The holder received the query and did not answer.
    pub holder_silent: usize,
    /// The query sent to the holder was lost.
    pub query_lost_to_holder: usize,
    /// The holder was a leaf without any ultrapeer.
    pub leaf_without_ultrapeer: usize,
    /// The holder was a leaf whose ultrapeers did not hold its filter yet
    /// (just attached, or the filter was lost).
    pub filter_not_held: usize,
    /// An ultrapeer holding the holder's filter received the query and
    /// did not pass it on to the holder.
    pub indexer_not_passed: usize,
    /// No ultrapeer holding the holder's filter (nor the holder, an
    /// ultrapeer itself) was reached: the search stopped first.
    pub not_reached: usize,
    /// Of those: median number of distinct ultrapeers the search reached
    /// (for comparison, `ultrapeers` online at the end).
    pub not_reached_ultrapeers_median: f64,
    /// Of those: median messages.
    pub not_reached_messages_median: f64,
    /// Failed searches (under any reason above) that a false answer
    /// reached.
    #[serde(default)]
    pub false_hit_arrived: usize,
    /// Over all searches for a file held by one peer: median number of
    /// distinct ultrapeers reached.
    pub ultrapeers_reached_median: f64,
}

/// The result of one simulation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
    /// Shares of hostile peers: dropping queries, answering falsely,
    /// flooding searches, lying about their degree.
    pub hostile_drop: f64,
    /// See `hostile_drop`.
    pub hostile_false_hits: f64,
    /// See `hostile_drop`.
    pub hostile_flood: f64,
    /// See `hostile_drop`.
    pub hostile_liar: f64,
    /// Answers from peers that answer falsely, received by honest searchers
    /// (not counted as successes).
    pub false_hits: u64,
    /// Searches started by flooding peers.
    pub flood_searches: u64,
    /// Datagrams received per second by an honest peer slot in the
    /// measured window: mean over honest slots.
    pub honest_load_mean: f64,
    /// Same, 99th percentile.
    pub honest_load_p99: f64,
    /// Same, the busiest honest slot.
    pub honest_load_max: f64,
    /// Datagrams received per second by the honest peers that are
    /// ultrapeers at the end of the run.
    pub honest_load_ultrapeers: LoadFigures,
    /// Same, the honest peers that are leaves at the end.
    pub honest_load_leaves: LoadFigures,
    /// With `--compare-clean`: this run against the same seed without
    /// hostile peers.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(default)]
    pub vs_clean: Option<VsClean>,
    /// Why searches for files held by one peer failed.
    pub misses: Misses,
    /// Ultrapeers online at the end (scalable mode).
    pub ultrapeers: usize,
    /// Of those, hostile peers (any kind).
    pub hostile_ultrapeers: usize,
    /// Leaves online at the end.
    pub leaves: usize,
    /// Leaves per ultrapeer at the end: mean.
    pub leaves_per_ultrapeer_mean: f64,
    /// Same, the most.
    pub leaves_per_ultrapeer_max: usize,
    /// Ultrapeer neighbours of an ultrapeer at the end: mean.
    pub ultrapeer_degree_mean: f64,
    /// Datagrams received per second in the measured window by the
    /// busiest slot that is an ultrapeer at the end.
    pub busiest_ultrapeer_load: f64,
    /// Same, mean over the slots that are ultrapeers at the end.
    pub ultrapeer_load_mean: f64,
    /// Attachment of leaves to ultrapeers (scalable mode).
    pub attachment: Attachment,
}

/// Datagrams received per second in the measured window by a set of
/// honest peers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LoadFigures {
    /// Peers in the set.
    pub peers: usize,
    /// Mean.
    pub mean: f64,
    /// 99th percentile.
    pub p99: f64,
    /// The busiest peer.
    pub max: f64,
    /// Of the busiest peer's datagrams, the share that were answers.
    pub max_answer_share: f64,
}

/// One tier's honest load with hostile peers against the same seed
/// without them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TierVsClean {
    /// Without hostile peers.
    pub clean: LoadFigures,
    /// With them (this run).
    pub hostile: LoadFigures,
    /// `hostile.max / clean.max`.
    pub ratio_max: f64,
    /// `hostile.p99 / clean.p99`.
    pub ratio_p99: f64,
}

/// A run with hostile peers against the same seed without them: the same
/// peers in the same slots (roles are drawn from their own generator), so
/// the honest peers are the same ones.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct VsClean {
    /// Success over answerable searches without hostile peers.
    pub clean_success_rate: f64,
    /// Same, searches for a file held by one peer.
    pub clean_unique_success_rate: f64,
    /// Same, popular files.
    pub clean_popular_success_rate: f64,
    /// Points of success lost to the hostile peers: all searches.
    pub success_drop_points: f64,
    /// Same, searches for a file held by one peer.
    pub unique_success_drop_points: f64,
    /// Honest ultrapeers (tier at the end of each run).
    pub ultrapeers: TierVsClean,
    /// Honest leaves.
    pub leaves: TierVsClean,
    /// All honest peers.
    pub all: TierVsClean,
    /// Per peer: the highest ratio of an honest peer's load to its own
    /// load without hostile peers, among peers of the same tier at the
    /// end of both runs (a leaf in one run and an ultrapeer in the other
    /// has no load to compare with) that received at least
    /// [`PEER_RATIO_FLOOR`] datagrams per second in one of the two runs
    /// (below that, ratios of a handful of datagrams mean nothing).
    pub peer_ratio_max: f64,
    /// Honest peers whose load is above twice their own without hostile
    /// peers, with the same conditions.
    pub peers_over_2x: usize,
}

/// What a comparison keeps of the run without hostile peers.
pub(crate) struct CleanRun {
    pub(crate) summary: Summary,
    /// Load of every slot, datagrams per second.
    pub(crate) per_sec: Vec<f64>,
    /// Load figures of all its (honest) peers.
    pub(crate) all: LoadFigures,
    /// Whether each slot was an ultrapeer at the end (`None`: offline).
    pub(crate) tiers: Vec<Option<bool>>,
}

impl CleanRun {
    pub(crate) fn of(sim: &Sim) -> Self {
        CleanRun {
            summary: sim.summary(),
            per_sec: sim.loads_per_sec(),
            all: sim.tier_load(None),
            tiers: sim.tiers(),
        }
    }
}

/// Datagrams per second below which a peer's load ratio is not counted.
pub const PEER_RATIO_FLOOR: f64 = 1.0;

/// How well leaves stay attached to ultrapeers: how fast a newcomer finds
/// its first, how many ultrapeers a leaf has when it searches, how often
/// peers change tiers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Attachment {
    /// Peers started in the measured window (newcomers under churn).
    pub newcomers: usize,
    /// Time from a newcomer's start to its first link of its tier, in ms:
    /// median over those that got one.
    pub join_to_first_link_ms_median: f64,
    /// Same, 90th percentile.
    pub join_to_first_link_ms_p90: f64,
    /// Same, the longest.
    pub join_to_first_link_ms_max: f64,
    /// Newcomers that left, or were still online at the end, without ever
    /// having had a link of their tier.
    pub newcomers_never_linked: u64,
    /// Searches issued by leaves, by how many ultrapeers the leaf had at
    /// that instant: 0, 1, 2, 3 or more.
    pub leaf_searches_by_ultrapeers: [u64; 4],
    /// Searches issued by ultrapeers.
    pub ultrapeer_searches: u64,
    /// Leaves online at the end, by how many ultrapeers they have: 0, 1,
    /// 2, 3 or more.
    pub leaves_by_ultrapeers_end: [u64; 4],
    /// Promotions and demotions over the whole run (peers that left
    /// included).
    pub tier_changes: u64,
}

impl Sim {
    pub(crate) fn neighbours_of(&self, slot: usize) -> Vec<usize> {
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

    pub(crate) fn bfs(&self, from: usize) -> Vec<u32> {
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

    pub(crate) fn ball(&self, from: usize) -> Vec<usize> {
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

    pub(crate) fn dist(&self, a: usize, b: usize) -> u32 {
        self.bfs(a)[b]
    }

    pub(crate) fn summary(&self) -> Summary {
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
        let loads: Vec<f64> = self
            .load
            .iter()
            .zip(&self.roles)
            .filter(|(_, r)| **r == crate::engine::Role::Honest)
            .map(|(l, _)| {
                if window > 0.0 {
                    f64::from(*l) / window
                } else {
                    0.0
                }
            })
            .collect();
        let h = &self.cfg.hostile;
        let per_sec = |slot: usize| -> f64 {
            if window > 0.0 {
                f64::from(self.load.get(slot).copied().unwrap_or(0)) / window
            } else {
                0.0
            }
        };
        let ups: Vec<(usize, usize, usize)> = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.overlay.as_ref().map(|o| (i, o)))
            .filter(|(_, o)| o.is_ultrapeer() == Some(true))
            .map(|(i, o)| (i, o.leaf_count(), o.degree()))
            .collect();
        let leaves = self
            .nodes
            .iter()
            .filter_map(|n| n.overlay.as_ref())
            .filter(|o| o.is_ultrapeer() == Some(false))
            .count();
        let nup = ups.len().max(1) as f64;
        let mut attachment = Attachment {
            leaf_searches_by_ultrapeers: self.attach.leaf_searches,
            ultrapeer_searches: self.attach.ultrapeer_searches,
            tier_changes: self.attach.tier_changes,
            newcomers_never_linked: self.attach.never,
            ..Attachment::default()
        };
        let warmup = self.cfg.warmup.as_nanos() as u64;
        for n in &self.nodes {
            let Some(o) = &n.overlay else { continue };
            attachment.tier_changes += u64::from(o.tier_changes());
            if o.is_ultrapeer() == Some(false) {
                attachment.leaves_by_ultrapeers_end[o.degree().min(3)] += 1;
            }
            if !n.attached && n.joined >= warmup && n.joined > 0 {
                attachment.newcomers_never_linked += 1;
            }
        }
        let times: Vec<f64> = self
            .attach
            .times
            .iter()
            .map(|&t| t as f64 / MS as f64)
            .collect();
        attachment.newcomers = times.len() + attachment.newcomers_never_linked as usize;
        attachment.join_to_first_link_ms_median = quantile(&times, 0.5);
        attachment.join_to_first_link_ms_p90 = quantile(&times, 0.9);
        attachment.join_to_first_link_ms_max = quantile(&times, 1.0);
        let up_loads: Vec<f64> = ups.iter().map(|u| per_sec(u.0)).collect();
        let misses = self.misses();
        Summary {
            misses,
            ultrapeers: ups.len(),
            hostile_ultrapeers: ups
                .iter()
                .filter(|u| self.roles.get(u.0) != Some(&crate::engine::Role::Honest))
                .count(),
            leaves,
            leaves_per_ultrapeer_mean: ups.iter().map(|u| u.1).sum::<usize>() as f64 / nup,
            leaves_per_ultrapeer_max: ups.iter().map(|u| u.1).max().unwrap_or(0),
            ultrapeer_degree_mean: ups.iter().map(|u| u.2).sum::<usize>() as f64 / nup,
            busiest_ultrapeer_load: quantile(&up_loads, 1.0),
            ultrapeer_load_mean: up_loads.iter().sum::<f64>() / nup,
            attachment,
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
            hostile_drop: h.drop,
            hostile_false_hits: h.false_hits,
            hostile_flood: h.flood,
            hostile_liar: h.liar,
            false_hits: self.false_hits,
            flood_searches: self.flood_searches,
            honest_load_mean: if loads.is_empty() {
                0.0
            } else {
                loads.iter().sum::<f64>() / loads.len() as f64
            },
            honest_load_p99: quantile(&loads, 0.99),
            honest_load_max: quantile(&loads, 1.0),
            honest_load_ultrapeers: self.tier_load(Some(true)),
            honest_load_leaves: self.tier_load(Some(false)),
            vs_clean: None,
        }
    }

    /// Whether each slot is an ultrapeer at the end (`None`: offline).
    pub(crate) fn tiers(&self) -> Vec<Option<bool>> {
        self.nodes
            .iter()
            .map(|n| n.overlay.as_ref().and_then(|o| o.is_ultrapeer()))
            .collect()
    }

    /// Datagrams received per second in the measured window by each slot.
    pub(crate) fn loads_per_sec(&self) -> Vec<f64> {
        let window = (self.end() - self.warmup().min(self.end())) as f64 / SEC as f64;
        self.load
            .iter()
            .map(|&l| {
                if window > 0.0 {
                    f64::from(l) / window
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// Whether the slot is honest and, with `ultrapeer`, online in that
    /// tier at the end (`None`: any honest slot).
    pub(crate) fn honest_in(&self, slot: usize, ultrapeer: Option<bool>) -> bool {
        self.roles.get(slot) == Some(&crate::engine::Role::Honest)
            && match ultrapeer {
                None => true,
                Some(u) => self.nodes[slot]
                    .overlay
                    .as_ref()
                    .is_some_and(|o| o.is_ultrapeer() == Some(u)),
            }
    }

    /// The load figures of the honest slots of a tier (`None`: all).
    pub(crate) fn tier_load(&self, ultrapeer: Option<bool>) -> LoadFigures {
        let per_sec = self.loads_per_sec();
        let slots: Vec<usize> = (0..self.nodes.len().min(per_sec.len()))
            .filter(|&s| self.honest_in(s, ultrapeer))
            .collect();
        let v: Vec<f64> = slots.iter().map(|&s| per_sec[s]).collect();
        let busiest = slots
            .iter()
            .copied()
            .max_by(|&a, &b| self.load[a].cmp(&self.load[b]).then(b.cmp(&a)));
        LoadFigures {
            peers: v.len(),
            mean: if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            },
            p99: quantile(&v, 0.99),
            max: quantile(&v, 1.0),
            max_answer_share: busiest.map_or(0.0, |b| {
                f64::from(self.load_hits.get(b).copied().unwrap_or(0))
                    / f64::from(self.load[b].max(1))
            }),
        }
    }

    /// This run (with hostile peers) against `clean`, the same seed
    /// without them.
    pub(crate) fn vs_clean(&self, mine: &Summary, clean: &CleanRun) -> VsClean {
        let theirs = &clean.summary;
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let tier = |u: Option<bool>| {
            let c = match u {
                Some(true) => clean.summary.honest_load_ultrapeers.clone(),
                Some(false) => clean.summary.honest_load_leaves.clone(),
                None => clean.all.clone(),
            };
            let h = self.tier_load(u);
            TierVsClean {
                ratio_max: ratio(h.max, c.max),
                ratio_p99: ratio(h.p99, c.p99),
                clean: c,
                hostile: h,
            }
        };
        let (a, b) = (self.loads_per_sec(), &clean.per_sec);
        let tiers = self.tiers();
        let mut peer_ratio_max: f64 = 0.0;
        let mut peers_over_2x = 0;
        for s in 0..a.len().min(b.len()) {
            let same_tier = tiers.get(s) == clean.tiers.get(s);
            if !self.honest_in(s, None) || !same_tier || a[s].max(b[s]) < PEER_RATIO_FLOOR {
                continue;
            }
            let r = a[s] / b[s].max(f64::MIN_POSITIVE);
            peer_ratio_max = peer_ratio_max.max(r);
            if r > 2.0 {
                peers_over_2x += 1;
            }
        }
        VsClean {
            clean_success_rate: theirs.success_rate,
            clean_unique_success_rate: theirs.unique.success_rate,
            clean_popular_success_rate: theirs.popular.success_rate,
            success_drop_points: 100.0 * (theirs.success_rate - mine.success_rate),
            unique_success_drop_points: 100.0
                * (theirs.unique.success_rate - mine.unique.success_rate),
            ultrapeers: tier(Some(true)),
            leaves: tier(Some(false)),
            all: tier(None),
            peer_ratio_max,
            peers_over_2x,
        }
    }
}

impl Sim {
    /// Why the searches for a file held by one peer failed.
    fn misses(&self) -> Misses {
        let mut m = Misses::default();
        let mut share_all = Vec::new();
        let mut share_nr = Vec::new();
        let mut msgs_nr = Vec::new();
        let mut late_ms = Vec::new();
        for q in &self.queries {
            if q.querier.is_none() || q.class != Class::Unique {
                continue;
            }
            let Some(d) = q.diag.as_deref() else { continue };
            let share = d.ups_reached.len() as f64;
            share_all.push(share);
            if q.first_hit.is_some() {
                continue;
            }
            m.failed += 1;
            if d.false_hit_arrived {
                m.false_hit_arrived += 1;
            }
            let left = self.nodes[d.holder].gen != d.holder_gen;
            let slot = if !d.holder_online || left {
                &mut m.holder_offline
            } else if d.querier_links == 0 && d.querier_ultrapeer {
                &mut m.searcher_ultrapeer_unlinked
            } else if d.querier_links == 0 {
                &mut m.searcher_leaf_unlinked
            } else if d.hit_arrived {
                late_ms.push(d.hit_arrived_after.unwrap_or(0) as f64 / MS as f64);
                &mut m.hit_late
            } else if d.holder_answered && d.hits_lost > 0 {
                &mut m.hit_lost
            } else if d.holder_answered {
                &mut m.hit_dropped
            } else if d.holder_reached {
                &mut m.holder_silent
            } else if d.lost_to_holder {
                &mut m.query_lost_to_holder
            } else if !d.holder_ultrapeer && d.holder_links == 0 {
                &mut m.leaf_without_ultrapeer
            } else if !d.holder_ultrapeer && d.indexers.is_empty() {
                &mut m.filter_not_held
            } else if d.indexer_reached {
                &mut m.indexer_not_passed
            } else {
                share_nr.push(share);
                msgs_nr.push(q.msgs as f64);
                &mut m.not_reached
            };
            *slot += 1;
        }
        m.hit_late_ms_median = quantile(&late_ms, 0.5);
        m.not_reached_ultrapeers_median = quantile(&share_nr, 0.5);
        m.not_reached_messages_median = quantile(&msgs_nr, 0.5);
        m.ultrapeers_reached_median = quantile(&share_all, 0.5);
        m
    }
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
