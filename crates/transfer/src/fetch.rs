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
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;

use crate::classic::{
    blocking_io, DownloadError, DownloadReport, Progress, SourceOutcome, SourceReport,
};
use crate::client::RutellaConn;
use crate::names::{move_into_place, sanitize_basename};
use crate::serve_rutella::hex;
use crate::state::PartState;
use crate::tree::Tree;
use crate::wire::Status;

/// Bytes read from a source before they are handed to verification.
const BATCH: usize = 1 << 20;
/// Buffers in flight between the sources and the verifier.
const QUEUE: usize = 16;

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
    /// How often verified progress is synced and recorded.
    pub checkpoint_every: Duration,
}

impl HashGet {
    /// A download with default timeouts (5 s connect, 20 s idle), 64 MiB
    /// pieces and a checkpoint every second.
    pub fn new(hash: [u8; 32], sources: Vec<SocketAddr>, out_dir: PathBuf, name: &str) -> Self {
        HashGet {
            hash,
            size: None,
            sources,
            out_dir,
            name: name.to_owned(),
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(20),
            max_piece: 64 << 20,
            checkpoint_every: Duration::from_secs(1),
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
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, path)
}

struct InFlight {
    id: u64,
    groups: Range<u64>,
    source: usize,
    helped_by: Vec<usize>,
}

struct Src {
    peer: SocketAddr,
    bad: bool,
    received: u64,
    verified: u64,
    outcome: Option<SourceOutcome>,
}

struct Sched {
    state: PartState,
    verified: u64,
    total: u64,
    pending: VecDeque<Range<u64>>,
    in_flight: Vec<InFlight>,
    next_id: u64,
    piece_groups: u64,
    sources: Vec<Src>,
}

enum Take {
    Piece { id: u64, groups: Range<u64> },
    Wait,
    Stop,
}

impl Sched {
    fn take(&mut self, src: usize) -> Take {
        if self.sources[src].bad || self.verified == self.total {
            return Take::Stop;
        }
        while let Some(mut r) = self.pending.pop_front() {
            while r.start < r.end && self.state.get(r.start) {
                r.start += 1;
            }
            if r.is_empty() {
                continue;
            }
            let end = r.end.min(r.start + self.piece_groups);
            if end < r.end {
                self.pending.push_front(end..r.end);
            }
            return Take::Piece {
                id: self.new_flight(r.start..end, src),
                groups: r.start..end,
            };
        }
        // Nothing unassigned: help with a piece another source is slow on.
        let mut best: Option<(usize, Range<u64>)> = None;
        for (k, f) in self.in_flight.iter().enumerate() {
            if f.source == src || f.helped_by.contains(&src) {
                continue;
            }
            let missing: Vec<u64> = f.groups.clone().filter(|&i| !self.state.get(i)).collect();
            if let (Some(&a), Some(&b)) = (missing.first(), missing.last()) {
                if best
                    .as_ref()
                    .is_none_or(|(_, r)| b + 1 - a > r.end - r.start)
                {
                    best = Some((k, a..b + 1));
                }
            }
        }
        match best {
            Some((k, r)) => {
                self.in_flight[k].helped_by.push(src);
                Take::Piece {
                    id: self.new_flight(r.clone(), src),
                    groups: r,
                }
            }
            None => Take::Wait,
        }
    }

    fn new_flight(&mut self, groups: Range<u64>, source: usize) -> u64 {
        self.next_id += 1;
        self.in_flight.push(InFlight {
            id: self.next_id,
            groups,
            source,
            helped_by: Vec::new(),
        });
        self.next_id
    }

    /// A piece ended: its unverified groups that nobody else is fetching go
    /// back to the front of the queue.
    fn piece_done(&mut self, id: u64) {
        let Some(k) = self.in_flight.iter().position(|f| f.id == id) else {
            return;
        };
        let f = self.in_flight.swap_remove(k);
        let mut run: Option<Range<u64>> = None;
        let mut back = Vec::new();
        for i in f.groups {
            let covered = self.state.get(i) || self.in_flight.iter().any(|o| o.groups.contains(&i));
            match (&mut run, covered) {
                (Some(r), false) if r.end == i => r.end = i + 1,
                (_, false) => {
                    if let Some(r) = run.take() {
                        back.push(r);
                    }
                    run = Some(i..i + 1);
                }
                (_, true) => {
                    if let Some(r) = run.take() {
                        back.push(r);
                    }
                }
            }
        }
        back.extend(run);
        for r in back.into_iter().rev() {
            self.pending.push_front(r);
        }
    }
}

struct Shared {
    sched: Mutex<Sched>,
    changed: Notify,
    tree: Arc<Tree>,
    received: AtomicU64,
    pool: Mutex<Vec<Vec<u8>>>,
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
    fn buffer(&self) -> Vec<u8> {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.pop().unwrap_or_else(|| vec![0u8; self.batch])
    }
    fn give_back(&self, buf: Vec<u8>) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < QUEUE * 2 {
            pool.push(buf);
        }
    }
    fn set_outcome(&self, src: usize, outcome: SourceOutcome) {
        let mut s = self.lock();
        if s.sources[src].outcome.is_none() {
            s.sources[src].outcome = Some(outcome);
        }
    }
}

enum SinkMsg {
    /// Bytes from `src` at `offset`: the first `verified` of them passed
    /// verification; `bad_at`, the offset of a group that failed, if one did.
    Data {
        src: usize,
        offset: u64,
        buf: Vec<u8>,
        verified: usize,
        bad_at: Option<u64>,
    },
    PieceDone {
        id: u64,
    },
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
    let mut srcs: Vec<Src> = req
        .sources
        .iter()
        .map(|&peer| Src {
            peer,
            bad: false,
            received: 0,
            verified: 0,
            outcome: None,
        })
        .collect();
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
    let mut pending = VecDeque::new();
    let mut i = 0;
    while i < total {
        if state.get(i) {
            i += 1;
            continue;
        }
        let start = i;
        while i < total && !state.get(i) {
            i += 1;
        }
        pending.push_back(start..i);
    }
    let usable = srcs.iter().filter(|s| !s.bad).count().max(1) as u64;
    let gl = tree.group_log();
    let max_piece_groups = (req.max_piece >> gl).max(1);
    let piece_groups = ((total - verified) / (usable * 4)).clamp(1, max_piece_groups);
    let group = 1usize << gl;
    let batch = group * (BATCH / group).max(1);
    let shared = Arc::new(Shared {
        sched: Mutex::new(Sched {
            state,
            verified,
            total,
            pending,
            in_flight: Vec::new(),
            next_id: 0,
            piece_groups,
            sources: srcs,
        }),
        changed: Notify::new(),
        tree: Arc::clone(&tree),
        received: AtomicU64::new(wire_bytes),
        pool: Mutex::new(Vec::new()),
        batch,
    });
    progress.send_replace(Progress {
        received: wire_bytes,
        done: resumed_from,
        total: Some(tree.size()),
    });

    if verified < total {
        let (tx, rx) = mpsc::channel::<SinkMsg>(QUEUE);
        let (done_tx, mut done_rx) = watch::channel(false);
        let sink = {
            let shared = Arc::clone(&shared);
            let paths = paths.clone();
            let progress = progress.clone();
            let every = req.checkpoint_every;
            tokio::task::spawn_blocking(move || {
                sink(
                    rx,
                    part,
                    &shared,
                    &paths,
                    progress,
                    done_tx,
                    every,
                    resumed_from,
                )
            })
        };
        let mut workers = JoinSet::new();
        let n = shared.lock().sources.len();
        for src in 0..n {
            if shared.lock().sources[src].bad {
                continue;
            }
            workers.spawn(worker(src, Arc::clone(&shared), tx.clone(), req.clone()));
        }
        drop(tx);
        loop {
            tokio::select! {
                r = done_rx.changed() => {
                    if r.is_err() || *done_rx.borrow() {
                        break;
                    }
                }
                w = workers.join_next() => {
                    if w.is_none() {
                        break;
                    }
                }
            }
        }
        workers.abort_all();
        while workers.join_next().await.is_some() {}
        let local = sink
            .await
            .map_err(io::Error::other)
            .and_then(|r| r)
            .map_err(DownloadError::local(
                "writing the partial file",
                &paths.part,
            ));
        local?;
    } else {
        part.sync_data()
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

/// Verifies and writes what the sources send; records progress.
#[allow(clippy::too_many_arguments)]
fn sink(
    mut rx: mpsc::Receiver<SinkMsg>,
    part: std::fs::File,
    shared: &Shared,
    paths: &PartPaths,
    progress: watch::Sender<Progress>,
    done_tx: watch::Sender<bool>,
    every: Duration,
    resumed_from: u64,
) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let tree = &shared.tree;
    let gl = tree.group_log();
    let mut last_checkpoint = Instant::now();
    let mut dirty = true;
    let mut done_bytes = resumed_from;
    {
        // The confirmed last group may be new: count it.
        let s = shared.lock();
        done_bytes = done_bytes.max(verified_bytes(&s.state, tree));
    }
    let checkpoint = |part: &std::fs::File, shared: &Shared| -> io::Result<()> {
        part.sync_data()?;
        let bytes = shared.lock().state.encode();
        write_atomic(&paths.state, &bytes)
    };
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            SinkMsg::Data {
                src,
                offset,
                buf,
                verified: at,
                bad_at,
            } => {
                // The source's task verified the batch (so hashing runs in
                // parallel with writing); write the verified prefix with
                // one write and record it under one lock.
                if let Some(bad) = bad_at {
                    let mut s = shared.lock();
                    if !s.sources[src].bad {
                        s.sources[src].bad = true;
                        s.sources[src].outcome = Some(SourceOutcome::BadData);
                        tracing::warn!(peer = %s.sources[src].peer, offset = bad,
                            "peer sent data that failed verification; discarded, and it is not asked again for this file");
                    }
                }
                if at > 0 {
                    part.write_all_at(&buf[..at], offset)?;
                    let mut s = shared.lock();
                    let mut pos = 0usize;
                    while pos < at {
                        let i = (offset + pos as u64) >> gl;
                        let r = tree.group_range(i);
                        let glen = (r.end - r.start) as usize;
                        pos += glen;
                        if !s.state.get(i) {
                            s.state.set(i, true);
                            s.verified += 1;
                            s.sources[src].verified += glen as u64;
                            done_bytes += glen as u64;
                            dirty = true;
                        }
                    }
                    if s.verified == s.total {
                        drop(s);
                        let _ = done_tx.send(true);
                        shared.changed.notify_waiters();
                    }
                }
                shared.give_back(buf);
                progress.send_replace(Progress {
                    received: shared.received.load(Ordering::Relaxed),
                    done: done_bytes,
                    total: Some(tree.size()),
                });
            }
            SinkMsg::PieceDone { id } => {
                shared.lock().piece_done(id);
                shared.changed.notify_waiters();
            }
        }
        if dirty && last_checkpoint.elapsed() >= every {
            checkpoint(&part, shared)?;
            last_checkpoint = Instant::now();
            dirty = false;
        }
    }
    checkpoint(&part, shared)
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

/// One source: takes pieces, fetches them, hands the bytes to the sink.
async fn worker(src: usize, shared: Arc<Shared>, tx: mpsc::Sender<SinkMsg>, req: HashGet) {
    let peer = shared.lock().sources[src].peer;
    let mut busy_tries = 0u32;
    let mut reconnects = 0u32;
    'connect: loop {
        let mut conn = match RutellaConn::connect(peer, req.connect_timeout, req.idle_timeout).await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("{e}");
                let (_, outcome) = outcome_of(&e);
                shared.set_outcome(src, outcome);
                return;
            }
        };
        // Set when this source sat idle: the server may have closed the
        // quiet connection meanwhile, which is no fault of the source.
        let mut waited = false;
        loop {
            let (id, groups) = loop {
                let take = shared.lock().take(src);
                match take {
                    Take::Piece { id, groups } => break (id, groups),
                    Take::Stop => {
                        shared.set_outcome(src, SourceOutcome::Served);
                        return;
                    }
                    Take::Wait => {
                        waited = true;
                        let _ = tokio::time::timeout(
                            Duration::from_millis(200),
                            shared.changed.notified(),
                        )
                        .await;
                    }
                }
            };
            let result = fetch_piece(&mut conn, src, &shared, &tx, groups).await;
            let _ = tx.send(SinkMsg::PieceDone { id }).await;
            match result {
                Ok(()) => {
                    busy_tries = 0;
                    waited = false;
                }
                Err(DownloadError::Connection { .. }) if waited && reconnects < 3 => {
                    reconnects += 1;
                    tracing::debug!(%peer, "idle connection was closed; reconnecting");
                    continue 'connect;
                }
                Err(e) => {
                    let (bad, outcome) = outcome_of(&e);
                    if outcome == SourceOutcome::Busy && busy_tries < 5 {
                        busy_tries += 1;
                        tracing::info!(%peer, "source busy; retrying shortly");
                        tokio::time::sleep(Duration::from_millis(100 << busy_tries)).await;
                        continue 'connect;
                    }
                    if bad {
                        shared.lock().sources[src].bad = true;
                    }
                    tracing::warn!("dropping source: {e}");
                    shared.set_outcome(src, outcome);
                    shared.changed.notify_waiters();
                    return;
                }
            }
        }
    }
}

async fn fetch_piece(
    conn: &mut RutellaConn,
    src: usize,
    shared: &Shared,
    tx: &mpsc::Sender<SinkMsg>,
    groups: Range<u64>,
) -> Result<(), DownloadError> {
    let tree = &shared.tree;
    let start = tree.group_range(groups.start).start;
    let end = tree.group_range(groups.end - 1).end;
    let size = conn.request_range(tree.hash(), start, end - start).await?;
    if size != tree.size() {
        return Err(DownloadError::BadData {
            peer: conn.peer(),
            offset: start,
        });
    }
    let mut pos = start;
    while pos < end {
        let mut buf = shared.buffer();
        let want = (end - pos).min(buf.len() as u64) as usize;
        let mut filled = 0;
        let read = async {
            while filled < want {
                let n = conn.read_some(&mut buf[filled..want]).await?;
                filled += n;
                shared.received.fetch_add(n as u64, Ordering::Relaxed);
                shared.lock().sources[src].received += n as u64;
            }
            Ok::<(), DownloadError>(())
        }
        .await;
        if let Err(e) = read {
            // Whole groups that did arrive are still worth checking.
            let whole = (filled >> tree.group_log()) << tree.group_log();
            let tail_end = pos + filled as u64 == tree.size();
            let len = if tail_end { filled } else { whole };
            if len > 0 {
                let (verified, bad_at) = verify_prefix(tree, pos, &buf[..len]);
                let _ = tx
                    .send(SinkMsg::Data {
                        src,
                        offset: pos,
                        buf,
                        verified,
                        bad_at,
                    })
                    .await;
            }
            return Err(e);
        }
        let (verified, bad_at) = verify_prefix(tree, pos, &buf[..want]);
        let failed = bad_at.is_some();
        if tx
            .send(SinkMsg::Data {
                src,
                offset: pos,
                buf,
                verified,
                bad_at,
            })
            .await
            .is_err()
        {
            return Ok(());
        }
        pos += want as u64;
        if failed || shared.lock().sources[src].bad {
            return Err(DownloadError::BadData {
                peer: conn.peer(),
                offset: pos,
            });
        }
    }
    Ok(())
}
