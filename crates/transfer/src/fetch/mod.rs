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

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;

use crate::buf::PageBuf;
use crate::classic::{
    blocking_io, read_failure, DownloadError, DownloadReport, Progress, SourceOutcome, SourceReport,
};
use crate::client::{BlockingConn, RutellaConn};
use crate::lock::PartLock;
use crate::names::{move_into_place, sanitize_basename};
use crate::serve_rutella::hex;
use crate::state::PartState;
use crate::tree::Tree;
use crate::wire::Status;

mod sched;

use sched::{Sched, Src, Take};

/// Pieces a download is cut into, per connection: enough for the
/// connections to end together, few enough that the serving side's cost
/// per request stays small (measured: 4 beats 8 and 16 on 1 GB).
const PIECES_PER_CONNECTION: u64 = 4;
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
fn batch_size(connections: usize, group: usize) -> usize {
    let each = BUFFER_BUDGET / (connections.max(1) * RING);
    let size = each.clamp(MIN_BATCH, MAX_BATCH);
    (size / group).max(1) * group
}

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
        }
    }
}

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
    let base = sanitize_basename(name).map_err(|source| DownloadError::InvalidName {
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

fn encode_tree_file(tree: &Tree) -> Vec<u8> {
    let mut out = b"RTLTREE1".to_vec();
    out.push(tree.group_log());
    out.extend_from_slice(&tree.size().to_le_bytes());
    out.extend_from_slice(&tree.encode());
    out
}

fn decode_tree_file(hash: &[u8; 32], buf: &[u8]) -> Option<Tree> {
    if buf.len() < 17 || &buf[..8] != b"RTLTREE1" {
        return None;
    }
    let gl = buf[8];
    let size = u64::from_le_bytes(buf[9..17].try_into().ok()?);
    Tree::decode(*hash, size, gl, &buf[17..]).ok()
}

/// Writes `data` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
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

struct Shared {
    sched: Mutex<Sched>,
    /// Bumped, with a wake-up, whenever pieces go back to the queue or
    /// the download ends: what idle connections wait for.
    changed: (Mutex<u64>, std::sync::Condvar),
    tree: Arc<Tree>,
    received: AtomicU64,
    /// The partial file: sources write their verified bytes straight to it
    /// (positioned writes, so they never share a file offset).
    part: std::fs::File,
    progress: watch::Sender<Progress>,
    /// Set once every group is verified, or when writing failed.
    done: watch::Sender<bool>,
    /// Tells the receive loops to end.
    stop: AtomicBool,
    /// A local failure (the disk): it ends the download.
    fatal: Mutex<Option<io::Error>>,
    /// The sockets of the running receive loops, to wake a blocked read.
    live: Mutex<Vec<(i32, std::net::TcpStream)>>,
    /// Receive loops running, and a signal when one ends.
    loops: AtomicUsize,
    loops_ended: Notify,
    /// Serializes writes to the partial file.
    write_lock: Mutex<()>,
    /// Bytes per batch.
    batch: usize,
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

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Sched> {
        // A poisoned lock only means a thread panicked mid-update; the
        // schedule stays usable (verification is re-checked on resume).
        self.sched.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Wakes the connections waiting for work.
    fn notify_change(&self) {
        let mut g = self.changed.0.lock().unwrap_or_else(|e| e.into_inner());
        *g = g.wrapping_add(1);
        self.changed.1.notify_all();
    }

    /// Waits (at most `limit`) for [`Shared::notify_change`].
    fn wait_change(&self, limit: Duration) {
        let g = self.changed.0.lock().unwrap_or_else(|e| e.into_inner());
        let seen = *g;
        let _ = self.changed.1.wait_timeout_while(g, limit, |n| {
            *n == seen && !self.stop.load(Ordering::Acquire)
        });
    }

    fn set_outcome(&self, src: usize, outcome: SourceOutcome) {
        let mut s = self.lock();
        if s.sources[src].outcome.is_none() {
            s.sources[src].outcome = Some(outcome);
        }
    }

    /// Ends the download because of a local failure.
    fn fail(&self, e: io::Error) {
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
    fn record(&self, src: usize, offset: u64, len: usize, ok: usize, bad_at: Option<u64>) {
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

    /// Stops every receive loop and waits until they have ended, so no
    /// write to the partial file happens after this returns.
    async fn halt(&self) {
        self.stop.store(true, Ordering::Release);
        for (_, s) in self.live.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        self.notify_change();
        loop {
            let ended = self.loops_ended.notified();
            if self.loops.load(Ordering::Acquire) == 0 {
                return;
            }
            // A loop checks the flag at least once per batch, and its read
            // fails at once on the shut-down socket.
            let _ = tokio::time::timeout(Duration::from_millis(50), ended).await;
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
    let (_, none) = mpsc::unbounded_channel();
    fetch_by_hash_growing(req, progress, none).await
}

/// [`fetch_by_hash`], with sources found while it runs: each peer that
/// arrives on `more` joins the download (once) as another source. A
/// download can so start with the first peer that answers a search and
/// take the others as their answers come.
pub async fn fetch_by_hash_growing(
    req: HashGet,
    progress: watch::Sender<Progress>,
    mut more: mpsc::UnboundedReceiver<SocketAddr>,
) -> Result<DownloadReport, DownloadError> {
    let hash_hex = hex(&req.hash);
    let paths = part_paths(&req.out_dir, &req.name, &req.hash)?;
    if req.sources.is_empty() {
        return Err(DownloadError::NoSources { hash: hash_hex });
    }
    tokio::fs::create_dir_all(&req.out_dir)
        .await
        .map_err(DownloadError::local(
            "creating the downloads folder",
            &req.out_dir,
        ))?;
    // One download per target: another one of the same file into the same
    // folder (another process, or a resumed one) is waited for. Held until
    // this function returns.
    let (_lock, _waited) =
        PartLock::acquire(&paths.part, &paths.base)
            .await
            .map_err(DownloadError::local(
                "locking the partial file",
                &paths.part,
            ))?;
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
                match get_tree(s.peer, &req).await {
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
                return Err(DownloadError::SourcesExhausted {
                    hash: hash_hex,
                    missing: req.size.unwrap_or(0),
                    size: req.size.unwrap_or(0),
                    sources: reports(&srcs),
                });
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
        loops: AtomicUsize::new(0),
        loops_ended: Notify::new(),
        write_lock: Mutex::new(()),
        batch,
    });
    progress.send_replace(Progress {
        received: wire_bytes,
        done: done_bytes,
        total: Some(tree.size()),
    });

    if verified < total {
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
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
                workers.spawn(worker(src, Arc::clone(&shared), req.clone()));
            }
        }
        let mut more_open = true;
        loop {
            tokio::select! {
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
                    workers.spawn(worker(src, Arc::clone(&shared), req.clone()));
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
            return Err(DownloadError::local(
                "writing the partial file",
                &paths.part,
            )(e));
        }
    } else {
        shared
            .part
            .sync_data()
            .map_err(DownloadError::local("syncing", &paths.part))?;
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
        let e = DownloadError::SourcesExhausted {
            hash: hash_hex,
            missing,
            size: tree.size(),
            sources,
        };
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

/// Whether an error makes a source bad for this file, and how it ended.
fn outcome_of(e: &DownloadError) -> (bool, SourceOutcome) {
    match e {
        DownloadError::BadTree { .. } | DownloadError::BadData { .. } => {
            (true, SourceOutcome::BadData)
        }
        DownloadError::Refusal {
            status: Status::NotFound,
            ..
        } => (false, SourceOutcome::NotFound),
        DownloadError::Refusal {
            status: Status::Busy,
            ..
        } => (false, SourceOutcome::Busy),
        other => (false, SourceOutcome::Failed(other.to_string())),
    }
}

async fn get_tree(peer: SocketAddr, req: &HashGet) -> Result<(Tree, Vec<u8>), DownloadError> {
    let mut conn = RutellaConn::connect(peer, req.connect_timeout, req.idle_timeout).await?;
    conn.confirmed_tree(&req.hash).await
}

/// Opens (or creates) the partial file at the tree's size, loads the saved
/// state, re-verifies the groups it claims, and records the confirmed last
/// group if one was fetched. Returns the file, the state, the verified
/// bytes found, and the size of the last group when it was recorded.
fn open_part(
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
fn checkpointer(
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

fn verified_bytes(state: &PartState, tree: &Tree) -> u64 {
    (0..tree.groups())
        .filter(|&i| state.get(i))
        .map(|i| {
            let r = tree.group_range(i);
            r.end - r.start
        })
        .sum()
}

/// One connection to a source: connects, then fetches pieces in a
/// blocking session until nothing is left for it; reconnects when an idle
/// connection was closed, retries a busy source a few times.
async fn worker(src: usize, shared: Arc<Shared>, req: HashGet) {
    let peer = shared.lock().sources[src].peer;
    let mut busy_tries = 0u32;
    let mut reconnects = 0u32;
    let mut cuts = 0u32;
    loop {
        let conn = match RutellaConn::connect(peer, req.connect_timeout, req.idle_timeout)
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
        let session_shared = Arc::clone(&shared);
        session_shared.loops.fetch_add(1, Ordering::AcqRel);
        let ran = tokio::task::spawn_blocking(move || {
            let r = session(conn, src, &session_shared);
            session_shared.loops.fetch_sub(1, Ordering::AcqRel);
            session_shared.loops_ended.notify_waiters();
            r
        })
        .await;
        let ended = match ran {
            Ok(r) => r,
            Err(e) => Session::failed(DownloadError::Connection {
                peer,
                reason: format!("the receiving thread failed: {e}"),
            }),
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
            Err(DownloadError::Connection { .. }) if waited && reconnects < 3 => {
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
/// returns whether the connection sat idle before it failed.
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
        Err(e) => {
            let reason = format!("socket setup failed: {e}");
            return Session::failed(DownloadError::Connection { peer, reason });
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
            Err(e) => {
                return Session::failed(DownloadError::Connection {
                    peer,
                    reason: format!("no memory for buffers: {e}"),
                })
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
                    break Err(DownloadError::BadData {
                        peer,
                        offset: start,
                    })
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
                    let limit = (claimed_to - pos).min(want as u64) as usize;
                    match conn.stream.read(&mut buf[filled..limit]) {
                        // Shut down by `halt`.
                        Ok(0) | Err(_) if shared.stop.load(Ordering::Acquire) => break,
                        Ok(0) => {
                            failure = Some("closed the connection mid-transfer".to_owned());
                            break;
                        }
                        Ok(n) => {
                            filled += n;
                            shared.received.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failure = read_failure(&e, conn.idle);
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
                    break 'session Err(DownloadError::BadData { peer, offset });
                }
                if let Some(reason) = failure {
                    break 'session Err(DownloadError::Connection { peer, reason });
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
            Err(DownloadError::Connection {
                peer,
                reason: "the verifying thread failed".into(),
            })
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
            return Err(DownloadError::BadData { peer, offset });
        }
        if shared.lock().sources[src].bad {
            return Err(DownloadError::BadData {
                peer,
                offset: b.pos,
            });
        }
        if let Some(id) = b.ends {
            shared.lock().piece_done(id);
            shared.notify_change();
        }
        let _ = free.send(b.buf);
    }
    Ok(())
}
