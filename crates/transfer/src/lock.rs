//! One download per target: an exclusive lock on a hidden file beside the
//! partial data, held for the whole download, so that two downloads of the
//! same file into the same folder (two processes, or a resumed download
//! and an explicit one in the same process) never write the same partial
//! files at once. The second waits for the first.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// First pause between two tries of a held lock; it doubles up to
/// [`POLL_MAX`].
const POLL_MIN: Duration = Duration::from_millis(10);
const POLL_MAX: Duration = Duration::from_millis(100);

/// The lock of one download target. Dropping it removes the lock file
/// (while still holding it) and releases it.
#[derive(Debug)]
pub(crate) struct PartLock {
    file: Option<File>,
    path: PathBuf,
}

/// The lock file of the partial file `part`: the same name, hidden, with
/// `.lock` added (hidden files are never shared).
pub(crate) fn lock_path(part: &Path) -> PathBuf {
    let name = part
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    part.with_file_name(format!(".{name}.lock"))
}

/// Whether `file` is still the file at `path` (a holder that finished
/// removed it, and a later one may have made a new one).
fn still_there(file: &File, path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let held = file.metadata()?;
    Ok(match std::fs::metadata(path) {
        Ok(now) => now.ino() == held.ino() && now.dev() == held.dev(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    })
}

/// `flock(LOCK_EX | LOCK_NB)`: whether the lock was taken. The lock
/// belongs to this open file, so another open of the same file (in this
/// process too) does not get it, and it ends when the file is closed,
/// also when the process is killed.
fn try_lock(file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: the descriptor is open for the duration of the call
        // (borrowed from `file`).
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => return Ok(false),
            io::ErrorKind::Interrupted => continue,
            _ => return Err(e),
        }
    }
}

/// One try: the lock, or `None` when another download holds it.
fn try_once(path: &Path) -> io::Result<Option<PartLock>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    for _ in 0..16 {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        if !try_lock(&file)? {
            return Ok(None);
        }
        if still_there(&file, path)? {
            return Ok(Some(PartLock {
                file: Some(file),
                path: path.to_owned(),
            }));
        }
        // The holder finished and removed it between our open and lock:
        // try the current file.
    }
    Err(io::Error::other(format!(
        "the lock file {} keeps changing",
        path.display()
    )))
}

impl PartLock {
    /// Takes the lock of the partial file `part`, waiting while another
    /// download holds it (logged once, naming `what`). Returns the lock
    /// and whether it had to wait.
    pub(crate) async fn acquire(part: &Path, what: &str) -> io::Result<(PartLock, bool)> {
        let path = lock_path(part);
        let mut pause = POLL_MIN;
        let mut waited = false;
        loop {
            let p = path.clone();
            let got = tokio::task::spawn_blocking(move || try_once(&p))
                .await
                .map_err(io::Error::other)??;
            if let Some(lock) = got {
                if waited {
                    tracing::info!(target_file = %what, "the other download ended; going on");
                }
                return Ok((lock, waited));
            }
            if !waited {
                tracing::info!(target_file = %what, lock = %path.display(),
                    "another download of this file into this folder is already running; waiting for it");
                waited = true;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL_MAX);
        }
    }
}

impl Drop for PartLock {
    fn drop(&mut self) {
        // Removed while held, so that a waiter that then gets the old file
        // sees it is gone and takes the new one.
        let _ = std::fs::remove_file(&self.path);
        drop(self.file.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_download_waits_for_the_first_and_nothing_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("a.bin.0011223344556677.part");
        let (first, waited) = PartLock::acquire(&part, "a.bin").await.unwrap();
        assert!(!waited);
        let lock_file = lock_path(&part);
        assert_eq!(
            lock_file.file_name().unwrap(),
            ".a.bin.0011223344556677.part.lock"
        );
        assert!(lock_file.exists());
        // Held, even against the same process.
        assert!(try_once(&lock_file).unwrap().is_none());
        let p = part.clone();
        let second = tokio::spawn(async move { PartLock::acquire(&p, "a.bin").await.unwrap() });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!second.is_finished(), "the second must wait");
        drop(first);
        let (second, waited) = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .unwrap()
            .unwrap();
        assert!(waited);
        assert!(lock_file.exists());
        drop(second);
        assert!(!lock_file.exists(), "the lock file is removed");
        // A lock file left by a killed process is taken over.
        std::fs::write(&lock_file, b"").unwrap();
        let (third, waited) = PartLock::acquire(&part, "a.bin").await.unwrap();
        assert!(!waited);
        drop(third);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
