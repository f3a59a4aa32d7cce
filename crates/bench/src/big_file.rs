//! Download of one big file: rutella's classic exchange and download by
//! hash next to a raw TCP copy (socat), and the memory of the serving node.

use anyhow::Result;
use std::fmt::Write as _;
use std::net::SocketAddrV4;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{
    check_size, free_port, hash_of, make_file, median, rss_kib, serve, timed, wait_listening,
    which, Proc,
};
use crate::{Args, CLIENT_IP, SERVER_IP};

pub(crate) fn big_file(args: &Args, tmp: &Path) -> Result<String> {
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
                .env("RUTELLA_NO_DHT", "1")
                .env("RUTELLA_TEST_NO_PUBLIC", "1")
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
                    .env("RUTELLA_NO_DHT", "1")
                    .env("RUTELLA_TEST_NO_PUBLIC", "1")
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
