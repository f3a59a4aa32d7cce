//! Fifty `rutella serve` processes in scalable mode on loopback, ten
//! ultrapeers and forty leaves: searches for files held by several peers
//! succeed, and every node's number of links stays within the configured
//! range. Then a leaf that ultrapeers refuse for lack of slots is
//! promoted.
//!
//! Address plan: this file uses 127.0.8.0/24 and 127.0.9.0/24 (classic
//! ports).

mod common;
use common::*;
use std::time::{Duration, Instant};

const NODES: usize = 50;
/// The first ones are ultrapeers, the others leaves.
const ULTRAPEERS: usize = 10;
/// The overlay's default minimum degree (ultrapeer neighbours of an
/// ultrapeer); with ten ultrapeers, each can have nine at most.
const MIN_DEGREE: usize = 8;
const MAX_DEGREE: usize = ULTRAPEERS - 1;
/// The ultrapeers a leaf keeps, by default.
const LEAF_ULTRAPEERS: usize = 3;

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
        args.extend(["--tier", if i < ULTRAPEERS { "ultrapeer" } else { "leaf" }]);
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
    let in_range = |i: usize, d: Option<usize>| {
        d.is_some_and(|d| {
            if i < ULTRAPEERS {
                (MIN_DEGREE..=MAX_DEGREE).contains(&d)
            } else {
                d == LEAF_ULTRAPEERS
            }
        })
    };
    while let Some((_, n)) = nodes
        .iter()
        .enumerate()
        .find(|(i, n)| !in_range(*i, degree(&n.log_text())))
    {
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
        assert!(in_range(i, d), "node {i}: {d:?}");
    }
}

/// One ultrapeer with room for two leaves, two leaves, then a reachable
/// node of tier auto: the ultrapeer refuses it for lack of slots, so it
/// becomes an ultrapeer after its (short) wait, and a leaf that arrives
/// later attaches to it.
#[test]
fn a_leaf_refused_for_lack_of_slots_is_promoted() {
    let root = tempfile::tempdir().unwrap();
    let ip = |i: usize| format!("127.0.9.{}", 10 + i);
    let common = [
        "--mode",
        "scalable",
        "--ping-interval",
        "1s",
        "--pong-timeout",
        "500ms",
        "--leaf-ultrapeers",
        "1",
        "--max-leaves",
        "2",
    ];
    let start = |i: usize, extra: &[&str]| {
        let share = root.path().join(format!("share-{i}"));
        write_file(&share.join(format!("file {i}.txt")), b"x");
        let share = share.to_str().unwrap().to_string();
        let me = ip(i);
        let first = ip(0);
        let mut args = vec!["--share", &share, "--bind", &me];
        args.extend(common);
        if i > 0 {
            args.extend(["--connect", &first]);
        }
        args.extend(extra);
        Serve::start_with(&args, false)
    };
    let up = start(0, &["--tier", "ultrapeer"]);
    let leaves = [start(1, &["--tier", "leaf"]), start(2, &["--tier", "leaf"])];
    for l in &leaves {
        l.wait_log("peer joined", Duration::from_secs(20));
    }
    let candidate = start(
        3,
        &[
            "--tier",
            "auto",
            "--reachable",
            "yes",
            "--promote-wait",
            "1s",
            "--ultrapeer-min-uptime",
            "1s",
        ],
    );
    candidate.wait_log(
        "ultrapeers scarce: becoming an ultrapeer",
        Duration::from_secs(30),
    );
    // A newcomer finds the full ultrapeer and is sent on to the new one.
    let late = start(4, &["--tier", "leaf"]);
    late.wait_log("peer joined", Duration::from_secs(20));
    let text = late.log_text();
    assert!(text.contains(&format!("peer={}:", ip(3))), "{text}");
    drop(up);
}
