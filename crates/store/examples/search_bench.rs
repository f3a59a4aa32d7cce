//! Local search latency over a library of 100,000 generated file names,
//! next to a naive baseline (lowercase + contains over every name,
//! returning copies of the matching names) measured in the same run.
//!
//! ```text
//! cargo run --release -p rutella-store --example search_bench [-- FILES]
//! ```
//!
//! The files are created empty in a temporary folder, which is removed at
//! the end.

use rutella_store::{Library, LibraryConfig};
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

const WORDS: &[&str] = &[
    "love",
    "night",
    "dance",
    "summer",
    "rain",
    "fire",
    "heart",
    "dream",
    "city",
    "light",
    "shadow",
    "river",
    "ocean",
    "star",
    "moon",
    "sun",
    "road",
    "home",
    "time",
    "blue",
    "red",
    "gold",
    "silver",
    "wild",
    "sweet",
    "broken",
    "electric",
    "midnight",
    "morning",
    "winter",
    "despacito",
    "bohemian",
    "rhapsody",
    "symphony",
    "concerto",
    "sonata",
    "remix",
    "live",
    "acoustic",
    "version",
    "edit",
    "radio",
    "extended",
    "original",
    "mix",
    "demo",
    "session",
    "café",
    "naïve",
    "straße",
    "Ωmega",
    "über",
    "señor",
    "björk",
    "mañana",
    "année",
    "kyōto",
    "holiday",
    "vacation",
    "beach",
    "mountain",
    "forest",
    "family",
    "birthday",
    "wedding",
    "lecture",
    "chapter",
    "episode",
    "season",
    "part",
    "volume",
    "disc",
    "track",
    "intro",
];
const EXTS: &[&str] = &[
    "mp3", "flac", "ogg", "mkv", "mp4", "avi", "jpg", "png", "pdf", "epub", "txt", "zip",
];

/// splitmix64: a small deterministic generator, enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len())]
    }
}

fn capitalize(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn make_name(rng: &mut Rng, i: usize) -> String {
    let words = 2 + rng.below(4);
    let mut parts = Vec::new();
    for _ in 0..words {
        let w = rng.pick(WORDS);
        parts.push(if rng.below(2) == 0 {
            capitalize(w)
        } else {
            w.to_string()
        });
    }
    format!("{} {:05}.{}", parts.join(" "), i, rng.pick(EXTS))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// Times `f` over every query, `runs` times; returns sorted latencies and
/// the total number of hits (so the work cannot be optimised away).
fn time_queries(
    queries: &[String],
    runs: usize,
    mut f: impl FnMut(&str) -> usize,
) -> (Vec<Duration>, usize) {
    let mut lat = Vec::with_capacity(queries.len() * runs);
    let mut hits = 0;
    for _ in 0..runs {
        for q in queries {
            let t = Instant::now();
            hits += black_box(f(black_box(q)));
            lat.push(t.elapsed());
        }
    }
    lat.sort();
    (lat, hits)
}

/// Naive baseline: lowercase every name and test `contains`, returning
/// copies of the matching names and stopping at `limit` hits, like the
/// library does.
fn naive(names: &[String], q: &str, limit: usize) -> usize {
    let q = q.to_lowercase();
    let mut hits = Vec::new();
    for name in names {
        let last = name.rsplit('/').next().unwrap_or(name);
        if last.to_lowercase().contains(&q) {
            hits.push(name.clone());
            if hits.len() >= limit {
                break;
            }
        }
    }
    hits.len()
}

fn create_files(root: &Path, names: &[String]) -> std::io::Result<()> {
    for (i, name) in names.iter().enumerate() {
        let dir = root.join(format!("d{:03}", i % 1000));
        if i < 1000 {
            std::fs::create_dir_all(&dir)?;
        }
        std::fs::File::create(dir.join(name))?;
    }
    Ok(())
}

/// Resident memory of this process in KiB (Linux), 0 if unknown.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files: usize = match std::env::args().nth(1) {
        Some(a) => a.parse()?,
        None => 100_000,
    };
    let mut rng = Rng(0x5eed);
    let names: Vec<String> = (0..files).map(|i| make_name(&mut rng, i)).collect();

    let tmp = tempfile::tempdir()?;
    let t = Instant::now();
    create_files(&tmp.path().join("share"), &names)?;
    println!(
        "created {files} files in {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let share = tmp.path().join("share");
    let mut cfg = LibraryConfig::new(vec![share.clone()]);
    // A database file, as a node uses (an in-memory one would count
    // SQLite's pages as the library's memory).
    cfg.db_path = Some(tmp.path().join("library.sqlite"));
    cfg.watch = false;
    cfg.rescan_interval = Duration::from_secs(24 * 3600);
    let rss_before = rss_kib();
    let t = Instant::now();
    let lib = Library::open(cfg)?;
    println!(
        "opened library ({} files listed) in {:.2} s",
        lib.len(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    lib.wait_idle(Duration::from_secs(600));
    println!(
        "hashed everything in {:.2} s more",
        t.elapsed().as_secs_f64()
    );
    println!(
        "resident memory grew by {:.1} MiB while opening and hashing",
        rss_kib().saturating_sub(rss_before) as f64 / 1024.0
    );

    // Query sets: substrings of real names (3..10 chars), words, numbers,
    // texts that match nothing, and 1-2 char texts (no trigram).
    let mut long = Vec::new();
    for _ in 0..400 {
        let name = &names[rng.below(names.len())];
        let chars: Vec<char> = name.chars().collect();
        let len = 3 + rng.below(8);
        let start = rng.below(chars.len().saturating_sub(len).max(1));
        long.push(
            chars[start..(start + len).min(chars.len())]
                .iter()
                .collect::<String>(),
        );
    }
    for _ in 0..100 {
        long.push(rng.pick(WORDS).to_uppercase());
        long.push(format!("{:05}", rng.below(files)));
        long.push(format!("zq{}x", rng.below(1000)));
    }
    let mut short = Vec::new();
    for _ in 0..100 {
        let name = &names[rng.below(names.len())];
        let chars: Vec<char> = name.chars().collect();
        let len = 1 + rng.below(2);
        let start = rng.below(chars.len() - len);
        short.push(chars[start..start + len].iter().collect::<String>());
        short.push(format!("{}", ['q', 'j', 'z', 'x', 'w'][rng.below(5)]).repeat(len));
    }
    let runs = 5;
    println!(
        "\n{} names, {} queries of 3+ chars and {} of 1-2 chars, {runs} runs each; latency per query",
        files,
        long.len(),
        short.len()
    );
    println!(
        "{:<34} {:>12} {:>12} {:>12}",
        "case", "median", "p95", "max"
    );
    for (label, queries) in [("3+ chars", &long), ("1-2 chars", &short)] {
        for limit in [100usize, usize::MAX] {
            let lim = if limit == usize::MAX {
                "all hits".to_string()
            } else {
                format!("limit {limit}")
            };
            let (lat, h1) = time_queries(queries, runs, |q| lib.search(q, limit).len());
            println!(
                "{:<34} {:>12} {:>12} {:>12}",
                format!("library, {label}, {lim}"),
                us(percentile(&lat, 0.5)),
                us(percentile(&lat, 0.95)),
                us(percentile(&lat, 1.0))
            );
            let (lat, h2) = time_queries(queries, runs, |q| naive(&names, q, limit));
            println!(
                "{:<34} {:>12} {:>12} {:>12}",
                format!("naive scan, {label}, {lim}"),
                us(percentile(&lat, 0.5)),
                us(percentile(&lat, 0.95)),
                us(percentile(&lat, 1.0))
            );
            if h1 != h2 {
                println!("  (hit counts differ: library {h1}, naive {h2})");
            }
        }
    }
    Ok(())
}
