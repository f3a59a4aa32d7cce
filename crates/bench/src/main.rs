//! `rutella-bench`: measures rutella as a user runs it, next to outside
//! baselines measured in the same run, alternating the contenders so that
//! machine noise hits them alike; prints a table and writes it into
//! `docs/PERFORMANCE.md`.
//!
//! Loopback only: every process and socket here is on 127.0.6.0/24.

use anyhow::{bail, Context, Result};
use clap::Parser;
use rutella_node::{Node, NodeConfig, PeerAddr};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod sources;
use sources::several_sources;

#[derive(Parser, Debug)]
#[command(about = "Benchmark rutella against socat and raw TCP on loopback")]
struct Args {
    /// The rutella binary to measure (build it with --release).
    #[arg(long, default_value = "target/release/rutella")]
    rutella: PathBuf,
    /// Size of the big file, in MiB.
    #[arg(long, default_value_t = 1000)]
    size_mib: u64,
    /// Runs of each contender (medians are reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Number of 1 KB files for the small-files test.
    #[arg(long, default_value_t = 1000)]
    small_files: usize,
    /// Nodes in the search-latency network.
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    /// Searches timed in the search-latency test.
    #[arg(long, default_value_t = 50)]
    searches: usize,
    /// Size of the file for the multi-source downloads, in MiB.
    #[arg(long, default_value_t = 100)]
    sources_size_mib: u64,
    /// Measure only the downloads by hash from 1, 2 and 3 sources.
    #[arg(long)]
    sources_only: bool,
    /// Another rutella binary (an earlier build, say) to measure in the
    /// downloads by hash from 1, 2 and 3 sources, alternated with
    /// `--rutella`.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Tiny sizes and one run: checks that the benchmark still works.
    #[arg(long)]
    smoke: bool,
    /// Write the table into this markdown file between the bench markers.
    #[arg(long)]
    write_doc: Option<PathBuf>,
    /// Folder for the files moved (default: /dev/shm when it exists, so that
    /// the figures measure the transfer rather than the disk's writeback;
    /// else the system's temporary folder).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 6, 2);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 6, 3);

fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.size_mib = args.size_mib.min(8);
        args.runs = 1;
        args.small_files = args.small_files.min(50);
        args.nodes = args.nodes.min(4);
        args.searches = args.searches.min(3);
        args.sources_size_mib = args.sources_size_mib.min(8);
    }
    if !args.rutella.exists() {
        bail!(
            "{} does not exist: build it first with cargo build --release",
            args.rutella.display()
        );
    }
    let work_dir = args.work_dir.clone().unwrap_or_else(|| {
        let shm = PathBuf::from("/dev/shm");
        if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        }
    });
    let tmp = tempfile::Builder::new()
        .prefix("rutella-bench")
        .tempdir_in(&work_dir)?;
    let mut report = String::new();
    let machine = machine();
    writeln!(
        report,
        "Machine: {machine}. Files read from and written to {}.",
        work_dir.display()
    )?;
    writeln!(
        report,
        "Command: `bench/run.sh` ({} runs of each contender, alternated; medians).",
        args.runs
    )?;
    writeln!(report)?;

    if !args.sources_only {
        let big = big_file(&args, tmp.path())?;
        report.push_str(&big);
    }
    let sources = several_sources(&args, tmp.path())?;
    report.push_str(&sources);
    if !args.sources_only {
        let small = small_files(&args, tmp.path())?;
        report.push_str(&small);
        let search = search_latency(&args, tmp.path())?;
        report.push_str(&search);
    }

    println!("{report}");
    if let Some(doc) = &args.write_doc {
        write_doc(doc, &report)?;
        eprintln!("wrote {}", doc.display());
    }
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or("?".into(), |kb| format!("{} GiB", kb / 1024 / 1024));
    format!("{cores} cores ({cpu}), {mem} memory, Linux loopback")
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn p95(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let idx = ((v.len() as f64) * 0.95).ceil() as usize;
    v[idx.clamp(1, v.len()) - 1]
}

/// Writes a file of `size` bytes of varied content, 1 MiB at a time.
fn make_file(path: &Path, size: u64) -> Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut left = size;
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(
    rutella: &Path,
    share: &Path,
    ip: Ipv4Addr,
    connect: Option<Ipv4Addr>,
    log: &Path,
) -> Result<Proc> {
    let mut cmd = Command::new(rutella);
    cmd.arg("serve")
        .arg("--share")
        .arg(share)
        .arg("--bind")
        .arg(ip.to_string())
        .args(["--ping-interval", "2s", "--pong-timeout", "1s"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?);
    if let Some(c) = connect {
        cmd.arg("--connect").arg(c.to_string());
    }
    let child = cmd.spawn().context("starting rutella serve")?;
    let p = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("node started") {
            return Ok(p);
        }
        if Instant::now() > deadline {
            bail!("rutella serve did not start:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Runs a command to completion, timing it; fails when it fails.
fn timed(cmd: &mut Command) -> Result<f64> {
    let start = Instant::now();
    let out = cmd.stdin(Stdio::null()).output()?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("{:?} failed: {}", cmd, String::from_utf8_lossy(&out.stderr));
    }
    Ok(secs)
}

fn big_file(args: &Args, tmp: &Path) -> Result<String> {
    let share = tmp.join("share");
    let out = tmp.join("out");
    std::fs::create_dir_all(&share)?;
    std::fs::create_dir_all(&out)?;
    let size = args.size_mib << 20;
    let file = share.join("big.bin");
    eprintln!("writing a {} MiB file", args.size_mib);
    make_file(&file, size)?;
    let server = serve(
        &args.rutella,
        &share,
        SERVER_IP,
        None,
        &tmp.join("serve-big.log"),
    )?;
    let idle_rss = {
        std::thread::sleep(Duration::from_millis(500));
        rss_kib(server.0.id())
    };
    // The hash, for the rutella protocol (when this rutella speaks it).
    let hash = hash_of(&file);
    let socat = which("socat");

    let mut classic = Vec::new();
    let mut by_hash = Vec::new();
    let mut raw = Vec::new();
    let mut serving_rss = 0u64;
    let mut hash_error = None;
    for run in 0..args.runs {
        eprintln!("big file: run {}/{}", run + 1, args.runs);
        // rutella get --from ADDR NAME (classic exchange).
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out)?;
        let pid = server.0.id();
        let sampler = std::thread::spawn(move || {
            let mut max = 0;
            let end = Instant::now() + Duration::from_secs(600);
            while Instant::now() < end {
                match rss_kib(pid) {
                    Some(r) => max = max.max(r),
                    None => break,
                }
                std::thread::sleep(Duration::from_millis(10));
                if STOP.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
            }
            max
        });
        let t = timed(
            Command::new(&args.rutella)
                .args(["get", "--from", &SERVER_IP.to_string(), "big.bin", "--out"])
                .arg(&out)
                .args(["--bind", &CLIENT_IP.to_string()]),
        )?;
        STOP.store(true, std::sync::atomic::Ordering::SeqCst);
        serving_rss = serving_rss.max(sampler.join().unwrap_or(0));
        STOP.store(false, std::sync::atomic::Ordering::SeqCst);
        check_size(&out.join("big.bin"), size)?;
        classic.push(size as f64 / t);

        // rutella get HASH --connect ADDR (rutella protocol, verified).
        if let Some(h) = &hash {
            let _ = std::fs::remove_dir_all(&out);
            std::fs::create_dir_all(&out)?;
            match timed(
                Command::new(&args.rutella)
                    .args(["get", h, "--connect", &SERVER_IP.to_string(), "--out"])
                    .arg(&out)
                    .args(["--bind", &CLIENT_IP.to_string()]),
            ) {
                Ok(t) => {
                    check_size(&out.join("big.bin"), size)?;
                    by_hash.push(size as f64 / t);
                }
                Err(e) => {
                    let first = e.to_string().lines().next().unwrap_or_default().to_string();
                    hash_error = Some(first);
                }
            }
        }

        // socat with 1 MiB buffers into a file.
        if socat {
            let _ = std::fs::remove_dir_all(&out);
            std::fs::create_dir_all(&out)?;
            let port = free_port(SERVER_IP)?;
            let _srv = Proc(
                Command::new("socat")
                    .args(["-b", "1048576", "-u"])
                    .arg(format!("FILE:{}", file.display()))
                    .arg(format!("TCP4-LISTEN:{port},bind={SERVER_IP},reuseaddr"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()?,
            );
            wait_listening(SocketAddrV4::new(SERVER_IP, port))?;
            let t = timed(
                Command::new("socat")
                    .args(["-b", "1048576", "-u"])
                    .arg(format!("TCP4:{SERVER_IP}:{port},bind={CLIENT_IP}"))
                    .arg(format!("CREATE:{}", out.join("big.bin").display())),
            )?;
            check_size(&out.join("big.bin"), size)?;
            raw.push(size as f64 / t);
        }
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_file(&file);

    let gb = |v: f64| v / 1e9;
    let mut s = String::new();
    writeln!(
        s,
        "### Download of a {} MiB file over loopback",
        args.size_mib
    )?;
    writeln!(s)?;
    writeln!(s, "Each timed as a whole command, as a user runs it (process start, join, transfer, file closed).")?;
    writeln!(s)?;
    writeln!(s, "| contender | median throughput | vs socat |")?;
    writeln!(s, "| --- | --- | --- |")?;
    let socat_med = if raw.is_empty() {
        f64::NAN
    } else {
        median(&mut raw.clone())
    };
    let row = |s: &mut String, name: &str, v: &mut Vec<f64>| -> Result<()> {
        if v.is_empty() {
            return Ok(());
        }
        let m = median(v);
        writeln!(s, "| {name} | {:.3} GB/s | {:.2} |", gb(m), m / socat_med)?;
        Ok(())
    };
    row(
        &mut s,
        "`socat -b 1048576` (raw TCP copy, baseline)",
        &mut raw,
    )?;
    row(
        &mut s,
        "`rutella get --from ADDR NAME` (classic exchange)",
        &mut classic,
    )?;
    row(
        &mut s,
        "`rutella get HASH --connect ADDR` (rutella protocol, BLAKE3-verified)",
        &mut by_hash,
    )?;
    if !socat {
        writeln!(
            s,
            "\nsocat is not installed: no baseline (bench/run.sh installs it)."
        )?;
    }
    if hash.is_none() || by_hash.is_empty() {
        writeln!(
            s,
            "\nDownload by hash not measured: {}.",
            hash_error.unwrap_or_else(|| "this rutella cannot fetch by hash".into())
        )?;
    }
    writeln!(s)?;
    writeln!(s, "### Memory of a node")?;
    writeln!(s)?;
    writeln!(s, "| state | resident memory |")?;
    writeln!(s, "| --- | --- |")?;
    if let Some(r) = idle_rss {
        writeln!(
            s,
            "| idle, sharing one file | {:.1} MiB |",
            r as f64 / 1024.0
        )?;
    }
    writeln!(
        s,
        "| serving the big file (peak) | {:.1} MiB |",
        serving_rss as f64 / 1024.0
    )?;
    writeln!(s)?;
    Ok(s)
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn check_size(path: &Path, size: u64) -> Result<()> {
    let got = std::fs::metadata(path)
        .with_context(|| format!("{}", path.display()))?
        .len();
    if got != size {
        bail!("{} has {got} bytes, expected {size}", path.display());
    }
    Ok(())
}

fn which(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The file's BLAKE3 hash in hex, as `b3sum` prints it.
fn hash_of(file: &Path) -> Option<String> {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(file).ok()?).ok()?;
    Some(h.finalize().to_hex().to_string())
}

fn free_port(ip: Ipv4Addr) -> Result<u16> {
    Ok(TcpListener::bind((ip, 0))?.local_addr()?.port())
}

fn wait_listening(addr: SocketAddrV4) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    // socat serves the first connection; probe by checking the port is bound.
    while Instant::now() < deadline {
        if TcpListener::bind(addr).is_err() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("socat did not listen on {addr}")
}

/// Many 1 KB files: rutella's classic exchange through the node's client
/// vs the same request/answer over raw TCP, both in this process.
fn small_files(args: &Args, tmp: &Path) -> Result<String> {
    let share = tmp.join("small");
    std::fs::create_dir_all(&share)?;
    let names: Vec<String> = (0..args.small_files)
        .map(|i| format!("small-{i:05}.dat"))
        .collect();
    for (i, n) in names.iter().enumerate() {
        let data: Vec<u8> = (0..1024u32).map(|j| (i as u32 * 31 + j) as u8).collect();
        std::fs::write(share.join(n), data)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let out_dir = tmp.join("small-out");
    let (rutella_times, raw_times) = rt.block_on(async {
        let mut cfg = NodeConfig {
            shares: vec![share.clone()],
            bind: SERVER_IP,
            udp_port: 0,
            tcp_port: 0,
            watch: false,
            ..NodeConfig::default()
        };
        cfg.overlay.ping_interval = Duration::from_secs(60);
        let server = Node::start(cfg).await?;
        let tcp = server.client().tcp_addr();
        let client_node = Node::start(NodeConfig {
            bind: CLIENT_IP,
            udp_port: 0,
            tcp_port: 0,
            downloads: Some(out_dir.clone()),
            watch: false,
            ..NodeConfig::default()
        })
        .await?;
        let client = client_node.client();
        let raw_server = RawServer::start(&share)?;
        let mut rutella_times = Vec::new();
        let mut raw_times = Vec::new();
        for run in 0..args.runs {
            eprintln!("small files: run {}/{}", run + 1, args.runs);
            let _ = std::fs::remove_dir_all(&out_dir);
            std::fs::create_dir_all(&out_dir)?;
            let start = Instant::now();
            for n in &names {
                client.download(tcp, n).wait().await?;
            }
            rutella_times.push(start.elapsed().as_secs_f64());

            let _ = std::fs::remove_dir_all(&out_dir);
            std::fs::create_dir_all(&out_dir)?;
            let start = Instant::now();
            for n in &names {
                raw_fetch(raw_server.addr, n, &out_dir)?;
            }
            raw_times.push(start.elapsed().as_secs_f64());
        }
        client_node.shutdown().await;
        server.shutdown().await;
        anyhow::Ok((rutella_times, raw_times))
    })?;
    let _ = std::fs::remove_dir_all(&out_dir);
    let (mut r, mut b) = (rutella_times, raw_times);
    let (rm, bm) = (median(&mut r), median(&mut b));
    let n = args.small_files as f64;
    let mut s = String::new();
    writeln!(
        s,
        "### {} files of 1 KB, one after the other",
        args.small_files
    )?;
    writeln!(s)?;
    writeln!(s, "| contender | median total | per file | vs raw |")?;
    writeln!(s, "| --- | --- | --- | --- |")?;
    writeln!(
        s,
        "| raw TCP (connect, name, 1 KB, write file) | {:.3} s | {:.0} µs | 1.00 |",
        bm,
        bm / n * 1e6
    )?;
    writeln!(
        s,
        "| rutella node client, classic exchange | {:.3} s | {:.0} µs | {:.2} |",
        rm,
        rm / n * 1e6,
        rm / bm
    )?;
    writeln!(s)?;
    Ok(s)
}

/// The smallest possible file server: reads a name, sends the file.
struct RawServer {
    addr: SocketAddrV4,
}

impl RawServer {
    fn start(dir: &Path) -> Result<RawServer> {
        let l = TcpListener::bind((SERVER_IP, 0))?;
        let addr = match l.local_addr()? {
            std::net::SocketAddr::V4(a) => a,
            _ => bail!("not IPv4"),
        };
        let dir = dir.to_path_buf();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { continue };
                let mut buf = [0u8; 256];
                let Ok(n) = c.read(&mut buf) else { continue };
                let name = String::from_utf8_lossy(&buf[..n]).to_string();
                if let Ok(data) = std::fs::read(dir.join(name.trim())) {
                    let _ = c.write_all(&data);
                }
            }
        });
        Ok(RawServer { addr })
    }
}

fn raw_fetch(addr: SocketAddrV4, name: &str, out: &Path) -> Result<()> {
    let mut c = TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    c.write_all(name.as_bytes())?;
    let mut data = Vec::with_capacity(1024);
    c.read_to_end(&mut data)?;
    std::fs::write(out.join(name), data)?;
    Ok(())
}

/// Search latency in a network of real `rutella serve` processes.
fn search_latency(args: &Args, tmp: &Path) -> Result<String> {
    let mut procs = Vec::new();
    let first = Ipv4Addr::new(127, 0, 6, 10);
    for i in 0..args.nodes {
        let ip = Ipv4Addr::new(127, 0, 6, 10 + i as u8);
        let share = tmp.join(format!("node-{i}"));
        std::fs::create_dir_all(&share)?;
        std::fs::write(share.join(format!("common song {i}.ogg")), b"x")?;
        std::fs::write(share.join(format!("unique-{i}.txt")), b"y")?;
        let connect = (i > 0).then_some(first);
        procs.push(serve(
            &args.rutella,
            &share,
            ip,
            connect,
            &tmp.join(format!("node-{i}.log")),
        )?);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (mut first_hits, mut last_hits) = rt.block_on(async {
        let node = Node::start(NodeConfig {
            bind: CLIENT_IP,
            udp_port: 0,
            tcp_port: 0,
            connect: vec![PeerAddr::classic(first)],
            watch: false,
            ..NodeConfig::default()
        })
        .await?;
        let client = node.client();
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.peers().await?.len() < args.nodes {
            if Instant::now() > deadline {
                bail!(
                    "only {} of {} nodes joined",
                    client.peers().await?.len(),
                    args.nodes
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut first_hits = Vec::new();
        let mut last_hits = Vec::new();
        for _ in 0..args.searches {
            let start = Instant::now();
            let mut stream = client.search("COMMON SONG").await?;
            let mut first = None;
            let mut answered = 0;
            while let Ok(Some(hit)) =
                tokio::time::timeout(Duration::from_secs(5), stream.next()).await
            {
                if !hit.files.is_empty() {
                    first.get_or_insert(start.elapsed());
                    answered += 1;
                }
                if answered == args.nodes {
                    break;
                }
            }
            let last = start.elapsed();
            if answered == args.nodes {
                first_hits.push(first.unwrap_or(last).as_secs_f64() * 1e3);
                last_hits.push(last.as_secs_f64() * 1e3);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        node.shutdown().await;
        anyhow::Ok((first_hits, last_hits))
    })?;
    drop(procs);
    let mut s = String::new();
    writeln!(
        s,
        "### Search latency, {} `rutella serve` processes on loopback",
        args.nodes
    )?;
    writeln!(s)?;
    writeln!(
        s,
        "{} searches for a file every node shares; {} got an answer from every node.",
        args.searches,
        first_hits.len()
    )?;
    writeln!(s)?;
    writeln!(s, "| | median | 95th percentile |")?;
    writeln!(s, "| --- | --- | --- |")?;
    writeln!(
        s,
        "| query to first hit | {:.2} ms | {:.2} ms |",
        median(&mut first_hits),
        p95(&mut first_hits)
    )?;
    writeln!(
        s,
        "| query to last hit | {:.2} ms | {:.2} ms |",
        median(&mut last_hits),
        p95(&mut last_hits)
    )?;
    writeln!(s)?;
    Ok(s)
}

const BEGIN: &str = "<!-- bench:begin -->";
const END: &str = "<!-- bench:end -->";

fn write_doc(path: &Path, table: &str) -> Result<()> {
    let doc = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (doc.find(BEGIN), doc.find(END)) {
        (Some(b), Some(e)) if b < e => format!("{}{BEGIN}\n{table}{}", &doc[..b], &doc[e..]),
        _ => format!("{doc}\n{BEGIN}\n{table}{END}\n"),
    };
    std::fs::write(path, new)?;
    Ok(())
}
