//! The driver's user space from NVIDIA's CDI spec (`nvidia-ctk cdi
//! generate`): the spec's common container edits plus those of each
//! allocated device, found by UUID, by index, or by `gpu:mig` index.
//!
//! Specs are parsed, validated and their devices resolved with the
//! `container-device-interface` crate; the edits are kept as OCI JSON so
//! ds01 applies them to the spec it already edits as a `serde_json::Value`.
//! Device nodes in the edits are left out: only the allocation's nodes
//! enter a container, and ds01 adds those itself.

use std::collections::BTreeMap;
use std::path::PathBuf;

use container_device_interface::container_edits::ContainerEdits;
use container_device_interface::spec::read_spec;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::inventory::{Inventory, Unit};

/// The CDI kind NVIDIA's toolkit writes.
pub const KIND: &str = "nvidia.com/gpu";

/// What a container gets besides its device nodes, as OCI JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Edits {
    pub env: Vec<String>,
    /// OCI mounts.
    pub mounts: Vec<Value>,
    /// OCI hooks by phase (`createContainer`, `prestart`, ...).
    pub hooks: BTreeMap<String, Vec<Value>>,
    /// The spec file the edits came from.
    pub source: PathBuf,
    /// Mounts and hooks of the spec's other devices (not allocated): where
    /// Docker (25 and later) resolved a CDI name itself, they are in the
    /// spec already and must go.
    #[serde(default)]
    pub other_mounts: Vec<Value>,
    #[serde(default)]
    pub other_hooks: Vec<Value>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CdiError {
    #[error("no CDI spec of kind {KIND} in {dirs}")]
    NoSpec { dirs: String },
    #[error(
        "CDI spec {path:?} has no device for {uuid}; regenerate it (nvidia-ctk cdi generate) after a driver or MIG change"
    )]
    NoDevice { path: PathBuf, uuid: String },
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

/// Resolves the edits for `uuids` from the highest-priority CDI spec of
/// kind `nvidia.com/gpu` that has a device for each. Invalid spec files
/// are skipped, as the CDI cache skips them.
pub fn resolve(dirs: &[PathBuf], inv: &Inventory, uuids: &[String]) -> Result<Edits, CdiError> {
    let mut found_spec = None;
    for path in spec_files(dirs).into_iter().rev() {
        let Ok(mut spec) = read_spec(&path, 0) else {
            continue;
        };
        if format!("{}/{}", spec.get_vendor(), spec.get_class()) != KIND {
            continue;
        }
        let devices = spec.get_devices();
        let mut edits = Edits {
            source: path.clone(),
            ..Edits::default()
        };
        if let Some(common) = spec.edits() {
            add(&mut edits, &common);
        }
        let mut missing = None;
        let mut used = Vec::new();
        for uuid in uuids {
            let dev = inv.unit(uuid).and_then(|u| {
                names_of(&u)
                    .iter()
                    .find_map(|n| devices.values().find(|d| device_name(d) == *n))
                    .cloned()
            });
            match dev {
                Some(d) => {
                    used.push(device_name(&d));
                    add(&mut edits, &d.edits());
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
                for d in devices.values().filter(|d| !used.contains(&device_name(d))) {
                    add(&mut others, &d.edits());
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
                found_spec.get_or_insert(CdiError::NoDevice { path, uuid });
            }
        }
    }
    Err(found_spec.unwrap_or_else(|| CdiError::NoSpec {
        dirs: dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    }))
}

fn device_name(d: &container_device_interface::device::Device) -> String {
    let q = d.get_qualified_name();
    q.rsplit_once('=').map_or(q.clone(), |(_, n)| n.to_string())
}

/// Adds one set of CDI edits, as OCI JSON, leaving device nodes out.
fn add(out: &mut Edits, edits: &ContainerEdits) {
    let ce = serde_json::to_value(&edits.container_edits).unwrap_or(Value::Null);
    for e in ce["env"].as_array().into_iter().flatten() {
        if let Some(e) = e.as_str() {
            out.env.push(e.to_string());
        }
    }
    for m in ce["mounts"].as_array().into_iter().flatten() {
        let mut mount = json!({
            "destination": m["containerPath"],
            "source": m["hostPath"],
            "type": m.get("type").and_then(Value::as_str).unwrap_or("bind"),
        });
        if let Some(opts) = m.get("options").filter(|o| o.is_array()) {
            mount["options"] = opts.clone();
        }
        out.mounts.push(mount);
    }
    for h in ce["hooks"].as_array().into_iter().flatten() {
        let Some(phase) = h["hookName"].as_str() else {
            continue;
        };
        let mut hook = json!({"path": h["path"]});
        for k in ["args", "env", "timeout"] {
            if let Some(v) = h.get(k).filter(|v| !v.is_null()) {
                hook[k] = v.clone();
            }
        }
        out.hooks.entry(phase.to_string()).or_default().push(hook);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::sim;
    use std::path::Path;

    fn inv() -> Inventory {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/sim/inventory.toml");
        sim::parse(&p, &std::fs::read_to_string(&p).unwrap()).unwrap()
    }

    fn spec(devices: Value) -> String {
        json!({
            "cdiVersion": "0.5.0",
            "kind": "nvidia.com/gpu",
            "containerEdits": {
                "env": ["NVIDIA_VISIBLE_DEVICES=void"],
                "mounts": [{"hostPath": "/drv/libcuda.so.1", "containerPath": "/usr/lib/libcuda.so.1",
                            "options": ["ro", "nosuid", "nodev", "bind"]}],
                "hooks": [{"hookName": "createContainer", "path": "/usr/bin/nvidia-cdi-hook",
                           "args": ["nvidia-cdi-hook", "update-ldcache"]}],
                "deviceNodes": [{"path": "/dev/nvidiactl"}]
            },
            "devices": devices
        })
        .to_string()
    }

    fn dev(name: &str, node: &str, lib: &str) -> Value {
        json!({"name": name, "containerEdits": {
            "deviceNodes": [{"path": node}],
            "mounts": [{"hostPath": format!("/drv/{lib}"), "containerPath": format!("/usr/lib/{lib}")}]
        }})
    }

    #[test]
    fn devices_are_found_by_uuid_index_or_mig_index_and_nodes_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let inv = inv();
        let slice = inv.gpus[1].mig[2].uuid.clone();
        std::fs::write(
            dir.path().join("nvidia.yaml"),
            spec(json!([
                dev("0", "/dev/nvidia0", "gpu0.so"),
                dev("1:2", "/dev/nvidia1", "mig12.so"),
                dev(&inv.gpus[1].mig[0].uuid, "/dev/nvidia1", "mig10.so"),
            ])),
        )
        .unwrap();
        let dirs = vec![dir.path().to_path_buf()];
        let e = resolve(&dirs, &inv, &[slice]).unwrap();
        assert_eq!(e.env, ["NVIDIA_VISIBLE_DEVICES=void"]);
        let dests: Vec<&str> = e
            .mounts
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(dests, ["/usr/lib/libcuda.so.1", "/usr/lib/mig12.so"]);
        assert_eq!(e.mounts[1]["type"], "bind");
        assert_eq!(
            e.hooks["createContainer"][0]["path"],
            "/usr/bin/nvidia-cdi-hook"
        );
        assert!(!serde_json::to_string(&e).unwrap().contains("/dev/nvidia"));
        let e = resolve(&dirs, &inv, &[inv.gpus[0].uuid.clone()]).unwrap();
        assert!(e.mounts[1]["destination"] == "/usr/lib/gpu0.so");
        // The other devices' mounts are known, to take out what Docker added for them.
        let others: Vec<&str> = e
            .other_mounts
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(others, ["/usr/lib/mig12.so", "/usr/lib/mig10.so"]);
        let e = resolve(&dirs, &inv, &[inv.gpus[1].mig[0].uuid.clone()]).unwrap();
        assert!(e.mounts[1]["destination"] == "/usr/lib/mig10.so");
        // A slice the spec does not name is an error naming the fix.
        let missing = inv.gpus[1].mig[5].uuid.clone();
        let err = resolve(&dirs, &inv, &[missing]).unwrap_err().to_string();
        assert!(err.contains("nvidia-ctk cdi generate"), "{err}");
    }

    #[test]
    fn no_spec_and_other_kinds_are_no_cdi() {
        let dir = tempfile::tempdir().unwrap();
        let other =
            spec(json!([dev("0", "/dev/x", "x.so")])).replace("nvidia.com/gpu", "vendor.com/nic");
        std::fs::write(dir.path().join("nic.json"), other).unwrap();
        std::fs::write(dir.path().join("broken.json"), "{").unwrap();
        let inv = inv();
        let err = resolve(
            &[dir.path().to_path_buf()],
            &inv,
            &[inv.gpus[0].uuid.clone()],
        )
        .unwrap_err();
        assert!(matches!(err, CdiError::NoSpec { .. }), "{err}");
    }
}
