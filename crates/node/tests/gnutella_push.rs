//! Gnutella pushes, both ways, and Gnutella downloads in the downloads
//! table, against the test ultrapeer of `rutella_gnutella::testkit` on
//! loopback:
//! - the node downloads from a firewalled servent: it sends a Push through
//!   the ultrapeer, the servent connects back with `GIV`, the file comes
//!   over that connection;
//! - no GIV comes: a clear error naming the servent, within the wait;
//! - a Push naming the node makes it connect out, say `GIV` and serve the
//!   file, within its per-address budget;
//! - Gnutella downloads are rows of the downloads table, and cancel works.

use rutella_gnutella::descriptor::Push;
use rutella_gnutella::download::{
    download_via, Connector, Download, DownloadConfig, DownloadError,
};
use rutella_gnutella::http::Target;
use rutella_gnutella::push::PushConfig;
use rutella_gnutella::testkit::{
    read_giv, FirewalledServent, ServedFile, TestFile, TestUltrapeer, UltrapeerConfig,
};
use rutella_node::{Client, DownloadState, GnutellaSettings, Node, NodeConfig};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Every wait here is bounded by this.
const LIMIT: Duration = Duration::from_secs(10);
const IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const SERVENT_GUID: [u8; 16] = [0x5a; 16];

fn sha1(data: &[u8]) -> [u8; 20] {
    sha1_smol::Sha1::from(data).digest().bytes()
}

fn settings(up: SocketAddr, push: PushConfig) -> GnutellaSettings {
    let mut s = GnutellaSettings {
        connect: vec![up],
        tick: Duration::from_millis(20),
        retry: Duration::from_millis(200),
        push,
        ..GnutellaSettings::default()
    };
    s.leaf.handshake_timeout = Duration::from_secs(5);
    s
}

fn config(share: &Path, downloads: &Path, gnutella: GnutellaSettings) -> NodeConfig {
    let mut cfg = NodeConfig {
        shares: vec![share.to_path_buf()],
        downloads: Some(downloads.to_path_buf()),
        bind: IP.into(),
        udp_port: 0,
        tcp_port: 0,
        gnutella: Some(gnutella),
        ..NodeConfig::default()
    };
    cfg.overlay.search_timeout = Duration::from_secs(3);
    cfg
}

/// A port nothing listens on (bound, then closed).
async fn dead_port() -> SocketAddrV4 {
    let l = TcpListener::bind((IP, 0)).await.unwrap();
    match l.local_addr().unwrap() {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => unreachable!(),
    }
}

struct World {
    dir: tempfile::TempDir,
    remote: Vec<u8>,
    up: TestUltrapeer,
    served: ServedFile,
}

/// A test ultrapeer whose hits name a firewalled servent (push flag, an
/// address nothing listens on).
async fn world(push_flag: bool) -> World {
    let dir = tempfile::tempdir().unwrap();
    for d in ["share", "downloads"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    let remote: Vec<u8> = (0..90_000u32).map(|i| (i * 31 % 247) as u8).collect();
    let path = dir.path().join("hidden track.ogg");
    std::fs::write(&path, &remote).unwrap();
    let served = ServedFile {
        index: 11,
        name: "hidden track.ogg".into(),
        path,
        size: remote.len() as u64,
        sha1: sha1(&remote),
    };
    let up = TestUltrapeer::start(UltrapeerConfig {
        files: vec![TestFile {
            name: served.name.clone(),
            size: served.size,
            sha1: Some(served.sha1),
            index: served.index,
        }],
        servent: dead_port().await,
        servent_push: push_flag,
        servent_guid: SERVENT_GUID,
        ..UltrapeerConfig::default()
    })
    .await
    .unwrap();
    World {
        dir,
        remote,
        up,
        served,
    }
}

async fn start(w: &World, push: PushConfig) -> Node {
    let s = settings(w.up.addr(), push);
    let node = Node::start(config(
        &w.dir.path().join("share"),
        &w.dir.path().join("downloads"),
        s,
    ))
    .await
    .unwrap();
    let mut links = node.client().gnutella_links().unwrap();
    tokio::time::timeout(LIMIT, links.wait_for(|n| *n == 1))
        .await
        .unwrap()
        .unwrap();
    node
}

async fn hit(client: &Client, text: &str) -> rutella_node::SearchHit {
    let mut stream = client.search(text).await.unwrap();
    tokio::time::timeout(LIMIT, stream.next())
        .await
        .unwrap()
        .expect("a Gnutella hit")
}

/// The node downloads from a firewalled servent: a Push through the
/// ultrapeer the hit came from, the servent's GIV on the node's TCP port,
/// then HTTP on that connection, resumed and SHA-1 checked.
#[tokio::test]
async fn a_firewalled_servent_is_reached_by_push() {
    let w = world(true).await;
    let fw = FirewalledServent::start(SERVENT_GUID, vec![w.served.clone()], &w.up);
    let node = start(&w, PushConfig::default()).await;
    let client = node.client();
    let h = hit(&client, "hidden track").await;
    let g = h.gnutella.clone().unwrap();
    assert!(g.push, "the hit asks for a push");
    assert_eq!(g.via, Some(w.up.addr()));
    // A third is here already: the push download resumes it.
    let downloads = w.dir.path().join("downloads");
    std::fs::write(
        downloads.join("hidden track.ogg.part"),
        &w.remote[..w.remote.len() / 3],
    )
    .unwrap();
    let path = client
        .get_gnutella(&g, &h.files[0].name, g.files[0], h.files[0].size)
        .await
        .expect("downloaded by push");
    assert_eq!(std::fs::read(&path).unwrap(), w.remote);
    assert_eq!(fw.givs(), 1, "one GIV connection");
    let pushes = w.up.pushes();
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0].servent, SERVENT_GUID);
    assert_eq!(pushes[0].index, 11);
    assert_eq!(
        SocketAddr::from((pushes[0].ip, pushes[0].port)),
        client.tcp_addr(),
        "the push names the node's TCP port"
    );
    // The download is a row of the downloads table.
    let rows = client.downloads();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].network, "gnutella");
    assert_eq!(rows[0].name, "hidden track.ogg");
    assert_eq!(rows[0].state, DownloadState::Done(path.clone()));
    assert_eq!(rows[0].total, Some(w.remote.len() as u64));
    assert_eq!(rows[0].done, w.remote.len() as u64);
    assert_eq!(
        rows[0].received,
        (w.remote.len() - w.remote.len() / 3) as u64
    );
    assert!(rows[0]
        .paths
        .iter()
        .any(|(_, p)| p == &format!("push via {}", w.up.addr())));
    node.shutdown().await;
}

/// A servent that cannot be connected to (no push flag) is pushed to as
/// well; when no GIV comes within the wait, the error names the servent.
#[tokio::test]
async fn no_giv_is_a_clear_error_within_the_wait() {
    let w = world(false).await;
    let node = start(
        &w,
        PushConfig {
            giv_timeout: Duration::from_millis(300),
            ..PushConfig::default()
        },
    )
    .await;
    let client = node.client();
    let h = hit(&client, "hidden track").await;
    let g = h.gnutella.clone().unwrap();
    assert!(!g.push);
    let t = std::time::Instant::now();
    let e = client
        .get_gnutella(&g, &h.files[0].name, g.files[0], h.files[0].size)
        .await
        .expect_err("nobody connects back");
    assert!(t.elapsed() < LIMIT);
    let msg = e.to_string();
    assert!(msg.contains("5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A"), "{msg}");
    assert!(msg.contains("did not connect back"), "{msg}");
    assert_eq!(w.up.pushes().len(), 1, "the direct try failed, then a push");
    let rows = client.downloads();
    assert!(matches!(&rows[0].state, DownloadState::Failed(r) if r.contains("GIV")));
    node.shutdown().await;
}

/// A Gnutella download is a row of the downloads table while it runs, and
/// cancelling it stops it, removes the row and deletes its partial file.
#[tokio::test]
async fn a_running_gnutella_download_is_listed_and_cancelled() {
    let w = world(true).await;
    let node = start(
        &w,
        PushConfig {
            giv_timeout: Duration::from_secs(60),
            ..PushConfig::default()
        },
    )
    .await;
    let client = node.client();
    let h = hit(&client, "hidden track").await;
    let g = h.gnutella.clone().unwrap();
    let part = w.dir.path().join("downloads/hidden track.ogg.part");
    std::fs::write(&part, &w.remote[..1000]).unwrap();
    let handle = client
        .download_gnutella(&g, &h.files[0].name, g.files[0], h.files[0].size)
        .await
        .unwrap();
    // It waits for a GIV that never comes.
    w.up.wait_pushes(1, LIMIT).await.expect("a push");
    let rows = client.downloads();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, handle.id);
    assert_eq!(rows[0].network, "gnutella");
    assert_eq!(rows[0].state, DownloadState::Running);
    assert_eq!(rows[0].sources, vec![g.servent]);
    client.cancel(handle.id).await.unwrap();
    assert!(client.downloads().is_empty(), "row removed");
    assert!(!part.exists(), "partial file deleted");
    assert!(handle.wait().await.is_err());
    node.shutdown().await;
}

/// Connects by waiting for the GIV of the node on a listener of the test.
struct Giv(Option<TcpStream>);

impl Connector for Giv {
    async fn connect(&mut self) -> Result<TcpStream, DownloadError> {
        self.0
            .take()
            .ok_or(DownloadError::Unreachable("one connection only".into()))
    }
}

/// A Push naming the node: it connects to the address in the Push, says
/// `GIV INDEX:GUID/NAME`, and serves the file over HTTP on that
/// connection; Pushes beyond the per-address budget are not answered.
#[tokio::test]
async fn a_push_makes_the_node_connect_back_and_serve() {
    let w = world(false).await;
    let share = w.dir.path().join("share");
    let song: Vec<u8> = (0..60_000u32).map(|i| (i * 17 % 241) as u8).collect();
    std::fs::write(share.join("Pushed Song.mp3"), &song).unwrap();
    for i in 1..4 {
        std::fs::write(share.join(format!("Pushed Other {i}.mp3")), b"other").unwrap();
    }
    let node = start(
        &w,
        PushConfig {
            per_source: 2,
            window: Duration::from_secs(600),
            ..PushConfig::default()
        },
    )
    .await;
    let client = node.client();
    let lib = client.library().clone();
    assert!(tokio::task::spawn_blocking(move || lib.wait_idle(LIMIT))
        .await
        .unwrap());
    w.up.wait_table(1, LIMIT).await.expect("a route table");
    let (_, hits) = w.up.route_query("pushed", vec![], 4, LIMIT).await;
    let hit = hits.first().expect("the node's hit");
    assert_eq!(hit.results.len(), 4);
    let r = hit
        .results
        .iter()
        .find(|r| r.name == b"Pushed Song.mp3")
        .unwrap();
    let l = TcpListener::bind((IP, 0)).await.unwrap();
    let me = match l.local_addr().unwrap() {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => unreachable!(),
    };
    let push = Push {
        servent: hit.servent,
        index: r.index,
        ip: *me.ip(),
        port: me.port(),
        ggep: vec![],
    };
    assert_eq!(w.up.deliver_push(push.clone()).await, 1);
    let (s, _) = tokio::time::timeout(LIMIT, l.accept())
        .await
        .unwrap()
        .unwrap();
    let (giv, s) = read_giv(s, LIMIT).await.expect("a GIV");
    assert_eq!(giv.guid, hit.servent);
    assert_eq!(giv.index, r.index);
    assert_eq!(giv.name, "Pushed Song.mp3");
    let out = tempfile::tempdir().unwrap();
    let (part, dest) = (out.path().join("p.part"), out.path().join("p.mp3"));
    let d = Download {
        addr: SocketAddr::V4(SocketAddrV4::new(hit.ip, hit.port)),
        target: Target::Sha1(sha1(&song)),
        sha1: None,
        size: Some(r.size),
        tth: None,
    };
    let got = download_via(
        &d,
        &part,
        &dest,
        &DownloadConfig::default(),
        &mut Giv(Some(s)),
        &|_| {},
    )
    .await
    .expect("downloaded over the pushed connection");
    assert_eq!(got.size, song.len() as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), song);

    // A flood of Pushes for the same address, for each of the four
    // files: one more is answered (the budget is two per address), the
    // rest are not (without the budget, four would be: the concurrency
    // bound).
    for i in 0..8 {
        w.up.deliver_push(Push {
            index: hit.results[i % 4].index,
            ..push.clone()
        })
        .await;
    }
    let mut accepted = 0;
    while let Ok(Ok((s, _))) = tokio::time::timeout(Duration::from_millis(700), l.accept()).await {
        accepted += 1;
        drop(s);
        assert!(accepted <= 8, "bounded anyway");
    }
    assert_eq!(accepted, 1, "two connect-backs in all for this address");

    // A Push for a file the node does not share is not answered.
    let other = TcpListener::bind((IP, 0)).await.unwrap();
    let port = other.local_addr().unwrap().port();
    let unknown = (0..u32::MAX)
        .find(|i| hit.results.iter().all(|r| r.index != *i))
        .unwrap();
    w.up.deliver_push(Push {
        index: unknown,
        port,
        ..push
    })
    .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), other.accept())
            .await
            .is_err(),
        "no connect-back for an unknown index"
    );
    node.shutdown().await;
}

/// Two ultrapeers whose hits name two servents with the same file (same
/// `urn:sha1`): the download takes ranges from both, and the row lists
/// both sources.
#[tokio::test]
async fn hits_with_the_same_sha1_are_fetched_from_every_servent() {
    let dir = tempfile::tempdir().unwrap();
    for d in ["share", "downloads"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 23 % 239) as u8).collect();
    let path = dir.path().join("twice.bin");
    std::fs::write(&path, &data).unwrap();
    let served = ServedFile {
        index: 4,
        name: "twice.bin".into(),
        path,
        size: data.len() as u64,
        sha1: sha1(&data),
    };
    let mut ups = Vec::new();
    let mut servents = Vec::new();
    for _ in 0..2 {
        let s = rutella_gnutella::testkit::TestServent::start(vec![served.clone()])
            .await
            .unwrap();
        ups.push(
            TestUltrapeer::start(UltrapeerConfig {
                files: vec![TestFile {
                    name: served.name.clone(),
                    size: served.size,
                    sha1: Some(served.sha1),
                    index: served.index,
                }],
                servent: s.addr(),
                ..UltrapeerConfig::default()
            })
            .await
            .unwrap(),
        );
        servents.push(s);
    }
    let mut s = settings(ups[0].addr(), PushConfig::default());
    s.connect.push(ups[1].addr());
    s.multi.chunk = 16 * 1024;
    let node = Node::start(config(
        &dir.path().join("share"),
        &dir.path().join("downloads"),
        s,
    ))
    .await
    .unwrap();
    let client = node.client();
    let mut links = client.gnutella_links().unwrap();
    tokio::time::timeout(LIMIT, links.wait_for(|n| *n == 2))
        .await
        .unwrap()
        .unwrap();
    let mut stream = client.search("twice").await.unwrap();
    let mut hits = Vec::new();
    while hits.len() < 2 {
        hits.push(
            tokio::time::timeout(LIMIT, stream.next())
                .await
                .unwrap()
                .expect("a hit"),
        );
    }
    let h = &hits[0];
    let g = h.gnutella.clone().unwrap();
    let path = client
        .get_gnutella(&g, &h.files[0].name, g.files[0], h.files[0].size)
        .await
        .expect("downloaded");
    assert_eq!(std::fs::read(&path).unwrap(), data);
    let rows = client.downloads();
    let mut srcs = rows[0].sources.clone();
    srcs.sort();
    let mut want: Vec<SocketAddr> = servents.iter().map(|s| SocketAddr::V4(s.addr())).collect();
    want.sort();
    assert_eq!(srcs, want, "both servents are sources");
    node.shutdown().await;
}
