//! Which groups of a download each connection fetches: a pure state
//! machine, without I/O and without clock reads.
//!
//! The file is cut into pieces (ranges of groups) that connections take
//! from a queue. A connection reads a piece in order and *claims* its
//! groups just before it reads them ([`Sched::claim`]). Once the queue is
//! empty, an idle connection takes over the unclaimed tail of another
//! connection's piece ([`Sched::take`] with `help`): the piece is cut in
//! two, its owner stops at the cut (and, as the source keeps sending what
//! was asked, closes its connection there), so no group is fetched twice.
//! Only when nothing is left unclaimed does a connection fetch a group
//! that another one has claimed but not delivered (a slow source's last
//! groups), and such duplicates are limited to a budget of about 1% of the
//! file over the whole download.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::Range;

use crate::report::SourceOutcome;
use crate::state::PartState;

/// Share of the file's groups that the endgame may fetch twice, in
/// hundredths (at least one group).
const DUPLICATE_PERCENT: u64 = 1;

/// Most groups a connection claims at once (4 MiB of 16 KiB groups, the
/// largest batch, so that a fast connection's reads are not cut shorter
/// than its batches); its claims start at one group per piece and double
/// up to this, so a slow source holds few groups that others could not
/// take over.
const MAX_CLAIM: u64 = 256;

/// A piece a connection was given.
#[derive(Debug, Clone)]
pub(super) struct InFlight {
    pub(super) id: u64,
    /// The groups of the piece; its end moves down when another
    /// connection takes over the tail.
    pub(super) groups: Range<u64>,
    /// Groups below this one are claimed: the owner reads them.
    claimed: u64,
    /// Next claim's size.
    step: u64,
    pub(super) source: usize,
    /// A duplicate of groups another piece claimed (the endgame).
    duplicate: bool,
    /// Sources that duplicated this piece's claimed groups.
    helped_by: Vec<usize>,
}

/// What the scheduler knows of one source.
#[derive(Debug)]
pub(super) struct Src {
    pub(super) peer: SocketAddr,
    pub(super) bad: bool,
    pub(super) received: u64,
    pub(super) verified: u64,
    pub(super) outcome: Option<SourceOutcome>,
}

impl Src {
    pub(super) fn new(peer: SocketAddr) -> Src {
        Src {
            peer,
            bad: false,
            received: 0,
            verified: 0,
            outcome: None,
        }
    }
}

/// The schedule of one download.
#[derive(Debug)]
pub(super) struct Sched {
    pub(super) state: PartState,
    /// Verified groups.
    pub(super) verified: u64,
    /// All groups.
    pub(super) total: u64,
    /// Verified bytes, for progress.
    pub(super) done_bytes: u64,
    /// Verified groups not yet recorded on disk.
    pub(super) dirty: bool,
    pending: VecDeque<Range<u64>>,
    in_flight: Vec<InFlight>,
    next_id: u64,
    piece_groups: u64,
    /// Groups the endgame may still fetch a second time.
    duplicate_budget: u64,
    pub(super) sources: Vec<Src>,
}

/// What a connection should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Take {
    /// Ask for these groups.
    Piece { id: u64, groups: Range<u64> },
    /// Nothing for this connection now; pieces may come back.
    Wait,
    /// Nothing more for this connection.
    Stop,
}

impl Sched {
    /// A schedule over `state` (whose set groups are verified), cut into
    /// pieces of `piece_groups` groups; `done_bytes` are the verified bytes.
    pub(super) fn new(
        state: PartState,
        done_bytes: u64,
        piece_groups: u64,
        sources: Vec<Src>,
    ) -> Sched {
        let total = state.groups();
        let mut pending = VecDeque::new();
        let mut verified = 0;
        let mut i = 0;
        while i < total {
            if state.get(i) {
                verified += 1;
                i += 1;
                continue;
            }
            let start = i;
            while i < total && !state.get(i) {
                i += 1;
            }
            pending.push_back(start..i);
        }
        Sched {
            state,
            verified,
            total,
            done_bytes,
            dirty: true,
            pending,
            in_flight: Vec::new(),
            next_id: 0,
            piece_groups: piece_groups.max(1),
            duplicate_budget: (total * DUPLICATE_PERCENT / 100).max(1),
            sources,
        }
    }

    /// Whether every group is verified.
    pub(super) fn complete(&self) -> bool {
        self.verified == self.total
    }

    /// The next piece for a connection to `src`; with `help` (the
    /// connection has nothing in flight), part of another connection's
    /// piece when the queue is empty.
    pub(super) fn take(&mut self, src: usize, help: bool) -> Take {
        if self.sources.get(src).is_none_or(|s| s.bad) || self.complete() {
            return Take::Stop;
        }
        while let Some(mut r) = self.pending.pop_front() {
            while r.start < r.end && self.state.get(r.start) {
                r.start += 1;
            }
            if r.is_empty() {
                continue;
            }
            let end = r.end.min(r.start + self.piece_groups);
            if end < r.end {
                self.pending.push_front(end..r.end);
            }
            return self.new_flight(r.start..end, src, false);
        }
        if !help {
            return Take::Wait;
        }
        if let Some(t) = self.split(src) {
            return t;
        }
        self.duplicate(src).unwrap_or(Take::Wait)
    }

    /// Takes over the larger half of the longest unclaimed tail of another
    /// source's piece.
    fn split(&mut self, src: usize) -> Option<Take> {
        let (k, tail) = self
            .in_flight
            .iter()
            .enumerate()
            .filter(|(_, f)| f.source != src && !f.duplicate)
            .map(|(k, f)| (k, f.claimed.max(f.groups.start)..f.groups.end))
            .filter(|(_, t)| !t.is_empty())
            .max_by_key(|(_, t)| t.end - t.start)?;
        let cut = tail.start + (tail.end - tail.start) / 2;
        self.in_flight[k].groups.end = cut;
        Some(self.new_flight(cut..tail.end, src, false))
    }

    /// Fetches again the unverified groups another source claimed, within
    /// the duplicate budget.
    fn duplicate(&mut self, src: usize) -> Option<Take> {
        let mut best: Option<(usize, Range<u64>)> = None;
        for (k, f) in self.in_flight.iter().enumerate() {
            if f.source == src || f.duplicate || f.helped_by.contains(&src) {
                continue;
            }
            let claimed = f.groups.start..f.claimed.min(f.groups.end);
            let first = claimed.clone().find(|&i| !self.state.get(i));
            let last = claimed.rev().find(|&i| !self.state.get(i));
            if let (Some(a), Some(b)) = (first, last) {
                let len = b + 1 - a;
                if len <= self.duplicate_budget
                    && best.as_ref().is_none_or(|(_, r)| len > r.end - r.start)
                {
                    best = Some((k, a..b + 1));
                }
            }
        }
        let (k, r) = best?;
        self.duplicate_budget -= r.end - r.start;
        self.in_flight[k].helped_by.push(src);
        Some(self.new_flight(r, src, true))
    }

    fn new_flight(&mut self, groups: Range<u64>, source: usize, duplicate: bool) -> Take {
        self.next_id += 1;
        self.in_flight.push(InFlight {
            id: self.next_id,
            groups: groups.clone(),
            claimed: groups.start,
            step: 1,
            source,
            duplicate,
            helped_by: Vec::new(),
        });
        Take::Piece {
            id: self.next_id,
            groups,
        }
    }

    /// The owner of piece `id` is about to read group `from`: the end of
    /// the groups it may read now (more than `from`), or `None` when the
    /// piece now ends before `from` (another connection took the rest).
    pub(super) fn claim(&mut self, id: u64, from: u64) -> Option<u64> {
        let f = self.in_flight.iter_mut().find(|f| f.id == id)?;
        if from >= f.groups.end {
            return None;
        }
        if f.claimed > from {
            return Some(f.claimed.min(f.groups.end));
        }
        let to = (from + f.step).min(f.groups.end);
        f.step = (f.step * 2).min(MAX_CLAIM);
        f.claimed = to;
        Some(to)
    }

    /// Records group `i` (of `len` bytes) as verified, from `src`;
    /// whether it was new.
    pub(super) fn verified_group(&mut self, src: usize, i: u64, len: u64) -> bool {
        if i >= self.total || self.state.get(i) {
            return false;
        }
        self.state.set(i, true);
        self.verified += 1;
        if let Some(s) = self.sources.get_mut(src) {
            s.verified += len;
        }
        self.done_bytes += len;
        self.dirty = true;
        true
    }

    /// A piece ended (done, cut short, or its connection failed): its
    /// unverified groups that no other piece covers go back to the front
    /// of the queue.
    pub(super) fn piece_done(&mut self, id: u64) {
        let Some(k) = self.in_flight.iter().position(|f| f.id == id) else {
            return;
        };
        let f = self.in_flight.swap_remove(k);
        let mut run: Option<Range<u64>> = None;
        let mut back = Vec::new();
        for i in f.groups {
            let covered = self.state.get(i) || self.in_flight.iter().any(|o| o.groups.contains(&i));
            match (&mut run, covered) {
                (Some(r), false) if r.end == i => r.end = i + 1,
                (_, false) => {
                    if let Some(r) = run.take() {
                        back.push(r);
                    }
                    run = Some(i..i + 1);
                }
                (_, true) => {
                    if let Some(r) = run.take() {
                        back.push(r);
                    }
                }
            }
        }
        back.extend(run);
        for r in back.into_iter().rev() {
            self.pending.push_front(r);
        }
    }

    /// Pieces in flight, for checks.
    #[cfg(test)]
    fn flights(&self) -> &[InFlight] {
        &self.in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sched(groups: u64, piece: u64, sources: usize) -> Sched {
        let state = PartState::empty([7; 32], groups * 16, 4);
        let srcs = (0..sources)
            .map(|k| Src::new(SocketAddr::from(([127, 0, 0, 1], 1000 + k as u16))))
            .collect();
        Sched::new(state, 0, piece, srcs)
    }

    fn piece(t: Take) -> (u64, Range<u64>) {
        match t {
            Take::Piece { id, groups } => (id, groups),
            other => panic!("expected a piece, got {other:?}"),
        }
    }

    /// Every unverified group is pending or in flight.
    fn covered(s: &Sched) -> Result<(), String> {
        for i in 0..s.total {
            if s.state.get(i) {
                continue;
            }
            let pending = s.pending.iter().any(|r| r.contains(&i));
            let flying = s.in_flight.iter().any(|f| f.groups.contains(&i));
            if !pending && !flying {
                return Err(format!("group {i} is lost"));
            }
        }
        Ok(())
    }

    #[test]
    fn pieces_cover_the_file_in_order() {
        let mut s = sched(10, 4, 1);
        assert_eq!(piece(s.take(0, false)).1, 0..4);
        assert_eq!(piece(s.take(0, false)).1, 4..8);
        assert_eq!(piece(s.take(0, false)).1, 8..10);
        assert_eq!(s.take(0, false), Take::Wait);
    }

    #[test]
    fn resumed_groups_are_not_asked_again() {
        let mut state = PartState::empty([7; 32], 10 * 16, 4);
        for i in [0, 1, 5] {
            state.set(i, true);
        }
        let mut s = Sched::new(state, 48, 10, vec![Src::new(([127, 0, 0, 1], 1).into())]);
        assert_eq!(s.verified, 3);
        assert_eq!(piece(s.take(0, false)).1, 2..5);
        assert_eq!(piece(s.take(0, false)).1, 6..10);
    }

    #[test]
    fn an_idle_source_takes_the_unclaimed_half_of_a_piece() {
        let mut s = sched(16, 16, 2);
        let (a, g) = piece(s.take(0, false));
        assert_eq!(g, 0..16);
        assert_eq!(s.claim(a, 0), Some(1));
        assert_eq!(s.claim(a, 1), Some(3));
        // Groups 3..16 are unclaimed: the second source takes 9..16.
        let (_, h) = piece(s.take(1, true));
        assert_eq!(h, 9..16);
        assert_eq!(s.claim(a, 3), Some(7));
        assert_eq!(s.claim(a, 7), Some(9));
        // The first source's piece now ends at 9.
        assert_eq!(s.claim(a, 9), None);
    }

    #[test]
    fn claimed_groups_are_duplicated_only_within_the_budget() {
        // 300 groups: a budget of 3.
        let mut s = sched(300, 300, 2);
        let (a, _) = piece(s.take(0, false));
        let mut at = 0;
        while let Some(to) = s.claim(a, at) {
            if to == 300 {
                break;
            }
            at = to;
        }
        // Everything is claimed; source 0 delivers all but 4 groups.
        for i in 0..296 {
            s.verified_group(0, i, 16);
        }
        // 4 claimed groups are missing: over the budget of 3.
        assert_eq!(s.take(1, true), Take::Wait);
        s.verified_group(0, 296, 16);
        // 3 are missing: within it.
        assert_eq!(piece(s.take(1, true)).1, 297..300);
        // Once helped, not again; the budget is spent anyway.
        assert_eq!(s.take(1, true), Take::Wait);
    }

    #[test]
    fn a_failed_piece_goes_back_to_the_front() {
        let mut s = sched(12, 4, 2);
        let (a, _) = piece(s.take(0, false));
        s.verified_group(0, 0, 16);
        s.piece_done(a);
        assert_eq!(piece(s.take(1, false)).1, 1..4);
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// A connection of this source asks for work (help or not).
        Take(usize, bool),
        /// The owner of the n-th flight reads its next claim and delivers
        /// the given number of its groups.
        Read(usize, u64),
        /// The n-th flight ends (finished, cut, or failed).
        End(usize),
        /// A source fails: its flights end.
        Fail(usize),
    }

    fn op(sources: usize) -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..sources, any::<bool>()).prop_map(|(s, h)| Op::Take(s, h)),
            6 => (0..8usize, 0..40u64).prop_map(|(k, n)| Op::Read(k, n)),
            2 => (0..8usize).prop_map(Op::End),
            1 => (0..sources).prop_map(Op::Fail),
        ]
    }

    /// A model of the connections: the groups each flight's owner read
    /// (claimed and delivered) so far.
    struct Model {
        s: Sched,
        /// Per flight id: the next group its owner reads.
        at: Vec<(u64, u64)>,
        /// Groups delivered, counting repeats.
        delivered: u64,
        failed: Vec<usize>,
    }

    impl Model {
        fn apply(&mut self, op: Op) -> Result<(), String> {
            match op {
                Op::Take(src, help) => {
                    if let Take::Piece { id, groups } = self.s.take(src, help) {
                        if groups.is_empty() {
                            return Err("empty piece".into());
                        }
                        if self.failed.contains(&src) {
                            return Err("a failed source got a piece".into());
                        }
                        self.at.push((id, groups.start));
                    }
                }
                Op::Read(k, n) => {
                    if self.at.is_empty() {
                        return Ok(());
                    }
                    let k = k % self.at.len();
                    let (id, at) = self.at[k];
                    let Some(f) = self.s.in_flight.iter().find(|f| f.id == id) else {
                        return Ok(());
                    };
                    let src = f.source;
                    let mut pos = at;
                    let mut left = n;
                    while left > 0 {
                        let Some(to) = self.s.claim(id, pos) else {
                            break;
                        };
                        let upto = to.min(pos + left);
                        for i in pos..upto {
                            self.delivered += 1;
                            self.s.verified_group(src, i, 16);
                        }
                        left -= upto - pos;
                        pos = upto;
                    }
                    self.at[k].1 = pos;
                }
                Op::End(k) => {
                    if self.at.is_empty() {
                        return Ok(());
                    }
                    let (id, _) = self.at.swap_remove(k % self.at.len());
                    self.s.piece_done(id);
                }
                Op::Fail(src) => {
                    self.s.sources[src].bad = true;
                    self.failed.push(src);
                    let mine: Vec<u64> = self
                        .s
                        .in_flight
                        .iter()
                        .filter(|f| f.source == src)
                        .map(|f| f.id)
                        .collect();
                    self.at.retain(|(id, _)| !mine.contains(id));
                    for id in mine {
                        self.s.piece_done(id);
                    }
                    // Its pieces went back to the queue, not to a flight.
                    if self.s.in_flight.iter().any(|f| f.source == src) {
                        return Err("a failed source keeps a piece".into());
                    }
                }
            }
            covered(&self.s)
        }

        /// The good sources fetch everything left, every connection asking
        /// for help when idle, each reading a claim at a time in turn.
        fn finish(&mut self, sources: usize) -> Result<(), String> {
            let good: Vec<usize> = (0..sources).filter(|s| !self.failed.contains(s)).collect();
            for _ in 0..100_000 {
                if self.s.complete() {
                    return Ok(());
                }
                for &src in &good {
                    if !self.at.iter().any(|(id, _)| {
                        self.s
                            .flights()
                            .iter()
                            .any(|f| f.id == *id && f.source == src)
                    }) {
                        self.apply(Op::Take(src, true))?;
                    }
                }
                if self.at.is_empty() {
                    return Err("nothing in flight and not complete".into());
                }
                let k = self.at.len() - 1;
                let (id, at) = self.at[k];
                let ends = self
                    .s
                    .flights()
                    .iter()
                    .find(|f| f.id == id)
                    .is_none_or(|f| at >= f.groups.end);
                if ends {
                    self.apply(Op::End(k))?;
                } else {
                    self.apply(Op::Read(k, 3))?;
                }
                // Rotate, so every connection makes progress.
                if !self.at.is_empty() {
                    self.at.rotate_left(1);
                }
            }
            Err("did not finish".into())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever the order of takes, reads, ends and failures: no
        /// unverified group is ever lost, a failed source's groups go back
        /// to the queue, finished pieces lose nothing, and the download
        /// completes with at most the duplicate budget fetched twice.
        #[test]
        fn invariants_hold(
            groups in 1u64..400,
            piece in 1u64..64,
            sources in 1usize..4,
            ops in prop::collection::vec(op(3), 0..200),
        ) {
            let mut m = Model {
                s: sched(groups, piece, sources),
                at: Vec::new(),
                delivered: 0,
                failed: Vec::new(),
            };
            for o in ops {
                let o = match o {
                    Op::Take(s, h) => Op::Take(s % sources, h),
                    Op::Fail(s) if sources > 1 && m.failed.len() + 1 < sources => {
                        Op::Fail(s % sources)
                    }
                    Op::Fail(_) => continue,
                    other => other,
                };
                if let Op::Fail(s) = o {
                    if m.failed.contains(&s) {
                        continue;
                    }
                }
                m.apply(o).map_err(TestCaseError::fail)?;
            }
            m.finish(sources).map_err(TestCaseError::fail)?;
            prop_assert!(m.s.complete());
            prop_assert!(m.s.in_flight.iter().all(|f| !m.failed.contains(&f.source)));
            let budget = (groups * DUPLICATE_PERCENT / 100).max(1);
            prop_assert!(
                m.delivered <= groups + budget,
                "{} groups delivered for {} (budget {})", m.delivered, groups, budget
            );
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// With equal sources and no failure, the endgame fetches at most
        /// 1% (one group at least) twice.
        #[test]
        fn endgame_duplication_is_bounded(
            groups in 1u64..1000,
            sources in 2usize..4,
        ) {
            let piece = (groups / (sources as u64 * 4)).max(1);
            let mut m = Model {
                s: sched(groups, piece, sources),
                at: Vec::new(),
                delivered: 0,
                failed: Vec::new(),
            };
            m.finish(sources).map_err(TestCaseError::fail)?;
            let budget = (groups / 100).max(1);
            prop_assert!(m.delivered <= groups + budget);
        }
    }
}
