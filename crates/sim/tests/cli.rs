//! The `rutella-sim` command line: one JSON summary, the same for the same seed.

use std::process::Command;

fn run(seed: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rutella-sim"))
        .args(["--nodes", "60", "--mode", "scalable", "--queries", "30"])
        .args(["--minutes", "2", "--seed", seed, "--json"])
        .output()
        .expect("the simulator runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[test]
fn prints_one_json_summary_deterministically() {
    let a = run("9");
    let v: serde_json::Value = serde_json::from_str(&a).expect("one JSON object");
    assert_eq!(v["nodes"], 60);
    assert_eq!(v["mode"], "scalable");
    assert_eq!(v["queries"], 30);
    for key in [
        "success_rate",
        "maintenance_msgs_per_peer_per_sec",
        "popular",
        "unique",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert!(v["popular"]["messages_median"].is_number());
    assert!(v["all"]["hops_to_first_hit_median"].is_number());
    assert_eq!(a, run("9"));
}

#[test]
fn bad_arguments_are_refused_with_a_reason() {
    let out = Command::new(env!("CARGO_BIN_EXE_rutella-sim"))
        .args(["--nodes", "1", "--json"])
        .output()
        .expect("the simulator runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--nodes must be at least 2"));
}
