//! A node as a leaf of the Gnutella 0.6 network, against the test
//! ultrapeer and servent of `rutella_gnutella::testkit`, on loopback: the
//! handshake with deflate, the QRP table of the library, a query routed to
//! the node answered from the library, a search that returns Gnutella hits
//! in the node's search stream, and Bye at shutdown.

use rutella_gnutella::huge::Urn;
use rutella_gnutella::testkit::{
    ServedFile, TestFile, TestServent, TestUltrapeer, UltrapeerConfig,
};
use rutella_node::{GnutellaSettings, Node, NodeConfig};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

/// Every wait here is bounded by this.
const LIMIT: Duration = Duration::from_secs(10);
const IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

fn sha1(data: &[u8]) -> [u8; 20] {
    sha1_smol::Sha1::from(data).digest().bytes()
}

fn settings(up: std::net::SocketAddr) -> GnutellaSettings {
    let mut s = GnutellaSettings {
        connect: vec![up],
        tick: Duration::from_millis(20),
        retry: Duration::from_millis(200),
        ..GnutellaSettings::default()
    };
    s.leaf.handshake_timeout = Duration::from_secs(5);
    s
}

fn config(share: &Path, gnutella: Option<GnutellaSettings>) -> NodeConfig {
    let mut cfg = NodeConfig {
        shares: vec![share.to_path_buf()],
        bind: IP.into(),
        udp_port: 0,
        tcp_port: 0,
        gnutella,
        ..NodeConfig::default()
    };
    cfg.overlay.search_timeout = Duration::from_secs(3);
    cfg
}

struct World {
    _dir: tempfile::TempDir,
    share: std::path::PathBuf,
    song: Vec<u8>,
    up: TestUltrapeer,
    _servent: TestServent,
    servent_sha1: [u8; 20],
    servent_addr: std::net::SocketAddrV4,
}

async fn world(require_deflate: bool) -> World {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let song: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(share.join("The Beatles - Let It Be.mp3"), &song).unwrap();
    std::fs::write(share.join("notes.txt"), b"just notes").unwrap();
    let remote: Vec<u8> = (0..70_000u32).map(|i| (i * 13 % 253) as u8).collect();
    let remote_path = dir.path().join("free song.ogg");
    std::fs::write(&remote_path, &remote).unwrap();
    let servent_sha1 = sha1(&remote);
    let servent = TestServent::start(vec![ServedFile {
        index: 3,
        name: "free song.ogg".into(),
        path: remote_path,
        size: remote.len() as u64,
        sha1: servent_sha1,
    }])
    .await
    .unwrap();
    let up = TestUltrapeer::start(UltrapeerConfig {
        require_deflate,
        files: vec![TestFile {
            name: "free song.ogg".into(),
            size: remote.len() as u64,
            sha1: Some(servent_sha1),
            index: 3,
        }],
        servent: servent.addr(),
        ..UltrapeerConfig::default()
    })
    .await
    .unwrap();
    World {
        _dir: dir,
        share,
        song,
        servent_addr: servent.addr(),
        up,
        _servent: servent,
        servent_sha1,
    }
}

#[tokio::test]
async fn a_node_is_a_gnutella_leaf_that_answers_and_finds() {
    let w = world(true).await;
    let node = Node::start(config(&w.share, Some(settings(w.up.addr()))))
        .await
        .unwrap();
    let client = node.client();

    // The handshake: a leaf that offers and uses deflate.
    let leaves = w.up.wait_leaves(1, LIMIT).await.expect("the node joins");
    let leaf = &leaves[0];
    assert_eq!(leaf.hello.header("X-Ultrapeer"), Some("False"));
    assert!(leaf.hello.header_has_token("Accept-Encoding", "deflate"));
    assert!(leaf.compresses && leaf.compressed, "deflate both ways");
    assert_eq!(
        leaf.hello.header("Listen-IP"),
        Some(format!("127.0.0.1:{}", client.tcp_addr().port()).as_str())
    );
    let mut links = client.gnutella_links().expect("gnutella is on");
    tokio::time::timeout(LIMIT, links.wait_for(|n| *n == 1))
        .await
        .unwrap()
        .unwrap();

    // The QRP table holds the library's words, and nothing else.
    let table = w.up.wait_table(1, LIMIT).await.expect("a complete table");
    assert!(table.matches_query("beatles"));
    assert!(table.matches_query("let it be"));
    assert!(table.matches_query("notes"));
    assert!(!table.matches_query("zeppelin"));

    // A query routed to the node is answered from the library, with
    // urn:sha1 once the file is hashed.
    let lib = client.library().clone();
    assert!(tokio::task::spawn_blocking(move || lib.wait_idle(LIMIT))
        .await
        .unwrap());
    let (sent, hits) = w.up.route_query("beatles let", vec![], 1, LIMIT).await;
    assert_eq!(sent, 1, "routed: the table matches");
    assert_eq!(hits.len(), 1, "{hits:?}");
    let h = &hits[0];
    assert_eq!((h.ip, h.port), (IP, client.tcp_addr().port()));
    assert!(!h.needs_push());
    assert_eq!(h.results.len(), 1);
    assert_eq!(h.results[0].name, b"The Beatles - Let It Be.mp3");
    assert_eq!(h.results[0].size, w.song.len() as u64);
    // With the root of its Tiger tree, computed with the SHA-1.
    assert_eq!(
        h.results[0].ext.urns,
        vec![
            Urn::Sha1(sha1(&w.song)),
            Urn::TreeTiger(rutella_gnutella::tiger::root(&w.song))
        ]
    );
    let (sent, _) =
        w.up.route_query("zeppelin", vec![], 1, Duration::ZERO)
            .await;
    assert_eq!(sent, 0, "not routed where the table says no");

    // A search goes out through the ultrapeer; its hit comes back in the
    // search stream, tagged with its network.
    let mut stream = client.search("free song").await.unwrap();
    let hit = tokio::time::timeout(LIMIT, stream.next())
        .await
        .unwrap()
        .expect("a Gnutella hit");
    assert_eq!(hit.network(), "gnutella");
    assert_eq!(hit.files.len(), 1);
    assert_eq!(hit.files[0].name, "free song.ogg");
    assert_eq!(hit.files[0].size, Some(70_000));
    let g = hit.gnutella.as_ref().unwrap();
    assert_eq!(g.servent, std::net::SocketAddr::V4(w.servent_addr));
    assert_eq!(g.files[0].index, 3);
    assert_eq!(g.files[0].sha1, Some(w.servent_sha1));
    assert_eq!(g.vendor, "TEST");
    assert!(w.up.queries().iter().any(|q| q == "free song"));
    drop(stream);

    // Shutting down says Bye 200.
    node.shutdown().await;
    tokio::time::timeout(LIMIT, async {
        while w.up.byes().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("a Bye");
    assert_eq!(w.up.byes()[0].0, 200);
}

#[tokio::test]
async fn a_node_without_gnutella_never_connects() {
    let w = world(true).await;
    let node = Node::start(config(&w.share, None)).await.unwrap();
    assert!(node.client().gnutella_links().is_none());
    assert!(w
        .up
        .wait_leaves(1, Duration::from_millis(300))
        .await
        .is_none());
    node.shutdown().await;
}

/// A Gnutella servent (the crate's download client) fetches a shared file
/// from the node's TCP port over HTTP: by `urn:sha1` (N2R), and by the
/// index and name of the node's hit, resuming a partial file with `Range`.
#[tokio::test]
async fn gnutella_servents_download_from_the_node_over_http() {
    use rutella_gnutella::download::{download, Download, DownloadConfig};
    use rutella_gnutella::http::Target;
    let w = world(true).await;
    let node = Node::start(config(&w.share, Some(settings(w.up.addr()))))
        .await
        .unwrap();
    let client = node.client();
    let lib = client.library().clone();
    assert!(tokio::task::spawn_blocking(move || lib.wait_idle(LIMIT))
        .await
        .unwrap());
    w.up.wait_table(1, LIMIT).await.expect("a complete table");
    let (_, hits) = w.up.route_query("beatles", vec![], 1, LIMIT).await;
    let r = &hits.first().expect("a hit").results[0];
    let song_sha1 = sha1(&w.song);
    let addr = client.tcp_addr();
    let out = tempfile::tempdir().unwrap();
    let cfg = DownloadConfig::default();

    // By SHA-1.
    let d = Download {
        addr,
        target: Target::Sha1(song_sha1),
        sha1: None,
        size: Some(r.size),
        tth: None,
    };
    let (part, dest) = (out.path().join("a.part"), out.path().join("a.mp3"));
    let got = download(&d, &part, &dest, &cfg)
        .await
        .expect("N2R download");
    assert_eq!(got.sha1, song_sha1);
    assert_eq!(std::fs::read(&dest).unwrap(), w.song);

    // By index and name, resuming from half the file.
    let d = Download {
        addr,
        target: Target::Index {
            index: r.index,
            name: String::from_utf8(r.name.clone()).unwrap(),
        },
        sha1: Some(song_sha1),
        size: Some(r.size),
        tth: None,
    };
    let (part, dest) = (out.path().join("b.part"), out.path().join("b.mp3"));
    std::fs::write(&part, &w.song[..w.song.len() / 2]).unwrap();
    let got = download(&d, &part, &dest, &cfg)
        .await
        .expect("/get/ download");
    assert_eq!(got.resumed_from, (w.song.len() / 2) as u64);
    assert_eq!(got.fetched, (w.song.len() - w.song.len() / 2) as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), w.song);

    // A wrong index with the right name is not served.
    let d = Download {
        addr,
        target: Target::Index {
            index: r.index.wrapping_add(1),
            name: String::from_utf8(r.name.clone()).unwrap(),
        },
        sha1: Some(song_sha1),
        size: Some(r.size),
        tth: None,
    };
    let (part, dest) = (out.path().join("c.part"), out.path().join("c.mp3"));
    assert!(download(&d, &part, &dest, &cfg).await.is_err());
    assert!(!dest.exists());
    node.shutdown().await;
}

/// `get` of a Gnutella hit: the file comes over HTTP from the servent the
/// hit names, by `urn:sha1`, into the downloads folder, resuming a partial
/// file, checked against the SHA-1.
#[tokio::test]
async fn a_gnutella_hit_is_downloaded_over_http_and_resumed() {
    let w = world(true).await;
    let downloads = tempfile::tempdir().unwrap();
    let mut cfg = config(&w.share, Some(settings(w.up.addr())));
    cfg.downloads = Some(downloads.path().to_path_buf());
    let node = Node::start(cfg).await.unwrap();
    let client = node.client();
    let mut stream = client.search("free song").await.unwrap();
    let hit = tokio::time::timeout(LIMIT, stream.next())
        .await
        .unwrap()
        .expect("a Gnutella hit");
    let g = hit.gnutella.clone().unwrap();
    let remote = std::fs::read(w._dir.path().join("free song.ogg")).unwrap();
    // Half of it is here already.
    std::fs::write(
        downloads.path().join("free song.ogg.part"),
        &remote[..remote.len() / 3],
    )
    .unwrap();
    let path = client
        .get_gnutella(&g, &hit.files[0].name, g.files[0], hit.files[0].size)
        .await
        .expect("downloaded");
    assert_eq!(path, downloads.path().join("free song.ogg"));
    assert_eq!(std::fs::read(&path).unwrap(), remote);
    assert!(!downloads.path().join("free song.ogg.part").exists());
    // Again: refused, the file is here.
    assert!(client
        .get_gnutella(&g, &hit.files[0].name, g.files[0], hit.files[0].size)
        .await
        .is_err());
    drop(stream);
    node.shutdown().await;
}

/// A file the node downloaded from a Gnutella servent, and that it also
/// shares: its HTTP replies name that servent in `X-Alt` (it delivered
/// data whose SHA-1 checked out), name the file's tree in `X-Thex-URI`,
/// and N2X answers a THEX whose root is the file's Tiger root.
#[tokio::test]
async fn replies_name_the_servents_that_served_us_and_the_tree() {
    use rutella_gnutella::http::{self, Headers, Method, Request, Target};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = world(true).await;
    let remote = std::fs::read(w._dir.path().join("free song.ogg")).unwrap();
    // The same bytes are shared here under another name.
    std::fs::write(w.share.join("a copy.ogg"), &remote).unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let mut cfg = config(&w.share, Some(settings(w.up.addr())));
    cfg.downloads = Some(downloads.path().to_path_buf());
    let node = Node::start(cfg).await.unwrap();
    let client = node.client();
    let lib = client.library().clone();
    assert!(tokio::task::spawn_blocking(move || lib.wait_idle(LIMIT))
        .await
        .unwrap());
    let tcp = client.tcp_addr();
    let ask = |method: Method, target: Target| async move {
        let mut s = tokio::net::TcpStream::connect(tcp).await.unwrap();
        let req = Request::new(method, target, vec![("Connection".into(), "close".into())]);
        s.write_all(&req.encode()).await.unwrap();
        let mut all = Vec::new();
        tokio::time::timeout(LIMIT, s.read_to_end(&mut all))
            .await
            .unwrap()
            .unwrap();
        let (resp, used) = http::parse_response(&all).unwrap().unwrap();
        (resp, all[used..].to_vec())
    };
    let (before, _) = ask(Method::Head, Target::Sha1(w.servent_sha1)).await;
    assert_eq!(before.code, 200);
    assert!(before.alt_locs().is_empty(), "no source known yet");
    // Download it from the servent.
    let mut stream = client.search("free song").await.unwrap();
    let hit = tokio::time::timeout(LIMIT, stream.next())
        .await
        .unwrap()
        .expect("a Gnutella hit");
    drop(stream);
    let g = hit.gnutella.clone().unwrap();
    client
        .get_gnutella(&g, &hit.files[0].name, g.files[0], hit.files[0].size)
        .await
        .expect("downloaded");
    let (after, _) = ask(Method::Head, Target::Sha1(w.servent_sha1)).await;
    assert_eq!(
        after.alt_locs(),
        vec![w.servent_addr],
        "X-Alt names the servent"
    );
    let root = rutella_gnutella::tiger::root(&remote);
    let t = after.thex_uri().expect("X-Thex-URI");
    assert_eq!((t.sha1, t.root), (w.servent_sha1, root));
    let (resp, body) = ask(Method::Get, Target::Thex(w.servent_sha1)).await;
    assert_eq!(resp.code, 200);
    let tree = rutella_gnutella::thex::parse_thex(&body, remote.len() as u64, &root)
        .expect("our THEX parses");
    assert_eq!(tree.root(), root);
    node.shutdown().await;
}
