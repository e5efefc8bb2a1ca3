//! The inventory as last scanned, kept in the state directory so that
//! `create` does not initialise NVML for every container.

use std::path::{Path, PathBuf};

use super::{Inventory, InventoryError};
use crate::config::Config;
use crate::fsutil;

pub const FILE_NAME: &str = "inventory.json";

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// The snapshot, when it came from the configured source; never a scan.
/// The runtime reads only this: NVML (and the dynamic loader it needs)
/// stays in the `ds01` CLI, which makes a missing snapshot.
pub fn cached(cfg: &Config) -> Option<Inventory> {
    read(&cfg.state_dir).filter(|inv| inv.source == cfg.inventory.describe())
}

/// The saved snapshot, if there is a readable one.
/// Only from a state directory others cannot write to, and a file only root
/// wrote: a forged snapshot (no GPUs, other majors) would open every route.
pub fn read(state_dir: &Path) -> Option<Inventory> {
    fsutil::check_dir(state_dir).ok()?;
    let bytes = fsutil::read_trusted(&path(state_dir)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn save(state_dir: &Path, inv: &Inventory) -> Result<(), InventoryError> {
    let p = path(state_dir);
    let io = |source| InventoryError::Write {
        path: p.clone(),
        source,
    };
    fsutil::ensure_dir(state_dir).map_err(io)?;
    let mut data = serde_json::to_vec_pretty(inv).expect("inventory serialises");
    data.push(b'\n');
    fsutil::write_atomic(&p, &data, 0o644).map_err(io)
}
