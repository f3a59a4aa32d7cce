//! Loopback throughput of the transfer protocols against a raw TCP copy.
//!
//! ```text
//! cargo run --release -p rutella-transfer --example loopback -- [MiB] [runs]
//! ```
//!
//! Makes a file of MiB mebibytes (default 1024) in a temporary folder and,
//! alternating the contenders in every round, copies it over 127.0.0.1:
//!
//! * `raw tcp`: a plain copy, 1 MiB buffers, file → socket → file (the
//!   baseline, like `socat -b 1048576`);
//! * `classic`: `classic_download` from `run_server` (sendfile);
//! * `rutella`: `fetch_by_hash` from `run_server`, every 16 KiB verified;
//! * `rutella (tree cached)`: the same once the server has the file's tree.
//!
//! Prints the median throughput of each and its ratio to the baseline, then
//! the time to fetch 200 files of 1 KiB one after the other (a fresh
//! connection each) with a raw TCP exchange, classic and rutella.

use std::io::{Read, Write};
use std::net::{TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rutella_transfer::{
    classic_download, fetch_by_hash, run_server, ClassicGet, FileSource, HashGet, Progress,
    ServerConfig, SourceFile,
};

struct One {
    path: PathBuf,
    hash: [u8; 32],
}

impl FileSource for One {
    fn by_name(&self, _: &str) -> Option<SourceFile> {
        let size = std::fs::metadata(&self.path).ok()?.len();
        Some(SourceFile {
            path: self.path.clone(),
            size,
        })
    }
    fn by_hash(&self, hash: &[u8; 32]) -> Option<SourceFile> {
        (hash == &self.hash).then(|| self.by_name("")).flatten()
    }
}

fn raw_copy(src: &Path, dst: &Path) -> std::io::Result<()> {
    let l = StdListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let src = src.to_owned();
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = l.accept()?;
        let mut f = std::fs::File::open(src)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            s.write_all(&buf[..n])?;
        }
    });
    let mut c = StdStream::connect(addr)?;
    let mut out = std::fs::File::create(dst)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = c.read(&mut buf)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
    }
    server
        .join()
        .map_err(|_| std::io::Error::other("server thread"))??;
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let mib: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let size = mib << 20;
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("source.bin");
    {
        let mut f = std::fs::File::create(&src)?;
        let mut block = vec![0u8; 1 << 20];
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..mib {
            for b in block.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            f.write_all(&block)?;
        }
    }
    let hash = {
        let mut h = blake3::Hasher::new();
        h.update_reader(std::fs::File::open(&src)?)?;
        *h.finalize().as_bytes()
    };
    let rt = tokio::runtime::Runtime::new()?;
    let source: Arc<dyn FileSource> = Arc::new(One {
        path: src.clone(),
        hash,
    });
    let cfg = ServerConfig::default();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(run_server(listener, source, cfg, async {
        let _ = stop_rx.await;
    }));
    let names = [
        "raw tcp",
        "classic",
        "rutella (first, hashes tree)",
        "rutella",
    ];
    let mut secs: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let out = dir.path().join("out");
    for round in 0..runs {
        for (k, times) in secs.iter_mut().enumerate() {
            if k == 2 && round > 0 {
                continue; // the server caches the tree after the first run
            }
            let _ = std::fs::remove_dir_all(&out);
            std::fs::create_dir_all(&out)?;
            let t = Instant::now();
            match k {
                0 => raw_copy(&src, &out.join("copy.bin"))?,
                1 => {
                    let req = ClassicGet {
                        peer: addr,
                        name: "source.bin".into(),
                        downloads_dir: out.clone(),
                        connect_timeout: Duration::from_secs(5),
                        idle_timeout: Duration::from_secs(20),
                        align_resume: false,
                        listed_size: None,
                        dialer: None,
                        limit: None,
                    };
                    let (tx, _rx) = tokio::sync::watch::channel(Progress::default());
                    rt.block_on(classic_download(req, tx))?;
                }
                _ => {
                    let req = HashGet::new(hash, vec![addr], out.clone(), "source.bin");
                    let (tx, _rx) = tokio::sync::watch::channel(Progress::default());
                    rt.block_on(fetch_by_hash(req, tx))?;
                }
            }
            times.push(t.elapsed().as_secs_f64());
        }
    }
    // Many small files: per-transfer setup cost.
    let small = dir.path().join("small");
    std::fs::create_dir_all(&small)?;
    let one_k = vec![7u8; 1024];
    let small_src = small.join("one.bin");
    std::fs::write(&small_src, &one_k)?;
    let small_hash = *blake3::hash(&one_k).as_bytes();
    let small_source: Arc<dyn FileSource> = Arc::new(One {
        path: small_src.clone(),
        hash: small_hash,
    });
    let l2 = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let small_addr = l2.local_addr()?;
    let (stop2_tx, stop2_rx) = tokio::sync::oneshot::channel::<()>();
    let server2 = rt.spawn(run_server(
        l2,
        small_source,
        ServerConfig::default(),
        async {
            let _ = stop2_rx.await;
        },
    ));
    const FILES: usize = 200;
    let mut small_secs: Vec<Vec<f64>> = vec![Vec::new(); 3];
    for _ in 0..runs {
        for (k, times) in small_secs.iter_mut().enumerate() {
            let outd = small.join("out");
            let _ = std::fs::remove_dir_all(&outd);
            std::fs::create_dir_all(&outd)?;
            let t = Instant::now();
            for i in 0..FILES {
                let name = format!("f{i}.bin");
                match k {
                    0 => raw_copy(&small_src, &outd.join(&name))?,
                    1 => {
                        let req = ClassicGet {
                            peer: small_addr,
                            name: name.clone(),
                            downloads_dir: outd.clone(),
                            connect_timeout: Duration::from_secs(5),
                            idle_timeout: Duration::from_secs(20),
                            align_resume: false,
                            listed_size: None,
                            dialer: None,
                            limit: None,
                        };
                        let (tx, _rx) = tokio::sync::watch::channel(Progress::default());
                        rt.block_on(classic_download(req, tx))?;
                    }
                    _ => {
                        let req = HashGet::new(small_hash, vec![small_addr], outd.clone(), &name);
                        let (tx, _rx) = tokio::sync::watch::channel(Progress::default());
                        rt.block_on(fetch_by_hash(req, tx))?;
                    }
                }
            }
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let _ = stop2_tx.send(());
    let _ = rt.block_on(server2);
    let _ = stop_tx.send(());
    let _ = rt.block_on(server);
    let base = size as f64 / median(&mut secs[0].clone()) / 1e9;
    println!("loopback copy of {mib} MiB, {runs} runs each, medians");
    println!("{:<30} {:>10} {:>8}", "contender", "GB/s", "ratio");
    for (k, name) in names.iter().enumerate() {
        let gbps = size as f64 / median(&mut secs[k]) / 1e9;
        println!("{name:<30} {gbps:>10.3} {:>8.2}", gbps / base);
    }
    println!();
    println!("{FILES} files of 1 KiB, one connection each, {runs} runs, medians");
    println!("{:<30} {:>10} {:>8}", "contender", "ms/file", "ratio");
    let small_base = median(&mut small_secs[0].clone());
    for (k, name) in ["raw tcp", "classic", "rutella"].iter().enumerate() {
        let t = median(&mut small_secs[k]);
        println!(
            "{name:<30} {:>10.3} {:>8.2}",
            t * 1000.0 / FILES as f64,
            t / small_base
        );
    }
    Ok(())
}
