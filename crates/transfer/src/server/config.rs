//! How the server behaves, and what it reports of each connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::guard::ServerLimits;
use crate::tree_cache::TreeCache;

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
    /// Who takes connections that start with a relay introduction
    /// ([`crate::wire::RELAY_INTRO`]); without one they are closed.
    pub relay: Option<RelayHook>,
    /// Who takes connections that start with an HTTP request (`GET ` or
    /// `HEAD`: Gnutella servents fetching files); without one such
    /// connections are read as classic requests.
    pub http: Option<HttpHook>,
    /// Where connections introduced as pushed (a peer we asked to connect
    /// to us) go, with their token; `None`: they are closed. A full
    /// queue closes them too.
    pub pushed: Option<tokio::sync::mpsc::Sender<PushedConn>>,
    /// Where uploads are announced as they start and end (for a user
    /// interface); `None`: nowhere. A slow reader loses the oldest.
    pub uploads: Option<tokio::sync::broadcast::Sender<UploadNotice>>,
    /// A limit shared by every upload (and whatever else holds a clone),
    /// on top of `rate_limit`; `None`: none.
    pub total_limit: Option<crate::RateLimiter>,
    /// Upload slots whose number may change while the server runs; `None`:
    /// `max_connections` fixed slots.
    pub slots: Option<crate::UploadSlots>,
}

/// A connection that came in introduced as pushed: a peer we asked (with
/// a Push) to connect to us. The introduction has been read; the
/// downloading side speaks next, as if it had connected.
#[derive(Debug)]
pub struct PushedConn {
    /// The token the introduction carried.
    pub token: u64,
    /// The connection.
    pub stream: tokio::net::TcpStream,
    /// Its remote address.
    pub peer: std::net::SocketAddr,
}

/// The taker of relay circuits: called with a connection whose first 8
/// bytes (the relay introduction's) were read, and its peer. It runs in
/// the connection's task, which holds one of the server's connections
/// (in all and for the peer's address) until it returns, but no upload
/// slot.
#[derive(Clone)]
#[allow(clippy::type_complexity)]
pub struct RelayHook(
    pub  Arc<
        dyn Fn(
                tokio::net::TcpStream,
                std::net::SocketAddr,
            ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
            + Send
            + Sync,
    >,
);

impl std::fmt::Debug for RelayHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelayHook")
    }
}

/// The taker of HTTP connections: called with a connection whose first
/// bytes (its whole request line, and whatever arrived with it, given as
/// the third argument) were read, and its peer. It runs in the connection's task, which holds one of the
/// server's connections (in all and for the peer's address) until it
/// returns.
#[derive(Clone)]
#[allow(clippy::type_complexity)]
pub struct HttpHook(
    pub  Arc<
        dyn Fn(
                tokio::net::TcpStream,
                std::net::SocketAddr,
                Vec<u8>,
            ) -> std::pin::Pin<Box<dyn std::future::Future<Output = u64> + Send>>
            + Send
            + Sync,
    >,
);

impl std::fmt::Debug for HttpHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpHook")
    }
}

/// An upload starting or ending, for the user interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadNotice {
    /// The downloading peer.
    pub peer: SocketAddr,
    /// The shared file sent.
    pub file: std::path::PathBuf,
    /// Started, or ended with the bytes sent.
    pub event: UploadEvent,
    /// The file bytes this upload sent so far, counted as they go out
    /// (the same counter in its `Started` and `Ended` notices).
    pub sent: UploadMeter,
}

/// A live count of the file bytes one upload sent, shared between the
/// connection sending them and whoever shows the upload.
#[derive(Debug, Clone, Default)]
pub struct UploadMeter(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl UploadMeter {
    /// Bytes sent so far.
    pub fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts `n` more bytes sent.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}

impl PartialEq for UploadMeter {
    /// The same counter (not the same count).
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for UploadMeter {}

/// What happened to an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadEvent {
    /// The first bytes go out.
    Started,
    /// The connection (classic) or session (rutella) ended after sending
    /// these bytes of the file.
    Ended {
        /// File bytes sent.
        bytes: u64,
    },
}

impl ServerConfig {
    /// Announces an upload event, when someone listens.
    pub(crate) fn notify(
        &self,
        peer: SocketAddr,
        file: &std::path::Path,
        event: UploadEvent,
        sent: &UploadMeter,
    ) {
        if let Some(tx) = &self.uploads {
            let _ = tx.send(UploadNotice {
                peer,
                file: file.to_path_buf(),
                event,
                sent: sent.clone(),
            });
        }
    }
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
            relay: None,
            http: None,
            pushed: None,
            uploads: None,
            total_limit: None,
            slots: None,
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
    /// A relay circuit's introduction, handed to the relay.
    Relay,
    /// An HTTP request (a Gnutella servent), handed to the HTTP hook.
    Http,
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
    /// The connection was a relay circuit's side, handed to the relay
    /// (or closed when this server has none).
    Relayed,
    /// A pushed connection, handed to the download that waits for it.
    Pushed,
    /// An HTTP connection, handed to the HTTP hook.
    Http,
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

/// Why an upload stopped early.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The peer took no data for the configured send timeout.
    #[error("the peer accepted no data for {0:?}")]
    Stalled(Duration),
    /// Writing to the socket failed (usually: the peer went away).
    #[error("writing to the socket failed: {0}")]
    Socket(#[source] io::Error),
    /// Reading the file failed.
    #[error("reading the file failed: {0}")]
    File(#[source] io::Error),
    /// The file became shorter than announced while it was being sent.
    #[error("the file became shorter while it was being sent")]
    FileShrank,
}
