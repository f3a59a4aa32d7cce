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
