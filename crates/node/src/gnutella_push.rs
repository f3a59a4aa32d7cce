//! Gnutella pushes in the node, both ways (thin: the decisions are
//! `rutella_gnutella::push`'s).
//!
//! - Downloading from a firewalled servent: [`PushConnector`] sends a Push
//!   through the ultrapeer the hit came from and waits (bounded) for the
//!   `GIV` connection the servent opens to our TCP port, which the
//!   transfer server hands to [`GivHub::take`].
//! - Uploading while firewalled: [`connect_back`] opens the connection a
//!   Push asked for (once the gate admitted it), says `GIV` and serves the
//!   HTTP requests that follow with the same uploader as inbound HTTP.

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rutella_gnutella::descriptor::Guid;
use rutella_gnutella::download::{Connector, DownloadError};
use rutella_gnutella::http::{parse_giv, Giv};
use rutella_gnutella::push::{GivWaits, PushConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::timeout;

use crate::gnutella::GnutellaHandle;

/// Bytes of a GIV read at most (its line and the empty line).
const MAX_GIV: usize = 4 * 1024;

/// Downloads waiting for a `GIV`, and the connections that bring them.
#[derive(Clone)]
pub(crate) struct GivHub {
    inner: Arc<Mutex<Hub>>,
    header_timeout: Duration,
}

struct Hub {
    waits: GivWaits,
    senders: std::collections::HashMap<u64, oneshot::Sender<TcpStream>>,
}

impl GivHub {
    pub(crate) fn new(cfg: PushConfig, header_timeout: Duration) -> GivHub {
        GivHub {
            inner: Arc::new(Mutex::new(Hub {
                waits: GivWaits::new(cfg),
                senders: std::collections::HashMap::new(),
            })),
            header_timeout,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Hub> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a GIV from `guid` for file `index`: the token (to cancel)
    /// and where the connection will come.
    fn expect(
        &self,
        guid: Guid,
        index: u32,
    ) -> Result<(u64, oneshot::Receiver<TcpStream>), String> {
        let mut h = self.lock();
        let token = h
            .waits
            .register(guid, index, std::time::Instant::now())
            .map_err(|e| e.to_string())?;
        let (tx, rx) = oneshot::channel();
        h.senders.retain(|_, s| !s.is_closed());
        h.senders.insert(token, tx);
        Ok((token, rx))
    }

    fn cancel(&self, token: u64) {
        let mut h = self.lock();
        h.waits.cancel(token);
        h.senders.remove(&token);
    }

    /// A connection that started with `GIV ` (those 4 bytes read): reads
    /// the rest of its line (bounded in size and time) and gives it to
    /// the download waiting for it; nobody waits: it is closed.
    pub(crate) async fn take(&self, mut stream: TcpStream, peer: SocketAddr, already: Vec<u8>) {
        let mut buf = already;
        let read = timeout(self.header_timeout, async {
            loop {
                match parse_giv(&buf) {
                    Ok(Some((g, used))) if used == buf.len() => return Ok(g),
                    Ok(Some(_)) => return Err("bytes after the GIV before our request".into()),
                    Err(e) => return Err(e.to_string()),
                    Ok(None) if buf.len() > MAX_GIV => return Err("GIV too long".into()),
                    Ok(None) => {}
                }
                let mut chunk = [0u8; 512];
                match stream.read(&mut chunk).await {
                    Ok(0) => return Err("closed in the middle of a GIV".to_string()),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) => return Err(e.to_string()),
                }
            }
        })
        .await;
        let giv: Giv = match read {
            Ok(Ok(g)) => g,
            Ok(Err(e)) => {
                tracing::debug!(%peer, "bad GIV: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "no complete GIV in time");
                return;
            }
        };
        let tx = {
            let mut h = self.lock();
            h.waits
                .on_giv(&giv, std::time::Instant::now())
                .and_then(|t| h.senders.remove(&t))
        };
        match tx {
            Some(tx) => {
                tracing::debug!(%peer, index = giv.index, "GIV for a pushed download");
                let _ = tx.send(stream);
            }
            None => tracing::debug!(%peer, "GIV that no download waits for; closed"),
        }
    }
}

/// Reaches a firewalled servent: each connection is a Push through the
/// ultrapeer the hit came from and the `GIV` connection it answers with.
pub(crate) struct PushConnector {
    pub(crate) handle: GnutellaHandle,
    pub(crate) via: Option<SocketAddr>,
    pub(crate) servent: SocketAddr,
    pub(crate) guid: Guid,
    pub(crate) index: u32,
    pub(crate) wait: Duration,
}

/// The GUID in hex, to name a servent in messages.
pub(crate) fn guid_hex(g: &Guid) -> String {
    g.iter().map(|b| format!("{b:02X}")).collect()
}

impl Connector for PushConnector {
    async fn connect(&mut self) -> Result<TcpStream, DownloadError> {
        let hub = self.handle.hub().clone();
        let (token, rx) = hub
            .expect(self.guid, self.index)
            .map_err(DownloadError::Unreachable)?;
        let via = match self.handle.push(self.via, self.guid, self.index).await {
            Ok(via) => via,
            Err(e) => {
                hub.cancel(token);
                return Err(DownloadError::Unreachable(format!(
                    "cannot push to the firewalled servent {} ({}): {e}",
                    guid_hex(&self.guid),
                    self.servent
                )));
            }
        };
        match timeout(self.wait, rx).await {
            Ok(Ok(s)) => Ok(s),
            _ => {
                hub.cancel(token);
                Err(DownloadError::Unreachable(format!(
                    "the firewalled servent {} ({}) did not connect back (GIV) within {} ms of a push via {via}",
                    guid_hex(&self.guid),
                    self.servent,
                    self.wait.as_millis()
                )))
            }
        }
    }
}

/// Opens the connection a Push asked for, says `GIV INDEX:GUID/NAME` and
/// serves the HTTP requests that follow. Returns the body bytes sent.
pub(crate) async fn connect_back<L: rutella_gnutella::upload::Library>(
    to: SocketAddrV4,
    giv: Giv,
    connect_timeout: Duration,
    uploader: rutella_gnutella::upload::Uploader<L>,
) -> Result<u64, String> {
    let mut s = timeout(connect_timeout, TcpStream::connect(to))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    timeout(connect_timeout, s.write_all(&giv.encode()))
        .await
        .map_err(|_| "GIV write timed out".to_string())?
        .map_err(|e| e.to_string())?;
    uploader
        .serve(s)
        .await
        .map(|served| served.bytes)
        .map_err(|e| e.to_string())
}
