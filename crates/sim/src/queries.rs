//! The searches of a simulation: choosing the peer that issues each, and
//! the class of the search (how many peers could answer it).

use crate::engine::part::Snap;
use crate::engine::{Role, Sim};
use crate::records::{Class, Diag};
use rand::Rng;
use std::sync::Arc;

impl Sim {
    /// Chooses a random online honest peer (as of the window's snapshot)
    /// to issue search `qi`, and records what could answer it.
    pub(crate) fn issue(&mut self, qi: usize, snap: &[Snap]) -> Option<(usize, u32)> {
        let n = self.nodes_len();
        let mut slot = self.rng.gen_range(0..n);
        for _ in 0..n {
            if snap[slot].online && self.roles[slot] == Role::Honest {
                break;
            }
            slot = (slot + 1) % n;
        }
        let text = self.queries[qi].text.clone();
        let matches = match self.text_matches.get(&text) {
            Some(m) => m.clone(),
            None => {
                let m = Arc::new(self.work.matching(&text));
                self.text_matches.insert(text.clone(), m.clone());
                m
            }
        };
        let holders = if self.cfg.hostile.none() {
            self.work.holders_of(&matches, slot)
        } else {
            self.truthful_holders(&matches, slot)
        };
        let threshold = self.popular_threshold();
        let class = match holders {
            0 => Class::Unanswerable,
            1 => Class::Unique,
            h if h >= threshold => Class::Popular,
            _ => Class::Middle,
        };
        if !snap[slot].online {
            return None;
        }
        let gen = snap[slot].gen;
        let diag = (class == Class::Unique)
            .then(|| self.only_holder(&matches, slot))
            .flatten()
            .map(|holder| {
                Box::new(Diag {
                    holder,
                    ..Diag::default()
                })
            });
        let q = &mut self.queries[qi];
        q.diag = diag;
        q.matches = matches;
        q.class = class;
        q.querier = Some((slot, gen));
        Some((slot, gen))
    }

    /// The one peer other than `querier` that holds one of `files` and
    /// answers truthfully, if there is exactly one.
    fn only_holder(&self, files: &[u32], querier: usize) -> Option<usize> {
        let mut found = None;
        for f in files {
            for s in self.work.holder_slots(*f) {
                let s = *s as usize;
                if s == querier || !self.roles[s].answers_truly() || found == Some(s) {
                    continue;
                }
                if found.is_some() {
                    return None;
                }
                found = Some(s);
            }
        }
        found
    }

    /// Peer slots in all.
    fn nodes_len(&self) -> usize {
        self.access.len()
    }

    /// Peers other than `querier` that hold one of `files` and answer
    /// truthfully.
    fn truthful_holders(&self, files: &[u32], querier: usize) -> usize {
        let mut set = std::collections::BTreeSet::new();
        for f in files {
            for s in self.work.holder_slots(*f) {
                let s = *s as usize;
                if s != querier && self.roles[s].answers_truly() {
                    set.insert(s);
                }
            }
        }
        set.len()
    }

    pub(crate) fn popular_threshold(&self) -> usize {
        ((self.cfg.nodes as f64 * 0.005).ceil() as usize).max(2)
    }
}
