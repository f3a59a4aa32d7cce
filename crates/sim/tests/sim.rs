//! Small simulated networks: search success, determinism, the classic
//! overlay's message counts against theory, and the datagram size limit.

use rutella_proto::Mode;
use rutella_sim::{run, SimConfig};
use std::time::Duration;

fn small(nodes: usize, mode: Mode, queries: usize, seed: u64, secs: u64) -> SimConfig {
    let mut c = SimConfig::new(nodes, mode, queries, seed);
    c.duration = Duration::from_secs(secs);
    c.warmup = Duration::from_secs(60);
    c
}

#[test]
fn scalable_network_of_300_finds_what_exists() {
    let s = run(&small(300, Mode::Scalable, 300, 7, 240));
    assert!(s.answerable_queries > 250, "{s:#?}");
    assert!(s.success_rate >= 0.97, "{s:#?}");
    assert!(s.popular.success_rate >= 0.99, "{s:#?}");
    assert!(
        s.unique.queries > 20 && s.unique.success_rate >= 0.9,
        "{s:#?}"
    );
    // The overlay is bounded: a full mesh would have degree 299. Two
    // tiers: a few ultrapeers, each holding leaves within its slots; a
    // leaf has at most 3 ultrapeers.
    assert!(s.degree_min >= 1 && s.degree_max <= 32, "{s:#?}");
    assert!(s.ultrapeers >= 1 && s.leaves > s.ultrapeers, "{s:#?}");
    assert_eq!(s.ultrapeers + s.leaves, 300, "{s:#?}");
    assert!(s.leaves_per_ultrapeer_max <= 200, "{s:#?}");
    // Cheaper than asking everyone (2 x 299 datagrams).
    assert!(s.popular.messages_median < 150.0, "{s:#?}");
    assert!(s.popular.hops_to_first_hit_median <= 2.0, "{s:#?}");
}

#[test]
fn same_seed_same_output_bit_for_bit() {
    let c = small(150, Mode::Scalable, 100, 42, 150);
    let a = serde_json::to_string(&run(&c)).unwrap();
    let b = serde_json::to_string(&run(&c)).unwrap();
    assert_eq!(a, b);
    let mut other = c.clone();
    other.seed = 43;
    assert_ne!(a, serde_json::to_string(&run(&other)).unwrap());
}

#[test]
fn classic_counts_match_theory() {
    // Full mesh of N peers, no loss: a query costs N-1 queries and N-1
    // answers; a ping round costs each peer (N-1)(2N-1) datagrams: per peer
    // pinged, the ping, its pong, N-1 forwarded pings and N-2 pongs to the
    // originator (which ignores its own ping).
    let n = 20usize;
    let mut c = small(n, Mode::Classic, 40, 3, 60 + 120);
    c.loss = 0.0;
    let s = run(&c);
    let per_query = 2.0 * (n as f64 - 1.0);
    assert_eq!(s.all.messages_median, per_query, "{s:#?}");
    assert_eq!(s.all.messages_p95, per_query, "{s:#?}");
    assert_eq!(s.success_rate, 1.0, "{s:#?}");
    assert_eq!(s.degree_min, n - 1);
    let theory = (n as f64 - 1.0) * (2.0 * n as f64 - 1.0) / 20.0;
    let measured = s.maintenance_msgs_per_peer_per_sec;
    assert!(
        (measured - theory).abs() / theory < 0.03,
        "measured {measured} vs theory {theory}"
    );
}

#[test]
fn churn_and_wire_encoding_keep_working() {
    let mut c = small(120, Mode::Scalable, 100, 5, 200);
    c.churn_median = Some(Duration::from_secs(300));
    c.wire = true;
    let s = run(&c);
    assert!(s.departures > 10, "{s:#?}");
    assert!(
        s.max_datagram_bytes > 0 && s.max_datagram_bytes <= 8192,
        "{s:#?}"
    );
    assert!(s.success_rate >= 0.85, "{s:#?}");
}

#[test]
fn hostile_peers_are_simulated_and_counted_apart() {
    let mut c = small(200, Mode::Scalable, 150, 11, 180);
    c.hostile.drop = 0.1;
    c.hostile.false_hits = 0.1;
    c.hostile.flood = 0.05;
    c.hostile.liar = 0.05;
    c.hostile.flood_interval = Duration::from_secs(5);
    let s = run(&c);
    // The false answers do not fit their senders' filters: none reaches a
    // searcher (see docs/SCALING.md).
    assert_eq!(s.false_hits, 0, "{s:#?}");
    assert!(s.flood_searches > 0, "{s:#?}");
    assert!(s.answerable_queries > 100, "{s:#?}");
    assert!(s.honest_load_mean > 0.0 && s.honest_load_max >= s.honest_load_p99);
    assert_eq!((s.hostile_drop, s.hostile_liar), (0.1, 0.05));
    // Without hostile peers nothing is false.
    let honest = run(&small(200, Mode::Scalable, 150, 11, 180));
    assert_eq!(honest.false_hits, 0);
    assert_eq!(honest.flood_searches, 0);
    assert!(honest.vs_clean.is_none());
    // Against the same seed without hostile peers: that run's figures,
    // per tier, and the ratios.
    let v = rutella_sim::run_against_clean(&c, 2)
        .vs_clean
        .expect("compared");
    assert_eq!(v.clean_success_rate, honest.success_rate);
    assert_eq!(v.ultrapeers.clean, honest.honest_load_ultrapeers);
    assert_eq!(v.leaves.clean, honest.honest_load_leaves);
    assert_eq!(v.all.hostile.max, s.honest_load_max);
    assert_eq!(v.ultrapeers.hostile, s.honest_load_ultrapeers);
    assert!((v.all.ratio_max - s.honest_load_max / honest.honest_load_max).abs() < 1e-9);
    assert!(v.ultrapeers.clean.peers + v.leaves.clean.peers <= 200);
    assert!(v.peer_ratio_max >= 0.0);
}

/// The peers split over 1, 2 or 3 threads give the same run, bit for bit,
/// with churn, hostile peers of every kind and the datagrams encoded.
#[test]
fn same_output_whatever_the_number_of_threads() {
    let mut c = small(80, Mode::Scalable, 60, 11, 100);
    c.churn_median = Some(Duration::from_secs(40));
    c.hostile.drop = 0.05;
    c.hostile.false_hits = 0.05;
    c.hostile.flood = 0.05;
    c.hostile.liar = 0.05;
    c.hostile.flood_interval = Duration::from_secs(5);
    c.wire = true;
    let one = rutella_sim::run_threads(&c, 1);
    assert!(one.departures > 0 && one.flood_searches > 0, "{one:#?}");
    let one = serde_json::to_string(&one).unwrap();
    for threads in [2, 3] {
        let other = serde_json::to_string(&rutella_sim::run_threads(&c, threads)).unwrap();
        assert_eq!(one, other, "{threads} threads");
    }
}
