//! What the connections of one download share: the schedule, the
//! partial file, progress, and the stop and wake-up signals.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::report::{Progress, SourceOutcome};
use crate::tree::Tree;

use super::sched::Sched;

pub(super) struct Shared {
    pub(super) sched: Mutex<Sched>,
    /// Bumped, with a wake-up, whenever pieces go back to the queue or
    /// the download ends: what idle connections wait for.
    pub(super) changed: (Mutex<u64>, std::sync::Condvar),
    pub(super) tree: Arc<Tree>,
    pub(super) received: AtomicU64,
    /// The partial file: sources write their verified bytes straight to it
    /// (positioned writes, so they never share a file offset).
    pub(super) part: std::fs::File,
    pub(super) progress: watch::Sender<Progress>,
    /// Set once every group is verified, or when writing failed.
    pub(super) done: watch::Sender<bool>,
    /// Tells the receive loops to end.
    pub(super) stop: AtomicBool,
    /// A local failure (the disk): it ends the download.
    pub(super) fatal: Mutex<Option<io::Error>>,
    /// The sockets of the running receive loops, to wake a blocked read.
    pub(super) live: Mutex<Vec<(i32, std::net::TcpStream)>>,
    /// Receive loops running, and a signal when one ends. Apart from
    /// the rest, so that a loop counts as ended only once it let go of
    /// everything shared.
    pub(super) sessions: Arc<Sessions>,
    /// Serializes writes to the partial file.
    pub(super) write_lock: Mutex<()>,
    /// Bytes per batch.
    pub(super) batch: usize,
    /// The download rate limit shared with other transfers.
    pub(super) limit: Option<crate::RateLimiter>,
}

/// The count of running receive loops.
#[derive(Default)]
pub(super) struct Sessions {
    running: AtomicUsize,
    ended: Notify,
}

impl Sessions {
    pub(super) fn start(&self) {
        self.running.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn end(&self) {
        self.running.fetch_sub(1, Ordering::AcqRel);
        self.ended.notify_waiters();
    }
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Sched> {
        // A poisoned lock only means a thread panicked mid-update; the
        // schedule stays usable (verification is re-checked on resume).
        self.sched.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Wakes the connections waiting for work.
    pub(super) fn notify_change(&self) {
        let mut g = self.changed.0.lock().unwrap_or_else(|e| e.into_inner());
        *g = g.wrapping_add(1);
        self.changed.1.notify_all();
    }

    /// Waits (at most `limit`) for [`Shared::notify_change`].
    pub(super) fn wait_change(&self, limit: Duration) {
        let g = self.changed.0.lock().unwrap_or_else(|e| e.into_inner());
        let seen = *g;
        let _ = self.changed.1.wait_timeout_while(g, limit, |n| {
            *n == seen && !self.stop.load(Ordering::Acquire)
        });
    }

    pub(super) fn set_outcome(&self, src: usize, outcome: SourceOutcome) {
        let mut s = self.lock();
        if s.sources[src].outcome.is_none() {
            s.sources[src].outcome = Some(outcome);
        }
    }

    /// Ends the download because of a local failure.
    pub(super) fn fail(&self, e: io::Error) {
        let mut fatal = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        if fatal.is_none() {
            *fatal = Some(e);
        }
        drop(fatal);
        self.stop.store(true, Ordering::Release);
        self.done.send_replace(true);
    }

    /// Records `len` bytes from `src` at `offset` (`ok` of them written
    /// after they verified; `bad_at`, where a failing group starts).
    pub(super) fn record(
        &self,
        src: usize,
        offset: u64,
        len: usize,
        ok: usize,
        bad_at: Option<u64>,
    ) {
        let gl = self.tree.group_log();
        let mut s = self.lock();
        s.sources[src].received += len as u64;
        if let Some(bad) = bad_at {
            if !s.sources[src].bad {
                s.sources[src].bad = true;
                s.sources[src].outcome = Some(SourceOutcome::BadData);
                tracing::warn!(peer = %s.sources[src].peer, offset = bad,
                    "peer sent data that failed verification; discarded, and it is not asked again for this file");
            }
        }
        let mut pos = 0usize;
        while pos < ok {
            let i = (offset + pos as u64) >> gl;
            let r = self.tree.group_range(i);
            let glen = r.end - r.start;
            pos += glen as usize;
            s.verified_group(src, i, glen);
        }
        let finished = s.complete();
        let p = Progress {
            received: self.received.load(Ordering::Relaxed),
            done: s.done_bytes,
            total: Some(self.tree.size()),
        };
        drop(s);
        self.progress.send_replace(p);
        if finished {
            self.done.send_replace(true);
            self.notify_change();
        }
    }

    /// Tells every receive loop to end, and wakes those blocked in a read
    /// or waiting for work; does not wait for them.
    pub(super) fn stop_now(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for (_, s) in self.live.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        self.notify_change();
    }

    /// Stops every receive loop and waits until they have ended, so no
    /// write to the partial file happens after this returns.
    pub(super) async fn halt(&self) {
        self.stop_now();
        loop {
            let ended = self.sessions.ended.notified();
            if self.sessions.running.load(Ordering::SeqCst) == 0 {
                return;
            }
            // A loop checks the flag at least once per batch, and its read
            // fails at once on the shut-down socket.
            let _ = tokio::time::timeout(Duration::from_millis(50), ended).await;
        }
    }
}
