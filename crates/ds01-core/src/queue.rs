//! The GPU queue: creates that found no device free and asked to wait
//! (`DS01_GPU_WAIT`). Each waiter is a file, `<state_dir>/queue/<alloc id>`,
//! that its runtime holds locked while it waits, so a waiter whose runtime
//! was killed (its client gave up) is out of the queue at once. Waiting
//! never holds the ledger lock: a waiter only retries under it.
//!
//! Order: the user holding fewer GPU-equivalents first, then first come,
//! first served. A create, waiting or not, takes a device only when no
//! waiter ahead of it could take one now.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::allocate;
use crate::fsutil;
use crate::host::Host;
use crate::inventory::Inventory;
use crate::policy::{Effective, Limits, Policy};
use crate::record::Records;
use crate::request::{Profile, Request};

pub const DIR: &str = "queue";

/// One waiter, as its file holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub alloc_id: String,
    pub container_id: String,
    pub user: Option<String>,
    /// When it joined, in milliseconds since the epoch.
    pub since_ms: u64,
    pub count: usize,
    /// `any`, `full` or a MIG profile.
    pub profile: String,
}

impl Entry {
    pub fn new(
        alloc_id: &str,
        container_id: &str,
        user: Option<&str>,
        since_ms: u64,
        req: &Request,
    ) -> Entry {
        Entry {
            alloc_id: alloc_id.to_string(),
            container_id: container_id.to_string(),
            user: user.map(String::from),
            since_ms,
            count: req.count,
            profile: match &req.profile {
                Profile::AnyMig => "any".into(),
                Profile::Full => "full".into(),
                Profile::Mig(p) => p.clone(),
            },
        }
    }

    pub fn request(&self) -> Request {
        Request {
            count: self.count,
            profile: match self.profile.as_str() {
                "any" => Profile::AnyMig,
                "full" => Profile::Full,
                p => Profile::Mig(p.to_string()),
            },
        }
    }

    /// What it waits for, for people.
    pub fn wants(&self) -> String {
        let what = match self.profile.as_str() {
            "any" => "MIG slice".to_string(),
            "full" => "full GPU".to_string(),
            p => format!("{p} MIG slice"),
        };
        if self.count == 1 {
            format!("a {what}")
        } else {
            format!("{} x {what}", self.count)
        }
    }
}

/// A place in the queue, held while the runtime waits; left on drop.
pub struct Waiter {
    _file: File,
    path: PathBuf,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join(DIR)
}

/// Joins the queue: the file is written and locked before it is renamed
/// into place, so no one sees it unlocked while its runtime lives.
pub fn join(state_dir: &Path, entry: &Entry) -> std::io::Result<Waiter> {
    use std::io::Write;
    let d = dir(state_dir);
    fsutil::ensure_dir(&d)?;
    let path = d.join(&entry.alloc_id);
    let tmp = d.join(format!(".{}", entry.alloc_id));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    file.lock()?;
    file.write_all(&serde_json::to_vec(entry).expect("entries serialise"))?;
    std::fs::rename(&tmp, &path)?;
    Ok(Waiter { _file: file, path })
}

/// The live waiters, in no order. Files no runtime holds are removed.
pub fn live(state_dir: &Path, host: &dyn Host) -> Vec<Entry> {
    let Ok(rd) = std::fs::read_dir(dir(state_dir)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if !host.create_in_flight(&e.path()) {
            let _ = std::fs::remove_file(e.path());
            continue;
        }
        if let Some(entry) = fsutil::read_nofollow(&e.path())
            .ok()
            .and_then(|b| serde_json::from_slice::<Entry>(&b).ok())
        {
            out.push(entry);
        }
    }
    out
}

/// The waiters in the order they are served, given what is held now.
pub fn order(mut entries: Vec<Entry>, held: &Records) -> Vec<Entry> {
    let gpueq = |user: &Option<String>| allocate::usage(held, user.as_deref()).gpueq;
    entries.sort_by(|a, b| {
        gpueq(&a.user)
            .total_cmp(&gpueq(&b.user))
            .then(a.since_ms.cmp(&b.since_ms))
            .then(a.alloc_id.cmp(&b.alloc_id))
    });
    entries
}

/// The waiters and `me` (once), in the order they are served.
fn order_with(waiters: &[Entry], me: &Entry, held: &Records) -> Vec<Entry> {
    let mut all: Vec<Entry> = waiters
        .iter()
        .filter(|w| w.alloc_id != me.alloc_id)
        .cloned()
        .collect();
    all.push(me.clone());
    order(all, held)
}

/// How many waiters are ahead of `me` and could take a device now (free
/// devices only; their limits were checked when they joined). `me` need
/// not be in `waiters`: a create that does not wait is placed as one that
/// joins now.
pub fn ahead_that_fit(waiters: &[Entry], me: &Entry, held: &Records, inv: &Inventory) -> usize {
    let ordered = order_with(waiters, me, held);
    let unlimited = unlimited();
    ordered
        .iter()
        .take_while(|w| w.alloc_id != me.alloc_id)
        .filter(|w| {
            let used = allocate::usage(held, w.user.as_deref());
            allocate::choose(inv, held, &w.request(), "", &unlimited, &used).is_ok()
        })
        .count()
}

/// `me`'s place in the queue, from 1.
pub fn position(waiters: &[Entry], me: &Entry, held: &Records) -> usize {
    order_with(waiters, me, held)
        .iter()
        .position(|w| w.alloc_id == me.alloc_id)
        .map_or(1, |p| p + 1)
}

/// Limits that check only whether devices are free.
fn unlimited() -> Effective {
    struct NoGroups;
    impl crate::policy::Groups for NoGroups {
        fn groups_of(&self, _: &str) -> Vec<String> {
            Vec::new()
        }
    }
    Policy {
        defaults: Limits {
            allow_full_gpu: Some(true),
            ..Limits::default()
        },
        ..Policy::default()
    }
    .effective(None, &NoGroups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeHost, record};

    fn inv() -> Inventory {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/sim/inventory.toml");
        crate::inventory::sim::parse(&p, &std::fs::read_to_string(&p).unwrap()).unwrap()
    }

    fn entry(id: &str, user: &str, since: u64) -> Entry {
        Entry::new(
            id,
            id,
            Some(user),
            since,
            &Request {
                count: 1,
                profile: Profile::AnyMig,
            },
        )
    }

    #[test]
    fn fewer_gpu_equivalents_first_then_first_come() {
        let h = FakeHost::default();
        let mut held = Records::default();
        let mut r = record("c1", &["MIG-x"], &h);
        r.user = Some("alice".into());
        held.records.push(r);
        let waiters = vec![
            entry("a1", "alice", 1),
            entry("b1", "bob", 2),
            entry("b2", "bob", 3),
            entry("c1", "carol", 4),
        ];
        let ids: Vec<String> = order(waiters.clone(), &held)
            .into_iter()
            .map(|e| e.alloc_id)
            .collect();
        // alice holds a slice, bob and carol none: alice waits behind them.
        assert_eq!(ids, ["b1", "b2", "c1", "a1"]);
        assert_eq!(position(&waiters, &waiters[0], &held), 4);
        // A newcomer from someone holding nothing lines up by time.
        let newcomer = entry("d1", "dave", 5);
        assert_eq!(position(&waiters, &newcomer, &held), 4);
    }

    #[test]
    fn a_create_yields_only_to_waiters_ahead_that_could_take_a_device_now() {
        let inv = inv();
        let h = FakeHost::default();
        let held = Records::default();
        let waiters = vec![entry("w1", "bob", 1)];
        let me = entry("me", "carol", 2);
        // Devices free: bob, ahead, could take one: carol waits her turn.
        assert_eq!(ahead_that_fit(&waiters, &me, &held, &inv), 1);
        // Bob waits for a full GPU and all are held: he cannot take one now,
        // so he does not block carol's slice.
        let mut full = Records::default();
        for g in &inv.gpus {
            if !g.mig_enabled {
                full.records.push(record("f", &[&g.uuid], &h));
            }
        }
        let mut bob = waiters[0].clone();
        bob.profile = "full".into();
        assert_eq!(ahead_that_fit(&[bob], &me, &full, &inv), 0);
        // Nobody waiting: nothing ahead.
        assert_eq!(ahead_that_fit(&[], &me, &held, &inv), 0);
    }

    #[test]
    fn a_waiter_whose_runtime_is_gone_leaves_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let host = crate::host::RealHost;
        let w = join(dir.path(), &entry("a1", "alice", 1)).unwrap();
        // A file no one holds: its runtime was killed.
        std::fs::write(
            dir.path().join("queue/b1"),
            serde_json::to_vec(&entry("b1", "bob", 2)).unwrap(),
        )
        .unwrap();
        let live_now = live(dir.path(), &host);
        assert_eq!(live_now.len(), 1);
        assert_eq!(live_now[0].alloc_id, "a1");
        assert!(!dir.path().join("queue/b1").exists());
        drop(w);
        assert!(live(dir.path(), &host).is_empty());
    }
}
