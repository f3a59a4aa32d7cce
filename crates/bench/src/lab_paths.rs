//! Every download path in the network lab (crates/lab), side by side:
//! direct (a public source), mapped (a source behind a router it maps its
//! ports on with UPnP), pushed (a source behind a router that maps
//! nothing, the downloader public), punched (both behind such routers)
//! and relayed (the downloader's router gives every TCP connection a new
//! port, so the circuit goes through the public peer P). Real
//! `rutella serve` processes share the files; each download is a real
//! `rutella get HASH --connect P --json` on the downloader's host, next
//! to a raw TCP copy (socat) over the same routers. Then hole punching is
//! tried again and again in the cone lab: "punched N of M".
//!
//! Time to first byte: from the spawn of the downloading command to the
//! first file byte on disk (the `.part` file's allocated blocks, or the
//! socat output's size, polled every millisecond). Throughput: the file's
//! size over the time from that first byte to the command's exit (rutella
//! syncs the file before it exits; the raw copy's file is synced by us,
//! inside the time).
//!
//! Address plan (the lab's own internet, 11.0.0.0/24, exists only inside
//! its namespaces): P at .2 and the downloader Q at .3 (public); R1 at
//! .11 (miniupnpd) with H1 behind it; R2 at .12 with H2; R3 at .13 with
//! the downloader H3; R4 at .14 (TCP symmetric) with the downloader H4.
//! H2's file serves the pushed, punched and relayed cases; the case is
//! the downloader's place.

use crate::util::{hash_of, make_file, median, which, Proc};
use crate::Args;
use anyhow::{anyhow, bail, Context, Result};
use rutella_lab::{Host, Lab, Router, RouterKind};
use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// P's address: everyone joins through it; it relays.
const P_IP: &str = "11.0.0.2";
/// Port of the raw copy's listener on a source (forwarded by R1 and R2).
const RAW_PORT: u16 = 40000;
/// Port of the raw relay (socat) on P.
const RAW_RELAY_PORT: u16 = 40001;
/// The longest one download, search or setup step may take.
const STEP: Duration = Duration::from_secs(300);
/// The longest a node may take to start, join or map its ports.
const SETUP: Duration = Duration::from_secs(60);
/// Downloads retried when the one-shot node ended its search before the
/// source became its peer ("no peer offers").
const SEARCH_RETRIES: usize = 10;
/// The downloads' ping rounds: short, so that a peer P introduces
/// becomes a peer at once; a pong may take long on a loaded machine.
const PINGS: [&str; 4] = ["--ping-interval", "300ms", "--pong-timeout", "2s"];
/// The sharing nodes' ping rounds: the routers' UDP mappings stay open,
/// and a slow pong (a loaded machine) does not drop a peer.
const SERVE_PINGS: [&str; 4] = ["--ping-interval", "1s", "--pong-timeout", "5s"];

/// The download paths measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Direct,
    Mapped,
    Pushed,
    Punched,
    Relayed,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Mapped => "mapped",
            Kind::Pushed => "pushed",
            Kind::Punched => "punched",
            Kind::Relayed => "relayed",
        }
    }

    /// Whether the `path` a download reports for its source is this one.
    fn took(self, path: &str) -> bool {
        match self {
            Kind::Direct | Kind::Mapped => path == "direct",
            Kind::Pushed => path.starts_with("push"),
            Kind::Punched => path == "punch",
            Kind::Relayed => path.starts_with("relay"),
        }
    }

    fn route(self) -> &'static str {
        match self {
            Kind::Direct => "Q ← P, both public",
            Kind::Mapped => "Q ← R1 (UPnP mapping) ← H1",
            Kind::Pushed => "Q ← R2 (maps nothing) ← H2",
            Kind::Punched => "H3 ← R3 ← R2 ← H2, both routers map nothing",
            Kind::Relayed => "H4 ← R4 (TCP symmetric) ← P ← R2 ← H2",
        }
    }
}

/// One case: who downloads what from whom, and how the raw copy goes.
struct Case {
    kind: Kind,
    downloader: Host,
    /// The downloader's address on the lab's internet (its router's).
    downloader_public: &'static str,
    /// The source's host, which runs the raw copy's listener.
    source: Host,
    /// The source's address (its router's) in hits and reports.
    source_peer: &'static str,
    /// The file at the source.
    file: PathBuf,
    name: String,
    hash: String,
    /// Where the raw copy's downloader connects.
    raw_target: String,
}

/// The lab with its nodes; the processes go before the lab.
struct World {
    procs: Vec<Proc>,
    routers: Vec<Router>,
    rutella: PathBuf,
    p: Host,
    lab: Lab,
}

/// What one timed download measured.
struct Run {
    ttfb: f64,
    total: f64,
    /// The path the report gives for the source (rutella only).
    path: String,
    /// `get` runs that ended with "no peer offers" before this one.
    retries: usize,
}

/// Measurements of one contender on one path.
#[derive(Default)]
struct Series {
    ttfb: Vec<f64>,
    rate: Vec<f64>,
    paths: Vec<String>,
    wrong_path: usize,
    failures: Vec<String>,
    retries: usize,
}

impl Series {
    fn add(&mut self, run: Run, size: u64, expected: Option<Kind>) {
        if let Some(kind) = expected {
            if !kind.took(&run.path) {
                self.wrong_path += 1;
                self.paths.push(run.path);
                return;
            }
            self.paths.push(run.path);
        }
        self.retries += run.retries;
        self.ttfb.push(run.ttfb);
        self.rate
            .push(size as f64 / (run.total - run.ttfb).max(1e-6));
    }
}

/// The lab section of the benchmark: its table, or `None` after one line
/// saying why it was skipped (not root, no network namespaces).
pub(crate) fn lab_paths(args: &Args, tmp: &Path) -> Result<Option<String>> {
    let mut lab = match Lab::new() {
        Ok(lab) => lab,
        Err(why) => {
            println!("skipped the lab paths: cannot build the network lab: {why}");
            return Ok(None);
        }
    };
    let dir = tmp.join("lab");
    std::fs::create_dir_all(&dir)?;
    let mapping = which("miniupnpd") && which("upnpc");
    let socat = which("socat");
    let size = args.lab_size_mib << 20;

    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    eprintln!("lab: building the network and starting the nodes");
    let p = host(lab.public_host("p", 2))?;
    let q = host(lab.public_host("q", 3))?;
    let r1 = host(lab.router(
        "r1",
        11,
        RouterKind {
            port_mapping: mapping,
            ..RouterKind::default()
        },
    ))?;
    let h1 = host(lab.host_behind(&r1, "h1"))?;
    let r2 = host(lab.router("r2", 12, RouterKind::default()))?;
    let h2 = host(lab.host_behind(&r2, "h2"))?;
    let r3 = host(lab.router("r3", 13, RouterKind::default()))?;
    let h3 = host(lab.host_behind(&r3, "h3"))?;
    // A new external port for every TCP connection; UDP keeps its ports,
    // so that H4's datagrams and H2's meet and H4 finds H2's file at all.
    let r4 = host(lab.router(
        "r4",
        14,
        RouterKind {
            symmetric_tcp: true,
            ..RouterKind::default()
        },
    ))?;
    let h4 = host(lab.host_behind(&r4, "h4"))?;
    // The raw copies reach the sources behind R1 and R2 through a forward
    // of their own port, as a mapping would.
    forward(&lab, &r1, RAW_PORT)?;
    forward(&lab, &r2, RAW_PORT)?;

    let files = [
        ("p-share", "lab-direct.bin", size, 1u64),
        ("h1-share", "lab-mapped.bin", size, 2),
        ("h2-share", "lab-nat.bin", size, 3),
        ("h2-share", "lab-punch.bin", args.punch_size_kib << 10, 4),
    ];
    let mut hashes = Vec::new();
    for (share, name, len, seed) in files {
        let f = dir.join(share).join(name);
        std::fs::create_dir_all(dir.join(share))?;
        make_seeded_file(&f, len, seed)?;
        hashes.push(hash_of(&f).ok_or_else(|| anyhow!("cannot hash {}", f.display()))?);
    }

    let mut world = World {
        procs: Vec::new(),
        routers: vec![r1.clone(), r2.clone(), r3.clone(), r4.clone()],
        rutella: args.rutella.clone(),
        p: p.clone(),
        lab,
    };
    let share = |s: &str| dir.join(s).to_string_lossy().into_owned();
    world.serve(
        &p,
        &dir,
        "p",
        &["--share", &share("p-share"), "--no-port-mapping"],
    )?;
    let h1_args = ["--share", &share("h1-share"), "--connect", P_IP];
    world.serve(&h1, &dir, "h1", &h1_args)?;
    let h2_args = ["--share", &share("h2-share"), "--connect", P_IP];
    world.serve(&h2, &dir, "h2", &h2_args)?;
    if mapping {
        // H1's router forwards its ports once the dial-back check passed.
        wait_log(&dir.join("h1"), "Reachable at 11.0.0.11")?;
    }

    let mut cases = vec![Case {
        kind: Kind::Direct,
        downloader: q.clone(),
        downloader_public: "11.0.0.3",
        source: p.clone(),
        source_peer: "11.0.0.2",
        file: dir.join("p-share/lab-direct.bin"),
        name: "lab-direct.bin".into(),
        hash: hashes[0].clone(),
        raw_target: format!("{P_IP}:{RAW_PORT}"),
    }];
    if mapping {
        cases.push(Case {
            kind: Kind::Mapped,
            downloader: q.clone(),
            downloader_public: "11.0.0.3",
            source: h1.clone(),
            source_peer: "11.0.0.11",
            file: dir.join("h1-share/lab-mapped.bin"),
            name: "lab-mapped.bin".into(),
            hash: hashes[1].clone(),
            raw_target: format!("11.0.0.11:{RAW_PORT}"),
        });
    }
    let behind_r2 = |kind, downloader: &Host, public| Case {
        kind,
        downloader: downloader.clone(),
        downloader_public: public,
        source: h2.clone(),
        source_peer: "11.0.0.12",
        file: dir.join("h2-share/lab-nat.bin"),
        name: "lab-nat.bin".into(),
        hash: hashes[2].clone(),
        raw_target: if kind == Kind::Relayed {
            format!("{P_IP}:{RAW_RELAY_PORT}")
        } else {
            format!("11.0.0.12:{RAW_PORT}")
        },
    };
    cases.push(behind_r2(Kind::Pushed, &q, "11.0.0.3"));
    cases.push(behind_r2(Kind::Punched, &h3, "11.0.0.13"));
    cases.push(behind_r2(Kind::Relayed, &h4, "11.0.0.14"));

    // Every downloader finds its file before anything is timed (the
    // sources hash their files in the background after they start).
    for case in &cases {
        world.find(case, args, &dir)?;
    }

    let mut rutella: Vec<Series> = cases.iter().map(|_| Series::default()).collect();
    let mut raw: Vec<Series> = cases.iter().map(|_| Series::default()).collect();
    for run in 0..args.lab_runs {
        for (i, case) in cases.iter().enumerate() {
            eprintln!(
                "lab: run {}/{}, {}",
                run + 1,
                args.lab_runs,
                case.kind.name()
            );
            // Alternated: rutella first in even runs, the raw copy first
            // in odd ones.
            for contender in [run % 2 == 0, run % 2 == 1] {
                let out = dir.join(format!("out-{}-{run}-{contender}", case.kind.name()));
                if contender {
                    match world.get(case, args, &dir, &out) {
                        Ok(r) => {
                            eprintln!(
                                "lab:   rutella {}: first byte {:.0} ms, {:.0} ms in all, path {}",
                                case.kind.name(),
                                r.ttfb * 1000.0,
                                r.total * 1000.0,
                                r.path
                            );
                            rutella[i].add(r, size, Some(case.kind));
                        }
                        Err(e) => {
                            eprintln!("lab:   rutella {} failed: {e:#}", case.kind.name());
                            for n in ["p", "h1", "h2"] {
                                let log = std::fs::read_to_string(dir.join(format!("{n}.err")))
                                    .unwrap_or_default();
                                let tail: Vec<&str> = log.lines().rev().take(12).collect();
                                eprintln!("lab:   {n} said last:");
                                for l in tail.into_iter().rev() {
                                    eprintln!("lab:     {l}");
                                }
                            }
                            rutella[i].failures.push(first_line(&e));
                        }
                    }
                } else if socat {
                    match world.raw(case, &out, size) {
                        Ok(r) => {
                            eprintln!(
                                "lab:   raw {}: first byte {:.1} ms, {:.0} ms in all",
                                case.kind.name(),
                                r.ttfb * 1000.0,
                                r.total * 1000.0
                            );
                            raw[i].add(r, size, None);
                        }
                        Err(e) => {
                            eprintln!("lab:   raw {} failed: {e:#}", case.kind.name());
                            raw[i].failures.push(first_line(&e));
                        }
                    }
                }
                let _ = std::fs::remove_dir_all(&out);
            }
        }
    }

    // Hole punching, again and again, with a small file, each time from
    // a host behind a new cone router of its own: the proxy and the
    // source each set up at most 4 punches per 10 s for one address (a
    // download punches once per connection, twice for a small file), so
    // quick attempts from one address would soon go by relay and measure
    // those budgets rather than punching.
    let mut punched = 0;
    let mut other = Vec::new();
    for attempt in 0..args.punch_attempts {
        let last = 30 + (attempt % 200) as u8;
        let router = host(
            world
                .lab
                .router(&format!("rp{attempt}"), last, RouterKind::default()),
        )?;
        let downloader = host(world.lab.host_behind(&router, &format!("hp{attempt}")))?;
        world.routers.push(router);
        let public: &'static str = Box::leak(format!("11.0.0.{last}").into_boxed_str());
        let punch = Case {
            file: dir.join("h2-share/lab-punch.bin"),
            name: "lab-punch.bin".into(),
            hash: hashes[3].clone(),
            ..behind_r2(Kind::Punched, &downloader, public)
        };
        let out = dir.join(format!("out-punch-{attempt}"));
        match world.get(&punch, args, &dir, &out) {
            Ok(r) if Kind::Punched.took(&r.path) => punched += 1,
            Ok(r) => other.push(r.path),
            Err(e) => other.push(first_line(&e)),
        }
        let _ = std::fs::remove_dir_all(&out);
        eprintln!(
            "lab: punch attempt {}/{}: {punched} punched",
            attempt + 1,
            args.punch_attempts
        );
    }
    drop(world);

    let mut s = String::new();
    writeln!(
        s,
        "### Every download path in the network lab ({} MiB file)",
        args.lab_size_mib
    )?;
    writeln!(s)?;
    writeln!(
        s,
        "Machine: {}; load average {load} at the start (other programs ran alongside). \
         Binary: the {} build of `rutella`. Command: `rutella-bench --lab{}`.",
        crate::util::machine().trim_end_matches(", Linux loopback"),
        build_of(&args.rutella),
        if args.smoke { " --smoke" } else { "" }
    )?;
    writeln!(
        s,
        "Routes (data flows right to left): {}.",
        cases
            .iter()
            .map(|c| format!("{}: {}", c.kind.name(), c.kind.route()))
            .collect::<Vec<_>>()
            .join("; ")
    )?;
    writeln!(
        s,
        "rutella: `rutella get HASH --connect {P_IP} --json --connect-timeout {} --push-timeout {}` \
         (and {}), its path checked in the report and the file's BLAKE3 checked. \
         Raw: `socat -b 1048576 -u` from a listener on the source's host (through a port \
         forward on its router; for relayed through a `socat` splice on P) into a file, \
         synced. First byte: from the command's spawn to the first file byte on disk. \
         Throughput: size / (exit − first byte). {} runs, alternated; medians.",
        args.lab_connect_timeout,
        args.lab_push_timeout,
        PINGS.join(" "),
        args.lab_runs
    )?;
    writeln!(s)?;
    writeln!(
        s,
        "| path | taken (report) | rutella first byte | rutella throughput | raw first byte | raw throughput |"
    )?;
    writeln!(s, "| --- | --- | ---: | ---: | ---: | ---: |")?;
    for (i, case) in cases.iter().enumerate() {
        let (ru, rw) = (&mut rutella[i], &mut raw[i]);
        let mut taken: Vec<String> = ru.paths.clone();
        taken.sort();
        taken.dedup();
        let mut taken = taken.join(", ");
        if ru.wrong_path > 0 {
            write!(taken, " ({} runs took another path)", ru.wrong_path)?;
        }
        if !ru.failures.is_empty() {
            write!(taken, " ({} runs failed)", ru.failures.len())?;
        }
        if ru.retries > 0 {
            write!(taken, " ({} searches retried)", ru.retries)?;
        }
        writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            case.kind.name(),
            if taken.is_empty() { "-".into() } else { taken },
            ms(&mut ru.ttfb),
            rate(&mut ru.rate),
            if socat { ms(&mut rw.ttfb) } else { "-".into() },
            if socat {
                rate(&mut rw.rate)
            } else {
                "-".into()
            },
        )?;
    }
    if !mapping {
        writeln!(
            s,
            "\nmapped: not measured (miniupnpd or upnpc is not installed)."
        )?;
    }
    if !socat {
        writeln!(s, "\nsocat is not installed: no raw copy.")?;
    }
    for (i, case) in cases.iter().enumerate() {
        for f in rutella[i].failures.iter().chain(&raw[i].failures) {
            writeln!(s, "\n{} failed: {f}", case.kind.name())?;
        }
    }
    writeln!(s)?;
    let line = format!(
        "punched {punched} of {} (from H2 behind R2 to a new host behind a new router each time, both cone; a {} KiB file by \
         hash each time, counted when the report's path is `punch` and the BLAKE3 matches)",
        args.punch_attempts, args.punch_size_kib
    );
    eprintln!("lab: {line}");
    writeln!(s, "{line}")?;
    if !other.is_empty() {
        other.sort();
        other.dedup();
        writeln!(s, "\nThe others: {}.", other.join("; "))?;
    }
    writeln!(s)?;
    Ok(Some(s))
}

/// The signal that ended us, set by [`on_signal`].
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// The benchmark's folder, removed when a signal ends us.
static FOLDER: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn on_signal(sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    SIGNAL.store(sig, Ordering::SeqCst);
}

/// On SIGINT, SIGTERM or SIGHUP: deletes the lab's namespaces (killing
/// what runs in them) and `folder`, then exits, since no destructor runs
/// then. A thread watches the flag the handler sets.
pub(crate) fn clean_up_on_signals(folder: &Path) {
    let _ = FOLDER.set(folder.to_path_buf());
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
    std::thread::spawn(|| loop {
        std::thread::sleep(Duration::from_millis(50));
        let sig = SIGNAL.load(Ordering::SeqCst);
        if sig != 0 {
            eprintln!("signal {sig}: removing the lab and the benchmark's files");
            rutella_lab::remove_labs_of_this_process();
            if let Some(f) = FOLDER.get() {
                let _ = std::fs::remove_dir_all(f);
            }
            std::process::exit(128 + sig);
        }
    });
}

/// "release" or "debug", from the binary's folder.
fn build_of(binary: &Path) -> &'static str {
    let has = |name: &str| binary.components().any(|c| c.as_os_str() == name);
    if has("release") {
        "release"
    } else if has("debug") {
        "debug"
    } else {
        "given"
    }
}

fn host<T>(r: Result<T, rutella_lab::Unavailable>) -> Result<T> {
    r.map_err(|e| anyhow!("lab: {e}"))
}

fn first_line(e: &anyhow::Error) -> String {
    format!("{e:#}")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn ms(v: &mut [f64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let m = median(v) * 1000.0;
    if m < 10.0 {
        format!("{m:.1} ms")
    } else {
        format!("{m:.0} ms")
    }
}

fn rate(v: &mut [f64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    format!("{:.0} MB/s", median(v) / 1e6)
}

/// A file of `len` bytes whose content depends on `seed` (so that every
/// file has its own hash).
fn make_seeded_file(path: &Path, len: u64, seed: u64) -> Result<()> {
    make_file(path, len)?;
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    if len >= 8 {
        f.write_all_at(&seed.to_le_bytes(), 0)?;
    }
    Ok(())
}

fn nft(lab: &Lab, router: &Router, args: &[&str]) -> Result<()> {
    let mut cmd = Command::new("nft");
    cmd.args(args);
    let out = lab.wrap(&router.host, &cmd).stdin(Stdio::null()).output()?;
    if !out.status.success() {
        bail!(
            "nft {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// TCP `port` on `router`'s WAN address forwarded to the host behind it.
fn forward(lab: &Lab, router: &Router, port: u16) -> Result<()> {
    let [a, b, c, _] = router.lan_ip.octets();
    let to = format!("{a}.{b}.{c}.10");
    let port = port.to_string();
    nft(
        lab,
        router,
        &[
            "insert",
            "rule",
            "inet",
            "nat",
            "prerouting",
            "iifname",
            "wan",
            "tcp",
            "dport",
            &port,
            "dnat",
            "ip",
            "to",
            &to,
        ],
    )?;
    nft(
        lab,
        router,
        &[
            "insert", "rule", "inet", "filter", "forward", "iifname", "wan", "ip", "daddr", &to,
            "tcp", "dport", &port, "accept",
        ],
    )
}

/// Waits (bounded) until the output of a process, `NAME.out` and
/// `NAME.err` of `base` = `dir/NAME`, holds `needle`.
fn wait_log(base: &Path, needle: &str) -> Result<()> {
    let deadline = Instant::now() + SETUP;
    loop {
        let text = ["out", "err"]
            .map(|ext| std::fs::read_to_string(base.with_extension(ext)).unwrap_or_default())
            .join("");
        if text.contains(needle) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            bail!(
                "no {needle:?} from {} within {SETUP:?}; it said last:\n{}",
                base.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `peer` (`IP` or `IP:PORT`) is at `ip`.
fn is_at(peer: &str, ip: &str) -> bool {
    peer.strip_prefix(ip)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
}

/// Whether the first file byte is on disk: the `.part` file has blocks,
/// or the complete file is there.
fn first_byte_on_disk(out: &Path, name: &str) -> bool {
    let Ok(dir) = std::fs::read_dir(out) else {
        return false;
    };
    dir.filter_map(Result::ok).any(|e| {
        let n = e.file_name();
        let n = n.to_string_lossy();
        let meta = e.metadata();
        (n.ends_with(".part") && n.starts_with(name) && meta.as_ref().is_ok_and(|m| m.blocks() > 0))
            || (n == name && meta.is_ok_and(|m| m.len() > 0))
    })
}

impl World {
    fn rutella(&self, dir: &Path) -> Command {
        let mut cmd = Command::new(&self.rutella);
        cmd.env("RUST_LOG", "info")
            .env("RUTELLA_CONFIG", dir.join("no-such-settings.toml"))
            .env("RUTELLA_NO_DHT", "1")
            .env("RUTELLA_TEST_NO_PUBLIC", "1")
            .env("HOME", dir.join("home"))
            .env("XDG_DATA_HOME", dir.join("home/data"))
            .env("XDG_STATE_HOME", dir.join("home/state"))
            .env("XDG_CACHE_HOME", dir.join("home/cache"))
            .env("XDG_CONFIG_HOME", dir.join("home/config"));
        cmd
    }

    /// `rutella serve` on `host`, its log in `dir/NAME.err`; waits for its
    /// start (and, with `--connect`, its first peer).
    fn serve(&mut self, host: &Host, dir: &Path, name: &str, extra: &[&str]) -> Result<()> {
        let mut cmd = self.rutella(dir);
        cmd.arg("serve").args(SERVE_PINGS).args(extra);
        let base = dir.join(name);
        let err = base.with_extension("err");
        let child = self
            .lab
            .wrap(host, &cmd)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join(format!("{name}.out")))?)
            .stderr(std::fs::File::create(&err)?)
            .spawn()
            .context("starting rutella serve")?;
        self.procs.push(Proc(child));
        wait_log(&base, "node started")?;
        if extra.contains(&"--connect") {
            wait_log(&base, "peer joined")?;
        }
        Ok(())
    }

    /// Flags of every search and download. Each runs at the default
    /// ports: a new one-shot node at an address that is still a peer of P
    /// is introduced again (its pings carry a new nonce), and what the
    /// routers track of the last run is forgotten before each
    /// ([`World::forget`]).
    fn get_flags(args: &Args) -> Vec<String> {
        let mut v: Vec<String> = PINGS.iter().map(|s| s.to_string()).collect();
        v.extend([
            "--connect-timeout".into(),
            args.lab_connect_timeout.clone(),
            "--push-timeout".into(),
            args.lab_push_timeout.clone(),
        ]);
        v
    }

    /// Searches from the case's downloader until its source answers with
    /// the file's hash.
    fn find(&self, case: &Case, args: &Args, dir: &Path) -> Result<()> {
        let deadline = Instant::now() + SETUP;
        loop {
            let mut cmd = self.rutella(dir);
            cmd.args([
                "search",
                &case.name,
                "--connect",
                P_IP,
                "--wait",
                "1.5",
                "--json",
            ])
            .args(World::get_flags(args));
            let out = self
                .lab
                .wrap(&case.downloader, &cmd)
                .stdin(Stdio::null())
                .output()?;
            let found = String::from_utf8_lossy(&out.stdout).lines().any(|l| {
                serde_json::from_str::<serde_json::Value>(l).is_ok_and(|h| {
                    h["hash"].as_str() == Some(case.hash.as_str())
                        && h["peer"]
                            .as_str()
                            .is_some_and(|p| is_at(p, case.source_peer))
                })
            });
            if found {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: the downloader never found the file; the search said {}{}",
                    case.kind.name(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Forgets what the routers track of the downloader's address, so that
    /// one run's connections and holes do not help the next.
    fn forget(&self, case: &Case) {
        for r in &self.routers {
            if r.host.ip.to_string() == case.downloader_public {
                let _ = self.lab.flush_conntrack(r);
                continue;
            }
            for side in ["-s", "-d"] {
                let mut cmd = Command::new("conntrack");
                cmd.args(["-D", side, case.downloader_public]);
                let _ = self
                    .lab
                    .wrap(&r.host, &cmd)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }

    /// One timed `rutella get` of the case's file, again while it ends with
    /// "no peer offers" (the one-shot node's search ended before the
    /// source became its peer); the file's bytes checked.
    fn get(&self, case: &Case, args: &Args, dir: &Path, out: &Path) -> Result<Run> {
        let mut retries = 0;
        loop {
            match self.get_once(case, args, dir, out) {
                Err(e)
                    if retries < SEARCH_RETRIES && format!("{e:#}").contains("no peer offers") =>
                {
                    retries += 1;
                    let _ = std::fs::remove_dir_all(out);
                    std::thread::sleep(Duration::from_millis(300));
                }
                Err(e) => return Err(e),
                Ok(mut run) => {
                    run.retries = retries;
                    return Ok(run);
                }
            }
        }
    }

    fn get_once(&self, case: &Case, args: &Args, dir: &Path, out: &Path) -> Result<Run> {
        self.forget(case);
        std::fs::create_dir_all(out)?;
        let mut cmd = self.rutella(dir);
        cmd.args(["get", &case.hash, "--connect", P_IP])
            .args(World::get_flags(args))
            .arg("--out")
            .arg(out)
            .args(["--wait", "5", "--json"]);
        let so = dir.join("get.out");
        let se = dir.join("get.err");
        let mut wrapped = self.lab.wrap(&case.downloader, &cmd);
        wrapped
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&so)?)
            .stderr(std::fs::File::create(&se)?);
        let (ttfb, total, status) =
            timed_until_exit(&mut wrapped, || first_byte_on_disk(out, &case.name))?;
        let stdout = std::fs::read_to_string(&so).unwrap_or_default();
        let stderr = std::fs::read_to_string(&se).unwrap_or_default();
        if !status.success() {
            let why = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or_default();
            bail!("rutella get failed ({status}): {why}\n{stderr}");
        }
        let report: serde_json::Value = serde_json::from_str(stdout.trim())
            .with_context(|| format!("the report is not JSON: {stdout:?}"))?;
        let sources = report["sources"].as_array().cloned().unwrap_or_default();
        let src = sources
            .iter()
            .find(|s| {
                s["peer"]
                    .as_str()
                    .is_some_and(|p| is_at(p, case.source_peer))
            })
            .ok_or_else(|| anyhow!("no source {} in {report}", case.source_peer))?;
        if sources.len() != 1 {
            bail!("more than one source: {report}");
        }
        let path = src["path"].as_str().unwrap_or("?").to_string();
        let got = PathBuf::from(report["path"].as_str().unwrap_or_default());
        if hash_of(&got).as_deref() != Some(case.hash.as_str()) {
            bail!("{}: not the file's bytes", got.display());
        }
        // How the path was found, for the log.
        for l in stderr.lines().filter(|l| l.contains("path")) {
            eprintln!("lab:     {l}");
        }
        let ttfb = ttfb.unwrap_or(total);
        Ok(Run {
            ttfb,
            total,
            path,
            retries: 0,
        })
    }

    /// One timed raw copy of the case's file over the same routers.
    fn raw(&self, case: &Case, out: &Path, size: u64) -> Result<Run> {
        self.forget(case);
        std::fs::create_dir_all(out)?;
        let mut listener = case.source.command("socat");
        listener
            .args(["-b", "1048576", "-u"])
            .arg(format!("FILE:{}", case.file.display()))
            .arg(format!("TCP4-LISTEN:{RAW_PORT},reuseaddr"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _listener = Proc(listener.spawn()?);
        wait_listening(&case.source, RAW_PORT)?;
        let _relay = if case.kind == Kind::Relayed {
            // P splices the downloader's connection to the source's
            // listener (through R2's forward), data flowing back.
            let p = &self.p;
            let mut relay = p.command("socat");
            relay
                .args(["-b", "1048576", "-U"])
                .arg(format!("TCP4-LISTEN:{RAW_RELAY_PORT},reuseaddr"))
                .arg(format!("TCP4:11.0.0.12:{RAW_PORT}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let relay = Proc(relay.spawn()?);
            wait_listening(p, RAW_RELAY_PORT)?;
            Some(relay)
        } else {
            None
        };
        let file = out.join(&case.name);
        let mut cmd = case.downloader.command("socat");
        cmd.args(["-b", "1048576", "-u"])
            .arg(format!("TCP4:{}", case.raw_target))
            .arg(format!("CREATE:{}", file.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let (ttfb, total, status) = timed_until_exit_synced(&mut cmd, &file)?;
        if !status.success() {
            bail!("socat failed ({status})");
        }
        let len = std::fs::metadata(&file)?.len();
        if len != size {
            bail!("{} has {len} bytes, not {size}", file.display());
        }
        if hash_of(&file).as_deref() != Some(case.hash.as_str()) {
            bail!("{}: not the file's bytes", file.display());
        }
        Ok(Run {
            ttfb: ttfb.unwrap_or(total),
            total,
            path: String::new(),
            retries: 0,
        })
    }
}

/// Spawns `cmd` and polls every millisecond until it exits (bounded by
/// [`STEP`]): the time `first` first held, the time of the exit, and the
/// exit status.
fn timed_until_exit(
    cmd: &mut Command,
    mut first: impl FnMut() -> bool,
) -> Result<(Option<f64>, f64, std::process::ExitStatus)> {
    let start = Instant::now();
    let mut child = Proc(cmd.spawn()?);
    let mut seen = None;
    loop {
        if seen.is_none() && first() {
            seen = Some(start.elapsed().as_secs_f64());
        }
        if let Some(status) = child.0.try_wait()? {
            return Ok((seen, start.elapsed().as_secs_f64(), status));
        }
        if start.elapsed() > STEP {
            bail!("{cmd:?} did not end within {STEP:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// [`timed_until_exit`] of a copy into `file`, the file synced to disk
/// before the clock stops, as rutella syncs its downloads.
fn timed_until_exit_synced(
    cmd: &mut Command,
    file: &Path,
) -> Result<(Option<f64>, f64, std::process::ExitStatus)> {
    let start = Instant::now();
    let (ttfb, _, status) =
        timed_until_exit(cmd, || std::fs::metadata(file).is_ok_and(|m| m.len() > 0))?;
    if status.success() {
        std::fs::File::open(file)?.sync_all()?;
    }
    Ok((ttfb, start.elapsed().as_secs_f64(), status))
}

/// Waits (bounded) until something listens on TCP `port` in `host`.
fn wait_listening(host: &Host, port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let taken = host.enter(move || std::net::TcpListener::bind(("0.0.0.0", port)).is_err())?;
        if taken {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    bail!("nothing listens on port {port} in {}", host.netns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_at_its_ip_with_or_without_a_port() {
        assert!(is_at("11.0.0.2", "11.0.0.2"));
        assert!(is_at("11.0.0.2:10000", "11.0.0.2"));
        assert!(!is_at("11.0.0.22:10000", "11.0.0.2"));
        assert!(!is_at("11.0.0.11", "11.0.0.1"));
    }

    #[test]
    fn the_first_byte_is_on_disk_once_the_part_file_has_blocks_or_the_file_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let name = "f.bin";
        assert!(!first_byte_on_disk(dir.path(), name));
        // rutella sizes its .part file at once: a sparse file, no data.
        let part = dir.path().join("f.bin.0011223344556677.part");
        let f = std::fs::File::create(&part).unwrap();
        f.set_len(8 << 20).unwrap();
        std::fs::write(dir.path().join("f.bin.0011223344556677.part.state"), b"x").unwrap();
        assert!(!first_byte_on_disk(dir.path(), name));
        // The first verified batch written.
        use std::os::unix::fs::FileExt;
        f.write_all_at(&[1u8; 4096], 4 << 20).unwrap();
        assert!(first_byte_on_disk(dir.path(), name));
        // Or the complete file, renamed.
        std::fs::remove_file(&part).unwrap();
        assert!(!first_byte_on_disk(dir.path(), name));
        std::fs::write(dir.path().join(name), b"done").unwrap();
        assert!(first_byte_on_disk(dir.path(), name));
    }
}
