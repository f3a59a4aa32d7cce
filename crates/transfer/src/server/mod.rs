//! The serving side: the accept loop ([`run_server`]) with its limits,
//! and one accepted connection at a time ([`serve_connection`]), which
//! hands the request to the classic or the rutella server.

mod classic;
mod config;
pub(crate) mod guard;
mod rutella;
mod send;
mod timed;

pub use config::{
    Fault, HttpHook, Protocol, PushedConn, RelayHook, SendError, ServeError, ServeOutcome,
    ServeReport, ServerConfig, UploadEvent, UploadMeter, UploadNotice,
};

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{timeout, Instant};

use crate::{wire, FileSource};
use classic::{answer_classic, read_classic_name};
use guard::{source_of, Conns, FloodLog, Refusal, Slot, Slots};
use timed::{read_exact_by, write_all_timed};

/// Serves one accepted connection: reads the request (classic, or rutella
/// when it starts with the rutella magic), answers it and closes.
///
/// Never panics on what the peer sends; every wait is bounded by
/// `cfg.limits.header_timeout` (for the request),
/// `cfg.limits.session_idle_timeout` (between rutella requests) or
/// `cfg.send_timeout` (for each write of the upload). No slot or per-source
/// cap applies here; [`run_server`] adds them.
pub async fn serve_connection(
    mut stream: TcpStream,
    source: Arc<dyn FileSource>,
    cfg: Arc<ServerConfig>,
) -> Result<ServeReport, ServeError> {
    // A dual-stack listener reports IPv4 peers IPv4-mapped: shown as IPv4.
    let peer = stream
        .peer_addr()
        .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()))
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let deadline = Instant::now() + cfg.limits.header_timeout;
    match detect_protocol(&mut stream, peer, deadline, &cfg).await? {
        Detected::Classic { partial, already } => {
            let name = read_classic_name(&mut stream, peer, &already, deadline, &cfg).await?;
            answer_classic(stream, peer, partial, name, &source, &cfg).await
        }
        Detected::Rutella => rutella::serve(stream, peer, source, cfg).await,
        Detected::Relay => Ok(hand_to_relay(stream, peer, &cfg).await),
        Detected::Pushed(token) => hand_pushed(stream, peer, token, &cfg),
        Detected::Http(prefix) => Ok(hand_to_http(stream, peer, prefix, &cfg).await),
    }
}

/// Gives a connection that started with an HTTP request to the HTTP hook.
async fn hand_to_http(
    stream: TcpStream,
    peer: SocketAddr,
    prefix: Vec<u8>,
    cfg: &ServerConfig,
) -> ServeReport {
    let bytes_sent = match &cfg.http {
        Some(hook) => (hook.0)(stream, peer, prefix).await,
        None => 0,
    };
    ServeReport {
        peer,
        protocol: Protocol::Http,
        request: String::new(),
        offset: 0,
        bytes_sent,
        outcome: ServeOutcome::Http,
    }
}

/// Gives a connection that introduced a relay circuit to the relay, or
/// closes it when this server has none.
async fn hand_to_relay(stream: TcpStream, peer: SocketAddr, cfg: &ServerConfig) -> ServeReport {
    match &cfg.relay {
        Some(hook) => (hook.0)(stream, peer).await,
        None => tracing::debug!(%peer, "relay introduction on a server without a relay; closed"),
    }
    ServeReport {
        peer,
        protocol: Protocol::Relay,
        request: String::new(),
        offset: 0,
        bytes_sent: 0,
        outcome: ServeOutcome::Relayed,
    }
}

/// Gives a pushed connection to whoever waits for pushed connections.
fn hand_pushed(
    stream: TcpStream,
    peer: SocketAddr,
    token: u64,
    cfg: &ServerConfig,
) -> Result<ServeReport, ServeError> {
    let Some(tx) = &cfg.pushed else {
        return Err(ServeError::BadRequest {
            peer,
            reason: "a pushed connection, and no download waits for one".into(),
        });
    };
    if let Err(e) = tx.try_send(PushedConn {
        token,
        stream,
        peer,
    }) {
        let _ = e.into_inner().stream.set_zero_linger();
        return Err(ServeError::BadRequest {
            peer,
            reason: "a pushed connection, and the queue of them is full".into(),
        });
    }
    Ok(ServeReport {
        peer,
        protocol: Protocol::Rutella,
        request: String::new(),
        offset: 0,
        bytes_sent: 0,
        outcome: ServeOutcome::Pushed,
    })
}

/// What the first bytes of a connection said.
pub(crate) enum Detected {
    /// A classic request; `already` holds name bytes read while deciding.
    Classic { partial: u32, already: Vec<u8> },
    /// The rutella hello (fully read).
    Rutella,
    /// A relay introduction's first 8 bytes (fully read).
    Relay,
    /// A pushed connection's introduction (fully read), with its token.
    Pushed(u64),
    /// The first bytes of an HTTP request (its whole request line, and
    /// whatever came with it) or of a Gnutella `GIV` (its first line).
    Http(Vec<u8>),
}

/// Reads just enough to tell the exchanges apart (4, 5 or 8 bytes).
pub(crate) async fn detect_protocol(
    stream: &mut TcpStream,
    peer: SocketAddr,
    deadline: Instant,
    cfg: &ServerConfig,
) -> Result<Detected, ServeError> {
    let mut head = [0u8; wire::HELLO_LEN];
    read_exact_by(stream, &mut head[..4], peer, deadline, cfg).await?;
    let partial = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if cfg.http.is_some() && matches!(&head[..4], b"GET " | b"HEAD" | b"GIV ") {
        return detect_http_line(stream, peer, head, deadline).await;
    }
    if wire::detect(&head[..4]) == wire::Detect::Classic {
        return Ok(Detected::Classic {
            partial,
            already: Vec::new(),
        });
    }
    read_exact_by(stream, &mut head[4..5], peer, deadline, cfg).await?;
    if wire::detect(&head[..5]) == wire::Detect::Classic {
        return Ok(Detected::Classic {
            partial,
            already: vec![head[4]],
        });
    }
    read_exact_by(stream, &mut head[5..], peer, deadline, cfg).await?;
    if head == wire::RELAY_INTRO {
        return Ok(Detected::Relay);
    }
    if wire::detect(&head) == wire::Detect::Pushed {
        let mut intro = [0u8; wire::PUSH_INTRO_LEN];
        intro[..wire::HELLO_LEN].copy_from_slice(&head);
        read_exact_by(stream, &mut intro[wire::HELLO_LEN..], peer, deadline, cfg).await?;
        return match wire::decode_push_intro(&intro) {
            Ok(token) => Ok(Detected::Pushed(token)),
            Err(e) => Err(ServeError::BadRequest {
                peer,
                reason: format!("malformed pushed introduction: {e}"),
            }),
        };
    }
    match wire::decode_hello(&head) {
        Ok(_version) => Ok(Detected::Rutella),
        Err(e) => {
            tracing::warn!(%peer, error = %e, "malformed rutella hello; closing");
            let msg = format!("malformed hello: {e}");
            let _ = rutella::reply_error(stream, wire::Status::BadRequest, &msg, cfg.send_timeout)
                .await;
            Err(ServeError::BadRequest { peer, reason: msg })
        }
    }
}

/// After 4 bytes that spell `GET ` or `HEAD`: reads on until the request
/// line tells HTTP from a classic request whose partial size spells them
/// ([`wire::detect_http`]). A classic client sends its name and waits, so
/// a name that reads as the start of a request line (it starts with `/`)
/// is taken for classic when no more bytes come by `deadline`, or when the
/// peer closes.
async fn detect_http_line(
    stream: &mut TcpStream,
    peer: SocketAddr,
    head: [u8; wire::HELLO_LEN],
    deadline: Instant,
) -> Result<Detected, ServeError> {
    let partial = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let mut buf = head[..4].to_vec();
    let mut chunk = [0u8; 1024];
    loop {
        match wire::detect_http(&buf) {
            wire::HttpDetect::Http => return Ok(Detected::Http(buf)),
            wire::HttpDetect::Classic => break,
            wire::HttpDetect::NeedMore => {}
        }
        // detect_http decides within HTTP_LINE_MAX bytes; the cap keeps
        // the classic name within what the classic server reads.
        let room = (wire::HTTP_LINE_MAX + 8)
            .saturating_sub(buf.len())
            .min(chunk.len());
        if room == 0 {
            break;
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk[..room])).await {
            Err(_) | Ok(Ok(0)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => {
                return Err(ServeError::Io {
                    peer,
                    during: "reading the request",
                    source: e,
                })
            }
        }
    }
    Ok(Detected::Classic {
        partial,
        already: buf.split_off(4),
    })
}

/// Accepts connections on `listener` and serves each in its own task until
/// `shutdown` resolves.
///
/// A connection is counted against `cfg.limits` caps (in all and per
/// source address) from the moment it is accepted, and closed at once
/// beyond them. It has `cfg.limits.header_timeout` to send its request
/// header and holds no upload slot until then. At most
/// `cfg.max_connections` requests are served at once, and at most
/// `cfg.limits.max_slots_per_ip` for one address: a classic request waits
/// for a slot in a bounded queue in which each address has few places; a
/// rutella peer is told the server is busy. On shutdown the listener stops
/// accepting, uploads in flight get `cfg.shutdown_grace` to finish, and the
/// rest are cut.
pub async fn run_server(
    listener: TcpListener,
    source: Arc<dyn FileSource>,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    // Nothing is ever sent on it: only accepted connections are served.
    let (_none, outgoing) = tokio::sync::mpsc::channel(1);
    run_server_with(listener, source, cfg, shutdown, outgoing).await
}

/// [`run_server`], also serving the connections that arrive on
/// `outgoing`: connections this node opened itself because a downloader
/// asked it to (a push), served exactly as accepted ones, under the same
/// caps, slots and deadlines.
pub async fn run_server_with(
    listener: TcpListener,
    source: Arc<dyn FileSource>,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()>,
    mut outgoing: tokio::sync::mpsc::Receiver<TcpStream>,
) -> io::Result<()> {
    let cfg = Arc::new(cfg);
    let mut outgoing_open = true;
    let conns = Conns::new(&cfg.limits);
    let slots = match &cfg.slots {
        Some(s) => s.slots(),
        None => Slots::new(cfg.max_connections, &cfg.limits),
    };
    let flood = Arc::new(FloodLog::new(cfg.limits.flood_log_interval));
    let mut tick =
        tokio::time::interval(cfg.limits.flood_log_interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    let local = listener.local_addr()?;
    tracing::info!(%local, "transfer server listening");
    loop {
        while tasks.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {
                flood.tick();
                continue;
            }
            opened = outgoing.recv(), if outgoing_open => match opened {
                Some(stream) => match stream.peer_addr() {
                    Ok(peer) => (stream, peer),
                    Err(_) => continue,
                },
                None => {
                    outgoing_open = false;
                    continue;
                }
            },
            accepted = listener.accept() => match accepted {
                // A dual-stack listener reports IPv4 peers IPv4-mapped.
                Ok((s, a)) => (s, SocketAddr::new(a.ip().to_canonical(), a.port())),
                Err(e) => {
                    // Out of file descriptors and the like: back off a little.
                    tracing::warn!(%local, error = %e, "accept failed; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let ip = source_of(peer.ip());
        let counted = match conns.open(ip) {
            Ok(g) => g,
            Err(why) => {
                // A reset rather than an orderly close: nothing of it
                // lingers here.
                let _ = stream.set_zero_linger();
                drop(stream);
                flood.note(ip, why);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let source = Arc::clone(&source);
        let cfg2 = Arc::clone(&cfg);
        let slots = Arc::clone(&slots);
        let flood = Arc::clone(&flood);
        tasks.spawn(async move {
            let _counted = counted;
            let r = serve_guarded(stream, peer, source, cfg2, slots, &flood).await;
            // Refusals and peers that held a connection without using it
            // are counted for the rate-limited log, not logged one by one.
            match &r {
                Err(ServeError::Refused { .. }) => {}
                Err(ServeError::RequestTimeout { .. }) => flood.note(ip, Refusal::HeaderTimeout),
                // An idle session is common (a downloader with nothing
                // left to ask); one asking cheap questions is not.
                Err(ServeError::SessionIdle { requests, .. }) if *requests > 0 => {
                    flood.note(ip, Refusal::SessionIdle)
                }
                _ => {}
            }
            log_result(r);
        });
    }
    drop(listener);
    let in_flight = tasks.len();
    if in_flight > 0 {
        tracing::info!(in_flight, grace = ?cfg.shutdown_grace, "transfer server stopping; waiting for uploads");
        let _ = timeout(cfg.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    flood.tick();
    tracing::info!(%local, "transfer server stopped");
    Ok(())
}

/// One accepted connection under the server's limits: the request header
/// is read without a slot; then a classic request waits for one (bounded),
/// a rutella peer gets one at once or is told the server is busy.
async fn serve_guarded(
    mut stream: TcpStream,
    peer: SocketAddr,
    source: Arc<dyn FileSource>,
    cfg: Arc<ServerConfig>,
    slots: Arc<Slots>,
    flood: &FloodLog,
) -> Result<ServeReport, ServeError> {
    let ip = source_of(peer.ip());
    let deadline = Instant::now() + cfg.limits.header_timeout;
    match detect_protocol(&mut stream, peer, deadline, &cfg).await? {
        Detected::Relay => Ok(hand_to_relay(stream, peer, &cfg).await),
        Detected::Rutella => match slots.try_take(ip) {
            Ok(slot) => rutella::serve_with(stream, peer, source, cfg, slot).await,
            Err(why) => {
                flood.note(ip, why);
                reply_busy(stream, peer, &cfg, &slots, why).await
            }
        },
        Detected::Pushed(token) => hand_pushed(stream, peer, token, &cfg),
        // An HTTP connection holds one of the same upload slots while it
        // lasts; without one it is closed (its servent tries again later).
        Detected::Http(prefix) => match slots.try_take(ip) {
            Ok(_slot) => Ok(hand_to_http(stream, peer, prefix, &cfg).await),
            Err(why) => {
                flood.note(ip, why);
                let _ = stream.set_zero_linger();
                Err(ServeError::Refused {
                    peer,
                    reason: why.reason(),
                })
            }
        },
        Detected::Classic { partial, already } => {
            let name = read_classic_name(&mut stream, peer, &already, deadline, &cfg).await?;
            let wait_until = Instant::now() + cfg.limits.queue_timeout;
            let _slot: Slot = match slots.take(ip, wait_until).await {
                Ok(s) => s,
                Err(why) => {
                    flood.note(ip, why);
                    // The classic exchange cannot say "busy": close.
                    let _ = stream.set_zero_linger();
                    return Err(ServeError::Refused {
                        peer,
                        reason: why.reason(),
                    });
                }
            };
            answer_classic(stream, peer, partial, name, &source, &cfg).await
        }
    }
}

/// Tells a rutella peer (whose hello was read) that no slot is free.
async fn reply_busy(
    mut stream: TcpStream,
    peer: SocketAddr,
    cfg: &ServerConfig,
    slots: &Slots,
    why: Refusal,
) -> Result<ServeReport, ServeError> {
    let _ = write_all_timed(
        &mut stream,
        &wire::encode_hello(wire::VERSION),
        cfg.send_timeout,
    )
    .await;
    let msg = match why {
        Refusal::SlotsPerSource => format!(
            "your address already holds {} upload slots; try again shortly",
            cfg.limits.max_slots_per_ip
        ),
        _ => format!(
            "all {} upload slots are taken; try again shortly",
            slots.total()
        ),
    };
    rutella::reply_error(&mut stream, wire::Status::Busy, &msg, cfg.send_timeout)
        .await
        .map_err(|e| ServeError::Io {
            peer,
            during: "replying busy",
            source: e,
        })?;
    let _ = timeout(cfg.send_timeout, stream.shutdown()).await;
    tracing::debug!(%peer, "told a rutella peer the server is busy");
    Ok(ServeReport {
        peer,
        protocol: Protocol::Rutella,
        request: String::new(),
        offset: 0,
        bytes_sent: 0,
        outcome: ServeOutcome::Busy,
    })
}

fn log_result(r: Result<ServeReport, ServeError>) {
    match r {
        Ok(report) => tracing::debug!(?report, "connection served"),
        Err(
            e @ (ServeError::Refused { .. }
            | ServeError::RequestTimeout { .. }
            | ServeError::SessionIdle { .. }),
        ) => tracing::debug!("{e}"),
        Err(e) => tracing::warn!("{e}"),
    }
}
