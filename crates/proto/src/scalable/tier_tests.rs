//! Tests of the two tiers: leaves, ultrapeers, promotion and demotion.

use super::*;
use crate::testnet::Net;
use crate::{Config, Mode, Overlay};
use std::net::{IpAddr, Ipv4Addr};

fn tcfg(seed: u64, tier: Tier) -> Config {
    Config {
        udp_port: 30000,
        tcp_port: 30001,
        seed,
        mode: Mode::Scalable,
        scalable: ScalableConfig {
            min_degree: 2,
            target_degree: 3,
            max_degree: 5,
            ping_interval: Duration::from_millis(400),
            pong_timeout: Duration::from_millis(100),
            step_wait: Duration::from_millis(50),
            max_search_time: Duration::from_millis(2000),
            enough_results: 1,
            join_walk: 1,
            tier,
            leaf_ultrapeers: 2,
            max_leaves: 20,
            ultrapeer_min_bandwidth: 10,
            ultrapeer_min_uptime: Duration::from_millis(100),
            promote_wait: Duration::from_millis(300),
            demote_below_leaves: 1,
            demote_after: Duration::from_millis(300),
            leaf_retry_wait: Duration::from_millis(600),
            ..ScalableConfig::default()
        },
        ..Config::default()
    }
}

pub(super) fn addr(i: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1 + i as u8)), 30000)
}

/// Nodes with the given tiers, each sharing a file of its own and a
/// common one; `edit` changes each configuration.
pub(super) fn net_of(tiers: &[Tier], edit: impl Fn(usize, &mut Config)) -> Net {
    let now = Instant::now();
    let nodes = tiers
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut c = tcfg(i as u64 + 1, *t);
            edit(i, &mut c);
            let mut o = Overlay::new(c, now);
            o.add_own_ip(addr(i).ip());
            let lib = vec![format!("Unique-{i}.txt"), "common.TXT".to_string()];
            o.set_library(&lib);
            (addr(i), o, lib)
        })
        .collect();
    Net::new(now, nodes)
}

/// Every node joins through node 0, then time passes.
pub(super) fn join_through_first(net: &mut Net, settle: Duration) {
    let first = net.nodes[0].0;
    for i in 1..net.nodes.len() {
        let now = net.now;
        net.nodes[i].1.connect(now, first, first.port() + 1);
        net.pump();
    }
    net.advance(settle);
}

pub(super) fn sc(net: &Net, i: usize) -> &Scalable {
    net.nodes[i].1.scalable_part().unwrap()
}

/// 4 ultrapeers and 12 leaves.
pub(super) fn two_tiers() -> Net {
    let mut tiers = vec![Tier::Ultrapeer; 4];
    tiers.extend(vec![Tier::Leaf; 12]);
    let mut net = net_of(&tiers, |_, _| {});
    join_through_first(&mut net, Duration::from_millis(1500));
    net
}

#[test]
fn leaves_attach_to_ultrapeers_and_send_them_their_filters() {
    let net = two_tiers();
    let mut leaves_held = 0;
    for i in 0..4 {
        let s = sc(&net, i);
        assert!(s.is_ultrapeer());
        assert!(
            s.degree() >= 2,
            "ultrapeer {i} has {} ultrapeers",
            s.degree()
        );
        for (a, n) in &s.neighbours {
            let j = net.idx(*a).unwrap();
            // Ultrapeer neighbours are ultrapeers, leaves are leaves.
            assert_eq!(n.leaf, j >= 4, "ultrapeer {i}, neighbour {j}");
            if n.leaf {
                assert!(n.filter.is_some(), "leaf {j}'s filter at {i}");
            }
        }
        leaves_held += s.leaf_count();
    }
    for i in 4..16 {
        let s = sc(&net, i);
        assert!(!s.is_ultrapeer());
        assert_eq!(s.degree(), 2, "leaf {i}");
        assert!(s.neighbours.keys().all(|a| net.idx(*a).unwrap() < 4));
    }
    assert_eq!(leaves_held, 24);
}

#[test]
fn an_ultrapeer_passes_a_query_only_to_leaves_whose_filter_matches() {
    let mut net = two_tiers();
    net.sent.clear();
    let now = net.now;
    let id = net.nodes[1].1.search(now, "unique-9.");
    net.pump();
    net.advance(Duration::from_millis(1000));
    let hits: Vec<_> = net.results.iter().filter(|r| r.1 == id).collect();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].2, net.nodes[9].0);
    let leaves_asked: Vec<usize> = net
        .sent
        .iter()
        .filter(|(_, _, m)| matches!(m, Message::Query(q) if q.id == Some(id.0)))
        .filter_map(|(_, to, _)| net.idx(*to))
        .filter(|&j| j >= 4)
        .collect();
    assert!(leaves_asked.contains(&9));
    assert!(
        leaves_asked.iter().all(|&j| j == 9),
        "leaves asked: {leaves_asked:?}"
    );
}

#[test]
fn a_leaf_search_goes_through_one_of_its_ultrapeers() {
    let mut net = two_tiers();
    net.sent.clear();
    let now = net.now;
    let leaf = net.nodes[5].0;
    let id = net.nodes[5].1.search(now, "unique-12.");
    net.pump();
    net.advance(Duration::from_millis(1000));
    let hits: Vec<_> = net.results.iter().filter(|r| r.1 == id).collect();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].2, net.nodes[12].0);
    let from_leaf: Vec<SocketAddr> = net
        .sent
        .iter()
        .filter(|(from, _, m)| *from == leaf && matches!(m, Message::Query(_)))
        .map(|(_, to, _)| *to)
        .collect();
    assert_eq!(from_leaf.len(), 1, "{from_leaf:?}");
    assert!(net.idx(from_leaf[0]).unwrap() < 4);
    // The leaf received its answer from that ultrapeer.
    assert!(net.sent.iter().any(|(from, to, m)| *to == leaf
        && *from == from_leaf[0]
        && matches!(m, Message::QueryHit(h) if h.id == Some(id.0) && !h.files.is_empty())));
}

#[test]
fn a_leaf_asks_its_next_ultrapeer_when_the_first_is_silent() {
    let mut net = two_tiers();
    let leaf = 6;
    let ups: Vec<SocketAddr> = sc(&net, leaf).neighbours.keys().copied().collect();
    net.sent.clear();
    // The first ultrapeer asked drops the query: both are tried in turn.
    let now = net.now;
    let id = net.nodes[leaf].1.search(now, "nothing-of-the-kind");
    net.pump();
    net.advance(Duration::from_millis(1500));
    let asked: Vec<SocketAddr> = net
        .sent
        .iter()
        .filter(|(from, _, m)| {
            *from == net.nodes[leaf].0 && matches!(m, Message::Query(q) if q.id == Some(id.0))
        })
        .map(|(_, to, _)| *to)
        .collect();
    let mut sorted = asked.clone();
    sorted.sort();
    assert_eq!(sorted, ups, "asked {asked:?}");
}

#[test]
fn a_leaf_reattaches_when_its_ultrapeer_leaves() {
    let mut net = two_tiers();
    let leaf = 7;
    let gone = *sc(&net, leaf).neighbours.keys().next().unwrap();
    net.down.insert(gone);
    net.advance(Duration::from_millis(2500));
    let s = sc(&net, leaf);
    assert!(!s.neighbours.contains_key(&gone));
    assert_eq!(s.degree(), 2, "leaf has {:?}", s.neighbours.keys());
}

#[test]
fn leaf_slots_are_bounded() {
    let mut tiers = vec![Tier::Ultrapeer; 2];
    tiers.extend(vec![Tier::Leaf; 6]);
    let mut net = net_of(&tiers, |_, c| c.scalable.max_leaves = 3);
    join_through_first(&mut net, Duration::from_millis(1500));
    for i in 0..2 {
        assert_eq!(sc(&net, i).leaf_count(), 3, "ultrapeer {i}");
    }
    // The refusals said the ultrapeers are full.
    assert!(net.sent.iter().any(|(_, _, m)| matches!(m,
        Message::Pong(p) if p.extra.get("Full") == Some(&Value::Bool(true)))));
}

/// One ultrapeer with room for 2 leaves and 4 leaves that may become
/// ultrapeers if `capable`.
fn scarce(capable: bool) -> Net {
    let mut tiers = vec![Tier::Ultrapeer];
    tiers.extend(vec![Tier::Auto; 4]);
    let mut net = net_of(&tiers, |i, c| {
        c.scalable.max_leaves = 2;
        c.scalable.leaf_ultrapeers = 1;
        c.scalable.min_degree = 1;
        c.scalable.demote_below_leaves = 0;
        c.seed = i as u64 + 10;
    });
    for i in 1..5 {
        net.nodes[i].1.set_capability(capable, 100);
    }
    join_through_first(&mut net, Duration::from_millis(3000));
    net
}

#[test]
fn a_capable_leaf_is_promoted_when_ultrapeers_are_full() {
    let net = scarce(true);
    let promoted: Vec<usize> = (1..5).filter(|&i| sc(&net, i).is_ultrapeer()).collect();
    assert!(!promoted.is_empty());
    // Every leaf found a slot in the end.
    for i in (1..5).filter(|i| !promoted.contains(i)) {
        assert_eq!(sc(&net, i).degree(), 1, "leaf {i}");
    }
    // A promoted node links with the other ultrapeers.
    for &i in &promoted {
        assert!(sc(&net, i).degree() >= 1, "ultrapeer {i}");
    }
}

#[test]
fn a_firewalled_or_slow_leaf_is_never_promoted() {
    let net = scarce(false);
    assert!((1..5).all(|i| !sc(&net, i).is_ultrapeer()));
    let mut tiers = vec![Tier::Ultrapeer];
    tiers.extend(vec![Tier::Auto; 4]);
    let mut net = net_of(&tiers, |_, c| {
        c.scalable.max_leaves = 2;
        c.scalable.leaf_ultrapeers = 1;
    });
    for i in 1..5 {
        // Reachable, but below the bandwidth an ultrapeer needs.
        net.nodes[i].1.set_capability(true, 5);
    }
    join_through_first(&mut net, Duration::from_millis(3000));
    assert!((1..5).all(|i| !sc(&net, i).is_ultrapeer()));
}

#[test]
fn an_ultrapeer_with_few_leaves_among_many_ultrapeers_is_demoted() {
    // Node 0 starts alone, capable: it knows no ultrapeer, so it becomes
    // one; then 4 ultrapeers arrive and it has no leaf.
    let mut tiers = vec![Tier::Auto];
    tiers.extend(vec![Tier::Ultrapeer; 4]);
    let mut net = net_of(&tiers, |_, _| {});
    net.nodes[0].1.set_capability(true, 100);
    net.advance(Duration::from_millis(1000));
    assert!(sc(&net, 0).is_ultrapeer(), "alone and capable");
    join_through_first(&mut net, Duration::from_millis(300));
    assert!(sc(&net, 0).degree() >= 2);
    net.advance(Duration::from_millis(2000));
    let s = sc(&net, 0);
    assert!(!s.is_ultrapeer(), "still an ultrapeer with no leaf");
    // As a leaf it attached to the ultrapeers.
    assert_eq!(s.degree(), 2);
    let held: usize = (1..5).map(|i| sc(&net, i).leaf_count()).sum();
    assert_eq!(held, 2);
}

#[test]
fn a_leaf_that_floods_searches_is_limited_then_dropped() {
    let mut net = two_tiers();
    let leaf = 8;
    let ups: Vec<usize> = sc(&net, leaf)
        .neighbours
        .keys()
        .map(|a| net.idx(*a).unwrap())
        .collect();
    // 40 searches at once: its ultrapeers run at most a burst of them.
    for k in 0..40 {
        let now = net.now;
        net.nodes[leaf].1.search(now, &format!("flood {k}"));
        net.pump();
    }
    let runs: usize = ups
        .iter()
        .map(|&u| {
            net.sent
                .iter()
                .filter(|(from, _, m)| {
                    *from == net.nodes[u].0
                        && matches!(m, Message::Query(q) if q.text.starts_with("flood"))
                })
                .map(|(_, _, m)| match m {
                    Message::Query(q) => q.id,
                    _ => None,
                })
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        })
        .sum();
    let burst = net.nodes[0].1.config().scalable.neighbour_search_burst as usize;
    assert!(runs <= burst * ups.len(), "{runs} searches run");
    assert!(
        ups.iter()
            .any(|&u| !sc(&net, u).neighbours.contains_key(&net.nodes[leaf].0)),
        "the flooding leaf was kept"
    );
}
