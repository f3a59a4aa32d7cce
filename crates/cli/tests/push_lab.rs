//! Pushes in the network lab (crates/lab): H2, behind a home router that
//! maps nothing and drops every unsolicited packet, joins the public peer
//! P. A downloader on P's host cannot connect to H2, so it asks H2 to
//! connect to it (a push): the file arrives byte-exact by name and by
//! hash, a download killed midway resumes, and a download by hash takes
//! one source directly (the public Q) and the other (H2) by push. Needs
//! root; prints one skip line elsewhere.
//!
//! Address plan: the lab's internet 11.0.0.0/24 (P at .2, Q at .3, the
//! router at .12), H2's LAN 192.168.1.0/24.

mod common;
use common::lab::*;
use common::*;
use rutella_lab::{Host, Lab, RouterKind};
use std::time::Instant;

/// Flags of every downloader and search: short ping rounds (so that H2,
/// which P introduces, becomes a peer at once), a direct connection that
/// the router drops is given up after 1 s, a push waits up to 10 s.
const GET: [&str; 8] = [
    "--ping-interval",
    "300ms",
    "--pong-timeout",
    "150ms",
    "--connect-timeout",
    "1s",
    "--push-timeout",
    "10s",
];

/// The lab: P public, H2 behind a router without port mapping sharing
/// `data` as `name`, joined to P.
struct Setup {
    lab: Lab,
    p: Host,
    dir: tempfile::TempDir,
    _p_node: Proc,
    h2_node: Proc,
}

fn setup(name: &str, data: &[u8], h2_rate: &str) -> Option<Setup> {
    let mut lab = Lab::or_skip()?;
    let p = lab.public_host("p", 2).unwrap();
    let r2 = lab.router("r2", 12, RouterKind::default()).unwrap();
    let h2 = lab.host_behind(&r2, "h2").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("h2-share");
    write_file(&share.join(name), data);
    let p_share = dir.path().join("p-share");
    std::fs::create_dir_all(&p_share).unwrap();
    let p_node = Proc::serve(
        &lab,
        &p,
        dir.path(),
        "p",
        &["--share", p_share.to_str().unwrap(), "--no-port-mapping"],
    );
    p_node.wait_for("node started");
    let h2_node = Proc::serve(
        &lab,
        &h2,
        dir.path(),
        "h2",
        &[
            "--share",
            share.to_str().unwrap(),
            "--connect",
            "11.0.0.2",
            "--rate-limit",
            h2_rate,
        ],
    );
    h2_node.wait_for("peer joined");
    Some(Setup {
        lab,
        p,
        dir,
        _p_node: p_node,
        h2_node,
    })
}

/// P's search for `text` until H2 answers with a hashed file: the hit.
fn find(s: &Setup, text: &str) -> serde_json::Value {
    find_hit(&s.lab, &s.p, text, &GET, "11.0.0.12", &s.h2_node)
}

#[test]
fn pushed_by_name_and_by_hash_and_a_killed_download_resumes() {
    // 12 MB at 1.5 MB/s: the first verified batch (4 MiB) is recorded
    // well before the end, so the download can be killed in between.
    let data = pattern(12_000_000, 91);
    let Some(s) = setup("lab-push.ogg", &data, "1500000") else {
        return;
    };
    let hit = find(&s, "lab-push");
    eprintln!("hit: {hit}");
    // H2 names its push id and, first, P as its push proxy (its oldest
    // peer; the searching node, a peer of H2 by now, may follow).
    assert_eq!(hit["proxies"][0], "11.0.0.2:20000", "{hit}");
    assert!(hit["push_id"].is_string(), "{hit}");
    let peer = hit["peer"].as_str().unwrap().to_string();
    let hash = hit["hash"].as_str().unwrap().to_string();

    // By name: the direct connection to the router's address fails, then
    // H2 connects to us.
    let out = s.dir.path().join("by-name");
    let mut args = vec![
        "get",
        "lab-push.ogg",
        "--from",
        peer.as_str(),
        "--connect",
        "11.0.0.2",
    ];
    args.extend(GET);
    args.extend(["--out", out.to_str().unwrap(), "--wait", "5", "--json"]);
    let started = Instant::now();
    let r = report_of(&run_in(&s.lab, &s.p, &args), "by name", &s.h2_node);
    eprintln!("by name: {r} in {:?}", started.elapsed());
    let got = std::fs::read(r["path"].as_str().unwrap()).unwrap();
    assert!(got == data, "by name: not the same bytes");
    let src = source(&r, "11.0.0.12");
    assert!(src["path"].as_str().unwrap().starts_with("push"), "{r}");

    // By hash, killed once part of it is verified and on disk.
    let out = s.dir.path().join("by-hash");
    let mut args = vec!["get", hash.as_str(), "--connect", "11.0.0.2"];
    args.extend(GET);
    args.extend(["--out", out.to_str().unwrap(), "--wait", "5", "--json"]);
    let started = Instant::now();
    let mut first = Proc::spawn(&s.lab, &s.p, s.dir.path(), "get1", &args);
    kill_after_first_record(&mut first, &out);
    eprintln!(
        "first run killed after {:?}:\n{}",
        started.elapsed(),
        first.stderr()
    );
    assert!(
        first.stderr().contains("connected by push"),
        "{}",
        first.stderr()
    );
    let again = run_in(&s.lab, &s.p, &args);
    let r = report_of(&again, "by hash, again", &s.h2_node);
    eprintln!("by hash, again: {r}");
    let got = std::fs::read(r["path"].as_str().unwrap()).unwrap();
    assert!(got == data, "by hash: not the same bytes");
    // The node of the second run resumes the unfinished download from its
    // journal as it starts (the command's own request then finds the file
    // complete): its log says from where, and that it came by push.
    let log = String::from_utf8_lossy(&again.stderr);
    let resumed = resumed_from(&log);
    eprintln!("resumed from {resumed}");
    assert!(resumed > 1 << 20 && resumed < data.len() as u64, "{log}");
    assert!(log.contains("connected by push"), "{log}");
}

#[test]
fn one_source_direct_and_one_pushed_in_one_download() {
    let data = pattern(6_000_000, 92);
    let Some(mut s) = setup("lab-mixed.ogg", &data, "1000000") else {
        return;
    };
    // Q, a public host, shares the same file and joins P.
    let q = s.lab.public_host("q", 3).unwrap();
    let q_share = s.dir.path().join("q-share");
    write_file(&q_share.join("copy of lab-mixed.ogg"), &data);
    let q_node = Proc::serve(
        &s.lab,
        &q,
        s.dir.path(),
        "q",
        &[
            "--share",
            q_share.to_str().unwrap(),
            "--connect",
            "11.0.0.2",
            "--no-port-mapping",
            "--rate-limit",
            "1000000",
        ],
    );
    q_node.wait_for("peer joined");
    let hit = find(&s, "lab-mixed");
    let hash = hit["hash"].as_str().unwrap().to_string();
    // Q hashes in the background too: wait until it answers for the hash.
    wait_for_hash(&s.lab, &s.p, "copy of lab-mixed", &hash, &GET);
    let out = s.dir.path().join("mixed");
    let mut args = vec!["get", hash.as_str(), "--connect", "11.0.0.2"];
    args.extend(GET);
    args.extend(["--out", out.to_str().unwrap(), "--wait", "5", "--json"]);
    let r = report_of(&run_in(&s.lab, &s.p, &args), "mixed", &s.h2_node);
    eprintln!("mixed: {r}");
    let got = std::fs::read(r["path"].as_str().unwrap()).unwrap();
    assert!(got == data, "mixed: not the same bytes");
    let direct = source(&r, "11.0.0.3");
    let pushed = source(&r, "11.0.0.12");
    assert_eq!(direct["path"], "direct", "{r}");
    assert!(pushed["path"].as_str().unwrap().starts_with("push"), "{r}");
    assert!(direct["verified"].as_u64().unwrap() > 0, "{r}");
    assert!(pushed["verified"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(
        direct["verified"].as_u64().unwrap() + pushed["verified"].as_u64().unwrap(),
        data.len() as u64,
        "{r}"
    );
    drop(q_node);
}
