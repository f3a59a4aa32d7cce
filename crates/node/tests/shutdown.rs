//! A node owns its downloads: shutdown stops them, waits for them, and
//! leaves what they verified for the next start to resume.

mod common;
use common::{download_until_verified, pattern, slow_source};
use rutella_node::{DownloadState, Node, NodeConfig, NodeError, NodeEvent};
use std::path::Path;
use std::time::Duration;

/// Large enough, and served slowly enough (48 MiB at 8 MiB/s: six
/// seconds), that the download is still running when the node stops.
const LEN: usize = 48 << 20;
const RATE: u64 = 8 << 20;

/// Verified bytes the first run waits for before it stops.
const KEEP: u64 = 4 << 20;

fn config(last: u8) -> NodeConfig {
    common::config(50, last)
}

fn downloader(last: u8, dir: &Path) -> NodeConfig {
    NodeConfig {
        downloads: Some(dir.to_path_buf()),
        ..config(last)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_a_download_by_hash_and_the_next_start_resumes_it() {
    let share = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let data = pattern(LEN, 3);
    let (source, hash) = slow_source(config(1), share.path(), &data, RATE).await;
    let from = source.client().tcp_addr();

    // First run: stopped while the download runs.
    let node = Node::start(downloader(2, out.path())).await.unwrap();
    let client = node.client();
    let (handle, progress) = download_until_verified(&client, hash, LEN as u64, from, KEEP).await;
    tokio::time::timeout(Duration::from_secs(10), node.shutdown())
        .await
        .expect("shutdown did not return within 10 s");
    // The download's threads hold the only senders of its progress: all
    // of them have ended once shutdown returned, so nothing writes to the
    // partial file any more.
    assert!(
        progress.has_changed().is_err(),
        "the download still runs after shutdown"
    );
    let kept = progress.borrow().done;
    assert!(kept >= KEEP && kept < LEN as u64, "kept {kept}");
    assert!(matches!(handle.wait().await, Err(NodeError::Stopped)));
    let row = client.downloads().pop().unwrap();
    assert!(
        matches!(row.state, DownloadState::Failed(_)),
        "{:?}",
        row.state
    );
    assert!(!out.path().join("big.bin").exists());

    // Second run on the same folder: the journal resumes the download,
    // from the verified data.
    let node = Node::start(downloader(3, out.path())).await.unwrap();
    let client = node.client();
    let mut events = client.subscribe();
    let done = |c: &rutella_node::Client| {
        c.downloads()
            .into_iter()
            .find(|d| matches!(d.state, DownloadState::Done(_)))
    };
    let row = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(row) = done(&client) {
                return row;
            }
            match events.recv().await {
                Ok(NodeEvent::DownloadFailed { reason, .. }) => panic!("resume failed: {reason}"),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .expect("the resumed download did not finish within 30 s");
    assert!(
        row.received <= LEN as u64 - kept,
        "received {} of {LEN} on resume, {kept} kept",
        row.received
    );
    assert!(row.received + kept >= LEN as u64 - (1 << 20));
    let DownloadState::Done(path) = row.state else {
        unreachable!()
    };
    assert_eq!(std::fs::read(path).unwrap(), data);
    node.shutdown().await;
    source.shutdown().await;
}
