use super::*;
use crate::message::{Message, Pong, Ports, Push};
use crate::testnet::Net;
use crate::{Config, Event, Overlay};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

pub(super) const P: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 20000));
pub(super) const F: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 20000));
/// A downloader outside the net: its datagrams are made by hand.
pub(super) const D: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 1, 3), 20000));

pub(super) fn cfg(push: PushConfig) -> Config {
    Config {
        udp_port: 20000,
        tcp_port: 10000,
        ping_interval: Duration::from_millis(200),
        pong_timeout: Duration::from_millis(50),
        search_timeout: Duration::from_millis(100),
        push,
        ..Config::default()
    }
}

/// P (a proxy) and F (firewalled, joined through P).
pub(super) fn net(push: PushConfig) -> Net {
    let now = Instant::now();
    let nodes = [(P, "p.txt"), (F, "song.ogg")]
        .into_iter()
        .map(|(a, name)| {
            let mut o = Overlay::new(cfg(push.clone()), now);
            o.add_own_ip(a.ip());
            (a, o, vec![name.to_string()])
        })
        .collect();
    let mut net = Net::new(now, nodes);
    net.nodes[1].1.set_reachable(Some(false));
    let now = net.now;
    net.nodes[1].1.connect(now, P, 10000);
    net.pump();
    net
}

pub(super) fn deliver(net: &mut Net, to: usize, from: SocketAddr, m: &Message) {
    let now = net.now;
    net.nodes[to].1.handle_datagram(now, from, &m.encode());
    net.pump();
}

fn push_msg(push_id: u64, token: u64, ip: Option<IpAddr>) -> Message {
    Message::Push(Push {
        ip,
        push_id,
        token,
        tcp_port: 10777,
    })
}

/// D proves itself to P: it answers P's probe.
pub(super) fn prove(net: &mut Net, d: SocketAddr) {
    let echo = net.nodes[0].1.token(d);
    let mut extra = serde_json::Map::new();
    extra.insert("Echo".into(), echo.into());
    let pong = Message::Pong(Pong {
        ip: d.ip(),
        ports: Ports::rutella(d.port(), 10777),
        extra,
    });
    deliver(net, 0, d, &pong);
}

fn pushes_to(net: &Net, dest: SocketAddr) -> Vec<Push> {
    net.sent
        .iter()
        .filter(|(_, to, _)| *to == dest)
        .filter_map(|(_, _, m)| match m {
            Message::Push(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

fn requests(net: &Net) -> Vec<(SocketAddr, u64)> {
    net.push_requests
        .iter()
        .filter_map(|(i, e)| match e {
            Event::PushRequest { target, token, .. } if *i == 1 => Some((*target, *token)),
            _ => None,
        })
        .collect()
}

#[test]
fn messages_and_fields_round_trip() {
    for ip in [None, Some(Ipv4Addr::new(11, 0, 0, 2).into())] {
        let m = push_msg(0x0123_4567_89ab_cdef, 42, ip);
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(text.contains(r#""PushId": "0123456789abcdef""#), "{text}");
        assert!(text.contains(r#""Token": "000000000000002a""#), "{text}");
        assert_eq!(text.contains("\"IP\""), ip.is_some(), "{text}");
        assert_eq!(Message::parse(text.as_bytes()).unwrap(), m);
    }
    for bad in [
        r#"{"Command": 5, "PushId": "0123", "Token": "000000000000002a", "TcpPort": 1}"#,
        r#"{"Command": 5, "PushId": "0123456789abcdef", "Token": 42, "TcpPort": 1}"#,
        r#"{"Command": 5, "PushId": "0123456789abcdef", "Token": "000000000000002a"}"#,
        r#"{"Command": 5, "PushId": "0123456789abcdeg", "Token": "000000000000002a", "TcpPort": 1}"#,
    ] {
        assert!(Message::parse(bad.as_bytes()).is_err(), "{bad}");
    }
    let info = PushInfo {
        push_id: Some(7),
        proxies: vec!["11.0.0.2:20000".parse().unwrap()],
        firewalled: true,
    };
    let mut extra = Map::new();
    info.write_extra(&mut extra);
    assert_eq!(PushInfo::from_extra(&extra), info);
    // Nonsense is ignored, and at most four proxies are taken.
    let extra: Map<String, Value> = serde_json::from_str(
        r#"{"PushId": "xyz", "Proxies": ["1.2.3.4:5", "nope", 3, "0.0.0.0:1", "1.2.3.4:6",
            "1.2.3.4:7", "1.2.3.4:8", "1.2.3.4:9"], "Firewalled": 1}"#,
    )
    .unwrap();
    let got = PushInfo::from_extra(&extra);
    assert_eq!(got.push_id, None);
    assert_eq!(got.proxies.len(), MAX_PROXIES);
    assert!(!got.firewalled);
}

#[test]
fn a_proxy_learns_the_push_id_and_answers_name_proxies() {
    let mut net = net(PushConfig::default());
    let f_id = net.nodes[1].1.push_id();
    assert_eq!(net.nodes[0].1.peer_push_id(&F), Some(f_id));
    assert_ne!(net.nodes[0].1.push_id(), f_id);
    let info = net.nodes[1].1.own_push_info();
    assert_eq!(
        info,
        PushInfo {
            push_id: Some(f_id),
            proxies: vec![P],
            firewalled: true
        }
    );
    // P searches: F's answer carries it.
    let now = net.now;
    net.nodes[0].1.search(now, "song");
    net.pump();
    let (_, from, got) = net.push_infos.iter().find(|(i, _, _)| *i == 0).unwrap();
    assert_eq!((*from, got), (F, &info));
    // Reachable nodes say nothing of pushes.
    net.nodes[1].1.set_reachable(Some(true));
    assert_eq!(net.nodes[1].1.own_push_info(), PushInfo::default());
    // Unknown: push id and proxies, not firewalled.
    net.nodes[1].1.set_reachable(None);
    let info = net.nodes[1].1.own_push_info();
    assert!(info.can_push() && !info.firewalled);
}

#[test]
fn proxies_outside_the_local_networks_come_first_then_the_oldest() {
    let now = Instant::now();
    let mut o = Overlay::new(cfg(PushConfig::default()), now);
    o.add_own_ip(Ipv4Addr::new(192, 168, 1, 10).into());
    let peers = [
        "192.168.1.2:20000",
        "11.0.0.5:20000",
        "127.0.0.9:20000",
        "11.0.0.3:20000",
        "10.1.1.1:20000",
        "11.0.0.4:20000",
    ];
    for p in peers {
        let a: SocketAddr = p.parse().unwrap();
        let echo = o.token(a);
        let mut extra = Map::new();
        extra.insert("Echo".into(), echo.into());
        o.handle_message(
            now,
            a,
            Message::Pong(Pong {
                ip: a.ip(),
                ports: Ports::rutella(20000, 10000),
                extra,
            }),
        );
    }
    let got: Vec<String> = o
        .own_push_info()
        .proxies
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(
        got,
        [
            "11.0.0.5:20000",
            "11.0.0.3:20000",
            "11.0.0.4:20000",
            "192.168.1.2:20000"
        ]
    );
}

#[test]
fn a_proxy_passes_a_push_on_only_from_a_proven_address_with_the_ip_as_seen() {
    let mut net = net(PushConfig::default());
    let f_id = net.nodes[1].1.push_id();
    // D has sent nothing before: it is probed, nothing goes to F yet. It
    // claims another IP, which must not count.
    let liar = Some(Ipv4Addr::new(6, 6, 6, 6).into());
    deliver(&mut net, 0, D, &push_msg(f_id, 99, liar));
    assert!(pushes_to(&net, F).is_empty());
    assert!(requests(&net).is_empty());
    assert!(net
        .sent
        .iter()
        .any(|(s, to, m)| *s == P && *to == D && matches!(m, Message::Ping(_))));
    // D answers the probe: the push goes on, naming D as P saw it.
    prove(&mut net, D);
    let fwd = pushes_to(&net, F);
    assert_eq!(fwd.len(), 1, "{fwd:?}");
    assert_eq!(fwd[0].ip, Some(D.ip()));
    assert_eq!((fwd[0].token, fwd[0].tcp_port), (99, 10777));
    assert_eq!(requests(&net), vec![(SocketAddr::new(D.ip(), 10777), 99)]);
    // Once proven, a push goes on at once, the claimed IP replaced again.
    deliver(&mut net, 0, D, &push_msg(f_id, 100, liar));
    assert_eq!(pushes_to(&net, F).len(), 2);
    assert_eq!(requests(&net)[1], (SocketAddr::new(D.ip(), 10777), 100));
}

#[test]
fn a_push_goes_only_to_a_current_peer() {
    let mut net = net(PushConfig::default());
    let f_id = net.nodes[1].1.push_id();
    prove(&mut net, D);
    // An id nobody holds.
    deliver(&mut net, 0, D, &push_msg(f_id ^ 1, 1, None));
    assert!(pushes_to(&net, F).is_empty());
    // F goes silent and is dropped: its id goes with it.
    net.down.insert(F);
    net.advance(Duration::from_millis(500));
    assert!(!net.peer_set(0).contains(&F));
    assert_eq!(net.nodes[0].1.peer_push_id(&F), None);
    net.down.remove(&F);
    prove(&mut net, D);
    let before = net.sent.len();
    deliver(&mut net, 0, D, &push_msg(f_id, 2, None));
    assert!(net.peer_set(0).contains(&D));
    assert!(net.sent[before..]
        .iter()
        .all(|(_, to, m)| !(*to == F && matches!(m, Message::Push(_)))));
}

#[test]
fn the_firewalled_node_acts_only_on_pushes_from_its_peers() {
    let mut net = net(PushConfig::default());
    let f_id = net.nodes[1].1.push_id();
    // Straight from D, which is not F's peer: dropped, even with an IP.
    deliver(&mut net, 1, D, &push_msg(f_id, 5, Some(D.ip())));
    assert!(requests(&net).is_empty());
    // From its peer P without an IP: P's own address is the target (P
    // downloads from F itself).
    deliver(&mut net, 1, P, &push_msg(f_id, 6, None));
    assert_eq!(requests(&net), vec![(SocketAddr::new(P.ip(), 10777), 6)]);
    // A push with someone else's id is not for F, which holds no peer of
    // that id either.
    deliver(&mut net, 1, P, &push_msg(f_id ^ 1, 7, None));
    assert_eq!(requests(&net).len(), 1);
}

#[test]
fn a_downloader_that_is_a_peer_pushes_straight_to_it() {
    let mut net = net(PushConfig::default());
    let f_id = net.nodes[1].1.push_id();
    let f_tcp = SocketAddr::new(F.ip(), 10000);
    // P knows F's push id from its pings: no proxy needed.
    let route = net.nodes[0]
        .1
        .send_push(f_tcp, &PushInfo::default(), 8, 10555);
    assert_eq!(route, Some(PushRoute::Peer(F)));
    net.pump();
    assert_eq!(requests(&net), vec![(SocketAddr::new(P.ip(), 10555), 8)]);
    // A stranger's push info names proxies: they are used.
    let info = PushInfo {
        push_id: Some(f_id ^ 1),
        proxies: vec![D],
        firewalled: true,
    };
    let other: SocketAddr = "127.0.0.7:10000".parse().unwrap();
    let route = net.nodes[0].1.send_push(other, &info, 9, 10555);
    assert_eq!(route, Some(PushRoute::Proxies(vec![D])));
    assert_eq!(route.unwrap().to_string(), format!("push via {D}"));
    // Nothing to push through: no route.
    assert_eq!(
        net.nodes[0]
            .1
            .send_push(other, &PushInfo::default(), 9, 10555),
        None
    );
}

#[test]
fn forwarding_is_budgeted_per_source_prefix_and_in_all() {
    let push = PushConfig {
        forward_per_prefix: Rate::new(2, Duration::from_secs(10)),
        forward_total: Rate::new(3, Duration::from_secs(10)),
        ..PushConfig::default()
    };
    let mut net = net(push);
    let f_id = net.nodes[1].1.push_id();
    prove(&mut net, D);
    // Another address of D's /24 shares its budget.
    let d2 = SocketAddr::from((Ipv4Addr::new(127, 0, 1, 4), 20000));
    deliver(&mut net, 0, d2, &push_msg(f_id, 0, None));
    prove(&mut net, d2);
    for t in 1..5 {
        deliver(&mut net, 0, D, &push_msg(f_id, t, None));
    }
    assert_eq!(pushes_to(&net, F).len(), 2, "per /24");
    // Another /24 has its own budget, but the node's total is 3.
    let e = SocketAddr::from((Ipv4Addr::new(127, 0, 2, 5), 20000));
    deliver(&mut net, 0, e, &push_msg(f_id, 10, None));
    prove(&mut net, e);
    deliver(&mut net, 0, e, &push_msg(f_id, 11, None));
    assert_eq!(pushes_to(&net, F).len(), 3, "in all");
    // Budgets refill with time.
    net.advance(Duration::from_secs(10));
    // D, silent meanwhile, was dropped by P: it proves itself again.
    prove(&mut net, D);
    deliver(&mut net, 0, D, &push_msg(f_id, 12, None));
    assert_eq!(pushes_to(&net, F).len(), 4);
}

#[test]
fn connections_on_request_are_budgeted_per_target_and_in_all() {
    let push = PushConfig {
        connect_per_ip: Rate::new(2, Duration::from_secs(10)),
        connect_total: Rate::new(3, Duration::from_secs(10)),
        ..PushConfig::default()
    };
    let mut net = net(push);
    let f_id = net.nodes[1].1.push_id();
    prove(&mut net, D);
    for t in 0..4 {
        deliver(&mut net, 0, D, &push_msg(f_id, t, None));
    }
    assert_eq!(pushes_to(&net, F).len(), 4);
    assert_eq!(requests(&net).len(), 2, "per target IP");
    let e = SocketAddr::from((Ipv4Addr::new(127, 0, 2, 5), 20000));
    deliver(&mut net, 0, e, &push_msg(f_id, 10, None));
    prove(&mut net, e);
    deliver(&mut net, 0, e, &push_msg(f_id, 11, None));
    assert_eq!(requests(&net).len(), 3, "in all");
    net.advance(Duration::from_secs(10));
    // D, silent meanwhile, was dropped by P: it proves itself again.
    prove(&mut net, D);
    deliver(&mut net, 0, D, &push_msg(f_id, 12, None));
    assert_eq!(requests(&net).len(), 4);
}

#[test]
fn tables_are_bounded() {
    let now = Instant::now();
    let cfg = PushConfig {
        max_push_ids: 2,
        max_tracked: 2,
        ..PushConfig::default()
    };
    let mut s = PushState::new(cfg, 1, now);
    for i in 0..5u8 {
        s.record(
            SocketAddr::from((Ipv4Addr::new(10, 0, 0, i), 1)),
            100 + u64::from(i),
        );
    }
    assert_eq!(s.ids.len(), 2);
    // Our own id is never taken for a peer's, nor one another peer holds.
    s.record(SocketAddr::from((Ipv4Addr::new(10, 0, 0, 9), 1)), 1);
    assert_eq!(s.peer_of(1), None);
    s.record(SocketAddr::from((Ipv4Addr::new(10, 0, 0, 9), 1)), 100);
    assert_eq!(
        s.peer_of(100),
        Some(SocketAddr::from((Ipv4Addr::new(10, 0, 0, 0), 1)))
    );
    for i in 0..50u8 {
        let _ = s.allow_connect(Ipv4Addr::new(10, 0, 1, i).into(), now);
        let _ = s.allow_forward(Ipv4Addr::new(10, 0, i, 1).into(), now);
    }
    assert!(s.connect_ip.map.len() <= 2 && s.forward_prefix.map.len() <= 2);
}
