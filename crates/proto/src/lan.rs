//! Finding peers on the local link: a small multicast announcement.
//!
//! A node sends one fixed-size datagram to a multicast group on its link
//! (time-to-live 1): an *announcement* every [`LanConfig::announce_interval`],
//! and a *query* when it starts, which every node that hears it answers
//! with an announcement (at most one per [`LanConfig::reply_gap`]; who asks
//! within the gap is answered when it ends). Both
//! carry the sender's overlay ports and a random instance number; the
//! address is the datagram's source address, never a field.
//!
//! What is heard is only a candidate: the driver hands it to the overlay's
//! normal join (a ping that must be answered), exactly like an address the
//! user typed. At most [`LanConfig::take_max`] candidates are taken per
//! [`LanConfig::take_interval`], and an address is not taken again within
//! [`LanConfig::retry_after`].
//!
//! Nothing here does I/O: the driver feeds datagrams and time in and takes
//! datagrams (all for the group) and candidates out.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// The first bytes of every datagram.
pub const MAGIC: [u8; 4] = *b"RTLN";
/// The version this code speaks.
pub const VERSION: u8 = 1;
/// Length of a datagram of this version.
pub const LEN: usize = 18;
/// The default multicast group (organisation-local scope, RFC 2365).
pub const DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 82, 84);
/// The default port of the group.
pub const DEFAULT_PORT: u16 = 20_099;

/// What a datagram says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// "A rutella node is here."
    Announce,
    /// "A rutella node is here and just started: please announce yourselves."
    Query,
    /// "Someone is looking for nodes, but is not one to join (a one-shot
    /// search): please announce yourselves."
    Probe,
}

/// One LAN datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LanMessage {
    /// Announcement or query.
    pub kind: Kind,
    /// The sender's overlay UDP port (never 0).
    pub udp_port: u16,
    /// The sender's TCP port for downloads (never 0).
    pub tcp_port: u16,
    /// A random number the sender drew at start, to recognise its own
    /// datagrams looped back.
    pub instance: u64,
}

/// Why bytes are not a LAN datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LanParseError {
    /// Shorter than a datagram.
    Short,
    /// Not starting with [`MAGIC`].
    Magic,
    /// Another version.
    Version(u8),
    /// An unknown kind.
    Kind(u8),
    /// A port is 0.
    Port,
}

impl LanMessage {
    /// Reads a datagram. Bytes after the [`LEN`] first are ignored (room for
    /// later fields).
    pub fn parse(b: &[u8]) -> Result<LanMessage, LanParseError> {
        let b: &[u8; LEN] = b
            .get(..LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(LanParseError::Short)?;
        if b[..4] != MAGIC {
            return Err(LanParseError::Magic);
        }
        if b[4] != VERSION {
            return Err(LanParseError::Version(b[4]));
        }
        let kind = match b[5] {
            1 => Kind::Announce,
            2 => Kind::Query,
            3 => Kind::Probe,
            k => return Err(LanParseError::Kind(k)),
        };
        let udp_port = u16::from_be_bytes([b[6], b[7]]);
        let tcp_port = u16::from_be_bytes([b[8], b[9]]);
        if udp_port == 0 || tcp_port == 0 {
            return Err(LanParseError::Port);
        }
        let mut inst = [0u8; 8];
        inst.copy_from_slice(&b[10..18]);
        Ok(LanMessage {
            kind,
            udp_port,
            tcp_port,
            instance: u64::from_be_bytes(inst),
        })
    }

    /// The datagram's bytes.
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4] = VERSION;
        b[5] = match self.kind {
            Kind::Announce => 1,
            Kind::Query => 2,
            Kind::Probe => 3,
        };
        b[6..8].copy_from_slice(&self.udp_port.to_be_bytes());
        b[8..10].copy_from_slice(&self.tcp_port.to_be_bytes());
        b[10..18].copy_from_slice(&self.instance.to_be_bytes());
        b
    }
}

/// Timers and limits of LAN discovery.
#[derive(Debug, Clone)]
pub struct LanConfig {
    /// Time between announcements.
    pub announce_interval: Duration,
    /// The least time between two announcements sent in answer to queries.
    pub reply_gap: Duration,
    /// The window over which candidates are counted.
    pub take_interval: Duration,
    /// The most candidates taken per window; the others wait for their
    /// next announcement.
    pub take_max: usize,
    /// An address taken is not taken again before this long.
    pub retry_after: Duration,
    /// The most addresses remembered.
    pub max_remembered: usize,
    /// Whether this node makes itself known. `false` for a node that only
    /// looks (a one-shot search): it sends a probe at start, and neither
    /// announces itself nor answers queries.
    pub announce: bool,
}

impl Default for LanConfig {
    fn default() -> Self {
        LanConfig {
            announce_interval: Duration::from_secs(60),
            reply_gap: Duration::from_millis(250),
            take_interval: Duration::from_secs(10),
            take_max: 8,
            retry_after: Duration::from_secs(300),
            max_remembered: 256,
            announce: true,
        }
    }
}

/// A peer heard on the link: an address to join through, nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Its overlay address (the datagram's source address, the announced port).
    pub udp: SocketAddrV4,
    /// Its announced TCP port.
    pub tcp_port: u16,
}

/// The LAN discovery state machine of one node.
#[derive(Debug)]
pub struct LanDiscovery {
    cfg: LanConfig,
    own: LanMessage,
    next_announce: Instant,
    last_reply: Option<Instant>,
    /// A query came within the gap: the answer goes out when it ends.
    reply_due: Option<Instant>,
    out: VecDeque<[u8; LEN]>,
    candidates: VecDeque<Candidate>,
    /// Address → when it was last taken.
    taken: HashMap<SocketAddrV4, Instant>,
    window_start: Instant,
    taken_in_window: usize,
    /// Datagrams ignored (not parsing, own, over the limits).
    ignored: u64,
}

/// The most datagrams waiting to be sent (a query and an announcement).
const MAX_OUT: usize = 2;

impl LanDiscovery {
    /// A node with these overlay ports and random `instance` starting at
    /// `now`: it queries the link at once (or probes it, when it does not
    /// announce itself).
    pub fn new(cfg: LanConfig, udp_port: u16, tcp_port: u16, instance: u64, now: Instant) -> Self {
        let own = LanMessage {
            kind: Kind::Announce,
            udp_port,
            tcp_port,
            instance,
        };
        let mut out = VecDeque::with_capacity(MAX_OUT);
        out.push_back(
            LanMessage {
                kind: if cfg.announce {
                    Kind::Query
                } else {
                    Kind::Probe
                },
                ..own
            }
            .encode(),
        );
        // Spread periodic announcements of nodes started together: up to a
        // tenth of the interval earlier, drawn from the instance number.
        let tenth = cfg.announce_interval.as_millis() / 10;
        let jitter = match u64::try_from(tenth) {
            Ok(t) if t > 0 => Duration::from_millis(instance % t),
            _ => Duration::ZERO,
        };
        let next_announce = now + cfg.announce_interval.saturating_sub(jitter);
        LanDiscovery {
            cfg,
            own,
            next_announce,
            last_reply: None,
            reply_due: None,
            out,
            candidates: VecDeque::new(),
            taken: HashMap::new(),
            window_start: now,
            taken_in_window: 0,
            ignored: 0,
        }
    }

    /// A datagram received on the group from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddrV4, bytes: &[u8]) {
        let Ok(m) = LanMessage::parse(bytes) else {
            self.ignored += 1;
            return;
        };
        if m.instance == self.own.instance {
            return;
        }
        if m.kind != Kind::Announce && self.cfg.announce {
            match self.last_reply {
                Some(t) if now < t + self.cfg.reply_gap => {
                    // Answered another node just now: this one gets its
                    // answer when the gap ends, however many ask meanwhile.
                    self.reply_due = Some(t + self.cfg.reply_gap);
                }
                _ => self.reply(now),
            }
        }
        if m.kind == Kind::Probe {
            // Not a node to join.
            return;
        }
        let ip = *from.ip();
        if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
            self.ignored += 1;
            return;
        }
        let udp = SocketAddrV4::new(ip, m.udp_port);
        if let Some(t) = self.taken.get(&udp) {
            if now < *t + self.cfg.retry_after {
                return;
            }
        }
        if now >= self.window_start + self.cfg.take_interval {
            self.window_start = now;
            self.taken_in_window = 0;
        }
        if self.taken_in_window >= self.cfg.take_max {
            self.ignored += 1;
            return;
        }
        if !self.taken.contains_key(&udp) && self.taken.len() >= self.cfg.max_remembered {
            let retry = self.cfg.retry_after;
            self.taken.retain(|_, t| now < *t + retry);
            if self.taken.len() >= self.cfg.max_remembered {
                self.ignored += 1;
                return;
            }
        }
        self.taken.insert(udp, now);
        self.taken_in_window += 1;
        self.candidates.push_back(Candidate {
            udp,
            tcp_port: m.tcp_port,
        });
    }

    fn reply(&mut self, now: Instant) {
        self.last_reply = Some(now);
        self.reply_due = None;
        self.queue(self.own.encode());
    }

    fn queue(&mut self, d: [u8; LEN]) {
        if self.out.len() < MAX_OUT && !self.out.contains(&d) {
            self.out.push_back(d);
        }
    }

    /// The clock reached [`Self::poll_timeout`] (or later).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.reply_due.is_some_and(|t| now >= t) {
            self.reply(now);
        }
        if now >= self.next_announce {
            if self.cfg.announce {
                self.queue(self.own.encode());
            }
            self.next_announce = now + self.cfg.announce_interval;
        }
    }

    /// When to call [`Self::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Instant {
        match self.reply_due {
            Some(t) => t.min(self.next_announce),
            None => self.next_announce,
        }
    }

    /// The next datagram to send to the group.
    pub fn poll_transmit(&mut self) -> Option<[u8; LEN]> {
        self.out.pop_front()
    }

    /// The next peer heard, to join through.
    pub fn poll_candidate(&mut self) -> Option<Candidate> {
        self.candidates.pop_front()
    }

    /// How many distinct addresses were taken as candidates so far (still remembered).
    pub fn found(&self) -> usize {
        self.taken.len()
    }

    /// Datagrams ignored: not parsing, from odd addresses, or over the limits.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: Kind, udp_port: u16, instance: u64) -> [u8; LEN] {
        LanMessage {
            kind,
            udp_port,
            tcp_port: 10_000,
            instance,
        }
        .encode()
    }

    fn addr(last: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, last), port)
    }

    #[test]
    fn parse_round_trip_and_rejects() {
        let m = LanMessage {
            kind: Kind::Query,
            udp_port: 20_001,
            tcp_port: 10_001,
            instance: 0x0102_0304_0506_0708,
        };
        let b = m.encode();
        assert_eq!(
            &b[..],
            b"RTLN\x01\x02\x4e\x21\x27\x11\x01\x02\x03\x04\x05\x06\x07\x08"
        );
        assert_eq!(LanMessage::parse(&b), Ok(m));
        let mut longer = b.to_vec();
        longer.extend_from_slice(b"later");
        assert_eq!(LanMessage::parse(&longer), Ok(m));
        assert_eq!(LanMessage::parse(&b[..17]), Err(LanParseError::Short));
        assert_eq!(LanMessage::parse(b""), Err(LanParseError::Short));
        let mut bad = b;
        bad[0] = b'X';
        assert_eq!(LanMessage::parse(&bad), Err(LanParseError::Magic));
        let mut bad = b;
        bad[4] = 2;
        assert_eq!(LanMessage::parse(&bad), Err(LanParseError::Version(2)));
        let mut bad = b;
        bad[5] = 4;
        assert_eq!(LanMessage::parse(&bad), Err(LanParseError::Kind(4)));
        let mut bad = b;
        bad[6] = 0;
        bad[7] = 0;
        assert_eq!(LanMessage::parse(&bad), Err(LanParseError::Port));
        let mut bad = b;
        bad[8] = 0;
        bad[9] = 0;
        assert_eq!(LanMessage::parse(&bad), Err(LanParseError::Port));
    }

    #[test]
    fn starts_with_a_query_then_announces_periodically() {
        let t0 = Instant::now();
        let cfg = LanConfig {
            announce_interval: Duration::from_secs(10),
            ..LanConfig::default()
        };
        let mut d = LanDiscovery::new(cfg, 20_000, 10_000, 7, t0);
        assert_eq!(
            LanMessage::parse(&d.poll_transmit().unwrap()).unwrap().kind,
            Kind::Query
        );
        assert_eq!(d.poll_transmit(), None);
        // Jitter: at most a tenth of the interval early.
        let at = d.poll_timeout();
        assert!(at <= t0 + Duration::from_secs(10) && at >= t0 + Duration::from_secs(9));
        d.handle_timeout(at - Duration::from_millis(1));
        assert_eq!(d.poll_transmit(), None);
        d.handle_timeout(at);
        let a = LanMessage::parse(&d.poll_transmit().unwrap()).unwrap();
        assert_eq!(
            (a.kind, a.udp_port, a.instance),
            (Kind::Announce, 20_000, 7)
        );
        assert_eq!(d.poll_timeout(), at + Duration::from_secs(10));
    }

    #[test]
    fn a_query_is_answered_at_most_once_per_gap_and_its_sender_is_a_candidate() {
        let t0 = Instant::now();
        let mut d = LanDiscovery::new(LanConfig::default(), 20_000, 10_000, 7, t0);
        d.poll_transmit();
        for i in 0..5u8 {
            d.handle_datagram(
                t0,
                addr(10 + i, 20_000),
                &msg(Kind::Query, 20_000, 100 + u64::from(i)),
            );
        }
        let a = LanMessage::parse(&d.poll_transmit().unwrap()).unwrap();
        assert_eq!(a.kind, Kind::Announce);
        assert_eq!(
            d.poll_transmit(),
            None,
            "one answer per gap, however many ask"
        );
        // Those who asked within the gap get one answer when it ends.
        let gap = Duration::from_millis(250);
        assert_eq!(d.poll_timeout(), t0 + gap);
        d.handle_timeout(t0 + gap - Duration::from_millis(1));
        assert_eq!(d.poll_transmit(), None);
        d.handle_timeout(t0 + gap);
        assert!(d.poll_transmit().is_some(), "the deferred answer");
        assert_eq!(d.poll_transmit(), None);
        assert!(d.poll_timeout() > t0 + gap);
        let t1 = t0 + 3 * gap;
        d.handle_datagram(t1, addr(20, 20_000), &msg(Kind::Query, 20_000, 200));
        assert!(
            d.poll_transmit().is_some(),
            "after the gap, a query is answered at once"
        );
        let c = d.poll_candidate().unwrap();
        assert_eq!(
            c,
            Candidate {
                udp: addr(10, 20_000),
                tcp_port: 10_000
            }
        );
        assert_eq!(d.found(), 6);
    }

    #[test]
    fn own_datagrams_and_odd_sources_are_ignored() {
        let t0 = Instant::now();
        let mut d = LanDiscovery::new(LanConfig::default(), 20_000, 10_000, 7, t0);
        d.poll_transmit();
        d.handle_datagram(t0, addr(1, 20_000), &msg(Kind::Query, 20_000, 7));
        d.handle_datagram(t0, addr(1, 20_000), &msg(Kind::Announce, 20_000, 7));
        assert_eq!(d.poll_transmit(), None, "its own query is not answered");
        assert_eq!(d.poll_candidate(), None, "it is not its own candidate");
        for ip in [
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            Ipv4Addr::new(239, 1, 2, 3),
        ] {
            d.handle_datagram(
                t0,
                SocketAddrV4::new(ip, 1),
                &msg(Kind::Announce, 20_000, 9),
            );
        }
        d.handle_datagram(t0, addr(2, 1), b"RTLN garbage");
        assert_eq!(d.poll_candidate(), None);
        assert_eq!(d.ignored(), 4);
    }

    #[test]
    fn candidates_are_capped_per_window_and_not_retaken_soon() {
        let t0 = Instant::now();
        let cfg = LanConfig {
            take_interval: Duration::from_secs(10),
            take_max: 3,
            retry_after: Duration::from_secs(60),
            ..LanConfig::default()
        };
        let mut d = LanDiscovery::new(cfg, 20_000, 10_000, 7, t0);
        for i in 0..10u8 {
            d.handle_datagram(
                t0,
                addr(i + 1, 20_000),
                &msg(Kind::Announce, 20_000, u64::from(i) + 100),
            );
        }
        let mut n = 0;
        while d.poll_candidate().is_some() {
            n += 1;
        }
        assert_eq!(n, 3, "at most take_max per window");
        // The same announcer again within retry_after: not taken again.
        let t1 = t0 + Duration::from_secs(10);
        d.handle_datagram(t1, addr(1, 20_000), &msg(Kind::Announce, 20_000, 100));
        assert_eq!(d.poll_candidate(), None);
        // A new one in the next window is taken; one on another port is another peer.
        d.handle_datagram(t1, addr(4, 20_000), &msg(Kind::Announce, 20_000, 103));
        d.handle_datagram(t1, addr(1, 20_001), &msg(Kind::Announce, 20_001, 110));
        assert_eq!(d.poll_candidate().unwrap().udp, addr(4, 20_000));
        assert_eq!(d.poll_candidate().unwrap().udp, addr(1, 20_001));
        // After retry_after the first one is taken again.
        let t2 = t0 + Duration::from_secs(61);
        d.handle_datagram(t2, addr(1, 20_000), &msg(Kind::Announce, 20_000, 100));
        assert_eq!(d.poll_candidate().unwrap().udp, addr(1, 20_000));
    }

    #[test]
    fn remembered_addresses_are_bounded() {
        let t0 = Instant::now();
        let cfg = LanConfig {
            take_max: usize::MAX,
            max_remembered: 16,
            ..LanConfig::default()
        };
        let mut d = LanDiscovery::new(cfg, 20_000, 10_000, 7, t0);
        for p in 1..=100u16 {
            d.handle_datagram(t0, addr(1, p), &msg(Kind::Announce, p, u64::from(p) + 100));
        }
        assert_eq!(d.found(), 16);
        let mut n = 0;
        while d.poll_candidate().is_some() {
            n += 1;
        }
        assert_eq!(n, 16);
    }

    #[test]
    fn a_probe_is_answered_but_not_taken_and_a_looker_only_looks() {
        let t0 = Instant::now();
        let mut d = LanDiscovery::new(LanConfig::default(), 20_000, 10_000, 7, t0);
        d.poll_transmit();
        d.handle_datagram(t0, addr(5, 20_001), &msg(Kind::Probe, 20_001, 9));
        let a = LanMessage::parse(&d.poll_transmit().unwrap()).unwrap();
        assert_eq!(a.kind, Kind::Announce, "a probe is answered");
        assert_eq!(d.poll_candidate(), None, "a prober is not a node to join");
        assert_eq!(d.found(), 0);

        let cfg = LanConfig {
            announce: false,
            announce_interval: Duration::from_secs(10),
            ..LanConfig::default()
        };
        let mut looker = LanDiscovery::new(cfg, 20_002, 10_002, 8, t0);
        let p = LanMessage::parse(&looker.poll_transmit().unwrap()).unwrap();
        assert_eq!(p.kind, Kind::Probe);
        looker.handle_datagram(t0, addr(6, 20_000), &msg(Kind::Query, 20_000, 10));
        assert_eq!(looker.poll_transmit(), None, "a looker answers nothing");
        assert_eq!(looker.poll_candidate().unwrap().udp, addr(6, 20_000));
        for s in 1..=30 {
            looker.handle_timeout(t0 + Duration::from_secs(s));
        }
        assert_eq!(looker.poll_transmit(), None, "nor announces itself");
    }
}
