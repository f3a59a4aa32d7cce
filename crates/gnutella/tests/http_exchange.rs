//! HTTP file exchange with Gnutella servents: the download client against
//! the upload responder, and against replies written by hand after the
//! specification and gtk-gnutella's conventions. Loopback only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rutella_gnutella::download::{download, Download, DownloadConfig, DownloadError};
use rutella_gnutella::http::{self, Headers, HttpError, Target};
use rutella_gnutella::upload::{Library, SharedFile, UploadConfig, Uploader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Every wait in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(10);

fn sha1(b: &[u8]) -> [u8; 20] {
    sha1_smol::Sha1::from(b).digest().bytes()
}

fn content(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A directory of its own for each test.
fn scratch(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "rutella-gnuhttp-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[derive(Default)]
struct TestLib {
    by_sha1: HashMap<[u8; 20], SharedFile>,
    by_index: HashMap<(u32, String), SharedFile>,
    lookups: AtomicUsize,
}

impl TestLib {
    /// Shares `data` as `name` at `index`, announcing `sha1` (which a lying
    /// test sets to something else than the content's hash).
    fn share(&mut self, dir: &Path, index: u32, name: &str, data: &[u8], sha1: [u8; 20]) {
        let path = dir.join(format!("shared-{index}"));
        std::fs::write(&path, data).unwrap();
        let f = SharedFile {
            path,
            size: data.len() as u64,
            sha1,
            alt_locs: vec!["127.0.0.9:6346".parse().unwrap()],
            tth: None,
        };
        self.by_sha1.insert(sha1, f.clone());
        self.by_index.insert((index, name.to_string()), f);
    }
}

impl Library for TestLib {
    fn by_sha1(&self, sha1: &[u8; 20]) -> Option<SharedFile> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        self.by_sha1.get(sha1).cloned()
    }
    fn by_index(&self, index: u32, name: &str) -> Option<SharedFile> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        self.by_index.get(&(index, name.to_string())).cloned()
    }
}

async fn start_uploader(lib: Arc<TestLib>, config: UploadConfig) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(Uploader::new(lib, config).run(l));
    addr
}

fn quick_download() -> DownloadConfig {
    DownloadConfig {
        connect_timeout: Duration::from_secs(2),
        header_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        ..DownloadConfig::default()
    }
}

struct Fixture {
    dir: PathBuf,
    addr: SocketAddr,
    data: Vec<u8>,
    hash: [u8; 20],
    lib: Arc<TestLib>,
}

const NAME: &str = "Song é 1.ogg";

async fn fixture(name: &str, config: UploadConfig) -> Fixture {
    let dir = scratch(name);
    let data = content(300_000, 7);
    let hash = sha1(&data);
    let mut lib = TestLib::default();
    lib.share(&dir, 5, NAME, &data, hash);
    let lib = Arc::new(lib);
    let addr = start_uploader(lib.clone(), config).await;
    Fixture {
        dir,
        addr,
        data,
        hash,
        lib,
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Fixture {
    async fn get(
        &self,
        target: Target,
    ) -> Result<rutella_gnutella::download::Downloaded, DownloadError> {
        let d = Download {
            addr: self.addr,
            target,
            sha1: None,
            size: None,
            tth: None,
        };
        timeout(
            LIMIT,
            download(&d, &self.part(), &self.dest(), &quick_download()),
        )
        .await
        .expect("download within the limit")
    }
    fn part(&self) -> PathBuf {
        self.dir.join("file.part")
    }
    fn dest(&self) -> PathBuf {
        self.dir.join("file")
    }
}

#[tokio::test]
async fn by_urn_whole_file() {
    let f = fixture("urn", UploadConfig::default()).await;
    let got = f.get(Target::Sha1(f.hash)).await.unwrap();
    assert_eq!(std::fs::read(f.dest()).unwrap(), f.data);
    assert!(!f.part().exists());
    assert_eq!(
        (got.size, got.fetched, got.resumed_from),
        (300_000, 300_000, 0)
    );
    assert_eq!(got.sha1, f.hash);
    assert_eq!(got.alt_locs, vec!["127.0.0.9:6346".parse().unwrap()]);
    assert!(got.server.unwrap().starts_with("rutella/"));
}

#[tokio::test]
async fn by_index_and_name() {
    let f = fixture("index", UploadConfig::default()).await;
    let target = Target::Index {
        index: 5,
        name: NAME.into(),
    };
    // No SHA-1 given: the servent's X-Gnutella-Content-URN is checked.
    let got = f.get(target).await.unwrap();
    assert_eq!(got.sha1, f.hash);
    assert_eq!(std::fs::read(f.dest()).unwrap(), f.data);
}

#[tokio::test]
async fn resume_from_a_partial_file() {
    let f = fixture("resume", UploadConfig::default()).await;
    std::fs::write(f.part(), &f.data[..123_457]).unwrap();
    let got = f.get(Target::Sha1(f.hash)).await.unwrap();
    assert_eq!(
        (got.resumed_from, got.fetched),
        (123_457, 300_000 - 123_457)
    );
    assert_eq!(std::fs::read(f.dest()).unwrap(), f.data);
}

#[tokio::test]
async fn a_corrupt_partial_file_is_not_kept() {
    let f = fixture("corrupt", UploadConfig::default()).await;
    let mut bad = f.data[..1000].to_vec();
    bad[10] ^= 1;
    std::fs::write(f.part(), &bad).unwrap();
    let e = f.get(Target::Sha1(f.hash)).await.unwrap_err();
    assert!(matches!(e, DownloadError::WrongHash), "{e:?}");
    assert!(!f.part().exists() && !f.dest().exists());
}

#[tokio::test]
async fn a_lying_servent_is_refused() {
    let dir = scratch("liar");
    let data = content(50_000, 3);
    let claimed = sha1(b"another file");
    let mut lib = TestLib::default();
    lib.share(&dir, 1, "x.bin", &data, claimed);
    let addr = start_uploader(Arc::new(lib), UploadConfig::default()).await;
    let d = Download {
        addr,
        target: Target::Sha1(claimed),
        sha1: None,
        size: Some(50_000),
        tth: None,
    };
    let (part, dest) = (dir.join("p"), dir.join("d"));
    let e = download(&d, &part, &dest, &quick_download())
        .await
        .unwrap_err();
    assert!(matches!(e, DownloadError::WrongHash), "{e:?}");
    assert!(!part.exists() && !dest.exists());
}

#[tokio::test]
async fn not_found() {
    let f = fixture("404", UploadConfig::default()).await;
    let e = f.get(Target::Sha1([9; 20])).await.unwrap_err();
    assert!(matches!(e, DownloadError::NotFound), "{e:?}");
    let wrong_name = Target::Index {
        index: 5,
        name: "other.ogg".into(),
    };
    let e = f.get(wrong_name).await.unwrap_err();
    assert!(matches!(e, DownloadError::NotFound), "{e:?}");
    assert!(!f.dest().exists());
    // No empty partial file is left behind.
    assert!(!f.part().exists());
}

/// Sends raw request bytes on `s` and reads one response head and `body`
/// bytes of body.
async fn exchange(s: &mut TcpStream, req: &str, body: usize) -> (http::Response, Vec<u8>) {
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    loop {
        if let Some((r, used)) = http::parse_response(&buf).unwrap() {
            let mut rest = buf[used..].to_vec();
            while rest.len() < body {
                let mut chunk = [0u8; 4096];
                let n = timeout(LIMIT, s.read(&mut chunk)).await.unwrap().unwrap();
                assert!(n > 0, "closed in the body");
                rest.extend_from_slice(&chunk[..n]);
            }
            assert_eq!(rest.len(), body, "no more than the body");
            return (r, rest);
        }
        let mut chunk = [0u8; 4096];
        let n = timeout(LIMIT, s.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn range_head_and_416_on_one_kept_alive_connection() {
    let f = fixture("range", UploadConfig::default()).await;
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    let (r, body) = exchange(
        &mut s,
        "GET /get/5/Song%20%C3%A9%201.ogg HTTP/1.1\r\nRange: bytes=1000-1099\r\n\r\n",
        100,
    )
    .await;
    assert_eq!(r.code, 206);
    assert_eq!(r.header("Content-Range"), Some("bytes 1000-1099/300000"));
    assert_eq!(r.content_length(), Ok(Some(100)));
    assert_eq!(r.content_sha1(), Some(f.hash));
    assert_eq!(body, &f.data[1000..1100]);

    let urn = rutella_gnutella::huge::Urn::Sha1(f.hash);
    let (r, _) = exchange(
        &mut s,
        &format!("HEAD /uri-res/N2R?{urn} HTTP/1.1\r\n\r\n"),
        0,
    )
    .await;
    assert_eq!((r.code, r.content_length()), (200, Ok(Some(300_000))));

    let (r, body) = exchange(
        &mut s,
        &format!("GET /uri-res/N2R?{urn} HTTP/1.1\nRange: bytes=-10\n\n"),
        10,
    )
    .await;
    assert_eq!(r.code, 206);
    assert_eq!(body, &f.data[300_000 - 10..]);

    let (r, _) = exchange(
        &mut s,
        &format!(
            "GET /uri-res/N2R?{urn} HTTP/1.1\r\nRange: bytes=300000-\r\nConnection: close\r\n\r\n"
        ),
        0,
    )
    .await;
    assert_eq!(r.code, 416);
    assert_eq!(r.header("Content-Range"), Some("bytes */300000"));
    // Connection: close is honoured.
    let mut rest = Vec::new();
    let n = timeout(LIMIT, s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn busy_when_every_slot_is_taken() {
    let config = UploadConfig {
        slots: 1,
        retry_after: Duration::from_secs(7),
        ..UploadConfig::default()
    };
    let f = fixture("busy", config).await;
    // A kept-alive connection that downloaded a byte holds the only slot.
    let mut holder = TcpStream::connect(f.addr).await.unwrap();
    let (r, _) = exchange(
        &mut holder,
        "GET /get/5/Song%20%C3%A9%201.ogg HTTP/1.1\r\nRange: bytes=0-0\r\n\r\n",
        1,
    )
    .await;
    assert_eq!(r.code, 206);
    let e = f.get(Target::Sha1(f.hash)).await.unwrap_err();
    match e {
        DownloadError::Busy { retry_after } => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)))
        }
        e => panic!("expected busy, got {e:?}"),
    }
    // A HEAD needs no slot.
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    let (r, _) = exchange(
        &mut s,
        "HEAD /get/5/Song%20%C3%A9%201.ogg HTTP/1.1\r\n\r\n",
        0,
    )
    .await;
    assert_eq!(r.code, 200);
    // Once the holder leaves, the slot is free again (bounded retries).
    drop(holder);
    let mut ok = false;
    for _ in 0..100 {
        match f.get(Target::Sha1(f.hash)).await {
            Ok(_) => {
                ok = true;
                break;
            }
            Err(DownloadError::Busy { .. }) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(ok, "the slot was never released");
}

#[tokio::test]
async fn a_silent_client_is_dropped_at_the_header_deadline() {
    let config = UploadConfig {
        header_timeout: Duration::from_millis(200),
        ..UploadConfig::default()
    };
    let f = fixture("silent", config).await;
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(b"GET /get/5/x HTTP/1.1\r\n").await.unwrap();
    let mut rest = Vec::new();
    let n = timeout(Duration::from_secs(3), s.read_to_end(&mut rest))
        .await
        .expect("closed at the deadline")
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn an_endless_head_is_refused_at_its_bound() {
    let f = fixture("endless", UploadConfig::default()).await;
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    let mut head = b"GET /get/5/x HTTP/1.1\r\n".to_vec();
    while head.len() <= 12 * 1024 {
        head.extend_from_slice(format!("X-Filler: {}\r\n", "a".repeat(1000)).as_bytes());
    }
    // The server may close while we still write: ignore that error.
    let _ = s.write_all(&head).await;
    let mut got = Vec::new();
    let read = timeout(Duration::from_secs(3), s.read_to_end(&mut got))
        .await
        .expect("answered and closed without waiting for the end of the head");
    // The 400 arrives unless the close of a socket with unread bytes
    // (a reset) overtakes it.
    match read {
        Ok(_) => {
            let (r, _) = http::parse_response(&got).unwrap().unwrap();
            assert_eq!(r.code, 400);
        }
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
    }
}

#[tokio::test]
async fn traversal_is_refused_before_the_library() {
    let f = fixture("traversal", UploadConfig::default()).await;
    for uri in [
        "/get/5/..%2F..%2Fetc%2Fpasswd",
        "/get/5/../../etc/passwd",
        "/etc/passwd",
    ] {
        let mut s = TcpStream::connect(f.addr).await.unwrap();
        let (r, _) = exchange(&mut s, &format!("GET {uri} HTTP/1.1\r\n\r\n"), 0).await;
        assert_eq!(r.code, 400, "{uri}");
    }
    assert_eq!(f.lib.lookups.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_file_whose_size_changed_is_not_served() {
    let f = fixture("changed", UploadConfig::default()).await;
    let path = f.lib.by_sha1.get(&f.hash).unwrap().path.clone();
    std::fs::write(&path, &f.data[..100]).unwrap();
    let e = f.get(Target::Sha1(f.hash)).await.unwrap_err();
    assert!(matches!(e, DownloadError::NotFound), "{e:?}");
}

// ---- hand-written replies ------------------------------------------------

/// A servent that answers the n-th connection with the n-th reply (after
/// reading its request head) and records the requests. `None` holds the
/// connection open without a word.
async fn fake(replies: Vec<Option<Vec<u8>>>) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        for reply in replies {
            let Ok(Ok((mut s, _))) = timeout(LIMIT, l.accept()).await else {
                return;
            };
            let mut buf = Vec::new();
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16384 {
                let mut c = [0u8; 1024];
                match timeout(LIMIT, s.read(&mut c)).await {
                    Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&c[..n]),
                    _ => break,
                }
            }
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf).into_owned());
            match reply {
                Some(r) => {
                    let _ = s.write_all(&r).await;
                    let _ = s.shutdown().await;
                }
                None => {
                    tokio::spawn(async move {
                        tokio::time::sleep(LIMIT).await;
                        drop(s);
                    });
                }
            }
        }
    });
    (addr, seen)
}

async fn fetch_from(
    addr: SocketAddr,
    target: Target,
    size: Option<u64>,
    partial: Option<&[u8]>,
    config: DownloadConfig,
) -> (
    Result<rutella_gnutella::download::Downloaded, DownloadError>,
    PathBuf,
) {
    let dir = scratch("fake");
    if let Some(p) = partial {
        std::fs::write(dir.join("part"), p).unwrap();
    }
    let d = Download {
        addr,
        target,
        sha1: None,
        size,
        tth: None,
    };
    let r = timeout(
        LIMIT,
        download(&d, &dir.join("part"), &dir.join("done"), &config),
    )
    .await
    .expect("within the limit");
    (r, dir)
}

fn body_reply(head: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut v = head.as_bytes().to_vec();
    v.extend_from_slice(body);
    Some(v)
}

#[tokio::test]
async fn gtk_gnutella_style_reply_with_bare_newlines() {
    let data = b"hello gnutella world".to_vec();
    let urn = rutella_gnutella::huge::Urn::Sha1(sha1(&data));
    let head = format!(
        "HTTP/1.1 200 OK\nServer: gtk-gnutella/1.2.2 (2022-02-25; GTK2; Linux x86_64)\n\
         Content-Type: application/binary\nContent-Length: 20\nX-Gnutella-Content-URN: {urn}\n\
         X-Alt: 127.0.0.5:6348, 127.0.0.6, tls=0\nX-Features: browse/1.0\n\n"
    );
    let (addr, seen) = fake(vec![body_reply(&head, &data)]).await;
    let target = Target::Index {
        index: 3,
        name: "hello world.txt".into(),
    };
    let (r, dir) = fetch_from(addr, target, Some(20), None, quick_download()).await;
    let got = r.unwrap();
    assert_eq!(std::fs::read(dir.join("done")).unwrap(), data);
    assert_eq!(got.alt_locs.len(), 2);
    assert!(got.server.unwrap().starts_with("gtk-gnutella/"));
    let req = seen.lock().unwrap()[0].clone();
    assert!(
        req.starts_with("GET /get/3/hello%20world.txt HTTP/1.1\r\n"),
        "{req}"
    );
    assert!(!req.contains("Range:"));
}

#[tokio::test]
async fn resume_asks_a_range_and_follows_pieces() {
    let data = content(30, 1);
    let h = sha1(&data);
    let p1 = body_reply(
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 10-19/30\r\nContent-Length: 10\r\n\r\n",
        &data[10..20],
    );
    let p2 = body_reply(
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 20-29/30\r\nContent-Length: 10\r\n\r\n",
        &data[20..],
    );
    let (addr, seen) = fake(vec![p1, p2]).await;
    let (r, dir) = fetch_from(
        addr,
        Target::Sha1(h),
        None,
        Some(&data[..10]),
        quick_download(),
    )
    .await;
    let got = r.unwrap();
    assert_eq!((got.resumed_from, got.fetched), (10, 20));
    assert_eq!(std::fs::read(dir.join("done")).unwrap(), data);
    let seen = seen.lock().unwrap();
    assert!(seen[0].contains("\r\nRange: bytes=10-\r\n"), "{}", seen[0]);
    assert!(seen[1].contains("\r\nRange: bytes=20-\r\n"), "{}", seen[1]);
}

#[tokio::test]
async fn a_whole_file_answer_to_a_range_restarts_the_file() {
    let data = content(40, 2);
    let h = sha1(&data);
    let (addr, _) = fake(vec![body_reply(
        "HTTP/1.0 200 OK\r\nContent-Length: 40\r\n\r\n",
        &data,
    )])
    .await;
    let (r, dir) = fetch_from(
        addr,
        Target::Sha1(h),
        None,
        Some(b"junk junk"),
        quick_download(),
    )
    .await;
    let got = r.unwrap();
    assert_eq!((got.resumed_from, got.fetched), (0, 40));
    assert_eq!(std::fs::read(dir.join("done")).unwrap(), data);
}

async fn failure(
    reply: Option<Vec<u8>>,
    size: Option<u64>,
    config: DownloadConfig,
) -> DownloadError {
    let (addr, _) = fake(vec![reply]).await;
    let (r, dir) = fetch_from(addr, Target::Sha1([1; 20]), size, None, config).await;
    assert!(!dir.join("done").exists());
    r.unwrap_err()
}

fn raw(s: &str) -> Option<Vec<u8>> {
    Some(s.as_bytes().to_vec())
}

#[tokio::test]
async fn hand_written_failures() {
    let q = quick_download;
    let e = failure(
        raw("HTTP/1.1 503 Busy\r\nRetry-After: 60\r\n\r\n"),
        None,
        q(),
    )
    .await;
    assert!(
        matches!(e, DownloadError::Busy { retry_after: Some(d) } if d == Duration::from_secs(60)),
        "{e:?}"
    );
    let e = failure(raw("HTTP/1.1 404 Not Found\r\n\r\n"), None, q()).await;
    assert!(matches!(e, DownloadError::NotFound), "{e:?}");
    let e = failure(
        raw("HTTP/1.1 416 Requested Range Not Satisfiable\r\n\r\n"),
        None,
        q(),
    )
    .await;
    assert!(matches!(e, DownloadError::BadRange), "{e:?}");
    let e = failure(raw("GNUTELLA/0.6 200 OK\r\n\r\n"), None, q()).await;
    assert!(
        matches!(e, DownloadError::Malformed(HttpError::BadStartLine)),
        "{e:?}"
    );
    let e = failure(raw("SSH-2.0-OpenSSH_9.0\r\n"), None, q()).await;
    assert!(matches!(e, DownloadError::Malformed(_)), "{e:?}");
    let e = failure(
        raw("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/20\r\nContent-Length: 5\r\n\r\n01234"),
        None,
        q(),
    )
    .await;
    assert!(matches!(e, DownloadError::SizeMismatch(_)), "{e:?}");
    let e = failure(
        raw("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 5-9/20\r\n\r\n01234"),
        None,
        q(),
    )
    .await;
    assert!(matches!(e, DownloadError::SizeMismatch(_)), "{e:?}");
    let e = failure(
        raw("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"),
        Some(11),
        q(),
    )
    .await;
    assert!(matches!(e, DownloadError::SizeMismatch(_)), "{e:?}");
    let e = failure(raw("HTTP/1.1 200 OK\r\n\r\n0123456789"), None, q()).await;
    assert!(matches!(e, DownloadError::SizeMismatch(_)), "{e:?}");
    let e = failure(
        raw("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234"),
        None,
        q(),
    )
    .await;
    assert!(matches!(e, DownloadError::Truncated), "{e:?}");
    let other = rutella_gnutella::huge::Urn::Sha1([2; 20]);
    let e = failure(
        raw(&format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX-Gnutella-Content-URN: {other}\r\n\r\n0"
        )),
        None,
        q(),
    )
    .await;
    assert!(matches!(e, DownloadError::UrnMismatch), "{e:?}");
    let e = failure(raw("HTTP/1.1 302 Found\r\n\r\n"), None, q()).await;
    assert!(matches!(e, DownloadError::Status(302)), "{e:?}");
}

#[tokio::test]
async fn a_truncated_download_keeps_its_partial_file() {
    let (addr, _) = fake(vec![raw(
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234",
    )])
    .await;
    let (r, dir) = fetch_from(addr, Target::Sha1([1; 20]), None, None, quick_download()).await;
    assert!(matches!(r, Err(DownloadError::Truncated)));
    assert_eq!(std::fs::read(dir.join("part")).unwrap(), b"01234");
}

#[tokio::test]
async fn a_file_over_the_size_limit_is_refused() {
    let config = DownloadConfig {
        max_size: 1000,
        ..quick_download()
    };
    let e = failure(
        raw("HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n0000"),
        None,
        config,
    )
    .await;
    assert!(matches!(e, DownloadError::TooLarge), "{e:?}");
}

#[tokio::test]
async fn a_silent_servent_times_out() {
    let config = DownloadConfig {
        header_timeout: Duration::from_millis(200),
        ..quick_download()
    };
    let e = failure(None, None, config).await;
    assert!(matches!(e, DownloadError::Timeout(_)), "{e:?}");
}

#[tokio::test]
async fn an_endless_reply_head_is_refused() {
    let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
    while head.len() <= 12 * 1024 {
        head.extend_from_slice(format!("X-Filler: {}\r\n", "a".repeat(1000)).as_bytes());
    }
    let e = failure(Some(head), None, quick_download()).await;
    assert!(
        matches!(e, DownloadError::Malformed(HttpError::TooLong)),
        "{e:?}"
    );
}

#[tokio::test]
async fn connections_over_the_limit_are_closed() {
    let config = UploadConfig {
        max_connections: 1,
        ..UploadConfig::default()
    };
    let f = fixture("conns", config).await;
    let mut first = TcpStream::connect(f.addr).await.unwrap();
    let (r, _) = exchange(
        &mut first,
        "HEAD /get/5/Song%20%C3%A9%201.ogg HTTP/1.1\r\n\r\n",
        0,
    )
    .await;
    assert_eq!(r.code, 200);
    // The first connection is still open: a second one is closed unanswered.
    let mut second = TcpStream::connect(f.addr).await.unwrap();
    let _ = second
        .write_all(b"HEAD /get/5/Song%20%C3%A9%201.ogg HTTP/1.1\r\n\r\n")
        .await;
    let mut got = Vec::new();
    let read = timeout(Duration::from_secs(3), second.read_to_end(&mut got))
        .await
        .expect("closed at once");
    assert!(read.is_err() || got.is_empty(), "answered: {got:?}");
    drop(first);
}

#[tokio::test]
async fn pieces_per_file_are_bounded() {
    let data = content(10, 4);
    let piece = |i: usize| {
        body_reply(
            &format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {i}-{i}/10\r\n\r\n"),
            &data[i..=i],
        )
    };
    let (addr, _) = fake((0..10).map(piece).collect()).await;
    let config = DownloadConfig {
        max_requests: 3,
        ..quick_download()
    };
    let (r, dir) = fetch_from(
        addr,
        Target::Sha1(sha1(&data)),
        None,
        Some(&data[..0]),
        config,
    )
    .await;
    assert!(matches!(r, Err(DownloadError::TooManyRequests)), "{r:?}");
    // What came is kept for a later resume.
    assert_eq!(std::fs::read(dir.join("part")).unwrap(), &data[..3]);
}
