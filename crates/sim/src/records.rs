//! The record of each search of a simulation (which peers could answer it,
//! what came of it), kept by the engine and the searches and read by the
//! summary.

use rutella_proto::SearchId;
use std::sync::Arc;

/// Which peers could answer a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Unanswerable,
    Unique,
    Middle,
    Popular,
}

/// One search and what came of it.
pub(crate) struct QRec {
    pub(crate) t0: u64,
    pub(crate) text: String,
    pub(crate) matches: Arc<Vec<u32>>,
    pub(crate) querier: Option<(usize, u32)>,
    pub(crate) search: Option<SearchId>,
    pub(crate) class: Class,
    pub(crate) msgs: u64,
    pub(crate) first_hit: Option<(u64, u64)>,
    /// For a search of a file held by one peer: what happened to it.
    pub(crate) diag: Option<Box<Diag>>,
}

/// The hops an answer travelled, from its `"Hops"` field (1 when absent).
pub(crate) fn hops_of(extra: &serde_json::Map<String, serde_json::Value>) -> u64 {
    extra.get("Hops").and_then(|v| v.as_u64()).unwrap_or(1)
}

/// What happened to a search for a file held by one peer, to tell why it
/// failed (see [`crate::summary::Misses`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct Diag {
    /// The one peer that holds a match.
    pub(crate) holder: usize,
    /// Its generation when the search started.
    pub(crate) holder_gen: u32,
    /// It was online when the search started.
    pub(crate) holder_online: bool,
    /// It was an ultrapeer then.
    pub(crate) holder_ultrapeer: bool,
    /// Its ultrapeers then (a leaf's).
    pub(crate) holder_links: usize,
    /// The ultrapeers that held its filter then.
    pub(crate) indexers: Vec<usize>,
    /// Links of the searcher then (a leaf's ultrapeers, an ultrapeer's
    /// ultrapeer neighbours and leaves).
    pub(crate) querier_links: usize,
    /// The searcher was an ultrapeer then.
    pub(crate) querier_ultrapeer: bool,
    /// The holder received a query of the search.
    pub(crate) holder_reached: bool,
    /// A query of the search toward the holder was lost.
    pub(crate) lost_to_holder: bool,
    /// An ultrapeer that held the holder's filter received a query.
    pub(crate) indexer_reached: bool,
    /// The holder sent an answer with files.
    pub(crate) holder_answered: bool,
    /// Answers of the search lost on the way.
    pub(crate) hits_lost: u32,
    /// A true answer with files reached the searcher.
    pub(crate) hit_arrived: bool,
    /// When the first one did, in ns after the search started.
    pub(crate) hit_arrived_after: Option<u64>,
    /// A false answer (from a peer that answers falsely) reached the
    /// searcher.
    pub(crate) false_hit_arrived: bool,
    /// Distinct ultrapeers that received a query of the search.
    pub(crate) ups_reached: std::collections::BTreeSet<u32>,
}

/// What a partition saw of a search under diagnosis during a window.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DiagEv {
    /// A query was delivered to `slot` (an ultrapeer or not).
    Reached { slot: usize, ultrapeer: bool },
    /// A query toward `slot` was lost.
    LostQuery { slot: usize },
    /// An answer was lost.
    LostHit,
    /// The holder sent an answer with files.
    HolderAnswered,
    /// A true answer with files was delivered to the searcher, `after`
    /// ns after the search started.
    HitArrived { after: u64 },
    /// A false answer was delivered to the searcher.
    FalseHitArrived,
}

impl Diag {
    /// Takes in one event.
    pub(crate) fn apply(&mut self, ev: DiagEv) {
        match ev {
            DiagEv::Reached { slot, ultrapeer } => {
                if slot == self.holder {
                    self.holder_reached = true;
                }
                if self.indexers.contains(&slot) {
                    self.indexer_reached = true;
                }
                if ultrapeer {
                    self.ups_reached.insert(slot as u32);
                }
            }
            DiagEv::LostQuery { slot } => {
                if slot == self.holder {
                    self.lost_to_holder = true;
                }
            }
            DiagEv::LostHit => self.hits_lost += 1,
            DiagEv::HolderAnswered => self.holder_answered = true,
            DiagEv::HitArrived { after } => {
                self.hit_arrived = true;
                let first = self.hit_arrived_after.map_or(after, |a| a.min(after));
                self.hit_arrived_after = Some(first);
            }
            DiagEv::FalseHitArrived => self.false_hit_arrived = true,
        }
    }
}
