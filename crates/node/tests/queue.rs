//! The download queue: a node runs at most `max_active_downloads` at once;
//! further downloads wait as queued and start in the list's order, which
//! the user changes with `move_download`. And per-upload progress: the
//! source's `uploads()` shows the bytes sent of a slowed upload rising.
//!
//! Address plan: 127.0.83.0/24.

mod common;
use common::pattern;
use rutella_node::{DownloadState, Node, NodeConfig, NodeEvent};
use std::path::Path;
use std::time::Duration;

/// Each file takes about half a second at the source's rate.
const LEN: usize = 2 << 20;
const RATE: u64 = 4 << 20;

fn config(last: u8) -> NodeConfig {
    common::config(83, last)
}

/// A node sharing `names`, each served at `RATE`; returns it and the
/// files' hashes.
async fn source(last: u8, share: &Path, names: &[&str]) -> (Node, Vec<[u8; 32]>) {
    let mut hashes = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let data = pattern(LEN, i as u64 + 1);
        std::fs::write(share.join(n), &data).unwrap();
        hashes.push(*blake3::hash(&data).as_bytes());
    }
    let node = Node::start(NodeConfig {
        shares: vec![share.to_path_buf()],
        upload_rate_limit: Some(RATE),
        ..config(last)
    })
    .await
    .unwrap();
    let lib = node.client().library().clone();
    let hashed = tokio::task::spawn_blocking(move || lib.wait_idle(Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(hashed, "the source did not hash its files within 20 s");
    (node, hashes)
}

fn state_of(client: &rutella_node::Client, id: u64) -> Option<DownloadState> {
    client
        .downloads()
        .into_iter()
        .find(|d| d.id == id)
        .map(|d| d.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_downloads_start_one_at_a_time_in_the_order_of_the_list() {
    let share = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let names = ["a.bin", "b.bin", "c.bin", "d.bin"];
    let (src, hashes) = source(1, share.path(), &names).await;
    let from = src.client().tcp_addr();
    let node = Node::start(NodeConfig {
        downloads: Some(out.path().to_path_buf()),
        max_active_downloads: 1,
        ..config(2)
    })
    .await
    .unwrap();
    let client = node.client();
    assert_eq!(client.max_active_downloads(), Some(1));
    let mut events = client.subscribe();
    let ids: Vec<u64> = names
        .iter()
        .zip(&hashes)
        .map(|(n, h)| client.download_hash(*h, n, Some(LEN as u64), vec![from]).id)
        .collect();
    let (a, b, c, d) = (ids[0], ids[1], ids[2], ids[3]);
    // One runs; the others wait.
    assert_eq!(state_of(&client, a), Some(DownloadState::Running));
    for id in [b, c, d] {
        assert_eq!(state_of(&client, id), Some(DownloadState::Queued), "{id}");
    }
    // c goes before b; d is paused while queued (and so never starts).
    client.move_download(c, 1).unwrap();
    let order: Vec<u64> = client.downloads().iter().map(|x| x.id).collect();
    assert_eq!(order, vec![a, c, b, d]);
    client.pause(d).await.unwrap();
    assert_eq!(state_of(&client, d), Some(DownloadState::Paused));

    // The order they complete in, and that at most one runs at a time.
    let mut finished = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while finished.len() < 3 {
            let running = client
                .downloads()
                .iter()
                .filter(|x| x.state == DownloadState::Running)
                .count();
            assert!(running <= 1, "{running} downloads ran at once");
            match tokio::time::timeout(Duration::from_millis(50), events.recv()).await {
                Ok(Ok(NodeEvent::DownloadDone { id, .. })) => finished.push(id),
                Ok(Ok(NodeEvent::DownloadFailed { reason, .. })) => panic!("failed: {reason}"),
                _ => {}
            }
        }
    })
    .await
    .expect("the three downloads did not complete within 30 s");
    assert_eq!(finished, vec![a, c, b]);
    assert_eq!(state_of(&client, d), Some(DownloadState::Paused));

    // Resumed, it is queued; a second slot would start it, here the only
    // one is free.
    drop(client.resume(d).unwrap());
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(NodeEvent::DownloadDone { id, .. }) = events.recv().await {
                if id == d {
                    return;
                }
            }
        }
    })
    .await
    .expect("the resumed download did not complete within 20 s");
    node.shutdown().await;
    src.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_slots_start_queued_downloads_at_once() {
    let share = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let names = ["e.bin", "f.bin", "g.bin"];
    let (src, hashes) = source(3, share.path(), &names).await;
    let from = src.client().tcp_addr();
    let node = Node::start(NodeConfig {
        downloads: Some(out.path().to_path_buf()),
        max_active_downloads: 1,
        ..config(4)
    })
    .await
    .unwrap();
    let client = node.client();
    let ids: Vec<u64> = names
        .iter()
        .zip(&hashes)
        .map(|(n, h)| client.download_hash(*h, n, Some(LEN as u64), vec![from]).id)
        .collect();
    assert_eq!(state_of(&client, ids[2]), Some(DownloadState::Queued));
    client.set_max_active_downloads(None);
    assert_eq!(client.max_active_downloads(), None);
    for id in &ids {
        let s = state_of(&client, *id);
        assert!(
            matches!(s, Some(DownloadState::Running | DownloadState::Done(_))),
            "{id}: {s:?}"
        );
    }
    node.shutdown().await;
    src.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_shows_its_bytes_sent_rising() {
    let share = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    // 2 MiB at 1 MiB/s: two seconds.
    let data = pattern(LEN, 9);
    std::fs::write(share.path().join("slow.bin"), &data).unwrap();
    let hash = *blake3::hash(&data).as_bytes();
    let src = Node::start(NodeConfig {
        shares: vec![share.path().to_path_buf()],
        upload_rate_limit: Some(1 << 20),
        ..config(5)
    })
    .await
    .unwrap();
    let lib = src.client().library().clone();
    assert!(
        tokio::task::spawn_blocking(move || lib.wait_idle(Duration::from_secs(20)))
            .await
            .unwrap()
    );
    let node = Node::start(NodeConfig {
        downloads: Some(out.path().to_path_buf()),
        ..config(6)
    })
    .await
    .unwrap();
    let handle = node.client().download_hash(
        hash,
        "slow.bin",
        Some(LEN as u64),
        vec![src.client().tcp_addr()],
    );
    let up = src.client();
    // Samples of the source's uploads list while it sends.
    let mut seen: Vec<(u64, f64)> = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(u) = up.uploads().into_iter().find(|u| u.name == "slow.bin") {
                assert_eq!(u.size, Some(LEN as u64));
                assert!(u.peer.ip().is_loopback(), "{:?}", u.peer);
                seen.push((u.sent, u.speed));
                if u.sent >= (LEN as u64) / 2 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the upload did not get half-way within 20 s");
    let rising = seen.windows(2).filter(|w| w[1].0 > w[0].0).count();
    assert!(rising >= 2, "bytes sent did not rise: {seen:?}");
    assert!(seen.iter().all(|(s, _)| *s <= LEN as u64), "{seen:?}");
    let (_, speed) = *seen.last().unwrap();
    // About 1 MiB/s (sends are paced in slices; a wide margin).
    assert!(
        speed > 200_000.0 && speed < 4_000_000.0,
        "speed {speed} is not near 1 MiB/s: {seen:?}"
    );
    handle.wait().await.unwrap();
    node.shutdown().await;
    src.shutdown().await;
}
