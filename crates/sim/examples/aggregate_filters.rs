//! How often a trigram filter of several peers' libraries together says
//! "may match" for a search that none of them can answer, with the
//! simulator's workload: the question behind summarising many peers in one
//! filter (an ultrapeer's table of its leaves, a neighbour's neighbourhood).
//!
//! `cargo run --release -p rutella-sim --example aggregate_filters`

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rutella_proto::{name_matches, QueryTrigrams, TrigramBloom};
use rutella_sim::Workload;

fn main() {
    let peers = 10_000;
    let work = Workload::generate(peers, 7);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let texts: Vec<String> = (0..400)
        .map(|_| {
            let f = work.pick_target(&mut rng);
            work.query_text(f, &mut rng)
        })
        .collect();
    println!("libraries per filter | filter bits (mean) | searches none of them can answer | filter says maybe");
    for group in [1usize, 5, 20, 30, 100] {
        let (mut negatives, mut maybe, mut bits, mut filters) = (0u64, 0u64, 0usize, 0usize);
        for _ in 0..100 {
            let slots: Vec<usize> = (0..group).map(|_| rng.gen_range(0..peers)).collect();
            let names: Vec<&str> = slots
                .iter()
                .flat_map(|s| work.library(*s).iter().map(|f| work.name(*f)))
                .collect();
            let filter = TrigramBloom::from_names(&names);
            bits += filter.bits();
            filters += 1;
            for t in &texts {
                if names.iter().any(|n| name_matches(t, n)) {
                    continue;
                }
                negatives += 1;
                if filter.may_match(&QueryTrigrams::new(t)) {
                    maybe += 1;
                }
            }
        }
        println!(
            "{group} | {} | {negatives} | {:.1}%",
            bits / filters.max(1),
            100.0 * maybe as f64 / negatives.max(1) as f64
        );
    }
}
