//! When the command line uses LAN discovery, and what the console says
//! about the peers it found.

use rutella_node::{Client, NodeConfig, PeerAddr};
use std::time::Duration;

/// A one-shot search uses LAN discovery only when it is given no peer
/// (and neither the flag nor the settings file turned it off): a search
/// told where to go stays there, and sends nothing to the local network.
/// It only looks: a probe, which nodes answer without taking it for a
/// peer (it is gone a few seconds later).
pub(crate) fn oneshot_search(cfg: &mut NodeConfig, connect: &[PeerAddr]) {
    if !connect.is_empty() {
        cfg.lan = None;
        return;
    }
    let off = crate::config_file::path()
        .and_then(|p| crate::config_file::ConfigFile::load(&p))
        .map(|f| f.lan_discovery == Some(false))
        .unwrap_or(false);
    if off {
        cfg.lan = None;
    }
    // It looks, but is no node to join: it probes instead of announcing.
    if let Some(lan) = cfg.lan.as_mut() {
        lan.timers.announce = false;
    }
}

/// Waits (at most `max`) for LAN discovery to find a first peer, then a
/// moment more for the others that answer the same query; returns how
/// many were found.
pub(crate) async fn wait_found(client: &Client, max: Duration, settle: Duration) -> usize {
    let mut found = client.lan_found();
    let first = tokio::time::timeout(max, found.wait_for(|n| *n > 0))
        .await
        .is_ok_and(|r| r.is_ok());
    if first {
        tokio::time::sleep(settle).await;
    }
    let n = *found.borrow();
    n
}

/// The console's sentence about what LAN discovery found.
pub(crate) fn found_line(n: usize) -> String {
    match n {
        0 => "No peers found yet: waiting for others, or type connect ADDR.".to_string(),
        1 => "Found 1 peer on your network.".to_string(),
        n => format!("Found {n} peers on your network."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_lines() {
        assert_eq!(found_line(2), "Found 2 peers on your network.");
        assert_eq!(found_line(1), "Found 1 peer on your network.");
        assert!(found_line(0).starts_with("No peers found yet"));
    }
}
