//! Hole punching and relaying between two hosts behind two home routers
//! without port mapping, in the network lab (crates/lab). Needs root;
//! prints one skip line elsewhere.
//!
//! Address plan: the lab's internet 11.0.0.0/24 with the public host P at
//! .2 and the routers at .11 (R1) and .12 (R2); H1 at 192.168.1.10 behind
//! R1, H2 at 192.168.2.10 behind R2. Every socket of a host is made on a
//! thread that joined the host's namespace, by a current-thread runtime
//! that lives on that thread.
#![cfg(target_os = "linux")]

use rutella_lab::{Host, Lab, Router, RouterKind};
use rutella_node::punch::{self, PunchConfig};
use rutella_node::relay::{self, Bridged, Path, Relay};
use rutella_proto::relay::{CircuitLimits, RelayConfig, Role, Status};
use rutella_transfer::{
    classic_download, fetch_by_hash, serve_connection, ClassicGet, FileSource, HashGet, Progress,
    ServerConfig, SourceFile,
};
use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct World {
    lab: Lab,
    p: Host,
    r1: Router,
    r2: Router,
    h1: Host,
    h2: Host,
}

fn world(symmetric: bool) -> Option<World> {
    let mut lab = match Lab::new() {
        Ok(lab) => lab,
        Err(why) => {
            eprintln!("skipped: cannot build the network lab: {why}");
            return None;
        }
    };
    let p = lab.public_host("p", 2).unwrap();
    let r1 = lab.router("r1", 11, RouterKind::default()).unwrap();
    let r2 = lab
        .router(
            "r2",
            12,
            RouterKind {
                symmetric,
                ..RouterKind::default()
            },
        )
        .unwrap();
    let h1 = lab.host_behind(&r1, "h1").unwrap();
    let h2 = lab.host_behind(&r2, "h2").unwrap();
    Some(World {
        lab,
        p,
        r1,
        r2,
        h1,
        h2,
    })
}

/// Runs `f` on its own thread inside `host`'s namespace, with a
/// current-thread runtime made there.
fn on<T, F>(host: &Host, f: impl FnOnce() -> F + Send + 'static) -> std::thread::JoinHandle<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = T>,
{
    let host = host.clone();
    std::thread::spawn(move || {
        host.enter(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(f())
        })
        .unwrap()
    })
}

fn ext(router: &Router, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(router.host.ip, port))
}

/// Both hosts listen on `port` and punch towards each other's router at
/// `start`; each returns its connection (or the error) and how long after
/// `start` it came.
async fn punch_side(
    port: u16,
    remote: SocketAddr,
    start: Instant,
    cfg: PunchConfig,
    first: bool,
) -> (Result<tokio::net::TcpStream, std::io::Error>, Duration) {
    let listener = punch::listen(SocketAddr::from(([0, 0, 0, 0], port))).unwrap();
    let r = punch::connect_with(port, remote, tokio::time::Instant::from_std(start), &cfg).await;
    let took = start.elapsed();
    let r = match r {
        Ok(mut s) => {
            // One byte each way proves both directions.
            let mut b = [0u8; 1];
            let x = if first { 1 } else { 2 };
            s.write_all(&[x]).await.unwrap();
            s.read_exact(&mut b).await.unwrap();
            assert_eq!(b[0], 3 - x);
            Ok(s)
        }
        Err(e) => Err(e),
    };
    drop(listener);
    (r, took)
}

fn punch_cfg(window: Duration) -> PunchConfig {
    PunchConfig {
        window,
        retry: Duration::from_millis(250),
        max_tries: 20,
    }
}

#[test]
fn punching_through_two_cone_routers_20_times() {
    let Some(w) = world(false) else { return };
    let mut ok = 0;
    let mut times = Vec::new();
    for i in 0..20u16 {
        w.lab.flush_conntrack(&w.r1).unwrap();
        w.lab.flush_conntrack(&w.r2).unwrap();
        let port = 31000 + i;
        let start = Instant::now() + Duration::from_millis(50);
        let cfg = punch_cfg(Duration::from_secs(3));
        let (to2, to1) = (ext(&w.r2, port), ext(&w.r1, port));
        let a = on(&w.h1, move || punch_side(port, to2, start, cfg, true));
        let b = on(&w.h2, move || punch_side(port, to1, start, cfg, false));
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        match (&a.0, &b.0) {
            (Ok(sa), Ok(sb)) => {
                // The peer each side sees is the other's router, at the
                // listening port: both routers kept the port.
                assert_eq!(sa.peer_addr().unwrap(), to2);
                assert_eq!(sb.peer_addr().unwrap(), to1);
                ok += 1;
                times.push(a.1.max(b.1));
            }
            _ => eprintln!("attempt {i}: {:?} / {:?}", a.0, b.0),
        }
    }
    times.sort();
    eprintln!(
        "punched {ok} of 20; time to connect after the start moment: min {:?}, median {:?}, max {:?}",
        times.first(),
        times.get(times.len() / 2),
        times.last()
    );
    assert!(ok >= 19, "punched only {ok} of 20");
}

#[test]
fn punching_fails_within_the_window_behind_a_symmetric_router() {
    let Some(w) = world(true) else { return };
    let port = 32000;
    let window = Duration::from_millis(1500);
    let start = Instant::now() + Duration::from_millis(50);
    let cfg = punch_cfg(window);
    let (to2, to1) = (ext(&w.r2, port), ext(&w.r1, port));
    let a = on(&w.h1, move || punch_side(port, to2, start, cfg, true));
    let b = on(&w.h2, move || punch_side(port, to1, start, cfg, false));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    let ea =
        a.0.expect_err("punching should fail behind a symmetric router");
    let eb =
        b.0.expect_err("punching should fail behind a symmetric router");
    assert_eq!(ea.kind(), std::io::ErrorKind::TimedOut, "{ea}");
    assert_eq!(eb.kind(), std::io::ErrorKind::TimedOut, "{eb}");
    for took in [a.1, b.1] {
        assert!(
            took >= window && took < window + Duration::from_millis(500),
            "{took:?}"
        );
    }
    let _ = &w.p;
}

/// The one file an uploader offers, by name and by hash.
struct OneFile {
    name: String,
    hash: [u8; 32],
    path: PathBuf,
}

impl FileSource for OneFile {
    fn by_name(&self, name: &str) -> Option<SourceFile> {
        (name == self.name).then(|| self.file())
    }
    fn by_hash(&self, hash: &[u8; 32]) -> Option<SourceFile> {
        (*hash == self.hash).then(|| self.file())
    }
}

impl OneFile {
    fn file(&self) -> SourceFile {
        SourceFile {
            path: self.path.clone(),
            size: std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0),
        }
    }
}

/// Deterministic, non-repeating test bytes.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn shared_file(w: &World, name: &str, len: usize) -> (Arc<OneFile>, Vec<u8>) {
    let data = pattern(len, len as u64);
    let dir = w.lab.dir().join("share");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, &data).unwrap();
    let file = OneFile {
        name: name.to_owned(),
        hash: *blake3::hash(&data).as_bytes(),
        path,
    };
    (Arc::new(file), data)
}

fn server_cfg() -> Arc<ServerConfig> {
    Arc::new(ServerConfig {
        send_timeout: Duration::from_secs(5),
        ..ServerConfig::default()
    })
}

/// How the uploader on H1 gets each connection of a download: one punch,
/// or one relayed circuit, per request from the downloader's bridge.
#[derive(Clone, Copy)]
enum Way {
    /// Punch from `port` (H1) to `port` (H2) at the given moment.
    Punch { port: u16 },
    /// Meet at the relay on P.
    Relay { relay: SocketAddr },
}

/// What the downloader's bridge asks the uploader for, one per connection:
/// the stand-in for the go of a proxy (punch) or for a relay invitation.
#[derive(Debug, Clone, Copy)]
enum Ask {
    Punch(Instant),
    Relay([u8; 16]),
}

/// The uploader on H1: serves every connection it is asked to open with
/// the transfer server, until the asks stop.
fn uploader(
    w: &World,
    way: Way,
    file: Arc<OneFile>,
) -> (tokio::sync::mpsc::Sender<Ask>, std::thread::JoinHandle<()>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Ask>(8);
    let to_h2 = ext(
        &w.r2,
        match way {
            Way::Punch { port } => port,
            Way::Relay { .. } => 1,
        },
    );
    let h = on(&w.h1, move || async move {
        let listener = match way {
            Way::Punch { port } => {
                Some(punch::listen(SocketAddr::from(([0, 0, 0, 0], port))).unwrap())
            }
            Way::Relay { .. } => None,
        };
        let mut tasks = tokio::task::JoinSet::new();
        while let Some(ask) = rx.recv().await {
            let stream = match (ask, way) {
                (Ask::Punch(start), Way::Punch { port }) => {
                    let at = tokio::time::Instant::from_std(start);
                    match punch::connect_with(port, to_h2, at, &punch_cfg(Duration::from_secs(3)))
                        .await
                    {
                        Ok(s) => s,
                        Err(e) => {
                            eprintln!("uploader: {e}");
                            continue;
                        }
                    }
                }
                (Ask::Relay(id), Way::Relay { relay }) => {
                    match relay::connect(relay, &id, Role::Server, Duration::from_secs(5)).await {
                        Ok(c) => c.stream,
                        Err(e) => {
                            eprintln!("uploader: {e}");
                            continue;
                        }
                    }
                }
                _ => unreachable!(),
            };
            let file = Arc::clone(&file) as Arc<dyn FileSource>;
            tasks.spawn(async move {
                let _ = serve_connection(stream, file, server_cfg()).await;
            });
        }
        while tasks.join_next().await.is_some() {}
        drop(listener);
    });
    (tx, h)
}

/// The downloader's side of a way: a loopback bridge whose connections
/// each get a fresh punch or circuit, for at most `conns` connections.
async fn downloader_bridge(
    way: Way,
    to_h1: SocketAddr,
    asks: tokio::sync::mpsc::Sender<Ask>,
    conns: usize,
) -> (SocketAddr, tokio::task::JoinHandle<Vec<Bridged>>) {
    let listener = match way {
        Way::Punch { port } => Some(punch::listen(SocketAddr::from(([0, 0, 0, 0], port))).unwrap()),
        Way::Relay { .. } => None,
    };
    let mut n = 0u8;
    let out = relay::bridge(conns, move || {
        n += 1;
        let asks = asks.clone();
        let _keep = listener.as_ref().map(|l| l.local_addr());
        let id = [n; 16];
        async move {
            match way {
                Way::Punch { port } => {
                    let start = Instant::now() + Duration::from_millis(100);
                    asks.send(Ask::Punch(start))
                        .await
                        .map_err(std::io::Error::other)?;
                    let at = tokio::time::Instant::from_std(start);
                    let stream =
                        punch::connect_with(port, to_h1, at, &punch_cfg(Duration::from_secs(3)))
                            .await?;
                    Ok(Path {
                        stream,
                        limits: None,
                    })
                }
                Way::Relay { relay } => {
                    asks.send(Ask::Relay(id))
                        .await
                        .map_err(std::io::Error::other)?;
                    relay::connect(relay, &id, Role::Client, Duration::from_secs(5))
                        .await
                        .map(Path::from)
                        .map_err(std::io::Error::other)
                }
            }
        }
    })
    .await
    .unwrap();
    out
}

/// A relay on P: a transfer server offering nothing, with a relay.
fn relay_on_p(
    w: &World,
    cfg: RelayConfig,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std_mpsc::channel();
    let p_ip = w.p.ip;
    let h = on(&w.p, move || async move {
        let listener = tokio::net::TcpListener::bind((p_ip, 0)).await.unwrap();
        addr_tx.send(listener.local_addr().unwrap()).unwrap();
        let relay = Relay::new(cfg);
        let scfg = ServerConfig {
            relay: Some(relay.hook()),
            ..ServerConfig::default()
        };
        let none = Arc::new(OneFile {
            name: String::new(),
            hash: [0; 32],
            path: PathBuf::new(),
        });
        rutella_transfer::run_server(listener, none, scfg, async {
            let _ = stop_rx.await;
        })
        .await
        .unwrap();
    });
    (addr_rx.recv().unwrap(), stop_tx, h)
}

fn relay_cfg(max_bytes: u64) -> RelayConfig {
    RelayConfig {
        enabled: true,
        max_circuits: 8,
        max_per_ip: 4,
        wait_timeout: Duration::from_secs(3),
        limits: CircuitLimits {
            max_bytes,
            max_duration: Duration::from_secs(60),
            rate: None,
        },
    }
}

/// A classic download by name and a download by hash over `way`, both
/// byte-exact. Returns (time to first byte, seconds) of the by-name one.
fn both_downloads(w: &World, way: Way, file: &Arc<OneFile>, data: &[u8], tag: &str) {
    let (asks, up) = uploader(w, way, Arc::clone(file));
    let to_h1 = ext(
        &w.r1,
        match way {
            Way::Punch { port } => port,
            Way::Relay { .. } => 1,
        },
    );
    let out = w.lab.dir().join(format!("dl-{tag}"));
    std::fs::create_dir_all(&out).unwrap();
    let (name, hash) = (file.name.clone(), file.hash);
    let out2 = out.clone();
    let d = on(&w.h2, move || async move {
        // By name: one connection.
        let (addr, bridged) = downloader_bridge(way, to_h1, asks.clone(), 1).await;
        let (p, _) = tokio::sync::watch::channel(Progress::default());
        let got = classic_download(
            ClassicGet {
                peer: addr,
                name: name.clone(),
                downloads_dir: out2.join("by-name"),
                connect_timeout: Duration::from_secs(5),
                idle_timeout: Duration::from_secs(10),
                align_resume: false,
                listed_size: None,
                dialer: None,
                limit: None,
            },
            p,
        )
        .await;
        let b1 = bridged.await.unwrap();
        // By hash: the tree, then the ranges; a fresh path for each.
        let (addr, bridged) = downloader_bridge(way, to_h1, asks, 3).await;
        let (p, _) = tokio::sync::watch::channel(Progress::default());
        let mut req = HashGet::new(hash, vec![addr], out2.join("by-hash"), &name);
        req.idle_timeout = Duration::from_secs(10);
        let got2 = fetch_by_hash(req, p).await;
        bridged.abort();
        (got, b1, got2)
    });
    let (got, b1, got2) = d.join().unwrap();
    up.join().unwrap();
    let r1 = got.unwrap_or_else(|e| panic!("{tag}: classic download failed: {e}; {b1:?}"));
    assert_eq!(std::fs::read(&r1.path).unwrap(), data, "{tag}: by name");
    let r2 = got2.unwrap_or_else(|e| panic!("{tag}: download by hash failed: {e}"));
    assert_eq!(std::fs::read(&r2.path).unwrap(), data, "{tag}: by hash");
}

#[test]
fn transfers_by_name_and_by_hash_over_a_punched_connection() {
    let Some(w) = world(false) else { return };
    let (file, data) = shared_file(&w, "song.ogg", 3 << 20);
    both_downloads(&w, Way::Punch { port: 33000 }, &file, &data, "punched");
}

#[test]
fn behind_a_symmetric_router_punching_fails_and_the_relay_carries_both_transfers() {
    let Some(w) = world(true) else { return };
    let (file, data) = shared_file(&w, "song.ogg", 3 << 20);
    // Punching fails within its window...
    let port = 33100;
    let start = Instant::now() + Duration::from_millis(50);
    let cfg = punch_cfg(Duration::from_millis(800));
    let (to2, to1) = (ext(&w.r2, port), ext(&w.r1, port));
    let a = on(&w.h1, move || punch_side(port, to2, start, cfg, true));
    let b = on(&w.h2, move || punch_side(port, to1, start, cfg, false));
    assert!(a.join().unwrap().0.is_err() && b.join().unwrap().0.is_err());
    // ... and the relay on P carries both downloads.
    let (relay, stop, h) = relay_on_p(&w, relay_cfg(1 << 30));
    both_downloads(&w, Way::Relay { relay }, &file, &data, "relayed");
    let _ = stop.send(());
    h.join().unwrap();
}

#[test]
fn a_relay_byte_limit_below_the_file_size_fails_the_download_naming_the_limit() {
    let Some(w) = world(true) else { return };
    let (file, data) = shared_file(&w, "big.ogg", 4 << 20);
    let limit = 1u64 << 20;
    let (relay, stop, h) = relay_on_p(&w, relay_cfg(limit));
    let way = Way::Relay { relay };
    let (asks, up) = uploader(&w, way, Arc::clone(&file));
    let out = w.lab.dir().join("dl-limited");
    let (name, hash) = (file.name.clone(), file.hash);
    let out2 = out.clone();
    let to_h1 = ext(&w.r1, 1);
    let d = on(&w.h2, move || async move {
        let (addr, bridged) = downloader_bridge(way, to_h1, asks.clone(), 1).await;
        let (p, _) = tokio::sync::watch::channel(Progress::default());
        let classic = classic_download(
            ClassicGet {
                peer: addr,
                name: name.clone(),
                downloads_dir: out2.join("by-name"),
                connect_timeout: Duration::from_secs(5),
                idle_timeout: Duration::from_secs(5),
                align_resume: false,
                listed_size: None,
                dialer: None,
                limit: None,
            },
            p,
        )
        .await;
        let b1 = bridged.await.unwrap();
        let (addr, bridged) = downloader_bridge(way, to_h1, asks, 2).await;
        let (p, _) = tokio::sync::watch::channel(Progress::default());
        let mut req = HashGet::new(hash, vec![addr], out2.join("by-hash"), &name);
        req.idle_timeout = Duration::from_secs(5);
        let by_hash = fetch_by_hash(req, p).await;
        // The bridge ends once the download let go of its listener.
        bridged.abort();
        let b2 = bridged.await.unwrap_or_default();
        (classic, b1, by_hash, b2)
    });
    let (classic, b1, by_hash, b2) = d.join().unwrap();
    up.join().unwrap();
    let _ = stop.send(());
    h.join().unwrap();
    let named = format!("limit of {limit} bytes per circuit");
    // By name: the download fails; what it kept is a prefix of the file.
    let e = classic.expect_err("a classic download cannot pass a 1 MiB circuit");
    let msg = format!("{e}; {}", b1[0].note.clone().unwrap_or_default());
    eprintln!("by name: {msg}");
    assert!(msg.contains(&named), "{msg}");
    let part = std::fs::read(out.join("by-name").join("big.ogg.part")).unwrap_or_default();
    assert!(
        part.len() < data.len() && data.starts_with(&part),
        "kept {} bytes, not a prefix",
        part.len()
    );
    assert!(!out.join("by-name").join("big.ogg").exists());
    // By hash: fails, nothing unverified kept, no file in place.
    let e = by_hash.expect_err("a download by hash cannot pass a 1 MiB circuit");
    let notes: Vec<String> = b2.iter().filter_map(|b| b.note.clone()).collect();
    let msg = format!("{e}; {}", notes.join("; "));
    eprintln!("by hash: {msg}");
    assert!(msg.contains(&named), "{msg}");
    assert!(!out.join("by-hash").join("big.ogg").exists());
}

#[test]
fn a_node_with_relaying_off_refuses_and_says_why() {
    let Some(w) = world(false) else { return };
    let p_ip = w.p.ip;
    let (addr_tx, addr_rx) = std_mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let node = on(&w.p, move || async move {
        let mut cfg = rutella_node::NodeConfig {
            bind: p_ip.into(),
            udp_port: 0,
            tcp_port: 0,
            watch: false,
            ..Default::default()
        };
        cfg.relay.enabled = false;
        let node = rutella_node::Node::start(cfg).await.unwrap();
        addr_tx.send(node.client().tcp_addr()).unwrap();
        let _ = stop_rx.await;
        node.shutdown().await;
    });
    let relay = addr_rx.recv().unwrap();
    let r = on(&w.h2, move || async move {
        relay::connect(relay, &[9; 16], Role::Client, Duration::from_secs(5)).await
    })
    .join()
    .unwrap();
    let _ = stop_tx.send(());
    node.join().unwrap();
    match r {
        Err(
            e @ relay::RelayError::Refused {
                status: Status::Off,
                ..
            },
        ) => {
            let msg = e.to_string();
            eprintln!("{msg}");
            assert!(msg.contains("does not relay (--no-relay)"), "{msg}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Time to first byte and throughput of a classic download of 64 MiB from
/// H1 to H2: direct (from a server on P, which is reachable), over a
/// punched connection, and through a relay on P. Prints the figures of
/// `docs/PERFORMANCE.md`. Run with `--run-ignored only`.
#[test]
#[ignore = "a benchmark: run it on purpose"]
fn bench_direct_punched_relayed() {
    let Some(w) = world(false) else { return };
    const SIZE: usize = 64 << 20;
    const RUNS: usize = 5;
    let (file, data) = shared_file(&w, "bench.bin", SIZE);
    let (relay, stop, relay_thread) = relay_on_p(&w, relay_cfg(1 << 40));
    // The direct server on P.
    let (dstop_tx, dstop_rx) = tokio::sync::oneshot::channel::<()>();
    let (daddr_tx, daddr_rx) = std_mpsc::channel();
    let (p_ip, f2) = (w.p.ip, Arc::clone(&file));
    let direct = on(&w.p, move || async move {
        let l = tokio::net::TcpListener::bind((p_ip, 0)).await.unwrap();
        daddr_tx.send(l.local_addr().unwrap()).unwrap();
        let cfg = ServerConfig::default();
        rutella_transfer::run_server(l, f2, cfg, async {
            let _ = dstop_rx.await;
        })
        .await
        .unwrap();
    });
    let direct_addr: SocketAddr = daddr_rx.recv().unwrap();
    let mut lines = Vec::new();
    for (label, way) in [
        ("direct", None),
        ("punched", Some(Way::Punch { port: 34000 })),
        ("relayed", Some(Way::Relay { relay })),
    ] {
        let mut ttfb = Vec::new();
        let mut rate = Vec::new();
        for run in 0..RUNS {
            w.lab.flush_conntrack(&w.r1).unwrap();
            w.lab.flush_conntrack(&w.r2).unwrap();
            let up = way.map(|way| uploader(&w, way, Arc::clone(&file)));
            let asks = up.as_ref().map(|(a, _)| a.clone());
            let to_h1 = ext(&w.r1, 34000);
            let out = w.lab.dir().join(format!("bench-{label}-{run}"));
            let name = file.name.clone();
            let d = on(&w.h2, move || async move {
                let began = std::time::Instant::now();
                let (peer, bridged) = match (way, asks) {
                    (Some(way), Some(asks)) => {
                        let (a, b) = downloader_bridge(way, to_h1, asks, 1).await;
                        (a, Some(b))
                    }
                    _ => (direct_addr, None),
                };
                let (tx, mut rx) = tokio::sync::watch::channel(Progress::default());
                let first = tokio::spawn(async move {
                    while rx.changed().await.is_ok() {
                        if rx.borrow().received > 0 {
                            return Some(began.elapsed());
                        }
                    }
                    None
                });
                let r = classic_download(
                    ClassicGet {
                        peer,
                        name,
                        downloads_dir: out,
                        connect_timeout: Duration::from_secs(5),
                        idle_timeout: Duration::from_secs(10),
                        align_resume: false,
                        listed_size: None,
                        dialer: None,
                        limit: None,
                    },
                    tx,
                )
                .await
                .unwrap();
                let total = began.elapsed();
                if let Some(b) = bridged {
                    let _ = b.await;
                }
                (r, first.await.unwrap().unwrap(), total)
            });
            let (r, first, total) = d.join().unwrap();
            if let Some((asks, h)) = up {
                drop(asks);
                h.join().unwrap();
            }
            assert_eq!(std::fs::read(&r.path).unwrap(), data);
            std::fs::remove_file(&r.path).unwrap();
            ttfb.push(first);
            rate.push(SIZE as f64 / (total - first).as_secs_f64() / 1e6);
        }
        ttfb.sort();
        rate.sort_by(f64::total_cmp);
        lines.push(format!(
            "{label:8} time to first byte {:>7.1} ms (median of {RUNS}; {:.1}..{:.1}), throughput {:>7.0} MB/s (median; {:.0}..{:.0})",
            ttfb[RUNS / 2].as_secs_f64() * 1e3,
            ttfb[0].as_secs_f64() * 1e3,
            ttfb[RUNS - 1].as_secs_f64() * 1e3,
            rate[RUNS / 2],
            rate[0],
            rate[RUNS - 1],
        ));
    }
    let _ = dstop_tx.send(());
    direct.join().unwrap();
    let _ = stop.send(());
    relay_thread.join().unwrap();
    for l in lines {
        println!("{l}");
    }
}
