//! `rutella demo`: a small network of sample peers on loopback, and the
//! console joined to it. Everything lives in a temporary folder that is
//! removed at the end.

use crate::args::DemoArgs;
use crate::{exit, Failure};
use rutella_node::{Node, NodeConfig, PeerAddr};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;
use tokio::runtime::Runtime;

/// Sample files: (peer index, name, size). The same name on two peers has
/// the same content, so searches show it grouped.
const SAMPLES: &[(usize, &str, usize)] = &[
    (0, "music/Aurora Lights - Northern Sky.ogg", 3_200_000),
    (0, "music/Blue Harbor - Tides.ogg", 1_400_000),
    (0, "docs/Cloud - Cloud models.png", 210_000),
    (0, "docs/rutella guide.txt", 0),
    (1, "music/Aurora Lights - Northern Sky.ogg", 3_200_000),
    (1, "photos/Cloud - CloudWatch 1.png", 730_000),
    (1, "photos/holiday 2019 - beach.jpg", 2_100_000),
    (1, "notes/recipes.md", 0),
    (2, "video/Big Buck Rabbit.mp4", 24_000_000),
    (2, "music/Coral Reef - Deep Blue.ogg", 4_600_000),
    (2, "Cloud - IT infrastructure.png", 380_000),
    (2, "papers/gnutella protocol notes.pdf", 520_000),
];

const GUIDE: &str = "rutella demo\n\nEach peer of this demo shares a folder of sample files.\nTry: search ogg, get 1, downloads, peers, help.\n";

/// Upload speed of the sample peers, so that progress is visible.
const DEMO_RATE: u64 = 6 * 1024 * 1024;

/// Bytes that look random, the same for the same name.
fn content(name: &str, len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in name.bytes() {
        x = (x ^ b as u64).wrapping_mul(0x0100_0000_01B3);
    }
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn write_samples(root: &Path, peers: usize) -> std::io::Result<usize> {
    let mut count = 0;
    for i in 0..peers {
        std::fs::create_dir_all(root.join(format!("peer{}", i + 1)))?;
    }
    for (idx, (peer, name, size)) in SAMPLES.iter().enumerate() {
        // With fewer peers, their files go to the peers there are.
        let dir = root.join(format!("peer{}", peer % peers + 1));
        let path = dir.join(name);
        if path.exists() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let data = if *size == 0 {
            format!("{GUIDE}\n(sample {idx})\n").into_bytes()
        } else {
            content(name, *size)
        };
        std::fs::write(&path, data)?;
        count += 1;
    }
    Ok(count)
}

fn node_config(shares: Vec<std::path::PathBuf>, connect: Vec<PeerAddr>) -> NodeConfig {
    let mut cfg = NodeConfig {
        shares,
        bind: Ipv4Addr::LOCALHOST.into(),
        udp_port: 0,
        tcp_port: 0,
        connect,
        watch: false,
        ..NodeConfig::default()
    };
    cfg.overlay.ping_interval = Duration::from_secs(2);
    cfg.overlay.pong_timeout = Duration::from_secs(1);
    cfg.overlay.search_timeout = Duration::from_secs(2);
    cfg.overlay.seed = crate::args::seed();
    cfg
}

/// Runs the demo until the console is left.
pub(crate) fn run(rt: &Runtime, args: DemoArgs) -> Result<(), Failure> {
    let n = args.peers as usize;
    let dir = tempfile::Builder::new()
        .prefix("rutella-demo-")
        .tempdir()
        .map_err(|e| {
            Failure::new(
                exit::FAILURE,
                format!("cannot create a temporary folder for the demo: {e}"),
            )
        })?;
    let root = dir.path().to_path_buf();
    let files = write_samples(&root, n).map_err(|e| {
        Failure::new(
            exit::FAILURE,
            format!("cannot write the demo files in {}: {e}", root.display()),
        )
    })?;
    let result = rt.block_on(async {
        let mut nodes: Vec<Node> = Vec::new();
        let mut addrs: Vec<PeerAddr> = Vec::new();
        for i in 0..n {
            // Each peer joins through the first one: a small star that the
            // pings turn into a full mesh.
            let mut cfg = node_config(
                vec![root.join(format!("peer{}", i + 1))],
                addrs.first().copied().into_iter().collect(),
            );
            cfg.upload_rate_limit = Some(DEMO_RATE);
            cfg.downloads = Some(root.join(format!("peer{}-downloads", i + 1)));
            let node = Node::start(cfg).await?;
            let c = node.client();
            addrs.push(PeerAddr {
                udp: c.udp_addr(),
                tcp_port: Some(c.tcp_addr().port()),
            });
            nodes.push(node);
        }
        // Hashes make identical files one result and let them come from
        // several peers at once: wait until the sample files have theirs.
        let libraries: Vec<_> = nodes.iter().map(|n| n.client().library().clone()).collect();
        let _ = tokio::task::spawn_blocking(move || {
            for lib in libraries {
                lib.wait_idle(Duration::from_secs(10));
            }
        })
        .await;
        let mut cfg = node_config(Vec::new(), addrs.clone());
        cfg.downloads = Some(root.join("downloads"));
        let me = Node::start(cfg).await?;
        let joined =
            crate::console::setup::wait_for_peers(&me.client(), Duration::from_secs(3)).await;
        Ok::<_, Failure>((nodes, addrs, me, joined))
    });
    let (nodes, addrs, me, joined) = result?;
    clean_up_on_signal(rt, root.clone());
    let client = me.client();
    println!("rutella demo: {n} peers on 127.0.0.1 share {files} sample files.");
    for (i, a) in addrs.iter().enumerate() {
        println!(
            "  peer {}  {a}  shares {}",
            i + 1,
            root.join(format!("peer{}", i + 1)).display()
        );
    }
    println!(
        "Your node is {} ({joined} peers joined); downloads go to {}.",
        client.udp_addr(),
        client.downloads_dir().display()
    );
    println!("Everything is removed when you quit.");
    println!("Try:  search ogg   then   get 1   then   downloads   (help lists all commands)");
    let mut rl = crate::console::setup::editor()?;
    let result = crate::console::run(rt, &mut rl, client, None);
    rt.block_on(async {
        me.shutdown().await;
        for node in nodes {
            node.shutdown().await;
        }
    });
    // Threads of a download stopped by the quit may still be closing
    // files in the folder: remove it until it is gone (bounded).
    if !remove_all(&root, REMOVE_TRIES, REMOVE_PAUSE) {
        eprintln!(
            "rutella: could not remove the demo folder {}: delete it by hand",
            root.display()
        );
    }
    drop(dir);
    result
}

/// Attempts to remove the demo folder, and the pause between them.
const REMOVE_TRIES: usize = 40;
const REMOVE_PAUSE: Duration = Duration::from_millis(50);

/// Removes `root` and everything in it, trying again while something in
/// it is still being written; returns whether it is gone.
fn remove_all(root: &Path, tries: usize, pause: Duration) -> bool {
    for _ in 0..tries {
        match std::fs::remove_dir_all(root) {
            Ok(()) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return true,
            Err(e) => tracing::debug!(error = %e, "the demo folder is still in use"),
        }
        std::thread::sleep(pause);
    }
    !root.exists()
}

/// When the demo is killed (terminal closed, `kill`), remove its files and
/// give the terminal back as it was, instead of leaving both behind.
#[cfg(unix)]
fn clean_up_on_signal(rt: &Runtime, root: std::path::PathBuf) {
    use tokio::signal::unix::{signal, SignalKind};
    let saved = terminal::save();
    rt.spawn(async move {
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        let code = tokio::select! {
            _ = term.recv() => 143,
            _ = hup.recv() => 129,
        };
        terminal::restore(&saved);
        let _ = std::fs::remove_dir_all(&root);
        eprintln!("\r\nrutella demo stopped; its files are removed.");
        std::process::exit(code);
    });
}

#[cfg(not(unix))]
fn clean_up_on_signal(_rt: &Runtime, _root: std::path::PathBuf) {}

#[cfg(unix)]
mod terminal {
    /// The terminal settings of standard input, if it is a terminal.
    pub(super) fn save() -> Option<libc::termios> {
        let mut t = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr writes a termios into the pointer it is given,
        // and we read it only when it reports success.
        unsafe {
            if libc::tcgetattr(libc::STDIN_FILENO, t.as_mut_ptr()) == 0 {
                Some(t.assume_init())
            } else {
                None
            }
        }
    }

    pub(super) fn restore(saved: &Option<libc::termios>) {
        if let Some(t) = saved {
            // SAFETY: `t` is a termios obtained from tcgetattr.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_varied_and_repeatable() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_samples(dir.path(), 3).unwrap();
        assert_eq!(written, SAMPLES.len());
        let a = std::fs::read(
            dir.path()
                .join("peer1/music/Aurora Lights - Northern Sky.ogg"),
        )
        .unwrap();
        let b = std::fs::read(
            dir.path()
                .join("peer2/music/Aurora Lights - Northern Sky.ogg"),
        )
        .unwrap();
        assert_eq!(a.len(), 3_200_000);
        assert_eq!(a, b);
        assert_ne!(content("x", 64), content("y", 64));
        // One peer gets every distinct file.
        let one = tempfile::tempdir().unwrap();
        assert!(write_samples(one.path(), 1).unwrap() < SAMPLES.len());
    }

    /// What quitting during a download meets: the download's last writes
    /// (its checkpoint, written as a temporary file then renamed) land in
    /// the downloads folder while the folder is being removed, so one
    /// removal finds the folder not empty at its end. The folder is gone
    /// all the same once the writes stop.
    #[test]
    fn the_folder_goes_even_while_a_download_still_writes_into_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rutella-demo-x");
        let downloads = root.join("downloads");
        std::fs::create_dir_all(&downloads).unwrap();
        // Enough files that a removal takes a while.
        for i in 0..3000 {
            std::fs::write(downloads.join(format!("f{i}")), b"x").unwrap();
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (writing, started) = std::sync::mpsc::channel();
        let writer = {
            let (downloads, stop) = (downloads.clone(), stop.clone());
            std::thread::spawn(move || {
                let began = std::time::Instant::now();
                let mut i = 0u32;
                // Like a checkpoint: never makes the folder, only writes
                // into it while it is there; bounded in time.
                while !stop.load(std::sync::atomic::Ordering::Relaxed)
                    && began.elapsed() < Duration::from_millis(400)
                {
                    let tmp = downloads.join(format!("s{i}.state.tmp"));
                    if std::fs::write(&tmp, b"state").is_ok() {
                        let _ = std::fs::rename(&tmp, downloads.join(format!("s{i}.state")));
                    }
                    if i == 0 {
                        let _ = writing.send(());
                    }
                    i += 1;
                }
            })
        };
        started.recv().unwrap();
        let gone = remove_all(&root, REMOVE_TRIES, REMOVE_PAUSE);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        assert!(gone && !root.exists(), "the demo folder was left behind");
    }
}
