//! The searches of a simulation: issuing them at random peers, answering
//! them from the peers' libraries, and counting their messages.

use crate::engine::Sim;
use crate::records::Class;
use rand::Rng;
use rutella_proto::{HitFile, IncomingQuery};
use std::rc::Rc;

impl Sim {
    pub(crate) fn issue(&mut self, qi: usize) {
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

    pub(crate) fn popular_threshold(&self) -> usize {
        ((self.cfg.nodes as f64 * 0.005).ceil() as usize).max(2)
    }

    pub(crate) fn count_query_msg(&mut self, id: Option<u64>) {
        if let Some(qi) = id.and_then(|id| self.by_id.get(&id)) {
            self.queries[*qi].msgs += 1;
        }
    }

    pub(crate) fn answer(&mut self, slot: usize, q: &IncomingQuery) {
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
