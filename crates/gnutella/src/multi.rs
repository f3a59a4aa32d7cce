//! Fetching one file from several Gnutella servents at once.
//!
//! [`RangePlan`] (sans I/O) cuts the file into ranges, hands each to a
//! source, takes it back when the source fails (a source that fails
//! [`MultiConfig::max_failures`] times is dropped) and says who served
//! what. [`multi_download`] (the thin tokio side) runs one worker per
//! source, learns more sources from the `X-Alt` headers of the replies,
//! checks the SHA-1 of the whole file at the end, and when it is wrong
//! finds the source to blame: it takes each source's copy in turn (the
//! ranges it did not serve fetched again from it); the first copy whose
//! SHA-1 is right is kept, and the sources whose bytes differed from it
//! are dropped.
//!
//! With a Tiger tree (its root from the hit, or from a reply's
//! `X-Thex-URI`, the THEX fetched once from a source and checked against
//! the root), each range is checked as it arrives, before it is written:
//! the ranges are cut on the tree's pieces, and a range that fails is
//! fetched again from another source while the source that sent it is
//! dropped. The SHA-1 of the whole file is still checked at the end.

use std::collections::HashSet;
use std::io::SeekFrom;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio::time::timeout;

use crate::download::{
    fetch_thex, file_sha1, Direct, DownloadConfig, DownloadError, DownloadProgress, TigerCheck,
};
use crate::http::{self, ByteRange, Headers, Target};
use crate::tiger::HashTree;

/// Largest piece of a tree that ranges are cut on (a coarser tree is not
/// used: a range is held in memory until it is checked).
pub const MAX_TREE_PIECE: u64 = 16 << 20;
/// Sources asked in turn for the THEX before the download starts.
const THEX_TRIES: usize = 3;

/// Limits of a download from several sources.
#[derive(Clone, Debug)]
pub struct MultiConfig {
    /// Bytes asked in one request.
    pub chunk: u64,
    /// Sources fetched from at once.
    pub max_parallel: usize,
    /// Sources known in all (given and learned from `X-Alt`).
    pub max_sources: usize,
    /// Failed requests after which a source is dropped.
    pub max_failures: u32,
}

impl Default for MultiConfig {
    fn default() -> Self {
        MultiConfig {
            chunk: 256 * 1024,
            max_parallel: 4,
            max_sources: 16,
            max_failures: 2,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    Pending,
    InFlight(usize),
    /// Served by this source (`None`: on disk from an earlier run).
    Done(Option<usize>),
}

/// What one source did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceOutcome {
    /// The servent.
    pub addr: SocketAddr,
    /// Body bytes it sent that were kept.
    pub bytes: u64,
    /// Why it was dropped, if it was.
    pub dropped: Option<String>,
}

/// Who fetches which range (sans I/O).
pub struct RangePlan {
    size: u64,
    chunk: u64,
    max_failures: u32,
    chunks: Vec<Chunk>,
    /// Per chunk, who had served it before it was fetched again.
    before: Vec<Option<usize>>,
    sources: Vec<(SourceOutcome, u32)>,
    /// Only this source is asked (the SHA-1 hunt).
    only: Option<usize>,
    /// Sources whose bytes differed from the copy being checked.
    suspects: HashSet<usize>,
}

impl RangePlan {
    /// A file of `size` bytes in ranges of `chunk`; the first `have`
    /// bytes (rounded down to a range) are on disk already.
    pub fn new(size: u64, chunk: u64, have: u64, max_failures: u32) -> RangePlan {
        let chunk = chunk.max(1);
        let n = usize::try_from(size.div_ceil(chunk)).unwrap_or(usize::MAX);
        let done = usize::try_from(have.min(size) / chunk).unwrap_or(0);
        let mut chunks = vec![Chunk::Pending; n];
        for c in chunks.iter_mut().take(done) {
            *c = Chunk::Done(None);
        }
        if have >= size {
            chunks.iter_mut().for_each(|c| *c = Chunk::Done(None));
        }
        RangePlan {
            size,
            chunk,
            max_failures: max_failures.max(1),
            before: vec![None; n],
            chunks,
            sources: Vec::new(),
            only: None,
            suspects: HashSet::new(),
        }
    }

    /// Adds a source; its number (the same for an address known already).
    pub fn add_source(&mut self, addr: SocketAddr) -> usize {
        if let Some(i) = self.sources.iter().position(|(s, _)| s.addr == addr) {
            return i;
        }
        self.sources.push((
            SourceOutcome {
                addr,
                bytes: 0,
                dropped: None,
            },
            0,
        ));
        self.sources.len() - 1
    }

    /// Sources known.
    pub fn source_count(&self) -> usize {
        self.sources.len()
    }

    /// Whether source `s` was dropped.
    pub fn is_dropped(&self, s: usize) -> bool {
        self.sources.get(s).is_none_or(|(o, _)| o.dropped.is_some())
    }

    fn range(&self, i: usize) -> (u64, u64) {
        let a = i as u64 * self.chunk;
        (a, (a + self.chunk).min(self.size))
    }

    /// The next range for source `s` (`[start, end)`), if any is free.
    pub fn next_for(&mut self, s: usize) -> Option<(usize, u64, u64)> {
        if self.is_dropped(s) || self.only.is_some_and(|o| o != s) {
            return None;
        }
        let i = self.chunks.iter().position(|c| *c == Chunk::Pending)?;
        self.chunks[i] = Chunk::InFlight(s);
        let (a, b) = self.range(i);
        Some((i, a, b))
    }

    /// Range `i` arrived from `s`; `differed`: its bytes were not those
    /// on disk (the SHA-1 hunt).
    pub fn done(&mut self, i: usize, s: usize, differed: bool) {
        let (a, b) = self.range(i);
        if let Some(c) = self.chunks.get_mut(i) {
            *c = Chunk::Done(Some(s));
        }
        if let Some((o, _)) = self.sources.get_mut(s) {
            o.bytes += b - a;
        }
        if differed {
            if let Some(Some(prev)) = self.before.get(i) {
                self.suspects.insert(*prev);
            }
        }
    }

    /// Range `i` failed with `s`; true when `s` is now dropped.
    pub fn failed(&mut self, i: usize, s: usize, why: &str) -> bool {
        if let Some(c) = self.chunks.get_mut(i) {
            if *c == Chunk::InFlight(s) {
                *c = Chunk::Pending;
            }
        }
        let Some((o, fails)) = self.sources.get_mut(s) else {
            return true;
        };
        *fails += 1;
        if *fails >= self.max_failures && o.dropped.is_none() {
            o.dropped = Some(why.to_string());
        }
        o.dropped.is_some()
    }

    /// Range `i` from `s` failed the tree: it is fetched again by
    /// another source, and `s` is dropped.
    pub fn corrupt(&mut self, i: usize, s: usize, why: &str) {
        if let Some(c) = self.chunks.get_mut(i) {
            if *c == Chunk::InFlight(s) {
                *c = Chunk::Pending;
            }
        }
        self.drop_source(s, why);
    }

    /// Drops source `s` for this reason.
    pub fn drop_source(&mut self, s: usize, why: &str) {
        if let Some((o, _)) = self.sources.get_mut(s) {
            if o.dropped.is_none() {
                o.dropped = Some(why.to_string());
            }
        }
    }

    /// Whether every range is on disk.
    pub fn complete(&self) -> bool {
        self.chunks.iter().all(|c| matches!(c, Chunk::Done(_)))
    }

    /// Bytes on disk.
    pub fn have(&self) -> u64 {
        (0..self.chunks.len())
            .filter(|i| matches!(self.chunks[*i], Chunk::Done(_)))
            .map(|i| {
                let (a, b) = self.range(i);
                b - a
            })
            .sum()
    }

    /// Bytes at the start of the file that are on disk without a gap.
    pub fn contiguous(&self) -> u64 {
        let n = self
            .chunks
            .iter()
            .take_while(|c| matches!(c, Chunk::Done(_)))
            .count();
        (n as u64 * self.chunk).min(self.size)
    }

    /// Starts checking source `s`'s copy: every range it did not serve is
    /// fetched again from it alone.
    pub fn check_copy_of(&mut self, s: usize) {
        self.only = Some(s);
        self.suspects.clear();
        for (i, c) in self.chunks.iter_mut().enumerate() {
            match *c {
                Chunk::Done(Some(x)) if x == s => {}
                Chunk::Done(prev) => {
                    self.before[i] = prev;
                    *c = Chunk::Pending;
                }
                _ => {
                    self.before[i] = None;
                    *c = Chunk::Pending;
                }
            }
        }
    }

    /// The sources whose bytes differed from the copy just checked.
    pub fn suspects(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.suspects.iter().copied().collect();
        v.sort_unstable();
        v
    }

    /// What each source did.
    pub fn outcomes(&self) -> Vec<SourceOutcome> {
        self.sources.iter().map(|(o, _)| o.clone()).collect()
    }

    /// Sources not dropped, most bytes first.
    pub fn live_sources(&self) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.sources.len())
            .filter(|s| !self.is_dropped(*s))
            .collect();
        v.sort_by_key(|s| std::cmp::Reverse(self.sources[*s].0.bytes));
        v
    }
}

/// A finished, checked download from several sources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiDownloaded {
    /// The file's size.
    pub size: u64,
    /// Body bytes received in this run (kept or not).
    pub fetched: u64,
    /// What each source did.
    pub sources: Vec<SourceOutcome>,
    /// How the ranges were checked before the SHA-1 at the end.
    pub tiger: TigerCheck,
}

/// Where the tree of the download stands.
enum TreeState {
    /// No root known yet.
    Unknown,
    /// A worker is fetching it.
    Fetching,
    /// Ranges are checked against it.
    Have(Arc<HashTree>),
    /// Refused (why), or its pieces are too coarse: SHA-1 alone.
    Refused(String),
}

struct Shared {
    plan: Mutex<RangePlan>,
    changed: Notify,
    fetched: std::sync::atomic::AtomicU64,
    tree: Mutex<TreeState>,
}

impl Shared {
    fn plan(&self) -> std::sync::MutexGuard<'_, RangePlan> {
        self.plan.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tree(&self) -> std::sync::MutexGuard<'_, TreeState> {
        self.tree.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn checking_tree(&self) -> Option<Arc<HashTree>> {
        match &*self.tree() {
            TreeState::Have(t) => Some(t.clone()),
            _ => None,
        }
    }
}

/// The tree of the file from `sources` in turn (at most [`THEX_TRIES`]),
/// checked against `root`.
async fn tree_from(
    sources: &[SocketAddr],
    sha1: [u8; 20],
    size: u64,
    root: &[u8; 24],
    config: &DownloadConfig,
) -> Result<HashTree, String> {
    let mut why = "no source".to_string();
    for addr in sources.iter().take(THEX_TRIES) {
        let mut c = Direct {
            addr: *addr,
            timeout: config.connect_timeout,
        };
        match fetch_thex(*addr, &mut c, sha1, size, root, config).await {
            Ok(t) => return Ok(t),
            Err(e) => {
                tracing::debug!(source = %addr, "Gnutella THEX refused: {e}");
                why = format!("{addr}: {e}");
            }
        }
    }
    Err(why)
}

/// The state for a tree that arrived: used when its pieces are fine
/// enough.
fn tree_state(t: HashTree) -> TreeState {
    if t.granularity() > MAX_TREE_PIECE {
        TreeState::Refused(format!(
            "tree pieces of {} bytes are too coarse to check ranges",
            t.granularity()
        ))
    } else {
        TreeState::Have(Arc::new(t))
    }
}

/// Fetches the file of `sha1` and `size` by `target` from `sources` (and
/// those their `X-Alt` headers name) into `part`, then checks and renames
/// it to `dest`; `tth`: the root of its Tiger tree, when the hit named
/// one.
#[allow(clippy::too_many_arguments)]
pub async fn multi_download(
    sources: Vec<SocketAddr>,
    target: Target,
    sha1: [u8; 20],
    size: u64,
    tth: Option<[u8; 24]>,
    part: &Path,
    dest: &Path,
    config: &DownloadConfig,
    multi: &MultiConfig,
    progress: &(dyn Fn(DownloadProgress) + Send + Sync),
) -> Result<MultiDownloaded, DownloadError> {
    if size > config.max_size {
        return Err(DownloadError::TooLarge);
    }
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(part)
        .await?;
    let mut have = file.metadata().await?.len();
    if have > size {
        file.set_len(0).await?;
        have = 0;
    }
    file.set_len(size).await?;
    drop(file);
    let tree = match tth {
        None => TreeState::Unknown,
        Some(root) => match tree_from(&sources, sha1, size, &root, config).await {
            Ok(t) => tree_state(t),
            Err(why) => {
                tracing::warn!(
                    "Gnutella THEX refused ({why}); the whole-file SHA-1 alone checks the file"
                );
                TreeState::Refused(why)
            }
        },
    };
    // Ranges cut on the tree's pieces, so that each is checked whole.
    let chunk = match &tree {
        TreeState::Have(t) => {
            let g = t.granularity();
            multi.chunk.max(1).div_ceil(g) * g
        }
        _ => multi.chunk,
    };
    // What a resumed part holds is kept only up to a range boundary; with
    // a tree, only what passes it.
    if let TreeState::Have(t) = &tree {
        have = checked_prefix(part, t, have.min(size)).await?;
    }
    let mut plan = RangePlan::new(size, chunk, have, multi.max_failures);
    for s in sources.iter().take(multi.max_sources) {
        plan.add_source(*s);
    }
    let shared = Arc::new(Shared {
        plan: Mutex::new(plan),
        changed: Notify::new(),
        fetched: std::sync::atomic::AtomicU64::new(0),
        tree: Mutex::new(tree),
    });
    let report = |sh: &Shared| {
        let have = sh.plan().have();
        progress(DownloadProgress {
            have,
            fetched: sh.fetched.load(std::sync::atomic::Ordering::Relaxed),
            total: Some(size),
        });
    };
    report(&shared);
    let job = Job {
        target,
        sha1,
        size,
        part: part.to_path_buf(),
        config: config.clone(),
    };
    if let Err(e) = run_workers(&shared, &job, multi, &report).await {
        // Keep only what a later resume (from the start) can use.
        let keep = shared.plan().contiguous();
        if let Ok(f) = tokio::fs::OpenOptions::new().write(true).open(part).await {
            let _ = f.set_len(keep).await;
        }
        if keep == 0 {
            let _ = tokio::fs::remove_file(part).await;
        }
        return Err(e);
    }
    // The SHA-1 of the whole file; when wrong, find whose copy is right.
    let mut ok = file_sha1(part).await? == sha1;
    if !ok {
        let candidates = shared.plan().live_sources();
        for s in candidates {
            if shared.plan().is_dropped(s) {
                continue;
            }
            shared.plan().check_copy_of(s);
            if run_workers(&shared, &job, multi, &report).await.is_err() {
                shared
                    .plan()
                    .drop_source(s, "failed while its copy was checked");
                continue;
            }
            if file_sha1(part).await? == sha1 {
                let mut p = shared.plan();
                for x in p.suspects() {
                    p.drop_source(x, "sent bytes that fail the file's SHA-1");
                }
                ok = true;
                break;
            }
            shared
                .plan()
                .drop_source(s, "its copy fails the file's SHA-1");
        }
    }
    if !ok {
        tokio::fs::remove_file(part).await?;
        return Err(DownloadError::WrongHash);
    }
    tokio::fs::rename(part, dest).await?;
    let tiger = match &*shared.tree() {
        TreeState::Have(t) => TigerCheck::Checked {
            granularity: t.granularity(),
        },
        TreeState::Refused(why) => TigerCheck::Refused(why.clone()),
        TreeState::Unknown | TreeState::Fetching => TigerCheck::None,
    };
    let p = shared.plan();
    Ok(MultiDownloaded {
        size,
        fetched: shared.fetched.load(std::sync::atomic::Ordering::Relaxed),
        sources: p.outcomes(),
        tiger,
    })
}

/// How much of the first `have` bytes of `part` passes `tree` (whole
/// pieces from the start).
async fn checked_prefix(part: &Path, tree: &HashTree, have: u64) -> Result<u64, DownloadError> {
    if have == 0 {
        return Ok(0);
    }
    let mut f = tokio::fs::File::open(part).await?;
    let mut check = match crate::tiger::StreamCheck::new(tree, 0) {
        Some(c) => c,
        None => return Ok(0),
    };
    let mut left = have;
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let n = f.read(&mut buf[..want]).await?;
        if n == 0 || check.update(&buf[..n]).is_err() {
            break;
        }
        left -= n as u64;
    }
    Ok(check.verified())
}

struct Job {
    target: Target,
    sha1: [u8; 20],
    size: u64,
    part: std::path::PathBuf,
    config: DownloadConfig,
}

/// Runs workers until the plan is complete (or every source is dropped).
async fn run_workers(
    shared: &Arc<Shared>,
    job: &Job,
    multi: &MultiConfig,
    report: &(dyn Fn(&Shared) + Send + Sync),
) -> Result<(), DownloadError> {
    let job = Arc::new(Job {
        target: job.target.clone(),
        sha1: job.sha1,
        size: job.size,
        part: job.part.clone(),
        config: job.config.clone(),
    });
    let (alt_tx, mut alt_rx) = mpsc::channel::<SocketAddr>(http::MAX_ALT_LOCS);
    let mut running: HashSet<usize> = HashSet::new();
    let mut workers = JoinSet::new();
    let spawn = |workers: &mut JoinSet<usize>, running: &mut HashSet<usize>, s: usize| {
        if running.len() >= multi.max_parallel || !running.insert(s) {
            return;
        }
        let (sh, job, alt) = (shared.clone(), job.clone(), alt_tx.clone());
        workers.spawn(async move {
            worker(s, &sh, &job, &alt).await;
            s
        });
    };
    let live = shared.plan().live_sources();
    for s in live {
        spawn(&mut workers, &mut running, s);
    }
    loop {
        if shared.plan().complete() {
            break;
        }
        tokio::select! {
            j = workers.join_next() => match j {
                Some(Ok(s)) => {
                    running.remove(&s);
                    report(shared);
                    // Someone else may take its place.
                    let live = shared.plan().live_sources();
                    for x in live {
                        spawn(&mut workers, &mut running, x);
                    }
                }
                Some(Err(_)) => {}
                None => {
                    if shared.plan().complete() {
                        break;
                    }
                    if let Ok(a) = alt_rx.try_recv() {
                        let s = shared.plan().add_source(a);
                        spawn(&mut workers, &mut running, s);
                        continue;
                    }
                    return Err(DownloadError::Unreachable(
                        "every source failed or was dropped".into(),
                    ));
                }
            },
            Some(a) = alt_rx.recv() => {
                let s = {
                    let mut p = shared.plan();
                    if p.source_count() >= multi.max_sources {
                        continue;
                    }
                    p.add_source(a)
                };
                spawn(&mut workers, &mut running, s);
            }
        }
        report(shared);
    }
    workers.abort_all();
    report(shared);
    Ok(())
}

async fn worker(s: usize, sh: &Shared, job: &Job, alt: &mpsc::Sender<SocketAddr>) {
    let addr = sh.plan().sources[s].0.addr;
    loop {
        let woken = sh.changed.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let next = {
            let mut p = sh.plan();
            match p.next_for(s) {
                Some(n) => Some(n),
                None if p.complete() || p.is_dropped(s) || p.only.is_some_and(|o| o != s) => return,
                None => None,
            }
        };
        let Some((i, a, b)) = next else {
            woken.await;
            continue;
        };
        let got = fetch_range(addr, job, a, b).await;
        let r = match got {
            Ok((body, alts, root)) => {
                sh.fetched
                    .fetch_add(body.len() as u64, std::sync::atomic::Ordering::Relaxed);
                for x in alts {
                    let _ = alt.try_send(SocketAddr::V4(x));
                }
                if let Some(root) = root {
                    learn_tree(sh, job, addr, &root).await;
                }
                if let Some(t) = sh.checking_tree() {
                    if let Err(e) = t.verify_range(a, &body) {
                        let why = format!("sent a range that fails the tiger tree ({e})");
                        tracing::warn!(source = %addr, start = a, end = b, "Gnutella source {why}; dropped, the range is fetched again");
                        sh.plan().corrupt(i, s, &why);
                        sh.changed.notify_waiters();
                        return;
                    }
                }
                let checking = sh.plan().only.is_some();
                write_at(&job.part, a, &body, checking).await
            }
            Err(e) => Err(e),
        };
        match r {
            Ok(differed) => sh.plan().done(i, s, differed),
            Err(e) => {
                tracing::debug!(source = %addr, "Gnutella range failed: {e}");
                let dropped = sh.plan().failed(i, s, &e.to_string());
                sh.changed.notify_waiters();
                if dropped {
                    return;
                }
                continue;
            }
        }
        sh.changed.notify_waiters();
    }
}

/// A reply named the root of the tree: the first worker to see one while
/// none is known fetches the THEX from its source.
async fn learn_tree(sh: &Shared, job: &Job, addr: SocketAddr, root: &[u8; 24]) {
    {
        let mut st = sh.tree();
        if !matches!(*st, TreeState::Unknown) {
            return;
        }
        *st = TreeState::Fetching;
    }
    let got = tree_from(&[addr], job.sha1, job.size, root, &job.config).await;
    let next = match got {
        Ok(t) => tree_state(t),
        Err(why) => {
            tracing::warn!(source = %addr, "Gnutella THEX refused ({why}); the whole-file SHA-1 alone checks the file");
            TreeState::Refused(why)
        }
    };
    *sh.tree() = next;
}

/// Writes `body` at `at`; with `compare`, says whether it differs from
/// what was there.
async fn write_at(part: &Path, at: u64, body: &[u8], compare: bool) -> Result<bool, DownloadError> {
    let mut f = tokio::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(part)
        .await?;
    let mut differed = false;
    if compare {
        let mut old = vec![0u8; body.len()];
        f.seek(SeekFrom::Start(at)).await?;
        f.read_exact(&mut old).await?;
        differed = old != body;
    }
    f.seek(SeekFrom::Start(at)).await?;
    f.write_all(body).await?;
    f.flush().await?;
    Ok(differed)
}

/// The body of a range, the `X-Alt` addresses and the tree root
/// (`X-Thex-URI` for this file) of the reply.
type RangeReply = (Vec<u8>, Vec<std::net::SocketAddrV4>, Option<[u8; 24]>);

/// One `Range: bytes=a-(b-1)` request on a new connection.
async fn fetch_range(
    addr: SocketAddr,
    job: &Job,
    a: u64,
    b: u64,
) -> Result<RangeReply, DownloadError> {
    let cfg = &job.config;
    let mut s = match timeout(cfg.connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(DownloadError::Unreachable(format!(
                "cannot connect to {addr}: {e}"
            )))
        }
        Err(_) => return Err(DownloadError::Timeout("connecting")),
    };
    let range = ByteRange::From {
        first: a,
        last: Some(b - 1),
    };
    let (resp, buf) = crate::download::request(&mut s, addr, &job.target, Some(range), cfg).await?;
    if resp.code == 200 {
        return Err(DownloadError::SizeMismatch("200 to a range request"));
    }
    if resp.content_sha1().is_some_and(|h| h != job.sha1) {
        return Err(DownloadError::UrnMismatch);
    }
    let cr = resp
        .content_range()
        .map_err(DownloadError::Malformed)?
        .ok_or(DownloadError::SizeMismatch("206 without Content-Range"))?;
    match (cr.range, cr.total) {
        (Some((x, y)), Some(t)) if x == a && y == b - 1 && t == job.size => {}
        _ => return Err(DownloadError::SizeMismatch("not the range asked")),
    }
    let len = usize::try_from(b - a).map_err(|_| DownloadError::TooLarge)?;
    if resp
        .content_length()
        .map_err(DownloadError::Malformed)?
        .is_some_and(|l| l != b - a)
    {
        return Err(DownloadError::SizeMismatch(
            "Content-Length is not the range's length",
        ));
    }
    let mut body = buf;
    body.truncate(len);
    let mut chunk = vec![0u8; 64 * 1024];
    while body.len() < len {
        let want = (len - body.len()).min(chunk.len());
        let n = timeout(cfg.read_timeout, s.read(&mut chunk[..want]))
            .await
            .map_err(|_| DownloadError::Timeout("reading the body"))??;
        if n == 0 {
            return Err(DownloadError::Truncated);
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let root = resp
        .thex_uri()
        .filter(|t| t.sha1 == job.sha1)
        .map(|t| t.root);
    Ok((body, resp.alt_locs(), root))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn ranges_go_round_and_come_back() {
        let mut p = RangePlan::new(25, 10, 12, 2);
        let s = p.add_source(a(1));
        let t = p.add_source(a(2));
        assert_eq!(p.add_source(a(1)), s);
        assert_eq!(p.have(), 10, "the first range is on disk");
        assert_eq!(p.next_for(s), Some((1, 10, 20)));
        assert_eq!(p.next_for(t), Some((2, 20, 25)));
        assert_eq!(p.next_for(t), None);
        assert!(!p.failed(2, t, "closed"));
        assert_eq!(p.next_for(s), Some((2, 20, 25)));
        assert!(p.next_for(t).is_none());
        p.done(1, s, false);
        assert!(!p.complete());
        p.done(2, s, false);
        assert!(p.complete());
        assert_eq!(p.outcomes()[0].bytes, 15);
        assert!(p.failed(0, t, "closed again"), "two failures: dropped");
        assert_eq!(p.live_sources(), vec![s]);
    }

    #[test]
    fn a_corrupt_range_goes_to_another_source() {
        let mut p = RangePlan::new(30, 10, 0, 5);
        let bad = p.add_source(a(1));
        let good = p.add_source(a(2));
        let (i, ..) = p.next_for(bad).unwrap();
        p.corrupt(i, bad, "fails the tree");
        assert!(p.is_dropped(bad), "dropped at the first corrupt range");
        assert!(p.next_for(bad).is_none());
        assert_eq!(
            p.next_for(good),
            Some((i, 0, 10)),
            "the range is fetched again"
        );
    }

    #[test]
    fn checking_a_copy_blames_the_others() {
        let mut p = RangePlan::new(30, 10, 0, 2);
        let good = p.add_source(a(1));
        let bad = p.add_source(a(2));
        let (i, ..) = p.next_for(good).unwrap();
        p.done(i, good, false);
        let (j, ..) = p.next_for(bad).unwrap();
        p.done(j, bad, false);
        let (k, ..) = p.next_for(good).unwrap();
        p.done(k, good, false);
        p.check_copy_of(good);
        assert!(p.next_for(bad).is_none(), "only the copy checked is asked");
        assert_eq!(p.next_for(good), Some((1, 10, 20)));
        assert_eq!(p.next_for(good), None);
        p.done(1, good, true);
        assert!(p.complete());
        assert_eq!(p.suspects(), vec![bad]);
    }
}
