//! Pushed connections between real nodes on loopback: a node configured
//! as not reachable says so in its answers, a downloader then skips the
//! direct connection and pushes, and the file arrives by name and by hash
//! over the connection the firewalled node opened; a pushed connection
//! with a token nobody waits for is closed.

mod common;
use common::{pattern, wait_peers};
use rutella_node::{Client, Got, Node, NodeConfig, PeerAddr, Want};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// This file's block of loopback addresses.
const F_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 41, 1);
const D_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 41, 2);

fn config(ip: Ipv4Addr, share: &Path) -> NodeConfig {
    let mut cfg = NodeConfig {
        shares: vec![share.to_path_buf()],
        bind: ip.into(),
        udp_port: 0,
        tcp_port: 0,
        push_timeout: Duration::from_secs(5),
        ..NodeConfig::default()
    };
    cfg.overlay.ping_interval = Duration::from_millis(200);
    cfg.overlay.pong_timeout = Duration::from_millis(100);
    cfg.overlay.search_timeout = Duration::from_millis(1000);
    cfg
}

/// Searches until a hit carries a hash (hashing runs in the background and
/// announces nothing, so the search is repeated).
async fn hashed_hit(c: &Client, text: &str) -> rutella_node::SearchHit {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let mut s = c.search(text).await.unwrap();
        while let Some(hit) = s.next().await {
            if hit.files.iter().any(|f| f.hash.is_some()) {
                return hit;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no hashed hit for {text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firewalled_node_is_downloaded_from_by_name_and_by_hash_through_push() {
    let f_dir = tempfile::tempdir().unwrap();
    let d_dir = tempfile::tempdir().unwrap();
    let data = pattern(3 << 20, 5);
    std::fs::write(f_dir.path().join("behind the router.ogg"), &data).unwrap();
    let mut cfg = config(F_IP, f_dir.path());
    cfg.reachable = Some(false);
    let f = Node::start(cfg).await.unwrap();
    let mut cfg = config(D_IP, d_dir.path());
    cfg.connect = vec![f.client().udp_addr().to_string().parse().unwrap()];
    let d = Node::start(cfg).await.unwrap();
    let client = d.client();
    wait_peers(&client, 1).await;
    wait_peers(&f.client(), 1).await;

    // The answer says F is firewalled, with its push id and D as proxy.
    let hit = hashed_hit(&client, "behind the router").await;
    assert!(hit.push.firewalled, "{:?}", hit.push);
    assert!(hit.push.push_id.is_some());
    assert_eq!(hit.push.proxies, vec![client.udp_addr()]);
    let f_tcp = f.client().tcp_addr();
    assert_eq!(hit.peer.tcp(), f_tcp);
    let file = hit.files[0].clone();

    // By name: D skips the direct connection and pushes straight to F (a
    // peer of D that told its push id).
    let from = PeerAddr {
        udp: f.client().udp_addr(),
        tcp_port: Some(f_tcp.port()),
    };
    let want = Want::ByName {
        from,
        name: file.name.clone(),
        listed_size: None,
    };
    let Got::Started { handle, .. } = client.get(want, Duration::from_secs(5)).await.unwrap()
    else {
        panic!("not started")
    };
    let report = tokio::time::timeout(Duration::from_secs(30), handle.wait())
        .await
        .expect("in time")
        .expect("downloaded by name");
    assert!(std::fs::read(&report.path).unwrap() == data);
    let path = client.path_to(f_tcp).expect("a path was recorded");
    assert!(path.starts_with("push to peer"), "{path}");
    let row = client
        .downloads()
        .into_iter()
        .find(|r| r.id == handle_id(&client, &file.name))
        .unwrap();
    assert_eq!(row.paths, vec![(f_tcp, path.clone())]);

    // By hash, the same way, into another folder.
    let hash = file.hash.unwrap();
    let handle = client.download_hash(hash, "by hash.ogg", file.size, vec![f_tcp]);
    let report = tokio::time::timeout(Duration::from_secs(30), handle.wait())
        .await
        .expect("in time")
        .expect("downloaded by hash");
    assert!(std::fs::read(&report.path).unwrap() == data);
    assert_eq!(report.sources[0].bytes_verified, data.len() as u64);
    assert!(client.path_to(f_tcp).unwrap().starts_with("push to peer"));

    d.shutdown().await;
    f.shutdown().await;
}

/// The id of the download of `name`.
fn handle_id(c: &Client, name: &str) -> u64 {
    c.downloads()
        .into_iter()
        .find(|r| r.name == name)
        .map(|r| r.id)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_unknown_reachability_names_proxies_and_is_connected_to_directly() {
    let f_dir = tempfile::tempdir().unwrap();
    let d_dir = tempfile::tempdir().unwrap();
    let data = pattern(100_000, 6);
    std::fs::write(f_dir.path().join("open.bin"), &data).unwrap();
    let f = Node::start(config(Ipv4Addr::new(127, 0, 41, 3), f_dir.path()))
        .await
        .unwrap();
    let mut cfg = config(Ipv4Addr::new(127, 0, 41, 4), d_dir.path());
    cfg.connect = vec![f.client().udp_addr().to_string().parse().unwrap()];
    let d = Node::start(cfg).await.unwrap();
    let client = d.client();
    wait_peers(&client, 1).await;
    let hit = hashed_hit(&client, "open").await;
    assert!(!hit.push.firewalled);
    assert!(hit.push.can_push(), "{:?}", hit.push);
    let file = &hit.files[0];
    let handle = client.download_hash(
        file.hash.unwrap(),
        "open.bin",
        file.size,
        vec![hit.peer.tcp()],
    );
    let report = handle.wait().await.unwrap();
    assert!(std::fs::read(&report.path).unwrap() == data);
    assert_eq!(client.path_to(hit.peer.tcp()).as_deref(), Some("direct"));
    d.shutdown().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_connection_with_an_unknown_token_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(Ipv4Addr::new(127, 0, 41, 5), dir.path()))
        .await
        .unwrap();
    let tcp: std::net::SocketAddr = node.client().tcp_addr();
    let mut s = tokio::net::TcpStream::connect(tcp).await.unwrap();
    s.write_all(&rutella_transfer::wire::encode_push_intro(0x1234_5678))
        .await
        .unwrap();
    // Closed without a byte: no hello, no error reply.
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("closed in time");
    match r {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected a closed connection, got {other:?}: {:?}", &buf),
    }
    node.shutdown().await;
}
