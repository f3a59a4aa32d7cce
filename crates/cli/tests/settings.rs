//! What the settings file gives one-shot commands and `serve`, and what
//! `serve` says about them.
//!
//! Address plan: 127.0.9.0/24.

mod common;
use common::*;
use std::path::Path;
use std::time::Duration;

/// A `rutella` command that reads the settings file `config`.
fn with_settings(config: &Path) -> std::process::Command {
    let mut c = bin();
    c.env("RUTELLA_CONFIG", config);
    c
}

/// `rutella search` without `--connect` joins the peers the settings file
/// remembers.
#[test]
fn a_one_shot_search_uses_the_remembered_peers() {
    let share = tempfile::tempdir().unwrap();
    write_file(&share.path().join("remembered tune.ogg"), b"tune");
    let _peer = Serve::start(&[
        "--share",
        share.path().to_str().unwrap(),
        "--bind",
        "127.0.9.2",
    ]);
    let cfg = tempfile::tempdir().unwrap();
    let config = cfg.path().join("config.toml");
    std::fs::write(&config, "peers = [\"127.0.9.2\"]\nlan_discovery = false\n").unwrap();
    let out = with_settings(&config)
        .args(["search", "tune", "--bind", "127.0.9.3", "--wait", "3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("127.0.9.2\t4\tremembered tune.ogg"),
        "{stdout}"
    );

    // With nothing remembered and no other way in: the usage error says
    // how to go on.
    std::fs::write(&config, "lan_discovery = false\n").unwrap();
    let out = with_settings(&config)
        .args(["search", "tune", "--bind", "127.0.9.3", "--wait", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("remember one in the settings file"),
        "{stderr}"
    );
}

/// `serve` with nothing to share warns, and names a peer of the settings
/// file that does not answer.
#[test]
fn serve_warns_about_no_shares_and_a_dead_peer() {
    let cfg = tempfile::tempdir().unwrap();
    let config = cfg.path().join("config.toml");
    std::fs::write(&config, "peers = [\"127.0.9.99\"]\nlan_discovery = false\n").unwrap();
    let mut cmd = with_settings(&config);
    cmd.args(["serve", "--no-port-mapping", "--bind", "127.0.9.4"])
        .args(FAST);
    let s = Serve::spawn(cmd, tempfile::tempdir().unwrap());
    s.wait_log("nothing is shared", Duration::from_secs(20));
    s.wait_log(
        "peer 127.0.9.99 did not answer within 0.3 s",
        Duration::from_secs(20),
    );
}

/// `upload_limit` in the settings file holds for all of `serve`'s uploads
/// together: two downloads of 1 MiB at once, at 512 KiB/s in all, take
/// about four seconds (each alone within the limit would take two).
#[test]
fn serve_takes_its_upload_limit_from_the_settings_file() {
    let share = tempfile::tempdir().unwrap();
    write_file(&share.path().join("a.bin"), &pattern(1 << 20, 1));
    write_file(&share.path().join("b.bin"), &pattern(1 << 20, 2));
    let cfg = tempfile::tempdir().unwrap();
    let config = cfg.path().join("config.toml");
    std::fs::write(&config, "upload_limit = 524288\nlan_discovery = false\n").unwrap();
    let mut cmd = with_settings(&config);
    cmd.args([
        "serve",
        "--no-port-mapping",
        "--bind",
        "127.0.9.5",
        "--share",
    ])
    .arg(share.path())
    .args(FAST);
    let _s = Serve::spawn(cmd, tempfile::tempdir().unwrap());
    _s.wait_log("node started", Duration::from_secs(20));
    let out = tempfile::tempdir().unwrap();
    let start = std::time::Instant::now();
    let gets: Vec<_> = ["a.bin", "b.bin"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            bin()
                .args(["get", "--from", "127.0.9.5", name, "--wait", "5"])
                .args(["--bind", &format!("127.0.9.{}", 6 + i)])
                .arg("--out")
                .arg(out.path())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut g in gets {
        assert!(g.wait().unwrap().success());
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(3500),
        "2 MiB in {took:?}: faster than the limit"
    );
    assert_eq!(
        std::fs::read(out.path().join("a.bin")).unwrap(),
        pattern(1 << 20, 1)
    );
}
