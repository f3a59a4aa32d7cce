//! Fetching a file from a Gnutella servent over HTTP (the tokio side,
//! thin).
//!
//! [`download`] asks for a file by `urn:sha1` (`/uri-res/N2R?`) or by the
//! index and name of a hit (`/get/INDEX/NAME`), resumes a partial file
//! with `Range`, follows a servent that sends the file in several `206`
//! pieces, and checks the SHA-1 of the whole file at the end: a file whose
//! hash is not the one asked for (or announced) is deleted, never kept.
//!
//! When the hit or a reply (`X-Thex-URI`) names the root of the file's
//! Tiger tree, the tree is fetched once (`/uri-res/N2X?`, bounded in size
//! and time) and checked against that root; then each piece of the tree's
//! bottom level is checked as its last byte arrives, so a corrupt range is
//! caught where it is (the download stops, keeping only the pieces that
//! passed) rather than by the SHA-1 at the end. A tree that does not match
//! its root is refused and the download goes on with the whole-file check
//! alone.

use std::io::SeekFrom;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::http::{self, ByteRange, Headers, HttpError, Method, Request, Target};
use crate::thex;
use crate::tiger::{HashTree, RangeError, StreamCheck};
use crate::upload::{read_head, HeadError};

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
    /// Longest THEX answer read (bytes).
    pub max_thex_len: usize,
    /// Time allowed to fetch the THEX, from the connection to its last
    /// byte.
    pub thex_timeout: Duration,
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
            max_thex_len: thex::MAX_THEX_LEN,
            thex_timeout: Duration::from_secs(30),
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
    /// The root of the file's Tiger tree (from the hit), when known; a
    /// reply's `X-Thex-URI` can give it too.
    pub tth: Option<[u8; 24]>,
}

/// Whether the ranges of a download were checked against a Tiger tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TigerCheck {
    /// No tree root was known: the whole-file SHA-1 alone.
    #[default]
    None,
    /// The tree could not be had or did not match its root (why): the
    /// whole-file SHA-1 alone.
    Refused(String),
    /// Every piece of this many bytes was checked as it arrived.
    Checked {
        /// Bytes per piece of the tree's bottom level.
        granularity: u64,
    },
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
    /// How the ranges were checked before the SHA-1 at the end.
    pub tiger: TigerCheck,
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
    /// The bytes `start..end` the servent sent fail the file's Tiger
    /// tree; the partial file keeps only the pieces before them.
    #[error("bytes {start}..{end} fail the tiger tree")]
    CorruptRange {
        /// First byte of the piece that failed.
        start: u64,
        /// Its end (exclusive).
        end: u64,
    },
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

    /// Whether another connection is cheap to open (a direct one, not one
    /// that takes a Push): then a reply that names a Tiger tree is left
    /// unread while the tree is fetched, so that its bytes are checked.
    /// `false` (the default): the body is read, and the tree fetched for
    /// the rest of the file.
    fn reconnects(&self) -> bool {
        false
    }
}

/// Connects to the servent's address.
pub struct Direct {
    /// The servent.
    pub addr: SocketAddr,
    /// Time allowed to connect.
    pub timeout: Duration,
}

impl Connector for Direct {
    fn reconnects(&self) -> bool {
        true
    }

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
    let mut root = d.tth;
    let mut tree: Option<HashTree> = None;
    let mut tiger = TigerCheck::None;
    let mut thex_tried = false;
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
        if let (false, Some(r), Some(size), Some(sha1)) = (thex_tried, root, total, expected) {
            thex_tried = true;
            match fetch_thex(d.addr, connector, sha1, size, &r, config).await {
                Ok(t) => {
                    have = check_on_disk(&mut file, &t, have).await?;
                    tiger = TigerCheck::Checked {
                        granularity: t.granularity(),
                    };
                    tree = Some(t);
                }
                Err(why) => {
                    tracing::warn!(servent = %d.addr, "Gnutella THEX refused ({why}); the whole-file SHA-1 alone checks the file");
                    tiger = TigerCheck::Refused(why);
                }
            }
            continue;
        }
        let stream = connector.connect().await?;
        let learn = !thex_tried && root.is_none() && connector.reconnects();
        let got = fetch_piece(
            d,
            stream,
            &mut file,
            have,
            config,
            &mut expected,
            &mut total,
            tree.as_ref(),
            learn,
        )
        .await;
        let got = match got {
            Err(DownloadError::CorruptRange { start, end }) => {
                tracing::warn!(servent = %d.addr, start, end, "Gnutella servent sent bytes that fail the tiger tree; dropped");
                return Err(DownloadError::CorruptRange { start, end });
            }
            r => r?,
        };
        if root.is_none() {
            root = got.root;
        }
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
        tiger,
    })
}

/// Fetches the THEX of the file of `sha1` over a new connection (bounded
/// by [`DownloadConfig::max_thex_len`] and
/// [`DownloadConfig::thex_timeout`]) and checks it against `root`.
pub async fn fetch_thex<C: Connector>(
    addr: SocketAddr,
    connector: &mut C,
    sha1: [u8; 20],
    size: u64,
    root: &[u8; 24],
    config: &DownloadConfig,
) -> Result<HashTree, String> {
    let body = timeout(config.thex_timeout, async {
        let mut s = connector.connect().await.map_err(|e| e.to_string())?;
        let req = Request::new(
            Method::Get,
            Target::Thex(sha1),
            vec![
                ("Host".to_string(), addr.to_string()),
                ("User-Agent".to_string(), config.user_agent.clone()),
                ("Connection".to_string(), "close".to_string()),
            ],
        );
        s.write_all(&req.encode())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let (resp, used) = match read_head(&mut s, &mut buf, http::parse_response).await {
            Ok(Some(h)) => h,
            Ok(None) | Err(HeadError::Closed) => return Err("closed before a reply".to_string()),
            Err(e) => return Err(e.to_string()),
        };
        buf.drain(..used);
        if resp.code != 200 {
            return Err(format!("N2X answered {}", resp.code));
        }
        let len = resp.content_length().map_err(|e| e.to_string())?;
        if len.is_some_and(|l| l > config.max_thex_len as u64) {
            return Err("THEX larger than allowed".to_string());
        }
        let limit = len.map_or(config.max_thex_len, |l| l as usize);
        let mut chunk = vec![0u8; 16 * 1024];
        while buf.len() < limit {
            let want = (limit - buf.len()).min(chunk.len());
            let n = s
                .read(&mut chunk[..want])
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                if len.is_some() {
                    return Err("THEX cut short".to_string());
                }
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.truncate(limit);
        Ok(buf)
    })
    .await
    .map_err(|_| "THEX not received in time".to_string())??;
    thex::parse_thex(&body, size, root).map_err(|e| e.to_string())
}

/// Checks the first `have` bytes of `file` against `tree`; returns how
/// many to keep (all, or up to the first piece that fails, the rest cut).
async fn check_on_disk(
    file: &mut tokio::fs::File,
    tree: &HashTree,
    have: u64,
) -> Result<u64, DownloadError> {
    let Some(mut check) = StreamCheck::new(tree, 0) else {
        return Ok(have);
    };
    file.seek(SeekFrom::Start(0)).await?;
    let mut left = have;
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let n = file.read(&mut buf[..want]).await?;
        if n == 0 {
            break;
        }
        if check.update(&buf[..n]).is_err() {
            let keep = check.verified();
            tracing::info!(
                kept = keep,
                "partial Gnutella download fails the tiger tree past this offset; cut there"
            );
            file.set_len(keep).await?;
            return Ok(keep);
        }
        left -= n as u64;
    }
    Ok(have)
}

/// A check of the bytes written from `start` on: the bytes of the piece
/// `start` falls in that are on disk already are read back into it first.
async fn check_from<'t>(
    file: &mut tokio::fs::File,
    tree: &'t HashTree,
    start: u64,
) -> Result<StreamCheck<'t>, DownloadError> {
    let from = tree.align_down(start);
    let mut check = StreamCheck::new(tree, from)
        .ok_or(DownloadError::SizeMismatch("range outside the tree"))?;
    if start > from {
        let mut old = vec![0u8; usize::try_from(start - from).unwrap_or(0)];
        file.seek(SeekFrom::Start(from)).await?;
        file.read_exact(&mut old).await?;
        check_update(&mut check, &old, file).await?;
    }
    Ok(check)
}

/// Feeds `data` to `check`; a piece that fails is cut from the file.
async fn check_update(
    check: &mut StreamCheck<'_>,
    data: &[u8],
    file: &mut tokio::fs::File,
) -> Result<(), DownloadError> {
    match check.update(data) {
        Ok(()) => Ok(()),
        Err(RangeError::Mismatch { start, end }) => {
            file.flush().await?;
            file.set_len(start).await?;
            Err(DownloadError::CorruptRange { start, end })
        }
        Err(RangeError::Outside) => Err(DownloadError::SizeMismatch("bytes past the tree's end")),
    }
}

struct Piece {
    have: u64,
    bytes: u64,
    restarted: bool,
    alt_locs: Vec<SocketAddrV4>,
    server: Option<String>,
    /// A tree root the reply named (with `learn_root`, the body was not
    /// read: the tree is fetched first).
    root: Option<[u8; 24]>,
}

/// Sends one `GET` of `target` (with `range`, if any) on `s` and reads the
/// reply's head: the reply (a `200` or a `206`; every other status is its
/// error) and the bytes of the body read with the head.
pub(crate) async fn request(
    s: &mut TcpStream,
    addr: SocketAddr,
    target: &Target,
    range: Option<ByteRange>,
    config: &DownloadConfig,
) -> Result<(http::Response, Vec<u8>), DownloadError> {
    let mut headers = vec![
        ("Host".to_string(), addr.to_string()),
        ("User-Agent".to_string(), config.user_agent.clone()),
    ];
    if let Some(r) = range {
        headers.push(("Range".into(), r.header_value()));
    }
    headers.push(("Connection".to_string(), "close".to_string()));
    let req = Request::new(Method::Get, target.clone(), headers);
    timeout(config.read_timeout, s.write_all(&req.encode()))
        .await
        .map_err(|_| DownloadError::Timeout("sending the request"))??;
    let mut buf = Vec::new();
    let head = timeout(
        config.header_timeout,
        read_head(s, &mut buf, http::parse_response),
    )
    .await
    .map_err(|_| DownloadError::Timeout("waiting for the reply"))?;
    let (resp, used) = match head {
        Ok(Some(h)) => h,
        Ok(None) | Err(HeadError::Closed) => return Err(DownloadError::Truncated),
        Err(HeadError::Http(e)) => return Err(DownloadError::Malformed(e)),
        Err(HeadError::Io(e)) => return Err(e.into()),
    };
    buf.drain(..used);
    match resp.code {
        200 | 206 => Ok((resp, buf)),
        503 => Err(DownloadError::Busy {
            retry_after: resp.retry_after().map(Duration::from_secs),
        }),
        404 | 410 => Err(DownloadError::NotFound),
        416 => Err(DownloadError::BadRange),
        c => Err(DownloadError::Status(c)),
    }
}

#[allow(clippy::too_many_arguments)]
async fn fetch_piece(
    d: &Download,
    mut s: TcpStream,
    file: &mut tokio::fs::File,
    have: u64,
    config: &DownloadConfig,
    expected: &mut Option<[u8; 20]>,
    total: &mut Option<u64>,
    tree: Option<&HashTree>,
    learn_root: bool,
) -> Result<Piece, DownloadError> {
    let range = (have > 0).then_some(ByteRange::From {
        first: have,
        last: None,
    });
    let (resp, buf) = request(&mut s, d.addr, &d.target, range, config).await?;
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
    let named_root = resp
        .thex_uri()
        .filter(|t| Some(t.sha1) == *expected)
        .map(|t| t.root);
    if learn_root && named_root.is_some() {
        // The tree first; this body is not read.
        return Ok(Piece {
            have,
            bytes: 0,
            restarted: false,
            alt_locs: resp.alt_locs(),
            server: resp.agent().map(str::to_string),
            root: named_root,
        });
    }
    // A 200 to a range request sends the whole file: start again.
    let restarted = start == 0 && have > 0;
    if restarted {
        file.set_len(0).await?;
    }
    let mut check = match tree {
        Some(t) if t.size() == size => Some(check_from(file, t, start).await?),
        _ => None,
    };
    file.seek(SeekFrom::Start(start)).await?;
    let mut left = len;
    let take = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
    file.write_all(&buf[..take]).await?;
    if let Some(c) = check.as_mut() {
        check_update(c, &buf[..take], file).await?;
    }
    left -= take as u64;
    let mut chunk = vec![0u8; 64 * 1024];
    while left > 0 {
        let want = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        let n = timeout(config.read_timeout, s.read(&mut chunk[..want]))
            .await
            .map_err(|_| DownloadError::Timeout("reading the body"))??;
        if n == 0 {
            file.flush().await?;
            return Err(DownloadError::Truncated);
        }
        file.write_all(&chunk[..n]).await?;
        if let Some(c) = check.as_mut() {
            check_update(c, &chunk[..n], file).await?;
        }
        left -= n as u64;
    }
    file.flush().await?;
    Ok(Piece {
        have: start + len,
        bytes: len,
        restarted,
        alt_locs: resp.alt_locs(),
        server: resp.agent().map(str::to_string),
        root: named_root,
    })
}
