//! The interactive console driven through a pseudo-terminal, as a person
//! would use it.
//!
//! Address plan: the demo and the first-run console use 127.0.0.1 with
//! free ports; nodes on classic ports use 127.0.4.0/24.

mod common;
use common::*;
use rexpect::process::WaitStatus;
use rexpect::session::{spawn_command, PtySession};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Every expectation waits at most this long.
const TIMEOUT_MS: u64 = 20_000;

fn console_cmd(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rutella"));
    c.args(args)
        .env("RUTELLA_NO_DHT", "1")
        .env("RUTELLA_TEST_NO_PUBLIC", "1")
        .env("RUTELLA_CONFIG", config)
        .env("TERM", "xterm")
        // The default downloads folder is the platform's, in the home
        // folder: a test's own.
        .env("HOME", config.parent().unwrap())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_DOWNLOAD_DIR")
        .env_remove("RUST_LOG");
    c
}

fn spawn(cmd: Command) -> PtySession {
    spawn_command(cmd, Some(TIMEOUT_MS)).expect("start rutella in a pseudo-terminal")
}

/// Waits (bounded) for the process to end and returns its exit code. Polled:
/// the only event is a blocking `waitpid`, which has no time limit.
fn exit_code(p: &PtySession) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match p.process().status() {
            Some(WaitStatus::Exited(_, code)) => return code,
            Some(WaitStatus::StillAlive) | None => {}
            Some(other) => panic!("rutella ended with {other:?}"),
        }
        assert!(Instant::now() < deadline, "rutella did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn quit(mut p: PtySession) {
    p.send_line("quit").unwrap();
    p.exp_eof().unwrap();
    assert_eq!(exit_code(&p), 0);
}

#[test]
fn demo_search_get_and_the_file_is_identical() {
    let cfg = tempfile::tempdir().unwrap();
    let config = cfg.path().join("config.toml");
    let mut p = spawn(console_cmd(&config, &["demo"]));
    let (_, line) = p
        .exp_regex(r"peer 1 +127\.0\.0\.1:\d+ +shares ([^\r\n]+)")
        .unwrap();
    let share1 = PathBuf::from(line.split(" shares ").nth(1).unwrap().trim());
    let root = share1.parent().unwrap().to_path_buf();
    assert!(share1.is_dir(), "{share1:?}");
    p.exp_string("Try:").unwrap();
    p.exp_string("rutella> ").unwrap();

    // The same file is on peers 1 and 2: one numbered result, grouped.
    p.send_line("search northern sky").unwrap();
    p.exp_string("music/Aurora Lights - Northern Sky.ogg")
        .unwrap();
    p.exp_string("(same file as 1: 2 peers)").unwrap();
    p.exp_string("1 file(s) from 2 peers, 1 of them on several peers")
        .unwrap();
    p.exp_string("rutella> ").unwrap();

    // Both peers serve it at once, every piece checked against the hash.
    p.send_line("get 1").unwrap();
    p.exp_string("Downloading music/Aurora Lights - Northern Sky.ogg from 2 peers")
        .unwrap();
    p.exp_string("every piece verified").unwrap();
    let (_, done) = p.exp_regex(r"Downloaded [^\r\n]+ to [^\r\n]+").unwrap();
    let got = PathBuf::from(done.split(" to ").last().unwrap().trim());
    let source = share1.join("music/Aurora Lights - Northern Sky.ogg");
    let a = std::fs::read(&source).unwrap();
    let b = std::fs::read(&got).unwrap();
    assert_eq!(a.len(), 3_200_000);
    assert!(a == b, "the downloaded copy differs from the shared file");

    p.send_line("downloads").unwrap();
    p.exp_regex(r"done +100%").unwrap();
    p.exp_string("rutella> ").unwrap();
    // A result that does not exist gets a sentence, not a crash.
    p.send_line("get 7").unwrap();
    p.exp_string("There is no result 7: the results are numbered 1 to 1.")
        .unwrap();
    quit(p);
    assert!(!root.exists(), "the demo left {root:?} behind");
}

#[test]
fn first_run_asks_again_after_a_wrong_answer_and_saves_the_answers() {
    let cfg = tempfile::tempdir().unwrap();
    let config = cfg.path().join("rutella/config.toml");
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("shared folder");
    write_file(&share.join("song.ogg"), b"la la la");
    let net = ["--bind", "127.0.0.1", "--udp-port", "0", "--tcp-port", "0"];
    let mut p = spawn(console_cmd(&config, &net));
    p.exp_string("Enter the shared folder path:").unwrap();
    p.send_line("/no/such/folder/anywhere").unwrap();
    p.exp_string("No folder at /no/such/folder/anywhere: type the path of an existing folder.")
        .unwrap();
    p.exp_string("Enter the shared folder path:").unwrap();
    // Tab completes the folder's name (escaping its space).
    p.send(&format!("{}/shared\\ f", tmp.path().display()))
        .unwrap();
    p.send("\t").unwrap();
    p.flush().unwrap();
    p.exp_string("shared\\ folder/").unwrap();
    p.send_line("").unwrap();
    p.exp_string("IP where you want to connect").unwrap();
    p.send_line("300.1.2.3").unwrap();
    p.exp_string("is not a peer address").unwrap();
    p.exp_string("IP where you want to connect").unwrap();
    // Empty: wait to be joined.
    p.send_line("").unwrap();
    p.exp_string("Saved to").unwrap();
    p.exp_string("Sharing 1 file(s)").unwrap();
    p.exp_string("Waiting for peers to join you").unwrap();
    p.exp_string("rutella> ").unwrap();
    p.send_line("search x").unwrap();
    p.exp_string("No peer to ask yet").unwrap();
    // Shares added and removed at the prompt are kept in the settings.
    let more = tempfile::tempdir().unwrap();
    write_file(&more.path().join("b.txt"), b"b");
    p.send_line("share /no/such/folder").unwrap();
    p.exp_string("No folder at /no/such/folder").unwrap();
    p.send_line(&format!("share {}", more.path().display()))
        .unwrap();
    p.exp_string("(2 files shared in all)").unwrap();
    p.exp_string("rutella> ").unwrap();
    assert!(std::fs::read_to_string(&config)
        .unwrap()
        .contains(more.path().to_str().unwrap()));
    p.send_line(&format!("unshare {}", more.path().display()))
        .unwrap();
    p.exp_string("Stopped sharing").unwrap();
    p.exp_string("rutella> ").unwrap();
    quit(p);

    let saved = std::fs::read_to_string(&config).unwrap();
    let v: toml::Table = toml::from_str(&saved).unwrap();
    assert_eq!(v["shares"].as_array().unwrap().len(), 1, "{saved}");
    assert_eq!(
        v["shares"].as_array().unwrap()[0]
            .as_str()
            .unwrap()
            .trim_end_matches('/'),
        share.to_str().unwrap()
    );
    assert!(v["peers"].as_array().unwrap().is_empty(), "{saved}");

    // The second start asks nothing.
    let mut p = spawn(console_cmd(&config, &net));
    p.exp_string("Sharing 1 file(s)").unwrap();
    let before = p.exp_string("rutella> ").unwrap();
    assert!(!before.contains("Enter the shared folder path"), "{before}");
    quit(p);
}

#[test]
fn peers_that_answered_are_remembered_and_rejoined() {
    let share = tempfile::tempdir().unwrap();
    write_file(&share.path().join("remembered.txt"), b"hello");
    let s = share.path().to_str().unwrap();
    let _peer = Serve::start(&["--share", s, "--bind", "127.0.4.2"]);

    let cfg = tempfile::tempdir().unwrap();
    let config = cfg.path().join("config.toml");
    let mine = tempfile::tempdir().unwrap();
    let m = mine.path().to_str().unwrap();
    let args = [
        "--share",
        m,
        "--bind",
        "127.0.4.3",
        "--ping-interval",
        "300ms",
    ];
    let mut with_peer = args.to_vec();
    with_peer.extend(["--connect", "127.0.4.2"]);
    let mut p = spawn(console_cmd(&config, &with_peer));
    p.exp_string("Joined the network through 127.0.4.2")
        .unwrap();
    p.exp_string("rutella> ").unwrap();
    quit(p);
    let saved = std::fs::read_to_string(&config).unwrap();
    assert!(saved.contains("\"127.0.4.2\""), "{saved}");

    // No --connect now: the settings file brings the peer back.
    let mut p = spawn(console_cmd(&config, &args));
    p.exp_string("Joined the network through 127.0.4.2")
        .unwrap();
    p.exp_string("rutella> ").unwrap();
    p.send_line("search remembered").unwrap();
    p.exp_string("remembered.txt").unwrap();
    p.exp_string("rutella> ").unwrap();
    p.send_line("get 127.0.4.2 remembered.txt").unwrap();
    p.exp_regex(r"Downloaded remembered\.txt to [^\r\n]+")
        .unwrap();
    quit(p);
    // Downloads go to the platform's download folder, not into a share.
    assert_eq!(
        std::fs::read(cfg.path().join("Downloads/remembered.txt")).unwrap(),
        b"hello"
    );
    assert!(!mine.path().join("downloads").exists());
}

#[test]
fn a_killed_demo_removes_its_files() {
    let cfg = tempfile::tempdir().unwrap();
    let mut p = spawn(console_cmd(
        &cfg.path().join("c.toml"),
        &["demo", "--peers", "1"],
    ));
    let (_, line) = p.exp_regex(r"shares ([^\r\n]+)").unwrap();
    let share = PathBuf::from(line.trim_start_matches("shares ").trim());
    let root = share.parent().unwrap().to_path_buf();
    p.exp_string("rutella> ").unwrap();
    assert!(root.is_dir());
    p.process_mut()
        .signal(rexpect::process::Signal::SIGTERM)
        .unwrap();
    assert_eq!(exit_code(&p), 143);
    assert!(!root.exists(), "the demo left {root:?} behind");
}

#[test]
fn progress_bars_run_while_typing_and_endings_are_announced_once() {
    let cfg = tempfile::tempdir().unwrap();
    let mut p = spawn(console_cmd(&cfg.path().join("c.toml"), &["demo"]));
    p.exp_string("rutella> ").unwrap();
    p.send_line("s rabbit").unwrap();
    p.exp_string("video/Big Buck Rabbit.mp4").unwrap();
    p.exp_string("rutella> ").unwrap();
    // 24 MB from a peer limited to 6 MiB/s: about four seconds of bars.
    p.send_line("get 1").unwrap();
    // (rexpect reads bytes as Latin-1: match the ASCII part of the bar.)
    p.exp_regex(r"Rabbit\.mp4 +\[[#-]{12}\] +\d+% [^\r\n]*/s ETA")
        .unwrap();
    // The prompt still works while the bar is drawn above it.
    p.send_line("downloads").unwrap();
    p.exp_regex(r"running +\d+% [^\r\n]+/s").unwrap();
    p.send_line("peers").unwrap();
    p.exp_string("3 peer(s):").unwrap();
    p.exp_string("Downloaded video/Big Buck Rabbit.mp4 to")
        .unwrap();

    // A peer that is not there: the failure and its reason, once, naming
    // the peer as typed.
    p.send_line("get 127.0.4.50 missing.txt").unwrap();
    p.exp_regex(
        r"missing\.txt failed: peer 127\.0\.4\.50 \(TCP port 10000\) refused the connection[^\r\n]*",
    )
    .unwrap();
    p.send_line("help").unwrap();
    p.exp_string("unshare DIR").unwrap();
    p.send_line("quit").unwrap();
    let rest = p.exp_eof().unwrap();
    assert!(
        !rest.contains("Downloaded") && !rest.contains("failed"),
        "announced twice: {rest}"
    );
    assert_eq!(exit_code(&p), 0);
}

#[test]
fn first_time_hashing_shows_progress_at_the_prompt() {
    let share = tempfile::tempdir().unwrap();
    // A large sparse file keeps hashing busy for a few seconds without
    // using disk space (256 MiB: an unoptimised test build can take the
    // 20 s an expectation waits to hash 1 GiB).
    let big = std::fs::File::create(share.path().join("big image.iso")).unwrap();
    big.set_len(1 << 28).unwrap();
    drop(big);
    write_file(&share.path().join("small.txt"), b"small");
    let cfg = tempfile::tempdir().unwrap();
    let s = share.path().to_str().unwrap();
    let args = [
        "--share",
        s,
        "--bind",
        "127.0.0.1",
        "--udp-port",
        "0",
        "--tcp-port",
        "0",
    ];
    let mut p = spawn(console_cmd(&cfg.path().join("c.toml"), &args));
    p.exp_string("IP where you want to connect").unwrap();
    p.send_line("").unwrap();
    p.exp_string("rutella> ").unwrap();
    // Searches answer while hashing goes on.
    p.send_line("peers").unwrap();
    p.exp_string("# hashing shared files:").unwrap();
    p.exp_string("files, ").unwrap();
    p.exp_string("Hashed the 2 shared file(s)").unwrap();
    quit(p);
}

/// LAN discovery on loopback (`--lan-port` turns it on there): the first
/// run's peer question left empty, the console finds the two nodes
/// running on this computer and says so.
#[test]
fn first_run_with_no_peer_finds_the_nodes_on_the_network() {
    let lan = ["--lan-port", "20397"];
    let net = ["--bind", "127.0.0.1", "--udp-port", "0", "--tcp-port", "0"];
    let s1 = tempfile::tempdir().unwrap();
    let s2 = tempfile::tempdir().unwrap();
    write_file(&s2.path().join("lan song.ogg"), b"la la la");
    let peer_args = |s: &Path| {
        let mut v: Vec<String> = vec!["--share".into(), s.to_str().unwrap().into()];
        v.extend(net.iter().chain(&lan).map(|a| a.to_string()));
        v
    };
    let a1 = peer_args(s1.path());
    let a2 = peer_args(s2.path());
    let _p1 = Serve::start(&a1.iter().map(String::as_str).collect::<Vec<_>>());
    let _p2 = Serve::start(&a2.iter().map(String::as_str).collect::<Vec<_>>());

    let cfg = tempfile::tempdir().unwrap();
    let config = cfg.path().join("config.toml");
    let mine = tempfile::tempdir().unwrap();
    let args: Vec<&str> = net.iter().chain(&lan).copied().collect();
    let mut p = spawn(console_cmd(&config, &args));
    p.exp_string("Enter the shared folder path:").unwrap();
    p.send_line(mine.path().to_str().unwrap()).unwrap();
    p.exp_string("leave empty to look for peers on your network")
        .unwrap();
    p.send_line("").unwrap();
    p.exp_string("Found 2 peers on your network.").unwrap();
    p.exp_string("rutella> ").unwrap();
    // They are peers like any other: a search reaches them.
    p.send_line("search lan song").unwrap();
    p.exp_string("lan song.ogg").unwrap();
    p.exp_string("rutella> ").unwrap();
    quit(p);
}

/// With nobody on the network, the console says so and how to go on.
#[test]
fn first_run_with_no_peer_and_nobody_around_says_so() {
    let args = [
        "--bind",
        "127.0.0.1",
        "--udp-port",
        "0",
        "--tcp-port",
        "0",
        "--lan-port",
        "20398",
    ];
    let cfg = tempfile::tempdir().unwrap();
    let config = cfg.path().join("config.toml");
    let mine = tempfile::tempdir().unwrap();
    let mut p = spawn(console_cmd(&config, &args));
    p.exp_string("Enter the shared folder path:").unwrap();
    p.send_line(mine.path().to_str().unwrap()).unwrap();
    p.exp_string("IP where you want to connect").unwrap();
    p.send_line("").unwrap();
    p.exp_string("No peers found yet: waiting for others, or type connect ADDR.")
        .unwrap();
    p.exp_string("rutella> ").unwrap();
    quit(p);
}

/// `lan_discovery = false` in the settings file: the console neither
/// looks nor is found, though a node on the same group is running.
#[test]
fn the_settings_file_turns_lan_discovery_off() {
    let net = [
        "--bind",
        "127.0.0.1",
        "--udp-port",
        "0",
        "--tcp-port",
        "0",
        "--lan-port",
        "20399",
    ];
    let s = tempfile::tempdir().unwrap();
    let mut peer_args = vec!["--share", s.path().to_str().unwrap()];
    peer_args.extend(net);
    let peer = Serve::start(&peer_args);

    let cfg = tempfile::tempdir().unwrap();
    let config = cfg.path().join("config.toml");
    let mine = tempfile::tempdir().unwrap();
    std::fs::write(
        &config,
        format!(
            "shares = [{:?}]\npeers = []\nlan_discovery = false\n",
            mine.path().to_str().unwrap()
        ),
    )
    .unwrap();
    let mut p = spawn(console_cmd(&config, &net));
    p.exp_string("Waiting for peers to join you").unwrap();
    p.exp_string("rutella> ").unwrap();
    p.send_line("peers").unwrap();
    p.exp_string("No peers yet").unwrap();
    p.exp_string("rutella> ").unwrap();
    quit(p);
    assert!(
        !peer.log_text().contains("found a peer on the LAN"),
        "{}",
        peer.log_text()
    );
}

/// A settings file that asks nothing: these shares, no peers, no LAN.
fn settings(config: &Path, shares: &[&Path], extra: &str) {
    let shares: Vec<String> = shares
        .iter()
        .map(|s| format!("{:?}", s.to_str().unwrap()))
        .collect();
    std::fs::write(
        config,
        format!(
            "shares = [{}]\npeers = []\nlan_discovery = false\n{extra}",
            shares.join(", ")
        ),
    )
    .unwrap();
}

/// `connect` to an address where nobody answers says so, and keeps
/// nothing: not in `peers`, not in the settings file.
#[test]
fn connect_to_nobody_says_so_and_keeps_nothing() {
    let cfg = tempfile::tempdir().unwrap();
    let config = cfg.path().join("config.toml");
    let mine = tempfile::tempdir().unwrap();
    settings(&config, &[mine.path()], "");
    let args = ["--bind", "127.0.4.10", "--ping-interval", "300ms"];
    let mut p = spawn(console_cmd(&config, &args));
    p.exp_string("rutella> ").unwrap();
    p.send_line("connect 127.0.4.99").unwrap();
    p.exp_string("No answer from 127.0.4.99 within 3 s")
        .unwrap();
    p.exp_string("rutella> ").unwrap();
    p.send_line("peers").unwrap();
    p.exp_string("No peers yet").unwrap();
    p.exp_string("rutella> ").unwrap();
    quit(p);
    let saved = std::fs::read_to_string(&config).unwrap();
    assert!(!saved.contains("127.0.4.99"), "{saved}");
}

/// Tab after `unshare`, `get` and `connect` offers what the node knows:
/// the shared folders, the results, the peers.
#[test]
fn tab_completes_shares_results_and_peers() {
    let theirs = tempfile::tempdir().unwrap();
    write_file(&theirs.path().join("completion song.ogg"), b"la la");
    let _peer = Serve::start(&[
        "--share",
        theirs.path().to_str().unwrap(),
        "--bind",
        "127.0.4.11",
    ]);

    let cfg = tempfile::tempdir().unwrap();
    let config = cfg.path().join("config.toml");
    let mine = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let other = std::fs::canonicalize(other.path()).unwrap();
    settings(&config, &[mine.path(), &other], "");
    let args = ["--bind", "127.0.4.12", "--ping-interval", "300ms"];
    let mut p = spawn(console_cmd(&config, &args));
    p.exp_string("rutella> ").unwrap();
    // The peer, from the peers the node knows of (none yet: it was given
    // nowhere): typed in full, then remembered and offered.
    p.send_line("connect 127.0.4.11").unwrap();
    p.exp_string("Joined 127.0.4.11").unwrap();
    p.exp_string("rutella> ").unwrap();
    // `connect 127.0.4.1` + Tab: the one peer known.
    p.send("connect 127.0.4.1").unwrap();
    p.send("\t").unwrap();
    p.flush().unwrap();
    p.send_line("").unwrap();
    p.exp_string("Joined 127.0.4.11").unwrap();
    p.exp_string("rutella> ").unwrap();
    // `unshare` + the start of the second share's path + Tab: the share.
    let path = other.to_str().unwrap();
    let typed = &path[..path.len() - 3];
    p.send(&format!("unshare {typed}")).unwrap();
    p.send("\t").unwrap();
    p.flush().unwrap();
    p.send_line("").unwrap();
    p.exp_string(&format!("Stopped sharing {path}")).unwrap();
    p.exp_string("rutella> ").unwrap();
    // `get` + a part of a result's name + Tab: its number.
    p.send_line("search completion").unwrap();
    p.exp_string("completion song.ogg").unwrap();
    p.exp_string("rutella> ").unwrap();
    p.send("get song").unwrap();
    p.send("\t").unwrap();
    p.flush().unwrap();
    p.send_line("").unwrap();
    p.exp_string("Downloading completion song.ogg from")
        .unwrap();
    p.exp_string("Downloaded completion song.ogg").unwrap();
    quit(p);
}

/// Peers joining and downloads from this node are announced, unless
/// turned off (which the settings file keeps); sharing a folder twice
/// says so.
#[test]
fn joins_and_uploads_are_announced_until_turned_off() {
    let cfg = tempfile::tempdir().unwrap();
    let config = cfg.path().join("config.toml");
    let mine = tempfile::tempdir().unwrap();
    write_file(&mine.path().join("shared tune.ogg"), b"tra la la");
    settings(&config, &[mine.path()], "");
    let args = ["--bind", "127.0.4.13", "--ping-interval", "300ms"];
    let mut p = spawn(console_cmd(&config, &args));
    p.exp_string("rutella> ").unwrap();
    p.send_line(&format!("share {}", mine.path().display()))
        .unwrap();
    p.exp_string("is already shared").unwrap();
    p.exp_string("rutella> ").unwrap();

    // A node joins.
    let theirs = tempfile::tempdir().unwrap();
    let s = theirs.path().to_str().unwrap();
    let _peer = Serve::start(&[
        "--share",
        s,
        "--bind",
        "127.0.4.14",
        "--connect",
        "127.0.4.13",
    ]);
    p.exp_string("+ Peer 127.0.4.14 joined.").unwrap();
    // Someone downloads from us.
    let out = tempfile::tempdir().unwrap();
    let get = |out: &Path| {
        bin()
            .args([
                "get",
                "--from",
                "127.0.4.13",
                "shared tune.ogg",
                "--bind",
                "127.0.4.15",
            ])
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    let got = get(out.path());
    assert!(got.status.success(), "{got:?}");
    // (The download's TCP connection comes from the address the system
    // picks, not the one-shot's --bind.)
    p.exp_string(" is downloading shared tune.ogg from you.")
        .unwrap();
    p.exp_string(" stopped downloading shared tune.ogg (9 B sent).")
        .unwrap();

    // Off: the next download is not announced, and the setting is kept.
    p.send_line("notices off").unwrap();
    p.exp_string("Notices off").unwrap();
    p.exp_string("rutella> ").unwrap();
    let out2 = tempfile::tempdir().unwrap();
    assert!(get(out2.path()).status.success());
    // A one-shot get is a peer while it runs (a source behind a router
    // reaches it by push); once it quit it stops answering and the next
    // ping round drops it: no peer is left behind, only the node that
    // joined.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        p.send_line("peers").unwrap();
        let listed = p.exp_string("rutella> ").unwrap();
        if listed.contains("1 peer(s):") {
            assert!(listed.contains("127.0.4.14"), "{listed}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the one-shot get stayed a peer: {listed}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    p.send_line("quit").unwrap();
    let rest = p.exp_eof().unwrap();
    assert!(
        !rest.contains("is downloading"),
        "announced while off: {rest}"
    );
    let saved = std::fs::read_to_string(&config).unwrap();
    assert!(saved.contains("notices = false"), "{saved}");
    // Nor is the one-shot remembered for the next start.
    assert!(!saved.contains("127.0.4.15"), "{saved}");
}

/// `quit` while a download runs removes the demo's folder, every time.
#[test]
fn quitting_the_demo_during_a_download_removes_its_folder() {
    for round in 0..3 {
        let cfg = tempfile::tempdir().unwrap();
        let mut p = spawn(console_cmd(&cfg.path().join("c.toml"), &["demo"]));
        let (_, line) = p
            .exp_regex(r"peer 1 +127\.0\.0\.1:\d+ +shares ([^\r\n]+)")
            .unwrap();
        let share = PathBuf::from(line.split(" shares ").nth(1).unwrap().trim());
        let root = share.parent().unwrap().to_path_buf();
        p.exp_string("rutella> ").unwrap();
        p.send_line("s rabbit").unwrap();
        p.exp_string("rutella> ").unwrap();
        p.send_line("get 1").unwrap();
        p.exp_regex(r"Rabbit\.mp4 +\[[#-]{12}\]").unwrap();
        quit(p);
        assert!(
            !root.exists(),
            "round {round}: the demo left {root:?} behind"
        );
    }
}

/// A failed download can be removed from the list; `pause`, `resume`
/// and `cancel` control a running one.
#[test]
fn downloads_are_paused_resumed_cancelled_and_removed() {
    let cfg = tempfile::tempdir().unwrap();
    let mut p = spawn(console_cmd(&cfg.path().join("c.toml"), &["demo"]));
    p.exp_string("rutella> ").unwrap();
    p.send_line("get 127.0.4.50 missing.txt").unwrap();
    p.exp_string("missing.txt failed").unwrap();
    p.send_line("downloads").unwrap();
    p.exp_regex(r"1 +failed").unwrap();
    p.exp_string("rutella> ").unwrap();
    p.send_line("remove").unwrap();
    p.exp_string("Removed 1 finished download from the list.")
        .unwrap();
    p.send_line("downloads").unwrap();
    p.exp_string("No downloads yet").unwrap();
    p.exp_string("rutella> ").unwrap();

    p.send_line("s rabbit").unwrap();
    p.exp_string("rutella> ").unwrap();
    // Cancelled while it runs: gone from the list.
    p.send_line("get 1").unwrap();
    p.exp_regex(r"Rabbit\.mp4 +\[[#-]{12}\]").unwrap();
    p.send_line("cancel 2").unwrap();
    p.exp_string("Cancelled 2").unwrap();
    p.exp_string("rutella> ").unwrap();
    p.send_line("downloads").unwrap();
    p.exp_string("No downloads yet").unwrap();
    p.exp_string("rutella> ").unwrap();
    // Paused, then resumed to the end.
    p.send_line("get 1").unwrap();
    p.exp_regex(r"Rabbit\.mp4 +\[[#-]{12}\]").unwrap();
    p.send_line("pause 3").unwrap();
    p.exp_string("Paused 3").unwrap();
    p.exp_string("rutella> ").unwrap();
    p.send_line("downloads").unwrap();
    p.exp_regex(r"3 +paused").unwrap();
    p.exp_string("rutella> ").unwrap();
    p.send_line("resume 3").unwrap();
    p.exp_string("Resuming 3").unwrap();
    p.exp_string("Downloaded video/Big Buck Rabbit.mp4")
        .unwrap();
    p.send_line("cancel 3").unwrap();
    p.exp_string("Download 3 is complete.").unwrap();
    p.exp_string("rutella> ").unwrap();
    quit(p);
}

/// The first run saves an absolute share, says where downloads go
/// (outside the shares) and which address a friend types; comments in
/// the settings file survive the console's saves.
#[test]
fn first_run_saves_absolute_paths_and_tells_where_things_are() {
    let cfg = tempfile::tempdir().unwrap();
    let config = cfg.path().join("config.toml");
    let work = tempfile::tempdir().unwrap();
    let work_dir = std::fs::canonicalize(work.path()).unwrap();
    std::fs::create_dir(work_dir.join("share")).unwrap();
    let mut cmd = console_cmd(&config, &["--bind", "127.0.4.16"]);
    cmd.current_dir(&work_dir);
    let mut p = spawn(cmd);
    p.exp_string("Enter the shared folder path:").unwrap();
    p.send_line("share").unwrap();
    p.exp_string("IP where you want to connect").unwrap();
    p.send_line("").unwrap();
    p.exp_string("Saved to").unwrap();
    p.exp_string(&format!(
        "Downloads go to {}",
        cfg.path().join("Downloads").display()
    ))
    .unwrap();
    p.exp_string("A friend joins you by typing: connect 127.0.4.16")
        .unwrap();
    p.exp_string("rutella> ").unwrap();
    quit(p);
    let saved = std::fs::read_to_string(&config).unwrap();
    let v: toml::Table = toml::from_str(&saved).unwrap();
    assert_eq!(
        v["shares"].as_array().unwrap()[0].as_str().unwrap(),
        work_dir.join("share").to_str().unwrap(),
        "{saved}"
    );

    // A comment written by hand survives a peer being remembered.
    let theirs = tempfile::tempdir().unwrap();
    let _peer = Serve::start(&[
        "--share",
        theirs.path().to_str().unwrap(),
        "--bind",
        "127.0.4.17",
    ]);
    std::fs::write(&config, format!("# my own notes\n{saved}")).unwrap();
    let mut p = spawn(console_cmd(
        &config,
        &["--bind", "127.0.4.16", "--connect", "127.0.4.17"],
    ));
    p.exp_string("Joined the network through 127.0.4.17")
        .unwrap();
    p.exp_string("rutella> ").unwrap();
    quit(p);
    let saved = std::fs::read_to_string(&config).unwrap();
    assert!(saved.contains("\"127.0.4.17\""), "{saved}");
    assert!(saved.starts_with("# my own notes\n"), "{saved}");
}

/// A one-shot search through a console leaves no trace in its peers or
/// its settings file.
#[test]
fn one_shot_commands_are_not_kept_as_peers() {
    let cfg = tempfile::tempdir().unwrap();
    let config = cfg.path().join("config.toml");
    let mine = tempfile::tempdir().unwrap();
    write_file(&mine.path().join("kept.txt"), b"kept");
    settings(&config, &[mine.path()], "");
    let args = ["--bind", "127.0.4.18", "--ping-interval", "300ms"];
    let mut p = spawn(console_cmd(&config, &args));
    p.exp_string("rutella> ").unwrap();
    let out = bin()
        .args([
            "search",
            "kept",
            "--connect",
            "127.0.4.18",
            "--bind",
            "127.0.4.19",
            "--wait",
            "2",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("kept.txt"));
    p.send_line("peers").unwrap();
    p.exp_string("No peers yet").unwrap();
    p.exp_string("rutella> ").unwrap();
    quit(p);
    let saved = std::fs::read_to_string(&config).unwrap();
    assert!(!saved.contains("127.0.4.19"), "{saved}");
}
