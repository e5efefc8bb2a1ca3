//! The GPUs and MIG slices on this host, and the device nodes each needs.
//!
//! Two sources fill an [`Inventory`]: NVML (in the `ds01` CLI) and a
//! simulated file ([`sim::SimFile`]). `create` never asks them directly: it
//! reads the snapshot kept in the state directory ([`snapshot`]).

pub mod minors;
pub mod sim;
pub mod snapshot;

use serde::{Deserialize, Serialize};

/// The DRM major (`/dev/dri/card*`, `renderD*`): a GPU's other nodes.
pub const DRM_MAJOR: u32 = 226;

pub use minors::MigMinors;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("inventory {path:?}: cannot read: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("inventory snapshot {path:?}: cannot write: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("inventory {path:?}: {msg}")]
    Invalid {
        path: std::path::PathBuf,
        msg: String,
    },
    #[error("nvml: {0}")]
    Nvml(String),
}

/// A character device the container needs: a `linux.devices` entry and an allow rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceNode {
    pub path: String,
    pub major: u32,
    pub minor: u32,
}

/// Character-device majors of the NVIDIA driver, from `/proc/devices`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Majors {
    /// `nvidia-frontend`: the GPUs and `/dev/nvidiactl`; always 195.
    pub nvidia: u32,
    pub uvm: u32,
    /// `nvidia-caps`: present only where MIG is possible.
    pub caps: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpu {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub memory_mib: u64,
    /// The `N` of `/dev/nvidiaN`; not the index.
    pub minor: u32,
    pub mig_enabled: bool,
    /// CUDA architecture, such as `sm_80`, where known.
    #[serde(default)]
    pub cuda_arch: Option<String>,
    /// Compute slices of the whole GPU when in MIG mode (7 on an A100 or H100).
    pub slices: u32,
    pub nodes: Vec<DeviceNode>,
    pub mig: Vec<MigDevice>,
    /// The GPU's `/dev/dri` nodes (major 226), where it has them: they
    /// reach that GPU too, so only a container holding it may have them.
    #[serde(default)]
    pub drm: Vec<DeviceNode>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigDevice {
    pub uuid: String,
    /// For example `1g.10gb`.
    pub profile: String,
    pub slices: u32,
    pub memory_mib: u64,
    pub gpu_instance: u32,
    pub compute_instance: u32,
    /// The parent's node plus the two `nvidia-caps` access nodes.
    pub nodes: Vec<DeviceNode>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// What produced it (`nvml` or the simulated file's path).
    pub source: String,
    pub majors: Majors,
    /// Nodes every GPU container needs: `/dev/nvidiactl`, `/dev/nvidia-uvm`, `/dev/nvidia-uvm-tools`.
    pub common_nodes: Vec<DeviceNode>,
    pub gpus: Vec<Gpu>,
}

/// What one allocated unit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitKind {
    Full,
    Mig,
}

impl UnitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Full => "full",
            UnitKind::Mig => "mig",
        }
    }
}

/// A device that can be handed out whole: a GPU not in MIG mode, or a MIG slice.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit<'a> {
    pub uuid: &'a str,
    pub kind: UnitKind,
    pub gpu: &'a Gpu,
    pub mig: Option<&'a MigDevice>,
}

impl Unit<'_> {
    /// `1g.10gb` for a slice, `full` for a whole GPU.
    pub fn profile(&self) -> &str {
        self.mig.map_or("full", |m| m.profile.as_str())
    }

    /// Every node the unit needs: a whole GPU's node and its DRM nodes,
    /// or a slice's parent node and access capabilities (a slice gets no
    /// DRM node: that would reach the whole GPU).
    pub fn nodes(&self) -> Vec<DeviceNode> {
        match self.mig {
            Some(m) => m.nodes.clone(),
            None => self
                .gpu
                .nodes
                .iter()
                .chain(&self.gpu.drm)
                .cloned()
                .collect(),
        }
    }

    /// GPU-equivalents: 1.0 for a full GPU, slices / parent slices for MIG.
    pub fn gpueq(&self) -> f64 {
        match self.mig {
            Some(m) if self.gpu.slices > 0 => f64::from(m.slices) / f64::from(self.gpu.slices),
            Some(_) => 0.0,
            None => 1.0,
        }
    }
}

impl Inventory {
    /// Every allocatable unit, in placement order: GPU index, then slice
    /// size, then GPU instance id. Placement walks this order, so it is deterministic.
    pub fn units(&self) -> Vec<Unit<'_>> {
        let mut out = Vec::new();
        let mut gpus: Vec<&Gpu> = self.gpus.iter().collect();
        gpus.sort_by_key(|g| g.index);
        for gpu in gpus {
            if gpu.mig_enabled {
                let mut migs: Vec<&MigDevice> = gpu.mig.iter().collect();
                migs.sort_by_key(|m| (m.slices, m.gpu_instance, m.compute_instance));
                out.extend(migs.into_iter().map(|m| Unit {
                    uuid: &m.uuid,
                    kind: UnitKind::Mig,
                    gpu,
                    mig: Some(m),
                }));
            } else {
                out.push(Unit {
                    uuid: &gpu.uuid,
                    kind: UnitKind::Full,
                    gpu,
                    mig: None,
                });
            }
        }
        out
    }

    pub fn unit(&self, uuid: &str) -> Option<Unit<'_>> {
        self.units().into_iter().find(|u| u.uuid == uuid)
    }

    /// The CUDA architectures of this host's GPUs, each once.
    pub fn cuda_archs(&self) -> Vec<String> {
        let mut a: Vec<String> = self
            .gpus
            .iter()
            .filter_map(|g| g.cuda_arch.clone())
            .collect();
        a.sort();
        a.dedup();
        a
    }

    /// Every major that belongs to the NVIDIA driver.
    pub fn nvidia_majors(&self) -> Vec<u32> {
        let mut m = vec![self.majors.nvidia, self.majors.uvm];
        m.extend(self.majors.caps);
        m
    }
}

/// The nodes every GPU container needs.
pub fn common_nodes(majors: &Majors) -> Vec<DeviceNode> {
    vec![
        node("/dev/nvidiactl", majors.nvidia, 255),
        node("/dev/nvidia-uvm", majors.uvm, 0),
        node("/dev/nvidia-uvm-tools", majors.uvm, 1),
    ]
}

/// The node of a whole GPU.
pub fn gpu_nodes(majors: &Majors, minor: u32) -> Vec<DeviceNode> {
    vec![node(&format!("/dev/nvidia{minor}"), majors.nvidia, minor)]
}

/// The nodes of a MIG slice: its parent GPU plus the GPU-instance and
/// compute-instance access capabilities.
pub fn mig_nodes(
    majors: &Majors,
    minors: &MigMinors,
    parent_minor: u32,
    gi: u32,
    ci: u32,
) -> Result<Vec<DeviceNode>, String> {
    let caps = majors
        .caps
        .ok_or("no nvidia-caps major in /proc/devices; is the driver MIG-capable?")?;
    let mut nodes = gpu_nodes(majors, parent_minor);
    for key in [
        format!("gpu{parent_minor}/gi{gi}/access"),
        format!("gpu{parent_minor}/gi{gi}/ci{ci}/access"),
    ] {
        let minor = minors
            .get(&key)
            .ok_or_else(|| format!("no {key:?} in the mig-minors table"))?;
        nodes.push(node(
            &format!("/dev/nvidia-caps/nvidia-cap{minor}"),
            caps,
            minor,
        ));
    }
    Ok(nodes)
}

/// A GPU's DRM nodes: `/dev/dri/cardN` and `/dev/dri/renderDN`.
pub fn drm_nodes(card: Option<u32>, render: Option<u32>) -> Vec<DeviceNode> {
    let major = DRM_MAJOR;
    let mut out = Vec::new();
    out.extend(card.map(|m| node(&format!("/dev/dri/card{m}"), major, m)));
    out.extend(render.map(|m| node(&format!("/dev/dri/renderD{m}"), major, m)));
    out
}

fn node(path: &str, major: u32, minor: u32) -> DeviceNode {
    DeviceNode {
        path: path.to_string(),
        major,
        minor,
    }
}

/// Makes the nodes that do not exist yet under `root` (`/` on a host), as
/// `nvidia-modprobe` would: a container in a user namespace gets its
/// device nodes bind-mounted from the host, and MIG access nodes exist
/// only once something made them. Returns the paths made.
pub fn make_missing_nodes(
    root: &std::path::Path,
    nodes: &[DeviceNode],
) -> Result<Vec<String>, String> {
    let mut made = Vec::new();
    for n in nodes {
        let path = root.join(n.path.trim_start_matches('/'));
        if std::fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        // The driver's own modes: MIG capabilities are read-only.
        let mode = if n.path.starts_with("/dev/nvidia-caps/") {
            0o444
        } else {
            0o666
        };
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|e| e.to_string())?;
        // SAFETY: mknod with a valid C string; makedev has no preconditions.
        let rc = unsafe {
            libc::mknod(
                c.as_ptr(),
                libc::S_IFCHR | mode,
                libc::makedev(n.major, n.minor),
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(format!("cannot make {}: {e}", path.display()));
            }
        }
        // The umask narrowed mknod's mode.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
        made.push(n.path.clone());
    }
    Ok(made)
}

/// Something that can list this host's GPUs.
pub trait GpuSource {
    fn scan(&self) -> Result<Inventory, InventoryError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn majors() -> Majors {
        Majors {
            nvidia: 195,
            uvm: 511,
            caps: Some(236),
        }
    }

    #[test]
    fn mig_nodes_use_parent_minor_and_caps() {
        let nodes = mig_nodes(&majors(), &MigMinors::standard(), 1, 7, 0).unwrap();
        let paths: Vec<_> = nodes.iter().map(|n| n.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/dev/nvidia1",
                "/dev/nvidia-caps/nvidia-cap201",
                "/dev/nvidia-caps/nvidia-cap202"
            ]
        );
        assert!(nodes[1..].iter().all(|n| n.major == 236));
    }

    #[test]
    fn missing_nodes_are_made_as_the_driver_makes_them() {
        use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return; // mknod needs root; the suite runs as root.
        }
        let root = tempfile::tempdir().unwrap();
        let nodes = mig_nodes(&majors(), &MigMinors::standard(), 1, 7, 0).unwrap();
        std::fs::create_dir_all(root.path().join("dev")).unwrap();
        std::fs::write(root.path().join("dev/nvidia1"), "").unwrap();
        let made = make_missing_nodes(root.path(), &nodes).unwrap();
        assert_eq!(
            made,
            [
                "/dev/nvidia-caps/nvidia-cap201",
                "/dev/nvidia-caps/nvidia-cap202"
            ]
        );
        let m = std::fs::metadata(root.path().join("dev/nvidia-caps/nvidia-cap201")).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!((libc::major(m.rdev()), libc::minor(m.rdev())), (236, 201));
        assert_eq!(m.permissions().mode() & 0o777, 0o444);
        let all = common_nodes(&majors());
        make_missing_nodes(root.path(), &all).unwrap();
        let m = std::fs::metadata(root.path().join("dev/nvidia-uvm")).unwrap();
        assert_eq!(
            m.permissions().mode() & 0o777,
            0o666,
            "not narrowed by the umask"
        );
        assert!(make_missing_nodes(root.path(), &nodes).unwrap().is_empty());
    }

    #[test]
    fn mig_nodes_without_caps_major_is_an_error() {
        let m = Majors {
            caps: None,
            ..majors()
        };
        assert!(mig_nodes(&m, &MigMinors::standard(), 0, 1, 0).is_err());
    }
}
