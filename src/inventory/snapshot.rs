//! The inventory as last scanned, kept in the state directory so that
//! `create` does not initialise NVML for every container.

use std::path::{Path, PathBuf};

use super::{GpuSource, Inventory, InventoryError, nvml::NvmlSource, sim::SimFile};
use crate::config::{Config, InventorySource};
use crate::fsutil;

pub const FILE_NAME: &str = "inventory.json";

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// The backend the config names.
pub fn source(cfg: &Config) -> Box<dyn GpuSource> {
    match &cfg.inventory {
        InventorySource::Nvml => Box::new(NvmlSource),
        InventorySource::File(path) => Box::new(SimFile { path: path.clone() }),
    }
}

/// The snapshot if it came from the configured source, else a fresh scan,
/// saved when the state directory is writable (it is a cache: a user
/// without write access still gets the inventory).
pub fn load(cfg: &Config) -> Result<Inventory, InventoryError> {
    if let Some(inv) = read(&cfg.state_dir)
        && inv.source == cfg.inventory.describe()
    {
        return Ok(inv);
    }
    let inv = scan(cfg)?;
    let _ = save(&cfg.state_dir, &inv);
    Ok(inv)
}

/// The snapshot, when it came from the configured source; never a scan.
/// The runtime reads only this: NVML (and the dynamic loader it needs)
/// stays in the `ds01` CLI, which makes a missing snapshot.
pub fn cached(cfg: &Config) -> Option<Inventory> {
    read(&cfg.state_dir).filter(|inv| inv.source == cfg.inventory.describe())
}

/// Scans the configured source and replaces the snapshot (`ds01 gpus refresh`).
pub fn refresh(cfg: &Config) -> Result<Inventory, InventoryError> {
    let inv = scan(cfg)?;
    save(&cfg.state_dir, &inv)?;
    Ok(inv)
}

fn scan(cfg: &Config) -> Result<Inventory, InventoryError> {
    let mut inv = source(cfg).scan()?;
    inv.source = cfg.inventory.describe();
    Ok(inv)
}

/// The saved snapshot, if there is a readable one.
/// Only from a state directory others cannot write to, and a file only root
/// wrote: a forged snapshot (no GPUs, other majors) would open every route.
pub fn read(state_dir: &Path) -> Option<Inventory> {
    fsutil::check_dir(state_dir).ok()?;
    let bytes = fsutil::read_trusted(&path(state_dir)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn save(state_dir: &Path, inv: &Inventory) -> Result<(), InventoryError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_is_reused_until_the_source_changes() {
        let dir = tempfile::tempdir().unwrap();
        let sim = dir.path().join("inv.toml");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/sim/inventory.toml"),
            &sim,
        )
        .unwrap();
        let cfg = Config {
            state_dir: dir.path().join("state"),
            inventory: InventorySource::File(sim.clone()),
            ..Config::default()
        };
        let first = load(&cfg).unwrap();
        assert_eq!(first.gpus.len(), 2);
        // The file changes, but create keeps using the snapshot...
        std::fs::write(&sim, "[majors]\nuvm = 511\n").unwrap();
        assert_eq!(load(&cfg).unwrap().gpus.len(), 2);
        // ...until a refresh.
        assert_eq!(refresh(&cfg).unwrap().gpus.len(), 0);
        assert_eq!(load(&cfg).unwrap().gpus.len(), 0);
    }
}
