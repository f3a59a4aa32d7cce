//! What to simulate.

use rutella_proto::{Config, Mode, ScalableConfig};
use std::time::Duration;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of peers online at any time.
    pub nodes: usize,
    /// Overlay mode of every peer.
    pub mode: Mode,
    /// Searches issued during the measured window.
    pub queries: usize,
    /// Seed of everything random.
    pub seed: u64,
    /// Simulated time in all.
    pub duration: Duration,
    /// Time at the start that is not measured (the overlay forms).
    pub warmup: Duration,
    /// Median session length; `None` for no churn.
    pub churn_median: Option<Duration>,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Median one-way latency of a link.
    pub latency_median: Duration,
    /// Encode every datagram to bytes and parse it at the receiver, as on
    /// a real network (slower; otherwise messages are handed over parsed).
    pub wire: bool,
    /// Settings of the scalable overlay.
    pub scalable: ScalableConfig,
    /// Classic ping interval.
    pub classic_ping_interval: Duration,
    /// Shares of hostile peers.
    pub hostile: Hostile,
    /// Share of peers others can reach unasked (not firewalled).
    pub reachable_share: f64,
    /// Median upload bandwidth of a peer, kB/s (log-normal, sigma 1).
    pub bandwidth_median_kbps: f64,
}

/// Shares of peer slots (0 to 1 each, at most 1 together) that behave in a
/// hostile way; a newcomer in such a slot behaves the same. Searches are
/// issued by honest peers only, and a search counts as answerable only if
/// a peer that answers truthfully holds a match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hostile {
    /// Peers that drop every query they receive (no answer, no forwarding).
    pub drop: f64,
    /// Peers that answer every query with a file that does not exist.
    pub false_hits: f64,
    /// Peers that search again and again, one new search every
    /// `flood_interval`, with random texts.
    pub flood: f64,
    /// Peers that announce the largest degree the protocol accepts in
    /// every message instead of their own.
    pub liar: f64,
    /// Time between two searches of a flooding peer.
    pub flood_interval: Duration,
}

impl Hostile {
    /// Whether no peer is hostile.
    pub fn none(&self) -> bool {
        self.drop + self.false_hits + self.flood + self.liar <= 0.0
    }
}

impl SimConfig {
    /// A configuration with the protocol's defaults.
    pub fn new(nodes: usize, mode: Mode, queries: usize, seed: u64) -> Self {
        SimConfig {
            nodes,
            mode,
            queries,
            seed,
            duration: Duration::from_secs(30 * 60),
            warmup: Duration::from_secs(180),
            churn_median: None,
            loss: 0.01,
            latency_median: Duration::from_millis(40),
            wire: false,
            scalable: ScalableConfig::default(),
            classic_ping_interval: Config::default().ping_interval,
            hostile: Hostile {
                flood_interval: Duration::from_secs(1),
                ..Hostile::default()
            },
            reachable_share: 0.5,
            bandwidth_median_kbps: 48.0,
        }
    }
}
