//! The command line as the remote of a running `rutella daemon`: finding
//! it (`api.json` and `api-token` beside the settings file, then
//! `GET /api/v1/status`), and a small client of its HTTP JSON API
//! (docs/API.md). The one-shot commands that go through it are in
//! `remote/commands.rs`; the console's attached mode is `remote/attach.rs`.

pub(crate) mod attach;
pub(crate) mod commands;
pub(crate) mod sse;

use crate::{exit, Failure};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file a running daemon writes beside the settings file.
pub(crate) const API_FILE: &str = "api.json";
/// The token file beside the settings file.
pub(crate) const TOKEN_FILE: &str = "api-token";

/// How long the daemon has to answer the first `GET /status`; one that
/// does not is taken as gone.
const ALIVE_WAIT: Duration = Duration::from_secs(2);
/// How long a request (not a stream) may take.
const REQUEST_WAIT: Duration = Duration::from_secs(30);
/// The longest answer read (a list of downloads or results).
const MAX_BODY: usize = 32 << 20;
/// The longest `api.json` or `api-token` read.
const MAX_FILE: u64 = 64 << 10;

/// `api.json`.
#[derive(Debug, Deserialize)]
struct ApiFile {
    url: String,
    #[serde(default)]
    pid: Option<u32>,
}

/// A running daemon, found and answering.
#[derive(Clone)]
pub(crate) struct Daemon {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    url: String,
    token: String,
    http: reqwest::Client,
}

/// Why a request to the daemon failed.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// No answer, or not one that reads.
    Transport(String),
    /// An answer with this status, one-line reason and the error's kind
    /// when the daemon gave one (docs/API.md, "Error kinds").
    Status(u16, String, Option<String>),
}

impl ApiError {
    /// The exit code of a command that ends on this error.
    pub(crate) fn code(&self) -> u8 {
        if let ApiError::Status(_, _, Some(kind)) = self {
            if let Some(code) = code_of_kind(kind) {
                return code;
            }
        }
        match self {
            ApiError::Transport(_) => exit::NETWORK,
            ApiError::Status(400 | 422, ..) => exit::USAGE,
            ApiError::Status(404, ..) => exit::NOT_FOUND,
            ApiError::Status(502..=504, ..) => exit::NETWORK,
            ApiError::Status(..) => exit::FAILURE,
        }
    }

    /// The reason in one line.
    pub(crate) fn reason(&self) -> &str {
        match self {
            ApiError::Transport(m) | ApiError::Status(_, m, _) => m,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::new(e.code(), e.reason().to_string())
    }
}

/// Reads a small file, at most [`MAX_FILE`] bytes.
fn read_small(path: &Path) -> Option<String> {
    use std::io::Read;
    let f = std::fs::File::open(path).ok()?;
    let mut s = String::new();
    f.take(MAX_FILE).read_to_string(&mut s).ok()?;
    Some(s)
}

/// Whether a process with this id runs (or may: one of another user
/// cannot be signalled but exists).
fn pid_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        if pid <= 0 {
            return false;
        }
        // SAFETY: signal 0 checks the process exists and sends nothing.
        if unsafe { libc::kill(pid, 0) } == 0 {
            return true;
        }
        std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// The folder of the settings file, where a daemon leaves `api.json`.
fn settings_dir() -> Option<PathBuf> {
    let path = crate::config_file::path().ok()?;
    Some(path.parent()?.to_path_buf())
}

impl Daemon {
    /// The running daemon of this settings folder, or `None` when there is
    /// none: no `api.json`, a stale one (its process is gone, or nothing
    /// answers at its address), no token, or a refused token. Says why at
    /// debug level only: no daemon means the commands run standalone.
    pub(crate) async fn find() -> Option<Daemon> {
        let dir = settings_dir()?;
        Daemon::find_in(&dir).await
    }

    /// The running daemon, unless `standalone` (then, or without one,
    /// the command runs a node of its own).
    pub(crate) async fn unless(standalone: bool) -> Option<Daemon> {
        if standalone {
            return None;
        }
        Daemon::find().await
    }

    /// The running daemon, for a command that has nothing to do without
    /// one.
    pub(crate) async fn needed(command: &str) -> Result<Daemon, Failure> {
        match Daemon::find().await {
            Some(d) => Ok(d),
            None => Err(Failure::new(
                exit::FAILURE,
                format!(
                    "no daemon is running for these settings ({command} needs one): start one with rutella daemon"
                ),
            )),
        }
    }

    /// [`Daemon::find`] in a given folder.
    pub(crate) async fn find_in(dir: &Path) -> Option<Daemon> {
        let text = read_small(&dir.join(API_FILE))?;
        let file: ApiFile = match serde_json::from_str(&text) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "api.json does not read: no daemon");
                return None;
            }
        };
        if let Some(pid) = file.pid {
            if !pid_alive(pid) {
                tracing::debug!(pid, "api.json names a process that is gone: no daemon");
                return None;
            }
        }
        let url = file.url.trim().trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            tracing::debug!(url, "api.json has no http URL: no daemon");
            return None;
        }
        let token = read_small(&dir.join(TOKEN_FILE))?.trim().to_string();
        if token.is_empty() {
            return None;
        }
        let http = reqwest::Client::builder()
            .connect_timeout(ALIVE_WAIT)
            // The daemon's address is used as it is: no proxy in between.
            .no_proxy()
            .build()
            .ok()?;
        let d = Daemon { url, token, http };
        match tokio::time::timeout(ALIVE_WAIT, d.get::<serde_json::Value>("/status")).await {
            Ok(Ok(v)) if v.get("version").is_some() => Some(d),
            Ok(Ok(_)) => {
                tracing::debug!("the daemon's status does not read: no daemon");
                None
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "the daemon does not answer: no daemon");
                None
            }
            Err(_) => {
                tracing::debug!("the daemon does not answer in time: no daemon");
                None
            }
        }
    }

    /// Where the daemon's API is.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The line on standard error that says a command goes through it.
    pub(crate) fn say_using(&self) {
        eprintln!("rutella: using the running daemon at {}", self.url);
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/api/v1{path}", self.url))
            .bearer_auth(&self.token)
    }

    /// Sends a request and reads its JSON answer (`()` for an empty one).
    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, ApiError> {
        let resp = req
            .timeout(REQUEST_WAIT)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = resp.status();
        let body = read_body(resp, MAX_BODY)
            .await
            .map_err(|e| self.transport(e))?;
        if !status.is_success() {
            let (line, kind) = error_line(status, &body);
            return Err(ApiError::Status(status.as_u16(), line, kind));
        }
        let body = if body.is_empty() { &b"null"[..] } else { &body };
        serde_json::from_slice(body).map_err(|e| {
            ApiError::Transport(format!(
                "the daemon at {} answered something unexpected: {e}",
                self.url
            ))
        })
    }

    fn transport(&self, e: impl std::fmt::Display) -> ApiError {
        ApiError::Transport(format!("the daemon at {} did not answer: {e}", self.url))
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub(crate) async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, ApiError> {
        self.send(self.request(reqwest::Method::POST, path).json(body))
            .await
    }

    pub(crate) async fn delete(
        &self,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(), ApiError> {
        let mut req = self.request(reqwest::Method::DELETE, path);
        if let Some(b) = body {
            req = req.json(b);
        }
        self.send::<serde_json::Value>(req).await.map(|_| ())
    }

    /// Opens an event stream (`GET path`, Server-Sent Events).
    pub(crate) async fn events(&self, path: &str) -> Result<Events, ApiError> {
        let resp = self
            .request(reqwest::Method::GET, path)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = resp.status();
        if !status.is_success() {
            let body = read_body(resp, 64 << 10).await.unwrap_or_default();
            let (line, kind) = error_line(status, &body);
            return Err(ApiError::Status(status.as_u16(), line, kind));
        }
        Ok(Events {
            resp,
            decoder: sse::Decoder::default(),
            ready: std::collections::VecDeque::new(),
            url: self.url.clone(),
        })
    }
}

/// Reads a body of at most `max` bytes.
async fn read_body(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > max {
            return Err(format!("an answer longer than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The reason of an error answer: `{"error": "..."}`, else its first line
/// of text, else the status.
fn error_line(status: reqwest::StatusCode, body: &[u8]) -> (String, Option<String>) {
    #[derive(Deserialize)]
    struct E {
        error: String,
        #[serde(default)]
        kind: Option<String>,
    }
    if let Ok(e) = serde_json::from_slice::<E>(body) {
        return (e.error, e.kind);
    }
    let text = String::from_utf8_lossy(body);
    let line = match text.lines().map(str::trim).find(|l| !l.is_empty()) {
        Some(l) => l.chars().take(300).collect(),
        None => format!("the daemon answered {status}"),
    };
    (line, None)
}

/// The exit code of a failure of this kind (an API error's `kind`, a
/// download's `error_kind`): the code the standalone command gives for
/// the same failure. `None` for a kind this program does not know.
pub(crate) fn code_of_kind(kind: &str) -> Option<u8> {
    Some(match kind {
        "not_found" | "no_source" | "no_such" => exit::NOT_FOUND,
        "hash_mismatch" | "refused" | "unreachable" | "network" | "timeout" => exit::NETWORK,
        "invalid_name" | "bad_request" => exit::USAGE,
        "disk" | "cancelled" | "stopped" | "conflict" | "internal" => exit::FAILURE,
        _ => return None,
    })
}

/// An open event stream.
pub(crate) struct Events {
    resp: reqwest::Response,
    decoder: sse::Decoder,
    ready: std::collections::VecDeque<sse::Event>,
    url: String,
}

impl Events {
    /// The next event; `None` when the daemon closed the stream.
    pub(crate) async fn next(&mut self) -> Result<Option<sse::Event>, ApiError> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(Some(e));
            }
            let chunk = self.resp.chunk().await.map_err(|e| {
                ApiError::Transport(format!("the daemon at {} stopped answering: {e}", self.url))
            })?;
            let Some(chunk) = chunk else {
                return Ok(None);
            };
            let events = self
                .decoder
                .push(&chunk)
                .map_err(|e| ApiError::Transport(format!("the daemon at {}: {e}", self.url)))?;
            self.ready.extend(events);
        }
    }
}

/// The daemon's peers by IP address, to name the peers of search results
/// (which the API gives by their download (TCP) address) as the standalone
/// commands do, by their UDP address.
#[derive(Debug, Default)]
pub(crate) struct PeerMap {
    /// The UDP address of the one peer at each IP; `None` for an IP with
    /// several peers (then the TCP address is shown).
    by_ip: std::collections::HashMap<std::net::IpAddr, Option<std::net::SocketAddr>>,
}

impl PeerMap {
    /// The daemon's peers now (none when it does not say).
    pub(crate) async fn load(d: &Daemon) -> PeerMap {
        #[derive(Deserialize)]
        struct P {
            addr: String,
        }
        let list: Vec<P> = d.get("/peers").await.unwrap_or_default();
        PeerMap::from_udp(list.iter().filter_map(|p| p.addr.parse().ok()))
    }

    pub(crate) fn from_udp(peers: impl IntoIterator<Item = std::net::SocketAddr>) -> PeerMap {
        let mut by_ip = std::collections::HashMap::new();
        for udp in peers {
            by_ip
                .entry(udp.ip())
                .and_modify(|e: &mut Option<std::net::SocketAddr>| {
                    if *e != Some(udp) {
                        *e = None
                    }
                })
                .or_insert(Some(udp));
        }
        PeerMap { by_ip }
    }

    /// The UDP address of the peer whose download address is `tcp`, when
    /// it is the only peer at that IP.
    pub(crate) fn udp_of(&self, tcp: &str) -> Option<std::net::SocketAddr> {
        let tcp: std::net::SocketAddr = tcp.parse().ok()?;
        self.by_ip.get(&tcp.ip()).copied().flatten()
    }

    /// A peer of a result as the standalone commands write it.
    pub(crate) fn name(&self, tcp: &str) -> String {
        match self.udp_of(tcp) {
            Some(udp) => peer_text(&udp.to_string()),
            None => tcp.to_string(),
        }
    }
}

/// A peer as the standalone commands write it: the address alone when its
/// port is the classic one.
pub(crate) fn peer_text(addr: &str) -> String {
    match addr.parse::<std::net::SocketAddr>() {
        Ok(a) => rutella_node::PeerAddr {
            udp: a,
            tcp_port: None,
        }
        .to_string(),
        Err(_) => addr.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_api_file_a_broken_one_or_a_dead_pid_is_no_daemon() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Daemon::find_in(dir.path()).await.is_none());
        std::fs::write(dir.path().join(TOKEN_FILE), "ab").unwrap();
        std::fs::write(dir.path().join(API_FILE), "{not json").unwrap();
        assert!(Daemon::find_in(dir.path()).await.is_none());
        // A pid that cannot run (above the kernel's maximum).
        std::fs::write(
            dir.path().join(API_FILE),
            r#"{"url": "http://127.0.0.1:9", "pid": 2147483647}"#,
        )
        .unwrap();
        assert!(Daemon::find_in(dir.path()).await.is_none());
    }

    #[test]
    fn error_lines() {
        let s = reqwest::StatusCode::NOT_FOUND;
        assert_eq!(
            error_line(s, br#"{"error": "no such search"}"#).0,
            "no such search"
        );
        assert_eq!(
            error_line(s, br#"{"error": "nobody", "kind": "no_source"}"#),
            ("nobody".to_string(), Some("no_source".to_string()))
        );
        assert_eq!(
            error_line(s, b"\nmissing token: x\nmore").0,
            "missing token: x"
        );
        assert_eq!(error_line(s, b"").0, "the daemon answered 404 Not Found");
        assert_eq!(
            ApiError::Status(404, String::new(), None).code(),
            exit::NOT_FOUND
        );
        assert_eq!(
            ApiError::Status(504, String::new(), None).code(),
            exit::NETWORK
        );
        assert_eq!(
            ApiError::Status(400, String::new(), None).code(),
            exit::USAGE
        );
        // The kind wins over the status.
        let k = |k: &str| ApiError::Status(409, String::new(), Some(k.into())).code();
        assert_eq!(k("not_found"), exit::NOT_FOUND);
        assert_eq!(k("hash_mismatch"), exit::NETWORK);
        assert_eq!(k("invalid_name"), exit::USAGE);
        assert_eq!(k("disk"), exit::FAILURE);
        assert_eq!(k("something_new"), exit::FAILURE);
    }

    #[test]
    fn result_peers_are_named_by_their_udp_address_when_known() {
        let m = PeerMap::from_udp([
            "127.0.0.1:20000".parse().unwrap(),
            "127.0.0.2:20001".parse().unwrap(),
            "127.0.0.3:20000".parse().unwrap(),
            "127.0.0.3:20002".parse().unwrap(),
        ]);
        assert_eq!(m.name("127.0.0.1:10000"), "127.0.0.1");
        assert_eq!(m.name("127.0.0.2:10001"), "127.0.0.2:20001");
        // Two peers at one IP: which one is not known.
        assert_eq!(m.name("127.0.0.3:10000"), "127.0.0.3:10000");
        assert_eq!(m.name("127.0.0.4:10000"), "127.0.0.4:10000");
    }

    #[test]
    fn peers_are_written_as_the_standalone_commands_write_them() {
        assert_eq!(peer_text("127.0.0.1:20000"), "127.0.0.1");
        assert_eq!(peer_text("127.0.0.1:20001"), "127.0.0.1:20001");
        assert_eq!(peer_text("what"), "what");
    }
}
