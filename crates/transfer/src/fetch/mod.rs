//! Downloads by hash from several sources at once, verified group by group,
//! resumable across restarts.
//!
//! Layout next to the final file, in the output folder:
//!
//! * `NAME.HASH16.part`: the file being filled, at its final size (sparse);
//! * `NAME.HASH16.part.tree`: the verified tree (group hashes);
//! * `NAME.HASH16.part.state`: which groups are verified *and synced*.
//!
//! The state is written only after the `.part` data it claims was synced, so
//! a download killed at any moment (even with SIGKILL) resumes from data
//! that was verified; on resume the claimed groups are hashed again, and any
//! that fail are fetched anew.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::client::rutella::RutellaConn;
use crate::download::blocking_io;
use crate::error::{DownloadError, ExhaustedError, LocalError};
use crate::hex::hex;
use crate::lock::PartLock;
use crate::names::move_into_place;
use crate::report::{DownloadReport, Progress, SourceOutcome, SourceReport};
use crate::tree::Tree;

mod part;
mod sched;
mod session;
mod shared;

use part::{
    checkpointer, decode_tree_file, encode_tree_file, open_part, verified_bytes, write_atomic,
};
pub use part::{part_paths, pending_progress, PartPaths};
use sched::{Sched, Src};
use session::{batch_size, outcome_of, worker};
use shared::{Sessions, Shared};

/// Pieces a download is cut into, per connection: enough for the
/// connections to end together, few enough that the serving side's cost
/// per request stays small (measured: 4 beats 8 and 16 on 1 GB).
const PIECES_PER_CONNECTION: u64 = 4;

/// A download by hash.
#[derive(Debug, Clone)]
pub struct HashGet {
    /// The file's BLAKE3 hash.
    pub hash: [u8; 32],
    /// The size the sources advertised, if known (the hash decides).
    pub size: Option<u64>,
    /// Peers that offer the file.
    pub sources: Vec<SocketAddr>,
    /// Folder that receives the file.
    pub out_dir: PathBuf,
    /// Name to give the file (its last component, sanitized).
    pub name: String,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// A source that sends nothing for this long is dropped.
    pub idle_timeout: Duration,
    /// Largest range asked of one source at once (bytes).
    pub max_piece: u64,
    /// How often verified progress is synced and recorded (at least 5 ms).
    pub checkpoint_every: Duration,
    /// Connections opened to the source when there is only one (default
    /// 1). With requests sent ahead, one connection keeps the path full
    /// on loopback, and a second only added overhead there (measured);
    /// more can help where one TCP connection cannot fill a long path.
    /// With several sources each gets one connection.
    pub single_source_connections: usize,
    /// How to get a source's connections; `None`: connect to its address.
    pub dialer: Option<crate::dial::SharedDialer>,
    /// A download rate limit shared with other transfers; `None`: none.
    pub limit: Option<crate::RateLimiter>,
}

impl HashGet {
    /// A download with default timeouts (5 s connect, 20 s idle), 256 MiB
    /// pieces, one connection per source and a checkpoint every second.
    pub fn new(hash: [u8; 32], sources: Vec<SocketAddr>, out_dir: PathBuf, name: &str) -> Self {
        HashGet {
            hash,
            size: None,
            sources,
            out_dir,
            name: name.to_owned(),
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(20),
            max_piece: 256 << 20,
            checkpoint_every: Duration::from_secs(1),
            single_source_connections: 1,
            dialer: None,
            limit: None,
        }
    }
}

/// Downloads the file with BLAKE3 hash `req.hash` from every source at
/// once, verifying each chunk group before it counts, and moves it to
/// `req.out_dir/NAME` (or `NAME (N)`, never replacing a file) when done.
///
/// Sources that disconnect or stall lose their ranges to the others; one
/// that sends data failing verification is dropped for good. The download
/// completes as long as one good source remains. Progress is recorded next
/// to the partial file, so calling this again after a crash resumes.
pub async fn fetch_by_hash(
    req: HashGet,
    progress: watch::Sender<Progress>,
) -> Result<DownloadReport, DownloadError> {
    // No more sources: the sender is dropped here, not after the await.
    let (_, none) = mpsc::channel(1);
    fetch_by_hash_growing(req, progress, none).await
}

/// [`fetch_by_hash`], with sources found while it runs: each peer that
/// arrives on `more` joins the download (once) as another source. A
/// download can so start with the first peer that answers a search and
/// take the others as their answers come.
pub async fn fetch_by_hash_growing(
    req: HashGet,
    progress: watch::Sender<Progress>,
    more: mpsc::Receiver<SocketAddr>,
) -> Result<DownloadReport, DownloadError> {
    fetch_by_hash_until(req, progress, more, std::future::pending()).await
}

/// [`fetch_by_hash_growing`], stopped when `cancel` completes: the
/// connections end, what was verified is synced and recorded (so a later
/// call resumes from it), the partial file's lock is released, and then
/// this returns a [`DownloadError::Local`] whose cause is of kind
/// [`io::ErrorKind::Interrupted`]. No thread of the download runs on after
/// it returns.
///
/// Dropping the future instead also stops the connections' threads (they
/// check a flag between reads, and their sockets are shut down), but
/// without waiting for them.
pub async fn fetch_by_hash_until<C>(
    req: HashGet,
    progress: watch::Sender<Progress>,
    mut more: mpsc::Receiver<SocketAddr>,
    cancel: C,
) -> Result<DownloadReport, DownloadError>
where
    C: std::future::Future<Output = ()>,
{
    let mut cancel = std::pin::pin!(cancel);
    let hash_hex = hex(&req.hash);
    let paths = part_paths(&req.out_dir, &req.name, &req.hash)?;
    if req.sources.is_empty() {
        return Err(ExhaustedError::NoSources { hash: hash_hex }.into());
    }
    tokio::fs::create_dir_all(&req.out_dir)
        .await
        .map_err(LocalError::io(
            "creating the downloads folder",
            &req.out_dir,
        ))?;
    // One download per target: another one of the same file into the same
    // folder (another process, or a resumed one) is waited for. Held until
    // this function returns.
    let (_lock, _waited) = tokio::select! {
        lock = PartLock::acquire(&paths.part, &paths.base) => lock
            .map_err(LocalError::io("locking the partial file", &paths.part))?,
        () = &mut cancel => return Err(cancelled(&paths.part)),
    };
    // Already there, in full (a download that just finished, or the same
    // call made again): done.
    if let Some(report) = already_complete(&req, &paths).await {
        return Ok(report);
    }
    let mut srcs: Vec<Src> = Vec::new();
    for &peer in &req.sources {
        if !srcs.iter().any(|s| s.peer == peer) {
            srcs.push(Src::new(peer));
        }
    }
    // The tree: from disk, or from the first source that gives a valid one.
    let saved = {
        let (p, h) = (paths.tree.clone(), req.hash);
        tokio::task::spawn_blocking(move || {
            std::fs::read(p).ok().and_then(|b| decode_tree_file(&h, &b))
        })
        .await
        .ok()
        .flatten()
    };
    let mut last_group: Option<Vec<u8>> = None;
    let mut tree_src = None;
    let mut wire_bytes = 0u64;
    let tree = match saved {
        Some(t) => t,
        None => {
            // Sources that already arrived are tried too.
            while let Ok(peer) = more.try_recv() {
                if !srcs.iter().any(|s| s.peer == peer) {
                    srcs.push(Src::new(peer));
                }
            }
            let mut found = None;
            for (k, s) in srcs.iter_mut().enumerate() {
                let got = tokio::select! {
                    got = get_tree(s.peer, &req) => got,
                    () = &mut cancel => return Err(cancelled(&paths.part)),
                };
                match got {
                    Ok((t, last)) => {
                        tree_src = Some(k);
                        s.received += last.len() as u64;
                        wire_bytes += last.len() as u64;
                        last_group = Some(last);
                        found = Some(t);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!("{e}");
                        let (bad, outcome) = outcome_of(&e);
                        s.bad = bad;
                        s.outcome = Some(outcome);
                    }
                }
            }
            let Some(t) = found else {
                return Err(ExhaustedError::SourcesExhausted {
                    hash: hash_hex,
                    missing: req.size.unwrap_or(0),
                    size: req.size.unwrap_or(0),
                    sources: reports(&srcs),
                }
                .into());
            };
            t
        }
    };
    let fetched_tree = tree_src.is_some();
    if let Some(size) = req.size {
        if size != tree.size() {
            tracing::warn!(advertised = size, actual = tree.size(), hash = %hash_hex,
                "the advertised size differs from the size the hash confirms; using the latter");
        }
    }
    let tree = Arc::new(tree);
    // The partial file and what of it is verified.
    let (part, state, resumed_from, wrote_last) = {
        let (paths2, tree2, last) = (paths.clone(), Arc::clone(&tree), last_group.take());
        blocking_io("preparing the partial file", &paths.part, move || {
            open_part(&paths2, &tree2, last)
        })
        .await?
    };
    if let (Some(k), Some(n)) = (tree_src, wrote_last) {
        srcs[k].verified += n;
    }
    let total = tree.groups();
    let verified = (0..total).filter(|&i| state.get(i)).count() as u64;
    if fetched_tree && verified < total {
        // Kept for a resume; a file done in one go (small) never needs it.
        let bytes = encode_tree_file(&tree);
        let p = paths.tree.clone();
        blocking_io("saving the tree", &paths.tree, move || {
            write_atomic(&p, &bytes)
        })
        .await?;
    }
    let usable_sources = srcs.iter().filter(|s| !s.bad).count().max(1);
    let per_source = if usable_sources == 1 {
        req.single_source_connections.max(1)
    } else {
        1
    };
    let usable = usable_sources * per_source;
    let gl = tree.group_log();
    let max_piece_groups = (req.max_piece >> gl).max(1);
    // Requests are sent ahead, so a piece boundary costs no round trip.
    let piece_groups =
        ((total - verified) / (usable as u64 * PIECES_PER_CONNECTION)).clamp(1, max_piece_groups);
    let batch = batch_size(usable, 1usize << gl);
    // The confirmed last group may be new: count it.
    let done_bytes = resumed_from.max(verified_bytes(&state, &tree));
    let (done_tx, mut done_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        sched: Mutex::new(Sched::new(state, done_bytes, piece_groups, srcs)),
        changed: (Mutex::new(0), std::sync::Condvar::new()),
        tree: Arc::clone(&tree),
        received: AtomicU64::new(wire_bytes),
        part,
        progress: progress.clone(),
        done: done_tx,
        stop: AtomicBool::new(false),
        fatal: Mutex::new(None),
        live: Mutex::new(Vec::new()),
        sessions: Arc::new(Sessions::default()),
        write_lock: Mutex::new(()),
        batch,
        limit: req.limit.clone(),
    });
    progress.send_replace(Progress {
        received: wire_bytes,
        done: done_bytes,
        total: Some(tree.size()),
    });
    // From here on threads run: dropping this future stops them.
    let _stop_threads = StopOnDrop(Arc::clone(&shared));
    let mut was_cancelled = false;

    if verified < total {
        // Only ever closed (dropped), never sent on.
        let (stop_tx, stop_rx) = std::sync::mpsc::sync_channel::<()>(1);
        let checkpoints = {
            let shared = Arc::clone(&shared);
            let paths = paths.clone();
            let every = req.checkpoint_every;
            tokio::task::spawn_blocking(move || checkpointer(&shared, &paths, every, stop_rx))
        };
        let mut workers = JoinSet::new();
        let n = shared.lock().sources.len();
        for src in 0..n {
            if shared.lock().sources[src].bad {
                continue;
            }
            for _ in 0..per_source {
                workers.spawn(worker(
                    src,
                    Arc::clone(&shared),
                    req.connect_timeout,
                    req.idle_timeout,
                    req.dialer.clone(),
                ));
            }
        }
        let mut more_open = true;
        loop {
            tokio::select! {
                () = &mut cancel => {
                    was_cancelled = true;
                    break;
                }
                r = done_rx.changed() => {
                    if r.is_err() || *done_rx.borrow() {
                        break;
                    }
                }
                _ = workers.join_next(), if !workers.is_empty() => {
                    // Every source is done for; a source yet to come may
                    // still finish the file.
                    if workers.is_empty() && !more_open {
                        break;
                    }
                }
                peer = more.recv(), if more_open => {
                    let Some(peer) = peer else {
                        more_open = false;
                        if workers.is_empty() {
                            break;
                        }
                        continue;
                    };
                    let src = {
                        let mut s = shared.lock();
                        if s.sources.iter().any(|s| s.peer == peer) {
                            continue;
                        }
                        s.sources.push(Src::new(peer));
                        s.sources.len() - 1
                    };
                    tracing::debug!(%peer, "another source joins the download");
                    workers.spawn(worker(
                    src,
                    Arc::clone(&shared),
                    req.connect_timeout,
                    req.idle_timeout,
                    req.dialer.clone(),
                ));
                }
            }
        }
        shared.halt().await;
        workers.abort_all();
        while workers.join_next().await.is_some() {}
        drop(stop_tx);
        let saved = checkpoints.await.map_err(io::Error::other).and_then(|r| r);
        let fatal = shared
            .fatal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(e) = fatal.map(Err).unwrap_or(saved).err() {
            return Err(LocalError::io("writing the partial file", &paths.part)(e).into());
        }
        if was_cancelled {
            tracing::info!(hash = %hash_hex, "download stopped; its verified data is kept for a resume");
            return Err(cancelled(&paths.part));
        }
    } else {
        // Everything was verified already (the last group came with the
        // tree): only the sync is left, which may wait for the disk.
        let part = Arc::clone(&shared);
        blocking_io("syncing", &paths.part, move || part.part.sync_data()).await?;
    }

    let (complete, missing, sources, bytes_received) = {
        let s = shared.lock();
        let g = 1u64 << gl;
        let missing: u64 = (0..total)
            .filter(|&i| !s.state.get(i))
            .map(|i| g.min(tree.size() - i * g))
            .sum();
        let mut sources = reports(&s.sources);
        for r in sources.iter_mut() {
            if r.outcome == SourceOutcome::Unused && r.bytes_verified > 0 {
                r.outcome = SourceOutcome::Served;
            }
        }
        (
            s.verified == total,
            missing,
            sources,
            shared.received.load(Ordering::Relaxed),
        )
    };
    if !complete {
        let e = DownloadError::from(ExhaustedError::SourcesExhausted {
            hash: hash_hex,
            missing,
            size: tree.size(),
            sources,
        });
        tracing::warn!("{e}");
        return Err(e);
    }
    let path = {
        let p = paths.clone();
        let dir = req.out_dir.clone();
        blocking_io("moving the finished download", &paths.part, move || {
            let to = move_into_place(&p.part, &dir, &p.base)?;
            let _ = std::fs::remove_file(&p.state);
            let _ = std::fs::remove_file(&p.tree);
            Ok(to)
        })
        .await?
    };
    tracing::info!(hash = %hash_hex, path = %path.display(), size = tree.size(), resumed_from,
        received = bytes_received, "download by hash complete");
    Ok(DownloadReport {
        path,
        size: tree.size(),
        resumed_from,
        bytes_received,
        sources,
    })
}

/// The error of a download stopped by its caller.
fn cancelled(part: &std::path::Path) -> DownloadError {
    tracing::debug!(part = %part.display(), "download stopped; the partial file is kept");
    DownloadError::Cancelled
}

/// Stops the connections' threads when the download's future is dropped
/// before it finished (they end on their own, soon after).
struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop_now();
    }
}

/// The finished file, when no partial download of it is left and the
/// final name holds exactly the content asked for.
async fn already_complete(req: &HashGet, paths: &PartPaths) -> Option<DownloadReport> {
    let (hash, size) = (req.hash, req.size);
    let path = req.out_dir.join(&paths.base);
    let paths = paths.clone();
    tokio::task::spawn_blocking(move || {
        let part = &paths.part;
        if part.exists() {
            return None;
        }
        let meta = std::fs::metadata(&path).ok()?;
        if !meta.is_file() || size.is_some_and(|s| s != meta.len()) {
            return None;
        }
        let mut hasher = blake3::Hasher::new();
        hasher
            .update_reader(std::fs::File::open(&path).ok()?)
            .ok()?;
        if *hasher.finalize().as_bytes() != hash {
            return None;
        }
        // Records a finished download left behind are of no use.
        let _ = std::fs::remove_file(&paths.state);
        let _ = std::fs::remove_file(&paths.tree);
        tracing::info!(path = %path.display(), "the file is already here, complete and verified");
        Some(DownloadReport {
            path,
            size: meta.len(),
            resumed_from: meta.len(),
            bytes_received: 0,
            sources: Vec::new(),
        })
    })
    .await
    .ok()
    .flatten()
}

fn reports(srcs: &[Src]) -> Vec<SourceReport> {
    srcs.iter()
        .map(|s| SourceReport {
            peer: s.peer,
            bytes_received: s.received,
            bytes_verified: s.verified,
            outcome: s.outcome.clone().unwrap_or(SourceOutcome::Unused),
        })
        .collect()
}

async fn get_tree(peer: SocketAddr, req: &HashGet) -> Result<(Tree, Vec<u8>), DownloadError> {
    let mut conn = RutellaConn::connect_with(
        req.dialer.as_ref(),
        peer,
        req.connect_timeout,
        req.idle_timeout,
    )
    .await?;
    conn.confirmed_tree(&req.hash).await
}
