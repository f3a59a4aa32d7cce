//! `rutella` without a command: settings from flags and the settings file,
//! the first-run questions for what is missing, then the console.

use super::complete::{Editor, Helper, Mode};
use crate::args::ConsoleArgs;
use crate::config_file::{self, ConfigFile};
use crate::{exit, Failure};
use rustyline::error::ReadlineError;
use rutella_node::{Node, NodeConfig, PeerAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Runtime;

/// A new line editor, or a sentence saying why there is none.
pub(crate) fn editor() -> Result<Editor, Failure> {
    let mut rl = Editor::new()
        .map_err(|e| Failure::new(exit::FAILURE, format!("cannot open the terminal: {e}")))?;
    rl.set_helper(Some(Helper::new()));
    Ok(rl)
}

/// `~/x` means `x` in the home folder.
pub(crate) fn expand_home(s: &str) -> PathBuf {
    let s = s.trim();
    let s = s
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(s);
    // Tab completion writes `my\ folder` for `my folder`.
    #[cfg(unix)]
    let s = &*rustyline::completion::unescape(s, Some('\\'));
    if s == "~" || s.starts_with("~/") {
        if let Some(home) = directories::BaseDirs::new().map(|b| b.home_dir().to_path_buf()) {
            return home.join(s.trim_start_matches('~').trim_start_matches('/'));
        }
    }
    PathBuf::from(s)
}

/// A folder as an absolute path (resolved through links when it exists),
/// so that the settings file means the same folder wherever rutella is
/// started from.
pub(crate) fn absolute(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir)
        .or_else(|_| std::path::absolute(dir))
        .unwrap_or_else(|_| dir.to_path_buf())
}

/// Whether `dir` is `share` or inside it.
fn inside(dir: &Path, share: &Path) -> bool {
    absolute(dir).starts_with(absolute(share))
}

/// The downloads folder when neither a flag nor the settings file names
/// one: the platform's download folder (`~/Downloads`), or, when that is
/// shared (downloads would be shared again), `downloads` in rutella's own
/// data folder.
pub(crate) fn default_downloads(shares: &[PathBuf]) -> PathBuf {
    let dirs = directories::UserDirs::new();
    let platform = dirs.as_ref().and_then(|d| {
        d.download_dir()
            .map(Path::to_path_buf)
            .or_else(|| Some(d.home_dir().join("Downloads")))
    });
    let own =
        directories::ProjectDirs::from("", "", "rutella").map(|d| d.data_dir().join("downloads"));
    [platform, own]
        .into_iter()
        .flatten()
        .find(|d| !shares.iter().any(|s| inside(d, s)))
        .unwrap_or_else(|| PathBuf::from("downloads"))
}

/// The addresses a friend types to join this node: the bound address, or
/// else every IPv4 address of this computer's interfaces that are up
/// (loopback only when there is nothing else), with the UDP port when it
/// is not the classic one.
pub(crate) fn join_addresses(bind: std::net::IpAddr, udp_port: u16) -> Vec<String> {
    let ips: Vec<std::net::IpAddr> = if bind.is_unspecified() {
        let mut ips: Vec<std::net::IpAddr> =
            interface_addresses().into_iter().map(Into::into).collect();
        if ips.iter().any(|ip| !ip.is_loopback()) {
            ips.retain(|ip| !ip.is_loopback());
        }
        ips
    } else {
        vec![bind]
    };
    ips.into_iter()
        .map(|ip| {
            PeerAddr {
                udp: std::net::SocketAddr::new(ip, udp_port),
                tcp_port: None,
            }
            .to_string()
        })
        .collect()
}

/// The IPv4 addresses of the interfaces that are up.
fn interface_addresses() -> Vec<std::net::Ipv4Addr> {
    let mut out = Vec::new();
    #[cfg(unix)]
    {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        // SAFETY: getifaddrs fills `list` with a linked list it allocated,
        // read only on success and freed with freeifaddrs below.
        if unsafe { libc::getifaddrs(&mut list) } != 0 {
            return out;
        }
        let mut cur = list;
        while !cur.is_null() {
            // SAFETY: `cur` is a node of the list getifaddrs returned.
            let ifa = unsafe { &*cur };
            let up = ifa.ifa_flags & (libc::IFF_UP as libc::c_uint) != 0;
            if up && !ifa.ifa_addr.is_null() {
                // SAFETY: a non-null ifa_addr points to a sockaddr whose
                // family says its type.
                let family = unsafe { (*ifa.ifa_addr).sa_family } as libc::c_int;
                if family == libc::AF_INET {
                    // SAFETY: an AF_INET address is a sockaddr_in.
                    let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                    let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                    if !out.contains(&ip) {
                        out.push(ip);
                    }
                }
            }
            cur = ifa.ifa_next;
        }
        // SAFETY: `list` came from a successful getifaddrs.
        unsafe { libc::freeifaddrs(list) };
    }
    out
}

fn ask(rl: &mut Editor, question: &str, mode: Mode) -> Result<String, Failure> {
    println!("{question}");
    if let Some(h) = rl.helper() {
        h.set_mode(mode);
    }
    match rl.readline("> ") {
        Ok(line) => Ok(line.trim().to_string()),
        Err(ReadlineError::Interrupted) | Err(ReadlineError::Eof) => Err(Failure::new(
            exit::USAGE,
            "stopped before the setup was complete",
        )),
        Err(e) => Err(Failure::new(
            exit::FAILURE,
            format!("cannot read from the terminal: {e}"),
        )),
    }
}

/// Asks for a folder to share until the answer is an existing folder.
fn ask_share(rl: &mut Editor) -> Result<PathBuf, Failure> {
    loop {
        let answer = ask(rl, "Enter the shared folder path:", Mode::Path)?;
        if answer.is_empty() {
            println!("Please type the path of a folder to share, e.g. ~/Downloads.");
            continue;
        }
        let dir = expand_home(&answer);
        if dir.is_dir() {
            return Ok(absolute(&dir));
        }
        if dir.exists() {
            println!(
                "{} is a file, not a folder: type the path of a folder.",
                dir.display()
            );
        } else {
            println!(
                "No folder at {}: type the path of an existing folder.",
                dir.display()
            );
        }
    }
}

/// Asks for a peer until the answer is an address, or empty (wait to be
/// joined).
fn ask_peer(rl: &mut Editor, lan: bool) -> Result<Option<PeerAddr>, Failure> {
    let question = if lan {
        "IP where you want to connect (leave empty to look for peers on your network):"
    } else {
        "IP where you want to connect (leave empty to wait for others to join you):"
    };
    loop {
        let answer = ask(rl, question, Mode::Plain)?;
        if answer.is_empty() {
            return Ok(None);
        }
        match answer.parse::<PeerAddr>() {
            Ok(p) => return Ok(Some(p)),
            Err(e) => println!("{e}"),
        }
    }
}

/// Opens the console with the settings of the flags, the settings file and
/// the answers to the first-run questions.
pub(crate) fn console(rt: &Runtime, args: ConsoleArgs) -> Result<(), Failure> {
    let path = config_file::path()?;
    let mut file = ConfigFile::load(&path)?;
    let mut rl = editor()?;
    let mut asked = false;
    // Peers not seen answering for long are not tried again.
    let stale = file.forget_stale(config_file::now_secs());

    let shares = if !args.shares.is_empty() {
        args.shares.clone()
    } else if !file.shares.is_empty() {
        file.shares.clone()
    } else {
        println!(
            "Welcome to rutella. Two questions, asked once (answers go to {}):",
            path.display()
        );
        asked = true;
        let dir = ask_share(&mut rl)?;
        file.shares = vec![dir.clone()];
        vec![dir]
    };
    for s in &shares {
        crate::oneshot::check_share(s)?;
    }
    let bind = args
        .bind
        .or(file.bind)
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    let lan = args.lan.settings(bind, file.lan_discovery == Some(false));
    let connect = if !args.connect.is_empty() {
        args.connect.clone()
    } else if file.peers.is_some() {
        file.peer_addrs()
    } else {
        asked = true;
        let peer = ask_peer(&mut rl, lan.is_some())?;
        file.peers = Some(peer.iter().map(|p| p.to_string()).collect());
        peer.into_iter().collect()
    };
    if asked {
        file.save(&path)?;
        println!("Saved to {}.", path.display());
    } else if stale {
        file.save(&path)?;
    }

    let downloads = args
        .downloads
        .clone()
        .or_else(|| file.downloads.clone())
        .unwrap_or_else(|| default_downloads(&shares));
    if asked && args.downloads.is_none() && file.downloads.is_none() {
        println!(
            "Downloads go to {} (to change it, set downloads = \"FOLDER\" in {}).",
            downloads.display(),
            path.display()
        );
    }
    let mut cfg = NodeConfig {
        shares,
        downloads: Some(downloads.clone()),
        bind,
        udp_port: args
            .udp_port
            .or(file.udp_port)
            .unwrap_or(rutella_proto::CLASSIC_UDP_PORT),
        tcp_port: args
            .tcp_port
            .or(file.tcp_port)
            .unwrap_or(rutella_proto::CLASSIC_TCP_PORT),
        advertise: args.advertise,
        connect: connect.clone(),
        lan,
        ..NodeConfig::default()
    };
    if let Some(t) = args.ping_interval {
        cfg.overlay.ping_interval = t;
        cfg.overlay.pong_timeout = cfg.overlay.pong_timeout.min(t / 2);
    }
    if let Some(t) = args.search_timeout {
        cfg.overlay.search_timeout = t;
    }
    cfg.overlay.seed = crate::args::seed();
    args.limits.apply(&mut cfg, &file);
    cfg.dht = args.dht.config(Some(&file), true);
    cfg.gnutella = args.gnutella.config(Some(&file));
    cfg.db_path = cfg.default_db_path();
    // As `serve`: a node bound to loopback is out of reach anyway.
    if !(args.no_port_mapping || file.port_mapping == Some(false) || bind.is_loopback()) {
        cfg.port_mapping = Some(rutella_node::PortMapConfig::default());
    }
    let node = rt.block_on(Node::start(cfg))?;
    let client = node.client();
    let files = client.library().len();
    println!(
        "Sharing {} file(s) from {}; downloads go to {}.",
        files,
        client
            .shares()
            .iter()
            .map(|s| s.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        downloads.display()
    );
    println!(
        "Listening on UDP {} and TCP {}.",
        client.udp_addr(),
        client.tcp_addr()
    );
    let join = join_addresses(bind, client.udp_addr().port());
    if !join.is_empty() {
        println!(
            "A friend joins you by typing: connect {}",
            join.join(" or connect ")
        );
    }
    if connect.is_empty() && client.lan_discovery() {
        println!("Looking for peers on your network...");
        let found = rt.block_on(crate::lan::wait_found(
            &client,
            Duration::from_secs(3),
            Duration::from_millis(500),
        ));
        println!("{}", crate::lan::found_line(found));
    } else if connect.is_empty() {
        println!("Waiting for peers to join you (or type connect ADDR).");
    } else {
        let joined = rt.block_on(wait_for_peers(&client, Duration::from_secs(2)));
        let names: Vec<String> = connect.iter().map(|p| p.to_string()).collect();
        if joined == 0 {
            println!(
                "No answer yet from {}: check the address and that its node is running; it is tried again with every ping round.",
                names.join(", ")
            );
        } else {
            let known = rt.block_on(client.peers()).unwrap_or_default();
            let (up, down): (Vec<&PeerAddr>, Vec<&PeerAddr>) = connect
                .iter()
                .partition(|p| known.iter().any(|k| k.udp == p.udp));
            let up: Vec<String> = up.iter().map(|p| p.to_string()).collect();
            let through = if up.is_empty() { names.clone() } else { up };
            println!(
                "Joined the network through {}: {joined} peer(s) known.",
                through.join(", ")
            );
            if !down.is_empty() {
                let down: Vec<String> = down.iter().map(|p| p.to_string()).collect();
                println!(
                    "No answer yet from {} (tried again with every ping round).",
                    down.join(", ")
                );
            }
        }
    }
    println!("Type help for the commands.");
    // Command history, beside the settings file.
    let history = path.with_file_name("history.txt");
    let _ = rl.load_history(&history);
    let remember = Some(Arc::new(Mutex::new((path, file))));
    let result = super::run(rt, &mut rl, client, remember);
    if let Err(e) = rl.save_history(&history) {
        tracing::debug!(error = %e, "cannot save the command history");
    }
    rt.block_on(node.shutdown());
    result
}

/// Waits up to `max` for the first peers; returns how many are known.
pub(crate) async fn wait_for_peers(client: &rutella_node::Client, max: Duration) -> usize {
    let n = client.wait_any_peer(max).await.unwrap_or(0);
    if n > 0 {
        // Give the rest of the network a moment to answer too.
        tokio::time::sleep(Duration::from_millis(300)).await;
        return client.peers().await.map(|p| p.len()).unwrap_or(n);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_and_quotes() {
        assert_eq!(expand_home(" \"/a b\" "), PathBuf::from("/a b"));
        assert_eq!(expand_home("/x"), PathBuf::from("/x"));
        assert_eq!(expand_home("/my\\ folder"), PathBuf::from("/my folder"));
        if let Some(b) = directories::BaseDirs::new() {
            assert_eq!(expand_home("~/x"), b.home_dir().join("x"));
        }
    }
}
