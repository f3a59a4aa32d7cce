//! The interactive console: a prompt with line editing and history, talking
//! to the node only through its [`Client`].

pub(crate) mod complete;
pub(crate) mod get_args;
mod have;
pub(crate) mod no_echo;
mod output;
pub(crate) mod results;
pub(crate) mod setup;

pub(crate) use output::eta_text;
pub(crate) use results::bytes as bytes_text;

use crate::config_file::ConfigFile;
use crate::escape::escape;
use output::Output;
use results::{Added, Results};
use rustyline::error::ReadlineError;
use rutella_node::{Client, DownloadState, Got, HitFile, PeerAddr, Want};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Runtime;

/// The settings file the console keeps up to date (peers that answered,
/// shares added or removed); `None` for the demo.
pub(crate) type Remember = Option<Arc<Mutex<(PathBuf, ConfigFile)>>>;

/// How long a peer named by address has to answer (to `connect`, or to
/// tell its TCP port to `get IP NAME`).
const ANSWER_WAIT: Duration = Duration::from_secs(3);

/// A download by hash from a search's results also asks the network for
/// more sources; discovery gets at most half of this before it does.
const SEARCH_MORE: Duration = Duration::from_secs(4);

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
        "get N --again",
        "download it although a copy is already here",
    ),
    (
        "get IP NAME",
        "download the file NAME from the peer IP (or IP:UDPPORT); quote a NAME with spaces",
    ),
    (
        "browse IP:PORT",
        "list the shared files of a Gnutella servent (get N downloads one)",
    ),
    (
        "downloads",
        "list downloads with state, percent, speed, time left and sources",
    ),
    (
        "pause N",
        "pause download N, keeping what it got (resume N goes on)",
    ),
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
        "list uploads in progress: peer, bytes sent, speed, file",
    ),
    ("peers", "list the peers this node knows"),
    (
        "status",
        "addresses, peers, shares, port mapping, and whether others can reach you",
    ),
    (
        "connect ADDR",
        "join the network through a peer: IP or IP:UDPPORT",
    ),
    ("share DIR", "share one more folder"),
    (
        "notices on|off",
        "announce peers joining and downloads from you, or not",
    ),
    ("unshare DIR", "stop sharing a folder"),
    ("help", "show this list"),
    (
        "quit",
        "stop the node and leave (partial downloads resume next time)",
    ),
];

/// `move N WHERE` read against the list's ids in order: the download and
/// its new place (0 = first), or what to type instead.
pub(crate) fn move_target(ids: &[u64], rest: &str) -> Result<(u64, usize), String> {
    const HOW: &str = "Type move N up, down, top, bottom or a place (1 = first), with N a number of the downloads list.";
    let mut words = rest.split_whitespace();
    let (Some(n), Some(to), None) = (words.next(), words.next(), words.next()) else {
        return Err(HOW.into());
    };
    let Ok(id) = n.parse::<u64>() else {
        return Err(HOW.into());
    };
    let Some(now) = ids.iter().position(|i| *i == id) else {
        return Err(format!(
            "There is no download {id}: type downloads to see them."
        ));
    };
    let last = ids.len().saturating_sub(1);
    let at = match to.to_ascii_lowercase().as_str() {
        "up" => now.saturating_sub(1),
        "down" => (now + 1).min(last),
        "top" | "first" => 0,
        "bottom" | "last" => last,
        p => match p.parse::<usize>() {
            Ok(p) if p >= 1 => (p - 1).min(last),
            _ => return Err(HOW.into()),
        },
    };
    Ok((id, at))
}

/// One upload in progress, as the `uploads` table shows it.
pub(crate) struct UploadRow {
    pub(crate) peer: String,
    pub(crate) name: String,
    pub(crate) size: Option<u64>,
    pub(crate) sent: u64,
    pub(crate) speed_bps: u64,
}

/// The `uploads` table: peer, bytes sent of the size, speed, file.
pub(crate) fn uploads_table(list: &[UploadRow]) -> Vec<String> {
    if list.is_empty() {
        return vec!["No uploads in progress.".into()];
    }
    let mut out = vec![format!(
        "{:<21} {:>21} {:>11}  FILE",
        "PEER", "SENT", "SPEED"
    )];
    for u in list {
        let sent = match u.size {
            Some(size) => format!("{} of {}", results::bytes(u.sent), results::bytes(size)),
            None => results::bytes(u.sent),
        };
        out.push(format!(
            "{:<21} {:>21} {:>11}  {}",
            u.peer,
            sent,
            format!("{}/s", results::bytes(u.speed_bps)),
            escape(&u.name)
        ));
    }
    out
}

/// Words a download failure for the console, where a download is run
/// again with `get`. What to do about it (a full disk, a folder that
/// cannot be written) was chosen from the error's kind where it was made.
pub(crate) fn friendly_reason(reason: &str) -> String {
    reason.replace("run the same download again", "get the file again")
}

/// Runs the prompt until `quit`, end of input, or a failed terminal.
pub(crate) fn run(
    rt: &Runtime,
    rl: &mut complete::Editor,
    client: Client,
    remember: Remember,
) -> Result<(), crate::Failure> {
    let printer = rl
        .create_external_printer()
        .ok()
        .map(|p| Box::new(p) as Box<dyn rustyline::ExternalPrinter + Send>);
    let notices = remember
        .as_ref()
        .map(|r| r.lock().unwrap_or_else(|e| e.into_inner()).1.notices != Some(false))
        .unwrap_or(true);
    let (out, thread) = Output::start(client.clone(), printer, rt.handle(), notices);
    if let Some(r) = &remember {
        remember_peers(rt, &client, r.clone());
    }
    let mut console = Console {
        client,
        results: Results::default(),
        remember,
        last_search: None,
        out: out.clone(),
    };
    let result = loop {
        output::flush_pending(&out);
        if let Some(h) = rl.helper() {
            h.set_mode(complete::Mode::Command);
            h.set_live(rt.block_on(console.live()));
        }
        out.enter_prompt();
        let line = rl.readline("rutella> ");
        out.leave_prompt();
        match line {
            Ok(line) => {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let _ = rl.add_history_entry(line);
                match rt.block_on(console.command(line)) {
                    Flow::Continue => {}
                    Flow::Quit => break Ok(()),
                }
            }
            Err(ReadlineError::Interrupted) => {
                println!("(type quit to leave)");
            }
            Err(ReadlineError::Eof) => break Ok(()),
            Err(e) => {
                break Err(crate::Failure::new(
                    crate::exit::FAILURE,
                    format!("cannot read from the terminal: {e}"),
                ))
            }
        }
    };
    out.stop();
    let _ = thread.join();
    output::flush_pending(&out);
    let running = console
        .client
        .downloads()
        .iter()
        .filter(|d| d.state == DownloadState::Running)
        .count();
    if running > 0 {
        println!("Stopping; {running} unfinished download(s) resume when you get them again.");
    }
    result
}

/// How long a peer that joined has to stay before it is remembered: a
/// one-shot `rutella get` is a peer while it runs (so that a source
/// behind a router can push to it), then stops answering and is dropped
/// at the next ping round; it is not worth a line in the settings file.
const REMEMBER_AFTER: Duration = Duration::from_secs(60);

/// Peers that joined and wait for [`REMEMBER_AFTER`], at most.
const MAX_JOINED: usize = 1024;

/// Remembers the peers known when the console starts (those it was told
/// to join, or remembered) and every peer that joins later once it stayed
/// [`REMEMBER_AFTER`], so the next start rejoins by itself.
fn remember_peers(rt: &Runtime, client: &Client, remember: Arc<Mutex<(PathBuf, ConfigFile)>>) {
    let mut events = client.subscribe();
    let client = client.clone();
    rt.spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        let save = |peers: &[rutella_node::Peer]| {
            let mut g = remember.lock().unwrap_or_else(|e| e.into_inner());
            let (path, cfg) = &mut *g;
            let mut changed = false;
            for p in peers {
                changed |= cfg.remember_peer(&results::peer_name(p));
            }
            if changed {
                if let Err(e) = cfg.save(path) {
                    tracing::warn!("{}", e.message);
                }
            }
        };
        // Peers that answered before the console started.
        save(&client.peers().await.unwrap_or_default());
        let mut joined: std::collections::HashMap<SocketAddr, tokio::time::Instant> =
            std::collections::HashMap::new();
        let mut tick = tokio::time::interval(REMEMBER_AFTER / 4);
        loop {
            tokio::select! {
                e = events.recv() => match e {
                    Ok(rutella_node::NodeEvent::PeerAdded(p)) => {
                        if joined.len() < MAX_JOINED {
                            joined.entry(p.udp).or_insert_with(tokio::time::Instant::now);
                        }
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                },
                _ = tick.tick(), if !joined.is_empty() => {
                    let now = tokio::time::Instant::now();
                    let due: Vec<SocketAddr> = joined
                        .iter()
                        .filter(|(_, since)| now.duration_since(**since) >= REMEMBER_AFTER)
                        .map(|(a, _)| *a)
                        .collect();
                    if due.is_empty() {
                        continue;
                    }
                    for a in &due {
                        joined.remove(a);
                    }
                    // Still a peer after all that time: a lasting one.
                    let stayed: Vec<rutella_node::Peer> = client
                        .peers()
                        .await
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|p| due.contains(&p.udp))
                        .collect();
                    save(&stayed);
                }
            }
        }
    });
}

enum Flow {
    Continue,
    Quit,
}

struct Console {
    client: Client,
    results: Results,
    remember: Remember,
    last_search: Option<String>,
    out: Output,
}

impl Console {
    /// What Tab completes from: the shares, the last results, the peers
    /// known now and those remembered in the settings file.
    async fn live(&self) -> complete::Live {
        let mut peers: Vec<String> = self
            .client
            .peers()
            .await
            .unwrap_or_default()
            .iter()
            .map(results::peer_name)
            .collect();
        if let Some(r) = &self.remember {
            let g = r.lock().unwrap_or_else(|e| e.into_inner());
            for p in g.1.peers.iter().flatten() {
                if !peers.contains(p) {
                    peers.push(p.clone());
                }
            }
        }
        complete::Live {
            shares: self
                .client
                .shares()
                .iter()
                .map(|s| s.display().to_string())
                .collect(),
            results: self.results.items.iter().map(|f| f.name.clone()).collect(),
            peers,
        }
    }

    async fn command(&mut self, line: &str) -> Flow {
        let (cmd, rest) = match line.split_once(char::is_whitespace) {
            Some((c, r)) => (c, r.trim()),
            None => (line, ""),
        };
        match cmd.to_ascii_lowercase().as_str() {
            "search" | "s" | "find" => self.search(rest).await,
            "get" | "g" => self.get(rest).await,
            "browse" | "b" => self.browse(rest).await,
            "downloads" | "d" | "dl" => self.downloads().await,
            "peers" | "p" => self.peers().await,
            "status" | "st" => {
                for l in crate::reach::status(&self.client).await {
                    println!("{l}");
                }
            }
            "connect" | "c" => self.connect(rest).await,
            "share" => self.share(rest).await,
            "unshare" => self.unshare(rest).await,
            "notices" => self.notices(rest),
            "pause" => self.control(rest, "pause").await,
            "resume" => self.control(rest, "resume").await,
            "cancel" => self.control(rest, "cancel").await,
            "remove" | "rm" => self.control(rest, "remove").await,
            "move" | "mv" => self.move_download(rest),
            "uploads" | "u" | "ul" => {
                let list: Vec<UploadRow> = self
                    .client
                    .uploads()
                    .iter()
                    .map(|u| UploadRow {
                        peer: u.peer.to_string(),
                        name: u.name.clone(),
                        size: u.size,
                        sent: u.sent,
                        speed_bps: u.speed.max(0.0) as u64,
                    })
                    .collect();
                for l in uploads_table(&list) {
                    println!("{l}");
                }
            }
            "help" | "h" | "?" => help(),
            "quit" | "exit" | "q" => return Flow::Quit,
            _ => println!("Unknown command {cmd:?}: type help to see the commands."),
        }
        Flow::Continue
    }

    async fn search(&mut self, text: &str) {
        if text.is_empty() {
            println!("Search for what? For example: search cloud");
            return;
        }
        let asked = match self.client.peers().await {
            Ok(p) => p.len(),
            Err(e) => return println!("{e}"),
        };
        let gnutella = self
            .client
            .gnutella_links()
            .map(|l| *l.borrow())
            .unwrap_or(0);
        if asked == 0 && gnutella == 0 {
            println!(
                "No peer to ask yet: connect ADDR to join one, or wait until a peer joins you."
            );
            return;
        }
        let mut stream = match self.client.search(text).await {
            Ok(s) => s,
            Err(e) => return println!("{e}"),
        };
        self.results = Results::default();
        self.last_search = Some(text.to_string());
        if gnutella > 0 {
            println!(
                "Searching {asked} peer(s) and {gnutella} Gnutella ultrapeer(s) for {text:?}… (Ctrl-C stops waiting)"
            );
        } else {
            println!("Searching {asked} peer(s) for {text:?}… (Ctrl-C stops waiting)");
        }
        // Text typed meanwhile is not echoed into the results; it is kept
        // for the next prompt.
        let no_echo = no_echo::NoEcho::start();
        let mut answered = 0usize;
        let mut with_files = std::collections::HashSet::new();
        let mut stopped = false;
        loop {
            let hit = tokio::select! {
                h = stream.next() => h,
                _ = tokio::signal::ctrl_c() => {
                    stopped = true;
                    None
                }
            };
            let Some(hit) = hit else { break };
            answered += 1;
            // Each result is shown as it arrives; a later copy of a file
            // already shown gets its `+` line then, naming its number.
            for (i, f) in hit.files.iter().enumerate() {
                let added = self.results.add(&hit.peer, f);
                if let (Added::New(n), Some(g)) = (&added, &hit.gnutella) {
                    self.results.set_gnutella(*n, g, i);
                }
                let line = match added {
                    Added::New(n) => self.results.get(n).map(|item| results::line(n, item)),
                    Added::AlsoOn(n) => self
                        .results
                        .get(n)
                        .map(|item| results::also_line(n, &hit.peer, item.sources.len())),
                    Added::Ignored => None,
                };
                if let Some(line) = line {
                    with_files.insert(hit.peer.udp);
                    println!("{line}");
                }
            }
        }
        drop(stream);
        drop(no_echo);
        let shared = self
            .results
            .items
            .iter()
            .filter(|i| i.sources.len() > 1)
            .count();
        let n = self.results.items.len();
        let how = if stopped { "Search stopped: " } else { "" };
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
            println!(
                "{how}{n} file(s) from {}{grouped}. Type get N to download one.",
                plural(with_files.len(), "peer")
            );
        }
    }

    /// `browse IP:PORT`: a Gnutella servent's shared files, as results
    /// that `get N` downloads.
    async fn browse(&mut self, rest: &str) {
        if rest.is_empty() {
            println!("Browse whom? Give a Gnutella servent's IP:PORT, for example: browse 192.168.1.7:6346");
            return;
        }
        let addr = match crate::browse::parse_addr(rest) {
            Ok(a) => a,
            Err(e) => return println!("{}.", capitalise(&e)),
        };
        println!("Browsing {addr}… (Ctrl-C stops waiting)");
        let hits = tokio::select! {
            h = self.client.browse(addr) => h,
            _ = tokio::signal::ctrl_c() => return println!("Browse stopped."),
        };
        let hits = match hits {
            Ok(h) => h,
            Err(e) => return println!("{}.", capitalise(&escape(&e.to_string()))),
        };
        self.results = Results::default();
        self.last_search = None;
        for hit in &hits {
            for (i, f) in hit.files.iter().enumerate() {
                let added = self.results.add(&hit.peer, f);
                if let (Added::New(n), Some(g)) = (&added, &hit.gnutella) {
                    self.results.set_gnutella(*n, g, i);
                }
                if let Added::New(n) = added {
                    if let Some(item) = self.results.get(n) {
                        println!("{}", results::line(n, item));
                    }
                }
            }
        }
        match self.results.items.len() {
            0 => println!("{addr} shares no file."),
            n => println!("{n} file(s) on {addr}. Type get N to download one."),
        }
    }

    async fn get(&mut self, rest: &str) {
        match get_args::parse(rest) {
            Err(e) => println!("{e}"),
            Ok(get_args::GetCmd::ByName { addr, typed, name }) => {
                self.start(addr, &name, None, &typed).await
            }
            Ok(get_args::GetCmd::Results { picks, again }) => {
                let k = self.results.items.len();
                if k == 0 {
                    return println!("There are no results: search first, then get N.");
                }
                if let Some(n) = picks.iter().find(|&&n| self.results.get(n).is_none()) {
                    return println!("There is no result {n}: the results are numbered 1 to {k}.");
                }
                for n in picks {
                    if let Some(found) = self.results.get(n).cloned() {
                        self.get_result(n, &found, again).await;
                    }
                }
            }
        }
    }

    /// Downloads result `n`, unless a copy is already here (and `again`
    /// is false).
    async fn get_result(&self, n: usize, found: &results::Found, again: bool) {
        let Some(peer) = found.sources.first() else {
            return;
        };
        if let (Some(hash), false) = (found.hash, again) {
            let library = self.client.library().clone();
            let downloads = self.client.downloads_dir();
            let size = found.size;
            let here =
                tokio::task::spawn_blocking(move || have::find(&library, &downloads, &hash, size))
                    .await
                    .ok()
                    .flatten();
            if let Some(path) = here {
                return println!(
                    "You already have {}: {}. Type get {n} {} to download it anyway.",
                    escape(&found.name),
                    crate::escape::path(&path),
                    get_args::AGAIN
                );
            }
        }
        // rutella peers that know the file's hash serve verified pieces
        // of it all at once; otherwise the file comes by name from one.
        let rutella: Vec<&rutella_node::Peer> =
            found.sources.iter().filter(|p| p.rutella).collect();
        if let (Some((g, i)), true) = (&found.gnutella, rutella.is_empty()) {
            let Some(file) = g.files.get(*i).copied() else {
                return;
            };
            println!(
                "Downloading {} from the Gnutella servent {} over HTTP into {}.",
                escape(&found.name),
                g.servent,
                self.client.downloads_dir().display()
            );
            let (client, g, name, size) = (
                self.client.clone(),
                g.clone(),
                found.name.clone(),
                found.size,
            );
            tokio::spawn(async move {
                match client.get_gnutella(&g, &name, file, size).await {
                    Ok(path) => println!(
                        "Downloaded {} (SHA-1 checked): {}",
                        escape(&name),
                        crate::escape::path(&path)
                    ),
                    Err(e) => println!("{}: {e}", escape(&name)),
                }
            });
            return;
        }
        match found.hash {
            Some(hash) if !rutella.is_empty() => {
                let tcp = rutella.iter().map(|p| p.tcp()).collect();
                let file = HitFile {
                    name: found.name.clone(),
                    size: found.size,
                    hash: Some(hash),
                };
                let want = Want::ByHash {
                    hash,
                    found: Some((file, tcp)),
                };
                if let Err(e) = self.client.get(want, SEARCH_MORE).await {
                    return println!("{e}");
                }
                let names: Vec<String> = rutella.iter().map(|p| results::peer_name(p)).collect();
                println!(
                    "Downloading {} from {} ({}), every piece verified, into {} (type downloads to see it).",
                    escape(&found.name),
                    plural(names.len(), "peer"),
                    names.join(", "),
                    self.client.downloads_dir().display()
                );
            }
            _ => {
                let from = PeerAddr {
                    udp: peer.udp,
                    tcp_port: Some(peer.tcp_port),
                };
                self.start(from, &found.name, found.size, &results::peer_name(peer))
                    .await
            }
        }
    }

    /// Gets a file by name from one peer (whose TCP port, when not given,
    /// it tells when it answers).
    async fn start(&self, from: PeerAddr, name: &str, listed_size: Option<u64>, shown: &str) {
        let want = Want::ByName {
            from,
            name: name.to_string(),
            listed_size,
        };
        match self.client.get(want, ANSWER_WAIT).await {
            Ok(Got::Started {
                handle, sources, ..
            }) => {
                if let Some(tcp) = sources.first() {
                    self.out.remember_typed(handle.id, *tcp, shown);
                }
                println!(
                    "Downloading {} from {shown} into {} (type downloads to see it).",
                    escape(name),
                    self.client.downloads_dir().display()
                )
            }
            Ok(_) => println!(
                "Peer {shown} did not answer: check the address and that its node is running."
            ),
            Err(e) => println!(
                "Cannot get {} from {shown}: {}",
                escape(name),
                escape(&e.to_string())
            ),
        }
    }

    async fn downloads(&self) {
        let list = self.client.downloads();
        // Sources are download (TCP) addresses; show peers as they are typed.
        let peers = self.client.peers().await.unwrap_or_default();
        let source_name = |s: &SocketAddr| {
            peers
                .iter()
                .find(|p| p.tcp() == *s)
                .map(results::peer_name)
                .unwrap_or_else(|| s.to_string())
        };
        if list.is_empty() {
            println!("No downloads yet: search, then get N.");
            return;
        }
        println!(
            "{:>3}  {:<8} {:>5} {:>11} {:>12}  {:<21} NAME",
            "#", "STATE", "DONE", "SPEED", "TIME LEFT", "FROM"
        );
        for d in &list {
            let f = output::figures(d);
            let state = match &d.state {
                DownloadState::Queued => "queued",
                DownloadState::Running => "running",
                DownloadState::Done(_) => "done",
                DownloadState::Failed(_) => "failed",
                DownloadState::Paused => "paused",
            };
            let pct = f
                .percent
                .map(|p| format!("{p:.0}%"))
                .unwrap_or_else(|| "?".into());
            let speed = match d.state {
                DownloadState::Running => format!("{}/s", results::bytes(f.speed as u64)),
                _ => "-".into(),
            };
            let eta = match d.state {
                DownloadState::Running => output::eta_text(f.eta),
                _ => "-".into(),
            };
            let from: Vec<String> = d.sources.iter().map(source_name).collect();
            println!(
                "{:>3}  {:<8} {:>5} {:>11} {:>12}  {:<21} {}",
                d.id,
                state,
                pct,
                speed,
                eta,
                match from.len() {
                    1 => from[0].clone(),
                    n => plural(n, "peer"),
                },
                // Gnutella rows are tagged as their search results are.
                if d.network == "gnutella" {
                    format!("[g] {}", escape(&d.name))
                } else {
                    escape(&d.name).into_owned()
                }
            );
            if from.len() > 1 {
                println!("{:>5}from {}", "", from.join(", "));
            }
            // How sources that were not connected to directly were reached.
            for (src, path) in d.paths.iter().filter(|(_, p)| p != "direct") {
                println!("{:>5}{}: {}", "", source_name(src), escape(path));
            }
            match &d.state {
                DownloadState::Done(p) => println!("{:>5}→ {}", "", crate::escape::path(p)),
                DownloadState::Failed(r) => println!(
                    "{:>5}✗ {}",
                    "",
                    escape(&friendly_reason(&self.out.in_typed_words(d.id, r)))
                ),
                DownloadState::Running | DownloadState::Paused | DownloadState::Queued => {}
            }
        }
    }

    async fn peers(&self) {
        match self.client.peers().await {
            Ok(peers) if peers.is_empty() => {
                println!("No peers yet: connect ADDR to join one, or wait until a peer joins you.")
            }
            Ok(peers) => {
                println!("{} peer(s):", peers.len());
                for p in peers {
                    let kind = if p.rutella { "rutella" } else { "classic" };
                    let tcp = if p.tcp_port == 0 {
                        "tcp ?".to_string()
                    } else {
                        format!("tcp {}", p.tcp_port)
                    };
                    println!("  {:<21}  {:<9}  {kind}", results::peer_name(&p), tcp);
                }
            }
            Err(e) => println!("{e}"),
        }
    }

    async fn connect(&self, rest: &str) {
        let addr: PeerAddr = match rest.parse() {
            Ok(a) => a,
            Err(e) => return println!("{e}"),
        };
        if let Err(e) = self.client.connect(addr).await {
            return println!("{e}");
        }
        if let Ok(Some(p)) = self.client.wait_peer(addr.udp, ANSWER_WAIT, |_| true).await {
            if let Ok(peers) = self.client.peers().await {
                println!("Joined {addr}; {} peer(s) known.", peers.len());
                // Typed by the user and answering: kept at once.
                self.update_config(|c| {
                    c.remember_peer(&results::peer_name(&p));
                });
                return;
            }
        }
        // Not kept: it is not pinged again, nor remembered.
        let _ = self.client.forget(addr.udp).await;
        println!(
            "No answer from {addr} within {} s: check the address and that its node is running, then connect again.",
            ANSWER_WAIT.as_secs()
        );
    }

    async fn share(&self, rest: &str) {
        if rest.is_empty() {
            let shares = self.client.shares();
            if shares.is_empty() {
                println!("Nothing is shared: share DIR to share a folder.");
            }
            for s in shares {
                println!("  {}", s.display());
            }
            return;
        }
        let dir = setup::expand_home(rest);
        if !dir.is_dir() {
            println!(
                "No folder at {}: type the path of an existing folder.",
                dir.display()
            );
            return;
        }
        let dir = setup::absolute(&dir);
        if let Some(s) = self.client.shares().iter().find(|s| same_dir(s, &dir)) {
            println!(
                "{} is already shared ({} files shared in all).",
                s.display(),
                self.client.library().len()
            );
            return;
        }
        match self.client.share(&dir).await {
            Ok(()) => {
                println!(
                    "Sharing {} ({} files shared in all).",
                    dir.display(),
                    self.client.library().len()
                );
                self.update_config(|c| {
                    if !c.shares.contains(&dir) {
                        c.shares.push(dir.clone());
                    }
                });
            }
            Err(e) => println!("{e}"),
        }
    }

    async fn unshare(&self, rest: &str) {
        if rest.is_empty() {
            println!("Unshare which folder? Type share to list them.");
            return;
        }
        let dir = setup::expand_home(rest);
        let canon = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
        if self.client.unshare(&dir).await || self.client.unshare(&canon).await {
            println!("Stopped sharing {}.", dir.display());
            self.update_config(|c| c.shares.retain(|s| !same_dir(s, &dir)));
        } else {
            println!(
                "{} is not shared: type share to list the shared folders.",
                dir.display()
            );
        }
    }

    /// `pause N`, `resume N`, `cancel N`, `remove N`; `remove` alone
    /// clears the complete and failed downloads from the list.
    async fn control(&self, rest: &str, what: &str) {
        if rest.is_empty() && what == "remove" {
            let n = self.client.clear_finished();
            return println!("Removed {} from the list.", plural(n, "finished download"));
        }
        let Ok(id) = rest.parse::<rutella_node::DownloadId>() else {
            return println!("Type {what} N, with N a number of the downloads list.");
        };
        let name = self
            .client
            .downloads()
            .into_iter()
            .find(|d| d.id == id)
            .map(|d| escape(&d.name).into_owned())
            .unwrap_or_default();
        let done = match what {
            "pause" => self.client.pause(id).await.map(|()| {
                format!("Paused {id} ({name}); what it got is kept: resume {id} goes on from it.")
            }),
            "resume" => self
                .client
                .resume(id)
                .map(|_| format!("Resuming {id} ({name}).")),
            "cancel" => self
                .client
                .cancel(id)
                .await
                .map(|()| format!("Cancelled {id} ({name}); its partial data is deleted.")),
            _ => self
                .client
                .remove(id)
                .map(|()| format!("Removed {id} ({name}) from the list.")),
        };
        match done {
            Ok(line) => println!("{line}"),
            Err(e) => println!("{}.", capitalise(&e.to_string())),
        }
    }

    /// `move N up|down|top|bottom|P`: moves a download in the list.
    fn move_download(&self, rest: &str) {
        let ids: Vec<u64> = self.client.downloads().iter().map(|d| d.id).collect();
        match move_target(&ids, rest) {
            Ok((id, at)) => match self.client.move_download(id, at) {
                Ok(()) => println!("Moved {id} to place {} of the list.", at + 1),
                Err(e) => println!("{}.", capitalise(&e.to_string())),
            },
            Err(why) => println!("{why}"),
        }
    }

    /// `notices on|off`: announce peers joining and uploads, or not.
    fn notices(&self, rest: &str) {
        let on = match rest.to_ascii_lowercase().as_str() {
            "" => {
                let now = if self.out.notices() { "on" } else { "off" };
                println!("Notices are {now}: notices on|off to change it.");
                return;
            }
            "on" => true,
            "off" => false,
            _ => return println!("Type notices on or notices off."),
        };
        self.out.set_notices(on);
        self.update_config(|c| c.notices = (!on).then_some(false));
        if on {
            println!("Notices on: peers joining and downloads from you are announced.");
        } else {
            println!("Notices off: peers joining and downloads from you are not announced.");
        }
    }

    fn update_config(&self, f: impl FnOnce(&mut ConfigFile)) {
        if let Some(r) = &self.remember {
            let mut g = r.lock().unwrap_or_else(|e| e.into_inner());
            let (path, cfg) = &mut *g;
            f(cfg);
            if let Err(e) = cfg.save(path) {
                println!("{}", e.message);
            }
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

fn help() {
    for (cmd, what) in HELP {
        println!("  {cmd:<15} {what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_say_what_to_do_in_the_console() {
        let full = rutella_transfer::DownloadError::from(rutella_transfer::LocalError::Io {
            what: "writing to",
            path: PathBuf::from("/x/a.part"),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        });
        let m = friendly_reason(&full.to_string());
        assert!(
            m.contains("the disk is full: free some space, then get the file again to resume"),
            "{m}"
        );
        let m =
            friendly_reason("stopped after 5 of 9 bytes; run the same download again to resume");
        assert!(m.ends_with("get the file again to resume"), "{m}");
    }
}
