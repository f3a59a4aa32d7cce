//! The classic exchange over real loopback sockets.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{pattern, quick_cfg, start_server, MapSource};
use rutella_transfer::{
    classic_download, serve_connection, ClassicGet, DownloadError, LocalError, Progress,
    ServeError, ServeOutcome, ServerConfig, ServerLimits, SourceError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

fn get(peer: std::net::SocketAddr, name: &str, dir: &std::path::Path) -> ClassicGet {
    ClassicGet {
        peer,
        name: name.to_owned(),
        downloads_dir: dir.to_owned(),
        connect_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(2),
        align_resume: false,
        listed_size: None,
        dialer: None,
        limit: None,
    }
}

fn progress() -> watch::Sender<Progress> {
    watch::channel(Progress::default()).0
}

struct Fixture {
    shared: tempfile::TempDir,
    downloads: tempfile::TempDir,
    source: Arc<MapSource>,
    data: Vec<u8>,
}

fn fixture(name: &str, len: usize) -> Fixture {
    let shared = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let data = pattern(len, len as u64);
    // The on-disk name is fixed; `name` is only what the source answers to.
    let path = shared.path().join("shared-file");
    std::fs::write(&path, &data).unwrap();
    let source = Arc::new(MapSource::default());
    source.add(name, &path);
    Fixture {
        shared,
        downloads,
        source,
        data,
    }
}

#[tokio::test]
async fn downloads_byte_identical_with_sendfile_and_with_copy() {
    for zero_copy in [true, false] {
        let f = fixture("song.mp3", 3 * 1024 * 1024 + 77);
        let server = start_server(
            "127.0.0.1",
            f.source.clone(),
            ServerConfig {
                zero_copy,
                buffer_size: 64 * 1024,
                ..quick_cfg()
            },
        )
        .await;
        let (tx, rx) = watch::channel(Progress::default());
        let report = classic_download(get(server.addr, "song.mp3", f.downloads.path()), tx)
            .await
            .unwrap();
        assert_eq!(report.path, f.downloads.path().join("song.mp3"));
        assert_eq!(report.size, f.data.len() as u64);
        assert_eq!(report.resumed_from, 0);
        assert_eq!(report.bytes_received, f.data.len() as u64);
        assert_eq!(std::fs::read(&report.path).unwrap(), f.data);
        assert!(!f.downloads.path().join("song.mp3.part").exists());
        let last = *rx.borrow();
        assert_eq!(last.done, f.data.len() as u64);
        assert_eq!(last.total, Some(f.data.len() as u64));
        server.stop().await;
        drop(f.shared);
    }
}

#[tokio::test]
async fn resume_from_unaligned_part_sends_only_missing_bytes() {
    let f = fixture("doc.pdf", 200_000);
    let offset = 5_000; // not a multiple of 1024
    std::fs::write(f.downloads.path().join("doc.pdf.part"), &f.data[..offset]).unwrap();
    let server = start_server("127.0.0.1", f.source.clone(), quick_cfg()).await;
    let report = classic_download(get(server.addr, "doc.pdf", f.downloads.path()), progress())
        .await
        .unwrap();
    assert_eq!(report.resumed_from, offset as u64);
    assert_eq!(report.bytes_received, (f.data.len() - offset) as u64);
    assert_eq!(std::fs::read(&report.path).unwrap(), f.data);
    server.stop().await;
}

#[tokio::test]
async fn not_found_keeps_the_partial_file() {
    let f = fixture("here.txt", 10_000);
    let part = f.downloads.path().join("missing.txt.part");
    std::fs::write(&part, b"partial bytes").unwrap();
    let server = start_server("127.0.0.1", f.source.clone(), quick_cfg()).await;
    let err = classic_download(
        get(server.addr, "missing.txt", f.downloads.path()),
        progress(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            DownloadError::Source(SourceError::NotFound { partial: 13, .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&server.addr.to_string()), "{err}");
    assert_eq!(std::fs::read(&part).unwrap(), b"partial bytes");
    // Without a partial copy, no empty .part is left behind.
    let err = classic_download(
        get(server.addr, "other.txt", f.downloads.path()),
        progress(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            DownloadError::Source(SourceError::NotFound { partial: 0, .. })
        ),
        "{err}"
    );
    assert!(!f.downloads.path().join("other.txt.part").exists());
    server.stop().await;
}

#[tokio::test]
async fn interrupted_download_keeps_part_and_resumes_elsewhere() {
    let f = fixture("big.iso", 400_000);
    let slow = start_server(
        "127.0.0.1",
        f.source.clone(),
        ServerConfig {
            rate_limit: Some(400_000),
            ..quick_cfg()
        },
    )
    .await;
    let (tx, mut rx) = watch::channel(Progress::default());
    let dl = tokio::spawn(classic_download(
        get(slow.addr, "big.iso", f.downloads.path()),
        tx,
    ));
    // Cut the server once some data has arrived (bounded wait).
    tokio::time::timeout(Duration::from_secs(5), async {
        while rx.borrow_and_update().received < 50_000 {
            rx.changed().await.unwrap();
        }
    })
    .await
    .unwrap();
    slow.kill().await;
    let err = dl.await.unwrap().unwrap_err();
    let (received, expected) = match err {
        DownloadError::Source(SourceError::Interrupted {
            received, expected, ..
        }) => (received, expected),
        other => panic!("expected Interrupted, got {other}"),
    };
    assert_eq!(expected, f.data.len() as u64);
    assert!(received >= 50_000 && received < expected, "{received}");
    let part = f.downloads.path().join("big.iso.part");
    let kept = std::fs::read(&part).unwrap();
    assert_eq!(kept.len() as u64, received);
    assert_eq!(kept[..], f.data[..kept.len()]);

    let good = start_server("127.0.0.2", f.source.clone(), quick_cfg()).await;
    let report = classic_download(get(good.addr, "big.iso", f.downloads.path()), progress())
        .await
        .unwrap();
    assert_eq!(report.resumed_from, received);
    assert_eq!(report.bytes_received, f.data.len() as u64 - received);
    assert_eq!(std::fs::read(&report.path).unwrap(), f.data);
    good.stop().await;
}

#[tokio::test]
async fn never_overwrites_an_existing_file() {
    let f = fixture("photo.png", 5_000);
    std::fs::write(f.downloads.path().join("photo.png"), b"mine").unwrap();
    let server = start_server("127.0.0.1", f.source.clone(), quick_cfg()).await;
    let report = classic_download(
        get(server.addr, "photo.png", f.downloads.path()),
        progress(),
    )
    .await
    .unwrap();
    assert_eq!(report.path, f.downloads.path().join("photo (1).png"));
    assert_eq!(std::fs::read(&report.path).unwrap(), f.data);
    assert_eq!(
        std::fs::read(f.downloads.path().join("photo.png")).unwrap(),
        b"mine"
    );
    server.stop().await;
}

#[tokio::test]
async fn remote_path_components_never_escape_the_downloads_dir() {
    let f = fixture("../../etc/evil.txt", 100);
    let server = start_server("127.0.0.1", f.source.clone(), quick_cfg()).await;
    let report = classic_download(
        get(server.addr, "../../etc/evil.txt", f.downloads.path()),
        progress(),
    )
    .await
    .unwrap();
    assert_eq!(report.path, f.downloads.path().join("evil.txt"));
    let err = classic_download(get(server.addr, "..", f.downloads.path()), progress())
        .await
        .unwrap_err();
    assert!(
        matches!(err, DownloadError::Local(LocalError::InvalidName { .. })),
        "{err}"
    );
    server.stop().await;
}

#[tokio::test]
async fn refused_connection_names_the_peer() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let dir = tempfile::tempdir().unwrap();
    let err = classic_download(get(addr, "x.txt", dir.path()), progress())
        .await
        .unwrap_err();
    assert!(
        matches!(err, DownloadError::Source(SourceError::Refused { .. })),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("peer {addr} refused the connection")),
        "{err}"
    );
}

async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (s, _) = l.accept().await.unwrap();
    (c, s)
}

#[tokio::test]
async fn silent_or_garbage_clients_do_not_hold_the_server() {
    let f = fixture("a.txt", 10);
    let cfg = Arc::new(ServerConfig {
        limits: ServerLimits {
            header_timeout: Duration::from_millis(200),
            ..Default::default()
        },
        ..Default::default()
    });
    // Sends nothing at all.
    let (_c, s) = pair().await;
    let t = std::time::Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(3),
        serve_connection(s, f.source.clone(), cfg.clone()),
    )
    .await
    .unwrap();
    assert!(matches!(r, Err(ServeError::RequestTimeout { .. })), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(2));
    // Sends the 4-byte header and then never the name.
    let (mut c, s) = pair().await;
    c.write_all(&0u32.to_le_bytes()).await.unwrap();
    let r = tokio::time::timeout(
        Duration::from_secs(3),
        serve_connection(s, f.source.clone(), cfg.clone()),
    )
    .await
    .unwrap();
    assert!(matches!(r, Err(ServeError::RequestTimeout { .. })), "{r:?}");
    // Sends garbage that is not UTF-8: answered 0, then closed.
    let (mut c, s) = pair().await;
    c.write_all(&[0, 0, 0, 0, 0xff, 0xfe, 0x80]).await.unwrap();
    let report = serve_connection(s, f.source.clone(), cfg.clone())
        .await
        .unwrap();
    assert_eq!(report.outcome, ServeOutcome::InvalidName);
    let mut reply = Vec::new();
    c.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply, 0u32.to_le_bytes());
    // Closes after 2 bytes.
    let (mut c, s) = pair().await;
    c.write_all(&[1, 2]).await.unwrap();
    drop(c);
    let r = serve_connection(s, f.source.clone(), cfg.clone()).await;
    assert!(matches!(r, Err(ServeError::ClosedEarly { .. })), "{r:?}");
}

/// A client written from the wire format alone, byte by byte.
async fn raw_classic_request(addr: std::net::SocketAddr, partial: u32, name: &str) -> Vec<u8> {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.set_nodelay(true).unwrap();
    c.write_all(&partial.to_le_bytes()).await.unwrap();
    // The name in a separate write, a little later, as the classic client
    // may send it.
    tokio::time::sleep(Duration::from_millis(30)).await;
    c.write_all(name.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    all
}

#[tokio::test]
async fn wire_compatible_with_a_raw_classic_client() {
    let f = fixture("Cloud - Cloud models.png", 70_000);
    let server = start_server("127.0.0.1", f.source.clone(), quick_cfg()).await;
    for partial in [0u32, 1500, 4096, 70_000] {
        let reply = raw_classic_request(server.addr, partial, "Cloud - Cloud models.png").await;
        let count = u32::from_le_bytes(reply[..4].try_into().unwrap());
        assert_eq!(count as usize, f.data.len() - partial as usize);
        assert_eq!(&reply[4..], &f.data[partial as usize..]);
    }
    // Past the end, unknown names, and path escapes all get a bare 0.
    for (partial, name) in [
        (80_000u32, "Cloud - Cloud models.png"),
        (0, "nope.png"),
        (0, "../../../etc/passwd"),
    ] {
        let reply = raw_classic_request(server.addr, partial, name).await;
        assert_eq!(reply, 0u32.to_le_bytes());
    }
    server.stop().await;
}

#[tokio::test]
async fn files_of_4_gib_are_refused_on_the_classic_exchange() {
    let shared = tempfile::tempdir().unwrap();
    let path = shared.path().join("huge.img");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len((1u64 << 32) + 10).unwrap(); // sparse
    let source = Arc::new(MapSource::default());
    source.add("huge.img", &path);
    let (mut c, s) = pair().await;
    c.write_all(&0u32.to_le_bytes()).await.unwrap();
    c.write_all(b"huge.img").await.unwrap();
    let report = serve_connection(s, source, Arc::new(quick_cfg()))
        .await
        .unwrap();
    assert_eq!(report.outcome, ServeOutcome::TooLargeForClassic);
    let mut reply = Vec::new();
    c.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply, 0u32.to_le_bytes());
}

/// A classic server written from the wire format alone: one recv of the
/// header, one of the name, then the count and the bytes from the offset.
#[tokio::test]
async fn client_is_wire_compatible_with_a_raw_classic_server() {
    let data = pattern(50_000, 7);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let served = data.clone();
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..2 {
            let (mut s, _) = l.accept().await.unwrap();
            let mut head = [0u8; 4];
            s.read_exact(&mut head).await.unwrap();
            let offset = u32::from_le_bytes(head) as usize;
            let mut name = vec![0u8; 4096];
            let n = s.read(&mut name).await.unwrap();
            seen.push((offset, String::from_utf8(name[..n].to_vec()).unwrap()));
            let rest = &served[offset..];
            s.write_all(&(rest.len() as u32).to_le_bytes())
                .await
                .unwrap();
            // The first time, stop halfway, as a peer that goes away.
            let upto = if seen.len() == 1 {
                rest.len() / 2
            } else {
                rest.len()
            };
            s.write_all(&rest[..upto]).await.unwrap();
        }
        seen
    });
    let dir = tempfile::tempdir().unwrap();
    let err = classic_download(get(addr, "file.bin", dir.path()), progress())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DownloadError::Source(SourceError::Interrupted {
                received: 25_000,
                expected: 50_000,
                ..
            })
        ),
        "{err}"
    );
    let report = classic_download(get(addr, "file.bin", dir.path()), progress())
        .await
        .unwrap();
    assert_eq!(report.bytes_received, 25_000);
    assert_eq!(std::fs::read(report.path).unwrap(), data);
    let seen = server.await.unwrap();
    assert_eq!(
        seen,
        vec![(0, "file.bin".to_owned()), (25_000, "file.bin".to_owned())]
    );
}

#[tokio::test]
async fn server_stops_on_shutdown() {
    let f = fixture("a.txt", 10);
    let server = start_server("127.0.0.1", f.source.clone(), quick_cfg()).await;
    let addr = server.addr;
    server.stop().await;
    let r = TcpStream::connect(addr).await;
    assert!(r.is_err(), "still accepting after shutdown");
}
