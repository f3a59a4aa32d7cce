//! Two hosts with only IPv6 addresses (2001:db8::1 and ::2, on the lab's
//! bridge, which exists only inside the lab; no IPv4 address but
//! loopback) join, search and download by name and by hash. Needs root;
//! prints one skip line elsewhere.
#![cfg(target_os = "linux")]

mod common;
use common::*;
use rutella_lab::Lab;
use std::time::{Duration, Instant};

/// A process killed when dropped (before the lab, declared first).
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ipv6_only_hosts_join_search_and_download() {
    let Some(mut lab) = Lab::or_skip() else {
        return;
    };
    let (a, a6) = match lab.ipv6_host("a", 1) {
        Ok(h) => h,
        Err(why) => return eprintln!("skipped: no IPv6 in the lab: {why}"),
    };
    let (b, b6) = lab.ipv6_host("b", 2).unwrap();
    let share = tempfile::tempdir().unwrap();
    let data = pattern(900_007, 71);
    write_file(&share.path().join("only six.bin"), &data);
    let log = lab.dir().join("a.log");
    let mut cmd = bin();
    cmd.arg("serve")
        .arg("--no-port-mapping")
        .arg("--no-lan-discovery")
        .args(FAST)
        .arg("--share")
        .arg(share.path())
        .args(["--bind", "::"]);
    let child = lab
        .wrap(&a, &cmd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _a_node = Kill(child);
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !text().contains("node started") {
        assert!(Instant::now() < deadline, "A did not start: {}", text());
        std::thread::sleep(Duration::from_millis(20));
    }
    let peer = format!("[{a6}]:20000");
    let on_b = |args: &[&str]| {
        let mut cmd = bin();
        cmd.args(args)
            .args(["--bind", &b6.to_string(), "--no-lan-discovery"]);
        lab.wrap(&b, &cmd).output().unwrap()
    };
    let check = |out: &std::process::Output| {
        assert!(
            out.status.success(),
            "exit {:?}: {}\nA: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr),
            text()
        );
        String::from_utf8(out.stdout.clone()).unwrap()
    };
    // Search, then get by name and by hash (retried while A hashes).
    let out = check(&on_b(&["search", "six", "--connect", &peer, "--wait", "3"]));
    assert!(
        out.starts_with(&format!("{peer}\t900007\tonly six.bin")),
        "{out}"
    );
    let dl = tempfile::tempdir().unwrap();
    let o = dl.path().to_str().unwrap();
    check(&on_b(&["get", "only six.bin", "--from", &peer, "--out", o]));
    assert!(std::fs::read(dl.path().join("only six.bin")).unwrap() == data);
    // A served B at its IPv6 address.
    assert!(
        text().contains(&format!("upload complete peer=[{b6}]:")),
        "{}",
        text()
    );
    let hash = blake3::hash(&data).to_hex().to_string();
    let dl2 = tempfile::tempdir().unwrap();
    let o2 = dl2.path().to_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = on_b(&["get", &hash, "--connect", &peer, "--out", o2, "--wait", "2"]);
        if r.status.success() {
            break;
        }
        assert_eq!(
            r.status.code(),
            Some(4),
            "{}",
            String::from_utf8_lossy(&r.stderr)
        );
        assert!(Instant::now() < deadline, "never found");
        std::thread::sleep(Duration::from_millis(300));
    }
    let got = std::fs::read_dir(dl2.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name() == "only six.bin")
        .map(|e| std::fs::read(e.path()).unwrap());
    assert!(got == Some(data), "not downloaded by hash");
}
