//! Choosing how to reach a download source: a pure state machine.
//!
//! Given what is known of a source (whether it said it cannot be
//! connected to, whether a push can be asked of it) and of ourselves
//! (whether a pushed connection can reach us), [`PathSelector`] yields the
//! attempts to make, one at a time, each with its deadline; the driver
//! performs them and reports how each ended. It ends connected, with the
//! path that worked, or exhausted, with how each attempt failed.
//!
//! The order is: a direct connection (skipped for a source that says it
//! is firewalled), then a push through its proxies (skipped when no push
//! can be asked, or when we are known not to be reachable ourselves),
//! then hole punching through a proxy that is a peer of both (skipped
//! when no such proxy is known), then a relay circuit (skipped when no
//! relay is known). Punching and relaying are the ways left when neither
//! side can take a connection, so they do not depend on our own
//! reachability.
//!
//! No I/O and no clock: the time is passed in.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

/// One way of reaching a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Connect to its TCP address.
    Direct,
    /// Ask it, through its push proxies, to connect to us.
    Push,
    /// Ask a proxy of both for a rendezvous, then open a TCP connection
    /// from both sides at the same moment.
    Punch,
    /// Both sides connect out to a reachable relay, which splices them.
    Relay,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Path::Direct => "direct",
            Path::Push => "push",
            Path::Punch => "punch",
            Path::Relay => "relay",
        })
    }
}

/// How an attempt ended without a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The attempt failed at once (refused, unreachable, no route, no
    /// proxy to send the push to), with why.
    Failed(String),
    /// Nothing came before its deadline.
    TimedOut,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Failed(why) => f.write_str(why),
            Failure::TimedOut => f.write_str("timed out"),
        }
    }
}

/// What is known of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SourceFacts {
    /// It said it cannot be connected to (`"Firewalled": true`).
    pub firewalled: bool,
    /// A push can be asked of it: its push id and a proxy, or it is a
    /// peer of ours that told us its push id.
    pub pushable: bool,
    /// A hole punch can be asked for: a proxy holding its push id is a
    /// current peer of ours.
    pub punchable: bool,
    /// A relay is known that can be invited to: a reachable peer that
    /// relays, through which (or through a proxy) the source can be told
    /// the circuit.
    pub relayable: bool,
}

/// What is known of ourselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OwnFacts {
    /// We are known not to be reachable: a pushed connection could not
    /// come in.
    pub firewalled: bool,
}

/// Deadlines of each kind of attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathConfig {
    /// A direct connection.
    pub direct_timeout: Duration,
    /// From sending a push to the pushed connection's arrival.
    pub push_timeout: Duration,
    /// From asking for a punch to the punched connection (the wait for
    /// the go, the lead and the punching window).
    pub punch_timeout: Duration,
    /// From sending the relay invite to the circuit's splice.
    pub relay_timeout: Duration,
}

impl Default for PathConfig {
    fn default() -> Self {
        PathConfig {
            direct_timeout: Duration::from_secs(5),
            push_timeout: Duration::from_secs(10),
            punch_timeout: Duration::from_secs(9),
            relay_timeout: Duration::from_secs(10),
        }
    }
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Start this attempt; report its end by `deadline` with
    /// [`PathSelector::connected`] or [`PathSelector::failed`], or call
    /// [`PathSelector::poll`] again at the deadline.
    Start {
        /// The way to try.
        path: Path,
        /// When it counts as timed out.
        deadline: Instant,
    },
    /// The current attempt runs until this time.
    Wait(Instant),
    /// Connected through this path.
    Connected(Path),
    /// Every path failed: how each did (empty when there was no path to
    /// try at all).
    Exhausted(Vec<(Path, Failure)>),
}

/// The attempts for one source (see the module documentation).
#[derive(Debug, Clone)]
pub struct PathSelector {
    cfg: PathConfig,
    plan: VecDeque<Path>,
    current: Option<(Path, Instant)>,
    failures: Vec<(Path, Failure)>,
    connected: Option<Path>,
}

impl PathSelector {
    /// The plan for a source.
    pub fn new(cfg: PathConfig, source: SourceFacts, own: OwnFacts) -> Self {
        let mut plan = VecDeque::new();
        if !source.firewalled {
            plan.push_back(Path::Direct);
        }
        if source.pushable && !own.firewalled {
            plan.push_back(Path::Push);
        }
        if source.punchable {
            plan.push_back(Path::Punch);
        }
        if source.relayable {
            plan.push_back(Path::Relay);
        }
        PathSelector {
            cfg,
            plan,
            current: None,
            failures: Vec::new(),
            connected: None,
        }
    }

    /// A plan that starts with `first` (a path that worked for this source
    /// before), then the usual order without it.
    pub fn starting_with(mut self, first: Path) -> Self {
        if let Some(i) = self.plan.iter().position(|p| *p == first) {
            self.plan.remove(i);
            self.plan.push_front(first);
        }
        self
    }

    /// The paths still to try, in order.
    pub fn plan(&self) -> impl Iterator<Item = Path> + '_ {
        self.plan.iter().copied()
    }

    fn timeout(&self, path: Path) -> Duration {
        match path {
            Path::Direct => self.cfg.direct_timeout,
            Path::Push => self.cfg.push_timeout,
            Path::Punch => self.cfg.punch_timeout,
            Path::Relay => self.cfg.relay_timeout,
        }
    }

    /// What to do now. An attempt past its deadline counts as timed out.
    pub fn poll(&mut self, now: Instant) -> Next {
        if let Some(path) = self.connected {
            return Next::Connected(path);
        }
        if let Some((path, deadline)) = self.current {
            if now < deadline {
                return Next::Wait(deadline);
            }
            self.current = None;
            self.failures.push((path, Failure::TimedOut));
        }
        match self.plan.pop_front() {
            Some(path) => {
                let deadline = now + self.timeout(path);
                self.current = Some((path, deadline));
                Next::Start { path, deadline }
            }
            None => Next::Exhausted(self.failures.clone()),
        }
    }

    /// When [`PathSelector::poll`] must be called at the latest.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.current.map(|(_, d)| d)
    }

    /// The current attempt connected. A report for another path (one
    /// already timed out) is ignored.
    pub fn connected(&mut self, path: Path) {
        if self.current.is_some_and(|(p, _)| p == path) {
            self.current = None;
            self.connected = Some(path);
        }
    }

    /// The current attempt failed before its deadline.
    pub fn failed(&mut self, path: Path, why: Failure) {
        if self.current.is_some_and(|(p, _)| p == path) {
            self.current = None;
            self.failures.push((path, why));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PathConfig {
        PathConfig {
            direct_timeout: Duration::from_millis(100),
            push_timeout: Duration::from_millis(300),
            punch_timeout: Duration::from_millis(700),
            relay_timeout: Duration::from_millis(1100),
        }
    }

    fn open() -> SourceFacts {
        SourceFacts {
            firewalled: false,
            pushable: true,
            ..SourceFacts::default()
        }
    }

    fn every_way() -> SourceFacts {
        SourceFacts {
            firewalled: false,
            pushable: true,
            punchable: true,
            relayable: true,
        }
    }

    #[test]
    fn direct_first_then_push_after_a_timeout() {
        let t0 = Instant::now();
        let mut s = PathSelector::new(cfg(), open(), OwnFacts::default());
        let d = t0 + Duration::from_millis(100);
        assert_eq!(
            s.poll(t0),
            Next::Start {
                path: Path::Direct,
                deadline: d
            }
        );
        assert_eq!(s.poll(t0 + Duration::from_millis(50)), Next::Wait(d));
        assert_eq!(s.poll_timeout(), Some(d));
        // The direct attempt's deadline passes: the push starts then.
        let p = d + Duration::from_millis(300);
        assert_eq!(
            s.poll(d),
            Next::Start {
                path: Path::Push,
                deadline: p
            }
        );
        s.connected(Path::Push);
        assert_eq!(s.poll(p), Next::Connected(Path::Push));
        // A late report for the direct attempt changes nothing.
        s.connected(Path::Direct);
        assert_eq!(s.poll(p), Next::Connected(Path::Push));
    }

    #[test]
    fn a_direct_connection_ends_it() {
        let t0 = Instant::now();
        let mut s = PathSelector::new(cfg(), open(), OwnFacts::default());
        assert!(matches!(
            s.poll(t0),
            Next::Start {
                path: Path::Direct,
                ..
            }
        ));
        s.connected(Path::Direct);
        assert_eq!(
            s.poll(t0 + Duration::from_secs(9)),
            Next::Connected(Path::Direct)
        );
    }

    #[test]
    fn a_firewalled_source_is_pushed_at_once() {
        let t0 = Instant::now();
        let src = SourceFacts {
            firewalled: true,
            pushable: true,
            ..SourceFacts::default()
        };
        let mut s = PathSelector::new(cfg(), src, OwnFacts::default());
        assert!(matches!(
            s.poll(t0),
            Next::Start {
                path: Path::Push,
                ..
            }
        ));
    }

    #[test]
    fn every_failure_is_reported_in_order() {
        let t0 = Instant::now();
        let mut s = PathSelector::new(cfg(), open(), OwnFacts::default());
        let _ = s.poll(t0);
        s.failed(Path::Direct, Failure::Failed("refused".into()));
        let Next::Start { path, deadline } = s.poll(t0) else {
            panic!()
        };
        assert_eq!(path, Path::Push);
        assert_eq!(
            s.poll(deadline),
            Next::Exhausted(vec![
                (Path::Direct, Failure::Failed("refused".into())),
                (Path::Push, Failure::TimedOut)
            ])
        );
        // It stays exhausted.
        assert!(matches!(s.poll(deadline), Next::Exhausted(_)));
    }

    #[test]
    fn no_push_without_a_way_to_ask_or_a_way_in() {
        let t0 = Instant::now();
        let src = SourceFacts {
            firewalled: false,
            pushable: false,
            ..SourceFacts::default()
        };
        let s = PathSelector::new(cfg(), src, OwnFacts::default());
        assert_eq!(s.plan().collect::<Vec<_>>(), vec![Path::Direct]);
        // We cannot take a pushed connection: only direct.
        let s = PathSelector::new(cfg(), open(), OwnFacts { firewalled: true });
        assert_eq!(s.plan().collect::<Vec<_>>(), vec![Path::Direct]);
        // Firewalled on both sides: nothing to try.
        let src = SourceFacts {
            firewalled: true,
            pushable: true,
            ..SourceFacts::default()
        };
        let mut s = PathSelector::new(cfg(), src, OwnFacts { firewalled: true });
        assert_eq!(s.poll(t0), Next::Exhausted(vec![]));
    }

    #[test]
    fn a_path_that_worked_goes_first() {
        let s = PathSelector::new(cfg(), open(), OwnFacts::default()).starting_with(Path::Push);
        assert_eq!(s.plan().collect::<Vec<_>>(), vec![Path::Push, Path::Direct]);
    }

    #[test]
    fn the_order_is_direct_push_punch_relay_each_after_the_last_times_out() {
        let t0 = Instant::now();
        let mut s = PathSelector::new(cfg(), every_way(), OwnFacts::default());
        assert_eq!(
            s.plan().collect::<Vec<_>>(),
            vec![Path::Direct, Path::Push, Path::Punch, Path::Relay]
        );
        let mut now = t0;
        let mut started = Vec::new();
        for (path, ms) in [
            (Path::Direct, 100),
            (Path::Push, 300),
            (Path::Punch, 700),
            (Path::Relay, 1100),
        ] {
            let deadline = now + Duration::from_millis(ms);
            assert_eq!(s.poll(now), Next::Start { path, deadline });
            // Just before the deadline it still waits.
            assert_eq!(
                s.poll(deadline - Duration::from_millis(1)),
                Next::Wait(deadline)
            );
            started.push(path);
            now = deadline;
        }
        assert_eq!(
            s.poll(now),
            Next::Exhausted(started.iter().map(|p| (*p, Failure::TimedOut)).collect())
        );
    }

    #[test]
    fn both_firewalled_punch_first_then_relay() {
        let t0 = Instant::now();
        let src = SourceFacts {
            firewalled: true,
            pushable: true,
            punchable: true,
            relayable: true,
        };
        let mut s = PathSelector::new(cfg(), src, OwnFacts { firewalled: true });
        assert_eq!(s.plan().collect::<Vec<_>>(), vec![Path::Punch, Path::Relay]);
        let Next::Start { path, .. } = s.poll(t0) else {
            panic!("nothing started")
        };
        assert_eq!(path, Path::Punch);
        // The punch fails early (no go came, or the SYNs met nothing):
        // the relay starts at once, with its own deadline.
        let t1 = t0 + Duration::from_millis(20);
        s.failed(Path::Punch, Failure::Failed("no go".into()));
        assert_eq!(
            s.poll(t1),
            Next::Start {
                path: Path::Relay,
                deadline: t1 + Duration::from_millis(1100)
            }
        );
        s.connected(Path::Relay);
        assert_eq!(s.poll(t1), Next::Connected(Path::Relay));
    }

    #[test]
    fn a_relay_refusal_is_kept_with_its_words() {
        let t0 = Instant::now();
        let src = SourceFacts {
            firewalled: true,
            relayable: true,
            ..SourceFacts::default()
        };
        let mut s = PathSelector::new(cfg(), src, OwnFacts { firewalled: true });
        let _ = s.poll(t0);
        s.failed(
            Path::Relay,
            Failure::Failed("relay refused: relaying is off".into()),
        );
        assert_eq!(
            s.poll(t0),
            Next::Exhausted(vec![(
                Path::Relay,
                Failure::Failed("relay refused: relaying is off".into())
            )])
        );
    }

    #[test]
    fn a_punch_that_worked_goes_first_and_late_reports_change_nothing() {
        let t0 = Instant::now();
        let mut s =
            PathSelector::new(cfg(), every_way(), OwnFacts::default()).starting_with(Path::Punch);
        assert_eq!(
            s.plan().collect::<Vec<_>>(),
            vec![Path::Punch, Path::Direct, Path::Push, Path::Relay]
        );
        let Next::Start { deadline, .. } = s.poll(t0) else {
            panic!("nothing started")
        };
        // The punch times out; the direct attempt starts.
        assert!(matches!(
            s.poll(deadline),
            Next::Start {
                path: Path::Direct,
                ..
            }
        ));
        // The punched connection comes late: it is not taken.
        s.connected(Path::Punch);
        assert!(matches!(s.poll(deadline), Next::Wait(_)));
    }

    #[test]
    fn paths_are_named_as_shown() {
        let names: Vec<String> = [Path::Direct, Path::Push, Path::Punch, Path::Relay]
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(names, ["direct", "push", "punch", "relay"]);
    }
}
