//! What the overlay knows about addresses that have not proven they are
//! there, and the rules that keep it from being turned against a third
//! party.
//!
//! - **Return routability.** An address becomes a peer only after it
//!   answered us from that address. A rutella ping carries a `"Nonce"`
//!   made from a secret and the destination address;
//!   a rutella pong echoes it as `"Echo"`, which proves the pong's sender
//!   received our ping at that address. A classic pong cannot echo: it
//!   counts when it comes from an address we pinged within the pong
//!   timeout.
//! - **Anti-amplification** (as QUIC, RFC 9000 §8.1): toward an address
//!   that has not proven itself, the overlay sends at most
//!   [`Config::amplification`](crate::Config::amplification) times the
//!   bytes it received from it. Addresses it learnt from others (the
//!   originator of a forwarded ping, hosts named in a pong) sent nothing:
//!   they get one probe per ping interval, drawn from a global budget of
//!   [`Config::probes_per_sec`](crate::Config::probes_per_sec).
//!
//! The table is bounded ([`Config::ledger_size`](crate::Config::ledger_size)
//! addresses, the oldest forgotten first), so spoofed sources cannot grow
//! memory.

use crate::message::{Ping, Push, Query};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Tokens are 48-bit numbers: short on the wire, and an off-path spoofer
/// must guess among 2⁴⁸ values per address.
const TOKEN_MASK: u64 = (1 << 48) - 1;

/// What is known about one unproven (or recently proven) address.
#[derive(Debug, Default)]
pub(crate) struct Entry {
    /// Bytes received from it.
    pub(crate) received: u64,
    /// Bytes sent to it while it was unproven.
    pub(crate) sent: u64,
    /// When we last sent it a probe (a ping asking for a pong).
    pub(crate) probed: Option<Instant>,
    /// It answered a probe: sends to it are no longer limited.
    pub(crate) proven: bool,
    /// The push id its ping told, recorded once it is a peer.
    pub(crate) push_id: Option<u64>,
    /// The `"Nonce"` of its pings: which node it is, recorded once it is
    /// a peer.
    pub(crate) nonce: Option<u64>,
    /// Messages it sent, held until it is proven: few addresses have any,
    /// so they live apart and the table stays small.
    pub(crate) held: Option<Box<Held>>,
}

/// Messages from an unproven address, held until it proves it is there.
#[derive(Debug, Default)]
pub(crate) struct Held {
    /// A ping it sent us, to forward once it is proven (classic mode).
    pub(crate) ping: Option<Ping>,
    /// A query it sent us, to answer once it is proven, with its arrival.
    pub(crate) query: Option<(Query, Instant)>,
    /// A push it sent us, to pass on once it is proven, with its arrival.
    pub(crate) push: Option<(Push, Instant)>,
}

impl Entry {
    /// The messages held for this address (created empty if none).
    pub(crate) fn held(&mut self) -> &mut Held {
        self.held.get_or_insert_with(Box::default)
    }
}

/// The table of addresses, the secret for tokens and the probe budget.
#[derive(Debug)]
pub(crate) struct Guard {
    entries: HashMap<SocketAddr, Entry>,
    /// Insertion order, for forgetting the oldest.
    order: VecDeque<SocketAddr>,
    cap: usize,
    key: [u8; 32],
    /// Probes that may be sent now to addresses that sent us nothing.
    probe_tokens: f64,
    probe_rate: f64,
    probe_burst: f64,
    last_refill: Instant,
}

impl Guard {
    pub(crate) fn new(
        key: [u8; 32],
        cap: usize,
        probes_per_sec: f64,
        probe_burst: f64,
        now: Instant,
    ) -> Self {
        Guard {
            entries: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
            key,
            probe_tokens: probe_burst,
            probe_rate: probes_per_sec.max(0.0),
            probe_burst: probe_burst.max(0.0),
            last_refill: now,
        }
    }

    /// The nonce our pings to `addr` carry, and that its pongs must echo.
    pub(crate) fn token(&self, addr: SocketAddr) -> u64 {
        // IPv4 hashes its 6 bytes as before; IPv6 its 18.
        let mut input = [0u8; 18];
        let len = match addr.ip() {
            std::net::IpAddr::V4(ip) => {
                input[..4].copy_from_slice(&ip.octets());
                4
            }
            std::net::IpAddr::V6(ip) => {
                input[..16].copy_from_slice(&ip.octets());
                16
            }
        };
        input[len..len + 2].copy_from_slice(&addr.port().to_be_bytes());
        let h = blake3::keyed_hash(&self.key, &input[..len + 2]);
        let mut b = [0u8; 8];
        b.copy_from_slice(&h.as_bytes()[..8]);
        u64::from_le_bytes(b) & TOKEN_MASK
    }

    /// The entry of `addr`, created (and the oldest forgotten) if new.
    pub(crate) fn entry(&mut self, addr: SocketAddr) -> &mut Entry {
        if !self.entries.contains_key(&addr) {
            while self.entries.len() >= self.cap {
                match self.order.pop_front() {
                    Some(old) => {
                        self.entries.remove(&old);
                    }
                    None => break,
                }
            }
            self.order.push_back(addr);
        }
        self.entries.entry(addr).or_default()
    }

    pub(crate) fn get_mut(&mut self, addr: &SocketAddr) -> Option<&mut Entry> {
        self.entries.get_mut(addr)
    }

    /// Whether `addr` answered one of our probes.
    pub(crate) fn proven(&self, addr: &SocketAddr) -> bool {
        self.entries.get(addr).is_some_and(|e| e.proven)
    }

    /// Counts bytes that arrived from `addr`.
    pub(crate) fn received(&mut self, addr: SocketAddr, bytes: usize) {
        let e = self.entry(addr);
        e.received = e.received.saturating_add(bytes as u64);
    }

    /// Whether `bytes` more may go to unproven `addr` under a limit of
    /// `factor` times what it sent; if so they are counted as sent.
    pub(crate) fn spend(&mut self, addr: SocketAddr, bytes: usize, factor: u64) -> bool {
        let Some(e) = self.entries.get_mut(&addr) else {
            return false;
        };
        let allowed = e.received.saturating_mul(factor);
        let after = e.sent.saturating_add(bytes as u64);
        if after > allowed {
            return false;
        }
        e.sent = after;
        true
    }

    /// Takes one probe from the global budget of probes toward addresses
    /// that sent us nothing.
    pub(crate) fn take_probe(&mut self, now: Instant) -> bool {
        let dt = now
            .saturating_duration_since(self.last_refill)
            .as_secs_f64();
        self.last_refill = self.last_refill.max(now);
        self.probe_tokens = (self.probe_tokens + dt * self.probe_rate).min(self.probe_burst);
        if self.probe_tokens >= 1.0 {
            self.probe_tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether `addr` was probed less than `within` ago.
    pub(crate) fn probed_within(&self, addr: &SocketAddr, now: Instant, within: Duration) -> bool {
        self.entries
            .get(addr)
            .and_then(|e| e.probed)
            .is_some_and(|t| now.saturating_duration_since(t) < within)
    }

    /// Addresses remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::new(std::net::Ipv4Addr::from(0x0a00_0000 + i).into(), 20000)
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_oldest() {
        let now = Instant::now();
        let mut g = Guard::new([7; 32], 100, 1.0, 1.0, now);
        for i in 0..1000 {
            g.received(addr(i), 10);
        }
        assert_eq!(g.len(), 100);
        assert!(g.get_mut(&addr(0)).is_none());
        assert!(g.get_mut(&addr(999)).is_some());
    }

    #[test]
    fn at_most_factor_times_what_was_received() {
        let now = Instant::now();
        let mut g = Guard::new([7; 32], 100, 1.0, 1.0, now);
        assert!(!g.spend(addr(1), 1, 3), "nothing received, nothing sent");
        g.received(addr(1), 100);
        assert!(g.spend(addr(1), 200, 3));
        assert!(g.spend(addr(1), 100, 3));
        assert!(!g.spend(addr(1), 1, 3));
        g.received(addr(1), 1);
        assert!(g.spend(addr(1), 3, 3));
    }

    #[test]
    fn probes_are_a_token_bucket() {
        let now = Instant::now();
        let mut g = Guard::new([7; 32], 100, 10.0, 2.0, now);
        assert!(g.take_probe(now));
        assert!(g.take_probe(now));
        assert!(!g.take_probe(now));
        assert!(g.take_probe(now + Duration::from_millis(100)));
        assert!(!g.take_probe(now + Duration::from_millis(100)));
        // Never more than the burst, however long it waited.
        let later = now + Duration::from_secs(100);
        assert!(g.take_probe(later) && g.take_probe(later) && !g.take_probe(later));
    }

    #[test]
    fn tokens_depend_on_key_and_address() {
        let now = Instant::now();
        let g1 = Guard::new([1; 32], 10, 1.0, 1.0, now);
        let g2 = Guard::new([2; 32], 10, 1.0, 1.0, now);
        assert_eq!(g1.token(addr(1)), g1.token(addr(1)));
        assert_ne!(g1.token(addr(1)), g1.token(addr(2)));
        assert_ne!(g1.token(addr(1)), g2.token(addr(1)));
        assert!(g1.token(addr(1)) <= TOKEN_MASK);
    }
}
