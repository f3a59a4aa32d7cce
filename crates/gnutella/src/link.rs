//! The tokio driver of a leaf's connection to an ultrapeer: thin. It
//! connects, runs the handshake ([`crate::handshake`]), then moves bytes
//! between the socket and a [`LeafSession`]: inflating and deflating when
//! negotiated, cutting descriptors with a [`Framer`], pinging for
//! keep-alive and closing with a Bye on idleness, bad input or request.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

use crate::deflate::{Deflater, InflateError, Inflater};
use crate::descriptor::{DecodeError, Descriptor, Guid, HitResult};
use crate::framer::Framer;
use crate::handshake::{self, HandshakeError, LeafOffer, Negotiated, Refusal};
use crate::huge::Urn;
use crate::leaf::{new_guid, IncomingQuery, LeafConfig, LeafDrops, LeafEvent, LeafSession};
use crate::qrp::RouteTable;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;
/// Inflated bytes handed to the framer per step.
const INFLATE_STEP: usize = 16 * 1024;
/// Commands queued from the handle.
const COMMAND_QUEUE: usize = 64;

/// Why a link failed or ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Socket error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Connect or handshake took longer than allowed.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// The handshake bytes were malformed.
    #[error("bad handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// The ultrapeer refused us (or is not one).
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Closed,
    /// The peer's compressed stream was corrupt.
    #[error("bad compressed stream: {0}")]
    Inflate(#[from] InflateError),
    /// The peer sent a descriptor we cannot frame (we said Bye 400).
    #[error("bad descriptor stream: {0}")]
    Framing(DecodeError),
    /// Nothing received for the idle timeout (we said Bye 405).
    #[error("idle timeout")]
    Idle,
    /// The link task is gone.
    #[error("link task gone")]
    Gone,
}

enum Command {
    Query {
        guid: Guid,
        text: String,
        urns: Vec<Urn>,
    },
    Answer {
        query: IncomingQuery,
        results: Vec<HitResult>,
    },
    RouteTable(RouteTable),
    Push {
        servent: Guid,
        index: u32,
        to: std::net::SocketAddrV4,
        ttl: u8,
    },
    Drops(oneshot::Sender<LeafDrops>),
    Bye {
        code: u16,
        reason: String,
    },
}

/// A running leaf link. Dropping it closes the link with Bye 200 (the task
/// sees its command channel close).
pub struct LeafLink {
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<LeafEvent>,
    task: Option<JoinHandle<Result<(), LinkError>>>,
    negotiated: Negotiated,
}

impl LeafLink {
    /// Connects to an ultrapeer and runs the leaf's handshake.
    pub async fn connect(addr: SocketAddr, cfg: LeafConfig) -> Result<LeafLink, LinkError> {
        let (stream, negotiated, leftover) =
            timeout(cfg.handshake_timeout, handshake_as_leaf(addr, &cfg))
                .await
                .map_err(|_| LinkError::HandshakeTimeout)??;
        let (etx, erx) = mpsc::channel(cfg.max_events.max(1));
        let (ctx, crx) = mpsc::channel(COMMAND_QUEUE);
        let session = LeafSession::new(cfg);
        let task = tokio::spawn(run(stream, session, negotiated.clone(), leftover, crx, etx));
        Ok(LeafLink {
            commands: ctx,
            events: erx,
            task: Some(task),
            negotiated,
        })
    }

    /// What the handshake settled.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// Sends a query; its hits arrive as [`LeafEvent::Hit`] with this GUID.
    pub async fn query(&self, text: &str, urns: Vec<Urn>) -> Result<Guid, LinkError> {
        let guid = new_guid();
        self.commands
            .send(Command::Query {
                guid,
                text: text.to_string(),
                urns,
            })
            .await
            .map_err(|_| LinkError::Gone)?;
        Ok(guid)
    }

    /// Sends a query under a GUID chosen by the caller (the same search
    /// going out on several links); its hits arrive as [`LeafEvent::Hit`].
    pub async fn query_with_guid(
        &self,
        guid: Guid,
        text: &str,
        urns: Vec<Urn>,
    ) -> Result<(), LinkError> {
        self.commands
            .send(Command::Query {
                guid,
                text: text.to_string(),
                urns,
            })
            .await
            .map_err(|_| LinkError::Gone)
    }

    /// Answers a query the ultrapeer routed to us.
    pub async fn answer(
        &self,
        query: IncomingQuery,
        results: Vec<HitResult>,
    ) -> Result<(), LinkError> {
        self.commands
            .send(Command::Answer { query, results })
            .await
            .map_err(|_| LinkError::Gone)
    }

    /// Sends our route table (whole: RESET then PATCHes).
    pub async fn send_route_table(&self, table: RouteTable) -> Result<(), LinkError> {
        self.commands
            .send(Command::RouteTable(table))
            .await
            .map_err(|_| LinkError::Gone)
    }

    /// Sends a Push asking the firewalled `servent` to connect to `to`
    /// and offer file `index`.
    pub async fn push(
        &self,
        servent: Guid,
        index: u32,
        to: std::net::SocketAddrV4,
        ttl: u8,
    ) -> Result<(), LinkError> {
        self.commands
            .send(Command::Push {
                servent,
                index,
                to,
                ttl,
            })
            .await
            .map_err(|_| LinkError::Gone)
    }

    /// What the session dropped so far.
    pub async fn drops(&self) -> Result<LeafDrops, LinkError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Drops(tx))
            .await
            .map_err(|_| LinkError::Gone)?;
        rx.await.map_err(|_| LinkError::Gone)
    }

    /// The next event; `None` once the link has ended (then
    /// [`LeafLink::finish`] says why).
    pub async fn next_event(&mut self) -> Option<LeafEvent> {
        self.events.recv().await
    }

    /// Says Bye with this code and reason, and waits for the link to end.
    pub async fn bye(mut self, code: u16, reason: &str) -> Result<(), LinkError> {
        let _ = self
            .commands
            .send(Command::Bye {
                code,
                reason: reason.to_string(),
            })
            .await;
        self.finish().await
    }

    /// Waits for the link task to end and returns how it ended.
    pub async fn finish(&mut self) -> Result<(), LinkError> {
        // Keep draining events so the task is never blocked on them.
        self.events.close();
        match self.task.take() {
            Some(t) => t.await.map_err(|_| LinkError::Gone)?,
            None => Err(LinkError::Gone),
        }
    }
}

async fn handshake_as_leaf(
    addr: SocketAddr,
    cfg: &LeafConfig,
) -> Result<(TcpStream, Negotiated, Vec<u8>), LinkError> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let offer = LeafOffer {
        user_agent: cfg.user_agent.clone(),
        listen: cfg.listen,
        remote_ip: match addr.ip() {
            std::net::IpAddr::V4(v4) => Some(v4),
            std::net::IpAddr::V6(_) => None,
        },
        accept_deflate: cfg.accept_deflate,
        send_deflate: cfg.send_deflate,
    };
    s.write_all(&offer.connect_request().encode()).await?;
    let mut buf = Vec::with_capacity(1024);
    let (answer, used) = loop {
        if let Some(found) = handshake::parse(&buf)? {
            break found;
        }
        let mut chunk = [0u8; 1024];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(LinkError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    match handshake::check_ultrapeer_answer(&offer, &answer) {
        Ok(n) => {
            s.write_all(&handshake::leaf_final_answer(&n).encode())
                .await?;
            tracing::debug!(%addr, inflate = n.inflate_input, deflate = n.deflate_output, "gnutella link up");
            Ok((s, n, buf[used..].to_vec()))
        }
        Err(r) => {
            if matches!(r, Refusal::NotUltrapeer | Refusal::BadEncoding) {
                let _ = s
                    .write_all(&handshake::leaf_refusal(503, "Leaf wants an ultrapeer").encode())
                    .await;
            }
            Err(r.into())
        }
    }
}

struct Input {
    inflater: Option<Inflater>,
    raw: Vec<u8>,
    framer: Framer,
}

impl Input {
    /// Moves buffered bytes through inflation and framing into the session.
    fn drain(&mut self, session: &mut LeafSession) -> Result<(), LinkError> {
        let mut plain = Vec::with_capacity(INFLATE_STEP);
        let mut pos = 0;
        loop {
            if session.is_closed() {
                self.raw.clear();
                return Ok(());
            }
            plain.clear();
            match &mut self.inflater {
                Some(z) => {
                    let want = self.framer.wants().min(INFLATE_STEP);
                    let used = z.inflate(&self.raw[pos..], &mut plain, want)?;
                    pos += used;
                    if plain.is_empty() && used == 0 {
                        break;
                    }
                }
                None => {
                    let n = self.framer.wants().min(self.raw.len() - pos);
                    if n == 0 {
                        break;
                    }
                    plain.extend_from_slice(&self.raw[pos..pos + n]);
                    pos += n;
                }
            }
            let mut p = 0;
            while p < plain.len() {
                let (n, frame) = self.framer.push(&plain[p..]).map_err(LinkError::Framing)?;
                p += n;
                if let Some((h, payload)) = frame {
                    match Descriptor::decode(&h, &payload) {
                        Ok(d) => session.handle(d),
                        Err(e) => {
                            tracing::debug!(kind = h.kind, "gnutella descriptor dropped: {e}")
                        }
                    }
                }
            }
        }
        self.raw.drain(..pos);
        Ok(())
    }
}

async fn run(
    mut stream: TcpStream,
    mut session: LeafSession,
    n: Negotiated,
    leftover: Vec<u8>,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<LeafEvent>,
) -> Result<(), LinkError> {
    let cfg = session.config().clone();
    let mut input = Input {
        inflater: n.inflate_input.then(Inflater::new),
        raw: leftover,
        framer: Framer::new(),
    };
    let mut deflater = n.deflate_output.then(Deflater::new);
    let mut last_rx = Instant::now();
    let mut next_ping = Instant::now() + cfg.keepalive;
    let mut buf = vec![0u8; READ_CHUNK];
    let mut commands_open = true;
    let mut failure: Option<LinkError> = None;
    let mut events_dropped = 0u64;
    let result = loop {
        if let Err(e) = input.drain(&mut session) {
            let code = if matches!(e, LinkError::Framing(_)) {
                400
            } else {
                501
            };
            session.bye(code, &e.to_string());
            failure = Some(e);
        }
        // Send what the session queued.
        let mut wire = Vec::new();
        while let Some(d) = session.poll_transmit() {
            let bytes = d.encode();
            match &mut deflater {
                Some(z) => z.compress(&bytes, &mut wire),
                None => wire.extend_from_slice(&bytes),
            }
        }
        if !wire.is_empty() {
            match timeout(cfg.write_timeout, stream.write_all(&wire)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => break Err(e.into()),
                Err(_) => break Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
            }
        }
        let mut peer_bye = false;
        while let Some(e) = session.poll_event() {
            peer_bye |= matches!(e, LeafEvent::Bye(_));
            // Never wait on the owner: a full queue drops the event (the
            // keep-alive and idle timers must keep running).
            if let Err(mpsc::error::TrySendError::Full(_)) = events.try_send(e) {
                events_dropped += 1;
                tracing::debug!(events_dropped, "gnutella event dropped: owner not reading");
            }
        }
        if session.is_closed() {
            let _ = stream.shutdown().await;
            break match failure.take() {
                Some(e) => Err(e),
                None if peer_bye => Err(LinkError::Closed),
                None => Ok(()),
            };
        }
        let idle_at = last_rx + cfg.idle_timeout;
        tokio::select! {
            r = stream.read(&mut buf) => {
                match r {
                    Ok(0) => break Err(LinkError::Closed),
                    Ok(k) => {
                        last_rx = Instant::now();
                        input.raw.extend_from_slice(&buf[..k]);
                    }
                    Err(e) => break Err(e.into()),
                }
            }
            c = commands.recv(), if commands_open => match c {
                Some(Command::Query { guid, text, urns }) => session.query_with_guid(guid, &text, urns),
                Some(Command::Answer { query, results }) => session.answer(&query, results),
                Some(Command::RouteTable(t)) => session.send_route_table(&t),
                Some(Command::Push { servent, index, to, ttl }) => session.push(servent, index, to, ttl),
                Some(Command::Drops(tx)) => { let _ = tx.send(session.drops()); }
                Some(Command::Bye { code, reason }) => session.bye(code, &reason),
                None => {
                    commands_open = false;
                    session.bye(200, "Closing");
                }
            },
            _ = tokio::time::sleep_until(next_ping) => {
                session.keepalive_ping();
                next_ping = Instant::now() + cfg.keepalive;
            }
            _ = tokio::time::sleep_until(idle_at) => {
                session.bye(405, &format!("Idle for {} ms", cfg.idle_timeout.as_millis()));
                failure = Some(LinkError::Idle);
            }
        }
    };
    if let Err(e) = &result {
        tracing::debug!("gnutella link ended: {e}");
    }
    result
}

/// Waits at most `limit` for an event that `pick` accepts, skipping others
/// (a helper for owners and tests).
pub async fn wait_for<T>(
    link: &mut LeafLink,
    limit: Duration,
    mut pick: impl FnMut(LeafEvent) -> Option<T>,
) -> Option<T> {
    timeout(limit, async {
        while let Some(e) = link.next_event().await {
            if let Some(t) = pick(e) {
                return Some(t);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}
