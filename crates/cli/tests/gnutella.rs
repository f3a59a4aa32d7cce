//! `rutella search` reaches the Gnutella network through an ultrapeer
//! given with `--gnutella-connect` (the test ultrapeer of
//! `rutella_gnutella::testkit`, on loopback) and lists its hits next to a
//! rutella peer's, each with its network; `--no-gnutella` stays out.

mod common;

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
fn search_lists_gnutella_hits_beside_rutella_hits() {
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
