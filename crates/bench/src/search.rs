//! Search latency in a network of real `rutella serve` processes.

use anyhow::{bail, Result};
use rutella_node::{Node, NodeConfig, PeerAddr};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::util::{median, p95, serve};
use crate::{Args, CLIENT_IP};

/// Search latency in a network of real `rutella serve` processes.
pub(crate) fn search_latency(args: &Args, tmp: &Path) -> Result<String> {
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
            bind: CLIENT_IP.into(),
            udp_port: 0,
            tcp_port: 0,
            connect: vec![PeerAddr::classic(first.into())],
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
