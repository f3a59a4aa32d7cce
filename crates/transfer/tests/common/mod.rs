//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rutella_transfer::{FileSource, ServerConfig, ServerLimits, SourceFile};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A source backed by a map of names, with hashes computed on insert.
#[derive(Default)]
pub struct MapSource {
    files: Mutex<HashMap<String, PathBuf>>,
    hashes: Mutex<HashMap<[u8; 32], PathBuf>>,
}

impl MapSource {
    pub fn add(&self, name: &str, path: &Path) {
        self.files
            .lock()
            .unwrap()
            .insert(name.to_owned(), path.to_owned());
    }
    pub fn add_hashed(&self, name: &str, path: &Path) -> [u8; 32] {
        self.add(name, path);
        let data = std::fs::read(path).unwrap();
        let h = *blake3::hash(&data).as_bytes();
        self.hashes.lock().unwrap().insert(h, path.to_owned());
        h
    }
    pub fn add_with_hash(&self, hash: [u8; 32], path: &Path) {
        self.hashes.lock().unwrap().insert(hash, path.to_owned());
    }
}

impl FileSource for MapSource {
    fn by_name(&self, name: &str) -> Option<SourceFile> {
        let path = self.files.lock().unwrap().get(name)?.clone();
        let size = std::fs::metadata(&path).ok()?.len();
        Some(SourceFile { path, size })
    }
    fn by_hash(&self, hash: &[u8; 32]) -> Option<SourceFile> {
        let path = self.hashes.lock().unwrap().get(hash)?.clone();
        let size = std::fs::metadata(&path).ok()?.len();
        Some(SourceFile { path, size })
    }
}

/// Deterministic, non-repeating test bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Stops gracefully and waits.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
    /// Kills the server at once: every connection is cut.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

pub async fn start_server(ip: &str, source: Arc<MapSource>, cfg: ServerConfig) -> Server {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(rutella_transfer::run_server(listener, source, cfg, async {
        let _ = rx.await;
    }));
    Server {
        addr,
        stop: Some(tx),
        task,
    }
}

pub fn quick_cfg() -> ServerConfig {
    ServerConfig {
        limits: ServerLimits {
            header_timeout: Duration::from_millis(500),
            ..Default::default()
        },
        send_timeout: Duration::from_secs(2),
        shutdown_grace: Duration::from_millis(200),
        ..Default::default()
    }
}
