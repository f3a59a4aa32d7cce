//! `rutella-flood`: a `rutella serve` process, joined to two others, under
//! a flood of datagrams from one address while searches from another
//! address run; the same searches without the flood for comparison.
//! Prints how many searches were answered, the flood rate reached, and the
//! node's peak memory and CPU time.
//!
//! Loopback only: every process and socket here is on 127.0.60.0/24.

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Flood a rutella node with datagrams from one loopback address")]
struct Args {
    /// The rutella binary to measure (build it with --release).
    #[arg(long, default_value = "target/release/rutella")]
    rutella: PathBuf,
    /// Length of the flood, in seconds.
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// Datagrams per second the flood aims at.
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// Threads sending the flood (all from the same address).
    #[arg(long, default_value_t = 1)]
    threads: u64,
    /// What the flood sends: mixed (pings, queries, junk in turn), ping,
    /// query or junk.
    #[arg(long, default_value = "mixed")]
    kind: String,
    /// Searches in each phase (spread evenly over the flood).
    #[arg(long, default_value_t = 10)]
    searches: u64,
    /// How long a search waits for its answer, in milliseconds (the
    /// classic search time is 5 s).
    #[arg(long, default_value_t = 5000)]
    search_timeout_ms: u64,
    /// Empty files shared by the flooded node besides the one searched for.
    #[arg(long, default_value_t = 1000)]
    files: usize,
    /// Write the report into this markdown file between the flood markers.
    #[arg(long)]
    write_doc: Option<PathBuf>,
}

const NET: [u8; 3] = [127, 0, 60];
fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(NET[0], NET[1], NET[2], last)
}
const TARGET: u8 = 10;
const SEARCHER: u8 = 20;
const FLOODER: u8 = 30;

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
    at: Ipv4Addr,
    connect: Option<Ipv4Addr>,
    log: &Path,
) -> Result<Proc> {
    let mut cmd = Command::new(rutella);
    cmd.env("RUTELLA_NO_DHT", "1")
        .env("RUTELLA_TEST_NO_PUBLIC", "1");
    cmd.arg("serve")
        .arg("--share")
        .arg(share)
        .arg("--bind")
        .arg(at.to_string())
        .args(["--ping-interval", "2s", "--pong-timeout", "1s"])
        .env("RUST_LOG", "info")
        .env("RUTELLA_CONFIG", share.join("no-such-settings.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?);
    if let Some(c) = connect {
        cmd.arg("--connect").arg(c.to_string());
    }
    let p = Proc(cmd.spawn().context("starting rutella serve")?);
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

/// A field of /proc/PID/status, in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// User plus system CPU time of a process, in seconds.
fn cpu_secs(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    Some(ticks as f64 / 100.0)
}

/// Waits for the node's log to show `n` peers joined.
fn wait_joined(log: &Path, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches("peer joined").count() >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the flooded node did not see {n} peers join:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn flood_datagrams(kind: &str, port: u16) -> Result<Vec<Vec<u8>>> {
    let from = ip(FLOODER);
    let ping =
        format!(r#"{{"Command": 1, "IP": "{from}", "TTL": 1, "TcpPort": 1, "UdpPort": {port}}}"#);
    let query = format!(
        r#"{{"Command": 3, "Contents": "e", "IP": "{from}", "Id": 1, "TcpPort": 1, "UdpPort": {port}}}"#
    );
    let junk = r#"{"Command": 9, "junk": [1, 2, 3]}"#.to_string();
    Ok(match kind {
        "mixed" => vec![ping, query, junk],
        "ping" => vec![ping],
        "query" => vec![query],
        "junk" => vec![junk],
        other => bail!("unknown flood kind {other:?}: mixed, ping, query or junk"),
    }
    .into_iter()
    .map(String::into_bytes)
    .collect())
}

/// One sending thread, paced to `rate` datagrams a second, for `length`.
fn flood_thread(
    sock: UdpSocket,
    datagrams: Vec<Vec<u8>>,
    rate: u64,
    length: Duration,
    sent: Arc<AtomicU64>,
) -> std::thread::JoinHandle<f64> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut n: u64 = 0;
        while start.elapsed() < length {
            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            if n >= due {
                std::thread::sleep(Duration::from_micros(100));
                continue;
            }
            for _ in 0..(due - n).min(1000) {
                // A full socket buffer on the way is the flood's problem.
                let _ = sock.send(&datagrams[(n % datagrams.len() as u64) as usize]);
                n += 1;
            }
            sent.store(n, Ordering::Relaxed);
        }
        sent.store(n, Ordering::Relaxed);
        start.elapsed().as_secs_f64()
    })
}

struct Phase {
    answered: u64,
    latencies_ms: Vec<f64>,
}

/// Runs `count` searches for "needle", one every `every`, each waiting at
/// most `timeout` for its answer.
fn searches(
    target: SocketAddrV4,
    count: u64,
    every: Duration,
    timeout: Duration,
    first_id: u64,
) -> Result<Phase> {
    let sock = UdpSocket::bind((ip(SEARCHER), 0))?;
    let port = sock.local_addr()?.port();
    let mut buf = vec![0u8; 65_536];
    let mut phase = Phase {
        answered: 0,
        latencies_ms: Vec::new(),
    };
    let start = Instant::now();
    for k in 0..count {
        let slot = start + every * k as u32;
        std::thread::sleep(slot.saturating_duration_since(Instant::now()));
        let id = first_id + k;
        let q = format!(
            r#"{{"Command": 3, "Contents": "needle", "IP": "{}", "Id": {id}, "TcpPort": 1, "UdpPort": {port}}}"#,
            ip(SEARCHER)
        );
        // A peer reads its socket all the time; this one only while it
        // waits for an answer, so it first discards what came meanwhile
        // (the flooded node forwards the flood's pings to its peers), lest
        // a full buffer make the kernel drop the answer.
        drain(&sock, &mut buf)?;
        let t = Instant::now();
        sock.send_to(q.as_bytes(), target)?;
        let deadline = t + timeout;
        let want = format!(r#""Id": {id}"#);
        while Instant::now() < deadline {
            sock.set_read_timeout(Some(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ))?;
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            answer_ping(&sock, &buf[..n], from)?;
            let text = String::from_utf8_lossy(&buf[..n]);
            if text.contains(&want) && text.contains("needle") {
                phase.answered += 1;
                phase.latencies_ms.push(t.elapsed().as_secs_f64() * 1e3);
                break;
            }
        }
    }
    Ok(phase)
}

/// Answers a ping as a peer does (a pong from the same address, echoing
/// its nonce): a node answers a stranger's queries only once it has.
fn answer_ping(sock: &UdpSocket, datagram: &[u8], from: std::net::SocketAddr) -> Result<()> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(datagram) else {
        return Ok(());
    };
    if v["Command"] != 1 {
        return Ok(());
    }
    let me = sock.local_addr()?;
    let mut pong = serde_json::json!({"Command": 2, "IP": me.ip().to_string(),
        "TcpPort": 1, "UdpPort": me.port()});
    if let Some(n) = v.get("Nonce") {
        pong["Echo"] = n.clone();
    }
    sock.send_to(pong.to_string().as_bytes(), from)?;
    Ok(())
}

/// Discards every datagram waiting on `sock`, answering pings.
fn drain(sock: &UdpSocket, buf: &mut [u8]) -> Result<()> {
    sock.set_nonblocking(true)?;
    while let Ok((n, from)) = sock.recv_from(buf) {
        answer_ping(sock, &buf[..n], from)?;
    }
    sock.set_nonblocking(false)?;
    Ok(())
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

fn ms(v: Option<f64>) -> String {
    v.map_or("–".into(), |m| format!("{m:.1} ms"))
}

/// Stops a `rutella serve` process as a user would (SIGTERM), waiting at
/// most 10 s, then kills it.
fn terminate(mut p: Proc) {
    let _ = Command::new("kill")
        .args(["-TERM", &p.0.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = p.0.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `key=N` from the line the node logs when it stops, with what it
/// dropped over budget since it started.
fn dropped_at_stop(log: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text
        .lines()
        .find(|l| l.contains("dropped since start for being over their sources' budgets"))?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))?
        .parse()
        .ok()
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !args.rutella.exists() {
        bail!(
            "{} does not exist: build it first with cargo build --release",
            args.rutella.display()
        );
    }
    let tmp = tempfile::Builder::new().prefix("rutella-flood").tempdir()?;
    let share = tmp.path().join("target-share");
    std::fs::create_dir_all(&share)?;
    std::fs::write(share.join("the needle.txt"), b"found")?;
    for i in 0..args.files {
        std::fs::File::create(share.join(format!("hay {i:05}.txt")))?;
    }
    let log = tmp.path().join("target.log");
    let target = serve(&args.rutella, &share, ip(TARGET), None, &log)?;
    let mut others = Vec::new();
    for i in 1..=2u8 {
        let s = tmp.path().join(format!("peer-{i}"));
        std::fs::create_dir_all(&s)?;
        std::fs::write(s.join(format!("peer file {i}.txt")), b"p")?;
        others.push(serve(
            &args.rutella,
            &s,
            ip(TARGET + i),
            Some(ip(TARGET)),
            &tmp.path().join(format!("peer-{i}.log")),
        )?);
    }
    wait_joined(&log, 2)?;
    let pid = target.0.id();
    let to = SocketAddrV4::new(ip(TARGET), rutella_proto::CLASSIC_UDP_PORT);
    let timeout = Duration::from_millis(args.search_timeout_ms);
    let every = Duration::from_secs(args.secs) / args.searches.max(1) as u32;

    // Without the flood.
    let cpu0 = cpu_secs(pid).unwrap_or(0.0);
    let mut quiet = searches(
        to,
        args.searches,
        every.min(Duration::from_millis(200)),
        timeout,
        1_000,
    )?;
    let quiet_hwm = status_kib(pid, "VmHWM:").unwrap_or(0);
    let quiet_cpu = cpu_secs(pid).unwrap_or(0.0) - cpu0;

    // With the flood.
    let length = Duration::from_secs(args.secs);
    let mut senders = Vec::new();
    let mut counts = Vec::new();
    for _ in 0..args.threads.max(1) {
        let sock = UdpSocket::bind((ip(FLOODER), 0))?;
        let port = sock.local_addr()?.port();
        sock.connect(to)?;
        let sent = Arc::new(AtomicU64::new(0));
        senders.push(flood_thread(
            sock,
            flood_datagrams(&args.kind, port)?,
            args.rate / args.threads.max(1),
            length,
            sent.clone(),
        ));
        counts.push(sent);
    }
    let cpu1 = cpu_secs(pid).unwrap_or(0.0);
    // The first search a little after the flood starts.
    std::thread::sleep(every / 2);
    let mut flooded = searches(to, args.searches, every, timeout, 2_000)?;
    // The flood runs its full length (the senders stop by themselves).
    let mut flood_secs: f64 = 0.0;
    for s in senders {
        flood_secs = flood_secs.max(s.join().unwrap_or(0.0));
    }
    let flood_cpu = cpu_secs(pid).unwrap_or(0.0) - cpu1;
    let sent: u64 = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    let hwm = status_kib(pid, "VmHWM:").unwrap_or(0);
    let alive = status_kib(pid, "VmRSS:").is_some();
    drop(others);
    terminate(target);
    let dropped = ["datagrams", "pings", "queries"]
        .map(|k| dropped_at_stop(&log, k).map_or("–".to_string(), |n| n.to_string()));

    let mut r = String::new();
    writeln!(
        r,
        "### Flood from one address against a `rutella serve` joined to two others"
    )?;
    writeln!(r)?;
    writeln!(
        r,
        "Command: `bench/flood.sh --secs {} --rate {} --threads {} --kind {}` (the flooded node shares {} files).",
        args.secs, args.rate, args.threads, args.kind, args.files + 1
    )?;
    writeln!(r)?;
    writeln!(r, "| | searches answered | median answer time | flood reached | node CPU | node peak RSS (VmHWM) |")?;
    writeln!(r, "| --- | --- | --- | --- | --- | --- |")?;
    writeln!(
        r,
        "| no flood | {}/{} | {} | – | {:.2} s | {:.1} MiB |",
        quiet.answered,
        args.searches,
        ms(median(&mut quiet.latencies_ms)),
        quiet_cpu,
        quiet_hwm as f64 / 1024.0
    )?;
    writeln!(
        r,
        "| flood, {:.0} s | {}/{} | {} | {:.0} datagrams/s ({} sent) | {:.2} s | {:.1} MiB |",
        flood_secs,
        flooded.answered,
        args.searches,
        ms(median(&mut flooded.latencies_ms)),
        sent as f64 / flood_secs,
        sent,
        flood_cpu,
        hwm as f64 / 1024.0
    )?;
    writeln!(r)?;
    writeln!(
        r,
        "The node was {} at the end of the flood; it dropped {} datagrams unparsed, {} pings and {} queries over their source's budget (as it logs when it stops).",
        if alive { "still running" } else { "gone" },
        dropped[0],
        dropped[1],
        dropped[2]
    )?;
    println!("{r}");
    if let Some(doc) = &args.write_doc {
        write_doc(doc, &r)?;
        eprintln!("wrote {}", doc.display());
    }
    Ok(())
}

const BEGIN: &str = "<!-- flood:begin -->";
const END: &str = "<!-- flood:end -->";

fn write_doc(path: &Path, table: &str) -> Result<()> {
    let doc = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (doc.find(BEGIN), doc.find(END)) {
        (Some(b), Some(e)) if b < e => format!("{}{BEGIN}\n{table}{}", &doc[..b], &doc[e..]),
        _ => format!("{doc}\n{BEGIN}\n{table}{END}\n"),
    };
    std::fs::write(path, new)?;
    Ok(())
}
