//! Hostile peers on the UDP overlay: each test replays one attack against
//! real `rutella serve` processes, with a raw UDP socket as the attacker,
//! and checks that it has no effect. A victim is a set of UDP sockets on a
//! loopback address that count every byte they receive and never answer.
//! The attacks and how to send them by hand are in
//! `docs/SECURITY.md` ("Replaying the attacks on the UDP overlay").
//!
//! Address plan: this file uses 127.0.33.0/24 (classic ports for the nodes;
//! victims on ports 21000 and up), and 127.0.34.0/24 for the probe that
//! checks a node has handled everything sent before it (another /24, so that
//! limits kept per source prefix do not count the attacker's traffic
//! against it).

mod common;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

fn ip(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 33, host)
}

fn ip_s(host: u8) -> String {
    ip(host).to_string()
}

/// Where a node of this file listens for UDP (classic port).
fn node_udp(host: u8) -> SocketAddrV4 {
    SocketAddrV4::new(ip(host), 20000)
}

fn bytes_of(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// A raw UDP socket for the attacker, counting what it sends.
struct Attacker {
    sock: UdpSocket,
    sent_bytes: u64,
    sent_datagrams: u64,
}

impl Attacker {
    fn new(host: u8) -> Attacker {
        let sock = UdpSocket::bind((ip(host), 0)).unwrap();
        Attacker {
            sock,
            sent_bytes: 0,
            sent_datagrams: 0,
        }
    }

    fn port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }

    fn send(&mut self, to: SocketAddrV4, bytes: &[u8]) {
        // A full socket buffer or an ICMP error from an earlier datagram
        // is not the attacker's concern: count what was handed over.
        if let Ok(n) = self.sock.send_to(bytes, to) {
            self.sent_bytes += n as u64;
            self.sent_datagrams += 1;
        }
    }
}

/// A set of UDP sockets that count what they receive and never answer.
struct Victim {
    ip: Ipv4Addr,
    ports: Vec<u16>,
    bytes: Arc<AtomicU64>,
    datagrams: Arc<AtomicU64>,
    /// One message for every [`MARK`] a port reads (not counted).
    marks: std::sync::mpsc::Receiver<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// A datagram the test sends to its own sockets: once a socket's reader
/// has read it, it has read everything that was queued before it.
const MARK: &[u8] = b"test-mark-not-a-message";

/// Sends [`MARK`] to `to` and waits (bounded) until `marks` says it was
/// read.
fn drain(to: SocketAddrV4, marks: &std::sync::mpsc::Receiver<()>) {
    let s = UdpSocket::bind((*to.ip(), 0)).unwrap();
    s.send_to(MARK, to).unwrap();
    marks
        .recv_timeout(Duration::from_secs(10))
        .expect("a test socket did not read its mark within 10 s");
}

thread_local! {
    static RECV_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 65_536]);
}

impl Victim {
    /// Binds up to `want` ports from `first` on (ports that are taken are
    /// skipped; the ports bound are in `ports`).
    fn bind(host: u8, first: u16, want: usize) -> Victim {
        let ip = ip(host);
        let mut socks = Vec::new();
        let mut port = first;
        while socks.len() < want && port < u16::MAX {
            if let Ok(s) = UdpSocket::bind((ip, port)) {
                s.set_nonblocking(true).unwrap();
                socks.push(s);
            }
            port += 1;
        }
        assert_eq!(socks.len(), want, "could not bind {want} victim ports");
        let ports = socks
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        let bytes = Arc::new(AtomicU64::new(0));
        let datagrams = Arc::new(AtomicU64::new(0));
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (mark_tx, marks) = std::sync::mpsc::channel();
        let (b, d) = (bytes.clone(), datagrams.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .unwrap();
            rt.block_on(async move {
                for s in socks {
                    let s = tokio::net::UdpSocket::from_std(s).unwrap();
                    let (b, d, m) = (b.clone(), d.clone(), mark_tx.clone());
                    tokio::spawn(async move {
                        loop {
                            if s.readable().await.is_err() {
                                return;
                            }
                            // Drain without holding the buffer across an await.
                            RECV_BUF.with(|buf| {
                                let mut buf = buf.borrow_mut();
                                while let Ok(n) = s.try_recv(&mut buf) {
                                    if &buf[..n] == MARK {
                                        let _ = m.send(());
                                        continue;
                                    }
                                    b.fetch_add(n as u64, Ordering::SeqCst);
                                    d.fetch_add(1, Ordering::SeqCst);
                                }
                            });
                        }
                    });
                }
                let _ = stop_rx.await;
            });
        });
        Victim {
            ip,
            ports,
            bytes,
            datagrams,
            marks,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn addr(&self, i: usize) -> SocketAddrV4 {
        SocketAddrV4::new(self.ip, self.ports[i])
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }

    fn datagrams(&self) -> u64 {
        self.datagrams.load(Ordering::SeqCst)
    }

    /// Waits until every port has read what was queued to it.
    fn drained(&self) {
        for i in 0..self.ports.len() {
            drain(self.addr(i), &self.marks);
        }
    }

    /// Waits until nothing has arrived for `quiet` (at most `limit`):
    /// the window in which a late datagram would still be counted. A
    /// probe's answer does not prove that the answers to earlier queries
    /// were sent (they are built on the node's blocking pool, in any
    /// order), and no event announces them: hence a quiet period.
    fn settle(&self, quiet: Duration, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut last = self.datagrams();
        let mut since = Instant::now();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            let now = self.datagrams();
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return;
            }
        }
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A socket on another /24 that checks a node has handled every datagram
/// sent to it before: it sends a classic Query for a name no node shares
/// and waits for the (empty) answer, which a node sends to the query's
/// source in every version of the protocol.
struct Probe {
    sock: UdpSocket,
    next_id: u64,
}

impl Probe {
    fn new(host: u8) -> Probe {
        let sock = UdpSocket::bind((Ipv4Addr::new(127, 0, 34, host), 0)).unwrap();
        Probe { sock, next_id: 1 }
    }

    /// Whether `node` answered within `limit`. The node handles datagrams in
    /// the order they arrive, so once it answers, everything sent to it
    /// before the probe was handled.
    fn barrier(&mut self, node: SocketAddrV4, limit: Duration) -> bool {
        let id = self.next_id;
        self.next_id += 1;
        let me = self.sock.local_addr().unwrap();
        let q = json!({"Command": 3, "Contents": "probe-no-such-name-xq", "IP": me.ip().to_string(),
            "UdpPort": me.port(), "TcpPort": me.port(), "Id": id});
        let _ = self.sock.send_to(&bytes_of(&q), node);
        let deadline = Instant::now() + limit;
        let mut buf = vec![0u8; 65_536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let Ok((n, from)) = self.sock.recv_from(&mut buf) else {
                continue;
            };
            if from != SocketAddr::V4(node) {
                continue;
            }
            if let Ok(v) = serde_json::from_slice::<Value>(&buf[..n]) {
                if v["Command"] == 4 && v["Id"] == id {
                    return true;
                }
                // The node answers a stranger's query once the stranger
                // has answered its ping from the same address.
                if v["Command"] == 1 {
                    let mut pong = json!({"Command": 2, "IP": me.ip().to_string(),
                        "UdpPort": me.port(), "TcpPort": me.port()});
                    if let Some(n) = v.get("Nonce") {
                        pong["Echo"] = n.clone();
                    }
                    let _ = self.sock.send_to(&bytes_of(&pong), node);
                }
            }
        }
    }
}

/// Resident and peak memory of a process, in KiB, from /proc.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

/// Hits printed by `rutella search --json`: (udp address, tcp address, name).
fn json_hits(out: &std::process::Output) -> Vec<(String, String, String)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            (s("udp"), s("tcp"), s("name"))
        })
        .collect()
}

/// A classic-style peer in the test: answers pings with pongs and queries
/// with empty answers (unless `answer_queries` is off), and counts the pings
/// whose `"IP"` is `watch`.
struct Observer {
    addr: SocketAddrV4,
    sock: UdpSocket,
    pings_from: Arc<Mutex<BTreeSet<SocketAddr>>>,
    watched: Arc<AtomicU64>,
    /// Size of the largest datagram received, and how many carried a
    /// `"Pad"` field (the unknown field the attacks use).
    largest: Arc<AtomicU64>,
    padded: Arc<AtomicU64>,
    /// One message for every [`MARK`] read.
    marks: std::sync::mpsc::Receiver<()>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Observer {
    fn start(host: u8, watch: Option<Ipv4Addr>, answer_queries: bool) -> Observer {
        let addr = node_udp(host);
        let sock = UdpSocket::bind(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let pings_from = Arc::new(Mutex::new(BTreeSet::new()));
        let watched = Arc::new(AtomicU64::new(0));
        let largest = Arc::new(AtomicU64::new(0));
        let padded = Arc::new(AtomicU64::new(0));
        let (big, pad) = (largest.clone(), padded.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let (p, w, s) = (pings_from.clone(), watched.clone(), stop.clone());
        let me = addr.ip().to_string();
        let sock_out = sock.try_clone().unwrap();
        let (mark_tx, marks) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !s.load(Ordering::SeqCst) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if &buf[..n] == MARK {
                    let _ = mark_tx.send(());
                    continue;
                }
                big.fetch_max(n as u64, Ordering::SeqCst);
                let Ok(v) = serde_json::from_slice::<Value>(&buf[..n]) else {
                    continue;
                };
                if v.get("Pad").is_some() {
                    pad.fetch_add(1, Ordering::SeqCst);
                }
                let named = v["IP"].as_str().and_then(|i| i.parse::<Ipv4Addr>().ok());
                match v["Command"].as_i64() {
                    Some(1) if watch.is_some() && named == watch => {
                        w.fetch_add(1, Ordering::SeqCst);
                    }
                    Some(1) => {
                        p.lock().unwrap().insert(from);
                        // As the classic program: a pong, without ports.
                        let pong = json!({"Command": 2, "IP": me});
                        let _ = sock.send_to(&bytes_of(&pong), from);
                    }
                    Some(3) if answer_queries => {
                        let mut hit = json!({"Command": 4, "Contents": [], "IP": me});
                        if let Some(id) = v.get("Id") {
                            hit["Id"] = id.clone();
                        }
                        let _ = sock.send_to(&bytes_of(&hit), from);
                    }
                    _ => {}
                }
            }
        });
        Observer {
            addr,
            sock: sock_out,
            pings_from,
            watched,
            largest,
            padded,
            marks,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits until the observer has read everything queued to it.
    fn drained(&self) {
        drain(self.addr, &self.marks);
    }

    /// Joins through `node` as a classic peer does: a Ping with TTL 1 from
    /// its own address.
    fn join(&self, node: SocketAddrV4) {
        let ping = json!({"Command": 1, "IP": self.addr.ip().to_string(), "TTL": 1});
        let _ = self.sock.send_to(&bytes_of(&ping), node);
    }

    fn pinged_by(&self) -> BTreeSet<SocketAddr> {
        self.pings_from.lock().unwrap().clone()
    }

    fn watched(&self) -> u64 {
        self.watched.load(Ordering::SeqCst)
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits (bounded) until `f` holds.
fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One classic Ping with a TTL of 10⁹ into a mesh of three nodes must die
/// out: within 2 s neither the address it names nor a peer of the mesh
/// receives any more of it, and searches work afterwards.
#[test]
fn ttl_storm_dies_out() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    for (i, d) in dirs.iter().enumerate() {
        write_file(&d.path().join(format!("stormcheck {i}.txt")), b"x");
    }
    let timers = ["--ping-interval", "1s", "--pong-timeout", "500ms"];
    let share = |i: usize| dirs[i].path().to_str().unwrap().to_string();
    let (s0, s1, s2) = (share(0), share(1), share(2));
    let (a_ip, b_ip, c_ip) = (ip_s(11), ip_s(12), ip_s(13));
    let mut args_a = vec!["--share", &s0, "--bind", &a_ip];
    args_a.extend(timers);
    let mut args_b = vec!["--share", &s1, "--bind", &b_ip, "--connect", &a_ip];
    args_b.extend(timers);
    let mut args_c = vec!["--share", &s2, "--bind", &c_ip, "--connect", &a_ip];
    args_c.extend(timers);
    let victim = Victim::bind(15, 20000, 1);
    let observer = Observer::start(14, Some(victim.ip), true);
    let a = Serve::start_with(&args_a, false);
    let _b = Serve::start_with(&args_b, false);
    let _c = Serve::start_with(&args_c, false);
    // The observer joins every node as a classic peer would. The mesh is
    // ready when every node pings the observer in its rounds and A knows
    // B and C.
    let nodes = [node_udp(11), node_udp(12), node_udp(13)];
    wait_until("the mesh to form", Duration::from_secs(20), || {
        for n in nodes {
            observer.join(n);
        }
        // Pacing of the joins: a node pings its peers on its own timer and
        // announces nothing else.
        std::thread::sleep(Duration::from_millis(200));
        let by = observer.pinged_by();
        nodes.iter().all(|n| by.contains(&SocketAddr::V4(*n)))
            && a.log_text().contains(&format!("peer={b_ip}:20000"))
            && a.log_text().contains(&format!("peer={c_ip}:20000"))
    });

    let mut attacker = Attacker::new(16);
    let ping = json!({"Command": 1, "IP": victim.ip.to_string(), "TTL": 1_000_000_000u64});
    attacker.send(node_udp(11), &bytes_of(&ping));
    // A node handles datagrams in order and sends what a ping causes before
    // it handles the next one. Three rounds of probes through the three
    // nodes let every copy of the ping be handled (a copy a node forwards
    // is queued at its peer before the probe that follows); then the
    // observer and the named address have read everything sent so far.
    // Negative check: while every node handles everything sent to it three
    // times more, nothing of the storm may arrive (a storm that does not
    // die out goes on from node to node, and every node forwards its pings
    // to the observer).
    let mut probe = Probe::new(18);
    let mut rounds = |what: &str| {
        for _ in 0..3 {
            for n in nodes {
                assert!(
                    probe.barrier(n, Duration::from_secs(5)),
                    "{n} did not answer a probe {what}"
                );
            }
        }
        observer.drained();
        victim.drained();
    };
    rounds("after the ping");
    let (v1, o1) = (victim.datagrams(), observer.watched());
    let vb1 = victim.bytes();
    rounds("after the storm");
    let (v2, o2) = (victim.datagrams(), observer.watched());
    let vb2 = victim.bytes();
    let sent = attacker.sent_bytes;
    assert!(
        v2 == v1 && o2 == o1 && vb2 <= 3 * sent,
        "a TTL-10^9 ping of {sent} bytes did not die out: while the nodes handled it the named \
         address got {v1} datagrams ({}) and a peer of the mesh {o1} copies; while they handled \
         three more rounds of probes, {} datagrams and {} copies more",
        mb(vb1),
        v2 - v1,
        o2 - o1,
    );

    // Searches still work: every node's file is found.
    let out = run(&[
        "search",
        "stormcheck",
        "--connect",
        &a_ip,
        "--connect",
        &b_ip,
        "--connect",
        &c_ip,
        "--bind",
        &ip_s(17),
        "--wait",
        "3",
        "--json",
    ]);
    let mut names: Vec<String> = json_hits(&out).into_iter().map(|h| h.2).collect();
    names.sort();
    assert_eq!(
        names,
        vec!["stormcheck 0.txt", "stormcheck 1.txt", "stormcheck 2.txt"],
        "search after the storm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Ping of 60 KB with TTL 1 and an unknown field, sent to a node from the
/// address it names: the copies the node forwards to its peers carry no
/// unknown field and are at most 8192 bytes (the most a classic peer reads).
#[test]
fn forwarded_pings_are_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    write_file(&dir.path().join("something.txt"), b"x");
    let share = dir.path().to_str().unwrap();
    let node_ip = ip_s(71);
    let mut args = vec!["--share", share, "--bind", &node_ip];
    args.extend(["--ping-interval", "1s", "--pong-timeout", "500ms"]);
    let node = Serve::start_with(&args, false);
    let target = node_udp(71);
    // A classic peer of the node: it joins and answers the node's pings.
    let peer = Observer::start(74, None, true);
    wait_until("the peer to be pinged", Duration::from_secs(10), || {
        peer.join(target);
        std::thread::sleep(Duration::from_millis(100));
        peer.pinged_by().contains(&SocketAddr::V4(target))
    });
    let mut attacker = Attacker::new(76);
    let me = attacker.sock.local_addr().unwrap();
    let ping = json!({"Command": 1, "IP": me.ip().to_string(), "UdpPort": me.port(),
        "TcpPort": me.port(), "TTL": 1, "Pad": "x".repeat(60_000)});
    attacker.send(target, &bytes_of(&ping));
    let mut probe = Probe::new(76);
    let answered = probe.barrier(target, Duration::from_secs(5));
    // The node forwarded its copies before it answered the probe: once the
    // peer has read what was queued to it, it has seen them all.
    peer.drained();
    let (largest, padded) = (
        peer.largest.load(Ordering::SeqCst),
        peer.padded.load(Ordering::SeqCst),
    );
    let report = format!(
        "a ping of {} bytes with an unknown field: the node's peer received datagrams of up to \
         {largest} bytes, {padded} of them with the unknown field (probe answered: {answered}; \
         the node logged {} peers)",
        attacker.sent_bytes,
        node.log_text().matches("peer joined").count()
    );
    eprintln!("{report}");
    assert!(largest <= 8192 && padded == 0, "{report}");
}

/// Raises the limit of open files so that the test can bind `want` sockets;
/// gives back how many it may bind.
fn allow_sockets(want: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        let need = (want + 512) as libc::rlim_t;
        if lim.rlim_cur < need {
            lim.rlim_cur = need.min(lim.rlim_max);
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            let _ = libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    (lim.rlim_cur as usize).saturating_sub(512).min(want)
}

/// 4096 Pongs naming fake peers at a victim's address, then one Ping of
/// 60 KB with TTL 1: the victim, which never sent anything, gets at most
/// 3x the attacker's bytes, and the node's memory stays bounded.
#[test]
fn fake_peers_and_a_huge_ping_do_not_amplify() {
    let n_fake = allow_sockets(4096);
    assert!(
        n_fake >= 1024,
        "only {n_fake} sockets may be open; raise the limit of open files"
    );
    let dir = tempfile::tempdir().unwrap();
    write_file(&dir.path().join("something.txt"), b"x");
    let share = dir.path().to_str().unwrap();
    let node_ip = ip_s(21);
    let node = Serve::start(&["--share", share, "--bind", &node_ip]);
    let target = node_udp(21);
    let victim = Victim::bind(25, 21000, n_fake);
    let mut attacker = Attacker::new(26);
    let mut probe = Probe::new(26);
    assert!(
        probe.barrier(target, Duration::from_secs(5)),
        "node does not answer"
    );
    let (rss_before, _) = rss_kib(node.child.id());

    // The pongs, in batches that the node's receive buffer holds, each
    // batch followed by a probe (which may go unanswered if the node drops
    // the attacker's traffic; then the next batch goes on after a while).
    let mut unanswered = 0;
    for (i, port) in victim.ports.clone().into_iter().enumerate() {
        let pong =
            json!({"Command": 2, "IP": victim.ip.to_string(), "UdpPort": port, "TcpPort": 10000});
        attacker.send(target, &bytes_of(&pong));
        if i % 128 == 127 && !probe.barrier(target, Duration::from_millis(500)) {
            unanswered += 1;
        }
    }
    // One Ping of 60 KB, TTL 1, whose unknown field a node must not pass on.
    let ping = json!({"Command": 1, "IP": attacker.sock.local_addr().unwrap().ip().to_string(),
        "UdpPort": attacker.port(), "TTL": 1, "Pad": "x".repeat(60_000)});
    attacker.send(target, &bytes_of(&ping));
    // The node answers the probe once it has handled the Ping and sent
    // every copy (longer than this in a debug build when it copies the
    // Ping to 4096 peers; the figure is then what arrived so far).
    let answered = probe.barrier(target, Duration::from_secs(3));
    // Negative check: what reaches the victim after this 1.5 s window of
    // silence (or after 5 s while anything still arrives) is not counted.
    victim.settle(Duration::from_millis(1500), Duration::from_secs(5));
    let (rss, hwm) = rss_kib(node.child.id());
    let got = victim.bytes();
    let sent = attacker.sent_bytes;
    let fake_joined = node
        .log_text()
        .lines()
        .filter(|l| l.contains("peer joined") && l.contains(&format!("peer={}:", victim.ip)))
        .count();
    let report = format!(
        "{} pongs naming fake peers at {} and one ping of 60 KB: the attacker sent {} in {} \
         datagrams, the victim got {} in {} datagrams = {:.1}x; the node logged {fake_joined} \
         of the fake peers joining; node RSS {rss_before} KiB before, {rss} KiB after (peak \
         {hwm} KiB); probes unanswered: {unanswered} of the batches, final probe answered: \
         {answered}",
        victim.ports.len(),
        victim.ip,
        mb(sent),
        attacker.sent_datagrams,
        mb(got),
        victim.datagrams(),
        got as f64 / sent as f64
    );
    eprintln!("{report}");
    assert!(got <= 3 * sent, "amplification: {report}");
    // The peak, not only what is left at the end: a node that held 4096
    // copies of the Ping at once and freed them since is not bounded.
    assert!(rss.max(hwm) < 64 * 1024, "memory: {report}");
    // An address becomes a peer only once it has answered from that address.
    assert_eq!(fake_joined, 0, "{report}");
}

/// Scalable-mode Queries whose `"IP"`/`"UdpPort"` name a victim: the
/// answers (with many matching files) must not go to the victim, neither
/// with one port and many ids nor with one id and many ports (which dodges
/// the duplicate check). The victim gets at most 1x the attacker's bytes.
#[test]
fn scalable_query_answers_do_not_go_to_a_named_victim() {
    let dir = tempfile::tempdir().unwrap();
    // Every answer is computed in the node's event loop; 100 names keep
    // that short in a debug build and still fill two datagrams.
    for i in 0..100 {
        let name = format!("amplify this answer with a long file name number {i:03}.ogg");
        write_file(&dir.path().join(name), b"x");
    }
    let share = dir.path().to_str().unwrap();
    let node_ip = ip_s(31);
    let mut args = vec!["--share", share, "--bind", &node_ip, "--mode", "scalable"];
    args.extend(["--ping-interval", "5s", "--pong-timeout", "1s"]);
    let _node = Serve::start_with(&args, false);
    let target = node_udp(31);
    let mut probe = Probe::new(31);
    assert!(
        probe.barrier(target, Duration::from_secs(5)),
        "node does not answer"
    );

    let query = |victim: SocketAddrV4, id: u64| {
        bytes_of(
            &json!({"Command": 3, "Contents": "amplify", "IP": victim.ip().to_string(),
            "UdpPort": victim.port(), "TcpPort": 10000, "Id": id, "Scalable": 3, "TTL": 0,
            "Hops": 1, "Degree": 0}),
        )
    };
    let mut report = Vec::new();
    let mut failed = false;
    for (phase, host) in [("one port, 8 ids", 35u8), ("one id, 8 ports", 37u8)] {
        let victim = Victim::bind(host, 21000, 8);
        let mut attacker = Attacker::new(36);
        for i in 0..8 {
            let (port_index, id) = if host == 35 {
                (0, 1000 + i as u64)
            } else {
                (i, 2000)
            };
            attacker.send(target, &query(victim.addr(port_index), id));
        }
        let answered = probe.barrier(target, Duration::from_secs(5));
        // Negative check: answers still on their way after 500 ms of
        // silence (at most 5 s) are not counted.
        victim.settle(Duration::from_millis(500), Duration::from_secs(5));
        let (got, sent) = (victim.bytes(), attacker.sent_bytes);
        failed |= got > sent;
        report.push(format!(
            "{phase}: attacker sent {sent} bytes, victim got {got} bytes in {} datagrams = \
             {:.1}x (probe answered: {answered})",
            victim.datagrams(),
            got as f64 / sent as f64
        ));
    }
    let report = report.join("; ");
    eprintln!("{report}");
    assert!(!failed, "answers went to the named victim: {report}");
}

/// Scalable Join Pings naming a victim's ports, then Queries that match no
/// file: the victim's ports must not become neighbours, and what reaches
/// them stays within 3x the attacker's bytes.
#[test]
fn join_pings_naming_a_victim_do_not_make_it_a_neighbour() {
    let dir = tempfile::tempdir().unwrap();
    write_file(&dir.path().join("ordinary file.txt"), b"x");
    let share = dir.path().to_str().unwrap();
    let node_ip = ip_s(41);
    // Neighbours are pinged only after 5 s of silence: the queries below
    // arrive well before.
    let mut args = vec!["--share", share, "--bind", &node_ip, "--mode", "scalable"];
    args.extend(["--ping-interval", "5s", "--pong-timeout", "1s"]);
    let node = Serve::start_with(&args, false);
    let target = node_udp(41);
    let mut probe = Probe::new(41);
    assert!(
        probe.barrier(target, Duration::from_secs(5)),
        "node does not answer"
    );
    let victim = Victim::bind(45, 21000, 40);
    let mut attacker = Attacker::new(46);
    for i in 0..victim.ports.len() {
        let v = victim.addr(i);
        let join = json!({"Command": 1, "IP": v.ip().to_string(), "UdpPort": v.port(),
            "TcpPort": 10000, "TTL": 0, "Scalable": 3, "Join": true, "Degree": 0});
        attacker.send(target, &bytes_of(&join));
    }
    let joined_answered = probe.barrier(target, Duration::from_secs(5));
    let after_joins = victim.bytes();
    // Queries from the attacker's own address for a name nobody has.
    let me = attacker.sock.local_addr().unwrap();
    for id in 0..20u64 {
        let q = json!({"Command": 3, "Contents": "zq no such name", "IP": me.ip().to_string(),
            "UdpPort": me.port(), "TcpPort": 10000, "Id": 5000 + id, "Scalable": 3, "TTL": 0,
            "Hops": 1, "Degree": 0});
        attacker.send(target, &bytes_of(&q));
    }
    let queries_answered = probe.barrier(target, Duration::from_secs(5));
    // Negative check: a 500 ms window of silence (at most 5 s).
    victim.settle(Duration::from_millis(500), Duration::from_secs(5));
    let (got, sent) = (victim.bytes(), attacker.sent_bytes);
    let log = node.log_text();
    let victim_neighbours: BTreeSet<&str> = log
        .lines()
        .filter(|l| l.contains("peer joined") && l.contains(&format!("peer={}:", victim.ip)))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("peer=")))
        .collect();
    let report = format!(
        "{} join pings naming {} then 20 queries matching nothing: the attacker sent {sent} \
         bytes, the victim got {after_joins} bytes after the joins and {got} bytes in {} \
         datagrams in all = {:.1}x; {} of its ports became neighbours (probes answered: \
         {joined_answered}, {queries_answered})",
        victim.ports.len(),
        victim.ip,
        victim.datagrams(),
        got as f64 / sent as f64,
        victim_neighbours.len()
    );
    eprintln!("{report}");
    assert!(got <= 3 * sent, "amplification: {report}");
    assert!(victim_neighbours.is_empty(), "{report}");
}

/// `rutella search --json` in scalable mode through `via`, from `bind`:
/// its exit status and the names found.
fn scalable_search(text: &str, via: &str, bind: &str) -> (std::process::Output, BTreeSet<String>) {
    let out = run(&[
        "search",
        text,
        "--connect",
        via,
        "--bind",
        bind,
        "--mode",
        "scalable",
        // Join the node given, not a peer a walk from it leads to.
        "--join-walk",
        "0",
        "--ping-interval",
        "30s",
        "--pong-timeout",
        "1s",
        "--wait",
        "4",
        "--json",
    ]);
    let names = json_hits(&out).into_iter().map(|h| h.2).collect();
    (out, names)
}

/// Spoofed `"Accept": false` Pongs, sent from a third address and naming a
/// node's neighbour, must not cut the link: a search through the node finds
/// the same files afterwards.
///
/// A holds the files and keeps one neighbour, B, so that a searcher joining
/// B cannot become A's neighbour and finds A's files only through B. The
/// spoofed pongs go to B only: cutting the link on A's side too would free
/// A to accept the searcher directly, which would hide the attack here.
#[test]
fn spoofed_refusals_do_not_cut_a_link() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let files: BTreeSet<String> = (0..100).map(|i| format!("linkcheck {i:03}.txt")).collect();
    for f in &files {
        write_file(&a_dir.path().join(f), b"x");
    }
    let (a_share, b_share) = (
        a_dir.path().to_str().unwrap(),
        b_dir.path().to_str().unwrap(),
    );
    let (a_ip, b_ip) = (ip_s(51), ip_s(52));
    // Neighbours ping each other only after 30 s of silence: the link,
    // once cut, is not repaired within the test. Both are ultrapeers: the
    // link under attack is one between neighbours of the upper tier (a node
    // of tier auto starts as a leaf, and a leaf takes no link of its own).
    let timers = [
        "--mode",
        "scalable",
        "--tier",
        "ultrapeer",
        "--ping-interval",
        "30s",
        "--pong-timeout",
        "1s",
    ];
    // A joins B (not the other way round: a node below its minimum degree
    // asks the peers it was told to join through again at once).
    let mut args_a = vec!["--share", a_share, "--bind", &a_ip, "--max-degree", "1"];
    args_a.extend(["--connect", &b_ip]);
    args_a.extend(timers);
    let mut args_b = vec!["--share", b_share, "--bind", &b_ip];
    args_b.extend(timers);
    let b = Serve::start_with(&args_b, false);
    let a = Serve::start_with(&args_a, false);
    a.wait_log(&format!("peer={b_ip}:20000"), Duration::from_secs(10));
    b.wait_log(&format!("peer={a_ip}:20000"), Duration::from_secs(10));

    let (out, before) = scalable_search("linkcheck", &b_ip, &ip_s(57));
    assert_eq!(
        before,
        files,
        "search through B before the attack: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut attacker = Attacker::new(56);
    let refusal = json!({"Command": 2, "IP": a_ip, "UdpPort": 20000, "TcpPort": 10000,
        "Scalable": 3, "Accept": false, "Degree": 0});
    for _ in 0..2 {
        attacker.send(node_udp(52), &bytes_of(&refusal));
    }
    let mut probe = Probe::new(56);
    let answered = probe.barrier(node_udp(52), Duration::from_secs(5));

    let (out, after) = scalable_search("linkcheck", &b_ip, &ip_s(58));
    let cut = b
        .log_text()
        .contains(&format!("peer left peer={a_ip}:20000"));
    assert_eq!(
        after.len(),
        files.len(),
        "after two spoofed refusals ({} bytes) the search through B found {} of {} files \
         (B logged the link to A as cut: {cut}; probe answered: {answered}): {}",
        attacker.sent_bytes,
        after.len(),
        files.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(after, before);
}

/// QueryHits sprayed at a searching process from an unrelated address,
/// naming the peer it asked (with an attacker-chosen TCP port) or a peer
/// that has not answered yet, must not be shown as hits.
#[test]
fn injected_query_hits_are_not_shown() {
    let dir = tempfile::tempdir().unwrap();
    let genuine: BTreeSet<String> = (0..5).map(|i| format!("genuine {i}.txt")).collect();
    for f in &genuine {
        write_file(&dir.path().join(f), b"x");
    }
    let share = dir.path().to_str().unwrap();
    let node_ip = ip_s(61);
    let mut args = vec!["--share", share, "--bind", &node_ip];
    args.extend(["--ping-interval", "1s", "--pong-timeout", "500ms"]);
    let _node = Serve::start_with(&args, false);
    // A classic-style peer that answers pings but never queries, so that
    // the search runs its full time, which the attacker has to hit.
    let slow = Observer::start(68, None, false);
    let searcher = node_udp(67);

    let stop = Arc::new(AtomicBool::new(false));
    let spray = {
        let stop = stop.clone();
        let (node_ip, slow_ip) = (node_ip.clone(), slow.addr.ip().to_string());
        std::thread::spawn(move || {
            let mut attacker = Attacker::new(66);
            let me = attacker.sock.local_addr().unwrap();
            let fakes = [
                json!({"Command": 4, "Contents": ["genuine evil.exe"], "IP": node_ip,
                    "UdpPort": 20000, "TcpPort": 6666}),
                json!({"Command": 4, "Contents": ["genuine evil classic.exe"], "IP": node_ip}),
                json!({"Command": 4, "Contents": ["genuine evil slow.exe"], "IP": slow_ip,
                    "TcpPort": 6666}),
                json!({"Command": 4, "Contents": ["genuine evil self.exe"],
                    "IP": me.ip().to_string(), "UdpPort": me.port(), "TcpPort": 6666}),
            ];
            let deadline = Instant::now() + Duration::from_secs(15);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                for f in &fakes {
                    attacker.send(searcher, &bytes_of(f));
                }
                // Pacing of the attack, not a wait.
                std::thread::sleep(Duration::from_millis(5));
            }
            attacker.sent_datagrams
        })
    };
    let out = run(&[
        "search",
        "genuine",
        "--connect",
        &node_ip,
        "--connect",
        &slow.addr.ip().to_string(),
        "--bind",
        &searcher.ip().to_string(),
        "--wait",
        "2",
        "--json",
    ]);
    stop.store(true, Ordering::SeqCst);
    let sprayed = spray.join().unwrap();
    let hits = json_hits(&out);
    let bad: Vec<&(String, String, String)> = hits
        .iter()
        .filter(|(udp, tcp, name)| {
            udp != &format!("{node_ip}:20000")
                || tcp != &format!("{node_ip}:10000")
                || !genuine.contains(name)
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} hits shown were injected by the attacker ({sprayed} datagrams sprayed): {bad:?}",
        bad.len(),
        hits.len()
    );
    let names: BTreeSet<String> = hits.into_iter().map(|h| h.2).collect();
    assert_eq!(
        names,
        genuine,
        "the search still finds the genuine files: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
