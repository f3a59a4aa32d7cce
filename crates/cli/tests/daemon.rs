//! `rutella daemon` and its control API, against real processes on
//! loopback: a daemon and `rutella serve` peers sharing files, driven by a
//! real HTTP client.
//!
//! Address plan: 127.0.47.0/24 (the API on the ports the system picks).

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The peer and the daemon of the first test; the second uses .12 and .11.
const PEER: &str = "127.0.47.2";
const DAEMON: &str = "127.0.47.1";
const PEER2: &str = "127.0.47.12";
const DAEMON2: &str = "127.0.47.11";

/// A `rutella daemon` process with its settings folder, killed when dropped.
struct Daemon {
    serve: Serve,
    cfg: PathBuf,
    url: String,
    token: String,
}

fn daemon_cmd(cfg: &Path, downloads: &Path, api: &str, ip: &str) -> Command {
    let mut cmd = bin();
    cmd.env("RUTELLA_CONFIG", cfg.join("config.toml"))
        .arg("daemon")
        .args([
            "--api-listen",
            api,
            "--no-port-mapping",
            "--no-lan-discovery",
        ])
        .args(FAST)
        .args(["--bind", ip, "--downloads", downloads.to_str().unwrap()]);
    cmd
}

impl Daemon {
    fn start(cfg: &Path, downloads: &Path, ip: &str) -> Daemon {
        let api_json = cfg.join("api.json");
        let _ = std::fs::remove_file(&api_json);
        let cmd = daemon_cmd(cfg, downloads, "127.0.0.1:0", ip);
        let serve = Serve::spawn(cmd, tempfile::tempdir().unwrap());
        serve.wait_log("control API listening", Duration::from_secs(30));
        wait_until("api.json written", Duration::from_secs(10), || {
            api_json.exists()
        });
        let info: Value =
            serde_json::from_str(&std::fs::read_to_string(&api_json).unwrap()).unwrap();
        assert_eq!(info["pid"], serve.child.id());
        let token = std::fs::read_to_string(cfg.join("api-token"))
            .unwrap()
            .trim()
            .to_string();
        Daemon {
            serve,
            cfg: cfg.to_path_buf(),
            url: info["url"].as_str().unwrap().to_string(),
            token,
        }
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .request(method, format!("{}/api/v1{path}", self.url))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(30))
    }

    async fn get(&self, path: &str) -> Value {
        let r = self.req(reqwest::Method::GET, path).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn post_empty(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, None).await
    }

    async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    async fn delete(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, body).await
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self.req(method, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Stops it with SIGTERM and waits for its exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe_free_kill(self.serve.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.serve.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn unsafe_free_kill(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
}

/// Server-Sent Events read from a response, one `(event, data)` at a time.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(d: &Daemon, path: &str) -> Sse {
        let resp = reqwest::Client::new()
            .get(format!("{}/api/v1{path}", d.url))
            .bearer_auth(&d.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Sse {
            resp,
            buf: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped); `None` at the end.
    async fn next(&mut self, limit: Duration) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut name = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if name.is_empty() {
                    continue;
                }
                return Some((name, serde_json::from_str(&data).unwrap_or(Value::Null)));
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .unwrap_or_else(|_| panic!("no event within {limit:?}; have {:?}", self.buf))
                .unwrap()?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Waits for an event named `name` for which `pick` holds.
    async fn wait_for(
        &mut self,
        name: &str,
        limit: Duration,
        pick: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {name} event within {limit:?}");
            match self.next(left).await {
                Some((n, v)) if n == name && pick(&v) => return v,
                Some(_) => {}
                None => panic!("the stream ended before a {name} event"),
            }
        }
    }
}

fn peer_with(ip: &str, files: &[(&str, &[u8])]) -> (Serve, tempfile::TempDir) {
    let share = tempfile::tempdir().unwrap();
    for (name, data) in files {
        write_file(&share.path().join(name), data);
    }
    let peer = Serve::start(&[
        "--share",
        share.path().to_str().unwrap(),
        "--bind",
        ip,
        "--no-lan-discovery",
    ]);
    (peer, share)
}

async fn wait_state(d: &Daemon, id: u64, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = d.get("/downloads").await;
        if let Some(row) = list.as_array().unwrap().iter().find(|r| r["id"] == id) {
            if row["state"] == state {
                return row.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "download {id} never {state}: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_of_a_real_daemon() {
    let tune = pattern(1 << 20, 7);
    let small = pattern(70_000, 8);
    let (_peer, _share) = peer_with(PEER, &[("music/tune.ogg", &tune), ("small.bin", &small)]);
    let cfg = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(cfg.path(), downloads.path(), DAEMON);
    let http = reqwest::Client::new();

    // The token: private, required, compared; a foreign Origin refused.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cfg.path().join("api-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(d.token.len(), 64);
    let status_url = format!("{}/api/v1/status", d.url);
    let r = http.get(&status_url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let reason = r.text().await.unwrap();
    assert!(
        reason.starts_with("missing token") && reason.lines().count() == 1,
        "{reason}"
    );
    let r = http
        .get(&status_url)
        .bearer_auth("0".repeat(64))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().starts_with("wrong token"));
    let r = http
        .get(&status_url)
        .bearer_auth(&d.token)
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let own = d.url.clone();
    let r = http
        .get(&status_url)
        .bearer_auth(&d.token)
        .header("Origin", own)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The page needs no token.
    let r = http.get(format!("{}/", d.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("<html"));
    let (st, _) = d.call(reqwest::Method::GET, "/nothing", None).await;
    assert_eq!(st, 404);

    let mut events = Sse::open(&d, "/events").await;

    // Status.
    let s = d.get("/status").await;
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert!(s["udp"].as_str().unwrap().starts_with(DAEMON), "{s}");
    assert!(s["reachability"]["state"].is_string(), "{s}");
    assert_eq!(s["limits"]["upload_limit_bps"], Value::Null);

    // Peers: a join that answers, one that does not, one that is no address.
    let (st, p) = d.post("/peers", json!({"addr": PEER})).await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["addr"], format!("{PEER}:{}", 20000));
    events
        .wait_for("peer_joined", Duration::from_secs(10), |v| {
            v["addr"] == p["addr"]
        })
        .await;
    let (st, e) = d.post("/peers", json!({"addr": "127.0.47.9:20000"})).await;
    assert_eq!(st, 504, "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("did not answer"),
        "{e}"
    );
    let (st, _) = d.post("/peers", json!({"addr": "not an address"})).await;
    assert_eq!(st, 400);
    let peers = d.get("/peers").await;
    assert!(
        peers
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["addr"] == p["addr"]),
        "{peers}"
    );

    // Shares: add, list, remove, remove again.
    let mine = tempfile::tempdir().unwrap();
    write_file(&mine.path().join("a.txt"), b"12345");
    let dir = mine.path().to_str().unwrap();
    let (st, sh) = d.post("/shares", json!({"path": dir})).await;
    assert_eq!(st, 201, "{sh}");
    assert_eq!(sh["files"], 1);
    assert_eq!(sh["bytes"], 5);
    let list = d.get("/shares").await;
    assert!(
        list.as_array().unwrap().iter().any(|x| x["path"] == dir),
        "{list}"
    );
    let (st, _) = d.post("/shares", json!({"path": "/no/such/dir"})).await;
    assert_eq!(st, 400);
    let (st, _) = d.delete("/shares", Some(json!({"path": dir}))).await;
    assert_eq!(st, 204);
    let (st, _) = d.delete("/shares", Some(json!({"path": dir}))).await;
    assert_eq!(st, 404);

    // A search, streamed until done.
    let (st, s) = d.post("/searches", json!({"query": "tune"})).await;
    assert_eq!(st, 201, "{s}");
    let sid = s["id"].as_u64().unwrap();
    let mut results = Sse::open(&d, &format!("/searches/{sid}/events")).await;
    let hit = results
        .wait_for("result", Duration::from_secs(10), |v| {
            v["name"] == "music/tune.ogg"
        })
        .await;
    assert_eq!(hit["size"], tune.len());
    assert_eq!(
        hit["hash"],
        format!("blake3:{}", blake3::hash(&tune).to_hex())
    );
    assert_eq!(hit["peers"], json!([format!("{PEER}:10000")]));
    assert_eq!(hit["network"], "rutella");
    let done = results
        .wait_for("done", Duration::from_secs(20), |_| true)
        .await;
    assert_eq!(done["peers_answered"], 1);
    assert!(
        results.next(Duration::from_secs(5)).await.is_none(),
        "the stream ends after done"
    );
    let got = d.get(&format!("/searches/{sid}")).await;
    assert_eq!(got["running"], false);
    assert_eq!(got["query"], "tune");
    assert_eq!(got["results"][0]["name"], "music/tune.ogg");
    let (st, _) = d.post("/searches", json!({"query": " "})).await;
    assert_eq!(st, 400);

    // Settings: a download limit that keeps the download slow enough to
    // pause; applied, returned and saved.
    let (st, set) = d
        .patch(
            "/settings",
            json!({"download_limit_bps": 100_000, "upload_slots": 3}),
        )
        .await;
    assert_eq!(st, 200, "{set}");
    assert_eq!(
        set,
        json!({"upload_limit_bps": null, "download_limit_bps": 100_000, "upload_slots": 3})
    );
    assert_eq!(d.get("/settings").await, set);
    let saved = std::fs::read_to_string(cfg.path().join("config.toml")).unwrap();
    assert!(
        saved.contains("download_limit = 100000") && saved.contains("upload_slots = 3"),
        "{saved}"
    );
    for bad in [
        json!({"upload_slots": 0}),
        json!({"download_limit_bps": 0}),
        json!({"colour": "red"}),
    ] {
        let (st, e) = d.patch("/settings", bad).await;
        assert_eq!(st, 400, "{e}");
        assert!(e["error"].is_string());
    }

    // A download from the search: started, paused, resumed, completed
    // byte-exact.
    let (st, dl) = d
        .post("/downloads", json!({"search": sid, "index": hit["index"]}))
        .await;
    assert_eq!(st, 201, "{dl}");
    let id = dl["id"].as_u64().unwrap();
    assert_eq!(dl["name"], "music/tune.ogg");
    events
        .wait_for("download_progress", Duration::from_secs(10), |v| {
            v["id"] == id && v["done"].as_u64() > Some(0)
        })
        .await;
    let (st, p) = d.post_empty(&format!("/downloads/{id}/pause")).await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["state"], "paused");
    let (st, _) = d.post_empty(&format!("/downloads/{id}/pause")).await;
    assert_eq!(st, 409);
    let (st, _) = d.delete(&format!("/downloads/{id}"), None).await;
    assert_eq!(st, 409, "a paused download is cancelled, not removed");
    let (st, r) = d.post_empty(&format!("/downloads/{id}/resume")).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["state"], "running");
    let (st, _) = d
        .patch("/settings", json!({"download_limit_bps": null}))
        .await;
    assert_eq!(st, 200);
    let done = events
        .wait_for("download_done", Duration::from_secs(30), |v| v["id"] == id)
        .await;
    assert_eq!(done["state"], "done");
    let file = PathBuf::from(done["file"].as_str().unwrap());
    assert_eq!(std::fs::read(&file).unwrap(), tune, "byte-exact");
    let (st, _) = d.post_empty(&format!("/downloads/{id}/cancel")).await;
    assert_eq!(st, 409, "a complete download is not cancelled");

    // By peer and name (classic), and by hash with its source.
    let (st, byname) = d
        .post(
            "/downloads",
            json!({"from": format!("{PEER}:10000"), "name": "small.bin"}),
        )
        .await;
    assert_eq!(st, 201, "{byname}");
    let small_id = byname["id"].as_u64().unwrap();
    let row = wait_state(&d, small_id, "done").await;
    assert_eq!(std::fs::read(row["file"].as_str().unwrap()).unwrap(), small);
    let (st, _) = d.post("/downloads", json!({"colour": 1})).await;
    assert_eq!(st, 400);
    let (st, _) = d
        .post("/downloads", json!({"search": 999, "index": 0}))
        .await;
    assert_eq!(st, 404);

    // A cancel leaves nothing behind.
    let (st, _) = d
        .patch("/settings", json!({"download_limit_bps": 50_000}))
        .await;
    assert_eq!(st, 200);
    let hash = hit["hash"].as_str().unwrap();
    let (st, again) = d
        .post("/downloads", json!({"hash": hash, "size": tune.len(), "name": "again.ogg", "sources": [format!("{PEER}:10000")]}))
        .await;
    assert_eq!(st, 201, "{again}");
    let again_id = again["id"].as_u64().unwrap();
    events
        .wait_for("download_progress", Duration::from_secs(10), |v| {
            v["id"] == again_id && v["done"].as_u64() > Some(0)
        })
        .await;
    let leftovers = || -> Vec<String> {
        std::fs::read_dir(downloads.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("again"))
            .collect()
    };
    assert!(
        !leftovers().is_empty(),
        "a partial file exists while it runs"
    );
    let (st, c) = d.post_empty(&format!("/downloads/{again_id}/cancel")).await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["state"], "cancelled");
    assert_eq!(
        leftovers(),
        Vec::<String>::new(),
        "nothing left of a cancelled download"
    );
    let list = d.get("/downloads").await;
    assert!(
        !list.as_array().unwrap().iter().any(|r| r["id"] == again_id),
        "{list}"
    );

    // Queue order: move the second to the front.
    let (st, moved) = d
        .post(
            &format!("/downloads/{small_id}/move"),
            json!({"position": 0}),
        )
        .await;
    assert_eq!(st, 200, "{moved}");
    let ids: Vec<u64> = moved
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![small_id, id]);
    let ids: Vec<u64> = d
        .get("/downloads")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![small_id, id]);
    // Removing a finished entry keeps its file.
    let (st, _) = d.delete(&format!("/downloads/{id}"), None).await;
    assert_eq!(st, 204);
    assert!(file.exists());
    let (st, _) = d.delete(&format!("/downloads/{id}"), None).await;
    assert_eq!(st, 404);

    // Uploads in progress: none here.
    assert_eq!(d.get("/uploads").await, json!([]));

    // Forgetting the search.
    let (st, _) = d.delete(&format!("/searches/{sid}"), None).await;
    assert_eq!(st, 204);
    let (st, _) = d
        .call(reqwest::Method::GET, &format!("/searches/{sid}"), None)
        .await;
    assert_eq!(st, 404);

    // SIGTERM: a clean exit that removes api.json.
    drop(events);
    let st = d.terminate();
    assert!(st.success(), "{st:?}\n{}", d.serve.log_text());
    assert!(!d.cfg.join("api.json").exists());
    assert!(
        d.cfg.join("api-token").exists(),
        "the token stays for the next start"
    );
}

/// A download interrupted by SIGTERM resumes at the next start, from the
/// data it had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_stopped_by_sigterm_resumes_after_a_restart() {
    let data = pattern(1 << 20, 11);
    let (_peer, _share) = peer_with(PEER2, &[("big.bin", &data)]);
    let cfg = tempfile::tempdir().unwrap();
    std::fs::write(cfg.path().join("config.toml"), "download_limit = 100000\n").unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(cfg.path(), downloads.path(), DAEMON2);
    let hash = format!("blake3:{}", blake3::hash(&data).to_hex());
    let (st, dl) = d
        .post("/downloads", json!({"hash": hash, "size": data.len(), "name": "big.bin", "sources": [format!("{PEER2}:10000")]}))
        .await;
    assert_eq!(st, 201, "{dl}");
    let id = dl["id"].as_u64().unwrap();
    let mut events = Sse::open(&d, "/events").await;
    events
        .wait_for("download_progress", Duration::from_secs(10), |v| {
            v["id"] == id && v["done"].as_u64() >= Some(200_000)
        })
        .await;
    drop(events);
    let st = d.terminate();
    assert!(st.success(), "{st:?}");
    let token = d.token.clone();
    drop(d);
    assert!(!downloads.path().join("big.bin").exists());

    // The same settings folder without the limit: it resumes by itself.
    std::fs::write(cfg.path().join("config.toml"), "").unwrap();
    let d = Daemon::start(cfg.path(), downloads.path(), DAEMON2);
    assert_eq!(d.token, token, "the token is reused");
    d.serve
        .wait_log("resuming an unfinished download", Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(30);
    let row = loop {
        let list = d.get("/downloads").await;
        if let Some(r) = list
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "big.bin" && r["state"] == "done")
        {
            break r.clone();
        }
        assert!(Instant::now() < deadline, "not resumed: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(std::fs::read(row["file"].as_str().unwrap()).unwrap(), data);
}

/// Beyond loopback, the API never listens without a token.
#[test]
fn an_api_beyond_loopback_needs_the_token_first() {
    let cfg = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let mut cmd = daemon_cmd(cfg.path(), downloads.path(), "0.0.0.0:0", "127.0.47.21");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the daemon started with its API beyond loopback and no token");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("without a token"), "{stderr}");
    assert!(!cfg.path().join("api-token").exists());
    assert!(!cfg.path().join("api.json").exists());
}
