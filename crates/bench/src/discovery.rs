//! Time to the first peer for nodes given no address: (a) through a local
//! DHT (a `mainline::Testnet` on 127.0.0.1 and `rutella serve` processes
//! on 127.0.7.0/24 that bootstrap from it), (b) through LAN discovery,
//! between two network namespaces on the lab's bridge (root only).
//!
//! The public DHT is never contacted: the bootstrap nodes are the local
//! testnet's, and `RUTELLA_TEST_NO_PUBLIC=1` makes the node refuse any
//! that is not on loopback.

use crate::util::{median, Proc};
use crate::Args;
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `rutella serve` processes in each DHT run.
const DHT_NODES: usize = 3;
/// DHT nodes in the local testnet.
const TESTNET: usize = 5;
/// The longest any node may take to find its first peer.
const LIMIT: Duration = Duration::from_secs(20);
/// The overlay's log line for a peer that answered a ping.
const JOINED: &str = "peer joined";

pub(crate) fn discovery(args: &Args, dir: &Path) -> Result<String> {
    let mut out = String::new();
    writeln!(out, "### Time to the first peer, with no address given")?;
    writeln!(out)?;
    let (mut firsts, mut lasts) = (Vec::new(), Vec::new());
    for run in 0..args.discovery_runs {
        let times = dht_run(&args.rutella, &dir.join(format!("dht-{run}")))?;
        eprintln!(
            "discovery: DHT run {run}: {}",
            times
                .iter()
                .map(|t| format!("{:.0} ms", t * 1000.0))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut t = times;
        firsts.push(median(&mut t));
        lasts.push(t.iter().copied().fold(0.0, f64::max));
    }
    let per_run = firsts
        .iter()
        .map(|t| format!("{:.0}", t * 1000.0))
        .collect::<Vec<_>>()
        .join(", ");
    writeln!(
        out,
        "Through a local DHT ({TESTNET} `mainline` nodes on 127.0.0.1; {DHT_NODES} `rutella serve` \
         with no `--connect`, `--dht-interval 100ms` so a 100 ms DHT request timeout; \
         {}): from each process's spawn to its first `{JOINED}` line, median over \
         the nodes of a run {:.0} ms (median of runs; each run: {per_run} ms), slowest \
         node of a run {:.0} ms (median of runs).",
        runs(args.discovery_runs),
        median(&mut firsts) * 1000.0,
        median(&mut lasts) * 1000.0
    )?;
    writeln!(out)?;
    match lan_runs(&args.rutella, args.discovery_runs) {
        Ok(mut times) => {
            let n = times.len();
            let all = times
                .iter()
                .map(|t| format!("{:.1}", t * 1000.0))
                .collect::<Vec<_>>()
                .join(", ");
            writeln!(
                out,
                "Through the LAN (two namespaces on the lab's bridge, {}): from the \
                 second node's `node started` to its `{JOINED}` line, median {:.1} ms \
                 (all: {all} ms).",
                runs(n),
                median(&mut times) * 1000.0
            )?;
        }
        Err(why) => {
            eprintln!("discovery: LAN skipped: {why:#}");
            writeln!(out, "Through the LAN: skipped: {why:#}.")?;
        }
    }
    writeln!(out)?;
    Ok(out)
}

fn runs(n: usize) -> String {
    if n == 1 {
        "1 run".into()
    } else {
        format!("{n} runs")
    }
}

/// One run: a fresh testnet and [`DHT_NODES`] nodes; the seconds from each
/// node's spawn to its first peer.
fn dht_run(rutella: &Path, dir: &Path) -> Result<Vec<f64>> {
    std::fs::create_dir_all(dir)?;
    let testnet = mainline::Testnet::builder(TESTNET)
        .bind_address(Ipv4Addr::LOCALHOST)
        .build()
        .context("starting the local DHT testnet")?;
    let mut procs = Vec::new();
    let mut started = Vec::new();
    let mut logs = Vec::new();
    for i in 0..DHT_NODES {
        let ip = Ipv4Addr::new(127, 0, 7, 10 + i as u8);
        let share = dir.join(format!("share-{i}"));
        std::fs::create_dir_all(&share)?;
        let log = dir.join(format!("node-{i}.log"));
        let mut cmd = Command::new(rutella);
        cmd.env("RUTELLA_NO_DHT", "0")
            .env("RUTELLA_TEST_NO_PUBLIC", "1")
            .env("RUTELLA_CONFIG", dir.join("no-such-settings.toml"))
            .env("RUST_LOG", "info")
            .arg("serve")
            .arg("--share")
            .arg(&share)
            .arg("--bind")
            .arg(ip.to_string())
            .args(["--no-port-mapping", "--no-lan-discovery"])
            .args(["--ping-interval", "2s", "--pong-timeout", "1s"])
            .args(["--dht-interval", "100ms"]);
        for b in &testnet.bootstrap {
            cmd.arg("--dht-bootstrap").arg(b);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        started.push(Instant::now());
        procs.push(Proc(cmd.spawn().context("starting rutella serve")?));
        logs.push(log);
    }
    let mut times = vec![None; DHT_NODES];
    let deadline = Instant::now() + LIMIT;
    while times.iter().any(Option::is_none) {
        for (i, log) in logs.iter().enumerate() {
            if times[i].is_none()
                && std::fs::read_to_string(log)
                    .unwrap_or_default()
                    .contains(JOINED)
            {
                times[i] = Some(started[i].elapsed().as_secs_f64());
            }
        }
        if Instant::now() > deadline {
            let text = std::fs::read_to_string(&logs[0]).unwrap_or_default();
            bail!("no peer through the DHT within {LIMIT:?}; first node's log:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(procs);
    drop(testnet);
    Ok(times.into_iter().flatten().collect())
}

/// `runs` runs, each in a fresh lab: seconds from the second node's
/// `node started` to its `peer joined`, from the log's own time stamps.
fn lan_runs(rutella: &Path, runs: usize) -> Result<Vec<f64>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("needs root (network namespaces)");
    }
    let mut times = Vec::new();
    for _ in 0..runs {
        let mut lab = rutella_lab::Lab::new()
            .map_err(|e| anyhow::anyhow!("cannot build the network lab: {e}"))?;
        let a = lab
            .public_host("a", 2)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let b = lab
            .public_host("b", 3)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let (_pa, log_a) = lan_serve(&lab, &a, rutella, "a")?;
        wait_log(&log_a, "node started")?;
        let (_pb, log_b) = lan_serve(&lab, &b, rutella, "b")?;
        wait_log(&log_b, JOINED)?;
        let t = stamp(&log_b, JOINED)? - stamp(&log_b, "node started")?;
        eprintln!("discovery: LAN run: {:.1} ms", t * 1000.0);
        times.push(t);
    }
    Ok(times)
}

fn lan_serve(
    lab: &rutella_lab::Lab,
    host: &rutella_lab::Host,
    rutella: &Path,
    name: &str,
) -> Result<(Proc, PathBuf)> {
    let share = lab.dir().join(format!("share-{name}"));
    std::fs::create_dir_all(&share)?;
    let log = lab.dir().join(format!("{name}.log"));
    let mut cmd = Command::new(rutella);
    cmd.env("RUTELLA_NO_DHT", "1")
        .env("RUTELLA_TEST_NO_PUBLIC", "1")
        .env("RUTELLA_CONFIG", lab.dir().join("no-such-settings.toml"))
        .env("RUST_LOG", "info")
        .arg("serve")
        .arg("--no-port-mapping")
        .arg("--share")
        .arg(&share)
        .args(["--ping-interval", "300ms", "--pong-timeout", "150ms"]);
    let child = lab
        .wrap(host, &cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting rutella serve in the lab")?;
    Ok((Proc(child), log))
}

fn wait_log(log: &Path, needle: &str) -> Result<()> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no {needle:?} within {LIMIT:?}:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The time of day (seconds, UTC) of the first log line with `needle`.
fn stamp(log: &Path, needle: &str) -> Result<f64> {
    let text = std::fs::read_to_string(log)?;
    let line = text
        .lines()
        .find(|l| l.contains(needle))
        .with_context(|| format!("no {needle:?} in {}", log.display()))?;
    let t = line
        .split('T')
        .nth(1)
        .and_then(|t| t.split('Z').next())
        .with_context(|| format!("no time stamp in {line:?}"))?;
    let mut secs = 0.0;
    for part in t.split(':') {
        secs = secs * 60.0 + part.parse::<f64>().context("time stamp")?;
    }
    Ok(secs)
}
