//! One file from several Gnutella servents at once, on loopback: ranges
//! in parallel, a source learned from `X-Alt`, a source that serves
//! corrupt bytes found out by the SHA-1 and dropped, a source that closes
//! in the middle of each range dropped, the file byte-exact.

use rutella_gnutella::download::{DownloadConfig, DownloadError};
use rutella_gnutella::http::{self, Target};
use rutella_gnutella::multi::{multi_download, MultiConfig};
use rutella_gnutella::testkit::{ServedFile, TestServent};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const LIMIT: Duration = Duration::from_secs(20);

fn sha1(data: &[u8]) -> [u8; 20] {
    sha1_smol::Sha1::from(data).digest().bytes()
}

/// A servent that answers each range request with the right head and
/// half the body, then closes (at most 64 connections).
async fn half_servent(data: Vec<u8>) -> SocketAddrV4 {
    let l = TcpListener::bind((IP, 0)).await.unwrap();
    let addr = match l.local_addr().unwrap() {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => unreachable!(),
    };
    tokio::spawn(async move {
        for _ in 0..64 {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let data = data.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let req = loop {
                    let mut c = [0u8; 1024];
                    let Ok(n) = s.read(&mut c).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&c[..n]);
                    match http::parse_request(&buf) {
                        Ok(Some((r, _))) => break r,
                        Ok(None) => {}
                        Err(_) => return,
                    }
                };
                let Ok(Some(r)) = req.range() else { return };
                let Some((a, b)) = r.resolve(data.len() as u64) else {
                    return;
                };
                let head = format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {}-{}/{}\r\nContent-Length: {}\r\n\r\n",
                    a,
                    b - 1,
                    data.len(),
                    b - a
                );
                let _ = s.write_all(head.as_bytes()).await;
                let half = (a + (b - a) / 2) as usize;
                let _ = s.write_all(&data[a as usize..half]).await;
            });
        }
    });
    addr
}

fn quick() -> DownloadConfig {
    DownloadConfig {
        connect_timeout: Duration::from_secs(2),
        header_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        ..DownloadConfig::default()
    }
}

#[tokio::test]
async fn several_sources_one_corrupt_one_breaking() {
    let dir = tempfile::tempdir().unwrap();
    let good: Vec<u8> = (0..200_000u32).map(|i| (i * 29 % 251) as u8).collect();
    let mut bad = good.clone();
    for i in (0..bad.len()).step_by(4096) {
        bad[i] ^= 0x40;
    }
    let hash = sha1(&good);
    let (gp, bp) = (dir.path().join("good"), dir.path().join("bad"));
    std::fs::write(&gp, &good).unwrap();
    std::fs::write(&bp, &bad).unwrap();
    let file = |path| ServedFile {
        index: 1,
        name: "f.bin".into(),
        path,
        size: good.len() as u64,
        sha1: hash,
    };
    let breaking = half_servent(good.clone()).await;
    // The good servent names the breaking one in X-Alt; the download is
    // given only the good and the corrupt one.
    let a = TestServent::start_with_alts(vec![file(gp)], vec![breaking])
        .await
        .unwrap();
    let b = TestServent::start(vec![file(bp)]).await.unwrap();
    let (part, dest) = (dir.path().join("out.part"), dir.path().join("out.bin"));
    let multi = MultiConfig {
        chunk: 8192,
        max_parallel: 4,
        max_sources: 8,
        max_failures: 2,
    };
    let got = tokio::time::timeout(
        LIMIT,
        multi_download(
            vec![SocketAddr::V4(a.addr()), SocketAddr::V4(b.addr())],
            Target::Sha1(hash),
            hash,
            good.len() as u64,
            None,
            &part,
            &dest,
            &quick(),
            &multi,
            &|_| {},
        ),
    )
    .await
    .unwrap()
    .expect("downloaded");
    assert_eq!(std::fs::read(&dest).unwrap(), good, "byte-exact");
    assert!(!part.exists());
    let of = |x: SocketAddrV4| {
        got.sources
            .iter()
            .find(|s| s.addr == SocketAddr::V4(x))
            .cloned()
            .unwrap_or_else(|| panic!("{x} not a source: {got:?}"))
    };
    assert_eq!(of(a.addr()).dropped, None, "{got:?}");
    assert!(of(a.addr()).bytes > 0);
    let bad_src = of(b.addr());
    assert!(
        bad_src
            .dropped
            .as_deref()
            .is_some_and(|r| r.contains("SHA-1")),
        "the corrupt source is dropped: {got:?}"
    );
    let brk = of(breaking);
    assert!(
        brk.dropped.is_some(),
        "the breaking source is dropped: {got:?}"
    );
    assert_eq!(brk.bytes, 0);
}

#[tokio::test]
async fn only_corrupt_sources_fail_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let good: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let mut bad = good.clone();
    bad[100] ^= 1;
    let hash = sha1(&good);
    let bp = dir.path().join("bad");
    std::fs::write(&bp, &bad).unwrap();
    let b = TestServent::start(vec![ServedFile {
        index: 1,
        name: "f.bin".into(),
        path: bp,
        size: good.len() as u64,
        sha1: hash,
    }])
    .await
    .unwrap();
    let (part, dest) = (dir.path().join("out.part"), dir.path().join("out.bin"));
    let e = tokio::time::timeout(
        LIMIT,
        multi_download(
            vec![SocketAddr::V4(b.addr())],
            Target::Sha1(hash),
            hash,
            good.len() as u64,
            None,
            &part,
            &dest,
            &quick(),
            &MultiConfig {
                chunk: 8192,
                ..MultiConfig::default()
            },
            &|_| {},
        ),
    )
    .await
    .unwrap()
    .expect_err("no good copy");
    assert!(matches!(e, DownloadError::WrongHash), "{e:?}");
    assert!(!part.exists() && !dest.exists());
}
