//! Finding peers on the local link: the driver of
//! [`rutella_proto::lan::LanDiscovery`]. One task owns a UDP socket joined
//! to the multicast group on one interface; the peers it hears go to the
//! event loop as [`Command::Connect`], the same join as a typed address.

use crate::clock::now;
use crate::command::Command;
use crate::config::{LanSettings, PeerAddr};
use rutella_proto::lan::LanDiscovery;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Starts discovery when `settings` turn it on and its socket opens (a
/// failure is logged: the node runs on without it).
pub(crate) fn spawn(
    settings: Option<&LanSettings>,
    (udp_port, tcp_port): (u16, u16),
    tx: mpsc::Sender<Command>,
    found: watch::Sender<usize>,
    stop: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    let lan = settings?;
    match open(lan) {
        Ok(socket) => Some(tokio::spawn(run(
            socket,
            lan.clone(),
            udp_port,
            tcp_port,
            tx,
            found,
            stop,
        ))),
        Err(e) => {
            tracing::warn!(
                error = %e,
                group = %lan.group,
                port = lan.port,
                "cannot look for peers on the local network"
            );
            None
        }
    }
}

/// Opens the group's socket: bound to the group and port (shared with other
/// nodes on this computer), joined on the interface, time-to-live 1 so
/// nothing leaves the link.
fn open(s: &LanSettings) -> io::Result<UdpSocket> {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_address(true)?;
    #[cfg(unix)]
    sock.set_reuse_port(true)?;
    sock.set_nonblocking(true)?;
    // Bound to the group, the socket receives only the group's datagrams.
    let bind = if cfg!(unix) {
        s.group
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    sock.bind(&SocketAddr::from((bind, s.port)).into())?;
    let iface = s.interface.unwrap_or(Ipv4Addr::UNSPECIFIED);
    sock.join_multicast_v4(&s.group, &iface)?;
    if let Some(i) = s.interface {
        sock.set_multicast_if_v4(&i)?;
    }
    sock.set_multicast_ttl_v4(1)?;
    // Other nodes on this computer hear us too; our own datagrams are
    // recognised by their instance number.
    sock.set_multicast_loop_v4(true)?;
    UdpSocket::from_std(sock.into())
}

/// Runs discovery until `stop`: sends what the state machine queues,
/// hands each peer heard to the event loop, and publishes how many
/// were found.
async fn run(
    socket: UdpSocket,
    settings: LanSettings,
    udp_port: u16,
    tcp_port: u16,
    tx: mpsc::Sender<Command>,
    found: watch::Sender<usize>,
    mut stop: watch::Receiver<bool>,
) {
    let instance = random_instance();
    let mut lan = LanDiscovery::new(settings.timers, udp_port, tcp_port, instance, now());
    let dest = SocketAddrV4::new(settings.group, settings.port);
    let mut buf = [0u8; 512];
    loop {
        while let Some(d) = lan.poll_transmit() {
            if let Err(e) = socket.send_to(&d, dest).await {
                tracing::debug!(error = %e, "LAN announcement not sent");
            }
        }
        while let Some(c) = lan.poll_candidate() {
            tracing::info!(peer = %c.udp, "found a peer on the LAN");
            let p = PeerAddr {
                udp: SocketAddr::V4(c.udp),
                tcp_port: Some(c.tcp_port),
            };
            if tx.send(Command::Connect(p)).await.is_err() {
                return;
            }
        }
        found.send_if_modified(|n| {
            let changed = *n != lan.found();
            *n = lan.found();
            changed
        });
        let at = tokio::time::Instant::from_std(lan.poll_timeout());
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, SocketAddr::V4(from))) => lan.handle_datagram(now(), from, &buf[..n]),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "LAN receive failed"),
            },
            _ = tokio::time::sleep_until(at) => lan.handle_timeout(now()),
        }
    }
}

/// A random instance number (from the standard library's random hasher
/// keys, the time and the process).
fn random_instance() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish()
}
