//! A node with Gnutella on but no ultrapeer to join (none given, none
//! cached) searches as fast as one without: the idle leaf does not keep a
//! search open until its time runs out once every other peer answered.

use rutella_node::{GnutellaSettings, Node, NodeConfig};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

fn config(share: &std::path::Path) -> NodeConfig {
    NodeConfig {
        shares: vec![share.to_path_buf()],
        bind: IP.into(),
        udp_port: 0,
        tcp_port: 0,
        ..NodeConfig::default()
    }
}

#[tokio::test]
async fn an_idle_leaf_does_not_hold_a_search_open() {
    let b_dir = tempfile::tempdir().unwrap();
    std::fs::write(b_dir.path().join("quick tune.ogg"), b"fast").unwrap();
    let b = Node::start(config(b_dir.path())).await.unwrap();
    let b_udp = b.client().udp_addr();

    let a_dir = tempfile::tempdir().unwrap();
    let mut cfg = config(a_dir.path());
    cfg.connect = vec![b_udp.to_string().parse().unwrap()];
    // Far longer than the test waits: the search must end because the
    // peer answered, not because its time ran out.
    cfg.overlay.search_timeout = Duration::from_secs(60);
    cfg.gnutella = Some(GnutellaSettings {
        tick: Duration::from_millis(20),
        ..GnutellaSettings::default()
    });
    let a = Node::start(cfg).await.unwrap();
    let ac = a.client();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ac.peers().await.unwrap().iter().any(|p| p.udp == b_udp) {
        assert!(Instant::now() < deadline, "the peer never joined");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let mut stream = ac.search("tune").await.unwrap();
    let mut names = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(hit) = stream.next().await {
            names.extend(hit.files.into_iter().map(|f| f.name));
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the search was still open after 10 s (it holds until its 60 s timeout)"
    );
    assert_eq!(names, vec!["quick tune.ogg".to_string()]);
    eprintln!("search ended after {:?}", started.elapsed());
    a.shutdown().await;
    b.shutdown().await;
}
