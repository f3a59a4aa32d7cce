//! The list of unfinished downloads by hash, kept in the downloads folder so
//! that a node restarted after a crash (even SIGKILL) resumes them by itself.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One unfinished download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pending {
    /// BLAKE3 hash, hex.
    pub(crate) hash: String,
    /// Name to save it under.
    pub(crate) name: String,
    /// Advertised size.
    pub(crate) size: Option<u64>,
    /// TCP addresses of the peers that offered it.
    pub(crate) sources: Vec<String>,
}

/// Most entries kept; the oldest go first.
const MAX_ENTRIES: usize = 256;

/// The file `.rutella-pending.json` in the downloads folder (hidden, so
/// never shared).
#[derive(Clone)]
pub(crate) struct Journal {
    path: PathBuf,
    lock: Arc<Mutex<()>>,
}

impl Journal {
    pub(crate) fn new(downloads_dir: &Path) -> Self {
        Journal {
            path: downloads_dir.join(".rutella-pending.json"),
            lock: Arc::new(Mutex::new(())),
        }
    }

    /// The entries; an unreadable file is logged and counts as empty.
    pub(crate) fn load(&self) -> Vec<Pending> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.read()
    }

    fn read(&self) -> Vec<Pending> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %self.path.display(), error = %e, "ignoring an unreadable list of unfinished downloads");
                Vec::new()
            }),
            Err(_) => Vec::new(),
        }
    }

    fn write(&self, entries: &[Pending]) {
        let tmp = self.path.with_extension("json.tmp");
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let result = std::fs::create_dir_all(dir)
            .and_then(|()| serde_json::to_vec_pretty(entries).map_err(std::io::Error::other))
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = result {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot record unfinished downloads; they will not resume after a restart");
        }
    }

    /// Records (or refreshes) an entry.
    pub(crate) fn add(&self, entry: Pending) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = self.read();
        all.retain(|p| !(p.hash == entry.hash && p.name == entry.name));
        all.push(entry);
        if all.len() > MAX_ENTRIES {
            let cut = all.len() - MAX_ENTRIES;
            all.drain(..cut);
        }
        self.write(&all);
    }

    /// Forgets an entry (the download completed).
    pub(crate) fn remove(&self, hash: &str, name: &str) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = self.read();
        let before = all.len();
        all.retain(|p| !(p.hash == hash && p.name == name));
        if all.len() != before {
            self.write(&all);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_reopening_and_bad_files_are_ignored() {
        let root = tempfile::tempdir().unwrap();
        // The folder does not exist yet: the first entry makes it.
        let d = root.path().join("downloads");
        let d = d.as_path();
        let j = Journal::new(d);
        let e = Pending {
            hash: "ab".repeat(32),
            name: "x.bin".into(),
            size: Some(5),
            sources: vec!["127.0.0.1:10000".into()],
        };
        j.add(e.clone());
        j.add(e.clone());
        assert_eq!(Journal::new(d).load(), vec![e.clone()]);
        j.remove(&e.hash, &e.name);
        assert!(j.load().is_empty());
        std::fs::write(d.join(".rutella-pending.json"), b"{not json").unwrap();
        assert!(j.load().is_empty());
        for i in 0..300 {
            j.add(Pending {
                name: format!("{i}"),
                ..e.clone()
            });
        }
        assert_eq!(j.load().len(), MAX_ENTRIES);
    }
}
