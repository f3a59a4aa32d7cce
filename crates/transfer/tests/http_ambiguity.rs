//! With an HTTP taker on the port, a classic request whose partial size
//! spells `GET ` or `HEAD` (about 0.5 and 1.1 GB into a file) is still
//! served as classic, and a real HTTP request still goes to the taker.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{pattern, quick_cfg, start_server, MapSource};
use rutella_transfer::{HttpHook, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(10);

/// A taker that records what it was handed and answers a fixed reply.
fn hook(seen: Arc<Mutex<Vec<Vec<u8>>>>) -> HttpHook {
    HttpHook(Arc::new(move |mut stream, _peer, prefix| {
        let seen = seen.clone();
        Box::pin(async move {
            seen.lock().unwrap().push(prefix);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await;
            0
        })
    }))
}

/// A sparse file of `size` bytes whose last `tail.len()` bytes are `tail`.
fn sparse(dir: &std::path::Path, name: &str, size: u64, tail: &[u8]) -> std::path::PathBuf {
    use std::io::{Seek, SeekFrom, Write};
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    f.set_len(size).unwrap();
    f.seek(SeekFrom::Start(size - tail.len() as u64)).unwrap();
    f.write_all(tail).unwrap();
    path
}

async fn classic(addr: std::net::SocketAddr, partial: [u8; 4], name: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&partial).await.unwrap();
    s.write_all(name.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut out))
        .await
        .expect("an answer in time")
        .unwrap();
    out
}

#[tokio::test]
async fn classic_requests_spelling_get_or_head_are_served_as_classic() {
    let dir = tempfile::tempdir().unwrap();
    let source = Arc::new(MapSource::default());
    let tail = pattern(1000, 7);
    for (partial, name) in [(*b"GET ", "music/get.bin"), (*b"HEAD", "music/head.bin")] {
        let at = u64::from(u32::from_le_bytes(partial));
        let path = sparse(
            dir.path(),
            name.rsplit('/').next().unwrap(),
            at + 1000,
            &tail,
        );
        source.add(name, &path);
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = start_server(
        "127.0.0.1",
        source,
        ServerConfig {
            http: Some(hook(seen.clone())),
            ..quick_cfg()
        },
    )
    .await;
    for (partial, name) in [(*b"GET ", "music/get.bin"), (*b"HEAD", "music/head.bin")] {
        let got = classic(server.addr, partial, name).await;
        assert_eq!(&got[..4], &1000u32.to_le_bytes(), "{name}: a classic count");
        assert_eq!(&got[4..], &tail[..], "{name}: the bytes from the offset on");
    }
    // A classic name that reads like the start of a request line is
    // classic once nothing more comes (here: an absolute name, not found).
    let got = classic(server.addr, *b"GET ", "/music/get.bin").await;
    assert_eq!(got, 0u32.to_le_bytes());
    assert!(seen.lock().unwrap().is_empty(), "nothing went to HTTP");

    // Real HTTP still goes to the taker, with its whole request line.
    for req in [
        &b"GET / HTTP/1.1\r\nAccept: application/x-gnutella-packets\r\n\r\n"[..],
        b"HEAD /uri-res/N2R?urn:sha1:X HTTP/1.0\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(req).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(LIMIT, s.read_to_end(&mut out))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(out.starts_with(b"HTTP/1.1 200 OK"));
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].starts_with(b"GET / HTTP/1.1\r\n"));
    assert!(seen[1].starts_with(b"HEAD /uri-res/N2R?urn:sha1:X HTTP/1.0\r\n"));
    server.stop().await;
}
