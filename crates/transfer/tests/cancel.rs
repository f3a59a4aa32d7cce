//! Stopping a download by hash: dropped, or cancelled and resumed.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{pattern, quick_cfg, start_server, MapSource};
use rutella_transfer::{
    fetch_by_hash, fetch_by_hash_until, DownloadError, HashGet, Progress, ServerConfig,
};
use tokio::sync::{mpsc, oneshot, watch};

/// A file served slowly enough that a download is still running when the
/// test stops it: 48 MiB at 8 MiB/s, six seconds in all.
const LEN: usize = 48 << 20;
const RATE: u64 = 8 << 20;

fn shared_file(dir: &Path) -> (Arc<MapSource>, Vec<u8>, [u8; 32]) {
    let data = pattern(LEN, 7);
    let path = dir.join("big.bin");
    std::fs::write(&path, &data).unwrap();
    let source = Arc::new(MapSource::default());
    let hash = source.add_hashed("big.bin", &path);
    (source, data, hash)
}

fn get(hash: [u8; 32], server: std::net::SocketAddr, out: &Path) -> HashGet {
    HashGet {
        connect_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(5),
        checkpoint_every: Duration::from_millis(20),
        ..HashGet::new(hash, vec![server], out.to_owned(), "big.bin")
    }
}

/// Verified bytes a test waits for before it stops the download.
const KEEP: u64 = 4 << 20;

/// Waits until [`KEEP`] verified bytes were written.
async fn first_progress(rx: &mut watch::Receiver<Progress>) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while rx.borrow_and_update().done < KEEP {
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("no progress within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_download_ends_its_threads() {
    let shared = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (source, _data, hash) = shared_file(shared.path());
    let cfg = ServerConfig {
        rate_limit: Some(RATE),
        ..quick_cfg()
    };
    let server = start_server("127.0.9.1", source, cfg).await;
    let (tx, mut rx) = watch::channel(Progress::default());
    let dl = tokio::spawn(fetch_by_hash(get(hash, server.addr, out.path()), tx));
    first_progress(&mut rx).await;
    let done_then = rx.borrow().done;
    assert!(done_then < LEN as u64, "the download is still running");
    // Dropping the download's future (here by aborting its task).
    dl.abort();
    assert!(dl.await.unwrap_err().is_cancelled());
    // The connections' threads hold the last senders of the progress: the
    // channel closes once every one of them has ended. Without the stop on
    // drop they would run on to the end of the file (seconds more).
    let closed = tokio::time::timeout(Duration::from_secs(2), async {
        while rx.changed().await.is_ok() {}
    })
    .await;
    assert!(closed.is_ok(), "the download's threads still run");
    assert!(
        rx.borrow().done < LEN as u64,
        "stopped before the end of the file"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_download_returns_after_its_threads_and_resumes() {
    let shared = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (source, data, hash) = shared_file(shared.path());
    let cfg = ServerConfig {
        rate_limit: Some(RATE),
        ..quick_cfg()
    };
    let server = start_server("127.0.9.2", source, cfg).await;
    let (tx, mut rx) = watch::channel(Progress::default());
    let (_more_tx, more) = mpsc::channel(1);
    let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
    let cancel = async move {
        let _ = cancel_rx.await;
    };
    let dl = tokio::spawn(fetch_by_hash_until(
        get(hash, server.addr, out.path()),
        tx,
        more,
        cancel,
    ));
    first_progress(&mut rx).await;
    cancel_tx.send(()).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), dl)
        .await
        .expect("cancelled download did not return")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, DownloadError::Cancelled),
        "unexpected error: {err}"
    );
    // Every thread has ended by the time it returned: no sender is left.
    assert!(
        rx.has_changed().is_err(),
        "a thread of the download still runs"
    );
    let kept = rx.borrow().done;
    assert!(kept >= KEEP && kept < LEN as u64, "kept {kept}");

    // The next call resumes from the verified data, and the lock is free.
    let (tx, _rx) = watch::channel(Progress::default());
    let report = tokio::time::timeout(
        Duration::from_secs(30),
        fetch_by_hash(get(hash, server.addr, out.path()), tx),
    )
    .await
    .expect("the resumed download did not finish in 30 s")
    .unwrap();
    assert!(report.resumed_from >= kept, "{report:?}");
    assert!(report.bytes_received <= LEN as u64 - kept, "{report:?}");
    assert_eq!(std::fs::read(&report.path).unwrap(), data);
    server.stop().await;
}
