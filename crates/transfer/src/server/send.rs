//! Sending a byte range of a file over a socket: `sendfile` when allowed,
//! otherwise a buffered copy, paced when a rate limit applies.

use std::io;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

use super::config::{Fault, SendError, ServerConfig, UploadMeter};

/// Sends `len` bytes of `file` from `offset`. Returns the bytes sent, or the
/// bytes sent before the failure with its cause.
pub(crate) async fn send_range(
    stream: &mut TcpStream,
    file: std::fs::File,
    offset: u64,
    len: u64,
    cfg: &ServerConfig,
    meter: &UploadMeter,
) -> Result<u64, (u64, SendError)> {
    if len == 0 {
        return Ok(0);
    }
    #[cfg(target_os = "linux")]
    // A shared limiter without a rate (it may get one later) keeps
    // zero-copy: the send then paces itself whenever the limiter has one.
    if cfg.zero_copy
        && cfg.rate_limit.is_none()
        && cfg.total_limit.as_ref().is_none_or(|l| !l.is_limited())
        && cfg.fault.is_none()
    {
        let limit = cfg.total_limit.as_ref();
        return sendfile_range(stream, &file, offset, len, cfg.send_timeout, limit, meter).await;
    }
    copy_range(stream, file, offset, len, cfg, meter).await
}

/// Buffered copy: a blocking thread reads the file into one of two buffers
/// while the other is written, so disk and socket overlap.
async fn copy_range(
    stream: &mut TcpStream,
    file: std::fs::File,
    offset: u64,
    len: u64,
    cfg: &ServerConfig,
    meter: &UploadMeter,
) -> Result<u64, (u64, SendError)> {
    let mut chunk = cfg.buffer_size.clamp(4096, 8 << 20);
    if let Some(rate) = cfg.rate_limit {
        // Pace in slices of about 1/20 s so the limit holds over short spans.
        let slice = usize::try_from((rate / 20).max(1024)).unwrap_or(usize::MAX);
        chunk = chunk.min(slice);
    }
    if let Some(l) = &cfg.total_limit {
        chunk = chunk.min(l.slice());
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<io::Result<Vec<u8>>>(2);
    let (ret_tx, ret_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(3);
    for _ in 0..3 {
        let _ = ret_tx.send(vec![0u8; chunk]);
    }
    let reader = tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt;
        let mut pos = offset;
        let end = offset + len;
        while pos < end {
            let Ok(mut buf) = ret_rx.recv() else { return };
            let want = usize::try_from((end - pos).min(chunk as u64)).unwrap_or(chunk);
            buf.resize(want, 0);
            let mut filled = 0;
            while filled < want {
                match file.read_at(&mut buf[filled..], pos + filled as u64) {
                    Ok(0) => break,
                    Ok(k) => filled += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
            buf.truncate(filled);
            let short = filled < want;
            pos += filled as u64;
            if tx.blocking_send(Ok(buf)).is_err() || short {
                return;
            }
        }
    });
    let start = Instant::now();
    let mut sent = 0u64;
    let result = loop {
        if sent == len {
            break Ok(sent);
        }
        let buf = match rx.recv().await {
            Some(Ok(b)) => b,
            Some(Err(e)) => break Err((sent, SendError::File(e))),
            None => break Err((sent, SendError::FileShrank)),
        };
        if buf.is_empty() {
            break Err((sent, SendError::FileShrank));
        }
        let mut buf = buf;
        if cfg.fault == Some(Fault::FlipBits) {
            for at in (100..buf.len()).step_by(4096) {
                buf[at] ^= 0x10;
            }
        }
        match timeout(cfg.send_timeout, stream.write_all(&buf)).await {
            Err(_) => break Err((sent, SendError::Stalled(cfg.send_timeout))),
            Ok(Err(e)) => break Err((sent, SendError::Socket(e))),
            Ok(Ok(())) => {}
        }
        sent += buf.len() as u64;
        meter.add(buf.len() as u64);
        if let Some(l) = &cfg.total_limit {
            l.take(buf.len() as u64).await;
        }
        let _ = ret_tx.send(buf);
        if let Some(rate) = cfg.rate_limit {
            let due = start + Duration::from_secs_f64(sent as f64 / rate.max(1) as f64);
            tokio::time::sleep_until(due).await;
        }
    };
    drop(rx);
    drop(ret_tx);
    let _ = reader.await;
    result
}

/// Zero-copy upload with `sendfile(2)` on the non-blocking socket.
#[cfg(target_os = "linux")]
async fn sendfile_range(
    stream: &mut TcpStream,
    file: &std::fs::File,
    offset: u64,
    len: u64,
    stall: Duration,
    limit: Option<&crate::RateLimiter>,
    meter: &UploadMeter,
) -> Result<u64, (u64, SendError)> {
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;

    let sock_fd = stream.as_raw_fd();
    let file_fd = file.as_raw_fd();
    let mut sent = 0u64;
    while sent < len {
        match timeout(stall, stream.writable()).await {
            Err(_) => return Err((sent, SendError::Stalled(stall))),
            Ok(Err(e)) => return Err((sent, SendError::Socket(e))),
            Ok(Ok(())) => {}
        }
        // Linux moves at most 0x7ffff000 bytes per call.
        let mut count = usize::try_from((len - sent).min(0x4000_0000)).unwrap_or(0x4000_0000);
        let paced = limit.filter(|l| l.is_limited());
        if let Some(l) = paced {
            count = count.min(l.slice());
        }
        let pos = offset + sent;
        let r = stream.try_io(Interest::WRITABLE, || {
            let mut off = libc::off_t::try_from(pos)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
            // SAFETY: both descriptors are open for the duration of the call
            // (borrowed from live objects) and `off` is a valid pointer.
            let n = unsafe { libc::sendfile(sock_fd, file_fd, &mut off, count) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match r {
            Ok(0) => return Err((sent, SendError::FileShrank)),
            Ok(n) => {
                sent += n as u64;
                meter.add(n as u64);
                if let Some(l) = paced {
                    l.take(n as u64).await;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Errors on the input side surface here too; EPIPE/ECONNRESET
                // mean the peer left.
                return Err((sent, SendError::Socket(e)));
            }
        }
    }
    let _ = stream.flush().await;
    Ok(sent)
}
