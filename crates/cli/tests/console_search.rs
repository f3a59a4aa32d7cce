//! Searching and getting at the console as a new user does it, through a
//! pseudo-terminal: words anywhere in the path, duplicates grouped under
//! their result, several results at once, "already have it", quoting, and
//! Ctrl-C during a search.
//!
//! Address plan: the demo uses 127.0.0.1 with free ports; nodes on classic
//! ports use 127.0.8.0/24.

mod common;
use common::*;
use rexpect::session::{spawn_command, PtySession};
use std::path::Path;
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
        .env_remove("RUST_LOG");
    c
}

fn spawn(cmd: Command) -> PtySession {
    spawn_command(cmd, Some(TIMEOUT_MS)).expect("start rutella in a pseudo-terminal")
}

/// Sends a command and returns everything printed up to the next prompt.
fn ask(p: &mut PtySession, line: &str) -> String {
    p.send_line(line).unwrap();
    p.exp_string("rutella> ").unwrap()
}

/// Starts the demo; returns it at its first prompt with the address of
/// its peer 1.
fn demo(cfg: &Path) -> (PtySession, String) {
    let mut p = spawn(console_cmd(&cfg.join("c.toml"), &["demo"]));
    let (_, peer1) = p.exp_regex(r"peer 1 +127\.0\.0\.1:\d+").unwrap();
    let peer1 = peer1
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_string();
    p.exp_string("rutella> ").unwrap();
    (p, peer1)
}

fn quit(mut p: PtySession) {
    p.send_line("quit").unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn every_word_anywhere_in_the_path_in_any_order() {
    let cfg = tempfile::tempdir().unwrap();
    let (mut p, _) = demo(cfg.path());
    // A folder's name finds the files in it.
    let out = ask(&mut p, "search photo");
    assert!(out.contains("photos/holiday 2019 - beach.jpg"), "{out}");
    assert!(out.contains("photos/Cloud - CloudWatch 1.png"), "{out}");
    // Every word, in any order, any case.
    for q in ["search holiday beach", "search BEACH Holiday"] {
        let out = ask(&mut p, q);
        assert!(out.contains("photos/holiday 2019 - beach.jpg"), "{out}");
    }
    let out = ask(&mut p, "search beach sea");
    assert!(!out.contains("photos/"), "{out}");
    quit(p);
}

#[test]
fn the_same_file_is_shown_under_its_result_and_empty_answers_do_not_count() {
    let cfg = tempfile::tempdir().unwrap();
    let (mut p, _) = demo(cfg.path());
    // Peers 1 and 2 have it, peer 3 answers with nothing.
    let out = ask(&mut p, "search northern sky");
    assert!(
        out.contains("1 file(s) from 2 peers, 1 of them on several peers."),
        "{out}"
    );
    // Three files from three peers, shown as they arrive: the second
    // source of the shared one comes after it, naming its number, whatever
    // order the answers came in.
    for _ in 0..3 {
        let out = ask(&mut p, "search ogg");
        let lines: Vec<&str> = out.lines().map(str::trim_end).collect();
        let at = lines
            .iter()
            .position(|l| l.ends_with("Northern Sky.ogg"))
            .unwrap_or_else(|| panic!("{out}"));
        let n = lines[at].split_whitespace().next().unwrap_or_default();
        let also = lines
            .iter()
            .position(|l| l.trim_start().starts_with('+'))
            .unwrap_or_else(|| panic!("{out}"));
        assert!(
            also > at && lines[also].ends_with(&format!("(same file as {n}: 2 peers)")),
            "{out}"
        );
        assert_eq!(out.matches("(same file as").count(), 1, "{out}");
        assert!(out.contains("3 file(s) from 3 peers"), "{out}");
    }
    quit(p);
}

#[test]
fn several_results_at_once_quoting_and_errors_that_name_what_was_typed() {
    let cfg = tempfile::tempdir().unwrap();
    let (mut p, peer1) = demo(cfg.path());
    let out = ask(&mut p, "search ogg");
    assert!(out.contains("3 file(s)"), "{out}");
    let out = ask(&mut p, "get 1 9");
    assert!(
        out.contains("There is no result 9: the results are numbered 1 to 3."),
        "{out}"
    );
    let out = ask(&mut p, "get 1 x");
    assert!(out.contains("\"x\" is not a result number"), "{out}");
    let out = ask(&mut p, "get 3-1");
    assert!(out.contains("\"3-1\" is not a range"), "{out}");
    let out = ask(&mut p, "get nowhere song.ogg");
    assert!(
        out.contains("\"nowhere\" is neither a result number nor a peer address"),
        "{out}"
    );
    let out = ask(&mut p, "get 1 2");
    assert_eq!(out.matches("Downloading ").count(), 2, "{out}");
    for _ in 0..2 {
        p.exp_string("Downloaded ").unwrap();
    }
    // A range: 2 is here already, 3 is fetched.
    p.send_line("get 2-3").unwrap();
    p.exp_string("You already have ").unwrap();
    p.exp_string("Downloading ").unwrap();
    p.exp_string("Downloaded ").unwrap();
    // Quotes are not part of the name.
    p.send_line(&format!("get {peer1} \"music/Blue Harbor - Tides.ogg\""))
        .unwrap();
    p.exp_string(&format!(
        "Downloading music/Blue Harbor - Tides.ogg from {peer1}"
    ))
    .unwrap();
    let (_, done) = p.exp_regex(r"Downloaded [^\r\n]+ to [^\r\n]+").unwrap();
    assert!(done.contains("Blue Harbor - Tides"), "{done}");
    assert!(!done.contains('"'), "{done}");
    // A file the peer does not offer: the failure, announced and listed,
    // names the peer as typed (with the TCP port it was downloaded on).
    p.send_line(&format!("get {peer1} \"no such song.ogg\""))
        .unwrap();
    let (_, failed) = p.exp_regex(r"no such song\.ogg failed: [^\r\n]+").unwrap();
    let named = format!("peer {peer1} (TCP port ");
    assert!(failed.contains(&named), "{failed}");
    p.send_line("downloads").unwrap();
    p.exp_string("TIME LEFT").unwrap();
    let (_, listed) = p
        .exp_regex(r#"peer [^\r\n]+ does not offer "no such song\.ogg""#)
        .unwrap();
    assert!(listed.contains(&named), "{listed}");
    quit(p);
}

/// Stops process `pid` (SIGSTOP) and waits until every thread of it is
/// stopped: `kill` returns once the signal is sent, and on a busy machine
/// a thread may still run (and answer) for a moment after that.
#[cfg(unix)]
fn stop_process(pid: libc::pid_t) {
    // SAFETY: kill with a valid pid and signal number.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let all_stopped = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|tasks| {
                tasks.flatten().all(|t| {
                    std::fs::read_to_string(t.path().join("stat"))
                        .ok()
                        .and_then(|st| {
                            // The state follows the ")" that ends the name.
                            let rest = &st[st.rfind(')')? + 1..];
                            rest.split_whitespace().next().map(|state| state == "T")
                        })
                        .unwrap_or(false)
                })
            })
            .unwrap_or(false)
    };
    while !all_stopped() {
        assert!(Instant::now() < deadline, "process {pid} did not stop");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Results are printed as they arrive: a fast peer's result is on the
/// screen while a slow peer has not answered yet, and the summary comes
/// when the search ends.
#[cfg(unix)]
#[test]
fn a_fast_peer_s_result_is_shown_before_a_slow_peer_answers() {
    let fast_share = tempfile::tempdir().unwrap();
    write_file(&fast_share.path().join("quick tune.ogg"), b"fast");
    let slow_share = tempfile::tempdir().unwrap();
    write_file(&slow_share.path().join("late tune.ogg"), b"slow");
    let serve = |share: &Path, ip: &str| {
        Serve::start_with(
            &[
                "--share",
                share.to_str().unwrap(),
                "--bind",
                ip,
                "--search-timeout",
                "30s",
            ],
            false,
        )
    };
    let mut fast = serve(fast_share.path(), "127.0.8.3");
    let mut slow = serve(slow_share.path(), "127.0.8.4");
    let cfg = tempfile::tempdir().unwrap();
    let mine = tempfile::tempdir().unwrap();
    let mut p = spawn(console_cmd(
        &cfg.path().join("c.toml"),
        &[
            "--share",
            mine.path().to_str().unwrap(),
            "--bind",
            "127.0.8.5",
            "--connect",
            "127.0.8.3",
            "--connect",
            "127.0.8.4",
            "--search-timeout",
            "30s",
        ],
    ));
    p.exp_string("rutella> ").unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ask(&mut p, "peers").contains("2 peer(s)") {
        assert!(
            Instant::now() < deadline,
            "the console never knew both peers"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The slow peer stops answering for a while (but stays known).
    let pid = libc::pid_t::try_from(slow.child.id()).unwrap();
    stop_process(pid);
    p.send_line("search tune").unwrap();
    // The slow peer cannot answer while stopped, and the search waits
    // for it (30 s, longer than any expectation here): the fast result is
    // on the screen before the search ends.
    let before = p.exp_string("quick tune.ogg").unwrap();
    assert!(before.contains("Searching 2 peer(s)"), "{before}");
    assert!(!before.contains("file(s) from"), "{before}");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let rest = p.exp_string("rutella> ").unwrap();
    assert!(rest.contains("late tune.ogg"), "{rest}");
    assert!(rest.contains("2 file(s) from 2 peers"), "{rest}");
    fast.kill();
    slow.kill();
    p.send_line("quit").unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn a_file_already_here_is_not_fetched_again_unless_asked() {
    let cfg = tempfile::tempdir().unwrap();
    let (mut p, _) = demo(cfg.path());
    let out = ask(&mut p, "search northern sky");
    assert!(out.contains("1 file(s)"), "{out}");
    p.send_line("get 1").unwrap();
    let (_, done) = p.exp_regex(r"Downloaded [^\r\n]+ to [^\r\n]+").unwrap();
    let first = done
        .split(" to ")
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    // (Prompts are drawn again after each announcement: wait for the
    // words themselves.)
    p.send_line("get 1").unwrap();
    let (before, said) = p
        .exp_regex(r"You already have [^\r\n]+\. Type get 1 --again to download it anyway\.")
        .unwrap();
    assert!(!before.contains("Downloading"), "{before}");
    assert!(said.contains(&first), "{said}");
    // Asked again: fetched (by hash, a copy already complete under the
    // same name is taken as it is).
    p.send_line("get 1 --again").unwrap();
    p.exp_string("Downloading music/Aurora Lights - Northern Sky.ogg")
        .unwrap();
    p.exp_string("Downloaded ").unwrap();
    quit(p);
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_a_search_on_its_own_line_and_typing_is_not_mixed_in() {
    let share = tempfile::tempdir().unwrap();
    write_file(&share.path().join("song.ogg"), b"la la");
    let s = share.path().to_str().unwrap();
    let mut peer = Serve::start_with(
        &[
            "--share",
            s,
            "--bind",
            "127.0.8.1",
            "--search-timeout",
            "30s",
        ],
        false,
    );
    let cfg = tempfile::tempdir().unwrap();
    let mine = tempfile::tempdir().unwrap();
    let m = mine.path().to_str().unwrap();
    let mut p = spawn(console_cmd(
        &cfg.path().join("c.toml"),
        &[
            "--share",
            m,
            "--bind",
            "127.0.8.2",
            "--connect",
            "127.0.8.1",
            "--search-timeout",
            "30s",
        ],
    ));
    p.exp_string("Joined the network through 127.0.8.1")
        .unwrap();
    p.exp_string("rutella> ").unwrap();
    // The peer stops answering (but stays known): a search waits for it.
    let pid = libc::pid_t::try_from(peer.child.id()).unwrap();
    stop_process(pid);
    p.send_line("search song").unwrap();
    p.exp_string("Ctrl-C stops waiting)").unwrap();
    let asked = Instant::now();
    p.send("typed ahead").unwrap();
    p.flush().unwrap();
    p.send_control('c').unwrap();
    let out = p.exp_string("rutella> ").unwrap();
    assert!(asked.elapsed() < Duration::from_secs(20));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let stopped = out
        .lines()
        .find(|l| l.contains("Search stopped"))
        .unwrap_or_else(|| panic!("no line says the search stopped: {out:?}"));
    assert!(
        stopped
            .trim_start()
            .starts_with("Search stopped: No peer sent a response"),
        "{out:?}"
    );
    assert!(!out.contains("^C"), "{out:?}");
    assert!(!out.contains("typed ahead"), "{out:?}");
    peer.kill();
    p.send_line("quit").unwrap();
    p.exp_eof().unwrap();
}
