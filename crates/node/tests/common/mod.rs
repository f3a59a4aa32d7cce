//! What the node's download tests share: a node on its own loopback
//! address with short ping rounds, file contents, a slow source, the
//! wait for peers and the wait for verified data.
#![allow(dead_code)]

use rutella_node::{Client, Node, NodeConfig};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

/// A node at 127.0.`net`.`last`, on ports of its own, without a library
/// watcher, with short ping rounds and a 5 s stop timeout.
pub(crate) fn config(net: u8, last: u8) -> NodeConfig {
    let mut cfg = NodeConfig {
        bind: Ipv4Addr::new(127, 0, net, last).into(),
        udp_port: 0,
        tcp_port: 0,
        watch: false,
        stop_timeout: Duration::from_secs(5),
        ..NodeConfig::default()
    };
    cfg.overlay.ping_interval = Duration::from_millis(200);
    cfg.overlay.pong_timeout = Duration::from_millis(100);
    cfg
}

/// `len` bytes that depend on `seed` (xorshift).
pub(crate) fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Waits (at most 10 s) until `c` knows the TCP port of `n` peers.
pub(crate) async fn wait_peers(c: &Client, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while c
        .peers()
        .await
        .unwrap()
        .iter()
        .filter(|p| p.tcp_port != 0)
        .count()
        < n
    {
        assert!(Instant::now() < deadline, "peers did not join");
        // Polled: a peer's TCP port is learnt from a pong after it joined,
        // which raises no event.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A node (with `cfg`) sharing `data` as `big.bin` in `share`, at `rate`
/// bytes a second, once it hashed it; the node and the file's hash.
pub(crate) async fn slow_source(
    cfg: NodeConfig,
    share: &Path,
    data: &[u8],
    rate: u64,
) -> (Node, [u8; 32]) {
    std::fs::write(share.join("big.bin"), data).unwrap();
    let hash = *blake3::hash(data).as_bytes();
    let node = Node::start(NodeConfig {
        shares: vec![share.to_path_buf()],
        upload_rate_limit: Some(rate),
        ..cfg
    })
    .await
    .unwrap();
    let lib = node.client().library().clone();
    let hashed = tokio::task::spawn_blocking(move || lib.wait_idle(Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(hashed, "the source did not hash its file within 20 s");
    (node, hash)
}

/// Starts the download of `big.bin` (`len` bytes, `hash`) from `from` and
/// waits (at most 20 s) until `keep` bytes of it are verified; its handle
/// and progress.
pub(crate) async fn download_until_verified(
    client: &Client,
    hash: [u8; 32],
    len: u64,
    from: std::net::SocketAddr,
    keep: u64,
) -> (
    rutella_node::DownloadHandle,
    tokio::sync::watch::Receiver<rutella_transfer::Progress>,
) {
    let handle = client.download_hash(hash, "big.bin", Some(len), vec![from]);
    let mut progress = client.progress(handle.id).unwrap();
    tokio::time::timeout(Duration::from_secs(20), async {
        while progress.borrow_and_update().done < keep {
            progress.changed().await.unwrap();
        }
    })
    .await
    .expect("no verified data within 20 s");
    (handle, progress)
}
