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
            let addr = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
                20000 + 2 * i as u16,
            );
            let mut o = Overlay::new(cfg(addr.port()), now);
            o.add_own_ip(addr.ip());
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
fn with_classic_peer(now: Instant) -> (Overlay, SocketAddr) {
    let mut o = Overlay::new(cfg(20000), now);
    o.add_own_ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let known = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)), 20000);
    o.connect(now, known, 10000);
    drain(&mut o);
    o.handle_datagram(now, known, br#"{"Command": 2, "IP": "127.0.0.3"}"#);
    assert_eq!(o.peers().len(), 1);
    drain(&mut o);
    while o.poll_event().is_some() {}
    (o, known)
}

#[test]
fn pings_are_answered_at_their_source_and_forwarded_once_it_answered() {
    let now = Instant::now();
    let (mut o, known) = with_classic_peer(now);
    let src: SocketAddr = "127.0.0.9:5555".parse().unwrap();
    // "IP" names someone else: only the source matters.
    let ping = br#"{"Command": 1, "IP": "127.0.0.4", "TTL": 1000000000, "Extra": 5}"#;
    o.handle_datagram(now, src, ping);
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
    o.handle_datagram(now, src, pong.as_bytes());
    assert!(o.peers().iter().any(|p| p.udp == src));
    let (fwd, intro): (Vec<_>, Vec<_>) = drain(&mut o).into_iter().partition(|t| t.dest != src);
    assert_eq!(fwd.len(), 1, "{fwd:?}");
    assert_eq!(fwd[0].dest, known, "never back to its sender");
    assert_eq!(
        fwd[0].encode(IpAddr::V4(Ipv4Addr::new(9, 9, 9, 9))),
        br#"{"Command": 1, "IP": "127.0.0.9", "TTL": 0, "UdpPort": 5555}"#
    );
    // The new rutella peer is told of our (classic) peer at once.
    assert_eq!(intro.len(), 1, "{intro:?}");
    assert_eq!(
        intro[0].encode(IpAddr::V4(Ipv4Addr::new(9, 9, 9, 9))),
        br#"{"Command": 1, "IP": "127.0.0.3", "TTL": 0}"#
    );
    // The same originator again soon after: answered, not forwarded.
    o.handle_datagram(now, src, ping);
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
        o.handle_datagram(now, known, fwd);
    }
    let sent = drain(&mut o);
    let origin: SocketAddr = "127.0.0.4:20000".parse().unwrap();
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
fn a_rutella_ping_from_an_address_probed_before_re_arms_its_probe() {
    let now = Instant::now();
    let (mut o, known) = with_classic_peer(now);
    // Our peer tells us of 127.0.0.4: it is probed once. Behind a router
    // that has not seen us yet, that probe is dropped.
    o.handle_datagram(
        now,
        known,
        br#"{"Command": 1, "IP": "127.0.0.4", "TTL": 0}"#,
    );
    let origin: SocketAddr = "127.0.0.4:20000".parse().unwrap();
    let probes = |sent: &[Transmit]| {
        sent.iter()
            .filter(|t| t.dest == origin && matches!(t.message, Message::Ping(_)))
            .count()
    };
    assert_eq!(probes(&drain(&mut o)), 1);
    // A classic ping from it (no nonce) within the probe's wait: answered,
    // not probed again.
    o.handle_datagram(
        now,
        origin,
        br#"{"Command": 1, "IP": "127.0.0.4", "TTL": 1}"#,
    );
    let sent = drain(&mut o);
    assert!(sent
        .iter()
        .any(|t| t.dest == origin && matches!(t.message, Message::Pong(_))));
    assert_eq!(probes(&sent), 0, "{sent:?}");
    // Its own rutella ping says the way back is open now: it is probed
    // again at once, within the first probe's wait.
    o.handle_datagram(
        now,
        origin,
        br#"{"Command": 1, "IP": "127.0.0.4", "TTL": 1, "Nonce": 7, "UdpPort": 20000, "TcpPort": 10000}"#,
    );
    let sent = drain(&mut o);
    assert_eq!(probes(&sent), 1, "{sent:?}");
    // Its answer to that probe makes it a peer.
    let Some(Message::Ping(probe)) = sent
        .iter()
        .find(|t| t.dest == origin && matches!(t.message, Message::Ping(_)))
        .map(|t| &t.message)
    else {
        panic!("{sent:?}")
    };
    let nonce = nonce_of(&probe.extra).unwrap();
    let pong = format!(
        r#"{{"Command": 2, "IP": "127.0.0.4", "Echo": {nonce}, "UdpPort": 20000, "TcpPort": 10000}}"#
    );
    o.handle_datagram(now, origin, pong.as_bytes());
    assert!(o.peers().iter().any(|p| p.udp == origin));
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
    assert!(sent.iter().all(|t| t.dest == attacker));
    let bytes: usize = sent
        .iter()
        .map(|t| t.encode(IpAddr::V4(Ipv4Addr::BROADCAST)).len())
        .sum();
    assert!(bytes <= 3 * received, "{bytes} for {received}");
    assert!(
        o.peers()
            .iter()
            .all(|p| !matches!(p.udp.ip(), IpAddr::V4(ip) if ip.octets()[1] == 1)),
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
    assert_eq!(probe.dest, src);
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
    assert_eq!(t.dest, src);
    assert!(t
        .encode(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .starts_with(br#"{"Command": 4, "Contents": [], "IP": "127.0.0.2""#));
    assert_eq!(o.peers()[0].udp, "127.0.0.7:20000".parse().unwrap());
    assert!(!o.peers()[0].rutella);
}

#[test]
fn classic_hits_without_id_go_to_the_newest_search() {
    let now = Instant::now();
    let mut o = Overlay::new(cfg(20000), now);
    let classic = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)), 20000);
    o.connect(now, classic, 10000);
    o.handle_datagram(now, classic, br#"{"Command": 2, "IP": "127.0.0.3"}"#);
    let _old = o.search(now, "a");
    let new = o.search(now, "b");
    while o.poll_transmit().is_some() {}
    while o.poll_event().is_some() {}
    o.handle_datagram(
        now,
        classic,
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
fn a_transient_node_is_answered_but_never_becomes_a_peer() {
    let mut net = classic_net(3);
    // Node 2 is short-lived (a one-shot search); both join through node 0.
    let now = net.now;
    let mut c = cfg(net.nodes[2].0.port());
    c.transient = true;
    net.nodes[2].1 = Overlay::new(c, now);
    net.nodes[2].1.add_own_ip(Ipv4Addr::LOCALHOST.into());
    let first = net.nodes[0].0;
    net.nodes[1].1.connect(now, first, 1);
    net.nodes[2].1.connect(now, first, 1);
    net.pump();
    net.advance(Duration::from_millis(450));
    let transient = net.nodes[2].0;
    // It knows node 0 (and may search it) ...
    assert!(net.peer_set(2).contains(&first));
    let now = net.now;
    let id = net.nodes[2].1.search(now, "FILE-0");
    net.pump();
    assert!(
        net.results
            .iter()
            .any(|r| r.0 == 2 && r.1 == id && r.3 == ["File-0.txt"]),
        "node 0 did not answer the transient node"
    );
    // It found node 1 through node 0 (which passed its ping on), and node
    // 1 answers it too ...
    assert!(
        net.peer_set(2).contains(&net.nodes[1].0),
        "{:?}",
        net.peer_set(2)
    );
    let id = net.nodes[2].1.search(now, "FILE-1");
    net.pump();
    assert!(
        net.results
            .iter()
            .any(|r| r.0 == 2 && r.1 == id && r.3 == ["File-1.txt"]),
        "node 1 did not answer the transient node"
    );
    // ... but nobody keeps it as a peer.
    for i in 0..2 {
        assert!(
            !net.peer_set(i).contains(&transient),
            "node {i} took a transient node for a peer"
        );
    }
}

#[test]
fn a_forgotten_address_is_not_retried() {
    let mut net = classic_net(2);
    let first = net.nodes[0].0;
    net.down.insert(first);
    let now = net.now;
    net.nodes[1].1.connect(now, first, 1);
    net.pump();
    net.nodes[1].1.forget(first);
    net.down.clear();
    net.advance(Duration::from_millis(600));
    assert!(
        net.peer_set(1).is_empty(),
        "a forgotten address was pinged again"
    );
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
    o.add_own_ip(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10)));
    // A classic ping gets a classic pong: no "Seen".
    let src: SocketAddr = "11.0.0.2:20000".parse().unwrap();
    o.handle_datagram(now, src, br#"{"Command": 1, "IP": "11.0.0.2", "TTL": 0}"#);
    let sent = drain(&mut o);
    let pong = sent[0].encode(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10)));
    assert!(!String::from_utf8_lossy(&pong).contains("Seen"), "{sent:?}");
    // A rutella ping (with a nonce) learns the address it came from.
    let src2: SocketAddr = "11.0.0.3:20001".parse().unwrap();
    o.handle_datagram(
        now,
        src2,
        br#"{"Command": 1, "IP": "1.2.3.4", "TTL": 0, "Nonce": 7, "UdpPort": 20001}"#,
    );
    let sent = drain(&mut o);
    let pong = String::from_utf8_lossy(&sent[0].encode(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10))))
        .into_owned();
    assert!(pong.contains(r#""Seen": "11.0.0.3:20001""#), "{pong}");
    // Two peers at different addresses that answer our pings with the
    // right echo and the same "Seen" teach us our external address;
    // one alone, or a wrong echo, does not.
    let p1: SocketAddr = "11.0.0.4:20000".parse().unwrap();
    let p2: SocketAddr = "11.0.0.5:20000".parse().unwrap();
    for p in [p1, p2] {
        o.connect(now, p, 0);
    }
    let nonces: Vec<(SocketAddr, u64)> = drain(&mut o)
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
    o.handle_datagram(now, nonces[0].0, pong(nonces[0].1 ^ 1).as_bytes());
    o.handle_datagram(now, nonces[0].0, pong(nonces[0].1).as_bytes());
    assert_eq!(o.seen_address(), None, "one reporter is not enough");
    o.handle_datagram(now, nonces[1].0, pong(nonces[1].1 ^ 1).as_bytes());
    assert_eq!(o.seen_address(), None, "a wrong echo does not count");
    let unproven =
        r#"{"Command": 2, "IP": "0.0.0.0", "UdpPort": 20000, "Seen": "11.0.0.11:20000"}"#;
    o.handle_datagram(now, nonces[1].0, unproven.as_bytes());
    assert_eq!(
        o.seen_address(),
        None,
        "a pong without our nonce does not count"
    );
    o.handle_datagram(now, nonces[1].0, pong(nonces[1].1).as_bytes());
    assert_eq!(o.seen_address(), Some(Ipv4Addr::new(11, 0, 0, 11)));
}

/// `n` classic-mode rutella overlays at 2001:db8::1, ::2, ...
fn ipv6_net(n: usize) -> Net {
    let now = Instant::now();
    let nodes = (0..n)
        .map(|i| {
            let addr = SocketAddr::new(format!("2001:db8::{}", i + 1).parse().unwrap(), 20000);
            let mut o = Overlay::new(cfg(addr.port()), now);
            o.add_own_ip(addr.ip());
            (addr, o, vec![format!("File-{i}.txt")])
        })
        .collect();
    Net::new(now, nodes)
}

#[test]
fn ipv6_peers_join_and_search() {
    let mut net = ipv6_net(4);
    let first = net.nodes[0].0;
    for i in 1..4 {
        let now = net.now;
        net.nodes[i].1.connect(now, first, 0);
        net.pump();
    }
    net.advance(Duration::from_millis(450));
    for i in 0..4 {
        assert_eq!(net.peer_set(i).len(), 3, "node {i}");
    }
    let now = net.now;
    let id = net.nodes[1].1.search(now, "file-3");
    net.pump();
    let hits: Vec<_> = net.results.iter().filter(|r| r.1 == id).collect();
    assert_eq!(hits.len(), 3, "every peer answers: {hits:?}");
    let found: Vec<_> = hits.iter().filter(|r| !r.3.is_empty()).collect();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].2, net.nodes[3].0);
    let peer = net.nodes[1]
        .1
        .peers()
        .into_iter()
        .find(|p| p.udp == net.nodes[3].0);
    assert_eq!(
        peer.map(|p| p.tcp()),
        Some("[2001:db8::4]:20001".parse().unwrap()),
        "downloads go to the IPv6 address"
    );
    assert!(net.sent.iter().all(|(_, _, m)| m.ip().is_ipv6()));
}

#[test]
fn an_ipv4_mapped_source_is_the_ipv4_peer() {
    let now = Instant::now();
    let mut o = Overlay::new(cfg(20000), now);
    o.add_own_ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let known: SocketAddr = "127.0.0.3:20000".parse().unwrap();
    o.connect(now, known, 10000);
    drain(&mut o);
    // The classic peer answers; a dual-stack socket reports it mapped.
    let mapped: SocketAddr = "[::ffff:127.0.0.3]:20000".parse().unwrap();
    o.handle_datagram(now, mapped, br#"{"Command": 2, "IP": "127.0.0.3"}"#);
    assert_eq!(o.peers().len(), 1);
    assert_eq!(o.peers()[0].udp, known);
    // What it sends next from either form is the same peer's.
    o.handle_datagram(
        now,
        mapped,
        br#"{"Command": 3, "Contents": "x", "IP": "127.0.0.3"}"#,
    );
    o.handle_datagram(
        now,
        known,
        br#"{"Command": 3, "Contents": "y", "IP": "127.0.0.3"}"#,
    );
    let queries: Vec<_> = std::iter::from_fn(|| o.poll_event())
        .filter_map(|e| match e {
            Event::Query(q) => Some(q.reply_to),
            _ => None,
        })
        .collect();
    assert_eq!(queries, vec![known, known]);
    assert_eq!(o.peers().len(), 1);
}

#[test]
fn classic_peers_never_get_an_ipv6_address() {
    let now = Instant::now();
    let (mut o, classic) = with_classic_peer(now);
    o.add_own_ip("2001:db8::2".parse().unwrap());
    // A classic message over IPv6 is nobody's: no answer, no peer.
    let v6: SocketAddr = "[2001:db8::9]:20000".parse().unwrap();
    o.handle_datagram(now, v6, br#"{"Command": 1, "IP": "127.0.0.4", "TTL": 1}"#);
    assert!(drain(&mut o).is_empty());
    // A rutella peer at an IPv6 address joins; its ping is answered and
    // it is probed.
    let ping = br#"{"Command": 1, "IP": "2001:db8::9", "TTL": 1, "UdpPort": 20000}"#;
    o.handle_datagram(now, v6, ping);
    let sent = drain(&mut o);
    assert!(sent.iter().all(|t| t.dest == v6), "{sent:?}");
    let Some(nonce) = sent.iter().find_map(|t| match &t.message {
        Message::Ping(p) => nonce_of(&p.extra),
        _ => None,
    }) else {
        panic!("no probe: {sent:?}")
    };
    let pong =
        format!(r#"{{"Command": 2, "IP": "2001:db8::9", "Echo": {nonce}, "UdpPort": 20000}}"#);
    o.handle_datagram(now, v6, pong.as_bytes());
    assert!(o.peers().iter().any(|p| p.udp == v6));
    // Its ping, which names it, is not forwarded to the classic peer.
    let fwd = drain(&mut o);
    assert!(fwd.iter().all(|t| t.dest != classic), "{fwd:?}");
    // A search reaches both; what speaks for us leaves "IP" to the
    // driver, which writes an address of the destination's family.
    o.search(now, "x");
    let sent = drain(&mut o);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent.iter().all(|t| t.from_self));
    // Whatever went to the classic peer named an IPv4 address only.
    let mut all = fwd;
    all.extend(sent);
    for t in all.iter().filter(|t| t.dest == classic) {
        assert!(t.from_self || t.message.ip().is_ipv4(), "{t:?}");
    }
}

#[test]
fn a_ping_from_an_ipv6_peer_is_forwarded_to_rutella_peers_only() {
    let now = Instant::now();
    let (mut o, classic) = with_classic_peer(now);
    // An IPv4 rutella peer and an IPv6 one, both proven.
    let r4: SocketAddr = "127.0.0.5:20000".parse().unwrap();
    let v6: SocketAddr = "[2001:db8::9]:20000".parse().unwrap();
    for (addr, name) in [(r4, "127.0.0.5"), (v6, "2001:db8::9")] {
        o.connect(now, addr, 0);
        let nonce = drain(&mut o)
            .iter()
            .find_map(|t| match &t.message {
                Message::Ping(p) => nonce_of(&p.extra),
                _ => None,
            })
            .unwrap();
        let pong =
            format!(r#"{{"Command": 2, "IP": "{name}", "Echo": {nonce}, "UdpPort": 20000}}"#);
        o.handle_datagram(now, addr, pong.as_bytes());
    }
    assert_eq!(o.peers().len(), 3);
    drain(&mut o);
    o.handle_datagram(
        now,
        v6,
        br#"{"Command": 1, "IP": "2001:db8::9", "TTL": 1, "UdpPort": 20000}"#,
    );
    let fwd: Vec<_> = drain(&mut o)
        .into_iter()
        .filter(|t| matches!(&t.message, Message::Ping(p) if p.ttl == 0))
        .collect();
    assert_eq!(fwd.len(), 1, "{fwd:?}");
    assert_eq!(fwd[0].dest, r4);
    assert_eq!(
        fwd[0].encode(IpAddr::V4(Ipv4Addr::new(9, 9, 9, 9))),
        br#"{"Command": 1, "IP": "2001:db8::9", "TTL": 0, "UdpPort": 20000}"#
    );
    // An IPv4 originator's ping still reaches the classic peer.
    o.handle_datagram(
        now,
        r4,
        br#"{"Command": 1, "IP": "127.0.0.5", "TTL": 1, "UdpPort": 20000}"#,
    );
    let fwd: Vec<_> = drain(&mut o)
        .into_iter()
        .filter(|t| matches!(&t.message, Message::Ping(p) if p.ttl == 0))
        .map(|t| t.dest)
        .collect();
    assert!(fwd.contains(&classic) && fwd.contains(&v6), "{fwd:?}");
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
    let stranger = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 9), 20000));
    for (from, proven) in [(b, true), (stranger, false)] {
        o.handle_datagram(now, from, &req.encode());
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
    c.handle_datagram(now, classic, &req.encode());
    assert!(matches!(
        c.poll_event(),
        Some(Event::DialBack {
            proven_peer: false,
            ..
        })
    ));
    let _ = a;
}

#[test]
fn a_silent_peer_is_removed_also_when_pongs_may_take_longer_than_a_round() {
    let mut net = star(3);
    // Rounds every 200 ms, pongs allowed 500 ms: later rounds must not
    // move the wait for the first unanswered ping.
    for (_, o, _) in &mut net.nodes {
        o.sh.config.pong_timeout = Duration::from_millis(500);
    }
    net.advance(Duration::from_millis(250));
    let dead = net.nodes[2].0;
    assert!(net.peer_set(0).contains(&dead));
    net.down.insert(dead);
    // The next round pings it by t=650 ms; 500 ms later it is gone.
    net.advance(Duration::from_millis(950));
    for i in 0..2 {
        assert!(
            !net.peer_set(i).contains(&dead),
            "node {i} still lists the dead peer"
        );
        assert_eq!(net.peer_set(i).len(), 1);
    }
}

#[test]
fn a_new_node_at_a_peers_address_is_introduced_again() {
    let mut net = star(3);
    net.advance(Duration::from_millis(100));
    let (hub, other, again) = (net.nodes[0].0, net.nodes[1].0, net.nodes[2].0);
    assert!(net.peer_set(0).contains(&again));
    // Node 2 starts again at the same address (a new key, so new nonces),
    // while node 0 still holds it as a peer.
    let now = net.now;
    let mut c = cfg(again.port());
    c.seed = 4242;
    net.nodes[2].1 = Overlay::new(c, now);
    net.nodes[2].1.add_own_ip(again.ip());
    let before = net.sent.len();
    net.nodes[2].1.connect(now, hub, hub.port() + 1);
    net.pump();
    let introduced = |net: &Net, from: usize| {
        net.sent[from..].iter().any(|(f, t, m)| {
            *f == hub
                && *t == again
                && matches!(m, Message::Ping(p) if p.ttl == 0 && p.ip == other.ip()
                    && p.ports.udp == Some(other.port()))
        })
    };
    assert!(introduced(&net, before), "node 0 did not introduce node 1");
    assert!(net.peer_set(2).contains(&other));
}
