//! The event loop: one task owns the overlay and the UDP socket; everything
//! else talks to it through bounded channels.

use crate::answer::{self, InFlight};
use crate::clock::now;
use crate::command::{Command, NodeEvent, SearchHit};
use crate::own_address::OwnAddress;
use crate::portmap::PortMapStatus;
use rutella_proto::reach::{Reach, Reachability};
use rutella_proto::{Event, IncomingQuery, Overlay, SearchId};
use rutella_store::Library;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;

/// Datagrams read in one go before the timer and the commands get a turn.
const RECV_BATCH: usize = 256;

pub(crate) struct EventLoop {
    pub(crate) overlay: Overlay,
    pub(crate) socket: UdpSocket,
    /// The socket is IPv6 (dual-stack): IPv4 destinations go to it mapped.
    pub(crate) ipv6_socket: bool,
    pub(crate) own: OwnAddress,
    pub(crate) library: Library,
    pub(crate) rx: mpsc::Receiver<Command>,
    pub(crate) tx: mpsc::Sender<Command>,
    pub(crate) events: broadcast::Sender<NodeEvent>,
    pub(crate) searches: HashMap<SearchId, mpsc::Sender<SearchHit>>,
    pub(crate) in_flight: InFlight,
    /// Ready answers waiting to be sent (at most one batch of commands' worth).
    pub(crate) answers: Vec<(SocketAddr, Vec<Vec<u8>>)>,
    /// The tasks building answers (at most as many as `in_flight` allows),
    /// owned by the loop and ended with it.
    pub(crate) answering: JoinSet<()>,
    /// Pushes, what answers said of them.
    pub(crate) push: std::sync::Arc<crate::push::PushTable>,
    /// Connections opened on a push go to the transfer server here.
    pub(crate) pushed_out: mpsc::Sender<tokio::net::TcpStream>,
    /// The connections being opened on a push (at most
    /// [`crate::push::MAX_CONNECTING`]), owned by the loop.
    pub(crate) pushing: JoinSet<()>,
    /// Time allowed to open a connection on a push.
    pub(crate) connect_timeout: std::time::Duration,
    /// The reachability check (both sides).
    pub(crate) reach: Reach,
    /// Whether the settings fixed our reachability (`NodeConfig::reachable`),
    /// which the check's verdict then does not override.
    pub(crate) reachable_forced: bool,
    /// Its verdict, for the handles.
    pub(crate) reachability: watch::Sender<Reachability>,
    /// The port mapper's status, when it runs.
    pub(crate) mapping: Option<watch::Receiver<PortMapStatus>>,
    /// Dial-backs done for peers that asked (at most the machine's cap).
    pub(crate) dialing: JoinSet<()>,
    /// Where fresh sockets of dial-backs bind.
    pub(crate) bind: IpAddr,
    /// The time a dial-back may take to connect and exchange the hello.
    pub(crate) dial_timeout: Duration,
}

impl EventLoop {
    pub(crate) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut buf = vec![0u8; 65_536];
        loop {
            while self.answering.try_join_next().is_some() {}
            while self.pushing.try_join_next().is_some() {}
            while self.dialing.try_join_next().is_some() {}
            self.flush().await;
            let timeout = [self.overlay.poll_timeout(), self.reach.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let sleep = async {
                match timeout {
                    Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        self.overlay.handle_datagram(now(), from, &buf[..n]);
                        self.drain(&mut buf);
                    }
                    Err(e) => tracing::debug!(error = %e, "UDP receive failed"),
                },
                _ = sleep => self.timeout(),
                Some(cmd) = self.rx.recv() => self.command(cmd),
                Some(status) = mapping_changed(&mut self.mapping) => {
                    self.reach.set_mapping(now(), crate::reach::mapping(status));
                }
            }
        }
        // Answers still being built, and dial-backs, are of no use now.
        self.answering.shutdown().await;
        self.pushing.shutdown().await;
        self.dialing.shutdown().await;
        let r = self.reach.prober_drops();
        if r != rutella_proto::reach::ProberDrops::default() {
            tracing::info!(
                unproven = r.unproven,
                per_source = r.per_source,
                node = r.node,
                "dial-back requests refused since start"
            );
        }
        let d = self.overlay.budget_drops();
        if d.total() > 0 {
            tracing::info!(
                datagrams = d.datagrams,
                pings = d.pings,
                queries = d.queries,
                hits = d.hits,
                "dropped since start for being over their sources' budgets"
            );
        }
    }

    /// Runs whichever timers are due.
    fn timeout(&mut self) {
        let now = now();
        if self.overlay.poll_timeout().is_some_and(|t| t <= now) {
            self.overlay.handle_timeout(now);
        }
        if self.reach.poll_timeout().is_some_and(|t| t <= now) {
            self.reach.handle_timeout(now);
        }
    }

    /// Reads what else is waiting on the socket, up to one batch, without
    /// waiting: under a flood the loop keeps up with the socket, and the
    /// timer and commands still get their turn between batches. Nothing is
    /// allocated per datagram here; the overlay drops one over its source's
    /// budget before parsing it.
    fn drain(&mut self, buf: &mut [u8]) {
        for _ in 0..RECV_BATCH {
            match self.socket.try_recv_from(buf) {
                Ok((n, from)) => self.overlay.handle_datagram(now(), from, &buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!(error = %e, "UDP receive failed");
                    return;
                }
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        let now = now();
        match cmd {
            Command::Peers(reply) => {
                let _ = reply.send(self.overlay.peers());
            }
            Command::Answered(reply) => {
                let _ = reply.send(self.overlay.answered_peers());
            }
            Command::Tier(reply) => {
                let tier = self
                    .overlay
                    .is_ultrapeer()
                    .map(|up| (up, self.overlay.leaf_count()));
                let _ = reply.send(tier);
            }
            Command::Connect(p) => {
                let ip = self.own.for_dest(p.udp.ip());
                self.overlay.add_own_ip(ip);
                self.overlay.connect(now, p.udp, p.tcp_port.unwrap_or(0));
            }
            Command::Forget(udp) => self.overlay.forget(udp),
            Command::Search(text, hits, reply) => {
                let id = self.overlay.search(now, &text);
                if self.overlay.search_running(id) {
                    self.searches.insert(id, hits);
                }
                let _ = reply.send(id);
            }
            Command::CancelSearch(id) => {
                self.searches.remove(&id);
                self.overlay.cancel_search(id);
            }
            Command::AnswerReady(source, dest, datagrams) => {
                self.in_flight.end(source);
                if !datagrams.is_empty() {
                    self.answers.push((dest, datagrams));
                }
            }
            Command::BudgetDrops(reply) => {
                let _ = reply.send(self.overlay.budget_drops());
            }
            Command::SetFilter(filter) => self.overlay.set_filter(filter),
            Command::Push {
                tcp,
                info,
                token,
                tcp_port,
                reply,
            } => {
                let route = self.overlay.send_push(tcp, &info, token, tcp_port);
                let _ = reply.send(route);
            }
            Command::DialDone(dial, tcp) => self.reach.dial_done(dial, tcp),
            Command::PunchAsk {
                tcp,
                info,
                token,
                tcp_port,
                reply,
            } => {
                let mut first = None;
                if let Some((id, proxies)) = self.overlay.punch_route(tcp, &info) {
                    for proxy in proxies {
                        if self.overlay.send_punch_ask(proxy, id, token, tcp_port) {
                            first = first.or(Some(proxy));
                        }
                    }
                }
                let _ = reply.send(first);
            }
            Command::RelayInvite {
                tcp,
                info,
                circuit,
                reply,
            } => {
                let mut relay = None;
                if let Some((id, proxies)) = self.overlay.punch_route(tcp, &info) {
                    for proxy in proxies {
                        let Some(tcp) = self.overlay.peer_tcp(&proxy) else {
                            continue;
                        };
                        if self.overlay.send_relay_invite(proxy, id, circuit, tcp) {
                            relay = Some(tcp);
                            break;
                        }
                    }
                }
                let _ = reply.send(relay);
            }
        }
    }

    async fn flush(&mut self) {
        self.own.refresh(&mut self.overlay);
        for (dest, datagrams) in std::mem::take(&mut self.answers) {
            for d in datagrams {
                let to = rutella_proto::addr::for_socket(dest, self.ipv6_socket);
                if let Err(e) = self.socket.send_to(&d, to).await {
                    tracing::debug!(%dest, error = %e, "UDP send failed");
                }
            }
        }
        while let Some(t) = self.overlay.poll_transmit() {
            let ip = self.own.for_dest(t.dest.ip());
            let bytes = t.encode(ip);
            let to = rutella_proto::addr::for_socket(t.dest, self.ipv6_socket);
            if let Err(e) = self.socket.send_to(&bytes, to).await {
                tracing::debug!(dest = %t.dest, error = %e, "UDP send failed");
            }
        }
        while let Some(ev) = self.overlay.poll_event() {
            match ev {
                Event::PeerAdded(p) => {
                    tracing::info!(peer = %p.udp, rutella = p.rutella, degree = self.overlay.degree(), "peer joined");
                    if p.rutella {
                        self.reach.add_peer(now(), p.udp);
                    }
                    let _ = self.events.send(NodeEvent::PeerAdded(p));
                }
                Event::PeerRemoved(p) => {
                    tracing::info!(peer = %p.udp, degree = self.overlay.degree(), "peer left");
                    self.reach.remove_peer(p.udp);
                    let _ = self.events.send(NodeEvent::PeerRemoved(p));
                }
                Event::DialBack {
                    from,
                    proven_peer,
                    message,
                } => self.reach.handle_message(now(), from, proven_peer, message),
                Event::Query(q) => self.answer(q),
                Event::SearchResult {
                    search,
                    peer,
                    files,
                    push,
                } => {
                    self.push.note_source(peer.tcp(), push.clone());
                    if let Some(tx) = self.searches.get(&search) {
                        match tx.try_send(SearchHit {
                            peer,
                            files,
                            push,
                            gnutella: None,
                        }) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Full(_)) => {
                                tracing::warn!("search results arrive faster than they are read; dropping some")
                            }
                            Err(mpsc::error::TrySendError::Closed(_)) => {
                                self.searches.remove(&search);
                                self.overlay.cancel_search(search);
                            }
                        }
                    }
                }
                Event::SearchFinished { search } => {
                    self.searches.remove(&search);
                }
                Event::PushRequest { target, token, via } => {
                    if self.pushing.len() >= crate::push::MAX_CONNECTING {
                        tracing::info!(%target, "too many pushed connections being opened; push dropped");
                        continue;
                    }
                    tracing::info!(%target, %via, "asked to connect out for an upload (push)");
                    self.pushing.spawn(crate::push::connect_out(
                        target,
                        token,
                        self.connect_timeout,
                        self.pushed_out.clone(),
                    ));
                }
                Event::PunchGo {
                    peer,
                    start_in,
                    role: rutella_proto::message::PunchRole::Client,
                    token,
                    via,
                } => {
                    if !self.push.gos.deliver(token, peer, start_in) {
                        tracing::debug!(%via, "punch go for no punch of ours; dropped");
                    }
                }
                Event::PunchGo {
                    peer,
                    start_in,
                    role: rutella_proto::message::PunchRole::Server,
                    via,
                    ..
                } => {
                    if self.pushing.len() >= crate::push::MAX_CONNECTING {
                        tracing::info!(%peer, "too many connections being opened; punch dropped");
                        continue;
                    }
                    tracing::info!(%peer, %via, "asked to punch for an upload");
                    self.pushing.spawn(crate::paths::serve_punched(
                        self.overlay.config().tcp_port,
                        peer,
                        start_in,
                        self.overlay.config().push.punch.window,
                        self.pushed_out.clone(),
                    ));
                }
                Event::RelayInvite {
                    relay,
                    circuit,
                    via,
                } => {
                    if self.pushing.len() >= crate::push::MAX_CONNECTING {
                        tracing::info!(%relay, "too many connections being opened; relay invite dropped");
                        continue;
                    }
                    tracing::info!(%relay, %via, "invited to a relay circuit for an upload");
                    self.pushing.spawn(crate::paths::serve_relayed(
                        relay,
                        circuit,
                        self.connect_timeout,
                        self.pushed_out.clone(),
                    ));
                }
            }
        }
        self.flush_reach().await;
    }

    /// Sends what the reachability check queued, starts the dial-backs it
    /// asks for, and publishes its verdict when it changes.
    async fn flush_reach(&mut self) {
        self.reach.set_seen(now(), self.overlay.seen_address());
        while let Some((dest, m)) = self.reach.poll_transmit() {
            if let Err(e) = self.socket.send_to(&m.encode(), dest).await {
                tracing::debug!(%dest, error = %e, "UDP send failed");
            }
        }
        while let Some(dial) = self.reach.poll_dial() {
            // The machine caps dial-backs running at once.
            self.dialing.spawn(crate::reach::dial_back(
                dial,
                self.bind,
                self.dial_timeout,
                self.tx.clone(),
            ));
        }
        if let Some(v) = self.reach.poll_verdict() {
            self.reachability_changed(v);
        }
    }

    /// The one place that tells the rest of the node how reachable it is:
    /// the handles (a watch and an event). What peers are told about us
    /// (whether our hits need a push) follows `v.tcp_reachable()` here.
    fn reachability_changed(&mut self, v: Reachability) {
        tracing::info!(verdict = ?v, "reachability checked");
        self.reachability.send_replace(v);
        if !self.reachable_forced {
            self.overlay.set_reachable(v.tcp_reachable());
        }
        let _ = self.events.send(NodeEvent::Reachability(v));
    }

    /// Plans the answer to a query here and builds it off the loop, unless
    /// too many are in flight already.
    fn answer(&mut self, q: IncomingQuery) {
        let source = q.reply_to.ip();
        if !self.in_flight.start(source) {
            tracing::debug!(from = %q.reply_to, "too many queries at once, dropping one");
            return;
        }
        let plan = self.overlay.plan_answer(&q);
        let own_ip = self.own.for_dest(plan.dest().ip());
        answer::spawn(
            &mut self.answering,
            self.library.clone(),
            self.tx.clone(),
            q,
            plan,
            own_ip,
        );
    }
}

/// The port mapper's next status; never resolves when no mapper runs or
/// it has ended.
async fn mapping_changed(m: &mut Option<watch::Receiver<PortMapStatus>>) -> Option<PortMapStatus> {
    if let Some(rx) = m {
        if rx.changed().await.is_ok() {
            return Some(*rx.borrow_and_update());
        }
        // The mapper ended: its last word stands.
        *m = None;
    }
    std::future::pending().await
}
