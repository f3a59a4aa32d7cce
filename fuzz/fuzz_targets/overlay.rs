//! The overlay state machine under random sequences of datagrams from
//! several source addresses, clock steps and user commands, in classic and
//! scalable mode with a small configuration. It is driven as the node
//! drives it (drain every transmit and event after each call, call
//! `handle_timeout` when `poll_timeout` is due), and after every step:
//!
//! - nothing panics;
//! - the peer list stays within `max_peers` plus the scalable neighbour
//!   bound `max_degree` and the leaf bound `max_leaves` (the scalable
//!   node is an ultrapeer);
//! - one call queues at most `per_call_bound()` datagrams and events (see
//!   there for why);
//! - every datagram fits `MAX_DATAGRAM`;
//! - `poll_timeout` does not stay in the past: after a few `handle_timeout`
//!   calls at the same instant it lies in the future, so a driver never
//!   spins.
#![no_main]

use arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use rutella_fuzz::{addr, name, Datagram, IPS, OWN_PORT};
use rutella_proto::{
    Config, Event, HitFile, IncomingQuery, Mode, Overlay, ScalableConfig, Tier, MAX_DATAGRAM,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const MAX_PEERS: usize = 16;
const MAX_DEGREE: usize = 4;
/// Leaves an ultrapeer keeps (the node runs as an ultrapeer, so that
/// leaves may join it).
const MAX_LEAVES: usize = 2;
const MAX_SEARCHES: usize = 4;
const MAX_HITS: usize = 8;
const HOST_CACHE: usize = 16;
/// Most steps taken from one input.
const MAX_STEPS: usize = 64;
/// `handle_timeout` calls at one instant after which a due timeout means
/// the driver would spin.
const MAX_CATCH_UP: usize = 8;

/// The most datagrams (and, separately, events) one call may queue. One
/// call does at most one of these, each bounded by the configuration:
/// a ping forwarded to every classic peer (`max_peers`) plus its pong; a
/// ping round to every classic peer and the bootstrap; a maintenance tick
/// that pings every neighbour, sends join requests (bounded by the host
/// cache) and steps every running search, each step sending at most one
/// query per neighbour (`max_searches * max_degree`); an answer split over
/// at most one datagram per file (`max_hits_per_answer`); a search sent to
/// every peer and neighbour. The sum of all of these, plus a few single
/// replies, bounds every call with room to spare.
fn per_call_bound() -> usize {
    MAX_PEERS + (MAX_DEGREE + MAX_LEAVES) * (1 + MAX_SEARCHES) + HOST_CACHE + MAX_HITS + 8
}

/// Largest counts seen, printed when `RUTELLA_FUZZ_STATS` is set (to
/// compare the bounds with what a corpus reaches).
static MAX_SENT: AtomicUsize = AtomicUsize::new(0);
static MAX_EVENTS: AtomicUsize = AtomicUsize::new(0);
static MAX_PEERS_SEEN: AtomicUsize = AtomicUsize::new(0);

fn record(max: &AtomicUsize, what: &str, n: usize) {
    static ON: OnceLock<bool> = OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("RUTELLA_FUZZ_STATS").is_some())
        && max.fetch_max(n, Ordering::Relaxed) < n
    {
        eprintln!("stats: most {what} so far: {n}");
    }
}

#[derive(Debug)]
enum Step {
    Datagram(SocketAddr, Datagram),
    Raw(SocketAddr, Vec<u8>),
    Advance(Duration),
    Connect(SocketAddr),
    Search(String),
    Answer(usize, Vec<HitFile>),
}

impl<'a> Arbitrary<'a> for Step {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.int_in_range(0u8..=15)? {
            0..=6 => Step::Datagram(addr(u)?, u.arbitrary()?),
            7 => Step::Raw(addr(u)?, u.arbitrary()?),
            8..=10 => Step::Advance(Duration::from_millis(match u.int_in_range(0u8..=3)? {
                0 => u64::from(u.arbitrary::<u16>()?),
                _ => u64::from(u.int_in_range(0u16..=400)?),
            })),
            11 => Step::Connect(addr(u)?),
            12 => Step::Search(name(u)?),
            _ => {
                let which = u.int_in_range(0usize..=3)?;
                let n = u.int_in_range(0usize..=12)?;
                let mut files = Vec::with_capacity(n);
                for _ in 0..n {
                    let mut f = HitFile::named(name(u)?);
                    if u.arbitrary()? {
                        f.size = Some(u.arbitrary()?);
                        f.hash = Some(u.arbitrary()?);
                    }
                    files.push(f);
                }
                Step::Answer(which, files)
            }
        })
    }
}

#[derive(Debug)]
struct Input {
    scalable: bool,
    seed: u64,
    steps: Vec<Step>,
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let scalable = u.arbitrary()?;
        let seed = u.arbitrary()?;
        let mut steps = Vec::new();
        while steps.len() < MAX_STEPS && !u.is_empty() {
            steps.push(u.arbitrary()?);
        }
        Ok(Input {
            scalable,
            seed,
            steps,
        })
    }
}

/// A small configuration. `..Default::default()` keeps settings added to
/// `Config` later at their defaults, so this target keeps building.
#[allow(clippy::needless_update)]
fn config(scalable: bool, seed: u64) -> Config {
    Config {
        udp_port: OWN_PORT,
        tcp_port: OWN_PORT,
        ping_interval: Duration::from_millis(1000),
        pong_timeout: Duration::from_millis(300),
        search_timeout: Duration::from_millis(500),
        ping_ttl: 1,
        max_peers: MAX_PEERS,
        max_searches: MAX_SEARCHES,
        max_hits_per_answer: MAX_HITS,
        seed,
        mode: if scalable {
            Mode::Scalable
        } else {
            Mode::Classic
        },
        scalable: ScalableConfig {
            min_degree: 2,
            target_degree: 3,
            max_degree: MAX_DEGREE,
            ping_interval: Duration::from_millis(1000),
            pong_timeout: Duration::from_millis(300),
            host_cache: HOST_CACHE,
            hosts_per_pong: 4,
            step_wait: Duration::from_millis(100),
            max_search_time: Duration::from_millis(1000),
            seen_queries: 32,
            join_walk: 2,
            tier: Tier::Ultrapeer,
            max_leaves: MAX_LEAVES,
            ..ScalableConfig::default()
        },
        ..Config::default()
    }
}

struct Driver {
    o: Overlay,
    now: Instant,
    queries: Vec<IncomingQuery>,
}

impl Driver {
    /// Drains what the last call queued and checks the bounds.
    fn drain(&mut self, what: &str) {
        let mut sent = 0;
        while let Some(t) = self.o.poll_transmit() {
            sent += 1;
            let len = t.encode(IPS[0]).len();
            assert!(len <= MAX_DATAGRAM, "{what}: a datagram of {len} bytes");
        }
        record(&MAX_SENT, "datagrams queued by one call", sent);
        assert!(sent <= per_call_bound(), "{what}: {sent} datagrams queued");
        let mut events = 0;
        while let Some(e) = self.o.poll_event() {
            events += 1;
            if let Event::Query(q) = e {
                if self.queries.len() == 4 {
                    self.queries.remove(0);
                }
                self.queries.push(q);
            }
        }
        record(&MAX_EVENTS, "events queued by one call", events);
        assert!(events <= per_call_bound(), "{what}: {events} events queued");
        let peers = self.o.peers().len();
        record(&MAX_PEERS_SEEN, "peers listed", peers);
        assert!(
            peers <= MAX_PEERS + MAX_DEGREE + MAX_LEAVES,
            "{what}: {peers} peers listed"
        );
    }

    /// Runs due timeouts as the node's event loop does.
    fn timeouts(&mut self) {
        for _ in 0..MAX_CATCH_UP {
            match self.o.poll_timeout() {
                Some(t) if t <= self.now => {
                    self.o.handle_timeout(self.now);
                    self.drain("handle_timeout");
                }
                _ => return,
            }
        }
        let t = self.o.poll_timeout();
        assert!(
            t.is_none_or(|t| t > self.now),
            "poll_timeout stays in the past after {MAX_CATCH_UP} handle_timeout calls"
        );
    }
}

fuzz_target!(|input: Input| {
    let start = Instant::now();
    let mut d = Driver {
        o: Overlay::new(config(input.scalable, input.seed), start),
        now: start,
        queries: Vec::new(),
    };
    d.o.add_own_ip(IPS[0]);
    for step in input.steps {
        match step {
            Step::Datagram(from, dg) => {
                d.o.handle_datagram(d.now, from, &dg.0);
                d.drain("handle_datagram");
            }
            Step::Raw(from, bytes) => {
                d.o.handle_datagram(d.now, from, &bytes);
                d.drain("handle_datagram (raw)");
            }
            Step::Advance(by) => d.now += by,
            Step::Connect(to) => {
                d.o.connect(d.now, to, to.port());
                d.drain("connect");
            }
            Step::Search(text) => {
                let _ = d.o.search(d.now, &text);
                d.drain("search");
            }
            Step::Answer(which, files) => {
                if let Some(q) = d.queries.get(which).cloned() {
                    d.o.answer_query(&q, &files);
                    d.drain("answer_query");
                }
            }
        }
        d.timeouts();
    }
});
