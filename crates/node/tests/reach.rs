//! The reachability check between real nodes on loopback: a requester
//! (allowed to take loopback peers as probers) asks a peer to connect
//! back, and learns whether its TCP and UDP ports are open.
//!
//! Address plan: 127.0.0.1 with ports the system picks.

use rutella_node::{MappedBy, Node, NodeConfig, PeerAddr, ReachSettings, Reachability};
use std::net::Ipv4Addr;
use std::time::Duration;

fn config() -> NodeConfig {
    let mut cfg = NodeConfig {
        bind: Ipv4Addr::LOCALHOST.into(),
        udp_port: 0,
        tcp_port: 0,
        watch: false,
        ..NodeConfig::default()
    };
    cfg.overlay.ping_interval = Duration::from_millis(200);
    cfg.overlay.pong_timeout = Duration::from_millis(100);
    cfg
}

/// A requester whose probers may be on loopback, telling them these
/// external ports (default: its own).
fn requester(tcp: Option<u16>, udp: Option<u16>) -> NodeConfig {
    let mut cfg = config();
    let mut reach = ReachSettings {
        external_tcp_port: tcp,
        external_udp_port: udp,
        dial_timeout: Duration::from_millis(500),
        ..ReachSettings::default()
    };
    reach.machine.allow_local = true;
    reach.machine.timeout = Duration::from_secs(2);
    reach.machine.udp_grace = Duration::from_millis(300);
    cfg.reach = reach;
    cfg
}

/// Starts a prober and a requester joined to it, and waits (bounded) for
/// the requester's first verdict.
async fn verdict(cfg: NodeConfig) -> (Reachability, std::net::SocketAddr) {
    let prober = Node::start(config()).await.unwrap();
    let node = Node::start(cfg).await.unwrap();
    let mut rx = node.reachability();
    assert_eq!(*rx.borrow(), Reachability::Unknown);
    node.client()
        .connect(PeerAddr {
            udp: prober.client().udp_addr(),
            tcp_port: None,
        })
        .await
        .unwrap();
    let v = tokio::time::timeout(
        Duration::from_secs(15),
        rx.wait_for(|v| *v != Reachability::Unknown),
    )
    .await
    .expect("no verdict within 15 s")
    .map(|v| *v)
    .unwrap();
    let addr = node.client().udp_addr();
    // The prober, whose peer is on loopback, asked nobody itself.
    assert_eq!(*prober.reachability().borrow(), Reachability::Unknown);
    node.shutdown().await;
    prober.shutdown().await;
    (v, addr)
}

#[tokio::test]
async fn a_node_whose_ports_are_open_is_reachable() {
    let (v, addr) = verdict(requester(None, None)).await;
    assert_eq!(
        v,
        Reachability::Reachable {
            addr,
            mapped_by: None
        }
    );
    let _ = MappedBy::Upnp;
}

/// A port nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_closed_tcp_port_makes_it_not_reachable_though_the_fresh_socket_datagram_arrived() {
    let (v, _) = verdict(requester(Some(closed_port()), None)).await;
    assert_eq!(
        v,
        Reachability::NotReachable {
            tcp: false,
            udp: true
        }
    );
}

#[tokio::test]
async fn a_closed_udp_port_makes_it_not_reachable_though_tcp_worked() {
    let udp = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = udp.local_addr().unwrap().port();
    // Nobody reads there: the datagram is lost, as behind a router that
    // forwards nothing.
    let (v, _) = verdict(requester(None, Some(port))).await;
    assert_eq!(
        v,
        Reachability::NotReachable {
            tcp: true,
            udp: false
        }
    );
    drop(udp);
}
