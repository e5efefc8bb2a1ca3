//! The ledger's data model: one allocation's record, and the records, with
//! the rule that tells a record no longer holding its devices.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::host::Host;
use crate::inventory::UnitKind;

/// One allocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Unique per `create`; the poststop hook names it, so a late hook of
    /// an earlier run can never free a later run's devices.
    pub alloc_id: String,
    pub container_id: String,
    pub bundle: PathBuf,
    /// runc's `--root`.
    pub root: PathBuf,
    /// UUIDs of the allocated GPUs or MIG slices.
    pub devices: Vec<String>,
    pub kind: UnitKind,
    pub profile: String,
    /// GPU-equivalents of the devices, counted against the owner's share.
    #[serde(default)]
    pub gpueq: f64,
    /// The owner, `None` when unknown.
    #[serde(default)]
    pub user: Option<String>,
    /// What decided the owner.
    #[serde(default)]
    pub identity_source: crate::identity::Source,
    /// RFC 3339.
    pub since: String,
    pub boot_id: String,
    /// The container's init process, once runc has created it.
    pub pid: Option<u32>,
    pub pid_start: Option<u64>,
    /// The shim that allocated, while the container has no pid yet.
    pub shim_pid: u32,
    pub shim_start: Option<u64>,
}

impl Record {
    pub fn since_time(&self) -> Option<SystemTime> {
        crate::time::parse(&self.since)
    }

    /// Why this record no longer holds its devices, or `None` while it does.
    /// A record without an init pid belongs to a create in flight for as
    /// long as any process of that create (the runtime, or the runc it
    /// started, even orphaned) holds its marker in `pending_dir`, and to a
    /// container once runc knows it. No timeout: a slow create is a live one.
    /// The container's init process while it lives: the one noted at
    /// create, or else the one runc's state names (a create that became
    /// runc notes none), its start time checked against a reused pid.
    /// As [`Record::stale_reason`] judges them: a noted pid needs its start
    /// time; runc's state may lack one.
    pub fn live_init(&self, host: &dyn Host) -> Option<u32> {
        if let Some(pid) = self.pid {
            let now = host.process_start(pid)?;
            return (Some(now) == self.pid_start).then_some(pid);
        }
        let (pid, start) = host.runc_init(&self.root, &self.container_id)?;
        let now = host.process_start(pid)?;
        start.is_none_or(|s| s == now).then_some(pid)
    }

    pub fn stale_reason(&self, host: &dyn Host, pending_dir: &Path) -> Option<String> {
        if self.boot_id != host.boot_id() {
            return Some("written during an earlier boot".into());
        }
        if let Some(pid) = self.pid {
            return match host.process_start(pid) {
                None => Some(format!("init process {pid} is dead")),
                Some(start) if Some(start) != self.pid_start => {
                    Some(format!("pid {pid} now belongs to another process"))
                }
                Some(_) => None,
            };
        }
        // The marker first: once no process of the create holds it, runc
        // has written whatever state it ever will.
        if host.create_in_flight(&pending_dir.join(&self.alloc_id)) {
            return None;
        }
        if host.runc_knows(&self.root, &self.container_id) {
            // runc's state names the init: once it died the container is
            // stopped, and may be one no one is left to delete.
            if let Some((pid, start)) = host.runc_init(&self.root, &self.container_id) {
                match host.process_start(pid) {
                    None => return Some(format!("its container is stopped (init {pid} is dead)")),
                    Some(s) if start.is_some_and(|t| t != s) => {
                        return Some(format!(
                            "its container is stopped (pid {pid} now belongs to another process)"
                        ));
                    }
                    Some(_) => {}
                }
            }
            return None;
        }
        Some("runc knows no such container and no create of it is in flight".into())
    }
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Records {
    pub records: Vec<Record>,
}

impl Records {
    /// Whether a device is held by any record.
    pub fn holds(&self, uuid: &str) -> bool {
        self.records
            .iter()
            .any(|r| r.devices.iter().any(|d| d == uuid))
    }

    /// The record holding a device.
    pub fn holder(&self, uuid: &str) -> Option<&Record> {
        self.records
            .iter()
            .find(|r| r.devices.iter().any(|d| d == uuid))
    }

    /// Removes and returns the records `pred` selects.
    pub fn take(&mut self, pred: impl Fn(&Record) -> bool) -> Vec<Record> {
        let (gone, kept) = std::mem::take(&mut self.records)
            .into_iter()
            .partition(|r| pred(r));
        self.records = kept;
        gone
    }

    /// Removes the stale records, returning each with its reason.
    pub fn reclaim(&mut self, host: &dyn Host, pending_dir: &Path) -> Vec<(Record, String)> {
        self.reclaim_where(host, pending_dir, |_| true)
    }

    /// Removes the stale records among those `pred` selects.
    pub fn reclaim_where(
        &mut self,
        host: &dyn Host,
        pending_dir: &Path,
        pred: impl Fn(&Record) -> bool,
    ) -> Vec<(Record, String)> {
        let mut out = Vec::new();
        self.records.retain(
            |r| match r.stale_reason(host, pending_dir).filter(|_| pred(r)) {
                Some(why) => {
                    out.push((r.clone(), why));
                    false
                }
                None => true,
            },
        );
        out
    }
}
