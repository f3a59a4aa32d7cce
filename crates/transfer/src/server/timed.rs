//! Reads and writes with deadlines, and looking up and opening a served
//! file off the runtime.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};

use super::config::{ServeError, ServerConfig};
use crate::{FileSource, SourceFile};

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

/// What a request names.
pub(crate) enum Wanted {
    /// A classic request's file name.
    Name(String),
    /// A rutella request's content hash.
    Hash([u8; 32]),
}

/// A file the source agreed to serve, opened when that was asked for.
pub(crate) struct Found {
    /// The file as the source hands it back.
    pub(crate) file: SourceFile,
    /// The open file and its current size, when opening was asked for.
    pub(crate) opened: Option<io::Result<(std::fs::File, u64)>>,
}

/// Looks the request's file up in `source` and, with `open`, opens it: on
/// the blocking pool, in one trip, since a source checks paths on disk
/// (resolving links, `stat`) for every request and a slow disk must not
/// hold up the runtime. `None` when the source does not serve it.
pub(crate) async fn lookup(
    source: &Arc<dyn FileSource>,
    wanted: Wanted,
    open: bool,
) -> Option<Found> {
    let source = Arc::clone(source);
    let found = tokio::task::spawn_blocking(move || {
        let file = match &wanted {
            Wanted::Name(name) => source.by_name(name),
            Wanted::Hash(hash) => source.by_hash(hash),
        }?;
        let opened = open.then(|| open_file(&file.path));
        Some(Found { file, opened })
    })
    .await;
    match found {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "looking up a requested file failed");
            None
        }
    }
}

/// The error of a file that was looked up but not opened.
pub(crate) fn not_opened() -> io::Result<(std::fs::File, u64)> {
    Err(io::Error::other("the file was not opened"))
}

/// Opens a file for reading and returns it with its current size (blocks).
fn open_file(path: &std::path::Path) -> io::Result<(std::fs::File, u64)> {
    let f = std::fs::File::open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok((f, meta.len()))
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
