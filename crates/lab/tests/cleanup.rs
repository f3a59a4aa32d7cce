//! A program that ends on a signal drops no `Lab`: it removes its labs'
//! namespaces, and what runs in them, by itself. Alone in this test
//! binary, since it removes every lab of the process. Needs root; prints
//! one skip line elsewhere.

use rutella_lab::Lab;
use std::process::Command;

fn namespaces() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_labs_of_this_process_are_removed_without_dropping_them() {
    let Some(mut lab) = Lab::or_skip() else {
        return;
    };
    let p = lab.public_host("p", 2).unwrap();
    let r = lab
        .router("r1", 11, rutella_lab::RouterKind::default())
        .unwrap();
    let h = lab.host_behind(&r, "h1").unwrap();
    // A program inside, started without the lab (`sleep` is exec'd by
    // `ip netns exec`, so its process is in the namespace).
    let mut inside = h.command("sleep").arg("30").spawn().unwrap();
    let before = namespaces();
    for ns in [&p.netns, &r.host.netns, &h.netns] {
        assert!(before.contains(ns.as_str()), "{ns} missing: {before}");
    }

    rutella_lab::remove_labs_of_this_process();

    let after = namespaces();
    for ns in [&p.netns, &r.host.netns, &h.netns] {
        assert!(!after.contains(ns.as_str()), "{ns} left: {after}");
    }
    // Killed, not run out: a 30 s sleep ends at once.
    let status = inside.wait().unwrap();
    assert!(!status.success(), "{status}");
    // Dropping the lab afterwards is harmless.
    drop(lab);
}
