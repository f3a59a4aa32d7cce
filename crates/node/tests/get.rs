//! `Client::get`, the strategy behind every interface's `get`, between
//! real nodes on loopback.

use rutella_node::{Client, Got, Node, NodeConfig, PeerAddr, Want};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

fn config(last: u8) -> NodeConfig {
    let mut cfg = NodeConfig {
        bind: Ipv4Addr::new(127, 0, 51, last).into(),
        udp_port: 0,
        tcp_port: 0,
        watch: false,
        ..NodeConfig::default()
    };
    cfg.overlay.ping_interval = Duration::from_millis(200);
    cfg.overlay.pong_timeout = Duration::from_millis(100);
    cfg.overlay.search_timeout = Duration::from_millis(1500);
    cfg
}

fn joined(mut cfg: NodeConfig, to: &Client) -> NodeConfig {
    cfg.connect = vec![to.udp_addr().to_string().parse::<PeerAddr>().unwrap()];
    cfg
}

async fn sharing(last: u8, share: &Path, to: Option<&Client>) -> Node {
    let mut cfg = NodeConfig {
        shares: vec![share.to_path_buf()],
        ..config(last)
    };
    if let Some(c) = to {
        cfg = joined(cfg, c);
    }
    let node = Node::start(cfg).await.unwrap();
    let lib = node.client().library().clone();
    let idle = tokio::task::spawn_blocking(move || lib.wait_idle(Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(idle, "hashing did not end within 20 s");
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_by_hash_finds_its_sources_and_says_when_nobody_has_the_file() {
    let share = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(share.path().join("song.ogg"), &data).unwrap();
    let hash = *blake3::hash(&data).as_bytes();
    let a = sharing(1, share.path(), None).await;
    let b = sharing(2, share.path(), Some(&a.client())).await;
    let out = tempfile::tempdir().unwrap();
    let me = Node::start(joined(
        NodeConfig {
            downloads: Some(out.path().to_path_buf()),
            ..config(3)
        },
        &a.client(),
    ))
    .await
    .unwrap();
    let client = me.client();

    let got = tokio::time::timeout(
        Duration::from_secs(10),
        client.get(Want::ByHash { hash, found: None }, Duration::from_secs(3)),
    )
    .await
    .expect("get did not return within 10 s")
    .unwrap();
    let Got::Started {
        handle,
        name,
        sources,
    } = got
    else {
        panic!("not started: {got:?}")
    };
    assert_eq!(name, "song.ogg");
    let offering = [a.client().tcp_addr(), b.client().tcp_addr()];
    assert!(offering.contains(&sources[0]), "{sources:?}");
    let report = tokio::time::timeout(Duration::from_secs(20), handle.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(std::fs::read(&report.path).unwrap(), data);

    // A hash nobody has: said so once the searches ended.
    let got = tokio::time::timeout(
        Duration::from_secs(10),
        client.get(
            Want::ByHash {
                hash: [7; 32],
                found: None,
            },
            Duration::from_secs(1),
        ),
    )
    .await
    .expect("get did not return within 10 s")
    .unwrap();
    assert!(matches!(got, Got::NotOffered), "{got:?}");
    me.shutdown().await;
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_by_name_learns_the_tcp_port_or_says_the_peer_is_silent() {
    let share = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("notes.txt"), b"some notes").unwrap();
    let a = sharing(4, share.path(), None).await;
    let out = tempfile::tempdir().unwrap();
    // Not joined: get joins the peer and waits for its pong.
    let me = Node::start(NodeConfig {
        downloads: Some(out.path().to_path_buf()),
        ..config(5)
    })
    .await
    .unwrap();
    let client = me.client();
    let from = PeerAddr {
        udp: a.client().udp_addr(),
        tcp_port: None,
    };
    let want = Want::ByName {
        from,
        name: "notes.txt".into(),
        listed_size: None,
    };
    let got = client.get(want, Duration::from_secs(5)).await.unwrap();
    let Got::Started {
        handle, sources, ..
    } = got
    else {
        panic!("not started: {got:?}")
    };
    assert_eq!(sources, vec![a.client().tcp_addr()]);
    let report = handle.wait().await.unwrap();
    assert_eq!(std::fs::read(&report.path).unwrap(), b"some notes");

    // Nothing answers at this address.
    let silent = PeerAddr {
        udp: "127.0.51.9:9".parse().unwrap(),
        tcp_port: None,
    };
    let want = Want::ByName {
        from: silent,
        name: "x".into(),
        listed_size: None,
    };
    let got = client.get(want, Duration::from_millis(500)).await.unwrap();
    assert!(matches!(got, Got::PeerSilent), "{got:?}");
    me.shutdown().await;
    a.shutdown().await;
}
