//! Serving files to Gnutella servents over HTTP (the tokio side, thin).
//!
//! The files come from a [`Library`] the owner implements (by SHA-1 and by
//! the index and name of a hit). [`Uploader::serve`] answers the requests
//! of one connection: `GET` and `HEAD` of `/uri-res/N2R?urn:sha1:…` and
//! `/get/INDEX/NAME`, with one `Range`, `200`, `206`, `404`, `416`, and
//! `503` with `Retry-After` when every upload slot is taken. Each request
//! head must arrive within [`UploadConfig::header_timeout`] and fit
//! [`http::MAX_HEAD_LEN`].

use std::io::SeekFrom;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::timeout;

use crate::browse::{self, HitOrigin};
use crate::descriptor::HitResult;
use crate::http::{self, Headers, HttpError, Method, Request, Response, Target};
use crate::huge::Urn;
use crate::thex;
use crate::tiger::{self, HashTree};

/// One shared file, as the library describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedFile {
    /// Where its bytes are.
    pub path: PathBuf,
    /// Its size in bytes (a file on disk of another size is not served).
    pub size: u64,
    /// The SHA-1 of its content.
    pub sha1: [u8; 20],
    /// Other servents known to have it (sent as `X-Alt`, at most
    /// [`http::MAX_ALT_LOCS`]).
    pub alt_locs: Vec<SocketAddrV4>,
    /// The root of its Tiger tree, when known: named in `X-Thex-URI`, and
    /// its tree served at `/uri-res/N2X?`.
    pub tth: Option<[u8; 24]>,
}

/// What the uploader serves.
pub trait Library: Send + Sync + 'static {
    /// The file with this SHA-1, if shared.
    fn by_sha1(&self, sha1: &[u8; 20]) -> Option<SharedFile>;
    /// The file of this index, if shared under this name.
    fn by_index(&self, index: u32, name: &str) -> Option<SharedFile>;
    /// Browse host: who the hits name and every shared file as a result
    /// (at most `max`); `None` (the default): not offered, `GET /` is
    /// answered 404.
    fn browse(&self, max: usize) -> Option<(HitOrigin, Vec<HitResult>)> {
        let _ = max;
        None
    }
    /// The Tiger tree to serve for `file` (its root must be `file.tth`);
    /// `None` (the default): the uploader computes it from the file's
    /// bytes, down to [`tiger::serve_depth`].
    fn tree(&self, file: &SharedFile) -> Option<HashTree> {
        let _ = file;
        None
    }
}

/// Trees computed for N2X kept in memory (the most recent).
const TREE_CACHE: usize = 8;

/// The tree of the file at `path` (of `size` bytes) down to `depth`,
/// reading it once (blocking).
pub fn tree_of_file(path: &std::path::Path, size: u64, depth: u32) -> std::io::Result<HashTree> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let g = tiger::granularity(size, depth);
    let n = tiger::nodes_at(size, depth);
    let mut bottom = Vec::with_capacity(usize::try_from(n).unwrap_or(0).min(1 << tiger::MAX_DEPTH));
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = size;
    while left > 0 || bottom.is_empty() {
        let mut h = tiger::TreeHasher::new();
        let mut piece = g.min(left);
        while piece > 0 {
            let want = usize::try_from(piece.min(buf.len() as u64)).unwrap_or(buf.len());
            let got = f.read(&mut buf[..want])?;
            if got == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            h.update(&buf[..got]);
            piece -= got as u64;
            left -= got as u64;
        }
        bottom.push(h.finish());
    }
    HashTree::from_bottom(size, depth, bottom).ok_or_else(|| std::io::ErrorKind::InvalidData.into())
}

/// Limits and timers of the uploader.
#[derive(Clone, Debug)]
pub struct UploadConfig {
    /// Uploads (GET of a file) at once; more get `503`.
    pub slots: usize,
    /// Connections served at once by [`Uploader::run`]; more are closed.
    pub max_connections: usize,
    /// Time allowed for each request head (from the end of the previous
    /// answer, or from the connection).
    pub header_timeout: Duration,
    /// Time allowed for each write toward the peer.
    pub write_timeout: Duration,
    /// The `Retry-After` sent with a `503`.
    pub retry_after: Duration,
    /// Requests served on one kept-alive connection.
    pub max_requests: usize,
    /// The `Server` header.
    pub server: String,
    /// Files listed at most by browse host (`GET /`).
    pub max_browse_files: usize,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            slots: 4,
            max_connections: 64,
            header_timeout: Duration::from_secs(20),
            write_timeout: Duration::from_secs(60),
            retry_after: Duration::from_secs(60),
            max_requests: 256,
            server: concat!("rutella/", env!("CARGO_PKG_VERSION")).into(),
            max_browse_files: 10_000,
        }
    }
}

/// Why a connection ended other than by the peer closing it.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// No complete request head within the deadline.
    #[error("no request head within the deadline")]
    HeaderTimeout,
    /// A request that does not parse (answered `400`).
    #[error("bad request: {0}")]
    BadRequest(#[from] HttpError),
    /// A write took longer than the deadline.
    #[error("write deadline passed")]
    WriteTimeout,
    /// The file ended before its announced size.
    #[error("shared file shorter than announced")]
    FileChanged,
    /// The socket or the file failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// How one connection went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// Requests answered.
    pub requests: usize,
    /// Body bytes sent.
    pub bytes: u64,
    /// `503` answers.
    pub busy: usize,
}

/// Serves a [`Library`] with a bounded number of upload slots.
pub struct Uploader<L: Library> {
    library: Arc<L>,
    config: UploadConfig,
    slots: Arc<Semaphore>,
    connections: Arc<Semaphore>,
    trees: Arc<std::sync::Mutex<std::collections::VecDeque<Arc<HashTree>>>>,
}

impl<L: Library> Clone for Uploader<L> {
    fn clone(&self) -> Self {
        Uploader {
            library: self.library.clone(),
            config: self.config.clone(),
            slots: self.slots.clone(),
            connections: self.connections.clone(),
            trees: self.trees.clone(),
        }
    }
}

/// A head parser of [`http`].
pub(crate) type HeadParser<T> = fn(&[u8]) -> Result<Option<(T, usize)>, HttpError>;

/// Reads one head from `s` into `buf` with `parse`: `Ok(None)` when the
/// peer closed before sending a byte of it.
pub(crate) async fn read_head<S, T>(
    s: &mut S,
    buf: &mut Vec<u8>,
    parse: HeadParser<T>,
) -> Result<Option<(T, usize)>, HeadError>
where
    S: AsyncRead + Unpin,
{
    loop {
        if !buf.is_empty() {
            if let Some(done) = parse(buf)? {
                return Ok(Some(done));
            }
        }
        let mut chunk = [0u8; 2048];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(HeadError::Closed)
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Why a head could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeadError {
    #[error("{0}")]
    Http(#[from] HttpError),
    #[error("closed in the middle of a head")]
    Closed,
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl<L: Library> Uploader<L> {
    /// An uploader of `library`.
    pub fn new(library: Arc<L>, config: UploadConfig) -> Self {
        let slots = Arc::new(Semaphore::new(config.slots));
        let connections = Arc::new(Semaphore::new(config.max_connections));
        Uploader {
            library,
            config,
            slots,
            connections,
            trees: Arc::default(),
        }
    }

    /// The same uploader (slots, connections, settings shared) serving
    /// another library: e.g. one that knows the address a connection came
    /// in on, for the hits of browse host.
    pub fn with_library(&self, library: Arc<L>) -> Self {
        Uploader {
            library,
            config: self.config.clone(),
            slots: self.slots.clone(),
            connections: self.connections.clone(),
            trees: self.trees.clone(),
        }
    }

    /// Accepts connections and serves each in its own task, at most
    /// [`UploadConfig::max_connections`] at once (more are closed at once).
    /// Returns when accepting fails.
    pub async fn run(self, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, peer) = listener.accept().await?;
            let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                tracing::debug!(%peer, "gnutella upload: too many connections");
                continue;
            };
            let me = self.clone();
            tokio::spawn(async move {
                let r = me.serve(stream).await;
                tracing::debug!(%peer, ?r, "gnutella upload connection ended");
                drop(permit);
            });
        }
    }

    async fn write<S: AsyncWrite + Unpin>(&self, s: &mut S, b: &[u8]) -> Result<(), UploadError> {
        timeout(self.config.write_timeout, s.write_all(b))
            .await
            .map_err(|_| UploadError::WriteTimeout)??;
        Ok(())
    }

    fn head(&self, code: u16, mut headers: Vec<(String, String)>, close: bool) -> Vec<u8> {
        headers.insert(0, ("Server".into(), self.config.server.clone()));
        headers.insert(1, ("X-Features".into(), browse::FEATURE.into()));
        if close {
            headers.push(("Connection".into(), "close".into()));
        }
        Response::new(code, headers).encode()
    }

    /// Serves the requests of one connection (accepted, or opened by us
    /// after a push) until the peer closes it, asks to close, or breaks a
    /// rule.
    pub async fn serve<S>(&self, stream: S) -> Result<Served, UploadError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.serve_after(stream, &[]).await
    }

    /// As [`Uploader::serve`], for a connection whose first bytes
    /// (`already`, at most a few: e.g. those read to tell HTTP from another
    /// protocol) were read by the caller.
    pub async fn serve_after<S>(&self, mut stream: S, already: &[u8]) -> Result<Served, UploadError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut served = Served::default();
        let mut buf = already.to_vec();
        let mut slot = None;
        while served.requests < self.config.max_requests {
            let head = timeout(
                self.config.header_timeout,
                read_head(&mut stream, &mut buf, http::parse_request),
            )
            .await
            .map_err(|_| UploadError::HeaderTimeout)?;
            let (req, used) = match head {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(served),
                Err(HeadError::Http(e)) => {
                    let h = self.head(400, vec![("Content-Length".into(), "0".into())], true);
                    let _ = self.write(&mut stream, &h).await;
                    return Err(UploadError::BadRequest(e));
                }
                Err(HeadError::Closed) => return Ok(served),
                Err(HeadError::Io(e)) => return Err(e.into()),
            };
            buf.drain(..used);
            served.requests += 1;
            let last = !req.keep_alive() || served.requests >= self.config.max_requests;
            match self.answer(&mut stream, &req, last, &mut slot).await? {
                Answer::Sent(n) => served.bytes += n,
                Answer::Busy => {
                    served.busy += 1;
                    return Ok(served);
                }
            }
            if last {
                break;
            }
        }
        let _ = stream.shutdown().await;
        Ok(served)
    }

    async fn answer<S>(
        &self,
        stream: &mut S,
        req: &Request,
        last: bool,
        slot: &mut Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<Answer, UploadError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let found = match &req.target {
            Target::Sha1(h) => self.library.by_sha1(h),
            Target::Index { index, name } => self.library.by_index(*index, name),
            Target::Browse => return self.browse(stream, req, last, slot).await,
            Target::Thex(h) => return self.thex(stream, req, last, slot, h).await,
        };
        let no_body = vec![("Content-Length".to_string(), "0".to_string())];
        // A file that cannot be opened, or whose size on disk is not the
        // one the library gave, is not served.
        let opened = match found {
            Some(f) => match tokio::fs::File::open(&f.path).await {
                Ok(file) => match file.metadata().await {
                    Ok(m) if m.len() == f.size => Some((f, file)),
                    _ => None,
                },
                Err(_) => None,
            },
            None => None,
        };
        let Some((f, mut file)) = opened else {
            self.write(stream, &self.head(404, no_body, last)).await?;
            return Ok(Answer::Sent(0));
        };
        let urn = (
            "X-Gnutella-Content-URN".to_string(),
            Urn::Sha1(f.sha1).to_string(),
        );
        let (start, end, partial) = match req.range() {
            Ok(None) => (0, f.size, false),
            Ok(Some(r)) => match r.resolve(f.size) {
                Some((s, e)) => (s, e, true),
                None => {
                    let h = vec![
                        ("Content-Range".into(), format!("bytes */{}", f.size)),
                        ("Content-Length".into(), "0".into()),
                        urn,
                    ];
                    self.write(stream, &self.head(416, h, last)).await?;
                    return Ok(Answer::Sent(0));
                }
            },
            Err(_) => {
                let h = vec![
                    ("Content-Range".into(), format!("bytes */{}", f.size)),
                    ("Content-Length".into(), "0".into()),
                ];
                self.write(stream, &self.head(416, h, last)).await?;
                return Ok(Answer::Sent(0));
            }
        };
        if !self.take_slot(stream, req, slot).await? {
            return Ok(Answer::Busy);
        }
        let mut headers = vec![
            ("Content-Type".to_string(), "application/binary".to_string()),
            ("Content-Length".to_string(), (end - start).to_string()),
            urn,
        ];
        if partial {
            headers.push((
                "Content-Range".into(),
                format!("bytes {}-{}/{}", start, end - 1, f.size),
            ));
        }
        if !f.alt_locs.is_empty() {
            let alts: Vec<String> = f
                .alt_locs
                .iter()
                .take(http::MAX_ALT_LOCS)
                .map(ToString::to_string)
                .collect();
            headers.push(("X-Alt".into(), alts.join(", ")));
        }
        if let Some(root) = f.tth {
            headers.push(("X-Thex-URI".into(), http::thex_uri_value(&f.sha1, &root)));
        }
        let code = if partial { 206 } else { 200 };
        self.write(stream, &self.head(code, headers, last)).await?;
        if req.method == Method::Head {
            return Ok(Answer::Sent(0));
        }
        file.seek(SeekFrom::Start(start)).await?;
        let mut left = end - start;
        let mut chunk = vec![0u8; 64 * 1024];
        while left > 0 {
            let want = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
            let n = file.read(&mut chunk[..want]).await?;
            if n == 0 {
                return Err(UploadError::FileChanged);
            }
            self.write(stream, &chunk[..n]).await?;
            left -= n as u64;
        }
        Ok(Answer::Sent(end - start))
    }
}

impl<L: Library> Uploader<L> {
    /// Takes an upload slot for a GET, unless the connection holds one;
    /// `false` when none is free (answered `503`).
    async fn take_slot<S>(
        &self,
        stream: &mut S,
        req: &Request,
        slot: &mut Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<bool, UploadError>
    where
        S: AsyncWrite + Unpin,
    {
        if req.method != Method::Get || slot.is_some() {
            return Ok(true);
        }
        match self.slots.clone().try_acquire_owned() {
            Ok(p) => {
                *slot = Some(p);
                Ok(true)
            }
            Err(_) => {
                let h = vec![
                    (
                        "Retry-After".into(),
                        self.config.retry_after.as_secs().to_string(),
                    ),
                    ("Content-Length".into(), "0".into()),
                ];
                self.write(stream, &self.head(503, h, true)).await?;
                Ok(false)
            }
        }
    }

    /// Browse host: every shared file as QueryHit descriptors, deflated
    /// when the client accepts it, with a `Content-Length` (the answer is
    /// built whole, bounded by [`UploadConfig::max_browse_files`]). It
    /// takes an upload slot like a file.
    async fn browse<S>(
        &self,
        stream: &mut S,
        req: &Request,
        last: bool,
        slot: &mut Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<Answer, UploadError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let no_body = vec![("Content-Length".to_string(), "0".to_string())];
        if !browse::wants_packets(req) {
            self.write(stream, &self.head(406, no_body, last)).await?;
            return Ok(Answer::Sent(0));
        }
        let Some((origin, files)) = self.library.browse(self.config.max_browse_files) else {
            self.write(stream, &self.head(404, no_body, last)).await?;
            return Ok(Answer::Sent(0));
        };
        if !self.take_slot(stream, req, slot).await? {
            return Ok(Answer::Busy);
        }
        let mut files = files;
        files.truncate(self.config.max_browse_files);
        let mut body = browse::encode_hits(crate::leaf::new_guid(), &origin, files);
        let mut headers = vec![("Content-Type".to_string(), browse::PACKETS.to_string())];
        if browse::accepts_deflate(req) {
            body = crate::deflate::deflate_all(&body);
            headers.push(("Content-Encoding".into(), "deflate".into()));
        }
        headers.push(("Content-Length".into(), body.len().to_string()));
        self.write(stream, &self.head(200, headers, last)).await?;
        if req.method == Method::Head {
            return Ok(Answer::Sent(0));
        }
        self.write(stream, &body).await?;
        Ok(Answer::Sent(body.len() as u64))
    }
}

impl<L: Library> Uploader<L> {
    /// The tree of `f` (from the library, the cache, or its bytes); `None`
    /// when it has no known root, or its bytes no longer give that root.
    async fn tree_for(&self, f: &SharedFile) -> Option<Arc<HashTree>> {
        let root = f.tth?;
        if let Some(t) = self.library.tree(f) {
            return (t.root() == root && t.size() == f.size).then(|| Arc::new(t));
        }
        let cached = {
            let c = self.trees.lock().unwrap_or_else(|e| e.into_inner());
            c.iter()
                .find(|t| t.root() == root && t.size() == f.size)
                .cloned()
        };
        if cached.is_some() {
            return cached;
        }
        let (path, size) = (f.path.clone(), f.size);
        let t = tokio::task::spawn_blocking(move || {
            tree_of_file(&path, size, tiger::serve_depth(size))
        })
        .await
        .ok()?
        .ok()?;
        if t.root() != root {
            tracing::debug!(path = ?f.path, "shared file no longer has its tiger root; no THEX");
            return None;
        }
        let t = Arc::new(t);
        let mut c = self.trees.lock().unwrap_or_else(|e| e.into_inner());
        if c.len() >= TREE_CACHE {
            c.pop_front();
        }
        c.push_back(t.clone());
        Some(t)
    }

    /// `/uri-res/N2X?`: the THEX serialisation of the file's tree, under
    /// an upload slot like a file.
    async fn thex<S>(
        &self,
        stream: &mut S,
        req: &Request,
        last: bool,
        slot: &mut Option<tokio::sync::OwnedSemaphorePermit>,
        sha1: &[u8; 20],
    ) -> Result<Answer, UploadError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let no_body = vec![("Content-Length".to_string(), "0".to_string())];
        let found = self.library.by_sha1(sha1).filter(|f| f.tth.is_some());
        let Some(f) = found else {
            self.write(stream, &self.head(404, no_body, last)).await?;
            return Ok(Answer::Sent(0));
        };
        if !self.take_slot(stream, req, slot).await? {
            return Ok(Answer::Busy);
        }
        let Some(tree) = self.tree_for(&f).await else {
            self.write(stream, &self.head(404, no_body, last)).await?;
            return Ok(Answer::Sent(0));
        };
        let body = thex::encode_thex(&tree);
        let headers = vec![
            ("Content-Type".to_string(), "application/dime".to_string()),
            ("Content-Length".to_string(), body.len().to_string()),
            (
                "X-Gnutella-Content-URN".to_string(),
                Urn::Sha1(f.sha1).to_string(),
            ),
        ];
        self.write(stream, &self.head(200, headers, last)).await?;
        if req.method == Method::Head {
            return Ok(Answer::Sent(0));
        }
        self.write(stream, &body).await?;
        Ok(Answer::Sent(body.len() as u64))
    }
}

enum Answer {
    Sent(u64),
    Busy,
}
