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

/// 4 ultrapeers, 12 leaves attached, and node 16, a leaf not yet joined.
/// The hosts that `from`'s pongs to `to` named, in the order sent.
fn hosts_named(net: &Net, from: SocketAddr, to: SocketAddr) -> Vec<SocketAddr> {
    net.sent
        .iter()
        .filter(|(f, t, _)| *f == from && *t == to)
        .filter_map(|(_, _, m)| match m {
            Message::Pong(p) => p.extra.get("Hosts").and_then(Value::as_array).cloned(),
            _ => None,
        })
        .flatten()
        .filter_map(|v| v.as_str().and_then(|s| s.parse().ok()))
        .collect()
}

fn two_tiers_and_newcomer(edit: impl Fn(usize, &mut Config)) -> Net {
    let mut tiers = vec![Tier::Ultrapeer; 4];
    tiers.extend(vec![Tier::Leaf; 13]);
    let mut net = net_of(&tiers, edit);
    let first = net.nodes[0].0;
    for i in 1..16 {
        let now = net.now;
        net.nodes[i].1.connect(now, first, first.port() + 1);
        net.pump();
    }
    net.advance(Duration::from_millis(1500));
    net
}

#[test]
fn a_leaf_asked_by_a_newcomer_names_its_ultrapeers() {
    let mut net = two_tiers_and_newcomer(|_, _| {});
    let via = 5;
    let ups: Vec<SocketAddr> = sc(&net, via).neighbours.keys().copied().collect();
    assert_eq!(ups.len(), 2);
    let (a, now) = (net.nodes[via].0, net.now);
    net.nodes[16].1.connect(now, a, a.port() + 1);
    net.pump();
    // Before any keep-alive: the newcomer knows both ultrapeers of the
    // leaf it asked (not only the one at the end of its join walk), and
    // does not keep the leaf as a candidate.
    let named = hosts_named(&net, a, net.nodes[16].0);
    for u in &ups {
        assert!(named.contains(u), "{u} not named: {named:?}");
    }
    let known = sc(&net, 16).known_hosts();
    for u in &ups {
        assert!(known.contains(u), "{u} not among {known:?}");
    }
    assert!(!known.contains(&a));
    assert!(sc(&net, 16).degree() >= 1);
}

#[test]
fn a_leaf_pings_its_ultrapeers_and_learns_more_of_them() {
    let mut net = two_tiers();
    net.sent.clear();
    net.advance(Duration::from_millis(1200));
    let pings: Vec<(usize, usize)> = net
        .sent
        .iter()
        .filter(|(_, _, m)| matches!(m, Message::Ping(_)))
        .filter_map(|(f, t, _)| Some((net.idx(*f)?, net.idx(*t)?)))
        .filter(|(f, t)| (*f < 4) != (*t < 4))
        .collect();
    assert!(!pings.is_empty());
    // Over a leaf's link it is the leaf that pings (its ultrapeers, of
    // lower addresses, stay silent).
    assert!(
        pings.iter().all(|(f, _)| *f >= 4),
        "pings over leaf links: {pings:?}"
    );
    // The pongs name ultrapeers the leaf may use later.
    let leaf = 9;
    let known = sc(&net, leaf).known_hosts();
    assert!(known.len() >= 3, "leaf {leaf} knows {known:?}");
    assert!(known.iter().all(|a| net.idx(*a).unwrap() < 4));
}

#[test]
fn a_leaf_whose_search_is_not_run_drops_the_silent_ultrapeers_at_once() {
    // Keep-alives are rare here: only the search shows that they left.
    let mut net = two_tiers_and_newcomer(|_, c| {
        c.scalable.ping_interval = Duration::from_millis(5000);
    });
    let leaf = 6;
    let gone: Vec<SocketAddr> = sc(&net, leaf).neighbours.keys().copied().collect();
    assert_eq!(gone.len(), 2);
    for g in &gone {
        net.down.insert(*g);
    }
    let now = net.now;
    net.nodes[leaf].1.search(now, "unique-3.");
    net.pump();
    net.advance(Duration::from_millis(1600));
    let s = sc(&net, leaf);
    for g in &gone {
        assert!(!s.neighbours.contains_key(g), "{g} kept");
    }
}

#[test]
fn a_search_of_a_leaf_without_ultrapeer_waits_for_one() {
    let mut net = two_tiers_and_newcomer(|_, _| {});
    let now = net.now;
    // Node 16 has no ultrapeer yet when it searches.
    let id = net.nodes[16].1.search(now, "unique-11.");
    net.pump();
    net.advance(Duration::from_millis(100));
    let (a, now) = (net.nodes[0].0, net.now);
    net.nodes[16].1.connect(now, a, a.port() + 1);
    net.pump();
    net.advance(Duration::from_millis(1500));
    let hits: Vec<_> = net
        .results
        .iter()
        .filter(|r| r.0 == 16 && r.1 == id)
        .collect();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].2, net.nodes[11].0);
}

#[test]
fn a_leaf_refused_by_a_full_ultrapeer_asks_another_at_once() {
    let mut tiers = vec![Tier::Ultrapeer; 2];
    tiers.extend(vec![Tier::Leaf; 3]);
    let mut net = net_of(&tiers, |i, c| {
        c.scalable.leaf_ultrapeers = 1;
        c.scalable.join_walk = 0;
        if i == 0 {
            c.scalable.max_leaves = 2;
        }
    });
    let first = net.nodes[0].0;
    for i in 1..5 {
        let now = net.now;
        net.nodes[i].1.connect(now, first, first.port() + 1);
        net.pump();
    }
    // No timer ran: the leaf refused by the full ultrapeer 0 (which named
    // ultrapeer 1) asked ultrapeer 1 right away.
    assert_eq!(sc(&net, 0).leaf_count(), 2);
    for i in 2..5 {
        assert_eq!(sc(&net, i).degree(), 1, "leaf {i}");
    }
}

/// An address no node answers at.
fn dead(k: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 9, 1 + k as u8)), 30000)
}

#[test]
fn a_leaf_names_its_own_ultrapeers_before_hosts_of_its_cache() {
    let mut net = two_tiers_and_newcomer(|_, _| {});
    let via = 5;
    // Its cache is full of hosts that left.
    for k in 0..200 {
        net.nodes[via].1.add_known_host(dead(k));
    }
    let ups: Vec<SocketAddr> = sc(&net, via).neighbours.keys().copied().collect();
    assert_eq!(ups.len(), 2);
    net.sent.clear();
    let (a, now) = (net.nodes[via].0, net.now);
    net.nodes[16].1.connect(now, a, a.port() + 1);
    net.pump();
    let named = hosts_named(&net, a, net.nodes[16].0);
    for u in &ups {
        assert!(named.contains(u), "{u} not named: {named:?}");
    }
}

#[test]
fn a_host_that_does_not_answer_a_join_request_is_forgotten() {
    let mut net = two_tiers();
    let leaf = 7;
    let dead_hosts: Vec<SocketAddr> = (0..4).map(dead).collect();
    for d in &dead_hosts {
        net.nodes[leaf].1.add_known_host(*d);
    }
    // One of its ultrapeers leaves: the leaf looks for another and asks
    // hosts of its cache, the dead ones among them.
    let gone = *sc(&net, leaf).neighbours.keys().next().unwrap();
    net.down.insert(gone);
    net.advance(Duration::from_millis(3000));
    let s = sc(&net, leaf);
    assert_eq!(s.degree(), 2, "leaf has {:?}", s.neighbours.keys());
    let asked = net
        .sent
        .iter()
        .filter(|(f, t, _)| *f == net.nodes[leaf].0 && dead_hosts.contains(t))
        .count();
    assert!(asked > 0, "no dead host asked");
    let known = s.known_hosts();
    for d in &dead_hosts {
        if net
            .sent
            .iter()
            .any(|(f, t, _)| *f == net.nodes[leaf].0 && t == d)
        {
            assert!(!known.contains(d), "{d} asked, silent, still known");
        }
    }
}

#[test]
fn a_demoted_ultrapeer_hands_its_leaves_over_to_its_ultrapeers() {
    // Node 0, capable, starts alone and becomes an ultrapeer; two leaves
    // attach to it alone; then 4 ultrapeers arrive, and with fewer than 3
    // leaves node 0 becomes a leaf again.
    let mut tiers = vec![Tier::Auto];
    tiers.extend(vec![Tier::Leaf; 2]);
    tiers.extend(vec![Tier::Ultrapeer; 4]);
    let mut net = net_of(&tiers, |i, c| {
        c.scalable.leaf_ultrapeers = 1;
        c.scalable.demote_below_leaves = 3;
        // No keep-alive: the leaves learn of no other ultrapeer by it.
        c.scalable.ping_interval = Duration::from_millis(5000);
        c.seed = i as u64 + 20;
    });
    net.nodes[0].1.set_capability(true, 100);
    net.advance(Duration::from_millis(1000));
    assert!(sc(&net, 0).is_ultrapeer(), "alone and capable");
    let first = net.nodes[0].0;
    for i in 1..7 {
        let now = net.now;
        net.nodes[i].1.connect(now, first, first.port() + 1);
        net.pump();
    }
    assert_eq!(sc(&net, 0).leaf_count(), 2);
    let ups: Vec<SocketAddr> = (3..7).map(|i| net.nodes[i].0).collect();
    net.sent.clear();
    // (With rare keep-alives the tier is looked at every 2.5 s.)
    for _ in 0..200 {
        net.advance(Duration::from_millis(50));
        if !sc(&net, 0).is_ultrapeer() {
            break;
        }
    }
    assert!(!sc(&net, 0).is_ultrapeer(), "not demoted");
    // The pong that dropped each leaf named its ultrapeers...
    for leaf in 1..3 {
        let to = net.nodes[leaf].0;
        let named: Vec<SocketAddr> = net
            .sent
            .iter()
            .filter(|(f, t, _)| *f == first && *t == to)
            .find_map(|(_, _, m)| match m {
                Message::Pong(p) if p.extra.get("Accept") == Some(&Value::Bool(false)) => {
                    Some(p.extra.get("Hosts").and_then(Value::as_array).cloned())
                }
                _ => None,
            })
            .flatten()
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v.as_str().and_then(|s| s.parse().ok()))
            .collect();
        assert!(!named.is_empty(), "leaf {leaf} named nothing");
        assert!(named.iter().all(|a| ups.contains(a)), "{named:?}");
        // ...one of which took it at once.
        let s = sc(&net, leaf);
        assert_eq!(s.degree(), 1, "leaf {leaf}");
        assert!(s.neighbours.keys().all(|a| ups.contains(a)));
    }
}

#[test]
fn a_leaf_refused_by_fewer_full_ultrapeers_than_it_keeps_is_not_promoted() {
    // Ultrapeers 0 and 3 are full, ultrapeer 1 has room; leaf 2 keeps 2
    // ultrapeers and may become one.
    let tiers = [
        Tier::Ultrapeer,
        Tier::Ultrapeer,
        Tier::Auto,
        Tier::Ultrapeer,
    ];
    let mut net = net_of(&tiers, |i, c| {
        c.scalable.join_walk = 0;
        c.scalable.ping_interval = Duration::from_millis(5000);
        if i == 0 || i == 3 {
            c.scalable.max_leaves = 0;
        }
    });
    net.nodes[2].1.set_capability(true, 100);
    let room = net.nodes[1].0;
    let now = net.now;
    net.nodes[2].1.connect(now, room, room.port() + 1);
    net.pump();
    assert_eq!(sc(&net, 2).degree(), 1);
    // Some other host is always left to ask (here hosts that never
    // answer), so that only the refusals can show that ultrapeers are
    // scarce.
    let mut k = 0;
    let mut steps = |net: &mut Net, n: usize| {
        for _ in 0..n {
            net.nodes[2].1.add_known_host(dead(k));
            k += 1;
            net.advance(Duration::from_millis(100));
        }
    };
    let full = net.nodes[0].0;
    net.nodes[2].1.add_known_host(full);
    steps(&mut net, 2);
    assert_eq!(sc(&net, 2).roles.full_refusals, 1);
    // One refusal is not enough, however long the leaf waits.
    for _ in 0..15 {
        steps(&mut net, 1);
        assert!(!sc(&net, 2).is_ultrapeer(), "promoted after one refusal");
    }
    // A second full ultrapeer: as many refusals as the ultrapeers it keeps.
    let full = net.nodes[3].0;
    net.nodes[2].1.add_known_host(full);
    steps(&mut net, 10);
    assert!(
        sc(&net, 2).is_ultrapeer(),
        "not promoted after two refusals"
    );
}

#[test]
fn an_ultrapeer_that_still_gains_leaves_is_not_demoted() {
    // Node 0, capable, becomes an ultrapeer alone; 4 ultrapeers arrive,
    // then a leaf every 200 ms, fewer than it needs to stay, but more
    // often than the wait to demotion (300 to 600 ms).
    let mut tiers = vec![Tier::Auto];
    tiers.extend(vec![Tier::Ultrapeer; 4]);
    tiers.extend(vec![Tier::Leaf; 15]);
    let mut net = net_of(&tiers, |_, c| c.scalable.demote_below_leaves = 30);
    net.nodes[0].1.set_capability(true, 100);
    net.advance(Duration::from_millis(1000));
    assert!(sc(&net, 0).is_ultrapeer(), "alone and capable");
    let first = net.nodes[0].0;
    for i in 1..5 {
        let now = net.now;
        net.nodes[i].1.connect(now, first, first.port() + 1);
        net.pump();
    }
    for i in 5..20 {
        let now = net.now;
        net.nodes[i].1.connect(now, first, first.port() + 1);
        net.pump();
        net.advance(Duration::from_millis(200));
        let s = sc(&net, 0);
        assert!(
            s.is_ultrapeer(),
            "demoted with {} leaves coming",
            s.leaf_count()
        );
    }
    assert!(sc(&net, 0).degree() >= 2);
    // No more leaves come: it becomes a leaf.
    net.advance(Duration::from_millis(2000));
    assert!(!sc(&net, 0).is_ultrapeer(), "still an ultrapeer");
}

#[test]
fn a_join_request_left_unanswered_is_replaced_when_it_expires() {
    // Ticks every second (the pong timeout); a join request sent between
    // two ticks expires before the second.
    let tiers = [Tier::Ultrapeer, Tier::Ultrapeer, Tier::Leaf];
    let mut net = net_of(&tiers, |_, c| {
        c.scalable.pong_timeout = Duration::from_millis(1000);
        c.scalable.ping_interval = Duration::from_millis(5000);
        c.scalable.join_walk = 0;
    });
    let start = net.now;
    net.advance(Duration::from_millis(600));
    // The leaf's only address is a host that left.
    let now = net.now;
    net.nodes[2].1.connect(now, dead(0), 30001);
    net.pump();
    // It learns of two ultrapeers after its tick at 1 s (which had
    // nothing else to ask).
    net.advance(Duration::from_millis(450));
    assert_eq!(sc(&net, 2).degree(), 0);
    for i in 0..2 {
        let a = net.nodes[i].0;
        net.nodes[2].1.add_known_host(a);
    }
    // The request to the dead host expires at 1.6 s: the leaf asks the
    // ultrapeers then, not at its next tick (2 s).
    net.advance(start + Duration::from_millis(1700) - net.now);
    assert!(sc(&net, 2).degree() >= 1, "not linked at 1.7 s");
}

/// The leaf's queries of search `id`, in the order sent, by destination.
fn leaf_asked(net: &Net, leaf: usize, id: SearchId) -> Vec<SocketAddr> {
    net.sent
        .iter()
        .filter(|(from, _, m)| {
            *from == net.nodes[leaf].0 && matches!(m, Message::Query(q) if q.id == Some(id.0))
        })
        .map(|(_, to, _)| *to)
        .collect()
}

/// What the ultrapeers told leaf `leaf` of search `id`: (ultrapeer,
/// `"Running"`), in the order sent.
fn told(net: &Net, leaf: usize, id: SearchId) -> Vec<(SocketAddr, bool)> {
    net.sent
        .iter()
        .filter(|(_, to, _)| *to == net.nodes[leaf].0)
        .filter_map(|(from, _, m)| match m {
            Message::QueryHit(h) if h.id == Some(id.0) && h.files.is_empty() => {
                super::get_bool(&h.extra, "Running").map(|r| (*from, r))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_leaf_passes_over_an_ultrapeer_that_does_not_say_it_runs_its_search() {
    let mut net = two_tiers_and_newcomer(|_, c| {
        c.scalable.ping_interval = Duration::from_millis(5000);
        c.scalable.leaf_ack_wait = Duration::from_millis(100);
    });
    let leaf = 6;
    let ups: Vec<SocketAddr> = sc(&net, leaf).neighbours.keys().copied().collect();
    for u in &ups {
        net.down.insert(*u);
    }
    net.sent.clear();
    let now = net.now;
    let id = net.nodes[leaf].1.search(now, "unique-3.");
    net.pump();
    net.advance(Duration::from_millis(150));
    // Neither said it runs the search: the second was asked after the
    // acknowledgement wait, not the retry wait (600 ms here).
    let mut asked = leaf_asked(&net, leaf, id);
    asked.sort();
    assert_eq!(asked, ups);
}

#[test]
fn a_leaf_waits_for_the_ultrapeer_that_runs_its_search_to_end_it() {
    let mut net = two_tiers_and_newcomer(|_, c| {
        c.scalable.step_wait = Duration::from_millis(200);
        c.scalable.leaf_ack_wait = Duration::from_millis(100);
        c.scalable.leaf_retry_wait = Duration::from_millis(5000);
        c.scalable.max_search_time = Duration::from_millis(20_000);
    });
    let leaf = 6;
    net.sent.clear();
    let now = net.now;
    let id = net.nodes[leaf].1.search(now, "nothing-of-the-kind");
    net.pump();
    net.advance(Duration::from_millis(300));
    // Past the acknowledgement wait: the ultrapeer asked said it runs the
    // search, so the leaf asked no other.
    let asked = leaf_asked(&net, leaf, id);
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(told(&net, leaf, id), vec![(asked[0], true)]);
    // It found nothing and said so: the leaf asked its other ultrapeer at
    // once, long before the retry wait.
    net.advance(Duration::from_millis(3000));
    let told = told(&net, leaf, id);
    assert!(told.contains(&(asked[0], false)), "{told:?}");
    let asked = leaf_asked(&net, leaf, id);
    assert_eq!(asked.len(), 2, "{asked:?}");
}

#[test]
fn an_ultrapeer_asks_only_its_own_leaves_for_a_leaf_in_debt() {
    let mut tiers = vec![Tier::Ultrapeer; 3];
    tiers.extend(vec![Tier::Leaf; 3]);
    let mut net = net_of(&tiers, |_, c| {
        c.scalable.leaf_ultrapeers = 1;
        c.scalable.neighbour_search_interval = Duration::from_millis(1);
    });
    join_through_first(&mut net, Duration::from_millis(1500));
    let leaf = 4;
    let up = *sc(&net, leaf).neighbours.keys().next().unwrap();
    let u = net.idx(up).unwrap();
    let first = net.nodes[leaf].1.search(net.now, "common");
    net.pump();
    net.advance(Duration::from_millis(1500));
    // The first search ran on a loan and brought answers: the leaf is in
    // debt now.
    assert!(net.results.iter().any(|r| r.0 == leaf && r.1 == first));
    net.sent.clear();
    let second = net.nodes[leaf].1.search(net.now, "common");
    net.pump();
    net.advance(Duration::from_millis(1500));
    let grown = net.sent.iter().any(|(from, to, m)| {
        *from == up
            && net.idx(*to).is_some_and(|j| j < 3)
            && matches!(m, Message::Query(q) if q.id == Some(second.0))
    });
    assert!(!grown, "ultrapeer {u} grew the search of a leaf in debt");
    // Its own other leaves were asked (every peer of the test net shares
    // "common").
    let own: Vec<usize> = (3..6)
        .filter(|&j| {
            j != leaf
                && sc(&net, u)
                    .neighbours
                    .get(&net.nodes[j].0)
                    .is_some_and(|n| n.leaf)
        })
        .collect();
    assert!(!own.is_empty(), "ultrapeer {u} has no other leaf to ask");
    for j in &own {
        let to = net.nodes[*j].0;
        assert!(
            net.sent.iter().any(|(from, t, m)| *from == up
                && *t == to
                && matches!(m, Message::Query(q) if q.id == Some(second.0))),
            "leaf {j} of ultrapeer {u} not asked"
        );
    }
    // It said so when its search (over its own leaves) stopped.
    assert_eq!(told(&net, leaf, second), vec![(up, true), (up, false)]);
}
