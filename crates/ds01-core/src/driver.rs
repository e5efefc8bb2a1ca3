//! The driver's user space for a GPU container (libcuda, libnvidia-ml,
//! nvidia-smi), for exactly its allocated devices, however it asked:
//! NVIDIA's CDI spec first, else NVIDIA's prestart hook, else device nodes
//! only. ds01 decides which devices; these bring the libraries.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::access::is_nvidia_hook;
use crate::cdi::{self, Catalog, CdiError, Edits};
use crate::config::{Config, DriverInjection};
use crate::inventory::Inventory;
use crate::oci::VISIBLE;
use crate::spec::{array_at, object_in};

/// NVIDIA's prestart hook, as its runtime adds it in legacy mode.
pub const HOOK_NAME: &str = "nvidia-container-runtime-hook";
/// NVIDIA's default when a container names no capabilities.
pub const DEFAULT_CAPABILITIES: &str = "compute,utility";
pub const CAPABILITIES: &str = "NVIDIA_DRIVER_CAPABILITIES";
/// Where NVIDIA's hook in its hardened setting reads the devices from.
pub const DEVICE_LIST_DIR: &str = "/var/run/nvidia-container-devices";

/// How this container gets the driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    Cdi(Edits),
    Hook(PathBuf),
    /// Device nodes only, with why.
    Nodes(String),
}

/// Where NVIDIA's hook is installed: on `PATH`, else in the usual places.
pub fn find_hook() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/bin", "/usr/local/bin", "/usr/sbin", "/usr/local/sbin"]
                .iter()
                .map(PathBuf::from),
        )
        .map(|d| d.join(HOOK_NAME))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What this host offers for the driver, looked up once per GPU create.
#[derive(Debug, Clone)]
pub struct Found {
    /// NVIDIA's hook, where it is installed.
    pub hook: Option<PathBuf>,
    /// The CDI specs as last read, or why they cannot be had.
    pub cdi: Result<Catalog, CdiError>,
}

/// Picks the way by the config's `driver_injection`. A forced way that
/// cannot be had is an error naming what to install.
pub fn choose(
    cfg: &Config,
    inv: &Inventory,
    uuids: &[String],
    found: &Found,
) -> Result<Method, String> {
    let cdi = || {
        found
            .cdi
            .clone()
            .and_then(|c| cdi::resolve(&c, &cfg.cdi_spec_dirs, inv, uuids))
    };
    let no_hook = || {
        format!(
            "{HOOK_NAME} is not installed; install NVIDIA's container toolkit (nvidia-container-toolkit)"
        )
    };
    let hook = found.hook.clone();
    match cfg.driver_injection {
        DriverInjection::None => Ok(Method::Nodes("driver_injection = \"none\"".into())),
        DriverInjection::Cdi => cdi().map(Method::Cdi).map_err(|e| e.to_string()),
        DriverInjection::Hook => hook.map(Method::Hook).ok_or_else(no_hook),
        DriverInjection::Auto => Ok(match cdi() {
            Ok(e) => Method::Cdi(e),
            Err(cdi_err) => match hook {
                Some(h) => Method::Hook(h),
                None => Method::Nodes(format!("{cdi_err}, and {}", no_hook())),
            },
        }),
    }
}

/// Gives the spec the driver by `method` for `uuids`. Idempotent: applied
/// to a spec it already edited, it changes nothing.
pub fn apply(spec: &mut Value, method: &Method, uuids: &[String]) {
    let Some(root) = spec.as_object_mut() else {
        return;
    };
    match method {
        Method::Nodes(_) => {}
        Method::Cdi(edits) => {
            // The spec's edits bring the driver: NVIDIA's legacy hook (dockerd
            // adds it for --gpus) would bring it a second time.
            if let Some(pre) = root
                .get_mut("hooks")
                .and_then(|h| h.get_mut("prestart"))
                .and_then(Value::as_array_mut)
            {
                pre.retain(|h| !is_nvidia_hook(h));
            }
            let env = array_at(object_in(root, "process"), "env");
            for e in &edits.env {
                let Some((name, _)) = e.split_once('=') else {
                    continue;
                };
                if name == VISIBLE {
                    continue;
                }
                let prefix = format!("{name}=");
                env.retain(|x| !x.as_str().is_some_and(|s| s.starts_with(&prefix)));
                env.push(json!(e));
            }
            let mounts = array_at(root, "mounts");
            // What Docker's own CDI resolution added for devices not allocated.
            mounts.retain(|x| {
                !edits.other_mounts.iter().any(|o| {
                    o.get("destination") == x.get("destination")
                        && o.get("source") == x.get("source")
                })
            });
            for m in &edits.mounts {
                mounts.retain(|x| x.get("destination") != m.get("destination"));
                mounts.push(m.clone());
            }
            let hooks = object_in(root, "hooks");
            for list in hooks.values_mut() {
                if let Some(list) = list.as_array_mut() {
                    list.retain(|h| {
                        !edits.other_hooks.iter().any(|o| {
                            o.get("path") == h.get("path") && o.get("args") == h.get("args")
                        })
                    });
                }
            }
            for (phase, list) in &edits.hooks {
                let at = array_at(hooks, phase);
                for h in list {
                    if !at.contains(h) {
                        at.push(h.clone());
                    }
                }
            }
        }
        Method::Hook(path) => {
            let pre = array_at(object_in(root, "hooks"), "prestart");
            if !pre.iter().any(is_nvidia_hook) {
                pre.push(json!({"path": path, "args": [HOOK_NAME, "prestart"]}));
            }
            let env = array_at(object_in(root, "process"), "env");
            let prefix = format!("{CAPABILITIES}=");
            if !env
                .iter()
                .any(|e| e.as_str().is_some_and(|s| s.starts_with(&prefix)))
            {
                env.push(json!(format!("{prefix}{DEFAULT_CAPABILITIES}")));
            }
            // NVIDIA's hook in its hardened setting ignores the environment
            // and reads the devices from these mounts.
            let mounts = array_at(root, "mounts");
            for u in uuids {
                let dest = format!("{DEVICE_LIST_DIR}/{u}");
                mounts.retain(|m| m.get("destination").and_then(Value::as_str) != Some(&dest));
                mounts.push(json!({
                    "destination": dest, "type": "bind", "source": "/dev/null",
                    "options": ["bind", "ro"]
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn edits() -> Edits {
        let mut hooks = BTreeMap::new();
        hooks.insert(
            "createContainer".to_string(),
            vec![json!({"path": "/usr/bin/nvidia-cdi-hook", "args": ["nvidia-cdi-hook", "update-ldcache"]})],
        );
        Edits {
            env: vec!["NVIDIA_VISIBLE_DEVICES=void".into(), "NVIDIA_CTK=1".into()],
            mounts: vec![
                json!({"destination": "/usr/lib/libcuda.so.1", "source": "/drv/libcuda.so.1", "type": "bind"}),
            ],
            hooks,
            source: "/etc/cdi/nvidia.yaml".into(),
            other_mounts: vec![
                json!({"destination": "/usr/lib/other.so", "source": "/drv/other.so", "type": "bind"}),
            ],
            other_hooks: vec![
                json!({"path": "/usr/bin/nvidia-cdi-hook", "args": ["nvidia-cdi-hook", "create-symlinks", "--link", "card9"]}),
            ],
        }
    }

    fn spec() -> Value {
        json!({
            "process": {"env": ["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=MIG-a"]},
            "mounts": [{"destination": "/proc"}],
            "hooks": {"prestart": [{"path": "/usr/bin/nvidia-container-runtime-hook", "args": ["x", "prestart"]},
                                   {"path": "/usr/bin/other"}]}
        })
    }

    #[test]
    fn what_docker_s_cdi_resolution_added_for_other_devices_goes() {
        let mut s = json!({
            "mounts": [{"destination": "/usr/lib/other.so", "source": "/drv/other.so", "type": "bind"},
                       {"destination": "/data", "source": "/srv"}],
            "hooks": {"createContainer": [{"path": "/usr/bin/nvidia-cdi-hook",
                "args": ["nvidia-cdi-hook", "create-symlinks", "--link", "card9"]}]}
        });
        apply(&mut s, &Method::Cdi(edits()), &["MIG-a".into()]);
        let mounts = s["mounts"].to_string();
        assert!(
            !mounts.contains("other.so") && mounts.contains("/srv"),
            "{mounts}"
        );
        assert!(!s["hooks"].to_string().contains("card9"));
    }

    #[test]
    fn cdi_edits_join_the_spec_once_and_replace_nvidia_s_legacy_hook() {
        let mut s = spec();
        let m = Method::Cdi(edits());
        apply(&mut s, &m, &["MIG-a".into()]);
        assert_eq!(
            s["process"]["env"],
            json!(["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=MIG-a", "NVIDIA_CTK=1"])
        );
        assert_eq!(s["mounts"][1]["destination"], "/usr/lib/libcuda.so.1");
        assert_eq!(s["hooks"]["prestart"], json!([{"path": "/usr/bin/other"}]));
        assert_eq!(
            s["hooks"]["createContainer"][0]["path"],
            "/usr/bin/nvidia-cdi-hook"
        );
        let once = s.clone();
        apply(&mut s, &m, &["MIG-a".into()]);
        assert_eq!(s, once);
    }

    #[test]
    fn the_hook_is_added_once_with_default_capabilities_and_device_mounts() {
        let mut s = json!({"process": {"env": ["PATH=/bin"]}});
        let m = Method::Hook("/usr/bin/nvidia-container-runtime-hook".into());
        apply(&mut s, &m, &["MIG-a".into(), "MIG-b".into()]);
        assert_eq!(
            s["hooks"]["prestart"][0]["args"],
            json!([HOOK_NAME, "prestart"])
        );
        assert_eq!(
            s["process"]["env"][1],
            "NVIDIA_DRIVER_CAPABILITIES=compute,utility"
        );
        assert_eq!(
            s["mounts"][1]["destination"],
            "/var/run/nvidia-container-devices/MIG-b"
        );
        let once = s.clone();
        apply(&mut s, &m, &["MIG-a".into(), "MIG-b".into()]);
        assert_eq!(s, once);
        // A hook dockerd already put there (--gpus) and the user's capabilities stay.
        let mut s = spec();
        s["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!("NVIDIA_DRIVER_CAPABILITIES=all"));
        apply(&mut s, &m, &["MIG-a".into()]);
        assert_eq!(s["hooks"]["prestart"].as_array().unwrap().len(), 2);
        assert!(!s["process"]["env"].to_string().contains("compute,utility"));
    }

    #[test]
    fn auto_prefers_cdi_then_the_hook_then_nodes_and_forced_ways_say_what_is_missing() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/sim/inventory.toml");
        let inv = crate::inventory::sim::parse(&p, &std::fs::read_to_string(&p).unwrap()).unwrap();
        let empty = tempfile::tempdir().unwrap();
        let mut cfg = Config {
            cdi_spec_dirs: vec![empty.path().to_path_buf()],
            ..Config::default()
        };
        let u = vec![inv.gpus[0].uuid.clone()];
        let catalog = cdi::current(empty.path(), &cfg.cdi_spec_dirs).ok_or(cdi::stale(&[]));
        let none = |hook: Option<PathBuf>| Found {
            hook,
            cdi: catalog.clone(),
        };
        let hook = Some(PathBuf::from("/h/nvidia-container-runtime-hook"));
        assert!(matches!(
            choose(&cfg, &inv, &u, &none(hook.clone())),
            Ok(Method::Hook(_))
        ));
        match choose(&cfg, &inv, &u, &none(None)) {
            Ok(Method::Nodes(why)) => {
                assert!(why.contains("install NVIDIA's container toolkit"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        cfg.driver_injection = DriverInjection::Cdi;
        assert!(
            choose(&cfg, &inv, &u, &none(hook.clone()))
                .unwrap_err()
                .contains("no CDI spec")
        );
        cfg.driver_injection = DriverInjection::Hook;
        assert!(
            choose(&cfg, &inv, &u, &none(None))
                .unwrap_err()
                .contains("not installed")
        );
        cfg.driver_injection = DriverInjection::None;
        assert!(matches!(
            choose(&cfg, &inv, &u, &none(hook)),
            Ok(Method::Nodes(_))
        ));
    }
}
