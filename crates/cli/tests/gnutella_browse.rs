//! `rutella browse IP:PORT` lists a Gnutella servent's files (here a
//! `rutella serve` with Gnutella on, browsed over HTTP on loopback): as
//! JSON lines with size, SHA-1 and index, or as text lines in which a
//! hostile name is escaped, never printed raw.

mod common;

use common::{run, write_file, Serve};
use std::time::{Duration, Instant};

#[test]
fn browse_lists_a_servents_files() {
    let share = tempfile::tempdir().unwrap();
    write_file(&share.path().join("music/free song.ogg"), b"a free song");
    write_file(&share.path().join("evil\u{1b}[31m.txt"), b"red");
    // Gnutella on (its HTTP answers browse host); the ultrapeer address is
    // a closed loopback port: nothing to join is needed here.
    let _peer = Serve::start(&[
        "--share",
        share.path().to_str().unwrap(),
        "--bind",
        "127.0.9.11",
        "--gnutella-connect",
        "127.0.0.1:9",
    ]);
    // The files are listed once hashed (with their SHA-1).
    let deadline = Instant::now() + Duration::from_secs(20);
    let hits = loop {
        let out = run(&["browse", "127.0.9.11:10000", "--json", "--wait", "5"]);
        let hits: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if out.status.success()
            && hits
                .iter()
                .any(|h| h["name"] == "free song.ogg" && h["sha1"].is_string())
        {
            break hits;
        }
        assert!(
            Instant::now() < deadline,
            "never listed: {hits:?} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let song = hits
        .iter()
        .find(|h| h["name"] == "free song.ogg")
        .unwrap_or_else(|| panic!("{hits:?}"));
    assert_eq!(song["size"], 11);
    assert_eq!(song["network"], "gnutella");
    assert_eq!(song["vendor"], "RTLA");
    assert_eq!(song["tcp"], "127.0.9.11:10000");
    assert!(song["index"].is_u64());
    // SHA-1 of "a free song", in base32.
    assert_eq!(song["sha1"], "urn:sha1:PVDLDGHXBKOTDYQ6A5RAHTUISOVTUCAB");

    // Text: one line a file, the hostile name escaped.
    let out = run(&["browse", "127.0.9.11:10000"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("127.0.9.11:10000\t11\tfree song.ogg"),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "a raw escape: {text:?}");

    // Nobody there: a network failure, not a hang.
    let out = run(&["browse", "127.0.9.12:10000", "--wait", "3"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
