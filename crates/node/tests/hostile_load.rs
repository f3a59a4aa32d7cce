//! A node under hostile load (real sockets on loopback, in one process):
//! a stream of one-letter queries against a big library does not stop it
//! answering pings, and a flood of datagrams from one address does not stop
//! it answering searches from another.
//!
//! Address plan: this file uses 127.0.40.0/24, ports the system picks.

use rutella_node::{Node, NodeConfig};
use rutella_proto::BudgetConfig;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The tests of this file measure how a node copes with load: they run
/// one at a time, so that one's load does not land on the other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 40, last)
}

fn config(bind: Ipv4Addr, share: &Path) -> NodeConfig {
    NodeConfig {
        shares: vec![share.to_path_buf()],
        bind: bind.into(),
        udp_port: 0,
        tcp_port: 0,
        watch: false,
        ..NodeConfig::default()
    }
}

/// A UDP socket on `addr` whose reads give up after `timeout`.
fn socket(addr: Ipv4Addr, timeout: Duration) -> UdpSocket {
    let s = UdpSocket::bind((addr, 0)).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    s
}

fn port(s: &UdpSocket) -> u16 {
    s.local_addr().unwrap().port()
}

/// Waits for a datagram containing `needle`, until `deadline`; other
/// datagrams are skipped.
fn wait_for(s: &UdpSocket, needle: &str, deadline: Instant) -> bool {
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            if String::from_utf8_lossy(&buf[..n]).contains(needle) {
                return true;
            }
        }
    }
    false
}

/// Makes `s` a peer of the node at `target`, as any stranger must be before
/// its queries are answered: it pings the node and answers the node's ping
/// (echoing its nonce) from the same address.
fn prove(s: &UdpSocket, target: SocketAddr) {
    let me = s.local_addr().unwrap();
    let ping = format!(
        r#"{{"Command": 1, "IP": "{}", "TTL": 0, "TcpPort": 1, "UdpPort": {}}}"#,
        me.ip(),
        me.port()
    );
    s.send_to(ping.as_bytes(), target).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < deadline {
        let Ok((n, from)) = s.recv_from(&mut buf) else {
            continue;
        };
        if from != target {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&buf[..n]) else {
            continue;
        };
        if v["Command"] == 1 {
            let pong = format!(
                r#"{{"Command": 2, "IP": "{}", "Echo": {}, "TcpPort": 1, "UdpPort": {}}}"#,
                me.ip(),
                v["Nonce"],
                me.port()
            );
            s.send_to(pong.as_bytes(), target).unwrap();
            return;
        }
    }
    panic!("the node at {target} never pinged {me}");
}

/// Sends `datagrams` in turn from `from` to `to` at about `rate` a second
/// until `stop`; counts what was sent in `sent`.
fn flood(
    from: UdpSocket,
    to: SocketAddr,
    datagrams: Vec<Vec<u8>>,
    rate: u64,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    limit: Duration,
) -> std::thread::JoinHandle<()> {
    from.connect(to).unwrap();
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut n: u64 = 0;
        while !stop.load(Ordering::Relaxed) && start.elapsed() < limit {
            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            if n >= due {
                // Pacing: ahead of the rate, so wait a little.
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            // Catch up in small batches, re-checking the stop flag.
            for _ in 0..(due - n).min(1000) {
                let _ = from.send(&datagrams[(n % datagrams.len() as u64) as usize]);
                n += 1;
            }
            sent.store(n, Ordering::Relaxed);
        }
        sent.store(n, Ordering::Relaxed);
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_are_answered_while_one_letter_queries_hit_a_big_library() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    // 20,000 empty files; every name holds an "a", so each query for "a"
    // matches the most an answer names (500).
    for i in 0..20_000 {
        std::fs::File::create(share.join(format!("track {i:05} a b c.ogg"))).unwrap();
    }
    let mut cfg = config(ip(1), &share);
    // This test is about answering off the event loop, not about budgets.
    cfg.overlay.budget = BudgetConfig::unlimited();
    let node = Node::start(cfg).await.unwrap();
    let target = node.client().udp_addr();
    assert_eq!(node.client().library().len(), 20_000);

    // The attacker: 100 one-letter queries a second, as a rutella peer
    // (so that answers carry sizes and hashes), reading nothing back.
    let attacker = socket(ip(2), Duration::from_millis(10));
    prove(&attacker, target);
    let query = |i: u64| {
        format!(
            r#"{{"Command": 3, "Contents": "a", "IP": "127.0.40.2", "Id": {i}, "TcpPort": 1, "UdpPort": {}}}"#,
            port(&attacker)
        )
        .into_bytes()
    };
    let queries: Vec<Vec<u8>> = (0..1000).map(query).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flooder = flood(
        attacker,
        target,
        queries,
        100,
        stop.clone(),
        sent.clone(),
        Duration::from_secs(20),
    );

    let ponged = tokio::task::spawn_blocking(move || {
        // Let a backlog build up first, as it would on the old code. Part of
        // the load scenario (a second of flood), not a wait for an event.
        std::thread::sleep(Duration::from_secs(1));
        let pinger = socket(ip(3), Duration::from_secs(1));
        let ping = format!(
            r#"{{"Command": 1, "IP": "127.0.40.3", "TTL": 0, "TcpPort": 1, "UdpPort": {}}}"#,
            port(&pinger)
        );
        let mut latencies = Vec::new();
        for _ in 0..10 {
            let t = Instant::now();
            pinger.send_to(ping.as_bytes(), target).unwrap();
            let ok = wait_for(&pinger, r#""Command": 2"#, t + Duration::from_secs(1));
            latencies.push(ok.then(|| t.elapsed()));
            // Pacing: the pings are spread over the flood.
            std::thread::sleep(Duration::from_millis(200));
        }
        latencies
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    flooder.join().unwrap();
    let answered = ponged.iter().filter(|l| l.is_some()).count();
    eprintln!(
        "queries sent: {}, pongs within 1 s: {answered}/10, latencies: {ponged:?}",
        sent.load(Ordering::Relaxed)
    );
    assert!(
        answered >= 9,
        "only {answered} of 10 pings answered within 1 s"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_from_another_address_succeed_during_a_flood() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("the needle.txt"), b"found").unwrap();
    for i in 0..50 {
        std::fs::write(share.join(format!("hay {i}.txt")), b"hay").unwrap();
    }
    let node = Node::start(config(ip(11), &share)).await.unwrap();
    let client = node.client();
    let target = client.udp_addr();

    // The flood: pings (each would be answered and forwarded), queries
    // (each a library lookup) and junk, from one address, 50,000 a second
    // for 6 s. (An unoptimised test build of the node reads about 100,000
    // a second on a busy machine; the release build keeps up with 100,000
    // a second using a fifth of a core, see bench/flood.sh.)
    let attacker = socket(ip(13), Duration::from_millis(10));
    prove(&attacker, target);
    let searcher = socket(ip(12), Duration::from_millis(250));
    prove(&searcher, target);
    let ap = port(&attacker);
    let datagrams: Vec<Vec<u8>> = vec![
        format!(r#"{{"Command": 1, "IP": "127.0.40.13", "TTL": 1, "TcpPort": 1, "UdpPort": {ap}}}"#)
            .into_bytes(),
        format!(r#"{{"Command": 3, "Contents": "e", "IP": "127.0.40.13", "Id": 1, "TcpPort": 1, "UdpPort": {ap}}}"#)
            .into_bytes(),
        b"{\"Command\": 9, \"junk\": [1, 2, 3]}".to_vec(),
    ];
    // What the node sends back to the attacker (pongs, forwarded pings,
    // answers), counted by a thread that reads all the time.
    let back = attacker.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let replies = Arc::new(AtomicU64::new(0));
    // Told each time the reader finds its socket empty.
    let (idle_tx, idle) = std::sync::mpsc::sync_channel::<()>(1);
    let reader = {
        let (stop, replies) = (stop.clone(), replies.clone());
        std::thread::spawn(move || {
            back.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let mut buf = vec![0u8; 65_536];
            while !stop.load(Ordering::Relaxed) {
                if back.recv_from(&mut buf).is_ok() {
                    replies.fetch_add(1, Ordering::Relaxed);
                } else {
                    let _ = idle_tx.try_send(());
                }
            }
        })
    };
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let flooder = flood(
        attacker,
        target,
        datagrams,
        50_000,
        stop.clone(),
        sent.clone(),
        Duration::from_secs(6),
    );

    let found = tokio::task::spawn_blocking(move || {
        // Pacing: the first search comes once the flood is under way.
        std::thread::sleep(Duration::from_millis(250));
        let mut ok = 0;
        let start = Instant::now();
        for k in 0..10u64 {
            // One search every 500 ms, spread over the flood.
            let slot = start + Duration::from_millis(500 * k);
            std::thread::sleep(slot.saturating_duration_since(Instant::now()));
            let id = 1000 + k;
            let q = format!(
                r#"{{"Command": 3, "Contents": "needle", "IP": "127.0.40.12", "Id": {id}, "TcpPort": 1, "UdpPort": {}}}"#,
                port(&searcher)
            );
            // Read what came meanwhile, as a peer reading its socket all
            // the time would (the node forwards the flood's pings to its
            // peers), so that a full buffer does not lose the answer.
            searcher.set_nonblocking(true).unwrap();
            let mut junk = vec![0u8; 65_536];
            while searcher.recv_from(&mut junk).is_ok() {}
            searcher.set_nonblocking(false).unwrap();
            let t = Instant::now();
            searcher.send_to(q.as_bytes(), target).unwrap();
            // One try per search, as a user's search is one query per peer,
            // answered within 490 ms (a margin for a machine busy with
            // other work: with 240 ms, 8 of 10 came in time while a release
            // build ran beside; with the budgets disabled, 4 of 10 come in
            // 490 ms).
            if wait_for(&searcher, &format!(r#""Id": {id}"#), t + Duration::from_millis(490)) {
                ok += 1;
            }
        }
        ok
    })
    .await
    .unwrap();
    let during = started.elapsed();
    // The flood runs its 6 s.
    flooder.join().unwrap();
    let n = sent.load(Ordering::Relaxed);
    let flood_secs = started.elapsed().as_secs_f64();
    // The last replies: a pong to a ping sent after the flood proves the
    // node handled the flood (it handles datagrams in order and sends what
    // each causes before the next), and the reader finding its socket empty
    // after that proves it counted all that was sent before.
    let last = tokio::task::spawn_blocking(move || {
        let pinger = socket(ip(14), Duration::from_secs(1));
        let ping = format!(
            r#"{{"Command": 1, "IP": "127.0.40.14", "TTL": 0, "TcpPort": 1, "UdpPort": {}}}"#,
            port(&pinger)
        );
        let mut ponged = false;
        for _ in 0..5 {
            let t = Instant::now();
            pinger.send_to(ping.as_bytes(), target).unwrap();
            if wait_for(&pinger, r#""Command": 2"#, t + Duration::from_secs(2)) {
                ponged = true;
                break;
            }
        }
        assert!(ponged, "the node did not answer a ping after the flood");
        while idle.try_recv().is_ok() {}
        idle.recv_timeout(Duration::from_secs(10))
            .expect("the reader never found its socket empty");
    });
    last.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let replies = replies.load(Ordering::Relaxed);
    let drops = client.budget_drops().await.unwrap();
    eprintln!(
        "flood: {n} datagrams sent (about {:.0}/s), searches answered {found}/10, replies to the attacker: {replies}, dropped by budget: {drops:?}",
        n as f64 / flood_secs
    );
    assert!(
        during < Duration::from_secs(6),
        "the searches outlasted the flood"
    );
    assert!(
        found >= 9,
        "only {found} of 10 searches answered during the flood"
    );
    assert!(drops.datagrams > 0, "the flood was not over budget");
    // The attacker's datagrams the budget lets through (its burst and its
    // rate over the flood) are all it gets answers to: at most two replies
    // each (a pong and a forwarded copy of a ping), where without budgets
    // every third datagram of the flood is a ping answered twice.
    let b = BudgetConfig::default().datagrams.source;
    let passed = u64::from(b.burst) + u64::from(b.per_second) * flood_secs.ceil() as u64;
    assert!(
        replies <= 2 * passed,
        "the node sent {replies} datagrams back to the flooding address (budget lets {passed} through)"
    );
    node.shutdown().await;
}
