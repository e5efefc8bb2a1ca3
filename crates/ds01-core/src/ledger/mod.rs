//! The allocation ledger: who holds which device. One JSON file in the state
//! directory, changed only under an exclusive `flock` and replaced
//! atomically, so readers never need the lock and a crash leaves it whole.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::audit;
use crate::config::Config;
use crate::fsutil;
use crate::host::{Host, RealHost};
pub use crate::record::{Record, Records};

mod rebuild;
pub use rebuild::{KNOWN_ROOTS, Note, note_of};

pub const FILE_NAME: &str = "ledger.json";
/// Mode 0600 from the start (an earlier `ledger.lock` was readable, so
/// lockable, by all, and a handle opened then would outlive a chmod).
const LOCK_NAME: &str = "lock";

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger {path:?}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "ledger {path:?}: unreadable ({msg}); run 'ds01 gc --rebuild' (as root) to rebuild it from the running containers"
    )]
    Corrupt { path: PathBuf, msg: String },
    #[error(
        "GPU ledger busy: {path:?} has been locked by another process for {secs}s; try again, \
         and if it stays busy, find the holder with 'fuser -v {path:?}'"
    )]
    Busy { path: PathBuf, secs: u64 },
}

pub struct Ledger {
    dir: PathBuf,
    wait: Duration,
    on_released: Option<Box<OnReleased>>,
    on_recovered: Option<Box<OnRecovered>>,
    /// Processes, runc's state, the boot: what staleness is judged by.
    host: Rc<dyn Host>,
}

/// Told of the records a write puts back from their markers (see
/// [`Ledger::update`]), each with the containers of other records that
/// hold one of its devices too.
pub type OnRecovered = dyn Fn(&[(Record, Vec<String>)]) + Send + Sync;

/// Told of the records a write takes out because their poststop hook
/// marked them released (see [`RELEASED_DIR`]), each with the time of its
/// mark (when the hook ran).
pub type OnReleased = dyn Fn(&[(Record, SystemTime)]) + Send + Sync;

/// How long a lock is waited for unless the config says otherwise.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);
/// Where markers of creates in flight live, in the state directory.
pub const PENDING_DIR: &str = "pending";
/// Where init pids are noted until the ledger's next write takes them in.
pub const PIDS_DIR: &str = "pids";
/// Where the poststop hook (`ds01-poststop`) marks an allocation released:
/// an empty file named by its id, made without the lock by a program too
/// small to parse the ledger. Every reader counts a marked record as gone
/// at once; the next write takes it out.
pub const RELEASED_DIR: &str = "released";

/// An init process as [`Ledger::note_pid`] notes it.
#[derive(Debug, Serialize, Deserialize)]
struct PidNote {
    pid: u32,
    start: u64,
}
/// The held marker of one create in flight (see [`Record::stale_reason`]).
/// Its descriptor is handed on to runc, so the marker stays held while any
/// process of the create lives, even when the runtime itself is killed. A
/// create that becomes runc never drops it: the file stays with the record,
/// and the write that takes the record out removes it.
pub struct Pending {
    file: File,
    path: PathBuf,
}

impl Pending {
    pub fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.file.as_raw_fd()
    }

    /// Writes the record into the marker, so a rebuild finds the create.
    pub fn describe(&self, record: &Record) {
        use std::io::Write;
        let data = serde_json::to_vec(record).expect("records serialise");
        let _ = (&self.file).write_all(&data);
    }

    /// Empties the marker: the record it held never reached the ledger.
    pub fn describe_none(&self) {
        let _ = self.file.set_len(0);
    }
}

/// Dropped, the create is over (the runtime, runc's parent, noted the init
/// pid, or it released): the marker goes. A runtime killed first leaves it
/// to the sweep of the ledger's next write.
impl Drop for Pending {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Ledger {
    pub fn new(state_dir: &Path) -> Ledger {
        Ledger {
            dir: state_dir.to_path_buf(),
            wait: LOCK_WAIT,
            on_released: None,
            on_recovered: None,
            host: Rc::new(RealHost),
        }
    }

    /// The ledger of a config: its state directory and lock wait, with
    /// the records the poststop hook marked released logged and audited
    /// by whichever write takes them out.
    pub fn of(cfg: &Config) -> Ledger {
        let (log, audit_log) = (cfg.log.clone(), cfg.audit_log.clone());
        let cfg_log = cfg.log.clone();
        Ledger::new(&cfg.state_dir)
            .wait(Duration::from_secs(cfg.lock_wait_secs))
            .on_released(move |gone| audit::note_released(&log, &audit_log, "poststop", gone))
            .on_recovered(move |back| {
                for (r, also) in back {
                    let (level, tail) = if also.is_empty() {
                        ("warn", String::new())
                    } else {
                        (
                            "error",
                            format!(
                                "; container(s) {} were given a device of it meanwhile: both use it until one is deleted (see 'ds01 gpus')",
                                also.join(", ")
                            ),
                        )
                    };
                    crate::log::append(
                        &cfg_log,
                        level,
                        &format!(
                            "container {} holds {} but the ledger had lost its record: recorded again from its marker{tail}",
                            r.container_id,
                            r.devices.join(",")
                        ),
                    );
                }
            })
    }

    /// What to do with the records a write puts back from their markers
    /// (log them).
    pub fn on_recovered(
        mut self,
        f: impl Fn(&[(Record, Vec<String>)]) + Send + Sync + 'static,
    ) -> Ledger {
        self.on_recovered = Some(Box::new(f));
        self
    }

    /// Judges staleness by `host` rather than the machine (tests).
    pub fn with_host(mut self, host: Rc<dyn Host>) -> Ledger {
        self.host = host;
        self
    }

    /// What to do with the records the poststop hook marked released, once
    /// a write has taken them out (log and audit them).
    pub fn on_released(
        mut self,
        f: impl Fn(&[(Record, SystemTime)]) + Send + Sync + 'static,
    ) -> Ledger {
        self.on_released = Some(Box::new(f));
        self
    }

    /// How long to wait for the lock before refusing as busy.
    pub fn wait(mut self, wait: Duration) -> Ledger {
        self.wait = wait;
        self
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    pub fn pending_dir(&self) -> PathBuf {
        self.dir.join(PENDING_DIR)
    }

    fn released_dir(&self) -> PathBuf {
        self.dir.join(RELEASED_DIR)
    }

    fn io(path: &Path) -> impl Fn(std::io::Error) -> LedgerError + '_ {
        move |source| LedgerError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// `ds01 gc`: reclaims every stale record now (the write sweeps the
    /// markers of creates that died before allocating, as every write
    /// does). Returns what was reclaimed, and why.
    pub fn gc(&self) -> Result<Vec<(Record, String)>, LedgerError> {
        let host = &*self.host;
        let pending = self.pending_dir();
        self.update(|rs| rs.reclaim(host, &pending))
    }

    /// Whether the ledger holds anything for this container. Reads without
    /// the lock, so `delete` of a container without a GPU costs one file read.
    pub fn holds_container(&self, root: &Path, id: &str) -> bool {
        self.read_file().is_ok_and(|rs| {
            rs.records
                .iter()
                .any(|r| r.container_id == id && r.root == root)
        })
    }

    /// The records as last written. Needs no lock: the file is only ever replaced whole.
    /// Init pids noted beside the ledger ([`Ledger::note_pid`]) are filled in,
    /// and records the poststop hook marked released are left out.
    pub fn read(&self) -> Result<Records, LedgerError> {
        let mut records = self.read_noted()?;
        self.take_released(&mut records);
        Ok(records)
    }

    /// Takes out and returns the records marked released, each with the
    /// time of its mark.
    fn take_released(&self, records: &mut Records) -> Vec<(Record, SystemTime)> {
        let marks = self.released_marks();
        if marks.is_empty() {
            return Vec::new();
        }
        let when = |r: &Record| {
            std::fs::symlink_metadata(self.released_dir().join(&r.alloc_id))
                .and_then(|m| m.modified())
                .unwrap_or_else(|_| SystemTime::now())
        };
        records
            .take(|r| marks.contains(&r.alloc_id))
            .into_iter()
            .map(|r| {
                let at = when(&r);
                (r, at)
            })
            .collect()
    }

    /// The allocation ids marked released.
    fn released_marks(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.released_dir()) else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| !name.starts_with('.'))
            .collect()
    }

    /// Takes out of the file what the poststop hooks marked released (and
    /// logs and audits it), if anything is marked: for writers that would
    /// not write otherwise, such as the reaper's pass.
    pub fn settle(&self) -> Result<(), LedgerError> {
        if self.released_marks().is_empty() {
            return Ok(());
        }
        self.update(|_| ())
    }

    /// After a write: the marks of records no longer in it go.
    fn drop_released_marks(&self, written: &Records) {
        for name in self.released_marks() {
            if !written.records.iter().any(|r| r.alloc_id == name) {
                let _ = std::fs::remove_file(self.released_dir().join(name));
            }
        }
    }

    /// The file with the pid notes filled in, marked records still in it.
    fn read_noted(&self) -> Result<Records, LedgerError> {
        let mut records = self.read_file()?;
        for (alloc_id, note) in self.pid_notes() {
            if let Some(r) = records
                .records
                .iter_mut()
                .find(|r| r.alloc_id == alloc_id && r.pid.is_none())
            {
                r.pid = Some(note.pid);
                r.pid_start = Some(note.start);
            }
        }
        Ok(records)
    }

    /// The ledger file alone, without the pid notes beside it.
    fn read_file(&self) -> Result<Records, LedgerError> {
        let path = self.path();
        match fsutil::read_nofollow(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| LedgerError::Corrupt {
                path,
                msg: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Records::default()),
            Err(source) => Err(LedgerError::Io { path, source }),
        }
    }

    pub fn pids_dir(&self) -> PathBuf {
        self.dir.join(PIDS_DIR)
    }

    /// Notes a record's init process beside the ledger, without its lock or
    /// a rewrite: one small file, folded into the ledger at its next write.
    /// Safe unlocked because the record's create still holds its marker, so
    /// no one reclaims the record meanwhile, and [`Ledger::read`] sees the
    /// note from the moment it is renamed into place.
    pub fn note_pid(&self, alloc_id: &str, pid: u32, start: u64) -> Result<(), LedgerError> {
        let dir = self.pids_dir();
        fsutil::ensure_dir(&dir).map_err(Self::io(&dir))?;
        let path = dir.join(alloc_id);
        let data = serde_json::to_vec(&PidNote { pid, start }).expect("notes serialise");
        fsutil::write_atomic(&path, &data, 0o644).map_err(Self::io(&path))
    }

    /// The pid notes, by allocation id; unreadable ones are skipped.
    fn pid_notes(&self) -> Vec<(String, PidNote)> {
        let Ok(dir) = std::fs::read_dir(self.pids_dir()) else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                if name.starts_with('.') {
                    return None;
                }
                let bytes = fsutil::read_nofollow(&e.path()).ok()?;
                Some((name, serde_json::from_slice(&bytes).ok()?))
            })
            .collect()
    }

    /// After a write: the notes now in the ledger, or of records gone, go.
    fn drop_pid_notes(&self, written: &Records) {
        let Ok(dir) = std::fs::read_dir(self.pids_dir()) else {
            return;
        };
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let pending = written
                .records
                .iter()
                .any(|r| r.alloc_id == name && r.pid.is_none());
            if !pending {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Runs `f` on the records under the exclusive lock and writes them back
    /// if they changed. The lock is released when this returns.
    ///
    /// A ledger that is missing or unreadable may be missing live records,
    /// so it is never allocated from: it is rebuilt first from what runc
    /// and the creates in flight know, and an unreadable one is kept aside.
    ///
    /// Records the poststop hook marked released are not among the records
    /// `f` sees; they go to [`Ledger::on_released`], then this write takes
    /// them out of the file.
    pub fn update<T>(&self, f: impl FnOnce(&mut Records) -> T) -> Result<T, LedgerError> {
        let _lock = self.lock()?;
        self.update_locked(f)
    }

    /// Told before the write that drops them: a writer that dies in
    /// between leaves the record and its mark for the next one, which
    /// tells again (twice, never none).
    fn tell_released(&self, released: &[(Record, SystemTime)]) {
        if let Some(note) = self.on_released.as_ref().filter(|_| !released.is_empty()) {
            note(released);
        }
    }

    fn update_locked<T>(&self, f: impl FnOnce(&mut Records) -> T) -> Result<T, LedgerError> {
        let path = self.path();
        let (mut before, rebuilt) = match self.read_noted() {
            Ok(rs) if path.exists() => (rs, false),
            Ok(_) => (self.rebuild(), true),
            Err(LedgerError::Corrupt { .. }) => {
                self.keep_aside("bad")?;
                (self.rebuild(), true)
            }
            Err(e) => return Err(e),
        };
        let released = self.take_released(&mut before);
        let mut records = before.clone();
        let recovered = self.sweep_markers(&mut records);
        let out = f(&mut records);
        if rebuilt || records != before || !released.is_empty() {
            if let Some(note) = self.on_recovered.as_ref().filter(|_| !recovered.is_empty()) {
                note(&recovered);
            }
            self.tell_released(&released);
            self.write(&records)?;
            self.drop_pid_notes(&records);
            // The markers before the marks: a mark keeps its record's
            // marker from being taken for a lost record's.
            self.drop_markers(&before, &released, &records);
            self.drop_released_marks(&records);
        }
        Ok(out)
    }

    /// After a write: the markers of the records it took out (of `before`
    /// and the `released`, those not `written`) go. A create that became
    /// runc leaves its marker for the life of its record (see
    /// `Record::stale_reason`); with the record gone, the marker has
    /// nothing left to vouch for, even if a process still holds it.
    fn drop_markers(&self, before: &Records, released: &[(Record, SystemTime)], written: &Records) {
        let dir = self.pending_dir();
        let gone = before.records.iter().chain(released.iter().map(|(r, _)| r));
        for r in gone.filter(|r| !written.records.iter().any(|x| x.alloc_id == r.alloc_id)) {
            let _ = std::fs::remove_file(dir.join(&r.alloc_id));
        }
    }

    fn write(&self, records: &Records) -> Result<(), LedgerError> {
        let path = self.path();
        let mut data = serde_json::to_vec_pretty(records).expect("records serialise");
        data.push(b'\n');
        fsutil::write_atomic(&path, &data, 0o644).map_err(Self::io(&path))
    }

    /// Makes and holds the marker of a create in flight.
    pub fn begin(&self, alloc_id: &str) -> Result<Pending, LedgerError> {
        let dir = self.pending_dir();
        fsutil::ensure_dir(&self.dir).map_err(Self::io(&self.dir))?;
        fsutil::ensure_dir(&dir).map_err(Self::io(&dir))?;
        // Where this create's poststop hook will mark it released: made
        // here, readable by the CLI's users, checked as root's.
        let released = self.released_dir();
        fsutil::ensure_dir(&released).map_err(Self::io(&released))?;
        // Made and locked under a hidden name, then renamed into place: a
        // sweep never sees the marker unlocked.
        let path = dir.join(alloc_id);
        let tmp = dir.join(format!(".{alloc_id}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(Self::io(&tmp))?;
        file.lock().map_err(Self::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(Self::io(&path))?;
        Ok(Pending { file, path })
    }

    /// The markers no record names. A create keeps its marker for the life
    /// of its record (it became runc), so a marker whose record the ledger
    /// lost (the file replaced by hand) puts the record back, its devices
    /// being in use: while a process of the create holds it, or while runc
    /// keeps a container with a live init whose spec names the same
    /// allocation. Any other marker no one holds goes: a runtime killed
    /// before it allocated, a writer killed before it took the marker of a
    /// released record away (its allocation marked released by the poststop
    /// hook, or its container's spec naming another). A held marker with
    /// no record in it yet is a create still allocating. A record put back
    /// whose device another record took meanwhile stays beside it: both
    /// containers use the device, and the ledger must not hand it out a
    /// third time when one goes. Returns the records put back, each with
    /// the containers it shares a device with.
    fn sweep_markers(&self, records: &mut Records) -> Vec<(Record, Vec<String>)> {
        let host = &*self.host;
        let dir = self.pending_dir();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut back = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || records.records.iter().any(|r| r.alloc_id == name) {
                continue;
            }
            // Released: nothing to vouch for, whoever still holds it.
            if self.released_dir().join(&name).exists() {
                let _ = std::fs::remove_file(e.path());
                continue;
            }
            let held = host.create_in_flight(&e.path());
            let lost = fsutil::read_nofollow(&e.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
                .filter(|r| r.alloc_id == name)
                .filter(|r| {
                    held || (r.stale_reason(host, &dir).is_none()
                        && rebuild::from_runc(&r.root, &r.container_id, host)
                            .is_some_and(|x| x.alloc_id == r.alloc_id))
                });
            match lost {
                Some(r) => {
                    let also: Vec<String> = records
                        .records
                        .iter()
                        .filter(|x| x.devices.iter().any(|d| r.devices.contains(d)))
                        .map(|x| x.container_id.clone())
                        .collect();
                    records.records.push(r.clone());
                    back.push((r, also));
                }
                None if !held => {
                    let _ = std::fs::remove_file(e.path());
                }
                None => {}
            }
        }
        back
    }

    /// The exclusive lock, waited for at most `self.wait`. Only root can
    /// take it (mode 0600), so no user can stall GPU creates by holding it.
    fn lock(&self) -> Result<Held, LedgerError> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join(LOCK_NAME);
        let io = Self::io(&path);
        fsutil::ensure_dir(&self.dir).map_err(Self::io(&self.dir))?;
        let file = fsutil::open_lock(&path).map_err(&io)?;
        // Someone widened its mode: only root may hold it.
        if file.metadata().map_err(&io)?.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(&io)?;
        }
        let deadline = std::time::Instant::now() + self.wait;
        let mut pause = Duration::from_millis(1);
        loop {
            match file.try_lock() {
                Ok(()) => {
                    return Ok(Held {
                        file: Some(file),
                        since: std::time::Instant::now(),
                        ceiling: Ceiling::raise(),
                        _thread: std::marker::PhantomData,
                    });
                }
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(LedgerError::Busy {
                    path: path.clone(),
                    secs: self.wait.as_secs(),
                });
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

/// The ledger lock, held until dropped.
struct Held {
    file: Option<File>,
    since: std::time::Instant,
    ceiling: Ceiling,
    /// The priority is the thread's: the lock stays on the thread that took it.
    _thread: std::marker::PhantomData<*const ()>,
}

impl Drop for Held {
    fn drop(&mut self) {
        // The lock goes first, then the priority: the holder is not
        // descheduled between the two while others wait.
        drop(self.file.take());
        let held = self.since.elapsed();
        self.ceiling.restore();
        trace_hold(held);
    }
}

/// The priority ceiling: while it holds the lock, this thread runs at the
/// lowest real-time priority, where it may (root, as the runtime runs
/// under dockerd). Many creates at once on few cores otherwise deschedule
/// the holder mid-update, and every other create waits out that time
/// slice. The work under the lock is bounded and never waits on another
/// process, so it cannot starve the host. Without the privilege, nothing
/// changes.
struct Ceiling(Option<(libc::c_int, libc::sched_param)>);

impl Ceiling {
    fn raise() -> Ceiling {
        // SAFETY: these calls only read and set this thread's scheduling
        // policy, through pointers to locals that outlive them.
        unsafe {
            let policy = libc::sched_getscheduler(0);
            let mut old: libc::sched_param = std::mem::zeroed();
            if policy < 0 || libc::sched_getparam(0, &mut old) != 0 {
                return Ceiling(None);
            }
            // Children forked under the lock do not inherit it.
            let fifo = libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK;
            let param = libc::sched_param { sched_priority: 1 };
            if policy & !libc::SCHED_RESET_ON_FORK != libc::SCHED_OTHER
                || libc::sched_setscheduler(0, fifo, &param) != 0
            {
                return Ceiling(None);
            }
            Ceiling(Some((policy, old)))
        }
    }

    fn restore(&mut self) {
        if let Some((policy, old)) = self.0.take() {
            // SAFETY: as in `raise`. Dropping the reset-on-fork flag needs
            // CAP_SYS_NICE; a process that raised itself by RLIMIT_RTPRIO
            // alone keeps the flag and still leaves real time.
            unsafe {
                if libc::sched_setscheduler(0, policy, &old) != 0 {
                    libc::sched_setscheduler(0, policy | libc::SCHED_RESET_ON_FORK, &old);
                }
            }
        }
    }
}

/// Where each lock hold time goes when measuring (`benches/lock.rs`): one
/// line of microseconds per hold, appended. Unset in normal use.
pub const LOCK_TRACE: &str = "DS01_LOCK_TRACE";

fn trace_hold(held: Duration) {
    if let Some(path) = std::env::var_os(LOCK_TRACE) {
        use std::io::Write;
        let line = format!("{}\n", held.as_micros());
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    pub use crate::testing::{FakeHost, record};

    fn host() -> FakeHost {
        FakeHost {
            boot: "boot-a".into(),
            ..FakeHost::default()
        }
    }

    const PENDING: &str = "/state/pending";

    fn stale(r: &Record, h: &FakeHost) -> Option<String> {
        r.stale_reason(h, Path::new(PENDING))
    }

    /// Marks a record released, as `ds01-poststop` does.
    fn mark(l: &Ledger, alloc_id: &str) {
        std::fs::create_dir_all(l.released_dir()).unwrap();
        std::fs::write(l.released_dir().join(alloc_id), "").unwrap();
    }

    #[test]
    fn a_marked_record_is_gone_for_readers_at_once_and_out_of_the_file_at_the_next_write() {
        use std::sync::{Arc, Mutex};
        let dir = tempfile::tempdir().unwrap();
        let told: Arc<Mutex<Vec<(String, SystemTime)>>> = Arc::default();
        let seen = told.clone();
        let l = Ledger::new(dir.path()).on_released(move |rs| {
            seen.lock()
                .unwrap()
                .extend(rs.iter().map(|(r, at)| (r.container_id.clone(), *at)))
        });
        let h = host();
        l.update(|rs| {
            rs.records.push(record("c1", &["MIG-1"], &h));
            rs.records.push(record("c2", &["MIG-2"], &h));
        })
        .unwrap();
        mark(&l, "c1-1");
        // The hook ran a while before anyone wrote.
        let ran = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        File::options()
            .write(true)
            .open(l.released_dir().join("c1-1"))
            .unwrap()
            .set_modified(ran)
            .unwrap();
        // A mark for no record (a late hook of a run long gone).
        mark(&l, "gone-9");

        // Readers see the device free before any write.
        let rs = l.read().unwrap();
        assert!(!rs.holds("MIG-1") && rs.holds("MIG-2"));
        // `delete` still finds it in the file, to take it out and log it.
        assert!(l.holds_container(Path::new("/run/runc"), "c1"));
        // The writer never sees it either, even one that changes nothing else.
        let seen_by_writer = l.update(|rs| rs.holds("MIG-1")).unwrap();
        assert!(!seen_by_writer);
        let file = std::fs::read_to_string(l.path()).unwrap();
        assert!(!file.contains("MIG-1") && file.contains("MIG-2"), "{file}");
        assert_eq!(
            *told.lock().unwrap(),
            [("c1".to_string(), ran)],
            "told once, dated when the hook ran"
        );
        assert_eq!(std::fs::read_dir(l.released_dir()).unwrap().count(), 0);

        // Nothing marked: no write, nothing told.
        l.update(|_| ()).unwrap();
        assert_eq!(told.lock().unwrap().len(), 1);
    }

    #[test]
    fn settle_writes_only_when_something_is_marked() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::new(&dir.path().join("state"));
        l.settle().unwrap();
        assert!(!l.path().exists(), "no ledger is made for nothing");
        let h = host();
        l.update(|rs| rs.records.push(record("c1", &["MIG-1"], &h)))
            .unwrap();
        mark(&l, "c1-1");
        l.settle().unwrap();
        let file = std::fs::read_to_string(l.path()).unwrap();
        assert!(!file.contains("MIG-1"), "{file}");
    }

    /// A ledger holding c1 (alloc `c1-1`, MIG-1), its mark made.
    fn c1_marked(dir: &Path) -> (Ledger, FakeHost) {
        let l = Ledger::new(dir).with_host(Rc::new(host()));
        let h = host();
        l.update(|rs| rs.records.push(record("c1", &["MIG-1"], &h)))
            .unwrap();
        mark(&l, "c1-1");
        (l, h)
    }

    #[test]
    fn a_mark_made_for_a_record_still_in_the_file_stays_until_it_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let (l, _) = c1_marked(dir.path());
        // A writer that put the record back (a rebuild) would otherwise
        // drop the mark of a record it keeps.
        l.drop_released_marks(&l.read_noted().unwrap());
        assert!(l.released_dir().join("c1-1").exists());
        assert!(!l.read().unwrap().holds("MIG-1"));
    }

    #[test]
    fn a_rebuild_leaves_out_what_the_hook_released() {
        let dir = tempfile::tempdir().unwrap();
        let (l, _) = c1_marked(dir.path());
        let rs = l.rebuild_now().unwrap();
        assert!(!rs.holds("MIG-1"));
        assert!(!l.read().unwrap().holds("MIG-1"));
        assert_eq!(std::fs::read_dir(l.released_dir()).unwrap().count(), 0);
    }

    #[test]
    fn a_noted_pid_is_read_at_once_and_folded_in_at_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::new(dir.path());
        let h = host();
        l.update(|rs| {
            rs.records.push(record("c1", &["MIG-1"], &h));
            rs.records.push(record("c2", &["MIG-2"], &h));
        })
        .unwrap();
        l.note_pid("c1-1", 100, 42).unwrap();
        // Seen by every reader (and so by a reclaimer) before any rewrite.
        let rs = l.read().unwrap();
        assert_eq!(
            (rs.records[0].pid, rs.records[0].pid_start),
            (Some(100), Some(42))
        );
        assert_eq!(rs.records[1].pid, None);
        let on_disk = std::fs::read_to_string(l.path()).unwrap();
        assert!(on_disk.contains("\"pid\": null"), "{on_disk}");
        // The next write takes the note in and drops it.
        l.update(|rs| rs.records.retain(|r| r.container_id != "c2"))
            .unwrap();
        let on_disk = std::fs::read_to_string(l.path()).unwrap();
        assert!(on_disk.contains("\"pid\": 100"), "{on_disk}");
        assert!(!l.pids_dir().join("c1-1").exists());
        // A note whose record is gone goes at the next write too.
        l.note_pid("gone-1", 7, 7).unwrap();
        l.update(|rs| rs.records.clear()).unwrap();
        assert!(!l.pids_dir().join("gone-1").exists());
    }

    /// Whether this thread may run at real-time priority at all (root with
    /// CAP_SYS_NICE); the probe puts it back.
    fn may_run_realtime() -> bool {
        let mut c = Ceiling::raise();
        let raised = c.0.is_some();
        c.restore();
        raised
    }

    #[test]
    fn the_holder_runs_at_real_time_priority_only_while_it_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::new(dir.path());
        // SAFETY: reads this thread's policy.
        let policy = || unsafe { libc::sched_getscheduler(0) } & !libc::SCHED_RESET_ON_FORK;
        assert_eq!(policy(), libc::SCHED_OTHER);
        let expected = if may_run_realtime() {
            libc::SCHED_FIFO
        } else {
            libc::SCHED_OTHER
        };
        let under = l.update(|_| policy()).unwrap();
        assert_eq!(under, expected, "policy while holding the lock");
        assert_eq!(policy(), libc::SCHED_OTHER, "policy after the lock");
        // A failed update gives the priority back too.
        std::fs::write(l.path(), b"not json").unwrap();
        let _ = l.update(|_| ());
        assert_eq!(policy(), libc::SCHED_OTHER);
    }

    #[test]
    fn the_live_init_is_the_noted_one_or_else_the_one_runc_names() {
        let h = host();
        let mut r = record("c1", &["MIG-1"], &h);
        assert_eq!(r.live_init(&h), None, "runc knows nothing of it");
        h.runc.borrow_mut().push("c1".into());
        h.runc_inits
            .borrow_mut()
            .insert("c1".into(), (200, Some(9)));
        assert_eq!(r.live_init(&h), None, "its init is dead");
        h.procs.borrow_mut().insert(200, 10);
        assert_eq!(r.live_init(&h), None, "its pid is another process's");
        h.procs.borrow_mut().insert(200, 9);
        assert_eq!(r.live_init(&h), Some(200));
        // A noted init goes first, and needs its start time.
        r.pid = Some(100);
        assert_eq!(r.live_init(&h), None);
        h.procs.borrow_mut().insert(100, 42);
        assert_eq!(r.live_init(&h), None, "no start time noted");
        r.pid_start = Some(42);
        assert_eq!(r.live_init(&h), Some(100));
    }

    #[test]
    fn live_container_is_not_stale() {
        let h = host();
        h.procs.borrow_mut().insert(100, 42);
        let mut r = record("c1", &["MIG-1"], &h);
        r.pid = Some(100);
        r.pid_start = Some(42);
        assert_eq!(stale(&r, &h), None);
    }

    #[test]
    fn dead_or_reused_pid_is_stale() {
        let h = host();
        let mut r = record("c1", &["MIG-1"], &h);
        r.pid = Some(100);
        r.pid_start = Some(42);
        assert!(stale(&r, &h).unwrap().contains("dead"));
        h.procs.borrow_mut().insert(100, 43);
        assert!(stale(&r, &h).unwrap().contains("another process"));
    }

    #[test]
    fn earlier_boot_is_stale_even_if_pid_lives() {
        let h = host();
        h.procs.borrow_mut().insert(100, 42);
        let mut r = record("c1", &["MIG-1"], &h);
        r.pid = Some(100);
        r.pid_start = Some(42);
        r.boot_id = "boot-old".into();
        assert!(stale(&r, &h).unwrap().contains("earlier boot"));
    }

    #[test]
    fn a_record_without_pid_is_judged_by_the_init_runc_s_state_names() {
        let h = host();
        let r = record("c1", &["MIG-1"], &h);
        h.runc.borrow_mut().push("c1".into());
        // runc knows it but names no init (a state being written): live.
        assert_eq!(stale(&r, &h), None);
        h.runc_inits
            .borrow_mut()
            .insert("c1".into(), (4242, Some(777)));
        h.procs.borrow_mut().insert(4242, 777);
        assert_eq!(stale(&r, &h), None, "its init lives");
        h.procs.borrow_mut().insert(4242, 778);
        assert!(stale(&r, &h).unwrap().contains("another process"));
        h.procs.borrow_mut().clear();
        assert!(stale(&r, &h).unwrap().contains("stopped"));
        // A create in flight still wins over all of it.
        h.in_flight
            .borrow_mut()
            .push(Path::new(PENDING).join(&r.alloc_id));
        assert_eq!(stale(&r, &h), None);
    }

    #[test]
    fn a_create_in_flight_is_never_stale_however_long_it_takes() {
        let h = host();
        let r = record("c1", &["MIG-1"], &h);
        h.in_flight
            .borrow_mut()
            .push(Path::new(PENDING).join(&r.alloc_id));
        *h.now.borrow_mut() = Some(h.now() + Duration::from_secs(86_400));
        assert_eq!(stale(&r, &h), None);
        // Its processes gone: stale, unless runc made the container.
        h.in_flight.borrow_mut().clear();
        assert!(
            stale(&r, &h)
                .unwrap()
                .contains("no create of it is in flight")
        );
        h.runc.borrow_mut().push("c1".into());
        assert_eq!(stale(&r, &h), None);
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

    /// runc's state for `r`'s container under `r.root`, its init `pid`
    /// alive, and its bundle's spec carrying the allocation `alloc` as
    /// ds01 patches it (annotation and poststop hook).
    fn runc_keeps(h: &FakeHost, r: &Record, alloc: &str, pid: u32) {
        let bundle = r
            .root
            .parent()
            .unwrap()
            .join(format!("bundle-{}", r.container_id));
        std::fs::create_dir_all(&bundle).unwrap();
        let mut note = rebuild::Note::of(r);
        note.id = alloc.into();
        let spec = serde_json::json!({
            "annotations": {rebuild::ANNOTATION: serde_json::to_string(&note).unwrap()},
            "hooks": {"poststop": [{"path": "/usr/bin/ds01-poststop",
                "args": ["ds01-poststop", "poststop", alloc, "/state/released"]}]},
        });
        std::fs::write(bundle.join("config.json"), spec.to_string()).unwrap();
        let state = r.root.join(&r.container_id);
        std::fs::create_dir_all(&state).unwrap();
        let labels = [format!("bundle={}", bundle.display())];
        std::fs::write(
            state.join("state.json"),
            serde_json::json!({"init_process_pid": pid, "init_process_start": 7,
                "config": {"labels": labels}})
            .to_string(),
        )
        .unwrap();
        h.runc.borrow_mut().push(r.container_id.clone());
        h.runc_inits
            .borrow_mut()
            .insert(r.container_id.clone(), (pid, Some(7)));
        h.procs.borrow_mut().insert(pid, 7);
    }

    #[test]
    fn a_write_puts_back_the_records_the_ledger_lost_and_sweeps_the_other_markers() {
        let dir = tempfile::tempdir().unwrap();
        let h = Rc::new(host());
        let told = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let l = {
            let told = told.clone();
            Ledger::new(&dir.path().join("state"))
                .with_host(h.clone())
                .on_recovered(move |back| {
                    let mut told = told.lock().unwrap();
                    told.extend(
                        back.iter()
                            .map(|(r, also)| (r.container_id.clone(), also.clone())),
                    );
                })
        };
        let at = |id: &str, dev: &str| {
            let mut r = record(id, &[dev], &h);
            r.root = dir.path().join("runc");
            r
        };
        let (lost, running, starting, gone) = (
            at("lost", "MIG-1"),
            at("running", "MIG-2"),
            at("starting", "MIG-3"),
            at("gone", "MIG-4"),
        );
        let (rerun, marked, held_marked) = (
            at("rerun", "MIG-5"),
            at("marked", "MIG-6"),
            at("held-marked", "MIG-7"),
        );
        let other = at("other", "MIG-2");
        std::fs::create_dir_all(l.pending_dir()).unwrap();
        std::fs::create_dir_all(l.released_dir()).unwrap();
        let marker = |r: &Record| l.pending_dir().join(&r.alloc_id);
        for r in [&lost, &running, &gone, &rerun, &marked, &held_marked] {
            std::fs::write(marker(r), serde_json::to_vec(r).unwrap()).unwrap();
        }
        std::fs::write(marker(&starting), "").unwrap();
        // `lost`'s create is in flight, its record in its marker but no
        // longer in the ledger; `running`'s is done, runc keeps its
        // container with a live init and a spec naming its allocation, whose
        // device `other` was given meanwhile; `starting` is still
        // allocating; `gone`'s create ended before runc made anything; runc
        // keeps a live `rerun` whose spec names another allocation (a later
        // run of it); the poststop hook marked `marked` released, and
        // `held-marked` too, whose marker something still holds.
        for r in [&lost, &starting, &held_marked] {
            h.in_flight.borrow_mut().push(marker(r));
        }
        runc_keeps(&h, &running, &running.alloc_id, 100);
        runc_keeps(&h, &rerun, "rerun-2", 101);
        l.write(&Records {
            records: vec![other.clone(), marked.clone()],
        })
        .unwrap();
        for r in [&marked, &held_marked] {
            std::fs::write(l.released_dir().join(&r.alloc_id), "").unwrap();
        }
        let seen = l
            .update(|rs| {
                let mut ids: Vec<_> = rs.records.iter().map(|r| r.container_id.clone()).collect();
                ids.sort();
                ids
            })
            .unwrap();
        assert_eq!(seen, ["lost", "other", "running"]);
        let mut told = told.lock().unwrap().clone();
        told.sort();
        assert_eq!(
            told,
            [
                ("lost".to_string(), vec![]),
                ("running".to_string(), vec!["other".to_string()])
            ]
        );
        let on_disk = l.read().unwrap();
        assert_eq!(on_disk.records.len(), 3, "{on_disk:?}");
        assert!(marker(&lost).exists() && marker(&running).exists() && marker(&starting).exists());
        assert!(!marker(&gone).exists(), "no record and no container: swept");
        assert!(
            !marker(&rerun).exists(),
            "its container runs another allocation"
        );
        assert!(!marker(&marked).exists(), "taken out with its record");
        assert!(!marker(&held_marked).exists(), "released, held or not");
        // Out of the ledger, a record's marker goes with it.
        l.update(|rs| rs.records.retain(|r| r.container_id == "other"))
            .unwrap();
        assert!(!marker(&lost).exists() && !marker(&running).exists());
        assert!(marker(&starting).exists(), "still allocating");
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
