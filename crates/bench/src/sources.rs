//! Downloads by hash from several sources: throughput and bytes received.

use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{check_size, hash_of, make_file, median, serve};
use crate::{Args, CLIENT_IP, SERVER_IP};

/// Addresses of the extra sources of [`several_sources`].
const MORE_SERVER_IPS: [Ipv4Addr; 2] = [Ipv4Addr::new(127, 0, 6, 4), Ipv4Addr::new(127, 0, 6, 5)];

/// Downloads by hash of one file from 1, 2 and 3 sources at once: the
/// throughput of the whole command and the bytes it received (as its JSON
/// report gives them), next to the file's size.
pub(crate) fn several_sources(args: &Args, tmp: &Path) -> Result<String> {
    let share = tmp.join("share-sources");
    let out = tmp.join("out-sources");
    std::fs::create_dir_all(&share)?;
    let size = args.sources_size_mib << 20;
    let file = share.join("sources.bin");
    eprintln!("writing a {} MiB file", args.sources_size_mib);
    make_file(&file, size)?;
    let hash = hash_of(&file).context("hashing the file")?;
    let ips = [SERVER_IP, MORE_SERVER_IPS[0], MORE_SERVER_IPS[1]];
    let mut servers = Vec::new();
    for (k, ip) in ips.iter().enumerate() {
        let log = tmp.join(format!("serve-sources-{k}.log"));
        servers.push(serve(&args.rutella, &share, *ip, None, &log)?);
    }
    // Each server hashes its share after it starts: wait until every one
    // offers the file (one untimed download from each, a bounded number of
    // tries).
    for ip in &ips {
        let mut tries = 0;
        loop {
            let _ = std::fs::remove_dir_all(&out);
            std::fs::create_dir_all(&out)?;
            let ok = Command::new(&args.rutella)
                .env("RUTELLA_NO_DHT", "1")
                .env("RUTELLA_TEST_NO_PUBLIC", "1")
                .args(["get", &hash, "--connect", &ip.to_string(), "--out"])
                .arg(&out)
                .args(["--bind", &CLIENT_IP.to_string(), "--wait", "1"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?
                .success();
            if ok {
                break;
            }
            tries += 1;
            if tries >= 60 {
                bail!("the server on {ip} never offered the file");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let mut contenders = vec![("this build", args.rutella.clone())];
    if let Some(c) = &args.compare {
        contenders.push(("compared build", c.clone()));
    }
    // (contender, sources) -> (throughputs, bytes received)
    let mut figures: Vec<Vec<(Vec<f64>, Vec<u64>)>> =
        vec![vec![(Vec::new(), Vec::new()); ips.len()]; contenders.len()];
    for run in 0..args.runs {
        eprintln!("several sources: run {}/{}", run + 1, args.runs);
        for n in 1..=ips.len() {
            // Alternate which contender goes first.
            let mut order: Vec<usize> = (0..contenders.len()).collect();
            if run % 2 == 1 {
                order.reverse();
            }
            for c in order {
                let _ = std::fs::remove_dir_all(&out);
                std::fs::create_dir_all(&out)?;
                let mut cmd = Command::new(&contenders[c].1);
                cmd.env("RUTELLA_NO_DHT", "1")
                    .env("RUTELLA_TEST_NO_PUBLIC", "1");
                cmd.args(["get", &hash]);
                for ip in &ips[..n] {
                    cmd.arg("--connect").arg(ip.to_string());
                }
                cmd.arg("--out")
                    .arg(&out)
                    .args(["--bind", &CLIENT_IP.to_string(), "--json"])
                    .stdin(Stdio::null());
                let start = Instant::now();
                let output = cmd.output()?;
                let secs = start.elapsed().as_secs_f64();
                if !output.status.success() {
                    bail!(
                        "{:?} failed: {}",
                        cmd,
                        String::from_utf8_lossy(&output.stderr)
                    );
                }
                check_size(&out.join("sources.bin"), size)?;
                let report: serde_json::Value = serde_json::from_slice(&output.stdout)
                    .context("reading the JSON report of rutella get")?;
                let received = report["received"]
                    .as_u64()
                    .context("no \"received\" in the JSON report")?;
                let used = report["sources"].as_array().map_or(0, |s| {
                    s.iter()
                        .filter(|s| s["verified"].as_u64() > Some(0))
                        .count()
                });
                eprintln!(
                    "  {} from {n} ({used} delivered): {:.3} s, received {received} for {size}",
                    contenders[c].0, secs
                );
                figures[c][n - 1].0.push(size as f64 / secs);
                figures[c][n - 1].1.push(received);
            }
        }
    }
    drop(servers);
    let mut s = String::new();
    writeln!(
        s,
        "### Download by hash of a {} MiB file from 1, 2 and 3 sources",
        args.sources_size_mib
    )?;
    writeln!(s)?;
    writeln!(
        s,
        "`rutella get HASH --connect A [--connect B [--connect C]] --json`, each source a \
         `rutella serve` of its own on loopback; throughput of the whole command; bytes \
         received as the report gives them (file size {size}). Medians; the largest bytes \
         received of all runs in brackets."
    )?;
    writeln!(s)?;
    writeln!(
        s,
        "| build | sources | median throughput | bytes received (max) | over the file size |"
    )?;
    writeln!(s, "| --- | --- | --- | --- | --- |")?;
    for ((name, _), per_count) in contenders.iter().zip(figures.iter_mut()) {
        for (n, (speeds, received)) in per_count.iter_mut().enumerate() {
            if speeds.is_empty() {
                continue;
            }
            let m = median(speeds);
            let mut r: Vec<f64> = received.iter().map(|&b| b as f64).collect();
            let rm = median(&mut r);
            let max = received.iter().copied().max().unwrap_or(0);
            writeln!(
                s,
                "| {name} | {} | {:.3} GB/s | {:.0} ({max}) | {:+.2}% ({:+.2}%) |",
                n + 1,
                m / 1e9,
                rm,
                (rm / size as f64 - 1.0) * 100.0,
                (max as f64 / size as f64 - 1.0) * 100.0
            )?;
        }
    }
    writeln!(s)?;
    Ok(s)
}
