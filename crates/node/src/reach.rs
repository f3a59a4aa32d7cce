//! The driver's side of the reachability check (`rutella_proto::reach`):
//! its settings, and the prober's work, a TCP connection with the rutella
//! hello and one datagram from a fresh UDP socket. The event loop owns the
//! state machine and feeds it.

use crate::command::Command;
use crate::portmap::PortMapStatus;
use rutella_proto::reach::{Dial, MappedBy, Mapping, ReachConfig};
use rutella_transfer::wire;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

/// Settings of the reachability check.
#[derive(Debug, Clone)]
pub struct ReachSettings {
    /// The state machine's timers and budgets (whether to check at all,
    /// how long probers have, how often to check again, the prober side's
    /// rate limits). Its ports and seed are filled in at start.
    pub machine: ReachConfig,
    /// The TCP port probers are asked to connect to; default: ours (a
    /// port mapping keeps the number). Only for tests and odd setups.
    pub external_tcp_port: Option<u16>,
    /// The UDP port probers send their datagram to; default: ours.
    pub external_udp_port: Option<u16>,
    /// Prober side: the time allowed to connect and exchange the hello.
    pub dial_timeout: Duration,
}

impl Default for ReachSettings {
    fn default() -> Self {
        ReachSettings {
            machine: ReachConfig::default(),
            external_tcp_port: None,
            external_udp_port: None,
            dial_timeout: Duration::from_secs(5),
        }
    }
}

impl ReachSettings {
    /// The machine's configuration for a node bound to these ports.
    pub(crate) fn machine_config(&self, udp_port: u16, tcp_port: u16) -> ReachConfig {
        let mut c = self.machine.clone();
        c.udp_port = self.external_udp_port.unwrap_or(udp_port);
        c.tcp_port = self.external_tcp_port.unwrap_or(tcp_port);
        if c.seed == 0 {
            c.seed = random_seed();
        }
        // A prober must be given the time to try before it is given up on.
        c.timeout = c
            .timeout
            .max(self.dial_timeout + Duration::from_millis(500));
        c
    }
}

/// Tokens must not be guessed: drawn from the process's random keys.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    h.finish()
}

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
    bind: Ipv4Addr,
    timeout: Duration,
    tx: mpsc::Sender<Command>,
) {
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
async fn hello(addr: SocketAddrV4) -> std::io::Result<()> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(&wire::encode_hello(wire::VERSION)).await?;
    let mut theirs = [0u8; wire::HELLO_LEN];
    s.read_exact(&mut theirs).await?;
    wire::decode_hello(&theirs)
        .map(|_| ())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}
