//! The shared-folder library of a rutella peer.
//!
//! A [`Library`] knows which folders are shared, lists the files in them
//! ([`Library::search`]) and turns a requested name into a file that may be
//! served ([`Library::resolve`]). It knows nothing of the network.
//!
//! # What is shared
//!
//! Shares are walked recursively. A file's name is its path relative to its
//! share, `/`-separated. Never offered, listed or resolved:
//!
//! - partial downloads (names ending in `.part`);
//! - hidden files and everything in hidden folders (a component starting
//!   with `.`);
//! - anything under an excluded folder ([`LibraryConfig::exclude`]);
//! - anything that is not a regular file;
//! - symbolic links leading outside their share (symbolic links to folders
//!   inside the share are followed once; loops are cut);
//! - names that could not be requested back: not UTF-8, containing `\`,
//!   `:`, control characters, or longer than [`MAX_NAME_LEN`] bytes.
//!
//! If several shares hold the same name, the first share wins.
//!
//! # Index, hashes and changes
//!
//! Every shared file is recorded in SQLite ([`LibraryConfig::db_path`]):
//! share, relative path, size, modification time (ns), BLAKE3 hash (the
//! value `b3sum` prints) and SHA-1 (Gnutella's `urn:sha1`, computed in the
//! same pass). Hashes are computed once, by a background thread,
//! and reused while size and modification time are unchanged, also across
//! restarts. Files not hashed yet are listed with `hash: None`.
//!
//! Changes on disk (files added, changed, removed, renamed) are seen
//! without a restart: a file-system watcher on every offered folder
//! triggers a refresh of the changed names within about 0.1 s, and a
//! periodic full rescan ([`LibraryConfig::rescan_interval`]) catches what
//! notifications miss. [`Library::resolve`] always checks the disk, so a
//! deleted file is never served, even before the index notices.
//!
//! Search runs on an in-memory trigram index of the lowercased file names
//! (rebuilt from the walk at open); see `docs/PERFORMANCE.md`.
//!
//! # Blocking
//!
//! The library is `Send + Sync` and cheap to clone. Methods that touch the
//! disk block the calling thread: from async code, call them through
//! `spawn_blocking`. In short:
//!
//! | method | cost |
//! | --- | --- |
//! | [`Library::search`], [`Library::by_hash`] (lookup part), [`Library::shares`], [`Library::progress`], [`Library::stats`], [`Library::len`] | cheap: memory only; a search over 100,000 names takes tens of microseconds |
//! | [`Library::list`] | memory only, but proportional to the library size |
//! | [`Library::resolve`], [`Library::by_hash`] | a few `stat` calls: fine for an occasional call, else `spawn_blocking` |
//! | [`Library::open`], [`Library::add_share`], [`Library::rescan`] | block: walk whole folders and write the database (seconds for large libraries) |
//! | [`Library::remove_share`] | a database delete; short, but blocks |
//! | [`Library::wait_idle`] | blocks up to its timeout |
//!
//! Reads never wait for hashing or disk walks beyond the brief moments in
//! which results are stored. Dropping the last clone stops the background
//! threads and waits for them (at once, but for one read of 1 MiB).

#![warn(missing_docs)]

mod core;
mod db;
mod error;
mod hasher;
mod index;
mod monitor;
mod name;
mod walk;
mod watch;

pub use error::{ResolveError, StoreError};
pub use name::{validate_name, MAX_NAME_LEN};

use crate::core::{Core, Share};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How to open a [`Library`].
#[derive(Debug, Clone)]
pub struct LibraryConfig {
    /// Shared folders, in order of precedence.
    pub shares: Vec<PathBuf>,
    /// SQLite file that keeps the index and hashes across restarts; `None`
    /// keeps it in memory only (everything is hashed again at each open).
    pub db_path: Option<PathBuf>,
    /// Folders never offered, even when inside a share (e.g. the node's
    /// state folder).
    pub exclude: Vec<PathBuf>,
    /// Interval of the periodic full rescan (fallback for missed
    /// file-system notifications).
    pub rescan_interval: Duration,
    /// Watch the shares with file-system notifications.
    pub watch: bool,
}

impl LibraryConfig {
    /// A configuration sharing `shares`, with an in-memory index, nothing
    /// excluded, notifications on and a full rescan every 5 minutes.
    pub fn new(shares: Vec<PathBuf>) -> Self {
        LibraryConfig {
            shares,
            db_path: None,
            exclude: Vec::new(),
            rescan_interval: Duration::from_secs(300),
            watch: true,
        }
    }
}

/// A file offered by the library, as listed by [`Library::search`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedFile {
    /// Path relative to its share, `/`-separated.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// BLAKE3 hash of the content, once computed.
    pub hash: Option<[u8; 32]>,
    /// SHA-1 of the content (Gnutella's `urn:sha1`), computed with `hash`.
    pub sha1: Option<[u8; 20]>,
    /// Root of the content's Tiger tree (Gnutella's `urn:tree:tiger`),
    /// computed with `hash`.
    pub tth: Option<[u8; 24]>,
}

/// A file that may be served, as returned by [`Library::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedFile {
    /// Canonical path on disk (no symbolic links left), inside a share.
    pub path: PathBuf,
    /// The shared name (relative path).
    pub name: String,
    /// Size in bytes when resolved.
    pub size: u64,
    /// BLAKE3 hash of the content, if known for the file as it is now
    /// (same size and modification time as when it was hashed).
    pub hash: Option<[u8; 32]>,
    /// SHA-1 of the content, known under the same condition as `hash`.
    pub sha1: Option<[u8; 20]>,
    /// Tiger tree root of the content, known under the same condition.
    pub tth: Option<[u8; 24]>,
}

/// Progress of hashing: totals over all indexed files, and how much of
/// them has a hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HashProgress {
    /// Files indexed.
    pub files_total: u64,
    /// Files with a hash.
    pub files_hashed: u64,
    /// Bytes in all indexed files.
    pub bytes_total: u64,
    /// Bytes in files with a hash.
    pub bytes_hashed: u64,
}

impl HashProgress {
    /// True when every indexed file has a hash.
    pub fn is_complete(&self) -> bool {
        self.files_hashed >= self.files_total
    }
}

/// Work done by this library since it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LibraryStats {
    /// Files whose hash was computed (not reused from the database).
    pub files_hashed: u64,
    /// Bytes read to compute those hashes.
    pub bytes_hashed: u64,
    /// Full walks of a share (open, add, rescans).
    pub rescans: u64,
    /// Targeted refreshes after file-system notifications.
    pub refreshes: u64,
}

/// Owns the background threads; stops them when the last clone of the
/// library goes.
#[derive(Debug)]
struct Handle {
    core: Arc<Core>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.core.stop.store(true, Ordering::Relaxed);
        {
            // Take the queue lock so a hasher between its check and its
            // wait cannot miss the wake-up.
            let _q = self.core.queue();
            self.core.queue_cv.notify_all();
        }
        // Dropping the watcher closes its channel, which wakes the
        // monitoring thread at once; unparking wakes it when it has none.
        drop(
            self.core
                .watch
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads.iter() {
            t.thread().unpark();
        }
        for t in threads {
            let _ = t.join();
        }
    }
}

/// The shared-folder library. Cheap to clone (shared state inside);
/// `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Library {
    handle: Arc<Handle>,
}

fn canonical_dir(dir: &Path) -> Result<PathBuf, StoreError> {
    let canon = fs::canonicalize(dir).map_err(|_| StoreError::NotADirectory {
        path: dir.to_path_buf(),
    })?;
    let meta = fs::metadata(&canon).map_err(|source| StoreError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(StoreError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    Ok(canon)
}

impl Library {
    /// Opens the library: opens (or creates) the database, walks every
    /// share, and starts the hashing and monitoring threads. Blocks until
    /// every file already on disk is listed (names and sizes); hashing
    /// continues in the background.
    ///
    /// Fails if a share is not an existing directory, or if the database
    /// cannot be opened.
    pub fn open(cfg: LibraryConfig) -> Result<Library, StoreError> {
        let db = db::Db::open(cfg.db_path.as_deref())?;
        let core = Arc::new(Core::new(cfg.exclude.clone(), db));
        let lib = Library {
            handle: Arc::new(Handle {
                core: core.clone(),
                threads: Mutex::new(Vec::new()),
            }),
        };
        // Shares are checked before anything is walked.
        for dir in &cfg.shares {
            canonical_dir(dir)?;
        }
        // Watches are in place before the first walk ends, so no change
        // after `open` returns is missed.
        let watch = if cfg.watch {
            match watch::Watch::new() {
                Ok((set, rx)) => {
                    *core.watch.lock().unwrap_or_else(|p| p.into_inner()) = Some(set);
                    Some(rx)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch shared folders; changes are seen at periodic rescans only");
                    None
                }
            }
        } else {
            None
        };
        // Start the hasher first so hashing overlaps the walk of later
        // shares.
        let c = core.clone();
        let hasher = std::thread::Builder::new()
            .name("rutella-hasher".into())
            .spawn(move || hasher::run(c))
            .map_err(|source| StoreError::Thread {
                what: "hashing",
                source,
            })?;
        lib.push_thread(hasher);
        for dir in &cfg.shares {
            lib.add_share(dir)?;
        }
        let interval = cfg.rescan_interval.max(Duration::from_millis(10));
        let c = core.clone();
        let monitor = std::thread::Builder::new()
            .name("rutella-monitor".into())
            .spawn(move || monitor::run(c, watch, interval))
            .map_err(|source| StoreError::Thread {
                what: "monitoring",
                source,
            })?;
        lib.push_thread(monitor);
        Ok(lib)
    }

    fn push_thread(&self, t: JoinHandle<()>) {
        self.handle
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(t);
    }

    fn core(&self) -> &Core {
        &self.handle.core
    }

    /// The shared folders, as given, in order of precedence. Cheap.
    pub fn shares(&self) -> Vec<PathBuf> {
        self.core()
            .read()
            .shares
            .iter()
            .map(|s| s.given.clone())
            .collect()
    }

    /// Each shared folder, as given, with the files indexed in it and
    /// their bytes. Walks the index once.
    pub fn share_totals(&self) -> Vec<(PathBuf, usize, u64)> {
        let st = self.core().read();
        st.shares
            .iter()
            .map(|s| {
                let (files, bytes) = st
                    .index
                    .iter()
                    .filter(|(_, e)| e.share == s.id)
                    .fold((0usize, 0u64), |(n, b), (_, e)| (n + 1, b + e.size));
                (s.given.clone(), files, bytes)
            })
            .collect()
    }

    /// Adds a shared folder (last in precedence) and walks it. Blocks for
    /// the walk. Adding a folder already shared does nothing. Fails if
    /// `dir` is not an existing directory.
    pub fn add_share(&self, dir: &Path) -> Result<(), StoreError> {
        let canon = canonical_dir(dir)?;
        let share = {
            let mut st = self.core().write();
            if st.shares.iter().any(|s| s.canon == canon) {
                return Ok(());
            }
            let share = Share {
                id: st.next_share,
                given: dir.to_path_buf(),
                canon,
            };
            st.next_share += 1;
            st.shares.push(share.clone());
            share
        };
        tracing::info!(share = %share.canon.display(), "sharing folder");
        self.core().scan_share(&share);
        Ok(())
    }

    /// Stops sharing a folder (given as added, or any path to the same
    /// folder) and forgets its files and hashes. Returns false if it was
    /// not shared. Short, but writes the database.
    pub fn remove_share(&self, dir: &Path) -> bool {
        let canon = fs::canonicalize(dir).ok();
        let share = {
            let mut st = self.core().write();
            let Some(pos) = st
                .shares
                .iter()
                .position(|s| s.given == dir || Some(&s.canon) == canon.as_ref())
            else {
                return false;
            };
            let share = st.shares.remove(pos);
            let ids: Vec<u32> = st
                .index
                .iter()
                .filter(|(_, e)| e.share == share.id)
                .map(|(id, _)| id)
                .collect();
            for id in ids {
                st.index.remove(id);
            }
            st.index.compact_if_sparse();
            share
        };
        self.core().forget_share(&share);
        tracing::info!(share = %share.canon.display(), "stopped sharing folder");
        true
    }

    /// Files whose name (last path component) contains `text`, compared
    /// case-insensitively (Unicode lowercase): the rule of
    /// [`rutella_proto::matching`]. At most `limit`, in index order. Empty
    /// text matches nothing. Cheap: memory only.
    pub fn search(&self, text: &str, limit: usize) -> Vec<SharedFile> {
        if text.is_empty() || limit == 0 {
            return Vec::new();
        }
        let st = self.core().read();
        let ids = st.index.search(text, limit, |id, e| st.is_winner(id, e));
        ids.into_iter()
            .filter_map(|id| st.index.get(id))
            .map(|e| SharedFile {
                name: e.rel.to_string(),
                size: e.size,
                hash: e.hash,
                sha1: e.sha1,
                tth: e.tth,
            })
            .collect()
    }

    /// Every offered file (first share wins for equal names), in index
    /// order. Memory only, but proportional to the library size.
    pub fn list(&self) -> Vec<SharedFile> {
        let st = self.core().read();
        st.index
            .iter()
            .filter(|(id, e)| st.is_winner(*id, e))
            .map(|(_, e)| SharedFile {
                name: e.rel.to_string(),
                size: e.size,
                hash: e.hash,
                sha1: e.sha1,
                tth: e.tth,
            })
            .collect()
    }

    /// Number of files indexed (a name held by several shares counts once
    /// per share). Cheap.
    pub fn len(&self) -> usize {
        self.core().read().index.len()
    }

    /// True if no file is indexed. Cheap.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Turns a requested name into a regular file inside a share, or
    /// refuses. This is the only way a name from a peer may become a path
    /// to open: see [`validate_name`] for the accepted shape; in addition
    /// the file must exist now, be a regular file, not lead (through
    /// symbolic links) outside its share, and not be hidden, partial or
    /// excluded. Refusals are logged. Blocks for a few `stat` calls.
    ///
    /// The answer holds for the moment of the call: open `path` right away
    /// and trust the opened file's own metadata (size) from then on.
    pub fn resolve(&self, name: &str) -> Result<ResolvedFile, ResolveError> {
        let result = self.resolve_inner(name);
        if let Err(e) = &result {
            // Never log a huge or control-laden name verbatim.
            let shown: String = name.chars().take(200).collect();
            if e.is_suspicious() {
                tracing::warn!(name = ?shown, reason = %e, "refused to resolve a requested name");
            } else {
                tracing::info!(name = ?shown, reason = %e, "requested name not resolved");
            }
        }
        result
    }

    fn resolve_inner(&self, name: &str) -> Result<ResolvedFile, ResolveError> {
        validate_name(name)?;
        let excludes = self.core().excludes();
        let mut first_err = None;
        for share in self.core().shares() {
            match self.core().resolve_in(&share, name, &excludes) {
                Ok(f) => return Ok(f),
                Err(e) => {
                    // A real refusal beats "not found" in another share.
                    if first_err.is_none()
                        || (first_err == Some(ResolveError::NotFound)
                            && e != ResolveError::NotFound)
                    {
                        first_err = Some(e);
                    }
                }
            }
        }
        Err(first_err.unwrap_or(ResolveError::NotFound))
    }

    /// A shared file whose current content has BLAKE3 hash `hash`: the
    /// file's size and modification time are checked against those it had
    /// when hashed (as everywhere in the library, a file whose size and
    /// time are unchanged counts as unchanged), and it passes the same
    /// checks as [`Library::resolve`]. A hash lookup plus a few `stat`
    /// calls.
    pub fn by_hash(&self, hash: &[u8; 32]) -> Option<ResolvedFile> {
        self.first_resolved(
            |index| index.ids_for_hash(hash),
            |f| f.hash.as_ref() == Some(hash),
        )
    }

    /// A shared file whose current content has SHA-1 `sha1` (Gnutella's
    /// `urn:sha1`), checked as [`Library::by_hash`] checks its hash.
    pub fn by_sha1(&self, sha1: &[u8; 20]) -> Option<ResolvedFile> {
        self.first_resolved(
            |index| index.ids_for_sha1(sha1),
            |f| f.sha1.as_ref() == Some(sha1),
        )
    }

    /// The first of the files `ids` picks from the index that passes the
    /// checks of [`Library::resolve`] now and whose current content is
    /// `wanted` (the index is read under its lock, the files after).
    fn first_resolved<I, W>(&self, ids: I, wanted: W) -> Option<ResolvedFile>
    where
        I: for<'a> FnOnce(&'a index::Index) -> &'a [u32],
        W: Fn(&ResolvedFile) -> bool,
    {
        let candidates: Vec<(Share, Arc<str>)> = {
            let st = self.core().read();
            ids(&st.index)
                .iter()
                .filter_map(|&id| st.index.get(id))
                .filter_map(|e| st.share(e.share).map(|s| (s.clone(), e.rel.clone())))
                .collect()
        };
        let excludes = self.core().excludes();
        candidates.into_iter().find_map(|(share, rel)| {
            self.core()
                .resolve_in(&share, &rel, &excludes)
                .ok()
                .filter(|f| wanted(f))
        })
    }

    /// Walks every share again and brings the index up to date. Blocks for
    /// the walk.
    pub fn rescan(&self) -> Result<(), StoreError> {
        for share in self.core().shares() {
            self.core().scan_share(&share);
        }
        Ok(())
    }

    /// Hashing progress. Cheap.
    pub fn progress(&self) -> HashProgress {
        let t = self.core().read().index.totals();
        HashProgress {
            files_total: t.files as u64,
            files_hashed: t.hashed_files as u64,
            bytes_total: t.bytes,
            bytes_hashed: t.hashed_bytes,
        }
    }

    /// Work done since the library was opened. Cheap.
    pub fn stats(&self) -> LibraryStats {
        let c = &self.core().counters;
        LibraryStats {
            files_hashed: c.files_hashed.load(Ordering::Relaxed),
            bytes_hashed: c.bytes_hashed.load(Ordering::Relaxed),
            rescans: c.rescans.load(Ordering::Relaxed),
            refreshes: c.refreshes.load(Ordering::Relaxed),
        }
    }

    /// Waits until no file is waiting to be hashed, at most `timeout`.
    /// Returns true if the hasher is idle. Blocks.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let q = self.core().queue();
                if q.jobs.is_empty() && !q.busy {
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + Clone>() {}

    #[test]
    fn library_is_send_sync_clone() {
        assert_send_sync::<Library>();
    }
}
