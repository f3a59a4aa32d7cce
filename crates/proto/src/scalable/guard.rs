//! Defences of the scalable overlay against neighbours that answer falsely
//! or search at a cost no person causes.
//!
//! - **Answers must fit the filter.** A node's filter holds the trigrams
//!   (and four-character grams) of every name it shares; an answer of its own (one it sends itself,
//!   not one it passes back) naming a file whose grams are not all in
//!   that filter cannot be true. Such an answer is neither passed back nor
//!   counted toward [`ScalableConfig::enough_results`], and after
//!   [`ScalableConfig::false_answer_strikes`] of them the neighbour is
//!   dropped and refused. An answer of its own from a neighbour whose
//!   filter we do not hold (or refused) is not taken either.
//! - **Filters may not be too full.** A filter with more than
//!   [`ScalableConfig::max_filter_fill_permille`] of its bits set is
//!   refused: otherwise an all-ones filter would draw every query and let
//!   every false answer fit.
//! - **Searches are paid in messages.** Each neighbour has a bucket of
//!   estimated messages, refilled by one
//!   [`ScalableConfig::query_budget`] per
//!   [`ScalableConfig::search_cost_window`] up to
//!   [`ScalableConfig::search_cost_burst`] budgets. A leaf's search that
//!   we run may cost what is in its bucket (what it did not spend is given
//!   back when it stops growing); a query a neighbour sends as the first
//!   hop of its own search is charged its estimated cost and dropped when
//!   the bucket cannot pay.
//! - **Answers are paid too.** Every answer datagram we receive for a
//!   search a neighbour started through us (a leaf's search we run, or
//!   a neighbour's own search whose first hop we are) is charged to its
//!   bucket, as many messages as the hops its query made to the answering
//!   peer, and the bucket may run into debt (down to minus a burst): a
//!   search for a popular name is cheap to plan but brings back many
//!   answers, and the searches after it get nothing until the debt is
//!   repaid.
//! - **A leaf is one searcher.** A leaf's searches may cost one budget
//!   per [`ScalableConfig::leaf_search_cost_window`] in all. It spreads
//!   them over its [`ScalableConfig::leaf_ultrapeers`] ultrapeers, so each
//!   of them refills the leaf's bucket at that share of the rate, from
//!   empty on a new link. A leaf's search runs with a whole budget
//!   whenever its bucket is not in debt (what it costs is paid
//!   afterwards), so a person's occasional search for a rare file is
//!   never cut short, while a leaf searching far more often than a person
//!   gets no more than the answers of our own leaves. A leaf linked for
//!   less than [`ScalableConfig::leaf_loan_after`] is lent nothing (its
//!   search gets what its bucket holds): a leaf dropped for flooding
//!   gains no whole budget from each new link it makes.

use super::plan::est_cost;
use super::{QueryTrigrams, ScalableConfig, TrigramBloom};
use crate::message::HitFile;
use std::time::Instant;

/// What we keep about a neighbour against these abuses.
#[derive(Debug, Clone)]
pub(super) struct Record {
    /// Own answers that did not fit its filter.
    strikes: u32,
    /// Estimated messages its searches may still cost now.
    tokens: f64,
    /// When `tokens` was last refilled.
    at: Instant,
    /// When the link was made.
    since: Instant,
}

fn burst(cfg: &ScalableConfig) -> f64 {
    f64::from(cfg.query_budget) * f64::from(cfg.search_cost_burst.max(1))
}

impl Record {
    /// A new link: one budget for a neighbour; an empty bucket for a leaf
    /// (whose first search still runs with a whole budget, paid
    /// afterwards: a leaf gains nothing by making new links).
    pub(super) fn new(cfg: &ScalableConfig, now: Instant, leaf: bool) -> Self {
        Record {
            strikes: 0,
            tokens: if leaf {
                0.0
            } else {
                f64::from(cfg.query_budget).min(burst(cfg))
            },
            at: now,
            since: now,
        }
    }

    /// Refills the bucket for the time since the last refill: a leaf's
    /// (`leaf`) at its share of the rate.
    fn refill(&mut self, cfg: &ScalableConfig, now: Instant, leaf: bool) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        let window = if leaf {
            cfg.leaf_search_cost_window.as_secs_f64() * cfg.leaf_ultrapeers.max(1) as f64
        } else {
            cfg.search_cost_window.as_secs_f64()
        };
        let gained = if window > 0.0 {
            elapsed * f64::from(cfg.query_budget) / window
        } else {
            f64::INFINITY
        };
        self.tokens = (self.tokens + gained).min(burst(cfg));
    }

    /// The budget of a search run for this neighbour, a leaf: a whole one
    /// unless its bucket is in debt (then none), taken from the bucket,
    /// which may go into debt for it; returns what was taken.
    pub(super) fn grant(&mut self, cfg: &ScalableConfig, now: Instant) -> f64 {
        self.refill(cfg, now, true);
        if self.tokens < 0.0 {
            return 0.0;
        }
        let g = if now.saturating_duration_since(self.since) < cfg.leaf_loan_after {
            // A link that new is lent nothing: a leaf dropped for
            // flooding gains no whole budget from its next link.
            f64::from(cfg.query_budget).min(self.tokens)
        } else {
            f64::from(cfg.query_budget)
        };
        self.tokens -= g;
        g
    }

    /// Gives back what a search granted by [`Record::grant`] did not spend.
    pub(super) fn refund(&mut self, cfg: &ScalableConfig, unspent: f64) {
        if unspent > 0.0 {
            self.tokens = (self.tokens + unspent).min(burst(cfg));
        }
    }

    /// Charges `cost` estimated messages if the bucket can pay them.
    pub(super) fn charge(&mut self, cfg: &ScalableConfig, now: Instant, cost: f64) -> bool {
        self.refill(cfg, now, false);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }

    /// Charges `cost` messages already caused (answers received for a
    /// search of this neighbour, a leaf with `leaf`), into debt if need
    /// be, down to minus one burst.
    pub(super) fn debit(&mut self, cfg: &ScalableConfig, now: Instant, leaf: bool, cost: f64) {
        self.refill(cfg, now, leaf);
        self.tokens = (self.tokens - cost).max(-burst(cfg));
    }

    /// Counts an own answer that did not fit the filter; returns whether
    /// the neighbour has now earned being dropped.
    pub(super) fn strike(&mut self, cfg: &ScalableConfig) -> bool {
        self.strikes = self.strikes.saturating_add(1);
        self.strikes >= cfg.false_answer_strikes.max(1)
    }
}

/// Estimated messages a query with TTL `ttl` sent to us causes, given our
/// `degree` (the searcher's own estimate of it, see [`est_cost`]).
pub(super) fn query_cost(ttl: i64, degree: usize) -> f64 {
    let d = degree.max(1) as f64;
    est_cost(ttl, d, d.max(2.0))
}

/// Whether every file of an answer could be in the library whose filter
/// is `filter` (every trigram of every word of its name, and every
/// four-character gram if it holds them, is in it). No filter: nothing
/// fits.
pub(super) fn answer_fits(filter: Option<&TrigramBloom>, files: &[HitFile]) -> bool {
    let Some(f) = filter else {
        return false;
    };
    files
        .iter()
        .all(|file| f.may_match(&QueryTrigrams::new(&file.name)))
}

/// Whether a filter has more bits set than a library's filter may.
pub(super) fn too_full(cfg: &ScalableConfig, filter: &TrigramBloom) -> bool {
    let bytes = filter.as_bytes();
    let ones: u64 = bytes.iter().map(|b| u64::from(b.count_ones())).sum();
    let bits = (bytes.len() as u64 * 8).max(1);
    ones * 1000 > bits * u64::from(cfg.max_filter_fill_permille)
}
