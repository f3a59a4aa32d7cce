//! The classic peer: a separate Python process that speaks the classic
//! wire format, quirks included (`classic_peer/classic_peer.py`), driven
//! over its stdin and reporting JSON lines on its stdout.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running classic peer, killed when dropped.
pub struct Classic {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<Value>,
}

impl Classic {
    pub fn start(ip: &str, share: &Path, join: &str) -> Classic {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/classic_peer/classic_peer.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args([ip, share.to_str().unwrap(), join, "0.3", "0.15"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the classic peer");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        let mut c = Classic {
            child,
            stdin,
            lines,
        };
        c.expect(|v| v.get("ready").is_some());
        c
    }

    pub fn say(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The next report that satisfies `f`, collecting those before it.
    pub fn expect(&mut self, f: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .lines
                .recv_timeout(left)
                .expect("classic peer reported in time");
            if f(&v) {
                return (v, before);
            }
            before.push(v);
        }
    }

    /// The peer list once `n` more of the classic peer's ping rounds are
    /// over.
    pub fn peers_after_rounds(&mut self, n: u32) -> Vec<String> {
        self.say(&format!("rounds {n}"));
        let (v, _) = self.expect(|v| v.get("rounds_done").is_some());
        v["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for Classic {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
