//! Commands 8 and 9 in the overlay: the proxy's rendezvous, the goes and
//! relay invites turned into events, and their budgets.

use super::tests::{cfg, deliver, net, prove, D, F, P};
use super::*;
use crate::message::{Message, Ports, PunchRole, PunchStep, RelayInvite};
use crate::punch::PunchConfig;
use crate::testnet::Net;
use crate::{Event, Overlay};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// A second downloader that is a node of the net (a peer of P).
const D2: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 3), 20000));

fn ask(push_id: u64, token: u64) -> Message {
    Message::Punch(crate::message::Punch {
        ip: D.ip(),
        step: PunchStep::Ask,
        push_id: Some(push_id),
        token,
        ports: Ports {
            udp: None,
            tcp: Some(10777),
        },
        peer: None,
        start_in: None,
        role: None,
        extra: Default::default(),
    })
}

fn go(token: u64, peer: SocketAddr, role: PunchRole) -> Message {
    Message::Punch(crate::message::Punch {
        ip: P.ip(),
        step: PunchStep::Go,
        push_id: None,
        token,
        ports: Ports::default(),
        peer: Some(peer),
        start_in: Some(Duration::from_millis(100)),
        role: Some(role),
        extra: Default::default(),
    })
}

fn invite(push_id: Option<u64>, relay: SocketAddr) -> Message {
    Message::Relay(RelayInvite {
        ip: D.ip(),
        push_id,
        circuit: [7; 16],
        relay,
        extra: Default::default(),
    })
}

/// The punch goes node `i` got: (peer, role, token, via).
fn goes(net: &Net, i: usize) -> Vec<(SocketAddr, PunchRole, u64, SocketAddr)> {
    net.push_requests
        .iter()
        .filter_map(|(n, e)| match e {
            Event::PunchGo {
                peer,
                role,
                token,
                via,
                ..
            } if *n == i => Some((*peer, *role, *token, *via)),
            _ => None,
        })
        .collect()
}

/// The goes sent to `dest`.
fn goes_to(net: &Net, dest: SocketAddr) -> Vec<crate::message::Punch> {
    net.sent
        .iter()
        .filter(|(_, to, _)| *to == dest)
        .filter_map(|(_, _, m)| match m {
            Message::Punch(p) if p.step == PunchStep::Go => Some(p.clone()),
            _ => None,
        })
        .collect()
}

fn invites(net: &Net, i: usize) -> Vec<(SocketAddr, [u8; 16], SocketAddr)> {
    net.push_requests
        .iter()
        .filter_map(|(n, e)| match e {
            Event::RelayInvite {
                relay,
                circuit,
                via,
            } if *n == i => Some((*relay, *circuit, *via)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_proxy_sends_both_sides_a_go_naming_the_other() {
    let mut net = net(PushConfig::default());
    let f_id = net.nodes[1].1.push_id();
    prove(&mut net, D);
    deliver(&mut net, 0, D, &ask(f_id, 7));
    // D is told F's TCP address as P sees it, as the client.
    let to_d = goes_to(&net, D);
    assert_eq!(to_d.len(), 1);
    assert_eq!(to_d[0].peer, Some(SocketAddr::new(F.ip(), 10000)));
    assert_eq!(to_d[0].role, Some(PunchRole::Client));
    assert_eq!(to_d[0].token, 7);
    // F is told D's address (its IP as seen, the port it asked with), as
    // the server, by its proxy.
    assert_eq!(
        goes(&net, 1),
        vec![(SocketAddr::new(D.ip(), 10777), PunchRole::Server, 7, P)]
    );
}

#[test]
fn no_punch_for_an_unproven_asker_or_an_unknown_peer() {
    let mut net = net(PushConfig::default());
    let f_id = net.nodes[1].1.push_id();
    deliver(&mut net, 0, D, &ask(f_id, 7));
    assert!(goes_to(&net, D).is_empty());
    assert!(goes(&net, 1).is_empty());
    prove(&mut net, D);
    deliver(&mut net, 0, D, &ask(f_id ^ 1, 8));
    assert!(goes_to(&net, D).is_empty());
    assert!(goes(&net, 1).is_empty());
}

#[test]
fn a_proxy_sets_up_punches_within_its_budget() {
    let push = PushConfig {
        punch: PunchConfig {
            per_source: 2,
            ..PunchConfig::default()
        },
        // So that F's own budget does not decide.
        connect_per_ip: Rate::new(100, Duration::from_secs(10)),
        ..PushConfig::default()
    };
    let mut net = net(push);
    let f_id = net.nodes[1].1.push_id();
    prove(&mut net, D);
    for token in 1..=4 {
        deliver(&mut net, 0, D, &ask(f_id, token));
    }
    assert_eq!(goes_to(&net, D).len(), 2);
    assert_eq!(goes(&net, 1).len(), 2);
}

#[test]
fn a_go_counts_only_from_a_peer_once_and_within_the_budget() {
    let push = PushConfig {
        connect_per_ip: Rate::new(2, Duration::from_secs(10)),
        ..PushConfig::default()
    };
    let mut net = net(push);
    let target = SocketAddr::from((Ipv4Addr::new(11, 0, 0, 9), 4000));
    // From an address that is not F's peer: nothing.
    deliver(&mut net, 1, D, &go(1, target, PunchRole::Server));
    assert!(goes(&net, 1).is_empty());
    // From its proxy: once per token.
    deliver(&mut net, 1, P, &go(1, target, PunchRole::Server));
    deliver(&mut net, 1, P, &go(1, target, PunchRole::Server));
    assert_eq!(goes(&net, 1).len(), 1);
    // Towards one address, at most the budget.
    for token in 2..6 {
        deliver(&mut net, 1, P, &go(token, target, PunchRole::Server));
    }
    assert_eq!(goes(&net, 1).len(), 2);
    // An address that cannot be connected to, or a start too far away.
    let bad = SocketAddr::from((Ipv4Addr::BROADCAST, 4000));
    deliver(&mut net, 1, P, &go(9, bad, PunchRole::Server));
    let mut late = go(
        10,
        SocketAddr::from((Ipv4Addr::new(11, 0, 0, 8), 1)),
        PunchRole::Server,
    );
    if let Message::Punch(p) = &mut late {
        p.start_in = Some(Duration::from_secs(3600));
    }
    deliver(&mut net, 1, P, &late);
    assert_eq!(goes(&net, 1).len(), 2);
}

#[test]
fn two_peers_of_a_proxy_meet_through_it() {
    let now = Instant::now();
    let nodes = [(P, "p.txt"), (F, "song.ogg"), (D2, "d.txt")]
        .into_iter()
        .map(|(a, name)| {
            let mut o = Overlay::new(cfg(PushConfig::default()), now);
            o.add_own_ip(a.ip());
            (a, o, vec![name.to_string()])
        })
        .collect();
    let mut net = Net::new(now, nodes);
    let now = net.now;
    net.nodes[1].1.connect(now, P, 10000);
    net.nodes[2].1.connect(now, P, 10000);
    net.pump();
    let f_id = net.nodes[1].1.push_id();
    let d = &mut net.nodes[2].1;
    assert_eq!(d.peer_proxies(&[D, P]), vec![P]);
    assert_eq!(d.peer_tcp(&P), Some(SocketAddr::new(P.ip(), 10000)));
    // Not a peer: nothing sent.
    assert!(!d.send_punch_ask(D, f_id, 5, 10555));
    assert!(d.send_punch_ask(P, f_id, 5, 10555));
    net.pump();
    assert_eq!(
        goes(&net, 1),
        vec![(SocketAddr::new(D2.ip(), 10555), PunchRole::Server, 5, P)]
    );
    assert_eq!(
        goes(&net, 2),
        vec![(SocketAddr::new(F.ip(), 10000), PunchRole::Client, 5, P)]
    );
    // The relay invite goes the same way.
    let relay = SocketAddr::new(P.ip(), 10000);
    assert!(net.nodes[2].1.send_relay_invite(P, f_id, [3; 16], relay));
    net.pump();
    assert_eq!(invites(&net, 1), vec![(relay, [3; 16], P)]);
}

#[test]
fn relay_invites_are_passed_on_and_budgeted() {
    let push = PushConfig {
        connect_per_ip: Rate::new(1, Duration::from_secs(10)),
        ..PushConfig::default()
    };
    let mut net = net(push);
    let f_id = net.nodes[1].1.push_id();
    let relay = SocketAddr::from((Ipv4Addr::new(11, 0, 0, 2), 10000));
    // Unproven at the proxy: dropped.
    deliver(&mut net, 0, D, &invite(Some(f_id), relay));
    assert!(invites(&net, 1).is_empty());
    prove(&mut net, D);
    deliver(&mut net, 0, D, &invite(Some(f_id), relay));
    assert_eq!(invites(&net, 1), vec![(relay, [7; 16], P)]);
    // Sent to F by an address that is not its peer: dropped.
    deliver(&mut net, 1, D, &invite(None, relay));
    assert_eq!(invites(&net, 1).len(), 1);
    // Over F's budget of connections to one address: dropped.
    deliver(&mut net, 0, D, &invite(Some(f_id), relay));
    assert_eq!(invites(&net, 1).len(), 1);
}
