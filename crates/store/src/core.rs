//! Shared state of a library and the operations the public handle and the
//! background threads run on it.

use crate::db::{Change, Db, Row};
use crate::error::ResolveError;
use crate::index::{self, Entry, Index, ShareId};
use crate::walk::{self, Examined, Found};
use crate::watch::{DirMap, WatchSet};
use crate::{name, ResolvedFile};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

#[derive(Debug, Clone)]
pub(crate) struct Share {
    pub(crate) id: ShareId,
    /// As given by the user.
    pub(crate) given: PathBuf,
    /// Canonical (absolute, no symbolic links).
    pub(crate) canon: PathBuf,
}

impl Share {
    /// Key of the share's rows in the database.
    pub(crate) fn key(&self) -> String {
        self.canon.to_string_lossy().into_owned()
    }
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) shares: Vec<Share>,
    pub(crate) next_share: ShareId,
    pub(crate) index: Index,
    /// Shares walked at least once (their rows were loaded from the db).
    scanned: HashSet<ShareId>,
}

impl State {
    fn rank(&self, share: ShareId) -> usize {
        self.shares
            .iter()
            .position(|s| s.id == share)
            .unwrap_or(usize::MAX)
    }

    /// True if no earlier share holds an entry with the same name.
    pub(crate) fn is_winner(&self, id: u32, e: &Entry) -> bool {
        if !self.index.has_duplicates() {
            return true;
        }
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

    pub(crate) fn share(&self, id: ShareId) -> Option<&Share> {
        self.shares.iter().find(|s| s.id == id)
    }
}

/// Which entries of a share an update covers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope<'a> {
    /// The whole share.
    All,
    /// One name and everything under it (`rel`, `rel/...`).
    Path(&'a str),
}

impl Scope<'_> {
    fn contains(&self, rel: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Path(p) => {
                rel == *p || (rel.starts_with(p) && rel.as_bytes().get(p.len()) == Some(&b'/'))
            }
        }
    }
}

/// Files waiting to be hashed.
#[derive(Debug, Default)]
pub(crate) struct HashQueue {
    pub(crate) jobs: VecDeque<(ShareId, Arc<str>)>,
    pub(crate) queued: HashSet<(ShareId, Arc<str>)>,
    /// A job is being hashed right now.
    pub(crate) busy: bool,
}

/// Counters of work done since the library was opened.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) files_hashed: AtomicU64,
    pub(crate) bytes_hashed: AtomicU64,
    pub(crate) rescans: AtomicU64,
    pub(crate) refreshes: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) exclude: Vec<PathBuf>,
    pub(crate) state: RwLock<State>,
    /// Lock order: `db` before `state`.
    pub(crate) db: Mutex<Db>,
    pub(crate) queue: Mutex<HashQueue>,
    pub(crate) queue_cv: Condvar,
    pub(crate) dirs: Mutex<DirMap>,
    /// Lock order: `watch` before `dirs`.
    pub(crate) watch: Mutex<Option<WatchSet>>,
    pub(crate) stop: AtomicBool,
    pub(crate) counters: Counters,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Core {
    pub(crate) fn new(exclude: Vec<PathBuf>, db: Db) -> Core {
        Core {
            exclude,
            state: RwLock::new(State::default()),
            db: Mutex::new(db),
            queue: Mutex::new(HashQueue::default()),
            queue_cv: Condvar::new(),
            dirs: Mutex::new(DirMap::default()),
            watch: Mutex::new(None),
            stop: AtomicBool::new(false),
            counters: Counters::default(),
        }
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn db(&self) -> MutexGuard<'_, Db> {
        lock(&self.db)
    }

    pub(crate) fn queue(&self) -> MutexGuard<'_, HashQueue> {
        lock(&self.queue)
    }

    pub(crate) fn dirs(&self) -> MutexGuard<'_, DirMap> {
        lock(&self.dirs)
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Exclude folders in canonical form (and as given, made absolute).
    /// Computed on each use: an excluded folder may be created after the
    /// library was opened.
    pub(crate) fn excludes(&self) -> Vec<PathBuf> {
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

    pub(crate) fn shares(&self) -> Vec<Share> {
        self.read().shares.clone()
    }

    /// Queues files for hashing.
    fn enqueue(&self, share: ShareId, rels: Vec<Arc<str>>) {
        if rels.is_empty() {
            return;
        }
        let mut q = self.queue();
        for rel in rels {
            if q.queued.insert((share, rel.clone())) {
                q.jobs.push_back((share, rel));
            }
        }
        drop(q);
        self.queue_cv.notify_all();
    }

    /// Walks one whole share and brings the index, the database and the
    /// watched folders up to date.
    pub(crate) fn scan_share(&self, share: &Share) {
        let walked = walk::walk_share(&share.canon, &self.excludes());
        self.apply(share, Scope::All, walked.files, walked.dirs);
        self.counters.rescans.fetch_add(1, Ordering::Relaxed);
    }

    /// Re-examines one name of a share (a file or a folder, present or
    /// gone) whose folder entry is at `phys`.
    pub(crate) fn refresh(&self, share: &Share, phys: &Path, rel: &str) {
        let excludes = self.excludes();
        let own = rel.rsplit('/').next().unwrap_or(rel);
        let (files, dirs) = match walk::examine(&share.canon, phys, own, rel.to_string(), &excludes)
        {
            Examined::File(f) => (vec![f], Vec::new()),
            Examined::Dir(canon) => {
                // Folders already known elsewhere in the share are not
                // entered again (links to them, loops).
                let mut visited: HashSet<PathBuf> = self
                    .dirs()
                    .map
                    .iter()
                    .filter(|(_, (s, r))| *s == share.id && !Scope::Path(rel).contains(r))
                    .map(|(p, _)| p.clone())
                    .collect();
                let w = walk::walk_from(&share.canon, &canon, rel, &excludes, &mut visited);
                (w.files, w.dirs)
            }
            Examined::Nothing => (Vec::new(), Vec::new()),
        };
        self.apply(share, Scope::Path(rel), files, dirs);
        self.counters.refreshes.fetch_add(1, Ordering::Relaxed);
    }

    /// Makes the entries of `share` within `scope` exactly `found`.
    fn apply(
        &self,
        share: &Share,
        scope: Scope<'_>,
        found: Vec<Found>,
        dirs: Vec<(PathBuf, String)>,
    ) {
        let key = share.key();
        let mut db = self.db();
        let mut changes = Vec::new();
        let mut to_hash = Vec::new();
        {
            let first = !self.read().scanned.contains(&share.id);
            let preloaded = if first {
                match db.load_share(&key) {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read known hashes; files will be hashed again");
                        HashMap::new()
                    }
                }
            } else {
                HashMap::new()
            };
            // Sort out under the read lock what is unchanged, so that a
            // rescan of a large library holds the write lock (which stops
            // searches) only for the names that changed.
            let mut seen = HashSet::with_capacity(found.len());
            let mut pending = Vec::new();
            let gone: Vec<u32> = {
                let st = self.read();
                for f in found {
                    seen.insert(f.rel.clone());
                    match st
                        .index
                        .find(share.id, &f.rel)
                        .and_then(|id| st.index.get(id))
                    {
                        Some(e) if e.size == f.size && e.mtime_ns == f.mtime_ns => {
                            if e.hash.is_none() || e.sha1.is_none() || e.tth.is_none() {
                                to_hash.push(e.rel.clone());
                            }
                        }
                        _ => pending.push(f),
                    }
                }
                st.index
                    .iter()
                    .filter(|(_, e)| {
                        e.share == share.id && scope.contains(&e.rel) && !seen.contains(&*e.rel)
                    })
                    .map(|(id, _)| id)
                    .collect()
            };
            let mut st = self.write();
            if st.share(share.id).is_none() {
                return; // removed meanwhile
            }
            st.scanned.insert(share.id);
            for f in pending {
                if let Some(id) = st.index.find(share.id, &f.rel) {
                    if st.index.update_meta(id, f.size, f.mtime_ns) {
                        changes.push(Change::Upsert {
                            rel: f.rel.clone(),
                            row: Row {
                                size: f.size,
                                mtime_ns: f.mtime_ns,
                                hash: None,
                                sha1: None,
                                tth: None,
                            },
                        });
                    }
                    if let Some(e) = st.index.get(id) {
                        to_hash.push(e.rel.clone());
                    }
                    continue;
                }
                let known = if first {
                    preloaded.get(&f.rel).copied()
                } else {
                    db.get(&key, &f.rel).ok().flatten()
                };
                // All hashes or none: a row without SHA-1 or Tiger root
                // (an older library) is hashed again.
                let (hash, (sha1, tth)) = known
                    .filter(|r| r.size == f.size && r.mtime_ns == f.mtime_ns)
                    .and_then(|r| r.hash.zip(r.sha1.zip(r.tth)))
                    .map(|(h, (s, t))| (Some(h), (Some(s), Some(t))))
                    .unwrap_or_default();
                let row = Row {
                    size: f.size,
                    mtime_ns: f.mtime_ns,
                    hash,
                    sha1,
                    tth,
                };
                if known != Some(row) {
                    changes.push(Change::Upsert {
                        rel: f.rel.clone(),
                        row,
                    });
                }
                let rel: Arc<str> = f.rel.into();
                if hash.is_none() {
                    to_hash.push(rel.clone());
                }
                st.index.insert(Entry {
                    share: share.id,
                    name_lower: index::name_lower(&rel),
                    rel,
                    size: f.size,
                    mtime_ns: f.mtime_ns,
                    hash,
                    sha1,
                    tth,
                });
            }
            for id in gone {
                // Ids are stable between the two locks (only this function,
                // which the db lock serialises, and remove_share compact);
                // check anyway that the entry is still one to remove.
                let still_gone = st.index.get(id).is_some_and(|e| {
                    e.share == share.id && scope.contains(&e.rel) && !seen.contains(&*e.rel)
                });
                if still_gone {
                    if let Some(e) = st.index.remove(id) {
                        tracing::debug!(name = %e.rel, "no longer shared");
                        changes.push(Change::Remove {
                            rel: e.rel.to_string(),
                        });
                    }
                }
            }
            st.index.compact_if_sparse();
            if first && matches!(scope, Scope::All) {
                st.index.shrink();
                // Rows of files that vanished while the library was closed.
                for rel in preloaded.keys() {
                    if !seen.contains(rel) {
                        changes.push(Change::Remove { rel: rel.clone() });
                    }
                }
            }
        }
        if let Err(e) = db.apply(&key, &changes) {
            tracing::warn!(error = %e, "cannot record the shared files; hashes may be computed again after a restart");
        }
        drop(db);
        {
            let mut d = self.dirs();
            d.map
                .retain(|_, (s, r)| *s != share.id || !scope.contains(r));
            for (p, r) in dirs {
                d.map.insert(p, (share.id, r));
            }
            d.version += 1;
        }
        self.sync_watches();
        self.enqueue(share.id, to_hash);
    }

    /// Forgets everything of a share that was removed.
    pub(crate) fn forget_share(&self, share: &Share) {
        if let Err(e) = self.db().remove_share(&share.key()) {
            tracing::warn!(error = %e, "cannot forget a removed share in the database");
        }
        {
            let mut d = self.dirs();
            d.map.retain(|_, (s, _)| *s != share.id);
            d.version += 1;
        }
        self.sync_watches();
    }

    /// Brings the file-system watches in line with the offered folders.
    pub(crate) fn sync_watches(&self) {
        let mut w = lock(&self.watch);
        if let Some(w) = w.as_mut() {
            w.sync(&self.dirs());
        }
    }

    /// Tries to resolve `name` (already validated) in one share.
    pub(crate) fn resolve_in(
        &self,
        share: &Share,
        name: &str,
        excludes: &[PathBuf],
    ) -> Result<ResolvedFile, ResolveError> {
        let candidate = share.canon.join(name);
        if walk::is_excluded(&candidate, excludes) {
            return Err(ResolveError::Excluded);
        }
        if fs::symlink_metadata(&candidate).is_err() {
            return Err(ResolveError::NotFound);
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
        let (hash, sha1, tth) = {
            let st = self.read();
            st.index
                .find(share.id, name)
                .and_then(|id| st.index.get(id))
                .filter(|e| e.size == size && e.mtime_ns == mtime)
                .map(|e| (e.hash, e.sha1, e.tth))
                .unwrap_or_default()
        };
        Ok(ResolvedFile {
            path: canon,
            name: name.to_string(),
            size,
            hash,
            sha1,
            tth,
        })
    }
}
