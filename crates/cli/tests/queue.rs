//! The daemon's download queue, per-upload progress, error kinds and the
//! `--json` output of the remote commands, against real processes on
//! loopback: a `rutella serve` peer, a `rutella daemon` driven through its
//! API and the command line, and standalone one-shots to compare with.
//!
//! Address plan: 127.0.84.0/24 and 127.0.85.0/24 (the peer .1, the
//! daemon .3, standalone one-shots .9); the API on 127.0.0.1 with a free
//! port.

mod common;
use common::daemon::{rutella, text, Daemon};
use common::*;
use serde_json::{json, Value};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// Every wait for a process or a state is bounded by this.
const LIMIT: Duration = Duration::from_secs(40);

impl Daemon {
    fn state(&self, id: u64) -> String {
        self.get("/downloads")
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == id)
            .map(|d| d["state"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    }
}

/// A standalone one-shot (its own node, no daemon to find).
fn standalone(args: &[&str]) -> Output {
    let none = tempfile::tempdir().unwrap();
    let out = rutella(&none.path().join("config.toml"), args)
        .output()
        .unwrap();
    drop(none);
    out
}

#[test]
fn queued_downloads_start_in_the_order_of_the_list_and_uploads_show_progress() {
    let peer_share = tempfile::tempdir().unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| (format!("q{i}.bin"), pattern(600_000, 10 + i)))
        .collect();
    for (n, data) in &files {
        write_file(&peer_share.path().join(n), data);
    }
    // The peer sends at 1 MiB/s in all: each file takes about 0.6 s.
    let _peer = Serve::start(&[
        "--share",
        peer_share.path().to_str().unwrap(),
        "--bind",
        "127.0.84.1",
        "--upload-limit",
        "1M",
    ]);
    // The daemon shares a file it sends slowly (for its uploads list).
    let up = pattern(1_500_000, 20);
    let d = Daemon::start(
        "127.0.84.3",
        &["127.0.84.1"],
        &["--max-downloads", "1", "--upload-limit", "500K"],
        &[("up.bin", &up)],
    );
    d.wait_for_peers(1);
    assert_eq!(d.get("/settings")["max_downloads"], 1);

    let ids: Vec<u64> = files
        .iter()
        .map(|(n, _)| {
            let (status, v) = d.api(
                reqwest::Method::POST,
                "/downloads",
                Some(json!({ "from": "127.0.84.1:10000", "name": n })),
            );
            assert_eq!(status, 201, "{v}");
            v["id"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(d.state(ids[0]), "running");
    assert_eq!(d.state(ids[1]), "queued");
    assert_eq!(d.state(ids[2]), "queued");
    assert_eq!(d.get("/status")["downloads"]["queued"], 2);
    // The last goes before the second: it starts next.
    let (status, list) = d.api(
        reqwest::Method::POST,
        &format!("/downloads/{}/move", ids[2]),
        Some(json!({ "position": 1 })),
    );
    assert_eq!(status, 200, "{list}");
    let order: Vec<u64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_u64().unwrap())
        .collect();
    assert_eq!(order, vec![ids[0], ids[2], ids[1]]);
    // A queued one cannot be removed (409, kind conflict).
    let (status, v) = d.api(
        reqwest::Method::DELETE,
        &format!("/downloads/{}", ids[1]),
        None,
    );
    assert_eq!((status, v["kind"].as_str()), (409, Some("conflict")), "{v}");

    // The order in which they start, and never two at once.
    let mut started: Vec<u64> = Vec::new();
    let deadline = Instant::now() + LIMIT;
    loop {
        let list = d.get("/downloads");
        let rows = list.as_array().unwrap();
        let running: Vec<u64> = rows
            .iter()
            .filter(|x| x["state"] == "running")
            .map(|x| x["id"].as_u64().unwrap())
            .collect();
        assert!(running.len() <= 1, "{list}");
        for id in running {
            if !started.contains(&id) {
                started.push(id);
            }
        }
        if rows.iter().all(|x| x["state"] == "done") {
            break;
        }
        assert!(
            rows.iter().all(|x| x["state"] != "failed"),
            "a download failed: {list}"
        );
        assert!(Instant::now() < deadline, "not done in time: {list}");
        std::thread::sleep(Duration::from_millis(40));
    }
    assert_eq!(started, vec![ids[0], ids[2], ids[1]]);
    // The slot count is a live setting.
    let (status, v) = d.api(
        reqwest::Method::PATCH,
        "/settings",
        Some(json!({ "max_downloads": null })),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["max_downloads"], Value::Null);
    let (status, v) = d.api(
        reqwest::Method::PATCH,
        "/settings",
        Some(json!({ "max_downloads": 0 })),
    );
    assert_eq!(
        (status, v["kind"].as_str()),
        (400, Some("bad_request")),
        "{v}"
    );

    // A standalone get pulls the daemon's file at 500 KiB/s: the uploads
    // list shows its bytes sent rising.
    let out_dir = tempfile::tempdir().unwrap();
    let mut getter = rutella(
        &out_dir.path().join("config.toml"),
        &[
            "get",
            "--from",
            "127.0.84.3",
            "up.bin",
            "--bind",
            "127.0.84.9",
            "--out",
            out_dir.path().to_str().unwrap(),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut sent: Vec<u64> = Vec::new();
    let deadline = Instant::now() + LIMIT;
    while sent.len() < 3 || sent.windows(2).filter(|w| w[1] > w[0]).count() < 2 {
        let list = d.get("/uploads");
        if let Some(u) = list
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == "up.bin")
        {
            assert_eq!(u["size"], up.len());
            assert!(u["peer"].as_str().unwrap().starts_with("127."), "{u}");
            assert!(u["speed_bps"].is_u64(), "{u}");
            sent.push(u["sent"].as_u64().unwrap());
        }
        assert!(Instant::now() < deadline, "no rising bytes sent: {sent:?}");
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(sent.iter().all(|s| *s <= up.len() as u64), "{sent:?}");
    let st = getter.wait().unwrap();
    assert!(st.success());
    assert_eq!(std::fs::read(out_dir.path().join("up.bin")).unwrap(), up);
}

/// The keys of a JSON object, and those whose value is not null.
fn keys(v: &Value) -> (Vec<String>, Vec<String>) {
    let o = v.as_object().unwrap();
    let mut all: Vec<String> = o.keys().cloned().collect();
    let mut set: Vec<String> = o
        .iter()
        .filter(|(_, x)| !x.is_null())
        .map(|(k, _)| k.clone())
        .collect();
    all.sort();
    set.sort();
    (all, set)
}

#[test]
fn remote_errors_and_json_match_the_standalone_commands() {
    let peer_share = tempfile::tempdir().unwrap();
    let tune = pattern(80_000, 3);
    write_file(&peer_share.path().join("tune.ogg"), &tune);
    let _peer = Serve::start(&[
        "--share",
        peer_share.path().to_str().unwrap(),
        "--bind",
        "127.0.85.1",
    ]);
    let d = Daemon::start("127.0.85.3", &["127.0.85.1"], &[], &[]);
    d.wait_for_peers(1);

    // A file the peer does not have: the standalone command's exit code.
    let alone = standalone(&[
        "get",
        "--from",
        "127.0.85.1",
        "missing.ogg",
        "--bind",
        "127.0.85.9",
        "--wait",
        "3",
    ]);
    let remote = d.run(&["get", "--from", "127.0.85.1", "missing.ogg"]);
    assert_eq!(alone.status.code(), Some(4), "{}", text(&alone.stderr));
    assert_eq!(
        remote.status.code(),
        alone.status.code(),
        "{}",
        text(&remote.stderr)
    );
    // The API says why, for programs.
    let failed = d.get("/downloads");
    let row = failed
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "missing.ogg")
        .unwrap();
    assert_eq!(row["state"], "failed");
    assert_eq!(row["error_kind"], "not_found");
    // An unknown id: 404 with its kind.
    let (status, v) = d.api(reqwest::Method::POST, "/downloads/999/pause", None);
    assert_eq!((status, v["kind"].as_str()), (404, Some("no_such")), "{v}");

    // get --json: the same keys, and what standalone fills is filled.
    let out_dir = tempfile::tempdir().unwrap();
    let alone = standalone(&[
        "get",
        "--from",
        "127.0.85.1",
        "tune.ogg",
        "--json",
        "--bind",
        "127.0.85.9",
        "--out",
        out_dir.path().to_str().unwrap(),
    ]);
    assert_eq!(alone.status.code(), Some(0), "{}", text(&alone.stderr));
    let remote = d.run(&["get", "--from", "127.0.85.1", "tune.ogg", "--json"]);
    assert_eq!(remote.status.code(), Some(0), "{}", text(&remote.stderr));
    let a: Value = serde_json::from_slice(&alone.stdout).unwrap();
    let r: Value = serde_json::from_slice(&remote.stdout).unwrap();
    let (ak, an) = keys(&a);
    let (rk, rn) = keys(&r);
    assert_eq!(ak, rk, "{a}\n{r}");
    assert_eq!(an, rn, "{a}\n{r}");
    assert_eq!(r["received"], tune.len());
    assert_eq!(r["resumed_from"], 0);
    let (a_src, r_src) = (&a["sources"][0], &r["sources"][0]);
    assert_eq!(keys(a_src), keys(r_src), "{a}\n{r}");
    assert_eq!(r_src["received"], tune.len());
    assert_eq!(r_src["outcome"], a_src["outcome"]);

    // search --json: the same keys and non-null fields per line.
    let alone = standalone(&[
        "search",
        "tune",
        "--json",
        "--connect",
        "127.0.85.1",
        "--bind",
        "127.0.85.9",
        "--wait",
        "3",
    ]);
    assert_eq!(alone.status.code(), Some(0), "{}", text(&alone.stderr));
    let remote = d.run(&["search", "tune", "--json", "--wait", "3"]);
    assert_eq!(remote.status.code(), Some(0), "{}", text(&remote.stderr));
    let a: Value = serde_json::from_str(text(&alone.stdout).lines().next().unwrap()).unwrap();
    let r: Value = serde_json::from_str(text(&remote.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(keys(&a), keys(&r), "{a}\n{r}");
    for k in ["push_id", "firewalled", "network"] {
        assert_eq!(a[k], r[k], "{k}: {a}\n{r}");
    }
}
