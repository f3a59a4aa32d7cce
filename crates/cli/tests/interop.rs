//! rutella against a classic peer (a separate Python process that speaks
//! the classic wire format, quirks included), in both directions.
//!
//! Address plan: this file uses 127.0.5.0/24 (classic ports).

mod common;
use common::classic::Classic;
use common::*;
use serde_json::Value;
use std::time::Duration;

#[test]
fn rutella_and_a_classic_peer_work_together_both_ways() {
    let cdir = tempfile::tempdir().unwrap();
    let rdir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let classic_file = pattern(3000, 1);
    let classic_big = pattern(4000, 2);
    write_file(&cdir.path().join("Cloud - CloudWatch 1.png"), &classic_file);
    write_file(&cdir.path().join("big.bin"), &classic_big);
    let rutella_file = pattern(5000, 3);
    let rutella_resume = pattern(7000, 4);
    write_file(
        &rdir.path().join("Cloud - IT infrastructure.png"),
        &rutella_file,
    );
    write_file(&rdir.path().join("sub/cloud deep.png"), b"deep");
    write_file(&rdir.path().join("resume.dat"), &rutella_resume);

    let server = Serve::start(&[
        "--share",
        rdir.path().to_str().unwrap(),
        "--bind",
        "127.0.5.3",
    ]);
    // The classic peer joins through rutella.
    let mut classic = Classic::start("127.0.5.2", cdir.path(), "127.0.5.3");
    server.wait_log("peer=127.0.5.2:20000", Duration::from_secs(10));
    // Ping rounds go on: the classic peer keeps rutella in its list.
    assert_eq!(classic.peers_after_rounds(3), vec!["127.0.5.3".to_string()]);

    // The classic peer searches rutella: names relative to the share, no extension fields needed.
    classic.say("search CLOUD");
    let (_, hits) = classic.expect(|v| v.get("search_done").is_some());
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["hit"], "127.0.5.3");
    let mut names: Vec<&str> = hits[0]["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["Cloud - IT infrastructure.png", "sub/cloud deep.png"]
    );

    // The classic peer downloads from rutella.
    classic.say("get 127.0.5.3 Cloud - IT infrastructure.png");
    let (v, _) = classic.expect(|v| v.get("got").is_some() || v.get("get_failed").is_some());
    assert_eq!(v["bytes"], 5000);
    assert_eq!(
        std::fs::read(cdir.path().join("Cloud - IT infrastructure.png")).unwrap(),
        rutella_file
    );
    // ...and resumes from an offset that is not a multiple of 1024: rutella
    // sends exactly the missing bytes, so the file is right.
    write_file(&cdir.path().join("resume.dat"), &rutella_resume[..1500]);
    classic.say("get 127.0.5.3 resume.dat");
    let (v, _) = classic.expect(|v| v.get("got").is_some() || v.get("get_failed").is_some());
    assert_eq!(v["bytes"], 5500);
    assert_eq!(
        std::fs::read(cdir.path().join("resume.dat")).unwrap(),
        rutella_resume
    );

    // rutella searches the classic peer.
    let o = run(&[
        "search",
        "cloudwatch",
        "--connect",
        "127.0.5.2",
        "--bind",
        "127.0.5.4",
        "--wait",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|v| v["peer"] == "127.0.5.2" && v["name"] == "Cloud - CloudWatch 1.png"),
        "{lines:?}"
    );

    // rutella downloads from the classic peer.
    let od = out.path().to_str().unwrap();
    let o = run(&[
        "get",
        "--from",
        "127.0.5.2",
        "Cloud - CloudWatch 1.png",
        "--out",
        od,
        "--bind",
        "127.0.5.4",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(out.path().join("Cloud - CloudWatch 1.png")).unwrap(),
        classic_file
    );

    // A resume from the classic server, whose quirk would corrupt a resume
    // at 1500 bytes: rutella resumes from the block boundary and the file is right.
    write_file(&out.path().join("big.bin.part"), &classic_big[..1500]);
    let o = run(&[
        "get",
        "--from",
        "127.0.5.2",
        "big.bin",
        "--out",
        od,
        "--bind",
        "127.0.5.4",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["resumed_from"], 1024);
    assert_eq!(report["received"], 4000 - 1024);
    assert_eq!(
        std::fs::read(out.path().join("big.bin")).unwrap(),
        classic_big
    );
}
