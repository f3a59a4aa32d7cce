//! Hole punching coordination, without I/O: the proxy's rendezvous (a
//! downloader asks, both sides are told the other's external address and
//! a moment to start) and the downloader's attempt (wait for the go, punch
//! within a window, else fall back to a relay). Time is an argument, so
//! unit tests drive it with a virtual clock.
//!
//! The messages are UDP `"Command": 8` ([`crate::message::Punch`]); the
//! sockets and the TCP simultaneous open are the node's
//! (`rutella_node::punch`).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::message::{Ports, Punch, PunchRole, PunchStep};

/// The timers and budgets of hole punching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PunchConfig {
    /// How far in the future a proxy sets the start: long enough for both
    /// go messages to arrive (default 500 ms).
    pub lead: Duration,
    /// How long both sides send SYNs from the start (default 5 s).
    pub window: Duration,
    /// How long a downloader waits for the go after asking (default 3 s).
    pub ask_timeout: Duration,
    /// A proxy sets up at most this many punches per `budget_interval`
    /// for one source address (default 4) ...
    pub per_source: u32,
    /// ... and this many in all (default 32).
    pub in_all: u32,
    /// The interval of both budgets (default 10 s).
    pub budget_interval: Duration,
}

impl Default for PunchConfig {
    fn default() -> Self {
        PunchConfig {
            lead: Duration::from_millis(500),
            window: Duration::from_secs(5),
            ask_timeout: Duration::from_secs(3),
            per_source: 4,
            in_all: 32,
            budget_interval: Duration::from_secs(10),
        }
    }
}

/// What the proxy knows of one side of a punch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Side {
    /// Where its datagrams come from (the go is sent there).
    pub udp: SocketAddr,
    /// Its TCP port as reachable (its own, or the one mapped for it).
    pub tcp_port: u16,
    /// Round-trip time measured to it, when known: its go leaves half of
    /// it earlier, so that both start at the same moment.
    pub rtt: Option<Duration>,
}

impl Side {
    /// Its external TCP address, as the proxy sees it (the IP its
    /// datagrams come from, never one it claims).
    pub fn external(&self) -> SocketAddr {
        SocketAddr::new(self.udp.ip(), self.tcp_port)
    }
}

/// Why a proxy did not set up a punch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The push id names no current peer of the proxy.
    #[error("no peer with that push id")]
    UnknownTarget,
    /// The source, or the proxy in all, is over its budget.
    #[error("too many punches asked; try again later")]
    OverBudget,
    /// Not an ask.
    #[error("not a punch request")]
    NotAsk,
}

/// The proxy's side: a downloader asks (step `Ask`), and both it and the
/// firewalled peer get a go (step `Go`) naming the other's external
/// address and the same start moment. Budgets bound how many punches one
/// source, and the proxy in all, sets up per interval: each go makes its
/// receiver send SYNs to the address it names.
#[derive(Debug)]
pub struct Rendezvous {
    cfg: PunchConfig,
    recent: VecDeque<(Instant, IpAddr)>,
}

impl Rendezvous {
    /// A proxy with no punch set up yet.
    pub fn new(cfg: PunchConfig) -> Rendezvous {
        Rendezvous {
            cfg,
            recent: VecDeque::new(),
        }
    }

    /// Downloader `from` (a proven peer) asked for a punch with the peer
    /// its ask's push id names, which the driver looked up as `target`.
    /// Gives the two go messages and where each goes.
    pub fn ask(
        &mut self,
        now: Instant,
        from: Side,
        ask: &Punch,
        target: Option<Side>,
    ) -> Result<[(SocketAddr, Punch); 2], Refusal> {
        if ask.step != PunchStep::Ask {
            return Err(Refusal::NotAsk);
        }
        let target = target.ok_or(Refusal::UnknownTarget)?;
        while let Some((t, _)) = self.recent.front() {
            if now.saturating_duration_since(*t) >= self.cfg.budget_interval {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        let ip = from.udp.ip();
        let mine = self.recent.iter().filter(|(_, i)| *i == ip).count();
        if self.recent.len() >= self.cfg.in_all as usize || mine >= self.cfg.per_source as usize {
            return Err(Refusal::OverBudget);
        }
        self.recent.push_back((now, ip));
        let go = |to: &Side, other: &Side, role| {
            let half = to.rtt.map(|r| r / 2).unwrap_or_default();
            Punch {
                ip: Ipv4Addr::UNSPECIFIED.into(),
                step: PunchStep::Go,
                push_id: None,
                token: ask.token,
                ports: Ports::default(),
                peer: Some(other.external()),
                start_in: Some(self.cfg.lead.saturating_sub(half)),
                role: Some(role),
                extra: Default::default(),
            }
        };
        Ok([
            (from.udp, go(&from, &target, PunchRole::Client)),
            (target.udp, go(&target, &from, PunchRole::Server)),
        ])
    }
}

/// What a side of a punch must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Call `punch::connect` towards `peer` at `at`, for the window; then
    /// report [`Attempt::connected`] or [`Attempt::failed`].
    Punch {
        /// The other side's external TCP address.
        peer: SocketAddr,
        /// The start moment.
        at: Instant,
        /// How long to try.
        window: Duration,
        /// Which end of the transfer this side is.
        role: PunchRole,
    },
    /// Punching did not work: set up a relay circuit.
    Relay,
}

/// Where a downloader's attempt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The ask is sent; waiting for the go until then.
    Asked(Instant),
    /// Punching from the start moment until then.
    Punching(Instant),
    /// A punched connection is up.
    Connected,
    /// Gave up on punching: the relay's turn.
    Relay,
}

/// One downloader's punch: ask, wait for the go, punch, or fall back to a
/// relay when the go does not come or the window ends.
#[derive(Debug, Clone)]
pub struct Attempt {
    cfg: PunchConfig,
    token: u64,
    phase: Phase,
}

impl Attempt {
    /// The ask with `token` was sent at `now`.
    pub fn new(now: Instant, token: u64, cfg: PunchConfig) -> Attempt {
        Attempt {
            cfg,
            token,
            phase: Phase::Asked(now + cfg.ask_timeout),
        }
    }

    /// Where it stands.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// A go arrived. Only the first go with this attempt's token counts.
    pub fn on_go(&mut self, now: Instant, go: &Punch) -> Option<Action> {
        if !matches!(self.phase, Phase::Asked(_)) || go.token != self.token {
            return None;
        }
        let action = plan_go(now, go, self.cfg.window)?;
        if let Action::Punch { at, window, .. } = action {
            self.phase = Phase::Punching(at + window);
        }
        Some(action)
    }

    /// The punched connection is up.
    pub fn connected(&mut self) {
        if matches!(self.phase, Phase::Punching(_)) {
            self.phase = Phase::Connected;
        }
    }

    /// `punch::connect` gave up.
    pub fn failed(&mut self) -> Option<Action> {
        self.give_up()
    }

    fn give_up(&mut self) -> Option<Action> {
        match self.phase {
            Phase::Asked(_) | Phase::Punching(_) => {
                self.phase = Phase::Relay;
                Some(Action::Relay)
            }
            _ => None,
        }
    }

    /// Time passed: a go that did not come, or a window that ended (the
    /// connect call also ends then; whichever comes first decides).
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Action> {
        match self.phase {
            Phase::Asked(t) | Phase::Punching(t) if now >= t => self.give_up(),
            _ => None,
        }
    }

    /// When [`Attempt::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Asked(t) | Phase::Punching(t) => Some(t),
            _ => None,
        }
    }
}

/// What a go tells its receiver to do (the firewalled side acts on it
/// directly; it must come from one of its proxies).
pub fn plan_go(now: Instant, go: &Punch, window: Duration) -> Option<Action> {
    if go.step != PunchStep::Go {
        return None;
    }
    Some(Action::Punch {
        peer: go.peer?,
        at: now + go.start_in?,
        window,
        role: go.role?,
    })
}

/// Tokens of punches a firewalled node already acted on, so that a go
/// repeated (or replayed by its proxy) starts no second punch. Bounded.
#[derive(Debug, Default)]
pub struct SeenTokens {
    order: VecDeque<u64>,
    set: HashMap<u64, ()>,
}

impl SeenTokens {
    /// Most tokens remembered.
    pub const CAP: usize = 256;

    /// Whether `token` is new (and remembers it).
    pub fn first_time(&mut self, token: u64) -> bool {
        if self.set.contains_key(&token) {
            return false;
        }
        if self.order.len() >= Self::CAP {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.order.push_back(token);
        self.set.insert(token, ());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(last: u8, tcp: u16, rtt_ms: Option<u64>) -> Side {
        Side {
            udp: SocketAddr::from((Ipv4Addr::new(11, 0, 0, last), 20000)),
            tcp_port: tcp,
            rtt: rtt_ms.map(Duration::from_millis),
        }
    }

    fn ask(token: u64) -> Punch {
        Punch {
            ip: Ipv4Addr::new(11, 0, 0, 12).into(),
            step: PunchStep::Ask,
            push_id: Some(0xabcd),
            token,
            ports: Ports {
                udp: None,
                tcp: Some(6000),
            },
            peer: None,
            start_in: None,
            role: None,
            extra: Default::default(),
        }
    }

    fn cfg() -> PunchConfig {
        PunchConfig {
            lead: Duration::from_millis(100),
            window: Duration::from_millis(300),
            ask_timeout: Duration::from_millis(200),
            per_source: 2,
            in_all: 3,
            budget_interval: Duration::from_secs(1),
        }
    }

    #[test]
    fn the_proxy_tells_each_side_the_others_external_address_and_one_start() {
        let mut r = Rendezvous::new(cfg());
        let t = Instant::now();
        let d = side(12, 6000, Some(40));
        let u = side(11, 7000, None);
        let [(to_d, go_d), (to_u, go_u)] = r.ask(t, d, &ask(7), Some(u)).unwrap();
        assert_eq!(to_d, d.udp);
        assert_eq!(to_u, u.udp);
        assert_eq!(go_d.peer, Some(u.external()));
        assert_eq!(go_u.peer, Some(d.external()));
        assert_eq!(
            (go_d.role, go_u.role),
            (Some(PunchRole::Client), Some(PunchRole::Server))
        );
        assert_eq!(go_d.token, 7);
        // Half the downloader's round trip is taken off its lead.
        assert_eq!(go_d.start_in, Some(Duration::from_millis(80)));
        assert_eq!(go_u.start_in, Some(Duration::from_millis(100)));
        // Both gos survive the wire.
        for g in [go_d, go_u] {
            let m = crate::Message::Punch(g.clone());
            assert_eq!(crate::Message::parse(&m.encode()), Ok(m));
        }
    }

    #[test]
    fn the_proxy_refuses_unknown_targets_and_keeps_its_budgets() {
        let mut r = Rendezvous::new(cfg());
        let t = Instant::now();
        let u = side(11, 7000, None);
        assert_eq!(
            r.ask(t, side(12, 1, None), &ask(1), None).unwrap_err(),
            Refusal::UnknownTarget
        );
        assert!(r.ask(t, side(12, 1, None), &ask(1), Some(u)).is_ok());
        assert!(r.ask(t, side(12, 1, None), &ask(2), Some(u)).is_ok());
        assert_eq!(
            r.ask(t, side(12, 1, None), &ask(3), Some(u)).unwrap_err(),
            Refusal::OverBudget
        );
        assert!(r.ask(t, side(13, 1, None), &ask(4), Some(u)).is_ok());
        assert_eq!(
            r.ask(t, side(14, 1, None), &ask(5), Some(u)).unwrap_err(),
            Refusal::OverBudget
        );
        // The interval passes on the virtual clock: budgets are back.
        let later = t + Duration::from_secs(1);
        assert!(r.ask(later, side(12, 1, None), &ask(6), Some(u)).is_ok());
        let mut go = ask(9);
        go.step = PunchStep::Go;
        assert_eq!(
            r.ask(later, side(15, 1, None), &go, Some(u)).unwrap_err(),
            Refusal::NotAsk
        );
    }

    fn go_for(token: u64) -> Punch {
        let mut r = Rendezvous::new(cfg());
        let [(_, go), _] = r
            .ask(
                Instant::now(),
                side(12, 6000, None),
                &ask(token),
                Some(side(11, 7000, None)),
            )
            .unwrap();
        go
    }

    #[test]
    fn the_downloader_punches_at_the_start_and_falls_back_when_the_window_ends() {
        let t = Instant::now();
        let mut a = Attempt::new(t, 5, cfg());
        assert_eq!(a.poll_timeout(), Some(t + Duration::from_millis(200)));
        // A go for another punch is ignored.
        assert_eq!(a.on_go(t, &go_for(6)), None);
        let now = t + Duration::from_millis(10);
        let act = a.on_go(now, &go_for(5)).unwrap();
        let start = now + Duration::from_millis(100);
        assert_eq!(
            act,
            Action::Punch {
                peer: SocketAddr::from((Ipv4Addr::new(11, 0, 0, 11), 7000)),
                at: start,
                window: Duration::from_millis(300),
                role: PunchRole::Client,
            }
        );
        // A second go does not start a second punch.
        assert_eq!(a.on_go(now, &go_for(5)), None);
        assert_eq!(a.poll_timeout(), Some(start + Duration::from_millis(300)));
        assert_eq!(a.handle_timeout(start + Duration::from_millis(299)), None);
        assert_eq!(
            a.handle_timeout(start + Duration::from_millis(300)),
            Some(Action::Relay)
        );
        assert_eq!(a.phase(), Phase::Relay);
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn no_go_in_time_means_relay_and_a_connection_means_done() {
        let t = Instant::now();
        let mut a = Attempt::new(t, 5, cfg());
        assert_eq!(a.handle_timeout(t + Duration::from_millis(199)), None);
        assert_eq!(
            a.handle_timeout(t + Duration::from_millis(200)),
            Some(Action::Relay)
        );
        // A late go is ignored.
        assert_eq!(a.on_go(t + Duration::from_millis(250), &go_for(5)), None);

        let mut b = Attempt::new(t, 5, cfg());
        b.on_go(t, &go_for(5)).unwrap();
        b.connected();
        assert_eq!(b.phase(), Phase::Connected);
        assert_eq!(b.handle_timeout(t + Duration::from_secs(10)), None);
        assert_eq!(b.failed(), None);

        let mut c = Attempt::new(t, 5, cfg());
        c.on_go(t, &go_for(5)).unwrap();
        assert_eq!(c.failed(), Some(Action::Relay));
    }

    #[test]
    fn a_firewalled_side_acts_on_each_token_once() {
        let mut seen = SeenTokens::default();
        assert!(seen.first_time(1));
        assert!(!seen.first_time(1));
        for i in 2..=(SeenTokens::CAP as u64 + 1) {
            assert!(seen.first_time(i));
        }
        // The oldest was forgotten; the bound holds.
        assert!(seen.first_time(1));
        assert!(seen.order.len() <= SeenTokens::CAP);
    }

    #[test]
    fn the_documented_messages_parse_and_bad_ones_do_not() {
        use crate::message::{Message, ParseError};
        let ask = br#"{"Command": 8, "IP": "11.0.0.12", "PushId": "00c0ffee00c0ffee", "Step": "Ask", "TcpPort": 6346, "Token": "5e1f00d5e1f00d5e"}"#;
        let m = Message::parse(ask).unwrap();
        assert_eq!(m.encode(), ask.to_vec());
        let Message::Punch(p) = m else { panic!() };
        assert_eq!(p.push_id, Some(0x00c0_ffee_00c0_ffee));
        assert_eq!(p.ports.tcp, Some(6346));
        let go = br#"{"Command": 8, "IP": "11.0.0.2", "Peer": "11.0.0.11:6346", "Role": "Client", "StartIn": 480, "Step": "Go", "Token": "5e1f00d5e1f00d5e"}"#;
        let m = Message::parse(go).unwrap();
        assert_eq!(m.encode(), go.to_vec());
        let plan = plan_go(
            Instant::now(),
            match &m {
                Message::Punch(p) => p,
                _ => panic!(),
            },
            Duration::from_secs(1),
        );
        assert!(matches!(
            plan,
            Some(Action::Punch {
                role: PunchRole::Client,
                ..
            })
        ));
        let relay = br#"{"Circuit": "000102030405060708090a0b0c0d0e0f", "Command": 9, "IP": "11.0.0.12", "PushId": "00c0ffee00c0ffee", "Relay": "11.0.0.2:6346"}"#;
        let m = Message::parse(relay).unwrap();
        assert_eq!(m.encode(), relay.to_vec());
        let Message::Relay(r) = m else { panic!() };
        assert_eq!(r.circuit[15], 15);
        for (bad, why) in [
            (&br#"{"Command": 8, "IP": "1.2.3.4", "Step": "Ask", "TcpPort": 1, "Token": "5e1f00d5e1f00d5e"}"#[..], ParseError::Missing("PushId")),
            (br#"{"Command": 8, "IP": "1.2.3.4", "Step": "Go", "Token": "5e1f00d5e1f00d5e", "Peer": "1.2.3.4:5", "Role": "Client"}"#, ParseError::Missing("StartIn")),
            (br#"{"Command": 8, "IP": "1.2.3.4", "Step": "Go", "Token": "5E1F00D5E1F00D5E", "Peer": "1.2.3.4:5", "Role": "Client", "StartIn": 1}"#, ParseError::Invalid("Token")),
            (br#"{"Command": 8, "IP": "1.2.3.4", "Step": "Go", "Token": "5e1f00d5e1f00d5e", "Peer": "1.2.3.4:0", "Role": "Client", "StartIn": 1}"#, ParseError::Invalid("Peer")),
            (br#"{"Command": 8, "IP": "1.2.3.4", "Step": "Jump", "Token": "5e1f00d5e1f00d5e"}"#, ParseError::Invalid("Step")),
            (br#"{"Command": 9, "IP": "1.2.3.4", "Circuit": "0001", "Relay": "1.2.3.4:5"}"#, ParseError::Invalid("Circuit")),
            (br#"{"Command": 9, "IP": "1.2.3.4", "Circuit": "000102030405060708090a0b0c0d0e0f"}"#, ParseError::Missing("Relay")),
        ] {
            assert_eq!(Message::parse(bad), Err(why));
        }
    }
}
