//! The command line as the remote of a running `rutella daemon`: `search`,
//! `get`, `downloads`, `status`, `share` and the console go through the
//! daemon's API instead of starting a node of their own; `--standalone`
//! and a stale `api.json` run a node as before.
//!
//! Address plan: one of 127.0.71.0/24 to 127.0.73.0/24 per test, on
//! classic ports (the peers .1 and .2, the daemon .3, standalone one-shots
//! .9); the daemon's API on 127.0.0.1 with a free port.

mod common;
use common::daemon::{rutella, text, Daemon};
use common::*;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

/// Every wait for a process or a line is bounded by this.
const LIMIT: Duration = Duration::from_secs(30);

const SONG: &str = "song one.ogg";
const OTHER: &str = "other tune.ogg";
const WEB: &str = "from the web.bin";

/// Two peers sharing files (the same song on both), and a daemon that
/// joined both.
struct Net {
    a: Serve,
    b: Serve,
    d: Daemon,
    song: Vec<u8>,
    other: Vec<u8>,
    web: Vec<u8>,
    _shares: (tempfile::TempDir, tempfile::TempDir),
}

/// The network of one test: its addresses are 127.0.`net`.x.
fn net(net: u8) -> Net {
    let ip = |host: u8| format!("127.0.{net}.{host}");
    let (sa, sb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let song = pattern(300_000, 1);
    let other = pattern(70_000, 2);
    let web = pattern(50_000, 3);
    write_file(&sa.path().join(SONG), &song);
    write_file(&sb.path().join(SONG), &song);
    write_file(&sa.path().join(OTHER), &other);
    write_file(&sb.path().join(WEB), &web);
    let a = Serve::start(&["--share", sa.path().to_str().unwrap(), "--bind", &ip(1)]);
    let b = Serve::start(&[
        "--share",
        sb.path().to_str().unwrap(),
        "--bind",
        &ip(2),
        "--connect",
        &ip(1),
    ]);
    let d = Daemon::start(&ip(3), &[&ip(1), &ip(2)], &[], &[]);
    d.wait_for_peers(2);
    // Hashing runs in the background after a node starts, and no event
    // of another process announces its end: searched until both peers'
    // answers carry the song's hash.
    let hash = blake3::hash(&song).to_hex().to_string();
    wait_until("both peers offer the song by hash", LIMIT, || {
        let out = d.run(&["search", "song", "--wait", "1", "--json"]);
        text(&out.stdout).matches(hash.as_str()).count() == 2
    });
    Net {
        a,
        b,
        d,
        song,
        other,
        web,
        _shares: (sa, sb),
    }
}

/// The peers each peer's log says joined it.
fn joined(s: &Serve) -> usize {
    s.log_text().matches("peer joined").count()
}

fn lines(out: &Output) -> Vec<String> {
    let mut l: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    l.sort();
    l
}

#[test]
fn search_get_and_downloads_go_through_the_running_daemon() {
    let n = net(71);
    let d = &n.d;
    let (joined_a, joined_b) = (joined(&n.a), joined(&n.b));

    // The search: lines for each peer and file, as without a daemon.
    let out = d.run(&["search", "song", "--wait", "4"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("using the running daemon at {}", d.url)),
        "{err}"
    );
    let size = n.song.len();
    assert_eq!(
        lines(&out),
        vec![
            format!("127.0.71.1\t{size}\t{SONG}"),
            format!("127.0.71.2\t{size}\t{SONG}"),
        ]
    );
    // Nothing on standard output but the JSON lines.
    let out = d.run(&["search", "song", "--wait", "4", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let hash = blake3::hash(&n.song).to_hex().to_string();
    for l in lines(&out) {
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["name"], SONG);
        assert_eq!(v["size"], size);
        assert_eq!(v["hash"], hash.as_str());
    }
    assert_eq!(lines(&out).len(), 2);
    // Nothing matches: exit code 4, as without a daemon.
    let out = d.run(&["search", "nothing-like-this", "--wait", "3"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no file matches"));

    // By hash: from both peers, into the daemon's downloads folder.
    let out = d.run(&["get", &hash]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let path = PathBuf::from(text(&out.stdout).trim());
    assert!(path.starts_with(&d.downloads), "{path:?}");
    assert_eq!(std::fs::read(&path).unwrap(), n.song);
    // By name from one peer, with the JSON report.
    let out = d.run(&["get", "--from", "127.0.71.1", OTHER, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let path = PathBuf::from(report["path"].as_str().unwrap());
    assert!(path.starts_with(&d.downloads), "{path:?}");
    assert_eq!(std::fs::read(&path).unwrap(), n.other);
    assert_eq!(report["size"], n.other.len());

    // No second node: nobody new joined either peer, the daemon still
    // knows the same two.
    assert_eq!(joined(&n.a), joined_a, "{}", n.a.log_text());
    assert_eq!(joined(&n.b), joined_b, "{}", n.b.log_text());
    assert_eq!(d.peers(), 2);

    // A download started the way the web page starts one.
    let (status, started) = d.api(
        reqwest::Method::POST,
        "/downloads",
        Some(serde_json::json!({ "from": "127.0.71.2:10000", "name": WEB })),
    );
    assert_eq!(status, 201, "{started}");
    let id = started["id"].as_u64().unwrap();
    wait_until("the download from the API completes", LIMIT, || {
        d.get("/downloads")
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == id && x["state"] == "done")
    });
    let out = d.run(&["downloads", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listed: Vec<serde_json::Value> = lines(&out)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let web = listed.iter().find(|x| x["id"] == id).expect("listed");
    assert_eq!(web["name"], WEB);
    assert_eq!(web["state"], "done");
    assert_eq!(std::fs::read(web["file"].as_str().unwrap()).unwrap(), n.web);
    assert_eq!(listed.len(), 3, "{listed:?}");
    // The table, as the console's.
    let out = d.run(&["downloads"]);
    let table = text(&out.stdout);
    assert!(table.contains("STATE") && table.contains(WEB), "{table}");
    assert!(table.contains(SONG) && table.contains(OTHER), "{table}");

    // The status, in the console's words.
    let out = d.run(&["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let status = text(&out.stdout);
    assert!(status.contains("Listening on UDP 127.0.71.3:"), "{status}");
    assert!(status.contains("Peers: 2."), "{status}");
}

#[test]
fn standalone_share_and_a_stale_daemon_file() {
    let n = net(72);
    let d = &n.d;
    // --standalone: a node of its own (the daemon is not used).
    let out = d.run(&[
        "search",
        "song",
        "--standalone",
        "--connect",
        "127.0.72.1",
        "--bind",
        "127.0.72.9",
        "--wait",
        "3",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("using the running daemon"), "{err}");
    let size = n.song.len();
    assert_eq!(
        lines(&out),
        vec![
            format!("127.0.72.1\t{size}\t{SONG}"),
            format!("127.0.72.2\t{size}\t{SONG}"),
        ]
    );

    // share and unshare through the daemon: at once.
    let extra = tempfile::tempdir().unwrap();
    write_file(&extra.path().join("x.txt"), b"x");
    let dir = extra.path().canonicalize().unwrap();
    let out = d.run(&["share", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shares = d.get("/shares");
    assert!(
        shares
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["path"] == dir.to_str().unwrap()),
        "{shares}"
    );
    let out = d.run(&["unshare", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shares = d.get("/shares");
    assert!(
        !shares
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["path"] == dir.to_str().unwrap()),
        "{shares}"
    );

    // A stale api.json (its daemon is gone): standalone, no error.
    let stale = tempfile::tempdir().unwrap();
    let config = stale.path().join("config.toml");
    let mut gone = Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    std::fs::write(
        config.with_file_name("api.json"),
        format!("{{\"url\": \"{}\", \"pid\": {pid}}}", d.url),
    )
    .unwrap();
    std::fs::write(config.with_file_name("api-token"), &d.token).unwrap();
    let out = rutella(
        &config,
        &[
            "search",
            "song",
            "--connect",
            "127.0.72.1",
            "--bind",
            "127.0.72.9",
            "--wait",
            "3",
        ],
    )
    .output()
    .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
    assert_eq!(lines(&out).len(), 2);
    // Commands that need a daemon say so.
    let out = rutella(&config, &["downloads"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no daemon is running"),
        "{}",
        text(&out.stderr)
    );
}

#[cfg(unix)]
#[test]
fn the_console_attaches_to_the_running_daemon() {
    use rexpect::session::spawn_command;
    let n = net(73);
    let d = &n.d;
    // The terminal is standard input too (not rutella()'s null).
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rutella"));
    cmd.env("RUTELLA_NO_DHT", "1")
        .env("RUTELLA_TEST_NO_PUBLIC", "1")
        .env("RUTELLA_CONFIG", &d.config)
        .env_remove("RUST_LOG")
        .env("TERM", "xterm")
        .env("HOME", d.config.parent().unwrap());
    let joined_a = joined(&n.a);
    let mut p = spawn_command(cmd, Some(LIMIT.as_millis() as u64)).unwrap();
    p.exp_string(&format!("Attached to the running daemon at {}", d.url))
        .unwrap();
    p.exp_string("Peers: 2.").unwrap();
    p.exp_string("rutella> ").unwrap();
    p.send_line("search song").unwrap();
    p.exp_string("(same file as 1: 2 peers)").unwrap();
    p.exp_string("1 file(s) from 2 peers").unwrap();
    p.exp_string("rutella> ").unwrap();
    p.send_line("get 1").unwrap();
    p.exp_string("Downloading song one.ogg").unwrap();
    p.exp_string("rutella> ").unwrap();
    let song = n.song.clone();
    let dl = d.downloads.join(SONG);
    wait_until("the console's download completes", LIMIT, || {
        std::fs::read(&dl).is_ok_and(|b| b == song)
    });
    p.send_line("downloads").unwrap();
    p.exp_regex(r"done +100%").unwrap();
    p.exp_string("rutella> ").unwrap();
    p.send_line("notices on").unwrap();
    p.exp_string("not available attached").unwrap();
    p.exp_string("rutella> ").unwrap();
    p.send_line("quit").unwrap();
    p.exp_eof().unwrap();
    // The daemon runs on, and no node of the console's joined the peers.
    assert_eq!(d.peers(), 2);
    assert_eq!(joined(&n.a), joined_a, "{}", n.a.log_text());
}
