//! What each peer could offer as an ultrapeer: whether others can reach
//! it unasked (not firewalled) and its upload bandwidth, drawn per slot
//! from the seed (a newcomer in a slot has the same).

use crate::config::SimConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One slot's capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Capability {
    /// Not firewalled.
    pub(crate) reachable: bool,
    /// Upload bandwidth, kB/s.
    pub(crate) bandwidth: u32,
}

/// The capability of every slot, from its own generator (so that the
/// other draws do not depend on it). Slot 0, the peer of last resort for
/// joining, is reachable and fast, as a well-known address would be.
pub(crate) fn capabilities(cfg: &SimConfig) -> Vec<Capability> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x6361_7061_6269_6c65);
    (0..cfg.nodes)
        .map(|slot| {
            let reachable = rng.gen_bool(cfg.reachable_share.clamp(0.0, 1.0));
            // Log-normal bandwidth, sigma 1.
            let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
            let u2: f64 = rng.gen_range(0.0..1.0);
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            let bw = (cfg.bandwidth_median_kbps * z.exp()).clamp(1.0, 1e9) as u32;
            if slot == 0 {
                Capability {
                    reachable: true,
                    bandwidth: bw.max(u32::MAX / 2),
                }
            } else {
                Capability {
                    reachable,
                    bandwidth: bw,
                }
            }
        })
        .collect()
}
