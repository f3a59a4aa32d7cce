//! Whether others can reach a node, checked for real in the network lab
//! (crates/lab): a peer on the lab's internet connects back to the node.
//! Behind a router that maps ports with UPnP the console says where the
//! node is reachable, and `status` says the same; behind a router that maps
//! nothing, `serve` says the node is not reachable and that downloads go
//! through push; a public peer without any mapping is reachable as it is.
//! Needs root; prints one skip line elsewhere.
//!
//! Address plan: the lab's own internet, 11.0.0.0/24 (P at .2, routers
//! at .11 and .12), and LANs 192.168.N.0/24 inside namespaces.

mod common;
use common::lab::*;
use common::*;
use rexpect::session::spawn_command;
use rutella_lab::{Host, Lab};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The longest any one step may take.
const STEP: Duration = Duration::from_secs(25);

/// A `rutella serve` inside a lab host, without LAN discovery; killed
/// when dropped.
fn serve(lab: &Lab, host: &Host, dir: &Path, name: &str, args: &[&str]) -> Proc {
    let mut all = vec!["--no-lan-discovery"];
    all.extend(args);
    Proc::serve(lab, host, dir, name, &all)
}

#[test]
fn behind_a_upnp_router_the_console_says_reachable_and_status_says_the_same() {
    let Some((lab, Some(p), h1)) = upnp_lab(true) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    write_file(&share.join("a.txt"), b"hello");

    let p_node = serve(&lab, &p, dir.path(), "p", &[]);
    p_node.wait_for("node started");

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rutella"));
    cmd.args([
        "--share",
        share.to_str().unwrap(),
        "--connect",
        "11.0.0.2",
        "--ping-interval",
        "300ms",
        "--no-lan-discovery",
    ])
    .env("RUTELLA_NO_DHT", "1")
    .env("RUTELLA_TEST_NO_PUBLIC", "1")
    .env("RUTELLA_CONFIG", dir.path().join("config.toml"))
    .env("TERM", "xterm")
    .env_remove("RUST_LOG");
    let started = Instant::now();
    let mut h1 = spawn_command(lab.wrap(&h1, &cmd), Some(STEP.as_millis() as u64))
        .expect("start the console in a pseudo-terminal");
    let line = "Reachable at 11.0.0.11:20000 (mapped by UPnP)";
    h1.exp_string(line).unwrap();
    eprintln!("UPnP: checked reachable line after {:?}", started.elapsed());
    h1.send_line("status").unwrap();
    h1.exp_string("Port mapping: made by UPnP at 11.0.0.11.")
        .unwrap();
    h1.exp_string(line).unwrap();
    h1.exp_string("rutella> ").unwrap();

    // P, on the internet with no router, was checked by H1 in turn and is
    // reachable as it is; its mapping attempt found no router.
    p_node.wait_for("No port mapping on your router");
    p_node.wait_for("Reachable at 11.0.0.2:20000\n");

    h1.send_line("quit").unwrap();
    h1.exp_eof().unwrap();
    drop(p_node);
}

#[test]
fn behind_a_router_that_maps_nothing_serve_says_not_reachable_and_push_is_the_way() {
    let Some((lab, p, h2)) = no_mapping_lab() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p_node = serve(&lab, &p, dir.path(), "p", &[]);
    p_node.wait_for("node started");
    let started = Instant::now();
    let h2_node = serve(&lab, &h2, dir.path(), "h2", &["--connect", "11.0.0.2"]);
    // The mapping's result first, then the checked answer.
    h2_node.wait_for("No port mapping on your router; checking whether peers can reach you");
    h2_node.wait_for(
        "Not reachable from the internet: others can still download from you through push",
    );
    eprintln!("no mapping: checked line after {:?}", started.elapsed());
    let out = h2_node.stdout();
    assert!(!out.contains("Reachable at"), "{out}");
    let hint = out.find("No port mapping").unwrap();
    let checked = out.find("Not reachable").unwrap();
    assert!(hint < checked, "{out}");
}
