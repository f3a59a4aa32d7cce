//! The user's control over downloads: pause and resume (from the verified
//! data), cancel (the partial data goes), remove and clear finished rows.
//!
//! Address plan: 127.0.52.0/24.

mod common;
use common::{download_until_verified, pattern, slow_source};
use rutella_node::{ControlError, DownloadState, Node, NodeConfig};
use std::path::Path;
use std::time::Duration;

/// Served slowly enough (32 MiB at 8 MiB/s: four seconds) that the
/// download is still running when it is paused.
const LEN: usize = 32 << 20;
const RATE: u64 = 8 << 20;

/// Verified bytes waited for before pausing.
const KEEP: u64 = 4 << 20;

fn config(last: u8) -> NodeConfig {
    common::config(52, last)
}

/// A node sharing one slow file; returns it, the file and its hash.
async fn source(last: u8, share: &Path) -> (Node, Vec<u8>, [u8; 32]) {
    let data = pattern(LEN, u64::from(last));
    let (node, hash) = slow_source(config(last), share, &data, RATE).await;
    (node, data, hash)
}

/// Waits (bounded) until row `id` is in the state `ok` accepts.
async fn wait_state(
    client: &rutella_node::Client,
    id: u64,
    ok: impl Fn(Option<&DownloadState>) -> bool,
) {
    let mut events = client.subscribe();
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let rows = client.downloads();
            if ok(rows.iter().find(|d| d.id == id).map(|d| &d.state)) {
                return;
            }
            // Pauses and cancels announce nothing: the table is read
            // again after any event or 50 ms.
            let _ = tokio::time::timeout(Duration::from_millis(50), events.recv()).await;
        }
    })
    .await
    .expect("the download did not reach the state in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_download_by_hash_resumes_from_its_verified_data() {
    let share = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (src, data, hash) = source(1, share.path()).await;
    let from = src.client().tcp_addr();
    let node = Node::start(NodeConfig {
        downloads: Some(out.path().to_path_buf()),
        ..config(2)
    })
    .await
    .unwrap();
    let client = node.client();
    let (handle, _progress) = download_until_verified(&client, hash, LEN as u64, from, KEEP).await;
    let id = handle.id;

    client.pause(id).await.unwrap();
    wait_state(&client, id, |s| s == Some(&DownloadState::Paused)).await;
    assert!(handle.wait().await.is_err(), "a paused download completed");
    // Paused: not running, its verified pieces on disk.
    assert_eq!(client.pause(id).await, Err(ControlError::NotRunning(id)));
    let (verified, size) = rutella_transfer::pending_progress(out.path(), "big.bin", &hash)
        .expect("the verified pieces were not recorded");
    assert_eq!(size, LEN as u64);
    assert!(verified >= KEEP, "only {verified} bytes recorded");
    assert!(!out.path().join("big.bin").exists());

    let again = client.resume(id).unwrap();
    assert_eq!(again.id, id, "a resume keeps the row");
    let report = tokio::time::timeout(Duration::from_secs(30), again.wait())
        .await
        .expect("the resumed download did not end in 30 s")
        .expect("the resumed download failed");
    assert!(
        report.resumed_from >= verified,
        "resumed from {} though {verified} bytes were verified",
        report.resumed_from
    );
    assert_eq!(std::fs::read(&report.path).unwrap(), data);
    assert_eq!(client.resume(id).err(), Some(ControlError::Done(id)));

    // Finished rows can be cleared.
    assert_eq!(client.clear_finished(), 1);
    assert!(client.downloads().is_empty());
    node.shutdown().await;
    src.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_download_leaves_nothing_and_failed_rows_can_be_removed() {
    let share = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (src, _data, hash) = source(3, share.path()).await;
    let from = src.client().tcp_addr();
    let node = Node::start(NodeConfig {
        downloads: Some(out.path().to_path_buf()),
        ..config(4)
    })
    .await
    .unwrap();
    let client = node.client();
    let (handle, _progress) = download_until_verified(&client, hash, LEN as u64, from, KEEP).await;
    let id = handle.id;
    client.cancel(id).await.unwrap();
    wait_state(&client, id, |s| s.is_none()).await;
    assert!(handle.wait().await.is_err());
    let left: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with("big.bin"))
        .collect();
    assert!(left.is_empty(), "a cancelled download left {left:?}");

    // A classic download from nobody fails; its row can be removed.
    let nobody = "127.0.52.99:9".parse().unwrap();
    let failed = client.download(nobody, "missing.txt");
    let fid = failed.id;
    assert!(failed.wait().await.is_err());
    assert!(matches!(
        client
            .downloads()
            .iter()
            .find(|d| d.id == fid)
            .map(|d| &d.state),
        Some(DownloadState::Failed(_))
    ));
    assert_eq!(client.remove(fid), Ok(()));
    assert!(client.downloads().is_empty());
    assert_eq!(client.remove(fid), Err(ControlError::NoSuch(fid)));
    node.shutdown().await;
    src.shutdown().await;
}

/// `download_limit` holds for all downloads together: two files of 1 MiB
/// at once, at 512 KiB/s in all, take about four seconds (each alone
/// within the limit would take two).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_download_limit_is_shared_by_every_download() {
    const LIMIT: u64 = 512 << 10;
    let share = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut hashes = Vec::new();
    for i in 0..2u64 {
        let data = pattern(1 << 20, 10 + i);
        std::fs::write(share.path().join(format!("f{i}.bin")), &data).unwrap();
        hashes.push(*blake3::hash(&data).as_bytes());
    }
    let src = Node::start(NodeConfig {
        shares: vec![share.path().to_path_buf()],
        ..config(5)
    })
    .await
    .unwrap();
    let lib = src.client().library().clone();
    let hashed = tokio::task::spawn_blocking(move || lib.wait_idle(Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(hashed);
    let from = src.client().tcp_addr();
    let node = Node::start(NodeConfig {
        downloads: Some(out.path().to_path_buf()),
        download_limit: Some(LIMIT),
        ..config(6)
    })
    .await
    .unwrap();
    let client = node.client();
    let start = std::time::Instant::now();
    let a = client.download_hash(hashes[0], "f0.bin", Some(1 << 20), vec![from]);
    let b = client.download_hash(hashes[1], "f1.bin", Some(1 << 20), vec![from]);
    let (ra, rb) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(a.wait(), b.wait())
    })
    .await
    .expect("the downloads did not end in 30 s");
    ra.unwrap();
    rb.unwrap();
    let took = start.elapsed();
    // 2 MiB at 512 KiB/s, less a burst of 1/10 s: at least 3.9 s.
    assert!(
        took >= Duration::from_millis(3500),
        "2 MiB in {took:?}: faster than the limit"
    );
    node.shutdown().await;
    src.shutdown().await;
}
