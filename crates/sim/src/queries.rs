//! The searches of a simulation: issuing them at random peers, answering
//! them from the peers' libraries, and counting their messages.

use crate::engine::{Role, Sim, SEC};
use crate::records::Class;
use rand::Rng;
use rutella_proto::{HitFile, IncomingQuery};
use std::rc::Rc;

impl Sim {
    pub(crate) fn issue(&mut self, qi: usize) {
        // A random online honest peer searches.
        let n = self.nodes.len();
        let mut slot = self.rng.gen_range(0..n);
        for _ in 0..n {
            if self.nodes[slot].overlay.is_some() && self.roles[slot] == Role::Honest {
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

    /// A flooding peer starts a search for a random catalogue text, and
    /// will start another one after the flood interval.
    pub(crate) fn flood(&mut self, slot: usize) {
        let every = self.cfg.hostile.flood_interval.as_nanos().max(1) as u64;
        let next = self.now + every.max(SEC / 1000);
        if next < self.end() {
            self.push(next, crate::engine::Ev::Flood { slot });
        }
        if self.nodes[slot].overlay.is_none() {
            return;
        }
        let target = self.work.pick_target(&mut self.rng);
        let text = self.work.query_text(target, &mut self.rng);
        let now = self.instant(self.now);
        if let Some(o) = &mut self.nodes[slot].overlay {
            o.search(now, &text);
            self.flood_searches += 1;
        }
        self.drain(slot);
    }

    pub(crate) fn popular_threshold(&self) -> usize {
        ((self.cfg.nodes as f64 * 0.005).ceil() as usize).max(2)
    }

    pub(crate) fn count_query_msg(&mut self, id: Option<u64>) {
        if let Some(qi) = id.and_then(|id| self.by_id.get(&id)) {
            self.queries[*qi].msgs += 1;
        }
    }

    pub(crate) fn answer(&mut self, slot: usize, q: &IncomingQuery) {
        if self.roles[slot] == Role::FalseHits {
            // A file that does not exist, named to match the query.
            let fake = HitFile::named(format!("{} (complete).exe", q.text));
            if let Some(o) = &mut self.nodes[slot].overlay {
                o.answer_query(q, &[fake]);
            }
            return;
        }
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
}
