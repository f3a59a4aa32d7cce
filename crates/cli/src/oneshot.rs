//! `serve`, `search` and `get`: commands for scripts.

use crate::args::{secs, GetArgs, SearchArgs, ServeArgs};
use crate::escape::escape;
use crate::{exit, Failure};
use rutella_node::{Client, Got, Node, NodeConfig, NodeError, PeerAddr, Want};
use std::collections::HashSet;
use std::time::Duration;

/// A shared folder must exist: otherwise a usage error that says so.
pub(crate) fn check_share(dir: &std::path::Path) -> Result<(), Failure> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(Failure::new(
            exit::USAGE,
            format!(
                "the shared folder {} does not exist or is not a folder: create it or share another one",
                dir.display()
            ),
        ))
    }
}

/// Waits for Ctrl-C or SIGTERM.
pub(crate) async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Ctrl-C and SIGTERM, caught from the moment this is made (a signal that
/// comes before [`Stop::recv`] is waited for is kept for it).
pub(crate) struct Stop {
    #[cfg(unix)]
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Stop {
    pub(crate) fn new() -> Stop {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Stop {
                signals: signal(SignalKind::interrupt())
                    .and_then(|i| Ok((i, signal(SignalKind::terminate())?)))
                    .ok(),
            }
        }
        #[cfg(not(unix))]
        Stop {}
    }

    /// Waits for the next signal.
    pub(crate) async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some((int, term)) = &mut self.signals {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub(crate) async fn serve(a: ServeArgs) -> Result<(), Failure> {
    let serving = start_serving(a, |_| {}).await?;
    stop_signal().await;
    serving.stop().await;
    Ok(())
}

/// A node started by [`start_serving`], with the tasks that report on it.
pub(crate) struct Serving {
    pub(crate) node: Node,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Serving {
    /// Stops the node cleanly (partial downloads stay resumable).
    pub(crate) async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        tracing::info!("stopping");
        if self.node.client().dht_running() {
            remember_peers(&self.node.client()).await;
        }
        self.node.shutdown().await;
    }
}

/// Starts the node `serve` runs, from the flags and the settings file;
/// `adjust` may change its settings last (the daemon's upload slots).
pub(crate) async fn start_serving(
    mut a: ServeArgs,
    adjust: impl FnOnce(&mut NodeConfig),
) -> Result<Serving, Failure> {
    // The settings file gives what the flags leave out: shares, the
    // downloads folder and the peers to join.
    let file = match crate::config_file::path() {
        Ok(path) => crate::config_file::ConfigFile::load(&path)?,
        Err(_) => crate::config_file::ConfigFile::default(),
    };
    if a.shares.is_empty() {
        a.shares = file.shares.clone();
    }
    if a.connect.is_empty() {
        a.connect = file.peer_addrs();
    }
    if a.downloads.is_none() {
        a.downloads = file.downloads.clone();
    }
    for s in &a.shares {
        check_share(s)?;
    }
    if a.shares.is_empty() {
        tracing::warn!(
            "nothing is shared: searches are answered with nothing and nobody can download from you; give --share DIR, or shares = [\"DIR\"] in the settings file"
        );
    }
    let mut cfg = a.net.node_config();
    cfg.dht = a.net.dht.config(Some(&file), true);
    cfg.gnutella = a.net.gnutella.config(Some(&file));
    cfg.shares = a.shares;
    cfg.connect = a.connect;
    cfg.downloads = a.downloads;
    cfg.upload_rate_limit = a.rate_limit;
    a.limits.apply(&mut cfg, &file);
    cfg.overlay.search_timeout = a.search_timeout;
    cfg.db_path = cfg.default_db_path();
    if file.lan_discovery == Some(false) {
        cfg.lan = None;
    }
    if a.no_relay || file.relay == Some(false) {
        tracing::info!("relaying is off: circuits for other peers are refused");
        cfg.relay.enabled = false;
    }
    if let Some(n) = a.relay_max_bytes {
        cfg.relay.limits.max_bytes = n;
    }
    // A node bound to loopback is out of reach of other machines anyway.
    if a.no_port_mapping || file.port_mapping == Some(false) {
        tracing::info!("port mapping is off: the router is not asked to forward ports");
    } else if !cfg.bind.is_loopback() {
        cfg.port_mapping = Some(rutella_node::PortMapConfig {
            protocols: a.port_mapping_protocol.iter().map(|&p| p.into()).collect(),
            ..Default::default()
        });
    }
    adjust(&mut cfg);
    let answer_wait = cfg.overlay.pong_timeout * 2;
    let joins = cfg.connect.clone();
    let node = Node::start(cfg).await?;
    let dead = tokio::spawn(report_dead_peers(node.client(), joins, answer_wait));
    let reachability = tokio::spawn(crate::reach::tell(node.client()));
    Ok(Serving {
        node,
        tasks: vec![dead, reachability],
    })
}

/// Says which of the peers to join (given or from the settings file) did
/// not answer within `wait`; they are still tried at every ping round.
async fn report_dead_peers(client: Client, peers: Vec<PeerAddr>, wait: Duration) {
    let mut waits = tokio::task::JoinSet::new();
    for p in peers {
        let client = client.clone();
        waits.spawn(async move {
            if let Ok(None) = client.wait_peer(p.udp, wait, |_| true).await {
                tracing::warn!(
                    "peer {p} did not answer within {:.1} s: check the address and that its node is running (it is tried again at every ping round)",
                    wait.as_secs_f64()
                );
            }
        });
    }
    while waits.join_next().await.is_some() {}
}

/// The peers remembered in the settings file, for a one-shot command given
/// none: a missing file is none, a broken one is a usage error.
fn remembered_peers() -> Result<Vec<PeerAddr>, Failure> {
    match crate::config_file::path() {
        Ok(path) => Ok(crate::config_file::ConfigFile::load(&path)?.peer_addrs()),
        Err(_) => Ok(Vec::new()),
    }
}

/// Writes the peers that answered into the settings file's peers, so the
/// next start joins them without the DHT's help.
async fn remember_peers(client: &Client) {
    let Ok(path) = crate::config_file::path() else {
        return;
    };
    let Ok(peers) = client.peers().await else {
        return;
    };
    let Ok(mut file) = crate::config_file::ConfigFile::load(&path) else {
        return;
    };
    let mut changed = file.forget_stale(crate::config_file::now_secs());
    for p in peers.iter().filter(|p| p.tcp_port != 0) {
        let name = PeerAddr {
            udp: p.udp,
            tcp_port: Some(p.tcp_port),
        };
        changed |= file.remember_peer(&name.to_string());
    }
    if changed {
        if let Err(e) = file.save(&path) {
            tracing::warn!("{}", e.message);
        }
    }
}

/// Without a peer to join, a one-shot command needs LAN discovery or the DHT.
fn need_a_way_in(client: &Client, connect: &[PeerAddr], lan: bool) -> Result<(), Failure> {
    if connect.is_empty() && !lan && !client.dht_running() && !client.gnutella_configured() {
        return Err(Failure::new(
            exit::USAGE,
            "no peer to join: give one with --connect ADDR, remember one in the settings file (peers = [\"ADDR\"]), or leave LAN discovery or the DHT on"
                .to_string(),
        ));
    }
    Ok(())
}

/// Starts a node for a one-shot command: no shares, and a free port when
/// the default one is taken by a node running on this machine. A
/// `transient` one (a search, gone in seconds) is answered by the nodes it
/// meets (which tell it of some of their peers) but not kept or remembered
/// as a peer. A download is not transient: a source behind a router that
/// it reaches by push must know it as a peer. Nobody needs to know
/// whether either can be reached.
async fn oneshot_node(
    mut cfg: NodeConfig,
    connect: Vec<PeerAddr>,
    transient: bool,
) -> Result<Node, Failure> {
    cfg.port_fallback = true;
    cfg.watch = false;
    cfg.overlay.transient = transient;
    cfg.reach.machine.check = false;
    cfg.connect = connect;
    Ok(Node::start(cfg).await?)
}

/// The longest wait for discovery before a search: half the search time,
/// at most 2 s. Peers that answer later are still asked: a running search
/// reaches every peer that joins while it runs.
fn settle_time(wait: Duration) -> Duration {
    (wait / 2).min(Duration::from_secs(2))
}

pub(crate) async fn search(a: SearchArgs) -> Result<(), Failure> {
    let mut stop = Stop::new();
    let wait = secs(a.wait).map_err(|m| Failure::new(exit::USAGE, m))?;
    let mut cfg = a.net.node_config();
    cfg.overlay.search_timeout = wait;
    crate::lan::oneshot_search(&mut cfg, &a.connect);
    let lan = cfg.lan.is_some();
    // Given no peer, the peers the console or serve remembered.
    let connect = if a.connect.is_empty() {
        remembered_peers()?
    } else {
        a.connect.clone()
    };
    let node = oneshot_node(cfg, connect.clone(), true).await?;
    let client = node.client();
    if let Err(e) = need_a_way_in(&client, &connect, lan) {
        node.shutdown().await;
        return Err(e);
    }
    client.settle(settle_time(wait)).await?;
    let mut stream = client.search(&a.text).await?;
    let mut seen = HashSet::new();
    let mut answered = 0usize;
    let mut hits = 0usize;
    let mut end = End::Done;
    'answers: loop {
        let hit = tokio::select! {
            h = stream.next() => h,
            _ = stop.recv() => {
                end = End::Interrupted;
                None
            }
        };
        let Some(hit) = hit else { break };
        answered += 1;
        let peer = PeerAddr {
            udp: hit.peer.udp,
            tcp_port: Some(hit.peer.tcp_port),
        };
        let network = hit.network();
        for (i, f) in hit.files.into_iter().enumerate() {
            if !seen.insert((hit.peer.udp, f.name.clone())) {
                continue;
            }
            hits += 1;
            let line = if a.json {
                serde_json::json!({
                    "peer": peer.to_string(),
                    "udp": hit.peer.udp.to_string(),
                    "tcp": hit.peer.tcp().to_string(),
                    "name": f.name,
                    "size": f.size,
                    "hash": f.hash.map(|h| rutella_proto::message::hex32(&h)),
                    "push_id": hit.push.push_id.map(rutella_proto::message::hex16),
                    "proxies": hit.push.proxies.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                    "firewalled": hit.push.firewalled,
                    "network": network,
                    "sha1": hit.gnutella.as_ref().and_then(|g| g.files.get(i)).and_then(|f| f.sha1).map(|h| rutella_gnutella::huge::Urn::Sha1(h).to_string()),
                    "index": hit.gnutella.as_ref().and_then(|g| g.files.get(i)).map(|f| f.index),
                    "vendor": hit.gnutella.as_ref().map(|g| g.vendor.clone()),
                })
                .to_string()
            } else {
                match f.size {
                    Some(size) => format!("{peer}\t{size}\t{}", escape(&f.name)),
                    None => format!("{peer}\t-\t{}", escape(&f.name)),
                }
            };
            match print_line(&line) {
                Ok(true) => {}
                Ok(false) => {
                    end = End::PipeClosed;
                    break 'answers;
                }
                Err(e) => {
                    drop(stream);
                    node.shutdown().await;
                    return Err(e);
                }
            }
        }
    }
    drop(stream);
    node.shutdown().await;
    match end {
        // Whoever read the results has all it wanted.
        End::PipeClosed => return Ok(()),
        End::Interrupted => return Err(search_interrupted(answered, hits)),
        End::Done => {}
    }
    search_result(answered, hits, wait, &a.text)
}

/// The failure of a search stopped by Ctrl-C or SIGTERM (standalone or
/// through a daemon).
pub(crate) fn search_interrupted(answered: usize, hits: usize) -> Failure {
    Failure::new(
        exit::INTERRUPTED,
        format!("search interrupted: {answered} peer(s) had answered, {hits} file(s) shown"),
    )
}

/// How a search that ran its course ends (standalone or through a
/// daemon): a failure when no peer answered within `wait`, or when none
/// of the `answered` had a file matching `text`.
pub(crate) fn search_result(
    answered: usize,
    hits: usize,
    wait: Duration,
    text: &str,
) -> Result<(), Failure> {
    if answered == 0 {
        return Err(Failure::new(
            exit::NETWORK,
            format!(
                "no peer answered within {:.1} s: check the address you joined through and that its node is running",
                wait.as_secs_f64()
            ),
        ));
    }
    if hits == 0 {
        return Err(Failure::new(
            exit::NOT_FOUND,
            format!("{answered} peer(s) answered, but no file matches {text:?}"),
        ));
    }
    Ok(())
}

/// How a one-shot search ended.
enum End {
    /// Every peer asked answered, or the time ran out.
    Done,
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// Standard output was closed (`rutella search … | head -1`).
    PipeClosed,
}

/// Writes one line to standard output: `Ok(false)` once the reader has
/// closed it (a closed pipe ends the command quietly, with success).
pub(crate) fn print_line(line: &str) -> Result<bool, Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Failure::new(
            exit::FAILURE,
            format!("cannot write to standard output: {e}"),
        )),
    }
}

pub(crate) async fn get(a: GetArgs) -> Result<(), Failure> {
    let mut stop = Stop::new();
    let wait = secs(a.wait).map_err(|m| Failure::new(exit::USAGE, m))?;
    if a.no_wait {
        return Err(Failure::new(
            exit::USAGE,
            "--no-wait needs a running daemon (rutella daemon) to go on with the download",
        ));
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from("."));
    std::fs::create_dir_all(&out).map_err(|e| {
        Failure::new(
            exit::FAILURE,
            format!("cannot create the folder {}: {e}", out.display()),
        )
    })?;
    let mut cfg = a.net.node_config();
    // A download names its peers: no LAN discovery.
    cfg.lan = None;
    cfg.downloads = Some(out);
    cfg.overlay.search_timeout = wait;
    // A bar on a terminal, nothing on a pipe or with --json.
    let bar = !a.json
        && std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (node, result) = match a.from {
        Some(from) => {
            let mut join = vec![from];
            join.extend(a.connect.iter().copied());
            let node = oneshot_node(cfg, join, false).await?;
            let r = get_by_name(&node.client(), from, &a.name, wait, bar, &mut stop).await;
            (node, r)
        }
        None => {
            let Some(hash) = rutella_proto::message::parse_hex32(&a.name.to_ascii_lowercase())
            else {
                return Err(Failure::new(
                    exit::USAGE,
                    format!(
                        "{:?} is not a BLAKE3 hash (64 hex digits): give a hash, or use --from ADDR to download by name",
                        a.name
                    ),
                ));
            };
            let connect = if a.connect.is_empty() {
                remembered_peers()?
            } else {
                a.connect.clone()
            };
            let node = oneshot_node(cfg, connect.clone(), false).await?;
            if let Err(e) = need_a_way_in(&node.client(), &connect, false) {
                node.shutdown().await;
                return Err(e);
            }
            let r = get_by_hash(&node.client(), hash, wait, bar, &mut stop).await;
            (node, r)
        }
    };
    let client = node.client();
    node.shutdown().await;
    match result? {
        Ok(report) => {
            if a.json {
                let sources: Vec<serde_json::Value> = report
                    .sources
                    .iter()
                    .map(|s| {
                        let path = client.path_to(s.peer);
                        serde_json::json!({
                            "peer": s.peer.to_string(),
                            "received": s.bytes_received,
                            "verified": s.bytes_verified,
                            "outcome": s.outcome.to_string(),
                            "path": path,
                        })
                    })
                    .collect();
                let obj = serde_json::json!({
                    "path": report.path,
                    "size": report.size,
                    "resumed_from": report.resumed_from,
                    "received": report.bytes_received,
                    "sources": sources,
                });
                print_line(&obj.to_string())?;
            } else {
                print_line(&crate::escape::path(&report.path))?;
            }
            Ok(())
        }
        Err(e) => {
            let mut f = Failure::from(e);
            // What the stream could not say (a relay's byte limit).
            for d in client.downloads() {
                for note in d.sources.iter().filter_map(|s| client.path_note(*s)) {
                    f.message.push_str(&format!("; {note}"));
                }
            }
            Err(f)
        }
    }
}

type Outcome = Result<rutella_transfer::DownloadReport, NodeError>;

/// Waits for a download to end, drawing a progress bar on standard error
/// when `bar`; Ctrl-C or SIGTERM ends the wait with an interruption (the
/// partial file stays, to be resumed).
async fn follow(
    client: &Client,
    handle: rutella_node::DownloadHandle,
    bar: bool,
    stop: &mut Stop,
) -> Result<Outcome, Failure> {
    let id = handle.id;
    let done = handle.wait();
    tokio::pin!(done);
    let progress = bar.then(|| {
        let style = indicatif::ProgressStyle::with_template(
            "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta} left",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        indicatif::ProgressBar::new(0).with_style(style)
    });
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let outcome = loop {
        tokio::select! {
            r = &mut done => break Ok(r),
            _ = stop.recv() => break Err(Failure::new(
                exit::INTERRUPTED,
                "download interrupted: run the same command again to resume it",
            )),
            _ = tick.tick(), if progress.is_some() => {
                if let (Some(p), Some(d)) = (&progress, client.downloads().into_iter().find(|d| d.id == id)) {
                    if let Some(total) = d.total {
                        p.set_length(total);
                    }
                    p.set_position(d.done);
                    p.set_message(escape(&d.name).into_owned());
                }
            }
        }
    };
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    outcome
}

async fn get_by_name(
    client: &Client,
    from: PeerAddr,
    name: &str,
    wait: Duration,
    bar: bool,
    stop: &mut Stop,
) -> Result<Outcome, Failure> {
    let want = Want::ByName {
        from,
        name: name.to_string(),
        listed_size: None,
    };
    match client.get(want, wait).await? {
        Got::Started { handle, .. } => follow(client, handle, bar, stop).await,
        _ => Err(Failure::new(
            exit::NETWORK,
            format!(
                "peer {from} did not answer within {:.1} s: check the address and that its node is running",
                wait.as_secs_f64()
            ),
        )),
    }
}

/// Downloads by hash: from the first peer that has the file, joined by
/// every other one that answers (see [`Client::get`]).
async fn get_by_hash(
    client: &Client,
    hash: [u8; 32],
    wait: Duration,
    bar: bool,
    stop: &mut Stop,
) -> Result<Outcome, Failure> {
    // The nodes that announced the hash on the DHT join the overlay as they
    // answer; the search for the hash reaches them.
    if client.dht_running() {
        let c = client.clone();
        tokio::spawn(async move { c.dht_sources(&hash).await });
    }
    match client.get(Want::ByHash { hash, found: None }, wait).await? {
        Got::Started { handle, .. } => follow(client, handle, bar, stop).await,
        _ => Err(Failure::new(
            exit::NOT_FOUND,
            format!(
                "no peer offers {} (asked every peer found within {:.1} s)",
                rutella_proto::message::hex32(&hash),
                wait.as_secs_f64()
            ),
        )),
    }
}
