//! The server looks requested files up on the blocking pool: a source
//! checks paths on disk for every request (resolving links, `stat`), and a
//! slow disk must not hold up the runtime's threads.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use common::{pattern, quick_cfg};
use rutella_transfer::{
    classic_download, serve_connection, ClassicGet, FileSource, Progress, RutellaConn, SourceFile,
};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves one file by name and by hash, noting the thread of each lookup.
struct Recording {
    path: PathBuf,
    hash: [u8; 32],
    threads: Mutex<Vec<ThreadId>>,
}

impl Recording {
    fn note(&self) -> Option<SourceFile> {
        self.threads
            .lock()
            .unwrap()
            .push(std::thread::current().id());
        let size = std::fs::metadata(&self.path).ok()?.len();
        Some(SourceFile {
            path: self.path.clone(),
            size,
        })
    }
}

impl FileSource for Recording {
    fn by_name(&self, name: &str) -> Option<SourceFile> {
        (name == "song.mp3").then(|| self.note()).flatten()
    }
    fn by_hash(&self, hash: &[u8; 32]) -> Option<SourceFile> {
        (*hash == self.hash).then(|| self.note()).flatten()
    }
}

/// Serves up to `n` connections on a loopback port with `source`.
async fn serve(source: Arc<Recording>, n: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let cfg = Arc::new(quick_cfg());
    tokio::spawn(async move {
        for _ in 0..n {
            let Ok((s, _)) = l.accept().await else {
                return;
            };
            let (src, cfg) = (source.clone() as Arc<dyn FileSource>, cfg.clone());
            tokio::spawn(serve_connection(s, src, cfg));
        }
    });
    addr
}

fn fixture() -> (tempfile::TempDir, Arc<Recording>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(300_000, 5);
    let path = dir.path().join("song.mp3");
    std::fs::write(&path, &data).unwrap();
    let source = Arc::new(Recording {
        path,
        hash: *blake3::hash(&data).as_bytes(),
        threads: Mutex::new(Vec::new()),
    });
    (dir, source, data)
}

/// The test runs on a current-thread runtime, so the runtime's only
/// thread is the test's: a lookup made there would show its id.
fn assert_off_the_runtime(source: &Recording, want: usize) {
    let here = std::thread::current().id();
    let threads = source.threads.lock().unwrap();
    assert_eq!(threads.len(), want, "lookups made: {threads:?}");
    assert!(
        threads.iter().all(|t| *t != here),
        "a lookup ran on the runtime's thread {here:?}: {threads:?}"
    );
}

#[tokio::test]
async fn classic_requests_look_files_up_off_the_runtime() {
    let (_dir, source, data) = fixture();
    let addr = serve(source.clone(), 1).await;
    let out = tempfile::tempdir().unwrap();
    let req = ClassicGet {
        peer: addr,
        name: "song.mp3".into(),
        downloads_dir: out.path().to_owned(),
        connect_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(2),
        align_resume: false,
        listed_size: None,
        dialer: None,
        limit: None,
    };
    let report = classic_download(req, watch::channel(Progress::default()).0)
        .await
        .unwrap();
    assert_eq!(std::fs::read(report.path).unwrap(), data);
    assert_off_the_runtime(&source, 1);
}

#[tokio::test]
async fn rutella_requests_look_files_up_off_the_runtime() {
    let (_dir, source, data) = fixture();
    let addr = serve(source.clone(), 1).await;
    let secs = Duration::from_secs(2);
    let mut conn = RutellaConn::connect(addr, secs, secs).await.unwrap();
    let tree = conn.tree(&source.hash).await.unwrap();
    let got = conn.read_verified(&tree, 1000, 5000).await.unwrap();
    assert_eq!(got, data[1000..6000]);
    assert_off_the_runtime(&source, 2);
}
