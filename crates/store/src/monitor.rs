//! The monitoring thread: file-system notifications for every offered
//! folder, turned into targeted refreshes, plus a periodic full rescan that
//! catches whatever notifications missed.

use crate::core::Core;
use crate::name;
use crate::watch::{Watch, QUEUE};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the thread wakes up to look at the stop flag.
const TICK: Duration = Duration::from_millis(50);
/// Quiet time after the last notification before changes are applied.
const SETTLE: Duration = Duration::from_millis(50);
/// Longest delay of a change under a steady stream of notifications.
const MAX_DELAY: Duration = Duration::from_millis(500);
/// Most distinct paths collected before a full rescan replaces them.
const MAX_PENDING: usize = 10_000;

/// Changes seen but not applied yet.
#[derive(Default)]
struct Pending {
    paths: HashSet<PathBuf>,
    full: bool,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Pending {
    fn add(&mut self, ev: notify::Result<notify::Event>, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
        match ev {
            Ok(ev) if ev.need_rescan() => self.full = true,
            Ok(ev) => {
                for p in ev.paths {
                    if self.paths.len() >= MAX_PENDING {
                        self.full = true;
                        break;
                    }
                    // Hidden and partial files are never offered: writes to
                    // a download in progress cause no work.
                    let ignored = p
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| name::is_hidden(n) || name::is_partial(n));
                    if !ignored {
                        self.paths.insert(p);
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "file-system notification error; rescanning");
                self.full = true;
            }
        }
    }

    fn due(&self, now: Instant) -> bool {
        match (self.first, self.last) {
            (Some(f), Some(l)) => now - l >= SETTLE || now - f >= MAX_DELAY,
            _ => false,
        }
    }
}

/// Applies one changed path: finds its share and name from the folder it
/// lies in, and refreshes that name.
fn apply_path(core: &Core, path: &Path) -> bool {
    let (share_id, rel, phys) = {
        let d = core.dirs();
        let parent = path.parent().and_then(|p| d.map.get(p));
        let name = path.file_name().and_then(|n| n.to_str());
        match (parent, name) {
            (Some((s, prefix)), Some(name)) => {
                let rel = if prefix.is_empty() {
                    name.to_string()
                } else {
                    format!("{prefix}/{name}")
                };
                (*s, rel, path.to_path_buf())
            }
            _ => match d.map.get(path) {
                // A watched folder itself (e.g. removed): the share root
                // needs a full rescan, another folder a refresh.
                Some((s, prefix)) if prefix.is_empty() => {
                    let share = core.read().share(*s).cloned();
                    drop(d);
                    if let Some(share) = share {
                        core.scan_share(&share);
                    }
                    return true;
                }
                Some((s, prefix)) => (*s, prefix.clone(), path.to_path_buf()),
                None => return false,
            },
        }
    };
    let Some(share) = core.read().share(share_id).cloned() else {
        return false;
    };
    core.refresh(&share, &phys, &rel);
    true
}

fn full_rescan(core: &Core) {
    for share in core.shares() {
        if core.stopped() {
            return;
        }
        core.scan_share(&share);
    }
}

/// Body of the monitoring thread.
pub(crate) fn run(core: Arc<Core>, mut watch: Option<Watch>, interval: Duration) {
    let mut pending = Pending::default();
    let mut next_rescan = Instant::now() + interval;
    while !core.stopped() {
        if let Some(w) = watch.as_mut() {
            match w.rx.recv_timeout(TICK) {
                Ok(ev) => {
                    let now = Instant::now();
                    pending.add(ev, now);
                    for _ in 0..QUEUE {
                        match w.rx.try_recv() {
                            Ok(ev) => pending.add(ev, now),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    if core.stopped() {
                        return;
                    }
                    tracing::warn!("file-system watcher stopped; relying on periodic rescans");
                    watch = None;
                }
            }
            if let Some(w) = watch.as_ref() {
                if w.overflow.swap(false, Ordering::Relaxed) {
                    pending.full = true;
                    pending.first.get_or_insert_with(Instant::now);
                    pending.last = Some(Instant::now());
                }
            }
        } else {
            // Unparked when the library stops.
            std::thread::park_timeout(TICK);
        }
        let now = Instant::now();
        if now >= next_rescan {
            full_rescan(&core);
            next_rescan = Instant::now() + interval;
            pending = Pending::default();
        } else if pending.due(now) {
            let p = std::mem::take(&mut pending);
            if p.full {
                full_rescan(&core);
            } else {
                let mut paths: Vec<PathBuf> = p.paths.into_iter().collect();
                // Parents before children; a refreshed folder covers its
                // content.
                paths.sort();
                let mut done: Vec<PathBuf> = Vec::new();
                for path in paths {
                    if core.stopped() {
                        return;
                    }
                    if done.iter().any(|d| path.starts_with(d)) {
                        continue;
                    }
                    if apply_path(&core, &path) && path.is_dir() {
                        done.push(path);
                    }
                }
            }
        }
    }
}
