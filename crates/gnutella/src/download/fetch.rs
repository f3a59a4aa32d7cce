//! The HTTP exchange of a download, shared by the fetch from one servent
//! ([`crate::download`]) and from several ([`crate::multi`]): the request,
//! the reply head with its status, and the body copied where it goes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::download::{DownloadConfig, DownloadError};
use crate::http::{self, ByteRange, Method, Request, Response, Target};
use crate::upload::{read_head, HeadError};

/// Sends `GET target` (with `range`, when given) to the servent `host` on
/// `s` and reads the reply head. A `200` or `206` is returned with the body
/// bytes read along with the head; any other status becomes its error.
pub(crate) async fn request(
    s: &mut TcpStream,
    host: SocketAddr,
    target: &Target,
    range: Option<ByteRange>,
    config: &DownloadConfig,
) -> Result<(Response, Vec<u8>), DownloadError> {
    let mut headers = vec![
        ("Host".to_string(), host.to_string()),
        ("User-Agent".to_string(), config.user_agent.clone()),
    ];
    if let Some(r) = range {
        headers.push(("Range".into(), r.header_value()));
    }
    headers.push(("Connection".into(), "close".into()));
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

/// Copies `len` body bytes to `out`: first those of `early` (read with the
/// head), then from `s`, each read within `read_timeout`. A body cut short
/// is [`DownloadError::Truncated`] (what arrived is written and flushed).
pub(crate) async fn copy_body<W: AsyncWrite + Unpin>(
    s: &mut TcpStream,
    early: &[u8],
    len: u64,
    out: &mut W,
    read_timeout: Duration,
) -> Result<(), DownloadError> {
    let mut left = len;
    let take = usize::try_from(left.min(early.len() as u64)).unwrap_or(early.len());
    out.write_all(&early[..take]).await?;
    left -= take as u64;
    let mut chunk = vec![0u8; 64 * 1024];
    while left > 0 {
        let want = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        let n = timeout(read_timeout, s.read(&mut chunk[..want]))
            .await
            .map_err(|_| DownloadError::Timeout("reading the body"))??;
        if n == 0 {
            out.flush().await?;
            return Err(DownloadError::Truncated);
        }
        out.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    out.flush().await?;
    Ok(())
}
