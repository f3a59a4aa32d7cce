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

use crate::download::fetch;
use crate::download::{file_sha1, DownloadConfig, DownloadError, DownloadProgress};
use crate::http::{self, ByteRange, Headers, Target};

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
}

struct Shared {
    plan: Mutex<RangePlan>,
    changed: Notify,
    fetched: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn plan(&self) -> std::sync::MutexGuard<'_, RangePlan> {
        self.plan.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Fetches the file of `sha1` and `size` by `target` from `sources` (and
/// those their `X-Alt` headers name) into `part`, then checks and renames
/// it to `dest`.
#[allow(clippy::too_many_arguments)]
pub async fn multi_download(
    sources: Vec<SocketAddr>,
    target: Target,
    sha1: [u8; 20],
    size: u64,
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
    let mut plan = RangePlan::new(size, multi.chunk, have, multi.max_failures);
    for s in sources.iter().take(multi.max_sources) {
        plan.add_source(*s);
    }
    let shared = Arc::new(Shared {
        plan: Mutex::new(plan),
        changed: Notify::new(),
        fetched: std::sync::atomic::AtomicU64::new(0),
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
    let p = shared.plan();
    Ok(MultiDownloaded {
        size,
        fetched: shared.fetched.load(std::sync::atomic::Ordering::Relaxed),
        sources: p.outcomes(),
    })
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
            Ok((body, alts)) => {
                sh.fetched
                    .fetch_add(body.len() as u64, std::sync::atomic::Ordering::Relaxed);
                for x in alts {
                    let _ = alt.try_send(SocketAddr::V4(x));
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

/// One `Range: bytes=a-(b-1)` request on a new connection: the body and
/// the `X-Alt` addresses of the reply.
async fn fetch_range(
    addr: SocketAddr,
    job: &Job,
    a: u64,
    b: u64,
) -> Result<(Vec<u8>, Vec<std::net::SocketAddrV4>), DownloadError> {
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
    let (resp, buf) = fetch::request(&mut s, addr, &job.target, Some(range), cfg).await?;
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
    let mut body = Vec::with_capacity(len);
    fetch::copy_body(&mut s, &buf, b - a, &mut body, cfg.read_timeout).await?;
    Ok((body, resp.alt_locs()))
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
