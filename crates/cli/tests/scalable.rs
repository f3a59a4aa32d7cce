//! Fifty `rutella serve` processes in scalable mode on loopback: searches
//! for files held by several peers succeed, and every node's number of
//! neighbours stays within the configured range.
//!
//! Address plan: this file uses 127.0.8.0/24 (classic ports).

mod common;
use common::*;
use std::time::{Duration, Instant};

const NODES: usize = 50;
/// The overlay's default degree range.
const MIN_DEGREE: usize = 8;
const MAX_DEGREE: usize = 32;

fn ip(i: usize) -> String {
    format!("127.0.8.{}", 10 + i)
}

/// The degree a node's log reports last.
fn degree(log: &str) -> Option<usize> {
    log.lines()
        .rev()
        .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("degree=")))
        .and_then(|d| d.parse().ok())
}

#[test]
fn fifty_processes_in_scalable_mode() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for i in 0..NODES {
        let share = root.path().join(format!("share-{i}"));
        // "shared song K" is held by the five nodes with i % 10 == K.
        write_file(&share.join(format!("shared song {}.ogg", i % 10)), b"song");
        write_file(&share.join(format!("unique file {i}.txt")), b"unique");
        let share = share.to_str().unwrap().to_string();
        let me = ip(i);
        let mut args = vec!["--share", &share, "--bind", &me, "--mode", "scalable"];
        args.extend(["--ping-interval", "1s", "--pong-timeout", "500ms"]);
        let join = ip(i / 2);
        if i > 0 {
            // Join through an earlier node, not always the first.
            args.extend(["--connect", &join]);
        }
        nodes.push(Serve::start_with(&args, false));
    }

    // The overlay settles: every node within the degree range (bounded
    // wait). A node's reported degree changes only with a line of its log,
    // so the wait is on the log of a node out of range.
    let deadline = Instant::now() + Duration::from_secs(60);
    let in_range = |d: Option<usize>| d.is_some_and(|d| (MIN_DEGREE..=MAX_DEGREE).contains(&d));
    while let Some(n) = nodes.iter().find(|n| !in_range(degree(&n.log_text()))) {
        let len = n.log_text().len();
        if !n.lines.wait_longer_than(len, deadline) {
            let degrees: Vec<Option<usize>> = nodes.iter().map(|n| degree(&n.log_text())).collect();
            panic!("degrees did not settle in range: {degrees:?}");
        }
    }

    // Searches from one-shot processes joining through various nodes.
    for k in 0..10 {
        let via = ip((k * 7) % NODES);
        let text = format!("SHARED SONG {k}");
        let out = run(&[
            "search",
            &text,
            "--connect",
            &via,
            "--bind",
            "127.0.8.200",
            "--mode",
            "scalable",
            "--ping-interval",
            "1s",
            "--pong-timeout",
            "500ms",
            "--wait",
            "6",
            "--json",
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "search {k} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let hits: Vec<serde_json::Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(!hits.is_empty());
        for h in &hits {
            assert_eq!(h["name"], format!("shared song {k}.ogg"));
            let peer = h["peer"].as_str().unwrap();
            let i: usize = peer.rsplit('.').next().unwrap().parse::<usize>().unwrap() - 10;
            assert_eq!(i % 10, k, "only holders answer: {peer}");
        }
    }

    // Still within range after all that traffic.
    for (i, n) in nodes.iter().enumerate() {
        let d = degree(&n.log_text());
        assert!(
            d.is_some_and(|d| (MIN_DEGREE..=MAX_DEGREE).contains(&d)),
            "node {i}: {d:?}"
        );
    }
}
