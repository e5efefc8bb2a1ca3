//! Rebuilding the ledger from what outlives it: each GPU container's spec
//! carries its allocation (the `ds01.allocation` annotation), runc's state
//! names the bundle and the init process, and each create in flight holds
//! its record in its marker.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{FILE_NAME, Ledger, LedgerError};
use crate::fsutil;
use crate::host::Host;
use crate::identity::Source;
use crate::inventory::UnitKind;
use crate::record::{Record, Records};

/// The runc roots ds01 has allocated under, one per line: where a rebuild looks.
const ROOTS_NAME: &str = "roots";
/// Roots a rebuild always looks in: Docker's, containerd's, runc's own.
pub const KNOWN_ROOTS: [&str; 4] = [
    "/run/docker/runtime-runc/moby",
    "/run/containerd/runc/default",
    "/run/containerd/runc/k8s.io",
    "/run/runc",
];

/// The annotation that records the allocation in the spec.
pub use crate::names::ALLOCATION_ANNOTATION as ANNOTATION;

/// What the annotation holds: enough to rebuild the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub id: String,
    pub devices: Vec<String>,
    pub kind: UnitKind,
    pub profile: String,
    #[serde(default)]
    pub gpueq: f64,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub identity_source: Source,
    #[serde(default)]
    pub since: String,
}

impl Note {
    pub fn of(r: &Record) -> Note {
        Note {
            id: r.alloc_id.clone(),
            devices: r.devices.clone(),
            kind: r.kind,
            profile: r.profile.clone(),
            gpueq: r.gpueq,
            user: r.user.clone(),
            identity_source: r.identity_source,
            since: r.since.clone(),
        }
    }
}

/// The allocation a patched spec carries, when ds01 patched it: the
/// annotation, and a poststop hook of ds01 naming the same allocation (a
/// user can set an annotation, not a hook).
pub fn note_of(spec: &Value) -> Option<Note> {
    let note: Note = spec
        .pointer("/annotations")
        .and_then(|a| a.get(ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str(s).ok())?;
    let hooked = crate::oci::array(spec, "/hooks/poststop").iter().any(|h| {
        let args: Vec<&str> = crate::oci::array(h, "/args")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        // `ds01-poststop poststop ID DIR`, or `ds01-runtime hook poststop ID`.
        args.windows(2).any(|w| w == ["poststop", note.id.as_str()])
    });
    hooked.then_some(note)
}

/// The records of the GPU containers runc keeps under `root`.
pub fn from_runc_root(root: &Path, host: &dyn Host) -> Vec<Record> {
    let Ok(dir) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| from_runc(root, &e.file_name().to_string_lossy(), host))
        .collect()
}

/// The record of container `id` under `root`, as its spec's allocation
/// and runc's state tell it: `None` unless runc keeps it and ds01 patched
/// its spec.
pub fn from_runc(root: &Path, id: &str, host: &dyn Host) -> Option<Record> {
    if id.is_empty() || id.contains('/') {
        return None;
    }
    let state = read_json(&root.join(id).join("state.json"))?;
    let bundle = bundle_of(&state).filter(|b| trusted_dir(b))?;
    let note = read_json(&bundle.join("config.json")).and_then(|s| note_of(&s))?;
    let init = crate::host::init_of(&state);
    let (pid, pid_start) = (init.map(|i| i.0), init.and_then(|i| i.1));
    Some(Record {
        alloc_id: note.id,
        container_id: id.to_string(),
        bundle,
        root: root.to_path_buf(),
        devices: note.devices,
        kind: note.kind,
        profile: note.profile,
        gpueq: note.gpueq,
        user: note.user,
        identity_source: note.identity_source,
        since: note.since,
        boot_id: host.boot_id(),
        pid,
        pid_start,
        shim_pid: 0,
        shim_start: None,
    })
}

fn read_json(path: &Path) -> Option<Value> {
    let bytes = crate::fsutil::read_trusted(path).ok()?;
    crate::oci::read(&bytes).ok().map(|s| s.value)
}

/// A bundle directory only root could have filled.
fn trusted_dir(dir: &Path) -> bool {
    crate::fsutil::check_dir(dir).is_ok()
}

/// runc keeps the bundle as a `bundle=<path>` label in its state, after
/// the container's annotations (which become labels too): the last one is
/// runc's own, an earlier one may be a user's annotation.
fn bundle_of(state: &Value) -> Option<PathBuf> {
    crate::oci::array(state, "/config/labels")
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|l| l.strip_prefix("bundle="))
        .next_back()
        .map(PathBuf::from)
}

impl Ledger {
    /// `ds01 gc --rebuild`: the records runc and the creates in flight
    /// vouch for, plus any live record of the old ledger they missed. The
    /// old file is kept aside. Returns the new records.
    pub fn rebuild_now(&self) -> Result<Records, LedgerError> {
        let host = &*self.host;
        let _lock = self.lock()?;
        let mut old = self.read_noted().unwrap_or_default();
        let mut released = self.take_released(&mut old);
        if self.path().exists() {
            self.keep_aside("old")?;
        }
        let mut records = self.rebuild();
        for r in self.take_released(&mut records) {
            if !released.iter().any(|x| x.0.alloc_id == r.0.alloc_id) {
                released.push(r);
            }
        }
        let pending = self.pending_dir();
        for r in &old.records {
            let known = records.records.iter().any(|x| x.alloc_id == r.alloc_id);
            if !known && r.stale_reason(host, &pending).is_none() {
                records.records.push(r.clone());
            }
        }
        self.tell_released(&released);
        self.write(&records)?;
        // As every write does: the markers of what it left out go first.
        self.drop_markers(&old, &released, &records);
        self.drop_released_marks(&records);
        Ok(records)
    }

    /// Renames the ledger to `ledger.json.<what>-<time>`.
    pub(super) fn keep_aside(&self, what: &str) -> Result<PathBuf, LedgerError> {
        let path = self.path();
        let stamp = crate::time::timestamp(SystemTime::now()).replace(':', "");
        let aside = path.with_file_name(format!("{FILE_NAME}.{what}-{stamp}"));
        std::fs::rename(&path, &aside).map_err(Self::io(&path))?;
        Ok(aside)
    }

    /// The records that live containers and creates in flight prove.
    pub fn rebuild(&self) -> Records {
        let host = &*self.host;
        let mut records = Records::default();
        // Creates in flight: their marker holds their record.
        if let Ok(dir) = std::fs::read_dir(self.pending_dir()) {
            for e in dir.flatten() {
                let p = e.path();
                if !host.create_in_flight(&p) {
                    continue;
                }
                if let Some(r) = fsutil::read_nofollow(&p)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
                {
                    records.records.push(r);
                }
            }
        }
        let mut roots: Vec<PathBuf> = KNOWN_ROOTS.iter().map(PathBuf::from).collect();
        roots.extend(self.roots());
        roots.sort();
        roots.dedup();
        for root in roots {
            for r in from_runc_root(&root, host) {
                if !records.records.iter().any(|x| x.alloc_id == r.alloc_id) {
                    records.records.push(r);
                }
            }
        }
        records
    }

    /// The runc roots ds01 has allocated under.
    pub fn roots(&self) -> Vec<PathBuf> {
        fsutil::read_nofollow(&self.dir.join(ROOTS_NAME))
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Remembers a runc root for rebuilds. Call under the lock (inside
    /// [`Ledger::update`]); it writes only when the root is new.
    pub fn remember_root(&self, root: &Path) -> Result<(), LedgerError> {
        let mut roots = self.roots();
        if roots.iter().any(|r| r == root) {
            return Ok(());
        }
        roots.push(root.to_path_buf());
        let text: String = roots.iter().map(|r| format!("{}\n", r.display())).collect();
        let path = self.dir.join(ROOTS_NAME);
        fsutil::write_atomic(&path, text.as_bytes(), 0o644).map_err(Self::io(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;
    use serde_json::json;

    fn note() -> Note {
        Note {
            id: "a1".into(),
            devices: vec!["MIG-1".into()],
            kind: UnitKind::Mig,
            profile: "1g.10gb".into(),
            gpueq: 1.0 / 7.0,
            user: Some("alice".into()),
            identity_source: Source::DockerLabel,
            since: "2026-11-29T00:00:00Z".into(),
        }
    }

    fn spec(n: &Note, hook_id: &str) -> Value {
        json!({
            "annotations": {ANNOTATION: serde_json::to_string(n).unwrap()},
            "hooks": {"poststop": [{"path": "/usr/bin/ds01-runtime",
                "args": ["/usr/bin/ds01-runtime", "hook", "poststop", hook_id]}]}
        })
    }

    #[test]
    fn a_user_set_annotation_without_ds01_s_hook_proves_nothing() {
        let n = note();
        assert_eq!(note_of(&spec(&n, "a1")), Some(n.clone()));
        assert_eq!(note_of(&spec(&n, "other")), None);
        let mut bare = spec(&n, "a1");
        bare["hooks"] = json!({});
        assert_eq!(note_of(&bare), None);
        // The hook program's own form: `ds01-poststop poststop ID DIR`.
        let mut fast = spec(&n, "a1");
        fast["hooks"]["poststop"][0] = json!({"path": "/usr/bin/ds01-poststop",
            "args": ["/usr/bin/ds01-poststop", "poststop", "a1", "/run/ds01/released"]});
        assert_eq!(note_of(&fast), Some(n.clone()));
        fast["hooks"]["poststop"][0]["args"][2] = json!("other");
        assert_eq!(note_of(&fast), None);
    }

    #[test]
    fn records_come_back_from_runc_state_and_bundles() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let bundle = dir.path().join("bundle");
        std::fs::create_dir_all(root.join("c1")).unwrap();
        std::fs::create_dir_all(root.join("plain")).unwrap();
        std::fs::create_dir_all(&bundle).unwrap();
        let plain = dir.path().join("plain-bundle");
        std::fs::create_dir_all(&plain).unwrap();
        std::fs::write(plain.join("config.json"), "{}").unwrap();
        std::fs::write(bundle.join("config.json"), spec(&note(), "a1").to_string()).unwrap();
        // A user's annotation "bundle=..." comes first; runc's own label last.
        let state = |b: &Path| {
            json!({"init_process_pid": 4242, "init_process_start": 777,
                   "config": {"labels": ["bundle=/elsewhere", format!("bundle={}", b.display())]}})
            .to_string()
        };
        std::fs::write(root.join("c1/state.json"), state(&bundle)).unwrap();
        std::fs::write(root.join("plain/state.json"), state(&plain)).unwrap();
        let host = FakeHost {
            boot: "b".into(),
            ..FakeHost::default()
        };
        let rs = from_runc_root(&root, &host);
        assert_eq!(rs.len(), 1);
        let r = &rs[0];
        assert_eq!(
            (
                r.alloc_id.as_str(),
                r.container_id.as_str(),
                r.pid,
                r.pid_start
            ),
            ("a1", "c1", Some(4242), Some(777))
        );
        assert_eq!(
            (r.user.as_deref(), r.devices.clone()),
            (Some("alice"), vec!["MIG-1".to_string()])
        );
        assert_eq!(
            (r.bundle.clone(), r.root.clone(), r.boot_id.as_str()),
            (bundle, root, "b")
        );
    }
}
