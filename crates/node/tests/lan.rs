//! LAN discovery on loopback: nodes given no address find each other
//! through the multicast group (joined on 127.0.0.1, so nothing leaves
//! this computer). Each test uses a group of its own, so tests running at
//! the same time do not hear each other.

use rutella_node::{Client, LanSettings, Node, NodeConfig, NodeEvent};
use std::net::Ipv4Addr;
use std::time::Duration;

/// A group no other test process uses: 239.255.X.Y from the process id,
/// plus `n` for tests of this file.
fn group(n: u8) -> Ipv4Addr {
    let pid = std::process::id();
    Ipv4Addr::new(239, 255, (pid >> 8) as u8 ^ n.wrapping_mul(61), pid as u8)
}

fn config(lan: Option<Ipv4Addr>) -> NodeConfig {
    let mut cfg = NodeConfig {
        bind: Ipv4Addr::LOCALHOST.into(),
        udp_port: 0,
        tcp_port: 0,
        watch: false,
        lan: lan.map(|group| LanSettings {
            group,
            port: 20_199,
            interface: Some(Ipv4Addr::LOCALHOST),
            ..LanSettings::default()
        }),
        ..NodeConfig::default()
    };
    cfg.overlay.ping_interval = Duration::from_millis(200);
    cfg.overlay.pong_timeout = Duration::from_millis(100);
    cfg
}

/// Waits (at most `limit`) until `c` has a peer at `want`'s address.
async fn joined(c: &Client, want: &Client, limit: Duration) -> bool {
    let mut events = c.subscribe();
    let target = want.udp_addr();
    let check = async {
        if c.peers().await.unwrap().iter().any(|p| p.udp == target) {
            return;
        }
        loop {
            match events.recv().await {
                Ok(NodeEvent::PeerAdded(p)) if p.udp == target => return,
                Ok(_) => {}
                Err(_) => {
                    if c.peers().await.unwrap().iter().any(|p| p.udp == target) {
                        return;
                    }
                }
            }
        }
    };
    tokio::time::timeout(limit, check).await.is_ok()
}

#[tokio::test]
async fn two_nodes_find_each_other_with_no_address() {
    let g = group(1);
    let a = Node::start(config(Some(g))).await.unwrap();
    let b = Node::start(config(Some(g))).await.unwrap();
    let (ca, cb) = (a.client(), b.client());
    let start = std::time::Instant::now();
    assert!(
        joined(&ca, &cb, Duration::from_secs(3)).await,
        "A did not find B"
    );
    assert!(
        joined(&cb, &ca, Duration::from_secs(3)).await,
        "B did not find A"
    );
    eprintln!("both joined through the LAN in {:?}", start.elapsed());
    assert_eq!(*ca.lan_found().borrow(), 1);
    assert_eq!(*cb.lan_found().borrow(), 1);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_node_without_lan_discovery_is_not_found_and_finds_nobody() {
    let g = group(2);
    let off = Node::start(config(None)).await.unwrap();
    let a = Node::start(config(Some(g))).await.unwrap();
    let b = Node::start(config(Some(g))).await.unwrap();
    let (co, ca, cb) = (off.client(), a.client(), b.client());
    // A and B find each other: announcements were flowing on the group.
    assert!(
        joined(&ca, &cb, Duration::from_secs(3)).await,
        "A did not find B"
    );
    assert!(!co.lan_discovery());
    assert!(co.peers().await.unwrap().is_empty());
    for c in [&ca, &cb] {
        assert!(
            !c.peers()
                .await
                .unwrap()
                .iter()
                .any(|p| p.udp == co.udp_addr()),
            "a node with LAN discovery off was found"
        );
    }
    for n in [off, a, b] {
        n.shutdown().await;
    }
}
