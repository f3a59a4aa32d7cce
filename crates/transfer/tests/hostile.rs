//! Peers that hold the transfer port without using it: idle connections,
//! one source opening more than its share, a rutella session that only
//! asks cheap questions now and then, and two downloads of one file into
//! one folder at once.
//!
//! Address plan: servers on 127.0.0.1 with free ports; hostile peers bind
//! 127.0.44.0/24 so that they are other sources than the downloads.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{pattern, quick_cfg, start_server, MapSource};
use rutella_transfer::wire::{self, Request, RequestKind, ResponseHeader, Status};
use rutella_transfer::{
    classic_download, fetch_by_hash, ClassicGet, DownloadError, HashGet, Progress, RutellaConn,
    ServerConfig, ServerLimits, SourceError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

fn progress() -> watch::Sender<Progress> {
    watch::channel(Progress::default()).0
}

/// A connection to `to` from the address `from` (any port).
async fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))?;
    s.connect(to).await
}

/// Whether the server closed (or reset) `s` within `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut b = [0u8; 64];
    loop {
        match tokio::time::timeout(limit, s.read(&mut b)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // Data (a reply) first: keep reading until the close.
            Ok(Ok(_)) => continue,
        }
    }
}

/// A classic download of `name` from `server` into a fresh folder; the
/// bytes, or why it failed.
async fn classic_get(server: SocketAddr, name: &str) -> Result<Vec<u8>, DownloadError> {
    let out = tempfile::tempdir().unwrap();
    let req = ClassicGet {
        peer: server,
        name: name.to_owned(),
        downloads_dir: out.path().to_owned(),
        connect_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(2),
        align_resume: false,
        listed_size: None,
        dialer: None,
        limit: None,
    };
    let report = classic_download(req, progress()).await?;
    Ok(std::fs::read(report.path).unwrap())
}

/// Keeps `n` idle connections (spread over `sources`) open to `server`,
/// re-opening each one the server closes every `every`, until `stop`.
/// Returns how many connections it opened in all.
fn idle_flood(
    server: SocketAddr,
    sources: &'static [&'static str],
    n: usize,
    every: Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut held: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
        let mut opened = 0usize;
        // Bounded: the test stops it, and it never runs past 60 s.
        let end = Instant::now() + Duration::from_secs(60);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < end {
            for (k, slot) in held.iter_mut().enumerate() {
                let dead = match slot {
                    None => true,
                    Some(s) => {
                        let mut b = [0u8; 16];
                        match s.try_read(&mut b) {
                            Ok(_) => true,
                            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                        }
                    }
                };
                if dead {
                    *slot = connect_from(sources[k % sources.len()], server).await.ok();
                    opened += 1;
                }
            }
            // Pacing of the attack.
            tokio::time::sleep(every).await;
        }
        opened
    })
}

/// 64 connections that never send a request, re-opened as soon as they
/// are closed, do not keep others from downloading: before a request is
/// read a connection holds no upload slot and no place in the queue.
#[tokio::test]
async fn idle_connections_leave_downloads_working() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(200_000, 7);
    std::fs::write(dir.path().join("song.bin"), &data).unwrap();
    let source = Arc::new(MapSource::default());
    source.add("song.bin", &dir.path().join("song.bin"));
    let header = Duration::from_millis(1000);
    let cfg = ServerConfig {
        max_connections: 8,
        limits: ServerLimits {
            header_timeout: header,
            ..Default::default()
        },
        ..quick_cfg()
    };
    let server = start_server("127.0.0.1", source, cfg).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    static ATTACKERS: [&str; 4] = ["127.0.44.50", "127.0.44.51", "127.0.44.52", "127.0.44.53"];
    let flood = idle_flood(
        server.addr,
        &ATTACKERS,
        64,
        Duration::from_millis(20),
        Arc::clone(&stop),
    );
    // Let the idle connections take hold, and be closed and re-opened once.
    // Part of the scenario (the attack runs for one header timeout): the
    // downloads that follow must work whatever the attack has reached.
    tokio::time::sleep(header + Duration::from_millis(200)).await;
    let mut ok = 0;
    for _ in 0..10 {
        // Served at once: not after an idle connection gave its slot up.
        match tokio::time::timeout(header / 2, classic_get(server.addr, "song.bin")).await {
            Ok(Ok(got)) if got == data => ok += 1,
            other => eprintln!("a download failed: {other:?}"),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let opened = flood.await.unwrap();
    eprintln!("{ok} of 10 downloads worked; {opened} idle connections opened");
    assert!(
        opened > 64,
        "the idle connections were closed and re-opened ({opened} opened)"
    );
    assert!(
        ok >= 9,
        "{ok} of 10 downloads worked under 64 idle connections"
    );
    server.kill().await;
}

/// One source gets `max_open_per_ip` connections, and the next one is
/// closed at once, while another source is still served.
#[tokio::test]
async fn the_65th_connection_from_one_source_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(50_000, 8);
    std::fs::write(dir.path().join("a.bin"), &data).unwrap();
    let source = Arc::new(MapSource::default());
    source.add("a.bin", &dir.path().join("a.bin"));
    let cfg = ServerConfig {
        max_connections: 8,
        limits: ServerLimits {
            max_open_per_ip: 64,
            header_timeout: Duration::from_secs(30),
            ..Default::default()
        },
        ..quick_cfg()
    };
    let server = start_server("127.0.0.1", source, cfg).await;
    let mut held = Vec::new();
    for _ in 0..64 {
        held.push(connect_from("127.0.44.9", server.addr).await.unwrap());
    }
    // The 64 are kept open (the header deadline is far).
    for s in held.iter_mut().step_by(8) {
        assert!(!closed_within(s, Duration::from_millis(50)).await);
    }
    let mut extra = connect_from("127.0.44.9", server.addr).await.unwrap();
    assert!(
        closed_within(&mut extra, Duration::from_secs(2)).await,
        "the 65th connection from one source must be closed"
    );
    // Another source is served meanwhile.
    let got = classic_get(server.addr, "a.bin").await.unwrap();
    assert_eq!(got, data);
    drop(held);
    server.kill().await;
}

/// Upload slots per source: a fifth rutella session from one address is
/// told the server is busy, one from another address is served.
#[tokio::test]
async fn one_source_cannot_take_every_slot() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(100_000, 9);
    std::fs::write(dir.path().join("b.bin"), &data).unwrap();
    let source = Arc::new(MapSource::default());
    let hash = source.add_hashed("b.bin", &dir.path().join("b.bin"));
    let cfg = ServerConfig {
        max_connections: 8,
        limits: ServerLimits {
            max_slots_per_ip: 4,
            ..Default::default()
        },
        ..quick_cfg()
    };
    let server = start_server("127.0.0.1", source, cfg).await;
    let mut sessions = Vec::new();
    for _ in 0..4 {
        let mut s = connect_from("127.0.44.20", server.addr).await.unwrap();
        s.write_all(&wire::encode_hello(wire::VERSION))
            .await
            .unwrap();
        let mut hello = [0u8; wire::HELLO_LEN];
        s.read_exact(&mut hello).await.unwrap();
        sessions.push(s);
    }
    let mut fifth = connect_from("127.0.44.20", server.addr).await.unwrap();
    fifth
        .write_all(&wire::encode_hello(wire::VERSION))
        .await
        .unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), fifth.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    let head = ResponseHeader::decode(&reply[wire::HELLO_LEN..]).unwrap();
    assert_eq!(head.status, Status::Busy);
    // Another address still gets a slot: 4 of 8 are taken.
    let t = Duration::from_secs(2);
    let mut conn = RutellaConn::connect(server.addr, t, t).await.unwrap();
    conn.tree(&hash).await.unwrap();
    drop(sessions);
    server.kill().await;
}

/// A rutella session that only sends a cheap request now and then loses
/// its slot once the idle limit passes without enough data taken, and the
/// slot goes to the next peer.
#[tokio::test]
async fn a_trickling_session_loses_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(300_000, 10);
    std::fs::write(dir.path().join("c.bin"), &data).unwrap();
    let source = Arc::new(MapSource::default());
    let hash = source.add_hashed("c.bin", &dir.path().join("c.bin"));
    let idle = Duration::from_millis(400);
    let cfg = ServerConfig {
        max_connections: 1,
        limits: ServerLimits {
            session_idle_timeout: idle,
            session_min_bytes: 64 * 1024,
            ..Default::default()
        },
        ..quick_cfg()
    };
    let server = start_server("127.0.0.1", source, cfg).await;
    let mut s = connect_from("127.0.44.30", server.addr).await.unwrap();
    s.write_all(&wire::encode_hello(wire::VERSION))
        .await
        .unwrap();
    let mut hello = [0u8; wire::HELLO_LEN];
    s.read_exact(&mut hello).await.unwrap();
    let start = Instant::now();
    // The slot is held: another peer is told the server is busy.
    let t = Duration::from_secs(2);
    let mut other = RutellaConn::connect(server.addr, t, t).await.unwrap();
    assert!(matches!(
        other.tree(&hash).await,
        Err(DownloadError::Source(SourceError::Refusal {
            status: Status::Busy,
            ..
        }))
    ));
    // One 100-byte range every 100 ms: well within any request deadline,
    // but far below 64 KiB per 400 ms.
    let mut answered = 0;
    let mut closed_after = None;
    for k in 0..40u64 {
        let req = Request {
            kind: RequestKind::Range {
                offset: k * 100,
                len: 100,
            },
            hash,
        }
        .encode();
        if s.write_all(&req).await.is_err() {
            closed_after = Some(start.elapsed());
            break;
        }
        let mut head = [0u8; wire::RESPONSE_LEN];
        match tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut head)).await {
            Ok(Ok(_)) => {
                let h = ResponseHeader::decode(&head).unwrap();
                assert_eq!(h.status, Status::Ok);
                let mut body = vec![0u8; h.len as usize];
                s.read_exact(&mut body).await.unwrap();
                answered += 1;
            }
            _ => {
                closed_after = Some(start.elapsed());
                break;
            }
        }
        // Pacing: the client trickles its requests; nothing is awaited.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let closed_after = closed_after.expect("the trickling session was never closed");
    assert!(answered >= 2, "cheap requests are answered ({answered})");
    assert!(
        closed_after >= idle - Duration::from_millis(50) && closed_after < idle * 4,
        "closed after {closed_after:?}"
    );
    // The slot is free again.
    let mut next = RutellaConn::connect(server.addr, t, t).await.unwrap();
    next.tree(&hash).await.unwrap();
    server.kill().await;
}

/// A session that takes data keeps its slot past the idle limit.
#[tokio::test]
async fn a_session_taking_data_keeps_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(2 << 20, 11);
    std::fs::write(dir.path().join("d.bin"), &data).unwrap();
    let source = Arc::new(MapSource::default());
    let hash = source.add_hashed("d.bin", &dir.path().join("d.bin"));
    let idle = Duration::from_millis(300);
    let cfg = ServerConfig {
        max_connections: 1,
        limits: ServerLimits {
            session_idle_timeout: idle,
            session_min_bytes: 64 * 1024,
            ..Default::default()
        },
        ..quick_cfg()
    };
    let server = start_server("127.0.0.1", source, cfg).await;
    let mut s = connect_from("127.0.44.31", server.addr).await.unwrap();
    s.write_all(&wire::encode_hello(wire::VERSION))
        .await
        .unwrap();
    let mut hello = [0u8; wire::HELLO_LEN];
    s.read_exact(&mut hello).await.unwrap();
    let start = Instant::now();
    // 64 KiB every 100 ms for three idle limits.
    let mut k = 0u64;
    while start.elapsed() < idle * 3 {
        let req = Request {
            kind: RequestKind::Range {
                offset: k * 65536,
                len: 65536,
            },
            hash,
        }
        .encode();
        s.write_all(&req).await.unwrap();
        let mut head = [0u8; wire::RESPONSE_LEN];
        s.read_exact(&mut head).await.unwrap();
        let h = ResponseHeader::decode(&head).unwrap();
        assert_eq!(h.status, Status::Ok);
        let mut body = vec![0u8; h.len as usize];
        s.read_exact(&mut body).await.unwrap();
        let at = (k * 65536) as usize;
        assert_eq!(body, data[at..at + 65536]);
        k += 1;
        // Pacing: the client trickles its requests; nothing is awaited.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(k >= 6);
    server.kill().await;
}

/// Two downloads of the same hash into the same folder at once: the
/// second waits for the first, then finds the file complete; one file,
/// byte-exact, and nothing else left.
#[tokio::test]
async fn two_downloads_of_one_file_share_it() {
    let shared = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let data = pattern(3 << 20, 12);
    std::fs::write(shared.path().join("e.bin"), &data).unwrap();
    let source = Arc::new(MapSource::default());
    let hash = source.add_hashed("e.bin", &shared.path().join("e.bin"));
    let server = start_server(
        "127.0.0.1",
        source,
        ServerConfig {
            rate_limit: Some(8 << 20),
            ..quick_cfg()
        },
    )
    .await;
    let req = HashGet {
        connect_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(2),
        checkpoint_every: Duration::from_millis(20),
        ..HashGet::new(hash, vec![server.addr], out.path().to_owned(), "movie.mkv")
    };
    let a = tokio::spawn(fetch_by_hash(req.clone(), progress()));
    let b = tokio::spawn(fetch_by_hash(req, progress()));
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    let want = out.path().join("movie.mkv");
    assert_eq!(a.path, want);
    assert_eq!(b.path, want);
    // Only one of them moved bytes.
    assert_eq!(
        (a.bytes_received == 0) as u8 + (b.bytes_received == 0) as u8,
        1,
        "{} and {} bytes received",
        a.bytes_received,
        b.bytes_received
    );
    assert_eq!(std::fs::read(&want).unwrap(), data);
    let left: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["movie.mkv".to_string()]);
    server.kill().await;
}
