//! Relay circuits over the node's TCP port: the relaying side (takes
//! connections that start with the relay introduction from the transfer
//! server, pairs them by circuit id and splices them within limits), the
//! connecting side ([`connect`]), and a loopback bridge ([`bridge`]) that
//! lets the transfer clients, which connect to an address, run unchanged
//! over a relayed circuit or a punched connection.
//!
//! The decisions (limits, pairing, the wait for the second side, the
//! answers) are `rutella_proto::relay::Admission`'s; the bytes of the
//! introduction and the answer are `rutella_proto::relay`'s pure codecs.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rutella_proto::relay::{
    encode_intro, parse_intro, Admission, Admit, Answer, CircuitId, CircuitLimits, RelayConfig,
    Role, Status, INTRO_LEN, INTRO_MAGIC,
};
use rutella_transfer::RelayHook;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::{timeout, Instant};

/// How long a side has to send the rest of its introduction, and a reply
/// to be written.
const INTRO_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes copied at a time in each direction of a circuit.
const CHUNK: usize = 16 * 1024;

/// The relaying side. Cheap to share: give [`Relay::hook`] to the transfer
/// server.
#[derive(Debug)]
pub struct Relay {
    admission: Mutex<Admission>,
    waiting: Mutex<HashMap<CircuitId, oneshot::Sender<TcpStream>>>,
}

/// How a spliced circuit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitEnd {
    /// Both sides closed.
    Closed,
    /// The byte limit was reached; the relay closed both sides.
    ByteLimit,
    /// The duration limit was reached.
    DurationLimit,
    /// A side's socket failed.
    Error,
}

impl Relay {
    /// A relay with these limits (`enabled: false` refuses every circuit,
    /// saying why).
    pub fn new(cfg: RelayConfig) -> Arc<Relay> {
        Arc::new(Relay {
            admission: Mutex::new(Admission::new(cfg)),
            waiting: Mutex::new(HashMap::new()),
        })
    }

    /// Circuits held now, waiting or spliced.
    pub fn circuits(&self) -> usize {
        self.admission.lock().map(|a| a.circuits()).unwrap_or(0)
    }

    /// The transfer server's hook: connections that introduce a relay
    /// circuit come here.
    pub fn hook(self: &Arc<Self>) -> RelayHook {
        let relay = Arc::clone(self);
        RelayHook(Arc::new(move |stream, peer| {
            let relay = Arc::clone(&relay);
            Box::pin(async move { relay.handle(stream, peer).await })
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Admission> {
        // A panic elsewhere with the lock held leaves the table usable.
        self.admission.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_waiting(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<CircuitId, oneshot::Sender<TcpStream>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One side of a circuit whose first 8 bytes were read.
    pub async fn handle(self: Arc<Self>, mut stream: TcpStream, peer: SocketAddr) {
        let mut intro = [0u8; INTRO_LEN];
        intro[..8].copy_from_slice(&INTRO_MAGIC);
        match timeout(INTRO_TIMEOUT, stream.read_exact(&mut intro[8..])).await {
            Ok(Ok(_)) => {}
            _ => {
                tracing::debug!(%peer, "relay introduction incomplete; closed");
                return;
            }
        }
        let (id, role) = match parse_intro(&intro) {
            Ok(x) => x,
            Err(e) => {
                let ans = Answer {
                    status: Status::BadRequest,
                    reason: format!("malformed introduction: {e}"),
                    limits: None,
                };
                answer(&mut stream, &ans).await;
                return;
            }
        };
        let now = Instant::now().into_std();
        let (tx, mut rx) = oneshot::channel();
        // The decision and the table of waiting sides change together
        // (locks always taken in this order), so that a second side never
        // comes between a first side's admission and its entry.
        let (admit, taken, wait, limits) = {
            let mut adm = self.lock();
            let admit = adm.arrive(now, peer.ip(), id, role);
            let mut waiting = self.lock_waiting();
            let taken = match admit {
                Admit::Wait => {
                    waiting.insert(id, tx);
                    None
                }
                Admit::Splice => waiting.remove(&id),
                Admit::Refuse(_) => None,
            };
            (admit, taken, adm.config().wait_timeout, adm.config().limits)
        };
        match admit {
            Admit::Refuse(ans) => {
                tracing::info!(%peer, reason = %ans.reason, "relay circuit refused");
                answer(&mut stream, &ans).await;
            }
            Admit::Splice => {
                let back = match taken {
                    Some(tx) => tx.send(stream).err(),
                    None => Some(stream),
                };
                if let Some(mut stream) = back {
                    // The first side's task is gone.
                    let ans = {
                        let mut adm = self.lock();
                        adm.close(&id);
                        adm.timed_out()
                    };
                    answer(&mut stream, &ans).await;
                }
            }
            Admit::Wait => {
                let other = match timeout(wait, &mut rx).await {
                    Ok(Ok(s)) => Some(s),
                    _ => {
                        let gave_up = {
                            let mut adm = self.lock();
                            if adm.is_waiting(&id) {
                                adm.close(&id);
                                self.lock_waiting().remove(&id);
                                true
                            } else {
                                false
                            }
                        };
                        // Not waiting any more: the second side took our
                        // entry (under the lock) and is handing its
                        // connection over right now.
                        if gave_up {
                            None
                        } else {
                            rx.await.ok()
                        }
                    }
                };
                let Some(other) = other else {
                    let ans = self.lock().timed_out();
                    tracing::info!(%peer, "relay circuit: the other side did not come");
                    answer(&mut stream, &ans).await;
                    return;
                };
                let ans = self.lock().spliced();
                let (mut client, mut server) = match role {
                    Role::Client => (stream, other),
                    Role::Server => (other, stream),
                };
                answer(&mut client, &ans).await;
                answer(&mut server, &ans).await;
                tracing::info!(%peer, "relay circuit spliced");
                let (moved, end) = splice(client, server, limits).await;
                self.lock().close(&id);
                tracing::info!(bytes = moved, ?end, "relay circuit ended");
            }
        }
    }
}

async fn answer(stream: &mut TcpStream, ans: &Answer) {
    let _ = timeout(INTRO_TIMEOUT, stream.write_all(&ans.encode())).await;
    if ans.status != Status::Spliced {
        let _ = timeout(INTRO_TIMEOUT, stream.shutdown()).await;
    }
}

/// Copies both ways between `a` and `b` until both sides closed or a
/// limit is reached. Returns the bytes moved (both directions) and why it
/// ended.
pub async fn splice(a: TcpStream, b: TcpStream, limits: CircuitLimits) -> (u64, CircuitEnd) {
    let moved = AtomicU64::new(0);
    let start = Instant::now();
    let (mut ar, mut aw) = a.into_split();
    let (mut br, mut bw) = b.into_split();
    let both = async {
        let (x, y) = tokio::join!(
            pump(&mut ar, &mut bw, &moved, start, &limits),
            pump(&mut br, &mut aw, &moved, start, &limits),
        );
        match (x, y) {
            (CircuitEnd::ByteLimit, _) | (_, CircuitEnd::ByteLimit) => CircuitEnd::ByteLimit,
            (CircuitEnd::Error, _) | (_, CircuitEnd::Error) => CircuitEnd::Error,
            _ => CircuitEnd::Closed,
        }
    };
    let end = tokio::select! {
        end = both => end,
        _ = tokio::time::sleep(limits.max_duration) => CircuitEnd::DurationLimit,
    };
    (moved.load(Ordering::Relaxed), end)
}

/// One direction: reads and writes until EOF (then passes the EOF on) or
/// until the circuit's byte budget is spent (then stops both directions:
/// the other pump's budget is spent too).
async fn pump<R, W>(
    r: &mut R,
    w: &mut W,
    moved: &AtomicU64,
    start: Instant,
    limits: &CircuitLimits,
) -> CircuitEnd
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        let used = moved.load(Ordering::Relaxed);
        let left = limits.max_bytes.saturating_sub(used);
        if left == 0 {
            let _ = w.shutdown().await;
            return CircuitEnd::ByteLimit;
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match r.read(&mut buf[..want]).await {
            Ok(0) => {
                let _ = w.shutdown().await;
                return CircuitEnd::Closed;
            }
            Ok(n) => n,
            Err(_) => {
                let _ = w.shutdown().await;
                return CircuitEnd::Error;
            }
        };
        // Claim the bytes before writing them, so that the two directions
        // together never pass the limit.
        let before = moved.fetch_add(n as u64, Ordering::Relaxed);
        let allowed = limits.max_bytes.saturating_sub(before);
        let n = n.min(usize::try_from(allowed).unwrap_or(usize::MAX));
        if w.write_all(&buf[..n]).await.is_err() {
            return CircuitEnd::Error;
        }
        if let Some(rate) = limits.rate.filter(|r| *r > 0) {
            let total = before + n as u64;
            let due = Duration::from_secs_f64(total as f64 / rate as f64);
            let elapsed = start.elapsed();
            if due > elapsed {
                tokio::time::sleep(due - elapsed).await;
            }
        }
    }
}

/// Why [`connect`] did not give a spliced circuit.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The relay could not be reached or broke off.
    #[error("relay {relay}: {during}: {source}")]
    Io {
        /// The relay.
        relay: SocketAddr,
        /// What was being done.
        during: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// The relay answered with a refusal.
    #[error("relay {relay} refused the circuit: {reason}")]
    Refused {
        /// The relay.
        relay: SocketAddr,
        /// Its status.
        status: Status,
        /// Its reason, as it sent it (to be escaped before display).
        reason: String,
    },
    /// The relay's answer was malformed.
    #[error("relay {relay} sent a malformed answer: {reason}")]
    Malformed {
        /// The relay.
        relay: SocketAddr,
        /// What was wrong.
        reason: String,
    },
}

/// A spliced circuit, seen from one of its sides.
#[derive(Debug)]
pub struct Circuit {
    /// The connection to the relay, now joined to the other side.
    pub stream: TcpStream,
    /// The relay.
    pub relay: SocketAddr,
    /// The bounds the relay announced.
    pub limits: CircuitLimits,
}

/// Connects to `relay`, introduces this side of circuit `id`, and waits
/// (at most `wait`) for the relay's answer: spliced, or a refusal with its
/// reason.
pub async fn connect(
    relay: SocketAddr,
    id: &CircuitId,
    role: Role,
    wait: Duration,
) -> Result<Circuit, RelayError> {
    let io = |during| {
        move |source| RelayError::Io {
            relay,
            during,
            source,
        }
    };
    let timed_out = || {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer within {wait:?}"),
        )
    };
    let mut stream = timeout(wait, TcpStream::connect(relay))
        .await
        .map_err(|_| timed_out())
        .and_then(|r| r)
        .map_err(io("connecting"))?;
    let _ = stream.set_nodelay(true);
    stream
        .write_all(&encode_intro(id, role))
        .await
        .map_err(io("sending the introduction"))?;
    let mut head = [0u8; 2];
    timeout(wait, stream.read_exact(&mut head))
        .await
        .map_err(|_| timed_out())
        .and_then(|r| r)
        .map_err(io("waiting for the answer"))?;
    let mut buf = vec![0u8; Answer::len_from_head(head)];
    buf[..2].copy_from_slice(&head);
    timeout(INTRO_TIMEOUT, stream.read_exact(&mut buf[2..]))
        .await
        .map_err(|_| timed_out())
        .and_then(|r| r)
        .map_err(io("reading the answer"))?;
    let ans = Answer::parse(&buf).map_err(|e| RelayError::Malformed {
        relay,
        reason: e.to_string(),
    })?;
    match (ans.status, ans.limits) {
        (Status::Spliced, Some(limits)) => Ok(Circuit {
            stream,
            relay,
            limits,
        }),
        _ => Err(RelayError::Refused {
            relay,
            status: ans.status,
            reason: ans.reason,
        }),
    }
}

/// A path opened for one connection of a local client: a relayed circuit
/// (with its limits) or a punched or direct connection.
#[derive(Debug)]
pub struct Path {
    /// The connection to the other side.
    pub stream: TcpStream,
    /// The relay's limits, for a relayed circuit.
    pub limits: Option<CircuitLimits>,
}

impl From<Circuit> for Path {
    fn from(c: Circuit) -> Path {
        Path {
            stream: c.stream,
            limits: Some(c.limits),
        }
    }
}

/// What one bridged connection did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridged {
    /// Bytes from the local client to the path.
    pub up: u64,
    /// Bytes from the path to the local client.
    pub down: u64,
    /// Why it ended early, for people: the relay's byte limit, when the
    /// path closed having carried (up and down) that many bytes, or the
    /// error that opened no path.
    pub note: Option<String>,
}

/// A loopback listener for transfer clients that connect to an address:
/// each connection it accepts (at most `max_conns`, one at a time) gets a
/// path from `open` and is spliced to it. When the local client closes
/// first, the path is reset rather than closed (`SO_LINGER` 0), so that a
/// punched 4-tuple is free again at once for the next connection.
///
/// Returns the address to give the transfer client and a task that ends
/// after `max_conns` connections (or when aborted) with what each did.
pub async fn bridge<F, Fut>(
    max_conns: usize,
    mut open: F,
) -> io::Result<(SocketAddr, tokio::task::JoinHandle<Vec<Bridged>>)>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = io::Result<Path>> + Send,
{
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let mut done = Vec::new();
        while done.len() < max_conns {
            let Ok((local, _)) = listener.accept().await else {
                break;
            };
            let _ = local.set_nodelay(true);
            let path = match open().await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "bridge: no path");
                    done.push(Bridged {
                        up: 0,
                        down: 0,
                        note: Some(e.to_string()),
                    });
                    continue;
                }
            };
            done.push(bridge_one(local, path).await);
        }
        done
    });
    Ok((addr, task))
}

async fn bridge_one(local: TcpStream, path: Path) -> Bridged {
    let (mut lr, mut lw) = local.into_split();
    let (mut rr, mut rw) = path.stream.into_split();
    let (up_n, down_n) = (AtomicU64::new(0), AtomicU64::new(0));
    {
        let up = copy_counted(&mut lr, &mut rw, &up_n);
        let down = async {
            copy_counted(&mut rr, &mut lw, &down_n).await;
            let _ = lw.shutdown().await;
        };
        tokio::pin!(up, down);
        let mut down_done = false;
        loop {
            tokio::select! {
                _ = &mut up => {
                    // The local client is done: whatever is still on its
                    // way down gets a moment, then the path is reset.
                    if !down_done {
                        let _ = timeout(Duration::from_millis(50), &mut down).await;
                    }
                    break;
                }
                _ = &mut down, if !down_done => down_done = true,
            }
        }
    }
    if let Ok(remote) = rr.reunite(rw) {
        let _ = socket2::SockRef::from(&remote).set_linger(Some(Duration::ZERO));
    }
    let (up_n, down_n) = (up_n.into_inner(), down_n.into_inner());
    let note = path.limits.and_then(|l| {
        (up_n + down_n >= l.max_bytes).then(|| {
            format!(
                "the relay closed the circuit at its limit of {} bytes per circuit",
                l.max_bytes
            )
        })
    });
    Bridged {
        up: up_n,
        down: down_n,
        note,
    }
}

/// Why a relay ended a circuit that carried `carried` bytes (both
/// directions), when that reaches its announced byte limit: the words a
/// failed download ends with.
pub fn limit_note(relay: SocketAddr, limits: &CircuitLimits, carried: u64) -> Option<String> {
    (carried >= limits.max_bytes).then(|| {
        format!(
            "relay {} closed the circuit at its limit of {} bytes per circuit",
            rutella_proto::addr::normalize_ip(relay.ip()),
            limits.max_bytes
        )
    })
}

/// Gives a relayed circuit to a transfer client as a plain loopback
/// connection, counting what passes both ways. When the relay closes the
/// circuit having carried its byte limit, `on_limit` gets
/// [`limit_note`]'s words before the client sees the end of the stream,
/// so that the download's failure can name the limit.
pub async fn watch_limit(
    circuit: Circuit,
    on_limit: impl FnOnce(String) + Send + 'static,
) -> io::Result<TcpStream> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let client = TcpStream::connect(listener.local_addr()?).await?;
    let ours = client.local_addr()?;
    // Only our own connection: another one on loopback is turned away.
    let local = loop {
        let (s, from) = timeout(INTRO_TIMEOUT, listener.accept())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "loopback accept"))??;
        if from == ours {
            break s;
        }
    };
    drop(listener);
    let _ = local.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let Circuit {
        stream,
        relay,
        limits,
    } = circuit;
    tokio::spawn(async move {
        let (mut lr, mut lw) = local.into_split();
        let (mut rr, mut rw) = stream.into_split();
        let (up_n, down_n) = (AtomicU64::new(0), AtomicU64::new(0));
        let up = async {
            copy_counted(&mut lr, &mut rw, &up_n).await;
            let _ = rw.shutdown().await;
        };
        let down = async {
            copy_counted(&mut rr, &mut lw, &down_n).await;
            // The relay's end: named before the client reads it.
            let carried = up_n.load(Ordering::Relaxed) + down_n.load(Ordering::Relaxed);
            if let Some(note) = limit_note(relay, &limits, carried) {
                tracing::info!(%relay, carried, "{note}");
                on_limit(note);
            }
            let _ = lw.shutdown().await;
        };
        tokio::join!(up, down);
    });
    Ok(client)
}

/// Copies until EOF or an error, counting what was written.
async fn copy_counted<R, W>(r: &mut R, w: &mut W, count: &AtomicU64)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rutella_transfer::{FileSource, ServerConfig, SourceFile};

    struct Nothing;
    impl FileSource for Nothing {
        fn by_name(&self, _: &str) -> Option<SourceFile> {
            None
        }
        fn by_hash(&self, _: &[u8; 32]) -> Option<SourceFile> {
            None
        }
    }

    /// A transfer server on loopback with a relay; stops when the sender
    /// is dropped.
    async fn relay_server(cfg: RelayConfig) -> (SocketAddr, oneshot::Sender<()>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let scfg = ServerConfig {
            relay: Some(Relay::new(cfg).hook()),
            ..ServerConfig::default()
        };
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(rutella_transfer::run_server(
            listener,
            Arc::new(Nothing),
            scfg,
            async {
                let _ = rx.await;
            },
        ));
        (addr, tx)
    }

    fn cfg(wait_ms: u64, max_bytes: u64) -> RelayConfig {
        RelayConfig {
            wait_timeout: Duration::from_millis(wait_ms),
            limits: CircuitLimits {
                max_bytes,
                max_duration: Duration::from_secs(10),
                rate: None,
            },
            ..RelayConfig::default()
        }
    }

    #[tokio::test]
    async fn a_lone_side_is_told_the_other_did_not_come() {
        let (addr, _stop) = relay_server(cfg(100, 1000)).await;
        let began = std::time::Instant::now();
        let e = connect(addr, &[1; 16], Role::Server, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                RelayError::Refused {
                    status: Status::TimedOut,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("did not come within 100 ms"), "{e}");
        assert!(began.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn two_sides_are_spliced_until_the_byte_limit() {
        let (addr, _stop) = relay_server(cfg(2000, 1000)).await;
        let id = [2; 16];
        let (a, b) = tokio::join!(
            connect(addr, &id, Role::Server, Duration::from_secs(5)),
            async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                connect(addr, &id, Role::Client, Duration::from_secs(5)).await
            }
        );
        let (mut a, mut b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.limits.max_bytes, 1000);
        b.stream.write_all(b"request").await.unwrap();
        let mut got = [0u8; 7];
        a.stream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"request");
        // 7 bytes used; 993 more pass, then the circuit closes.
        let _ = a.stream.write_all(&[7u8; 5000]).await;
        let mut all = Vec::new();
        let _ = timeout(Duration::from_secs(5), b.stream.read_to_end(&mut all)).await;
        assert_eq!(all.len(), 993);
    }

    /// Two spliced sides of a circuit at a relay with a 1000-byte limit.
    async fn spliced_pair(addr: SocketAddr, id: CircuitId) -> (Circuit, Circuit) {
        let (a, b) = tokio::join!(
            connect(addr, &id, Role::Server, Duration::from_secs(5)),
            async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                connect(addr, &id, Role::Client, Duration::from_secs(5)).await
            }
        );
        (a.unwrap(), b.unwrap())
    }

    #[tokio::test]
    async fn the_downloader_names_the_limit_before_its_client_sees_the_end() {
        let (addr, _stop) = relay_server(cfg(2000, 1000)).await;
        let (mut server, client) = spliced_pair(addr, [3; 16]).await;
        let said = Arc::new(Mutex::new(None::<String>));
        let s = Arc::clone(&said);
        let mut local = watch_limit(client, move |note| {
            *s.lock().unwrap() = Some(note);
        })
        .await
        .unwrap();
        local.write_all(b"request").await.unwrap();
        let mut got = [0u8; 7];
        server.stream.read_exact(&mut got).await.unwrap();
        let _ = server.stream.write_all(&[7u8; 5000]).await;
        let mut all = Vec::new();
        timeout(Duration::from_secs(5), local.read_to_end(&mut all))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(all.len(), 993);
        // Named by the time the client read the end of the stream.
        assert_eq!(
            said.lock().unwrap().as_deref(),
            Some("relay 127.0.0.1 closed the circuit at its limit of 1000 bytes per circuit")
        );
    }

    #[tokio::test]
    async fn a_circuit_the_source_closes_below_the_limit_names_nothing() {
        let (addr, _stop) = relay_server(cfg(2000, 1000)).await;
        let (mut server, client) = spliced_pair(addr, [4; 16]).await;
        let said = Arc::new(Mutex::new(None::<String>));
        let s = Arc::clone(&said);
        let mut local = watch_limit(client, move |note| {
            *s.lock().unwrap() = Some(note);
        })
        .await
        .unwrap();
        server.stream.write_all(&[1u8; 500]).await.unwrap();
        server.stream.shutdown().await.unwrap();
        let mut all = Vec::new();
        timeout(Duration::from_secs(5), local.read_to_end(&mut all))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(all, vec![1u8; 500]);
        assert_eq!(*said.lock().unwrap(), None);
    }
}
