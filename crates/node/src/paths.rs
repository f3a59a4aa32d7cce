//! Hole punching and relay circuits in the download path, both ways.
//!
//! Downloading: [`crate::push::NodeDialer`] asks a proxy of the source
//! (a current peer of ours) for a punch ([`punch`]), waits for the proxy's
//! go naming the source's external address and the start, and punches;
//! when that fails it invites the source, through the same proxy, to a
//! relay circuit at the proxy ([`relay`]) and joins it as the client.
//!
//! Uploading: on a go or an invite from a peer (the overlay checked it and
//! its budget), the event loop calls [`serve_punched`] or
//! [`serve_relayed`], which open the connection and give it to the
//! transfer server to be served as an accepted one.

use crate::command::Command;
use rutella_proto::path::Failure;
use rutella_proto::relay::Role;
use rutella_proto::PushInfo;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Punch goes awaited at most.
const MAX_AWAITED: usize = 256;

/// A go for a download: the source's external address, the time until
/// the start.
type Go = (SocketAddr, Duration);

/// The punches our downloads asked for (token → until when, and the
/// download waiting for the go). At most [`MAX_AWAITED`]; expired entries
/// are dropped when a new one comes.
#[derive(Debug, Default)]
pub(crate) struct GoTable {
    awaited: Mutex<HashMap<u64, (Instant, oneshot::Sender<Go>)>>,
}

impl GoTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Instant, oneshot::Sender<Go>)>> {
        self.awaited.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the go with `token` until `deadline`; `None` when too many
    /// are awaited already.
    fn register(&self, token: u64, deadline: Instant) -> Option<oneshot::Receiver<Go>> {
        let mut g = self.lock();
        let now = Instant::now();
        g.retain(|_, (d, _)| *d > now);
        if g.len() >= MAX_AWAITED {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        g.insert(token, (deadline, tx));
        Some(rx)
    }

    fn forget(&self, token: u64) {
        self.lock().remove(&token);
    }

    /// Gives a go to the download that asked with `token`; `false` when
    /// none waits (a go we did not ask for).
    pub(crate) fn deliver(&self, token: u64, peer: SocketAddr, start_in: Duration) -> bool {
        let Some((deadline, tx)) = self.lock().remove(&token) else {
            return false;
        };
        deadline > Instant::now() && tx.send((peer, start_in)).is_ok()
    }
}

/// The punching window of a download (the overlay's default).
fn window() -> Duration {
    rutella_proto::punch::PunchConfig::default().window
}

/// Uploading side of a punch: from `start_in` on, opens a TCP connection
/// to `peer` from our listening port, and gives it to the transfer
/// server.
const NO_PROXY_PUNCH: &str = "no proxy of the source is a peer of ours to set up a punch";
const NO_PROXY_RELAY: &str = "no proxy of the source is a peer of ours to relay";

/// Whether a punch or relay attempt failed before anyone was asked (no
/// proxy of the source is a peer of ours).
pub(crate) fn nobody_to_ask(f: &rutella_proto::path::Failure) -> bool {
    matches!(f, rutella_proto::path::Failure::Failed(w) if w == NO_PROXY_PUNCH || w == NO_PROXY_RELAY)
}

pub(crate) async fn serve_punched(
    tcp_port: u16,
    peer: SocketAddr,
    start_in: Duration,
    window: Duration,
    server: mpsc::Sender<TcpStream>,
) {
    let at = Instant::now() + start_in;
    match crate::punch::connect(tcp_port, peer, at, window).await {
        Ok(stream) => {
            tracing::info!(%peer, path = "punch", "punched connection open; serving it");
            if server.try_send(stream).is_err() {
                tracing::info!(%peer, "transfer server busy; punched connection closed");
            }
        }
        Err(e) => tracing::info!(%peer, error = %e, "hole punching for an upload failed"),
    }
}

/// Uploading side of a relay circuit: joins `circuit` at `relay` as the
/// server, and gives the spliced stream to the transfer server.
pub(crate) async fn serve_relayed(
    relay: SocketAddr,
    circuit: [u8; 16],
    wait: Duration,
    server: mpsc::Sender<TcpStream>,
) {
    match crate::relay::connect(relay, &circuit, Role::Server, wait).await {
        Ok(c) => {
            tracing::info!(%relay, path = "relay", "relay circuit spliced; serving it");
            if server.try_send(c.stream).is_err() {
                tracing::info!(%relay, "transfer server busy; relayed connection closed");
            }
        }
        Err(e) => {
            tracing::info!(%relay, error = %e, "joining a relay circuit for an upload failed")
        }
    }
}

/// Downloading side of a punch: asks a proxy of the source for a
/// rendezvous, waits for the go until `deadline`, then punches from
/// `tcp_port`. On success, the stream and the path in words.
pub(crate) async fn punch(
    gos: &GoTable,
    tx: &mpsc::Sender<Command>,
    tcp_port: u16,
    tcp: SocketAddr,
    info: &PushInfo,
    deadline: Instant,
) -> Result<(TcpStream, String), Failure> {
    let token: u64 = rand::random();
    let Some(go) = gos.register(token, deadline) else {
        return Err(Failure::Failed("too many punches pending".into()));
    };
    let (reply, proxy) = oneshot::channel();
    let cmd = Command::PunchAsk {
        tcp,
        info: info.clone(),
        token,
        tcp_port,
        reply,
    };
    let proxy = match tx.send(cmd).await {
        Ok(()) => proxy.await.unwrap_or(None),
        Err(_) => None,
    };
    let Some(proxy) = proxy else {
        gos.forget(token);
        return Err(Failure::Failed(NO_PROXY_PUNCH.into()));
    };
    tracing::info!(%proxy, "asked for a hole punch");
    let (peer, start_in) = match tokio::time::timeout_at(deadline, go).await {
        Ok(Ok(g)) => g,
        _ => {
            gos.forget(token);
            return Err(Failure::Failed(format!("no punch go from {proxy}")));
        }
    };
    let at = Instant::now() + start_in;
    let window = deadline.saturating_duration_since(at).min(window());
    match crate::punch::connect(tcp_port, peer, at, window).await {
        Ok(stream) => Ok((stream, "punch".into())),
        Err(e) => Err(Failure::Failed(e.to_string())),
    }
}

/// Downloading side of a relay: invites the source through a proxy that
/// is a peer of ours to a circuit at that proxy, and joins it as the
/// client. On success, the circuit and the path in words (`relay
/// IP:port`).
pub(crate) async fn relay(
    tx: &mpsc::Sender<Command>,
    tcp: SocketAddr,
    info: &PushInfo,
    deadline: Instant,
) -> Result<(crate::relay::Circuit, String), Failure> {
    let circuit: [u8; 16] = rand::random();
    let (reply, relay) = oneshot::channel();
    let cmd = Command::RelayInvite {
        tcp,
        info: info.clone(),
        circuit,
        reply,
    };
    let relay = match tx.send(cmd).await {
        Ok(()) => relay.await.unwrap_or(None),
        Err(_) => None,
    };
    let Some(relay) = relay else {
        return Err(Failure::Failed(NO_PROXY_RELAY.into()));
    };
    tracing::info!(%relay, "invited the source to a relay circuit");
    let wait = deadline.saturating_duration_since(Instant::now());
    match crate::relay::connect(relay, &circuit, Role::Client, wait).await {
        Ok(c) => {
            tracing::info!(
                %relay,
                max_bytes = c.limits.max_bytes,
                max_duration = ?c.limits.max_duration,
                "relay circuit spliced; the relay closes it after {} bytes or {:?}",
                c.limits.max_bytes,
                c.limits.max_duration,
            );
            Ok((c, format!("relay {relay}")))
        }
        Err(e) => Err(Failure::Failed(e.to_string())),
    }
}
