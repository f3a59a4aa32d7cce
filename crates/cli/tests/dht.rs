//! `rutella get HASH` with no `--connect`: the sources are found through a
//! Mainline DHT. The only DHT is a local `mainline::Testnet` bound to
//! 127.0.0.1, given with `--dht-bootstrap`; `RUTELLA_TEST_NO_PUBLIC` stays
//! set, so a public bootstrap node would be refused.
//!
//! Address plan: the testnet on 127.0.0.1 (ports the system picks), the
//! rutella processes on 127.0.66.0/24 with the classic ports (several
//! nodes on one port, each on its own address).

mod common;
use common::*;
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn testnet() -> mainline::Testnet {
    mainline::Testnet::builder(5)
        .bind_address(Ipv4Addr::LOCALHOST)
        .build()
        .unwrap()
}

/// The DHT flags for the local testnet, with fast timers.
fn dht_args(net: &mainline::Testnet) -> Vec<String> {
    let mut a = vec!["--dht-interval".to_string(), "100ms".to_string()];
    for b in &net.bootstrap {
        a.push("--dht-bootstrap".to_string());
        a.push(b.clone());
    }
    a
}

/// `rutella serve` with the DHT on (the local testnet only).
fn serve_with_dht(share: &str, bind: &str, dht: &[String]) -> Serve {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cmd.env("RUTELLA_NO_DHT", "0")
        .env("RUTELLA_CONFIG", dir.path().join("settings.toml"))
        .env("RUST_LOG", "info,rutella_node::dht=debug")
        .args([
            "serve",
            "--no-port-mapping",
            "--share",
            share,
            "--bind",
            bind,
        ])
        .args(FAST)
        .args(["--rate-limit", "2000000"])
        .args(dht);
    let s = Serve::spawn(cmd, dir);
    s.wait_log("DHT started", Duration::from_secs(20));
    s
}

#[test]
fn get_by_hash_finds_two_sources_through_the_dht() {
    let net = testnet();
    let dht = dht_args(&net);
    let data = pattern(3_000_001, 66);
    let hash = blake3::hash(&data).to_hex().to_string();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    write_file(&dirs[0].path().join("one.iso"), &data);
    write_file(&dirs[1].path().join("two.iso"), &data);
    let a = serve_with_dht(dirs[0].path().to_str().unwrap(), "127.0.66.2", &dht);
    let b = serve_with_dht(dirs[1].path().to_str().unwrap(), "127.0.66.3", &dht);
    // Each has hashed its file and announced it on the DHT.
    for s in [&a, &b] {
        s.wait_log("file announced on the DHT", Duration::from_secs(30));
    }
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    let start = Instant::now();
    let r = bin()
        .env("RUTELLA_NO_DHT", "0")
        .args(["get", &hash, "--out", o, "--wait", "3", "--json"])
        // Only the lookup of the hash may find the sources here: the node
        // does not look the network up.
        .args(["--dht-enough-peers", "0", "--bind", "127.0.66.9"])
        .args(&dht)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        r.status.success(),
        "{}\n--- first source:\n{}",
        String::from_utf8_lossy(&r.stderr),
        a.log_text()
    );
    println!(
        "get through the DHT: {:.0} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    let report: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let path = report["path"].as_str().unwrap();
    assert_eq!(std::fs::read(path).unwrap(), data, "byte-exact");
    let sources = report["sources"].as_array().unwrap();
    let contributed: Vec<&str> = sources
        .iter()
        .filter(|s| s["verified"].as_u64().unwrap_or(0) > 0)
        .map(|s| s["peer"].as_str().unwrap())
        .collect();
    assert_eq!(
        contributed.len(),
        2,
        "two sources gave verified data: {report}"
    );

    // A search with no --connect reaches both through the DHT.
    let r = bin()
        .env("RUTELLA_NO_DHT", "0")
        .args([
            "search",
            ".iso",
            "--wait",
            "2",
            "--json",
            "--bind",
            "127.0.66.10",
        ])
        .args(&dht)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let mut names: Vec<String> = String::from_utf8_lossy(&r.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["name"].as_str().unwrap().to_string()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["one.iso", "two.iso"]);

    // The two servers found each other through the DHT; on a clean exit
    // each writes the other into its settings file's peers.
    let mut a = a;
    a.wait_log("peer joined", Duration::from_secs(20));
    // SAFETY: kill(2) on the id of a child this test started and has not reaped.
    let rc = unsafe { libc::kill(a.child.id() as i32, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while a.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    let settings = std::fs::read_to_string(a._dir.path().join("settings.toml")).unwrap();
    let b_udp = b
        .log_text()
        .lines()
        .find_map(|l| l.split("udp=").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    // A peer on the classic UDP port is written as its IP alone.
    let b_name = b_udp.strip_suffix(":20000").unwrap_or(&b_udp);
    assert!(
        settings.contains(&format!("\"{b_name}\"")),
        "{b_udp} not in the settings file:\n{settings}"
    );

    // With the DHT off and no --connect there is no way in: a usage error.
    let off = bin()
        .args(["get", &hash, "--out", o, "--bind", "127.0.66.9"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(off.status.code(), Some(2));
}
