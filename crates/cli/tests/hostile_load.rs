//! A `rutella serve` process sharing 20,000 files, with its default
//! settings, under 100 one-letter queries a second from a peer: it keeps
//! answering pings from another address within 1 s. (The node's own tests
//! check the same with the per-source budgets off, which isolates the
//! answering off the event loop; this one is the node as users run it.)
//!
//! Address plan: this file uses 127.0.41.0/24 for the node and the
//! attacker, and 127.0.42.0/24 for the pinger, so that limits a node keeps
//! per source prefix do not charge the attacker's traffic to it.

mod common;
use common::*;
use serde_json::Value;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

/// Reads one datagram from `node` (others are skipped), answering the
/// node's pings as a peer does; gives back its JSON.
fn recv_from_node(s: &UdpSocket, node: SocketAddrV4, deadline: Instant) -> Option<Value> {
    let mut buf = vec![0u8; 65_536];
    let me = s.local_addr().unwrap();
    while Instant::now() < deadline {
        s.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        let Ok((n, from)) = s.recv_from(&mut buf) else {
            continue;
        };
        if from != SocketAddr::V4(node) {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<Value>(&buf[..n]) else {
            continue;
        };
        if v["Command"] == 1 {
            let pong = format!(
                r#"{{"Command": 2, "IP": "{}", "Echo": {}, "TcpPort": 1, "UdpPort": {}}}"#,
                me.ip(),
                v["Nonce"],
                me.port()
            );
            s.send_to(pong.as_bytes(), node).unwrap();
        }
        return Some(v);
    }
    None
}

#[test]
fn pings_are_answered_while_a_peer_sends_one_letter_queries() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    // Every name holds an "a": each query matches the most an answer
    // names (500).
    for i in 0..20_000 {
        std::fs::File::create(share.join(format!("track {i:05} a b c.ogg"))).unwrap();
    }
    let node_ip = Ipv4Addr::new(127, 0, 41, 1);
    let node = Serve::start_with(
        &["--share", share.to_str().unwrap(), "--bind", "127.0.41.1"],
        false,
    );
    let target = SocketAddrV4::new(node_ip, 20000);

    // The attacker becomes a peer (it answers the node's probe), then asks
    // for "a" until the node answers with many names: the library is in.
    let attacker = UdpSocket::bind((Ipv4Addr::new(127, 0, 41, 2), 0)).unwrap();
    let ap = attacker.local_addr().unwrap().port();
    let query = move |id: u64| {
        format!(
            r#"{{"Command": 3, "Contents": "a", "IP": "127.0.41.2", "Id": {id}, "TcpPort": 1, "UdpPort": {ap}}}"#
        )
    };
    let ping =
        format!(r#"{{"Command": 1, "IP": "127.0.41.2", "TTL": 0, "TcpPort": 1, "UdpPort": {ap}}}"#);
    attacker.send_to(ping.as_bytes(), target).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut loaded = false;
    let mut id = 0;
    while !loaded && Instant::now() < deadline {
        id += 1;
        attacker.send_to(query(id).as_bytes(), target).unwrap();
        let until = Instant::now() + Duration::from_millis(500);
        while let Some(v) = recv_from_node(&attacker, target, until) {
            if v["Command"] == 4 && v["Contents"].as_array().is_some_and(|c| c.len() > 50) {
                loaded = true;
            }
        }
    }
    assert!(loaded, "the node never answered with many names");

    // 100 queries a second for as long as the pings take; the attacker's
    // socket is read by a thread of its own, counting answer datagrams.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answers = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let flood = {
        let (stop, answers) = (stop.clone(), answers.clone());
        let sock = attacker.try_clone().unwrap();
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut sent = 0u64;
            let mut buf = vec![0u8; 65_536];
            sock.set_read_timeout(Some(Duration::from_millis(2)))
                .unwrap();
            // Bounded: the pinger ends it, or 30 s pass.
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && start.elapsed() < Duration::from_secs(30)
            {
                let due = (start.elapsed().as_secs_f64() * 100.0) as u64;
                while sent < due {
                    sent += 1;
                    let _ = sock.send_to(query(1_000 + sent).as_bytes(), target);
                }
                if let Ok((n, _)) = sock.recv_from(&mut buf) {
                    if buf[..n].starts_with(br#"{"Command": 4"#) {
                        answers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
            sent
        })
    };

    // Let a backlog build up, then ping from another prefix, ten times.
    // Part of the load scenario (a second of flood), not a wait for an
    // event; the pings are paced over the flood in the same way.
    std::thread::sleep(Duration::from_secs(1));
    let pinger = UdpSocket::bind((Ipv4Addr::new(127, 0, 42, 3), 0)).unwrap();
    let pp = pinger.local_addr().unwrap().port();
    let ping =
        format!(r#"{{"Command": 1, "IP": "127.0.42.3", "TTL": 0, "TcpPort": 1, "UdpPort": {pp}}}"#);
    let mut latencies = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        pinger.send_to(ping.as_bytes(), target).unwrap();
        let mut answered = None;
        while let Some(v) = recv_from_node(&pinger, target, t + Duration::from_secs(1)) {
            if v["Command"] == 2 {
                answered = Some(t.elapsed());
                break;
            }
        }
        latencies.push(answered);
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = flood.join().unwrap();
    let ok = latencies.iter().filter(|l| l.is_some()).count();
    let answers = answers.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "queries sent: {sent}, answer datagrams received by the attacker: {answers}, \
         pongs within 1 s: {ok}/10, latencies: {latencies:?}"
    );
    assert!(
        answers > 0,
        "the attacker's queries were not answered at all"
    );
    assert!(ok >= 9, "only {ok} of 10 pings answered within 1 s");
    drop(node);
}
