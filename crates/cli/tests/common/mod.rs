//! Runs the real `rutella` binary as separate processes.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
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

/// A `rutella serve` process, killed when dropped.
pub struct Serve {
    pub child: Child,
    pub log: PathBuf,
    pub _dir: tempfile::TempDir,
}

impl Serve {
    pub fn start(args: &[&str]) -> Serve {
        Serve::start_with(args, true)
    }

    /// `fast`: add the short ping interval and pong timeout of [`FAST`].
    pub fn start_with(args: &[&str], fast: bool) -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serve.log");
        let child = bin()
            .arg("serve")
            .args(if fast { &FAST[..] } else { &[] })
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let s = Serve {
            child,
            log,
            _dir: dir,
        };
        s.wait_log("node started", Duration::from_secs(20));
        s
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.log_text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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
    std::thread::sleep(Duration::from_millis(30));
    s.write_all(name).unwrap();
    let mut n = [0u8; 4];
    s.read_exact(&mut n).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    (u32::from_le_bytes(n), rest)
}
