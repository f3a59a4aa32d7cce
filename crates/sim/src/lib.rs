//! A deterministic discrete-event simulator of rutella overlays.
//!
//! Thousands of [`rutella_proto::Overlay`] state machines, the very code the
//! node runs, play in virtual time, split into partitions that run on
//! their own threads in windows shorter than any link's latency. Every datagram the
//! overlays emit is delivered after a latency drawn for its link, or lost;
//! peers leave and new ones join (churn); every peer shares a library drawn
//! from a Zipf-skewed catalogue plus files nobody else has. Queries for
//! names of that catalogue are issued at random peers, and the simulator
//! measures what the scaling study needs (see [`Summary`]).
//!
//! The same [`SimConfig`] (seed included) gives the same [`Summary`], bit
//! for bit: all randomness comes from seeded generators, and every
//! collection whose order matters is ordered.
#![warn(missing_docs)]

mod capability;
mod config;
mod engine;
pub mod figures;
mod queries;
mod queue;
mod records;
mod summary;
mod workload;

pub use config::{Hostile, SimConfig};
pub use summary::{
    quantile, Attachment, ClassFigures, LoadFigures, Summary, TierVsClean, VsClean,
    PEER_RATIO_FLOOR,
};
pub use workload::Workload;

use engine::Sim;

/// Runs one simulation on all the cores there are.
pub fn run(cfg: &SimConfig) -> Summary {
    run_threads(cfg, default_threads())
}

/// Runs one simulation with the peers split over `threads` threads; the
/// result is the same for any number.
pub fn run_threads(cfg: &SimConfig, threads: usize) -> Summary {
    let mut sim = Sim::new(cfg, threads);
    sim.setup();
    sim.run_loop();
    sim.summary()
}

/// Runs `cfg`, and the same configuration without hostile peers, and
/// returns the first run's summary with `vs_clean` filled in (the load of
/// the same honest peers in both runs, see [`VsClean`]).
pub fn run_against_clean(cfg: &SimConfig, threads: usize) -> Summary {
    let mut plain = cfg.clone();
    plain.hostile = Hostile {
        flood_interval: cfg.hostile.flood_interval,
        ..Hostile::default()
    };
    let clean = {
        let mut sim = Sim::new(&plain, threads);
        sim.setup();
        sim.run_loop();
        summary::CleanRun::of(&sim)
    };
    let mut sim = Sim::new(cfg, threads);
    sim.setup();
    sim.run_loop();
    let mut mine = sim.summary();
    mine.vs_clean = Some(sim.vs_clean(&mine, &clean));
    mine
}

/// The cores available to this process.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
