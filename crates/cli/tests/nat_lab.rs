//! A node behind a home router, in the network lab (crates/lab): with a
//! router that maps ports (UPnP IGD, NAT-PMP, PCP), `rutella serve` maps
//! its ports by itself, says where it is reachable, and a public peer
//! downloads its files over a direct connection through the mapping; the
//! mappings go when it quits. Behind a router that maps nothing it says
//! it is not reachable (the dial-back check itself is in reach_lab.rs).
//! Needs root; prints one skip line elsewhere.
//!
//! Address plan: the lab's own internet, 11.0.0.0/24 (P at .2, routers
//! at .11 and .12), and LANs 192.168.N.0/24 inside namespaces.

mod common;
use common::lab::*;
use common::*;
use rutella_lab::Host;
use std::time::{Duration, Instant};

/// The longest any one step may take.
const STEP: Duration = Duration::from_secs(20);

fn upnpc_list(host: &Host) -> String {
    let out = host.command("upnpc").arg("-l").output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The mappings `upnpc -l` lists to `ip:port` over `proto`.
fn mapped(list: &str, proto: &str, to: &str) -> bool {
    list.lines()
        .any(|l| l.contains(proto) && l.contains(&format!("->{to}")))
}

#[test]
fn behind_a_mapping_router_a_node_maps_its_ports_with_upnp_and_is_downloaded_from() {
    mapped_case(&[], "UPnP");
}

#[test]
fn the_same_with_pcp() {
    mapped_case(&["--port-mapping-protocol", "pcp"], "PCP");
}

#[test]
fn the_same_with_nat_pmp() {
    mapped_case(&["--port-mapping-protocol", "natpmp"], "NAT-PMP");
}

/// H1 behind R1 (miniupnpd) serves with `extra` flags; the mapping is made
/// `by` that protocol.
fn mapped_case(extra: &[&str], by: &str) {
    let Some((lab, Some(p), h1)) = upnp_lab(true) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    let data = pattern(1_500_000, 77);
    write_file(&share.join("lab-song.ogg"), &data);
    let p_share = dir.path().join("p-share");
    std::fs::create_dir_all(&p_share).unwrap();

    let p_node = Proc::serve(
        &lab,
        &p,
        dir.path(),
        "p",
        &["--share", p_share.to_str().unwrap()],
    );
    p_node.wait_for("node started");
    let mut h1_args = vec!["--share", share.to_str().unwrap(), "--connect", "11.0.0.2"];
    h1_args.extend(extra);
    let started = Instant::now();
    let mut h1_node = Proc::serve(&lab, &h1, dir.path(), "h1", &h1_args);
    // The user is told first: the mapping, then the checked answer (P
    // connected back through the mapping).
    h1_node.wait_for(&format!(
        "Ports mapped by {by} on your router at 11.0.0.11; checking"
    ));
    eprintln!("{by}: mapping line after {:?}", started.elapsed());
    h1_node.wait_for(&format!("Reachable at 11.0.0.11:20000 (mapped by {by})"));
    eprintln!("{by}: checked reachable line after {:?}", started.elapsed());
    h1_node.wait_for("peer joined");

    // P finds the file at the router's address (hashing runs in the
    // background after start: a few searches, bounded).
    let deadline = Instant::now() + STEP;
    let hit = loop {
        let r = run_in(
            &lab,
            &p,
            &[
                "search",
                "lab-song",
                "--connect",
                "11.0.0.2",
                "--wait",
                "1.5",
                "--json",
            ],
        );
        let hit = String::from_utf8_lossy(&r.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|h| h["hash"].is_string());
        if let Some(hit) = hit {
            break hit;
        }
        assert!(
            Instant::now() < deadline,
            "P never found H1's file: {}\nH1: {}\n{}",
            String::from_utf8_lossy(&r.stderr),
            h1_node.stderr(),
            lab.miniupnpd_log("r1")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let peer = hit["peer"].as_str().unwrap().to_string();
    let hash = hit["hash"].as_str().unwrap().to_string();
    assert!(peer.starts_with("11.0.0.11"), "{hit}");
    assert_eq!(hit["tcp"], "11.0.0.11:10000", "{hit}");

    // By name from H1, and by hash through P: byte-exact, from H1 itself.
    for (i, args) in [
        vec!["get", "lab-song.ogg", "--from", peer.as_str()],
        vec!["get", hash.as_str(), "--connect", "11.0.0.2"],
    ]
    .into_iter()
    .enumerate()
    {
        let out = dir.path().join(format!("got{i}"));
        let mut args = args;
        args.extend(["--out", out.to_str().unwrap(), "--wait", "3", "--json"]);
        let r = run_in(&lab, &p, &args);
        assert!(
            r.status.success(),
            "{args:?}: {}\nH1: {}",
            String::from_utf8_lossy(&r.stderr),
            h1_node.stderr()
        );
        let report: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
        let got = std::fs::read(report["path"].as_str().unwrap()).unwrap();
        assert!(got == data, "{args:?}: not the same bytes");
        let sources = report["sources"].as_array().unwrap();
        assert!(
            sources
                .iter()
                .any(|s| s["peer"].as_str().unwrap().starts_with("11.0.0.11")),
            "{report}"
        );
    }

    // The router lists both mappings.
    let list = upnpc_list(&h1);
    assert!(mapped(&list, "UDP", "192.168.1.10:20000"), "{list}");
    assert!(mapped(&list, "TCP", "192.168.1.10:10000"), "{list}");

    // A clean exit removes them.
    let status = h1_node.terminate();
    assert!(status.success(), "{status:?}: {}", h1_node.stderr());
    let list = upnpc_list(&h1);
    assert!(!list.contains("->192.168.1.10:"), "left behind: {list}");
    drop(p_node);
}

#[test]
fn with_the_dht_on_its_udp_port_is_mapped_too() {
    dht_case(&[], "UPnP");
}

#[test]
fn with_the_dht_on_the_same_with_pcp() {
    dht_case(&["--port-mapping-protocol", "pcp"], "PCP");
}

#[test]
fn with_the_dht_on_the_same_with_nat_pmp() {
    dht_case(&["--port-mapping-protocol", "natpmp"], "NAT-PMP");
}

/// With the DHT on, the DHT's own UDP port is mapped too (`by` that
/// protocol, with `extra` flags), and removed at exit. The DHT bootstraps
/// from a small local testnet on H1's own loopback (inside H1's
/// namespace): it only has to start.
fn dht_case(extra: &[&str], by: &str) {
    let Some((lab, _, h1)) = upnp_lab(false) else {
        return;
    };
    let testnet = h1
        .enter(|| {
            mainline::Testnet::builder(3)
                .bind_address(std::net::Ipv4Addr::LOCALHOST)
                .build()
        })
        .unwrap()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--dht-interval", "100ms"];
    for b in &testnet.bootstrap {
        args.extend(["--dht-bootstrap", b.as_str()]);
    }
    args.extend(extra);
    let mut h1_node = Proc::serve_with(
        &lab,
        &h1,
        dir.path(),
        "h1",
        &args,
        &[("RUTELLA_NO_DHT", "0")],
    );
    h1_node.wait_for("DHT started");
    let dht_port = h1_node
        .stderr()
        .lines()
        .find(|l| l.contains("DHT started"))
        .and_then(|l| l.split("addr=").nth(1))
        .and_then(|a| a.split_whitespace().next())
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .map(|a| a.port())
        .unwrap_or_else(|| panic!("no DHT address in {}", h1_node.stderr()));
    assert_ne!(dht_port, 20000);
    // No peer to check with here: the mapping's line only.
    h1_node.wait_for(&format!(
        "Ports mapped by {by} on your router at 11.0.0.11; checking"
    ));

    let list = upnpc_list(&h1);
    assert!(mapped(&list, "UDP", "192.168.1.10:20000"), "{list}");
    assert!(mapped(&list, "TCP", "192.168.1.10:10000"), "{list}");
    assert!(
        mapped(&list, "UDP", &format!("192.168.1.10:{dht_port}")),
        "no mapping of the DHT port {dht_port}: {list}"
    );

    let status = h1_node.terminate();
    assert!(status.success(), "{status:?}: {}", h1_node.stderr());
    let list = upnpc_list(&h1);
    assert!(!list.contains("->192.168.1.10:"), "left behind: {list}");
    drop(testnet);
}

#[test]
fn behind_a_router_that_maps_nothing_the_node_says_so() {
    let Some((lab, p, h2)) = no_mapping_lab() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p_node = Proc::serve(&lab, &p, dir.path(), "p", &[]);
    p_node.wait_for("node started");
    let started = Instant::now();
    let h2_node = Proc::serve(&lab, &h2, dir.path(), "h2", &["--connect", "11.0.0.2"]);
    h2_node.wait_for("No port mapping on your router; checking");
    eprintln!("no mapping: line after {:?}", started.elapsed());
    h2_node.wait_for("Not reachable from the internet");
    assert!(!h2_node.stdout().contains("Reachable at"));
}

#[test]
fn no_port_mapping_by_flag_or_settings_file_leaves_the_router_alone() {
    let Some((lab, Some(p), h1)) = upnp_lab(true) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p_node = Proc::serve(&lab, &p, dir.path(), "p", &[]);
    p_node.wait_for("node started");
    let settings = dir.path().join("settings.toml");
    std::fs::write(&settings, "port_mapping = false\n").unwrap();
    for (name, flags, config) in [
        ("flag", &["--no-port-mapping"][..], None),
        ("file", &[][..], Some(&settings)),
    ] {
        let mut args = vec!["--connect", "11.0.0.2"];
        args.extend(flags);
        let mut env = vec![];
        if let Some(c) = config {
            env.push(("RUTELLA_CONFIG", c.to_str().unwrap()));
        }
        let node = Proc::serve_with(&lab, &h1, dir.path(), name, &args, &env);
        node.wait_for("port mapping is off");
        node.wait_for("peer joined");
        let list = upnpc_list(&h1);
        assert!(!list.contains("->192.168.1.10:"), "{name}: {list}");
        // No word of a mapping (the dial-back check may still say
        // whether the node is reachable).
        assert!(
            !node.stdout().contains("apping") && !node.stdout().contains("mapped"),
            "{name}: {}",
            node.stdout()
        );
    }
}
