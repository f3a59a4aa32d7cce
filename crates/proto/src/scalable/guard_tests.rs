//! Tests of the defences against false answers and costly searches
//! (`guard.rs`).

use super::bloom::b64_encode;
use super::*;
use crate::shared::{echo_of, nonce_of};
use crate::{Config, Event, Mode, Overlay};
use std::net::{IpAddr, Ipv4Addr};

fn gcfg(scalable: ScalableConfig) -> Config {
    Config {
        udp_port: 30000,
        tcp_port: 30001,
        seed: 1,
        mode: Mode::Scalable,
        scalable: ScalableConfig {
            min_degree: 2,
            target_degree: 8,
            max_degree: 12,
            ping_interval: Duration::from_secs(400),
            pong_timeout: Duration::from_secs(100),
            step_wait: Duration::from_millis(50),
            max_search_time: Duration::from_millis(5000),
            enough_results: 1,
            tier: Tier::Ultrapeer,
            // The count of searches is not what these tests are about.
            neighbour_search_interval: Duration::from_millis(1),
            neighbour_search_burst: 1000,
            ..scalable
        },
        ..Config::default()
    }
}

fn node(scalable: ScalableConfig, now: Instant) -> Overlay {
    let mut o = Overlay::new(gcfg(scalable), now);
    o.add_own_ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    o
}

fn peer(i: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 3, i)), 30000)
}

/// Makes `addr` a neighbour of `o` (a leaf of it with `leaf`) through the
/// whole handshake; returns the nonce `o` gave it (its pongs echo it).
pub(super) fn link(o: &mut Overlay, now: Instant, addr: SocketAddr, leaf: bool) -> u64 {
    let join = format!(
        r#"{{"Command": 1, "IP": "{}", "TTL": 0, "Scalable": 3, "Join": true, "Nonce": 5, "UdpPort": {}, "TcpPort": 1}}"#,
        addr.ip(),
        addr.port()
    );
    o.handle_datagram(now, addr, join.as_bytes());
    let offer = std::iter::from_fn(|| o.poll_transmit())
        .find(|t| t.dest == addr)
        .unwrap();
    let Message::Pong(p) = &offer.message else {
        panic!("{offer:?}")
    };
    assert_eq!(echo_of(&p.extra), Some(5));
    let confirm = format!(
        r#"{{"Command": 2, "IP": "{}", "Scalable": 3, "Confirm": true, "Leaf": {leaf}, "Echo": {}, "Nonce": 6, "UdpPort": {}, "TcpPort": 1}}"#,
        addr.ip(),
        nonce_of(&p.extra).unwrap(),
        addr.port()
    );
    o.handle_datagram(now, addr, confirm.as_bytes());
    assert!(o.neighbours().iter().any(|n| n.udp == addr));
    while o.poll_transmit().is_some() {}
    nonce_of(&p.extra).unwrap()
}

/// `addr` sends `o` its filter, of these bytes.
fn give_filter_bytes(o: &mut Overlay, now: Instant, addr: SocketAddr, echo: u64, bytes: &[u8]) {
    let pong = format!(
        r#"{{"Command": 2, "IP": "{}", "Scalable": 3, "Echo": {echo}, "Bloom": "{}", "BloomBits": {}, "BloomHashes": {}, "BloomOffset": 0, "BloomGen": 1, "UdpPort": {}, "TcpPort": 1}}"#,
        addr.ip(),
        b64_encode(bytes),
        bytes.len() * 8,
        BLOOM_HASHES,
        addr.port()
    );
    o.handle_datagram(now, addr, pong.as_bytes());
    while o.poll_transmit().is_some() {}
}

/// `addr` sends `o` the filter of a library of these names.
pub(super) fn give_filter(
    o: &mut Overlay,
    now: Instant,
    addr: SocketAddr,
    echo: u64,
    names: &[&str],
) {
    let f = TrigramBloom::from_names(names);
    give_filter_bytes(o, now, addr, echo, f.as_bytes());
}

fn has_filter(o: &Overlay, addr: SocketAddr) -> bool {
    o.scalable_part().unwrap().neighbours[&addr]
        .filter
        .is_some()
}

/// `from` answers search `id` itself with a file of this name; returns
/// whether it became a search result.
fn answer(o: &mut Overlay, now: Instant, from: SocketAddr, id: SearchId, name: &str) -> bool {
    let hit = format!(
        r#"{{"Command": 4, "Contents": ["{name}"], "IP": "{}", "Id": {}, "Scalable": 3, "UdpPort": {}, "TcpPort": 6666}}"#,
        from.ip(),
        id.0,
        from.port()
    );
    o.handle_datagram(now, from, hit.as_bytes());
    std::iter::from_fn(|| o.poll_event()).any(|e| matches!(e, Event::SearchResult { .. }))
}

#[test]
fn answers_that_do_not_fit_the_neighbours_filter_are_not_taken_and_cost_the_link() {
    let now = Instant::now();
    let mut o = node(ScalableConfig::default(), now);
    let honest = peer(1);
    let liar = peer(2);
    let silent = peer(3);
    let e_honest = link(&mut o, now, honest, false);
    let e_liar = link(&mut o, now, liar, false);
    link(&mut o, now, silent, false);
    give_filter(&mut o, now, honest, e_honest, &["Holiday photos 2019.zip"]);
    give_filter(&mut o, now, liar, e_liar, &["Cooking recipes.pdf"]);
    let id = o.search(now, "holiday");
    while o.poll_transmit().is_some() {}
    // A true answer fits the filter of the one that sends it.
    assert!(answer(&mut o, now, honest, id, "Holiday photos 2019.zip"));
    // One that names a file the neighbour's filter does not hold is not
    // taken, nor is an answer from a neighbour whose filter we lack.
    assert!(!answer(&mut o, now, liar, id, "holiday (complete).exe"));
    assert!(!answer(&mut o, now, silent, id, "holiday.zip"));
    assert_eq!(o.degree(), 3);
    // After a few such answers the liar is dropped (the one without a
    // filter is not: its answers are merely not taken).
    let strikes = ScalableConfig::default().false_answer_strikes;
    for _ in 1..strikes {
        assert!(!answer(&mut o, now, liar, id, "holiday (complete).exe"));
    }
    let left: Vec<SocketAddr> = o.neighbours().iter().map(|n| n.udp).collect();
    assert!(!left.contains(&liar), "the liar is dropped");
    assert!(left.contains(&honest) && left.contains(&silent));
}

#[test]
fn a_filter_too_full_for_a_library_is_refused() {
    let now = Instant::now();
    let mut o = node(ScalableConfig::default(), now);
    let a = peer(1);
    let b = peer(2);
    let ea = link(&mut o, now, a, true);
    let eb = link(&mut o, now, b, true);
    give_filter(&mut o, now, a, ea, &["Holiday photos 2019.zip", "Song.ogg"]);
    assert!(has_filter(&o, a));
    // All ones: every query would match it, and every false answer fit.
    give_filter_bytes(&mut o, now, b, eb, &[0xff; 64]);
    assert!(!has_filter(&o, b));
    // The leaf with a refused filter is not asked.
    o.search(now, "anything at all");
    let dests: Vec<SocketAddr> = std::iter::from_fn(|| o.poll_transmit())
        .filter(|t| matches!(t.message, Message::Query(_)))
        .map(|t| t.dest)
        .collect();
    assert!(!dests.contains(&b), "{dests:?}");
}

/// A scalable query `from` a neighbour: id, hops, TTL. Returns whether we
/// took it (it reached the driver).
fn query(o: &mut Overlay, now: Instant, from: SocketAddr, id: u64, hops: u64, ttl: i64) -> bool {
    let q = format!(
        r#"{{"Command": 3, "Contents": "zzqq", "IP": "{}", "Id": {id}, "Scalable": 3, "TTL": {ttl}, "Hops": {hops}, "UdpPort": {}, "TcpPort": 1}}"#,
        from.ip(),
        from.port()
    );
    o.handle_datagram(now, from, q.as_bytes());
    while o.poll_transmit().is_some() {}
    std::iter::from_fn(|| o.poll_event()).any(|e| matches!(e, Event::Query(_)))
}

#[test]
fn a_neighbours_own_queries_are_paid_in_estimated_messages() {
    let now = Instant::now();
    let cfg = ScalableConfig {
        query_budget: 100,
        search_cost_burst: 1,
        search_cost_window: Duration::from_secs(100),
        ..ScalableConfig::default()
    };
    let mut o = node(cfg, now);
    for i in 1..=4 {
        link(&mut o, now, peer(i), false);
    }
    let a = peer(1);
    // Degree 4: a TTL 2 query through us is estimated at 1 + 3 * (1 + 3)
    // = 13 messages; the bucket (one budget of 100 on a new link) pays
    // for 7 of them.
    // (A millisecond apart: the count of searches is refilled meanwhile.)
    let at = |t: Instant, id: u64| t + Duration::from_millis(id);
    let took = (1..=20)
        .filter(|id| query(&mut o, at(now, *id), a, *id, 1, 2))
        .count();
    assert_eq!(took, 7);
    // Queries it passes on for others are not charged.
    assert!((100..110).all(|id| query(&mut o, at(now, 20), a, id, 2, 2)));
    // The bucket refills at one budget per window.
    let later = now + Duration::from_secs(50);
    let took = (21..=40)
        .filter(|id| query(&mut o, at(later, *id - 20), a, *id, 1, 2))
        .count();
    assert_eq!(took, 50 / 13 + 1, "the 9 left plus 50 refilled, 13 each");
}

/// Runs the search of leaf `leaf` with this id to its end; returns the
/// queries `o` sent for it to its ultrapeer neighbours.
fn leaf_search(o: &mut Overlay, now: &mut Instant, leaf: SocketAddr, id: u64) -> usize {
    let q = format!(
        r#"{{"Command": 3, "Contents": "rare file {id}", "IP": "{}", "Id": {id}, "Scalable": 3, "TTL": 0, "Hops": 1, "UdpPort": {}, "TcpPort": 1}}"#,
        leaf.ip(),
        leaf.port()
    );
    o.handle_datagram(*now, leaf, q.as_bytes());
    let mut sent = 0;
    for _ in 0..200 {
        sent += std::iter::from_fn(|| o.poll_transmit())
            .filter(|t| {
                t.dest != leaf && matches!(&t.message, Message::Query(q) if q.id == Some(id))
            })
            .count();
        while o.poll_event().is_some() {}
        *now += Duration::from_millis(50);
        o.handle_timeout(*now);
    }
    sent
}

#[test]
fn a_leaf_searching_far_more_often_than_a_person_gets_small_searches() {
    let mut now = Instant::now();
    let cfg = ScalableConfig {
        query_budget: 60,
        search_cost_burst: 1,
        leaf_search_cost_window: Duration::from_secs(300),
        leaf_loan_after: Duration::ZERO,
        ..ScalableConfig::default()
    };
    let mut o = node(cfg, now);
    for i in 1..=8 {
        let e = link(&mut o, now, peer(i), false);
        give_filter(&mut o, now, peer(i), e, &["nothing alike.txt"]);
    }
    let leaf = peer(100);
    let e = link(&mut o, now, leaf, true);
    give_filter(&mut o, now, leaf, e, &["mine.txt"]);
    // The first search has the whole budget (a new leaf link holds a
    // third of one: the bucket goes into debt for it) and grows over the
    // neighbours.
    let first = leaf_search(&mut o, &mut now, leaf, 1);
    assert!(first >= 8, "{first}");
    // The next ones, right after, get nothing while the bucket is in
    // debt.
    let second = leaf_search(&mut o, &mut now, leaf, 2);
    let third = leaf_search(&mut o, &mut now, leaf, 3);
    assert!(second + third < first / 2, "{first} {second} {third}");
    // A leaf spreads its searches over its ultrapeers: each refills its
    // bucket at that share of the rate. One window later the leaf's
    // search is still smaller than the first...
    now += Duration::from_secs(300);
    let window = leaf_search(&mut o, &mut now, leaf, 4);
    assert!(window < first, "{window} {first}");
    // ...and after one window per ultrapeer a leaf keeps, it searches as
    // widely as at first.
    let ups = ScalableConfig::default().leaf_ultrapeers as u64;
    now += Duration::from_secs(300 * ups);
    let later = leaf_search(&mut o, &mut now, leaf, 5);
    assert_eq!(later, first);
}

/// An answer to search `id` that neighbour `from` passes back for the
/// peer at `holder`.
fn passed_back(o: &mut Overlay, now: Instant, from: SocketAddr, id: u64, holder: u8, hops: u64) {
    let hit = format!(
        r#"{{"Command": 4, "Contents": ["popular song {holder}.ogg"], "IP": "127.0.9.{holder}", "Id": {id}, "Scalable": 3, "Via": true, "Hops": {hops}, "UdpPort": 30000, "TcpPort": 6666}}"#
    );
    o.handle_datagram(now, from, hit.as_bytes());
    while o.poll_transmit().is_some() {}
    while o.poll_event().is_some() {}
}

/// A leaf's search for a popular name that brings `answers` answers
/// (passed back by the neighbours it asked); then, after `wait`, the
/// queries its next search sends to ultrapeers.
fn popular_then_next(answers: u8, wait: Duration) -> usize {
    let mut now = Instant::now();
    let cfg = ScalableConfig {
        query_budget: 60,
        search_cost_burst: 3,
        leaf_search_cost_window: Duration::from_secs(3600),
        leaf_loan_after: Duration::ZERO,
        ..ScalableConfig::default()
    };
    let mut o = node(cfg, now);
    for i in 1..=8 {
        let e = link(&mut o, now, peer(i), false);
        give_filter(&mut o, now, peer(i), e, &["popular song.ogg"]);
    }
    let leaf = peer(100);
    let e = link(&mut o, now, leaf, true);
    give_filter(&mut o, now, leaf, e, &["mine.txt"]);
    let q = format!(
        r#"{{"Command": 3, "Contents": "popular song", "IP": "{}", "Id": 1, "Scalable": 3, "TTL": 0, "Hops": 1, "UdpPort": {}, "TcpPort": 1}}"#,
        leaf.ip(),
        leaf.port()
    );
    o.handle_datagram(now, leaf, q.as_bytes());
    while o.poll_transmit().is_some() {}
    now += Duration::from_millis(60);
    o.handle_timeout(now);
    let asked: Vec<SocketAddr> = std::iter::from_fn(|| o.poll_transmit())
        .filter(|t| t.dest != leaf && matches!(t.message, Message::Query(_)))
        .map(|t| t.dest)
        .collect();
    assert!(!asked.is_empty());
    for k in 0..answers {
        passed_back(
            &mut o,
            now,
            asked[usize::from(k) % asked.len()],
            1,
            k + 1,
            2,
        );
    }
    // The search stops (and gives back what it did not spend of its
    // estimate).
    for _ in 0..10 {
        now += Duration::from_millis(50);
        o.handle_timeout(now);
        while o.poll_transmit().is_some() {}
    }
    now += wait;
    leaf_search(&mut o, &mut now, leaf, 2)
}

#[test]
fn the_answers_a_leafs_search_brings_are_paid_by_the_leaf() {
    // Half a budget refilled (a leaf's bucket at each of its 3
    // ultrapeers refills one budget per 3 windows): enough to pay for a
    // search's few estimated messages and one answer, not for 60 answers.
    let wait = Duration::from_secs(3600 * 3 / 2);
    assert!(popular_then_next(1, wait) > 0);
    assert_eq!(popular_then_next(60, wait), 0);
}

#[test]
fn the_answers_a_neighbours_own_search_brings_are_paid_by_it() {
    let now = Instant::now();
    let cfg = ScalableConfig {
        query_budget: 100,
        search_cost_burst: 1,
        search_cost_window: Duration::from_secs(100_000),
        ..ScalableConfig::default()
    };
    let mut o = node(cfg, now);
    for i in 1..=4 {
        link(&mut o, now, peer(i), false);
    }
    let a = peer(1);
    // Its own search (first hop), TTL 1: estimated at 1 + 3 = 4.
    assert!(query(&mut o, now, a, 1, 1, 1));
    // The neighbours we passed it to send back 45 answers that came 2
    // hops, paid by `a` (2 messages each).
    for k in 0..45u8 {
        passed_back(&mut o, now, peer(2 + k % 3), 1, k + 1, 2);
    }
    // 100 - 4 - 90 = 6 left: one more query of 4, not two.
    let t = now + Duration::from_millis(1);
    assert!(query(&mut o, t, a, 2, 1, 1));
    assert!(!query(&mut o, t + Duration::from_millis(1), a, 3, 1, 1));
    // Answers to a search it only passes on (not its own) are not its
    // to pay.
    let mut o = node(
        ScalableConfig {
            query_budget: 100,
            search_cost_burst: 1,
            search_cost_window: Duration::from_secs(100_000),
            ..ScalableConfig::default()
        },
        now,
    );
    for i in 1..=4 {
        link(&mut o, now, peer(i), false);
    }
    assert!(query(&mut o, now, a, 10, 2, 1));
    for k in 0..90u8 {
        passed_back(&mut o, now, peer(2 + k % 3), 10, k + 1, 3);
    }
    assert!(query(&mut o, t, a, 11, 1, 1));
    assert!(query(&mut o, t + Duration::from_millis(1), a, 12, 1, 1));
}

#[test]
fn a_new_leaf_link_lends_no_budget() {
    let mut now = Instant::now();
    let cfg = ScalableConfig {
        query_budget: 60,
        search_cost_burst: 1,
        leaf_search_cost_window: Duration::from_secs(3600),
        leaf_loan_after: Duration::from_secs(60),
        ..ScalableConfig::default()
    };
    let mut o = node(cfg, now);
    for i in 1..=8 {
        let e = link(&mut o, now, peer(i), false);
        give_filter(&mut o, now, peer(i), e, &["nothing alike.txt"]);
    }
    // A leaf that has just linked (a flooder dropped elsewhere) gets only
    // what its empty bucket holds...
    let fresh = peer(100);
    let e = link(&mut o, now, fresh, true);
    give_filter(&mut o, now, fresh, e, &["mine.txt"]);
    assert_eq!(leaf_search(&mut o, &mut now, fresh, 1), 0);
    // ...and a leaf linked for a minute a whole budget.
    let settled = peer(101);
    let e = link(&mut o, now, settled, true);
    give_filter(&mut o, now, settled, e, &["other.txt"]);
    now += Duration::from_secs(60);
    assert!(leaf_search(&mut o, &mut now, settled, 2) >= 8);
}
