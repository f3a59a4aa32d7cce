//! The serving side: one accepted connection at a time
//! ([`serve_connection`]) and the accept loop ([`run_server`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{timeout, timeout_at, Instant};

use crate::guard::{source_of, Conns, FloodLog, Refusal, ServerLimits, Slot, Slots};
use crate::send::{send_range, SendError};
use crate::tree_cache::TreeCache;
use crate::{wire, FileSource};

/// Longest classic file name read, as the classic server reads it.
pub(crate) const CLASSIC_NAME_MAX: usize = 4096;

/// How the server behaves. Build it with `ServerConfig { field: value,
/// ..Default::default() }`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Upper bound on the bytes per second of each upload; `None` for no
    /// limit (then the file is sent with `sendfile` where available).
    pub rate_limit: Option<u64>,
    /// Upload slots: most requests served at once; more wait (classic) or
    /// are told the server is busy (rutella). Connections that have not
    /// sent their request yet hold no slot.
    pub max_connections: usize,
    /// Deadlines and per-source caps against peers that hold connections
    /// without using them.
    pub limits: ServerLimits,
    /// An upload that cannot write anything for this long is abandoned.
    pub send_timeout: Duration,
    /// On shutdown, how long uploads in flight may go on before being cut.
    pub shutdown_grace: Duration,
    /// Size of the read/write buffer of one upload (bytes).
    pub buffer_size: usize,
    /// Use `sendfile` (Linux) for uploads without a rate limit.
    pub zero_copy: bool,
    /// Verification trees of served files, computed on first request.
    /// Servers may share one cache.
    pub trees: Arc<TreeCache>,
    /// Threads used to hash a large file for its tree.
    pub hash_threads: usize,
    /// Deliberate misbehaviour, for tests of downloaders only.
    pub fault: Option<Fault>,
}

/// Deliberate misbehaviour of a test server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Flip one bit in every 4 KiB of file data sent (both exchanges).
    FlipBits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            rate_limit: None,
            max_connections: 64,
            limits: ServerLimits::default(),
            send_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(2),
            buffer_size: 512 * 1024,
            zero_copy: true,
            trees: Arc::new(TreeCache::new(64 << 20)),
            hash_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            fault: None,
        }
    }
}

/// Which exchange a connection used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The classic exchange: `u32` partial size, name, `u32` count, bytes.
    Classic,
    /// The rutella protocol (initial magic, request by hash).
    Rutella,
}

/// How a request that was read in full was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServeOutcome {
    /// The bytes asked for were sent in full.
    Sent,
    /// The file is not offered (or could not be opened): a classic peer got
    /// a count of 0.
    NotFound,
    /// The name was not valid UTF-8 (classic peer got a count of 0).
    InvalidName,
    /// The classic partial size was past the end of the file (count 0).
    OffsetPastEnd,
    /// The file is 4 GiB or larger, which the classic exchange cannot carry
    /// (count 0).
    TooLargeForClassic,
    /// A rutella session ended after answering this many requests.
    Session {
        /// Requests answered.
        requests: u32,
    },
    /// Every slot was taken: a rutella peer was told so.
    Busy,
}

/// What one connection did, for the log and the node's statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeReport {
    /// The connecting peer.
    pub peer: SocketAddr,
    /// The exchange it used.
    pub protocol: Protocol,
    /// The name (classic) it asked for, lossily decoded, or the hex hash of
    /// the last rutella request.
    pub request: String,
    /// The offset the (last) transfer started at.
    pub offset: u64,
    /// File bytes written to the peer.
    pub bytes_sent: u64,
    /// How the request was answered.
    pub outcome: ServeOutcome,
}

/// Why serving a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The peer did not send a whole request in time.
    #[error("peer {peer} sent no complete request within {after:?}; closed the connection")]
    RequestTimeout {
        /// The connecting peer.
        peer: SocketAddr,
        /// The configured request timeout.
        after: Duration,
    },
    /// The request was read, but no upload slot could be given to it.
    #[error("refused the request of peer {peer}: {reason}; closed the connection")]
    Refused {
        /// The connecting peer.
        peer: SocketAddr,
        /// Why.
        reason: &'static str,
    },
    /// A rutella session took too few answers for too long and gave its
    /// slot back.
    #[error("closed the rutella session of peer {peer}: it took {bytes} bytes in {requests} requests in the last {after:?}, fewer than {min}")]
    SessionIdle {
        /// The connecting peer.
        peer: SocketAddr,
        /// The configured session idle timeout.
        after: Duration,
        /// Requests it sent in that time (0: it was idle).
        requests: u32,
        /// Bytes of answers it took in that time.
        bytes: u64,
        /// Bytes it had to take.
        min: u64,
    },
    /// The peer closed the connection before its request was complete.
    #[error("peer {peer} closed the connection before sending a whole request")]
    ClosedEarly {
        /// The connecting peer.
        peer: SocketAddr,
    },
    /// The socket failed.
    #[error("connection with peer {peer} failed while {during}: {source}")]
    Io {
        /// The connecting peer.
        peer: SocketAddr,
        /// What the server was doing.
        during: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The peer sent a malformed rutella message (it was told so).
    #[error("peer {peer} sent a bad request: {reason}; closed the connection")]
    BadRequest {
        /// The connecting peer.
        peer: SocketAddr,
        /// What was wrong.
        reason: String,
    },
    /// The upload stopped before the end.
    #[error("upload of {request:?} to peer {peer} stopped after {sent} of {len} bytes: {source}")]
    Upload {
        /// The connecting peer.
        peer: SocketAddr,
        /// What was asked for.
        request: String,
        /// Bytes sent before the failure.
        sent: u64,
        /// Bytes that were to be sent.
        len: u64,
        /// The cause.
        #[source]
        source: SendError,
    },
}

/// Serves one accepted connection: reads the request (classic, or rutella
/// when it starts with the rutella magic), answers it and closes.
///
/// Never panics on what the peer sends; every wait is bounded by
/// `cfg.limits.header_timeout` (for the request),
/// `cfg.limits.session_idle_timeout` (between rutella requests) or
/// `cfg.send_timeout` (for each write of the upload). No slot or per-source
/// cap applies here; [`run_server`] adds them.
pub async fn serve_connection(
    mut stream: TcpStream,
    source: Arc<dyn FileSource>,
    cfg: Arc<ServerConfig>,
) -> Result<ServeReport, ServeError> {
    let peer = stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let deadline = Instant::now() + cfg.limits.header_timeout;
    match detect_protocol(&mut stream, peer, deadline, &cfg).await? {
        Detected::Classic { partial, already } => {
            let name = read_classic_name(&mut stream, peer, &already, deadline, &cfg).await?;
            answer_classic(stream, peer, partial, name, &source, &cfg).await
        }
        Detected::Rutella => crate::serve_rutella::serve(stream, peer, source, cfg).await,
    }
}

/// What the first bytes of a connection said.
pub(crate) enum Detected {
    /// A classic request; `already` holds name bytes read while deciding.
    Classic { partial: u32, already: Vec<u8> },
    /// The rutella hello (fully read).
    Rutella,
}

/// Reads just enough to tell the exchanges apart (4, 5 or 8 bytes).
pub(crate) async fn detect_protocol(
    stream: &mut TcpStream,
    peer: SocketAddr,
    deadline: Instant,
    cfg: &ServerConfig,
) -> Result<Detected, ServeError> {
    let mut head = [0u8; wire::HELLO_LEN];
    read_exact_by(stream, &mut head[..4], peer, deadline, cfg).await?;
    let partial = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if wire::detect(&head[..4]) == wire::Detect::Classic {
        return Ok(Detected::Classic {
            partial,
            already: Vec::new(),
        });
    }
    read_exact_by(stream, &mut head[4..5], peer, deadline, cfg).await?;
    if wire::detect(&head[..5]) == wire::Detect::Classic {
        return Ok(Detected::Classic {
            partial,
            already: vec![head[4]],
        });
    }
    read_exact_by(stream, &mut head[5..], peer, deadline, cfg).await?;
    match wire::decode_hello(&head) {
        Ok(_version) => Ok(Detected::Rutella),
        Err(e) => {
            tracing::warn!(%peer, error = %e, "malformed rutella hello; closing");
            let msg = format!("malformed hello: {e}");
            let _ = crate::serve_rutella::reply_error(
                stream,
                wire::Status::BadRequest,
                &msg,
                cfg.send_timeout,
            )
            .await;
            Err(ServeError::BadRequest { peer, reason: msg })
        }
    }
}

/// `read_exact` bounded by the request deadline, with clear errors.
pub(crate) async fn read_exact_by(
    stream: &mut TcpStream,
    buf: &mut [u8],
    peer: SocketAddr,
    deadline: Instant,
    cfg: &ServerConfig,
) -> Result<(), ServeError> {
    match timeout_at(deadline, stream.read_exact(buf)).await {
        Err(_) => Err(ServeError::RequestTimeout {
            peer,
            after: cfg.limits.header_timeout,
        }),
        Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
            Err(ServeError::ClosedEarly { peer })
        }
        Ok(Err(e)) => Err(ServeError::Io {
            peer,
            during: "reading the request",
            source: e,
        }),
        Ok(Ok(_)) => Ok(()),
    }
}

/// Reads the classic name (after the 4-byte partial size) by `deadline`.
/// `already` holds name bytes read while telling the protocols apart.
async fn read_classic_name(
    stream: &mut TcpStream,
    peer: SocketAddr,
    already: &[u8],
    deadline: Instant,
    cfg: &ServerConfig,
) -> Result<Vec<u8>, ServeError> {
    let mut name = vec![0u8; CLASSIC_NAME_MAX];
    let mut n = already.len().min(CLASSIC_NAME_MAX);
    name[..n].copy_from_slice(&already[..n]);
    if n == 0 {
        // One read, as the classic server does; it waits for the name to
        // arrive (bounded by the request deadline).
        n = match timeout_at(deadline, stream.read(&mut name)).await {
            Err(_) => {
                return Err(ServeError::RequestTimeout {
                    peer,
                    after: cfg.limits.header_timeout,
                })
            }
            Ok(Err(e)) => {
                return Err(ServeError::Io {
                    peer,
                    during: "reading the file name",
                    source: e,
                })
            }
            Ok(Ok(n)) => n,
        };
    }
    // Whatever else of the name is already here is taken too: a classic
    // client sends nothing after the name, so this only helps a name that
    // was split across segments.
    while n > 0 && n < CLASSIC_NAME_MAX {
        match stream.try_read(&mut name[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    name.truncate(n);
    Ok(name)
}

/// Answers a classic request that was read in full.
async fn answer_classic(
    mut stream: TcpStream,
    peer: SocketAddr,
    partial: u32,
    name: Vec<u8>,
    source: &Arc<dyn FileSource>,
    cfg: &ServerConfig,
) -> Result<ServeReport, ServeError> {
    let name = &name[..];
    let request = String::from_utf8_lossy(name).into_owned();
    let mut report = ServeReport {
        peer,
        protocol: Protocol::Classic,
        request: request.clone(),
        offset: u64::from(partial),
        bytes_sent: 0,
        outcome: ServeOutcome::NotFound,
    };
    let reply_zero = |mut stream: TcpStream, report: ServeReport| async move {
        write_all_timed(&mut stream, &0u32.to_le_bytes(), cfg.send_timeout)
            .await
            .map_err(|e| ServeError::Io {
                peer,
                during: "replying 0 (nothing to send)",
                source: e,
            })?;
        let _ = stream.shutdown().await;
        Ok(report)
    };
    let Ok(name) = std::str::from_utf8(name) else {
        tracing::warn!(%peer, name = %request, "classic request with a file name that is not UTF-8; replied 0");
        report.outcome = ServeOutcome::InvalidName;
        return reply_zero(stream, report).await;
    };
    if name.is_empty() {
        tracing::warn!(%peer, "classic request without a file name; replied 0");
        report.outcome = ServeOutcome::InvalidName;
        return reply_zero(stream, report).await;
    }
    let Some(file) = source.by_name(name) else {
        tracing::info!(%peer, name, "classic request for a file not shared here; replied 0");
        return reply_zero(stream, report).await;
    };
    let opened = match open_file(&file.path).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(%peer, name, path = %file.path.display(), error = %e,
                "cannot open a shared file; replied 0");
            return reply_zero(stream, report).await;
        }
    };
    let (std_file, size) = opened;
    if size > u64::from(u32::MAX) {
        tracing::warn!(%peer, name, size,
            "file of 4 GiB or more cannot be offered on the classic exchange; replied 0");
        report.outcome = ServeOutcome::TooLargeForClassic;
        return reply_zero(stream, report).await;
    }
    let offset = u64::from(partial);
    if offset > size {
        tracing::info!(%peer, name, size, offset, "classic resume past the end of the file; replied 0");
        report.outcome = ServeOutcome::OffsetPastEnd;
        return reply_zero(stream, report).await;
    }
    let len = size - offset;
    // size <= u32::MAX, so len fits.
    let count = u32::try_from(len).unwrap_or(0);
    write_all_timed(&mut stream, &count.to_le_bytes(), cfg.send_timeout)
        .await
        .map_err(|e| ServeError::Io {
            peer,
            during: "sending the byte count",
            source: e,
        })?;
    tracing::debug!(%peer, name, offset, len, "classic upload starts");
    let sent = send_range(&mut stream, std_file, offset, len, cfg).await;
    match sent {
        Ok(sent) => {
            report.bytes_sent = sent;
            report.outcome = ServeOutcome::Sent;
            let _ = timeout(cfg.send_timeout, stream.shutdown()).await;
            tracing::info!(%peer, name, offset, bytes = sent, "classic upload complete");
            Ok(report)
        }
        Err((sent, e)) => Err(ServeError::Upload {
            peer,
            request,
            sent,
            len,
            source: e,
        }),
    }
}

/// Opens a file for reading and returns it with its current size.
pub(crate) async fn open_file(path: &std::path::Path) -> io::Result<(std::fs::File, u64)> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&path)?;
        let meta = f.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok((f, meta.len()))
    })
    .await
    .map_err(io::Error::other)?
}

/// `write_all` that fails with `TimedOut` when it cannot finish in `limit`.
pub(crate) async fn write_all_timed(
    stream: &mut TcpStream,
    buf: &[u8],
    limit: Duration,
) -> io::Result<()> {
    match timeout(limit, stream.write_all(buf)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the peer accepted no data for {limit:?}"),
        )),
    }
}

/// Accepts connections on `listener` and serves each in its own task until
/// `shutdown` resolves.
///
/// A connection is counted against `cfg.limits` caps (in all and per
/// source address) from the moment it is accepted, and closed at once
/// beyond them. It has `cfg.limits.header_timeout` to send its request
/// header and holds no upload slot until then. At most
/// `cfg.max_connections` requests are served at once, and at most
/// `cfg.limits.max_slots_per_ip` for one address: a classic request waits
/// for a slot in a bounded queue in which each address has few places; a
/// rutella peer is told the server is busy. On shutdown the listener stops
/// accepting, uploads in flight get `cfg.shutdown_grace` to finish, and the
/// rest are cut.
pub async fn run_server(
    listener: TcpListener,
    source: Arc<dyn FileSource>,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let cfg = Arc::new(cfg);
    let conns = Conns::new(&cfg.limits);
    let slots = Slots::new(cfg.max_connections, &cfg.limits);
    let flood = Arc::new(FloodLog::new(cfg.limits.flood_log_interval));
    let mut tick =
        tokio::time::interval(cfg.limits.flood_log_interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    let local = listener.local_addr()?;
    tracing::info!(%local, "transfer server listening");
    loop {
        while tasks.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {
                flood.tick();
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off a little.
                    tracing::warn!(%local, error = %e, "accept failed; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let ip = source_of(peer.ip());
        let counted = match conns.open(ip) {
            Ok(g) => g,
            Err(why) => {
                // A reset rather than an orderly close: nothing of it
                // lingers here.
                let _ = stream.set_zero_linger();
                drop(stream);
                flood.note(ip, why);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let source = Arc::clone(&source);
        let cfg2 = Arc::clone(&cfg);
        let slots = Arc::clone(&slots);
        let flood = Arc::clone(&flood);
        tasks.spawn(async move {
            let _counted = counted;
            let r = serve_guarded(stream, peer, source, cfg2, slots, &flood).await;
            // Refusals and peers that held a connection without using it
            // are counted for the rate-limited log, not logged one by one.
            match &r {
                Err(ServeError::Refused { .. }) => {}
                Err(ServeError::RequestTimeout { .. }) => flood.note(ip, Refusal::HeaderTimeout),
                // An idle session is common (a downloader with nothing
                // left to ask); one asking cheap questions is not.
                Err(ServeError::SessionIdle { requests, .. }) if *requests > 0 => {
                    flood.note(ip, Refusal::SessionIdle)
                }
                _ => {}
            }
            log_result(r);
        });
    }
    drop(listener);
    let in_flight = tasks.len();
    if in_flight > 0 {
        tracing::info!(in_flight, grace = ?cfg.shutdown_grace, "transfer server stopping; waiting for uploads");
        let _ = timeout(cfg.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    flood.tick();
    tracing::info!(%local, "transfer server stopped");
    Ok(())
}

/// One accepted connection under the server's limits: the request header
/// is read without a slot; then a classic request waits for one (bounded),
/// a rutella peer gets one at once or is told the server is busy.
async fn serve_guarded(
    mut stream: TcpStream,
    peer: SocketAddr,
    source: Arc<dyn FileSource>,
    cfg: Arc<ServerConfig>,
    slots: Arc<Slots>,
    flood: &FloodLog,
) -> Result<ServeReport, ServeError> {
    let ip = source_of(peer.ip());
    let deadline = Instant::now() + cfg.limits.header_timeout;
    match detect_protocol(&mut stream, peer, deadline, &cfg).await? {
        Detected::Rutella => match slots.try_take(ip) {
            Ok(slot) => crate::serve_rutella::serve_with(stream, peer, source, cfg, slot).await,
            Err(why) => {
                flood.note(ip, why);
                reply_busy(stream, peer, &cfg, &slots, why).await
            }
        },
        Detected::Classic { partial, already } => {
            let name = read_classic_name(&mut stream, peer, &already, deadline, &cfg).await?;
            let wait_until = Instant::now() + cfg.limits.queue_timeout;
            let _slot: Slot = match slots.take(ip, wait_until).await {
                Ok(s) => s,
                Err(why) => {
                    flood.note(ip, why);
                    // The classic exchange cannot say "busy": close.
                    let _ = stream.set_zero_linger();
                    return Err(ServeError::Refused {
                        peer,
                        reason: why.reason(),
                    });
                }
            };
            answer_classic(stream, peer, partial, name, &source, &cfg).await
        }
    }
}

/// Tells a rutella peer (whose hello was read) that no slot is free.
async fn reply_busy(
    mut stream: TcpStream,
    peer: SocketAddr,
    cfg: &ServerConfig,
    slots: &Slots,
    why: Refusal,
) -> Result<ServeReport, ServeError> {
    let _ = write_all_timed(
        &mut stream,
        &wire::encode_hello(wire::VERSION),
        cfg.send_timeout,
    )
    .await;
    let msg = match why {
        Refusal::SlotsPerSource => format!(
            "your address already holds {} upload slots; try again shortly",
            cfg.limits.max_slots_per_ip
        ),
        _ => format!(
            "all {} upload slots are taken; try again shortly",
            slots.total()
        ),
    };
    crate::serve_rutella::reply_error(&mut stream, wire::Status::Busy, &msg, cfg.send_timeout)
        .await
        .map_err(|e| ServeError::Io {
            peer,
            during: "replying busy",
            source: e,
        })?;
    let _ = timeout(cfg.send_timeout, stream.shutdown()).await;
    tracing::debug!(%peer, "told a rutella peer the server is busy");
    Ok(ServeReport {
        peer,
        protocol: Protocol::Rutella,
        request: String::new(),
        offset: 0,
        bytes_sent: 0,
        outcome: ServeOutcome::Busy,
    })
}

fn log_result(r: Result<ServeReport, ServeError>) {
    match r {
        Ok(report) => tracing::debug!(?report, "connection served"),
        Err(
            e @ (ServeError::Refused { .. }
            | ServeError::RequestTimeout { .. }
            | ServeError::SessionIdle { .. }),
        ) => tracing::debug!("{e}"),
        Err(e) => tracing::warn!("{e}"),
    }
}
