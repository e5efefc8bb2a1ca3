//! What runs on each device and in each container, for idle detection and
//! `ds01 gpus`: compute processes per device (NVML, per MIG instance; or a
//! simulated file), a full GPU's utilisation, and a container's CPU time
//! from its cgroup.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Compute activity on the devices; NVML in the CLI, a file in tests.
pub trait Activity {
    /// The host pids of the compute processes on a device.
    fn processes(&self, uuid: &str) -> Result<Vec<u32>, String>;
    /// A full GPU's utilisation in percent, where known.
    fn utilization(&self, uuid: &str) -> Option<u32>;
    /// The device's memory in use, in bytes, where known.
    fn memory_used(&self, _uuid: &str) -> Option<u64> {
        None
    }
}

/// One device as the simulated activity file describes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimDevice {
    #[serde(default)]
    pub processes: Vec<u32>,
    #[serde(default)]
    pub utilization: Option<u32>,
    #[serde(default)]
    pub memory_used_bytes: Option<u64>,
}

/// Simulated activity: a JSON object from device UUID to
/// `{"processes": [pid, ...], "utilization": percent}`. Devices it does not
/// name are idle; a missing file means every device is idle.
pub struct SimActivity {
    pub path: PathBuf,
}

impl SimActivity {
    fn read(&self) -> Result<BTreeMap<String, SimDevice>, String> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| format!("activity file {:?}: {e}", self.path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(format!("activity file {:?}: {e}", self.path)),
        }
    }
}

impl Activity for SimActivity {
    fn processes(&self, uuid: &str) -> Result<Vec<u32>, String> {
        Ok(self
            .read()?
            .get(uuid)
            .map(|d| d.processes.clone())
            .unwrap_or_default())
    }

    fn utilization(&self, uuid: &str) -> Option<u32> {
        self.read().ok()?.get(uuid).and_then(|d| d.utilization)
    }

    fn memory_used(&self, uuid: &str) -> Option<u64> {
        self.read()
            .ok()?
            .get(uuid)
            .and_then(|d| d.memory_used_bytes)
    }
}

/// No source of GPU activity (the config names none): only CPU counts.
pub struct NoActivity;

impl Activity for NoActivity {
    fn processes(&self, _: &str) -> Result<Vec<u32>, String> {
        Ok(Vec::new())
    }

    fn utilization(&self, _: &str) -> Option<u32> {
        None
    }
}

/// Whether anything computes on these devices.
pub fn busy(activity: &dyn Activity, uuids: &[String]) -> Result<bool, String> {
    for u in uuids {
        if !activity.processes(u)?.is_empty() || activity.utilization(u).is_some_and(|p| p > 0) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The container a process belongs to: the 64-hex id in its cgroup path
/// (`/proc/<pid>/cgroup`: `docker-<id>.scope`, `/docker/<id>`, or
/// `cri-containerd-<id>.scope`).
pub fn container_of(proc_root: &Path, pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    text.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        path.split(['/', '-', '.'])
            .find(|part| part.len() == 64 && part.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(String::from)
    })
}

/// A process's cgroup v2 CPU time in microseconds (`cpu.stat`'s
/// `usage_usec`), found through `/proc/<pid>/cgroup`.
pub fn cpu_usec(proc_root: &Path, cgroup_root: &Path, pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let stat = std::fs::read_to_string(
        cgroup_root
            .join(path.trim_start_matches('/'))
            .join("cpu.stat"),
    )
    .ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e9c1b2a7d8e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

    #[test]
    fn processes_map_to_their_container_by_cgroup() {
        let d = tempfile::tempdir().unwrap();
        for (pid, cg) in [
            (10, format!("0::/system.slice/docker-{ID}.scope\n")),
            (11, format!("12:pids:/docker/{ID}\n0::/docker/{ID}\n")),
            (
                12,
                "0::/user.slice/user-1000.slice/session-3.scope\n".to_string(),
            ),
        ] {
            std::fs::create_dir_all(d.path().join(format!("{pid}"))).unwrap();
            std::fs::write(d.path().join(format!("{pid}/cgroup")), cg).unwrap();
        }
        assert_eq!(container_of(d.path(), 10).as_deref(), Some(ID));
        assert_eq!(container_of(d.path(), 11).as_deref(), Some(ID));
        assert_eq!(container_of(d.path(), 12), None);
        assert_eq!(container_of(d.path(), 13), None);
    }

    #[test]
    fn cpu_time_comes_from_the_process_s_cgroup() {
        let d = tempfile::tempdir().unwrap();
        let (procs, cg) = (d.path().join("proc"), d.path().join("cg"));
        std::fs::create_dir_all(procs.join("10")).unwrap();
        std::fs::write(procs.join("10/cgroup"), format!("0::/docker/{ID}\n")).unwrap();
        std::fs::create_dir_all(cg.join(format!("docker/{ID}"))).unwrap();
        std::fs::write(
            cg.join(format!("docker/{ID}/cpu.stat")),
            "usage_usec 123456\nuser_usec 1\n",
        )
        .unwrap();
        assert_eq!(cpu_usec(&procs, &cg, 10), Some(123456));
        assert_eq!(cpu_usec(&procs, &cg, 11), None);
    }

    #[test]
    fn simulated_activity_is_read_from_its_file() {
        let d = tempfile::tempdir().unwrap();
        let a = SimActivity {
            path: d.path().join("activity.json"),
        };
        assert!(!busy(&a, &["MIG-1".into()]).unwrap());
        std::fs::write(
            &a.path,
            r#"{"MIG-1": {"processes": [42]}, "GPU-2": {"utilization": 30}, "GPU-3": {}}"#,
        )
        .unwrap();
        assert_eq!(a.processes("MIG-1").unwrap(), [42]);
        assert!(busy(&a, &["MIG-1".into()]).unwrap());
        assert!(busy(&a, &["GPU-2".into()]).unwrap());
        assert!(!busy(&a, &["GPU-3".into(), "MIG-9".into()]).unwrap());
        std::fs::write(&a.path, "{").unwrap();
        assert!(
            busy(&a, &["MIG-1".into()])
                .unwrap_err()
                .contains("activity.json")
        );
    }
}
