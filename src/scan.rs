//! The GPUs and CDI specs read afresh (NVML or the simulated file; the CDI
//! crate) and saved in the state directory, where the runtime reads them.

use ds01_core::cdi;
use ds01_core::config::{Config, InventorySource};
use ds01_core::inventory::{GpuSource, Inventory, InventoryError, sim::SimFile, snapshot};

use crate::cdi_read;
use crate::nvml::NvmlSource;

/// The backend the config names.
pub fn source(cfg: &Config) -> Box<dyn GpuSource> {
    match &cfg.inventory {
        InventorySource::Nvml => Box::new(NvmlSource),
        InventorySource::File(path) => Box::new(SimFile { path: path.clone() }),
    }
}

/// Where GPU activity is read, by the config's `activity`.
pub fn activity(cfg: &Config) -> Box<dyn ds01_core::activity::Activity> {
    use ds01_core::activity::{NoActivity, SimActivity};
    use ds01_core::config::ActivitySource;
    match &cfg.activity {
        ActivitySource::Nvml => Box::new(crate::nvml::NvmlActivity::new()),
        ActivitySource::File(path) => Box::new(SimActivity { path: path.clone() }),
        ActivitySource::None => Box::new(NoActivity),
    }
}

/// The snapshot if it came from the configured source, else a fresh scan,
/// saved when the state directory is writable (it is a cache: a user
/// without write access still gets the inventory).
pub fn load(cfg: &Config) -> Result<Inventory, InventoryError> {
    if let Some(inv) = snapshot::cached(cfg) {
        return Ok(inv);
    }
    let inv = scan(cfg)?;
    let _ = snapshot::save(&cfg.state_dir, &inv);
    Ok(inv)
}

/// Scans the configured source and replaces the snapshot, and reads the CDI
/// specs again (`ds01 gpus refresh`).
pub fn refresh(cfg: &Config) -> Result<Inventory, InventoryError> {
    // First: a host whose GPUs cannot be read still keeps its users fresh,
    // and their shares as the config now says.
    save_accounts(cfg);
    keep_shares(cfg);
    let inv = scan(cfg)?;
    snapshot::save(&cfg.state_dir, &inv)?;
    let path = cdi::catalog_path(&cfg.state_dir);
    cdi::save(&cfg.state_dir, &cdi_read::read(&cfg.cdi_spec_dirs))
        .map_err(|source| InventoryError::Write { path, source })?;
    Ok(inv)
}

/// The users-and-groups snapshot the runtime looks owners up in
/// ([`ds01_core::accounts`]). Only an optimisation: where it cannot be
/// written (a user's refresh, a read-only state), the runtime asks NSS.
pub fn save_accounts(cfg: &Config) {
    use ds01_core::accounts::{self, Snapshot};
    use ds01_core::identity::SystemAccounts;
    let snap = Snapshot::take(&accounts::watched(), accounts::enumerate(), &SystemAccounts);
    if let Err(e) = snap.save(&cfg.state_dir)
        && unsafe { libc::geteuid() } == 0
    {
        ds01_core::log::append(
            &cfg.log,
            "warn",
            &format!("cannot write the users-and-groups snapshot: {e}"),
        );
    }
}

/// Writes each owner's share, as the config now says, on every parent
/// ds01 has made (a config change reaches running parents here), and the
/// marker that shares are on. Failures are logged (a lowered memory limit
/// the user is over now, say) and returned, one line each.
pub fn keep_shares(cfg: &Config) -> Vec<String> {
    use ds01_core::identity::SystemAccounts;
    use ds01_core::share::{self, Share};
    if unsafe { libc::geteuid() } != 0 {
        return Vec::new();
    }
    let mut failed = Vec::new();
    if let Err(e) = share::mark(&cfg.state_dir, cfg.policy.shares_host()) {
        failed.push(format!("{:?}: {e}", share::marker(&cfg.state_dir)));
    }
    let mut reload = false;
    for (user, parent) in share::stamps(&cfg.state_dir) {
        let e = cfg.policy.effective(Some(&user), &SystemAccounts);
        match cfg.cgroups.apply(&parent, &Share::of(&e)) {
            Ok(changed) => reload |= changed,
            Err(e) => failed.push(format!("{user}'s share on {parent}: {e}")),
        }
    }
    if reload && let Err(e) = share::reload_units() {
        failed.push(e);
    }
    for f in &failed {
        ds01_core::log::append(&cfg.log, "warn", f);
    }
    failed
}

fn scan(cfg: &Config) -> Result<Inventory, InventoryError> {
    let mut inv = source(cfg).scan()?;
    inv.source = cfg.inventory.describe();
    Ok(inv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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
            cdi_spec_dirs: vec![dir.path().join("cdi")],
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

    #[test]
    fn refresh_makes_the_cdi_catalog_current() {
        let dir = tempfile::tempdir().unwrap();
        let cdi_dir = dir.path().join("cdi");
        std::fs::create_dir(&cdi_dir).unwrap();
        std::fs::write(
            cdi_dir.join("nvidia.json"),
            r#"{"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu",
                "devices": [{"name": "0", "containerEdits": {"env": ["A=1"]}}]}"#,
        )
        .unwrap();
        let cfg = Config {
            state_dir: dir.path().join("state"),
            inventory: InventorySource::File(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/sim/inventory.toml"),
            ),
            cdi_spec_dirs: vec![cdi_dir],
            ..Config::default()
        };
        assert_eq!(cdi::current(&cfg.state_dir, &cfg.cdi_spec_dirs), None);
        refresh(&cfg).unwrap();
        let c = cdi::current(&cfg.state_dir, &cfg.cdi_spec_dirs).unwrap();
        assert_eq!(c.specs.len(), 1);
        assert_eq!(c.specs[0].devices[0].0, "0");
        assert_eq!(c.specs[0].devices[0].1.env, ["A=1"]);
    }
}
