//! `rutella-bench`: measures rutella as a user runs it, next to outside
//! baselines measured in the same run, alternating the contenders so that
//! machine noise hits them alike; prints a table and writes it into
//! `docs/PERFORMANCE.md`.
//!
//! Loopback only: every process and socket here is on 127.0.6.0/24,
//! except the lab section (`lab_paths`), whose addresses exist only inside
//! the network namespaces it makes (root only).

use anyhow::{bail, Result};
use clap::Parser;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

mod big_file;
mod daemon;
mod discovery;
mod gnutella;
mod lab_paths;
mod search;
mod small_files;
mod sources;
mod util;

use big_file::big_file;
use discovery::discovery;
use lab_paths::lab_paths;
use search::search_latency;
use small_files::small_files;
use sources::several_sources;
use util::machine;

#[derive(Parser, Debug)]
#[command(about = "Benchmark rutella against socat and raw TCP on loopback")]
struct Args {
    /// The rutella binary to measure (build it with --release).
    #[arg(long, default_value = "target/release/rutella")]
    rutella: PathBuf,
    /// Size of the big file, in MiB.
    #[arg(long, default_value_t = 1000)]
    size_mib: u64,
    /// Runs of each contender (medians are reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Number of 1 KB files for the small-files test.
    #[arg(long, default_value_t = 1000)]
    small_files: usize,
    /// Nodes in the search-latency network.
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    /// Searches timed in the search-latency test.
    #[arg(long, default_value_t = 50)]
    searches: usize,
    /// Size of the file for the multi-source downloads, in MiB.
    #[arg(long, default_value_t = 100)]
    sources_size_mib: u64,
    /// Measure only the downloads by hash from 1, 2 and 3 sources.
    #[arg(long)]
    sources_only: bool,
    /// Another rutella binary (an earlier build, say) to measure in the
    /// downloads by hash from 1, 2 and 3 sources, alternated with
    /// `--rutella`.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Measure only the time to the first peer with no address given
    /// (through a local DHT, and through the LAN when run as root).
    #[arg(long)]
    discovery: bool,
    /// Runs of the time to the first peer (medians are reported).
    #[arg(long, default_value_t = 5)]
    discovery_runs: usize,
    /// Measure only `rutella daemon`: idle memory with the API on, and a
    /// global upload limit shared by three downloaders.
    #[arg(long)]
    daemon: bool,
    /// Measure only every download path in the network lab (direct,
    /// mapped, pushed, punched, relayed) and the punching success (root
    /// only; one skip line elsewhere).
    #[arg(long)]
    lab: bool,
    /// Runs of each path in the lab (medians are reported).
    #[arg(long, default_value_t = 3)]
    lab_runs: usize,
    /// Size of the file downloaded on each path of the lab, in MiB.
    #[arg(long, default_value_t = 64)]
    lab_size_mib: u64,
    /// Hole punching attempts in the lab (cone routers).
    #[arg(long, default_value_t = 20)]
    punch_attempts: usize,
    /// Size of the file of each punching attempt, in KiB.
    #[arg(long, default_value_t = 256)]
    punch_size_kib: u64,
    /// The downloads' `--connect-timeout` in the lab (a direct connection
    /// that a router drops is given up after it).
    #[arg(long, default_value = "1s")]
    lab_connect_timeout: String,
    /// The downloads' `--push-timeout` in the lab (the wait for a pushed
    /// connection, which cannot come in through the downloader's router
    /// in the punched and relayed cases).
    #[arg(long, default_value = "2s")]
    lab_push_timeout: String,
    /// Measure only Gnutella 0.6 next to rutella (time to first hit,
    /// download throughput), in this process, against the test ultrapeer.
    #[arg(long)]
    gnutella: bool,
    /// Tiny sizes and one run: checks that the benchmark still works.
    #[arg(long)]
    smoke: bool,
    /// Write the table into this markdown file between the bench markers.
    #[arg(long)]
    write_doc: Option<PathBuf>,
    /// Folder for the files moved (default: /dev/shm when it exists, so that
    /// the figures measure the transfer rather than the disk's writeback;
    /// else the system's temporary folder).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 6, 2);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 6, 3);

fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.size_mib = args.size_mib.min(8);
        args.runs = 1;
        args.small_files = args.small_files.min(50);
        args.nodes = args.nodes.min(4);
        args.searches = args.searches.min(3);
        args.sources_size_mib = args.sources_size_mib.min(8);
        args.discovery_runs = 1;
        args.lab_size_mib = args.lab_size_mib.min(1);
        args.lab_runs = 1;
        args.punch_attempts = args.punch_attempts.min(2);
        args.punch_size_kib = args.punch_size_kib.min(64);
    }
    if args.gnutella {
        let tmp = tempfile::tempdir()?;
        let g = gnutella::gnutella(&args, tmp.path())?;
        println!("{g}");
        if let Some(doc) = &args.write_doc {
            write_section(doc, GNUTELLA_BEGIN, GNUTELLA_END, &g)?;
            eprintln!("wrote {}", doc.display());
        }
        return Ok(());
    }
    if !args.rutella.exists() {
        bail!(
            "{} does not exist: build it first with cargo build --release",
            args.rutella.display()
        );
    }
    let work_dir = args.work_dir.clone().unwrap_or_else(|| {
        let shm = PathBuf::from("/dev/shm");
        if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        }
    });
    let tmp = tempfile::Builder::new()
        .prefix("rutella-bench")
        .tempdir_in(&work_dir)?;
    // The lab's namespaces and the files go also when a signal ends us.
    lab_paths::clean_up_on_signals(tmp.path());
    let mut report = String::new();
    let machine = machine();
    writeln!(
        report,
        "Machine: {machine}. Files read from and written to {}.",
        work_dir.display()
    )?;
    writeln!(
        report,
        "Command: `bench/run.sh` ({} runs of each contender, alternated; medians).",
        args.runs
    )?;
    writeln!(report)?;

    if args.discovery {
        let found = discovery(&args, tmp.path())?;
        println!("{found}");
        if let Some(doc) = &args.write_doc {
            write_section(doc, DISCOVERY_BEGIN, DISCOVERY_END, &found)?;
            eprintln!("wrote {}", doc.display());
        }
        return Ok(());
    }
    if args.daemon {
        let figures = daemon::daemon(&args, tmp.path())?;
        println!("{figures}");
        if let Some(doc) = &args.write_doc {
            write_section(doc, DAEMON_BEGIN, DAEMON_END, &figures)?;
            eprintln!("wrote {}", doc.display());
        }
        return Ok(());
    }
    if args.lab {
        if let Some(table) = lab_paths(&args, tmp.path())? {
            println!("{table}");
            if let Some(doc) = &args.write_doc {
                write_section(doc, LAB_BEGIN, LAB_END, &table)?;
                eprintln!("wrote {}", doc.display());
            }
        }
        return Ok(());
    }
    if !args.sources_only {
        let big = big_file(&args, tmp.path())?;
        report.push_str(&big);
    }
    let sources = several_sources(&args, tmp.path())?;
    report.push_str(&sources);
    if !args.sources_only {
        let small = small_files(&args, tmp.path())?;
        report.push_str(&small);
        let search = search_latency(&args, tmp.path())?;
        report.push_str(&search);
        let found = discovery(&args, tmp.path())?;
        report.push_str(&found);
        let g = gnutella::gnutella(&args, tmp.path())?;
        println!("{g}");
        if let Some(doc) = &args.write_doc {
            write_section(doc, GNUTELLA_BEGIN, GNUTELLA_END, &g)?;
        }
    }

    println!("{report}");
    if let Some(doc) = &args.write_doc {
        write_doc(doc, &report)?;
        eprintln!("wrote {}", doc.display());
    }
    if !args.sources_only {
        if let Some(table) = lab_paths(&args, tmp.path())? {
            println!("{table}");
            if let Some(doc) = &args.write_doc {
                write_section(doc, LAB_BEGIN, LAB_END, &table)?;
                eprintln!("wrote {}", doc.display());
            }
        }
    }
    Ok(())
}

const BEGIN: &str = "<!-- bench:begin -->";
const END: &str = "<!-- bench:end -->";

const GNUTELLA_BEGIN: &str = "<!-- bench:gnutella:begin -->";
const GNUTELLA_END: &str = "<!-- bench:gnutella:end -->";

const DISCOVERY_BEGIN: &str = "<!-- bench:discovery:begin -->";
const DISCOVERY_END: &str = "<!-- bench:discovery:end -->";

const DAEMON_BEGIN: &str = "<!-- bench:daemon:begin -->";
const DAEMON_END: &str = "<!-- bench:daemon:end -->";
const LAB_BEGIN: &str = "<!-- bench:lab:begin -->";
const LAB_END: &str = "<!-- bench:lab:end -->";

fn write_doc(path: &Path, table: &str) -> Result<()> {
    write_section(path, BEGIN, END, table)
}

/// Replaces the text between the markers `begin` and `end` (appends both
/// with the text when they are missing).
fn write_section(path: &Path, begin: &str, end: &str, table: &str) -> Result<()> {
    let doc = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (doc.find(begin), doc.find(end)) {
        (Some(b), Some(e)) if b < e => format!("{}{begin}\n{table}{}", &doc[..b], &doc[e..]),
        _ => format!("{doc}\n{begin}\n{table}{end}\n"),
    };
    std::fs::write(path, new)?;
    Ok(())
}
