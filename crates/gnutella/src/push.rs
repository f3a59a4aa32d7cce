//! Push and GIV, the decisions only (sans I/O, no clock: the caller
//! passes the time).
//!
//! Downloading from a firewalled servent: [`should_push`] says when a
//! Push is worth sending, [`push_descriptor`] builds it, and [`GivWaits`]
//! remembers the pushes sent so that the `GIV` connection a servent opens
//! back is matched to the download that waits for it (by servent GUID,
//! then file index), for a bounded time.
//!
//! Uploading while firewalled: [`PushGate`] decides whether a Push that
//! names us is answered by connecting out, and to where: only to the
//! address the Push names, at most once per Push, at most
//! [`PushConfig::max_connect_backs`] at once, and at most
//! [`PushConfig::per_source`] per address in each
//! [`PushConfig::window`].

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use crate::descriptor::{Descriptor, Guid, Payload, Push};
use crate::http::Giv;
use crate::leaf::new_guid;

/// Limits and timers of pushes, both ways.
#[derive(Clone, Debug)]
pub struct PushConfig {
    /// TTL of the Pushes we send.
    pub push_ttl: u8,
    /// How long a download waits for the servent's `GIV` after its Push.
    pub giv_timeout: Duration,
    /// Pushes waiting for their `GIV` at once (more are refused).
    pub max_waiting: usize,
    /// Connections opened for Pushes at once (more Pushes are dropped).
    pub max_connect_backs: usize,
    /// Pushes answered per address named, in each `window`.
    pub per_source: u32,
    /// The window of `per_source`.
    pub window: Duration,
    /// Addresses whose budget is remembered (the oldest is forgotten,
    /// and while every one is recent, new addresses are refused).
    pub max_sources: usize,
    /// Time allowed to connect out for a Push.
    pub connect_timeout: Duration,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            push_ttl: 4,
            giv_timeout: Duration::from_secs(30),
            max_waiting: 64,
            max_connect_backs: 4,
            per_source: 4,
            window: Duration::from_secs(60),
            max_sources: 256,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Whether to ask a servent for a Push: only when we accept connections,
/// and the servent said it is firewalled or could not be reached directly.
pub fn should_push(servent_firewalled: bool, direct_failed: bool, we_reachable: bool) -> bool {
    we_reachable && (servent_firewalled || direct_failed)
}

/// A Push descriptor (fresh GUID, hops 0) asking `servent` to open a
/// connection to `ip:port` and offer file `index`.
pub fn push_descriptor(servent: Guid, index: u32, to: SocketAddrV4, ttl: u8) -> Descriptor {
    Descriptor {
        guid: new_guid(),
        ttl,
        hops: 0,
        payload: Payload::Push(Push {
            servent,
            index,
            ip: *to.ip(),
            port: to.port(),
            ggep: vec![],
        }),
    }
}

/// Why a Push cannot be waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// Too many Pushes wait for their GIV already.
    #[error("too many pushes wait for a GIV already")]
    Full,
}

struct Wait {
    guid: Guid,
    index: u32,
    until: Instant,
}

/// The Pushes sent whose `GIV` has not come yet.
pub struct GivWaits {
    cfg: PushConfig,
    next: u64,
    waits: HashMap<u64, Wait>,
}

impl GivWaits {
    /// No waits yet.
    pub fn new(cfg: PushConfig) -> GivWaits {
        GivWaits {
            cfg,
            next: 0,
            waits: HashMap::new(),
        }
    }

    /// Remembers a Push sent to `guid` for file `index` at `now`; returns
    /// the token its GIV will be matched to.
    pub fn register(&mut self, guid: Guid, index: u32, now: Instant) -> Result<u64, WaitError> {
        self.expire(now);
        if self.waits.len() >= self.cfg.max_waiting {
            return Err(WaitError::Full);
        }
        self.next += 1;
        self.waits.insert(
            self.next,
            Wait {
                guid,
                index,
                until: now + self.cfg.giv_timeout,
            },
        );
        Ok(self.next)
    }

    /// The wait a GIV answers (and forgets it): one for the same servent
    /// GUID and index, else the oldest for the same GUID (some servents
    /// do not repeat the index). `None`: nobody waits for it (the
    /// connection is closed).
    pub fn on_giv(&mut self, giv: &Giv, now: Instant) -> Option<u64> {
        self.expire(now);
        let same_guid = self.waits.iter().filter(|(_, w)| w.guid == giv.guid);
        let token = same_guid
            .clone()
            .filter(|(_, w)| w.index == giv.index)
            .map(|(t, _)| *t)
            .min()
            .or_else(|| same_guid.map(|(t, _)| *t).min())?;
        self.waits.remove(&token);
        Some(token)
    }

    /// Forgets a wait (the download gave up).
    pub fn cancel(&mut self, token: u64) {
        self.waits.remove(&token);
    }

    /// Forgets the waits whose time is up.
    pub fn expire(&mut self, now: Instant) {
        self.waits.retain(|_, w| w.until > now);
    }

    /// Waits now.
    pub fn len(&self) -> usize {
        self.waits.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waits.is_empty()
    }
}

/// Why a Push naming us is not answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PushRefusal {
    /// The address is not one to connect to (port 0, unspecified,
    /// broadcast, multicast).
    #[error("the push names an address that cannot be connected to")]
    BadAddress,
    /// That address used up its budget for now.
    #[error("too many pushes for this address")]
    OverBudget,
    /// Too many connect-backs run already.
    #[error("too many connect-backs at once")]
    Busy,
    /// A connect-back for the same address and file runs already.
    #[error("a connect-back for the same file and address runs already")]
    Duplicate,
}

/// A connection to open for a Push: exactly the address it named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectBack {
    /// Its id, for [`PushGate::finished`].
    pub id: u64,
    /// Where to connect (the Push's address, nothing else).
    pub to: SocketAddrV4,
    /// The file index the Push named (for the GIV).
    pub index: u32,
}

/// Decides which Pushes naming us are answered.
pub struct PushGate {
    cfg: PushConfig,
    next: u64,
    running: HashMap<u64, (SocketAddrV4, u32)>,
    /// Per address: when its recent Pushes were answered.
    budgets: HashMap<Ipv4Addr, VecDeque<Instant>>,
    /// Counts of what was refused, by reason (bad address, over budget,
    /// busy, duplicate).
    refused: [u64; 4],
}

impl PushGate {
    /// A gate with these limits.
    pub fn new(cfg: PushConfig) -> PushGate {
        PushGate {
            cfg,
            next: 0,
            running: HashMap::new(),
            budgets: HashMap::new(),
            refused: [0; 4],
        }
    }

    /// Whether to connect out for `push` at `now`, and where to.
    pub fn admit(&mut self, push: &Push, now: Instant) -> Result<ConnectBack, PushRefusal> {
        let r = self.decide(push, now);
        if let Err(e) = r {
            let i = match e {
                PushRefusal::BadAddress => 0,
                PushRefusal::OverBudget => 1,
                PushRefusal::Busy => 2,
                PushRefusal::Duplicate => 3,
            };
            self.refused[i] += 1;
        }
        r
    }

    fn decide(&mut self, push: &Push, now: Instant) -> Result<ConnectBack, PushRefusal> {
        let ip = push.ip;
        if push.port == 0
            || ip.is_unspecified()
            || ip.is_broadcast()
            || ip.is_multicast()
            || ip.octets()[0] == 0
        {
            return Err(PushRefusal::BadAddress);
        }
        let to = SocketAddrV4::new(ip, push.port);
        if self
            .running
            .values()
            .any(|(a, i)| *a == to && *i == push.index)
        {
            return Err(PushRefusal::Duplicate);
        }
        if self.running.len() >= self.cfg.max_connect_backs {
            return Err(PushRefusal::Busy);
        }
        let window = self.cfg.window;
        // Forget budgets whose window is over.
        for times in self.budgets.values_mut() {
            while times.front().is_some_and(|t| now >= *t + window) {
                times.pop_front();
            }
        }
        self.budgets.retain(|_, t| !t.is_empty());
        let used = self.budgets.get(&ip).map_or(0, VecDeque::len);
        if used >= self.cfg.per_source as usize {
            return Err(PushRefusal::OverBudget);
        }
        if used == 0 && self.budgets.len() >= self.cfg.max_sources {
            return Err(PushRefusal::OverBudget);
        }
        self.budgets.entry(ip).or_default().push_back(now);
        self.next += 1;
        self.running.insert(self.next, (to, push.index));
        Ok(ConnectBack {
            id: self.next,
            to,
            index: push.index,
        })
    }

    /// A connect-back ended (however it went).
    pub fn finished(&mut self, id: u64) {
        self.running.remove(&id);
    }

    /// Connect-backs running now.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Pushes refused so far: bad address, over budget, busy, duplicate.
    pub fn refused(&self) -> [u64; 4] {
        self.refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(ip: [u8; 4], port: u16, index: u32) -> Push {
        Push {
            servent: [1; 16],
            index,
            ip: Ipv4Addr::from(ip),
            port,
            ggep: vec![],
        }
    }

    fn cfg() -> PushConfig {
        PushConfig {
            max_waiting: 2,
            max_connect_backs: 2,
            per_source: 2,
            window: Duration::from_secs(10),
            max_sources: 3,
            giv_timeout: Duration::from_secs(5),
            ..PushConfig::default()
        }
    }

    #[test]
    fn push_only_when_reachable_and_needed() {
        assert!(should_push(true, false, true));
        assert!(should_push(false, true, true));
        assert!(!should_push(false, false, true));
        assert!(!should_push(true, true, false));
    }

    #[test]
    fn push_descriptor_layout() {
        let d = push_descriptor([9; 16], 7, "127.0.0.1:6346".parse().unwrap(), 4);
        let b = d.encode();
        assert_eq!(&b[16..19], &[0x40, 4, 0]);
        assert_eq!(&b[19..23], &26u32.to_le_bytes());
        assert_eq!(&b[23..39], &[9; 16]);
        assert_eq!(&b[39..43], &7u32.to_le_bytes());
        assert_eq!(&b[43..47], &[127, 0, 0, 1]);
        assert_eq!(&b[47..49], &6346u16.to_le_bytes());
    }

    #[test]
    fn giv_matches_guid_then_index_and_expires() {
        let t0 = Instant::now();
        let mut w = GivWaits::new(cfg());
        let a = w.register([1; 16], 5, t0).unwrap();
        let b = w.register([1; 16], 6, t0).unwrap();
        assert_eq!(w.register([2; 16], 1, t0), Err(WaitError::Full));
        let giv = |guid, index| Giv {
            index,
            guid,
            name: String::new(),
        };
        assert_eq!(w.on_giv(&giv([3; 16], 5), t0), None, "unknown servent");
        assert_eq!(w.on_giv(&giv([1; 16], 6), t0), Some(b));
        assert_eq!(w.on_giv(&giv([1; 16], 99), t0), Some(a), "same GUID");
        assert_eq!(w.on_giv(&giv([1; 16], 5), t0), None, "used once");
        w.register([1; 16], 5, t0).unwrap();
        let late = t0 + Duration::from_secs(6);
        assert_eq!(w.on_giv(&giv([1; 16], 5), late), None, "expired");
        assert!(w.is_empty());
    }

    #[test]
    fn gate_bounds_connect_backs() {
        let t0 = Instant::now();
        let mut g = PushGate::new(cfg());
        for bad in [
            push([0, 0, 0, 0], 1, 1),
            push([127, 0, 0, 1], 0, 1),
            push([255, 255, 255, 255], 1, 1),
            push([224, 0, 0, 1], 1, 1),
        ] {
            assert_eq!(g.admit(&bad, t0), Err(PushRefusal::BadAddress));
        }
        let a = g.admit(&push([127, 0, 0, 1], 9, 1), t0).unwrap();
        assert_eq!(a.to, "127.0.0.1:9".parse().unwrap());
        assert_eq!(
            g.admit(&push([127, 0, 0, 1], 9, 1), t0),
            Err(PushRefusal::Duplicate)
        );
        let b = g.admit(&push([127, 0, 0, 1], 9, 2), t0).unwrap();
        assert_eq!(
            g.admit(&push([127, 0, 0, 2], 9, 2), t0),
            Err(PushRefusal::Busy)
        );
        g.finished(a.id);
        g.finished(b.id);
        // Two per address per window.
        assert_eq!(
            g.admit(&push([127, 0, 0, 1], 9, 3), t0),
            Err(PushRefusal::OverBudget)
        );
        let later = t0 + Duration::from_secs(11);
        let c = g.admit(&push([127, 0, 0, 1], 9, 3), later).unwrap();
        g.finished(c.id);
        // At most three addresses remembered.
        for i in 2..4 {
            let x = g.admit(&push([127, 0, 0, i], 9, 1), later).unwrap();
            g.finished(x.id);
        }
        assert_eq!(
            g.admit(&push([127, 0, 0, 9], 9, 1), later),
            Err(PushRefusal::OverBudget)
        );
        assert_eq!(g.refused(), [4, 2, 1, 1]);
        assert_eq!(g.running(), 0);
    }
}
