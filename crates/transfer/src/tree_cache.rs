//! A bounded in-memory cache of the verification trees of served files.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::tree::Tree;
use crate::SourceFile;

/// Trees of served files, keyed by hash, evicting the oldest beyond a byte
/// budget. A cached tree is reused only while the file's path, size and
/// modification time are unchanged.
#[derive(Debug)]
pub struct TreeCache {
    max_bytes: u64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<[u8; 32], Entry>,
    order: VecDeque<[u8; 32]>,
    bytes: u64,
}

#[derive(Debug)]
struct Entry {
    key: (PathBuf, u64, Option<SystemTime>),
    tree: Arc<Tree>,
}

/// Why no tree could be produced for a request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TreeLookupError {
    #[error("reading the file failed: {0}")]
    Io(#[from] io::Error),
    #[error("the file's content no longer has the requested hash")]
    Changed,
}

impl TreeCache {
    /// A cache holding at most `max_bytes` of group hashes.
    pub fn new(max_bytes: u64) -> TreeCache {
        TreeCache {
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Adds a tree computed elsewhere for the file at `path` (as it is now).
    pub fn insert(&self, path: &std::path::Path, tree: Tree) -> io::Result<()> {
        let m = std::fs::metadata(path)?;
        if m.len() != tree.size() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the tree is not of this file's size",
            ));
        }
        self.put(
            *tree.hash(),
            (path.to_owned(), m.len(), m.modified().ok()),
            Arc::new(tree),
        );
        Ok(())
    }

    fn put(&self, hash: [u8; 32], key: (PathBuf, u64, Option<SystemTime>), tree: Arc<Tree>) {
        let hash = &hash;
        if let Ok(mut inner) = self.inner.lock() {
            let cost = tree.encoded_len();
            if cost <= self.max_bytes {
                if let Some(old) = inner.map.remove(hash) {
                    inner.bytes -= old.tree.encoded_len();
                    inner.order.retain(|h| h != hash);
                }
                while inner.bytes + cost > self.max_bytes {
                    let Some(old) = inner.order.pop_front() else {
                        break;
                    };
                    if let Some(e) = inner.map.remove(&old) {
                        inner.bytes -= e.tree.encoded_len();
                    }
                }
                inner.bytes += cost;
                inner.order.push_back(*hash);
                inner.map.insert(*hash, Entry { key, tree });
            }
        }
    }

    /// The tree of `file`, which must hash to `hash`; computed (with
    /// `threads` threads) when not cached.
    pub(crate) async fn get(
        &self,
        hash: &[u8; 32],
        file: &SourceFile,
        threads: usize,
    ) -> Result<Arc<Tree>, TreeLookupError> {
        let path = file.path.clone();
        let (f, key) = tokio::task::spawn_blocking(move || -> io::Result<_> {
            let f = std::fs::File::open(&path)?;
            let m = f.metadata()?;
            Ok((f, (path, m.len(), m.modified().ok())))
        })
        .await
        .map_err(io::Error::other)??;
        if let Ok(inner) = self.inner.lock() {
            if let Some(e) = inner.map.get(hash) {
                if e.key == key {
                    return Ok(Arc::clone(&e.tree));
                }
            }
        }
        let size = key.1;
        let tree = tokio::task::spawn_blocking(move || Tree::compute(&f, size, threads))
            .await
            .map_err(io::Error::other)??;
        if tree.hash() != hash {
            return Err(TreeLookupError::Changed);
        }
        let tree = Arc::new(tree);
        self.put(*hash, key, Arc::clone(&tree));
        Ok(tree)
    }
}
