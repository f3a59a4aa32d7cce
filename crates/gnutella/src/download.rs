//! Fetching a file from a Gnutella servent over HTTP (the tokio side,
//! thin).
//!
//! [`download`] asks for a file by `urn:sha1` (`/uri-res/N2R?`) or by the
//! index and name of a hit (`/get/INDEX/NAME`), resumes a partial file
//! with `Range`, follows a servent that sends the file in several `206`
//! pieces, and checks the SHA-1 of the whole file at the end: a file whose
//! hash is not the one asked for (or announced) is deleted, never kept.

pub(crate) mod fetch;

use std::io::SeekFrom;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::http::{self, ByteRange, Headers, HttpError, Target};

/// Limits and timers of a download.
#[derive(Clone, Debug)]
pub struct DownloadConfig {
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time allowed for the response head, from the request.
    pub header_timeout: Duration,
    /// Time allowed between two reads of the body.
    pub read_timeout: Duration,
    /// Largest file accepted.
    pub max_size: u64,
    /// Requests made for one file (a servent may answer each with a
    /// smaller piece than asked).
    pub max_requests: usize,
    /// The `User-Agent` header.
    pub user_agent: String,
}

impl Default for DownloadConfig {
    fn default() -> Self {
        DownloadConfig {
            connect_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            max_size: 1 << 40,
            max_requests: 64,
            user_agent: concat!("rutella/", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

/// What to fetch, from where.
#[derive(Clone, Debug)]
pub struct Download {
    /// The servent.
    pub addr: SocketAddr,
    /// By URN or by index and name.
    pub target: Target,
    /// The SHA-1 the file must have (from the hit). With a
    /// [`Target::Sha1`] it is that one when not given.
    pub sha1: Option<[u8; 20]>,
    /// The size the file must have (from the hit), when known.
    pub size: Option<u64>,
}

/// A finished, checked download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Downloaded {
    /// The file's size.
    pub size: u64,
    /// Bytes of the partial file kept from before.
    pub resumed_from: u64,
    /// Body bytes received now.
    pub fetched: u64,
    /// Its SHA-1 (checked).
    pub sha1: [u8; 20],
    /// Alternate sources the servent named (`X-Alt`).
    pub alt_locs: Vec<SocketAddrV4>,
    /// The servent's `Server` header, as received.
    pub server: Option<String>,
}

/// Why a download failed. The partial file is kept (for a later resume)
/// except after [`DownloadError::WrongHash`].
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// `503`: every upload slot of the servent is taken.
    #[error("servent busy (retry after {retry_after:?})")]
    Busy {
        /// Its `Retry-After`, when given.
        retry_after: Option<Duration>,
    },
    /// `404`: the servent does not share it.
    #[error("not found")]
    NotFound,
    /// `416`: the range asked is outside the file.
    #[error("range not satisfiable")]
    BadRange,
    /// Another status code.
    #[error("unexpected HTTP status {0}")]
    Status(u16),
    /// The reply is not HTTP, or a header of it does not parse.
    #[error("malformed reply: {0}")]
    Malformed(HttpError),
    /// Sizes or ranges of the reply disagree with each other, with the
    /// request or with the hit.
    #[error("sizes disagree: {0}")]
    SizeMismatch(&'static str),
    /// Larger than [`DownloadConfig::max_size`].
    #[error("file larger than allowed")]
    TooLarge,
    /// The servent announces another SHA-1 than the one asked for.
    #[error("servent announces another file")]
    UrnMismatch,
    /// No SHA-1 to check the file against (none given, none announced).
    #[error("no SHA-1 to check the file against")]
    NoHash,
    /// The whole file's SHA-1 is not the expected one; the file was deleted.
    #[error("SHA-1 of the file is wrong; file deleted")]
    WrongHash,
    /// The servent closed before the end of the body.
    #[error("connection closed before the end of the body")]
    Truncated,
    /// A deadline passed.
    #[error("timed out while {0}")]
    Timeout(&'static str),
    /// Too many requests for one file.
    #[error("too many requests for one file")]
    TooManyRequests,
    /// The servent could not be reached (directly or by a Push).
    #[error("{0}")]
    Unreachable(String),
    /// Socket or file failure.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// How far a download is, for a user interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DownloadProgress {
    /// Bytes of the file on disk (resumed part included).
    pub have: u64,
    /// Body bytes received in this run.
    pub fetched: u64,
    /// The file's size, once known.
    pub total: Option<u64>,
}

/// How a download reaches its servent: a connection on which the HTTP
/// request is sent next.
pub trait Connector: Send {
    /// A new connection to the servent.
    fn connect(
        &mut self,
    ) -> impl std::future::Future<Output = Result<TcpStream, DownloadError>> + Send;
}

/// Connects to the servent's address.
pub struct Direct {
    /// The servent.
    pub addr: SocketAddr,
    /// Time allowed to connect.
    pub timeout: Duration,
}

impl Connector for Direct {
    async fn connect(&mut self) -> Result<TcpStream, DownloadError> {
        match timeout(self.timeout, TcpStream::connect(self.addr)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(DownloadError::Unreachable(format!(
                "cannot connect to {}: {e}",
                self.addr
            ))),
            Err(_) => Err(DownloadError::Unreachable(format!(
                "{} did not answer the connection within {} ms",
                self.addr,
                self.timeout.as_millis()
            ))),
        }
    }
}

/// The SHA-1 of a file's content.
pub async fn file_sha1(path: &Path) -> std::io::Result<[u8; 20]> {
    let mut f = tokio::fs::File::open(path).await?;
    let mut h = sha1_smol::Sha1::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            return Ok(h.digest().bytes());
        }
        h.update(&buf[..n]);
    }
}

/// Fetches `d` into `part` (resuming from what it holds), checks it, and
/// renames it to `dest`. On failure a partial file is kept for a later
/// resume, unless it is empty or its content was found wrong.
pub async fn download(
    d: &Download,
    part: &Path,
    dest: &Path,
    config: &DownloadConfig,
) -> Result<Downloaded, DownloadError> {
    let mut direct = Direct {
        addr: d.addr,
        timeout: config.connect_timeout,
    };
    download_via(d, part, dest, config, &mut direct, &|_| {}).await
}

/// [`download`] over the connections `connector` opens (e.g. each one
/// after a Push), telling `progress` how far it is after each piece.
pub async fn download_via<C: Connector>(
    d: &Download,
    part: &Path,
    dest: &Path,
    config: &DownloadConfig,
    connector: &mut C,
    progress: &(dyn Fn(DownloadProgress) + Send + Sync),
) -> Result<Downloaded, DownloadError> {
    let r = fetch(d, part, dest, config, connector, progress).await;
    if r.is_err() {
        if let Ok(m) = tokio::fs::metadata(part).await {
            if m.len() == 0 {
                let _ = tokio::fs::remove_file(part).await;
            }
        }
    }
    r
}

async fn fetch<C: Connector>(
    d: &Download,
    part: &Path,
    dest: &Path,
    config: &DownloadConfig,
    connector: &mut C,
    progress: &(dyn Fn(DownloadProgress) + Send + Sync),
) -> Result<Downloaded, DownloadError> {
    let mut expected = d.sha1;
    if let Target::Sha1(h) = &d.target {
        if expected.is_some_and(|e| e != *h) {
            return Err(DownloadError::UrnMismatch);
        }
        expected = Some(*h);
    }
    if d.size.is_some_and(|s| s > config.max_size) {
        return Err(DownloadError::TooLarge);
    }
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(part)
        .await?;
    let mut have = file.metadata().await?.len();
    if d.size.is_some_and(|s| have > s) || have > config.max_size {
        file.set_len(0).await?;
        have = 0;
    }
    let mut resumed_from = have;
    let mut fetched = 0u64;
    let mut total = d.size;
    let mut alt_locs = Vec::new();
    let mut server = None;
    let mut requests = 0;
    let report = |have: u64, fetched: u64, total: Option<u64>| {
        progress(DownloadProgress {
            have,
            fetched,
            total,
        })
    };
    report(have, 0, total);
    loop {
        if total.is_some_and(|t| have >= t) {
            break;
        }
        if requests >= config.max_requests {
            return Err(DownloadError::TooManyRequests);
        }
        requests += 1;
        let stream = connector.connect().await?;
        let got = fetch_piece(
            d,
            stream,
            &mut file,
            have,
            config,
            &mut expected,
            &mut total,
        )
        .await?;
        if got.restarted {
            fetched = 0;
            resumed_from = 0;
        }
        have = got.have;
        fetched += got.bytes;
        for a in got.alt_locs {
            if alt_locs.len() < http::MAX_ALT_LOCS && !alt_locs.contains(&a) {
                alt_locs.push(a);
            }
        }
        server = got.server.or(server);
        report(have, fetched, total);
    }
    file.flush().await?;
    drop(file);
    let want = expected.ok_or(DownloadError::NoHash)?;
    let sha1 = file_sha1(part).await?;
    if sha1 != want {
        tokio::fs::remove_file(part).await?;
        return Err(DownloadError::WrongHash);
    }
    tokio::fs::rename(part, dest).await?;
    Ok(Downloaded {
        size: have,
        resumed_from,
        fetched,
        sha1,
        alt_locs,
        server,
    })
}

struct Piece {
    have: u64,
    bytes: u64,
    restarted: bool,
    alt_locs: Vec<SocketAddrV4>,
    server: Option<String>,
}

async fn fetch_piece(
    d: &Download,
    mut s: TcpStream,
    file: &mut tokio::fs::File,
    have: u64,
    config: &DownloadConfig,
    expected: &mut Option<[u8; 20]>,
    total: &mut Option<u64>,
) -> Result<Piece, DownloadError> {
    let range = (have > 0).then_some(ByteRange::From {
        first: have,
        last: None,
    });
    let (resp, buf) = fetch::request(&mut s, d.addr, &d.target, range, config).await?;
    if let Some(h) = resp.content_sha1() {
        if expected.is_some_and(|e| e != h) {
            return Err(DownloadError::UrnMismatch);
        }
        *expected = Some(h);
    }
    if expected.is_none() {
        return Err(DownloadError::NoHash);
    }
    let length = resp.content_length().map_err(DownloadError::Malformed)?;
    let (start, len, size) = if resp.code == 206 {
        let cr = resp
            .content_range()
            .map_err(DownloadError::Malformed)?
            .ok_or(DownloadError::SizeMismatch("206 without Content-Range"))?;
        let ((a, b), t) = match (cr.range, cr.total) {
            (Some(r), Some(t)) => (r, t),
            _ => return Err(DownloadError::SizeMismatch("206 without a whole range")),
        };
        if a != have {
            return Err(DownloadError::SizeMismatch(
                "range does not start where asked",
            ));
        }
        if length.is_some_and(|l| l != b - a + 1) {
            return Err(DownloadError::SizeMismatch(
                "Content-Length is not the range's length",
            ));
        }
        (a, b - a + 1, t)
    } else {
        let l = length.ok_or(DownloadError::SizeMismatch("200 without Content-Length"))?;
        (0, l, l)
    };
    if size > config.max_size {
        return Err(DownloadError::TooLarge);
    }
    if total.is_some_and(|t| t != size) {
        return Err(DownloadError::SizeMismatch(
            "file size differs from the one expected",
        ));
    }
    *total = Some(size);
    // A 200 to a range request sends the whole file: start again.
    let restarted = start == 0 && have > 0;
    if restarted {
        file.set_len(0).await?;
    }
    file.seek(SeekFrom::Start(start)).await?;
    fetch::copy_body(&mut s, &buf, len, file, config.read_timeout).await?;
    Ok(Piece {
        have: start + len,
        bytes: len,
        restarted,
        alt_locs: resp.alt_locs(),
        server: resp.agent().map(str::to_string),
    })
}
