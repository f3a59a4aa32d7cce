//! Downloads by hash between `rutella` processes, including a downloader
//! killed with SIGKILL and resumed by the next node started on the same
//! downloads folder, without being asked again.
//!
//! Address plan: this file uses 127.0.7.0/24 (classic ports).

mod common;
use common::*;
use std::time::Duration;

#[test]
fn get_by_hash_from_several_processes() {
    let data = pattern(3_000_001, 21);
    let hash = blake3::hash(&data);
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    write_file(&dirs[0].path().join("one name.iso"), &data);
    write_file(&dirs[1].path().join("other/another name.iso"), &data);
    let _a = Serve::start(&[
        "--share",
        dirs[0].path().to_str().unwrap(),
        "--bind",
        "127.0.7.2",
    ]);
    let _b = Serve::start(&[
        "--share",
        dirs[1].path().to_str().unwrap(),
        "--bind",
        "127.0.7.3",
        "--connect",
        "127.0.7.2",
    ]);
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    // Hashing runs in the background after start: retried.
    let report = get_when_found(&[
        "get",
        &hex(&hash),
        "--connect",
        "127.0.7.2",
        "--out",
        o,
        "--bind",
        "127.0.7.9",
        "--wait",
        "2",
        "--json",
    ]);
    let path = report["path"].as_str().unwrap();
    assert_eq!(blake3::hash(&std::fs::read(path).unwrap()), hash);
    let sources = report["sources"].as_array().unwrap();
    assert!(!sources.is_empty() && sources.len() <= 2, "{report}");
    // A hash nobody has: exit code 4. Not a hash: usage, exit 2.
    let none = run(&[
        "get",
        &"0".repeat(64),
        "--connect",
        "127.0.7.2",
        "--out",
        o,
        "--bind",
        "127.0.7.9",
        "--wait",
        "1",
    ]);
    assert_eq!(none.status.code(), Some(4));
    let bad = run(&[
        "get",
        "song.mp3",
        "--connect",
        "127.0.7.2",
        "--out",
        o,
        "--bind",
        "127.0.7.9",
    ]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn a_downloader_killed_with_sigkill_resumes_on_its_next_start() {
    let size = 6 << 20;
    let data = pattern(size, 5);
    let hash = blake3::hash(&data);
    let share = tempfile::tempdir().unwrap();
    write_file(&share.path().join("movie.mkv"), &data);
    let _server = Serve::start(&[
        "--share",
        share.path().to_str().unwrap(),
        "--bind",
        "127.0.7.20",
        "--rate-limit",
        "700000",
    ]);
    wait_hashed("127.0.7.20", "127.0.7.99", "movie", &hex(&hash));
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    let mut get = bin()
        .args([
            "get",
            &hex(&hash),
            "--connect",
            "127.0.7.20",
            "--out",
            o,
            "--bind",
            "127.0.7.21",
            "--wait",
            "2",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until verified progress has been recorded (checkpoints every
    // second): a progress file whose bitmap (after its 64-byte head, before
    // its 32-byte checksum) has a group set. The other process announces
    // nothing, so the file is polled.
    let mut state = None;
    wait_until(
        "no verified progress recorded",
        Duration::from_secs(30),
        || {
            state = std::fs::read_dir(out.path())
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with(".part.state"));
            let bytes = state
                .as_ref()
                .and_then(|p| std::fs::read(p).ok())
                .unwrap_or_default();
            bytes.len() > 64 + 32 && bytes[64..bytes.len() - 32].iter().any(|b| *b != 0)
        },
    );
    let state = state.unwrap();
    get.kill().unwrap(); // SIGKILL
    let _ = get.wait();
    assert!(state.exists());
    assert!(
        !out.path().join("movie.mkv").exists(),
        "not complete when killed"
    );

    // A node started on the same downloads folder picks it up by itself.
    let empty = tempfile::tempdir().unwrap();
    let node = Serve::start(&[
        "--share",
        empty.path().to_str().unwrap(),
        "--downloads",
        o,
        "--bind",
        "127.0.7.21",
    ]);
    node.wait_log("resuming an unfinished download", Duration::from_secs(10));
    node.wait_log("download complete", Duration::from_secs(30));
    let done = out.path().join("movie.mkv");
    assert_eq!(blake3::hash(&std::fs::read(&done).unwrap()), hash);
    // Only what was not verified before the kill crossed the wire again.
    let log = node.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("download complete"))
        .unwrap();
    let bytes: u64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("bytes="))
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {line:?}"));
    assert!(
        bytes < size as u64 && bytes > 0,
        "{bytes} of {size} bytes received after the restart"
    );
}
