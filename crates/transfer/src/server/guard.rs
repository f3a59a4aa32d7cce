//! Defences of the serving side against peers that hold connections
//! without using them: caps on connections and upload slots per source
//! address, a waiting queue that one source cannot fill, and log lines
//! about refused connections that are rate-limited.
//!
//! Everything here is bookkeeping without I/O; the accept loop in
//! `server.rs` consults it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

/// Limits that keep idle, slow or flooding peers from holding the server.
/// Build it with `ServerLimits { field: value, ..Default::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Time a peer has, from the connection, to send its request header:
    /// the classic partial size and name, or the rutella hello. A
    /// connection holds no upload slot before that.
    pub header_timeout: Duration,
    /// Connections open at once, whatever they are doing; one more is
    /// closed at once.
    pub max_open: usize,
    /// Connections open at once from one address; one more is closed at
    /// once.
    pub max_open_per_ip: usize,
    /// Upload slots one address may hold at once.
    pub max_slots_per_ip: usize,
    /// Classic requests waiting for a slot, in all.
    pub max_waiting: usize,
    /// Classic requests waiting for a slot from one address.
    pub max_waiting_per_ip: usize,
    /// How long a classic request may wait for a slot.
    pub queue_timeout: Duration,
    /// A rutella session is closed when it has not been sent
    /// `session_min_bytes` of answers within this time (from its start,
    /// then from the last time it reached that amount): an idle session,
    /// or one that only asks cheap questions slowly, gives its slot back.
    pub session_idle_timeout: Duration,
    /// Bytes of answers a rutella session must take per
    /// `session_idle_timeout` to keep its slot.
    pub session_min_bytes: u64,
    /// Log lines about refused connections are gathered and written at most
    /// once per this interval.
    pub flood_log_interval: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_timeout: Duration::from_secs(5),
            max_open: 256,
            max_open_per_ip: 16,
            max_slots_per_ip: 4,
            max_waiting: 64,
            max_waiting_per_ip: 2,
            queue_timeout: Duration::from_secs(10),
            session_idle_timeout: Duration::from_secs(10),
            session_min_bytes: 64 * 1024,
            flood_log_interval: Duration::from_secs(10),
        }
    }
}

/// The address a peer is counted under: IPv4-mapped IPv6 addresses count
/// as the IPv4 address they carry.
pub(crate) fn source_of(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The bookkeeping stays consistent between statements; a panic
    // elsewhere must not stop the server.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a connection or a request was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Too many connections open in all.
    Open,
    /// Too many connections open from this address.
    OpenPerSource,
    /// Every slot this address may hold is taken (rutella: no queue).
    SlotsPerSource,
    /// Every slot is taken (rutella: no queue).
    Slots,
    /// The waiting queue is full.
    Queue,
    /// This address already has its share of the waiting queue.
    QueuePerSource,
    /// No slot came free in time.
    QueueTimeout,
    /// The request header did not arrive in time.
    HeaderTimeout,
    /// A rutella session took too few answers for too long.
    SessionIdle,
}

impl Refusal {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::Open => "too many connections open",
            Refusal::OpenPerSource => "too many connections open from that address",
            Refusal::SlotsPerSource => "that address holds its share of upload slots",
            Refusal::Slots => "every upload slot is taken",
            Refusal::Queue => "the waiting queue is full",
            Refusal::QueuePerSource => "that address holds its share of the waiting queue",
            Refusal::QueueTimeout => "no upload slot came free in time",
            Refusal::HeaderTimeout => "no request within the header deadline",
            Refusal::SessionIdle => "rutella sessions that kept asking for too little data",
        }
    }
}

/// Open connections, counted in all and per address.
pub(crate) struct Conns {
    max: usize,
    per_ip: usize,
    st: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One counted connection; dropping it uncounts it.
pub(crate) struct ConnGuard {
    conns: Arc<Conns>,
    ip: IpAddr,
}

impl Conns {
    pub(crate) fn new(limits: &ServerLimits) -> Arc<Conns> {
        Arc::new(Conns {
            max: limits.max_open.max(1),
            per_ip: limits.max_open_per_ip.max(1),
            st: Mutex::new((0, HashMap::new())),
        })
    }

    /// Counts a new connection from `ip`, unless a cap is reached.
    pub(crate) fn open(self: &Arc<Self>, ip: IpAddr) -> Result<ConnGuard, Refusal> {
        let mut st = lock(&self.st);
        if st.0 >= self.max {
            return Err(Refusal::Open);
        }
        let n = st.1.entry(ip).or_insert(0);
        if *n >= self.per_ip {
            return Err(Refusal::OpenPerSource);
        }
        *n += 1;
        st.0 += 1;
        Ok(ConnGuard {
            conns: Arc::clone(self),
            ip,
        })
    }

    /// Connections open now.
    #[cfg(test)]
    fn open_now(&self) -> usize {
        lock(&self.st).0
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut st = lock(&self.conns.st);
        st.0 = st.0.saturating_sub(1);
        if let Some(n) = st.1.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.1.remove(&self.ip);
            }
        }
    }
}

struct Waiter {
    id: u64,
    ip: IpAddr,
    tx: oneshot::Sender<()>,
}

struct SlotState {
    /// Every slot there is (it may change while slots are held).
    total: usize,
    /// Slots held now (above `total` for a while after it was lowered).
    held: usize,
    active: HashMap<IpAddr, usize>,
    waiting: VecDeque<Waiter>,
    next_id: u64,
}

impl SlotState {
    fn can_grant(&self, ip: IpAddr, per_ip: usize) -> bool {
        self.free() > 0 && self.active.get(&ip).copied().unwrap_or(0) < per_ip
    }

    fn free(&self) -> usize {
        self.total.saturating_sub(self.held)
    }

    fn grant(&mut self, ip: IpAddr) {
        self.held += 1;
        *self.active.entry(ip).or_insert(0) += 1;
    }

    fn ungrant(&mut self, ip: IpAddr) {
        self.held = self.held.saturating_sub(1);
        if let Some(n) = self.active.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.active.remove(&ip);
            }
        }
    }

    /// Gives free slots to the oldest waiters whose address is below its
    /// cap (a waiter from an address at its cap lets the others pass).
    fn dispatch(&mut self, per_ip: usize) {
        while self.free() > 0 {
            let Some(k) = self
                .waiting
                .iter()
                .position(|w| self.active.get(&w.ip).copied().unwrap_or(0) < per_ip)
            else {
                return;
            };
            let Some(w) = self.waiting.remove(k) else {
                return;
            };
            self.grant(w.ip);
            if w.tx.send(()).is_err() {
                self.ungrant(w.ip);
            }
        }
    }
}

/// Upload slots: at most `total` at once and `per_ip` per address, with a
/// bounded queue in which each address has at most `waiting_per_ip`
/// places.
pub(crate) struct Slots {
    per_ip: usize,
    max_waiting: usize,
    waiting_per_ip: usize,
    st: Mutex<SlotState>,
}

/// A held slot; dropping it frees it for the next waiter.
pub(crate) struct Slot {
    slots: Arc<Slots>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut st = lock(&self.slots.st);
        st.ungrant(self.ip);
        st.dispatch(self.slots.per_ip);
    }
}

/// A place in the queue; dropped before its grant is taken, it leaves the
/// queue (or gives a grant that arrived meanwhile back).
struct Waiting {
    slots: Arc<Slots>,
    id: u64,
    ip: IpAddr,
    rx: oneshot::Receiver<()>,
    taken: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.taken {
            return;
        }
        let mut st = lock(&self.slots.st);
        if let Some(k) = st.waiting.iter().position(|w| w.id == self.id) {
            st.waiting.remove(k);
            return;
        }
        // Granted under the lock before we took it: give it back.
        if self.rx.try_recv().is_ok() {
            st.ungrant(self.ip);
            st.dispatch(self.slots.per_ip);
        }
    }
}

impl Slots {
    pub(crate) fn new(total: usize, limits: &ServerLimits) -> Arc<Slots> {
        let total = total.max(1);
        Arc::new(Slots {
            per_ip: limits.max_slots_per_ip.max(1),
            max_waiting: limits.max_waiting,
            waiting_per_ip: limits.max_waiting_per_ip,
            st: Mutex::new(SlotState {
                total,
                held: 0,
                active: HashMap::new(),
                waiting: VecDeque::new(),
                next_id: 0,
            }),
        })
    }

    /// Every slot there is.
    pub(crate) fn total(&self) -> usize {
        lock(&self.st).total
    }

    /// Changes how many slots there are (at least 1): more are given to
    /// waiters at once; fewer are taken back as uploads end (none is cut).
    pub(crate) fn set_total(&self, total: usize) {
        let mut st = lock(&self.st);
        st.total = total.max(1);
        st.dispatch(self.per_ip);
    }

    /// A slot for `ip` now, or why not.
    pub(crate) fn try_take(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let mut st = lock(&self.st);
        // A free slot never has a waiter that could take it (every release
        // dispatches), so nobody is passed over here.
        if st.can_grant(ip, self.per_ip) {
            st.grant(ip);
            return Ok(Slot {
                slots: Arc::clone(self),
                ip,
            });
        }
        if st.free() == 0 {
            Err(Refusal::Slots)
        } else {
            Err(Refusal::SlotsPerSource)
        }
    }

    /// A slot for `ip`, waiting in the queue until `deadline` if none is
    /// free.
    pub(crate) async fn take(
        self: &Arc<Self>,
        ip: IpAddr,
        deadline: Instant,
    ) -> Result<Slot, Refusal> {
        let mut waiting = {
            let mut st = lock(&self.st);
            if st.can_grant(ip, self.per_ip) {
                st.grant(ip);
                return Ok(Slot {
                    slots: Arc::clone(self),
                    ip,
                });
            }
            if st.waiting.len() >= self.max_waiting {
                return Err(Refusal::Queue);
            }
            if st.waiting.iter().filter(|w| w.ip == ip).count() >= self.waiting_per_ip {
                return Err(Refusal::QueuePerSource);
            }
            st.next_id += 1;
            let id = st.next_id;
            let (tx, rx) = oneshot::channel();
            st.waiting.push_back(Waiter { id, ip, tx });
            Waiting {
                slots: Arc::clone(self),
                id,
                ip,
                rx,
                taken: false,
            }
        };
        let granted = matches!(
            tokio::time::timeout_at(deadline, &mut waiting.rx).await,
            Ok(Ok(()))
        );
        if granted {
            waiting.taken = true;
            return Ok(Slot {
                slots: Arc::clone(self),
                ip,
            });
        }
        // Dropping `waiting` leaves the queue, or gives back a grant that
        // came just too late.
        Err(Refusal::QueueTimeout)
    }

    /// Slots held now, and requests waiting.
    #[cfg(test)]
    fn usage(&self) -> (usize, usize) {
        let st = lock(&self.st);
        (st.held, st.waiting.len())
    }
}

/// The upload slots of a server, as a handle that changes their number
/// while it runs: give it as [`crate::ServerConfig::slots`].
#[derive(Clone)]
pub struct UploadSlots(Arc<Slots>);

impl std::fmt::Debug for UploadSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UploadSlots({})", self.total())
    }
}

impl UploadSlots {
    /// `total` slots (at least 1) under these limits (per address, queue).
    pub fn new(total: usize, limits: &ServerLimits) -> UploadSlots {
        UploadSlots(Slots::new(total, limits))
    }

    /// Every slot there is.
    pub fn total(&self) -> usize {
        self.0.total()
    }

    /// Slots held now.
    pub fn held(&self) -> usize {
        lock(&self.0.st).held
    }

    /// Changes the number of slots (at least 1), live: more are given to
    /// waiting requests at once; with fewer, no upload is cut, new ones
    /// wait until enough have ended.
    pub fn set_total(&self, total: usize) {
        self.0.set_total(total);
    }

    pub(crate) fn slots(&self) -> Arc<Slots> {
        Arc::clone(&self.0)
    }
}

/// Most addresses named in one flood log round; the rest are summed.
const FLOOD_NAMED: usize = 16;

struct FloodState {
    since: Instant,
    counts: BTreeMap<IpAddr, (u64, &'static str)>,
    others: u64,
}

/// Counts refused connections per address and writes them to the log at
/// most once per interval: "dropped 57 connections from 127.0.0.9 in the
/// last 10 s (…)".
pub(crate) struct FloodLog {
    interval: Duration,
    st: Mutex<FloodState>,
}

impl FloodLog {
    pub(crate) fn new(interval: Duration) -> FloodLog {
        let now = Instant::now();
        FloodLog {
            interval,
            st: Mutex::new(FloodState {
                // The first refusal is logged at once.
                since: now.checked_sub(interval).unwrap_or(now),
                counts: BTreeMap::new(),
                others: 0,
            }),
        }
    }

    /// Counts one refusal, and logs when the interval is over.
    pub(crate) fn note(&self, ip: IpAddr, why: Refusal) {
        for line in self.count(ip, why) {
            tracing::warn!("{line}");
        }
    }

    /// Logs what was counted, if the interval is over.
    pub(crate) fn tick(&self) {
        for line in self.due() {
            tracing::warn!("{line}");
        }
    }

    /// Counts one refusal; the lines to log, if the interval is over.
    fn count(&self, ip: IpAddr, why: Refusal) -> Vec<String> {
        let mut st = lock(&self.st);
        let named = st.counts.len();
        match st.counts.get_mut(&ip) {
            Some(c) => {
                c.0 += 1;
                c.1 = why.reason();
            }
            None if named < FLOOD_NAMED => {
                st.counts.insert(ip, (1, why.reason()));
            }
            None => st.others += 1,
        }
        Self::flush(self.interval, &mut st)
    }

    /// The lines to log, if the interval is over.
    fn due(&self) -> Vec<String> {
        let mut st = lock(&self.st);
        Self::flush(self.interval, &mut st)
    }

    fn flush(interval: Duration, st: &mut FloodState) -> Vec<String> {
        let now = Instant::now();
        let span = now.saturating_duration_since(st.since);
        if span < interval || (st.counts.is_empty() && st.others == 0) {
            // Too early, or quiet (then the next refusal is logged at once).
            return Vec::new();
        }
        let secs = span.min(interval).as_secs_f64();
        let mut lines = Vec::new();
        for (ip, (n, why)) in std::mem::take(&mut st.counts) {
            let s = if n == 1 { "" } else { "s" };
            lines.push(format!(
                "dropped {n} connection{s} from {ip} in the last {secs:.0} s ({why})"
            ));
        }
        if st.others > 0 {
            lines.push(format!(
                "dropped {} connections from other addresses in the last {secs:.0} s",
                st.others
            ));
            st.others = 0;
        }
        st.since = now;
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn connections_are_capped_in_all_and_per_source() {
        let conns = Conns::new(&ServerLimits {
            max_open: 5,
            max_open_per_ip: 3,
            ..Default::default()
        });
        let a: Vec<_> = (0..3).map(|_| conns.open(ip(1)).unwrap()).collect();
        assert_eq!(conns.open(ip(1)).err(), Some(Refusal::OpenPerSource));
        let b: Vec<_> = (0..2).map(|_| conns.open(ip(2)).unwrap()).collect();
        assert_eq!(conns.open(ip(3)).err(), Some(Refusal::Open));
        drop(a);
        assert_eq!(conns.open_now(), 2);
        assert!(conns.open(ip(1)).is_ok());
        drop(b);
        assert_eq!(conns.open_now(), 0);
        assert!(
            lock(&conns.st).1.is_empty(),
            "no entry outlives its connections"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn one_source_cannot_fill_the_queue_nor_every_slot() {
        let limits = ServerLimits {
            max_slots_per_ip: 2,
            max_waiting: 3,
            max_waiting_per_ip: 2,
            ..Default::default()
        };
        let slots = Slots::new(3, &limits);
        let far = Instant::now() + Duration::from_secs(60);
        let a1 = slots.try_take(ip(1)).unwrap();
        let _a2 = slots.try_take(ip(1)).unwrap();
        // Its share of the slots is taken while one slot is still free.
        assert_eq!(slots.try_take(ip(1)).err(), Some(Refusal::SlotsPerSource));
        let b1 = slots.try_take(ip(2)).unwrap();
        // All are taken: source 1 gets two places in the queue, no third.
        let s = Arc::clone(&slots);
        let w1 = tokio::spawn(async move { s.take(ip(1), far).await });
        let s = Arc::clone(&slots);
        let w2 = tokio::spawn(async move { s.take(ip(1), far).await });
        tokio::task::yield_now().await;
        assert_eq!(slots.usage(), (3, 2));
        assert_eq!(
            slots.take(ip(1), far).await.err(),
            Some(Refusal::QueuePerSource)
        );
        // Another source still gets in line; the queue itself is bounded.
        let s = Arc::clone(&slots);
        let w3 = tokio::spawn(async move { s.take(ip(3), far).await });
        tokio::task::yield_now().await;
        assert_eq!(slots.take(ip(4), far).await.err(), Some(Refusal::Queue));
        // Source 1 is at its cap: its older waiters let source 3 pass.
        drop(b1);
        let c1 = w3.await.unwrap().unwrap();
        assert_eq!(c1.ip, ip(3));
        // A slot source 1 frees goes to its first waiter, not the second.
        drop(a1);
        let a3 = w1.await.unwrap().unwrap();
        assert_eq!(a3.ip, ip(1));
        tokio::task::yield_now().await;
        assert!(!w2.is_finished());
        w2.abort();
        let _ = w2.await;
        assert_eq!(
            slots.usage(),
            (3, 0),
            "an abandoned waiter leaves the queue"
        );
        drop((a3, c1));
        assert_eq!(slots.usage(), (1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn the_number_of_slots_changes_while_they_are_held() {
        let limits = ServerLimits {
            max_slots_per_ip: 8,
            ..ServerLimits::default()
        };
        let handle = UploadSlots::new(1, &limits);
        let slots = handle.slots();
        let far = Instant::now() + Duration::from_secs(60);
        let a = slots
            .try_take(ip(1))
            .unwrap_or_else(|_| panic!("a free slot"));
        assert_eq!(slots.try_take(ip(2)).err(), Some(Refusal::Slots));
        let s = Arc::clone(&slots);
        let waiter = tokio::spawn(async move { s.take(ip(2), far).await });
        tokio::task::yield_now().await;
        // More slots: the waiter is served at once, without a release.
        handle.set_total(2);
        let b = waiter.await.unwrap_or_else(|e| panic!("{e}"));
        assert!(b.is_ok());
        assert_eq!((handle.total(), handle.held()), (2, 2));
        // Fewer: nobody is cut, and a new request waits until enough ended.
        handle.set_total(1);
        assert_eq!(handle.held(), 2);
        assert_eq!(slots.try_take(ip(3)).err(), Some(Refusal::Slots));
        drop(a);
        assert_eq!(slots.try_take(ip(3)).err(), Some(Refusal::Slots));
        drop(b);
        assert!(slots.try_take(ip(3)).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_are_logged_at_most_once_per_interval() {
        let log = FloodLog::new(Duration::from_secs(10));
        // The first is told at once.
        assert_eq!(
            log.count(ip(9), Refusal::OpenPerSource),
            vec!["dropped 1 connection from 127.0.0.9 in the last 10 s (too many connections open from that address)"]
        );
        // The next ones are gathered for the rest of the interval.
        for _ in 0..56 {
            assert!(log.count(ip(9), Refusal::OpenPerSource).is_empty());
        }
        for k in 0..40 {
            assert!(log.count(ip(100 + k), Refusal::HeaderTimeout).is_empty());
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(log.due().is_empty());
        tokio::time::advance(Duration::from_secs(5)).await;
        let lines = log.due();
        // 56 from .9, 15 more addresses named, 25 summed.
        assert_eq!(lines.len(), 17, "{lines:#?}");
        assert_eq!(
            lines[0],
            "dropped 56 connections from 127.0.0.9 in the last 10 s (too many connections open from that address)"
        );
        assert_eq!(
            lines[16],
            "dropped 25 connections from other addresses in the last 10 s"
        );
        // Nothing new: nothing logged; after a quiet interval, at once again.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(log.due().is_empty());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(log.count(ip(9), Refusal::Open).len(), 1);
        assert!(log.count(ip(9), Refusal::Open).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gives_up_at_its_deadline() {
        let slots = Slots::new(1, &ServerLimits::default());
        let held = slots.try_take(ip(1)).unwrap();
        let soon = Instant::now() + Duration::from_millis(100);
        assert_eq!(
            slots.take(ip(2), soon).await.err(),
            Some(Refusal::QueueTimeout)
        );
        assert_eq!(slots.usage(), (1, 0));
        drop(held);
        assert_eq!(slots.usage(), (0, 0));
        assert!(slots.try_take(ip(2)).is_ok());
    }
}
