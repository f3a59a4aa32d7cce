//! Processes in the network lab (crates/lab): a `rutella` run inside a
//! lab host, with its output in files, killed (with what it started)
//! when dropped; one-shot runs; the sources of a download's report.

use super::{bin, FAST};
use rutella_lab::{Host, Lab};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// The longest a process is waited for.
const STEP: Duration = Duration::from_secs(30);

/// A `rutella` process inside a lab host, its output in files; killed when
/// dropped.
pub(crate) struct Proc {
    pub(crate) child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Proc {
    pub(crate) fn spawn(lab: &Lab, host: &Host, dir: &Path, name: &str, args: &[&str]) -> Proc {
        Proc::spawn_with(lab, host, dir, name, args, &[])
    }

    /// [`Proc::spawn`] with these environment variables set.
    pub(crate) fn spawn_with(
        lab: &Lab,
        host: &Host,
        dir: &Path,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Proc {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        let mut cmd = bin();
        cmd.args(args);
        cmd.envs(env.iter().copied());
        let child = lab
            .wrap(host, &cmd)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        Proc { child, out, err }
    }

    pub(crate) fn serve(lab: &Lab, host: &Host, dir: &Path, name: &str, args: &[&str]) -> Proc {
        Proc::serve_with(lab, host, dir, name, args, &[])
    }

    /// [`Proc::serve`] with these environment variables set.
    pub(crate) fn serve_with(
        lab: &Lab,
        host: &Host,
        dir: &Path,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Proc {
        let mut all = vec!["serve"];
        all.extend(FAST);
        all.extend(args);
        Proc::spawn_with(lab, host, dir, name, &all, env)
    }

    /// SIGTERM, then waits (bounded) for the exit.
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn child_alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub(crate) fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits (bounded) until stdout or stderr contains `needle`.
    pub(crate) fn wait_for(&self, needle: &str) {
        let deadline = Instant::now() + STEP;
        while !self.stdout().contains(needle) && !self.stderr().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} within {STEP:?}:\n{}\n{}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGKILL to process `pid` and its descendants (`ip netns exec` may run
/// the program as its child), children first.
pub(crate) fn kill_tree(pid: u32) {
    let children: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|c| {
            // The parent's id is the second field after the command name.
            std::fs::read_to_string(format!("/proc/{c}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(')')?.1.to_string();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect();
    for c in children {
        kill_tree(c);
    }
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

/// A process whose command line holds `needle`.
pub(crate) fn running_with(needle: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
}

/// A one-shot `rutella` command inside a lab host.
pub(crate) fn run_in(lab: &Lab, host: &Host, args: &[&str]) -> Output {
    let mut cmd = bin();
    cmd.args(args);
    lab.wrap(host, &cmd).stdin(Stdio::null()).output().unwrap()
}

/// The source of a report whose peer starts with `prefix`.
pub(crate) fn source<'a>(report: &'a serde_json::Value, prefix: &str) -> &'a serde_json::Value {
    report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["peer"].as_str().unwrap().starts_with(prefix))
        .unwrap_or_else(|| panic!("no source {prefix} in {report}"))
}

/// The JSON report of one-shot run `r`, which must have succeeded (else
/// its output and `node`'s log are shown, with `what`).
pub(crate) fn report_of(r: &Output, what: &str, node: &Proc) -> serde_json::Value {
    assert!(
        r.status.success(),
        "{what}: {}\nsource: {}",
        String::from_utf8_lossy(&r.stderr),
        node.stderr()
    );
    serde_json::from_slice(&r.stdout).unwrap()
}

/// Searches for `text` from `host` through P (11.0.0.2), with `flags`,
/// until an answer with a hash comes from a peer whose address starts
/// with `peer`: that hit. `node` is the source, whose log is shown when
/// none comes.
pub(crate) fn find_hit(
    lab: &Lab,
    host: &Host,
    text: &str,
    flags: &[&str],
    peer: &str,
    node: &Proc,
) -> serde_json::Value {
    let deadline = Instant::now() + STEP;
    loop {
        let mut args = vec![
            "search",
            text,
            "--connect",
            "11.0.0.2",
            "--wait",
            "1.5",
            "--json",
        ];
        args.extend(flags);
        let r = run_in(lab, host, &args);
        let hit = String::from_utf8_lossy(&r.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|h| h["hash"].is_string() && h["peer"].as_str().unwrap().starts_with(peer));
        if let Some(hit) = hit {
            return hit;
        }
        assert!(
            Instant::now() < deadline,
            "no answer from {peer} for {text:?}: {}\nsource: {}",
            String::from_utf8_lossy(&r.stderr),
            node.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Searches for `text` from `host` through P, with `flags`, until some
/// answer names `hash` (a source hashes its files in the background).
pub(crate) fn wait_for_hash(lab: &Lab, host: &Host, text: &str, hash: &str, flags: &[&str]) {
    let deadline = Instant::now() + STEP;
    loop {
        let mut args = vec!["search", text, "--connect", "11.0.0.2"];
        args.extend(["--wait", "1.5", "--json"]);
        args.extend(flags);
        let r = run_in(lab, host, &args);
        if String::from_utf8_lossy(&r.stdout).contains(hash) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nobody answered {text:?} with {hash}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits (polled: nothing announces it) until download `first` into
/// `out` has recorded verified data (its `.part.state` file, written at
/// the first checkpoint after verified data reached the disk), then a
/// further 4 s (the first 4 MiB batch is recorded about 3 s into a
/// transfer at 1.5 MB/s), and kills it and whatever else runs with `out`
/// in its command line.
pub(crate) fn kill_after_first_record(first: &mut Proc, out: &Path) {
    let deadline = Instant::now() + STEP;
    let state_written = || {
        std::fs::read_dir(out)
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().ends_with(".part.state"))
            })
            .unwrap_or(false)
    };
    while !state_written() {
        assert!(first.child_alive(), "ended early: {}", first.stderr());
        assert!(Instant::now() < deadline, "no progress: {}", first.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    // A deliberate wait: see above.
    std::thread::sleep(Duration::from_millis(4000));
    assert!(first.child_alive(), "ended before it was killed");
    kill_tree(first.child.id());
    first.child.wait().unwrap();
    // Whatever runs with this download's folder in its command line is
    // that download (the folder is the test's own): none may be left.
    let deadline = Instant::now() + STEP;
    while let Some(pid) = running_with(out.to_str().unwrap()) {
        assert!(Instant::now() < deadline, "the first download survived");
        kill_tree(pid);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The offset a resumed download by hash started from, from the
/// completion line of its log.
pub(crate) fn resumed_from(log: &str) -> u64 {
    let done = log
        .lines()
        .find(|l| l.contains("download by hash complete"))
        .unwrap_or_else(|| panic!("no completion in {log}"));
    done.split("resumed_from=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no offset in {done}"))
}

/// Whether miniupnpd is installed; prints the skip line when not.
pub(crate) fn has_miniupnpd() -> bool {
    if std::process::Command::new("miniupnpd")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: miniupnpd is not installed");
        return false;
    }
    true
}

/// The lab with H1 behind R1 (11.0.0.11), a router that maps ports
/// (miniupnpd), and, when `with_p`, the public host P (11.0.0.2); None
/// (after one skip line) where it cannot be built.
pub(crate) fn upnp_lab(with_p: bool) -> Option<(Lab, Option<Host>, Host)> {
    let mut lab = Lab::or_skip()?;
    if !has_miniupnpd() {
        return None;
    }
    let p = with_p.then(|| lab.public_host("p", 2).unwrap());
    let upnp = rutella_lab::RouterKind {
        port_mapping: true,
        ..Default::default()
    };
    let r1 = lab.router("r1", 11, upnp).unwrap();
    let h1 = lab.host_behind(&r1, "h1").unwrap();
    Some((lab, p, h1))
}

/// The lab with the public host P (11.0.0.2) and H2 behind R2
/// (11.0.0.12), a router that maps nothing and drops every unsolicited
/// packet; None (after one skip line) where it cannot be built.
pub(crate) fn no_mapping_lab() -> Option<(Lab, Host, Host)> {
    let mut lab = Lab::or_skip()?;
    let p = lab.public_host("p", 2).unwrap();
    let r2 = lab
        .router("r2", 12, rutella_lab::RouterKind::default())
        .unwrap();
    let h2 = lab.host_behind(&r2, "h2").unwrap();
    Some((lab, p, h2))
}
