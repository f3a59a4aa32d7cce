//! What scripts rely on: help with examples, completions, the settings
//! path, exit codes and one-sentence errors.
//!
//! Address plan: 127.0.0.1 with free ports; classic ports on 127.0.4.0/24.

mod common;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn rutella(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rutella"))
        .args(args)
        .env("RUTELLA_NO_DHT", "1")
        .env("RUTELLA_TEST_NO_PUBLIC", "1")
        .env("RUTELLA_CONFIG", config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One line on stderr, saying what failed, and no trace of a panic.
fn one_sentence(out: &Output) -> String {
    let err = text(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    err
}

#[test]
fn every_command_has_help_with_examples() {
    let cfg = tempfile::tempdir().unwrap();
    let c = cfg.path().join("c.toml");
    for cmd in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["search", "--help"],
        vec!["get", "--help"],
        vec!["demo", "--help"],
        vec!["config", "--help"],
        vec!["config", "path", "--help"],
        vec!["completions", "--help"],
    ] {
        let out = rutella(&c, &cmd);
        assert!(out.status.success(), "{cmd:?}");
        assert!(text(&out.stdout).contains("Examples:"), "{cmd:?}");
    }
}

#[test]
fn completions_for_each_shell() {
    let cfg = tempfile::tempdir().unwrap();
    let c = cfg.path().join("c.toml");
    for (shell, mark) in [
        ("bash", "_rutella()"),
        ("zsh", "#compdef rutella"),
        ("fish", "complete -c rutella"),
    ] {
        let out = rutella(&c, &["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = text(&out.stdout);
        assert!(script.contains(mark), "{shell}: {script}");
        assert!(
            script.contains("demo") && script.contains("completions"),
            "{shell}"
        );
    }
    let out = rutella(&c, &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn config_path_follows_the_environment() {
    let cfg = tempfile::tempdir().unwrap();
    let c = cfg.path().join("elsewhere.toml");
    let out = rutella(&c, &["config", "path"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).trim(), c.to_str().unwrap());

    // Without the variable: the platform's config folder.
    let out = Command::new(env!("CARGO_BIN_EXE_rutella"))
        .args(["config", "path"])
        .env_remove("RUTELLA_CONFIG")
        .env("HOME", cfg.path())
        .env("XDG_CONFIG_HOME", cfg.path().join("xdg"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let p = text(&out.stdout);
    assert!(p.trim().ends_with("config.toml"), "{p}");
    assert!(p.starts_with(cfg.path().to_str().unwrap()), "{p}");
}

#[test]
fn clear_errors_with_distinct_exit_codes() {
    let cfg = tempfile::tempdir().unwrap();
    let share = tempfile::tempdir().unwrap();
    let s = share.path().to_str().unwrap();
    let c = cfg.path().join("c.toml");
    std::fs::write(&c, format!("shares = [{s:?}]\npeers = []\n")).unwrap();

    // A port in use names the port and the flag.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = rutella(
        &c,
        &[
            "--bind",
            "127.0.0.1",
            "--udp-port",
            &port,
            "--tcp-port",
            "0",
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    let err = one_sentence(&out);
    assert!(err.contains(&port) && err.contains("--udp-port"), "{err}");

    // A missing folder.
    let out = rutella(&c, &["--share", "/no/such/folder", "--udp-port", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_sentence(&out).contains("/no/such/folder"));

    // A broken settings file.
    let bad = cfg.path().join("bad.toml");
    std::fs::write(&bad, "udp_port = \"many\"\n").unwrap();
    let out = rutella(&bad, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_sentence(&out).contains("fix it or delete it"));

    // Usage errors.
    let out = rutella(&c, &["search"]);
    assert_eq!(out.status.code(), Some(2));
    let out = rutella(&c, &["get", "x", "--from", "not-an-address"]);
    assert_eq!(out.status.code(), Some(2));

    // A peer that is not there: network failure, in one sentence, as JSON
    // callers see it too.
    let out = rutella(
        &c,
        &[
            "get",
            "x",
            "--from",
            "127.0.4.9",
            "--bind",
            "127.0.4.10",
            "--wait",
            "0.3",
            "--json",
            "--out",
        ]
        .into_iter()
        .chain([cfg.path().to_str().unwrap()])
        .collect::<Vec<_>>(),
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    assert!(one_sentence(&out).contains("127.0.4.9"));
}

#[test]
fn get_json_reports_the_download() {
    let share = tempfile::tempdir().unwrap();
    common::write_file(
        &share.path().join("a/report.bin"),
        &common::pattern(5000, 7),
    );
    let s = share.path().to_str().unwrap();
    let _peer = common::Serve::start(&["--share", s, "--bind", "127.0.4.20"]);
    let out_dir = tempfile::tempdir().unwrap();
    let cfg = tempfile::tempdir().unwrap();
    let out = rutella(
        &cfg.path().join("c.toml"),
        &[
            "get",
            "a/report.bin",
            "--from",
            "127.0.4.20",
            "--bind",
            "127.0.4.21",
            "--json",
            "--out",
            out_dir.path().to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["size"], 5000);
    assert_eq!(v["received"], 5000);
    assert_eq!(v["resumed_from"], 0);
    let path = v["path"].as_str().unwrap();
    assert_eq!(std::fs::read(path).unwrap(), common::pattern(5000, 7));
}
