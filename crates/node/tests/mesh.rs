//! Real nodes (real UDP and TCP sockets on loopback) in one process.
//!
//! Address plan: this file uses 127.0.1.0/24 for nodes on the classic
//! ports, and 127.0.0.1 with ports the system picks.

use rutella_node::{Client, Node, NodeConfig, PeerAddr};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

fn config(bind: Ipv4Addr, port: u16, share: &Path) -> NodeConfig {
    let mut cfg = NodeConfig {
        shares: vec![share.to_path_buf()],
        bind: bind.into(),
        udp_port: port,
        tcp_port: if port == 0 { 0 } else { 10000 },
        watch: false,
        ..NodeConfig::default()
    };
    cfg.overlay.ping_interval = Duration::from_millis(200);
    cfg.overlay.pong_timeout = Duration::from_millis(100);
    cfg.overlay.search_timeout = Duration::from_millis(1500);
    cfg
}

fn share_with(dir: &Path, files: &[(&str, &[u8])]) {
    for (name, data) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
}

async fn peer_set(c: &Client) -> BTreeSet<SocketAddr> {
    c.peers().await.unwrap().iter().map(|p| p.udp).collect()
}

/// Waits until `done` holds, checking again after every event of any of
/// `clients` (a peer list changes only with an event), and fails with
/// `what` after `limit`.
async fn wait_peers<F, Fut>(clients: &[Client], limit: Duration, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    use tokio::sync::broadcast::error::RecvError;
    // Subscribed before the first check, so that no change is missed.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let forwarders: Vec<_> = clients
        .iter()
        .map(|c| {
            let mut events = c.subscribe();
            let tx = tx.clone();
            tokio::spawn(async move {
                // A lagging receiver has missed events: also a change.
                while !matches!(events.recv().await, Err(RecvError::Closed)) {
                    let _ = tx.try_send(());
                }
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + limit;
    let mut held = true;
    while !done().await {
        if tokio::time::timeout_at(deadline, rx.recv()).await.is_err() {
            held = false;
            break;
        }
    }
    for f in forwarders {
        f.abort();
    }
    if !held {
        for c in clients {
            eprintln!("{} knows {:?}", c.udp_addr(), peer_set(c).await);
        }
        panic!("{what} within {limit:?}");
    }
}

/// Waits (bounded) until every node knows exactly every other node.
async fn wait_full_mesh(clients: &[Client]) {
    wait_peers(
        clients,
        Duration::from_secs(10),
        "nodes did not form a full mesh",
        || async {
            for c in clients {
                let expect: BTreeSet<SocketAddr> = clients
                    .iter()
                    .map(|o| o.udp_addr())
                    .filter(|a| *a != c.udp_addr())
                    .collect();
                if peer_set(c).await != expect {
                    return false;
                }
            }
            true
        },
    )
    .await;
}

async fn search_all(c: &Client, text: &str) -> BTreeSet<(SocketAddr, String)> {
    let mut s = c.search(text).await.unwrap();
    let mut out = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Ok(Some(hit)) = tokio::time::timeout_at(deadline.into(), s.next()).await {
        for f in hit.files {
            out.insert((hit.peer.udp, f.name));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_ports_on_distinct_loopback_addresses() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    share_with(dirs[0].path(), &[("Cloud - Cloud models.png", b"zero")]);
    share_with(
        dirs[1].path(),
        &[("music/Despacito.MP3", b"one"), ("notes.txt", b"x")],
    );
    share_with(dirs[2].path(), &[("deep/er/cloudy.jpg", b"two")]);
    let ips: Vec<Ipv4Addr> = (2..5).map(|i| Ipv4Addr::new(127, 0, 1, i)).collect();
    let mut nodes = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let mut cfg = config(*ip, 20000, dirs[i].path());
        if i > 0 {
            // Each joins through the previous one: classic addresses, IP only.
            cfg.connect = vec![PeerAddr::classic(ips[i - 1].into())];
        }
        nodes.push(Node::start(cfg).await.unwrap());
    }
    let clients: Vec<Client> = nodes.iter().map(|n| n.client()).collect();
    wait_full_mesh(&clients).await;

    // Partial, differently-cased text finds files in subfolders, with '/' paths.
    let hits = search_all(&clients[0], "CLOUD").await;
    let names: BTreeSet<&str> = hits.iter().map(|h| h.1.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["deep/er/cloudy.jpg"]),
        "own files are not hits"
    );
    let hits = search_all(&clients[2], "despa").await;
    assert_eq!(
        hits,
        BTreeSet::from([(
            SocketAddr::new(ips[1].into(), 20000),
            "music/Despacito.MP3".to_string()
        )])
    );
    let hits = search_all(&clients[1], "o").await;
    assert_eq!(hits.len(), 2, "{hits:?}");

    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_ports_on_one_address_and_a_killed_peer_leaves() {
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    for (i, d) in dirs.iter().enumerate() {
        share_with(d.path(), &[(&format!("file-{i}.bin"), b"data")]);
    }
    let lo = Ipv4Addr::LOCALHOST;
    let first = Node::start(config(lo, 0, dirs[0].path())).await.unwrap();
    let bootstrap: PeerAddr = first.client().udp_addr().to_string().parse().unwrap();
    let mut nodes = vec![first];
    for d in &dirs[1..] {
        let mut cfg = config(lo, 0, d.path());
        cfg.connect = vec![bootstrap];
        nodes.push(Node::start(cfg).await.unwrap());
    }
    let clients: Vec<Client> = nodes.iter().map(|n| n.client()).collect();
    wait_full_mesh(&clients).await;
    for c in &clients {
        for p in c.peers().await.unwrap() {
            assert!(p.rutella, "rutella peers announce their ports");
            let owner = clients.iter().find(|o| o.udp_addr() == p.udp).unwrap();
            assert_eq!(p.tcp(), owner.tcp_addr(), "TCP port learnt from the peer");
        }
    }
    let hits = search_all(&clients[3], "FILE-").await;
    assert_eq!(hits.len(), 3);

    // Kill one: after one ping round (200 ms + 100 ms) the others drop it.
    let dead = nodes.remove(1);
    let dead_addr = dead.client().udp_addr();
    dead.shutdown().await;
    let clients: Vec<Client> = nodes.iter().map(|n| n.client()).collect();
    wait_peers(
        &clients,
        Duration::from_secs(10),
        "killed peer still listed",
        || async {
            for c in &clients {
                if peer_set(c).await.contains(&dead_addr) {
                    return false;
                }
            }
            true
        },
    )
    .await;
    wait_full_mesh(&clients).await;
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_between_nodes_is_byte_identical() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    share_with(a.path(), &[("sub/big.bin", &data)]);
    let lo = Ipv4Addr::LOCALHOST;
    let na = Node::start(config(lo, 0, a.path())).await.unwrap();
    let mut cfg = config(lo, 0, b.path());
    cfg.connect = vec![na.client().udp_addr().to_string().parse().unwrap()];
    let nb = Node::start(cfg).await.unwrap();
    let client = nb.client();
    let hits = search_all(&client, "BIG").await;
    let (peer, name) = hits.into_iter().next().expect("a hit");
    assert_eq!(peer, na.client().udp_addr());
    let report = client
        .download(na.client().tcp_addr(), &name)
        .wait()
        .await
        .unwrap();
    assert_eq!(report.path, b.path().join("downloads").join("big.bin"));
    assert_eq!(std::fs::read(&report.path).unwrap(), data);
    // The finished download is now shared by b, but never the .part.
    assert!(client
        .library()
        .search("big", 10)
        .iter()
        .all(|f| !f.name.ends_with(".part")));
    na.shutdown().await;
    nb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_is_named_in_the_error() {
    let d = tempfile::tempdir().unwrap();
    let first = Node::start(config(Ipv4Addr::LOCALHOST, 0, d.path()))
        .await
        .unwrap();
    let mut cfg = config(Ipv4Addr::LOCALHOST, 0, d.path());
    cfg.udp_port = first.client().udp_addr().port();
    let err = Node::start(cfg.clone()).await.err().expect("port taken");
    let msg = err.to_string();
    assert!(
        msg.contains(&cfg.udp_port.to_string()) && msg.contains("--udp-port"),
        "{msg}"
    );
    cfg.port_fallback = true;
    let second = Node::start(cfg.clone()).await.unwrap();
    assert_ne!(second.client().udp_addr().port(), cfg.udp_port);
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_answers_are_split_and_garbage_is_dropped() {
    const CAP: usize = 16;
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..400)
        .map(|i| format!("a rather long folder name/track number {i:03} of the album.ogg"))
        .collect();
    for n in &names {
        share_with(a.path(), &[(n.as_str(), b"x")]);
    }
    let lo = Ipv4Addr::LOCALHOST;
    // What is checked is who becomes a peer, not how fast a silent one is
    // dropped: pong timeouts long enough that a node starved of CPU by a
    // loaded machine is not dropped for being slow.
    let patient = |share: &Path| {
        let mut cfg = config(lo, 0, share);
        cfg.overlay.ping_interval = Duration::from_secs(3);
        cfg.overlay.pong_timeout = Duration::from_secs(2);
        cfg
    };
    let mut cfg_a = patient(a.path());
    cfg_a.overlay.max_peers = CAP;
    let na = Node::start(cfg_a).await.unwrap();
    let target = na.client().udp_addr();

    // Hostile datagrams: not JSON, wrong types, oversized, unknown commands,
    // and classic pongs naming many made-up peers (on loopback addresses
    // where nothing listens).
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let big = format!(
        r#"{{"Command": 3, "IP": "127.0.0.1", "Contents": "{}"}}"#,
        "a".repeat(60_000)
    );
    let mut junk: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\x00\xff garbage".to_vec(),
        b"{\"Command\": 1}".to_vec(),
        b"{\"Command\": \"1\", \"IP\": \"1.2.3.4\", \"TTL\": 1}".to_vec(),
        b"{\"Command\": 4, \"IP\": \"1.2.3.4\", \"Contents\": [1, 2]}".to_vec(),
        b"{\"Command\": 1, \"IP\": \"127.0.0.1\", \"UdpPort\": 0, \"TTL\": 99999999999}".to_vec(),
        big.into_bytes(),
        vec![b'['; 8000],
    ];
    for i in 0..2000u32 {
        junk.push(
            format!(
                r#"{{"Command": 2, "IP": "127.77.{}.{}"}}"#,
                i >> 8 & 255,
                i & 255
            )
            .into_bytes(),
        );
    }
    for j in &junk {
        let _ = sock.send_to(j, target).await;
    }

    // Then more real peers than the cap, which the node pings and which
    // answer. Each answers the ping before it probes the node in turn, so
    // once every one of them has the node as a peer, the node has decided
    // on each answer (and read the junk, sent earlier).
    let mut others = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..CAP + 4 {
        let d = tempfile::tempdir().unwrap();
        others.push(Node::start(patient(d.path())).await.unwrap());
        dirs.push(d);
    }
    let real: BTreeSet<SocketAddr> = others.iter().map(|n| n.client().udp_addr()).collect();
    for a in &real {
        na.client()
            .connect(a.to_string().parse().unwrap())
            .await
            .unwrap();
    }
    let other_clients: Vec<Client> = others.iter().map(|n| n.client()).collect();
    wait_peers(
        &other_clients,
        Duration::from_secs(10),
        "a real peer never got an answer",
        || async {
            for c in &other_clients {
                if !peer_set(c).await.contains(&target) {
                    return false;
                }
            }
            true
        },
    )
    .await;
    let known = peer_set(&na.client()).await;
    // The cap is reached, and not passed.
    assert_eq!(known.len(), CAP, "peers: {known:?}");
    // No address a pong named became a peer. The junk's sender may: it
    // sent classic pongs from an address the node had just pinged (its
    // ping asked for that probe), which is all a classic peer can show.
    let junk_sender = sock.local_addr().unwrap();
    let mut allowed = real.clone();
    allowed.insert(junk_sender);
    assert!(known.is_subset(&allowed), "peers: {known:?}");
    assert!(
        known.iter().filter(|a| real.contains(a)).count() >= CAP - 1,
        "peers: {known:?}"
    );
    for n in others {
        n.shutdown().await;
    }
    // The silent peers are dropped, which makes room for the next one.
    let nac = na.client();
    wait_peers(
        std::slice::from_ref(&nac),
        Duration::from_secs(20),
        "silent peers were not dropped",
        || async { peer_set(&nac).await.is_empty() },
    )
    .await;

    // The node still works: a search from another node gets all 400 names,
    // which need several datagrams.
    let mut cfg = patient(b.path());
    cfg.connect = vec![target.to_string().parse().unwrap()];
    cfg.overlay.max_peers = 16;
    let nb = Node::start(cfg).await.unwrap();
    let nbc = nb.client();
    wait_peers(
        std::slice::from_ref(&nbc),
        Duration::from_secs(10),
        "the searching node did not join",
        || async { peer_set(&nbc).await.contains(&target) },
    )
    .await;
    let mut stream = nb.client().search("TRACK NUMBER").await.unwrap();
    let mut got = BTreeSet::new();
    let mut parts = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Ok(Some(hit)) = tokio::time::timeout_at(deadline.into(), stream.next()).await {
        if hit.peer.udp == target {
            parts += 1;
            got.extend(hit.files.into_iter().map(|f| f.name));
        }
    }
    assert!(parts > 1, "answer split over several datagrams");
    assert_eq!(got, names.into_iter().collect::<BTreeSet<_>>());
    na.shutdown().await;
    nb.shutdown().await;
}

/// The overlay's timers follow tokio's clock: under a paused clock, a peer
/// that stops answering is dropped after one ping round of a minute, in
/// well under a second of real time. Real sockets on loopback work under
/// a paused clock because tokio polls the sockets before it moves the
/// paused clock forward, and a loopback datagram is queued at the receiver
/// before `send_to` returns.
#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_dropped_after_one_ping_round_on_the_paused_clock() {
    let real_start = Instant::now();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let lo = Ipv4Addr::LOCALHOST;
    let slow = |d: &Path| {
        let mut cfg = config(lo, 0, d);
        cfg.overlay.ping_interval = Duration::from_secs(60);
        cfg.overlay.pong_timeout = Duration::from_secs(10);
        cfg
    };
    let a = Node::start(slow(dirs[0].path())).await.unwrap();
    let mut cfg = slow(dirs[1].path());
    cfg.connect = vec![a.client().udp_addr().to_string().parse().unwrap()];
    let b = Node::start(cfg).await.unwrap();
    let (ca, cb) = (a.client(), b.client());
    wait_peers(
        &[ca.clone(), cb.clone()],
        Duration::from_secs(2),
        "the two nodes did not meet",
        || async {
            peer_set(&ca).await.contains(&cb.udp_addr())
                && peer_set(&cb).await.contains(&ca.udp_addr())
        },
    )
    .await;
    let mut events = ca.subscribe();
    let b_addr = cb.udp_addr();
    b.shutdown().await;
    let silenced = tokio::time::Instant::now();

    // Before the round's pong timeout nothing is dropped.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        peer_set(&ca).await.contains(&b_addr),
        "dropped before its round"
    );

    // One round (60 s) and its pong timeout (10 s), with room to spare.
    let removed = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match events.recv().await {
                Ok(rutella_node::NodeEvent::PeerRemoved(p)) if p.udp == b_addr => return,
                Ok(_) => {}
                Err(e) => panic!("events ended: {e}"),
            }
        }
    })
    .await;
    assert!(
        removed.is_ok(),
        "the silent peer is still listed after 90 s"
    );
    let virtual_wait = silenced.elapsed();
    assert!(
        virtual_wait >= Duration::from_secs(60) && virtual_wait <= Duration::from_secs(90),
        "dropped after {virtual_wait:?} of paused time"
    );
    assert!(!peer_set(&ca).await.contains(&b_addr));
    let real = real_start.elapsed();
    assert!(
        real < Duration::from_secs(5),
        "took {real:?} of real time: the timers did not follow the paused clock"
    );
    a.shutdown().await;
}
