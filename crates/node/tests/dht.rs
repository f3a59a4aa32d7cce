//! Finding peers and sources through a Mainline DHT: a local
//! `mainline::Testnet` bound to 127.0.0.1 is the only bootstrap, and the
//! nodes bind 127.0.0.1 with ports the system picks. Nothing here reaches
//! any other address ([`NO_PUBLIC_ENV`] is set as well, so a public
//! bootstrap list would be refused).

use rutella_node::{Client, DhtConfig, Node, NodeConfig, NO_PUBLIC_ENV};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

async fn testnet(nodes: usize) -> mainline::Testnet {
    std::env::set_var(NO_PUBLIC_ENV, "1");
    tokio::task::spawn_blocking(move || {
        mainline::Testnet::builder(nodes)
            .bind_address(Ipv4Addr::LOCALHOST)
            .build()
            .unwrap()
    })
    .await
    .unwrap()
}

fn dht(bootstrap: &[String], network: &str) -> DhtConfig {
    DhtConfig {
        enabled: true,
        bootstrap: bootstrap.to_vec(),
        network: network.to_string(),
        announce_interval: Duration::from_millis(300),
        lookup_interval: Duration::from_millis(100),
        hash_interval: Duration::from_millis(50),
        request_timeout: Duration::from_millis(100),
        ..DhtConfig::default()
    }
}

fn config(share: &Path, dht: DhtConfig) -> NodeConfig {
    let mut cfg = NodeConfig {
        shares: vec![share.to_path_buf()],
        bind: Ipv4Addr::LOCALHOST.into(),
        udp_port: 0,
        tcp_port: 0,
        watch: false,
        dht,
        ..NodeConfig::default()
    };
    cfg.overlay.ping_interval = Duration::from_millis(200);
    cfg.overlay.pong_timeout = Duration::from_millis(200);
    cfg.overlay.search_timeout = Duration::from_millis(1500);
    cfg
}

async fn peer_set(c: &Client) -> BTreeSet<SocketAddr> {
    c.peers()
        .await
        .unwrap()
        .iter()
        .filter(|p| p.tcp_port != 0)
        .map(|p| p.udp)
        .collect()
}

/// Waits (bounded) until each client knows (answered) exactly the others of its group.
async fn wait_groups(groups: &[&[Client]], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let mut ok = true;
        for g in groups {
            for c in g.iter() {
                let expect: BTreeSet<SocketAddr> = g
                    .iter()
                    .map(|o| o.udp_addr())
                    .filter(|a| *a != c.udp_addr())
                    .collect();
                if peer_set(c).await != expect {
                    ok = false;
                }
            }
        }
        if ok {
            return;
        }
        if Instant::now() > deadline {
            for g in groups {
                for c in g.iter() {
                    eprintln!("{} knows {:?}", c.udp_addr(), peer_set(c).await);
                }
            }
            panic!("the nodes did not find their groups through the DHT in {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_find_each_other_through_the_dht_and_networks_stay_apart() {
    let net = testnet(5).await;
    let dirs: Vec<tempfile::TempDir> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    std::fs::write(dirs[2].path().join("needle.txt"), b"found through the DHT").unwrap();

    let start = Instant::now();
    let mut nodes = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let network = if i < 3 { "rutella" } else { "other" };
        nodes.push(
            Node::start(config(d.path(), dht(&net.bootstrap, network)))
                .await
                .unwrap(),
        );
    }
    let clients: Vec<Client> = nodes.iter().map(|n| n.client()).collect();
    // Time to the first peer that answered, as the nodes see it.
    let first = loop {
        let mut any = false;
        for c in &clients[..3] {
            any |= c.answered_peers().await.unwrap() > 0;
        }
        if any {
            break start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no node found a peer through the DHT in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // The three of network "rutella" find each other; the two of network
    // "other" find each other (so their DHT works and they announce), and
    // no node knows one of the other network.
    wait_groups(&[&clients[..3], &clients[3..]], Duration::from_secs(20)).await;
    let all = start.elapsed();
    println!(
        "DHT (local testnet of 5): first peer after {:.0} ms, both groups complete after {:.0} ms",
        first.as_secs_f64() * 1e3,
        all.as_secs_f64() * 1e3
    );
    // A few more lookup rounds: still apart.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for c in &clients[..3] {
        for o in &clients[3..] {
            assert!(!peer_set(c).await.contains(&o.udp_addr()));
            assert!(!peer_set(o).await.contains(&c.udp_addr()));
        }
    }

    // A search from the first finds the file on the third.
    let mut s = clients[0].search("needle").await.unwrap();
    let mut hits = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Some(hit)) = tokio::time::timeout_at(deadline, s.next()).await {
        for f in hit.files {
            hits.push((hit.peer.udp, f.name));
        }
    }
    assert_eq!(
        hits,
        vec![(clients[2].udp_addr(), "needle.txt".to_string())]
    );
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_of_a_hash_are_found_through_the_dht() {
    let net = testnet(5).await;
    let data = b"the same bytes on two nodes".repeat(100);
    let hash = *blake3::hash(&data).as_bytes();
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        if i == 1 || i == 2 {
            std::fs::write(d.path().join(format!("copy{i}.bin")), &data).unwrap();
        }
        // The third shares it under another network: not a source.
        let network = if i == 3 { "other" } else { "rutella" };
        if i == 3 {
            std::fs::write(d.path().join("copy3.bin"), &data).unwrap();
        }
        let mut d = dht(&net.bootstrap, network);
        // The nodes do not look for each other: only the hash lookup joins them.
        d.enough_peers = 0;
        d.lookup_interval = Duration::from_secs(3600);
        nodes.push(Node::start(config(dirs[i].path(), d)).await.unwrap());
    }
    let clients: Vec<Client> = nodes.iter().map(|n| n.client()).collect();
    let expect: BTreeSet<SocketAddr> = [clients[1].udp_addr(), clients[2].udp_addr()].into();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found: BTreeSet<SocketAddr> = clients[0].dht_sources(&hash).await.into_iter().collect();
        if found == expect {
            break;
        }
        assert!(
            found.is_subset(&expect),
            "found {found:?}, expected only {expect:?}"
        );
        assert!(
            Instant::now() < deadline,
            "the sources were not found through the DHT in 20 s (found {found:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The candidates were given to the overlay, and answered.
    let deadline = Instant::now() + Duration::from_secs(10);
    while peer_set(&clients[0]).await != expect {
        assert!(
            Instant::now() < deadline,
            "the sources did not join the overlay"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in nodes {
        n.shutdown().await;
    }
}

/// The library's default has the DHT off. (That the public list is refused
/// under `RUTELLA_TEST_NO_PUBLIC` is checked by a unit test of the pure
/// check, so that a broken defence cannot make this suite reach the public
/// DHT.)
#[tokio::test]
async fn the_dht_is_off_by_default() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), DhtConfig::default());
    assert!(!cfg.dht.enabled);
    assert!(cfg.dht.bootstrap.is_empty());
    let n = Node::start(cfg).await.unwrap();
    assert!(!n.client().dht_running());
    n.shutdown().await;
}
