//! The files the simulated peers share and the searches they make.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rutella_proto::matching;
use std::collections::{BTreeSet, HashMap};

/// Zipf exponent of file popularity.
const ZIPF_S: f64 = 0.8;
/// Files that exist on one peer only, per peer.
const UNIQUE_PER_PEER: usize = 2;
/// Share of searches aimed at a file held by one peer.
const UNIQUE_QUERY_SHARE: f64 = 0.2;

/// A catalogue of file names, the library of every peer slot, and the
/// ground truth to judge searches.
#[derive(Debug)]
pub struct Workload {
    names: Vec<String>,
    lower: Vec<String>,
    libs: Vec<Vec<u32>>,
    holders: Vec<Vec<u32>>,
    zipf_cdf: Vec<f64>,
    single: Vec<u32>,
    index: HashMap<[u8; 3], Vec<u32>>,
}

fn word(rng: &mut impl Rng) -> String {
    const C: &[u8] = b"bcdfghjklmnprstvz";
    const V: &[u8] = b"aeiou";
    let n = rng.gen_range(2..=3);
    let mut w = String::new();
    for _ in 0..n {
        w.push(C[rng.gen_range(0..C.len())] as char);
        w.push(V[rng.gen_range(0..V.len())] as char);
    }
    w
}

fn capital(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

impl Workload {
    /// Draws the catalogue and the libraries of `peers` slots.
    pub fn generate(peers: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut vocab = BTreeSet::new();
        while vocab.len() < 3000 {
            vocab.insert(word(&mut rng));
        }
        let mut vocab: Vec<String> = vocab.into_iter().collect();
        vocab.shuffle(&mut rng);
        const EXT: [&str; 8] = ["ogg", "mp3", "flac", "mkv", "avi", "pdf", "txt", "png"];
        let mut seen = BTreeSet::new();
        let mut new_name = |rng: &mut ChaCha8Rng| loop {
            let mut w = || vocab[rng.gen_range(0..vocab.len())].clone();
            let name = format!(
                "{} {} - {} {}.{}",
                capital(&w()),
                w(),
                capital(&w()),
                w(),
                EXT[rng.gen_range(0..EXT.len())]
            );
            if seen.insert(name.clone()) {
                return name;
            }
        };
        let shared = 2000 + peers / 2;
        let mut names: Vec<String> = (0..shared).map(|_| new_name(&mut rng)).collect();
        let mut cdf = Vec::with_capacity(shared);
        let mut acc = 0.0;
        for k in 1..=shared {
            acc += (k as f64).powf(-ZIPF_S);
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        let mut libs = Vec::with_capacity(peers);
        for _ in 0..peers {
            let draws = rng.gen_range(10..=50);
            let mut lib: Vec<u32> = (0..draws)
                .map(|_| {
                    let u: f64 = rng.gen();
                    cdf.partition_point(|c| *c < u).min(shared - 1) as u32
                })
                .collect();
            for _ in 0..UNIQUE_PER_PEER {
                lib.push(names.len() as u32);
                names.push(new_name(&mut rng));
            }
            lib.sort_unstable();
            lib.dedup();
            libs.push(lib);
        }
        let mut holders = vec![Vec::new(); names.len()];
        for (slot, lib) in libs.iter().enumerate() {
            for f in lib {
                holders[*f as usize].push(slot as u32);
            }
        }
        let single = (0..names.len() as u32)
            .filter(|f| holders[*f as usize].len() == 1)
            .collect();
        let lower: Vec<String> = names.iter().map(|n| matching::folded_path(n)).collect();
        let mut index: HashMap<[u8; 3], Vec<u32>> = HashMap::new();
        for (f, n) in lower.iter().enumerate() {
            let b = n.as_bytes();
            let mut grams: Vec<[u8; 3]> = b.windows(3).map(|w| [w[0], w[1], w[2]]).collect();
            grams.sort_unstable();
            grams.dedup();
            for g in grams {
                index.entry(g).or_default().push(f as u32);
            }
        }
        Workload {
            names,
            lower,
            libs,
            holders,
            zipf_cdf: cdf,
            single,
            index,
        }
    }

    /// The name of file `f`.
    pub fn name(&self, f: u32) -> &str {
        &self.names[f as usize]
    }

    /// The files of a peer slot, sorted.
    pub fn library(&self, slot: usize) -> &[u32] {
        &self.libs[slot]
    }

    /// Files held by exactly one peer.
    pub fn single_holder_files(&self) -> usize {
        self.single.len()
    }

    /// A file to search for: mostly by popularity, sometimes one held by a
    /// single peer.
    pub fn pick_target(&self, rng: &mut impl Rng) -> u32 {
        if !self.single.is_empty() && rng.gen_bool(UNIQUE_QUERY_SHARE) {
            return self.single[rng.gen_range(0..self.single.len())];
        }
        let u: f64 = rng.gen();
        self.zipf_cdf
            .partition_point(|c| *c < u)
            .min(self.zipf_cdf.len() - 1) as u32
    }

    /// A search text for `f`: a part of its name, 8 to 14 characters.
    pub fn query_text(&self, f: u32, rng: &mut impl Rng) -> String {
        let name = &self.names[f as usize];
        let len = rng.gen_range(8..=14).min(name.len());
        let start = rng.gen_range(0..=name.len() - len);
        name[start..start + len].to_string()
    }

    /// Every file whose name matches `text` by the matching rule
    /// ([`rutella_proto::matching`]), sorted.
    pub fn matching(&self, text: &str) -> Vec<u32> {
        let t = matching::fold(text);
        let mut best: Option<&Vec<u32>> = None;
        for word in matching::words(&t) {
            for w in word.as_bytes().windows(3) {
                match self.index.get(&[w[0], w[1], w[2]]) {
                    None => return Vec::new(),
                    Some(list) => {
                        if best.is_none_or(|x| list.len() < x.len()) {
                            best = Some(list);
                        }
                    }
                }
            }
        }
        match best {
            Some(list) => list
                .iter()
                .copied()
                .filter(|f| matching::folded_matches(&t, &self.lower[*f as usize]))
                .collect(),
            None => (0..self.names.len() as u32)
                .filter(|f| matching::folded_matches(&t, &self.lower[*f as usize]))
                .collect(),
        }
    }

    /// The peer slots holding file `f`.
    pub fn holder_slots(&self, f: u32) -> &[u32] {
        &self.holders[f as usize]
    }

    /// Number of peers other than `querier` holding one of `files`.
    pub fn holders_of(&self, files: &[u32], querier: usize) -> usize {
        let mut set = BTreeSet::new();
        for f in files {
            for s in &self.holders[*f as usize] {
                if *s as usize != querier {
                    set.insert(*s);
                }
            }
        }
        set.len()
    }
}
