//! NVIDIA's CDI spec files read, validated (with the
//! `container-device-interface` crate) and turned into the OCI JSON edits of
//! [`ds01_core::cdi::Catalog`], which the runtime reads instead: the crate
//! and a YAML parser stay out of the shim.

use std::path::PathBuf;

use container_device_interface::container_edits::ContainerEdits;
use container_device_interface::spec::read_spec;
use ds01_core::cdi::{Catalog, Edits, KIND, SpecEdits, spec_files, stamps};
use serde_json::{Value, json};

/// Reads the spec files in `dirs`. Invalid files and other kinds are left
/// out, as the CDI cache leaves them out; their stamps are kept, so a fix
/// to one is noticed.
pub fn read(dirs: &[PathBuf]) -> Catalog {
    let stamps = stamps(dirs);
    let mut specs = Vec::new();
    for path in spec_files(dirs) {
        let Ok(mut spec) = read_spec(&path, 0) else {
            continue;
        };
        if format!("{}/{}", spec.get_vendor(), spec.get_class()) != KIND {
            continue;
        }
        let common = spec.edits().map(|e| to_oci(&e)).unwrap_or_default();
        let devices = spec
            .get_devices()
            .values()
            .map(|d| (device_name(d), to_oci(&d.edits())))
            .collect();
        specs.push(SpecEdits {
            path,
            common,
            devices,
        });
    }
    Catalog { stamps, specs }
}

fn device_name(d: &container_device_interface::device::Device) -> String {
    let q = d.get_qualified_name();
    q.rsplit_once('=').map_or(q.clone(), |(_, n)| n.to_string())
}

/// One set of CDI edits as OCI JSON, device nodes left out.
fn to_oci(edits: &ContainerEdits) -> Edits {
    let mut out = Edits::default();
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ds01_core::cdi::{CdiError, resolve};
    use ds01_core::inventory::{Inventory, sim};
    use serde_json::json;
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
        let e = resolve(&read(&dirs), &dirs, &inv, &[slice]).unwrap();
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
        let e = resolve(&read(&dirs), &dirs, &inv, &[inv.gpus[0].uuid.clone()]).unwrap();
        assert!(e.mounts[1]["destination"] == "/usr/lib/gpu0.so");
        // The other devices' mounts are known, to take out what Docker added for them.
        let others: Vec<&str> = e
            .other_mounts
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(others, ["/usr/lib/mig12.so", "/usr/lib/mig10.so"]);
        let e = resolve(
            &read(&dirs),
            &dirs,
            &inv,
            &[inv.gpus[1].mig[0].uuid.clone()],
        )
        .unwrap();
        assert!(e.mounts[1]["destination"] == "/usr/lib/mig10.so");
        // A slice the spec does not name is an error naming the fix.
        let missing = inv.gpus[1].mig[5].uuid.clone();
        let err = resolve(&read(&dirs), &dirs, &inv, &[missing])
            .unwrap_err()
            .to_string();
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
        let dirs = [dir.path().to_path_buf()];
        let err = resolve(&read(&dirs), &dirs, &inv, &[inv.gpus[0].uuid.clone()]).unwrap_err();
        assert!(matches!(err, CdiError::NoSpec { .. }), "{err}");
    }
}
