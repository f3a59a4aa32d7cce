//! The one-shot commands through a running daemon: `search` and `get`
//! (the same output and exit codes as without one), `downloads`, `status`,
//! `share` and `unshare`.

use super::{ApiError, Daemon};
use crate::args::{secs, GetArgs, SearchArgs};
use crate::escape::escape;
use crate::oneshot::{print_line, search_interrupted, search_result, Stop};
use crate::{exit, Failure};
use rutella_node::PeerAddr;
use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often `get` looks at the daemon's list while it follows a download.
const LIST_CHECK: Duration = Duration::from_secs(2);

/// One distinct file of a search (`RESULT` in docs/API.md).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Found {
    pub(crate) index: u64,
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) size: Option<u64>,
    #[serde(default)]
    pub(crate) hash: Option<String>,
    #[serde(default)]
    pub(crate) peers: Vec<String>,
    /// What each peer said of itself and the file (daemons before this
    /// field: none).
    #[serde(default)]
    pub(crate) sources: Vec<Facts>,
}

/// One peer's facts in a search result (`sources[]` of `RESULT`).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Facts {
    pub(crate) tcp: String,
    #[serde(default)]
    pub(crate) udp: Option<String>,
    #[serde(default)]
    pub(crate) network: Option<String>,
    #[serde(default)]
    pub(crate) push_id: Option<String>,
    #[serde(default)]
    pub(crate) proxies: Vec<String>,
    #[serde(default)]
    pub(crate) firewalled: Option<bool>,
    #[serde(default)]
    pub(crate) sha1: Option<String>,
    #[serde(default)]
    pub(crate) index: Option<u32>,
    #[serde(default)]
    pub(crate) vendor: Option<String>,
}

impl Found {
    /// The hash as 64 hex digits, without its `blake3:` prefix.
    pub(crate) fn hex(&self) -> Option<&str> {
        self.hash
            .as_deref()
            .map(|h| h.strip_prefix("blake3:").unwrap_or(h))
    }
}

/// A download (`DOWNLOAD` in docs/API.md).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub(crate) struct Download {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) state: String,
    #[serde(default)]
    pub(crate) size: Option<u64>,
    #[serde(default)]
    pub(crate) done: u64,
    #[serde(default)]
    pub(crate) speed_bps: f64,
    #[serde(default)]
    pub(crate) eta_secs: Option<f64>,
    #[serde(default)]
    pub(crate) sources: Vec<Source>,
    #[serde(default)]
    pub(crate) file: Option<PathBuf>,
    #[serde(default)]
    pub(crate) error: Option<String>,
    /// Why it failed (`not_found`, `no_source`, …; docs/API.md).
    #[serde(default)]
    pub(crate) error_kind: Option<String>,
    #[serde(default)]
    pub(crate) received: u64,
    #[serde(default)]
    pub(crate) resumed_from: Option<u64>,
}

/// One source of a download.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub(crate) struct Source {
    pub(crate) addr: String,
    #[serde(default)]
    pub(crate) path: Option<String>,
    #[serde(default)]
    pub(crate) received: Option<u64>,
    #[serde(default)]
    pub(crate) verified: Option<u64>,
    #[serde(default)]
    pub(crate) outcome: Option<String>,
}

/// `GET /status`, the fields shown.
#[derive(Debug, Deserialize)]
pub(crate) struct Status {
    #[serde(default)]
    pub(crate) udp: String,
    #[serde(default)]
    pub(crate) tcp: String,
    #[serde(default)]
    pub(crate) peers: u64,
    #[serde(default)]
    pub(crate) tier: Option<Tier>,
    #[serde(default)]
    pub(crate) shares: Vec<PathBuf>,
    #[serde(default)]
    pub(crate) reachability: Option<Reach>,
    #[serde(default)]
    pub(crate) downloads: Option<Counts>,
    #[serde(default)]
    pub(crate) uploads: Option<u64>,
}

/// The scalable overlay's tier in `GET /status`.
#[derive(Debug, Deserialize)]
pub(crate) struct Tier {
    #[serde(default)]
    pub(crate) role: String,
    #[serde(default)]
    pub(crate) leaves: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Reach {
    #[serde(default)]
    pub(crate) text: String,
    #[serde(default)]
    pub(crate) external: Option<String>,
    #[serde(default)]
    pub(crate) mapped_by: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Counts {
    #[serde(default)]
    pub(crate) active: u64,
    #[serde(default)]
    pub(crate) done: u64,
}

/// `GET /shares`, one folder.
#[derive(Debug, Deserialize)]
pub(crate) struct Share {
    pub(crate) path: PathBuf,
    #[serde(default)]
    pub(crate) files: u64,
}

/// Asks the daemon to join each peer (a search or download given
/// `--connect`); one that does not answer is said on standard error, as
/// the search goes on with the daemon's other peers.
async fn join(d: &Daemon, peers: &[PeerAddr]) -> Result<(), Failure> {
    for p in peers {
        let body = serde_json::json!({ "addr": p.udp.to_string() });
        match d.post::<serde_json::Value>("/peers", &body).await {
            Ok(_) => {}
            Err(e @ ApiError::Transport(_)) => return Err(e.into()),
            Err(e) => eprintln!("rutella: peer {p}: {}", escape(e.reason())),
        }
    }
    Ok(())
}

/// How a search through the daemon ended.
enum End {
    /// The daemon said `done`.
    Done(Option<u64>),
    /// `--wait` ran out first.
    TimeUp,
    Interrupted,
    PipeClosed,
}

/// `rutella search` through the daemon: the same lines (text or JSON) and
/// exit codes as the standalone command. The daemon groups copies of a
/// file by hash; a line is written for every peer and name, as without it.
pub(crate) async fn search(d: Daemon, a: SearchArgs) -> Result<(), Failure> {
    let mut stop = Stop::new();
    let wait = secs(a.wait).map_err(|m| Failure::new(exit::USAGE, m))?;
    d.say_using();
    join(&d, &a.connect).await?;
    #[derive(Deserialize)]
    struct Created {
        id: u64,
    }
    let created: Created = d
        .post("/searches", &serde_json::json!({ "query": a.text }))
        .await?;
    let id = created.id;
    let result = follow_search(&d, id, &a, wait, &mut stop).await;
    // Stopped and forgotten either way (after `done` it is only forgotten).
    let _ = d.delete(&format!("/searches/{id}"), None).await;
    let (end, answered_seen, hits) = result?;
    let answered = match end {
        End::PipeClosed => return Ok(()),
        End::Interrupted => return Err(search_interrupted(answered_seen, hits)),
        // The daemon counts the peers that answered with nothing too.
        End::Done(Some(n)) => usize::try_from(n).unwrap_or(usize::MAX).max(answered_seen),
        End::Done(None) | End::TimeUp => answered_seen,
    };
    search_result(answered, hits, wait, &a.text)
}

/// Reads a search's events until it ends; (how, peers seen answering,
/// lines written).
async fn follow_search(
    d: &Daemon,
    id: u64,
    a: &SearchArgs,
    wait: Duration,
    stop: &mut Stop,
) -> Result<(End, usize, usize), Failure> {
    let mut events = d.events(&format!("/searches/{id}/events")).await?;
    let mut peers = super::PeerMap::load(d).await;
    let mut reloaded = false;
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    let mut shown: HashSet<(String, String)> = HashSet::new();
    let mut answered: HashSet<String> = HashSet::new();
    let mut hits = 0usize;
    loop {
        let ev = tokio::select! {
            e = events.next() => e?,
            _ = &mut deadline => return Ok((End::TimeUp, answered.len(), hits)),
            _ = stop.recv() => return Ok((End::Interrupted, answered.len(), hits)),
        };
        let Some(ev) = ev else {
            return Ok((End::Done(None), answered.len(), hits));
        };
        match ev.event.as_str() {
            "result" => {
                let Ok(found) = serde_json::from_str::<Found>(&ev.data) else {
                    tracing::debug!(data = %ev.data, "a result that does not read");
                    continue;
                };
                for peer in &found.peers {
                    answered.insert(peer.clone());
                    // A peer that joined since: its name once more.
                    if peers.udp_of(peer).is_none() && !reloaded {
                        peers = super::PeerMap::load(d).await;
                        reloaded = true;
                    }
                    if !shown.insert((peer.clone(), found.name.clone())) {
                        continue;
                    }
                    hits += 1;
                    match print_line(&hit_line(peer, &found, a.json, &peers)) {
                        Ok(true) => {}
                        Ok(false) => return Ok((End::PipeClosed, answered.len(), hits)),
                        Err(e) => return Err(e),
                    }
                }
            }
            "done" => {
                #[derive(Deserialize)]
                struct Done {
                    #[serde(default)]
                    peers_answered: Option<u64>,
                }
                let n = serde_json::from_str::<Done>(&ev.data)
                    .ok()
                    .and_then(|d| d.peers_answered);
                return Ok((End::Done(n), answered.len(), hits));
            }
            _ => {}
        }
    }
}

/// One line of `rutella search`'s output for a file and one of its peers
/// (`tcp`, its download address), as the standalone command writes it.
/// The peer's facts come with the result; a daemon that does not give
/// them leaves them `null`.
pub(crate) fn hit_line(tcp: &str, f: &Found, json: bool, peers: &super::PeerMap) -> String {
    if json {
        let facts = f
            .sources
            .iter()
            .find(|s| s.tcp == tcp)
            .cloned()
            .unwrap_or_default();
        serde_json::json!({
            "peer": peers.name(tcp),
            "udp": facts.udp.or_else(|| peers.udp_of(tcp).map(|u| u.to_string())),
            "tcp": tcp,
            "name": f.name,
            "size": f.size,
            "hash": f.hex(),
            "push_id": facts.push_id,
            "proxies": facts.proxies,
            "firewalled": facts.firewalled,
            "network": facts.network,
            "sha1": facts.sha1,
            "index": facts.index,
            "vendor": facts.vendor,
        })
        .to_string()
    } else {
        let peer = peers.name(tcp);
        match f.size {
            Some(size) => format!("{peer}\t{size}\t{}", escape(&f.name)),
            None => format!("{peer}\t-\t{}", escape(&f.name)),
        }
    }
}

/// `rutella get` through the daemon: the file goes to the daemon's
/// downloads folder; the same output as the standalone command (the path,
/// or a JSON report) once it is complete.
pub(crate) async fn get(d: Daemon, a: GetArgs) -> Result<(), Failure> {
    let mut stop = Stop::new();
    let wait = secs(a.wait).map_err(|m| Failure::new(exit::USAGE, m))?;
    let hash = match a.from {
        Some(_) => None,
        None => match rutella_proto::message::parse_hex32(&a.name.to_ascii_lowercase()) {
            Some(h) => Some(h),
            None => {
                return Err(Failure::new(
                    exit::USAGE,
                    format!(
                        "{:?} is not a BLAKE3 hash (64 hex digits): give a hash, or use --from ADDR to download by name",
                        a.name
                    ),
                ))
            }
        },
    };
    d.say_using();
    join(&d, &a.connect).await?;
    // Listening before the download starts: no event is missed.
    let mut events = d.events("/events").await?;
    let started: Download = match (a.from, hash) {
        (Some(from), _) => {
            // The daemon downloads by name from the peer's TCP address
            // (known for classic ports; see main.rs for the others).
            let tcp =
                std::net::SocketAddr::new(from.udp.ip(), from.tcp_port.unwrap_or(from.udp.port()));
            let body = serde_json::json!({ "from": tcp.to_string(), "name": a.name });
            d.post("/downloads", &body).await?
        }
        (None, Some(hash)) => by_hash(&d, &hash, wait, &mut stop).await?,
        (None, None) => return Err(Failure::new(exit::USAGE, "nothing to get")),
    };
    if a.no_wait {
        eprintln!(
            "rutella: download {} started in the daemon: rutella downloads shows it",
            started.id
        );
        return print_line(&started.id.to_string()).map(|_| ());
    }
    let bar = !a.json
        && std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let progress = bar.then(|| {
        let style = indicatif::ProgressStyle::with_template(
            "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta} left",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        indicatif::ProgressBar::new(0).with_style(style)
    });
    let show = |dl: &Download| {
        if let Some(p) = &progress {
            if let Some(total) = dl.size {
                p.set_length(total);
            }
            p.set_position(dl.done);
            p.set_message(escape(&dl.name).into_owned());
        }
    };
    let id = started.id;
    let mut last = started;
    // A download cancelled elsewhere (the web page) is forgotten without an
    // event: the list is looked at now and then.
    let mut check = tokio::time::interval(LIST_CHECK);
    check.tick().await;
    let end = loop {
        if matches!(last.state.as_str(), "done" | "failed" | "cancelled") {
            break Ok(last.clone());
        }
        let ev = tokio::select! {
            e = events.next() => e,
            _ = check.tick() => {
                let list: Vec<Download> = d.get("/downloads").await?;
                match list.into_iter().find(|x| x.id == id) {
                    Some(dl) => last = dl,
                    None => last.state = "cancelled".into(),
                }
                continue;
            }
            _ = stop.recv() => break Err(Failure::new(
                exit::INTERRUPTED,
                format!("stopped following download {id}: the daemon goes on with it (rutella downloads shows it)"),
            )),
        };
        match ev {
            Ok(Some(ev)) => match ev.event.as_str() {
                "download_progress" | "download_done" | "download_failed" => {
                    if let Ok(dl) = serde_json::from_str::<Download>(&ev.data) {
                        if dl.id == id {
                            show(&dl);
                            last = dl;
                        }
                    }
                }
                // Events were missed: the list tells where it stands.
                "lagged" => {
                    let list: Vec<Download> = d.get("/downloads").await?;
                    if let Some(dl) = list.into_iter().find(|x| x.id == id) {
                        last = dl;
                    }
                }
                _ => {}
            },
            Ok(None) => {
                break Err(Failure::new(
                    exit::NETWORK,
                    format!("the daemon at {} closed its event stream", d.url()),
                ))
            }
            Err(e) => break Err(e.into()),
        }
    };
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    let dl = end?;
    match dl.state.as_str() {
        "done" => {
            let path = dl.file.clone().unwrap_or_default();
            if a.json {
                let sources: Vec<serde_json::Value> = dl
                    .sources
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "peer": s.addr,
                            "received": s.received,
                            "verified": s.verified,
                            "outcome": s.outcome,
                            "path": s.path,
                        })
                    })
                    .collect();
                let obj = serde_json::json!({
                    "path": path,
                    "size": dl.size.unwrap_or(dl.done),
                    "resumed_from": dl.resumed_from,
                    "received": dl.received,
                    "sources": sources,
                });
                print_line(&obj.to_string())?;
            } else {
                print_line(&crate::escape::path(&path))?;
            }
            Ok(())
        }
        "cancelled" => Err(Failure::new(
            exit::FAILURE,
            format!("download {id} was cancelled"),
        )),
        // The standalone command's code for the same failure.
        _ => Err(Failure::new(
            dl.error_kind
                .as_deref()
                .and_then(super::code_of_kind)
                .unwrap_or(exit::NETWORK),
            dl.error.unwrap_or_else(|| format!("download {id} failed")),
        )),
    }
}

/// Starts a download by hash in the daemon: asks the network for the hash
/// (a search, as the standalone command does), then downloads the file as
/// its peers name it, from every peer that answered within `wait`.
async fn by_hash(
    d: &Daemon,
    hash: &[u8; 32],
    wait: Duration,
    stop: &mut Stop,
) -> Result<Download, Failure> {
    #[derive(Deserialize)]
    struct Created {
        id: u64,
    }
    let hex = rutella_proto::message::hex32(hash);
    let query = rutella_proto::hash_query(hash);
    let created: Created = d
        .post("/searches", &serde_json::json!({ "query": query }))
        .await?;
    let id = created.id;
    let found = async {
        let mut events = d.events(&format!("/searches/{id}/events")).await?;
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        let mut index = None;
        loop {
            let ev = tokio::select! {
                e = events.next() => e?,
                _ = &mut deadline => break,
                _ = stop.recv() => return Err(Failure::new(
                    exit::INTERRUPTED,
                    "download interrupted before it started",
                )),
            };
            let Some(ev) = ev else { break };
            match ev.event.as_str() {
                "result" => {
                    if let Ok(f) = serde_json::from_str::<Found>(&ev.data) {
                        if f.hex().is_some_and(|h| h.eq_ignore_ascii_case(&hex)) {
                            index = Some(f.index);
                        }
                    }
                }
                "done" => break,
                _ => {}
            }
        }
        Ok::<_, Failure>(index)
    }
    .await;
    let started = match found {
        Ok(Some(index)) => d
            .post(
                "/downloads",
                &serde_json::json!({ "search": id, "index": index }),
            )
            .await
            .map_err(Failure::from),
        Ok(None) => Err(Failure::new(
            exit::NOT_FOUND,
            format!(
                "no peer offers {hex} (asked every peer found within {:.1} s)",
                wait.as_secs_f64()
            ),
        )),
        Err(e) => Err(e),
    };
    let _ = d.delete(&format!("/searches/{id}"), None).await;
    started
}

/// `rutella downloads`: the daemon's downloads, as the console lists them,
/// or one JSON object (`DOWNLOAD`) per line.
pub(crate) async fn downloads(d: Daemon, json: bool) -> Result<(), Failure> {
    d.say_using();
    let list: Vec<Download> = d.get("/downloads").await?;
    if json {
        for dl in &list {
            let line = serde_json::to_string(dl).map_err(|e| {
                Failure::new(exit::FAILURE, format!("cannot write a download: {e}"))
            })?;
            if !print_line(&line)? {
                break;
            }
        }
        return Ok(());
    }
    let names = super::PeerMap::load(&d).await;
    for line in downloads_table(&list, &names) {
        if !print_line(&line)? {
            break;
        }
    }
    Ok(())
}

/// The downloads table, in the console's words and columns (sources
/// named by `names` as the console names them).
pub(crate) fn downloads_table(list: &[Download], names: &super::PeerMap) -> Vec<String> {
    let mut out = Vec::new();
    if list.is_empty() {
        out.push("No downloads yet: search, then get N.".to_string());
        return out;
    }
    out.push(format!(
        "{:>3}  {:<8} {:>5} {:>11} {:>12}  {:<21} NAME",
        "#", "STATE", "DONE", "SPEED", "TIME LEFT", "FROM"
    ));
    for dl in list {
        let running = dl.state == "running";
        let pct = match dl.size {
            Some(0) if dl.state == "done" => "100%".to_string(),
            Some(total) if total > 0 => {
                format!("{:.0}%", (dl.done as f64 * 100.0 / total as f64).min(100.0))
            }
            _ => "?".to_string(),
        };
        let speed = if running {
            format!(
                "{}/s",
                crate::console::bytes_text(dl.speed_bps.max(0.0) as u64)
            )
        } else {
            "-".into()
        };
        let eta = if running {
            crate::console::eta_text(dl.eta_secs.map(|s| Duration::from_secs_f64(s.max(0.0))))
        } else {
            "-".into()
        };
        let from: Vec<String> = dl.sources.iter().map(|s| names.name(&s.addr)).collect();
        out.push(format!(
            "{:>3}  {:<8} {:>5} {:>11} {:>12}  {:<21} {}",
            dl.id,
            escape(&dl.state),
            pct,
            speed,
            eta,
            match from.len() {
                1 => escape(&from[0]).into_owned(),
                n => plural(n, "peer"),
            },
            escape(&dl.name)
        ));
        if from.len() > 1 {
            out.push(format!("{:>5}from {}", "", escape(&from.join(", "))));
        }
        for s in &dl.sources {
            if let Some(path) = s.path.as_deref().filter(|p| *p != "direct") {
                out.push(format!(
                    "{:>5}{}: {}",
                    "",
                    escape(&names.name(&s.addr)),
                    escape(path)
                ));
            }
        }
        match (dl.state.as_str(), &dl.file, &dl.error) {
            ("done", Some(p), _) => out.push(format!("{:>5}→ {}", "", crate::escape::path(p))),
            ("failed", _, Some(r)) => out.push(format!(
                "{:>5}✗ {}",
                "",
                escape(&crate::console::friendly_reason(r))
            )),
            _ => {}
        }
    }
    out
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `rutella status`: the console's words for the daemon's node, then its
/// downloads and uploads.
pub(crate) async fn status(d: Daemon) -> Result<(), Failure> {
    d.say_using();
    for line in status_lines(&d).await? {
        if !print_line(&line)? {
            break;
        }
    }
    Ok(())
}

/// The status in the console's words.
pub(crate) async fn status_lines(d: &Daemon) -> Result<Vec<String>, ApiError> {
    let s: Status = d.get("/status").await?;
    let shares: Vec<Share> = d.get("/shares").await.unwrap_or_default();
    let files: u64 = shares.iter().map(|s| s.files).sum();
    let mut out = vec![
        format!("Listening on UDP {} and TCP {}.", s.udp, s.tcp),
        format!("Peers: {}.", s.peers),
    ];
    if let Some(t) = &s.tier {
        out.push(match (t.role.as_str(), t.leaves) {
            ("ultrapeer", Some(n)) => format!("Tier: ultrapeer with {n} leaves."),
            ("ultrapeer", None) => "Tier: ultrapeer.".to_string(),
            _ => "Tier: leaf.".to_string(),
        });
    }
    let folders: Vec<String> = s.shares.iter().map(|p| crate::escape::path(p)).collect();
    out.push(format!(
        "Sharing {files} file(s) from {}.",
        if folders.is_empty() {
            "no folder".to_string()
        } else {
            folders.join(", ")
        }
    ));
    if let Some(r) = &s.reachability {
        if let (Some(by), Some(ext)) = (&r.mapped_by, &r.external) {
            let ip = ext
                .parse::<std::net::SocketAddr>()
                .map(|a| a.ip().to_string())
                .unwrap_or_else(|_| ext.clone());
            out.push(format!(
                "Port mapping: made by {} at {}.",
                escape(by),
                escape(&ip)
            ));
        }
        if !r.text.is_empty() {
            out.push(escape(&r.text).into_owned());
        }
    }
    if let Some(c) = &s.downloads {
        out.push(format!(
            "Downloads: {} running, {} done; uploads: {}.",
            c.active,
            c.done,
            s.uploads.unwrap_or(0)
        ));
    }
    Ok(out)
}

/// `rutella share DIR` through the daemon: shared at once (the daemon
/// keeps it in the settings file).
pub(crate) async fn share(d: Daemon, dir: &Path) -> Result<(), Failure> {
    d.say_using();
    let dir = crate::console::setup::absolute(dir);
    let s: Share = d
        .post("/shares", &serde_json::json!({ "path": dir }))
        .await?;
    print_line(&format!(
        "Sharing {} ({} files).",
        crate::escape::path(&s.path),
        s.files
    ))
    .map(|_| ())
}

/// `rutella unshare DIR` through the daemon.
pub(crate) async fn unshare(d: Daemon, dir: &Path) -> Result<(), Failure> {
    d.say_using();
    let abs = crate::console::setup::absolute(dir);
    let r = d
        .delete("/shares", Some(&serde_json::json!({ "path": abs })))
        .await;
    // A folder shared as typed (not resolved) is removed as typed.
    let r = match r {
        Err(ApiError::Status(404, ..)) if abs != dir => {
            d.delete("/shares", Some(&serde_json::json!({ "path": dir })))
                .await
        }
        r => r,
    };
    r?;
    print_line(&format!("Stopped sharing {}.", crate::escape::path(&abs))).map(|_| ())
}

/// `rutella share DIR` and `unshare DIR`: through the running daemon
/// (shared or not at once), else in the settings file (from the next start
/// of the console, `serve` or the daemon on).
pub(crate) async fn share_or_remember(dir: &Path, add: bool) -> Result<(), Failure> {
    if let Some(d) = Daemon::find().await {
        return if add {
            share(d, dir).await
        } else {
            unshare(d, dir).await
        };
    }
    let path = crate::config_file::path()?;
    let mut file = crate::config_file::ConfigFile::load(&path)?;
    let abs = crate::console::setup::absolute(dir);
    let same = |s: &PathBuf| *s == abs || crate::console::setup::absolute(s) == abs;
    let line = if add {
        crate::oneshot::check_share(dir)?;
        if file.shares.iter().any(same) {
            format!(
                "{} is already shared (in {}).",
                crate::escape::path(&abs),
                crate::escape::path(&path)
            )
        } else {
            file.shares.push(abs.clone());
            file.save(&path)?;
            format!(
                "No daemon is running: {} is shared from the next start on (saved in {}).",
                crate::escape::path(&abs),
                crate::escape::path(&path)
            )
        }
    } else {
        let before = file.shares.len();
        file.shares.retain(|s| !same(s));
        if file.shares.len() == before {
            return Err(Failure::new(
                exit::NOT_FOUND,
                format!(
                    "{} is not shared (see shares in {})",
                    crate::escape::path(&abs),
                    crate::escape::path(&path)
                ),
            ));
        }
        file.save(&path)?;
        format!(
            "No daemon is running: {} is no longer shared from the next start on (saved in {}).",
            crate::escape::path(&abs),
            crate::escape::path(&path)
        )
    };
    print_line(&line).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(size: Option<u64>) -> Found {
        Found {
            index: 0,
            name: "a\u{1b}b.ogg".into(),
            size,
            hash: Some(format!("blake3:{}", "ab".repeat(32))),
            peers: vec!["127.0.0.1:20001".into()],
            sources: Vec::new(),
        }
    }

    #[test]
    fn hit_lines_are_the_standalone_ones() {
        let f = found(Some(7));
        let peers = super::super::PeerMap::from_udp([
            "127.0.0.1:20001".parse().unwrap(),
            "127.0.0.2:20000".parse().unwrap(),
        ]);
        assert_eq!(
            hit_line("127.0.0.1:10001", &f, false, &peers),
            "127.0.0.1:20001\t7\ta\\x1bb.ogg"
        );
        assert_eq!(
            hit_line("127.0.0.2:10000", &found(None), false, &peers),
            "127.0.0.2\t-\ta\\x1bb.ogg"
        );
        let v: serde_json::Value =
            serde_json::from_str(&hit_line("127.0.0.1:10001", &f, true, &peers)).unwrap();
        assert_eq!(v["peer"], "127.0.0.1:20001");
        assert_eq!(v["udp"], "127.0.0.1:20001");
        assert_eq!(v["tcp"], "127.0.0.1:10001");
        assert_eq!(v["name"], "a\u{1b}b.ogg");
        assert_eq!(v["size"], 7);
        assert_eq!(v["hash"], "ab".repeat(32));
    }

    #[test]
    fn the_downloads_table_has_the_console_columns() {
        let dl = Download {
            id: 3,
            name: "x.bin".into(),
            state: "done".into(),
            size: Some(10),
            done: 10,
            speed_bps: 0.0,
            eta_secs: None,
            sources: vec![Source {
                addr: "127.0.0.1:20001".into(),
                path: Some("push via 127.0.0.1:20002".into()),
                received: Some(10),
                verified: Some(10),
                outcome: Some("served".into()),
            }],
            file: Some(PathBuf::from("/d/x.bin")),
            error: None,
            error_kind: None,
            received: 10,
            resumed_from: Some(0),
        };
        let t = downloads_table(&[dl], &super::super::PeerMap::default());
        assert!(t[0].starts_with("  #  STATE"), "{t:?}");
        assert!(t[1].contains("done") && t[1].contains("100%") && t[1].ends_with("x.bin"));
        assert!(t[2].contains("push via 127.0.0.1:20002"), "{t:?}");
        assert!(t[3].ends_with("→ /d/x.bin"), "{t:?}");
        assert_eq!(
            downloads_table(&[], &super::super::PeerMap::default()).len(),
            1
        );
    }
}
