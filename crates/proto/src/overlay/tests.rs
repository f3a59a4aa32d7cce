use super::*;
use crate::shared::nonce_of;
use crate::testnet::Net;
use std::time::Duration;

fn cfg(port: u16) -> Config {
    Config {
        udp_port: port,
        tcp_port: port + 1,
        ping_interval: Duration::from_millis(200),
        pong_timeout: Duration::from_millis(50),
        search_timeout: Duration::from_millis(100),
        ..Config::default()
    }
}

/// `n` classic overlays on 127.0.0.1, each sharing a file of its own
/// and a common one.
fn classic_net(n: usize) -> Net {
    let now = Instant::now();
    let nodes = (0..n)
        .map(|i| {
            let addr = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 20000 + 2 * i as u16);
            let mut o = Overlay::new(cfg(addr.port()), now);
            o.add_own_ip(*addr.ip());
            (
                addr,
                o,
                vec![format!("File-{i}.txt"), "common.TXT".to_string()],
            )
        })
        .collect();
    Net::new(now, nodes)
}

/// Every node joins through node 0, one after the other.
fn star(n: usize) -> Net {
    let mut net = classic_net(n);
    let first = net.nodes[0].0;
    for i in 1..n {
        let now = net.now;
        net.nodes[i].1.connect(now, first, first.port() + 1);
        net.pump();
    }
    net
}

#[test]
fn everyone_comes_to_know_everyone() {
    let mut net = star(5);
    net.advance(Duration::from_millis(450));
    for i in 0..5 {
        let mut expect: Vec<_> = net
            .nodes
            .iter()
            .map(|n| n.0)
            .filter(|a| *a != net.nodes[i].0)
            .collect();
        expect.sort();
        assert_eq!(net.peer_set(i), expect, "node {i}");
        assert!(net.nodes[i]
            .1
            .peers()
            .iter()
            .all(|p| p.rutella && p.tcp_port == p.udp.port() + 1));
    }
}

#[test]
fn a_silent_peer_is_removed_after_one_round() {
    let mut net = star(4);
    net.advance(Duration::from_millis(250));
    let dead = net.nodes[3].0;
    assert!(net.peer_set(0).contains(&dead));
    net.down.insert(dead);
    // Next round starts by t=400ms at the latest and ends 50ms later.
    net.advance(Duration::from_millis(210));
    for i in 0..3 {
        assert!(
            !net.peer_set(i).contains(&dead),
            "node {i} still lists the dead peer"
        );
        assert_eq!(net.peer_set(i).len(), 2);
    }
}

#[test]
fn search_reaches_every_peer_and_finishes_when_all_answered() {
    let mut net = star(4);
    net.advance(Duration::from_millis(250));
    let now = net.now;
    let id = net.nodes[1].1.search(now, "FILE-");
    net.pump();
    let mine: Vec<_> = net
        .results
        .iter()
        .filter(|r| r.0 == 1 && r.1 == id)
        .collect();
    assert_eq!(mine.len(), 3, "one answer per peer");
    let mut names: Vec<String> = mine.iter().flat_map(|r| r.3.clone()).collect();
    names.sort();
    assert_eq!(names, vec!["File-0.txt", "File-2.txt", "File-3.txt"]);
    assert!(
        net.finished.contains(&(1, id)),
        "finished early once all answered"
    );
}

#[test]
fn empty_answers_are_answers_and_searches_time_out() {
    let mut net = star(3);
    net.advance(Duration::from_millis(250));
    net.down.insert(net.nodes[2].0);
    let now = net.now;
    let id = net.nodes[0].1.search(now, "no such thing");
    net.pump();
    let mine: Vec<_> = net.results.iter().filter(|r| r.1 == id).collect();
    assert_eq!(mine.len(), 1);
    assert!(mine[0].3.is_empty());
    assert!(
        !net.finished.contains(&(0, id)),
        "still waits for the silent peer"
    );
    net.advance(Duration::from_millis(101));
    assert!(net.finished.contains(&(0, id)));
}

fn drain(o: &mut Overlay) -> Vec<Transmit> {
    std::iter::from_fn(|| o.poll_transmit()).collect()
}

/// An overlay at 127.0.0.2:20000 with one classic peer, 127.0.0.3.
fn with_classic_peer(now: Instant) -> (Overlay, SocketAddrV4) {
    let mut o = Overlay::new(cfg(20000), now);
    o.add_own_ip(Ipv4Addr::new(127, 0, 0, 2));
    let known = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 3), 20000);
    o.connect(now, known, 10000);
    drain(&mut o);
    o.handle_datagram(
        now,
        SocketAddr::V4(known),
        br#"{"Command": 2, "IP": "127.0.0.3"}"#,
    );
    assert_eq!(o.peers().len(), 1);
    drain(&mut o);
    while o.poll_event().is_some() {}
    (o, known)
}

#[test]
fn pings_are_answered_at_their_source_and_forwarded_once_it_answered() {
    let now = Instant::now();
    let (mut o, known) = with_classic_peer(now);
    let src: SocketAddrV4 = "127.0.0.9:5555".parse().unwrap();
    // "IP" names someone else: only the source matters.
    let ping = br#"{"Command": 1, "IP": "127.0.0.4", "TTL": 1000000000, "Extra": 5}"#;
    o.handle_datagram(now, SocketAddr::V4(src), ping);
    let sent = drain(&mut o);
    assert!(sent.iter().all(|t| t.dest == src), "{sent:?}");
    assert!(matches!(sent[0].message, Message::Pong(_)));
    let Message::Ping(probe) = &sent[1].message else {
        panic!("{sent:?}")
    };
    let nonce = nonce_of(&probe.extra).unwrap();
    assert_eq!(sent.len(), 2);
    // It answers from that address: it is a peer, and its ping goes on
    // with TTL 0, naming it as seen and nothing we do not know.
    let pong = format!(r#"{{"Command": 2, "IP": "127.0.0.9", "Echo": {nonce}, "UdpPort": 5555}}"#);
    o.handle_datagram(now, SocketAddr::V4(src), pong.as_bytes());
    assert!(o.peers().iter().any(|p| p.udp == src));
    let fwd = drain(&mut o);
    assert_eq!(fwd.len(), 1, "{fwd:?}");
    assert_eq!(fwd[0].dest, known, "never back to its sender");
    assert_eq!(
        fwd[0].encode(Ipv4Addr::new(9, 9, 9, 9)),
        br#"{"Command": 1, "IP": "127.0.0.9", "TTL": 0, "UdpPort": 5555}"#
    );
    // The same originator again soon after: answered, not forwarded.
    o.handle_datagram(now, SocketAddr::V4(src), ping);
    let again = drain(&mut o);
    assert_eq!(again.len(), 1);
    assert!(matches!(again[0].message, Message::Pong(_)));
}

#[test]
fn a_forwarded_ping_makes_one_probe_of_its_originator() {
    let now = Instant::now();
    let (mut o, known) = with_classic_peer(now);
    let fwd = br#"{"Command": 1, "IP": "127.0.0.4", "TTL": 0}"#;
    for _ in 0..5 {
        o.handle_datagram(now, SocketAddr::V4(known), fwd);
    }
    let sent = drain(&mut o);
    let origin: SocketAddrV4 = "127.0.0.4:20000".parse().unwrap();
    let probes: Vec<_> = sent.iter().filter(|t| t.dest == origin).collect();
    assert_eq!(probes.len(), 1, "{sent:?}");
    assert!(matches!(probes[0].message, Message::Ping(_)));
    // From a stranger, a forwarded ping makes no probe at all.
    o.handle_datagram(
        now,
        "127.0.0.8:20000".parse().unwrap(),
        br#"{"Command": 1, "IP": "127.0.0.5", "TTL": 0}"#,
    );
    assert!(drain(&mut o)
        .iter()
        .all(|t| t.dest != "127.0.0.5:20000".parse().unwrap()));
}

#[test]
fn an_unproven_address_gets_at_most_three_times_its_bytes() {
    let now = Instant::now();
    let (mut o, _) = with_classic_peer(now);
    let attacker: SocketAddr = "127.0.0.66:4000".parse().unwrap();
    let mut received = 0;
    for i in 0..4096u32 {
        let m = format!(
            r#"{{"Command": 2, "IP": "127.1.{}.{}", "UdpPort": {}}}"#,
            i / 250,
            i % 250,
            1000 + i % 50
        );
        received += m.len();
        o.handle_datagram(now, attacker, m.as_bytes());
        let q = br#"{"Command": 3, "Contents": "a", "IP": "127.0.0.99"}"#;
        received += q.len();
        o.handle_datagram(now, attacker, q);
    }
    let sent = drain(&mut o);
    assert!(sent.iter().all(|t| SocketAddr::V4(t.dest) == attacker));
    let bytes: usize = sent
        .iter()
        .map(|t| t.encode(Ipv4Addr::BROADCAST).len())
        .sum();
    assert!(bytes <= 3 * received, "{bytes} for {received}");
    assert!(
        o.peers().iter().all(|p| p.udp.ip().octets()[1] != 1),
        "named addresses are not peers"
    );
    assert!(std::iter::from_fn(|| o.poll_event()).all(|e| !matches!(e, Event::Query(_))));
    // Over-long datagrams are dropped unread.
    let big = format!(
        r#"{{"Command": 1, "IP": "127.0.0.9", "TTL": 1, "X": "{}"}}"#,
        "a".repeat(60_000)
    );
    o.handle_datagram(now, attacker, big.as_bytes());
    assert!(o.poll_transmit().is_none());
}

#[test]
fn default_search_ids_are_not_predictable() {
    let now = Instant::now();
    let mut a = Overlay::new(Config::default(), now);
    let mut b = Overlay::new(Config::default(), now);
    assert_ne!(a.search(now, "x"), b.search(now, "x"));
}

#[test]
fn a_query_from_an_unproven_address_is_answered_once_it_answered() {
    let now = Instant::now();
    let mut o = Overlay::new(cfg(20000), now);
    let src: SocketAddr = "127.0.0.7:20000".parse().unwrap();
    o.handle_datagram(
        now,
        src,
        br#"{"Command": 3, "Contents": "cl", "IP": "127.0.0.99"}"#,
    );
    assert!(std::iter::from_fn(|| o.poll_event()).all(|e| !matches!(e, Event::Query(_))));
    let probe = o.poll_transmit().unwrap();
    assert_eq!(SocketAddr::V4(probe.dest), src);
    // A classic peer answers the probe with a plain pong.
    o.handle_datagram(now, src, br#"{"Command": 2, "IP": "127.0.0.7"}"#);
    let mut q = None;
    while let Some(e) = o.poll_event() {
        if let Event::Query(iq) = e {
            q = Some(iq);
        }
    }
    let q = q.expect("query event");
    assert_eq!(q.text, "cl");
    o.answer_query(&q, &[]);
    let t = o.poll_transmit().unwrap();
    assert_eq!(SocketAddr::V4(t.dest), src);
    assert!(t
        .encode(Ipv4Addr::new(127, 0, 0, 2))
        .starts_with(br#"{"Command": 4, "Contents": [], "IP": "127.0.0.2""#));
    assert_eq!(o.peers()[0].udp, "127.0.0.7:20000".parse().unwrap());
    assert!(!o.peers()[0].rutella);
}

#[test]
fn classic_hits_without_id_go_to_the_newest_search() {
    let now = Instant::now();
    let mut o = Overlay::new(cfg(20000), now);
    let classic = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 3), 20000);
    o.connect(now, classic, 10000);
    o.handle_datagram(
        now,
        SocketAddr::V4(classic),
        br#"{"Command": 2, "IP": "127.0.0.3"}"#,
    );
    let _old = o.search(now, "a");
    let new = o.search(now, "b");
    while o.poll_transmit().is_some() {}
    while o.poll_event().is_some() {}
    o.handle_datagram(
        now,
        SocketAddr::V4(classic),
        br#"{"Command": 4, "Contents": ["b.txt"], "IP": "127.0.0.3"}"#,
    );
    let evs: Vec<Event> = std::iter::from_fn(|| o.poll_event()).collect();
    assert!(evs.iter().any(|e| matches!(e, Event::SearchResult { search, files, .. } if *search == new && files[0].name == "b.txt")));
    // The same answer from an address no search asked counts for nothing.
    o.handle_datagram(
        now,
        "127.0.0.66:20000".parse().unwrap(),
        br#"{"Command": 4, "Contents": ["b.txt"], "IP": "127.0.0.3", "TcpPort": 6666}"#,
    );
    assert!(std::iter::from_fn(|| o.poll_event()).all(|e| !matches!(e, Event::SearchResult { .. })));
}

#[test]
fn peers_count_as_answered_only_once_heard_from() {
    let mut net = classic_net(2);
    let first = net.nodes[0].0;
    net.down.insert(first);
    let now = net.now;
    net.nodes[1].1.connect(now, first, 1);
    net.pump();
    assert_eq!(net.nodes[1].1.peers().len(), 0, "given, not heard");
    assert_eq!(net.nodes[1].1.answered_peers(), 0);
    net.down.clear();
    let now = net.now;
    net.nodes[1].1.connect(now, first, 1);
    net.pump();
    assert_eq!(net.nodes[1].1.answered_peers(), 1);
}

#[test]
fn a_dead_bootstrap_is_retried_while_alone() {
    let mut net = classic_net(2);
    let first = net.nodes[0].0;
    net.down.insert(first);
    let now = net.now;
    net.nodes[1].1.connect(now, first, 1);
    net.pump();
    net.advance(Duration::from_millis(260));
    assert!(net.peer_set(1).is_empty(), "removed after a silent round");
    net.down.clear();
    net.advance(Duration::from_millis(200));
    assert_eq!(net.peer_set(1), vec![first]);
    assert_eq!(net.peer_set(0), vec![net.nodes[1].0]);
}

#[test]
fn peer_list_is_bounded() {
    let now = Instant::now();
    let mut o = Overlay::new(
        Config {
            max_peers: 10,
            ..cfg(20000)
        },
        now,
    );
    for i in 0..100u32 {
        let src: SocketAddr = format!("10.0.{}.{}:20000", i / 250, i % 250 + 1)
            .parse()
            .unwrap();
        o.handle_datagram(now, src, br#"{"Command": 1, "IP": "10.9.9.9", "TTL": 0}"#);
        o.handle_datagram(now, src, br#"{"Command": 2, "IP": "10.9.9.9"}"#);
    }
    assert_eq!(o.peers().len(), 10);
}

#[test]
fn pongs_tell_rutella_pingers_where_they_are_seen_and_two_agreeing_peers_teach_it() {
    let now = Instant::now();
    let mut o = Overlay::new(cfg(20000), now);
    o.add_own_ip(Ipv4Addr::new(192, 168, 1, 10));
    // A classic ping gets a classic pong: no "Seen".
    let src: SocketAddrV4 = "11.0.0.2:20000".parse().unwrap();
    o.handle_datagram(
        now,
        SocketAddr::V4(src),
        br#"{"Command": 1, "IP": "11.0.0.2", "TTL": 0}"#,
    );
    let sent = drain(&mut o);
    let pong = sent[0].encode(Ipv4Addr::new(192, 168, 1, 10));
    assert!(!String::from_utf8_lossy(&pong).contains("Seen"), "{sent:?}");
    // A rutella ping (with a nonce) learns the address it came from.
    let src2: SocketAddrV4 = "11.0.0.3:20001".parse().unwrap();
    o.handle_datagram(
        now,
        SocketAddr::V4(src2),
        br#"{"Command": 1, "IP": "1.2.3.4", "TTL": 0, "Nonce": 7, "UdpPort": 20001}"#,
    );
    let sent = drain(&mut o);
    let pong =
        String::from_utf8_lossy(&sent[0].encode(Ipv4Addr::new(192, 168, 1, 10))).into_owned();
    assert!(pong.contains(r#""Seen": "11.0.0.3:20001""#), "{pong}");
    // Two peers at different addresses that answer our pings with the
    // right echo and the same "Seen" teach us our external address;
    // one alone, or a wrong echo, does not.
    let p1: SocketAddrV4 = "11.0.0.4:20000".parse().unwrap();
    let p2: SocketAddrV4 = "11.0.0.5:20000".parse().unwrap();
    for p in [p1, p2] {
        o.connect(now, p, 0);
    }
    let nonces: Vec<(SocketAddrV4, u64)> = drain(&mut o)
        .iter()
        .filter_map(|t| match &t.message {
            Message::Ping(pi) => nonce_of(&pi.extra).map(|n| (t.dest, n)),
            _ => None,
        })
        .collect();
    assert_eq!(nonces.len(), 2, "{nonces:?}");
    let pong = |n: u64| {
        format!(
            r#"{{"Command": 2, "IP": "0.0.0.0", "Echo": {n}, "UdpPort": 20000, "Seen": "11.0.0.11:20000"}}"#
        )
    };
    o.handle_datagram(
        now,
        SocketAddr::V4(nonces[0].0),
        pong(nonces[0].1 ^ 1).as_bytes(),
    );
    o.handle_datagram(
        now,
        SocketAddr::V4(nonces[0].0),
        pong(nonces[0].1).as_bytes(),
    );
    assert_eq!(o.seen_address(), None, "one reporter is not enough");
    o.handle_datagram(
        now,
        SocketAddr::V4(nonces[1].0),
        pong(nonces[1].1 ^ 1).as_bytes(),
    );
    assert_eq!(o.seen_address(), None, "a wrong echo does not count");
    let unproven =
        r#"{"Command": 2, "IP": "0.0.0.0", "UdpPort": 20000, "Seen": "11.0.0.11:20000"}"#;
    o.handle_datagram(now, SocketAddr::V4(nonces[1].0), unproven.as_bytes());
    assert_eq!(
        o.seen_address(),
        None,
        "a pong without our nonce does not count"
    );
    o.handle_datagram(
        now,
        SocketAddr::V4(nonces[1].0),
        pong(nonces[1].1).as_bytes(),
    );
    assert_eq!(o.seen_address(), Some(Ipv4Addr::new(11, 0, 0, 11)));
}

#[test]
fn dial_back_messages_go_to_the_driver_saying_whether_the_source_is_a_proven_rutella_peer() {
    let mut net = star(2);
    let (a, b) = (net.nodes[0].0, net.nodes[1].0);
    let now = net.now;
    let o = &mut net.nodes[0].1;
    while o.poll_event().is_some() {}
    assert!(o.is_rutella_peer(&b));
    let req = crate::message::DialBack::Request {
        token: 9,
        tcp_port: 10000,
        udp_port: 20000,
    };
    let stranger = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 9), 20000);
    for (from, proven) in [(b, true), (stranger, false)] {
        o.handle_datagram(now, SocketAddr::V4(from), &req.encode());
        let events: Vec<Event> = std::iter::from_fn(|| o.poll_event()).collect();
        assert!(
            matches!(
                events.as_slice(),
                [Event::DialBack { from: f, proven_peer, message }]
                    if *f == from && *proven_peer == proven && *message == req
            ),
            "{events:?}"
        );
        assert!(drain(o).is_empty(), "the overlay answers nothing itself");
    }
    // A classic peer (no ports) is not a rutella peer.
    let (mut c, classic) = with_classic_peer(now);
    assert!(!c.is_rutella_peer(&classic));
    c.handle_datagram(now, SocketAddr::V4(classic), &req.encode());
    assert!(matches!(
        c.poll_event(),
        Some(Event::DialBack {
            proven_peer: false,
            ..
        })
    ));
    let _ = a;
}
