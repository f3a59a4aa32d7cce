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
        }
    }
}
