use super::*;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr};

fn addr(i: usize) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, 0, (i / 250) as u8, (i % 250) as u8 + 1)),
        30000,
    )
}

fn cfg(enough: usize, budget: u32, max_ttl: i64) -> ScalableConfig {
    ScalableConfig {
        enough_results: enough,
        query_budget: budget,
        max_ttl,
        ..ScalableConfig::default()
    }
}

/// Neighbours with degrees and tie-break keys.
fn arb_neighbours() -> impl Strategy<Value = Vec<Candidate>> {
    proptest::collection::vec((0usize..80, any::<u64>()), 0..40).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (degree, key))| Candidate {
                addr: addr(i),
                degree,
                key,
            })
            .collect()
    })
}

fn arb_cfg() -> impl Strategy<Value = ScalableConfig> {
    // Small budgets too, so that steps run into them.
    (1usize..6, prop_oneof![0u32..400, 0u32..20_000], 0i64..5).prop_map(|(e, b, t)| cfg(e, b, t))
}

/// The progress after a first step to the first `asked` neighbours (the
/// others joined later).
fn started(neighbours: &[Candidate], asked: usize, responders: usize) -> Progress {
    let first: Vec<(SocketAddr, usize)> = neighbours
        .iter()
        .take(asked)
        .map(|c| (c.addr, c.degree))
        .collect();
    let mut p = first_step(&first).progress;
    p.responders = responders;
    p
}

#[test]
fn the_first_step_asks_every_neighbour_once_with_ttl_0() {
    let n: Vec<(SocketAddr, usize)> = (0..5).map(|i| (addr(i), i * 3)).collect();
    let s = first_step(&n);
    assert_eq!(s.sends, n.iter().map(|(a, _)| (*a, 0)).collect::<Vec<_>>());
    assert_eq!(s.progress.est_cost, 5.0);
    assert!(s.progress.depth.values().all(|d| *d == 0));
    assert!(first_step(&[]).done());
}

#[test]
fn a_lone_search_grows_one_ttl_deeper_per_step_then_stops() {
    let c = cfg(3, 100_000, 3);
    let n = [Candidate {
        addr: addr(0),
        degree: 10,
        key: 1,
    }];
    let mut p = started(&n, 1, 0);
    let mut ttls = Vec::new();
    for _ in 0..10 {
        let s = next_step(&c, &n, &p);
        if s.done() {
            break;
        }
        ttls.extend(s.sends.iter().map(|(_, t)| *t));
        p = s.progress;
    }
    assert_eq!(ttls, vec![1, 2, 3]);
}

proptest! {
    /// Every step asks only current neighbours, each deeper than it was
    /// asked before (also within the step), never deeper than the highest
    /// TTL, and records the deepest TTL in the progress.
    #[test]
    fn steps_ask_neighbours_deeper_within_the_ttl(
        c in arb_cfg(),
        n in arb_neighbours(),
        asked in 0usize..40,
        responders in 0usize..3,
    ) {
        let p = started(&n, asked, responders);
        let s = next_step(&c, &n, &p);
        let mut depth = p.depth.clone();
        for (a, ttl) in &s.sends {
            prop_assert!(n.iter().any(|x| x.addr == *a));
            prop_assert!(*ttl <= c.max_ttl && *ttl >= 0);
            prop_assert!(*ttl > *depth.get(a).unwrap_or(&-1));
            depth.insert(*a, *ttl);
        }
        prop_assert_eq!(&depth, &s.progress.depth);
    }

    /// A step that asks anyone stays within the budget (a quarter of it
    /// once a peer answered), and the estimates never shrink.
    #[test]
    fn steps_stay_within_the_budget(
        c in arb_cfg(),
        n in arb_neighbours(),
        asked in 0usize..40,
        responders in 0usize..3,
    ) {
        let p = started(&n, asked, responders);
        let s = next_step(&c, &n, &p);
        let budget = if responders == 0 {
            f64::from(c.query_budget)
        } else {
            f64::from(c.query_budget) / 4.0
        };
        if !s.done() {
            prop_assert!(s.progress.est_cost <= budget);
        }
        prop_assert!(s.progress.est_cost >= p.est_cost);
        prop_assert!(s.progress.est_cover >= p.est_cover);
    }

    /// Once enough peers answered, the search asks nobody more.
    #[test]
    fn enough_answers_stop_the_search(
        c in arb_cfg(),
        n in arb_neighbours(),
        extra in 0usize..5,
    ) {
        let p = started(&n, n.len(), c.enough_results + extra);
        let s = next_step(&c, &n, &p);
        prop_assert!(s.done());
        prop_assert_eq!(&s.progress, &p);
    }

    /// Fed its own output, a search that finds nothing stops within one
    /// step per neighbour and TTL level, and then stays stopped.
    #[test]
    fn searches_stop_within_the_rounds(
        c in arb_cfg(),
        n in arb_neighbours(),
        asked in 0usize..40,
    ) {
        let mut p = started(&n, asked, 0);
        let bound = n.len() * (c.max_ttl as usize + 1) + 1;
        let mut steps = 0;
        loop {
            let s = next_step(&c, &n, &p);
            if s.done() {
                prop_assert_eq!(&next_step(&c, &n, &s.progress).sends, &Vec::new());
                break;
            }
            p = s.progress;
            steps += 1;
            prop_assert!(steps <= bound, "{} steps", steps);
        }
    }
}

#[test]
fn a_neighbour_too_dear_to_ask_deeper_does_not_stop_the_others() {
    // One neighbour claims a large degree and sorts first: asking it one
    // TTL deeper would go over the budget, asking the others does not.
    let c = cfg(3, 3000, 3);
    let n: Vec<Candidate> = [100, 10, 10]
        .iter()
        .enumerate()
        .map(|(i, d)| Candidate {
            addr: addr(i),
            degree: *d,
            key: i as u64,
        })
        .collect();
    let mut p = started(&n, 3, 0);
    // All at depth 1 already.
    for i in 0..3 {
        p.depth.insert(addr(i), 1);
    }
    let s = next_step(&c, &n, &p);
    assert_eq!(s.sends, vec![(addr(1), 2)]);
}
