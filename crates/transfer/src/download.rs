//! What every download shares, by name or by hash: progress, reports,
//! errors, and the helpers both kinds use to connect, read and work on
//! files.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::error::{DownloadError, LocalError, SourceError};

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

/// Connects to `peer` with a timeout, mapping failures to clear errors.
pub(crate) async fn connect(peer: SocketAddr, limit: Duration) -> Result<TcpStream, DownloadError> {
    match timeout(limit, TcpStream::connect(peer)).await {
        Err(_) => Err(SourceError::ConnectTimeout { peer, after: limit }.into()),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            Err(SourceError::Refused { peer }.into())
        }
        Ok(Err(e)) => Err(SourceError::Connect { peer, source: e }.into()),
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
        .map_err(|e| LocalError::io(what, path)(e).into())
}
