//! `rutella search` reaches the Gnutella network through an ultrapeer
//! given with `--gnutella-connect` (the test ultrapeer of
//! `rutella_gnutella::testkit`, on loopback) and lists its hits next to a
//! rutella peer's and a classic peer's, each with its network;
//! `--no-gnutella` stays out.
//!
//! Address plan: this file uses 127.0.9.0/24 (classic ports).

mod common;

use common::classic::Classic;
use common::{run, write_file, Serve};
use rutella_gnutella::testkit::{TestFile, TestUltrapeer, UltrapeerConfig};
use std::time::Duration;

fn ultrapeer(rt: &tokio::runtime::Runtime) -> TestUltrapeer {
    rt.block_on(TestUltrapeer::start(UltrapeerConfig {
        files: vec![TestFile {
            name: "free song gnutella.ogg".into(),
            size: 4321,
            sha1: Some([0x11; 20]),
            index: 9,
        }],
        ..UltrapeerConfig::default()
    }))
    .unwrap()
}

fn lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn search_lists_gnutella_hits_beside_rutella_and_classic_hits() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let up = ultrapeer(&rt);
    let share = tempfile::tempdir().unwrap();
    write_file(&share.path().join("free song rutella.ogg"), b"a free song");
    let peer = Serve::start(&[
        "--share",
        share.path().to_str().unwrap(),
        "--bind",
        "127.0.9.1",
        "--no-gnutella",
    ]);
    // A classic peer (the original program's wire format) joins the
    // rutella peer.
    let cshare = tempfile::tempdir().unwrap();
    write_file(&cshare.path().join("free song classic.ogg"), b"an old song");
    let _classic = Classic::start("127.0.9.4", cshare.path(), "127.0.9.1");
    peer.wait_log("peer=127.0.9.4:20000", Duration::from_secs(10));
    let upa = up.addr().to_string();
    let out = run(&[
        "search",
        "free song",
        "--connect",
        "127.0.9.1",
        "--gnutella-connect",
        &upa,
        "--bind",
        "127.0.9.2",
        "--wait",
        "3",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hits = lines(&out);
    let g = hits
        .iter()
        .find(|h| h["network"] == "gnutella")
        .unwrap_or_else(|| panic!("no Gnutella hit: {hits:?}"));
    assert_eq!(g["name"], "free song gnutella.ogg");
    assert_eq!(g["size"], 4321);
    assert_eq!(g["index"], 9);
    assert_eq!(g["vendor"], "TEST");
    assert_eq!(
        g["sha1"],
        format!(
            "urn:sha1:{}",
            rutella_gnutella::huge::base32_encode(&[0x11; 20])
        )
    );
    assert_eq!(g["tcp"], "127.0.0.1:6346");
    let r = hits
        .iter()
        .find(|h| h["network"] == "rutella")
        .unwrap_or_else(|| panic!("no rutella hit: {hits:?}"));
    assert_eq!(r["name"], "free song rutella.ogg");
    let c = hits
        .iter()
        .find(|h| h["network"] == "classic")
        .unwrap_or_else(|| panic!("no classic hit: {hits:?}"));
    assert_eq!(c["name"], "free song classic.ogg");
    assert_eq!(c["peer"], "127.0.9.4");
    // The query went out through the ultrapeer.
    assert!(up.queries().iter().any(|q| q == "free song"));
    drop(peer);

    // --no-gnutella: nothing goes to the ultrapeer.
    let before = rt.block_on(async { up.queries().len() });
    let out = run(&[
        "search",
        "free song",
        "--connect",
        "127.0.9.1",
        "--gnutella-connect",
        &upa,
        "--no-gnutella",
        "--bind",
        "127.0.9.3",
        "--wait",
        "1",
        "--json",
    ]);
    assert!(lines(&out).iter().all(|h| h["network"] != "gnutella"));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(up.queries().len(), before);
    assert!(up.leaves().is_empty());
}

/// The console (in a pseudo-terminal) lists a Gnutella result tagged `[g]`
/// beside a rutella peer's result and a classic peer's result tagged
/// `[c]`, and `get N` fetches the Gnutella one over HTTP from the servent
/// the hit names, SHA-1 checked.
#[test]
fn the_console_shows_gnutella_results_and_gets_them() {
    use rexpect::session::spawn_command;
    use rutella_gnutella::testkit::{ServedFile, TestServent};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let remote: Vec<u8> = (0..30_000u32).map(|i| (i % 241) as u8).collect();
    let remote_path = tmp.path().join("remote.bin");
    std::fs::write(&remote_path, &remote).unwrap();
    let sha1 = rutella_gnutella_sha1(&remote);
    let servent = rt
        .block_on(TestServent::start(vec![ServedFile {
            index: 5,
            name: "free song gnutella.ogg".into(),
            path: remote_path,
            size: remote.len() as u64,
            sha1,
        }]))
        .unwrap();
    let up = rt
        .block_on(TestUltrapeer::start(UltrapeerConfig {
            files: vec![TestFile {
                name: "free song gnutella.ogg".into(),
                size: remote.len() as u64,
                sha1: Some(sha1),
                index: 5,
            }],
            servent: servent.addr(),
            ..UltrapeerConfig::default()
        }))
        .unwrap();
    let share = tmp.path().join("share");
    write_file(&share.join("free song rutella.ogg"), b"a free song");
    let peer = Serve::start(&[
        "--share",
        share.to_str().unwrap(),
        "--bind",
        "127.0.9.5",
        "--no-gnutella",
    ]);
    let cshare = tmp.path().join("classic");
    write_file(&cshare.join("free song classic.ogg"), b"an old song");
    let _classic = Classic::start("127.0.9.7", &cshare, "127.0.9.5");
    peer.wait_log("peer=127.0.9.7:20000", Duration::from_secs(10));
    let mine = tmp.path().join("mine");
    write_file(&mine.join("other.txt"), b"x");
    let downloads = tmp.path().join("downloads");
    let upa = up.addr().to_string();
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_rutella"));
    c.args([
        "--share",
        mine.to_str().unwrap(),
        "--downloads",
        downloads.to_str().unwrap(),
        "--connect",
        "127.0.9.5",
        "--gnutella-connect",
        &upa,
        "--bind",
        "127.0.9.6",
        "--search-timeout",
        "3s",
    ])
    .env("RUTELLA_NO_DHT", "1")
    .env("RUTELLA_TEST_NO_PUBLIC", "1")
    .env("RUTELLA_CONFIG", tmp.path().join("c.toml"))
    .env("TERM", "xterm")
    .env_remove("RUST_LOG");
    let mut p = spawn_command(c, Some(20_000)).unwrap();
    p.exp_string("rutella> ").unwrap();
    // The link comes up in the background.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while up.leaves().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no Gnutella link");
        std::thread::sleep(Duration::from_millis(20));
    }
    p.send_line("search free song").unwrap();
    let (before, line) = p
        .exp_regex(r"\d+ +127\.0\.0\.1:\d+ +\S+ \S+ +\[g\] free song gnutella\.ogg")
        .unwrap();
    let n = line.split_whitespace().next().unwrap().to_string();
    let out = p.exp_string("rutella> ").unwrap();
    let all = format!("{before}{line}{out}");
    assert!(all.contains("free song rutella.ogg"), "{all}");
    assert!(!all.contains("[g] free song rutella.ogg"), "{all}");
    assert!(!all.contains("[c] free song rutella.ogg"), "{all}");
    assert!(
        all.lines()
            .any(|l| l.contains(" 127.0.9.7 ")
                && l.trim_end().ends_with("  [c] free song classic.ogg")),
        "{all}"
    );
    p.send_line(&format!("get {n}")).unwrap();
    p.exp_string("from the Gnutella servent").unwrap();
    p.exp_string("(SHA-1 checked)").unwrap();
    assert_eq!(
        std::fs::read(downloads.join("free song gnutella.ogg")).unwrap(),
        remote
    );
    p.send_line("quit").unwrap();
    p.exp_eof().unwrap();
    drop(peer);
}

fn rutella_gnutella_sha1(data: &[u8]) -> [u8; 20] {
    // The servent's own check: the crate's file SHA-1 over a temporary copy.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, data).unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(rutella_gnutella::download::file_sha1(&p))
        .unwrap()
}
