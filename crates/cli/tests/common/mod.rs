//! Runs the real `rutella` binary as separate processes.
#![allow(dead_code, unreachable_pub)]

pub mod classic;
pub mod daemon;
pub mod lab;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const FAST: [&str; 4] = ["--ping-interval", "300ms", "--pong-timeout", "150ms"];

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rutella"));
    // Never the settings file of whoever runs the tests.
    let no_config = std::env::temp_dir().join("rutella-tests-no-such-settings.toml");
    c.env("RUST_LOG", "info").env("RUTELLA_CONFIG", no_config);
    // Never the public DHT: the DHT is off unless a test turns it on with a
    // local bootstrap node, and loopback bootstrap nodes only either way.
    c.env("RUTELLA_NO_DHT", "1")
        .env("RUTELLA_TEST_NO_PUBLIC", "1");
    c
}

/// The lines a child process writes, collected by a thread as they come
/// (and copied to a file), so that a test waits for a line instead of
/// sleeping.
#[derive(Clone)]
pub struct Lines {
    seen: Arc<(Mutex<String>, Condvar)>,
}

impl Lines {
    /// Follows `from` until it ends, copying every line to `copy`.
    pub fn follow(from: impl Read + Send + 'static, mut copy: Option<std::fs::File>) -> Lines {
        let seen = Arc::new((Mutex::new(String::new()), Condvar::new()));
        let shared = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut from = BufReader::new(from);
            let mut line = Vec::new();
            while from.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                if let Some(f) = copy.as_mut() {
                    let _ = f.write_all(&line);
                }
                let (text, cv) = &*shared;
                text.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&line));
                cv.notify_all();
                line.clear();
            }
        });
        Lines { seen }
    }

    pub fn text(&self) -> String {
        self.seen.0.lock().unwrap().clone()
    }

    /// Waits (bounded) until `needle` has been written `times` times.
    pub fn wait_count(&self, needle: &str, times: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        let (text, cv) = &*self.seen;
        let mut t = text.lock().unwrap();
        while t.matches(needle).count() < times {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{needle:?} not written {times} times within {limit:?}:\n{t}"
            );
            t = cv.wait_timeout(t, left).unwrap().0;
        }
    }

    /// Waits until more than `len` bytes have been written, or `deadline`;
    /// whether they were.
    pub fn wait_longer_than(&self, len: usize, deadline: Instant) -> bool {
        let (text, cv) = &*self.seen;
        let mut t = text.lock().unwrap();
        while t.len() <= len {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            t = cv.wait_timeout(t, left).unwrap().0;
        }
        true
    }

    /// Waits (bounded) until `needle` has been written.
    pub fn wait(&self, needle: &str, limit: Duration) {
        self.wait_count(needle, 1, limit);
    }
}

/// Polls `cond` every 20 ms until it holds, failing with `what` after
/// `limit`. Only for conditions no event announces (a file another process
/// writes, a process's exit status).
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "{what} (waited {limit:?})");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `rutella serve` process, killed when dropped.
pub struct Serve {
    pub child: Child,
    pub log: PathBuf,
    pub lines: Lines,
    pub _dir: tempfile::TempDir,
}

impl Serve {
    pub fn start(args: &[&str]) -> Serve {
        Serve::start_with(args, true)
    }

    /// `fast`: add the short ping interval and pong timeout of [`FAST`].
    pub fn start_with(args: &[&str], fast: bool) -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = bin();
        cmd.arg("serve")
            // Tests never ask a router for anything.
            .arg("--no-port-mapping")
            .args(if fast { &FAST[..] } else { &[] })
            .args(args);
        let s = Serve::spawn(cmd, dir);
        s.wait_log("node started", Duration::from_secs(20));
        s
    }

    /// Starts `cmd` (a `rutella serve` command line) with its stderr
    /// followed line by line and copied to `serve.log` in `dir`, which
    /// lives as long as the `Serve`.
    pub fn spawn(mut cmd: Command, dir: tempfile::TempDir) -> Serve {
        let log = dir.path().join("serve.log");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Lines::follow(stderr, Some(std::fs::File::create(&log).unwrap()));
        Serve {
            child,
            log,
            lines,
            _dir: dir,
        }
    }

    pub fn log_text(&self) -> String {
        self.lines.text()
    }

    /// Waits (bounded) until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, limit: Duration) {
        self.lines.wait(needle, limit);
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).stdin(Stdio::null()).output().unwrap()
}

pub fn write_file(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// The classic downloader's exchange, byte by byte: u32 LE partial size,
/// then the name in its own write; returns the announced count and the bytes.
pub fn classic_request(addr: SocketAddr, partial: u32, name: &[u8]) -> (u32, Vec<u8>) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(&partial.to_le_bytes()).unwrap();
    // Not a wait for anything: the pause makes the two writes arrive as two
    // segments, as they do from the classic downloader.
    std::thread::sleep(Duration::from_millis(30));
    s.write_all(name).unwrap();
    let mut n = [0u8; 4];
    s.read_exact(&mut n).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    (u32::from_le_bytes(n), rest)
}

/// A BLAKE3 hash in hex, as the command line shows and takes it.
pub fn hex(h: &blake3::Hash) -> String {
    h.to_hex().to_string()
}

/// Waits (bounded) until the hits of the peer at `peer` for `text`, asked
/// from `bind`, carry `hash`: hashing runs in the background after a node
/// starts.
pub fn wait_hashed(peer: &str, bind: &str, text: &str, hash: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = run(&[
            "search",
            text,
            "--connect",
            peer,
            "--bind",
            bind,
            "--wait",
            "1",
            "--json",
        ]);
        if String::from_utf8_lossy(&r.stdout).contains(hash) {
            return;
        }
        assert!(Instant::now() < deadline, "{peer} never offered {hash}");
        // No event announces the end of hashing in another process: retry.
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs the `get` of `args` (with `--json`) until it succeeds, at most 20 s
/// (hashing runs in the background after a node starts and no event
/// announces its end to another process), and returns its JSON report.
/// Every failure before must be "not found" (exit code 4).
pub fn get_when_found(args: &[&str]) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = run(args);
        if r.status.success() {
            return serde_json::from_slice(&r.stdout).unwrap();
        }
        assert_eq!(
            r.status.code(),
            Some(4),
            "{}",
            String::from_utf8_lossy(&r.stderr)
        );
        assert!(
            Instant::now() < deadline,
            "never found: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
