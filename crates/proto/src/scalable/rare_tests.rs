//! Tests of what keeps searches for rare files (held by one peer) from
//! failing: a search waits for a first link, and an answer from far away
//! is passed back twice on every hop and taken once.

use super::tier_tests::{addr, join_through_first, net_of, sc, two_tiers};
use super::*;
use crate::Message;

#[test]
fn a_leaf_search_waits_for_its_first_ultrapeer() {
    let mut net = net_of(&[Tier::Ultrapeer, Tier::Leaf], |_, _| {});
    // The leaf searches before it has any ultrapeer...
    let now = net.now;
    let id = net.nodes[1].1.search(now, "unique-0.");
    net.pump();
    net.advance(Duration::from_millis(300));
    assert_eq!(sc(&net, 1).degree(), 0);
    // ...then attaches to one: the search goes through it.
    let up = addr(0);
    let now = net.now;
    net.nodes[1].1.connect(now, up, up.port() + 1);
    net.pump();
    net.advance(Duration::from_millis(1000));
    assert_eq!(sc(&net, 1).degree(), 1);
    let hits: Vec<_> = net.results.iter().filter(|r| r.1 == id).collect();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].2, up);
}

#[test]
fn an_ultrapeer_search_waits_for_its_first_link_within_the_search_time() {
    let mut net = net_of(&[Tier::Ultrapeer, Tier::Ultrapeer], |_, _| {});
    let now = net.now;
    let id = net.nodes[1].1.search(now, "unique-0.");
    net.pump();
    net.advance(Duration::from_millis(300));
    let a = addr(0);
    let now = net.now;
    net.nodes[1].1.connect(now, a, a.port() + 1);
    net.pump();
    net.advance(Duration::from_millis(1000));
    assert_eq!(net.results.iter().filter(|r| r.1 == id).count(), 1);
    // A search that never finds a link ends with its time.
    let mut net = net_of(&[Tier::Ultrapeer], |_, _| {});
    let now = net.now;
    let id = net.nodes[0].1.search(now, "anything");
    net.advance(Duration::from_millis(2500));
    assert!(net.finished.contains(&(0, id)));
    assert!(sc(&net, 0).searches.is_empty());
}

/// A leaf of the network that node 0 (an ultrapeer) does not hold.
fn far_leaf(net: &crate::testnet::Net) -> usize {
    (4..16)
        .find(|&j| !sc(net, 0).neighbours.contains_key(&addr(j)))
        .unwrap()
}

/// 4 ultrapeers with room for 6 leaves each, and 12 leaves with 2
/// ultrapeers each: the leaves spread over the ultrapeers.
fn spread_tiers() -> crate::testnet::Net {
    let mut tiers = vec![Tier::Ultrapeer; 4];
    tiers.extend(vec![Tier::Leaf; 12]);
    let mut net = net_of(&tiers, |_, c| c.scalable.max_leaves = 6);
    join_through_first(&mut net, Duration::from_millis(1500));
    net
}

#[test]
fn a_far_answer_is_passed_back_twice_and_taken_once() {
    let mut net = spread_tiers();
    let holder = far_leaf(&net);
    net.sent.clear();
    let now = net.now;
    let id = net.nodes[0].1.search(now, &format!("unique-{holder}."));
    net.pump();
    net.advance(Duration::from_millis(1000));
    // The holder's ultrapeer passed its answer (from 2 hops away) to us
    // twice...
    let to_us: Vec<&SocketAddr> = net
        .sent
        .iter()
        .filter(|(_, to, m)| {
            *to == addr(0)
                && matches!(m, Message::QueryHit(h) if h.id == Some(id.0) && !h.files.is_empty())
        })
        .map(|(from, _, _)| from)
        .collect();
    assert_eq!(to_us.len(), 2, "{to_us:?}");
    assert_eq!(to_us[0], to_us[1]);
    // ...and the search took it once.
    let hits: Vec<_> = net.results.iter().filter(|r| r.1 == id).collect();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].2, addr(holder));
}

#[test]
fn a_near_answer_is_sent_once() {
    let mut net = two_tiers();
    // A leaf of node 0 answers from 1 hop away: one copy is enough.
    let near = (4..16)
        .find(|&j| sc(&net, 0).neighbours.contains_key(&addr(j)))
        .unwrap();
    net.sent.clear();
    let now = net.now;
    let id = net.nodes[0].1.search(now, &format!("unique-{near}."));
    net.pump();
    net.advance(Duration::from_millis(1000));
    let hits = |net: &crate::testnet::Net| {
        net.sent
            .iter()
            .filter(|(_, _, m)| {
                matches!(m, Message::QueryHit(h) if h.id == Some(id.0) && !h.files.is_empty())
            })
            .count()
    };
    assert_eq!(hits(&net), 1);
    assert_eq!(net.results.iter().filter(|r| r.1 == id).count(), 1);
}

#[test]
fn a_leaf_takes_the_copies_of_a_far_answer_once() {
    // Leaves with one ultrapeer each.
    let mut tiers = vec![Tier::Ultrapeer; 4];
    tiers.extend(vec![Tier::Leaf; 12]);
    let mut net = net_of(&tiers, |_, c| {
        c.scalable.leaf_ultrapeers = 1;
        c.scalable.max_leaves = 4;
        // The leaf searches right after linking: lent a budget at once.
        c.scalable.leaf_loan_after = Duration::ZERO;
    });
    join_through_first(&mut net, Duration::from_millis(1500));
    // A leaf searches for a file of a leaf of another ultrapeer: the
    // answer comes from 2 hops away.
    let (searcher, holder) = (4..16)
        .flat_map(|a| (4..16).map(move |b| (a, b)))
        .find(|&(a, b)| {
            a != b
                && sc(&net, a)
                    .neighbours
                    .keys()
                    .all(|u| !sc(&net, b).neighbours.contains_key(u))
        })
        .unwrap();
    net.sent.clear();
    let now = net.now;
    let id = net.nodes[searcher]
        .1
        .search(now, &format!("unique-{holder}."));
    net.pump();
    net.advance(Duration::from_millis(1000));
    let copies = net
        .sent
        .iter()
        .filter(|(_, to, m)| {
            *to == addr(searcher)
                && matches!(m, Message::QueryHit(h) if h.id == Some(id.0) && !h.files.is_empty())
        })
        .count();
    assert_eq!(copies, 2);
    let hits: Vec<_> = net.results.iter().filter(|r| r.1 == id).collect();
    assert_eq!(hits.len(), 1, "{hits:?}");
}

#[test]
fn a_search_that_stopped_growing_still_takes_late_answers() {
    let mut net = two_tiers();
    let now = net.now;
    let id = net.nodes[0].1.search(now, "nothing-of-the-kind");
    net.pump();
    // Until the search stops growing (its last step asks nobody).
    for _ in 0..200 {
        if sc(&net, 0).searches.get(&id).is_none_or(|d| d.lingering) {
            break;
        }
        net.advance(Duration::from_millis(5));
    }
    let s = sc(&net, 0);
    let dq = &s.searches[&id];
    assert!(dq.lingering, "the search still grows");
    assert!(net.nodes[0].1.search_running(id));
    // An answer from an ultrapeer the search asked, arriving late (passed
    // back from a holder beyond it: an answer of the ultrapeer's own would
    // have to fit its filter).
    let asked = *dq.progress.depth.keys().next().unwrap();
    let mut extra = base_extra();
    extra.insert("Via".into(), serde_json::Value::Bool(true));
    let late = Message::QueryHit(crate::message::QueryHit {
        ip: asked.ip(),
        files: vec![crate::HitFile::named("nothing-of-the-kind.txt")],
        id: Some(id.0),
        more: false,
        ports: crate::message::Ports {
            udp: Some(asked.port()),
            tcp: Some(asked.port() + 1),
        },
        extra,
    });
    let now = net.now;
    net.nodes[0].1.handle_message(now, asked, late);
    net.pump();
    assert_eq!(net.results.iter().filter(|r| r.1 == id).count(), 1);
    // Then it ends.
    net.advance(Duration::from_millis(200));
    assert!(!net.nodes[0].1.search_running(id));
}

/// Ultrapeers that send nothing unsolicited (no probe budget) and link
/// without walks, and leaves.
fn no_probes(ups: usize, leaves: usize) -> crate::testnet::Net {
    let mut tiers = vec![Tier::Ultrapeer; ups];
    tiers.extend(vec![Tier::Leaf; leaves]);
    let mut net = net_of(&tiers, |i, c| {
        if i < ups {
            c.probes_per_sec = 0.0;
            c.probe_burst = 0.0;
            c.scalable.join_walk = 0;
        }
    });
    for i in 1..ups {
        let now = net.now;
        net.nodes[i].1.connect(now, addr(0), addr(0).port() + 1);
        net.pump();
    }
    net.advance(Duration::from_millis(500));
    assert!(sc(&net, 0).degree() >= 1);
    net
}

#[test]
fn an_ultrapeer_with_a_free_slot_takes_a_leaf_that_asks_it_at_once() {
    let mut net = no_probes(3, 1);
    // The leaf's join would walk on to another ultrapeer, whose offer
    // (unsolicited) cannot go: taken at once, it is answered directly.
    let now = net.now;
    net.nodes[3].1.connect(now, addr(0), addr(0).port() + 1);
    net.pump();
    net.advance(Duration::from_millis(50));
    assert!(sc(&net, 3).neighbours.contains_key(&addr(0)));
    assert!(sc(&net, 0).holds_leaf_filter(&addr(3)));
}

#[test]
fn a_leaf_asked_by_a_newcomer_names_ultrapeers_it_knows() {
    let mut net = no_probes(2, 2);
    let now = net.now;
    net.nodes[2].1.connect(now, addr(0), addr(0).port() + 1);
    net.pump();
    net.advance(Duration::from_millis(50));
    assert!(sc(&net, 2).degree() >= 1);
    // The newcomer asks the leaf, which names ultrapeer 0 (or 1): the
    // newcomer asks it itself and is taken.
    net.sent.clear();
    let now = net.now;
    net.nodes[3].1.connect(now, addr(2), addr(2).port() + 1);
    net.pump();
    net.advance(Duration::from_millis(50));
    assert!(net.sent.iter().any(|(from, to, m)| *from == addr(2)
        && *to == addr(3)
        && matches!(m, Message::Pong(p) if p.extra.get("Hosts").is_some_and(|h| h.as_array().is_some_and(|a| !a.is_empty())))));
    assert!(
        sc(&net, 3).degree() >= 1,
        "{:?}",
        sc(&net, 3).neighbours.keys()
    );
}
