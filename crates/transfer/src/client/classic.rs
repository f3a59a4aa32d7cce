//! The downloading side of the classic exchange.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use crate::error::{Broken, DownloadError, LocalError, SourceError};
use crate::names::{move_into_place, sanitize_basename};
use crate::report::{DownloadReport, Progress, SourceOutcome, SourceReport};

/// Receive buffer of large classic downloads: one huge page.
const READ_BUF: usize = 2 << 20;

/// A classic download: which file, from whom, and where to put it.
#[derive(Debug, Clone)]
pub struct ClassicGet {
    /// The serving peer (a classic peer listens on `IP:10000`).
    pub peer: SocketAddr,
    /// The file name as the peer listed it.
    pub name: String,
    /// Folder that receives `BASENAME.part` and then `BASENAME`.
    pub downloads_dir: PathBuf,
    /// Longest wait for the connection to be set up.
    pub connect_timeout: Duration,
    /// Longest wait for any byte once connected.
    pub idle_timeout: Duration,
    /// Cut a partial copy back to a 1024-byte boundary before resuming
    /// (under the download's lock): a classic server resends from the
    /// start of the block that holds the offset, so only a resume from a
    /// multiple of 1024 is right with it. Set it for a peer not known to be
    /// rutella; at most 1023 bytes are sent again.
    pub align_resume: bool,
    /// The file's size as the peer's search answer gave it, when it did: a
    /// reply announcing more is refused before anything is written.
    pub listed_size: Option<u64>,
    /// How to get the connection; `None`: connect to `peer`.
    pub dialer: Option<crate::dial::SharedDialer>,
    /// A download rate limit shared with other transfers; `None`: none.
    pub limit: Option<crate::RateLimiter>,
}

/// Starts of replies that cannot be a classic byte count (compared in
/// ASCII upper case): an HTTP server's answer, a Gnutella handshake, a
/// web page or XML, and a rutella introduction.
const NOT_A_COUNT: &[&[u8; 4]] = &[b"HTTP", b"GNUT", b"<!DO", b"<HTM", b"<?XM", b"RUT\xFF"];

/// Whether the first four bytes of a reply are the start of a text or of
/// another protocol rather than a classic byte count.
pub(crate) fn not_a_count(first: [u8; 4]) -> bool {
    let upper = first.to_ascii_uppercase();
    NOT_A_COUNT.iter().any(|t| upper == **t)
}

/// Downloads of at least this many bytes are synced to disk when they end.
const SYNC_AT_LEAST: u64 = 1 << 20;

/// Downloads `req.name` from `req.peer` with the classic exchange, resuming
/// `downloads_dir/BASENAME.part` when it exists.
///
/// Sends the partial size (`u32` LE) and then the name in a write of its
/// own, reads the `u32` count (refusing a reply that starts like a text or
/// another protocol, or a count beyond [`ClassicGet::listed_size`], before
/// anything is written) and then exactly that many bytes, appending
/// them to the partial file. When complete the file is moved to
/// `downloads_dir/BASENAME`, or to `BASENAME (N)` when that name is taken:
/// an existing file is never replaced. `progress` is updated as bytes land.
pub async fn classic_download(
    req: ClassicGet,
    progress: tokio::sync::watch::Sender<Progress>,
) -> Result<DownloadReport, DownloadError> {
    let base = sanitize_basename(&req.name).map_err(|source| LocalError::InvalidName {
        name: req.name.clone(),
        source,
    })?;
    let dir = req.downloads_dir.clone();
    let part = dir.join(format!("{base}.part"));
    // One download per target: another one of the same name into the same
    // folder is waited for; held until this function returns.
    let (_lock, waited) = crate::lock::PartLock::acquire(&part, &base)
        .await
        .map_err(LocalError::io("locking the partial file", &part))?;
    if waited {
        // The download waited for may have finished this very file.
        let done = dir.join(&base);
        if !tokio::fs::try_exists(&part).await.unwrap_or(true) {
            if let Ok(meta) = tokio::fs::metadata(&done).await {
                if meta.is_file() {
                    tracing::info!(path = %done.display(), "the same download finished meanwhile");
                    return Ok(DownloadReport {
                        path: done,
                        size: meta.len(),
                        resumed_from: meta.len(),
                        bytes_received: 0,
                        sources: Vec::new(),
                    });
                }
            }
        }
    }
    // The local set-up in one trip to the blocking pool: each trip costs a
    // thread hop, which dominates the time of small downloads.
    let (file, resumed_from) = {
        let (dir2, part2) = (dir.clone(), part.clone());
        let align = req.align_resume;
        blocking(&part, move || open_part(&dir2, &part2, align)).await??
    };
    let fetched = fetch(&req, file, &part, resumed_from, &progress).await;
    let Fetched {
        file,
        received,
        expected,
        buffered,
        cause,
    } = match fetched {
        Ok(f) => f,
        Err(e) => {
            if resumed_from == 0 {
                // Do not leave an empty partial file behind.
                if let Ok(m) = tokio::fs::metadata(&part).await {
                    if m.len() == 0 {
                        let _ = tokio::fs::remove_file(&part).await;
                    }
                }
            }
            tracing::warn!("{e}");
            return Err(e);
        }
    };
    let size = resumed_from + received;
    let complete = cause.is_none();
    // Write what is still in memory, sync, and move into place: one trip.
    let finished = {
        let (part, dir, base) = (part.clone(), dir.clone(), base.clone());
        blocking(&part.clone(), move || {
            finish(file, &buffered, &part, &dir, &base, complete, size)
        })
        .await?
    };
    let path = match (finished, cause) {
        (Err(e), _) => return Err(e),
        (Ok(_), Some(cause)) => {
            let e = DownloadError::from(SourceError::Interrupted {
                peer: req.peer,
                received,
                expected,
                part: part.clone(),
                cause,
            });
            tracing::warn!("{e}");
            return Err(e);
        }
        (Ok(path), None) => path.unwrap_or_else(|| part.clone()),
    };
    tracing::info!(peer = %req.peer, name = ?req.name, path = %path.display(), size, resumed_from, "classic download complete");
    Ok(DownloadReport {
        path,
        size,
        resumed_from,
        bytes_received: received,
        sources: vec![SourceReport {
            peer: req.peer,
            bytes_received: received,
            bytes_verified: 0,
            outcome: SourceOutcome::Served,
        }],
    })
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    part: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, DownloadError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LocalError::io("working on", part)(io::Error::other(e)).into())
}

/// Creates the downloads folder and opens the partial file for appending;
/// returns it and how much it already holds.
fn open_part(dir: &Path, part: &Path, align: bool) -> Result<(std::fs::File, u64), DownloadError> {
    std::fs::create_dir_all(dir).map_err(LocalError::io("creating the downloads folder", dir))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(part)
        .map_err(LocalError::io("opening the partial file", part))?;
    let mut len = file
        .metadata()
        .map_err(LocalError::io("reading the size of", part))?
        .len();
    if align && len % 1024 != 0 {
        let aligned = len - len % 1024;
        file.set_len(aligned)
            .and_then(|()| file.sync_all())
            .map_err(LocalError::io("cutting back", part))?;
        tracing::debug!(part = %part.display(), from = len, to = aligned, "partial copy cut back to a 1024-byte boundary for a classic resume");
        len = aligned;
    }
    Ok((file, len))
}

/// Appends what is still in memory and, for a complete download, syncs a
/// large one and moves it into place (returning where it went).
fn finish(
    mut file: std::fs::File,
    buffered: &[u8],
    part: &Path,
    dir: &Path,
    base: &str,
    complete: bool,
    size: u64,
) -> Result<Option<PathBuf>, DownloadError> {
    use std::io::Write;
    file.write_all(buffered)
        .map_err(LocalError::io("writing to", part))?;
    if !complete {
        return Ok(None);
    }
    // A crash of this process loses nothing written (the kernel holds it);
    // syncing guards against a power loss. It costs about a millisecond a
    // file, which would triple the time of many small downloads, so only
    // files large enough to be costly to fetch again are synced.
    if size >= SYNC_AT_LEAST {
        file.sync_all().map_err(LocalError::io("syncing", part))?;
    }
    drop(file);
    move_into_place(part, dir, base)
        .map(Some)
        .map_err(|e| LocalError::io("moving the finished download", part)(e).into())
}

/// What the exchange brought.
struct Fetched {
    /// The partial file, with the bytes written so far.
    file: std::fs::File,
    /// Bytes received this session (written or in `buffered`).
    received: u64,
    /// Bytes the peer announced.
    expected: u64,
    /// Received bytes not written yet.
    buffered: Vec<u8>,
    /// Why the transfer stopped early, if it did.
    cause: Option<Broken>,
}

/// Answers up to this size are read into memory and written at the end;
/// larger ones stream to the file from a blocking thread.
const SMALL: u64 = 256 * 1024;

/// Copies `expected` bytes from the socket to the end of the file; returns
/// the bytes received, why it stopped early (if it did), and a write error.
fn receive(
    mut stream: std::net::TcpStream,
    mut file: std::fs::File,
    expected: u64,
    resumed_from: u64,
    idle: Duration,
    progress: &tokio::sync::watch::Sender<Progress>,
    limit: Option<&crate::RateLimiter>,
) -> (std::fs::File, u64, Option<Broken>, Option<io::Error>) {
    use std::io::{Read, Write};
    let total = resumed_from + expected;
    let mut buf = match crate::buf::PageBuf::new(READ_BUF) {
        Ok(b) => b,
        Err(e) => return (file, 0, None, Some(e)),
    };
    let mut received = 0u64;
    while received < expected {
        let mut want =
            usize::try_from((expected - received).min(READ_BUF as u64)).unwrap_or(READ_BUF);
        if let Some(l) = limit {
            want = want.min(l.slice());
        }
        match stream.read(&mut buf[..want]) {
            Ok(0) => {
                return (
                    file,
                    received,
                    Some(Broken::Closed {
                        during: "receiving data",
                    }),
                    None,
                )
            }
            Ok(n) => {
                if let Err(e) = file.write_all(&buf[..n]) {
                    return (file, received, None, Some(e));
                }
                received += n as u64;
                if let Some(l) = limit {
                    l.take_blocking(n as u64);
                }
                progress.send_replace(Progress {
                    received,
                    done: resumed_from + received,
                    total: Some(total),
                });
            }
            Err(e) => {
                if let Some(cause) = Broken::from_read(e, idle, "receiving data") {
                    return (file, received, Some(cause), None);
                }
            }
        }
    }
    (file, received, None, None)
}

/// The exchange itself, up to the last byte received.
async fn fetch(
    req: &ClassicGet,
    file: std::fs::File,
    part: &Path,
    resumed_from: u64,
    progress: &tokio::sync::watch::Sender<Progress>,
) -> Result<Fetched, DownloadError> {
    let peer = req.peer;
    let partial = u32::try_from(resumed_from).map_err(|_| LocalError::PartialTooLarge {
        part: part.to_owned(),
        partial: resumed_from,
    })?;
    let mut stream = crate::dial::dial(req.dialer.as_ref(), peer, req.connect_timeout).await?;
    let interrupted = |received: u64, expected: u64, cause: Broken| {
        DownloadError::from(SourceError::Interrupted {
            peer,
            received,
            expected,
            part: part.to_owned(),
            cause,
        })
    };
    let idle = req.idle_timeout;
    let send = async {
        stream.write_all(&partial.to_le_bytes()).await?;
        stream.flush().await?;
        stream.write_all(req.name.as_bytes()).await?;
        stream.flush().await
    };
    match timeout(req.idle_timeout, send).await {
        Err(_) => {
            let during = "sending the request";
            return Err(interrupted(0, 0, Broken::Stalled { idle, during }));
        }
        Ok(Err(source)) => {
            let during = "sending the request";
            return Err(interrupted(0, 0, Broken::Io { during, source }));
        }
        Ok(Ok(())) => {}
    }
    let mut count = [0u8; 4];
    match timeout(req.idle_timeout, stream.read_exact(&mut count)).await {
        Err(_) => {
            let during = "waiting for the answer";
            return Err(interrupted(0, 0, Broken::Stalled { idle, during }));
        }
        Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(SourceError::NoReply {
                peer,
                name: req.name.clone(),
            }
            .into())
        }
        Ok(Err(source)) => {
            let during = "reading the answer";
            return Err(interrupted(0, 0, Broken::Io { during, source }));
        }
        Ok(Ok(_)) => {}
    }
    if not_a_count(count) {
        return Err(SourceError::NotClassic {
            peer,
            name: req.name.clone(),
            start: String::from_utf8_lossy(&count).into_owned(),
        }
        .into());
    }
    let expected = u64::from(u32::from_le_bytes(count));
    if let Some(listed) = req.listed_size {
        if resumed_from + expected > listed {
            return Err(SourceError::TooLarge {
                peer,
                name: req.name.clone(),
                announced: resumed_from + expected,
                listed,
            }
            .into());
        }
    }
    if expected == 0 {
        return Err(SourceError::NotFound {
            peer,
            name: req.name.clone(),
            partial: resumed_from,
            part: part.to_owned(),
        }
        .into());
    }
    let total = resumed_from + expected;
    progress.send_replace(Progress {
        received: 0,
        done: resumed_from,
        total: Some(total),
    });
    if expected <= SMALL {
        // Small answers: read into memory here, written with the rename.
        let mut buffered = vec![0u8; expected as usize];
        let mut received = 0usize;
        let mut cause = None;
        let during = "receiving data";
        while received < buffered.len() {
            match timeout(req.idle_timeout, stream.read(&mut buffered[received..])).await {
                Err(_) => cause = Some(Broken::Stalled { idle, during }),
                Ok(Err(e)) => match Broken::from_read(e, idle, during) {
                    Some(c) => cause = Some(c),
                    None => continue,
                },
                Ok(Ok(0)) => cause = Some(Broken::Closed { during }),
                Ok(Ok(n)) => {
                    received += n;
                    continue;
                }
            }
            break;
        }
        buffered.truncate(received);
        if let Some(l) = &req.limit {
            l.take(received as u64).await;
        }
        progress.send_replace(Progress {
            received: received as u64,
            done: resumed_from + received as u64,
            total: Some(total),
        });
        return Ok(Fetched {
            file,
            received: received as u64,
            expected,
            buffered,
            cause,
        });
    }
    // Large answers move in a plain blocking loop on the blocking pool:
    // read from the socket, write to the file. Async file writes cost an
    // extra copy and a thread hop per write: a third of the CPU time.
    let setup = stream.into_std().and_then(|s| {
        s.set_nonblocking(false)?;
        s.set_read_timeout(Some(req.idle_timeout))?;
        Ok(s)
    });
    let std_stream = setup.map_err(|source| {
        let during = "setting up the socket";
        interrupted(0, expected, Broken::Io { during, source })
    })?;
    let (idle, progress_tx) = (req.idle_timeout, progress.clone());
    let limit = req.limit.clone();
    let (file, received, cause, write_error) = blocking(part, move || {
        receive(
            std_stream,
            file,
            expected,
            resumed_from,
            idle,
            &progress_tx,
            limit.as_ref(),
        )
    })
    .await?;
    if let Some(e) = write_error {
        return Err(LocalError::io("writing to", part)(e).into());
    }
    Ok(Fetched {
        file,
        received,
        expected,
        buffered: Vec::new(),
        cause,
    })
}
