//! File names from the network never reach the terminal raw: a peer that
//! answers with names holding an OSC title sequence, BEL, CR/LF, a screen
//! clear and a bidi override is shown with those characters escaped, by
//! `rutella search` and by the console.
//!
//! The hostile peer is a UDP socket of this test on 127.0.0.1 (free port)
//! that answers pings with a pong and queries with a crafted QueryHit.

mod common;
use common::*;
use rexpect::session::spawn_command;
use serde_json::{json, Value};
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Sets the window title, rings the bell, returns to the line's start,
/// forges a new line, clears the screen and reverses what follows.
const EVIL: &str = "evil\u{1b}]0;owned\u{7}\r\nFORGED line\u{1b}[2J\u{202e}gpj.exe";
/// How `EVIL` must be shown.
const SHOWN: &str = r"evil\x1b]0;owned\x07\r\nFORGED line\x1b[2J\u{202e}gpj.exe";

struct HostilePeer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HostilePeer {
    /// Answers for at most 60 s, or until dropped.
    fn start() -> HostilePeer {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        // A TCP port nothing listens on: downloads from it fail at once.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut buf = [0u8; 65536];
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(m) = serde_json::from_slice::<Value>(&buf[..n]) else {
                    continue;
                };
                let me = json!({"IP": "127.0.0.1", "UdpPort": addr.port(), "TcpPort": closed});
                let mut reply = match m["Command"].as_i64() {
                    // A pong echoing the ping's nonce, as rutella peers answer.
                    Some(1) => json!({"Command": 2, "Echo": m["Nonce"]}),
                    Some(3) => json!({
                        "Command": 4,
                        "Contents": [EVIL, "plain.ogg"],
                        "Sizes": [5, 6],
                        "Id": m["Id"],
                    }),
                    _ => continue,
                };
                for (k, v) in me.as_object().unwrap() {
                    reply[k] = v.clone();
                }
                let _ = sock.send_to(reply.to_string().as_bytes(), from);
            }
        });
        HostilePeer {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HostilePeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// No byte of a control sequence from `EVIL` in `out`.
fn assert_no_raw_controls(out: &str) {
    for raw in ["\u{1b}]0;", "\u{7}", "\u{1b}[2J", "\u{202e}"] {
        assert!(!out.contains(raw), "raw {raw:?} written: {out:?}");
    }
    assert!(
        !out.lines().any(|l| l.trim_start().starts_with("FORGED")),
        "a forged line was written: {out:?}"
    );
}

#[test]
fn search_prints_hostile_names_escaped() {
    let peer = HostilePeer::start();
    let out = run(&[
        "search",
        "evil",
        "--connect",
        &peer.addr.to_string(),
        "--bind",
        "127.0.0.1",
        "--udp-port",
        "0",
        "--tcp-port",
        "0",
        "--wait",
        "2",
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one line per file: {stdout:?}");
    assert!(
        lines.contains(&format!("{}\t5\t{SHOWN}", peer.addr).as_str()),
        "{stdout:?}"
    );
    assert!(
        stdout
            .bytes()
            .all(|b| b == b'\n' || b == b'\t' || b >= 0x20),
        "raw control byte in {stdout:?}"
    );
    assert!(!stdout.contains('\u{202e}'));
    assert_no_raw_controls(&stdout);
    // The JSON output keeps the name exact (its encoder escapes it).
    let out = run(&[
        "search",
        "evil",
        "--connect",
        &peer.addr.to_string(),
        "--bind",
        "127.0.0.1",
        "--udp-port",
        "0",
        "--tcp-port",
        "0",
        "--wait",
        "2",
        "--json",
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.bytes().all(|b| b == b'\n' || b >= 0x20));
    let names: Vec<String> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(names.contains(&EVIL.to_owned()), "{names:?}");
}

#[test]
fn console_shows_hostile_names_escaped() {
    let peer = HostilePeer::start();
    let cfg = tempfile::tempdir().unwrap();
    let share = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rutella"));
    cmd.env("RUTELLA_NO_DHT", "1")
        .env("RUTELLA_TEST_NO_PUBLIC", "1");
    cmd.args([
        "--share",
        share.path().to_str().unwrap(),
        "--bind",
        "127.0.0.1",
        "--udp-port",
        "0",
        "--tcp-port",
        "0",
        "--connect",
        &peer.addr.to_string(),
    ])
    .env("RUTELLA_CONFIG", cfg.path().join("config.toml"))
    .env("TERM", "xterm")
    .env_remove("RUST_LOG");
    let mut p = spawn_command(cmd, Some(20_000)).unwrap();
    let mut seen = String::new();
    seen += &p.exp_string("rutella> ").unwrap();
    p.send_line("search evil").unwrap();
    seen += &p.exp_string(SHOWN).unwrap();
    seen += &p.exp_string("file(s) from").unwrap();
    seen += &p.exp_string("rutella> ").unwrap();
    // The download fails (nothing listens on the peer's TCP port): the
    // announcement names the file escaped too.
    p.send_line("get 1").unwrap();
    seen += &p.exp_string("Downloading ").unwrap();
    seen += &p.exp_string(SHOWN).unwrap();
    seen += &p.exp_string("failed").unwrap();
    p.send_line("downloads").unwrap();
    seen += &p.exp_string(SHOWN).unwrap();
    p.send_line("quit").unwrap();
    seen += &p.exp_eof().unwrap();
    assert_no_raw_controls(&seen);
}
