//! Many small files one after the other: the node's client against the
//! same request and answer over raw TCP.

use anyhow::{bail, Result};
use rutella_node::{Node, NodeConfig};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::util::median;
use crate::{Args, CLIENT_IP, SERVER_IP};

/// Many 1 KB files: rutella's classic exchange through the node's client
/// vs the same request/answer over raw TCP, both in this process.
pub(crate) fn small_files(args: &Args, tmp: &Path) -> Result<String> {
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
            bind: SERVER_IP.into(),
            udp_port: 0,
            tcp_port: 0,
            watch: false,
            ..NodeConfig::default()
        };
        cfg.overlay.ping_interval = Duration::from_secs(60);
        let server = Node::start(cfg).await?;
        let tcp = server.client().tcp_addr();
        let client_node = Node::start(NodeConfig {
            bind: CLIENT_IP.into(),
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
pub(crate) struct RawServer {
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

pub(crate) fn raw_fetch(addr: SocketAddrV4, name: &str, out: &Path) -> Result<()> {
    let mut c = TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    c.write_all(name.as_bytes())?;
    let mut data = Vec::with_capacity(1024);
    c.read_to_end(&mut data)?;
    std::fs::write(out.join(name), data)?;
    Ok(())
}
