//! Content hashes between real nodes (real sockets on 127.0.0.1, ports the
//! system picks): hits carry hashes, downloads by hash from several peers
//! at once survive a dead peer and a lying one, and the library follows
//! changes on disk while the node runs.

mod common;
use common::{pattern, wait_peers};
use rutella_node::{Client, Node, NodeConfig, PeerAddr};
use rutella_transfer::{Fault, SourceOutcome};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

fn config(share: &Path) -> NodeConfig {
    let mut cfg = NodeConfig {
        shares: vec![share.to_path_buf()],
        bind: Ipv4Addr::LOCALHOST.into(),
        udp_port: 0,
        tcp_port: 0,
        ..NodeConfig::default()
    };
    cfg.overlay.ping_interval = Duration::from_millis(200);
    cfg.overlay.pong_timeout = Duration::from_millis(100);
    cfg.overlay.search_timeout = Duration::from_millis(1500);
    cfg
}

fn join(cfg: &mut NodeConfig, to: &Client) {
    cfg.connect = vec![to.udp_addr().to_string().parse::<PeerAddr>().unwrap()];
}

/// Searches until a hit for `name` carries a hash (hashing runs in the
/// background and announces nothing, so the search is repeated).
async fn hashed_hit(c: &Client, text: &str) -> Option<(SocketAddr, String, [u8; 32], u64)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let mut s = c.search(text).await.unwrap();
        while let Some(hit) = s.next().await {
            for f in hit.files {
                if let (Some(h), Some(size)) = (f.hash, f.size) {
                    return Some((hit.peer.tcp(), f.name, h, size));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sources_one_killed_one_lying() {
    let data = pattern(6 << 20, 11);
    let want = blake3::hash(&data);
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    // The same content under three different names.
    for (i, d) in dirs[..3].iter().enumerate() {
        std::fs::write(d.path().join(format!("copy {i} of the video.mkv")), &data).unwrap();
    }
    // Both honest sources upload at 2 MiB/s, so the download takes long
    // enough for one of them to die in the middle of it.
    let mut cfg = config(dirs[0].path());
    cfg.upload_rate_limit = Some(2 << 20);
    let good = Node::start(cfg).await.unwrap();
    let mut cfg = config(dirs[1].path());
    join(&mut cfg, &good.client());
    cfg.upload_rate_limit = Some(2 << 20);
    // Its uploads are cut at once when it stops, as if it crashed.
    cfg.shutdown_grace = Duration::ZERO;
    let dying = Node::start(cfg).await.unwrap();
    let mut cfg = config(dirs[2].path());
    join(&mut cfg, &good.client());
    cfg.upload_fault = Some(Fault::FlipBits);
    let liar = Node::start(cfg).await.unwrap();
    let mut cfg = config(dirs[3].path());
    join(&mut cfg, &good.client());
    let me = Node::start(cfg).await.unwrap();
    let client = me.client();
    wait_peers(&client, 3).await;

    // Hits carry the hash; the three copies are one file.
    assert!(hashed_hit(&client, "OF THE VIDEO").await.is_some());
    let mut found = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let r = client.find_sources(want.as_bytes()).await.unwrap();
        if r.as_ref().is_some_and(|(_, s)| s.len() == 3) {
            found = r;
            break;
        }
        // Retried: the peers hash in the background and announce nothing.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (file, sources) = found.expect("all three peers offer the hash");
    assert_eq!(file.size, Some(data.len() as u64));

    let handle = client.download_hash(*want.as_bytes(), "video.mkv", file.size, sources);
    // Kill the slow source while the download runs: once a third of the
    // file has arrived (from the two honest sources at the same rate), it
    // has served some. Progress raises no event: the table is polled.
    let dying_tcp = dying.client().tcp_addr();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.downloads().iter().map(|d| d.received).sum::<u64>() < data.len() as u64 / 3 {
        assert!(Instant::now() < deadline, "the download did not progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    dying.shutdown().await;
    let report = tokio::time::timeout(Duration::from_secs(60), handle.wait())
        .await
        .expect("download finished in time")
        .expect("download completed with one good source");
    let got = std::fs::read(&report.path).unwrap();
    assert_eq!(blake3::hash(&got), want);
    let of = |addr: SocketAddr| {
        report
            .sources
            .iter()
            .find(|s| s.peer == addr)
            .unwrap_or_else(|| panic!("{addr} in {:?}", report.sources))
            .clone()
    };
    let liar_report = of(liar.client().tcp_addr());
    assert_eq!(
        liar_report.outcome,
        SourceOutcome::BadData,
        "the bit-flipping peer is identified"
    );
    assert_eq!(liar_report.bytes_verified, 0, "nothing it sent was kept");
    let dead = of(dying_tcp);
    assert!(
        matches!(dead.outcome, SourceOutcome::Failed(_)),
        "{:?}",
        dead
    );
    assert!(
        dead.bytes_verified > 0,
        "it served part before it died: {dead:?}"
    );
    let good_report = of(good.client().tcp_addr());
    assert_eq!(good_report.outcome, SourceOutcome::Served);
    assert_eq!(
        good_report.bytes_verified + dead.bytes_verified,
        data.len() as u64,
        "the good source took over the dead one's ranges"
    );
    for n in [good, liar, me] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_on_disk_are_seen_while_running() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let path = a.path().join("report.txt");
    std::fs::write(&path, b"first version").unwrap();
    let na = Node::start(config(a.path())).await.unwrap();
    let mut cfg = config(b.path());
    join(&mut cfg, &na.client());
    let nb = Node::start(cfg).await.unwrap();
    wait_peers(&nb.client(), 1).await;

    let (_, _, h1, _) = hashed_hit(&nb.client(), "report")
        .await
        .expect("hashed hit");
    assert_eq!(h1, *blake3::hash(b"first version").as_bytes());

    std::fs::write(&path, b"second, longer version").unwrap();
    let want = *blake3::hash(b"second, longer version").as_bytes();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let hit = hashed_hit(&nb.client(), "report").await;
        if hit.as_ref().is_some_and(|h| h.2 == want) {
            break;
        }
        assert!(Instant::now() < deadline, "new hash not offered: {hit:?}");
        // Retried: the library notices the change on its own thread and
        // announces nothing.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    std::fs::remove_file(&path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut s = nb.client().search("report").await.unwrap();
        let mut any = false;
        while let Some(hit) = s.next().await {
            any |= !hit.files.is_empty();
        }
        if !any {
            break;
        }
        assert!(Instant::now() < deadline, "deleted file still offered");
        // Retried: the library notices the change on its own thread and
        // announces nothing.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And it cannot be fetched by name any more either.
    let err = nb
        .client()
        .download(na.client().tcp_addr(), "report.txt")
        .wait()
        .await;
    assert!(err.is_err());
    na.shutdown().await;
    nb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_survive_a_restart() {
    let share = tempfile::tempdir().unwrap();
    for i in 0..5 {
        std::fs::write(share.path().join(format!("f{i}.bin")), pattern(100_000, i)).unwrap();
    }
    let mut cfg = config(share.path());
    cfg.db_path = cfg.default_db_path();
    let db = cfg.db_path.clone().unwrap();
    assert!(db.starts_with(share.path().join(".rutella")));
    let node = Node::start(cfg.clone()).await.unwrap();
    let lib = node.client().library().clone();
    assert!(
        tokio::task::spawn_blocking(move || lib.wait_idle(Duration::from_secs(10)))
            .await
            .unwrap()
    );
    assert_eq!(node.client().library().stats().files_hashed, 5);
    node.shutdown().await;
    assert!(db.exists());

    let node = Node::start(cfg).await.unwrap();
    let lib = node.client().library().clone();
    assert!(
        tokio::task::spawn_blocking(move || lib.wait_idle(Duration::from_secs(10)))
            .await
            .unwrap()
    );
    assert_eq!(
        node.client().library().stats().files_hashed,
        0,
        "nothing hashed again"
    );
    let files = node.client().library().search("f", 10);
    assert_eq!(
        files.len(),
        5,
        "the index folder itself is not shared: {files:?}"
    );
    assert!(files.iter().all(|f| f.hash.is_some()));
    node.shutdown().await;
}
