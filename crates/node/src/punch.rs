//! TCP hole punching by simultaneous open, from the node's own TCP port.
//!
//! Both ends call [`connect`] at the same agreed moment, each towards the
//! other's external address, from the port it listens on. Each side's SYN
//! opens a mapping in its own router, so the other side's SYN, arriving
//! later, is taken for an answer and let through; the two sockets meet in
//! a TCP simultaneous open (or one side's SYN reaches the other's socket
//! while that one is still in `SYN_SENT`), and both get one connection.
//!
//! The listening socket and the punching sockets share the port through
//! `SO_REUSEADDR` and `SO_REUSEPORT` ([`listen`] binds the listener that
//! way), so the node keeps listening while it punches. A connection's
//! 4-tuple is matched before any listener, so the peer's SYN goes to the
//! punching socket, not to the listener.
//!
//! What this assumes: the router keeps the source port when it is free
//! (Linux masquerade does, and so do most home routers), so the node's
//! external TCP port is its own TCP port (or the one a port mapping gave
//! it). A router that picks a new port for every destination (symmetric
//! NAT) defeats this: the peer's SYN goes to a port that maps nothing, and
//! [`connect`] fails when its window ends; the caller then falls back to a
//! relay.
//!
//! Once connected, the downloader acts as the transfer client (it sends
//! the classic request or the rutella hello) and the uploader serves the
//! stream with `rutella_transfer::serve_connection`.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::{sleep_until, timeout, Instant};

/// How long and how often [`connect_with`] tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PunchConfig {
    /// The attempt ends this long after the start moment.
    pub window: Duration,
    /// A SYN that got no answer within this long is given up and a new
    /// socket sends a fresh one (the kernel would retry only after 1 s).
    pub retry: Duration,
    /// At most this many SYNs (sockets) in one attempt.
    pub max_tries: u32,
}

impl Default for PunchConfig {
    fn default() -> Self {
        PunchConfig {
            window: Duration::from_secs(5),
            retry: Duration::from_millis(500),
            max_tries: 16,
        }
    }
}

/// Opens a TCP connection to `remote` from local port `local_tcp_port` by
/// simultaneous open, starting at `start_at` and giving up after `window`.
/// The peer must call it at the same moment towards this side.
pub async fn connect(
    local_tcp_port: u16,
    remote: SocketAddr,
    start_at: Instant,
    window: Duration,
) -> io::Result<TcpStream> {
    let cfg = PunchConfig {
        window,
        ..PunchConfig::default()
    };
    connect_with(local_tcp_port, remote, start_at, &cfg).await
}

/// [`connect`] with every timer given.
pub async fn connect_with(
    local_tcp_port: u16,
    remote: SocketAddr,
    start_at: Instant,
    cfg: &PunchConfig,
) -> io::Result<TcpStream> {
    sleep_until(start_at).await;
    let deadline = start_at.max(Instant::now()) + cfg.window;
    let mut tries = 0u32;
    let mut last: Option<io::Error> = None;
    while tries < cfg.max_tries.max(1) {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let this_try = cfg.retry.max(Duration::from_millis(1)).min(deadline - now);
        let next = now + this_try;
        tries += 1;
        let socket = punching_socket(local_tcp_port, remote)?;
        match timeout(this_try, socket.connect(remote)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                tracing::debug!(%remote, tries, "hole punched");
                return Ok(stream);
            }
            Ok(Err(e)) => {
                // A reset (the peer's listener answered before its own
                // SYN left) or an unreachable network: try again at the
                // next step, not at once.
                tracing::trace!(%remote, error = %e, "punching SYN failed");
                last = Some(e);
                sleep_until(next).await;
            }
            Err(_) => {}
        }
    }
    let why = last
        .map(|e| format!("; last error: {e}"))
        .unwrap_or_default();
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "hole punching to {remote} failed: no connection within {:?} ({tries} SYNs sent){why}",
            cfg.window
        ),
    ))
}

/// A socket bound to the node's TCP port beside its listener, ready to
/// connect.
fn punching_socket(local_tcp_port: u16, remote: SocketAddr) -> io::Result<TcpSocket> {
    let (socket, any) = match remote {
        SocketAddr::V4(_) => (TcpSocket::new_v4()?, Ipv4Addr::UNSPECIFIED.into()),
        SocketAddr::V6(_) => (TcpSocket::new_v6()?, Ipv6Addr::UNSPECIFIED.into()),
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    socket.bind(SocketAddr::new(any, local_tcp_port))?;
    Ok(socket)
}

/// Binds the node's TCP listener so that [`connect`] can use its port too
/// (`SO_REUSEADDR` and `SO_REUSEPORT`).
///
/// `SO_REUSEPORT` alone would let a second program of the same user listen
/// on the same port without an error, so a port given explicitly is first
/// probed with a socket that shares it with nobody: a port another program
/// listens on fails here with `AddrInUse`, as a plain bind would.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let new = || -> io::Result<Socket> {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        if addr.is_ipv6() {
            // `::` serves IPv4 peers on the same socket.
            s.set_only_v6(false)?;
        }
        // Connections of an earlier run in TIME_WAIT do not count.
        s.set_reuse_address(true)?;
        Ok(s)
    };
    if addr.port() != 0 {
        let probe = new()?;
        probe.bind(&addr.into())?;
        drop(probe);
    }
    let socket = new()?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn listen_refuses_a_port_another_listener_holds() {
        let a = listen((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
        let port = a.local_addr().unwrap().port();
        let err = listen((Ipv4Addr::LOCALHOST, port).into()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    /// Without a router in between, the SYN reaches the peer's listener:
    /// punching towards a reachable peer is an ordinary connection, made
    /// from the port the node listens on.
    #[tokio::test]
    async fn towards_a_listener_it_connects_from_the_listening_port() {
        let la = listen((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
        let lb = listen((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
        let (pa, pb) = (
            la.local_addr().unwrap().port(),
            lb.local_addr().unwrap().port(),
        );
        let cfg = PunchConfig {
            window: Duration::from_secs(5),
            retry: Duration::from_millis(200),
            max_tries: 8,
        };
        let start = Instant::now() + Duration::from_millis(20);
        let mut a = connect_with(pa, (Ipv4Addr::LOCALHOST, pb).into(), start, &cfg)
            .await
            .unwrap();
        assert!(Instant::now() >= start);
        assert_eq!(a.local_addr().unwrap().port(), pa);
        let (mut b, from) = lb.accept().await.unwrap();
        assert_eq!(from.port(), pa);
        a.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        b.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
    }

    #[tokio::test]
    async fn nobody_there_fails_within_the_window() {
        let la = listen((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
        let pa = la.local_addr().unwrap().port();
        // A loopback port nobody listens on answers every SYN with a
        // reset; the attempt keeps trying until its window ends.
        let cfg = PunchConfig {
            window: Duration::from_millis(300),
            retry: Duration::from_millis(100),
            max_tries: 10,
        };
        let began = std::time::Instant::now();
        let err = connect_with(pa, (Ipv4Addr::LOCALHOST, 9).into(), Instant::now(), &cfg)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("hole punching"), "{err}");
        assert!(began.elapsed() < Duration::from_secs(2));
        assert!(began.elapsed() >= Duration::from_millis(250));
    }
}
