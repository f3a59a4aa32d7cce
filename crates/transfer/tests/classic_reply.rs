//! A classic download checks the reply before it writes anything: a reply
//! that cannot be a classic byte count (an HTTP server's answer) or a count
//! beyond the size the search answer listed is an error that leaves no
//! partial file. The "peers" are fake servers on loopback.

use rutella_transfer::{classic_download, ClassicGet, DownloadError, Progress, SourceError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server that reads one request and answers `reply`, then closes.
async fn fake_peer(reply: Vec<u8>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        if let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 512];
            // The partial size and the name.
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
            let _ = s.write_all(&reply).await;
            let _ = s.shutdown().await;
        }
    });
    addr
}

fn get(peer: std::net::SocketAddr, dir: &std::path::Path, listed: Option<u64>) -> ClassicGet {
    ClassicGet {
        peer,
        name: "movie.mkv".into(),
        downloads_dir: dir.to_path_buf(),
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        align_resume: true,
        listed_size: listed,
        dialer: None,
        limit: None,
    }
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test]
async fn an_http_answer_is_refused_and_leaves_no_part() {
    let page = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot here\n".to_vec();
    let peer = fake_peer(page).await;
    let dir = tempfile::tempdir().unwrap();
    let (tx, _rx) = tokio::sync::watch::channel(Progress::default());
    let e = classic_download(get(peer, dir.path(), None), tx)
        .await
        .unwrap_err();
    assert!(
        matches!(e, DownloadError::Source(SourceError::NotClassic { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("not a classic answer"), "{e}");
    assert_eq!(files(dir.path()), Vec::<String>::new());
}

#[tokio::test]
async fn a_count_beyond_the_listed_size_is_refused_and_leaves_no_part() {
    let mut reply = 5000u32.to_le_bytes().to_vec();
    reply.extend(std::iter::repeat_n(7u8, 5000));
    let peer = fake_peer(reply.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let (tx, _rx) = tokio::sync::watch::channel(Progress::default());
    let e = classic_download(get(peer, dir.path(), Some(4000)), tx)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            DownloadError::Source(SourceError::TooLarge {
                announced: 5000,
                listed: 4000,
                ..
            })
        ),
        "{e}"
    );
    assert_eq!(files(dir.path()), Vec::<String>::new());

    // The same reply for the size listed is a download.
    let peer = fake_peer(reply).await;
    let (tx, _rx) = tokio::sync::watch::channel(Progress::default());
    let report = classic_download(get(peer, dir.path(), Some(5000)), tx)
        .await
        .unwrap();
    assert_eq!(report.size, 5000);
    assert_eq!(files(dir.path()), vec!["movie.mkv".to_string()]);
}
