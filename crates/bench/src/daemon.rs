//! `rutella daemon` figures: the resident memory of an idle daemon with
//! its API on, and a global upload limit set through the API, shared by
//! three downloaders: the bytes they receive over 10 s against the limit.
//!
//! Loopback only: the daemon on 127.0.8.1 (its API on a free port there),
//! the downloaders on 127.0.8.2 to 127.0.8.4.

use crate::util::{make_file, rss_kib, Proc};
use crate::Args;
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DAEMON_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 8, 1);
/// The global upload limit, bytes per second.
const LIMIT: u64 = 10_000_000;
/// Downloaders at once.
const DOWNLOADERS: u8 = 3;
/// How long the idle daemon settles before its memory is read.
const IDLE: Duration = Duration::from_secs(5);

/// One HTTP/1.1 request to the API; returns the status and the body.
fn http(
    api: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(api)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status")?;
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Bytes of every file under `dir`.
fn bytes_in(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

pub(crate) fn daemon(args: &Args, dir: &Path) -> Result<String> {
    let root = dir.join("daemon");
    let share = root.join("share");
    let cfg = root.join("cfg");
    std::fs::create_dir_all(&share)?;
    std::fs::create_dir_all(&cfg)?;
    // Enough for the measured span at the limit, with room to spare.
    let secs = if args.smoke { 2 } else { 10 };
    let size = (LIMIT * (secs + 8)) / u64::from(DOWNLOADERS);
    make_file(&share.join("big.bin"), size)?;
    let log = root.join("daemon.log");
    let api_port = crate::util::free_port(DAEMON_IP)?;
    let mut cmd = Command::new(&args.rutella);
    cmd.env("RUTELLA_NO_DHT", "1")
        .env("RUTELLA_TEST_NO_PUBLIC", "1")
        .env("RUTELLA_CONFIG", cfg.join("config.toml"))
        .env("RUST_LOG", "info")
        .arg("daemon")
        .arg("--share")
        .arg(&share)
        .args([
            "--bind",
            &DAEMON_IP.to_string(),
            "--no-port-mapping",
            "--no-lan-discovery",
        ])
        .args(["--api-listen", &format!("{DAEMON_IP}:{api_port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    let d = Proc(cmd.spawn().context("starting rutella daemon")?);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cfg.join("api.json").exists() {
        if Instant::now() > deadline {
            bail!(
                "rutella daemon did not start:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let token = std::fs::read_to_string(cfg.join("api-token"))?
        .trim()
        .to_string();
    let api = SocketAddr::from((DAEMON_IP, api_port));
    let (st, _) = http(api, &token, "GET", "/api/v1/status", "")?;
    if st != 200 {
        bail!("GET /api/v1/status answered {st}");
    }
    std::thread::sleep(IDLE);
    let idle_kib = rss_kib(d.0.id()).context("no RSS")?;
    eprintln!("daemon: idle RSS {idle_kib} KiB");

    let (st, body) = http(
        api,
        &token,
        "PATCH",
        "/api/v1/settings",
        &format!("{{\"upload_limit_bps\": {LIMIT}}}"),
    )?;
    if st != 200 {
        bail!("PATCH /api/v1/settings answered {st}: {body}");
    }
    let mut outs: Vec<PathBuf> = Vec::new();
    let mut getters = Vec::new();
    for k in 0..DOWNLOADERS {
        let out = root.join(format!("out{k}"));
        std::fs::create_dir_all(&out)?;
        let ip = Ipv4Addr::new(127, 0, 8, 2 + k);
        let child = Command::new(&args.rutella)
            .env("RUTELLA_NO_DHT", "1")
            .env("RUTELLA_TEST_NO_PUBLIC", "1")
            .env("RUTELLA_CONFIG", root.join(format!("none{k}.toml")))
            .args([
                "get",
                "--from",
                &DAEMON_IP.to_string(),
                "big.bin",
                "--bind",
                &ip.to_string(),
            ])
            .arg("--no-lan-discovery")
            .arg("--out")
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        getters.push(Proc(child));
        outs.push(out);
    }
    // Measured once every downloader is moving.
    let start_deadline = Instant::now() + Duration::from_secs(30);
    while outs.iter().any(|o| bytes_in(o) == 0) {
        if Instant::now() > start_deadline {
            bail!("the downloaders did not start");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_secs(1));
    let t0 = Instant::now();
    let b0: u64 = outs.iter().map(|o| bytes_in(o)).sum();
    std::thread::sleep(Duration::from_secs(secs));
    let b1: u64 = outs.iter().map(|o| bytes_in(o)).sum();
    let span = t0.elapsed().as_secs_f64();
    let each: Vec<u64> = outs.iter().map(|o| bytes_in(o)).collect();
    drop(getters);
    drop(d);
    let rate = (b1 - b0) as f64 / span;
    let off = (rate / LIMIT as f64 - 1.0) * 100.0;
    eprintln!("daemon: {rate:.0} B/s summed over {span:.2} s ({off:+.1}% of the limit)");

    let mut out = String::new();
    writeln!(
        out,
        "### `rutella daemon`: idle memory and a global upload limit"
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "Idle daemon with its API on (one share of one file, no peers), {} s after start: \
         RSS {:.1} MiB.",
        IDLE.as_secs(),
        idle_kib as f64 / 1024.0
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "Global upload limit {} MB/s set through `PATCH /api/v1/settings`, {DOWNLOADERS} \
         `rutella get` downloading the same file at once: bytes received by all of them over \
         {span:.1} s, {:.2} MB/s summed, {off:+.1}% of the limit (bytes on disk at the end: {}).",
        LIMIT / 1_000_000,
        rate / 1e6,
        each.iter()
            .map(|b| format!("{:.1} MB", *b as f64 / 1e6))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    writeln!(out)?;
    Ok(out)
}
