//! The scaling study: a set of runs, written as CSV files and PNG plots.

use crate::{run, SimConfig, Summary};
use plotters::prelude::*;
use rutella_proto::Mode;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the study could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FiguresError {
    /// A file could not be written.
    #[error("cannot write {path}: {source}; check that the directory exists and is writable")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A plot could not be drawn.
    #[error("cannot draw {path}: {message}")]
    Plot {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// No font to write the plots' labels with.
    #[error("no TrueType font found (tried {0}); install fonts-dejavu-core or set RUTELLA_SIM_FONT to a .ttf file")]
    NoFont(String),
}

/// Classic ping interval, seconds.
const CLASSIC_T: f64 = 20.0;

/// One row of the study.
#[derive(Debug, Clone)]
pub struct Row {
    /// `classic` or `scalable`.
    pub mode: &'static str,
    /// `sim` (measured) or `model` (classic formulas checked by the
    /// simulator at small sizes).
    pub source: &'static str,
    /// Median session length, seconds (0: no churn).
    pub churn: f64,
    /// Which runs of the study it belongs to (see [`Scenario`]).
    pub scenario: Scenario,
    /// The figures.
    pub s: Summary,
}

/// The kinds of scalable runs made at every size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Every peer stays, every peer honest.
    Plain,
    /// Sessions of 10 minutes (median), every peer honest.
    Churn,
    /// 5% of the peers hostile: 1.25% of each kind.
    Hostile5,
    /// 20% of the peers hostile: 5% of each kind.
    Hostile20,
}

impl Scenario {
    /// Every scenario, in the order of the study.
    pub const ALL: [Scenario; 4] = [
        Scenario::Plain,
        Scenario::Churn,
        Scenario::Hostile5,
        Scenario::Hostile20,
    ];

    /// Its name in file names and the CSV.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Plain => "plain",
            Scenario::Churn => "churn",
            Scenario::Hostile5 => "hostile5",
            Scenario::Hostile20 => "hostile20",
        }
    }

    /// The share of each of the four hostile kinds.
    fn hostile_each(self) -> f64 {
        match self {
            Scenario::Plain | Scenario::Churn => 0.0,
            Scenario::Hostile5 => 0.0125,
            Scenario::Hostile20 => 0.05,
        }
    }
}

/// Classic figures from the formulas (full mesh, every peer asked and
/// answering): 2(N-1) messages per query and (N-1)(2N-1)/T maintenance.
fn classic_model(n: usize, like: &Summary) -> Summary {
    let mut s = like.clone();
    let nf = n as f64;
    s.nodes = n;
    s.datagrams = 0;
    s.events = 0;
    for c in [&mut s.all, &mut s.popular, &mut s.unique] {
        c.messages_median = 2.0 * (nf - 1.0);
        c.messages_p95 = 2.0 * (nf - 1.0);
    }
    s.maintenance_msgs_per_peer_per_sec = (nf - 1.0) * (2.0 * nf - 1.0) / CLASSIC_T;
    s.degree_min = n - 1;
    s.degree_max = n - 1;
    s.degree_mean = nf - 1.0;
    s.popular_threshold = ((nf * 0.005).ceil() as usize).max(2);
    s
}

/// Most searches of one run of the study (the 100,000-peer runs make
/// 10,000).
const MAX_QUERIES: usize = 10_000;

/// The study's ultrapeers lend no budget to a leaf link younger than
/// this (off by default in a node; see `ScalableConfig::leaf_loan_after`).
const STUDY_LEAF_LOAN_AFTER_SECS: u64 = 10;

/// Flooding peers search once per this interval (the allowance).
const FLOOD_INTERVAL_SECS: u64 = 30;

fn scalable(n: usize, seed: u64, churn: Option<f64>) -> SimConfig {
    let mut c = SimConfig::new(n, Mode::Scalable, n.clamp(1000, MAX_QUERIES), seed);
    c.churn_median = churn.map(Duration::from_secs_f64);
    c
}

/// The configuration of one scalable run of the study.
pub fn scenario_config(n: usize, seed: u64, sc: Scenario) -> SimConfig {
    let mut c = scalable(n, seed, (sc == Scenario::Churn).then_some(600.0));
    let each = sc.hostile_each();
    c.hostile.drop = each;
    c.hostile.false_hits = each;
    c.hostile.flood = each;
    c.hostile.liar = each;
    c.hostile.flood_interval = Duration::from_secs(FLOOD_INTERVAL_SECS);
    c.scalable.leaf_loan_after = Duration::from_secs(STUDY_LEAF_LOAN_AFTER_SECS);
    c
}

fn header() -> &'static str {
    "mode,source,scenario,hostile_share,nodes,churn_median_secs,minutes,queries,answerable,success_rate,\
popular_queries,popular_success,popular_msgs_median,popular_msgs_p95,popular_hops_median,popular_first_hit_ms_median,\
unique_queries,unique_success,unique_msgs_median,unique_msgs_p95,unique_hops_median,unique_first_hit_ms_median,\
all_msgs_median,all_msgs_p95,maintenance_per_peer_per_sec,degree_min,degree_mean,degree_max,\
ultrapeers,honest_load_mean,honest_load_p99,honest_load_max,false_hits\n"
}

fn csv_row(out: &mut String, mode: &str, source: &str, scenario: &str, churn: f64, s: &Summary) {
    let hostile = s.hostile_drop + s.hostile_false_hits + s.hostile_flood + s.hostile_liar;
    let _ = writeln!(
        out,
        "{mode},{source},{scenario},{hostile:.4},{},{churn},{},{},{},{:.4},{},{:.4},{},{},{},{:.1},{},{:.4},{},{},{},{:.1},{},{},{:.4},{},{:.2},{},{},{:.4},{:.4},{:.4},{}",
        s.nodes,
        s.minutes,
        s.queries,
        s.answerable_queries,
        s.success_rate,
        s.popular.queries,
        s.popular.success_rate,
        s.popular.messages_median,
        s.popular.messages_p95,
        s.popular.hops_to_first_hit_median,
        s.popular.time_to_first_hit_ms_median,
        s.unique.queries,
        s.unique.success_rate,
        s.unique.messages_median,
        s.unique.messages_p95,
        s.unique.hops_to_first_hit_median,
        s.unique.time_to_first_hit_ms_median,
        s.all.messages_median,
        s.all.messages_p95,
        s.maintenance_msgs_per_peer_per_sec,
        s.degree_min,
        s.degree_mean,
        s.degree_max,
        s.ultrapeers,
        s.honest_load_mean,
        s.honest_load_p99,
        s.honest_load_max,
        s.false_hits,
    );
}

fn write(path: &Path, text: &str) -> Result<(), FiguresError> {
    std::fs::write(path, text).map_err(|source| FiguresError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn load_font() -> Result<(), FiguresError> {
    let mut tried = Vec::new();
    let mut paths: Vec<String> = std::env::var("RUTELLA_SIM_FONT").into_iter().collect();
    paths.extend(
        [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
            "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        ]
        .map(String::from),
    );
    for p in paths {
        if let Ok(bytes) = std::fs::read(&p) {
            // The font lives as long as the program: plotters keeps it.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return Ok(());
            }
        }
        tried.push(p);
    }
    Err(FiguresError::NoFont(tried.join(", ")))
}

/// One line of a plot: a name and its points.
type Series = (String, Vec<(f64, f64)>);

fn plot(
    path: &Path,
    title: &str,
    y_label: &str,
    log_y: bool,
    series: &[Series],
) -> Result<(), FiguresError> {
    let err = |e: &dyn std::fmt::Display| FiguresError::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let pts = series.iter().flat_map(|s| s.1.iter());
    let (mut y0, mut y1) = (f64::MAX, f64::MIN);
    for (_, y) in pts {
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if y0 > y1 {
        return Ok(());
    }
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80);
    let colors = [
        RED,
        BLUE,
        GREEN,
        MAGENTA,
        BLACK,
        CYAN,
        RGBColor(230, 140, 0),
        RGBColor(120, 60, 160),
    ];
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc("peers (N)")
                .y_desc(y_label)
                .label_style(("sans-serif", 15))
                .draw()
                .map_err(|e| err(&e))?;
            for (i, (name, points)) in series.iter().enumerate() {
                let color = colors[i % colors.len()];
                chart
                    .draw_series(LineSeries::new(
                        points.iter().copied(),
                        color.stroke_width(2),
                    ))
                    .map_err(|e| err(&e))?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))
                    .map_err(|e| err(&e))?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 15))
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .map_err(|e| err(&e))?;
        }};
    }
    let x = (20.0f64..150_000.0f64).log_scale();
    if log_y {
        let lo = (y0 * 0.5).max(1e-3);
        let chart = builder
            .build_cartesian_2d(x, (lo..y1 * 2.0).log_scale())
            .map_err(|e| err(&e))?;
        draw!(chart);
    } else {
        let pad = ((y1 - y0) * 0.1).max(0.01);
        let chart = builder
            .build_cartesian_2d(x, (y0 - pad)..(y1 + pad))
            .map_err(|e| err(&e))?;
        draw!(chart);
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Runs the scalable runs of the study, several at once (`workers`
/// threads, each run on one), the largest first; each run's summary is
/// also written as JSON into `dir/runs/` as soon as it ends, so that a
/// long study leaves its figures behind as it goes.
/// A run of an earlier study (or `rutella-sim --json` with the same
/// settings) at `path`, if it was made with the configuration `c`.
fn earlier_run(path: &Path, c: &SimConfig) -> Option<Summary> {
    let text = std::fs::read_to_string(path).ok()?;
    let s: Summary = match serde_json::from_str(&text) {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(path = %path.display(), error = %e, "earlier run not readable; running it again");
            return None;
        }
    };
    let same = s.nodes == c.nodes
        && s.seed == c.seed
        && s.queries == c.queries
        && s.mode == "scalable"
        && s.minutes == c.duration.as_secs_f64() / 60.0
        && s.churn_median_secs == c.churn_median.map(|d| d.as_secs_f64())
        && s.loss == c.loss
        && s.hostile_drop == c.hostile.drop
        && s.hostile_false_hits == c.hostile.false_hits
        && s.hostile_flood == c.hostile.flood
        && s.hostile_liar == c.hostile.liar;
    if !same {
        tracing::info!(path = %path.display(), "earlier run made with other settings; running it again");
    }
    same.then_some(s)
}

fn scalable_runs(
    dir: &Path,
    seed: u64,
    sizes: &[usize],
    workers: usize,
    reuse: bool,
) -> Result<Vec<Row>, FiguresError> {
    let runs_dir = dir.join("runs");
    std::fs::create_dir_all(&runs_dir).map_err(|source| FiguresError::Write {
        path: runs_dir.clone(),
        source,
    })?;
    let done = std::sync::Mutex::new(Vec::new());
    let mut jobs: Vec<(usize, Scenario)> = Vec::new();
    for (n, sc) in sizes.iter().flat_map(|&n| Scenario::ALL.map(|sc| (n, sc))) {
        let path = runs_dir.join(format!("{n}-{}.json", sc.name()));
        match reuse
            .then(|| earlier_run(&path, &scenario_config(n, seed, sc)))
            .flatten()
        {
            Some(s) => {
                tracing::info!(scenario = sc.name(), nodes = n, path = %path.display(), "run reused");
                if let Ok(mut d) = done.lock() {
                    d.push((n, sc, s, Ok(())));
                }
            }
            None => jobs.push((n, sc)),
        }
    }
    // Largest first, so that the long runs overlap; popped from the end.
    jobs.sort_by_key(|&(n, sc)| (n, std::cmp::Reverse(sc as u8)));
    let queue = std::sync::Mutex::new(jobs);
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| loop {
                let Some((n, sc)) = queue.lock().ok().and_then(|mut q| q.pop()) else {
                    return;
                };
                let t = std::time::Instant::now();
                let s = crate::run_threads(&scenario_config(n, seed, sc), 1);
                let secs = t.elapsed().as_secs_f64();
                tracing::info!(
                    scenario = sc.name(),
                    nodes = n,
                    success = s.success_rate,
                    unique = s.unique.success_rate,
                    msgs = s.all.messages_median,
                    wall_secs = secs,
                    "run done"
                );
                let path = runs_dir.join(format!("{n}-{}.json", sc.name()));
                let json = serde_json::to_string_pretty(&s).unwrap_or_default();
                let written = write(&path, &(json + "\n"));
                if let Ok(mut d) = done.lock() {
                    d.push((n, sc, s, written));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_default();
    done.sort_by_key(|(n, sc, _, _)| (*n, *sc as u8));
    let mut rows = Vec::new();
    for (_, sc, s, written) in done {
        written?;
        rows.push(Row {
            mode: "scalable",
            source: "sim",
            churn: if sc == Scenario::Churn { 600.0 } else { 0.0 },
            scenario: sc,
            s,
        });
    }
    Ok(rows)
}

/// Runs the study (network sizes up to `max_nodes`: the scalable overlay
/// without churn, with churn, with 5% and with 20% hostile peers; the
/// classic protocol; the tuning runs) and writes `scaling.csv`,
/// `tuning.csv`, the plots and `runs/*.json` into `dir`, with `workers`
/// runs at once. Progress goes to the log. With `reuse`, a scalable run
/// whose JSON is already in `runs/` with the same settings is read, not run
/// again (a study can be resumed, or its largest runs made one by one with
/// `rutella-sim --json`).
pub fn sweep(
    dir: &Path,
    seed: u64,
    max_nodes: usize,
    workers: usize,
    reuse: bool,
) -> Result<(), FiguresError> {
    std::fs::create_dir_all(dir).map_err(|source| FiguresError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    load_font()?;
    let sizes: Vec<usize> = [100, 300, 1000, 3000, 10_000, 30_000, 100_000]
        .into_iter()
        .filter(|n| *n <= max_nodes)
        .collect();
    let mut rows = scalable_runs(dir, seed, &sizes, workers, reuse)?;
    // Classic: each ping round costs (N-1)(2N-1) datagrams per peer, so it
    // is simulated at small sizes for 2 minutes, and the formulas it
    // confirms give the larger sizes.
    let mut last_classic = None;
    for n in [25usize, 50, 100] {
        let mut c = SimConfig::new(n, Mode::Classic, 200, seed);
        c.duration = Duration::from_secs(150);
        c.warmup = Duration::from_secs(30);
        let s = crate::run_threads(&c, workers.max(1));
        tracing::info!(nodes = n, success = s.success_rate, "classic run done");
        last_classic = Some(s.clone());
        rows.push(Row {
            mode: "classic",
            source: "sim",
            churn: 0.0,
            scenario: Scenario::Plain,
            s,
        });
    }
    if let Some(like) = &last_classic {
        for &n in sizes.iter().filter(|n| **n > 100) {
            rows.push(Row {
                mode: "classic",
                source: "model",
                churn: 0.0,
                scenario: Scenario::Plain,
                s: classic_model(n, like),
            });
        }
    }
    let mut csv = header().to_string();
    for r in &rows {
        csv_row(&mut csv, r.mode, r.source, r.scenario.name(), r.churn, &r.s);
    }
    write(&dir.join("scaling.csv"), &csv)?;
    plots(dir, &rows)?;
    tuning(dir, seed)?;
    Ok(())
}

fn plots(dir: &Path, rows: &[Row]) -> Result<(), FiguresError> {
    let pick = |sc: Scenario, f: &dyn Fn(&Summary) -> f64| -> Vec<(f64, f64)> {
        rows.iter()
            .filter(|r| r.mode == "scalable" && r.scenario == sc)
            .map(|r| (r.s.nodes as f64, f(&r.s)))
            .collect()
    };
    let classic = |f: &dyn Fn(&Summary) -> f64| -> Vec<(f64, f64)> {
        rows.iter()
            .filter(|r| r.mode == "classic")
            .map(|r| (r.s.nodes as f64, f(&r.s)))
            .collect()
    };
    let classic_sim = |f: &dyn Fn(&Summary) -> f64| -> Vec<(f64, f64)> {
        rows.iter()
            .filter(|r| r.mode == "classic" && r.source == "sim")
            .map(|r| (r.s.nodes as f64, f(&r.s)))
            .collect()
    };
    use Scenario::*;
    let every = |label: &str, f: &dyn Fn(&Summary) -> f64| -> Vec<Series> {
        [
            (Plain, "no churn"),
            (Churn, "10 min median session"),
            (Hostile5, "5% hostile"),
            (Hostile20, "20% hostile"),
        ]
        .into_iter()
        .map(|(sc, name)| (format!("{label}, {name}"), pick(sc, f)))
        .collect()
    };
    let mut series = vec![(
        "classic (sim, then formula)".to_string(),
        classic(&|s| s.all.messages_median),
    )];
    series.push((
        "files on >= 0.5% of peers, no churn".into(),
        pick(Plain, &|s| s.popular.messages_median),
    ));
    series.extend(every("one peer", &|s| s.unique.messages_median));
    plot(
        &dir.join("messages_per_query.png"),
        "Messages per query (median)",
        "datagrams per query",
        true,
        &series,
    )?;
    let mut series = vec![(
        "files on >= 0.5% of peers, no churn".to_string(),
        pick(Plain, &|s| s.popular.success_rate),
    )];
    series.extend(every("one peer", &|s| s.unique.success_rate));
    series.push((
        "classic (simulated sizes)".into(),
        classic_sim(&|s| s.success_rate),
    ));
    plot(
        &dir.join("success.png"),
        "Search success (answerable queries)",
        "success rate",
        false,
        &series,
    )?;
    let mut series = vec![(
        "classic (sim, then formula)".to_string(),
        classic(&|s| s.maintenance_msgs_per_peer_per_sec),
    )];
    series.extend(every("scalable", &|s| s.maintenance_msgs_per_peer_per_sec));
    plot(
        &dir.join("maintenance.png"),
        "Maintenance traffic",
        "ping+pong datagrams per peer per second",
        true,
        &series,
    )?;
    let mut series = vec![(
        "files on >= 0.5% of peers, no churn".to_string(),
        pick(Plain, &|s| s.popular.hops_to_first_hit_median),
    )];
    series.extend(every("one peer", &|s| s.unique.hops_to_first_hit_median));
    plot(
        &dir.join("hops_to_first_hit.png"),
        "Hops to the first hit (median)",
        "overlay hops",
        false,
        &series,
    )?;
    let mut series = vec![(
        "files on >= 0.5% of peers, no churn".to_string(),
        pick(Plain, &|s| s.popular.time_to_first_hit_ms_median),
    )];
    series.extend(every("one peer", &|s| s.unique.time_to_first_hit_ms_median));
    series.push((
        "classic (simulated sizes)".into(),
        classic_sim(&|s| s.all.time_to_first_hit_ms_median),
    ));
    plot(
        &dir.join("time_to_first_hit.png"),
        "Virtual time to the first hit (median)",
        "milliseconds",
        true,
        &series,
    )?;
    plot(
        &dir.join("busiest_peer.png"),
        "Load on the busiest honest peer",
        "datagrams received per second",
        true,
        &every("busiest", &|s| s.honest_load_max),
    )
}

/// The tuning runs: one parameter at a time around the defaults, at 3,000
/// peers with a median session of 10 minutes.
fn tuning(dir: &Path, seed: u64) -> Result<(), FiguresError> {
    let n = 3000;
    let base = || {
        let mut c = scalable(n, seed, Some(600.0));
        c.queries = 3000;
        c
    };
    let mut runs: Vec<(String, String, SimConfig)> = Vec::new();
    for secs in [30u64, 60, 120, 240] {
        let mut c = base();
        c.scalable.ping_interval = Duration::from_secs(secs);
        runs.push(("ping_interval_secs".into(), secs.to_string(), c));
    }
    for secs in [2u64, 5, 10, 20] {
        let mut c = base();
        c.scalable.pong_timeout = Duration::from_secs(secs);
        runs.push(("pong_timeout_secs".into(), secs.to_string(), c));
    }
    for budget in [500u32, 1500, 3000, 6000] {
        let mut c = base();
        c.scalable.query_budget = budget;
        runs.push(("query_budget".into(), budget.to_string(), c));
    }
    for degree in [8usize, 12, 16, 24] {
        let mut c = base();
        c.scalable.target_degree = degree;
        c.scalable.min_degree = (degree / 2).max(4);
        runs.push(("target_degree".into(), degree.to_string(), c));
    }
    let mut csv = String::from("parameter,value,").to_string() + header();
    for (param, value, c) in runs {
        let t = std::time::Instant::now();
        let s = run(&c);
        tracing::info!(%param, %value, success = s.success_rate, wall_secs = t.elapsed().as_secs_f64(), "tuning run done");
        let mut line = String::new();
        csv_row(&mut line, "scalable", "sim", "tuning", 600.0, &s);
        let _ = write!(csv, "{param},{value},{line}");
    }
    write(&dir.join("tuning.csv"), &csv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_earlier_run_is_reused_only_with_the_same_settings() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("60-hostile20.json");
        let mut c = scenario_config(60, 3, Scenario::Hostile20);
        c.duration = Duration::from_secs(60);
        c.warmup = Duration::from_secs(10);
        c.queries = 20;
        let s = run(&c);
        std::fs::write(&path, serde_json::to_string_pretty(&s).expect("JSON")).expect("written");
        assert_eq!(earlier_run(&path, &c), Some(s));
        let mut other_seed = c.clone();
        other_seed.seed = 4;
        assert_eq!(earlier_run(&path, &other_seed), None);
        let mut honest = c.clone();
        honest.hostile.flood = 0.0;
        assert_eq!(earlier_run(&path, &honest), None);
        let mut churn = c.clone();
        churn.churn_median = Some(Duration::from_secs(600));
        assert_eq!(earlier_run(&path, &churn), None);
        std::fs::write(&path, "{\"nodes\": 60}").expect("written");
        assert_eq!(earlier_run(&path, &c), None);
        assert_eq!(earlier_run(&dir.path().join("absent.json"), &c), None);
    }
}
