//! The downloading side of the classic exchange.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::names::{move_into_place, sanitize_basename, NameError};

/// Why a blocking read with `idle` as its timeout failed, or `None` when
/// it was only interrupted and should be retried.
pub(crate) fn read_failure(e: &io::Error, idle: Duration) -> Option<String> {
    match e.kind() {
        io::ErrorKind::Interrupted => None,
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            Some(format!("stalled: no data for {idle:?}"))
        }
        _ => Some(format!("reading failed: {e}")),
    }
}

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
}

/// How far a download is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes received in this session.
    pub received: u64,
    /// Bytes of the file on disk (resumed part included).
    pub done: u64,
    /// The whole size, once the peer said it.
    pub total: Option<u64>,
}

/// A finished download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadReport {
    /// Where the complete file now is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Bytes that were already on disk when this session started.
    pub resumed_from: u64,
    /// Bytes of the file that crossed the wire in this session (for a
    /// download by hash, data that failed verification included).
    pub bytes_received: u64,
    /// What each source did.
    pub sources: Vec<SourceReport>,
}

/// What one source contributed to a download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceReport {
    /// The source.
    pub peer: SocketAddr,
    /// File bytes received from it in this session.
    pub bytes_received: u64,
    /// Of those, bytes that passed verification and were kept.
    pub bytes_verified: u64,
    /// How it ended.
    pub outcome: SourceOutcome,
}

/// How a source ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceOutcome {
    /// It served until there was nothing left to ask.
    Served,
    /// It was not needed (or not reached before the end).
    Unused,
    /// It sent data or a tree that failed verification: never asked again
    /// for this file.
    BadData,
    /// It does not have the file.
    NotFound,
    /// It stayed busy.
    Busy,
    /// The connection failed, stalled or broke the protocol.
    Failed(String),
}

impl std::fmt::Display for SourceOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceOutcome::Served => f.write_str("served"),
            SourceOutcome::Unused => f.write_str("unused"),
            SourceOutcome::BadData => f.write_str("sent data that failed verification"),
            SourceOutcome::NotFound => f.write_str("does not have the file"),
            SourceOutcome::Busy => f.write_str("busy"),
            SourceOutcome::Failed(why) => f.write_str(why),
        }
    }
}

fn summarize(sources: &[SourceReport]) -> String {
    sources
        .iter()
        .map(|s| format!("{}: {}", s.peer, s.outcome))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why a download did not complete.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The remote name cannot be turned into a local file name.
    #[error("cannot download {name:?}: {source}")]
    InvalidName {
        /// The remote name.
        name: String,
        /// Why.
        #[source]
        source: NameError,
    },
    /// Nothing listens on the peer's port.
    #[error("peer {peer} refused the connection; check the address and that the peer is running")]
    Refused {
        /// The peer.
        peer: SocketAddr,
    },
    /// The connection could not be set up in time.
    #[error("peer {peer} did not answer the connection within {after:?}; check the address or try again later")]
    ConnectTimeout {
        /// The peer.
        peer: SocketAddr,
        /// The configured connect timeout.
        after: Duration,
    },
    /// The connection failed for another reason.
    #[error("could not connect to peer {peer}: {source}")]
    Connect {
        /// The peer.
        peer: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The peer answered 0: it does not offer the file (or, when resuming,
    /// the partial copy is already as long as its file).
    #[error("peer {peer} does not offer {name:?}{}", not_found_hint(*.partial, .part))]
    NotFound {
        /// The peer.
        peer: SocketAddr,
        /// The remote name.
        name: String,
        /// Bytes of the partial copy offered for resumption.
        partial: u64,
        /// The partial file (kept when it holds data).
        part: PathBuf,
    },
    /// The partial copy is too large to resume over the classic exchange.
    #[error("the partial copy {} holds {partial} bytes, more than the classic exchange can resume (4 GiB); download it by hash from a rutella peer", .part.display())]
    PartialTooLarge {
        /// The partial file.
        part: PathBuf,
        /// Its size.
        partial: u64,
    },
    /// The peer closed without sending the byte count.
    #[error("peer {peer} closed the connection without answering the request for {name:?}; try again later")]
    NoReply {
        /// The peer.
        peer: SocketAddr,
        /// The remote name.
        name: String,
    },
    /// The transfer stopped before the end; the partial copy is kept and the
    /// same download resumes from it.
    #[error("download from peer {peer} stopped after {received} of {expected} bytes ({cause}); the partial copy {} is kept: run the same download again to resume", .part.display())]
    Interrupted {
        /// The peer.
        peer: SocketAddr,
        /// Bytes received in this session.
        received: u64,
        /// Bytes the peer announced for this session.
        expected: u64,
        /// The partial file.
        part: PathBuf,
        /// What happened.
        cause: String,
    },
    /// The peer did not answer the rutella hello.
    #[error("peer {peer} does not speak the rutella protocol ({reason}); if it is a classic peer, download by name instead")]
    NotRutella {
        /// The peer.
        peer: SocketAddr,
        /// What happened instead.
        reason: String,
    },
    /// The peer answered a rutella request with an error status.
    #[error("peer {peer} answered {status:?}: {message:?}")]
    Refusal {
        /// The peer.
        peer: SocketAddr,
        /// The status it sent.
        status: crate::wire::Status,
        /// Its message.
        message: String,
    },
    /// The peer's tree does not combine into the requested hash.
    #[error("peer {peer} sent a tree that does not match the requested hash ({reason}); it is not asked again for this file")]
    BadTree {
        /// The peer.
        peer: SocketAddr,
        /// Why it was refused.
        reason: String,
    },
    /// The peer sent bytes that failed verification.
    #[error("peer {peer} sent data that failed verification at byte {offset}; it is not asked again for this file")]
    BadData {
        /// The peer.
        peer: SocketAddr,
        /// Start of the group that failed.
        offset: u64,
    },
    /// The peer broke the rutella protocol, stalled or closed early.
    #[error("connection with peer {peer} failed: {reason}")]
    Connection {
        /// The peer.
        peer: SocketAddr,
        /// What happened.
        reason: String,
    },
    /// A download by hash was given no source.
    #[error("no source to download {hash} from; search for the file first")]
    NoSources {
        /// The hash, in hex.
        hash: String,
    },
    /// Every source of a download by hash failed before it completed.
    #[error("download of {hash} stopped with {missing} of {size} bytes missing because every source failed ({}); the verified part is kept: run the same download again to resume", summarize(.sources))]
    SourcesExhausted {
        /// The hash, in hex.
        hash: String,
        /// Bytes still missing.
        missing: u64,
        /// The file's size (0 when no tree could be had).
        size: u64,
        /// What each source did.
        sources: Vec<SourceReport>,
    },
    /// A local file operation failed.
    #[error("{what} {} failed: {source}", .path.display())]
    Local {
        /// What was being done.
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

fn not_found_hint(partial: u64, part: &Path) -> String {
    if partial > 0 {
        format!(
            " past the {partial} bytes already in {}; if that partial copy is complete, rename it, otherwise delete it and download again",
            part.display()
        )
    } else {
        "; search again to find who has it".to_owned()
    }
}

impl DownloadError {
    pub(crate) fn local(
        what: &'static str,
        path: &Path,
    ) -> impl FnOnce(io::Error) -> DownloadError {
        let path = path.to_owned();
        move |source| DownloadError::Local { what, path, source }
    }
}

/// Connects to `peer` with a timeout, mapping failures to clear errors.
pub(crate) async fn connect(peer: SocketAddr, limit: Duration) -> Result<TcpStream, DownloadError> {
    match timeout(limit, TcpStream::connect(peer)).await {
        Err(_) => Err(DownloadError::ConnectTimeout { peer, after: limit }),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            Err(DownloadError::Refused { peer })
        }
        Ok(Err(e)) => Err(DownloadError::Connect { peer, source: e }),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

/// Downloads of at least this many bytes are synced to disk when they end.
const SYNC_AT_LEAST: u64 = 1 << 20;

/// Downloads `req.name` from `req.peer` with the classic exchange, resuming
/// `downloads_dir/BASENAME.part` when it exists.
///
/// Sends the partial size (`u32` LE) and then the name in a write of its
/// own, reads the `u32` count and then exactly that many bytes, appending
/// them to the partial file. When complete the file is moved to
/// `downloads_dir/BASENAME`, or to `BASENAME (N)` when that name is taken:
/// an existing file is never replaced. `progress` is updated as bytes land.
pub async fn classic_download(
    req: ClassicGet,
    progress: tokio::sync::watch::Sender<Progress>,
) -> Result<DownloadReport, DownloadError> {
    let base = sanitize_basename(&req.name).map_err(|source| DownloadError::InvalidName {
        name: req.name.clone(),
        source,
    })?;
    let dir = req.downloads_dir.clone();
    let part = dir.join(format!("{base}.part"));
    // The local set-up in one trip to the blocking pool: each trip costs a
    // thread hop, which dominates the time of small downloads.
    let (file, resumed_from) = {
        let (dir2, part2) = (dir.clone(), part.clone());
        blocking(&part, move || open_part(&dir2, &part2)).await??
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
            let e = DownloadError::Interrupted {
                peer: req.peer,
                received,
                expected,
                part: part.clone(),
                cause,
            };
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
        .map_err(|e| DownloadError::local("working on", part)(io::Error::other(e)))
}

/// Runs file work on the blocking pool; a failure says `what` failed on `path`.
pub(crate) async fn blocking_io<T: Send + 'static>(
    what: &'static str,
    path: &Path,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, DownloadError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)
        .and_then(|r| r)
        .map_err(DownloadError::local(what, path))
}

/// Creates the downloads folder and opens the partial file for appending;
/// returns it and how much it already holds.
fn open_part(dir: &Path, part: &Path) -> Result<(std::fs::File, u64), DownloadError> {
    std::fs::create_dir_all(dir)
        .map_err(DownloadError::local("creating the downloads folder", dir))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(part)
        .map_err(DownloadError::local("opening the partial file", part))?;
    let len = file
        .metadata()
        .map_err(DownloadError::local("reading the size of", part))?
        .len();
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
        .map_err(DownloadError::local("writing to", part))?;
    if !complete {
        return Ok(None);
    }
    // A crash of this process loses nothing written (the kernel holds it);
    // syncing guards against a power loss. It costs about a millisecond a
    // file, which would triple the time of many small downloads, so only
    // files large enough to be costly to fetch again are synced.
    if size >= SYNC_AT_LEAST {
        file.sync_all()
            .map_err(DownloadError::local("syncing", part))?;
    }
    drop(file);
    move_into_place(part, dir, base)
        .map(Some)
        .map_err(DownloadError::local("moving the finished download", part))
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
    cause: Option<String>,
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
) -> (std::fs::File, u64, Option<String>, Option<io::Error>) {
    use std::io::{Read, Write};
    let total = resumed_from + expected;
    let mut buf = match crate::buf::PageBuf::new(READ_BUF) {
        Ok(b) => b,
        Err(e) => return (file, 0, None, Some(e)),
    };
    let mut received = 0u64;
    while received < expected {
        let want = usize::try_from((expected - received).min(READ_BUF as u64)).unwrap_or(READ_BUF);
        match stream.read(&mut buf[..want]) {
            Ok(0) => {
                return (
                    file,
                    received,
                    Some("the peer closed the connection".to_owned()),
                    None,
                )
            }
            Ok(n) => {
                if let Err(e) = file.write_all(&buf[..n]) {
                    return (file, received, None, Some(e));
                }
                received += n as u64;
                progress.send_replace(Progress {
                    received,
                    done: resumed_from + received,
                    total: Some(total),
                });
            }
            Err(e) => {
                if let Some(reason) = read_failure(&e, idle) {
                    return (file, received, Some(reason), None);
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
    let partial = u32::try_from(resumed_from).map_err(|_| DownloadError::PartialTooLarge {
        part: part.to_owned(),
        partial: resumed_from,
    })?;
    let mut stream = connect(peer, req.connect_timeout).await?;
    let interrupted = |received: u64, expected: u64, cause: String| DownloadError::Interrupted {
        peer,
        received,
        expected,
        part: part.to_owned(),
        cause,
    };
    let send = async {
        stream.write_all(&partial.to_le_bytes()).await?;
        stream.flush().await?;
        stream.write_all(req.name.as_bytes()).await?;
        stream.flush().await
    };
    match timeout(req.idle_timeout, send).await {
        Err(_) => {
            return Err(interrupted(
                0,
                0,
                "the request could not be sent in time".into(),
            ))
        }
        Ok(Err(e)) => {
            return Err(interrupted(
                0,
                0,
                format!("sending the request failed: {e}"),
            ))
        }
        Ok(Ok(())) => {}
    }
    let mut count = [0u8; 4];
    match timeout(req.idle_timeout, stream.read_exact(&mut count)).await {
        Err(_) => {
            return Err(interrupted(
                0,
                0,
                format!("no answer within {:?}", req.idle_timeout),
            ))
        }
        Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(DownloadError::NoReply {
                peer,
                name: req.name.clone(),
            })
        }
        Ok(Err(e)) => return Err(interrupted(0, 0, format!("reading the answer failed: {e}"))),
        Ok(Ok(_)) => {}
    }
    let expected = u64::from(u32::from_le_bytes(count));
    if expected == 0 {
        return Err(DownloadError::NotFound {
            peer,
            name: req.name.clone(),
            partial: resumed_from,
            part: part.to_owned(),
        });
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
        while received < buffered.len() {
            match timeout(req.idle_timeout, stream.read(&mut buffered[received..])).await {
                Err(_) => cause = Some(format!("no data for {:?}", req.idle_timeout)),
                Ok(Err(e)) => cause = Some(format!("reading failed: {e}")),
                Ok(Ok(0)) => cause = Some("the peer closed the connection".to_owned()),
                Ok(Ok(n)) => {
                    received += n;
                    continue;
                }
            }
            break;
        }
        buffered.truncate(received);
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
    let std_stream =
        setup.map_err(|e| interrupted(0, expected, format!("socket setup failed: {e}")))?;
    let (idle, progress_tx) = (req.idle_timeout, progress.clone());
    let (file, received, cause, write_error) = blocking(part, move || {
        receive(std_stream, file, expected, resumed_from, idle, &progress_tx)
    })
    .await?;
    if let Some(e) = write_error {
        return Err(DownloadError::local("writing to", part)(e));
    }
    Ok(Fetched {
        file,
        received,
        expected,
        buffered: Vec::new(),
        cause,
    })
}
