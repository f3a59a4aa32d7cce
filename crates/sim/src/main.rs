//! `rutella-sim`: runs the rutella overlay at scale in virtual time.

use anyhow::{bail, Result};
use clap::{Parser, ValueEnum};
use rutella_proto::Mode;
use rutella_sim::{default_threads, run_threads, SimConfig};
use std::path::PathBuf;
use std::time::Duration;

// Many small messages live and die per simulated datagram.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    Classic,
    Scalable,
}

/// Simulates N rutella peers (the real protocol code) with latency, loss and
/// churn, and prints the search and maintenance figures.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Peers online at any time.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Overlay mode.
    #[arg(long, value_enum, default_value_t = ModeArg::Scalable)]
    mode: ModeArg,
    /// Searches issued in the measured window.
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Seed: the same seed gives the same output.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Median session length in seconds (churn); none by default.
    #[arg(long)]
    churn_median_secs: Option<f64>,
    /// Simulated minutes in all.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Unmeasured start, in seconds (default: a tenth of the run, at most 180).
    #[arg(long)]
    warmup_secs: Option<f64>,
    /// Datagram loss probability.
    #[arg(long, default_value_t = 0.01)]
    loss: f64,
    /// Median one-way link latency in milliseconds.
    #[arg(long, default_value_t = 40.0)]
    latency_ms: f64,
    /// Encode and parse every datagram (slower; checks the size limit).
    #[arg(long)]
    wire: bool,
    /// Threads that play the peers (the result is the same for any
    /// number); all cores by default.
    #[arg(long)]
    threads: Option<usize>,
    /// Scalable: target degree.
    #[arg(long)]
    degree: Option<usize>,
    /// Scalable: maximum degree.
    #[arg(long)]
    max_degree: Option<usize>,
    /// Scalable: neighbour ping interval in seconds.
    #[arg(long)]
    ping_interval_secs: Option<f64>,
    /// Scalable: pong timeout in seconds.
    #[arg(long)]
    pong_timeout_secs: Option<f64>,
    /// Scalable: estimated message budget of one search.
    #[arg(long)]
    budget: Option<u32>,
    /// Scalable: highest query TTL.
    #[arg(long)]
    max_ttl: Option<i64>,
    /// Scalable: answering peers after which a search stops growing.
    #[arg(long)]
    enough: Option<usize>,
    /// Scalable: milliseconds between search steps.
    #[arg(long)]
    step_wait_ms: Option<u64>,
    /// Scalable: seconds per search budget a neighbour's bucket refills
    /// (a leaf's at its share, see docs/SECURITY.md).
    #[arg(long)]
    search_cost_window_secs: Option<f64>,
    /// Scalable: seconds per search budget a leaf's searches may cost in
    /// all.
    #[arg(long)]
    leaf_search_cost_window_secs: Option<f64>,
    /// Scalable: seconds a leaf's link must have lasted before its
    /// ultrapeer lends its searches a whole budget.
    #[arg(long)]
    leaf_loan_after_secs: Option<f64>,
    /// Scalable: search budgets a neighbour's bucket holds at most.
    #[arg(long)]
    search_cost_burst: Option<u32>,
    /// Scalable: seconds per search a neighbour may start on average.
    #[arg(long)]
    neighbour_search_interval_secs: Option<f64>,
    /// Share of peers that drop every query (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    hostile_drop: f64,
    /// Share of peers that answer every query with a file they do not have.
    #[arg(long, default_value_t = 0.0)]
    hostile_false_hits: f64,
    /// Share of peers that start a search every --flood-interval-secs.
    #[arg(long, default_value_t = 0.0)]
    hostile_flood: f64,
    /// Share of peers that announce the largest accepted degree.
    #[arg(long, default_value_t = 0.0)]
    hostile_liar: f64,
    /// Seconds between two searches of a flooding peer.
    #[arg(long, default_value_t = 1.0)]
    flood_interval_secs: f64,
    /// Scalable: every peer an ultrapeer (the flat overlay of one tier).
    #[arg(long)]
    flat: bool,
    /// Scalable: ultrapeers a leaf keeps.
    #[arg(long)]
    leaf_ultrapeers: Option<usize>,
    /// Scalable: most leaves of an ultrapeer.
    #[arg(long)]
    max_leaves: Option<usize>,
    /// Scalable: an ultrapeer with fewer leaves (for a while) becomes a leaf.
    #[arg(long)]
    demote_below_leaves: Option<usize>,
    /// Scalable: seconds a capable leaf short of ultrapeers waits before
    /// becoming one.
    #[arg(long)]
    promote_wait_secs: Option<f64>,
    /// Scalable: seconds an ultrapeer with few leaves waits before becoming
    /// a leaf.
    #[arg(long)]
    demote_after_secs: Option<f64>,
    /// Share of peers that are not firewalled.
    #[arg(long, default_value_t = 0.5)]
    reachable_share: f64,
    /// Median upload bandwidth of a peer, kB/s.
    #[arg(long, default_value_t = 48.0)]
    bandwidth_median_kbps: f64,
    /// Also run the same seed without hostile peers and add the honest
    /// peers' load in both runs, per tier, and their ratio (`"vs_clean"`).
    #[arg(long)]
    compare_clean: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Add what the run cost on this machine (wall and CPU time, peak
    /// memory, memory per simulated peer) to the JSON as `"resources"`.
    /// These figures vary from run to run; the rest stays identical for a
    /// given seed.
    #[arg(long)]
    resources: bool,
    /// Run the scaling study instead and write CSV and PNG files here
    /// (--threads runs at once, each on one thread).
    #[arg(long)]
    sweep: Option<PathBuf>,
    /// With --sweep: largest network (default 10000).
    #[arg(long, default_value_t = 10_000)]
    sweep_max: usize,
    /// With --sweep: read the runs already in DIR/runs made with the same
    /// settings instead of running them again (`rutella-sim --json` output
    /// of the same run counts). Nodes, seed, searches, minutes, churn, loss
    /// and hostile shares are compared; other settings (the flood interval,
    /// the study's --leaf-loan-after-secs 10) are taken on trust.
    #[arg(long)]
    sweep_reuse: bool,
}

fn secs(s: f64) -> Result<Duration> {
    if !(s.is_finite() && s >= 0.0) {
        bail!("durations must be non-negative numbers of seconds, got {s}");
    }
    Ok(Duration::from_secs_f64(s))
}

fn config(a: &Args) -> Result<SimConfig> {
    if a.nodes < 2 {
        bail!("--nodes must be at least 2");
    }
    if !(0.0..=1.0).contains(&a.loss) {
        bail!("--loss is a probability between 0 and 1");
    }
    let mode = match a.mode {
        ModeArg::Classic => Mode::Classic,
        ModeArg::Scalable => Mode::Scalable,
    };
    let mut c = SimConfig::new(a.nodes, mode, a.queries, a.seed);
    c.duration = secs(a.minutes * 60.0)?;
    c.warmup = match a.warmup_secs {
        Some(w) => secs(w)?,
        None => secs((a.minutes * 6.0).min(180.0))?,
    };
    if c.warmup >= c.duration {
        bail!("the warm-up must be shorter than the run");
    }
    c.churn_median = a.churn_median_secs.map(secs).transpose()?;
    c.loss = a.loss;
    c.latency_median = secs(a.latency_ms / 1000.0)?;
    c.wire = a.wire;
    let shares = [
        a.hostile_drop,
        a.hostile_false_hits,
        a.hostile_flood,
        a.hostile_liar,
    ];
    if shares.iter().any(|s| !(0.0..=1.0).contains(s)) || shares.iter().sum::<f64>() > 1.0 {
        bail!("hostile shares are between 0 and 1, and at most 1 together");
    }
    c.hostile.drop = a.hostile_drop;
    c.hostile.false_hits = a.hostile_false_hits;
    c.hostile.flood = a.hostile_flood;
    c.hostile.liar = a.hostile_liar;
    c.hostile.flood_interval = secs(a.flood_interval_secs)?;
    if c.hostile.flood_interval.is_zero() {
        bail!("--flood-interval-secs must be positive");
    }
    if !(0.0..=1.0).contains(&a.reachable_share) {
        bail!("--reachable-share is between 0 and 1");
    }
    c.reachable_share = a.reachable_share;
    c.bandwidth_median_kbps = a.bandwidth_median_kbps.max(1.0);
    let s = &mut c.scalable;
    if a.flat {
        s.tier = rutella_proto::Tier::Ultrapeer;
    }
    if let Some(v) = a.leaf_ultrapeers {
        s.leaf_ultrapeers = v.max(1);
    }
    if let Some(v) = a.max_leaves {
        s.max_leaves = v;
    }
    if let Some(v) = a.demote_below_leaves {
        s.demote_below_leaves = v;
    }
    if let Some(v) = a.promote_wait_secs {
        s.promote_wait = secs(v)?;
    }
    if let Some(v) = a.demote_after_secs {
        s.demote_after = secs(v)?;
    }
    if let Some(d) = a.degree {
        s.target_degree = d;
        s.min_degree = s.min_degree.min(d);
        s.max_degree = s.max_degree.max(d);
    }
    if let Some(d) = a.max_degree {
        s.max_degree = d.max(s.target_degree);
    }
    if let Some(x) = a.ping_interval_secs {
        s.ping_interval = secs(x)?;
    }
    if let Some(x) = a.pong_timeout_secs {
        s.pong_timeout = secs(x)?;
    }
    if let Some(x) = a.budget {
        s.query_budget = x;
    }
    if let Some(x) = a.max_ttl {
        s.max_ttl = x;
    }
    if let Some(x) = a.enough {
        s.enough_results = x;
    }
    if let Some(x) = a.search_cost_window_secs {
        s.search_cost_window = secs(x)?;
    }
    if let Some(x) = a.leaf_search_cost_window_secs {
        s.leaf_search_cost_window = secs(x)?;
    }
    if let Some(x) = a.leaf_loan_after_secs {
        s.leaf_loan_after = secs(x)?;
    }
    if let Some(x) = a.search_cost_burst {
        s.search_cost_burst = x;
    }
    if let Some(x) = a.neighbour_search_interval_secs {
        s.neighbour_search_interval = secs(x)?;
    }
    if let Some(x) = a.step_wait_ms {
        s.step_wait = Duration::from_millis(x);
    }
    Ok(c)
}

/// The JSON printed: the summary, and what the run cost if asked.
#[derive(serde::Serialize)]
struct Output<'a> {
    #[serde(flatten)]
    summary: &'a rutella_sim::Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: Option<&'a Resources>,
}

/// What a run cost on this machine.
#[derive(Debug, serde::Serialize)]
struct Resources {
    /// Wall time of the simulation, in seconds.
    wall_secs: f64,
    /// CPU time of the process (user and system), in seconds.
    cpu_secs: f64,
    /// Peak resident memory of the process, in bytes.
    peak_rss_bytes: u64,
    /// Peak resident memory divided by the number of peers.
    bytes_per_peer: f64,
}

impl Resources {
    /// Reads the process's CPU time and peak memory from `/proc` (zero
    /// where it cannot be read).
    fn measure(wall_secs: f64, nodes: usize) -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let peak_rss_bytes = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024;
        // Fields 14 and 15 of /proc/self/stat, after the command name.
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let ticks: u64 = stat
            .rsplit_once(')')
            .map(|(_, rest)| {
                rest.split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|f| f.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0);
        Resources {
            wall_secs,
            // The kernel's clock ticks are 100 per second on Linux.
            cpu_secs: ticks as f64 / 100.0,
            peak_rss_bytes,
            bytes_per_peer: peak_rss_bytes as f64 / nodes.max(1) as f64,
        }
    }
}

/// Keeps the kernel from backing the heap with transparent huge pages.
/// The allocator asks for them on its large regions; with millions of
/// small objects spread over those regions, a 2 MiB page is resident as
/// soon as one object on it is, and the peak memory of a 5,000-peer run
/// was 12% higher with them (and its CPU time higher, from zeroing them).
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE only sets a flag of this process; it reads
    // and writes no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> Result<()> {
    no_huge_pages();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Some(dir) = &args.sweep {
        let workers = args.threads.unwrap_or_else(default_threads).max(1);
        rutella_sim::figures::sweep(dir, args.seed, args.sweep_max, workers, args.sweep_reuse)?;
        return Ok(());
    }
    let cfg = config(&args)?;
    let started = std::time::Instant::now();
    let threads = args.threads.unwrap_or_else(default_threads).max(1);
    let summary = if args.compare_clean {
        rutella_sim::run_against_clean(&cfg, threads)
    } else {
        run_threads(&cfg, threads)
    };
    let wall = started.elapsed().as_secs_f64();
    let used = Resources::measure(wall, cfg.nodes);
    eprintln!(
        "wall time: {wall:.1} s, CPU time: {:.1} s, peak memory: {:.0} MiB ({:.1} KiB per peer)",
        used.cpu_secs,
        used.peak_rss_bytes as f64 / 1048576.0,
        used.bytes_per_peer / 1024.0
    );
    if args.json {
        let out = Output {
            summary: &summary,
            resources: args.resources.then_some(&used),
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{summary:#?}");
    }
    Ok(())
}
