//! The file-system watcher: one non-recursive watch for every offered
//! folder, and the channel that carries its notifications to the
//! monitoring thread.

use crate::index::ShareId;
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;

/// Notifications buffered between the watcher and the monitoring thread;
/// beyond that, a full rescan replaces them.
pub(crate) const QUEUE: usize = 4096;

type Events = Receiver<notify::Result<notify::Event>>;

/// Folders being watched: canonical path → (share, relative name).
#[derive(Debug, Default)]
pub(crate) struct DirMap {
    pub(crate) map: HashMap<PathBuf, (ShareId, String)>,
    pub(crate) version: u64,
}

/// The watcher and the folders it watches. Lives in the library's core so
/// that every update of the folder list adds its watches at once.
pub(crate) struct WatchSet {
    watcher: RecommendedWatcher,
    watched: HashSet<PathBuf>,
    version: u64,
    warned: bool,
}

impl std::fmt::Debug for WatchSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchSet")
            .field("watched", &self.watched.len())
            .finish()
    }
}

/// The receiving end of the watcher's notifications.
pub(crate) struct Watch {
    pub(crate) rx: Events,
    pub(crate) overflow: Arc<AtomicBool>,
}

impl Watch {
    /// Starts a watcher (watching nothing yet).
    pub(crate) fn new() -> notify::Result<(WatchSet, Watch)> {
        let (tx, rx): (SyncSender<_>, Events) = std::sync::mpsc::sync_channel(QUEUE);
        let overflow = Arc::new(AtomicBool::new(false));
        let flag = overflow.clone();
        let watcher = notify::recommended_watcher(move |ev| {
            if let Err(TrySendError::Full(_)) = tx.try_send(ev) {
                flag.store(true, Ordering::Relaxed);
            }
        })?;
        Ok((
            WatchSet {
                watcher,
                watched: HashSet::new(),
                version: u64::MAX,
                warned: false,
            },
            Watch { rx, overflow },
        ))
    }
}

impl WatchSet {
    /// Watches exactly the folders in `dirs` (each folder on its own: no
    /// recursive watch, which would follow links out of shares).
    pub(crate) fn sync(&mut self, dirs: &DirMap) {
        if dirs.version == self.version {
            return;
        }
        self.version = dirs.version;
        let wanted: HashSet<PathBuf> = dirs.map.keys().cloned().collect();
        let stale: Vec<PathBuf> = self.watched.difference(&wanted).cloned().collect();
        for p in stale {
            let _ = self.watcher.unwatch(&p);
            self.watched.remove(&p);
        }
        for p in wanted {
            if self.watched.contains(&p) {
                continue;
            }
            match self.watcher.watch(&p, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(p);
                }
                Err(e) => {
                    if !self.warned {
                        self.warned = true;
                        tracing::warn!(dir = %p.display(), error = %e, "cannot watch a shared folder; its changes are seen at the next periodic rescan");
                    }
                }
            }
        }
    }
}
