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
//! # Blocking
//!
//! The library is `Send + Sync` and cheap to clone. Methods that touch the
//! disk block the calling thread: from async code, call them through
//! `spawn_blocking`. See each method's documentation; in short:
//!
//! | method | cost |
//! | --- | --- |
//! | [`Library::search`], [`Library::shares`] | cheap: memory only, well under a millisecond for typical queries |
//! | [`Library::resolve`] | a few `stat` calls; fine on an async thread for an occasional request, else `spawn_blocking` |
//! | [`Library::open`], [`Library::add_share`], [`Library::rescan`] | block: walk whole folders |
//! | [`Library::remove_share`] | cheap (memory only) |

#![warn(missing_docs)]

mod error;
mod index;
mod name;
mod walk;

pub use error::{ResolveError, StoreError};
pub use name::{validate_name, MAX_NAME_LEN};

use index::{Entry, Index, ShareId};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

/// How to open a [`Library`].
#[derive(Debug, Clone)]
pub struct LibraryConfig {
    /// Shared folders, in order of precedence.
    pub shares: Vec<PathBuf>,
    /// SQLite file that keeps the index and hashes across restarts; `None`
    /// keeps it in memory only.
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
    /// excluded, notifications on and a rescan every 5 minutes.
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
    /// BLAKE3 hash of the content, if known for the file as it is now.
    pub hash: Option<[u8; 32]>,
}

#[derive(Debug, Clone)]
struct Share {
    id: ShareId,
    /// As given by the user.
    given: PathBuf,
    /// Canonical (absolute, no symbolic links).
    canon: PathBuf,
}

#[derive(Debug, Default)]
struct State {
    shares: Vec<Share>,
    next_share: ShareId,
    index: Index,
}

impl State {
    fn rank(&self, share: ShareId) -> usize {
        self.shares
            .iter()
            .position(|s| s.id == share)
            .unwrap_or(usize::MAX)
    }

    /// True if no earlier share holds an entry with the same name.
    fn is_winner(&self, id: u32, e: &Entry) -> bool {
        let ids = self.index.ids_for_rel(&e.rel);
        if ids.len() <= 1 {
            return true;
        }
        let mine = self.rank(e.share);
        ids.iter().all(|&other| {
            other == id
                || self
                    .index
                    .get(other)
                    .is_none_or(|o| self.rank(o.share) > mine)
        })
    }
}

#[derive(Debug)]
struct Core {
    exclude: Vec<PathBuf>,
    state: RwLock<State>,
}

impl Core {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Exclude folders in canonical form (as given, made absolute, when
    /// they do not exist yet). Computed on each use: an excluded folder may
    /// be created after the library was opened.
    fn excludes(&self) -> Vec<PathBuf> {
        let mut out = Vec::with_capacity(self.exclude.len() * 2);
        for ex in &self.exclude {
            if let Ok(c) = fs::canonicalize(ex) {
                out.push(c);
            }
            if let Ok(a) = std::path::absolute(ex) {
                out.push(a);
            }
        }
        out
    }

    /// Walks one share and brings its entries in the index up to date.
    fn scan_share(&self, share: &Share) {
        let found = walk::walk_share(&share.canon, &self.excludes());
        let mut st = self.write();
        if !st.shares.iter().any(|s| s.id == share.id) {
            return; // removed meanwhile
        }
        let mut seen = std::collections::HashSet::with_capacity(found.len());
        for f in found {
            seen.insert(f.rel.clone());
            match st.index.find(share.id, &f.rel) {
                Some(id) => {
                    if let Some(e) = st.index.get_mut(id) {
                        if e.size != f.size || e.mtime_ns != f.mtime_ns {
                            e.size = f.size;
                            e.mtime_ns = f.mtime_ns;
                            e.hash = None;
                        }
                    }
                }
                None => {
                    st.index.insert(Entry {
                        share: share.id,
                        name_lower: index::name_lower(&f.rel),
                        rel: f.rel,
                        size: f.size,
                        mtime_ns: f.mtime_ns,
                        hash: None,
                    });
                }
            }
        }
        let gone: Vec<u32> = st
            .index
            .iter()
            .filter(|(_, e)| e.share == share.id && !seen.contains(&e.rel))
            .map(|(id, _)| id)
            .collect();
        for id in gone {
            st.index.remove(id);
        }
        st.index.compact_if_sparse();
    }

    fn shares(&self) -> Vec<Share> {
        self.read().shares.clone()
    }

    /// Tries to resolve `name` in one share.
    fn resolve_in(
        &self,
        share: &Share,
        name: &str,
        excludes: &[PathBuf],
    ) -> Result<ResolvedFile, ResolveError> {
        let candidate = share.canon.join(name);
        if walk::is_excluded(&candidate, excludes) {
            return Err(ResolveError::Excluded);
        }
        match fs::symlink_metadata(&candidate) {
            Ok(_) => {}
            Err(_) => return Err(ResolveError::NotFound),
        }
        let canon = fs::canonicalize(&candidate).map_err(|_| ResolveError::NotFound)?;
        let rel = canon
            .strip_prefix(&share.canon)
            .map_err(|_| ResolveError::OutsideShare)?;
        name::check_target(rel)?;
        if walk::is_excluded(&canon, excludes) {
            return Err(ResolveError::Excluded);
        }
        let meta = fs::metadata(&canon).map_err(|_| ResolveError::NotFound)?;
        if !meta.is_file() {
            return Err(ResolveError::NotAFile);
        }
        let size = meta.len();
        let mtime = walk::mtime_ns(&meta);
        let hash = {
            let st = self.read();
            st.index
                .find(share.id, name)
                .and_then(|id| st.index.get(id))
                .filter(|e| e.size == size && e.mtime_ns == mtime)
                .and_then(|e| e.hash)
        };
        Ok(ResolvedFile {
            path: canon,
            name: name.to_string(),
            size,
            hash,
        })
    }
}

/// The shared-folder library. Cheap to clone (shared state inside);
/// `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Library {
    core: Arc<Core>,
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
    /// Opens the library and walks every share. Blocks until every file
    /// already on disk is listed (names and sizes).
    ///
    /// Fails if a share is not an existing directory.
    pub fn open(cfg: LibraryConfig) -> Result<Library, StoreError> {
        let lib = Library {
            core: Arc::new(Core {
                exclude: cfg.exclude.clone(),
                state: RwLock::new(State::default()),
            }),
        };
        for dir in &cfg.shares {
            lib.add_share(dir)?;
        }
        Ok(lib)
    }

    /// The shared folders, as given, in order of precedence.
    pub fn shares(&self) -> Vec<PathBuf> {
        self.core
            .read()
            .shares
            .iter()
            .map(|s| s.given.clone())
            .collect()
    }

    /// Adds a shared folder (last in precedence) and walks it. Blocks for
    /// the walk. Adding a folder already shared does nothing.
    pub fn add_share(&self, dir: &Path) -> Result<(), StoreError> {
        let canon = canonical_dir(dir)?;
        let share = {
            let mut st = self.core.write();
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
        self.core.scan_share(&share);
        Ok(())
    }

    /// Stops sharing a folder (given as added, or any path to the same
    /// folder). Returns false if it was not shared. Cheap.
    pub fn remove_share(&self, dir: &Path) -> bool {
        let canon = fs::canonicalize(dir).ok();
        let mut st = self.core.write();
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
        tracing::info!(share = %share.canon.display(), "stopped sharing folder");
        true
    }

    /// Files whose name (last path component) contains `text`, compared
    /// case-insensitively (Unicode lowercase); at most `limit`. Empty text
    /// matches nothing. Cheap: memory only.
    pub fn search(&self, text: &str, limit: usize) -> Vec<SharedFile> {
        if text.is_empty() || limit == 0 {
            return Vec::new();
        }
        let needle = text.to_lowercase();
        let st = self.core.read();
        let ids = st.index.search(&needle, limit, |id, e| st.is_winner(id, e));
        ids.into_iter()
            .filter_map(|id| st.index.get(id))
            .map(|e| SharedFile {
                name: e.rel.clone(),
                size: e.size,
                hash: e.hash,
            })
            .collect()
    }

    /// Every offered file (first share wins for equal names), in index
    /// order. Memory only, but proportional to the library size.
    pub fn list(&self) -> Vec<SharedFile> {
        let st = self.core.read();
        st.index
            .iter()
            .filter(|(id, e)| st.is_winner(*id, e))
            .map(|(_, e)| SharedFile {
                name: e.rel.clone(),
                size: e.size,
                hash: e.hash,
            })
            .collect()
    }

    /// Number of files indexed (a name held by several shares counts once
    /// per share).
    pub fn len(&self) -> usize {
        self.core.read().index.len()
    }

    /// True if no file is offered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Turns a requested name into a regular file inside a share, or
    /// refuses. This is the only way a name from a peer may become a path
    /// to open: see [`validate_name`] for the accepted shape; in addition
    /// the file must exist now, be a regular file, not lead (through
    /// symbolic links) outside its share, and not be hidden, partial or
    /// excluded. Refusals are logged. Blocks for a few `stat` calls.
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
        let excludes = self.core.excludes();
        let mut first_err = None;
        for share in self.core.shares() {
            match self.core.resolve_in(&share, name, &excludes) {
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

    /// A shared file whose current content has BLAKE3 hash `hash`.
    pub fn by_hash(&self, hash: &[u8; 32]) -> Option<ResolvedFile> {
        let names: Vec<String> = {
            let st = self.core.read();
            st.index
                .iter()
                .filter(|(_, e)| e.hash.as_ref() == Some(hash))
                .map(|(_, e)| e.rel.clone())
                .collect()
        };
        names
            .into_iter()
            .filter_map(|n| self.resolve_inner(&n).ok())
            .find(|f| f.hash.as_ref() == Some(hash))
    }

    /// Walks every share again and brings the index up to date. Blocks for
    /// the walk.
    pub fn rescan(&self) -> Result<(), StoreError> {
        for share in self.core.shares() {
            self.core.scan_share(&share);
        }
        Ok(())
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
