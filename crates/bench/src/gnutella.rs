//! Gnutella 0.6 next to rutella's own protocol, in this process, on
//! 127.0.0.1: the time from a search to its first Gnutella hit (through
//! the test ultrapeer of `rutella_gnutella::testkit`) and to its first
//! rutella hit (from a rutella node), in the same search; and the download
//! throughput of one file over Gnutella HTTP (from the test servent, the
//! crate's uploader) and over rutella's transfer protocol (from the
//! rutella node), alternated.
//!
//! The test ultrapeer answers at once: a real ultrapeer forwards queries
//! about 10 s apart, so real first hits come after 10-25 s.

use crate::util::median;
use crate::Args;
use anyhow::{anyhow, Context, Result};
use rutella_gnutella::testkit::{
    ServedFile, TestFile, TestServent, TestUltrapeer, UltrapeerConfig,
};
use rutella_node::{GnutellaSettings, Node, NodeConfig, PeerAddr};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);
const NAME: &str = "gnutella bench.bin";

pub(crate) fn gnutella(args: &Args, dir: &Path) -> Result<String> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(run(args, dir))
}

fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn run(args: &Args, dir: &Path) -> Result<String> {
    let size = (args.sources_size_mib << 20) as usize;
    let data = pattern(size);
    let sha1 = sha1_smol::Sha1::from(&data).digest().bytes();
    let share = dir.join("gnutella-share");
    let remote = dir.join("gnutella-remote");
    let downloads = dir.join("gnutella-downloads");
    for d in [&share, &remote, &downloads] {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(share.join(NAME), &data)?;
    std::fs::write(remote.join(NAME), &data)?;
    let servent = TestServent::start(vec![ServedFile {
        index: 1,
        name: NAME.into(),
        path: remote.join(NAME),
        size: size as u64,
        sha1,
    }])
    .await?;
    let up = TestUltrapeer::start(UltrapeerConfig {
        files: vec![TestFile {
            name: NAME.into(),
            size: size as u64,
            sha1: Some(sha1),
            index: 1,
        }],
        servent: servent.addr(),
        ..UltrapeerConfig::default()
    })
    .await?;
    let base = |shares: Vec<std::path::PathBuf>| {
        let mut c = NodeConfig {
            shares,
            bind: Ipv4Addr::LOCALHOST.into(),
            udp_port: 0,
            tcp_port: 0,
            ..NodeConfig::default()
        };
        c.overlay.ping_interval = Duration::from_millis(200);
        c.overlay.pong_timeout = Duration::from_millis(100);
        c.overlay.search_timeout = Duration::from_secs(5);
        c
    };
    let a = Node::start(base(vec![share.clone()])).await?;
    let ac = a.client();
    let mut bcfg = base(Vec::new());
    bcfg.downloads = Some(downloads.clone());
    bcfg.connect = vec![PeerAddr {
        udp: ac.udp_addr(),
        tcp_port: Some(ac.tcp_addr().port()),
    }];
    bcfg.gnutella = Some(GnutellaSettings {
        connect: vec![up.addr()],
        tick: Duration::from_millis(20),
        ..GnutellaSettings::default()
    });
    let b = Node::start(bcfg).await?;
    let bc = b.client();
    let lib = ac.library().clone();
    tokio::task::spawn_blocking(move || lib.wait_idle(LIMIT)).await?;
    bc.wait_any_peer(LIMIT).await?;
    let mut links = bc.gnutella_links().ok_or_else(|| anyhow!("gnutella off"))?;
    tokio::time::timeout(LIMIT, links.wait_for(|n| *n >= 1))
        .await
        .context("no Gnutella link")??;

    let (mut g_first, mut r_first, mut g_mib, mut r_mib) = (vec![], vec![], vec![], vec![]);
    let mib = size as f64 / f64::from(1 << 20);
    for run in 0..args.runs {
        // One search reaches both networks.
        let t0 = Instant::now();
        let mut stream = bc.search("gnutella bench").await?;
        let (mut g, mut r, mut hit) = (None, None, None);
        while g.is_none() || r.is_none() {
            let h = tokio::time::timeout(LIMIT, stream.next())
                .await
                .context("search timed out")?
                .ok_or_else(|| anyhow!("search ended without both hits"))?;
            let t = t0.elapsed().as_secs_f64();
            match h.network() {
                "gnutella" => {
                    g.get_or_insert(t);
                    hit.get_or_insert(h);
                }
                _ => {
                    r.get_or_insert(t);
                }
            }
        }
        drop(stream);
        let (Some(g), Some(r), Some(hit)) = (g, r, hit) else {
            unreachable!()
        };
        g_first.push(g);
        r_first.push(r);
        let src = hit.gnutella.clone().ok_or_else(|| anyhow!("no source"))?;
        let dest = downloads.join(NAME);
        // Alternate which protocol goes first.
        for gnutella_turn in [run % 2 == 0, run % 2 != 0] {
            let _ = std::fs::remove_file(&dest);
            let t = Instant::now();
            if gnutella_turn {
                bc.get_gnutella(&src, NAME, src.files[0], Some(size as u64))
                    .await?;
                g_mib.push(mib / t.elapsed().as_secs_f64());
            } else {
                bc.download_listed(ac.tcp_addr(), NAME, Some(size as u64))
                    .wait()
                    .await?;
                r_mib.push(mib / t.elapsed().as_secs_f64());
            }
            if std::fs::read(&dest)?.len() != size {
                return Err(anyhow!("wrong size downloaded"));
            }
        }
        eprintln!(
            "gnutella: run {run}: first hit {:.1} ms (rutella {:.1} ms), {:.0} MiB/s (rutella {:.0} MiB/s)",
            g * 1000.0,
            r * 1000.0,
            g_mib.last().copied().unwrap_or(0.0),
            r_mib.last().copied().unwrap_or(0.0)
        );
    }
    a.shutdown().await;
    b.shutdown().await;
    let mut out = String::new();
    writeln!(out, "### Gnutella 0.6 next to rutella's own protocol")?;
    writeln!(out)?;
    writeln!(
        out,
        "One node, a leaf of the test ultrapeer (`rutella_gnutella::testkit`, which answers at once) \
         and a peer of a rutella node, both offering the same {} MiB file; all in one process on \
         127.0.0.1, {} run(s), medians. The first hit is timed from `Client::search` in one search \
         that reaches both networks; the downloads alternate. Built {}; machine: {}.",
        args.sources_size_mib,
        args.runs,
        if cfg!(debug_assertions) {
            "in the dev profile (workspace crates unoptimised, dependencies at opt-level 2)"
        } else {
            "with --release"
        },
        crate::util::machine()
    )?;
    writeln!(out)?;
    writeln!(out, "| | Gnutella 0.6 | rutella |")?;
    writeln!(out, "| --- | --- | --- |")?;
    writeln!(
        out,
        "| time to first hit | {:.1} ms | {:.1} ms |",
        median(&mut g_first) * 1000.0,
        median(&mut r_first) * 1000.0
    )?;
    writeln!(
        out,
        "| download throughput | {:.0} MiB/s (HTTP/1.1, SHA-1 checked at the end) | {:.0} MiB/s (by name) |",
        median(&mut g_mib),
        median(&mut r_mib)
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "A real ultrapeer forwards a leaf's query about 10 s after the previous one, so first \
         Gnutella hits come after 10-25 s on the real network; the figure above is the cost of \
         the leaf's own path (query out, hit decoded, handed to the search)."
    )?;
    writeln!(out)?;
    Ok(out)
}
