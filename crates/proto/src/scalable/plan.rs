//! The steps of a growing search (dynamic querying), as pure functions:
//! given what a search has done so far and the neighbours it may ask,
//! which neighbours to ask next and with which TTL.
//!
//! The first step asks every neighbour with TTL 0. Each later step, while
//! fewer than [`ScalableConfig::enough_results`] peers have answered with
//! files, asks the neighbours asked least deep (ties broken by a random
//! key) one TTL deeper, until the estimated number of peers covered has
//! doubled, without going over [`ScalableConfig::max_ttl`] or the
//! estimated message budget ([`ScalableConfig::query_budget`], a quarter
//! of it once some peer answered). A step that asks nobody ends the
//! search's growth.

use super::ScalableConfig;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// A neighbour a search may ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    /// Its address.
    pub(crate) addr: SocketAddr,
    /// The number of neighbours it announced.
    pub(crate) degree: usize,
    /// Breaks ties between neighbours asked equally deep (random).
    pub(crate) key: u64,
}

/// What a search has done so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Progress {
    /// The highest TTL sent to each neighbour asked.
    pub(crate) depth: BTreeMap<SocketAddr, i64>,
    /// Peers that answered with at least one file.
    pub(crate) responders: usize,
    /// Estimated messages caused so far.
    pub(crate) est_cost: f64,
    /// Estimated peers whose names were checked so far.
    pub(crate) est_cover: f64,
    /// Leaves an ultrapeer holds, as estimated by the searcher (its own
    /// number of leaves; 0 in a flat overlay).
    pub(crate) leaves: f64,
}

/// One step: the queries to send, and the progress once they are sent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Step {
    /// (neighbour, TTL), in the order to send them. A neighbour may appear
    /// more than once, each time deeper; only the last counts for it.
    pub(crate) sends: Vec<(SocketAddr, i64)>,
    /// The progress after this step.
    pub(crate) progress: Progress,
}

impl Step {
    /// Whether the search stops growing: this step asks nobody.
    pub(crate) fn done(&self) -> bool {
        self.sends.is_empty()
    }
}

/// Whether a search with `responders` answering peers may still grow (a
/// driver draws the tie-break keys of [`next_step`] only then).
pub(crate) fn may_grow(cfg: &ScalableConfig, responders: usize) -> bool {
    responders < cfg.enough_results
}

/// The first step of an ultrapeer holding `leaves` leaves: with leaves,
/// only its own leaves are asked (by the caller), and the neighbours in
/// the next steps, as the search needs them; without, as [`first_step`].
pub(crate) fn first_step_with_leaves(neighbours: &[(SocketAddr, usize)], leaves: usize) -> Step {
    if leaves == 0 {
        return first_step(neighbours);
    }
    let l = leaves as f64;
    Step {
        sends: Vec::new(),
        progress: Progress {
            leaves: l,
            est_cover: 1.0 + l,
            est_cost: 0.0,
            ..Progress::default()
        },
    }
}

/// The first step: every neighbour (address, degree) with TTL 0.
pub(crate) fn first_step(neighbours: &[(SocketAddr, usize)]) -> Step {
    let mut progress = Progress::default();
    let mut sends = Vec::with_capacity(neighbours.len());
    for (addr, degree) in neighbours {
        sends.push((*addr, 0));
        progress.depth.insert(*addr, 0);
        progress.est_cost += 1.0;
        progress.est_cover += est_cover(0, *degree as f64, 0.0, 0.0);
    }
    Step { sends, progress }
}

/// The next step of a search that has made `progress`, among these
/// neighbours (the ones it has now; those asked before and gone since
/// count in the progress but are not asked again).
pub(crate) fn next_step(
    cfg: &ScalableConfig,
    neighbours: &[Candidate],
    progress: &Progress,
) -> Step {
    let mut next = progress.clone();
    let mut sends = Vec::new();
    if may_grow(cfg, progress.responders) {
        let n = neighbours.len().max(1) as f64;
        let mean_degree = (neighbours
            .iter()
            .map(|c| c.degree.max(1) as f64)
            .sum::<f64>()
            / n)
            .max(2.0);
        let mut cands: Vec<(i64, u64, SocketAddr, usize)> = neighbours
            .iter()
            .map(|c| {
                let depth = *progress.depth.get(&c.addr).unwrap_or(&-1);
                (depth, c.key, c.addr, c.degree.max(1))
            })
            .collect();
        // Once something was found, the search grows only within a
        // quarter of the budget.
        let budget = if progress.responders == 0 {
            f64::from(cfg.query_budget)
        } else {
            f64::from(cfg.query_budget) / 4.0
        };
        let target_gain = next.est_cover.max(1.0);
        let mut gained = 0.0;
        while gained < target_gain {
            cands.sort_unstable();
            let Some(c) = cands.first_mut() else { break };
            if c.0 >= cfg.max_ttl {
                break;
            }
            let r = c.0 + 1;
            let dn = c.3 as f64;
            let cost = est_cost(r, dn, mean_degree);
            if next.est_cost + cost > budget {
                // Too dear for what is left: the others may still fit
                // (one neighbour with a large degree does not end the
                // search).
                cands.remove(0);
                continue;
            }
            next.est_cost += cost;
            // Asking deeper never covers fewer peers: where the estimate
            // says so (a mean degree under 3, where TTL 1 is estimated
            // below TTL 0) it counts as no gain.
            let l = progress.leaves;
            let gain =
                (est_cover(r, dn, mean_degree, l) - est_cover(c.0, dn, mean_degree, l)).max(0.0);
            gained += gain;
            next.est_cover += gain;
            c.0 = r;
            next.depth.insert(c.2, r);
            sends.push((c.2, r));
        }
    }
    Step {
        sends,
        progress: next,
    }
}

/// Estimated messages of a query sent to a neighbour of degree `dn` with
/// TTL `r`, in a network of mean degree `d`.
pub(crate) fn est_cost(r: i64, dn: f64, d: f64) -> f64 {
    if r <= 0 {
        return 1.0;
    }
    let mut level = 1.0;
    let mut sum = 0.0;
    for _ in 0..r {
        sum += level;
        level *= (d - 1.0).max(1.0);
    }
    1.0 + (dn - 1.0).max(1.0) * sum
}

/// Estimated peers whose names are checked by that query (the nodes at the
/// last level and every neighbour and leaf whose filter they hold, with
/// `l` leaves per ultrapeer).
pub(crate) fn est_cover(r: i64, dn: f64, d: f64, l: f64) -> f64 {
    match r {
        i64::MIN..=-1 => 0.0,
        0 => 1.0 + dn + l,
        _ => (dn - 1.0).max(1.0) * (d - 1.0).max(1.0).powi(r as i32 - 1) * (d + l),
    }
}

#[cfg(test)]
mod tests;
