//! rutella peers over IPv6 loopback (`::1`): two `rutella serve` processes,
//! one bound to `::1` and one dual-stack (`::`), join, and one-shot
//! commands search and download by name and by hash with IPv6 addresses
//! written as `[::1]:PORT`; the dual-stack node also serves an IPv4 peer
//! through the same sockets. Prints one skip line where `::1` is missing.
//!
//! Address plan: `::1` with UDP ports 20601-20602 and TCP 10601-10602
//! (the one-shot commands take free ports), 127.0.61.0/24 for IPv4.

mod common;
use common::*;
use std::time::Duration;

fn ipv6_loopback() -> bool {
    std::net::UdpSocket::bind("[::1]:0").is_ok()
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The one-shot flags of a node on `::1` with ports the system picks.
const ONESHOT: [&str; 6] = ["--bind", "::1", "--udp-port", "0", "--tcp-port", "0"];

#[test]
fn peers_on_ipv6_loopback_join_search_and_download() {
    if !ipv6_loopback() {
        eprintln!("skipped: no IPv6 loopback (::1) here");
        return;
    }
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let song = pattern(700_001, 61);
    write_file(&dirs[0].path().join("six song.ogg"), &song);
    let film = pattern(1_200_003, 62);
    write_file(&dirs[1].path().join("six film.mkv"), &film);
    let s0 = dirs[0].path().to_str().unwrap();
    let s1 = dirs[1].path().to_str().unwrap();
    let a = Serve::start(&[
        "--share",
        s0,
        "--bind",
        "::1",
        "--udp-port",
        "20601",
        "--tcp-port",
        "10601",
    ]);
    let b = Serve::start(&[
        "--share",
        s1,
        "--bind",
        "::",
        "--udp-port",
        "20602",
        "--tcp-port",
        "10602",
        "--connect",
        "[::1]:20601",
    ]);
    let t = Duration::from_secs(20);
    a.wait_log("peer joined peer=[::1]:20602", t);
    b.wait_log("peer joined peer=[::1]:20601", t);

    // A search through A finds both files, each at its IPv6 peer.
    let mut args = vec![
        "search",
        "six",
        "--connect",
        "[::1]:20601",
        "--wait",
        "3",
        "--json",
    ];
    args.extend(ONESHOT);
    let out = ok(&run(&args));
    let mut hits: Vec<(String, String, String)> = out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let s = |k: &str| v[k].as_str().unwrap().to_string();
            (s("peer"), s("name"), s("tcp"))
        })
        .collect();
    hits.sort();
    assert_eq!(
        hits,
        vec![
            (
                "[::1]:20601".into(),
                "six song.ogg".into(),
                "[::1]:10601".into()
            ),
            (
                "[::1]:20602".into(),
                "six film.mkv".into(),
                "[::1]:10602".into()
            ),
        ]
    );
    // Printed for people with brackets too.
    let mut args = vec!["search", "song", "--connect", "[::1]:20601", "--wait", "3"];
    args.extend(ONESHOT);
    let out = ok(&run(&args));
    assert!(
        out.starts_with("[::1]:20601\t700001\tsix song.ogg"),
        "{out}"
    );

    // By name from a peer given by its IPv6 address.
    let dl = tempfile::tempdir().unwrap();
    let o = dl.path().to_str().unwrap();
    let mut args = vec!["get", "six film.mkv", "--from", "[::1]:20602", "--out", o];
    args.extend(ONESHOT);
    ok(&run(&args));
    assert!(std::fs::read(dl.path().join("six film.mkv")).unwrap() == film);

    // By hash, found through A (hashing runs in the background after
    // start and nothing announces its end to another process: retry).
    let hash = blake3::hash(&song).to_hex().to_string();
    let dl2 = tempfile::tempdir().unwrap();
    let o2 = dl2.path().to_str().unwrap();
    let mut args = vec![
        "get",
        &hash,
        "--connect",
        "[::1]:20601",
        "--out",
        o2,
        "--wait",
        "2",
        "--json",
    ];
    args.extend(ONESHOT);
    let report = get_when_found(&args);
    let path = report["path"].as_str().unwrap();
    assert!(std::fs::read(path).unwrap() == song);
    assert!(
        report["sources"].to_string().contains("[::1]:10601"),
        "{report}"
    );

    // The dual-stack node serves an IPv4 peer through the same sockets; it
    // knows it by its IPv4 address, never as ::ffff:127.0.61.2.
    let dl3 = tempfile::tempdir().unwrap();
    let o3 = dl3.path().to_str().unwrap();
    ok(&run(&[
        "get",
        "six film.mkv",
        "--from",
        "127.0.0.1:20602",
        "--out",
        o3,
        "--bind",
        "127.0.61.2",
        "--udp-port",
        "0",
        "--tcp-port",
        "0",
    ]));
    assert!(std::fs::read(dl3.path().join("six film.mkv")).unwrap() == film);
    b.wait_log("peer joined peer=127.0.61.2:", t);
    assert!(!b.log_text().contains("::ffff:"), "{}", b.log_text());
}
