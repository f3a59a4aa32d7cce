//! The driver's side of the reachability check (`rutella_proto::reach`):
//! the prober's work, a TCP connection with the rutella
//! hello and one datagram from a fresh UDP socket. The event loop owns the
//! state machine and feeds it.

use crate::command::Command;
use crate::portmap::PortMapStatus;
use rutella_proto::reach::{Dial, MappedBy, Mapping};
use rutella_transfer::wire;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

/// The port mapper's status as the check needs it.
pub(crate) fn mapping(status: PortMapStatus) -> Mapping {
    match status {
        PortMapStatus::Pending => Mapping::Pending,
        PortMapStatus::Mapped {
            protocol,
            external_ip,
        } => Mapping::Mapped(
            match protocol {
                crate::PortMapProtocol::Upnp => MappedBy::Upnp,
                crate::PortMapProtocol::Pcp => MappedBy::Pcp,
                crate::PortMapProtocol::NatPmp => MappedBy::NatPmp,
            },
            external_ip,
        ),
        PortMapStatus::Unmapped => Mapping::None,
    }
}

/// The prober's work for one request: connect to the requester's TCP port
/// and exchange the rutella hello (within `timeout`), then send the token
/// from a fresh UDP socket bound to `bind`, then hand the result to the
/// event loop, which sends the report from the overlay socket.
pub(crate) async fn dial_back(
    dial: Dial,
    bind: IpAddr,
    timeout: Duration,
    tx: mpsc::Sender<Command>,
) {
    // The fresh socket is of the requester's family: our bound address
    // when it is of that family, else any address of it.
    let bind: IpAddr = match (bind, dial.udp) {
        (IpAddr::V4(_), SocketAddr::V4(_)) | (IpAddr::V6(_), SocketAddr::V6(_)) => bind,
        (_, SocketAddr::V4(_)) => Ipv4Addr::UNSPECIFIED.into(),
        (_, SocketAddr::V6(_)) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let tcp = matches!(
        tokio::time::timeout(timeout, hello(dial.tcp)).await,
        Ok(Ok(()))
    );
    tracing::debug!(peer = %dial.reply_to, tcp, "connected back to a peer that asked");
    match UdpSocket::bind((bind, 0)).await {
        Ok(fresh) => {
            if let Err(e) = fresh.send_to(&dial.udp_check(), dial.udp).await {
                tracing::debug!(dest = %dial.udp, error = %e, "dial-back datagram not sent");
            }
        }
        Err(e) => tracing::debug!(error = %e, "no fresh UDP socket for a dial-back"),
    }
    let _ = tx.send(Command::DialDone(dial, tcp)).await;
}

/// Connects, sends our hello and reads the server's.
async fn hello(addr: SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(&wire::encode_hello(wire::VERSION)).await?;
    let mut theirs = [0u8; wire::HELLO_LEN];
    s.read_exact(&mut theirs).await?;
    wire::decode_hello(&theirs)
        .map(|_| ())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}
