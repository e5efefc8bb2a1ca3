//! The simulated inventory: GPUs described in a TOML file, for hosts without
//! NVIDIA hardware (tests, demos). The format is documented in `docs/inventory.md`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    Gpu, GpuSource, Inventory, InventoryError, Majors, MigDevice, MigMinors, common_nodes,
    drm_nodes, gpu_nodes, mig_nodes,
};

pub struct SimFile {
    pub path: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    majors: FileMajors,
    #[serde(default)]
    gpu: Vec<FileGpu>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMajors {
    #[serde(default = "nvidia_major")]
    nvidia: u32,
    uvm: u32,
    caps: Option<u32>,
}

fn nvidia_major() -> u32 {
    195
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGpu {
    index: u32,
    uuid: String,
    name: String,
    memory_mib: u64,
    minor: u32,
    #[serde(default)]
    mig: bool,
    cuda_arch: Option<String>,
    #[serde(default)]
    slices: u32,
    #[serde(default)]
    instances: Vec<FileMig>,
    /// Minors of `/dev/dri/cardN` and `/dev/dri/renderDN`.
    drm_card: Option<u32>,
    drm_render: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMig {
    uuid: String,
    profile: String,
    slices: u32,
    memory_mib: u64,
    gpu_instance: u32,
    compute_instance: u32,
}

impl GpuSource for SimFile {
    fn scan(&self) -> Result<Inventory, InventoryError> {
        let text = std::fs::read_to_string(&self.path).map_err(|source| InventoryError::Read {
            path: self.path.clone(),
            source,
        })?;
        parse(&self.path, &text)
    }
}

/// Parses and checks a simulated inventory.
pub fn parse(path: &Path, text: &str) -> Result<Inventory, InventoryError> {
    let invalid = |msg: String| InventoryError::Invalid {
        path: path.to_path_buf(),
        msg,
    };
    let file: File = toml::from_str(text).map_err(|e| invalid(one_line(&e)))?;
    let majors = Majors {
        nvidia: file.majors.nvidia,
        uvm: file.majors.uvm,
        caps: file.majors.caps,
    };
    let minors = MigMinors::standard();
    let mut seen_uuid = HashSet::new();
    let mut seen_index = HashSet::new();
    let mut seen_minor = HashSet::new();
    let mut gpus = Vec::new();
    for g in file.gpu {
        let at = format!("gpu {}", g.index);
        if !seen_index.insert(g.index) {
            return Err(invalid(format!("{at}: index is used twice")));
        }
        if !seen_minor.insert(g.minor) {
            return Err(invalid(format!("{at}: minor {} is used twice", g.minor)));
        }
        check_uuid(&mut seen_uuid, &g.uuid, "GPU-").map_err(|m| invalid(format!("{at}: {m}")))?;
        if !g.mig && !g.instances.is_empty() {
            return Err(invalid(format!(
                "{at}: has [[gpu.instances]] but mig is false; set mig = true"
            )));
        }
        if g.mig && g.slices == 0 {
            return Err(invalid(format!(
                "{at}: mig = true needs slices, the GPU's compute slice count (7 on an A100)"
            )));
        }
        let mut mig = Vec::new();
        let mut used = 0;
        for m in g.instances {
            let at = format!("{at} instance {}", m.uuid);
            check_uuid(&mut seen_uuid, &m.uuid, "MIG-")
                .map_err(|e| invalid(format!("{at}: {e}")))?;
            used += m.slices;
            if m.slices == 0 || used > g.slices {
                return Err(invalid(format!(
                    "{at}: slices add up to more than the GPU's {} slices",
                    g.slices
                )));
            }
            let nodes = mig_nodes(
                &majors,
                &minors,
                g.minor,
                m.gpu_instance,
                m.compute_instance,
            )
            .map_err(|e| invalid(format!("{at}: {e}")))?;
            mig.push(MigDevice {
                uuid: m.uuid,
                profile: m.profile,
                slices: m.slices,
                memory_mib: m.memory_mib,
                gpu_instance: m.gpu_instance,
                compute_instance: m.compute_instance,
                nodes,
            });
        }
        gpus.push(Gpu {
            index: g.index,
            uuid: g.uuid,
            name: g.name,
            memory_mib: g.memory_mib,
            minor: g.minor,
            mig_enabled: g.mig,
            cuda_arch: g.cuda_arch,
            slices: if g.mig { g.slices } else { 0 },
            nodes: gpu_nodes(&majors, g.minor),
            mig,
            drm: drm_nodes(g.drm_card, g.drm_render),
        });
    }
    Ok(Inventory {
        source: path.display().to_string(),
        majors,
        common_nodes: common_nodes(&majors),
        gpus,
    })
}

fn check_uuid(seen: &mut HashSet<String>, uuid: &str, prefix: &str) -> Result<(), String> {
    if !uuid.starts_with(prefix) {
        return Err(format!("uuid {uuid:?} must start with {prefix:?}"));
    }
    if !seen.insert(uuid.to_string()) {
        return Err(format!("uuid {uuid:?} is used twice"));
    }
    Ok(())
}

/// toml's messages span several lines with a source excerpt; keep the gist.
fn one_line(e: &toml::de::Error) -> String {
    let mut msg = e.message().trim().replace('\n', " ");
    if let Some(span) = e.span() {
        msg = format!("at byte {}: {msg}", span.start);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::DeviceNode;

    fn paths(nodes: &[DeviceNode]) -> Vec<&str> {
        nodes.iter().map(|n| n.path.as_str()).collect()
    }

    fn contrib() -> Inventory {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/sim/inventory.toml");
        SimFile { path }.scan().unwrap()
    }

    #[test]
    fn shipped_inventory_has_a_full_gpu_and_seven_slices() {
        let inv = contrib();
        assert_eq!(inv.gpus.len(), 2);
        let g0 = &inv.gpus[0];
        assert!(!g0.mig_enabled);
        assert_eq!(g0.memory_mib, 81920);
        assert_eq!(paths(&g0.nodes), ["/dev/nvidia0"]);
        assert_eq!(g0.nodes[0].major, 195);
        let g1 = &inv.gpus[1];
        assert!(g1.mig_enabled);
        assert_eq!(g1.mig.len(), 7);
        assert!(g1.mig.iter().all(|m| m.profile == "1g.10gb"));
        let units = inv.units();
        assert_eq!(units.len(), 8);
        assert!((units[1].gpueq() - 1.0 / 7.0).abs() < 1e-9);
        assert_eq!(paths(&inv.common_nodes)[0], "/dev/nvidiactl");
        assert_eq!(inv.common_nodes[0].major, 195);
        assert_eq!(inv.common_nodes[0].minor, 255);
    }

    fn err(text: &str) -> String {
        parse(Path::new("/x/inv.toml"), text)
            .unwrap_err()
            .to_string()
    }

    const MAJORS: &str = "[majors]\nuvm = 511\ncaps = 236\n";

    #[test]
    fn rejects_bad_files_with_the_place_and_the_fix() {
        let m = err(&format!(
            "{MAJORS}[[gpu]]\nindex=0\nuuid=\"x\"\nname=\"n\"\nmemory_mib=1\nminor=0\n"
        ));
        assert!(
            m.contains("/x/inv.toml") && m.contains("must start with \"GPU-\""),
            "{m}"
        );
        let m = err(&format!(
            "{MAJORS}[[gpu]]\nindex=0\nuuid=\"GPU-a\"\nname=\"n\"\nmemory_mib=1\nminor=0\nmig=true\n"
        ));
        assert!(m.contains("needs slices"), "{m}");
        let m = err(&format!(
            "{MAJORS}[[gpu]]\nindex=0\nuuid=\"GPU-a\"\nname=\"n\"\nmemory_mib=1\nminor=0\ncolour=1\n"
        ));
        assert!(m.contains("colour"), "{m}");
        let gpu = "[[gpu]]\nindex=0\nuuid=\"GPU-a\"\nname=\"n\"\nmemory_mib=1\nminor=0\n";
        let m = err(&format!("{MAJORS}{gpu}{}", gpu.replace("GPU-a", "GPU-b")));
        assert!(m.contains("index is used twice"), "{m}");
    }
}
