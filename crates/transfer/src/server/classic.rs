//! The classic server: reads a classic request and sends the file.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};

use super::config::{Protocol, ServeError, ServeOutcome, ServeReport, ServerConfig, UploadEvent};
use super::send::send_range;
use super::timed::{lookup, not_opened, write_all_timed, Wanted};
use crate::wire;
use crate::FileSource;

/// Longest classic file name read, as the classic server reads it.
pub(crate) const CLASSIC_NAME_MAX: usize = 4096;

/// Reads the classic name (after the 4-byte partial size) by `deadline`.
/// `already` holds name bytes read while telling the protocols apart.
pub(super) async fn read_classic_name(
    stream: &mut TcpStream,
    peer: SocketAddr,
    already: &[u8],
    deadline: Instant,
    cfg: &ServerConfig,
) -> Result<Vec<u8>, ServeError> {
    let mut name = vec![0u8; CLASSIC_NAME_MAX];
    let mut n = already.len().min(CLASSIC_NAME_MAX);
    name[..n].copy_from_slice(&already[..n]);
    if n == 0 {
        // One read, as the classic server does; it waits for the name to
        // arrive (bounded by the request deadline).
        n = match timeout_at(deadline, stream.read(&mut name)).await {
            Err(_) => {
                return Err(ServeError::RequestTimeout {
                    peer,
                    after: cfg.limits.header_timeout,
                })
            }
            Ok(Err(e)) => {
                return Err(ServeError::Io {
                    peer,
                    during: "reading the file name",
                    source: e,
                })
            }
            Ok(Ok(n)) => n,
        };
    }
    // Whatever else of the name is already here is taken too: a classic
    // client sends nothing after the name, so this only helps a name that
    // was split across segments.
    while n > 0 && n < CLASSIC_NAME_MAX {
        match stream.try_read(&mut name[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    name.truncate(n);
    Ok(name)
}

/// Answers a classic request that was read in full.
pub(super) async fn answer_classic(
    mut stream: TcpStream,
    peer: SocketAddr,
    partial: u32,
    name: Vec<u8>,
    source: &Arc<dyn FileSource>,
    cfg: &ServerConfig,
) -> Result<ServeReport, ServeError> {
    let name = &name[..];
    let request = String::from_utf8_lossy(name).into_owned();
    let mut report = ServeReport {
        peer,
        protocol: Protocol::Classic,
        request: request.clone(),
        offset: u64::from(partial),
        bytes_sent: 0,
        outcome: ServeOutcome::NotFound,
    };
    let reply_zero = |mut stream: TcpStream, report: ServeReport| async move {
        write_all_timed(&mut stream, &0u32.to_le_bytes(), cfg.send_timeout)
            .await
            .map_err(|e| ServeError::Io {
                peer,
                during: "replying 0 (nothing to send)",
                source: e,
            })?;
        let _ = stream.shutdown().await;
        Ok(report)
    };
    // The name came from the network: it is logged quoted and escaped
    // (`?`), never raw, so that control characters in it cannot forge log
    // lines or reach a terminal.
    let name = match wire::decode_classic_name(name) {
        Ok(name) => name,
        Err(wire::ClassicNameError::Empty) => {
            tracing::warn!(%peer, "classic request without a file name; replied 0");
            report.outcome = ServeOutcome::InvalidName;
            return reply_zero(stream, report).await;
        }
        Err(_) => {
            tracing::warn!(%peer, name = ?request, "classic request with a file name that is not UTF-8; replied 0");
            report.outcome = ServeOutcome::InvalidName;
            return reply_zero(stream, report).await;
        }
    };
    let Some(found) = lookup(source, Wanted::Name(name.to_owned()), true).await else {
        tracing::info!(%peer, name, "classic request for a file not shared here; replied 0");
        return reply_zero(stream, report).await;
    };
    let file = found.file;
    let opened = match found.opened.unwrap_or_else(not_opened) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(%peer, name, path = %file.path.display(), error = %e,
                "cannot open a shared file; replied 0");
            return reply_zero(stream, report).await;
        }
    };
    let (std_file, size) = opened;
    if size > u64::from(u32::MAX) {
        tracing::warn!(%peer, name, size,
            "file of 4 GiB or more cannot be offered on the classic exchange; replied 0");
        report.outcome = ServeOutcome::TooLargeForClassic;
        return reply_zero(stream, report).await;
    }
    let offset = u64::from(partial);
    if offset > size {
        tracing::info!(%peer, name, size, offset, "classic resume past the end of the file; replied 0");
        report.outcome = ServeOutcome::OffsetPastEnd;
        return reply_zero(stream, report).await;
    }
    let len = size - offset;
    // size <= u32::MAX, so len fits.
    let count = u32::try_from(len).unwrap_or(0);
    write_all_timed(&mut stream, &count.to_le_bytes(), cfg.send_timeout)
        .await
        .map_err(|e| ServeError::Io {
            peer,
            during: "sending the byte count",
            source: e,
        })?;
    tracing::debug!(%peer, name, offset, len, "classic upload starts");
    let meter = super::config::UploadMeter::default();
    cfg.notify(peer, &file.path, UploadEvent::Started, &meter);
    let sent = send_range(&mut stream, std_file, offset, len, cfg, &meter).await;
    let bytes = match &sent {
        Ok(n) => *n,
        Err((n, _)) => *n,
    };
    cfg.notify(peer, &file.path, UploadEvent::Ended { bytes }, &meter);
    match sent {
        Ok(sent) => {
            report.bytes_sent = sent;
            report.outcome = ServeOutcome::Sent;
            let _ = timeout(cfg.send_timeout, stream.shutdown()).await;
            tracing::info!(%peer, name, offset, bytes = sent, "classic upload complete");
            Ok(report)
        }
        Err((sent, e)) => Err(ServeError::Upload {
            peer,
            request,
            sent,
            len,
            source: e,
        }),
    }
}
