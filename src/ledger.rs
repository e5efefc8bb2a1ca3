//! The allocation ledger: who holds which device. One JSON file in the state
//! directory, changed only under an exclusive `flock` and replaced
//! atomically, so readers never need the lock and a crash leaves it whole.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::host::Host;
use crate::inventory::Kind;

pub const FILE_NAME: &str = "ledger.json";
const LOCK_NAME: &str = "ledger.lock";

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger {path:?}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ledger {path:?}: unreadable ({msg}); move it aside and run 'ds01 gc' to start afresh")]
    Corrupt { path: PathBuf, msg: String },
}

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
    pub kind: Kind,
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
        humantime::parse_rfc3339(&self.since).ok()
    }

    /// Why this record no longer holds its devices, or `None` while it does.
    pub fn stale_reason(&self, host: &dyn Host, pending_grace: Duration) -> Option<String> {
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
        if host.runc_knows(&self.root, &self.container_id) {
            return None;
        }
        // Alive: the same process (same start time), or, where the start
        // time could not be read, any process with that pid.
        let shim_alive = match (host.process_start(self.shim_pid), self.shim_start) {
            (Some(now), Some(then)) => now == then,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !shim_alive {
            return Some("its create died before runc made the container".into());
        }
        let age = self
            .since_time()
            .and_then(|t| host.now().duration_since(t).ok())
            .unwrap_or_default();
        (age > pending_grace).then(|| {
            format!(
                "no container after {}s and runc knows no such container",
                age.as_secs()
            )
        })
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
    pub fn reclaim(&mut self, host: &dyn Host, grace: Duration) -> Vec<(Record, String)> {
        let mut out = Vec::new();
        self.records.retain(|r| match r.stale_reason(host, grace) {
            Some(why) => {
                out.push((r.clone(), why));
                false
            }
            None => true,
        });
        out
    }
}

pub struct Ledger {
    dir: PathBuf,
}

impl Ledger {
    pub fn new(state_dir: &Path) -> Ledger {
        Ledger {
            dir: state_dir.to_path_buf(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// The records as last written. Needs no lock: the file is only ever replaced whole.
    pub fn read(&self) -> Result<Records, LedgerError> {
        let path = self.path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| LedgerError::Corrupt {
                path,
                msg: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Records::default()),
            Err(source) => Err(LedgerError::Io { path, source }),
        }
    }

    /// Runs `f` on the records under the exclusive lock and writes them back
    /// if they changed. The lock is released when this returns.
    pub fn update<T>(&self, f: impl FnOnce(&mut Records) -> T) -> Result<T, LedgerError> {
        let _lock = self.lock()?;
        let before = self.read()?;
        let mut records = before.clone();
        let out = f(&mut records);
        if records != before {
            let path = self.path();
            let mut data = serde_json::to_vec_pretty(&records).expect("records serialise");
            data.push(b'\n');
            fsutil::write_atomic(&path, &data, 0o644)
                .map_err(|source| LedgerError::Io { path, source })?;
        }
        Ok(out)
    }

    fn lock(&self) -> Result<File, LedgerError> {
        let path = self.dir.join(LOCK_NAME);
        let io = |source| LedgerError::Io {
            path: path.clone(),
            source,
        };
        fsutil::ensure_dir(&self.dir).map_err(io)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(io)?;
        file.lock().map_err(io)?;
        Ok(file)
    }
}

/// RFC 3339 at second precision, for records and logs.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// A host whose processes, boot and runc state the test sets.
    #[derive(Default)]
    pub struct FakeHost {
        pub now: RefCell<Option<SystemTime>>,
        pub boot: String,
        pub procs: RefCell<HashMap<u32, u64>>,
        pub runc: RefCell<Vec<String>>,
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
    }

    pub fn record(id: &str, devices: &[&str], host: &FakeHost) -> Record {
        Record {
            alloc_id: format!("{id}-1"),
            container_id: id.into(),
            bundle: format!("/b/{id}").into(),
            root: "/run/runc".into(),
            devices: devices.iter().map(|d| d.to_string()).collect(),
            kind: Kind::Mig,
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

    fn host() -> FakeHost {
        FakeHost {
            boot: "boot-a".into(),
            ..FakeHost::default()
        }
    }

    const GRACE: Duration = Duration::from_secs(60);

    #[test]
    fn live_container_is_not_stale() {
        let h = host();
        h.procs.borrow_mut().insert(100, 42);
        let mut r = record("c1", &["MIG-1"], &h);
        r.pid = Some(100);
        r.pid_start = Some(42);
        assert_eq!(r.stale_reason(&h, GRACE), None);
    }

    #[test]
    fn dead_or_reused_pid_is_stale() {
        let h = host();
        let mut r = record("c1", &["MIG-1"], &h);
        r.pid = Some(100);
        r.pid_start = Some(42);
        assert!(r.stale_reason(&h, GRACE).unwrap().contains("dead"));
        h.procs.borrow_mut().insert(100, 43);
        assert!(
            r.stale_reason(&h, GRACE)
                .unwrap()
                .contains("another process")
        );
    }

    #[test]
    fn earlier_boot_is_stale_even_if_pid_lives() {
        let h = host();
        h.procs.borrow_mut().insert(100, 42);
        let mut r = record("c1", &["MIG-1"], &h);
        r.pid = Some(100);
        r.pid_start = Some(42);
        r.boot_id = "boot-old".into();
        assert!(r.stale_reason(&h, GRACE).unwrap().contains("earlier boot"));
    }

    #[test]
    fn pending_record_is_kept_while_its_shim_lives_and_within_grace() {
        let h = host();
        h.procs.borrow_mut().insert(10, 5);
        let r = record("c1", &["MIG-1"], &h);
        assert_eq!(r.stale_reason(&h, GRACE), None);
        // Past the bound, with runc knowing nothing of it: stale.
        *h.now.borrow_mut() = Some(h.now() + Duration::from_secs(61));
        assert!(
            r.stale_reason(&h, GRACE)
                .unwrap()
                .contains("runc knows no such")
        );
        // But not while runc knows the container.
        h.runc.borrow_mut().push("c1".into());
        assert_eq!(r.stale_reason(&h, GRACE), None);
    }

    #[test]
    fn a_shim_whose_start_time_was_unknown_is_alive_while_its_pid_is() {
        let h = host();
        let mut r = record("c1", &["MIG-1"], &h);
        r.shim_start = None;
        h.procs.borrow_mut().insert(10, 77);
        assert_eq!(r.stale_reason(&h, GRACE), None);
        h.procs.borrow_mut().clear();
        assert!(r.stale_reason(&h, GRACE).is_some());
    }

    #[test]
    fn pending_record_of_a_killed_shim_is_stale_at_once() {
        let h = host();
        let r = record("c1", &["MIG-1"], &h);
        assert!(r.stale_reason(&h, GRACE).unwrap().contains("died"));
    }

    #[test]
    fn update_persists_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(&dir.path().join("state"));
        assert!(ledger.read().unwrap().records.is_empty());
        let h = host();
        ledger
            .update(|rs| rs.records.push(record("c1", &["MIG-1"], &h)))
            .unwrap();
        let rs = ledger.read().unwrap();
        assert!(rs.holds("MIG-1"));
        assert_eq!(rs.holder("MIG-1").unwrap().container_id, "c1");
        let gone = ledger
            .update(|rs| rs.take(|r| r.container_id == "c1"))
            .unwrap();
        assert_eq!(gone.len(), 1);
        assert!(ledger.read().unwrap().records.is_empty());
        // Taking it again is a no-op: release is idempotent.
        assert!(
            ledger
                .update(|rs| rs.take(|r| r.container_id == "c1"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn files_are_world_readable_owner_writable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(dir.path());
        let h = host();
        ledger
            .update(|rs| rs.records.push(record("c1", &["MIG-1"], &h)))
            .unwrap();
        let mode = std::fs::metadata(ledger.path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn concurrent_updates_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let h = host();
                    let ledger = Ledger::new(&path);
                    for i in 0..10 {
                        let id = format!("c{t}-{i}");
                        ledger
                            .update(|rs| rs.records.push(record(&id, &[&id], &h)))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(Ledger::new(&path).read().unwrap().records.len(), 80);
    }

    #[test]
    fn corrupt_ledger_names_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "{").unwrap();
        let msg = Ledger::new(dir.path()).read().unwrap_err().to_string();
        assert!(
            msg.contains("ledger.json") && msg.contains("ds01 gc"),
            "{msg}"
        );
    }
}
