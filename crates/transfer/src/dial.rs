//! How a download gets a connection to a source: by default it connects
//! to the source's address; a [`Dialer`] may get it another way (a node
//! asks a source that cannot be connected to, through a push proxy, to
//! connect to it). Everything after the connection is the same.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::error::DownloadError;

/// What [`Dialer::dial`] returns.
pub type DialFuture<'a> =
    Pin<Box<dyn Future<Output = Result<TcpStream, DownloadError>> + Send + 'a>>;

/// Gets a connection to a source, named by its TCP address as known.
pub trait Dialer: Send + Sync + fmt::Debug {
    /// A connection to `peer` on which the download speaks as if it had
    /// connected (the downloader sends first). `connect_timeout` is the
    /// download's deadline for a direct connection; a dialer trying other
    /// ways keeps its own deadlines.
    fn dial(&self, peer: SocketAddr, connect_timeout: Duration) -> DialFuture<'_>;
}

/// A dialer shared by the connections of a download.
pub type SharedDialer = Arc<dyn Dialer>;

/// Connects to `peer` directly with a timeout, mapping failures to clear
/// errors: what every download does without a dialer.
pub async fn connect_direct(peer: SocketAddr, limit: Duration) -> Result<TcpStream, DownloadError> {
    crate::download::connect(peer, limit).await
}

/// A connection to `peer`: through `dialer` when there is one.
pub(crate) async fn dial(
    dialer: Option<&SharedDialer>,
    peer: SocketAddr,
    limit: Duration,
) -> Result<TcpStream, DownloadError> {
    match dialer {
        Some(d) => d.dial(peer, limit).await,
        None => crate::download::connect(peer, limit).await,
    }
}
