//! Tiger trees in Gnutella downloads and uploads, on loopback: a servent
//! that serves one corrupt range under a good tree is caught at that
//! range (one source and several), a THEX whose root does not match is
//! refused and the SHA-1 alone checks the file, a root learned from
//! `X-Thex-URI` is used, and our uploader's N2X answer is a THEX our own
//! parser accepts with the root of the file.

use std::net::{SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rutella_gnutella::download::{download, Download, DownloadConfig, DownloadError, TigerCheck};
use rutella_gnutella::http::{self, Headers, Method, Request, Target};
use rutella_gnutella::multi::{multi_download, MultiConfig};
use rutella_gnutella::testkit::{ServedFile, TestServent};
use rutella_gnutella::thex;
use rutella_gnutella::tiger::{self, HashTree};
use rutella_gnutella::upload::{Library, SharedFile, UploadConfig, Uploader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);
/// 600 KiB: a tree of depth 3 has pieces of 128 KiB (5 of them).
const SIZE: usize = 600 * 1024;
const DEPTH: u32 = 3;

fn sha1(b: &[u8]) -> [u8; 20] {
    sha1_smol::Sha1::from(b).digest().bytes()
}

fn content() -> Vec<u8> {
    (0..SIZE as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn quick() -> DownloadConfig {
    DownloadConfig {
        connect_timeout: Duration::from_secs(2),
        header_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        thex_timeout: Duration::from_secs(2),
        ..DownloadConfig::default()
    }
}

fn served(path: &Path, data: &[u8], hash: [u8; 20]) -> ServedFile {
    std::fs::write(path, data).unwrap();
    ServedFile {
        index: 1,
        name: "f.bin".into(),
        path: path.to_path_buf(),
        size: data.len() as u64,
        sha1: hash,
    }
}

/// `data` with one byte changed in piece `piece` of the tree.
fn corrupt(data: &[u8], tree: &HashTree, piece: u64) -> Vec<u8> {
    let mut bad = data.to_vec();
    let at = (piece * tree.granularity() + 1000) as usize;
    bad[at] ^= 0x55;
    bad
}

#[tokio::test]
async fn one_source_stops_at_the_corrupt_range_and_another_completes() {
    let dir = tempfile::tempdir().unwrap();
    let good = content();
    let hash = sha1(&good);
    let tree = HashTree::of_bytes(&good, DEPTH);
    let g = tree.granularity();
    assert_eq!(g, 128 * 1024);
    let bad = corrupt(&good, &tree, 2);
    let liar = TestServent::start_with(
        vec![served(&dir.path().join("bad"), &bad, hash)],
        vec![],
        vec![(hash, tree.clone())],
    )
    .await
    .unwrap();
    let honest = TestServent::start_with(
        vec![served(&dir.path().join("good"), &good, hash)],
        vec![],
        vec![(hash, tree.clone())],
    )
    .await
    .unwrap();
    let (part, dest) = (dir.path().join("out.part"), dir.path().join("out"));
    let d = |addr: SocketAddrV4| Download {
        addr: SocketAddr::V4(addr),
        target: Target::Sha1(hash),
        sha1: Some(hash),
        size: Some(SIZE as u64),
        tth: Some(tree.root()),
    };
    let r = timeout(LIMIT, download(&d(liar.addr()), &part, &dest, &quick()))
        .await
        .unwrap();
    match r {
        Err(DownloadError::CorruptRange { start, end }) => {
            assert_eq!((start, end), (2 * g, 3 * g), "caught at that range");
        }
        other => panic!("the corrupt range is not caught: {other:?}"),
    }
    // Only the pieces that passed are kept, not the rest of the file.
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 2 * g);
    assert!(!dest.exists());
    let got = timeout(LIMIT, download(&d(honest.addr()), &part, &dest, &quick()))
        .await
        .unwrap()
        .expect("completes from the honest servent");
    assert_eq!(got.resumed_from, 2 * g);
    assert_eq!(got.tiger, TigerCheck::Checked { granularity: g });
    assert_eq!(std::fs::read(&dest).unwrap(), good);
}

#[tokio::test]
async fn several_sources_drop_the_one_that_sent_a_corrupt_range() {
    let dir = tempfile::tempdir().unwrap();
    let good = content();
    let hash = sha1(&good);
    let tree = HashTree::of_bytes(&good, DEPTH);
    let g = tree.granularity();
    let honest = TestServent::start_with(
        vec![served(&dir.path().join("good"), &good, hash)],
        vec![],
        vec![(hash, tree.clone())],
    )
    .await
    .unwrap();
    // The liar is the only source given; it names the honest one in
    // X-Alt. Its first range (the first piece) is the corrupt one.
    let liar = TestServent::start_with(
        vec![served(
            &dir.path().join("bad"),
            &corrupt(&good, &tree, 0),
            hash,
        )],
        vec![honest.addr()],
        vec![(hash, tree.clone())],
    )
    .await
    .unwrap();
    let (part, dest) = (dir.path().join("out.part"), dir.path().join("out"));
    let multi = MultiConfig {
        chunk: 8192,
        max_parallel: 1,
        max_sources: 4,
        max_failures: 3,
    };
    let got = timeout(
        LIMIT,
        multi_download(
            vec![SocketAddr::V4(liar.addr())],
            Target::Sha1(hash),
            hash,
            SIZE as u64,
            Some(tree.root()),
            &part,
            &dest,
            &quick(),
            &multi,
            &|_| {},
        ),
    )
    .await
    .unwrap()
    .expect("completes from the other source");
    assert_eq!(std::fs::read(&dest).unwrap(), good);
    assert_eq!(got.tiger, TigerCheck::Checked { granularity: g });
    let of = |a: SocketAddrV4| {
        got.sources
            .iter()
            .find(|s| s.addr == SocketAddr::V4(a))
            .cloned()
            .unwrap_or_else(|| panic!("{a} not a source: {got:?}"))
    };
    let l = of(liar.addr());
    assert!(
        l.dropped
            .as_deref()
            .is_some_and(|r| r.contains("tiger tree")),
        "the liar is dropped for its range, not by the SHA-1 at the end: {got:?}"
    );
    assert_eq!(l.bytes, 0, "nothing it sent was kept");
    assert_eq!(of(honest.addr()).bytes, SIZE as u64);
    // Ranges are cut on the tree's pieces; the corrupt one was fetched
    // twice, nothing else.
    assert_eq!(got.fetched, SIZE as u64 + g);
}

#[tokio::test]
async fn a_thex_of_another_root_is_refused_and_the_sha1_decides() {
    let dir = tempfile::tempdir().unwrap();
    let good = content();
    let hash = sha1(&good);
    let root = tiger::root(&good);
    // A servent whose tree is that of other bytes (and names that root).
    let mut other = good.clone();
    other[5] ^= 1;
    let wrong = HashTree::of_bytes(&other, DEPTH);
    let s = TestServent::start_with(
        vec![served(&dir.path().join("good"), &good, hash)],
        vec![],
        vec![(hash, wrong)],
    )
    .await
    .unwrap();
    let (part, dest) = (dir.path().join("out.part"), dir.path().join("out"));
    let d = Download {
        addr: SocketAddr::V4(s.addr()),
        target: Target::Sha1(hash),
        sha1: Some(hash),
        size: Some(SIZE as u64),
        tth: Some(root),
    };
    let got = timeout(LIMIT, download(&d, &part, &dest, &quick()))
        .await
        .unwrap()
        .expect("the SHA-1 alone checks it");
    assert!(
        matches!(&got.tiger, TigerCheck::Refused(why) if why.contains("root")),
        "{:?}",
        got.tiger
    );
    assert_eq!(std::fs::read(&dest).unwrap(), good);
    std::fs::remove_file(&dest).unwrap();
    let got = timeout(
        LIMIT,
        multi_download(
            vec![SocketAddr::V4(s.addr())],
            Target::Sha1(hash),
            hash,
            SIZE as u64,
            Some(root),
            &part,
            &dest,
            &quick(),
            &MultiConfig::default(),
            &|_| {},
        ),
    )
    .await
    .unwrap()
    .expect("the SHA-1 alone checks it");
    assert!(
        matches!(&got.tiger, TigerCheck::Refused(why) if why.contains("root")),
        "{:?}",
        got.tiger
    );
    assert_eq!(std::fs::read(&dest).unwrap(), good);
}

#[tokio::test]
async fn a_root_from_x_thex_uri_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let good = content();
    let hash = sha1(&good);
    let tree = HashTree::of_bytes(&good, DEPTH);
    let g = tree.granularity();
    let bad = corrupt(&good, &tree, 3);
    let liar = TestServent::start_with(
        vec![served(&dir.path().join("bad"), &bad, hash)],
        vec![],
        vec![(hash, tree.clone())],
    )
    .await
    .unwrap();
    let (part, dest) = (dir.path().join("out.part"), dir.path().join("out"));
    // No root from the hit: the reply's X-Thex-URI names it.
    let d = Download {
        addr: SocketAddr::V4(liar.addr()),
        target: Target::Sha1(hash),
        sha1: Some(hash),
        size: Some(SIZE as u64),
        tth: None,
    };
    let r = timeout(LIMIT, download(&d, &part, &dest, &quick()))
        .await
        .unwrap();
    assert!(
        matches!(r, Err(DownloadError::CorruptRange { start, .. }) if start == 3 * g),
        "{r:?}"
    );
    // Several sources: the root learned from a reply checks the ranges
    // that arrive after the tree.
    let honest = TestServent::start_with(
        vec![served(&dir.path().join("good"), &good, hash)],
        vec![],
        vec![(hash, tree.clone())],
    )
    .await
    .unwrap();
    let _ = std::fs::remove_file(&part);
    let got = timeout(
        LIMIT,
        multi_download(
            vec![SocketAddr::V4(honest.addr())],
            Target::Sha1(hash),
            hash,
            SIZE as u64,
            None,
            &part,
            &dest,
            &quick(),
            &MultiConfig::default(),
            &|_| {},
        ),
    )
    .await
    .unwrap()
    .expect("downloaded");
    assert_eq!(got.tiger, TigerCheck::Checked { granularity: g });
    assert_eq!(std::fs::read(&dest).unwrap(), good);
}

/// A library of one file whose Tiger root is known (the uploader computes
/// the tree from its bytes).
struct OneFile(SharedFile);

impl Library for OneFile {
    fn by_sha1(&self, sha1: &[u8; 20]) -> Option<SharedFile> {
        (self.0.sha1 == *sha1).then(|| self.0.clone())
    }
    fn by_index(&self, _: u32, _: &str) -> Option<SharedFile> {
        None
    }
}

async fn ask(addr: SocketAddr, method: Method, target: Target) -> (http::Response, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = Request::new(method, target, vec![("Connection".into(), "close".into())]);
    s.write_all(&req.encode()).await.unwrap();
    let mut all = Vec::new();
    timeout(LIMIT, s.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    let (resp, used) = http::parse_response(&all).unwrap().unwrap();
    (resp, all[used..].to_vec())
}

#[tokio::test]
async fn our_uploader_serves_a_thex_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = content();
    let hash = sha1(&data);
    let root = tiger::root(&data);
    let path = dir.path().join("shared");
    std::fs::write(&path, &data).unwrap();
    let lib = OneFile(SharedFile {
        path,
        size: data.len() as u64,
        sha1: hash,
        alt_locs: vec![],
        tth: Some(root),
    });
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(Uploader::new(Arc::new(lib), UploadConfig::default()).run(l));
    // The file's reply names the tree.
    let (resp, _) = ask(addr, Method::Head, Target::Sha1(hash)).await;
    let named = resp.thex_uri().expect("X-Thex-URI on the reply");
    assert_eq!((named.sha1, named.root), (hash, root));
    // N2X: a THEX our parser accepts, of the file's root, at the depth
    // this node serves.
    let (resp, body) = ask(addr, Method::Get, Target::Thex(hash)).await;
    assert_eq!(resp.code, 200);
    assert_eq!(resp.content_length().unwrap(), Some(body.len() as u64));
    let t = thex::parse_thex(&body, data.len() as u64, &root).expect("our THEX parses");
    assert_eq!(t.root(), root);
    assert_eq!(t.depth(), tiger::serve_depth(data.len() as u64));
    assert_eq!(t, HashTree::of_bytes(&data, t.depth()));
    // Unknown file: 404.
    let (resp, _) = ask(addr, Method::Get, Target::Thex([9; 20])).await;
    assert_eq!(resp.code, 404);
}
