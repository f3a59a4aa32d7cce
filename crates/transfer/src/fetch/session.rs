//! The connections of a download by hash: one worker per connection,
//! each running blocking sessions that ask for pieces, read, verify and
//! write them.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::buf::PageBuf;
use crate::client::rutella::{BlockingConn, RutellaConn};
use crate::error::{Broken, DownloadError, SourceError, VerifyError};
use crate::report::SourceOutcome;
use crate::tree::Tree;
use crate::wire::Status;

use super::sched::Take;
use super::shared::Shared;

/// Memory for batches in flight, shared by all the connections of one
/// download.
const BUFFER_BUDGET: usize = 24 << 20;

/// Batches in flight per connection: one being read, one being verified
/// and written, one spare.
const RING: usize = 3;

/// Largest batch: large reads and writes cost the fewest wake-ups and
/// system calls (measured: 4 MiB batches beat 1 MiB ones by about a tenth).
const MAX_BATCH: usize = 4 << 20;

/// Smallest batch.
const MIN_BATCH: usize = 256 << 10;

/// The batch size for `connections` connections: the budget split among
/// them, in whole groups of `group` bytes.
pub(super) fn batch_size(connections: usize, group: usize) -> usize {
    let each = BUFFER_BUDGET / (connections.max(1) * RING);
    let size = each.clamp(MIN_BATCH, MAX_BATCH);
    (size / group).max(1) * group
}

/// Verifies the whole groups of `data` (which starts at group-aligned
/// `offset`; a shorter last group only at the end of the file): returns
/// how many leading bytes passed, and where a failing group starts.
fn verify_prefix(tree: &Tree, offset: u64, data: &[u8]) -> (usize, Option<u64>) {
    let gl = tree.group_log();
    let mut at = 0usize;
    while at < data.len() {
        let i = (offset + at as u64) >> gl;
        let r = tree.group_range(i);
        let glen = (r.end - r.start) as usize;
        let Some(group) = data.get(at..at + glen) else {
            break;
        };
        if !tree.verify_group(i, group) {
            return (at, Some(r.start));
        }
        at += glen;
    }
    (at, None)
}

/// Whether an error makes a source bad for this file, and how it ended.
pub(super) fn outcome_of(e: &DownloadError) -> (bool, SourceOutcome) {
    match e {
        DownloadError::Verify(_) => (true, SourceOutcome::BadData),
        DownloadError::Source(SourceError::Refusal {
            status: Status::NotFound,
            ..
        }) => (false, SourceOutcome::NotFound),
        DownloadError::Source(SourceError::Refusal {
            status: Status::Busy,
            ..
        }) => (false, SourceOutcome::Busy),
        other => (false, SourceOutcome::Failed(other.to_string())),
    }
}

/// A connection with `peer` that broke because of `cause`.
fn broken(peer: SocketAddr, cause: Broken) -> DownloadError {
    SourceError::Connection { peer, cause }.into()
}

/// One connection to a source: connects, then fetches pieces in a
/// blocking session until nothing is left for it; reconnects when an idle
/// connection was closed, retries a busy source a few times.
pub(super) async fn worker(
    src: usize,
    shared: Arc<Shared>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    dialer: Option<crate::dial::SharedDialer>,
) {
    let peer = shared.lock().sources[src].peer;
    let mut busy_tries = 0u32;
    let mut reconnects = 0u32;
    let mut cuts = 0u32;
    loop {
        let conn =
            match RutellaConn::connect_with(dialer.as_ref(), peer, connect_timeout, idle_timeout)
                .await
                .and_then(RutellaConn::into_blocking)
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("{e}");
                    let (_, outcome) = outcome_of(&e);
                    shared.set_outcome(src, outcome);
                    return;
                }
            };
        let sessions = Arc::clone(&shared.sessions);
        // Counted before the stop flag is read, and `halt` sets the flag
        // before it reads the count: a session either sees the flag or is
        // waited for.
        sessions.start();
        if shared.stop.load(Ordering::SeqCst) {
            sessions.end();
            return;
        }
        let session_shared = Arc::clone(&shared);
        let ran = tokio::task::spawn_blocking(move || {
            let r = session(conn, src, &session_shared);
            // Counted as ended only once it holds nothing shared.
            drop(session_shared);
            sessions.end();
            r
        })
        .await;
        let ended = match ran {
            Ok(r) => r,
            Err(e) => Session::failed(broken(
                peer,
                Broken::Io {
                    during: "running the receiving thread",
                    source: std::io::Error::other(e),
                },
            )),
        };
        let waited = ended.waited;
        match ended.result {
            // Another connection took over the rest of its requests; a
            // new connection carries on with whatever is left.
            Ok(()) if ended.cut_off && cuts < MAX_CUTS => {
                cuts += 1;
                tracing::debug!(%peer, "requests taken over by another source; reconnecting");
            }
            Ok(()) => {
                shared.set_outcome(src, SourceOutcome::Served);
                return;
            }
            // An idle connection the server closed is no fault of the source.
            Err(DownloadError::Source(SourceError::Connection { cause, .. }))
                if waited && cause.is_closed() && reconnects < 3 =>
            {
                reconnects += 1;
                tracing::debug!(%peer, "idle connection was closed; reconnecting");
            }
            Err(e) => {
                let (bad, outcome) = outcome_of(&e);
                if outcome == SourceOutcome::Busy && busy_tries < 5 {
                    busy_tries += 1;
                    tracing::info!(%peer, "source busy; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(100 << busy_tries)).await;
                    continue;
                }
                if bad {
                    shared.lock().sources[src].bad = true;
                }
                tracing::warn!("dropping source: {e}");
                shared.set_outcome(src, outcome);
                shared.notify_change();
                return;
            }
        }
    }
}

/// A batch read from a source, on its way to verification.
struct Batch {
    pos: u64,
    buf: PageBuf,
    filled: usize,
    /// The leading bytes that verified.
    ok: usize,
    /// Where a group that failed verification starts, if one did.
    bad_at: Option<u64>,
    /// The piece this batch completes.
    ends: Option<u64>,
}

/// How a [`session`] ended.
struct Session {
    result: Result<(), DownloadError>,
    /// The connection sat idle before it failed.
    waited: bool,
    /// It ended because another connection took over the rest of what it
    /// had asked for.
    cut_off: bool,
}

impl Session {
    fn failed(e: DownloadError) -> Session {
        Session {
            result: Err(e),
            waited: false,
            cut_off: false,
        }
    }
}

/// Most times one connection to a source may be cut off and opened
/// again because another source took over its requests.
const MAX_CUTS: u32 = 1000;

/// Requests kept in flight per connection: the next piece's data follows
/// the current one's without a round trip in between.
const AHEAD: usize = 2;

/// Fetches pieces over one connection until none is left for it (`Ok`),
/// or the connection or the source fails. Two threads: this one asks for
/// pieces, keeping [`AHEAD`] requests in flight, reads their data in
/// batches and verifies each batch while it is in the cache; a second
/// writes what verified and records it, so that reading and hashing
/// overlap with writing, and nothing unverified is ever written. Also
/// tells whether the connection sat idle before it failed, and whether it
/// was cut off because another connection took over the rest of its
/// requests.
fn session(mut conn: BlockingConn, src: usize, shared: &Shared) -> Session {
    use std::io::Read;
    use std::sync::mpsc::sync_channel;
    let tree = &shared.tree;
    let peer = conn.peer;
    let key = std::os::fd::AsRawFd::as_raw_fd(&conn.stream);
    match conn.stream.try_clone() {
        Ok(s) => shared
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((key, s)),
        Err(source) => {
            let during = "setting up the socket";
            return Session::failed(broken(peer, Broken::Io { during, source }));
        }
    }
    let (full_tx, full_rx) = sync_channel::<Batch>(RING);
    let (free_tx, free_rx) = sync_channel::<PageBuf>(RING);
    // A small file needs fewer and smaller buffers.
    let group = 1u64 << tree.group_log();
    let len = tree
        .size()
        .div_ceil(group)
        .max(1)
        .saturating_mul(group)
        .min(shared.batch as u64) as usize;
    let buffers = usize::try_from(tree.size().div_ceil(len as u64)).unwrap_or(RING);
    for _ in 0..RING.min(buffers) {
        match PageBuf::new(len) {
            Ok(b) => {
                let _ = free_tx.send(b);
            }
            Err(source) => {
                let during = "allocating buffers";
                return Session::failed(broken(peer, Broken::Io { during, source }));
            }
        }
    }
    let mut taken = Vec::new();
    let mut waited = false;
    let mut cut_off = false;
    let (read, written) = std::thread::scope(|scope| {
        let writer = scope.spawn(move || write_batches(full_rx, free_tx, src, shared, peer));
        let mut queue: VecDeque<(u64, u64, u64)> = VecDeque::new();
        let read = 'session: loop {
            while queue.len() < AHEAD {
                if shared.stop.load(Ordering::Acquire) {
                    break 'session Ok(());
                }
                // Help another source only with nothing else to do.
                let take = shared.lock().take(src, queue.is_empty());
                match take {
                    Take::Piece { id, groups } => {
                        taken.push(id);
                        let start = tree.group_range(groups.start).start;
                        let end = tree.group_range(groups.end - 1).end;
                        if let Err(e) = conn.request_range(tree.hash(), start, end - start) {
                            break 'session Err(e);
                        }
                        queue.push_back((id, start, end));
                    }
                    Take::Stop if queue.is_empty() => break 'session Ok(()),
                    Take::Wait if queue.is_empty() => {
                        waited = true;
                        shared.wait_change(Duration::from_millis(200));
                    }
                    Take::Stop | Take::Wait => break,
                }
            }
            let Some((id, start, end)) = queue.pop_front() else {
                continue;
            };
            match conn.range_header(end - start) {
                Ok(size) if size == tree.size() => waited = false,
                Ok(_) => {
                    break Err(VerifyError::BadData {
                        peer,
                        offset: start,
                    }
                    .into())
                }
                Err(e) => break Err(e),
            }
            let mut pos = start;
            let mut claimed_to = start;
            while pos < end {
                if shared.stop.load(Ordering::Acquire) {
                    break 'session Ok(());
                }
                // The writer ended early (bad data, or the disk failed).
                let Ok(mut buf) = free_rx.recv() else {
                    break 'session Ok(());
                };
                let want = (end - pos).min(buf.len() as u64) as usize;
                let mut filled = 0;
                let mut failure = None;
                let mut cut = false;
                while filled < want {
                    let at = pos + filled as u64;
                    if at >= claimed_to {
                        // Claimed just before reading: what another
                        // connection took over is never read here.
                        let claim = shared.lock().claim(id, at >> tree.group_log());
                        match claim {
                            Some(to) => claimed_to = tree.group_range(to - 1).end.min(end),
                            None => {
                                cut = true;
                                break;
                            }
                        }
                    }
                    let mut limit = (claimed_to - pos).min(want as u64) as usize;
                    if let Some(l) = &shared.limit {
                        limit = limit.min(filled + l.slice());
                    }
                    match conn.stream.read(&mut buf[filled..limit]) {
                        // Shut down by `halt`.
                        Ok(0) | Err(_) if shared.stop.load(Ordering::Acquire) => break,
                        Ok(0) => {
                            failure = Some(Broken::Closed {
                                during: "receiving data",
                            });
                            break;
                        }
                        Ok(n) => {
                            filled += n;
                            shared.received.fetch_add(n as u64, Ordering::Relaxed);
                            if let Some(l) = &shared.limit {
                                l.take_blocking(n as u64);
                            }
                        }
                        Err(e) => {
                            failure = Broken::from_read(e, conn.idle, "receiving data");
                            if failure.is_some() {
                                break;
                            }
                        }
                    }
                }
                let short = filled < want;
                let ends = (!short && pos + want as u64 == end).then_some(id);
                // Verified here, while the batch is in this processor's
                // cache. Whole groups that did arrive are worth checking
                // even when the read ended early.
                let whole = if !short || pos + filled as u64 == tree.size() {
                    filled
                } else {
                    (filled >> tree.group_log()) << tree.group_log()
                };
                let (ok, bad_at) = verify_prefix(tree, pos, &buf[..whole]);
                let batch = Batch {
                    pos,
                    buf,
                    filled,
                    ok,
                    bad_at,
                    ends,
                };
                if full_tx.send(batch).is_err() {
                    break 'session Ok(());
                }
                if let Some(offset) = bad_at {
                    break 'session Err(VerifyError::BadData { peer, offset }.into());
                }
                if let Some(cause) = failure {
                    break 'session Err(broken(peer, cause));
                }
                if cut {
                    // The rest of what was asked is another connection's
                    // now, and the source is sending it: this connection
                    // ends here.
                    cut_off = true;
                    break 'session Ok(());
                }
                if short {
                    // Stopped while reading.
                    break 'session Ok(());
                }
                pos += want as u64;
            }
        };
        drop(full_tx);
        let written = writer.join().unwrap_or_else(|_| {
            Err(broken(
                peer,
                Broken::Io {
                    during: "running the verifying thread",
                    source: std::io::Error::other("the thread panicked"),
                },
            ))
        });
        (read, written)
    });
    shared
        .live
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(k, _)| *k != key);
    // What this connection took and did not finish goes back to the queue.
    {
        let mut s = shared.lock();
        for id in taken {
            s.piece_done(id);
        }
    }
    shared.notify_change();
    let result = match (read, written) {
        (_, Err(e)) | (Err(e), _) => Err(e),
        (Ok(()), Ok(())) => Ok(()),
    };
    Session {
        result,
        waited,
        cut_off,
    }
}

/// The second stage of [`session`]: writes and records each batch's
/// verified prefix, hands its buffer back, and ends each piece whose last
/// batch it recorded.
fn write_batches(
    full: std::sync::mpsc::Receiver<Batch>,
    free: std::sync::mpsc::SyncSender<PageBuf>,
    src: usize,
    shared: &Shared,
    peer: SocketAddr,
) -> Result<(), DownloadError> {
    use std::os::unix::fs::FileExt;
    for b in full {
        let (ok, bad_at) = (b.ok, b.bad_at);
        if ok > 0 {
            // One writer at a time: concurrent writes to one file contend
            // for its lock in the kernel, spinning rather than waiting.
            let lock = shared.write_lock.lock().unwrap_or_else(|e| e.into_inner());
            let written = shared.part.write_all_at(&b.buf[..ok], b.pos);
            drop(lock);
            if let Err(e) = written {
                shared.fail(e);
                return Ok(());
            }
        }
        shared.record(src, b.pos, b.filled, ok, bad_at);
        if let Some(offset) = bad_at {
            return Err(VerifyError::BadData { peer, offset }.into());
        }
        if shared.lock().sources[src].bad {
            return Err(VerifyError::BadData {
                peer,
                offset: b.pos,
            }
            .into());
        }
        if let Some(id) = b.ends {
            shared.lock().piece_done(id);
            shared.notify_change();
        }
        let _ = free.send(b.buf);
    }
    Ok(())
}
