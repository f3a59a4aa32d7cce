//! The event queue: a timing wheel of one-millisecond buckets in front of
//! a binary heap for the far future.
//!
//! Events come out in exactly the order of a single binary heap keyed by
//! (time, key), where the key is given by the caller (the engine makes it
//! from the sending peer and its own count of events, so that the order
//! does not depend on how the peers are split between threads); but almost every event of a simulation (datagrams a few
//! tens of milliseconds away, timers within a minute) lands in a bucket of
//! the wheel with one `Vec::push`, and only the bucket being played is
//! kept as a (small) heap.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// An event in the queue, ordered by time then by key.
pub(crate) struct Entry<E> {
    pub(crate) t: u64,
    pub(crate) seq: u64,
    pub(crate) ev: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.seq) == (o.t, o.seq)
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<E> Ord for Entry<E> {
    /// Reversed: the earliest entry is the greatest (top of a max-heap).
    fn cmp(&self, o: &Self) -> Ordering {
        (o.t, o.seq).cmp(&(self.t, self.seq))
    }
}

/// Width of a bucket, in nanoseconds of virtual time (1 ms).
const BUCKET_NS: u64 = 1 << 20;
/// Buckets in the wheel (about 69 s of virtual time).
const WHEEL: usize = 1 << 16;

/// A priority queue of events by (time, key).
pub(crate) struct EventQueue<E> {
    /// Bucket `k % WHEEL` holds the events of absolute bucket `k`, for
    /// `cur < k < cur + WHEEL`, in no particular order.
    wheel: Vec<Vec<Entry<E>>>,
    /// The events of bucket `cur` and earlier, as a heap.
    now: BinaryHeap<Entry<E>>,
    /// Events at bucket `cur + WHEEL` or later.
    far: BinaryHeap<Entry<E>>,
    /// The absolute bucket being played.
    cur: u64,
    /// Events in the wheel (outside `now` and `far`).
    in_wheel: usize,
}

impl<E> EventQueue<E> {
    pub(crate) fn new() -> Self {
        EventQueue {
            wheel: (0..WHEEL).map(|_| Vec::new()).collect(),
            now: BinaryHeap::new(),
            far: BinaryHeap::new(),
            cur: 0,
            in_wheel: 0,
        }
    }

    /// Queues `ev` at time `t`, ordered among the events at `t` by `key`
    /// (the caller keeps keys unique).
    pub(crate) fn push(&mut self, t: u64, key: u64, ev: E) {
        let e = Entry { t, seq: key, ev };
        let k = t / BUCKET_NS;
        if k <= self.cur {
            self.now.push(e);
        } else if k < self.cur + WHEEL as u64 {
            self.wheel[(k % WHEEL as u64) as usize].push(e);
            self.in_wheel += 1;
        } else {
            self.far.push(e);
        }
    }

    /// Takes the earliest event.
    pub(crate) fn pop(&mut self) -> Option<Entry<E>> {
        self.peek_t()?;
        self.now.pop()
    }

    /// The time of the earliest event, without taking it.
    pub(crate) fn peek_t(&mut self) -> Option<u64> {
        loop {
            if let Some(e) = self.now.peek() {
                return Some(e.t);
            }
            if self.in_wheel == 0 {
                // Nothing within the wheel: jump to the next far event.
                let next = self.far.peek()?.t / BUCKET_NS;
                self.cur = next.max(self.cur + 1);
            } else {
                self.cur += 1;
            }
            let slot = (self.cur % WHEEL as u64) as usize;
            let bucket = std::mem::take(&mut self.wheel[slot]);
            self.in_wheel -= bucket.len();
            let mut heap = BinaryHeap::from(bucket);
            // Far events that now fall within the wheel's horizon.
            let horizon = self.cur + WHEEL as u64;
            while self.far.peek().is_some_and(|e| e.t / BUCKET_NS < horizon) {
                let Some(e) = self.far.pop() else { break };
                let k = e.t / BUCKET_NS;
                if k <= self.cur {
                    heap.push(e);
                } else {
                    self.wheel[(k % WHEEL as u64) as usize].push(e);
                    self.in_wheel += 1;
                }
            }
            // The emptied heap's allocation is freed, not kept by a bucket:
            // sixty thousand buckets would each keep their largest size.
            self.now = heap;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The wheel gives the order of one heap keyed by (time, key),
    /// with pushes interleaved with pops as in a simulation.
    #[test]
    fn same_order_as_one_heap() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut q = EventQueue::new();
        let mut reference = BinaryHeap::new();
        let mut seq = 0u64;
        let mut now = 0u64;
        let mut popped = 0;
        for round in 0..20_000u64 {
            let pushes = rng.gen_range(0..4);
            for _ in 0..pushes {
                let dt = match rng.gen_range(0..4) {
                    0 => 0,
                    1 => rng.gen_range(0..BUCKET_NS * 3),
                    2 => rng.gen_range(0..BUCKET_NS * 200),
                    _ => rng.gen_range(0..BUCKET_NS * WHEEL as u64 * 3),
                };
                seq += 1;
                q.push(now + dt, seq, round);
                reference.push(Entry {
                    t: now + dt,
                    seq,
                    ev: round,
                });
            }
            if rng.gen_bool(0.6) {
                let peeked = q.peek_t();
                assert_eq!(peeked, reference.peek().map(|e| e.t));
                let a = q.pop().map(|e| (e.t, e.seq, e.ev));
                let b = reference.pop().map(|e| (e.t, e.seq, e.ev));
                assert_eq!(a, b);
                if let Some((t, _, _)) = a {
                    assert!(t >= now);
                    now = t;
                    popped += 1;
                }
            }
        }
        while let Some(b) = reference.pop() {
            let a = q.pop().map(|e| (e.t, e.seq, e.ev));
            assert_eq!(a, Some((b.t, b.seq, b.ev)));
        }
        assert!(q.pop().is_none());
        assert!(popped > 5_000);
    }
}
