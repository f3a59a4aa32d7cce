//! The rutella protocol and downloads by hash over real loopback sockets.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{pattern, quick_cfg, start_server, MapSource};
use rutella_transfer::wire::{self, Request, RequestKind, ResponseHeader, Status};
use rutella_transfer::{
    fetch_by_hash, pending_progress, DownloadError, ExhaustedError, Fault, HashGet, Progress,
    RutellaConn, ServerConfig, SourceError, SourceOutcome,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

fn shared_file(dir: &Path, len: usize, seed: u64) -> (Arc<MapSource>, Vec<u8>, [u8; 32]) {
    let data = pattern(len, seed);
    let path = dir.join("shared.bin");
    std::fs::write(&path, &data).unwrap();
    let source = Arc::new(MapSource::default());
    let hash = source.add_hashed("shared.bin", &path);
    (source, data, hash)
}

fn get(hash: [u8; 32], sources: Vec<SocketAddr>, out: &Path) -> HashGet {
    HashGet {
        connect_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(2),
        checkpoint_every: Duration::ZERO,
        ..HashGet::new(hash, sources, out.to_owned(), "movie.mkv")
    }
}

fn progress() -> watch::Sender<Progress> {
    watch::channel(Progress::default()).0
}

#[tokio::test]
async fn single_source_download_is_verified_and_identical() {
    let shared = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (source, data, hash) = shared_file(shared.path(), 3 * 1024 * 1024 + 5, 1);
    let server = start_server("127.0.0.1", source, quick_cfg()).await;
    let report = fetch_by_hash(get(hash, vec![server.addr], out.path()), progress())
        .await
        .unwrap();
    assert_eq!(report.path, out.path().join("movie.mkv"));
    assert_eq!(report.size, data.len() as u64);
    assert_eq!(report.resumed_from, 0);
    let got = std::fs::read(&report.path).unwrap();
    assert_eq!(blake3::hash(&got).as_bytes(), &hash);
    assert_eq!(got, data);
    assert_eq!(report.sources[0].outcome, SourceOutcome::Served);
    assert_eq!(report.sources[0].bytes_verified, data.len() as u64);
    // Nothing but the file is left in the folder.
    let left: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
    assert_eq!(left.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn small_and_empty_files() {
    let shared = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let source = Arc::new(MapSource::default());
    let mut hashes = Vec::new();
    for (i, len) in [0usize, 1, 16384, 16385].into_iter().enumerate() {
        let p = shared.path().join(format!("f{i}"));
        let data = pattern(len, i as u64);
        std::fs::write(&p, &data).unwrap();
        hashes.push((source.add_hashed(&format!("f{i}"), &p), data));
    }
    let server = start_server("127.0.0.1", source, quick_cfg()).await;
    for (i, (hash, data)) in hashes.into_iter().enumerate() {
        let mut req = get(hash, vec![server.addr], out.path());
        req.name = format!("f{i}.bin");
        let report = fetch_by_hash(req, progress()).await.unwrap();
        assert_eq!(std::fs::read(&report.path).unwrap(), data, "file {i}");
    }
    server.stop().await;
}

#[tokio::test]
async fn explicit_error_replies() {
    let shared = tempfile::tempdir().unwrap();
    let (source, _data, hash) = shared_file(shared.path(), 50_000, 2);
    let server = start_server("127.0.0.1", source.clone(), quick_cfg()).await;
    let t = Duration::from_secs(2);
    let mut conn = RutellaConn::connect(server.addr, t, t).await.unwrap();
    // Unknown hash: NotFound, and the connection stays usable.
    let err = conn.tree(&[9; 32]).await.unwrap_err();
    assert!(
        matches!(
            err,
            DownloadError::Source(SourceError::Refusal {
                status: Status::NotFound,
                ..
            })
        ),
        "{err}"
    );
    let err = conn.request_range(&hash, 49_000, 2_000).await.unwrap_err();
    assert!(
        matches!(
            err,
            DownloadError::Source(SourceError::Refusal {
                status: Status::BadRange,
                ..
            })
        ),
        "{err}"
    );
    let tree = conn.tree(&hash).await.unwrap();
    assert_eq!(tree.size(), 50_000);
    let bytes = conn.read_verified(&tree, 20_000, 10).await.unwrap();
    assert_eq!(bytes, pattern(50_000, 2)[20_000..20_010]);

    // A malformed request: BadRequest with a message, then the close.
    let mut raw = TcpStream::connect(server.addr).await.unwrap();
    raw.write_all(&wire::encode_hello(wire::VERSION))
        .await
        .unwrap();
    let mut bad = Request {
        hash,
        kind: RequestKind::Tree,
    }
    .encode();
    bad[0] = 77;
    raw.write_all(&bad).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), raw.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(wire::decode_hello(&reply[..8]), Ok(wire::VERSION));
    let h = ResponseHeader::decode(&reply[8..]).unwrap();
    assert_eq!(h.status, Status::BadRequest);
    let msg = String::from_utf8_lossy(&reply[8 + wire::RESPONSE_LEN..]);
    assert!(msg.contains("unknown request kind 77"), "{msg}");
    server.stop().await;

    // Busy: the only slot is held by a rutella session (a silent
    // connection holds none).
    let busy = start_server(
        "127.0.0.1",
        source,
        ServerConfig {
            max_connections: 1,
            ..quick_cfg()
        },
    )
    .await;
    let _silent = TcpStream::connect(busy.addr).await.unwrap();
    let mut hog = RutellaConn::connect(busy.addr, t, t).await.unwrap();
    hog.tree(&hash).await.unwrap();
    let mut conn = RutellaConn::connect(busy.addr, t, t).await.unwrap();
    let err = conn.tree(&hash).await.unwrap_err();
    assert!(
        matches!(
            err,
            DownloadError::Source(SourceError::Refusal {
                status: Status::Busy,
                ..
            })
        ),
        "{err}"
    );
    busy.kill().await;
}

#[tokio::test]
async fn three_sources_one_killed_one_corrupting() {
    let shared = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let len = 6 * 1024 * 1024 + 1234;
    let (source, data, hash) = shared_file(shared.path(), len, 3);
    let good = start_server(
        "127.0.0.1",
        source.clone(),
        ServerConfig {
            rate_limit: Some(4 << 20),
            ..quick_cfg()
        },
    )
    .await;
    let doomed = start_server(
        "127.0.0.2",
        source.clone(),
        ServerConfig {
            rate_limit: Some(3 << 20),
            ..quick_cfg()
        },
    )
    .await;
    let flipper = start_server(
        "127.0.0.3",
        source.clone(),
        ServerConfig {
            fault: Some(Fault::FlipBits),
            ..quick_cfg()
        },
    )
    .await;
    let (doomed_addr, flipper_addr) = (doomed.addr, flipper.addr);
    let mut req = get(hash, vec![good.addr, doomed_addr, flipper_addr], out.path());
    req.max_piece = 256 * 1024;
    let (tx, mut rx) = watch::channel(Progress::default());
    let dl = tokio::spawn(fetch_by_hash(req, tx));
    // Kill the second source once a third of the file is verified.
    tokio::time::timeout(Duration::from_secs(10), async {
        while rx.borrow_and_update().done < len as u64 / 3 {
            rx.changed().await.unwrap();
        }
    })
    .await
    .unwrap();
    doomed.kill().await;
    let report = tokio::time::timeout(Duration::from_secs(20), dl)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let got = std::fs::read(&report.path).unwrap();
    assert_eq!(blake3::hash(&got).as_bytes(), &hash);
    assert_eq!(got, data);
    let by = |a: SocketAddr| report.sources.iter().find(|s| s.peer == a).unwrap().clone();
    assert_eq!(by(flipper_addr).outcome, SourceOutcome::BadData);
    assert_eq!(by(flipper_addr).bytes_verified, 0);
    assert!(
        matches!(by(doomed_addr).outcome, SourceOutcome::Failed(_)),
        "{:?}",
        by(doomed_addr)
    );
    assert!(by(doomed_addr).bytes_verified > 0);
    assert_eq!(by(good.addr).outcome, SourceOutcome::Served);
    good.stop().await;
    flipper.stop().await;
}

#[tokio::test]
async fn resume_uses_verified_data_only() {
    let shared = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let len = 2 * 1024 * 1024 + 99;
    let (source, data, hash) = shared_file(shared.path(), len, 4);
    let slow = start_server(
        "127.0.0.1",
        source.clone(),
        ServerConfig {
            rate_limit: Some(2 << 20),
            ..quick_cfg()
        },
    )
    .await;
    let mut req = get(hash, vec![slow.addr], out.path());
    req.max_piece = 128 * 1024;
    let (tx, mut rx) = watch::channel(Progress::default());
    let dl = tokio::spawn(fetch_by_hash(req.clone(), tx));
    tokio::time::timeout(Duration::from_secs(10), async {
        while rx.borrow_and_update().done < len as u64 / 2 {
            rx.changed().await.unwrap();
        }
    })
    .await
    .unwrap();
    slow.kill().await;
    let err = dl.await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            DownloadError::Exhausted(ExhaustedError::SourcesExhausted { .. })
        ),
        "{err}"
    );
    let (verified, size) = pending_progress(out.path(), "movie.mkv", &hash).unwrap();
    assert_eq!(size, len as u64);
    assert!(
        verified >= len as u64 / 2 && verified < len as u64,
        "{verified}"
    );
    // Damage one verified group on disk: it must be fetched again.
    let paths = rutella_transfer::part_paths(out.path(), "movie.mkv", &hash).unwrap();
    let mut part = std::fs::read(&paths.part).unwrap();
    part[10] ^= 0xff;
    std::fs::write(&paths.part, &part).unwrap();

    let fast = start_server("127.0.0.2", source, quick_cfg()).await;
    req.sources = vec![fast.addr];
    let report = fetch_by_hash(req, progress()).await.unwrap();
    assert_eq!(report.resumed_from, verified - 16384);
    assert_eq!(report.bytes_received, len as u64 - report.resumed_from);
    assert_eq!(std::fs::read(&report.path).unwrap(), data);
    fast.stop().await;
}

#[tokio::test]
async fn bad_sources_only_fail_with_a_clear_error() {
    let shared = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (source, _data, hash) = shared_file(shared.path(), 100_000, 5);
    let flipper = start_server(
        "127.0.0.1",
        source,
        ServerConfig {
            fault: Some(Fault::FlipBits),
            ..quick_cfg()
        },
    )
    .await;
    let closed = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let err = fetch_by_hash(
        get(hash, vec![flipper.addr, closed], out.path()),
        progress(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    match &err {
        DownloadError::Exhausted(ExhaustedError::SourcesExhausted { sources, .. }) => {
            assert_eq!(sources[0].outcome, SourceOutcome::BadData);
            assert!(matches!(sources[1].outcome, SourceOutcome::Failed(_)));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(msg.contains(&flipper.addr.to_string()), "{msg}");
    assert!(msg.contains(&closed.to_string()), "{msg}");
    flipper.stop().await;
}

/// A file past 4 GiB (sparse), read at offsets beyond 2^32 and verified.
#[tokio::test]
async fn ranges_past_4_gib_are_served_and_verified() {
    let shared = tempfile::tempdir().unwrap();
    let path = shared.path().join("huge.img");
    let size = (4u64 << 30) + 300 * 1024;
    let head = pattern(100 * 1024, 8);
    let tail = pattern(200 * 1024, 9);
    let tail_at = (4u64 << 30) + 50 * 1024;
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(size).unwrap();
        f.write_all_at(&head, 0).unwrap();
        f.write_all_at(&tail, tail_at).unwrap();
    }
    let cfg = quick_cfg();
    let trees = cfg.trees.clone();
    // The tree, computed without reading 4 GiB of holes: groups that hold
    // no written byte hash as zeros.
    let tree = tokio::task::spawn_blocking(move || {
        use rutella_transfer::tree::{group_count, group_hash, group_log_for, Tree};
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(&path).unwrap();
        let gl = group_log_for(size);
        let g = 1u64 << gl;
        let zeros = vec![0u8; g as usize];
        let mut buf = vec![0u8; g as usize];
        let written = [
            (0, head.len() as u64),
            (tail_at, tail_at + tail.len() as u64),
        ];
        let cvs: Vec<_> = (0..group_count(size, gl))
            .map(|i| {
                let (a, b) = (i * g, ((i + 1) * g).min(size));
                let data = if written.iter().any(|&(s, e)| a < e && s < b) {
                    f.read_exact_at(&mut buf[..(b - a) as usize], a).unwrap();
                    &buf[..(b - a) as usize]
                } else {
                    &zeros[..(b - a) as usize]
                };
                group_hash(data, i, size, gl)
            })
            .collect();
        let root = rutella_transfer::tree::root_from_groups(&cvs, size, gl).unwrap();
        (
            Tree::from_groups(root, size, gl, cvs).unwrap(),
            path,
            head,
            tail,
        )
    })
    .await
    .unwrap();
    let (tree, path, _head, tail) = tree;
    let hash = *tree.hash();
    // The server's cache gets the tree, so the file is hashed only once.
    trees.insert(&path, tree).unwrap();
    let source = Arc::new(MapSource::default());
    source.add_with_hash(hash, &path);
    let server = start_server("127.0.0.1", source, ServerConfig { trees, ..cfg }).await;
    let t = Duration::from_secs(30);
    let mut conn = RutellaConn::connect(server.addr, t, t).await.unwrap();
    let got_tree = conn.tree(&hash).await.unwrap();
    assert_eq!(got_tree.size(), size);
    let bytes = conn
        .read_verified(&got_tree, tail_at + 1000, 150_000)
        .await
        .unwrap();
    assert_eq!(bytes, tail[1000..151_000]);
    let bytes = conn.read_verified(&got_tree, size - 10, 10).await.unwrap();
    assert_eq!(bytes, vec![0u8; 10]);
    // The raw range header carries the 64-bit size and offset.
    let stated = conn.request_range(&hash, tail_at, 4).await.unwrap();
    assert_eq!(stated, size);
    let mut four = [0u8; 4];
    let mut n = 0;
    while n < 4 {
        n += conn.read_some(&mut four[n..]).await.unwrap();
    }
    assert_eq!(four, tail[..4]);
    server.stop().await;
}

/// The child process of `resumes_after_sigkill`: downloads what `spec`
/// says, until killed. Not a test of its own; the test binary runs it when
/// `resumes_after_sigkill` starts it with `RUTELLA_TRANSFER_CHILD` set.
async fn sigkill_child(spec: &str) {
    let parts: Vec<&str> = spec.split('|').collect();
    let addr: SocketAddr = parts[0].parse().unwrap();
    let mut hash = [0u8; 32];
    for (i, b) in hash.iter_mut().enumerate() {
        *b = u8::from_str_radix(&parts[1][2 * i..2 * i + 2], 16).unwrap();
    }
    let mut req = get(hash, vec![addr], Path::new(parts[2]));
    req.max_piece = 64 * 1024;
    let _ = fetch_by_hash(req, progress()).await;
}

#[tokio::test]
async fn resumes_after_sigkill() {
    if let Ok(spec) = std::env::var("RUTELLA_TRANSFER_CHILD") {
        sigkill_child(&spec).await;
        return;
    }
    let shared = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let len = 4 * 1024 * 1024 + 17;
    let (source, data, hash) = shared_file(shared.path(), len, 6);
    let slow = start_server(
        "127.0.0.1",
        source.clone(),
        ServerConfig {
            rate_limit: Some(1 << 20),
            ..quick_cfg()
        },
    )
    .await;
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    let spec = format!("{}|{}|{}", slow.addr, hex, out.path().display());
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "resumes_after_sigkill",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RUTELLA_TRANSFER_CHILD", spec)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait (bounded) until the child has recorded some verified data. The
    // child is another process and announces nothing: its files are polled.
    let mut seen = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Some((v, _)) = pending_progress(out.path(), "movie.mkv", &hash) {
            if v >= 512 * 1024 {
                seen = v;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(seen > 0, "the child recorded no progress");
    slow.kill().await;

    let fast = start_server("127.0.0.2", source, quick_cfg()).await;
    let report = fetch_by_hash(get(hash, vec![fast.addr], out.path()), progress())
        .await
        .unwrap();
    assert!(
        report.resumed_from >= seen,
        "{} < {seen}",
        report.resumed_from
    );
    assert!(report.resumed_from < len as u64);
    assert_eq!(report.bytes_received, len as u64 - report.resumed_from);
    let got = std::fs::read(&report.path).unwrap();
    assert_eq!(blake3::hash(&got).as_bytes(), &hash);
    assert_eq!(got, data);
    fast.stop().await;
}

/// A relay between the downloader and a server that counts, per
/// connection, the bytes the server sent.
async fn counting_relay(to: SocketAddr) -> (SocketAddr, tokio::sync::watch::Receiver<Vec<u64>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (counts, seen) = tokio::sync::watch::channel(Vec::new());
    let c = Arc::new(counts);
    tokio::spawn(async move {
        while let Ok((mut down, _)) = listener.accept().await {
            let c = Arc::clone(&c);
            tokio::spawn(async move {
                let mut up = TcpStream::connect(to).await.unwrap();
                let mut k = 0;
                c.send_modify(|v| {
                    v.push(0);
                    k = v.len() - 1;
                });
                if let Ok((_, from_server)) =
                    tokio::io::copy_bidirectional(&mut down, &mut up).await
                {
                    c.send_modify(|v| v[k] = from_server);
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn a_single_source_can_be_read_over_two_connections() {
    let shared = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (source, data, hash) = shared_file(shared.path(), 4 * 1024 * 1024, 21);
    let server = start_server("127.0.0.1", source, quick_cfg()).await;
    let (relay, mut counts) = counting_relay(server.addr).await;
    let mut req = get(hash, vec![relay], out.path());
    req.single_source_connections = 2;
    let report = fetch_by_hash(req, progress()).await.unwrap();
    assert_eq!(std::fs::read(&report.path).unwrap(), data);
    // The relay records a connection's count when it closes.
    let busy = |v: &Vec<u64>| v.iter().filter(|&&n| n >= 512 * 1024).count();
    let _ = tokio::time::timeout(Duration::from_secs(20), counts.wait_for(|v| busy(v) >= 2)).await;
    let v = counts.borrow().clone();
    assert_eq!(busy(&v), 2, "two connections carried the file: {v:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_slow_source_does_not_hold_up_the_end() {
    let shared = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (source, data, hash) = shared_file(shared.path(), 2 * 1024 * 1024, 22);
    let fast = start_server("127.0.0.1", source.clone(), quick_cfg()).await;
    let slow = start_server(
        "127.0.0.2",
        source,
        ServerConfig {
            rate_limit: Some(4096),
            ..quick_cfg()
        },
    )
    .await;
    let mut req = get(hash, vec![fast.addr, slow.addr], out.path());
    // A stall would end the slow source only after this long.
    req.idle_timeout = Duration::from_secs(60);
    // The slow source's piece alone would take a minute at its rate.
    let report = tokio::time::timeout(Duration::from_secs(20), fetch_by_hash(req, progress()))
        .await
        .expect(
            "the download ends once every byte is verified, without waiting for the slow source",
        )
        .unwrap();
    assert_eq!(std::fs::read(&report.path).unwrap(), data);
    let fast_report = report.sources.iter().find(|s| s.peer == fast.addr).unwrap();
    assert!(fast_report.bytes_verified > data.len() as u64 / 2);
    fast.stop().await;
    slow.stop().await;
}

#[tokio::test]
async fn sources_found_later_join_a_running_download() {
    let shared = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let len = 3 * 1024 * 1024;
    let (source, data, hash) = shared_file(shared.path(), len, 23);
    // The first source alone would take about six seconds.
    let slow = start_server(
        "127.0.0.1",
        source.clone(),
        ServerConfig {
            rate_limit: Some(256 * 1024),
            ..quick_cfg()
        },
    )
    .await;
    let fast = start_server("127.0.0.2", source, quick_cfg()).await;
    let mut req = get(hash, vec![slow.addr], out.path());
    req.max_piece = 256 * 1024;
    let (more_tx, more) = tokio::sync::mpsc::channel(8);
    let (tx, mut rx) = watch::channel(Progress::default());
    let dl = tokio::spawn(rutella_transfer::fetch_by_hash_growing(req, tx, more));
    // Once the download runs, the second source turns up (twice, and the
    // first again: each joins once).
    tokio::time::timeout(Duration::from_secs(10), async {
        while rx.borrow_and_update().done == 0 {
            rx.changed().await.unwrap();
        }
    })
    .await
    .unwrap();
    for peer in [fast.addr, fast.addr, slow.addr] {
        more_tx.send(peer).await.unwrap();
    }
    let report = tokio::time::timeout(Duration::from_secs(20), dl)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(std::fs::read(&report.path).unwrap(), data);
    assert_eq!(report.sources.len(), 2, "{:?}", report.sources);
    let by = |a: SocketAddr| report.sources.iter().find(|s| s.peer == a).unwrap().clone();
    assert!(
        by(fast.addr).bytes_verified > len as u64 / 2,
        "the later source did most of the work: {:?}",
        report.sources
    );
    drop(more_tx);
    slow.stop().await;
    fast.stop().await;
}

/// Downloads from `n` full-speed sources and from sources of unequal
/// speed: the bytes received stay within 2% of the file (the endgame
/// splits what is left instead of fetching it twice).
#[tokio::test]
async fn several_sources_receive_the_file_about_once() {
    let shared = tempfile::tempdir().unwrap();
    let len = 16 * 1024 * 1024 + 4321;
    let (source, data, hash) = shared_file(shared.path(), len, 31);
    let ips = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
    for (case, rates) in [
        vec![None, None],
        vec![None, None, None],
        vec![None, Some(8 << 20)],
        vec![Some(8 << 20), Some(4 << 20), Some(16 << 20)],
    ]
    .into_iter()
    .enumerate()
    {
        let mut servers = Vec::new();
        for (ip, rate) in ips.iter().zip(&rates) {
            let cfg = ServerConfig {
                rate_limit: *rate,
                ..quick_cfg()
            };
            servers.push(start_server(ip, source.clone(), cfg).await);
        }
        let out = tempfile::tempdir().unwrap();
        let req = get(hash, servers.iter().map(|s| s.addr).collect(), out.path());
        let report = tokio::time::timeout(Duration::from_secs(60), fetch_by_hash(req, progress()))
            .await
            .expect("the download ends")
            .unwrap();
        assert_eq!(std::fs::read(&report.path).unwrap(), data);
        let over = report.bytes_received as f64 / len as f64 - 1.0;
        println!(
            "case {case} ({rates:?}): received {} for {len} ({:+.3}%)",
            report.bytes_received,
            over * 100.0
        );
        assert!(
            report.bytes_received <= len as u64 + len as u64 / 50,
            "case {case} ({rates:?}): received {} for a file of {len}",
            report.bytes_received
        );
        for s in servers {
            s.stop().await;
        }
    }
}
