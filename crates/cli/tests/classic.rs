//! The `rutella` binary against itself and against a hand-written classic
//! client, as separate processes on loopback.
//!
//! Address plan: this file uses 127.0.2.0/24 (classic ports).

mod common;
use common::*;
use std::net::SocketAddr;
use std::time::Duration;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn search_json_across_three_processes() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    write_file(&dirs[0].path().join("Cloud - Cloud models.png"), b"a");
    write_file(&dirs[1].path().join("photos/cloudwatch 1.PNG"), b"bb");
    write_file(&dirs[2].path().join("CLOUD.txt"), b"ccc");
    write_file(&dirs[2].path().join("other.txt"), b"d");
    let s0 = dirs[0].path().to_str().unwrap();
    let s1 = dirs[1].path().to_str().unwrap();
    let s2 = dirs[2].path().to_str().unwrap();
    let a = Serve::start(&["--share", s0, "--bind", "127.0.2.2"]);
    let b = Serve::start(&[
        "--share",
        s1,
        "--bind",
        "127.0.2.3",
        "--connect",
        "127.0.2.2",
    ]);
    let c = Serve::start(&[
        "--share",
        s2,
        "--bind",
        "127.0.2.4",
        "--connect",
        "127.0.2.3",
    ]);
    // The chain a - b - c is formed once each link is up at both ends.
    let t = Duration::from_secs(20);
    a.wait_log("peer joined peer=127.0.2.3", t);
    b.wait_log("peer joined peer=127.0.2.2", t);
    b.wait_log("peer joined peer=127.0.2.4", t);
    c.wait_log("peer joined peer=127.0.2.3", t);

    let out = run(&[
        "search",
        "cLoU",
        "--connect",
        "127.0.2.2",
        "--bind",
        "127.0.2.10",
        "--wait",
        "3",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut hits: Vec<(String, String, u64)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["peer"].as_str().unwrap().to_string(),
                v["name"].as_str().unwrap().to_string(),
                v["size"].as_u64().unwrap(),
            )
        })
        .collect();
    hits.sort();
    assert_eq!(
        hits,
        vec![
            ("127.0.2.2".into(), "Cloud - Cloud models.png".into(), 1),
            ("127.0.2.3".into(), "photos/cloudwatch 1.PNG".into(), 2),
            ("127.0.2.4".into(), "CLOUD.txt".into(), 3),
        ]
    );

    // Nothing matches: exit code 4. Nobody answers: exit code 3.
    let out = run(&[
        "search",
        "zzzz",
        "--connect",
        "127.0.2.2",
        "--bind",
        "127.0.2.10",
        "--wait",
        "2",
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&[
        "search",
        "x",
        "--connect",
        "127.0.2.99",
        "--bind",
        "127.0.2.11",
        "--wait",
        "0.6",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no peer answered"));
}

#[test]
fn interrupted_download_resumes_with_only_the_missing_bytes() {
    let share = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let size = 1_500_007usize;
    let data = pattern(size, 7);
    write_file(&share.path().join("video/big movie.bin"), &data);
    let s = share.path().to_str().unwrap();
    let o = out_dir.path().to_str().unwrap();
    let mut server = Serve::start(&[
        "--share",
        s,
        "--bind",
        "127.0.2.20",
        "--rate-limit",
        "300000",
    ]);

    let get = bin()
        .args([
            "get",
            "--from",
            "127.0.2.20",
            "video/big movie.bin",
            "--out",
            o,
            "--bind",
            "127.0.2.21",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let part = out_dir.path().join("big movie.bin.part");
    // No event tells how far the other process has written: poll the file.
    wait_until("download did not progress", Duration::from_secs(20), || {
        std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0) >= 400_000
    });
    server.kill();
    let first = get.wait_with_output().unwrap();
    assert_eq!(
        first.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let kept = std::fs::metadata(&part).unwrap().len();
    assert!(kept >= 400_000 && (kept as usize) < size, "{kept}");
    assert_eq!(
        std::fs::read(&part).unwrap(),
        &data[..kept as usize],
        "partial data kept as received"
    );

    let _server = Serve::start(&["--share", s, "--bind", "127.0.2.20"]);
    let second = run(&[
        "get",
        "--from",
        "127.0.2.20",
        "video/big movie.bin",
        "--out",
        o,
        "--bind",
        "127.0.2.21",
        "--json",
    ]);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    // The resume starts at the end of the partial copy, or at the 1024-byte
    // boundary before it when the peer was not yet known to be rutella (see
    // align_classic_resume); only the bytes after that cross the wire.
    let resumed = report["resumed_from"].as_u64().unwrap();
    assert!(
        resumed == kept || resumed == kept - kept % 1024,
        "resumed from {resumed}, kept {kept}"
    );
    assert_eq!(
        report["received"].as_u64(),
        Some(size as u64 - resumed),
        "only the missing bytes crossed"
    );
    let done = out_dir.path().join("big movie.bin");
    assert_eq!(std::fs::read(&done).unwrap(), data);
    assert!(!part.exists());

    // Again: the complete file is not overwritten, a free name is picked.
    let third = run(&[
        "get",
        "--from",
        "127.0.2.20",
        "video/big movie.bin",
        "--out",
        o,
        "--bind",
        "127.0.2.21",
    ]);
    assert!(third.status.success());
    let path = String::from_utf8(third.stdout).unwrap();
    assert_ne!(path.trim(), done.to_str().unwrap());
    assert_eq!(std::fs::read(path.trim()).unwrap(), data);
    assert_eq!(std::fs::read(&done).unwrap(), data);

    // A name the peer does not offer: exit 4.
    let missing = run(&[
        "get",
        "--from",
        "127.0.2.20",
        "nope.bin",
        "--out",
        o,
        "--bind",
        "127.0.2.21",
    ]);
    assert_eq!(missing.status.code(), Some(4));
}

#[test]
fn classic_downloader_gets_exact_bytes_and_nothing_outside_the_share() {
    let root = tempfile::tempdir().unwrap();
    let share = root.path().join("share");
    let secret = root.path().join("secret.txt");
    write_file(&secret, b"top secret");
    let data = pattern(5000, 3);
    write_file(&share.join("ok.txt"), &data);
    write_file(&share.join("sub/inner.txt"), b"inner");
    write_file(&share.join(".hidden"), b"hidden");
    write_file(&share.join("downloads/partial.bin.part"), b"partial");
    std::os::unix::fs::symlink(&secret, share.join("link-out.txt")).unwrap();
    let server = Serve::start(&["--share", share.to_str().unwrap(), "--bind", "127.0.2.30"]);
    let tcp = addr("127.0.2.30:10000");

    let (n, body) = classic_request(tcp, 0, b"ok.txt");
    assert_eq!((n as usize, body.as_slice()), (data.len(), data.as_slice()));
    // Resume from an offset that is not a multiple of 1024: exactly the rest.
    let (n, body) = classic_request(tcp, 1500, b"ok.txt");
    assert_eq!(
        (n as usize, body.as_slice()),
        (data.len() - 1500, &data[1500..])
    );
    let (n, body) = classic_request(tcp, 0, b"sub/inner.txt");
    assert_eq!((n, body.as_slice()), (5, b"inner".as_slice()));

    let secret_abs = secret.to_str().unwrap().as_bytes().to_vec();
    let attacks: Vec<Vec<u8>> = vec![
        b"../secret.txt".to_vec(),
        b"sub/../../secret.txt".to_vec(),
        b"/etc/passwd".to_vec(),
        secret_abs,
        b"link-out.txt".to_vec(),
        b"..\\secret.txt".to_vec(),
        b"sub\\inner.txt".to_vec(),
        b"C:\\Windows\\win.ini".to_vec(),
        b"C:secret.txt".to_vec(),
        b"ok.txt\0".to_vec(),
        b".hidden".to_vec(),
        b"downloads/partial.bin.part".to_vec(),
        b"sub".to_vec(),
        b"missing.txt".to_vec(),
        vec![0xff, 0xfe, b'a'],
    ];
    for name in &attacks {
        let (n, body) = classic_request(tcp, 0, name);
        assert_eq!(
            (n, body.len()),
            (0, 0),
            "{:?} was served",
            String::from_utf8_lossy(name)
        );
    }
    let log = server.log_text();
    assert!(
        log.contains("refusing a download request"),
        "refusals are logged:\n{log}"
    );
}

#[test]
fn one_shots_work_beside_a_running_node() {
    let share = tempfile::tempdir().unwrap();
    write_file(&share.path().join("beside.txt"), b"beside");
    let s = share.path().to_str().unwrap();
    let _node = Serve::start(&["--share", s, "--bind", "127.0.2.40"]);
    // Same address, default ports taken by the node: the one-shot picks free ones.
    let out = run(&[
        "search",
        "BESIDE",
        "--connect",
        "127.0.2.40",
        "--bind",
        "127.0.2.40",
        "--wait",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("beside.txt"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is in use"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = run(&[
        "get",
        "--from",
        "127.0.2.40",
        "beside.txt",
        "--out",
        d,
        "--bind",
        "127.0.2.40",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(dir.path().join("beside.txt")).unwrap(),
        b"beside"
    );
    // serve itself refuses a taken port with a sentence naming it and the flag.
    let out = run(&["serve", "--share", s, "--bind", "127.0.2.40"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("20000") && err.contains("--udp-port"), "{err}");
}

#[test]
fn serve_takes_shares_and_peers_from_the_settings_file() {
    let share = tempfile::tempdir().unwrap();
    write_file(&share.path().join("from settings.txt"), b"settings");
    let cfg = tempfile::tempdir().unwrap();
    let config = cfg.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "shares = [{:?}]\npeers = []\n",
            share.path().to_str().unwrap()
        ),
    )
    .unwrap();
    let mut child = bin()
        .env("RUTELLA_CONFIG", &config)
        .args(["serve", "--bind", "127.0.2.50"])
        .args(FAST)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::follow(child.stderr.take().unwrap(), None);
    lines.wait("node started", Duration::from_secs(20));
    let out = run(&[
        "search",
        "SETTINGS",
        "--connect",
        "127.0.2.50",
        "--bind",
        "127.0.2.51",
        "--wait",
        "2",
    ]);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("from settings.txt"));
}

#[test]
fn a_one_shot_search_leaves_no_folder_behind() {
    let cwd = tempfile::tempdir().unwrap();
    let out = bin()
        .current_dir(cwd.path())
        .args([
            "search",
            "x",
            "--connect",
            "127.0.2.60",
            "--bind",
            "127.0.2.61",
            "--wait",
            "0.3",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let left: Vec<_> = std::fs::read_dir(cwd.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}
