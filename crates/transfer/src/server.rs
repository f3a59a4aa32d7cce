//! The serving side: one accepted connection at a time
//! ([`serve_connection`]) and the accept loop ([`run_server`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{timeout, timeout_at, Instant};

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
    /// Most connections served at once; more wait or are told the server is
    /// busy.
    pub max_connections: usize,
    /// Time a peer has, from the connection, to send its whole request.
    pub request_timeout: Duration,
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
            request_timeout: Duration::from_secs(10),
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
/// `cfg.request_timeout` (for the request) or `cfg.send_timeout` (for each
/// write of the upload).
pub async fn serve_connection(
    mut stream: TcpStream,
    source: Arc<dyn FileSource>,
    cfg: Arc<ServerConfig>,
) -> Result<ServeReport, ServeError> {
    let peer = stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let deadline = Instant::now() + cfg.request_timeout;
    match detect_protocol(&mut stream, peer, deadline, &cfg).await? {
        Detected::Classic { partial, already } => {
            serve_classic(stream, peer, partial, &already, deadline, &source, &cfg).await
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
            after: cfg.request_timeout,
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

/// Reads the classic name (after the 4-byte partial size) and answers.
/// `already` holds name bytes read while telling the protocols apart.
async fn serve_classic(
    mut stream: TcpStream,
    peer: SocketAddr,
    partial: u32,
    already: &[u8],
    deadline: Instant,
    source: &Arc<dyn FileSource>,
    cfg: &ServerConfig,
) -> Result<ServeReport, ServeError> {
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
                    after: cfg.request_timeout,
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
    let name = &name[..n];
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
    // The name came from the network: it is logged quoted and escaped
    // (`?`), never raw, so that control characters in it cannot forge log
    // lines or reach a terminal.
    let name = match wire::decode_classic_name(name) {
        Ok(name) => name,
        Err(wire::ClassicNameError::Empty) => {
            tracing::warn!(%peer, "classic request without a file name; replied 0");
            report.outcome = ServeOutcome::InvalidName;
            return reply_zero(stream, report).await;
        }
        Err(_) => {
            tracing::warn!(%peer, name = ?request, "classic request with a file name that is not UTF-8; replied 0");
            report.outcome = ServeOutcome::InvalidName;
            return reply_zero(stream, report).await;
        }
    };
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
/// At most `cfg.max_connections` connections are served at once; a further
/// connection waits (up to `cfg.request_timeout`) for a slot. On shutdown the
/// listener stops accepting, uploads in flight get `cfg.shutdown_grace` to
/// finish, and the rest are cut.
pub async fn run_server(
    listener: TcpListener,
    source: Arc<dyn FileSource>,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let cfg = Arc::new(cfg);
    let slots = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    // Connections waiting for a slot are bounded too.
    let waiting = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    let local = listener.local_addr()?;
    tracing::info!(%local, "transfer server listening");
    loop {
        while tasks.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
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
        let _ = stream.set_nodelay(true);
        let source = Arc::clone(&source);
        let cfg2 = Arc::clone(&cfg);
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let Ok(wait_permit) = Arc::clone(&waiting).try_acquire_owned() else {
                    tracing::warn!(%peer, "too many connections waiting; dropped one");
                    continue;
                };
                let slots = Arc::clone(&slots);
                tasks.spawn(async move {
                    let _wait_permit = wait_permit;
                    log_result(serve_when_free(stream, peer, source, cfg2, slots).await);
                });
                continue;
            }
        };
        tasks.spawn(async move {
            let _permit = permit;
            log_result(serve_connection(stream, source, cfg2).await);
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
    tracing::info!(%local, "transfer server stopped");
    Ok(())
}

/// A connection that arrived while every slot was taken: a rutella peer is
/// told the server is busy at once; a classic peer (which has no way to be
/// told) waits for a slot until its request deadline.
async fn serve_when_free(
    mut stream: TcpStream,
    peer: SocketAddr,
    source: Arc<dyn FileSource>,
    cfg: Arc<ServerConfig>,
    slots: Arc<Semaphore>,
) -> Result<ServeReport, ServeError> {
    let deadline = Instant::now() + cfg.request_timeout;
    match detect_protocol(&mut stream, peer, deadline, &cfg).await? {
        Detected::Rutella => {
            let _ = write_all_timed(
                &mut stream,
                &wire::encode_hello(wire::VERSION),
                cfg.send_timeout,
            )
            .await;
            let msg = format!(
                "all {} upload slots are taken; try again shortly",
                cfg.max_connections
            );
            crate::serve_rutella::reply_error(
                &mut stream,
                wire::Status::Busy,
                &msg,
                cfg.send_timeout,
            )
            .await
            .map_err(|e| ServeError::Io {
                peer,
                during: "replying busy",
                source: e,
            })?;
            let _ = stream.shutdown().await;
            tracing::info!(%peer, "told a rutella peer the server is busy");
            Ok(ServeReport {
                peer,
                protocol: Protocol::Rutella,
                request: String::new(),
                offset: 0,
                bytes_sent: 0,
                outcome: ServeOutcome::Busy,
            })
        }
        Detected::Classic { partial, already } => {
            let _permit = match timeout_at(deadline, slots.acquire_owned()).await {
                Ok(Ok(p)) => p,
                _ => {
                    return Err(ServeError::RequestTimeout {
                        peer,
                        after: cfg.request_timeout,
                    })
                }
            };
            serve_classic(stream, peer, partial, &already, deadline, &source, &cfg).await
        }
    }
}

fn log_result(r: Result<ServeReport, ServeError>) {
    match r {
        Ok(report) => tracing::debug!(?report, "connection served"),
        Err(e) => tracing::warn!("{e}"),
    }
}
