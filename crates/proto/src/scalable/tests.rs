use super::bloom::{b64_decode, b64_encode, take_part};
use super::*;
use crate::shared::{echo_of, nonce_of};
use crate::testnet::Net;
use crate::HitFile;
use crate::{Config, Event, Mode, Overlay};
use std::net::SocketAddr;
use std::net::{IpAddr, Ipv4Addr};

#[test]
fn base64_round_trips() {
    for n in 0..40u8 {
        let data: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
        let text = b64_encode(&data);
        assert_eq!(b64_decode(&text).unwrap(), data);
    }
    assert_eq!(b64_encode(b"foobar"), "Zm9vYmFy");
    assert_eq!(b64_encode(b"fo"), "Zm8=");
    assert!(b64_decode("Zm8").is_none());
    assert!(b64_decode("Z=8=").is_none());
    assert!(b64_decode("Zm!=").is_none());
}

#[test]
fn bloom_has_no_false_negatives_for_substrings() {
    let names = ["Cloud - Cloud models.png", "Über Straße.txt", "ab"];
    let f = TrigramBloom::from_names(names);
    for q in ["cloud", "MODELS.P", "über st", "d - c", "ab", "x"] {
        assert!(f.may_match(&QueryTrigrams::new(q)), "{q}");
    }
    assert!(!f.may_match(&QueryTrigrams::new("zzzqqq")));
    assert!(f.bits().is_power_of_two() && f.bits() >= BLOOM_MIN_BITS);
}

#[test]
fn bloom_false_positive_rate_is_low() {
    let names: Vec<String> = (0..200)
        .map(|i| format!("track number {i} of album.ogg"))
        .collect();
    let f = TrigramBloom::from_names(&names);
    let fp = (0..1000)
        .filter(|i| f.may_match(&QueryTrigrams::new(&format!("qz{i}xv"))))
        .count();
    assert!(fp < 20, "{fp} false positives in 1000");
}

/// The fields of the pongs carrying `f`, with `"BloomGrams"` as `grams`
/// (`None`: left out, as a peer older than the field sends them).
fn filter_parts(f: &TrigramBloom, grams: Option<i64>) -> Vec<Map<String, Value>> {
    f.parts()
        .into_iter()
        .map(|(offset, data)| {
            let mut m = Map::new();
            m.insert("Bloom".into(), Value::from(data));
            m.insert("BloomBits".into(), Value::from(f.bits() as u64));
            m.insert("BloomHashes".into(), Value::from(BLOOM_HASHES));
            m.insert("BloomOffset".into(), Value::from(offset as u64));
            m.insert("BloomGen".into(), Value::from(1));
            if let Some(g) = grams {
                m.insert("BloomGrams".into(), Value::from(g));
            }
            m
        })
        .collect()
}

/// `f` as a neighbour receives it, its pongs' fields given by `grams`.
fn received(f: &TrigramBloom, grams: Option<i64>) -> Option<TrigramBloom> {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut partial = None;
    let mut out = None;
    for part in filter_parts(f, grams) {
        out = take_part(&mut partial, addr, &part);
    }
    out
}

#[test]
fn four_character_grams_keep_trigrams_of_other_names_from_matching() {
    // Every trigram of "stone" is in one of these names, none has "stone".
    let names = ["story.txt", "tony.txt", "money.txt"];
    let f = TrigramBloom::from_names(names);
    assert!(f.has_quads());
    let stone = QueryTrigrams::new("stone");
    assert!(!f.may_match(&stone));
    for q in ["story", "tony", "oney.t", "y.txt", "mo"] {
        assert!(f.may_match(&QueryTrigrams::new(q)), "{q}");
    }
    // Sent with "BloomGrams": 4, it arrives as it is.
    assert_eq!(received(&f, Some(4)).as_ref(), Some(&f));
    // The same bits from a peer that does not say it has the grams are
    // taken as trigrams only: nothing it holds is missed, and the
    // trigrams of other names match again.
    let old = received(&f, None).unwrap();
    assert!(!old.has_quads());
    assert!(old.may_match(&stone));
    for q in ["story", "tony", "oney.t"] {
        assert!(old.may_match(&QueryTrigrams::new(q)), "{q}");
    }
    // Any other value makes the part invalid.
    for g in [0, 2, 5, -1] {
        assert_eq!(received(&f, Some(g)), None, "BloomGrams {g}");
    }
}

#[test]
fn a_library_too_large_for_its_four_character_grams_keeps_its_trigrams() {
    let mut x: u64 = 7;
    let names: Vec<String> = (0..20_000)
        .map(|_| {
            (0..14)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (b'a' + (x >> 33) as u8 % 26) as char
                })
                .collect()
        })
        .collect();
    let f = TrigramBloom::from_names(&names);
    // (20,000 names of 12 four-character grams each would need more than
    // the largest filter; their trigrams, at most 26^3, fit.)
    assert!(!f.has_quads());
    assert!(f.bits() < BLOOM_MAX_BITS);
    for n in names.iter().step_by(997) {
        assert!(f.may_match(&QueryTrigrams::new(&n[2..11])), "{n}");
    }
    assert_eq!(received(&f, None).as_ref(), Some(&f));
    // A small one has them.
    assert!(TrigramBloom::from_names(&names[..100]).has_quads());
}

fn scfg(port: u16, seed: u64) -> Config {
    Config {
        udp_port: port,
        tcp_port: port + 1,
        seed,
        mode: Mode::Scalable,
        scalable: ScalableConfig {
            min_degree: 2,
            target_degree: 4,
            max_degree: 6,
            ping_interval: Duration::from_millis(400),
            pong_timeout: Duration::from_millis(100),
            step_wait: Duration::from_millis(50),
            max_search_time: Duration::from_millis(2000),
            enough_results: 1,
            tier: Tier::Ultrapeer,
            ..ScalableConfig::default()
        },
        ..Config::default()
    }
}

/// `n` scalable overlays, each sharing a file of its own and a common one.
fn scalable_net(n: usize) -> Net {
    scalable_net_at(n, |i| {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1 + i as u8)), 30000)
    })
}

/// The same at the addresses `addr` gives.
fn scalable_net_at(n: usize, addr: impl Fn(usize) -> SocketAddr) -> Net {
    let now = Instant::now();
    let nodes = (0..n)
        .map(|i| {
            let addr = addr(i);
            let mut o = Overlay::new(scfg(30000, i as u64), now);
            o.add_own_ip(addr.ip());
            let lib = vec![format!("Unique-{i}.txt"), "common.TXT".to_string()];
            o.set_library(&lib);
            (addr, o, lib)
        })
        .collect();
    Net::new(now, nodes)
}

fn joined(n: usize) -> Net {
    join_all(scalable_net(n))
}

fn join_all(mut net: Net) -> Net {
    let n = net.nodes.len();
    let first = net.nodes[0].0;
    for i in 1..n {
        let now = net.now;
        net.nodes[i].1.connect(now, first, first.port() + 1);
        net.pump();
    }
    net.advance(Duration::from_millis(500));
    net
}

#[test]
fn degrees_stay_in_range_and_filters_are_exchanged() {
    let net = joined(30);
    for (i, (_, o, _)) in net.nodes.iter().enumerate() {
        let d = o.degree();
        assert!((2..=6).contains(&d), "node {i} has degree {d}");
        let sc = o.scalable_part().unwrap();
        assert!(sc.neighbours.values().all(|n| n.filter.is_some()));
        // Links are symmetric.
        for nb in sc.neighbours.keys() {
            let j = net.idx(*nb).unwrap();
            assert!(net.nodes[j]
                .1
                .scalable_part()
                .unwrap()
                .neighbours
                .contains_key(&net.nodes[i].0));
        }
    }
}

#[test]
fn unique_file_is_found_and_hits_come_back_the_way_the_query_went() {
    let mut net = joined(30);
    net.sent.clear();
    let now = net.now;
    let querier = net.nodes[3].0;
    let id = net.nodes[3].1.search(now, "unique-17.");
    net.pump();
    net.advance(Duration::from_millis(1000));
    let hits: Vec<_> = net.results.iter().filter(|r| r.1 == id).collect();
    assert_eq!(hits.len(), 1, "{hits:?}");
    // Shown at the holder's address as its first hop back saw it.
    assert_eq!(hits[0].2, net.nodes[17].0);
    assert_eq!(hits[0].3, vec!["Unique-17.txt".to_string()]);
    // Every answer datagram went to a neighbour of its sender, never
    // straight to an address named in the query.
    let neighbours_of = |a: SocketAddr| -> Vec<SocketAddr> {
        let i = net.idx(a).unwrap();
        net.nodes[i].1.neighbours().iter().map(|p| p.udp).collect()
    };
    let answers: Vec<_> = net
        .sent
        .iter()
        .filter(|(_, _, m)| matches!(m, Message::QueryHit(h) if h.id == Some(id.0)))
        .collect();
    assert!(!answers.is_empty());
    for (from, to, _) in &answers {
        assert!(neighbours_of(*from).contains(to), "{from} -> {to}");
    }
    let last = answers.iter().find(|(_, to, _)| *to == querier).unwrap();
    let Message::QueryHit(h) = &last.2 else {
        unreachable!()
    };
    assert!(get_i64(&h.extra, "Hops").is_some_and(|x| x >= 1));
    let queries = net
        .sent
        .iter()
        .filter(|(_, _, m)| matches!(m, Message::Query(_)))
        .count();
    assert!(queries < 30 * 6, "{queries} queries");
    assert!(net.finished.contains(&(3, id)));
}

#[test]
fn a_popular_file_stops_the_search_early() {
    let mut net = joined(30);
    net.sent.clear();
    let now = net.now;
    let id = net.nodes[0].1.search(now, "common");
    net.pump();
    net.advance(Duration::from_millis(1000));
    assert!(net.results.iter().any(|r| r.1 == id && !r.3.is_empty()));
    let queries = net
        .sent
        .iter()
        .filter(|(_, _, m)| matches!(m, Message::Query(_)))
        .count();
    // Step 0 only: one query per neighbour and the probes they send.
    let deg = net.nodes[0].1.degree();
    assert!(queries <= deg * 7, "{queries} queries for degree {deg}");
    // Every node answers at most once (answers passed back carry "Via").
    let mut answerers: Vec<_> = net
        .sent
        .iter()
        .filter(|(_, _, m)| matches!(m, Message::QueryHit(h) if !h.extra.contains_key("Via")))
        .map(|s| s.0)
        .collect();
    let n = answerers.len();
    answerers.sort();
    answerers.dedup();
    assert_eq!(n, answerers.len());
}

#[test]
fn dead_neighbours_are_replaced() {
    let mut net = joined(20);
    let victim = net.nodes[5].0;
    let watchers: Vec<usize> = (0..20)
        .filter(|&i| {
            net.nodes[i]
                .1
                .scalable_part()
                .unwrap()
                .neighbours
                .contains_key(&victim)
        })
        .collect();
    assert!(!watchers.is_empty());
    // Node 5 goes silent: a fresh overlay at another port never answers.
    net.nodes[5].0 = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 9, 9)), 1);
    net.advance(Duration::from_millis(1500));
    for i in watchers {
        let o = &net.nodes[i].1;
        assert!(
            !o.scalable_part().unwrap().neighbours.contains_key(&victim),
            "node {i}"
        );
        assert!(o.degree() >= 2, "node {i} degree {}", o.degree());
    }
}

#[test]
fn a_classic_peer_is_served_classically() {
    let now = Instant::now();
    let mut o = Overlay::new(scfg(30000, 1), now);
    o.add_own_ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let src: SocketAddr = "127.0.0.7:20000".parse().unwrap();
    o.handle_datagram(now, src, br#"{"Command": 1, "IP": "127.0.0.7", "TTL": 1}"#);
    let t = o.poll_transmit().unwrap();
    assert_eq!(
        t.encode(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))),
        br#"{"Command": 2, "IP": "127.0.0.2", "TcpPort": 30001, "UdpPort": 30000}"#
    );
    // It is asked to show it is there, and answers as a classic peer.
    let probe = o.poll_transmit().unwrap();
    assert_eq!(probe.dest, src);
    assert!(matches!(probe.message, Message::Ping(_)));
    o.handle_datagram(now, src, br#"{"Command": 2, "IP": "127.0.0.7"}"#);
    o.handle_datagram(
        now,
        src,
        br#"{"Command": 3, "Contents": "a", "IP": "127.0.0.7"}"#,
    );
    let q = std::iter::from_fn(|| o.poll_event())
        .find_map(|e| match e {
            Event::Query(q) => Some(q),
            _ => None,
        })
        .unwrap();
    while o.poll_transmit().is_some() {}
    o.answer_query(&q, &[]);
    let t = o.poll_transmit().unwrap();
    assert_eq!(t.dest, src);
    assert!(t
        .encode(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .starts_with(br#"{"Command": 4, "Contents": [], "IP": "127.0.0.2""#));
    assert_eq!(o.degree(), 0);
    assert_eq!(o.peers().len(), 1);
}

#[test]
fn a_classic_bootstrap_becomes_a_classic_peer() {
    let now = Instant::now();
    let mut o = Overlay::new(scfg(30000, 1), now);
    o.add_own_ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let classic = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7)), 20000);
    o.connect(now, classic, 10000);
    let t = o.poll_transmit().unwrap();
    // A join request is a plain TTL-0 ping to a classic peer.
    let text = String::from_utf8(t.encode(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))).unwrap();
    assert!(
        text.starts_with(
            r#"{"Command": 1, "Degree": 0, "IP": "127.0.0.2", "Join": true, "Nonce": "#
        ) && text.contains(r#""Scalable": 3, "TTL": 0"#),
        "{text}"
    );
    o.handle_datagram(now, classic, br#"{"Command": 2, "IP": "127.0.0.7"}"#);
    assert_eq!(o.degree(), 0);
    let peers = o.peers();
    assert_eq!(peers.len(), 1);
    assert!(!peers[0].rutella && peers[0].udp == classic);
}

/// Makes `addr` a neighbour of `o` through the whole handshake: its
/// join request, our offer, its confirmation echoing our nonce.
fn link(o: &mut Overlay, now: Instant, addr: SocketAddr) {
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
    assert_eq!(get_bool(&p.extra, "Accept"), Some(true));
    assert_eq!(echo_of(&p.extra), Some(5));
    assert_eq!(o.degree(), 0, "not a neighbour before it confirms");
    let confirm = format!(
        r#"{{"Command": 2, "IP": "{}", "Scalable": 3, "Confirm": true, "Echo": {}, "Nonce": 6, "UdpPort": {}, "TcpPort": 1}}"#,
        addr.ip(),
        nonce_of(&p.extra).unwrap(),
        addr.port()
    );
    o.handle_datagram(now, addr, confirm.as_bytes());
    assert!(o.neighbours().iter().any(|n| n.udp == addr));
    while o.poll_transmit().is_some() {}
}

#[test]
fn join_requests_walk_on_naming_the_joiner_as_seen() {
    let now = Instant::now();
    let mut o = Overlay::new(scfg(30000, 1), now);
    o.add_own_ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let a: SocketAddr = "127.0.0.10:30000".parse().unwrap();
    link(&mut o, now, a);
    assert_eq!(o.degree(), 1);
    // B names someone else in "IP": the walk names B as it was seen.
    let b: SocketAddr = "127.0.0.11:30005".parse().unwrap();
    o.handle_datagram(
        now,
        b,
        br#"{"Command": 1, "IP": "127.0.0.99", "TTL": 0, "Scalable": 3, "Join": true, "Walk": 9, "Nonce": 3, "Junk": "x", "UdpPort": 30000, "TcpPort": 30001}"#,
    );
    let t = o.poll_transmit().unwrap();
    assert_eq!(t.dest, a);
    assert!(!t.from_self);
    let Message::Ping(p) = &t.message else {
        panic!("{t:?}")
    };
    assert_eq!(p.ip, Ipv4Addr::new(127, 0, 0, 11));
    assert_eq!(p.ports.udp, Some(30005));
    assert!(
        !p.extra.contains_key("Junk"),
        "unknown fields do not travel"
    );
    // Walks longer than the limit are shortened.
    assert_eq!(get_i64(&p.extra, "Walk"), Some(MAX_WALK - 1));
    assert!(o.poll_transmit().is_none());
    assert_eq!(o.degree(), 1, "the walk goes on: no link here");
}

#[test]
fn join_pings_naming_another_address_make_no_neighbour_of_it() {
    let now = Instant::now();
    let mut o = Overlay::new(scfg(30000, 1), now);
    o.add_own_ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let attacker: SocketAddr = "127.0.0.66:4000".parse().unwrap();
    let victim = "127.0.0.99";
    let mut sent_bytes = 0;
    for port in 0..200u16 {
        let m = format!(
            r#"{{"Command": 1, "IP": "{victim}", "TTL": 0, "Scalable": 3, "Join": true, "UdpPort": {}, "TcpPort": 1}}"#,
            1000 + port
        );
        sent_bytes += m.len();
        o.handle_datagram(now, attacker, m.as_bytes());
    }
    let out: Vec<Transmit> = std::iter::from_fn(|| o.poll_transmit()).collect();
    assert!(out.iter().all(|t| t.dest.ip().to_string() != victim));
    let to_attacker: usize = out
        .iter()
        .map(|t| t.encode(IpAddr::V4(Ipv4Addr::BROADCAST)).len())
        .sum();
    assert!(
        to_attacker <= 3 * sent_bytes,
        "{to_attacker} bytes for {sent_bytes}"
    );
    assert_eq!(o.degree(), 0, "no link without a confirmation");
}

#[test]
fn refusals_without_our_nonce_do_not_cut_a_link() {
    let now = Instant::now();
    let mut o = Overlay::new(scfg(30000, 1), now);
    o.add_own_ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let a: SocketAddr = "127.0.0.10:30000".parse().unwrap();
    link(&mut o, now, a);
    // From a third address naming the neighbour, and from the
    // neighbour's own address without the nonce we gave it.
    let spoof = br#"{"Command": 2, "IP": "127.0.0.10", "Scalable": 3, "Accept": false, "UdpPort": 30000, "TcpPort": 1}"#;
    o.handle_datagram(now, "127.0.0.66:4000".parse().unwrap(), spoof);
    o.handle_datagram(now, a, spoof);
    let wrong = br#"{"Command": 2, "IP": "127.0.0.10", "Scalable": 3, "Accept": false, "Echo": 12345, "UdpPort": 30000, "TcpPort": 1}"#;
    o.handle_datagram(now, a, wrong);
    assert_eq!(o.degree(), 1);
    // With the nonce, the neighbour itself can end the link.
    let real = format!(
        r#"{{"Command": 2, "IP": "127.0.0.10", "Scalable": 3, "Accept": false, "Echo": {}, "UdpPort": 30000, "TcpPort": 1}}"#,
        o.token(a)
    );
    o.handle_datagram(now, a, real.as_bytes());
    assert_eq!(o.degree(), 0);
}

#[test]
fn queries_from_strangers_are_not_answered_and_answers_go_to_the_sender() {
    let now = Instant::now();
    let mut o = Overlay::new(scfg(30000, 1), now);
    o.add_own_ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let q = br#"{"Command": 3, "Contents": "a", "IP": "127.0.0.99", "Id": 7, "Scalable": 3, "TTL": 0, "UdpPort": 1, "TcpPort": 1}"#;
    o.handle_datagram(now, "127.0.0.66:4000".parse().unwrap(), q);
    assert!(std::iter::from_fn(|| o.poll_event()).all(|e| !matches!(e, Event::Query(_))));
    // From a neighbour, naming a victim: the answer goes to the neighbour.
    let a: SocketAddr = "127.0.0.10:30000".parse().unwrap();
    link(&mut o, now, a);
    o.handle_datagram(now, a, q);
    let iq = std::iter::from_fn(|| o.poll_event())
        .find_map(|e| match e {
            Event::Query(q) => Some(q),
            _ => None,
        })
        .unwrap();
    o.answer_query(&iq, &[HitFile::named("a.txt")]);
    let t = o.poll_transmit().unwrap();
    assert_eq!(t.dest, a);
    // The same id again with another port is a duplicate.
    let q2 = br#"{"Command": 3, "Contents": "a", "IP": "127.0.0.99", "Id": 7, "Scalable": 3, "TTL": 0, "UdpPort": 2, "TcpPort": 1}"#;
    o.handle_datagram(now, a, q2);
    assert!(std::iter::from_fn(|| o.poll_event()).all(|e| !matches!(e, Event::Query(_))));
}

#[test]
fn hits_count_only_from_where_the_search_went() {
    let now = Instant::now();
    let mut o = Overlay::new(scfg(30000, 1), now);
    o.add_own_ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let a: SocketAddr = "127.0.0.10:30000".parse().unwrap();
    // (An answer of its own must fit its filter: see `guard_tests.rs`.)
    let echo = super::guard_tests::link(&mut o, now, a, false);
    super::guard_tests::give_filter(&mut o, now, a, echo, &["x.txt"]);
    let id = o.search(now, "x");
    while o.poll_transmit().is_some() {}
    while o.poll_event().is_some() {}
    let hit = format!(
        r#"{{"Command": 4, "Contents": ["x.txt"], "IP": "127.0.0.10", "Id": {}, "Scalable": 3, "UdpPort": 30000, "TcpPort": 6666}}"#,
        id.0
    );
    o.handle_datagram(now, "127.0.0.66:30000".parse().unwrap(), hit.as_bytes());
    assert!(std::iter::from_fn(|| o.poll_event()).all(|e| !matches!(e, Event::SearchResult { .. })));
    o.handle_datagram(now, a, hit.as_bytes());
    let peer = std::iter::from_fn(|| o.poll_event())
        .find_map(|e| match e {
            Event::SearchResult { peer, .. } => Some(peer),
            _ => None,
        })
        .unwrap();
    assert_eq!(peer.udp, a);
}

#[test]
fn large_filters_are_split_under_the_datagram_limit() {
    let mut x: u64 = 1;
    let names: Vec<String> = (0..3000)
        .map(|_| {
            (0..30)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (b'a' + (x >> 33) as u8 % 26) as char
                })
                .collect()
        })
        .collect();
    let mut net = scalable_net(2);
    net.nodes[1].1.set_library(&names);
    net.nodes[1].2 = names.clone();
    let first = net.nodes[0].0;
    let now = net.now;
    net.nodes[1].1.connect(now, first, 1);
    net.pump();
    let parts = net
        .sent
        .iter()
        .filter(|(s, _, m)| {
            *s == net.nodes[1].0 && matches!(m, Message::Pong(p) if p.extra.contains_key("Bloom"))
        })
        .count();
    assert!(parts > 1, "{parts} parts");
    let sc = net.nodes[0].1.scalable_part().unwrap();
    let f = sc
        .neighbours
        .values()
        .next()
        .unwrap()
        .filter
        .as_ref()
        .unwrap();
    assert!(f.may_match(&QueryTrigrams::new(&names[2021][3..12])));
    assert_eq!(f, &TrigramBloom::from_names(&names));
}

#[test]
fn ipv6_nodes_build_the_scalable_overlay_and_find_a_unique_file() {
    let v6 = |i: usize| SocketAddr::new(format!("2001:db8::{:x}", i + 1).parse().unwrap(), 30000);
    let mut net = join_all(scalable_net_at(20, v6));
    for (i, (addr, o, _)) in net.nodes.iter().enumerate() {
        let d = o.degree();
        assert!((2..=6).contains(&d), "node {i} has degree {d}");
        assert!(o.neighbours().iter().all(|p| p.udp.is_ipv6() && p.rutella));
        assert!(addr.is_ipv6());
    }
    // Hosts named in pongs ("Hosts", as "[IP]:port") reached the host caches.
    assert!(net.nodes.iter().any(|(_, o, _)| o
        .known_hosts()
        .iter()
        .any(|h| h.is_ipv6() && h.ip() != net.nodes[0].0.ip())));
    net.sent.clear();
    let now = net.now;
    let id = net.nodes[3].1.search(now, "unique-17.");
    net.pump();
    net.advance(Duration::from_millis(1000));
    let hits: Vec<_> = net.results.iter().filter(|r| r.1 == id).collect();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].2, net.nodes[17].0);
    // Every message named an IPv6 address in "IP".
    assert!(net.sent.iter().all(|(_, _, m)| m.ip().is_ipv6()));
}

/// A scalable query from `from`'s point of view: id, hops, TTL 0.
fn query_from(o: &mut Overlay, now: Instant, from: SocketAddr, id: u64, hops: u64) -> bool {
    let q = format!(
        r#"{{"Command": 3, "Contents": "zz", "IP": "{}", "Id": {id}, "Scalable": 3, "TTL": 0, "Hops": {hops}, "UdpPort": {}, "TcpPort": 1}}"#,
        from.ip(),
        from.port()
    );
    o.handle_datagram(now, from, q.as_bytes());
    while o.poll_transmit().is_some() {}
    std::iter::from_fn(|| o.poll_event()).any(|e| matches!(e, Event::Query(_)))
}

#[test]
fn a_neighbour_that_floods_searches_is_limited_then_dropped() {
    let now = Instant::now();
    let mut o = Overlay::new(scfg(30000, 1), now);
    o.add_own_ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let a: SocketAddr = "127.0.0.10:30000".parse().unwrap();
    link(&mut o, now, a);
    let c = ScalableConfig::default();
    assert_eq!(c.neighbour_search_burst, 3);
    // Queries it passes on for others (more than one hop) are not limited.
    for id in 100..120 {
        assert!(query_from(&mut o, now, a, id, 2), "relayed query {id}");
    }
    // Its own searches: one at first (a new link), then one per interval
    // up to a burst of three.
    assert!(query_from(&mut o, now, a, 1, 1));
    let later = now + c.neighbour_search_interval * 10;
    for id in 2..=4 {
        assert!(query_from(&mut o, later, a, id, 1), "search {id}");
    }
    assert!(!query_from(&mut o, later, a, 5, 1));
    // Going on over the allowance (one search dropped so far) costs the
    // link, although some searches got through in between.
    for id in 6..5 + u64::from(c.flooder_drops) {
        assert_eq!(o.degree(), 1, "still linked before search {id}");
        assert!(!query_from(&mut o, later, a, id, 1));
    }
    assert_eq!(o.degree(), 0, "the flooder is dropped");
}

#[test]
fn announced_degrees_are_believed_up_to_the_maximum() {
    let now = Instant::now();
    let mut o = Overlay::new(scfg(30000, 1), now);
    o.add_own_ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let a: SocketAddr = "127.0.0.10:30000".parse().unwrap();
    link(&mut o, now, a);
    let ping = format!(
        r#"{{"Command": 1, "IP": "{}", "TTL": 0, "Scalable": 3, "Degree": 1000, "Nonce": 9, "UdpPort": {}, "TcpPort": 1}}"#,
        a.ip(),
        a.port()
    );
    o.handle_datagram(now, a, ping.as_bytes());
    let sc = o.scalable_part().unwrap();
    let max = scfg(30000, 1).scalable.max_degree;
    assert_eq!(sc.neighbours[&a].degree, max);
}
