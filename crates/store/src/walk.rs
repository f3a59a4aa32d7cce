//! Recursive walk of one shared folder, applying the sharing rules.

use crate::name::{check_target, check_walk_component, MAX_NAME_LEN};
use std::collections::HashSet;
use std::fs::{self, Metadata};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Deepest folder nesting that is walked.
const MAX_DEPTH: usize = 64;

/// A file found by the walk that may be offered.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// Path relative to the share, `/`-separated.
    pub(crate) rel: String,
    pub(crate) size: u64,
    pub(crate) mtime_ns: i64,
}

/// Modification time in nanoseconds since the Unix epoch (0 if unknown).
pub(crate) fn mtime_ns(meta: &Metadata) -> i64 {
    match meta.modified() {
        Ok(t) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
        },
        Err(_) => 0,
    }
}

/// True if `path` is an exclude folder or lies under one.
pub(crate) fn is_excluded(path: &Path, excludes: &[PathBuf]) -> bool {
    excludes.iter().any(|ex| path.starts_with(ex))
}

/// Walks the share whose canonical root is `root`. Never leaves `root`
/// (symbolic links are followed only when they lead inside it), never
/// enters a folder twice (loops), skips hidden, `.part`, excluded and
/// special files and names that could not be requested back.
pub(crate) fn walk_share(root: &Path, excludes: &[PathBuf]) -> Vec<Found> {
    let mut out = Vec::new();
    if is_excluded(root, excludes) {
        return out;
    }
    let mut visited: HashSet<PathBuf> = HashSet::new();
    visited.insert(root.to_path_buf());
    // (physical canonical dir, relative prefix, depth)
    let mut stack: Vec<(PathBuf, String, usize)> = vec![(root.to_path_buf(), String::new(), 0)];
    while let Some((dir, prefix, depth)) = stack.pop() {
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot list shared folder; skipping it");
                continue;
            }
        };
        let mut entries: Vec<fs::DirEntry> = rd.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for entry in entries {
            let os_name = entry.file_name();
            let Some(name) = os_name.to_str() else {
                tracing::debug!(dir = %dir.display(), "skipping a name that is not UTF-8");
                continue;
            };
            let rel = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            };
            if rel.len() > MAX_NAME_LEN {
                continue;
            }
            let path = dir.join(name);
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_symlink() {
                let Ok(target) = fs::canonicalize(&path) else {
                    continue; // dangling
                };
                let Ok(rel_target) = target.strip_prefix(root) else {
                    tracing::debug!(link = %path.display(), "symbolic link leads outside the share; not offered");
                    continue;
                };
                if is_excluded(&target, excludes) || check_target(rel_target).is_err() {
                    continue;
                }
                let Ok(meta) = fs::metadata(&target) else {
                    continue;
                };
                if meta.is_dir() {
                    if check_walk_component(name, false).is_ok()
                        && depth < MAX_DEPTH
                        && visited.insert(target.clone())
                    {
                        subdirs.push((target, rel, depth + 1));
                    }
                } else if meta.is_file() && check_walk_component(name, true).is_ok() {
                    out.push(Found {
                        rel,
                        size: meta.len(),
                        mtime_ns: mtime_ns(&meta),
                    });
                }
            } else if ft.is_dir() {
                if check_walk_component(name, false).is_ok()
                    && !is_excluded(&path, excludes)
                    && depth < MAX_DEPTH
                    && visited.insert(path.clone())
                {
                    subdirs.push((path, rel, depth + 1));
                }
            } else if ft.is_file() {
                if check_walk_component(name, true).is_err() || is_excluded(&path, excludes) {
                    continue;
                }
                let Ok(meta) = entry.metadata() else { continue };
                out.push(Found {
                    rel,
                    size: meta.len(),
                    mtime_ns: mtime_ns(&meta),
                });
            }
        }
        // Depth-first in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    out
}
