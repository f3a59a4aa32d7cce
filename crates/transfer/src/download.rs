//! The helpers every download uses, by name or by hash, to connect and to
//! work on files. What a download reports is in `report.rs`, why it fails
//! in `error.rs`.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::error::{DownloadError, LocalError, SourceError};

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
