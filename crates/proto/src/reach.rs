//! Whether others can reach this node: a dial-back check, as a state
//! machine without I/O.
//!
//! A node cannot tell from inside whether its ports are open to the
//! internet (a port mapping may be refused by a firewall behind the router,
//! a router may map without forwarding, a public host may have a firewall).
//! So it asks: it sends a proven rutella peer outside its own networks a
//! dial-back request (`"Command": 6`, see [`DialBack`]) with a fresh token,
//! and that peer (the *prober*) connects to the requester's address *as it
//! sees it* on the TCP port asked, exchanges the rutella hello, sends one
//! datagram carrying the token from a fresh UDP socket (so that the
//! requester's router cannot take it for an answer to traffic the requester
//! sent), and then reports from its overlay socket whether the TCP
//! connection worked.
//!
//! One [`Reach`] plays both parts:
//!
//! - the **requester**: it chooses whom to ask (proven rutella peers at
//!   addresses outside the local networks and different from ours; the
//!   configuration may allow local ones, for tests), when (as soon as a
//!   suitable peer exists, then every [`ReachConfig::recheck`], and again
//!   soon after the port mapping or the learned external address changes),
//!   tracks tokens and deadlines, and gives the verdict, a
//!   [`Reachability`];
//! - the **prober**: it accepts requests only from proven rutella peers
//!   (the driver says whether the source is one), within a budget per
//!   source IP address, one for the whole node, and a cap on dial-backs
//!   running at once. The address dialled is always the source address of
//!   the request, never one it names: a spoofed source cannot prove itself
//!   (the overlay's nonce), so nobody can aim a dial-back at a third party.
//!
//! The driver performs the prober's work ([`Reach::poll_dial`], then
//! [`Reach::dial_done`]) and sends what [`Reach::poll_transmit`] gives from
//! its overlay socket.
//!
//! The verdict of one check: **reachable** when one prober reached both the
//! TCP port (it connected and exchanged the hello) and the UDP port (its
//! datagram from a fresh socket arrived); **not reachable** when no prober
//! reached both and every prober asked reported (at least two when two or
//! more were asked), with what was reached ([`Reachability::NotReachable`]
//! says which of TCP and UDP). A check where too few probers reported (they
//! were gone, or over their budgets) decides nothing: the verdict stays and
//! the check is tried again after [`ReachConfig::retry`].

use crate::message::DialBack;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Timers and limits of the dial-back check, both sides.
#[derive(Debug, Clone)]
pub struct ReachConfig {
    /// Whether this node checks its own reachability. Off, it still
    /// answers the requests of others.
    pub check: bool,
    /// The TCP port a prober is asked to connect to: the one we believe is
    /// our external one (mapped ports equal our own).
    pub tcp_port: u16,
    /// The UDP port a prober's datagram is sent to.
    pub udp_port: u16,
    /// How long a prober has to report.
    pub timeout: Duration,
    /// After a report that the TCP connection worked, how long the datagram
    /// from the prober's fresh socket may still take to arrive.
    pub udp_grace: Duration,
    /// A new check this long after a conclusive one.
    pub recheck: Duration,
    /// A new check this long after one that decided nothing.
    pub retry: Duration,
    /// The least time between the starts of two checks, whatever changes.
    pub min_interval: Duration,
    /// Probers asked per check.
    pub probers: usize,
    /// Accept peers on loopback, private and link-local addresses as
    /// probers (tests; a LAN peer proves nothing about the internet).
    pub allow_local: bool,
    /// Seed of the tokens' generator (the node draws it from the system's
    /// random source).
    pub seed: u64,
    /// Prober side: one dial-back per source IP address per this long.
    pub per_source: Duration,
    /// Prober side: source addresses remembered for `per_source`.
    pub max_sources: usize,
    /// Prober side: dial-backs per minute for the whole node (token bucket).
    pub per_minute: u32,
    /// Prober side: the bucket's size.
    pub burst: u32,
    /// Prober side: dial-backs running at once.
    pub max_running: usize,
}

impl Default for ReachConfig {
    fn default() -> Self {
        ReachConfig {
            check: true,
            tcp_port: crate::CLASSIC_TCP_PORT,
            udp_port: crate::CLASSIC_UDP_PORT,
            timeout: Duration::from_secs(10),
            udp_grace: Duration::from_secs(2),
            recheck: Duration::from_secs(30 * 60),
            retry: Duration::from_secs(60),
            min_interval: Duration::from_secs(10),
            probers: 2,
            allow_local: false,
            seed: 0,
            per_source: Duration::from_secs(60),
            max_sources: 1024,
            per_minute: 30,
            burst: 10,
            max_running: 8,
        }
    }
}

/// Which protocol made the port mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappedBy {
    /// UPnP IGD.
    Upnp,
    /// NAT-PMP.
    NatPmp,
    /// PCP.
    Pcp,
}

impl fmt::Display for MappedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MappedBy::Upnp => "UPnP",
            MappedBy::NatPmp => "NAT-PMP",
            MappedBy::Pcp => "PCP",
        })
    }
}

/// What the port mapper says, as the check needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// Still trying: no check starts before it knows (its answer changes
    /// what a check would find).
    Pending,
    /// Mapped by this protocol at this external address.
    Mapped(MappedBy, Ipv4Addr),
    /// No mapping (none asked, or the router made none).
    None,
}

/// Whether others can reach this node, as last checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    /// Not checked yet, or no check was conclusive.
    Unknown,
    /// A prober reached our TCP and UDP ports from outside.
    Reachable {
        /// Our address as the prober saw it, with our external UDP port
        /// (the address peers give to reach us).
        addr: SocketAddr,
        /// The mapping that holds the ports open, if any.
        mapped_by: Option<MappedBy>,
    },
    /// The probers could not reach both ports.
    NotReachable {
        /// Whether some prober still reached the TCP port (downloads from
        /// us work directly).
        tcp: bool,
        /// Whether some prober's datagram reached the UDP port.
        udp: bool,
    },
}

impl Reachability {
    /// Whether peers can open TCP connections to us (downloads need no
    /// push), when known.
    pub fn tcp_reachable(&self) -> Option<bool> {
        match self {
            Reachability::Unknown => None,
            Reachability::Reachable { .. } => Some(true),
            Reachability::NotReachable { tcp, .. } => Some(*tcp),
        }
    }
}

/// A dial-back the driver must perform for a requester.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dial {
    /// The requester's overlay address (the request's source): the report
    /// goes there.
    pub reply_to: SocketAddr,
    /// Connect here (the source IP, the asked TCP port), send the rutella
    /// hello, read the server's.
    pub tcp: SocketAddr,
    /// Then send [`Dial::udp_check`] here from a fresh socket.
    pub udp: SocketAddr,
    /// The requester's token.
    pub token: u64,
}

impl Dial {
    /// The datagram to send from a fresh socket.
    pub fn udp_check(&self) -> Vec<u8> {
        DialBack::UdpCheck { token: self.token }.encode()
    }
}

/// Requests refused so far on the prober side, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProberDrops {
    /// From an address that is not a proven rutella peer.
    pub unproven: u64,
    /// Within `per_source` of the last one from that IP, or the table of
    /// sources full.
    pub per_source: u64,
    /// Over the node's budget or the cap of running dial-backs.
    pub node: u64,
}

/// One prober asked in a check.
#[derive(Debug)]
struct Asked {
    peer: SocketAddr,
    token: u64,
    deadline: Instant,
    /// The report: TCP reached, and the address it dialled.
    report: Option<(bool, Option<SocketAddr>)>,
    /// Until when the UDP datagram may still arrive after the report.
    settle: Option<Instant>,
    udp: bool,
    /// Done as of the last `handle_timeout` (no timer needed any more).
    finished: bool,
}

impl Asked {
    fn done(&self, now: Instant) -> bool {
        match self.report {
            Some(_) => self.udp || self.settle.is_some_and(|s| s <= now),
            None => self.deadline <= now,
        }
    }
    fn next_time(&self) -> Instant {
        self.settle.unwrap_or(self.deadline)
    }
}

/// The dial-back check, both sides. See the module documentation.
#[derive(Debug)]
pub struct Reach {
    cfg: ReachConfig,
    rng: ChaCha8Rng,
    /// Proven rutella peers, with when each was last asked.
    candidates: BTreeMap<SocketAddr, Option<Instant>>,
    mapping: Mapping,
    seen: Option<Ipv4Addr>,
    /// The running check.
    check: Vec<Asked>,
    last_start: Option<Instant>,
    /// When the next check is due (it starts once a suitable peer exists).
    next_check: Instant,
    verdict: Reachability,
    verdict_changed: bool,
    transmits: Vec<(SocketAddr, DialBack)>,
    dials: Vec<Dial>,
    // Prober side.
    sources: HashMap<IpAddr, Instant>,
    tokens: f64,
    refilled: Instant,
    running: usize,
    /// Requests from addresses not proven yet (the overlay is checking
    /// them), kept until they are or until `timeout`.
    waiting: Vec<(Instant, SocketAddr, u64, u16, u16)>,
    drops: ProberDrops,
}

/// Requests kept while their sources are being proven.
const MAX_WAITING: usize = 64;

/// Queued datagrams and dial-backs are bounded by the caps above; this only
/// bounds memory for a driver that does not poll.
const MAX_QUEUE: usize = 256;

impl Reach {
    /// A new check; the first runs as soon as a suitable peer exists.
    pub fn new(cfg: ReachConfig, now: Instant) -> Self {
        let tokens = f64::from(cfg.burst);
        Reach {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            cfg,
            candidates: BTreeMap::new(),
            mapping: Mapping::None,
            seen: None,
            check: Vec::new(),
            last_start: None,
            next_check: now,
            verdict: Reachability::Unknown,
            verdict_changed: false,
            transmits: Vec::new(),
            dials: Vec::new(),
            sources: HashMap::new(),
            tokens,
            refilled: now,
            running: 0,
            waiting: Vec::new(),
            drops: ProberDrops::default(),
        }
    }

    /// The verdict as it stands.
    pub fn verdict(&self) -> Reachability {
        self.verdict
    }

    /// The verdict once after each change.
    pub fn poll_verdict(&mut self) -> Option<Reachability> {
        std::mem::take(&mut self.verdict_changed).then_some(self.verdict)
    }

    /// Whether a check is running.
    pub fn checking(&self) -> bool {
        !self.check.is_empty()
    }

    /// Whether some known peer could be asked now.
    pub fn has_prober(&self) -> bool {
        self.candidates.keys().any(|a| self.eligible(a))
    }

    /// Requests refused so far as a prober.
    pub fn prober_drops(&self) -> ProberDrops {
        self.drops
    }

    /// A proven rutella peer joined (non-rutella peers do not answer
    /// dial-backs: do not give them). A request it sent before it was
    /// proven is served now.
    pub fn add_peer(&mut self, now: Instant, peer: SocketAddr) {
        let timeout = self.cfg.timeout;
        self.waiting.retain(|w| now < w.0 + timeout);
        if let Some(i) = self.waiting.iter().position(|w| w.1 == peer) {
            let (_, from, token, tcp, udp) = self.waiting.swap_remove(i);
            self.on_request(now, from, true, token, tcp, udp);
        }
        if self.cfg.check && self.candidates.len() < 4096 {
            self.candidates.entry(peer).or_insert(None);
        }
        self.handle_timeout(now);
    }

    /// A peer left.
    pub fn remove_peer(&mut self, peer: SocketAddr) {
        self.candidates.remove(&peer);
    }

    /// The port mapper's news. A change starts a new check (no sooner than
    /// `min_interval` after the last one).
    pub fn set_mapping(&mut self, now: Instant, mapping: Mapping) {
        if mapping == self.mapping {
            return;
        }
        self.mapping = mapping;
        if mapping != Mapping::Pending {
            self.soon(now);
        }
    }

    /// Our external address as peers agree they see it. A change starts a
    /// new check.
    pub fn set_seen(&mut self, now: Instant, seen: Option<Ipv4Addr>) {
        if seen == self.seen {
            return;
        }
        self.seen = seen;
        self.soon(now);
    }

    /// A new check as soon as allowed: the running one (if any) is
    /// abandoned, since it tested what no longer holds.
    fn soon(&mut self, now: Instant) {
        self.check.clear();
        self.next_check = self
            .last_start
            .map_or(now, |l| (l + self.cfg.min_interval).max(now));
        self.handle_timeout(now);
    }

    /// Whether `peer` may be asked: outside our networks (unless allowed)
    /// and not at our own external address.
    fn eligible(&self, peer: &SocketAddr) -> bool {
        let ip = peer.ip();
        if ip.is_unspecified() || ip == IpAddr::V4(Ipv4Addr::BROADCAST) || ip.is_multicast() {
            return false;
        }
        let local = crate::push::is_local(&ip);
        if local && !self.cfg.allow_local {
            return false;
        }
        let ours = match self.mapping {
            Mapping::Mapped(_, ext) => Some(ext),
            _ => None,
        };
        Some(ip) != ours.map(IpAddr::V4) && Some(ip) != self.seen.map(IpAddr::V4)
    }

    /// When [`Reach::handle_timeout`] must run next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.check.is_empty() {
            // Only probers still awaited: a finished one's time is past.
            return self
                .check
                .iter()
                .filter(|a| !a.finished)
                .map(Asked::next_time)
                .min();
        }
        (self.mapping != Mapping::Pending && self.has_prober()).then_some(self.next_check)
    }

    /// Advances the clock: ends the running check when every prober is
    /// done, starts one when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.check.is_empty() {
            for a in &mut self.check {
                a.finished |= a.done(now);
            }
            if self.check.iter().all(|a| a.finished) {
                self.conclude(now);
            }
            return;
        }
        if now >= self.next_check && self.mapping != Mapping::Pending {
            self.start(now);
        }
    }

    /// Asks up to `probers` eligible peers at distinct IP addresses, those
    /// asked longest ago (or never) first.
    fn start(&mut self, now: Instant) {
        let mut order: Vec<(Option<Instant>, SocketAddr)> = self
            .candidates
            .iter()
            .filter(|(a, _)| self.eligible(a))
            .map(|(a, t)| (*t, *a))
            .collect();
        order.sort();
        let mut chosen: Vec<SocketAddr> = Vec::new();
        for (_, a) in order {
            if chosen.len() >= self.cfg.probers {
                break;
            }
            if chosen.iter().all(|c| c.ip() != a.ip()) {
                chosen.push(a);
            }
        }
        if chosen.is_empty() {
            return;
        }
        self.last_start = Some(now);
        for peer in chosen {
            let token = self.rng.next_u64();
            self.candidates.insert(peer, Some(now));
            self.check.push(Asked {
                peer,
                token,
                deadline: now + self.cfg.timeout,
                report: None,
                settle: None,
                udp: false,
                finished: false,
            });
            tracing::debug!(%peer, "asking a peer to connect back to us");
            self.push_transmit(
                peer,
                DialBack::Request {
                    token,
                    tcp_port: self.cfg.tcp_port,
                    udp_port: self.cfg.udp_port,
                },
            );
        }
    }

    fn conclude(&mut self, now: Instant) {
        let asked = std::mem::take(&mut self.check);
        let reports: Vec<(bool, bool, Option<SocketAddr>)> = asked
            .iter()
            .filter_map(|a| a.report.map(|(tcp, seen)| (tcp, a.udp, seen)))
            .collect();
        let mapped = match self.mapping {
            Mapping::Mapped(by, ip) => Some((by, ip)),
            _ => None,
        };
        let verdict = if let Some(&(_, _, seen)) = reports.iter().find(|(t, u, _)| *t && *u) {
            let ip = seen
                .map(|s| s.ip())
                .or(mapped.map(|(_, ip)| IpAddr::V4(ip)))
                .or(self.seen.map(IpAddr::V4))
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            Some(Reachability::Reachable {
                addr: SocketAddr::new(ip, self.cfg.udp_port),
                mapped_by: mapped.map(|(by, _)| by),
            })
        } else if !reports.is_empty() && reports.len() >= asked.len().min(2) {
            Some(Reachability::NotReachable {
                tcp: reports.iter().any(|r| r.0),
                udp: reports.iter().any(|r| r.1),
            })
        } else {
            None
        };
        match verdict {
            Some(v) => {
                tracing::debug!(verdict = ?v, "reachability checked");
                self.next_check = now + self.cfg.recheck;
                if v != self.verdict {
                    self.verdict = v;
                    self.verdict_changed = true;
                }
            }
            None => {
                tracing::debug!(
                    asked = asked.len(),
                    reported = reports.len(),
                    "too few peers reported; reachability check to be tried again"
                );
                self.next_check = now + self.cfg.retry;
            }
        }
    }

    /// A dial-back message from `from`. `proven_peer`: the driver's word
    /// that `from` is a proven rutella peer (requests from anyone else are
    /// refused).
    pub fn handle_message(
        &mut self,
        now: Instant,
        from: SocketAddr,
        proven_peer: bool,
        message: DialBack,
    ) {
        match message {
            DialBack::Request {
                token,
                tcp_port,
                udp_port,
            } => self.on_request(now, from, proven_peer, token, tcp_port, udp_port),
            DialBack::UdpCheck { token } => {
                // From any source: a fresh socket's address is unknown to
                // us, and the token is the proof.
                if let Some(a) = self.check.iter_mut().find(|a| a.token == token) {
                    a.udp = true;
                }
                self.handle_timeout(now);
            }
            DialBack::Report { token, tcp, seen } => {
                let grace = self.cfg.udp_grace;
                // Only from the peer it was asked of.
                if let Some(a) = self
                    .check
                    .iter_mut()
                    .find(|a| a.token == token && a.peer == from && a.report.is_none())
                {
                    a.report = Some((tcp, seen));
                    a.settle = Some(now + grace);
                } else {
                    tracing::debug!(%from, "dial-back report not asked for, ignored");
                }
                self.handle_timeout(now);
            }
        }
    }

    fn on_request(
        &mut self,
        now: Instant,
        from: SocketAddr,
        proven_peer: bool,
        token: u64,
        tcp_port: u16,
        udp_port: u16,
    ) {
        if !proven_peer {
            // Often the requester has just joined us and our check of its
            // address is under way: the request waits for it, and is
            // served only if the address proves itself (a spoofed source
            // never does).
            let timeout = self.cfg.timeout;
            self.waiting.retain(|w| now < w.0 + timeout && w.1 != from);
            if self.waiting.len() < MAX_WAITING {
                self.waiting.push((now, from, token, tcp_port, udp_port));
            } else {
                self.drops.unproven += 1;
                tracing::debug!(%from, "dial-back request from an address that is not a proven peer, ignored");
            }
            return;
        }
        let ip = from.ip();
        let per_source = self.cfg.per_source;
        if self.sources.get(&ip).is_some_and(|t| now < *t + per_source) {
            self.drops.per_source += 1;
            tracing::debug!(%from, "dial-back request too soon after the last from that address");
            return;
        }
        if self.sources.len() >= self.cfg.max_sources && !self.sources.contains_key(&ip) {
            self.sources.retain(|_, t| now < *t + per_source);
            if self.sources.len() >= self.cfg.max_sources {
                self.drops.per_source += 1;
                tracing::debug!(%from, "too many dial-back requesters at once");
                return;
            }
        }
        self.refill(now);
        if self.running >= self.cfg.max_running || self.tokens < 1.0 {
            self.drops.node += 1;
            tracing::debug!(%from, "dial-back budget spent");
            return;
        }
        self.tokens -= 1.0;
        self.running += 1;
        self.sources.insert(ip, now);
        if self.dials.len() < MAX_QUEUE {
            self.dials.push(Dial {
                reply_to: from,
                tcp: SocketAddr::new(ip, tcp_port),
                udp: SocketAddr::new(ip, udp_port),
                token,
            });
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + dt * f64::from(self.cfg.per_minute) / 60.0)
            .min(f64::from(self.cfg.burst));
    }

    /// The next dial-back to perform (prober side). Call until `None`
    /// after every input; report each with [`Reach::dial_done`].
    pub fn poll_dial(&mut self) -> Option<Dial> {
        (!self.dials.is_empty()).then(|| self.dials.remove(0))
    }

    /// A dial-back ended: `tcp` whether the connection and the hellos
    /// worked. Queues the report to the requester.
    pub fn dial_done(&mut self, dial: Dial, tcp: bool) {
        self.running = self.running.saturating_sub(1);
        self.push_transmit(
            dial.reply_to,
            DialBack::Report {
                token: dial.token,
                tcp,
                seen: Some(dial.tcp),
            },
        );
    }

    fn push_transmit(&mut self, to: SocketAddr, m: DialBack) {
        if self.transmits.len() < MAX_QUEUE {
            self.transmits.push((to, m));
        }
    }

    /// The next datagram to send from the overlay socket.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, DialBack)> {
        (!self.transmits.is_empty()).then(|| self.transmits.remove(0))
    }
}

#[cfg(test)]
mod tests;
