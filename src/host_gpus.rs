//! No GPU outside a container: the host's NVIDIA device nodes and MIG
//! capability nodes closed to everyone but root and `ds01-gpu-direct`
//! (`ds01 admin lock-host-gpus`), and opened again as they were
//! (`unlock-host-gpus`). Containers are not affected: the nodes
//! ds01-runtime puts in a container are its own, mode 0666 inside.
//!
//! Everything is under a root (`/` on a host, a scratch folder in tests).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The group whose members may use GPUs outside containers.
pub const GROUP: &str = "ds01-gpu-direct";
/// The modprobe options ds01 writes.
pub const MODPROBE_CONF: &str = "etc/modprobe.d/ds01-nvidia.conf";
/// What `lock` found, for `unlock` to put back byte for byte.
pub const SAVED: &str = "var/lib/ds01/host-gpus.json";
/// The driver's parameters in effect.
const PARAMS: &str = "proc/driver/nvidia/params";

/// One node's owner and mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMode {
    pub path: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// What was there before the lock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Saved {
    /// The modprobe file's earlier text; `None`: there was none.
    conf: Option<String>,
    nodes: Vec<NodeMode>,
}

/// The NVIDIA nodes under `<root>/dev`: `nvidia*` and `nvidia-caps/*`,
/// sorted. `/dev/dri` is left out: render nodes are the display stack's.
pub fn nodes(root: &Path) -> Vec<NodeMode> {
    let dev = root.join("dev");
    let mut paths: Vec<PathBuf> = Vec::new();
    let list = |dir: &Path, out: &mut Vec<PathBuf>, want: &dyn Fn(&str) -> bool| {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if want(&name) && e.file_type().is_ok_and(|t| !t.is_dir()) {
                out.push(e.path());
            }
        }
    };
    list(&dev, &mut paths, &|n| n.starts_with("nvidia"));
    list(&dev.join("nvidia-caps"), &mut paths, &|n| {
        n.starts_with("nvidia-cap")
    });
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| {
            let m = std::fs::symlink_metadata(&p).ok()?;
            Some(NodeMode {
                path: format!("/{}", p.strip_prefix(root).ok()?.display()),
                uid: m.uid(),
                gid: m.gid(),
                mode: m.mode() & 0o7777,
            })
        })
        .collect()
}

/// What is open to anyone outside root and `gid`: `(path, mode)` of each
/// such node, and of the loaded driver's parameters where it makes nodes
/// others may open (any user can have it remake them: `nvidia-modprobe`
/// is setuid root).
pub fn open_to_users(root: &Path, gid: Option<u32>) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = nodes(root)
        .into_iter()
        .filter(|n| {
            n.mode & 0o007 != 0
                || (n.mode & 0o070 != 0 && Some(n.gid) != gid && n.gid != 0)
                || n.uid != 0
        })
        .map(|n| (n.path, n.mode))
        .collect();
    if let Some(mode) = param(root, "DeviceFileMode").filter(|m| m & 0o007 != 0) {
        out.push((format!("/{PARAMS} (DeviceFileMode)"), mode));
    }
    out
}

/// One of the loaded driver's parameters (`/proc/driver/nvidia/params`).
fn param(root: &Path, key: &str) -> Option<u32> {
    let text = std::fs::read_to_string(root.join(PARAMS)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse::<u32>().ok())
}

/// A node's mode once locked: others lose every bit, and the group gets
/// what others had, never more than users had before (the MIG config
/// capability, 0400, stays root's alone).
fn locked_mode(mode: u32) -> u32 {
    let others = mode & 0o007;
    (mode & 0o7770) | (others << 3)
}

fn conf_text(gid: u32) -> String {
    format!(
        "# Written by `ds01 admin lock-host-gpus`; `ds01 admin unlock-host-gpus` removes it.\n\
         # Only root and the {GROUP} group open NVIDIA devices on the host; containers\n\
         # get theirs from ds01-runtime. MIG capability nodes (/dev/nvidia-caps) take\n\
         # the same owner and mode from the driver when it makes them.\n\
         options nvidia NVreg_DeviceFileUID=0 NVreg_DeviceFileGID={gid} NVreg_DeviceFileMode=0660 NVreg_ModifyDeviceFiles=1\n"
    )
}

/// What a lock or unlock did, one line each, and whether the driver must
/// be reloaded (or the host rebooted) before nodes it makes anew follow.
#[derive(Debug, Default, PartialEq)]
pub struct Done {
    pub lines: Vec<String>,
    pub reload_needed: bool,
}

fn io(path: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", path.display())
}

fn set(root: &Path, path: &str, uid: u32, gid: u32, mode: u32) -> Result<(), String> {
    let p = root.join(path.trim_start_matches('/'));
    std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).map_err(|e| io(&p, e))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).map_err(|e| io(&p, e))
}

/// Whether the loaded driver already makes nodes root:`gid` 0660 (its
/// parameters, where the driver is loaded; none loaded: nothing to reload).
fn driver_follows(root: &Path, gid: Option<u32>) -> bool {
    if !root.join(PARAMS).exists() {
        return true;
    }
    let param = |k: &str| param(root, k);
    match gid {
        Some(g) => {
            param("DeviceFileUID") == Some(0)
                && param("DeviceFileGID") == Some(g)
                && param("DeviceFileMode") == Some(0o660)
        }
        None => param("DeviceFileMode") == Some(0o666),
    }
}

/// Closes the host's NVIDIA nodes to all but root and `gid`.
pub fn lock(root: &Path, gid: u32) -> Result<Done, String> {
    let conf = root.join(MODPROBE_CONF);
    let saved_path = root.join(SAVED);
    let mut done = Done::default();
    // A second lock keeps what the first one saved: that is what was there.
    if !saved_path.exists() {
        let saved = Saved {
            conf: std::fs::read_to_string(&conf).ok(),
            nodes: nodes(root),
        };
        let text = serde_json::to_vec_pretty(&saved).expect("serialises");
        std::fs::create_dir_all(saved_path.parent().unwrap()).map_err(|e| io(&saved_path, e))?;
        ds01_core::fsutil::write_atomic(&saved_path, &text, 0o600)
            .map_err(|e| io(&saved_path, e))?;
    }
    std::fs::create_dir_all(conf.parent().unwrap()).map_err(|e| io(&conf, e))?;
    ds01_core::fsutil::write_atomic(&conf, conf_text(gid).as_bytes(), 0o644)
        .map_err(|e| io(&conf, e))?;
    done.lines
        .push(format!("wrote /{MODPROBE_CONF}: nodes root:{GROUP} 0660"));
    for n in nodes(root) {
        let mode = locked_mode(n.mode);
        if (n.uid, n.gid, n.mode) != (0, gid, mode) {
            set(root, &n.path, 0, gid, mode)?;
            done.lines.push(format!(
                "{}: {:o} -> {mode:o}, group {GROUP}",
                n.path, n.mode
            ));
        }
    }
    done.reload_needed = !driver_follows(root, Some(gid));
    Ok(done)
}

/// Puts back what [`lock`] found: the modprobe file (or its absence) and
/// each node's owner and mode.
pub fn unlock(root: &Path) -> Result<Done, String> {
    let saved_path = root.join(SAVED);
    let conf = root.join(MODPROBE_CONF);
    let text = match std::fs::read(&saved_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "{}: no lock to undo (lock-host-gpus was not run, or was undone)",
                saved_path.display()
            ));
        }
        Err(e) => return Err(io(&saved_path, e)),
    };
    let saved: Saved = serde_json::from_slice(&text)
        .map_err(|e| format!("{}: {e}; fix or remove it", saved_path.display()))?;
    let mut done = Done::default();
    match &saved.conf {
        Some(t) => {
            ds01_core::fsutil::write_atomic(&conf, t.as_bytes(), 0o644)
                .map_err(|e| io(&conf, e))?;
            done.lines.push(format!("restored /{MODPROBE_CONF}"));
        }
        None => match std::fs::remove_file(&conf) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&conf, e)),
            _ => done.lines.push(format!("removed /{MODPROBE_CONF}")),
        },
    }
    for n in &saved.nodes {
        if root.join(n.path.trim_start_matches('/')).exists() {
            set(root, &n.path, n.uid, n.gid, n.mode)?;
            done.lines.push(format!("{}: back to {:o}", n.path, n.mode));
        }
    }
    std::fs::remove_file(&saved_path).map_err(|e| io(&saved_path, e))?;
    done.reload_needed = !driver_follows(root, None);
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("dev");
        std::fs::create_dir_all(dev.join("nvidia-caps")).unwrap();
        for (n, mode) in [
            ("nvidia0", 0o666),
            ("nvidiactl", 0o666),
            ("nvidia-uvm", 0o666),
            ("nvidia-caps/nvidia-cap1", 0o400),
            ("nvidia-caps/nvidia-cap21", 0o444),
            ("null", 0o666),
        ] {
            let p = dev.join(n);
            std::fs::write(&p, "").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        dir
    }

    #[test]
    fn lock_closes_every_nvidia_node_and_unlock_puts_back_each_byte() {
        let root = scratch();
        let r = root.path();
        std::fs::create_dir_all(r.join("etc/modprobe.d")).unwrap();
        std::fs::write(r.join(MODPROBE_CONF), "# the admin's own\n").unwrap();
        let before = nodes(r);
        assert_eq!(before.len(), 5, "{before:?}");
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(open_to_users(r, Some(4242)).len(), 4, "cap1 is 0400 root's");
        }
        let me = unsafe { libc::getgid() };
        let done = lock(r, me).unwrap();
        let conf = std::fs::read_to_string(r.join(MODPROBE_CONF)).unwrap();
        assert!(
            conf.contains(&format!(
                "options nvidia NVreg_DeviceFileUID=0 NVreg_DeviceFileGID={me} NVreg_DeviceFileMode=0660"
            )),
            "{conf}"
        );
        assert!(!done.reload_needed, "no driver loaded here");
        std::fs::create_dir_all(r.join("proc/driver/nvidia")).unwrap();
        std::fs::write(
            r.join(PARAMS),
            "DeviceFileUID: 0\nDeviceFileGID: 0\nDeviceFileMode: 438\n",
        )
        .unwrap();
        assert!(
            lock(r, me).unwrap().reload_needed,
            "the loaded driver makes 0666 nodes"
        );
        std::fs::remove_file(r.join(PARAMS)).unwrap();
        if unsafe { libc::geteuid() } == 0 {
            let mut got: Vec<(String, u32, u32, u32)> = nodes(r)
                .into_iter()
                .map(|n| (n.path, n.uid, n.gid, n.mode))
                .collect();
            got.sort();
            let want: Vec<(String, u32, u32, u32)> = [
                ("/dev/nvidia-caps/nvidia-cap1", 0o400),
                ("/dev/nvidia-caps/nvidia-cap21", 0o440),
                ("/dev/nvidia-uvm", 0o660),
                ("/dev/nvidia0", 0o660),
                ("/dev/nvidiactl", 0o660),
            ]
            .iter()
            .map(|(p, m)| (p.to_string(), 0, me, *m))
            .collect();
            assert_eq!(
                got, want,
                "others lose every bit; the group gains none users lacked"
            );
            assert!(open_to_users(r, Some(me)).is_empty());
            // A loaded driver that makes 0666 nodes is open too.
            std::fs::create_dir_all(r.join("proc/driver/nvidia")).unwrap();
            std::fs::write(r.join(PARAMS), "DeviceFileMode: 438\n").unwrap();
            assert_eq!(open_to_users(r, Some(me)).len(), 1);
            std::fs::remove_file(r.join(PARAMS)).unwrap();
        }
        assert_eq!(
            std::fs::metadata(r.join("dev/null")).unwrap().mode() & 0o777,
            0o666,
            "not an NVIDIA node"
        );
        unlock(r).unwrap();
        assert_eq!(nodes(r), before);
        assert_eq!(
            std::fs::read_to_string(r.join(MODPROBE_CONF)).unwrap(),
            "# the admin's own\n"
        );
        assert!(!r.join(SAVED).exists());
        assert!(unlock(r).unwrap_err().contains("no lock to undo"));
        // With no file before, none after.
        std::fs::remove_file(r.join(MODPROBE_CONF)).unwrap();
        lock(r, me).unwrap();
        unlock(r).unwrap();
        assert!(!r.join(MODPROBE_CONF).exists());
    }
}
