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
    /// The figures.
    pub s: Summary,
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

fn scalable(n: usize, seed: u64, churn: Option<f64>) -> SimConfig {
    let mut c = SimConfig::new(n, Mode::Scalable, n.max(1000), seed);
    c.churn_median = churn.map(Duration::from_secs_f64);
    c
}

fn header() -> &'static str {
    "mode,source,nodes,churn_median_secs,minutes,queries,answerable,success_rate,\
popular_queries,popular_success,popular_msgs_median,popular_msgs_p95,popular_hops_median,popular_first_hit_ms_median,\
unique_queries,unique_success,unique_msgs_median,unique_msgs_p95,unique_hops_median,unique_first_hit_ms_median,\
all_msgs_median,all_msgs_p95,maintenance_per_peer_per_sec,degree_min,degree_mean,degree_max\n"
}

fn csv_row(out: &mut String, mode: &str, source: &str, churn: f64, s: &Summary) {
    let _ = writeln!(
        out,
        "{mode},{source},{},{churn},{},{},{},{:.4},{},{:.4},{},{},{},{:.1},{},{:.4},{},{},{},{:.1},{},{},{:.4},{},{:.2},{}",
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
    let colors = [RED, BLUE, GREEN, MAGENTA, BLACK, CYAN];
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
    let x = (20.0f64..15_000.0f64).log_scale();
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

/// Runs the study (network sizes up to `max_nodes`, both modes, with and
/// without churn, and the tuning runs) and writes `scaling.csv`,
/// `tuning.csv` and the plots into `dir`. Progress goes to the log.
pub fn sweep(dir: &Path, seed: u64, max_nodes: usize) -> Result<(), FiguresError> {
    std::fs::create_dir_all(dir).map_err(|source| FiguresError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    load_font()?;
    let sizes: Vec<usize> = [100, 300, 1000, 3000, 10_000]
        .into_iter()
        .filter(|n| *n <= max_nodes)
        .collect();
    let mut rows: Vec<Row> = Vec::new();
    let log = |what: &str, s: &Summary, secs: f64| {
        tracing::info!(
            what,
            nodes = s.nodes,
            success = s.success_rate,
            msgs = s.all.messages_median,
            maintenance = s.maintenance_msgs_per_peer_per_sec,
            wall_secs = secs,
            "run done"
        );
    };
    // Scalable, with and without churn (median session 10 minutes).
    for &n in &sizes {
        for churn in [None, Some(600.0)] {
            let t = std::time::Instant::now();
            let s = run(&scalable(n, seed, churn));
            log("scalable", &s, t.elapsed().as_secs_f64());
            rows.push(Row {
                mode: "scalable",
                source: "sim",
                churn: churn.unwrap_or(0.0),
                s,
            });
        }
    }
    // Classic: each ping round costs (N-1)(2N-1) datagrams per peer, so it
    // is simulated at small sizes for 2 minutes, and the formulas it
    // confirms give the larger sizes.
    let mut last_classic = None;
    for n in [25usize, 50, 100] {
        let mut c = SimConfig::new(n, Mode::Classic, 200, seed);
        c.duration = Duration::from_secs(150);
        c.warmup = Duration::from_secs(30);
        let t = std::time::Instant::now();
        let s = run(&c);
        log("classic", &s, t.elapsed().as_secs_f64());
        last_classic = Some(s.clone());
        rows.push(Row {
            mode: "classic",
            source: "sim",
            churn: 0.0,
            s,
        });
    }
    if let Some(like) = &last_classic {
        for &n in sizes.iter().filter(|n| **n > 100) {
            rows.push(Row {
                mode: "classic",
                source: "model",
                churn: 0.0,
                s: classic_model(n, like),
            });
        }
    }
    let mut csv = header().to_string();
    for r in &rows {
        csv_row(&mut csv, r.mode, r.source, r.churn, &r.s);
    }
    write(&dir.join("scaling.csv"), &csv)?;

    let pick = |mode: &str, churn: f64, f: &dyn Fn(&Summary) -> f64| -> Vec<(f64, f64)> {
        rows.iter()
            .filter(|r| r.mode == mode && r.churn == churn)
            .map(|r| (r.s.nodes as f64, f(&r.s)))
            .collect()
    };
    plot(
        &dir.join("messages_per_query.png"),
        "Messages per query (median)",
        "datagrams per query",
        true,
        &[
            (
                "classic (sim, then formula)".into(),
                pick("classic", 0.0, &|s| s.all.messages_median),
            ),
            (
                "scalable: files on >= 0.5% of peers".into(),
                pick("scalable", 0.0, &|s| s.popular.messages_median),
            ),
            (
                "scalable: files on one peer".into(),
                pick("scalable", 0.0, &|s| s.unique.messages_median),
            ),
            (
                "scalable: one peer, p95".into(),
                pick("scalable", 0.0, &|s| s.unique.messages_p95),
            ),
        ],
    )?;
    plot(
        &dir.join("success.png"),
        "Search success (answerable queries)",
        "success rate",
        false,
        &[
            (
                "scalable: files on >= 0.5% of peers".into(),
                pick("scalable", 0.0, &|s| s.popular.success_rate),
            ),
            (
                "scalable: files on one peer".into(),
                pick("scalable", 0.0, &|s| s.unique.success_rate),
            ),
            (
                "scalable: all, no churn".into(),
                pick("scalable", 0.0, &|s| s.success_rate),
            ),
            (
                "scalable: all, 10 min median session".into(),
                pick("scalable", 600.0, &|s| s.success_rate),
            ),
            (
                "classic (simulated sizes)".into(),
                rows.iter()
                    .filter(|r| r.mode == "classic" && r.source == "sim")
                    .map(|r| (r.s.nodes as f64, r.s.success_rate))
                    .collect(),
            ),
        ],
    )?;
    plot(
        &dir.join("maintenance.png"),
        "Maintenance traffic",
        "ping+pong datagrams per peer per second",
        true,
        &[
            (
                "classic (sim, then formula)".into(),
                pick("classic", 0.0, &|s| s.maintenance_msgs_per_peer_per_sec),
            ),
            (
                "scalable, no churn".into(),
                pick("scalable", 0.0, &|s| s.maintenance_msgs_per_peer_per_sec),
            ),
            (
                "scalable, 10 min median session".into(),
                pick("scalable", 600.0, &|s| s.maintenance_msgs_per_peer_per_sec),
            ),
        ],
    )?;
    plot(
        &dir.join("hops_to_first_hit.png"),
        "Hops to the first hit (median)",
        "overlay hops",
        false,
        &[
            (
                "scalable: files on >= 0.5% of peers".into(),
                pick("scalable", 0.0, &|s| s.popular.hops_to_first_hit_median),
            ),
            (
                "scalable: files on one peer".into(),
                pick("scalable", 0.0, &|s| s.unique.hops_to_first_hit_median),
            ),
        ],
    )?;
    plot(
        &dir.join("time_to_first_hit.png"),
        "Virtual time to the first hit (median)",
        "milliseconds",
        true,
        &[
            (
                "scalable: files on >= 0.5% of peers".into(),
                pick("scalable", 0.0, &|s| s.popular.time_to_first_hit_ms_median),
            ),
            (
                "scalable: files on one peer".into(),
                pick("scalable", 0.0, &|s| s.unique.time_to_first_hit_ms_median),
            ),
            (
                "classic (simulated sizes)".into(),
                rows.iter()
                    .filter(|r| r.mode == "classic" && r.source == "sim")
                    .map(|r| (r.s.nodes as f64, r.s.all.time_to_first_hit_ms_median))
                    .collect(),
            ),
        ],
    )?;
    tuning(dir, seed)?;
    Ok(())
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
        csv_row(&mut line, "scalable", "sim", 600.0, &s);
        let _ = write!(csv, "{param},{value},{line}");
    }
    write(&dir.join("tuning.csv"), &csv)
}
