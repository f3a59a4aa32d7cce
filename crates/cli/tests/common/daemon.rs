//! A `rutella daemon` driven through its API and through the command line
//! run as its remote; `rutella` commands that find it by its settings file.

use super::{wait_until, write_file, Serve, FAST};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Every wait for the daemon and every request to its API is bounded by
/// this.
const LIMIT: Duration = Duration::from_secs(40);

/// A `rutella` command with the settings file `config` (a daemon's, to
/// find it), no DHT and no public address.
pub fn rutella(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rutella"));
    c.args(args)
        .env("RUTELLA_NO_DHT", "1")
        .env("RUTELLA_TEST_NO_PUBLIC", "1")
        .env("RUTELLA_CONFIG", config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A running `rutella daemon` with its settings folder and API.
pub struct Daemon {
    _serve: Serve,
    pub config: PathBuf,
    pub url: String,
    pub token: String,
    pub downloads: PathBuf,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Daemon {
    /// Starts a daemon bound to `bind` joining each of `connect`, with the
    /// arguments `extra`, sharing `share_files` (written into its share
    /// folder); its settings in a folder of its own. Returns once its API
    /// is up.
    pub fn start(
        bind: &str,
        connect: &[&str],
        extra: &[&str],
        share_files: &[(&str, &[u8])],
    ) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        let downloads = dir.path().join("downloads");
        let share = dir.path().join("share");
        std::fs::create_dir_all(&share).unwrap();
        for (name, data) in share_files {
            write_file(&share.join(name), data);
        }
        let mut cmd = rutella(&config, &["daemon", "--no-port-mapping"]);
        cmd.env("RUST_LOG", "info")
            .args(FAST)
            .args(["--api-listen", "127.0.0.1:0", "--bind", bind])
            .args(extra)
            .arg("--share")
            .arg(&share)
            .arg("--downloads")
            .arg(&downloads);
        for c in connect {
            cmd.args(["--connect", c]);
        }
        let serve = Serve::spawn(cmd, dir);
        let api = config.with_file_name("api.json");
        // Another process writes the file: polled.
        wait_until("the daemon writes api.json", LIMIT, || {
            std::fs::read_to_string(&api)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some()
        });
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&api).unwrap()).unwrap();
        let url = v["url"].as_str().unwrap().to_string();
        let token = std::fs::read_to_string(config.with_file_name("api-token"))
            .unwrap()
            .trim()
            .to_string();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Daemon {
            _serve: serve,
            config,
            url,
            token,
            downloads,
            rt,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    /// A request to the API; (status, JSON answer or null).
    pub fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.rt.block_on(async {
            let mut req = self
                .http
                .request(method, format!("{}/api/v1{path}", self.url))
                .bearer_auth(&self.token)
                .timeout(LIMIT);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await.unwrap();
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            )
        })
    }

    /// A `GET` that must answer `200`.
    pub fn get(&self, path: &str) -> Value {
        let (status, v) = self.api(reqwest::Method::GET, path, None);
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    /// The peers it is linked to.
    pub fn peers(&self) -> u64 {
        self.get("/status")["peers"].as_u64().unwrap()
    }

    /// Waits until it is linked to `n` peers.
    pub fn wait_for_peers(&self, n: u64) {
        wait_until(&format!("the daemon joins {n} peer(s)"), LIMIT, || {
            self.peers() == n
        });
    }

    /// Runs a `rutella` command that finds this daemon.
    pub fn run(&self, args: &[&str]) -> Output {
        rutella(&self.config, args).output().unwrap()
    }
}
