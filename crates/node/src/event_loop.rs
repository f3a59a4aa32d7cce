//! The event loop: one task owns the overlay and the UDP socket; everything
//! else talks to it through bounded channels.

use crate::answer::{self, InFlight};
use crate::clock::now;
use crate::command::{Command, NodeEvent, SearchHit};
use crate::own_address::OwnAddress;
use rutella_proto::{Event, IncomingQuery, Overlay, SearchId};
use rutella_store::Library;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddrV4;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;

/// Datagrams read in one go before the timer and the commands get a turn.
const RECV_BATCH: usize = 256;

pub(crate) struct EventLoop {
    pub(crate) overlay: Overlay,
    pub(crate) socket: UdpSocket,
    pub(crate) own: OwnAddress,
    pub(crate) library: Library,
    pub(crate) rx: mpsc::Receiver<Command>,
    pub(crate) tx: mpsc::Sender<Command>,
    pub(crate) events: broadcast::Sender<NodeEvent>,
    pub(crate) searches: HashMap<SearchId, mpsc::Sender<SearchHit>>,
    pub(crate) in_flight: InFlight,
    /// Ready answers waiting to be sent (at most one batch of commands' worth).
    pub(crate) answers: Vec<(SocketAddrV4, Vec<Vec<u8>>)>,
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
}

impl EventLoop {
    pub(crate) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut buf = vec![0u8; 65_536];
        loop {
            while self.answering.try_join_next().is_some() {}
            while self.pushing.try_join_next().is_some() {}
            self.flush().await;
            let timeout = self.overlay.poll_timeout();
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
                _ = sleep => self.overlay.handle_timeout(now()),
                Some(cmd) = self.rx.recv() => self.command(cmd),
            }
        }
        // Answers still being built are of no use now.
        self.answering.shutdown().await;
        self.pushing.shutdown().await;
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
            Command::Connect(p) => {
                let ip = self.own.for_dest(*p.udp.ip());
                self.overlay.add_own_ip(ip);
                self.overlay.connect(now, p.udp, p.tcp_port.unwrap_or(0));
            }
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
                if let Err(e) = self.socket.send_to(&d, dest).await {
                    tracing::debug!(%dest, error = %e, "UDP send failed");
                }
            }
        }
        while let Some(t) = self.overlay.poll_transmit() {
            let ip = self.own.for_dest(*t.dest.ip());
            let bytes = t.encode(ip);
            if let Err(e) = self.socket.send_to(&bytes, t.dest).await {
                tracing::debug!(dest = %t.dest, error = %e, "UDP send failed");
            }
        }
        while let Some(ev) = self.overlay.poll_event() {
            match ev {
                Event::PeerAdded(p) => {
                    tracing::info!(peer = %p.udp, rutella = p.rutella, degree = self.overlay.degree(), "peer joined");
                    let _ = self.events.send(NodeEvent::PeerAdded(p));
                }
                Event::PeerRemoved(p) => {
                    tracing::info!(peer = %p.udp, degree = self.overlay.degree(), "peer left");
                    let _ = self.events.send(NodeEvent::PeerRemoved(p));
                }
                Event::Query(q) => self.answer(q),
                Event::SearchResult {
                    search,
                    peer,
                    files,
                    push,
                } => {
                    self.push.note_source(peer.tcp(), push.clone());
                    if let Some(tx) = self.searches.get(&search) {
                        match tx.try_send(SearchHit { peer, files, push }) {
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
    }

    /// Plans the answer to a query here and builds it off the loop, unless
    /// too many are in flight already.
    fn answer(&mut self, q: IncomingQuery) {
        let source = *q.reply_to.ip();
        if !self.in_flight.start(source) {
            tracing::debug!(from = %q.reply_to, "too many queries at once, dropping one");
            return;
        }
        let plan = self.overlay.plan_answer(&q);
        let own_ip = self.own.for_dest(*plan.dest().ip());
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
