//! Uploads in progress and the bytes sent, for the user interface, kept
//! from the transfer server's notices.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The most uploads listed at once (the server's own caps keep the real
/// number lower; this only bounds the table).
const MAX_LISTED: usize = 1024;

/// One upload in progress.
#[derive(Debug, Clone)]
pub struct UploadInfo {
    /// The downloading peer (its TCP address).
    pub peer: SocketAddr,
    /// The file, as named inside its shared folder.
    pub name: String,
    /// The file's size, when it could be read.
    pub size: Option<u64>,
    /// When it started.
    pub started: Instant,
}

#[derive(Default)]
struct Table {
    open: Vec<UploadInfo>,
}

/// The table, shared by the client handles and the task that reads the
/// server's notices.
#[derive(Clone, Default)]
pub(crate) struct Uploads {
    table: Arc<Mutex<Table>>,
    sent: Arc<AtomicU64>,
}

impl Uploads {
    pub(crate) fn started(&self, info: UploadInfo) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if t.open.len() >= MAX_LISTED {
            t.open.remove(0);
        }
        t.open.push(info);
    }

    pub(crate) fn ended(&self, peer: SocketAddr, name: &str, bytes: u64) {
        self.sent.fetch_add(bytes, Ordering::Relaxed);
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = t.open.iter().position(|u| u.peer == peer && u.name == name) {
            t.open.remove(k);
        }
    }

    pub(crate) fn list(&self) -> Vec<UploadInfo> {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.open.clone()
    }

    /// File bytes sent by uploads that ended.
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}
