//! Relay circuits: the bytes of the TCP introduction and the answer (pure
//! codecs), and the admission machine a relaying node runs (no I/O, time
//! as an argument).
//!
//! ```text
//! introduction  26 bytes  52 55 54 FF FF 52 4C 01 ("RUT" FF FF "RL" 1)
//!                         | circuit id [16] | role u8 (0 client, 1 server)
//!                         | 0 (reserved)
//! answer         2+N(+24) status u8 | reason length u8 | reason (UTF-8)
//!                         | when status is 0: byte limit u64 | duration
//!                           limit in ms u64 | bytes per second u64 (0: none)
//! ```
//!
//! Both sides of a circuit connect to the relay's TCP port, send the
//! introduction with the same circuit id and opposite roles, and wait for
//! the answer. When both are there the relay answers both with status 0
//! and splices the connections: from then on each side's bytes go to the
//! other unchanged, and the transfer protocols run as over a direct
//! connection (the client side sends the classic request or the rutella
//! hello). Any other status is followed by the relay closing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The first 8 bytes of a relay introduction.
pub const INTRO_MAGIC: [u8; 8] = [0x52, 0x55, 0x54, 0xFF, 0xFF, 0x52, 0x4C, 0x01];
/// Length of a whole introduction.
pub const INTRO_LEN: usize = 26;
/// Longest reason an answer carries (it has one length byte).
pub const MAX_REASON: usize = 255;
/// Length of the limits that follow an answer of status 0.
pub const LIMITS_LEN: usize = 24;

/// A circuit's id: 16 random bytes chosen by the side that sets it up.
pub type CircuitId = [u8; 16];

/// Which end of the transfer a side of a circuit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The downloader: it sends the request once spliced.
    Client,
    /// The uploader: it serves the request.
    Server,
}

impl Role {
    fn byte(self) -> u8 {
        match self {
            Role::Client => 0,
            Role::Server => 1,
        }
    }
}

/// A malformed introduction or answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayWireError {
    /// Fewer bytes than needed.
    #[error("relay message too short: {got} of {need} bytes")]
    Short {
        /// Bytes given.
        got: usize,
        /// Bytes needed.
        need: usize,
    },
    /// Not the relay introduction.
    #[error("not a relay introduction")]
    BadMagic,
    /// A role other than 0 or 1.
    #[error("unknown relay role {0}")]
    BadRole(u8),
    /// The reserved byte is not zero.
    #[error("reserved byte of the relay introduction is not zero")]
    Reserved,
    /// A status this side does not know.
    #[error("unknown relay status {0}")]
    BadStatus(u8),
}

/// Encodes the introduction of one side of circuit `id`.
pub fn encode_intro(id: &CircuitId, role: Role) -> [u8; INTRO_LEN] {
    let mut out = [0u8; INTRO_LEN];
    out[..8].copy_from_slice(&INTRO_MAGIC);
    out[8..24].copy_from_slice(id);
    out[24] = role.byte();
    out
}

/// Decodes an introduction (the 8-byte magic included).
pub fn parse_intro(buf: &[u8]) -> Result<(CircuitId, Role), RelayWireError> {
    if buf.len() < INTRO_LEN {
        return Err(RelayWireError::Short {
            got: buf.len(),
            need: INTRO_LEN,
        });
    }
    if buf[..8] != INTRO_MAGIC {
        return Err(RelayWireError::BadMagic);
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&buf[8..24]);
    let role = match buf[24] {
        0 => Role::Client,
        1 => Role::Server,
        r => return Err(RelayWireError::BadRole(r)),
    };
    if buf[25] != 0 {
        return Err(RelayWireError::Reserved);
    }
    Ok((id, role))
}

/// What the relay answers a side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 0: both sides are here; the connection is spliced.
    Spliced,
    /// 1: this node does not relay.
    Off,
    /// 2: too many circuits at once (in all or from this address).
    Full,
    /// 3: the other side did not come in time.
    TimedOut,
    /// 4: a malformed introduction, or a circuit id already in use by a
    /// side of the same role.
    BadRequest,
}

impl Status {
    /// The status byte.
    pub fn byte(self) -> u8 {
        match self {
            Status::Spliced => 0,
            Status::Off => 1,
            Status::Full => 2,
            Status::TimedOut => 3,
            Status::BadRequest => 4,
        }
    }

    fn from_byte(b: u8) -> Result<Status, RelayWireError> {
        Ok(match b {
            0 => Status::Spliced,
            1 => Status::Off,
            2 => Status::Full,
            3 => Status::TimedOut,
            4 => Status::BadRequest,
            b => return Err(RelayWireError::BadStatus(b)),
        })
    }
}

/// The bounds of one circuit, told to both sides when it is spliced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitLimits {
    /// Bytes relayed, both directions together, before the relay closes.
    pub max_bytes: u64,
    /// How long the circuit may last.
    pub max_duration: Duration,
    /// Bytes per second, both directions together; `None` for no pacing.
    pub rate: Option<u64>,
}

/// A relay's answer to one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// What happened.
    pub status: Status,
    /// Why, for people (at most [`MAX_REASON`] bytes of UTF-8).
    pub reason: String,
    /// The circuit's limits, present exactly when spliced.
    pub limits: Option<CircuitLimits>,
}

impl Answer {
    /// Encodes the answer; a longer reason is cut at a character boundary.
    pub fn encode(&self) -> Vec<u8> {
        let mut end = self.reason.len().min(MAX_REASON);
        while !self.reason.is_char_boundary(end) {
            end -= 1;
        }
        let reason = &self.reason.as_bytes()[..end];
        let mut out = Vec::with_capacity(2 + reason.len() + LIMITS_LEN);
        out.push(self.status.byte());
        out.push(reason.len() as u8);
        out.extend_from_slice(reason);
        if self.status == Status::Spliced {
            let l = self.limits.unwrap_or(CircuitLimits {
                max_bytes: u64::MAX,
                max_duration: Duration::from_millis(u64::MAX),
                rate: None,
            });
            out.extend_from_slice(&l.max_bytes.to_le_bytes());
            let ms = u64::try_from(l.max_duration.as_millis()).unwrap_or(u64::MAX);
            out.extend_from_slice(&ms.to_le_bytes());
            out.extend_from_slice(&l.rate.unwrap_or(0).to_le_bytes());
        }
        out
    }

    /// How many bytes the answer starting with `head` has in all, once its
    /// first two bytes are known (so a reader knows how much to read).
    pub fn len_from_head(head: [u8; 2]) -> usize {
        2 + head[1] as usize + if head[0] == 0 { LIMITS_LEN } else { 0 }
    }

    /// Decodes an answer. A reason that is not UTF-8 is kept lossily.
    pub fn parse(buf: &[u8]) -> Result<Answer, RelayWireError> {
        let short = |need| RelayWireError::Short {
            got: buf.len(),
            need,
        };
        if buf.len() < 2 {
            return Err(short(2));
        }
        let status = Status::from_byte(buf[0])?;
        let need = Answer::len_from_head([buf[0], buf[1]]);
        if buf.len() < need {
            return Err(short(need));
        }
        let rlen = buf[1] as usize;
        let reason = String::from_utf8_lossy(&buf[2..2 + rlen]).into_owned();
        let limits = (status == Status::Spliced).then(|| {
            let at = 2 + rlen;
            let u = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[at + i * 8..at + i * 8 + 8]);
                u64::from_le_bytes(b)
            };
            CircuitLimits {
                max_bytes: u(0),
                max_duration: Duration::from_millis(u(1)),
                rate: Some(u(2)).filter(|r| *r > 0),
            }
        });
        Ok(Answer {
            status,
            reason,
            limits,
        })
    }
}

/// The relay's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Whether this node relays at all (`--no-relay` turns it off).
    pub enabled: bool,
    /// Circuits at once, waiting or spliced.
    pub max_circuits: usize,
    /// Circuits at once with a side from one address.
    pub max_per_ip: usize,
    /// How long the first side waits for the second.
    pub wait_timeout: Duration,
    /// Each circuit's bounds.
    pub limits: CircuitLimits,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            enabled: true,
            max_circuits: 16,
            max_per_ip: 4,
            wait_timeout: Duration::from_secs(10),
            limits: CircuitLimits {
                max_bytes: 256 << 20,
                max_duration: Duration::from_secs(600),
                rate: Some(1 << 20),
            },
        }
    }
}

/// What the admission machine decides for a side that introduced itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// The first side: wait (until [`Admission::poll_timeout`]) for the
    /// other.
    Wait,
    /// The second side: splice it with the waiting one.
    Splice,
    /// Refused: answer this and close.
    Refuse(Answer),
}

#[derive(Debug)]
struct Circuit {
    ips: [Option<IpAddr>; 2],
    waiting: Option<(Role, Instant)>,
}

/// Which circuits a relay holds, and whether one more may come: the
/// limits on circuits in all and per address, and the wait for the second
/// side. No I/O; the driver keeps the connections and asks this machine.
#[derive(Debug)]
pub struct Admission {
    cfg: RelayConfig,
    circuits: HashMap<CircuitId, Circuit>,
}

impl Admission {
    /// An empty relay.
    pub fn new(cfg: RelayConfig) -> Admission {
        Admission {
            cfg,
            circuits: HashMap::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &RelayConfig {
        &self.cfg
    }

    /// Circuits held, waiting or spliced.
    pub fn circuits(&self) -> usize {
        self.circuits.len()
    }

    fn refuse(status: Status, reason: String) -> Admit {
        Admit::Refuse(Answer {
            status,
            reason,
            limits: None,
        })
    }

    fn held_by(&self, ip: IpAddr) -> usize {
        self.circuits
            .values()
            .filter(|c| c.ips.contains(&Some(ip)))
            .count()
    }

    /// A side from `ip` introduced itself for circuit `id` as `role`.
    pub fn arrive(&mut self, now: Instant, ip: IpAddr, id: CircuitId, role: Role) -> Admit {
        if !self.cfg.enabled {
            return Self::refuse(Status::Off, "this node does not relay (--no-relay)".into());
        }
        if let Some(c) = self.circuits.get_mut(&id) {
            return match c.waiting {
                Some((r, _)) if r != role => {
                    c.waiting = None;
                    c.ips[1] = Some(ip);
                    Admit::Splice
                }
                Some(_) => Self::refuse(
                    Status::BadRequest,
                    "the circuit already has a side of this role".into(),
                ),
                None => Self::refuse(Status::BadRequest, "the circuit is already spliced".into()),
            };
        }
        if self.circuits.len() >= self.cfg.max_circuits {
            return Self::refuse(
                Status::Full,
                format!(
                    "too many circuits: this relay holds at most {} at once",
                    self.cfg.max_circuits
                ),
            );
        }
        if self.held_by(ip) >= self.cfg.max_per_ip {
            return Self::refuse(
                Status::Full,
                format!(
                    "too many circuits from your address: at most {} at once",
                    self.cfg.max_per_ip
                ),
            );
        }
        self.circuits.insert(
            id,
            Circuit {
                ips: [Some(ip), None],
                waiting: Some((role, now + self.cfg.wait_timeout)),
            },
        );
        Admit::Wait
    }

    /// The answer both sides get when spliced.
    pub fn spliced(&self) -> Answer {
        Answer {
            status: Status::Spliced,
            reason: "spliced".into(),
            limits: Some(self.cfg.limits),
        }
    }

    /// The answer a side gets when the other did not come.
    pub fn timed_out(&self) -> Answer {
        Answer {
            status: Status::TimedOut,
            reason: format!(
                "timed out: the other side did not come within {} ms",
                self.cfg.wait_timeout.as_millis()
            ),
            limits: None,
        }
    }

    /// Whether circuit `id` still waits for its second side.
    pub fn is_waiting(&self, id: &CircuitId) -> bool {
        self.circuits.get(id).is_some_and(|c| c.waiting.is_some())
    }

    /// The circuits whose wait ended by `now`; they are forgotten, and the
    /// driver answers their first side with [`Admission::timed_out`].
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<CircuitId> {
        let expired: Vec<CircuitId> = self
            .circuits
            .iter()
            .filter(|(_, c)| matches!(c.waiting, Some((_, until)) if until <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.circuits.remove(id);
        }
        expired
    }

    /// When the next wait ends.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.circuits
            .values()
            .filter_map(|c| c.waiting.map(|(_, t)| t))
            .min()
    }

    /// A spliced circuit ended (or its first side left): it no longer
    /// counts.
    pub fn close(&mut self, id: &CircuitId) {
        self.circuits.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: [u8; 16] = [1; 16];
    const B: [u8; 16] = [2; 16];

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn cfg() -> RelayConfig {
        RelayConfig {
            enabled: true,
            max_circuits: 2,
            max_per_ip: 1,
            wait_timeout: Duration::from_millis(100),
            limits: CircuitLimits {
                max_bytes: 1000,
                max_duration: Duration::from_secs(5),
                rate: None,
            },
        }
    }

    fn status(a: Admit) -> Status {
        match a {
            Admit::Refuse(ans) => ans.status,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn intro_round_trips_and_rejects_junk() {
        let b = encode_intro(&A, Role::Server);
        assert_eq!(&b[..8], b"RUT\xFF\xFFRL\x01");
        assert_eq!(parse_intro(&b), Ok((A, Role::Server)));
        assert!(matches!(
            parse_intro(&b[..25]),
            Err(RelayWireError::Short { .. })
        ));
        let mut bad = b;
        bad[24] = 2;
        assert_eq!(parse_intro(&bad), Err(RelayWireError::BadRole(2)));
        let mut bad = b;
        bad[25] = 1;
        assert_eq!(parse_intro(&bad), Err(RelayWireError::Reserved));
        let mut bad = b;
        bad[6] = b'A';
        assert_eq!(parse_intro(&bad), Err(RelayWireError::BadMagic));
    }

    #[test]
    fn answers_round_trip_with_limits_only_when_spliced() {
        let adm = Admission::new(cfg());
        for ans in [adm.spliced(), adm.timed_out()] {
            let bytes = ans.encode();
            assert_eq!(Answer::len_from_head([bytes[0], bytes[1]]), bytes.len());
            assert_eq!(Answer::parse(&bytes).unwrap(), ans);
        }
        assert_eq!(adm.spliced().limits.unwrap().max_bytes, 1000);
        let long = Answer {
            status: Status::Off,
            reason: "é".repeat(200),
            limits: None,
        };
        let bytes = long.encode();
        assert!(bytes.len() <= 2 + MAX_REASON);
        assert!(Answer::parse(&bytes).unwrap().reason.starts_with("éé"));
    }

    #[test]
    fn two_opposite_sides_splice_and_the_circuit_counts_until_closed() {
        let mut adm = Admission::new(cfg());
        let t = Instant::now();
        assert_eq!(adm.arrive(t, ip(1), A, Role::Server), Admit::Wait);
        assert!(adm.is_waiting(&A));
        assert_eq!(adm.arrive(t, ip(2), A, Role::Client), Admit::Splice);
        assert!(!adm.is_waiting(&A));
        // A spliced circuit is not waiting: no timeout for it.
        assert_eq!(adm.poll_timeout(), None);
        assert!(adm.handle_timeout(t + Duration::from_secs(60)).is_empty());
        assert_eq!(adm.circuits(), 1);
        // A third side for the same id is refused.
        assert_eq!(
            status(adm.arrive(t, ip(3), A, Role::Client)),
            Status::BadRequest
        );
        adm.close(&A);
        assert_eq!(adm.circuits(), 0);
    }

    #[test]
    fn same_role_twice_is_refused() {
        let mut adm = Admission::new(cfg());
        let t = Instant::now();
        assert_eq!(adm.arrive(t, ip(1), A, Role::Client), Admit::Wait);
        assert_eq!(
            status(adm.arrive(t, ip(2), A, Role::Client)),
            Status::BadRequest
        );
        assert!(adm.is_waiting(&A));
    }

    #[test]
    fn the_first_side_times_out_on_the_virtual_clock() {
        let mut adm = Admission::new(cfg());
        let t = Instant::now();
        adm.arrive(t, ip(1), A, Role::Server);
        assert_eq!(adm.poll_timeout(), Some(t + Duration::from_millis(100)));
        assert!(adm.handle_timeout(t + Duration::from_millis(99)).is_empty());
        assert_eq!(adm.handle_timeout(t + Duration::from_millis(100)), vec![A]);
        assert_eq!(adm.circuits(), 0);
        // The late second side now starts a circuit of its own.
        assert_eq!(adm.arrive(t, ip(2), A, Role::Client), Admit::Wait);
        assert!(adm.timed_out().reason.contains("100 ms"));
    }

    #[test]
    fn limits_in_all_and_per_address() {
        let mut adm = Admission::new(cfg());
        let t = Instant::now();
        assert_eq!(adm.arrive(t, ip(1), A, Role::Server), Admit::Wait);
        let r = adm.arrive(t, ip(1), B, Role::Server);
        let Admit::Refuse(ans) = r else { panic!() };
        assert_eq!(ans.status, Status::Full);
        assert!(ans.reason.contains("your address"), "{}", ans.reason);
        assert_eq!(adm.arrive(t, ip(2), B, Role::Server), Admit::Wait);
        let Admit::Refuse(ans) = adm.arrive(t, ip(3), [3; 16], Role::Server) else {
            panic!()
        };
        assert_eq!(ans.status, Status::Full);
        assert!(ans.reason.contains("at most 2"), "{}", ans.reason);
    }

    #[test]
    fn a_relay_that_is_off_says_so() {
        let mut adm = Admission::new(RelayConfig {
            enabled: false,
            ..cfg()
        });
        let Admit::Refuse(ans) = adm.arrive(Instant::now(), ip(1), A, Role::Client) else {
            panic!()
        };
        assert_eq!(ans.status, Status::Off);
        assert!(ans.reason.contains("--no-relay"));
        assert_eq!(adm.circuits(), 0);
    }

    proptest! {
        #[test]
        fn parsers_never_panic_and_answers_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_intro(&bytes);
            // A reason that was not UTF-8 comes back lossily, and may then
            // be longer than an answer carries: only whole ones round-trip.
            if let Some(ans) = Answer::parse(&bytes).ok().filter(|a| a.reason.len() <= MAX_REASON) {
                let enc = ans.encode();
                prop_assert_eq!(Answer::parse(&enc).unwrap(), ans);
            }
        }
    }
}
