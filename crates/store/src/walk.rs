//! Walking shared folders and judging single paths, applying the sharing
//! rules. The full walk and the refresh of one changed path use the same
//! [`examine`], so they never disagree on what is offered.

use crate::name::{check_target, check_walk_component, MAX_NAME_LEN};
use std::collections::HashSet;
use std::fs::{self, Metadata};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Deepest folder nesting that is walked.
const MAX_DEPTH: usize = 64;

/// A file found that may be offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    /// Path relative to the share, `/`-separated.
    pub(crate) rel: String,
    pub(crate) size: u64,
    pub(crate) mtime_ns: i64,
}

/// What one path inside a share is, for sharing purposes.
#[derive(Debug)]
pub(crate) enum Examined {
    /// A file that may be offered.
    File(Found),
    /// A folder whose content may be offered; its canonical path.
    Dir(PathBuf),
    /// Missing, or never offered.
    Nothing,
}

/// Result of a walk.
#[derive(Debug, Default)]
pub(crate) struct Walked {
    pub(crate) files: Vec<Found>,
    /// Folders entered: (canonical path, relative name, "" for the root).
    pub(crate) dirs: Vec<(PathBuf, String)>,
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

fn found(rel: String, meta: &Metadata) -> Examined {
    Examined::File(Found {
        rel,
        size: meta.len(),
        mtime_ns: mtime_ns(meta),
    })
}

/// Judges the entry `path` (whose own name is `name` and whose name
/// relative to the share is `rel`) of a folder already known to be offered,
/// in the share whose canonical root is `root`.
pub(crate) fn examine(
    root: &Path,
    path: &Path,
    name: &str,
    rel: String,
    excludes: &[PathBuf],
) -> Examined {
    if rel.len() > MAX_NAME_LEN || check_walk_component(name, false).is_err() {
        return Examined::Nothing;
    }
    let Ok(lmeta) = fs::symlink_metadata(path) else {
        return Examined::Nothing;
    };
    let ft = lmeta.file_type();
    if ft.is_symlink() {
        let Ok(target) = fs::canonicalize(path) else {
            return Examined::Nothing; // dangling
        };
        let Ok(rel_target) = target.strip_prefix(root) else {
            tracing::debug!(link = %path.display(), "symbolic link leads outside the share; not offered");
            return Examined::Nothing;
        };
        if is_excluded(&target, excludes) || check_target(rel_target).is_err() {
            return Examined::Nothing;
        }
        let Ok(meta) = fs::metadata(&target) else {
            return Examined::Nothing;
        };
        if meta.is_dir() {
            Examined::Dir(target)
        } else if meta.is_file() && check_walk_component(name, true).is_ok() {
            found(rel, &meta)
        } else {
            Examined::Nothing
        }
    } else if is_excluded(path, excludes) {
        Examined::Nothing
    } else if ft.is_dir() {
        Examined::Dir(path.to_path_buf())
    } else if ft.is_file() && check_walk_component(name, true).is_ok() {
        found(rel, &lmeta)
    } else {
        Examined::Nothing
    }
}

/// Walks the offered folder `start` (canonical), whose name relative to the
/// share is `prefix`, recursively. Never leaves `root` (symbolic links are
/// followed only when they lead inside it), never enters a folder in
/// `visited` (loops, or folders already reached through another name).
pub(crate) fn walk_from(
    root: &Path,
    start: &Path,
    prefix: &str,
    excludes: &[PathBuf],
    visited: &mut HashSet<PathBuf>,
) -> Walked {
    let mut out = Walked::default();
    if is_excluded(start, excludes) || !visited.insert(start.to_path_buf()) {
        return out;
    }
    // (canonical dir, relative prefix, depth)
    let mut stack: Vec<(PathBuf, String, usize)> =
        vec![(start.to_path_buf(), prefix.to_string(), 0)];
    while let Some((dir, prefix, depth)) = stack.pop() {
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot list shared folder; skipping it");
                continue;
            }
        };
        out.dirs.push((dir.clone(), prefix.clone()));
        let mut names: Vec<String> = rd
            .filter_map(Result::ok)
            .filter_map(|e| match e.file_name().into_string() {
                Ok(n) => Some(n),
                Err(_) => {
                    tracing::debug!(dir = %dir.display(), "skipping a name that is not UTF-8");
                    None
                }
            })
            .collect();
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            match examine(root, &dir.join(&name), &name, rel.clone(), excludes) {
                Examined::File(f) => out.files.push(f),
                Examined::Dir(canon) => {
                    if depth < MAX_DEPTH && visited.insert(canon.clone()) {
                        subdirs.push((canon, rel, depth + 1));
                    }
                }
                Examined::Nothing => {}
            }
        }
        // Depth-first in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    out
}

/// Walks a whole share whose canonical root is `root`.
pub(crate) fn walk_share(root: &Path, excludes: &[PathBuf]) -> Walked {
    walk_from(root, root, "", excludes, &mut HashSet::new())
}
