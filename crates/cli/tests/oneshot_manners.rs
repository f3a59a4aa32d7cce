//! How one-shot commands behave at the edges a person meets: a closed pipe,
//! Ctrl-C, a terminal (progress bar) or not.
//!
//! Address plan: 127.0.0.1 with free ports; classic ports on 127.0.7.0/24.

mod common;
use common::daemon::rutella;
use std::io::Read;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd` with its standard output closed before it writes, and
/// returns (exit code, standard error).
fn with_stdout_closed(mut cmd: Command) -> (Option<i32>, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away at once: every write meets a closed pipe.
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    (status.code(), err)
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    let cfg = tempfile::tempdir().unwrap();
    let config = cfg.path().join("c.toml");
    let (code, err) = with_stdout_closed(rutella(&config, &["completions", "bash"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.is_empty(), "{err}");

    let share = tempfile::tempdir().unwrap();
    for i in 0..20 {
        common::write_file(&share.path().join(format!("song {i}.ogg")), b"la");
    }
    let s = share.path().to_str().unwrap();
    let _peer = common::Serve::start(&["--share", s, "--bind", "127.0.7.1"]);
    let (code, err) = with_stdout_closed(rutella(
        &config,
        &[
            "search",
            "song",
            "--connect",
            "127.0.7.1",
            "--bind",
            "127.0.7.2",
            "--json",
            "--wait",
            "5",
        ],
    ));
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.is_empty(), "{err}");
}

#[cfg(unix)]
#[test]
fn ctrl_c_interrupts_a_one_shot_search_with_130() {
    // A "peer" that never answers: the search would wait its whole time.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let cfg = tempfile::tempdir().unwrap();
    let mut child = rutella(
        &cfg.path().join("c.toml"),
        &[
            "search",
            "song",
            "--connect",
            &addr,
            "--bind",
            "127.0.0.1",
            "--udp-port",
            "0",
            "--tcp-port",
            "0",
            "--wait",
            "30",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Its first datagram to the silent peer: the node runs (and catches
    // Ctrl-C from before it starts).
    let mut buf = [0u8; 2048];
    silent
        .recv_from(&mut buf)
        .expect("the search contacts its peer");
    let started = Instant::now();
    // SAFETY: kill with a valid pid and signal number.
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}: {err}");
    assert!(err.contains("search interrupted"), "{err}");
    assert!(!err.contains("no peer answered"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn get_shows_a_progress_bar_on_a_terminal_only() {
    let share = tempfile::tempdir().unwrap();
    common::write_file(
        &share.path().join("big.bin"),
        &common::pattern(1_500_000, 3),
    );
    let s = share.path().to_str().unwrap();
    // 1 MB/s: the download takes over a second, long enough for a bar.
    let _peer = common::Serve::start(&[
        "--share",
        s,
        "--bind",
        "127.0.7.10",
        "--rate-limit",
        "1000000",
    ]);
    let cfg = tempfile::tempdir().unwrap();
    let config = cfg.path().join("c.toml");
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().to_str().unwrap();
    let args = [
        "get",
        "big.bin",
        "--from",
        "127.0.7.10",
        "--bind",
        "127.0.7.11",
        "--out",
        out,
    ];
    // On a pipe: only the path, no bar.
    let o = rutella(&config, &args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::remove_file(out_dir.path().join("big.bin")).unwrap();

    // On a terminal: a bar with bytes done of the total.
    let mut p = rexpect::session::spawn_command(rutella(&config, &args), Some(20_000)).unwrap();
    p.exp_regex(r"big\.bin .*[\d.]+ [KM]i?B/1\.43 MiB").unwrap();
    p.exp_eof().unwrap();
    assert_eq!(
        std::fs::read(out_dir.path().join("big.bin")).unwrap(),
        common::pattern(1_500_000, 3)
    );
}
