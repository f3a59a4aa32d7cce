//! Reads and writes with deadlines, and opening a served file.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};

use super::config::{ServeError, ServerConfig};

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
