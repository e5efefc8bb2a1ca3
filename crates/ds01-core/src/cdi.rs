//! The driver's user space from NVIDIA's CDI spec (`nvidia-ctk cdi
//! generate`): the spec's common container edits plus those of each
//! allocated device, found by UUID, by index, or by `gpu:mig` index.
//!
//! The `ds01` CLI parses and validates the spec files (with the
//! `container-device-interface` crate) into a [`Catalog`] of OCI JSON edits
//! kept in the state directory; the runtime reads only that, and only while
//! each spec file's stamp still matches. Device nodes are never in the
//! edits: only the allocation's nodes enter a container, and ds01 adds those.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fsutil;
use crate::inventory::{Inventory, Unit};

/// The CDI kind NVIDIA's toolkit writes.
pub const KIND: &str = "nvidia.com/gpu";
/// The catalog's file in the state directory.
pub const FILE_NAME: &str = "cdi.json";

/// What a container gets besides its device nodes, as OCI JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Edits {
    pub env: Vec<String>,
    /// OCI mounts.
    pub mounts: Vec<Value>,
    /// OCI hooks by phase (`createContainer`, `prestart`, ...).
    pub hooks: BTreeMap<String, Vec<Value>>,
    /// The spec file the edits came from.
    #[serde(default)]
    pub source: PathBuf,
    /// Mounts and hooks of the spec's other devices (not allocated): where
    /// Docker (25 and later) resolved a CDI name itself, they are in the
    /// spec already and must go.
    #[serde(default)]
    pub other_mounts: Vec<Value>,
    #[serde(default)]
    pub other_hooks: Vec<Value>,
}

impl Edits {
    /// Adds another set's env, mounts and hooks to these.
    pub fn add(&mut self, more: &Edits) {
        self.env.extend(more.env.iter().cloned());
        self.mounts.extend(more.mounts.iter().cloned());
        for (phase, list) in &more.hooks {
            self.hooks
                .entry(phase.clone())
                .or_default()
                .extend(list.iter().cloned());
        }
    }
}

/// One valid spec file of kind [`KIND`], its edits as OCI JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpecEdits {
    pub path: PathBuf,
    /// The spec's own edits, for every device.
    pub common: Edits,
    /// Each device's name (without the kind) and edits, in the spec's order.
    pub devices: Vec<(String, Edits)>,
}

/// What identifies a spec file's contents without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub path: PathBuf,
    pub len: u64,
    pub mtime_ns: i64,
    pub ino: u64,
}

/// The CDI spec files as the CLI last read them: every file's stamp, and the
/// NVIDIA specs among them in priority order (lowest first).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub stamps: Vec<Stamp>,
    pub specs: Vec<SpecEdits>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum CdiError {
    #[error("no CDI spec of kind {KIND} in {dirs}")]
    NoSpec { dirs: String },
    #[error(
        "CDI spec {path:?} has no device for {uuid}; regenerate it (nvidia-ctk cdi generate) after a driver or MIG change"
    )]
    NoDevice { path: PathBuf, uuid: String },
    #[error(
        "the CDI specs in {dirs} changed since ds01 read them, and could not be read again; run 'ds01 gpus refresh'"
    )]
    Stale { dirs: String },
}

/// The CDI spec files in `dirs`, in priority order (a later directory
/// overrides an earlier one, as in the CDI cache).
pub fn spec_files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("json" | "yaml" | "yml")
                )
            })
            .collect();
        files.sort();
        out.extend(files);
    }
    out
}

/// The stamps of the spec files in `dirs` now.
pub fn stamps(dirs: &[PathBuf]) -> Vec<Stamp> {
    spec_files(dirs)
        .into_iter()
        .filter_map(|path| {
            let m = std::fs::metadata(&path).ok()?;
            Some(Stamp {
                len: m.len(),
                mtime_ns: m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec(),
                ino: m.ino(),
                path,
            })
        })
        .collect()
}

pub fn catalog_path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// The saved catalog, if it still describes the spec files in `dirs`. With
/// no spec files there is nothing to read: an empty catalog.
/// Only from a state directory others cannot write to, and a file only root
/// wrote: the edits become mounts and hooks in every GPU container.
pub fn current(state_dir: &Path, dirs: &[PathBuf]) -> Option<Catalog> {
    let now = stamps(dirs);
    if now.is_empty() {
        return Some(Catalog::default());
    }
    fsutil::check_dir(state_dir).ok()?;
    let bytes = fsutil::read_trusted(&catalog_path(state_dir)).ok()?;
    let saved: Catalog = serde_json::from_slice(&bytes).ok()?;
    (saved.stamps == now).then_some(saved)
}

/// Saves the catalog for the runtime (temp file and rename).
pub fn save(state_dir: &Path, catalog: &Catalog) -> std::io::Result<()> {
    fsutil::ensure_dir(state_dir)?;
    let mut data = serde_json::to_vec(catalog).expect("catalogs serialise");
    data.push(b'\n');
    fsutil::write_atomic(&catalog_path(state_dir), &data, 0o644)
}

fn list(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The error for specs that changed and could not be read again.
pub fn stale(dirs: &[PathBuf]) -> CdiError {
    CdiError::Stale { dirs: list(dirs) }
}

/// The names a unit may go by in NVIDIA's CDI spec: its UUID, its index
/// (a whole GPU), or `<gpu index>:<mig index>` (a MIG slice, by its
/// position on its GPU).
fn names_of(unit: &Unit) -> Vec<String> {
    let mut names = vec![unit.uuid.to_string()];
    match unit.mig {
        None => names.push(unit.gpu.index.to_string()),
        Some(m) => {
            if let Some(pos) = unit.gpu.mig.iter().position(|x| x.uuid == m.uuid) {
                names.push(format!("{}:{pos}", unit.gpu.index));
            }
        }
    }
    names
}

/// Resolves the edits for `uuids` from the highest-priority NVIDIA spec
/// that has a device for each. `dirs` are named in the error.
pub fn resolve(
    catalog: &Catalog,
    dirs: &[PathBuf],
    inv: &Inventory,
    uuids: &[String],
) -> Result<Edits, CdiError> {
    let mut found_spec = None;
    for spec in catalog.specs.iter().rev() {
        let mut edits = Edits {
            source: spec.path.clone(),
            ..Edits::default()
        };
        edits.add(&spec.common);
        let mut missing = None;
        let mut used = Vec::new();
        for uuid in uuids {
            let dev = inv.unit(uuid).and_then(|u| {
                names_of(&u)
                    .iter()
                    .find_map(|n| spec.devices.iter().find(|(name, _)| name == n))
            });
            match dev {
                Some((name, e)) => {
                    used.push(name);
                    edits.add(e);
                }
                None => {
                    missing = Some(uuid.clone());
                    break;
                }
            }
        }
        match missing {
            None => {
                let mut others = Edits::default();
                for (_, e) in spec.devices.iter().filter(|(n, _)| !used.contains(&n)) {
                    others.add(e);
                }
                edits.other_mounts = others
                    .mounts
                    .into_iter()
                    .filter(|m| !edits.mounts.contains(m))
                    .collect();
                let mine: Vec<&Value> = edits.hooks.values().flatten().collect();
                edits.other_hooks = others
                    .hooks
                    .into_values()
                    .flatten()
                    .filter(|h| !mine.contains(&h))
                    .collect();
                return Ok(edits);
            }
            Some(uuid) => {
                found_spec.get_or_insert(CdiError::NoDevice {
                    path: spec.path.clone(),
                    uuid,
                });
            }
        }
    }
    Err(found_spec.unwrap_or_else(|| CdiError::NoSpec { dirs: list(dirs) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_catalog_counts_only_while_every_spec_file_is_as_it_was_read() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let cdi = dir.path().join("cdi");
        std::fs::create_dir(&cdi).unwrap();
        let dirs = vec![cdi.clone()];
        // No spec files: nothing to read, nothing stale.
        assert_eq!(current(&state, &dirs), Some(Catalog::default()));
        std::fs::write(cdi.join("nvidia.yaml"), "a").unwrap();
        // A spec file and no catalog: not current.
        assert_eq!(current(&state, &dirs), None);
        let catalog = Catalog {
            stamps: stamps(&dirs),
            specs: vec![SpecEdits {
                path: cdi.join("nvidia.yaml"),
                ..SpecEdits::default()
            }],
        };
        save(&state, &catalog).unwrap();
        assert_eq!(current(&state, &dirs), Some(catalog.clone()));
        // Regenerated (new file renamed over it): stale.
        std::fs::write(cdi.join("new"), "ab").unwrap();
        std::fs::rename(cdi.join("new"), cdi.join("nvidia.yaml")).unwrap();
        assert_eq!(current(&state, &dirs), None);
        // A new spec file beside it: stale too.
        save(
            &state,
            &Catalog {
                stamps: stamps(&dirs),
                ..catalog.clone()
            },
        )
        .unwrap();
        assert!(current(&state, &dirs).is_some());
        std::fs::write(cdi.join("other.json"), "{}").unwrap();
        assert_eq!(current(&state, &dirs), None);
    }

    #[test]
    fn a_catalog_others_can_write_is_not_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let cdi = dir.path().join("cdi");
        std::fs::create_dir(&cdi).unwrap();
        std::fs::write(cdi.join("nvidia.yaml"), "a").unwrap();
        let dirs = vec![cdi];
        save(
            &state,
            &Catalog {
                stamps: stamps(&dirs),
                specs: vec![],
            },
        )
        .unwrap();
        assert!(current(&state, &dirs).is_some());
        let f = catalog_path(&state);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(current(&state, &dirs), None);
    }
}
