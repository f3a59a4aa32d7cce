//! The partial file of a download by hash and its records: paths, the
//! saved tree, the verified-groups state, and the checkpoints that sync
//! the data before the state claims it.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{DownloadError, LocalError};
use crate::hex::hex;
use crate::names::sanitize_basename;
use crate::state::PartState;
use crate::tree::Tree;

use super::shared::Shared;

/// Where a download by hash keeps its partial data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartPaths {
    /// The partial file.
    pub part: PathBuf,
    /// The verified tree.
    pub tree: PathBuf,
    /// The verified-groups record.
    pub state: PathBuf,
    /// The sanitized base name of the final file.
    pub base: String,
}

/// The partial-file paths of a download of `hash` named `name` into `dir`.
pub fn part_paths(dir: &Path, name: &str, hash: &[u8; 32]) -> Result<PartPaths, DownloadError> {
    let base = sanitize_basename(name).map_err(|source| LocalError::InvalidName {
        name: name.to_owned(),
        source,
    })?;
    let stem = format!("{base}.{}.part", &hex(hash)[..16]);
    Ok(PartPaths {
        part: dir.join(&stem),
        tree: dir.join(format!("{stem}.tree")),
        state: dir.join(format!("{stem}.state")),
        base,
    })
}

/// Verified bytes and size recorded for an unfinished download, if any.
pub fn pending_progress(dir: &Path, name: &str, hash: &[u8; 32]) -> Option<(u64, u64)> {
    let paths = part_paths(dir, name, hash).ok()?;
    let st = PartState::decode(&std::fs::read(paths.state).ok()?)?;
    if st.hash != *hash {
        return None;
    }
    let g = 1u64 << st.group_log;
    let mut done = 0;
    for i in 0..st.groups() {
        if st.get(i) {
            done += g.min(st.size - i * g);
        }
    }
    Some((done, st.size))
}

pub(super) fn encode_tree_file(tree: &Tree) -> Vec<u8> {
    let mut out = b"RTLTREE1".to_vec();
    out.push(tree.group_log());
    out.extend_from_slice(&tree.size().to_le_bytes());
    out.extend_from_slice(&tree.encode());
    out
}

pub(super) fn decode_tree_file(hash: &[u8; 32], buf: &[u8]) -> Option<Tree> {
    if buf.len() < 17 || &buf[..8] != b"RTLTREE1" {
        return None;
    }
    let gl = buf[8];
    let size = u64::from_le_bytes(buf[9..17].try_into().ok()?);
    Tree::decode(*hash, size, gl, &buf[17..]).ok()
}

/// Writes `data` to `path` through a temporary file and a rename.
pub(super) fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        // A full disk must not leave a stray temporary file.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Opens (or creates) the partial file at the tree's size, loads the saved
/// state, re-verifies the groups it claims, and records the confirmed last
/// group if one was fetched. Returns the file, the state, the verified
/// bytes found, and the size of the last group when it was recorded.
pub(super) fn open_part(
    paths: &PartPaths,
    tree: &Tree,
    last: Option<Vec<u8>>,
) -> io::Result<(std::fs::File, PartState, u64, Option<u64>)> {
    use std::os::unix::fs::FileExt;
    let part = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&paths.part)?;
    if part.metadata()?.len() != tree.size() {
        part.set_len(tree.size())?;
    }
    let mut state = std::fs::read(&paths.state)
        .ok()
        .and_then(|b| PartState::decode(&b))
        .filter(|s| {
            s.hash == *tree.hash() && s.size == tree.size() && s.group_log == tree.group_log()
        })
        .unwrap_or_else(|| PartState::empty(*tree.hash(), tree.size(), tree.group_log()));
    let mut buf = vec![0u8; 1usize << tree.group_log()];
    let mut done = 0;
    for i in 0..tree.groups() {
        if !state.get(i) {
            continue;
        }
        let r = tree.group_range(i);
        let slice = &mut buf[..(r.end - r.start) as usize];
        let ok = part.read_exact_at(slice, r.start).is_ok() && tree.verify_group(i, slice);
        if ok {
            done += r.end - r.start;
        } else {
            tracing::warn!(part = %paths.part.display(), offset = r.start,
                "a group recorded as verified no longer verifies; fetching it again");
            state.set(i, false);
        }
    }
    let mut wrote = None;
    if let Some(last) = last {
        let i = tree.groups().saturating_sub(1);
        if tree.groups() > 0 && !state.get(i) && tree.verify_group(i, &last) {
            part.write_all_at(&last, tree.group_range(i).start)?;
            state.set(i, true);
            wrote = Some(last.len() as u64);
        }
    }
    Ok((part, state, done, wrote))
}

/// Every `every`, syncs the partial file and then records which groups
/// are verified; once more when `stop` closes.
pub(super) fn checkpointer(
    shared: &Shared,
    paths: &PartPaths,
    every: Duration,
    stop: std::sync::mpsc::Receiver<()>,
) -> io::Result<()> {
    use std::sync::mpsc::RecvTimeoutError;
    loop {
        // A floor, so that a zero interval cannot make this spin.
        let wait = every.max(Duration::from_millis(5));
        let last = !matches!(stop.recv_timeout(wait), Err(RecvTimeoutError::Timeout));
        // Take the record before the sync: everything it claims was
        // written before the sync began.
        let snapshot = {
            let mut s = shared.lock();
            let due = s.dirty || last;
            s.dirty = false;
            due.then(|| (s.state.encode(), s.verified == s.total))
        };
        if let Some((bytes, complete)) = snapshot {
            let saved = shared.part.sync_data().and_then(|()| {
                if complete {
                    // The file is about to be moved into place.
                    Ok(())
                } else {
                    write_atomic(&paths.state, &bytes)
                }
            });
            if let Err(e) = saved {
                shared.fail(io::Error::new(e.kind(), e.to_string()));
                return Err(e);
            }
        }
        if last {
            return Ok(());
        }
    }
}

pub(super) fn verified_bytes(state: &PartState, tree: &Tree) -> u64 {
    (0..tree.groups())
        .filter(|&i| state.get(i))
        .map(|i| {
            let r = tree.group_range(i);
            r.end - r.start
        })
        .sum()
}
