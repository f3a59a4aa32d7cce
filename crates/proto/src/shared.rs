//! What both overlay modes share: the configuration, the random generator,
//! our own addresses, the guard of unproven addresses and the outbox of
//! datagrams and events. [`crate::Overlay`] owns one and hands it to the
//! classic code and to the scalable sub-machine in turn.

use crate::guard::Guard;
use crate::message::Ports;
use crate::types::{Config, Event, Transmit};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// Cap on queued events and datagrams: a driver that polls after every call
/// never reaches it; it only bounds memory if one does not.
const MAX_QUEUE: usize = 65_536;

/// State and output both modes use.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) rng: ChaCha8Rng,
    own_ips: HashSet<IpAddr>,
    /// Addresses that have not proven themselves yet (see [`crate::guard`]).
    pub(crate) guard: Guard,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl Shared {
    pub(crate) fn new(config: Config, now: Instant) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        let guard = Guard::new(
            key,
            config.ledger_size,
            config.probes_per_sec,
            config.probe_burst,
            now,
        );
        Shared {
            config,
            rng,
            own_ips: HashSet::new(),
            guard,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub(crate) fn add_own_ip(&mut self, ip: IpAddr) {
        self.own_ips.insert(crate::addr::normalize_ip(ip));
    }

    /// The lowest of our own addresses, if any is known.
    pub(crate) fn own_ips_first(&self) -> Option<IpAddr> {
        self.own_ips.iter().min().copied()
    }

    pub(crate) fn is_self(&self, addr: SocketAddr) -> bool {
        addr.port() == self.config.udp_port && self.own_ips.contains(&addr.ip())
    }

    pub(crate) fn own_ports(&self) -> Ports {
        Ports::rutella(self.config.udp_port, self.config.tcp_port)
    }

    /// Queues a datagram. Toward an address that has not proven itself
    /// (`known` false) it goes only within the anti-amplification limit
    /// (see [`crate::guard`]).
    pub(crate) fn push_transmit(&mut self, t: Transmit, known: bool) {
        if !known {
            let size = t.encode(crate::addr::widest_ip(t.dest)).len();
            self.guard.entry(t.dest);
            if !self.guard.spend(t.dest, size, self.config.amplification) {
                tracing::debug!(dest = %t.dest, size, "not sending more to an unproven address");
                return;
            }
        }
        self.push_unchecked(t);
    }

    /// Queues a datagram that asks something of `t.dest` (a probe, a join
    /// request, an offer): free toward a known address, else paid by what
    /// that address sent us, else by the node-wide probe budget. Returns
    /// whether it was queued.
    pub(crate) fn push_probe(&mut self, now: Instant, t: Transmit, known: bool) -> bool {
        let dest = t.dest;
        let ok = known || {
            let size = t.encode(crate::addr::widest_ip(t.dest)).len();
            self.guard.entry(dest);
            self.guard.spend(dest, size, self.config.amplification) || self.guard.take_probe(now)
        };
        if ok {
            self.push_unchecked(t);
        } else {
            tracing::debug!(peer = %dest, "probe budget spent, not sending");
        }
        ok
    }

    /// Queues a datagram whose cost was checked by the caller.
    pub(crate) fn push_unchecked(&mut self, t: Transmit) {
        if self.transmits.len() >= MAX_QUEUE {
            tracing::warn!("outgoing datagram queue full, dropping one");
            return;
        }
        self.transmits.push_back(t);
    }

    pub(crate) fn push_event(&mut self, e: Event) {
        if self.events.len() >= MAX_QUEUE {
            tracing::warn!("event queue full, dropping one");
            return;
        }
        self.events.push_back(e);
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

/// The `"Nonce"` of a ping: what its pong must echo.
pub(crate) fn nonce_of(extra: &serde_json::Map<String, serde_json::Value>) -> Option<u64> {
    extra.get("Nonce").and_then(serde_json::Value::as_u64)
}

/// The `"Echo"` of a pong: the nonce of the ping it answers.
pub(crate) fn echo_of(extra: &serde_json::Map<String, serde_json::Value>) -> Option<u64> {
    extra.get("Echo").and_then(serde_json::Value::as_u64)
}
