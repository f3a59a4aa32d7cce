//! The console attached to a running daemon: the same prompt and words,
//! every command a request to the daemon's API (docs/API.md). `quit`
//! leaves the daemon running.

use super::commands::{self as api, Download, Found};
use super::{ApiError, Daemon};
use crate::console::complete;
use crate::console::get_args::{self, GetCmd};
use crate::escape::escape;
use crate::Failure;
use rustyline::error::ReadlineError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::runtime::Runtime;

/// The commands, as `help` lists them when attached.
const HELP: &[(&str, &str)] = &[
    (
        "search WORDS",
        "search the network for files whose path holds every word (also: s WORDS)",
    ),
    (
        "get N",
        "download result N of the last search (get 1 3, get 1-3: several)",
    ),
    (
        "get IP NAME",
        "download the file NAME from the peer IP (or IP:UDPPORT); quote a NAME with spaces",
    ),
    (
        "downloads",
        "list the daemon's downloads with state, percent, speed, time left and sources",
    ),
    ("pause N", "pause download N, keeping what it got"),
    ("resume N", "go on with a paused or failed download N"),
    ("cancel N", "stop download N and delete its partial data"),
    (
        "remove [N]",
        "remove download N from the list, or all finished and failed",
    ),
    (
        "move N up|down|top|bottom|P",
        "move download N in the list: queued downloads start in its order",
    ),
    (
        "uploads",
        "list the daemon's uploads in progress: peer, bytes sent, speed, file",
    ),
    ("peers", "list the peers the daemon knows"),
    (
        "status",
        "the daemon's addresses, peers, shares and reachability",
    ),
    ("connect ADDR", "join a peer: IP or IP:UDPPORT"),
    ("share [DIR]", "list the shared folders, or share one more"),
    ("unshare DIR", "stop sharing a folder"),
    ("help", "show this list"),
    ("quit", "leave the console; the daemon keeps running"),
];

/// Commands of the console that do nothing attached, and why.
const NOT_ATTACHED: &[(&str, &str)] = &[(
    "notices",
    "notices are not available attached to a daemon: the console announces finished and failed downloads only",
)];

/// Opens the console: attached to the running daemon (always with
/// `--attach`, and by itself when one runs, unless `--standalone`), or on a
/// node of its own.
pub(crate) fn console_or_attach(
    rt: &Runtime,
    args: crate::args::ConsoleArgs,
) -> Result<(), Failure> {
    if args.attach {
        let d = rt.block_on(Daemon::needed("rutella --attach"))?;
        return run(rt, d);
    }
    if let Some(d) = rt.block_on(Daemon::unless(args.standalone)) {
        return run(rt, d);
    }
    crate::console::setup::console(rt, args)
}

/// Runs the attached console until `quit` or end of input.
pub(crate) fn run(rt: &Runtime, d: Daemon) -> Result<(), Failure> {
    let mut rl = crate::console::setup::editor()?;
    println!(
        "Attached to the running daemon at {} (quit leaves it running; --standalone starts a node of its own).",
        d.url()
    );
    match rt.block_on(api::status_lines(&d)) {
        Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
        Err(e) => println!("{e}"),
    }
    println!("Type help for the commands.");
    let history = crate::config_file::path()
        .ok()
        .map(|p| p.with_file_name("history.txt"));
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    let printer: Arc<Mutex<Option<Box<dyn rustyline::ExternalPrinter + Send>>>> =
        Arc::new(Mutex::new(rl.create_external_printer().ok().map(|p| {
            Box::new(p) as Box<dyn rustyline::ExternalPrinter + Send>
        })));
    let pending: Arc<Mutex<Vec<String>>> = Arc::default();
    let news = rt.spawn(announce(d.clone(), printer, pending.clone()));
    let mut console = Attached {
        d,
        search: None,
        results: BTreeMap::new(),
    };
    let result = loop {
        for l in std::mem::take(&mut *pending.lock().unwrap_or_else(|e| e.into_inner())) {
            println!("{l}");
        }
        if let Some(h) = rl.helper() {
            h.set_mode(complete::Mode::Command);
            h.set_live(rt.block_on(console.live()));
        }
        match rl.readline("rutella> ") {
            Ok(line) => {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let _ = rl.add_history_entry(line);
                if !rt.block_on(console.command(line)) {
                    break Ok(());
                }
            }
            Err(ReadlineError::Interrupted) => println!("(type quit to leave)"),
            Err(ReadlineError::Eof) => break Ok(()),
            Err(e) => {
                break Err(Failure::new(
                    crate::exit::FAILURE,
                    format!("cannot read from the terminal: {e}"),
                ))
            }
        }
    };
    news.abort();
    if let Some(id) = console.search {
        let _ = rt.block_on(console.d.delete(&format!("/searches/{id}"), None));
    }
    if let Some(h) = &history {
        if let Err(e) = rl.save_history(h) {
            tracing::debug!(error = %e, "cannot save the command history");
        }
    }
    result
}

/// Announces downloads that end, above the prompt (or before the next one
/// when the terminal cannot print above it).
async fn announce(
    d: Daemon,
    printer: Arc<Mutex<Option<Box<dyn rustyline::ExternalPrinter + Send>>>>,
    pending: Arc<Mutex<Vec<String>>>,
) {
    let Ok(mut events) = d.events("/events").await else {
        return;
    };
    while let Ok(Some(ev)) = events.next().await {
        let Ok(dl) = serde_json::from_str::<Download>(&ev.data) else {
            continue;
        };
        let line = match ev.event.as_str() {
            "download_done" => format!(
                "✓ Downloaded {} to {}",
                escape(&dl.name),
                dl.file
                    .as_deref()
                    .map(crate::escape::path)
                    .unwrap_or_default()
            ),
            "download_failed" => format!(
                "✗ {} failed: {}",
                escape(&dl.name),
                escape(&crate::console::friendly_reason(
                    dl.error.as_deref().unwrap_or("")
                ))
            ),
            _ => continue,
        };
        let mut p = printer.lock().unwrap_or_else(|e| e.into_inner());
        let printed = match p.as_mut() {
            Some(pr) => pr.print(line.clone()).is_ok(),
            None => false,
        };
        if !printed {
            *p = None;
            let mut q = pending.lock().unwrap_or_else(|e| e.into_inner());
            if q.len() < 256 {
                q.push(line);
            }
        }
    }
}

struct Attached {
    d: Daemon,
    /// The last search, whose results `get N` takes.
    search: Option<u64>,
    /// Its results by index (0-based, as the daemon numbers them).
    results: BTreeMap<u64, Found>,
}

#[derive(Deserialize)]
struct Peer {
    addr: String,
    #[serde(default)]
    kind: String,
}

impl Attached {
    async fn live(&self) -> complete::Live {
        let peers: Vec<Peer> = self.d.get("/peers").await.unwrap_or_default();
        let shares: Vec<api::Share> = self.d.get("/shares").await.unwrap_or_default();
        complete::Live {
            shares: shares
                .iter()
                .map(|s| s.path.display().to_string())
                .collect(),
            results: self.results.values().map(|f| f.name.clone()).collect(),
            peers: peers.iter().map(|p| super::peer_text(&p.addr)).collect(),
        }
    }

    /// Runs one command; `false` for `quit`.
    async fn command(&mut self, line: &str) -> bool {
        let (cmd, rest) = match line.split_once(char::is_whitespace) {
            Some((c, r)) => (c, r.trim()),
            None => (line, ""),
        };
        let cmd = cmd.to_ascii_lowercase();
        let r = match cmd.as_str() {
            "search" | "s" | "find" => self.search(rest).await,
            "get" | "g" => self.get(rest).await,
            "downloads" | "d" | "dl" => {
                let list: Result<Vec<Download>, _> = self.d.get("/downloads").await;
                let names = super::PeerMap::load(&self.d).await;
                list.map(|l| {
                    for line in api::downloads_table(&l, &names) {
                        println!("{line}");
                    }
                })
            }
            "peers" | "p" => self.peers().await,
            "status" | "st" => api::status_lines(&self.d).await.map(|lines| {
                for l in lines {
                    println!("{l}");
                }
            }),
            "connect" | "c" => self.connect(rest).await,
            "share" => self.share(rest).await,
            "unshare" => self.unshare(rest).await,
            "pause" | "resume" | "cancel" | "remove" | "rm" => self.control(rest, &cmd).await,
            "move" | "mv" => self.move_download(rest).await,
            "uploads" | "u" | "ul" => self.uploads().await,
            "help" | "h" | "?" => {
                for (c, what) in HELP {
                    println!("  {c:<15} {what}");
                }
                println!(
                    "  Not available attached: {}.",
                    NOT_ATTACHED
                        .iter()
                        .map(|(c, _)| *c)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                Ok(())
            }
            "quit" | "exit" | "q" => return false,
            other => {
                match NOT_ATTACHED.iter().find(|(c, _)| *c == other) {
                    Some((_, why)) => println!("{}", capitalise(why)),
                    None => println!("Unknown command {cmd:?}: type help to see the commands."),
                }
                Ok(())
            }
        };
        if let Err(e) = r {
            println!("{}", capitalise(&escape(e.reason())));
        }
        true
    }

    async fn search(&mut self, text: &str) -> Result<(), ApiError> {
        if text.is_empty() {
            println!("Search for what? For example: search cloud");
            return Ok(());
        }
        #[derive(Deserialize)]
        struct Created {
            id: u64,
        }
        let peers: Vec<Peer> = self.d.get("/peers").await?;
        if peers.is_empty() {
            println!(
                "No peer to ask yet: connect ADDR to join one, or wait until a peer joins you."
            );
            return Ok(());
        }
        if let Some(old) = self.search.take() {
            let _ = self.d.delete(&format!("/searches/{old}"), None).await;
        }
        self.results.clear();
        let created: Created = self
            .d
            .post("/searches", &serde_json::json!({ "query": text }))
            .await?;
        self.search = Some(created.id);
        println!(
            "Searching {} peer(s) for {text:?}… (Ctrl-C stops waiting)",
            peers.len()
        );
        let mut events = self
            .d
            .events(&format!("/searches/{}/events", created.id))
            .await?;
        let no_echo = crate::console::no_echo::NoEcho::start();
        let mut stopped = false;
        let mut answered: Option<u64> = None;
        loop {
            let ev = tokio::select! {
                e = events.next() => e,
                _ = tokio::signal::ctrl_c() => {
                    stopped = true;
                    break;
                }
            };
            let Some(ev) = ev? else { break };
            match ev.event.as_str() {
                "result" => {
                    if let Ok(f) = serde_json::from_str::<Found>(&ev.data) {
                        if self.results.len() < crate::console::results::MAX_RESULTS
                            || self.results.contains_key(&f.index)
                        {
                            self.results.insert(f.index, f);
                        }
                    }
                }
                "done" => {
                    #[derive(Deserialize)]
                    struct Done {
                        #[serde(default)]
                        peers_answered: Option<u64>,
                    }
                    answered = serde_json::from_str::<Done>(&ev.data)
                        .ok()
                        .and_then(|d| d.peers_answered);
                    break;
                }
                _ => {}
            }
        }
        drop(no_echo);
        let names = super::PeerMap::load(&self.d).await;
        let mut with_files = std::collections::HashSet::new();
        let mut shared = 0usize;
        for (n, f) in self.results.values().enumerate() {
            println!("{}", result_line(n + 1, f, &names));
            with_files.extend(f.peers.iter().cloned());
            if f.peers.len() > 1 {
                shared += 1;
            }
            for p in f.peers.iter().skip(1) {
                println!(
                    "{:>4}  {:<21} {:>10}  (same file as {}: {} peers)",
                    "+",
                    escape(&names.name(p)),
                    "",
                    n + 1,
                    f.peers.len()
                );
            }
        }
        let n = self.results.len();
        let how = if stopped { "Search stopped: " } else { "" };
        let answered = answered
            .map(|a| a as usize)
            .unwrap_or(0)
            .max(with_files.len());
        if answered == 0 {
            println!("{how}No peer sent a response to your query.");
        } else if n == 0 {
            println!("{how}{answered} peer(s) answered; no file matches {text:?}.");
        } else {
            let grouped = if shared > 0 {
                format!(", {shared} of them on several peers")
            } else {
                String::new()
            };
            let peers = with_files.len();
            let peers = if peers == 1 {
                "1 peer".to_string()
            } else {
                format!("{peers} peers")
            };
            println!("{how}{n} file(s) from {peers}{grouped}. Type get N to download one.");
        }
        Ok(())
    }

    async fn get(&mut self, rest: &str) -> Result<(), ApiError> {
        match get_args::parse(rest) {
            Err(e) => println!("{e}"),
            Ok(GetCmd::ByName { addr, typed, name }) => {
                // The daemon takes the peer's download (TCP) address.
                let Some(tcp) = addr.tcp_port else {
                    println!(
                        "Cannot get {} from {}: attached, give the peer as IP alone (classic ports); its download port is not known.",
                        escape(&name),
                        escape(&typed)
                    );
                    return Ok(());
                };
                let tcp = std::net::SocketAddr::new(addr.udp.ip(), tcp);
                let body = serde_json::json!({ "from": tcp.to_string(), "name": name });
                match self.d.post::<Download>("/downloads", &body).await {
                    Ok(dl) => println!(
                        "Downloading {} from {} (download {}; type downloads to see it).",
                        escape(&dl.name),
                        escape(&typed),
                        dl.id
                    ),
                    Err(e) => println!(
                        "Cannot get {} from {}: {}",
                        escape(&name),
                        escape(&typed),
                        escape(e.reason())
                    ),
                }
            }
            Ok(GetCmd::Results { picks, .. }) => {
                let (Some(search), k) = (self.search, self.results.len()) else {
                    println!("There are no results: search first, then get N.");
                    return Ok(());
                };
                if k == 0 {
                    println!("There are no results: search first, then get N.");
                    return Ok(());
                }
                if let Some(n) = picks.iter().find(|&&n| n == 0 || n > k) {
                    println!("There is no result {n}: the results are numbered 1 to {k}.");
                    return Ok(());
                }
                let indexes: Vec<u64> = self.results.keys().copied().collect();
                for n in picks {
                    let index = indexes[n - 1];
                    let body = serde_json::json!({ "search": search, "index": index });
                    let dl: Download = self.d.post("/downloads", &body).await?;
                    let names = super::PeerMap::load(&self.d).await;
                    let from: Vec<String> =
                        dl.sources.iter().map(|s| names.name(&s.addr)).collect();
                    let from = if from.is_empty() {
                        String::new()
                    } else {
                        format!(" from {}", escape(&from.join(", ")))
                    };
                    println!(
                        "Downloading {}{from} (download {}; type downloads to see it).",
                        escape(&dl.name),
                        dl.id
                    );
                }
            }
        }
        Ok(())
    }

    async fn peers(&self) -> Result<(), ApiError> {
        let peers: Vec<Peer> = self.d.get("/peers").await?;
        if peers.is_empty() {
            println!("No peers yet: connect ADDR to join one, or wait until a peer joins you.");
            return Ok(());
        }
        println!("{} peer(s):", peers.len());
        for p in peers {
            println!(
                "  {:<21}  {}",
                escape(&super::peer_text(&p.addr)),
                escape(&p.kind)
            );
        }
        Ok(())
    }

    async fn connect(&self, rest: &str) -> Result<(), ApiError> {
        let addr: rutella_node::PeerAddr = match rest.parse() {
            Ok(a) => a,
            Err(e) => {
                println!("{e}");
                return Ok(());
            }
        };
        let body = serde_json::json!({ "addr": addr.udp.to_string() });
        match self.d.post::<serde_json::Value>("/peers", &body).await {
            Ok(_) => {
                let peers: Vec<Peer> = self.d.get("/peers").await.unwrap_or_default();
                println!("Joined {addr}; {} peer(s) known.", peers.len());
            }
            Err(ApiError::Status(504, ..)) => println!(
                "No answer from {addr}: check the address and that its node is running, then connect again."
            ),
            Err(e) => return Err(e),
        }
        Ok(())
    }

    async fn share(&self, rest: &str) -> Result<(), ApiError> {
        if rest.is_empty() {
            let shares: Vec<api::Share> = self.d.get("/shares").await?;
            if shares.is_empty() {
                println!("Nothing is shared: share DIR to share a folder.");
            }
            for s in shares {
                println!("  {}", crate::escape::path(&s.path));
            }
            return Ok(());
        }
        let dir = crate::console::setup::expand_home(rest);
        if !dir.is_dir() {
            println!(
                "No folder at {}: type the path of an existing folder.",
                crate::escape::path(&dir)
            );
            return Ok(());
        }
        let dir = crate::console::setup::absolute(&dir);
        let s: api::Share = self
            .d
            .post("/shares", &serde_json::json!({ "path": dir }))
            .await?;
        println!(
            "Sharing {} ({} files).",
            crate::escape::path(&s.path),
            s.files
        );
        Ok(())
    }

    async fn unshare(&self, rest: &str) -> Result<(), ApiError> {
        if rest.is_empty() {
            println!("Unshare which folder? Type share to list them.");
            return Ok(());
        }
        let dir = crate::console::setup::expand_home(rest);
        let abs = crate::console::setup::absolute(&dir);
        let mut r = self
            .d
            .delete("/shares", Some(&serde_json::json!({ "path": abs })))
            .await;
        if matches!(r, Err(ApiError::Status(404, ..))) && abs != dir {
            r = self
                .d
                .delete("/shares", Some(&serde_json::json!({ "path": dir })))
                .await;
        }
        match r {
            Ok(()) => println!("Stopped sharing {}.", crate::escape::path(&dir)),
            Err(ApiError::Status(404, ..)) => println!(
                "{} is not shared: type share to list the shared folders.",
                crate::escape::path(&dir)
            ),
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// `move N up|down|top|bottom|P`: moves a download in the daemon's list.
    async fn move_download(&self, rest: &str) -> Result<(), ApiError> {
        let list: Vec<Download> = self.d.get("/downloads").await?;
        let ids: Vec<u64> = list.iter().map(|d| d.id).collect();
        match crate::console::move_target(&ids, rest) {
            Ok((id, at)) => {
                let _: Vec<Download> = self
                    .d
                    .post(
                        &format!("/downloads/{id}/move"),
                        &serde_json::json!({ "position": at }),
                    )
                    .await?;
                println!("Moved {id} to place {} of the list.", at + 1);
            }
            Err(why) => println!("{why}"),
        }
        Ok(())
    }

    /// `uploads`: the daemon's uploads in progress.
    async fn uploads(&self) -> Result<(), ApiError> {
        #[derive(serde::Deserialize)]
        struct Up {
            peer: String,
            name: String,
            #[serde(default)]
            size: Option<u64>,
            #[serde(default)]
            sent: u64,
            #[serde(default)]
            speed_bps: u64,
        }
        let list: Vec<Up> = self.d.get("/uploads").await?;
        let rows: Vec<crate::console::UploadRow> = list
            .into_iter()
            .map(|u| crate::console::UploadRow {
                peer: u.peer,
                name: u.name,
                size: u.size,
                sent: u.sent,
                speed_bps: u.speed_bps,
            })
            .collect();
        for l in crate::console::uploads_table(&rows) {
            println!("{l}");
        }
        Ok(())
    }

    /// `pause N`, `resume N`, `cancel N`, `remove N`; `remove` alone
    /// clears the finished, failed and cancelled downloads from the list.
    async fn control(&self, rest: &str, what: &str) -> Result<(), ApiError> {
        let what = if what == "rm" { "remove" } else { what };
        if rest.is_empty() && what == "remove" {
            let list: Vec<Download> = self.d.get("/downloads").await?;
            let mut n = 0usize;
            for dl in list
                .iter()
                .filter(|d| matches!(d.state.as_str(), "done" | "failed" | "cancelled"))
            {
                if self
                    .d
                    .delete(&format!("/downloads/{}", dl.id), None)
                    .await
                    .is_ok()
                {
                    n += 1;
                }
            }
            let s = if n == 1 { "" } else { "s" };
            println!("Removed {n} finished download{s} from the list.");
            return Ok(());
        }
        let Ok(id) = rest.parse::<u64>() else {
            println!("Type {what} N, with N a number of the downloads list.");
            return Ok(());
        };
        if what == "remove" {
            self.d.delete(&format!("/downloads/{id}"), None).await?;
            println!("Removed {id} from the list.");
            return Ok(());
        }
        let dl: Download = self
            .d
            .post(&format!("/downloads/{id}/{what}"), &serde_json::json!({}))
            .await?;
        let name = escape(&dl.name);
        match what {
            "pause" => {
                println!("Paused {id} ({name}); what it got is kept: resume {id} goes on from it.")
            }
            "resume" => println!("Resuming {id} ({name})."),
            _ => println!("Cancelled {id} ({name}); its partial data is deleted."),
        }
        Ok(())
    }
}

/// One result line: number, first peer, size, name (the console's columns).
fn result_line(n: usize, f: &Found, names: &super::PeerMap) -> String {
    let size = f
        .size
        .map(crate::console::results::bytes)
        .unwrap_or_else(|| "-".into());
    let peer = f.peers.first().map(|p| names.name(p)).unwrap_or_default();
    format!(
        "{n:>4}  {:<21} {size:>10}  {}",
        escape(&peer),
        escape(&f.name)
    )
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
