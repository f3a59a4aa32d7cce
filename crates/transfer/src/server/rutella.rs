//! The serving side of the rutella protocol (after the hello was read).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};

use super::config::{Protocol, ServeError, ServeOutcome, ServeReport, ServerConfig, UploadEvent};
use super::guard::Slot;
use super::send::send_range;
use super::timed::{lookup, not_opened, read_exact_by, write_all_timed, Wanted};
use crate::hex::hex;
use crate::tree_cache::TreeLookupError;
use crate::wire::{self, Request, RequestKind, ResponseHeader, Status};
use crate::FileSource;

/// Sends an error response with a message (cut to the protocol's limit).
pub(crate) async fn reply_error(
    stream: &mut TcpStream,
    status: Status,
    message: &str,
    limit: Duration,
) -> io::Result<()> {
    let mut end = message.len().min(wire::MAX_MESSAGE_LEN as usize);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let msg = &message.as_bytes()[..end];
    let mut out = ResponseHeader::error(status, msg.len() as u64)
        .encode()
        .to_vec();
    out.extend_from_slice(msg);
    write_all_timed(stream, &out, limit).await
}

/// Answers requests until the peer closes, sends something malformed, or
/// takes fewer than `session_min_bytes` of answers within
/// `session_idle_timeout` (so that an idle session, or one that only asks
/// cheap questions now and then, gives its slot back).
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    source: Arc<dyn FileSource>,
    cfg: Arc<ServerConfig>,
) -> Result<ServeReport, ServeError> {
    serve_session(stream, peer, source, cfg).await
}

/// [`serve`] holding an upload slot, which is given back when the session
/// ends.
pub(crate) async fn serve_with(
    stream: TcpStream,
    peer: SocketAddr,
    source: Arc<dyn FileSource>,
    cfg: Arc<ServerConfig>,
    slot: Slot,
) -> Result<ServeReport, ServeError> {
    let r = serve_session(stream, peer, source, cfg).await;
    drop(slot);
    r
}

async fn serve_session(
    mut stream: TcpStream,
    peer: SocketAddr,
    source: Arc<dyn FileSource>,
    cfg: Arc<ServerConfig>,
) -> Result<ServeReport, ServeError> {
    let io_err = |during: &'static str| {
        move |e: io::Error| ServeError::Io {
            peer,
            during,
            source: e,
        }
    };
    write_all_timed(
        &mut stream,
        &wire::encode_hello(wire::VERSION),
        cfg.send_timeout,
    )
    .await
    .map_err(io_err("sending the hello"))?;
    let mut report = ServeReport {
        peer,
        protocol: Protocol::Rutella,
        request: String::new(),
        offset: 0,
        bytes_sent: 0,
        outcome: ServeOutcome::Session { requests: 0 },
    };
    let mut requests = 0u32;
    // The file this session sends, announced once it starts and again
    // when the session ends.
    let mut sending: Option<std::path::PathBuf> = None;
    // Counts the bytes of the file being sent (a new one per file).
    let mut meter = super::config::UploadMeter::default();
    // The session keeps its slot while it takes at least `min` bytes of
    // answers per `idle`: each time it has, the clock starts again.
    let (idle, min) = (
        cfg.limits.session_idle_timeout,
        cfg.limits.session_min_bytes,
    );
    let mut due = Instant::now() + idle;
    // Bytes of answers in all (trees and ranges; error messages do not
    // count), and at the last restart of the clock.
    let mut answered = 0u64;
    let mut base = 0u64;
    // Requests since the last restart of the clock.
    let mut asked = 0u32;
    loop {
        let taken = answered - base;
        if taken >= min {
            due = Instant::now() + idle;
            base = answered;
            asked = 0;
        }
        let mut buf = [0u8; wire::REQUEST_LEN];
        // A clean close between requests ends the session.
        let first = match timeout_at(due, stream.read(&mut buf)).await {
            Err(_) => {
                let _ = timeout(cfg.send_timeout, stream.shutdown()).await;
                let bytes = answered - base;
                tracing::debug!(%peer, requests, bytes, "rutella session idle or too slow; closing");
                return Err(ServeError::SessionIdle {
                    peer,
                    after: idle,
                    requests: asked,
                    bytes,
                    min,
                });
            }
            Ok(Err(e)) => return Err(io_err("reading a request")(e)),
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => n,
        };
        if first < buf.len() {
            // The rest of a request that began must follow promptly.
            let deadline = (Instant::now() + cfg.limits.header_timeout).min(due);
            read_exact_by(&mut stream, &mut buf[first..], peer, deadline, &cfg).await?;
        }
        let req = match Request::decode(&buf) {
            Ok(r) => r,
            Err(e) => {
                let reason = format!("malformed request: {e}");
                let _ =
                    reply_error(&mut stream, Status::BadRequest, &reason, cfg.send_timeout).await;
                tracing::warn!(%peer, %reason, "bad rutella request; closing");
                return Err(ServeError::BadRequest { peer, reason });
            }
        };
        requests += 1;
        asked = asked.saturating_add(1);
        report.request = hex(&req.hash);
        report.outcome = ServeOutcome::Session { requests };
        // A range needs the file open; a tree is read through the cache.
        let open = matches!(req.kind, RequestKind::Range { .. });
        let Some(found) = lookup(&source, Wanted::Hash(req.hash), open).await else {
            tracing::info!(%peer, hash = %report.request, "rutella request for a hash not shared here");
            reply_error(
                &mut stream,
                Status::NotFound,
                "no file with that hash is shared here",
                cfg.send_timeout,
            )
            .await
            .map_err(io_err("replying not found"))?;
            continue;
        };
        let file = found.file;
        match req.kind {
            RequestKind::Tree => {
                let tree = match cfg.trees.get(&req.hash, &file, cfg.hash_threads).await {
                    Ok(t) => t,
                    Err(e) => {
                        let status = match e {
                            TreeLookupError::Changed => Status::NotFound,
                            TreeLookupError::Io(_) => Status::ServerError,
                        };
                        tracing::warn!(%peer, hash = %report.request, path = %file.path.display(), error = %e, "cannot serve the tree");
                        reply_error(&mut stream, status, &e.to_string(), cfg.send_timeout)
                            .await
                            .map_err(io_err("replying an error"))?;
                        continue;
                    }
                };
                let mut out = ResponseHeader {
                    status: Status::Ok,
                    group_log: tree.group_log(),
                    size: tree.size(),
                    len: tree.encoded_len(),
                }
                .encode()
                .to_vec();
                out.extend_from_slice(&tree.encode());
                write_all_timed(&mut stream, &out, cfg.send_timeout)
                    .await
                    .map_err(io_err("sending a tree"))?;
                answered += tree.encoded_len();
            }
            RequestKind::Range { offset, len } => {
                report.offset = offset;
                let (f, size) = match found.opened.unwrap_or_else(not_opened) {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(%peer, path = %file.path.display(), error = %e, "cannot open a shared file");
                        reply_error(
                            &mut stream,
                            Status::ServerError,
                            "the file cannot be read",
                            cfg.send_timeout,
                        )
                        .await
                        .map_err(io_err("replying an error"))?;
                        continue;
                    }
                };
                if offset.checked_add(len).is_none_or(|end| end > size) {
                    let msg = format!("range {offset}+{len} goes past the end ({size} bytes)");
                    reply_error(&mut stream, Status::BadRange, &msg, cfg.send_timeout)
                        .await
                        .map_err(io_err("replying an error"))?;
                    continue;
                }
                let head = ResponseHeader {
                    status: Status::Ok,
                    group_log: 0,
                    size,
                    len,
                };
                write_all_timed(&mut stream, &head.encode(), cfg.send_timeout)
                    .await
                    .map_err(io_err("sending a response header"))?;
                if sending.as_ref() != Some(&file.path) {
                    if let Some(before) = sending.take() {
                        cfg.notify(
                            peer,
                            &before,
                            UploadEvent::Ended {
                                bytes: report.bytes_sent,
                            },
                            &meter,
                        );
                    }
                    meter = super::config::UploadMeter::default();
                    cfg.notify(peer, &file.path, UploadEvent::Started, &meter);
                    sending = Some(file.path.clone());
                }
                match send_range(&mut stream, f, offset, len, &cfg, &meter).await {
                    Ok(n) => {
                        report.bytes_sent += n;
                        answered += n;
                    }
                    Err((sent, e)) => {
                        cfg.notify(
                            peer,
                            &file.path,
                            UploadEvent::Ended {
                                bytes: report.bytes_sent + sent,
                            },
                            &meter,
                        );
                        return Err(ServeError::Upload {
                            peer,
                            request: report.request.clone(),
                            sent,
                            len,
                            source: e,
                        });
                    }
                }
            }
        }
    }
    if let Some(file) = sending {
        cfg.notify(
            peer,
            &file,
            UploadEvent::Ended {
                bytes: report.bytes_sent,
            },
            &meter,
        );
    }
    let _ = timeout(cfg.send_timeout, stream.shutdown()).await;
    tracing::info!(%peer, requests, bytes = report.bytes_sent, "rutella session ended");
    Ok(report)
}
