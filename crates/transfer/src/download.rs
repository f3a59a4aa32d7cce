//! What every download shares, by name or by hash: progress, reports,
//! errors, and the helpers both kinds use to connect, read and work on
//! files.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::names::NameError;

/// Why a blocking read with `idle` as its timeout failed, or `None` when
/// it was only interrupted and should be retried.
pub(crate) fn read_failure(e: &io::Error, idle: Duration) -> Option<String> {
    match e.kind() {
        io::ErrorKind::Interrupted => None,
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            Some(format!("stalled: no data for {idle:?}"))
        }
        _ => Some(format!("reading failed: {e}")),
    }
}

/// How far a download is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes received in this session.
    pub received: u64,
    /// Bytes of the file on disk (resumed part included).
    pub done: u64,
    /// The whole size, once the peer said it.
    pub total: Option<u64>,
}

/// A finished download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadReport {
    /// Where the complete file now is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Bytes that were already on disk when this session started.
    pub resumed_from: u64,
    /// Bytes of the file that crossed the wire in this session (for a
    /// download by hash, data that failed verification included).
    pub bytes_received: u64,
    /// What each source did.
    pub sources: Vec<SourceReport>,
}

/// What one source contributed to a download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceReport {
    /// The source.
    pub peer: SocketAddr,
    /// File bytes received from it in this session.
    pub bytes_received: u64,
    /// Of those, bytes that passed verification and were kept.
    pub bytes_verified: u64,
    /// How it ended.
    pub outcome: SourceOutcome,
}

/// How a source ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceOutcome {
    /// It served until there was nothing left to ask.
    Served,
    /// It was not needed (or not reached before the end).
    Unused,
    /// It sent data or a tree that failed verification: never asked again
    /// for this file.
    BadData,
    /// It does not have the file.
    NotFound,
    /// It stayed busy.
    Busy,
    /// The connection failed, stalled or broke the protocol.
    Failed(String),
}

impl std::fmt::Display for SourceOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceOutcome::Served => f.write_str("served"),
            SourceOutcome::Unused => f.write_str("unused"),
            SourceOutcome::BadData => f.write_str("sent data that failed verification"),
            SourceOutcome::NotFound => f.write_str("does not have the file"),
            SourceOutcome::Busy => f.write_str("busy"),
            SourceOutcome::Failed(why) => f.write_str(why),
        }
    }
}

fn summarize(sources: &[SourceReport]) -> String {
    sources
        .iter()
        .map(|s| format!("{}: {}", s.peer, s.outcome))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why a download did not complete.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The remote name cannot be turned into a local file name.
    #[error("cannot download {name:?}: {source}")]
    InvalidName {
        /// The remote name.
        name: String,
        /// Why.
        #[source]
        source: NameError,
    },
    /// Nothing listens on the peer's port.
    #[error("peer {peer} refused the connection; check the address and that the peer is running")]
    Refused {
        /// The peer.
        peer: SocketAddr,
    },
    /// The connection could not be set up in time.
    #[error("peer {peer} did not answer the connection within {after:?}; check the address or try again later")]
    ConnectTimeout {
        /// The peer.
        peer: SocketAddr,
        /// The configured connect timeout.
        after: Duration,
    },
    /// The connection failed for another reason.
    #[error("could not connect to peer {peer}: {source}")]
    Connect {
        /// The peer.
        peer: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The peer answered 0: it does not offer the file (or, when resuming,
    /// the partial copy is already as long as its file).
    #[error("peer {peer} does not offer {name:?}{}", not_found_hint(*.partial, .part))]
    NotFound {
        /// The peer.
        peer: SocketAddr,
        /// The remote name.
        name: String,
        /// Bytes of the partial copy offered for resumption.
        partial: u64,
        /// The partial file (kept when it holds data).
        part: PathBuf,
    },
    /// The partial copy is too large to resume over the classic exchange.
    #[error("the partial copy {} holds {partial} bytes, more than the classic exchange can resume (4 GiB); download it by hash from a rutella peer", .part.display())]
    PartialTooLarge {
        /// The partial file.
        part: PathBuf,
        /// Its size.
        partial: u64,
    },
    /// The peer closed without sending the byte count.
    #[error("peer {peer} closed the connection without answering the request for {name:?}; try again later")]
    NoReply {
        /// The peer.
        peer: SocketAddr,
        /// The remote name.
        name: String,
    },
    /// The transfer stopped before the end; the partial copy is kept and the
    /// same download resumes from it.
    #[error("download from peer {peer} stopped after {received} of {expected} bytes ({cause}); the partial copy {} is kept: run the same download again to resume", .part.display())]
    Interrupted {
        /// The peer.
        peer: SocketAddr,
        /// Bytes received in this session.
        received: u64,
        /// Bytes the peer announced for this session.
        expected: u64,
        /// The partial file.
        part: PathBuf,
        /// What happened.
        cause: String,
    },
    /// The peer did not answer the rutella hello.
    #[error("peer {peer} does not speak the rutella protocol ({reason}); if it is a classic peer, download by name instead")]
    NotRutella {
        /// The peer.
        peer: SocketAddr,
        /// What happened instead.
        reason: String,
    },
    /// The peer answered a rutella request with an error status.
    #[error("peer {peer} answered {status:?}: {message:?}")]
    Refusal {
        /// The peer.
        peer: SocketAddr,
        /// The status it sent.
        status: crate::wire::Status,
        /// Its message.
        message: String,
    },
    /// The peer's tree does not combine into the requested hash.
    #[error("peer {peer} sent a tree that does not match the requested hash ({reason}); it is not asked again for this file")]
    BadTree {
        /// The peer.
        peer: SocketAddr,
        /// Why it was refused.
        reason: String,
    },
    /// The peer sent bytes that failed verification.
    #[error("peer {peer} sent data that failed verification at byte {offset}; it is not asked again for this file")]
    BadData {
        /// The peer.
        peer: SocketAddr,
        /// Start of the group that failed.
        offset: u64,
    },
    /// The peer broke the rutella protocol, stalled or closed early.
    #[error("connection with peer {peer} failed: {reason}")]
    Connection {
        /// The peer.
        peer: SocketAddr,
        /// What happened.
        reason: String,
    },
    /// A download by hash was given no source.
    #[error("no source to download {hash} from; search for the file first")]
    NoSources {
        /// The hash, in hex.
        hash: String,
    },
    /// Every source of a download by hash failed before it completed.
    #[error("download of {hash} stopped with {missing} of {size} bytes missing because every source failed ({}); the verified part is kept: run the same download again to resume", summarize(.sources))]
    SourcesExhausted {
        /// The hash, in hex.
        hash: String,
        /// Bytes still missing.
        missing: u64,
        /// The file's size (0 when no tree could be had).
        size: u64,
        /// What each source did.
        sources: Vec<SourceReport>,
    },
    /// A local file operation failed.
    #[error("{what} {} failed: {source}", .path.display())]
    Local {
        /// What was being done.
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

fn not_found_hint(partial: u64, part: &Path) -> String {
    if partial > 0 {
        format!(
            " past the {partial} bytes already in {}; if that partial copy is complete, rename it, otherwise delete it and download again",
            part.display()
        )
    } else {
        "; search again to find who has it".to_owned()
    }
}

impl DownloadError {
    pub(crate) fn local(
        what: &'static str,
        path: &Path,
    ) -> impl FnOnce(io::Error) -> DownloadError {
        let path = path.to_owned();
        move |source| DownloadError::Local { what, path, source }
    }
}

/// Connects to `peer` with a timeout, mapping failures to clear errors.
pub(crate) async fn connect(peer: SocketAddr, limit: Duration) -> Result<TcpStream, DownloadError> {
    match timeout(limit, TcpStream::connect(peer)).await {
        Err(_) => Err(DownloadError::ConnectTimeout { peer, after: limit }),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            Err(DownloadError::Refused { peer })
        }
        Ok(Err(e)) => Err(DownloadError::Connect { peer, source: e }),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

/// Runs file work on the blocking pool; a failure says `what` failed on `path`.
pub(crate) async fn blocking_io<T: Send + 'static>(
    what: &'static str,
    path: &Path,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, DownloadError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)
        .and_then(|r| r)
        .map_err(DownloadError::local(what, path))
}
