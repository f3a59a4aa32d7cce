//! LAN discovery between network namespaces on one link (the lab's
//! bridge, 11.0.0.0/24, which exists only inside the lab): nodes started
//! with no address find each other, and with `--no-lan-discovery` they
//! send nothing to the group. Needs root; prints one skip line elsewhere.
#![cfg(target_os = "linux")]

mod common;
use common::FAST;
use rutella_lab::{Host, Lab};
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 82, 84);
const PORT: u16 = 20_099;

/// Processes killed when dropped (before the lab, which is declared first).
#[derive(Default)]
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `rutella serve` on `host` with its log in the lab's folder; no
/// address to join.
fn serve(
    lab: &Lab,
    procs: &mut Procs,
    host: &Host,
    name: &str,
    share: &Path,
    extra: &[&str],
) -> PathBuf {
    let log = lab.dir().join(format!("{name}.log"));
    let mut cmd = common::bin();
    // The lab's public hosts have no router to ask.
    cmd.arg("serve")
        .arg("--no-port-mapping")
        .args(FAST)
        .arg("--share")
        .arg(share)
        .args(extra);
    let child = lab
        .wrap(host, &cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    procs.0.push(child);
    log
}

fn log_text(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Waits (bounded) for `needle` in the log; returns whether it came.
fn wait_log(log: &Path, needle: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if log_text(log).contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Seconds since midnight of the first log line containing `needle`
/// (the log's timestamps look like `2026-12-01T18:46:52.327514Z`).
fn stamp(log: &Path, needle: &str) -> f64 {
    let text = log_text(log);
    let line = text.lines().find(|l| l.contains(needle)).unwrap();
    let t = line.split('T').nth(1).unwrap().split('Z').next().unwrap();
    let mut parts = t.split(':');
    let h: f64 = parts.next().unwrap().parse().unwrap();
    let m: f64 = parts.next().unwrap().parse().unwrap();
    let s: f64 = parts.next().unwrap().parse().unwrap();
    h * 3600.0 + m * 60.0 + s
}

fn share(lab: &Lab, name: &str, file: &str) -> PathBuf {
    let dir = lab.dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(file), format!("the contents of {file}")).unwrap();
    dir
}

#[test]
fn two_nodes_with_no_address_find_each_other_and_search() {
    let Some(mut lab) = Lab::or_skip() else {
        return;
    };
    let mut procs = Procs::default();
    let a = lab.public_host("a", 2).unwrap();
    let b = lab.public_host("b", 3).unwrap();
    let share_a = share(&lab, "share-a", "Northern Sky.ogg");
    let share_b = share(&lab, "share-b", "other.txt");
    let log_a = serve(&lab, &mut procs, &a, "a", &share_a, &[]);
    assert!(wait_log(&log_a, "node started", Duration::from_secs(20)));
    let log_b = serve(&lab, &mut procs, &b, "b", &share_b, &[]);
    assert!(wait_log(&log_b, "node started", Duration::from_secs(20)));

    // Both join each other within 3 s of B's start, through the overlay's
    // ping and pong (the log line is the overlay's, not discovery's).
    let joined_a = format!("peer joined peer={}:20000", b.ip);
    let joined_b = format!("peer joined peer={}:20000", a.ip);
    let ok = wait_log(&log_b, &joined_b, Duration::from_secs(3))
        && wait_log(&log_a, &joined_a, Duration::from_secs(3));
    assert!(
        ok,
        "the nodes did not find each other:\n--- a\n{}\n--- b\n{}",
        log_text(&log_a),
        log_text(&log_b)
    );
    let first = stamp(&log_b, &joined_b) - stamp(&log_b, "node started");
    assert!(first < 3.0, "{first} s");
    eprintln!(
        "time to first peer through the LAN: {:.1} ms (B's start to B's overlay join of A)",
        first * 1000.0
    );

    // A one-shot search on B, given no address either, finds A's file.
    let mut cmd = common::bin();
    cmd.args(["search", "northern", "--wait", "2", "--json"]);
    let out = lab.wrap(&b, &cmd).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hit = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["name"] == "Northern Sky.ogg")
        .unwrap_or_else(|| panic!("no hit for A's file: {stdout}"));
    assert!(
        hit.to_string().contains(&a.ip.to_string()),
        "the hit is not from A: {hit}"
    );
    // The search only looked: A answered its probe but did not take it
    // for a peer (it is gone now); A found B and nobody else.
    let text = log_text(&log_a);
    assert_eq!(text.matches("found a peer on the LAN").count(), 1, "{text}");
}

/// A socket on `host` joined to the discovery group, reading without blocking.
fn listener(host: &Host) -> UdpSocket {
    let ip = host.ip;
    host.enter(move || {
        let s = UdpSocket::bind((GROUP, PORT)).unwrap();
        s.join_multicast_v4(&GROUP, &ip).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        s
    })
    .unwrap()
}

/// Datagrams `s` receives within `limit`, and their sources.
fn heard(s: &UdpSocket, limit: Duration) -> Vec<std::net::SocketAddr> {
    let deadline = Instant::now() + limit;
    let mut from = Vec::new();
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        if let Ok((_, f)) = s.recv_from(&mut buf) {
            from.push(f);
        }
    }
    from
}

#[test]
fn with_no_lan_discovery_nothing_is_sent_and_nobody_is_found() {
    let Some(mut lab) = Lab::or_skip() else {
        return;
    };
    let mut procs = Procs::default();
    let a = lab.public_host("a", 2).unwrap();
    let b = lab.public_host("b", 3).unwrap();
    let l = lab.public_host("l", 4).unwrap();
    let d = lab.public_host("d", 5).unwrap();
    let ear = listener(&l);
    // A library (and its database) each, so that neither waits for the other.
    let (sa, sb) = (
        share(&lab, "share-a", "x.txt"),
        share(&lab, "share-b", "x.txt"),
    );
    let off = ["--no-lan-discovery"];
    let log_a = serve(&lab, &mut procs, &a, "a", &sa, &off);
    let log_b = serve(&lab, &mut procs, &b, "b", &sb, &off);
    assert!(wait_log(&log_a, "node started", Duration::from_secs(20)));
    assert!(wait_log(&log_b, "node started", Duration::from_secs(20)));
    // A node with discovery on announces at once; give these a second.
    let got = heard(&ear, Duration::from_secs(1));
    assert!(got.is_empty(), "datagrams to the group from {got:?}");

    // The control: a node with discovery on, and the listener hears it
    // (so the silence above was the flag's doing).
    let log_d = serve(
        &lab,
        &mut procs,
        &d,
        "d",
        &share(&lab, "share-d", "x.txt"),
        &[],
    );
    assert!(wait_log(&log_d, "node started", Duration::from_secs(20)));
    let got = heard(&ear, Duration::from_secs(1));
    assert!(
        got.iter().any(|f| f.ip() == std::net::IpAddr::V4(d.ip)),
        "the listener heard nothing from the node with discovery on: {got:?}"
    );
    // A and B neither answered it nor joined anyone.
    for log in [&log_a, &log_b, &log_d] {
        let text = log_text(log);
        assert!(!text.contains("peer joined"), "{text}");
        assert!(!text.contains("found a peer on the LAN"), "{text}");
    }
}
