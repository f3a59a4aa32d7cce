//! What the port mapper does next, without I/O: which protocol to try,
//! when to renew (at half the lease), when to wait and try again, when to
//! give up, and what to tell the user. The driver (`super`) does the
//! requests and feeds their outcomes back; time comes in as arguments.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// A way to ask a router for a port mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// UPnP Internet Gateway Device (SSDP discovery, then SOAP over HTTP).
    Upnp,
    /// Port Control Protocol (RFC 6887), to the default gateway.
    Pcp,
    /// NAT Port Mapping Protocol (RFC 6886), to the default gateway.
    NatPmp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Upnp => "UPnP",
            Protocol::Pcp => "PCP",
            Protocol::NatPmp => "NAT-PMP",
        })
    }
}

/// The transport a port is mapped for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Udp,
    Tcp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        })
    }
}

/// One port forwarded by the router, to the same port number here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mapping {
    pub(crate) transport: Transport,
    pub(crate) port: u16,
}

impl fmt::Display for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.transport, self.port)
    }
}

/// The ports to map: the overlay's UDP and TCP ports, then the DHT's UDP
/// port when the DHT runs; each once, none with port 0 (not bound).
pub(crate) fn wanted(udp: u16, tcp: u16, dht: Option<u16>) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::with_capacity(3);
    let all = [
        (Transport::Udp, Some(udp)),
        (Transport::Tcp, Some(tcp)),
        (Transport::Udp, dht),
    ];
    for (transport, port) in all {
        let Some(port) = port.filter(|p| *p != 0) else {
            continue;
        };
        let m = Mapping { transport, port };
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

/// The order protocols are tried in: UPnP first (the most common on home
/// routers), then PCP, then its predecessor NAT-PMP.
pub(crate) const ORDER: [Protocol; 3] = [Protocol::Upnp, Protocol::Pcp, Protocol::NatPmp];

/// Whether the node's ports are mapped, as the user is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortMapStatus {
    /// Still trying the first time.
    Pending,
    /// Mapped: peers reach us at `external_ip` on our own port numbers.
    Mapped {
        /// How.
        protocol: Protocol,
        /// The router's external address.
        external_ip: Ipv4Addr,
    },
    /// No protocol made a mapping (or a mapping could not be renewed).
    Unmapped,
}

/// Timers and limits of the mapper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    /// Lease asked for; also the renewal period for routers that grant
    /// only permanent mappings.
    pub(crate) lease: Duration,
    /// Wait after a round in which every protocol failed.
    pub(crate) retry: Duration,
    /// Failed rounds before giving up for good.
    pub(crate) rounds: u32,
}

/// The next thing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Ask for a mapping with this protocol.
    Map(Protocol),
    /// Renew the mapping held with this protocol.
    Renew(Protocol),
    /// Nothing until then.
    Wait(Instant),
    /// Gave up: nothing more to do.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Trying(usize),
    Mapped {
        protocol: Protocol,
        renew_at: Instant,
    },
    Waiting(Instant),
    GaveUp,
}

/// The port mapper's decisions.
#[derive(Debug)]
pub(crate) struct Machine {
    timing: Timing,
    order: Vec<Protocol>,
    state: State,
    status: PortMapStatus,
    failed_rounds: u32,
}

impl Machine {
    /// Tries the protocols of `order` in turn (all of [`ORDER`] if empty).
    pub(crate) fn new(timing: Timing, order: &[Protocol]) -> Self {
        Machine {
            timing,
            order: if order.is_empty() {
                ORDER.to_vec()
            } else {
                order.to_vec()
            },
            state: State::Trying(0),
            status: PortMapStatus::Pending,
            failed_rounds: 0,
        }
    }

    /// What the user is told now.
    #[cfg(test)]
    pub(crate) fn status(&self) -> PortMapStatus {
        self.status
    }

    /// What to do at `now`.
    pub(crate) fn poll(&mut self, now: Instant) -> Step {
        match self.state {
            State::Trying(i) => Step::Map(self.order[i]),
            State::Mapped { protocol, renew_at } if now >= renew_at => Step::Renew(protocol),
            State::Mapped { renew_at, .. } => Step::Wait(renew_at),
            State::Waiting(until) if now >= until => {
                self.state = State::Trying(0);
                Step::Map(self.order[0])
            }
            State::Waiting(until) => Step::Wait(until),
            State::GaveUp => Step::Done,
        }
    }

    /// A mapping (new or renewed) with `protocol` was granted for
    /// `lease` (zero: permanent). Returns the new status if it changed.
    pub(crate) fn on_mapped(
        &mut self,
        now: Instant,
        protocol: Protocol,
        external_ip: Ipv4Addr,
        lease: Duration,
    ) -> Option<PortMapStatus> {
        let lease = if lease.is_zero() {
            self.timing.lease
        } else {
            lease
        };
        self.state = State::Mapped {
            protocol,
            renew_at: now + lease / 2,
        };
        self.failed_rounds = 0;
        self.set(PortMapStatus::Mapped {
            protocol,
            external_ip,
        })
    }

    /// The last `Map` or `Renew` failed. A failed renewal starts a new
    /// round; the mapping may still hold until its lease ends, so the
    /// status changes only when the whole round fails. Returns the new
    /// status if it changed.
    pub(crate) fn on_failed(&mut self, now: Instant) -> Option<PortMapStatus> {
        match self.state {
            State::Mapped { .. } => {
                self.state = State::Trying(0);
                None
            }
            State::Trying(i) if i + 1 < self.order.len() => {
                self.state = State::Trying(i + 1);
                None
            }
            State::Trying(_) => {
                self.failed_rounds += 1;
                self.state = if self.failed_rounds >= self.timing.rounds {
                    State::GaveUp
                } else {
                    State::Waiting(now + self.timing.retry)
                };
                self.set(PortMapStatus::Unmapped)
            }
            State::Waiting(_) | State::GaveUp => None,
        }
    }

    fn set(&mut self, status: PortMapStatus) -> Option<PortMapStatus> {
        (self.status != status).then(|| {
            self.status = status;
            status
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(11, 0, 0, 11);

    fn timing() -> Timing {
        Timing {
            lease: Duration::from_secs(3600),
            retry: Duration::from_secs(60),
            rounds: 3,
        }
    }

    #[test]
    fn tries_each_protocol_in_order_and_renews_at_half_the_lease() {
        let t0 = Instant::now();
        let mut m = Machine::new(timing(), &[]);
        assert_eq!(m.status(), PortMapStatus::Pending);
        assert_eq!(m.poll(t0), Step::Map(Protocol::Upnp));
        assert_eq!(m.on_failed(t0), None, "one protocol failing says nothing");
        assert_eq!(m.poll(t0), Step::Map(Protocol::Pcp));
        let got = m.on_mapped(t0, Protocol::Pcp, IP, Duration::from_secs(120));
        assert_eq!(
            got,
            Some(PortMapStatus::Mapped {
                protocol: Protocol::Pcp,
                external_ip: IP
            })
        );
        assert_eq!(m.poll(t0), Step::Wait(t0 + Duration::from_secs(60)));
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(m.poll(t1), Step::Renew(Protocol::Pcp));
        // A renewal that succeeds changes nothing the user sees.
        assert_eq!(
            m.on_mapped(t1, Protocol::Pcp, IP, Duration::from_secs(120)),
            None
        );
        assert_eq!(m.poll(t1), Step::Wait(t1 + Duration::from_secs(60)));
    }

    #[test]
    fn a_permanent_mapping_is_renewed_at_half_the_configured_lease() {
        let t0 = Instant::now();
        let mut m = Machine::new(timing(), &[]);
        m.poll(t0);
        m.on_mapped(t0, Protocol::Upnp, IP, Duration::ZERO);
        assert_eq!(m.poll(t0), Step::Wait(t0 + Duration::from_secs(1800)));
    }

    #[test]
    fn a_failed_round_reports_unmapped_once_waits_and_gives_up_after_the_rounds() {
        let t0 = Instant::now();
        let mut m = Machine::new(timing(), &[]);
        let mut now = t0;
        let mut reports = Vec::new();
        for round in 0..3 {
            for p in ORDER {
                assert_eq!(m.poll(now), Step::Map(p), "round {round}");
                reports.extend(m.on_failed(now));
            }
            if round < 2 {
                let until = now + Duration::from_secs(60);
                assert_eq!(m.poll(now), Step::Wait(until));
                now = until;
            }
        }
        assert_eq!(reports, vec![PortMapStatus::Unmapped]);
        assert_eq!(m.poll(now), Step::Done);
        assert_eq!(m.poll(now + Duration::from_secs(86_400)), Step::Done);
    }

    #[test]
    fn a_failed_renewal_tries_every_protocol_before_saying_unmapped() {
        let t0 = Instant::now();
        let mut m = Machine::new(timing(), &[]);
        m.poll(t0);
        m.on_mapped(t0, Protocol::Upnp, IP, Duration::from_secs(100));
        let t1 = t0 + Duration::from_secs(50);
        assert_eq!(m.poll(t1), Step::Renew(Protocol::Upnp));
        assert_eq!(m.on_failed(t1), None);
        assert_eq!(m.poll(t1), Step::Map(Protocol::Upnp));
        assert_eq!(m.on_failed(t1), None);
        assert_eq!(m.poll(t1), Step::Map(Protocol::Pcp));
        assert_eq!(m.on_failed(t1), None);
        assert_eq!(m.poll(t1), Step::Map(Protocol::NatPmp));
        assert_eq!(m.on_failed(t1), Some(PortMapStatus::Unmapped));
        // A later round that succeeds says so, and the count starts over.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!(m.poll(t2), Step::Map(Protocol::Upnp));
        assert!(matches!(
            m.on_mapped(t2, Protocol::Upnp, IP, Duration::from_secs(100)),
            Some(PortMapStatus::Mapped { .. })
        ));
        assert_eq!(m.failed_rounds, 0);
    }

    #[test]
    fn the_dht_port_is_mapped_as_a_third_port_when_the_dht_runs() {
        let udp = |port| Mapping {
            transport: Transport::Udp,
            port,
        };
        let tcp = |port| Mapping {
            transport: Transport::Tcp,
            port,
        };
        assert_eq!(wanted(20000, 10000, None), vec![udp(20000), tcp(10000)]);
        assert_eq!(
            wanted(20000, 10000, Some(6881)),
            vec![udp(20000), tcp(10000), udp(6881)]
        );
        // The same UDP port is asked for once; a TCP port may share its
        // number with a UDP one.
        assert_eq!(wanted(6881, 6881, Some(6881)), vec![udp(6881), tcp(6881)]);
        assert_eq!(wanted(20000, 10000, Some(0)), vec![udp(20000), tcp(10000)]);
    }

    #[test]
    fn only_the_protocols_asked_for_are_tried() {
        let t0 = Instant::now();
        let mut m = Machine::new(timing(), &[Protocol::NatPmp]);
        assert_eq!(m.poll(t0), Step::Map(Protocol::NatPmp));
        assert_eq!(m.on_failed(t0), Some(PortMapStatus::Unmapped));
        assert_eq!(m.poll(t0), Step::Wait(t0 + Duration::from_secs(60)));
    }
}
