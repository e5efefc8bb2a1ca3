//! Fakes for the core's unit tests: a host whose processes, boot, runc
//! state and creates in flight the test sets.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::host::Host;
use crate::inventory::UnitKind;
use crate::record::Record;
use crate::time::timestamp;

#[derive(Default)]
pub struct FakeHost {
    pub now: RefCell<Option<SystemTime>>,
    pub boot: String,
    pub procs: RefCell<HashMap<u32, u64>>,
    pub runc: RefCell<Vec<String>>,
    /// The init (pid, start) runc's state names, by container id.
    pub runc_inits: RefCell<HashMap<String, (u32, Option<u64>)>>,
    /// Markers of creates in flight.
    pub in_flight: RefCell<Vec<PathBuf>>,
}

impl Host for FakeHost {
    fn now(&self) -> SystemTime {
        self.now
            .borrow()
            .unwrap_or(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000))
    }
    fn boot_id(&self) -> String {
        self.boot.clone()
    }
    fn process_start(&self, pid: u32) -> Option<u64> {
        self.procs.borrow().get(&pid).copied()
    }
    fn runc_knows(&self, _root: &Path, id: &str) -> bool {
        self.runc.borrow().iter().any(|c| c == id)
    }
    fn runc_init(&self, root: &Path, id: &str) -> Option<(u32, Option<u64>)> {
        self.runc_knows(root, id)
            .then(|| self.runc_inits.borrow().get(id).copied())
            .flatten()
    }
    fn create_in_flight(&self, marker: &Path) -> bool {
        self.in_flight.borrow().iter().any(|m| m == marker)
    }
}

/// A record of a pending MIG allocation for container `id`.
pub fn record(id: &str, devices: &[&str], host: &FakeHost) -> Record {
    Record {
        alloc_id: format!("{id}-1"),
        container_id: id.into(),
        bundle: format!("/b/{id}").into(),
        root: "/run/runc".into(),
        devices: devices.iter().map(|d| d.to_string()).collect(),
        kind: UnitKind::Mig,
        profile: "1g.10gb".into(),
        gpueq: 1.0 / 7.0,
        user: None,
        identity_source: crate::identity::Source::Unknown,
        since: timestamp(host.now()),
        boot_id: host.boot.clone(),
        pid: None,
        pid_start: None,
        shim_pid: 10,
        shim_start: Some(5),
    }
}

/// Accounts with no users and no groups.
pub struct Nobody;

impl crate::policy::Groups for Nobody {
    fn groups_of(&self, _: &str) -> Vec<String> {
        Vec::new()
    }
}

impl crate::identity::Accounts for Nobody {
    fn user_name(&self, _: u32) -> Option<String> {
        None
    }
}

/// The simulated host of `contrib/sim/inventory.toml`: a full GPU and one
/// split into seven slices.
pub fn sim_inventory() -> crate::inventory::Inventory {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/sim/inventory.toml");
    crate::inventory::sim::parse(&p, &std::fs::read_to_string(&p).unwrap()).unwrap()
}
