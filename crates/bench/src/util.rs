//! Helpers shared by the measurements: statistics, test files, and
//! `rutella serve` processes.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn machine() -> String {
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

pub(crate) fn median(v: &mut [f64]) -> f64 {
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

pub(crate) fn p95(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let idx = ((v.len() as f64) * 0.95).ceil() as usize;
    v[idx.clamp(1, v.len()) - 1]
}

/// Writes a file of `size` bytes of varied content, 1 MiB at a time.
pub(crate) fn make_file(path: &Path, size: u64) -> Result<()> {
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

/// A child process, killed when dropped.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn serve(
    rutella: &Path,
    share: &Path,
    ip: Ipv4Addr,
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

pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Runs a command to completion, timing it; fails when it fails.
pub(crate) fn timed(cmd: &mut Command) -> Result<f64> {
    let start = Instant::now();
    let out = cmd.stdin(Stdio::null()).output()?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("{:?} failed: {}", cmd, String::from_utf8_lossy(&out.stderr));
    }
    Ok(secs)
}

pub(crate) fn check_size(path: &Path, size: u64) -> Result<()> {
    let got = std::fs::metadata(path)
        .with_context(|| format!("{}", path.display()))?
        .len();
    if got != size {
        bail!("{} has {got} bytes, expected {size}", path.display());
    }
    Ok(())
}

pub(crate) fn which(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The file's BLAKE3 hash in hex, as `b3sum` prints it.
pub(crate) fn hash_of(file: &Path) -> Option<String> {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(file).ok()?).ok()?;
    Some(h.finalize().to_hex().to_string())
}

pub(crate) fn free_port(ip: Ipv4Addr) -> Result<u16> {
    Ok(TcpListener::bind((ip, 0))?.local_addr()?.port())
}

pub(crate) fn wait_listening(addr: SocketAddrV4) -> Result<()> {
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
