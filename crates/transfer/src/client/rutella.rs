//! One rutella connection, from the downloading side.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::error::{Broken, DownloadError, SourceError, VerifyError};
use crate::tree::{group_count, Tree};
use crate::wire::{self, Request, RequestKind, ResponseHeader, Status};

/// Largest tree accepted (bytes of group hashes): 2^18 groups and a margin.
const MAX_TREE_BYTES: u64 = 64 << 20;
/// Largest range [`RutellaConn::read_verified`] returns at once.
pub const MAX_VERIFIED_READ: u64 = 64 << 20;

/// An open rutella connection: requests are answered in order on it.
#[derive(Debug)]
pub struct RutellaConn {
    stream: TcpStream,
    peer: SocketAddr,
    idle: Duration,
}

/// A rutella connection handed to a blocking thread, which reads whole
/// ranges without a trip through the reactor per read.
#[derive(Debug)]
pub(crate) struct BlockingConn {
    pub(crate) stream: std::net::TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) idle: Duration,
}

impl BlockingConn {
    fn broken(&self, cause: Broken) -> DownloadError {
        SourceError::Connection {
            peer: self.peer,
            cause,
        }
        .into()
    }

    fn read_exact(&mut self, buf: &mut [u8], during: &'static str) -> Result<(), DownloadError> {
        use std::io::Read;
        match self.stream.read_exact(buf) {
            Ok(()) => Ok(()),
            // read_exact retries interrupted reads itself.
            Err(e) => {
                Err(self.broken(
                    Broken::from_read(e, self.idle, during).unwrap_or(Broken::Io {
                        during,
                        source: std::io::ErrorKind::Interrupted.into(),
                    }),
                ))
            }
        }
    }

    /// Asks for `len` bytes of `hash` from `offset`; the answer is read
    /// later with [`BlockingConn::range_header`], so that requests can be
    /// sent ahead of the answers before them.
    pub(crate) fn request_range(
        &mut self,
        hash: &[u8; 32],
        offset: u64,
        len: u64,
    ) -> Result<(), DownloadError> {
        use std::io::Write;
        let req = Request {
            hash: *hash,
            kind: RequestKind::Range { offset, len },
        };
        self.stream.write_all(&req.encode()).map_err(|source| {
            self.broken(Broken::Io {
                during: "sending a request",
                source,
            })
        })
    }

    /// Reads the header answering a range request of `len` bytes; the
    /// payload follows. Returns the file size the peer states.
    pub(crate) fn range_header(&mut self, len: u64) -> Result<u64, DownloadError> {
        let mut b = [0u8; wire::RESPONSE_LEN];
        self.read_exact(&mut b, "reading a response header")?;
        let h = ResponseHeader::decode(&b).map_err(|e| {
            self.broken(Broken::Protocol(format!("malformed response header: {e}")))
        })?;
        if h.status != Status::Ok {
            // The decoder bounds an error message's length.
            let mut msg = vec![0u8; h.len as usize];
            self.read_exact(&mut msg, "reading an error message")?;
            return Err(refusal(self.peer, h.status, &msg));
        }
        if h.len != len {
            return Err(self.broken(Broken::Protocol(format!(
                "answered {} bytes for a {len}-byte range",
                h.len
            ))));
        }
        Ok(h.size)
    }
}

fn refusal(peer: SocketAddr, status: Status, msg: &[u8]) -> DownloadError {
    SourceError::Refusal {
        peer,
        status,
        message: String::from_utf8_lossy(msg).into_owned(),
    }
    .into()
}

impl RutellaConn {
    /// Connects and exchanges hellos.
    pub async fn connect(
        peer: SocketAddr,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Result<RutellaConn, DownloadError> {
        Self::connect_with(None, peer, connect_timeout, idle_timeout).await
    }

    /// [`RutellaConn::connect`], getting the connection through `dialer`
    /// when there is one.
    pub async fn connect_with(
        dialer: Option<&crate::dial::SharedDialer>,
        peer: SocketAddr,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Result<RutellaConn, DownloadError> {
        let mut stream = crate::dial::dial(dialer, peer, connect_timeout).await?;
        let not_rutella =
            |reason: Broken| DownloadError::from(SourceError::NotRutella { peer, reason });
        let stalled = |during| Broken::Stalled {
            idle: idle_timeout,
            during,
        };
        match timeout(
            idle_timeout,
            stream.write_all(&wire::encode_hello(wire::VERSION)),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                let during = "sending the hello";
                return Err(not_rutella(Broken::Io { during, source }));
            }
            Err(_) => return Err(not_rutella(stalled("sending the hello"))),
        }
        let mut hello = [0u8; wire::HELLO_LEN];
        let during = "waiting for the hello";
        match timeout(idle_timeout, stream.read_exact(&mut hello)).await {
            Err(_) => return Err(not_rutella(stalled(during))),
            Ok(Err(e)) => {
                let cause =
                    Broken::from_read(e, idle_timeout, during).unwrap_or(Broken::Closed { during });
                return Err(not_rutella(cause));
            }
            Ok(Ok(_)) => {}
        }
        match wire::decode_hello(&hello) {
            Ok(v) if v >= 1 => Ok(RutellaConn {
                stream,
                peer,
                idle: idle_timeout,
            }),
            Ok(v) => Err(not_rutella(Broken::Protocol(format!("version {v}")))),
            Err(e) => Err(not_rutella(Broken::Protocol(e.to_string()))),
        }
    }

    /// The peer at the other end.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Hands the socket to a blocking loop: blocking mode, with the idle
    /// timeout as its read timeout. Must run inside the runtime.
    pub(crate) fn into_blocking(self) -> Result<BlockingConn, DownloadError> {
        let (peer, idle) = (self.peer, self.idle);
        self.stream
            .into_std()
            .and_then(|s| {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(idle))?;
                s.set_write_timeout(Some(idle))?;
                Ok(s)
            })
            .map(|stream| BlockingConn { stream, peer, idle })
            .map_err(|source| {
                let cause = Broken::Io {
                    during: "setting up the socket",
                    source,
                };
                SourceError::Connection { peer, cause }.into()
            })
    }

    fn broken(&self, cause: Broken) -> DownloadError {
        SourceError::Connection {
            peer: self.peer,
            cause,
        }
        .into()
    }

    fn stalled(&self, during: &'static str) -> DownloadError {
        self.broken(Broken::Stalled {
            idle: self.idle,
            during,
        })
    }

    async fn read_exact(
        &mut self,
        buf: &mut [u8],
        during: &'static str,
    ) -> Result<(), DownloadError> {
        match timeout(self.idle, self.stream.read_exact(buf)).await {
            Err(_) => Err(self.stalled(during)),
            Ok(Err(e)) => Err(self.broken(
                Broken::from_read(e, self.idle, during).unwrap_or(Broken::Closed { during }),
            )),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// Reads some bytes of a payload (at least one), within the idle timeout.
    pub async fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, DownloadError> {
        let during = "receiving data";
        loop {
            match timeout(self.idle, self.stream.read(buf)).await {
                Err(_) => return Err(self.stalled(during)),
                Ok(Err(e)) => match Broken::from_read(e, self.idle, during) {
                    Some(cause) => return Err(self.broken(cause)),
                    None => continue,
                },
                Ok(Ok(0)) => return Err(self.broken(Broken::Closed { during })),
                Ok(Ok(n)) => return Ok(n),
            }
        }
    }

    async fn send(&mut self, req: Request) -> Result<(), DownloadError> {
        let during = "sending a request";
        match timeout(self.idle, self.stream.write_all(&req.encode())).await {
            Err(_) => Err(self.stalled(during)),
            Ok(Err(source)) => Err(self.broken(Broken::Io { during, source })),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Reads a response header; an error status becomes
    /// [`SourceError::Refusal`] with the peer's message.
    async fn header(&mut self) -> Result<ResponseHeader, DownloadError> {
        let mut b = [0u8; wire::RESPONSE_LEN];
        self.read_exact(&mut b, "reading a response header").await?;
        let h = ResponseHeader::decode(&b).map_err(|e| {
            self.broken(Broken::Protocol(format!("malformed response header: {e}")))
        })?;
        if h.status != Status::Ok {
            // The decoder bounds an error message's length.
            let mut msg = vec![0u8; h.len as usize];
            self.read_exact(&mut msg, "reading an error message")
                .await?;
            return Err(refusal(self.peer, h.status, &msg));
        }
        Ok(h)
    }

    /// Asks for the tree of `hash` and checks it against the hash.
    ///
    /// The size it states is confirmed only once the last group verifies:
    /// see [`Tree::from_groups`]; [`RutellaConn::confirmed_tree`] does both.
    pub async fn tree(&mut self, hash: &[u8; 32]) -> Result<Tree, DownloadError> {
        self.send(Request {
            hash: *hash,
            kind: RequestKind::Tree,
        })
        .await?;
        let h = self.header().await?;
        let peer = self.peer;
        let bad = |reason: String| DownloadError::from(VerifyError::BadTree { peer, reason });
        if !(wire::MIN_GROUP_LOG..=wire::MAX_GROUP_LOG).contains(&h.group_log) {
            return Err(bad(format!("group size 2^{}", h.group_log)));
        }
        let want = group_count(h.size, h.group_log).saturating_mul(32);
        if h.len != want || h.len > MAX_TREE_BYTES {
            return Err(bad(format!(
                "{} bytes of hashes for a file of {} bytes",
                h.len, h.size
            )));
        }
        let mut payload = vec![0u8; h.len as usize];
        self.read_exact(&mut payload, "reading a tree").await?;
        Tree::decode(*hash, h.size, h.group_log, &payload).map_err(|e| bad(e.to_string()))
    }

    /// The tree of `hash` with its size confirmed by the last group, which
    /// is returned too (empty for an empty file).
    pub async fn confirmed_tree(
        &mut self,
        hash: &[u8; 32],
    ) -> Result<(Tree, Vec<u8>), DownloadError> {
        let tree = self.tree(hash).await?;
        if tree.groups() == 0 {
            return Ok((tree, Vec::new()));
        }
        let r = tree.group_range(tree.groups() - 1);
        let last = self.read_verified(&tree, r.start, r.end - r.start).await?;
        Ok((tree, last))
    }

    /// Sends a range request and reads its header; the caller then reads
    /// exactly `len` bytes with [`RutellaConn::read_some`]. Returns the file
    /// size the peer states.
    pub async fn request_range(
        &mut self,
        hash: &[u8; 32],
        offset: u64,
        len: u64,
    ) -> Result<u64, DownloadError> {
        self.send(Request {
            hash: *hash,
            kind: RequestKind::Range { offset, len },
        })
        .await?;
        let h = self.header().await?;
        if h.len != len {
            return Err(self.broken(Broken::Protocol(format!(
                "answered {} bytes for a {len}-byte range",
                h.len
            ))));
        }
        Ok(h.size)
    }

    /// Fetches `offset .. offset + len` of the file `tree` describes,
    /// verifying every group it touches, and returns exactly those bytes.
    /// At most [`MAX_VERIFIED_READ`] bytes at once.
    pub async fn read_verified(
        &mut self,
        tree: &Tree,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, DownloadError> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= tree.size())
            .ok_or_else(|| {
                self.broken(Broken::Protocol(format!(
                    "range {offset}+{len} is past the end of the file"
                )))
            })?;
        if len > MAX_VERIFIED_READ {
            return Err(self.broken(Broken::Protocol(format!(
                "range of {len} bytes is larger than {MAX_VERIFIED_READ}"
            ))));
        }
        if len == 0 {
            return Ok(Vec::new());
        }
        let gl = tree.group_log();
        let first = offset >> gl;
        let last = (end - 1) >> gl;
        let start = tree.group_range(first).start;
        let stop = tree.group_range(last).end;
        let size = self.request_range(tree.hash(), start, stop - start).await?;
        if size != tree.size() {
            return Err(VerifyError::BadData {
                peer: self.peer,
                offset: start,
            }
            .into());
        }
        let mut buf = vec![0u8; (stop - start) as usize];
        let mut filled = 0;
        while filled < buf.len() {
            filled += self.read_some(&mut buf[filled..]).await?;
        }
        for i in first..=last {
            let r = tree.group_range(i);
            let slice = &buf[(r.start - start) as usize..(r.end - start) as usize];
            if !tree.verify_group(i, slice) {
                return Err(VerifyError::BadData {
                    peer: self.peer,
                    offset: r.start,
                }
                .into());
            }
        }
        Ok(buf[(offset - start) as usize..(end - start) as usize].to_vec())
    }
}
