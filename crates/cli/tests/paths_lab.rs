//! Two firewalled peers meet (crates/lab): H1 and H2, each behind a home
//! router that maps nothing and drops every unsolicited packet, both
//! joined to the public peer P. H2 cannot connect to H1, and H1 cannot
//! connect back to H2 (a push fails), so H2 asks P for a hole punch: the
//! file arrives byte-exact by name and by hash over the punched
//! connection. With router 2 symmetric for TCP (a new external port for
//! every connection) punching fails and the download goes through P's
//! relay; with P started with `--no-relay`, the downloader reports the
//! refusal. Router 2 keeps its UDP ports in these cases: the classic
//! overlay passes no query on, so H2 finds H1's file only when their
//! datagrams meet, which a symmetric mapping of UDP would prevent.
//! Needs root; prints one skip line elsewhere.
//!
//! Address plan: the lab's internet 11.0.0.0/24 (P at .2, router 1 at
//! .11, router 2 at .12), the routers' LANs behind them.

mod common;
use common::lab::*;
use common::*;
use rutella_lab::{Host, Lab, RouterKind};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

/// The longest any one step may take.
const STEP: Duration = Duration::from_secs(30);

/// Flags of every downloader and search: short ping rounds (so that H1,
/// which P introduces, becomes a peer at once), a direct connection that
/// router 1 drops is given up after 1 s, a push (which cannot come in
/// through router 2) after 2 s.
const GET: [&str; 8] = [
    "--ping-interval",
    "300ms",
    "--pong-timeout",
    "150ms",
    "--connect-timeout",
    "1s",
    "--push-timeout",
    "2s",
];

/// The lab: P public (with `p_args`), H1 behind router 1 sharing `data`
/// as `name` and joined to P, H2 behind router 2 (a new external port for
/// every TCP connection when `symmetric_tcp`); P shares `p_files`.
struct Setup {
    lab: Lab,
    h2: Host,
    dir: tempfile::TempDir,
    p_node: Proc,
    h1_node: Proc,
}

fn setup(
    name: &str,
    data: &[u8],
    symmetric_tcp: bool,
    p_args: &[&str],
    p_files: &[(&str, &[u8])],
    h1_args: &[&str],
) -> Option<Setup> {
    let mut lab = Lab::or_skip()?;
    let p = lab.public_host("p", 2).unwrap();
    let r1 = lab.router("r1", 11, RouterKind::default()).unwrap();
    let h1 = lab.host_behind(&r1, "h1").unwrap();
    let r2 = lab
        .router(
            "r2",
            12,
            RouterKind {
                symmetric_tcp,
                ..RouterKind::default()
            },
        )
        .unwrap();
    let h2 = lab.host_behind(&r2, "h2").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("h1-share");
    write_file(&share.join(name), data);
    let p_share = dir.path().join("p-share");
    std::fs::create_dir_all(&p_share).unwrap();
    for (file, bytes) in p_files {
        write_file(&p_share.join(file), bytes);
    }
    let mut args = vec!["--share", p_share.to_str().unwrap(), "--no-port-mapping"];
    args.extend(p_args);
    let p_node = Proc::serve(&lab, &p, dir.path(), "p", &args);
    p_node.wait_for("node started");
    let mut args = vec!["--share", share.to_str().unwrap(), "--connect", "11.0.0.2"];
    args.extend(h1_args);
    let h1_node = Proc::serve(&lab, &h1, dir.path(), "h1", &args);
    h1_node.wait_for("peer joined");
    Some(Setup {
        lab,
        h2,
        dir,
        p_node,
        h1_node,
    })
}

/// H2's search for `text` until H1 answers with a hashed file: the hit.
fn find(s: &Setup, text: &str) -> serde_json::Value {
    find_hit(&s.lab, &s.h2, text, &GET, "11.0.0.11", &s.h1_node)
}

/// H2's `get` of `what` (by name from `peer`, or by hash) into `out`.
fn get(s: &Setup, what: &str, peer: Option<&str>, out: &Path) -> Output {
    let mut args = vec!["get", what];
    if let Some(peer) = peer {
        args.extend(["--from", peer]);
    }
    args.extend(["--connect", "11.0.0.2"]);
    args.extend(GET);
    args.extend(["--out", out.to_str().unwrap(), "--wait", "5", "--json"]);
    run_in(&s.lab, &s.h2, &args)
}

/// [`get`] by hash, again while H2's one-shot node asked only P before
/// H1 became its peer (the search ends once every peer known answered).
fn get_hash(s: &Setup, hash: &str, out: &Path) -> Output {
    for _ in 0..10 {
        let g = get(s, hash, None, out);
        if g.status.success() || !String::from_utf8_lossy(&g.stderr).contains("no peer offers") {
            return g;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    get(s, hash, None, out)
}

/// The path of H1's source in a report.
fn h1_path(r: &serde_json::Value) -> String {
    source(r, "11.0.0.11")["path"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn punched_by_name_and_by_hash() {
    let data = pattern(3_000_000, 131);
    let Some(s) = setup("lab-punch.ogg", &data, false, &[], &[], &[]) else {
        return;
    };
    let hit = find(&s, "lab-punch");
    eprintln!("hit: {hit}");
    assert_eq!(hit["proxies"][0], "11.0.0.2:20000", "{hit}");
    let peer = hit["peer"].as_str().unwrap().to_string();
    let hash = hit["hash"].as_str().unwrap().to_string();

    let out = s.dir.path().join("by-name");
    let started = Instant::now();
    let r = report_of(
        &get(&s, "lab-punch.ogg", Some(&peer), &out),
        "by name",
        &s.h1_node,
    );
    eprintln!("by name: {r} in {:?}", started.elapsed());
    let got = std::fs::read(r["path"].as_str().unwrap()).unwrap();
    assert!(got == data, "by name: not the same bytes");
    assert_eq!(h1_path(&r), "punch", "{r}");

    let out = s.dir.path().join("by-hash");
    let started = Instant::now();
    let g = get_hash(&s, &hash, &out);
    let r = report_of(&g, "by hash", &s.h1_node);
    eprintln!("by hash: {r} in {:?}", started.elapsed());
    let got = std::fs::read(r["path"].as_str().unwrap()).unwrap();
    assert!(got == data, "by hash: not the same bytes");
    assert_eq!(h1_path(&r), "punch", "{r}");
    // H1 served it over the punched connection.
    s.h1_node.wait_for("punched connection open");
}

#[test]
fn relayed_when_router_2_is_symmetric_for_tcp() {
    let data = pattern(2_000_000, 132);
    let Some(s) = setup("lab-relay.ogg", &data, true, &[], &[], &[]) else {
        return;
    };
    let hit = find(&s, "lab-relay");
    let hash = hit["hash"].as_str().unwrap().to_string();
    let out = s.dir.path().join("relayed");
    let started = Instant::now();
    let g = get_hash(&s, &hash, &out);
    let r = report_of(&g, "relayed", &s.h1_node);
    eprintln!("relayed: {r} in {:?}", started.elapsed());
    let got = std::fs::read(r["path"].as_str().unwrap()).unwrap();
    assert!(got == data, "relayed: not the same bytes");
    assert!(h1_path(&r).starts_with("relay 11.0.0.2:"), "{r}");
    // Punching was tried first and failed.
    let log = String::from_utf8_lossy(&g.stderr);
    assert!(log.contains("hole punching to"), "{log}");
    s.h1_node.wait_for("relay circuit spliced; serving it");
    s.p_node.wait_for("spliced");
}

#[test]
fn a_relay_limit_below_the_file_size_stops_the_download_and_the_error_names_it() {
    let data = pattern(2_000_000, 135);
    let Some(s) = setup(
        "lab-limit.ogg",
        &data,
        true,
        &["--relay-max-bytes", "1000000"],
        &[],
        &[],
    ) else {
        return;
    };
    let hit = find(&s, "lab-limit");
    let hash = hit["hash"].as_str().unwrap().to_string();
    let out = s.dir.path().join("limited");
    let g = get_hash(&s, &hash, &out);
    let said = String::from_utf8_lossy(&g.stderr).to_string();
    eprintln!("limited: {said}");
    assert!(!g.status.success(), "{said}");
    assert!(
        said.contains("the relay closes it after 1000000 bytes"),
        "{said}"
    );
    assert!(said.contains("download failed"), "{said}");
    // The final error, not only the log, names the relay and its limit.
    let last = said
        .lines()
        .rfind(|l| l.starts_with("rutella: "))
        .unwrap_or_else(|| panic!("no final error: {said}"));
    assert!(
        last.contains(
            "relay 11.0.0.2 closed the circuit at its limit of 1000000 bytes per circuit"
        ),
        "{last}"
    );
    // No file under the name: only a partial one, whose verified part is
    // the file's.
    let names: Vec<String> = std::fs::read_dir(&out)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(!names.iter().any(|n| n == "lab-limit.ogg"), "{names:?}");
}

#[test]
fn a_node_with_no_relay_refuses_and_the_downloader_says_so() {
    let data = pattern(500_000, 133);
    let Some(s) = setup("lab-norelay.ogg", &data, true, &["--no-relay"], &[], &[]) else {
        return;
    };
    let hit = find(&s, "lab-norelay");
    let hash = hit["hash"].as_str().unwrap().to_string();
    let out = s.dir.path().join("refused");
    let g = get_hash(&s, &hash, &out);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&g.stdout),
        String::from_utf8_lossy(&g.stderr)
    );
    eprintln!("refused: {said}");
    assert!(!g.status.success(), "{said}");
    assert!(said.contains("refused the circuit"), "{said}");
    // Nothing written as the file.
    let complete = std::fs::read_dir(&out)
        .map(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy() == "lab-norelay.ogg")
        })
        .unwrap_or(false);
    assert!(!complete, "a file appeared");
}

#[test]
fn one_source_punched_and_one_direct_in_one_download() {
    // P serves its copy at 500 kB/s, so that H1's punched connection
    // (after the direct and push attempts fail, about 3.5 s) takes a part.
    let data = pattern(6_000_000, 134);
    let Some(s) = setup(
        "lab-mixed.ogg",
        &data,
        false,
        &["--rate-limit", "500000"],
        &[("copy of lab-mixed.ogg", &data)],
        &[],
    ) else {
        return;
    };
    let hit = find(&s, "lab-mixed");
    let hash = hit["hash"].as_str().unwrap().to_string();
    // P hashes in the background too: wait until it answers for the hash.
    wait_for_hash(&s.lab, &s.h2, "copy of lab-mixed", &hash, &GET);
    let out = s.dir.path().join("mixed");
    // Retried while H1 was not yet a peer of the one-shot node: a
    // download from P alone is not this case.
    let mut r = serde_json::Value::Null;
    for _ in 0..10 {
        let g = get_hash(&s, &hash, &out);
        r = report_of(&g, "mixed", &s.h1_node);
        if r["sources"].as_array().is_some_and(|a| a.len() == 2) {
            break;
        }
        let _ = std::fs::remove_dir_all(&out);
    }
    eprintln!("mixed: {r}");
    let got = std::fs::read(r["path"].as_str().unwrap()).unwrap();
    assert!(got == data, "mixed: not the same bytes");
    let direct = source(&r, "11.0.0.2:");
    let punched = source(&r, "11.0.0.11");
    assert_eq!(direct["path"], "direct", "{r}");
    assert_eq!(punched["path"], "punch", "{r}");
    assert!(direct["verified"].as_u64().unwrap() > 0, "{r}");
    assert!(punched["verified"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(
        direct["verified"].as_u64().unwrap() + punched["verified"].as_u64().unwrap(),
        data.len() as u64,
        "{r}"
    );
}

#[test]
fn a_killed_download_over_a_punched_connection_resumes() {
    // 12 MB at 1.5 MB/s: the first verified batch (4 MiB) is recorded
    // well before the end, so the download can be killed in between.
    let data = pattern(12_000_000, 136);
    let Some(s) = setup(
        "lab-resume.ogg",
        &data,
        false,
        &[],
        &[],
        &["--rate-limit", "1500000"],
    ) else {
        return;
    };
    let hit = find(&s, "lab-resume");
    let hash = hit["hash"].as_str().unwrap().to_string();
    let out = s.dir.path().join("resumed");
    let mut args = vec!["get", hash.as_str(), "--connect", "11.0.0.2"];
    args.extend(GET);
    args.extend(["--out", out.to_str().unwrap(), "--wait", "5", "--json"]);
    // Started again while the one-shot node asked only P (see get_hash).
    let mut first = None;
    for i in 0..10 {
        let mut p = Proc::spawn(&s.lab, &s.h2, s.dir.path(), &format!("get{i}"), &args);
        let deadline = Instant::now() + STEP;
        while p.child_alive() && !p.stderr().contains("connected peer=") {
            assert!(Instant::now() < deadline, "no connection: {}", p.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
        if p.stderr().contains("connected peer=") {
            first = Some(p);
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut first = first.expect("the first download never connected");
    kill_after_first_record(&mut first, &out);
    assert!(first.stderr().contains("path=punch"), "{}", first.stderr());
    let again = get_hash(&s, &hash, &out);
    let r = report_of(&again, "resumed", &s.h1_node);
    eprintln!("resumed: {r}");
    let got = std::fs::read(r["path"].as_str().unwrap()).unwrap();
    assert!(got == data, "resumed: not the same bytes");
    let log = String::from_utf8_lossy(&again.stderr);
    let resumed = resumed_from(&log);
    eprintln!("resumed from {resumed}");
    assert!(resumed > 1 << 20 && resumed < data.len() as u64, "{log}");
    assert!(log.contains("path=punch"), "{log}");
}

/// P public and H1 behind router 1 sharing `data` as `name`, both
/// with ping rounds `pings` (P without port mapping), H1 joined to P; H2
/// behind router 2; the hash of the file once H2 finds it.
fn setup_with_pings(
    name: &str,
    data: &[u8],
    pings: &[&str],
) -> Option<(Lab, Host, tempfile::TempDir, Proc, Proc, String)> {
    let mut lab = Lab::or_skip()?;
    let p = lab.public_host("p", 2).unwrap();
    let r1 = lab.router("r1", 11, RouterKind::default()).unwrap();
    let h1 = lab.host_behind(&r1, "h1").unwrap();
    let r2 = lab.router("r2", 12, RouterKind::default()).unwrap();
    let h2 = lab.host_behind(&r2, "h2").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("h1-share");
    write_file(&share.join(name), data);
    let p_share = dir.path().join("p-share");
    std::fs::create_dir_all(&p_share).unwrap();
    let mut args = vec!["serve", "--share", p_share.to_str().unwrap()];
    args.extend(["--no-port-mapping"]);
    args.extend(pings);
    let p_node = Proc::spawn(&lab, &p, dir.path(), "p", &args);
    p_node.wait_for("node started");
    let mut args = vec!["serve", "--share", share.to_str().unwrap()];
    args.extend(["--connect", "11.0.0.2"]);
    args.extend(pings);
    let h1_node = Proc::spawn(&lab, &h1, dir.path(), "h1", &args);
    h1_node.wait_for("peer joined");
    // H1 hashes its file in the background: found once before the gets.
    let hit = find_hit(&lab, &h2, name, &GET, "11.0.0.11", &h1_node);
    let hash = hit["hash"].as_str().unwrap().to_string();
    Some((lab, h2, dir, p_node, h1_node, hash))
}

/// H2's one-shot get of `hash` (with `extra` flags) into `out`: the file
/// must come from H1, byte-exact; the path it took.
#[allow(clippy::too_many_arguments)]
fn get_from_h1(
    lab: &Lab,
    h2: &Host,
    hash: &str,
    extra: &[&str],
    out: &Path,
    data: &[u8],
    what: &str,
    nodes: [&Proc; 2],
) -> String {
    let mut args = vec!["get", hash, "--connect", "11.0.0.2"];
    args.extend(GET);
    args.extend(extra);
    args.extend(["--out", out.to_str().unwrap(), "--wait", "5", "--json"]);
    let started = Instant::now();
    let g = run_in(lab, h2, &args);
    let log = String::from_utf8_lossy(&g.stderr).to_string();
    let said = || format!("{log}\nP: {}\nH1: {}", nodes[0].stderr(), nodes[1].stderr());
    assert!(g.status.success(), "{what}: {}", said());
    let r: serde_json::Value = serde_json::from_slice(&g.stdout).unwrap();
    let path = h1_path(&r);
    eprintln!("{what}: {path} in {:?}", started.elapsed());
    let got = std::fs::read(r["path"].as_str().unwrap()).unwrap();
    assert!(got == data, "{what}: not the same bytes");
    // A punch, or a relay once the punch budgets for H2's address (4
    // per 10 s, two punches a download) are spent.
    assert!(
        path == "punch" || path.starts_with("relay 11.0.0.2:"),
        "{what}: {r}\n{}",
        said()
    );
    path
}

/// The sharing nodes' ping rounds in [`repeated_one_shot_gets_from_one_address`]:
/// rounds of 1 s whose pongs may take 5 s (as a loaded machine needs), so
/// that a one-shot node that left is still a peer of theirs when the next
/// one starts at the same address.
const SLOW_PINGS: [&str; 4] = ["--ping-interval", "1s", "--pong-timeout", "5s"];

/// One-shot gets, one after the other, from one address behind router 2
/// (the same external address and ports every time): each is a new node
/// there, which P introduces to H1 again, so every one meets H1 and takes
/// the file from it.
#[test]
fn repeated_one_shot_gets_from_one_address() {
    let data = pattern(200_000, 137);
    let Some((lab, h2, dir, p_node, h1_node, hash)) =
        setup_with_pings("lab-again.ogg", &data, &SLOW_PINGS)
    else {
        return;
    };
    for i in 0..5 {
        let out = dir.path().join(format!("again-{i}"));
        let what = format!("get {i}");
        let path = get_from_h1(
            &lab,
            &h2,
            &hash,
            &[],
            &out,
            &data,
            &what,
            [&p_node, &h1_node],
        );
        if i == 0 {
            assert_eq!(path, "punch");
        }
    }
}

/// Many one-shot nodes behind router 2, each at a port of its own, join P
/// and leave; with pongs allowed longer than a ping round, P and H1 still
/// drop each one a pong timeout after it went silent. So the later gets
/// are introduced to H1 (P introduces at most 16 of its peers, which
/// would otherwise be mostly the ones gone) and take the file from it.
#[test]
fn one_shot_nodes_that_left_are_dropped_and_later_gets_still_meet_the_source() {
    const GONE: u16 = 30;
    let data = pattern(100_000, 138);
    let pings = ["--ping-interval", "300ms", "--pong-timeout", "1s"];
    let Some((lab, h2, dir, p_node, h1_node, hash)) =
        setup_with_pings("lab-gone.ogg", &data, &pings)
    else {
        return;
    };
    let nothing = "0".repeat(64);
    for i in 0..GONE {
        let port = (21_000 + i).to_string();
        let mut args = vec!["get", nothing.as_str(), "--connect", "11.0.0.2"];
        args.extend(GET);
        args.extend(["--udp-port", &port, "--wait", "0.3"]);
        let g = run_in(&lab, &h2, &args);
        assert!(!g.status.success(), "found nothing: {:?}", g);
    }
    // P heard of them all; each is gone a pong timeout (1 s) after its
    // last message.
    p_node.wait_for("peer joined peer=11.0.0.12:21029");
    let deadline = Instant::now() + STEP;
    while p_node
        .stderr()
        .matches("peer left peer=11.0.0.12:21")
        .count()
        < GONE as usize
    {
        assert!(
            Instant::now() < deadline,
            "P kept one-shot nodes that left: {}",
            p_node.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for i in 0..3u16 {
        let port = (22_000 + i).to_string();
        let out = dir.path().join(format!("gone-{i}"));
        let what = format!("get {i}");
        let extra = ["--udp-port", port.as_str()];
        get_from_h1(
            &lab,
            &h2,
            &hash,
            &extra,
            &out,
            &data,
            &what,
            [&p_node, &h1_node],
        );
    }
}
