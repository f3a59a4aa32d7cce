//! Bootstrapping the Gnutella leaf from host caches written here, on
//! loopback: a UDP host cache (Ping with GGEP SCP, Pong with GGEP IPP)
//! and a GWebCache (`?get=1&…&net=gnutella`, `H|IP:PORT` lines) each lead
//! the node to the test ultrapeer; at most `bootstrap_max_caches` caches
//! are asked per start. No public host is ever contacted.

use rutella_gnutella::descriptor::{Descriptor, Payload, Pong};
use rutella_gnutella::ggep::Extension;
use rutella_gnutella::hostcache::encode_ipp;
use rutella_gnutella::testkit::{TestUltrapeer, UltrapeerConfig};
use rutella_node::{GnutellaSettings, Node, NodeConfig};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(10);
const IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

fn v4(a: SocketAddr) -> SocketAddrV4 {
    match a {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => panic!("IPv4 expected"),
    }
}

/// A UDP host cache: answers each SCP ping with a pong naming `hosts` in
/// IPP; counts the pings.
async fn uhc(hosts: Vec<SocketAddrV4>) -> (SocketAddr, Arc<AtomicUsize>) {
    let sock = tokio::net::UdpSocket::bind((IP, 0)).await.unwrap();
    let addr = sock.local_addr().unwrap();
    let pings = Arc::new(AtomicUsize::new(0));
    let count = pings.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let Ok(d) = Descriptor::decode_bytes(&buf[..n]) else {
                continue;
            };
            let Payload::Ping(p) = &d.payload else {
                continue;
            };
            assert!(p.ggep.iter().any(|e| e.id == b"SCP"), "an SCP ping");
            assert_eq!((d.ttl, d.hops), (1, 0));
            count.fetch_add(1, Ordering::SeqCst);
            if hosts.is_empty() {
                continue;
            }
            let pong = Descriptor {
                guid: d.guid,
                ttl: 1,
                hops: 0,
                payload: Payload::Pong(Pong {
                    port: 0,
                    ip: Ipv4Addr::UNSPECIFIED,
                    files: 0,
                    kbytes: 0,
                    ggep: vec![Extension::new(b"IPP", encode_ipp(&hosts))],
                }),
            };
            let _ = sock.send_to(&pong.encode(), from).await;
        }
    });
    (addr, pings)
}

/// A GWebCache: answers a `get=1` request for `net=gnutella` with `H|`
/// lines; counts the requests.
async fn gwc(hosts: Vec<SocketAddrV4>) -> (String, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind((IP, 0)).await.unwrap();
    let url = format!("http://{}/gwc/cache.php", l.local_addr().unwrap());
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&req)
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            assert!(line.starts_with("GET /gwc/cache.php?"), "{line}");
            assert!(
                line.contains("get=1") && line.contains("net=gnutella"),
                "{line}"
            );
            count.fetch_add(1, Ordering::SeqCst);
            let mut body = String::from("I|pong|test cache\r\n");
            for h in &hosts {
                body.push_str(&format!("H|{h}|30\r\n"));
            }
            let _ = s
                .write_all(
                    format!("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n{body}").as_bytes(),
                )
                .await;
        }
    });
    (url, asked)
}

fn settings() -> GnutellaSettings {
    let mut s = GnutellaSettings {
        tick: Duration::from_millis(20),
        retry: Duration::from_millis(200),
        bootstrap_timeout: Duration::from_millis(500),
        ..GnutellaSettings::default()
    };
    s.leaf.handshake_timeout = Duration::from_secs(5);
    s
}

async fn joins(s: GnutellaSettings) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(NodeConfig {
        shares: vec![dir.path().to_path_buf()],
        bind: IP.into(),
        udp_port: 0,
        tcp_port: 0,
        gnutella: Some(s),
        ..NodeConfig::default()
    })
    .await
    .unwrap();
    let mut links = node.client().gnutella_links().unwrap();
    tokio::time::timeout(LIMIT, links.wait_for(|n| *n >= 1))
        .await
        .expect("joined the ultrapeer the cache named")
        .unwrap();
    node.shutdown().await;
}

#[tokio::test]
async fn a_udp_host_cache_leads_to_an_ultrapeer() {
    let up = TestUltrapeer::start(UltrapeerConfig::default())
        .await
        .unwrap();
    // A cache that does not answer, then one that does.
    let (silent, silent_pings) = uhc(vec![]).await;
    let (cache, pings) = uhc(vec![v4(up.addr())]).await;
    let mut s = settings();
    s.udp_host_caches = vec![silent.to_string(), cache.to_string()];
    joins(s).await;
    assert_eq!(pings.load(Ordering::SeqCst), 1);
    assert_eq!(silent_pings.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_gwebcache_leads_to_an_ultrapeer() {
    let up = TestUltrapeer::start(UltrapeerConfig::default())
        .await
        .unwrap();
    let (url, asked) = gwc(vec![v4(up.addr())]).await;
    let mut s = settings();
    s.gwebcaches = vec![url];
    joins(s).await;
    assert_eq!(asked.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn few_caches_are_asked_and_none_with_an_address_to_join() {
    let mut caches = Vec::new();
    for _ in 0..6 {
        caches.push(uhc(vec![]).await);
    }
    let (url, asked) = gwc(vec![]).await;
    let up = TestUltrapeer::start(UltrapeerConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let start = |connect: Vec<SocketAddr>| {
        let mut s = settings();
        s.connect = connect;
        s.udp_host_caches = caches.iter().map(|(a, _)| a.to_string()).collect();
        s.gwebcaches = vec![url.clone()];
        s.bootstrap_max_caches = 2;
        s.bootstrap_timeout = Duration::from_millis(200);
        Node::start(NodeConfig {
            shares: vec![dir.path().to_path_buf()],
            bind: IP.into(),
            udp_port: 0,
            tcp_port: 0,
            gnutella: Some(s),
            ..NodeConfig::default()
        })
    };
    // Nothing to join: two caches are asked (the silent ones take their
    // whole time), then no more.
    let node = start(vec![]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let total = |c: &Vec<(SocketAddr, Arc<AtomicUsize>)>| {
        c.iter()
            .map(|(_, n)| n.load(Ordering::SeqCst))
            .sum::<usize>()
    };
    assert_eq!(total(&caches) + asked.load(Ordering::SeqCst), 2);
    node.shutdown().await;
    // An address to join: no cache is asked.
    let node = start(vec![up.addr()]).await.unwrap();
    let mut links = node.client().gnutella_links().unwrap();
    tokio::time::timeout(LIMIT, links.wait_for(|n| *n >= 1))
        .await
        .expect("joined")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(total(&caches) + asked.load(Ordering::SeqCst), 2);
    node.shutdown().await;
}
