//! The NVML backend: the GPUs and MIG slices the driver reports, with the
//! device-node numbers read from `/proc`.

use std::os::raw::c_uint;
use std::path::Path;

use nvml_wrapper::error::{NvmlError, nvml_sym, nvml_try};
use nvml_wrapper::{Device, Nvml};

use ds01_core::inventory::{
    Gpu, GpuSource, Inventory, InventoryError, Majors, MigDevice, MigMinors, common_nodes,
    gpu_nodes, mig_nodes, minors,
};

const PROC_DEVICES: &str = "/proc/devices";

/// The frontend's major when `/proc/devices` does not name it; fixed by the driver.
const DEFAULT_NVIDIA_MAJOR: u32 = 195;

// nvml-wrapper does not re-export these nvml-wrapper-sys 0.10 constants.
const NVML_DEVICE_MIG_ENABLE: u32 = 1;
const NVML_GPU_INSTANCE_PROFILE_COUNT: u32 = 17;

/// Compute slices of an A100 or H100, for when no GPU-instance profile answers.
const DEFAULT_SLICES: u32 = 7;

const MIB: u64 = 1024 * 1024;

/// Scans the host's GPUs through `libnvidia-ml.so.1`.
pub struct NvmlSource;

/// Compute activity per device through NVML. A MIG slice's UUID gives the
/// MIG device's own handle, whose running compute processes are that
/// slice's alone (whole-GPU utilisation cannot tell slices apart).
pub struct NvmlActivity {
    nvml: Result<Nvml, String>,
}

impl NvmlActivity {
    pub fn new() -> NvmlActivity {
        NvmlActivity {
            nvml: Nvml::init().map_err(|e| format!("cannot load NVML (libnvidia-ml.so.1): {e}")),
        }
    }

    fn device(&self, uuid: &str) -> Result<Device<'_>, String> {
        let nvml = self.nvml.as_ref().map_err(Clone::clone)?;
        nvml.device_by_uuid(uuid)
            .map_err(|e| format!("nvml: device {uuid}: {e}"))
    }
}

impl Default for NvmlActivity {
    fn default() -> Self {
        Self::new()
    }
}

impl ds01_core::activity::Activity for NvmlActivity {
    fn processes(&self, uuid: &str) -> Result<Vec<u32>, String> {
        let dev = self.device(uuid)?;
        let procs = dev
            .running_compute_processes()
            .map_err(|e| format!("nvml: compute processes on {uuid}: {e}"))?;
        Ok(procs.into_iter().map(|p| p.pid).collect())
    }

    fn utilization(&self, uuid: &str) -> Option<u32> {
        if uuid.starts_with("MIG-") {
            return None;
        }
        self.device(uuid)
            .ok()?
            .utilization_rates()
            .ok()
            .map(|u| u.gpu)
    }

    fn memory_used(&self, uuid: &str) -> Option<u64> {
        self.device(uuid).ok()?.memory_info().ok().map(|m| m.used)
    }
}

impl GpuSource for NvmlSource {
    fn scan(&self) -> Result<Inventory, InventoryError> {
        // nvml-wrapper dlopens the library, so a host without a driver gets
        // an error here rather than a link failure.
        let nvml = Nvml::init().map_err(|e| {
            InventoryError::Nvml(format!(
                "cannot load NVML (libnvidia-ml.so.1): {e}; is the NVIDIA driver installed? \
                 On a host without GPUs set `inventory` in config.toml to a simulated-inventory file"
            ))
        })?;
        let majors = read_majors()?;
        scan_with(
            &NvmlDriver(&nvml),
            majors,
            || read_proc(minors::PROC_PATH),
            Path::new("/sys/bus/pci/devices"),
        )
    }
}

/// What the scan asks of one GPU, answered by NVML or, in tests, by
/// answers recorded from real drivers.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuAnswers {
    pub uuid: String,
    pub name: String,
    pub memory_mib: u64,
    pub minor: u32,
    pub mig_enabled: bool,
    /// `(major, minor)` CUDA compute capability, where the driver says.
    pub compute_capability: Option<(i32, i32)>,
    /// Compute slices of the largest GPU-instance profile (MIG mode only).
    pub slices: u32,
    pub pci_bus_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MigAnswers {
    pub uuid: String,
    /// Such as `NVIDIA A100-SXM4-80GB MIG 1g.10gb`.
    pub name: String,
    pub memory_mib: u64,
    pub slices: u32,
    pub gpu_instance: u32,
    pub compute_instance: u32,
}

/// The driver, as the scan sees it.
pub trait Driver {
    fn device_count(&self) -> Result<u32, String>;
    fn gpu(&self, index: u32) -> Result<GpuAnswers, String>;
    /// The MIG devices present on GPU `index` (empty slots left out).
    fn migs(&self, index: u32) -> Result<Vec<MigAnswers>, String>;
}

/// The inventory from a driver's answers, the majors from `/proc/devices`,
/// the MIG minors table (read only once some GPU is in MIG mode: elsewhere
/// the file may not exist) and the PCI devices folder of sysfs.
pub fn scan_with(
    driver: &dyn Driver,
    majors: Majors,
    mig_minors_text: impl FnOnce() -> Result<String, InventoryError>,
    pci_root: &Path,
) -> Result<Inventory, InventoryError> {
    let nvml = |e: String| InventoryError::Nvml(e);
    let count = driver.device_count().map_err(nvml)?;
    let mut read_table = Some(mig_minors_text);
    let mut table: Option<MigMinors> = None;
    let mut gpus = Vec::new();
    for index in 0..count {
        let g = driver.gpu(index).map_err(nvml)?;
        let mig = if g.mig_enabled {
            if table.is_none() {
                let text = (read_table.take().expect("read once"))()?;
                table = Some(
                    MigMinors::parse(&text).map_err(|msg| InventoryError::Invalid {
                        path: minors::PROC_PATH.into(),
                        msg,
                    })?,
                );
            }
            let table = table.as_ref().expect("just read");
            driver
                .migs(index)
                .map_err(nvml)?
                .into_iter()
                .map(|m| mig_device(&majors, table, index, g.minor, m))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
        gpus.push(Gpu {
            index,
            uuid: g.uuid,
            name: g.name,
            memory_mib: g.memory_mib,
            minor: g.minor,
            mig_enabled: g.mig_enabled,
            cuda_arch: g.compute_capability.map(|(ma, mi)| format!("sm_{ma}{mi}")),
            slices: if g.mig_enabled { g.slices } else { 0 },
            nodes: gpu_nodes(&majors, g.minor),
            mig,
            drm: g
                .pci_bus_id
                .map(|id| drm_of(pci_root, &id))
                .unwrap_or_default(),
        });
    }
    Ok(Inventory {
        source: "nvml".to_string(),
        majors,
        common_nodes: common_nodes(&majors),
        gpus,
    })
}

fn mig_device(
    majors: &Majors,
    table: &MigMinors,
    index: u32,
    parent_minor: u32,
    m: MigAnswers,
) -> Result<MigDevice, InventoryError> {
    let profile = profile_from_name(&m.name).ok_or_else(|| {
        InventoryError::Nvml(format!(
            "gpu {index}: MIG device {}: no profile in the name {:?}",
            m.uuid, m.name
        ))
    })?;
    let nodes = mig_nodes(
        majors,
        table,
        parent_minor,
        m.gpu_instance,
        m.compute_instance,
    )
    .map_err(|msg| InventoryError::Nvml(format!("gpu {index}: MIG device {}: {msg}", m.uuid)))?;
    Ok(MigDevice {
        uuid: m.uuid,
        profile: profile.to_string(),
        slices: m.slices,
        memory_mib: m.memory_mib,
        gpu_instance: m.gpu_instance,
        compute_instance: m.compute_instance,
        nodes,
    })
}

/// NVML behind [`Driver`].
struct NvmlDriver<'a>(&'a Nvml);

impl Driver for NvmlDriver<'_> {
    fn device_count(&self) -> Result<u32, String> {
        self.0
            .device_count()
            .map_err(|e| format!("cannot count the GPUs: {e}"))
    }

    fn gpu(&self, index: u32) -> Result<GpuAnswers, String> {
        let what = |w: &str| format!("gpu {index}: cannot read {w}");
        let device = self
            .0
            .device_by_index(index)
            .map_err(|e| format!("{}: {e}", what("the device handle")))?;
        let mig_enabled =
            mig_enabled(&device).map_err(|e| format!("{}: {e}", what("the MIG mode")))?;
        Ok(GpuAnswers {
            uuid: device
                .uuid()
                .map_err(|e| format!("{}: {e}", what("the uuid")))?,
            name: device
                .name()
                .map_err(|e| format!("{}: {e}", what("the name")))?,
            memory_mib: memory_mib(&device)
                .map_err(|e| format!("{}: {e}", what("the memory size")))?,
            minor: device
                .minor_number()
                .map_err(|e| format!("{}: {e}", what("the minor number")))?,
            mig_enabled,
            // Only for choosing images: a driver that cannot say is no error.
            compute_capability: device
                .cuda_compute_capability()
                .ok()
                .map(|c| (c.major, c.minor)),
            slices: if mig_enabled {
                parent_slices(&device)
            } else {
                0
            },
            pci_bus_id: device.pci_info().ok().map(|p| p.bus_id),
        })
    }

    fn migs(&self, index: u32) -> Result<Vec<MigAnswers>, String> {
        let parent = self
            .0
            .device_by_index(index)
            .map_err(|e| format!("gpu {index}: {e}"))?;
        let max = parent
            .mig_device_count()
            .map_err(|e| format!("gpu {index}: cannot read the MIG device count: {e}"))?;
        let mut out = Vec::new();
        for slot in 0..max {
            let mig = match parent.mig_device_by_index(slot) {
                Ok(mig) => mig,
                // An empty slot: no compute instance there.
                Err(NvmlError::NotFound | NvmlError::InvalidArg) => continue,
                Err(e) => return Err(format!("gpu {index}: MIG device {slot}: {e}")),
            };
            out.push(
                self.mig(&mig)
                    .map_err(|e| format!("gpu {index}: MIG device {slot}: {e}"))?,
            );
        }
        Ok(out)
    }
}

impl NvmlDriver<'_> {
    fn mig(&self, mig: &Device<'_>) -> Result<MigAnswers, NvmlError> {
        let lib = self.0.lib();
        // SAFETY: the handle comes from this `nvml`, which outlives the calls.
        let handle = unsafe { mig.handle() };
        Ok(MigAnswers {
            gpu_instance: get_u32(nvml_sym(lib.nvmlDeviceGetGpuInstanceId.as_ref()), handle)?,
            compute_instance: get_u32(
                nvml_sym(lib.nvmlDeviceGetComputeInstanceId.as_ref()),
                handle,
            )?,
            name: mig.name()?,
            uuid: mig.uuid()?,
            slices: mig.attributes()?.gpu_instance_slice_count,
            memory_mib: memory_mib(mig)?,
        })
    }
}

/// Parses `/proc/devices` for the NVIDIA character-device majors.
pub fn parse_proc_devices(text: &str) -> Result<Majors, String> {
    let devices = ds01_core::access::char_devices(text)
        .ok_or_else(|| "no \"Character devices:\" section".to_string())?;
    let (mut frontend, mut nvidia, mut uvm, mut caps) = (None, None, None, None);
    for (major, name) in devices {
        // Exact names: `nvidia-caps-imex-channels`, `nvidia-nvlink` and the like are other drivers.
        let slot = match name {
            "nvidia-frontend" => &mut frontend,
            "nvidia" => &mut nvidia,
            "nvidia-uvm" => &mut uvm,
            "nvidia-caps" => &mut caps,
            _ => continue,
        };
        *slot = Some(major);
    }
    Ok(Majors {
        nvidia: frontend.or(nvidia).unwrap_or(DEFAULT_NVIDIA_MAJOR),
        uvm: uvm.ok_or("no nvidia-uvm major: the nvidia-uvm module is not loaded")?,
        caps,
    })
}

/// The majors. `nvidia-uvm` is often loaded only on first CUDA use: as
/// NVIDIA's toolkit does, `nvidia-modprobe -u -c=0` loads it (and makes
/// `/dev/nvidia-uvm*`) when installed; else the error says what to run.
fn read_majors() -> Result<Majors, InventoryError> {
    let parse = || {
        let text = read_proc(PROC_DEVICES)?;
        parse_proc_devices(&text).map_err(|msg| InventoryError::Invalid {
            path: PROC_DEVICES.into(),
            msg,
        })
    };
    match parse() {
        Err(InventoryError::Invalid { msg, .. }) if msg.contains("nvidia-uvm") => {
            let loaded = std::process::Command::new("nvidia-modprobe")
                .args(["-u", "-c=0"])
                .status()
                .is_ok_and(|s| s.success());
            if loaded {
                return parse();
            }
            Err(InventoryError::Invalid {
                path: PROC_DEVICES.into(),
                msg: format!(
                    "{msg} (it loads on first CUDA use); load it now and at boot: \
                     nvidia-modprobe -u -c=0 (from NVIDIA's driver packages), or modprobe nvidia-uvm"
                ),
            })
        }
        other => other,
    }
}

fn read_proc(path: &str) -> Result<String, InventoryError> {
    std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
        path: Path::new(path).to_path_buf(),
        source,
    })
}

/// A GPU's DRM nodes, from sysfs: `<pci>/drm/cardN` and `renderDN`.
/// NVML reports the bus id in upper case with an 8-digit domain; sysfs
/// names it in lower case with a 4-digit one.
pub fn drm_of(pci_root: &Path, bus_id: &str) -> Vec<ds01_core::inventory::DeviceNode> {
    let id = bus_id.to_ascii_lowercase();
    let id = match id.split_once(':') {
        Some((dom, rest)) if dom.len() > 4 => format!("{}:{rest}", &dom[dom.len() - 4..]),
        _ => id,
    };
    let Ok(dir) = std::fs::read_dir(pci_root.join(id).join("drm")) else {
        return Vec::new();
    };
    let mut card = None;
    let mut render = None;
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_prefix("card").and_then(|n| n.parse().ok()) {
            card = Some(n);
        } else if let Some(n) = name.strip_prefix("renderD").and_then(|n| n.parse().ok()) {
            render = Some(n);
        }
    }
    ds01_core::inventory::drm_nodes(card, render)
}

/// Whether MIG mode is on now (not pending); GPUs and drivers without MIG say no.
fn mig_enabled(device: &Device<'_>) -> Result<bool, NvmlError> {
    match device.mig_mode() {
        Ok(mode) => Ok(mode.current == NVML_DEVICE_MIG_ENABLE),
        Err(NvmlError::NotSupported | NvmlError::FailedToLoadSymbol(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

fn memory_mib(device: &Device<'_>) -> Result<u64, NvmlError> {
    Ok(device.memory_info()?.total / MIB)
}

/// The GPU's compute slices: the largest GPU-instance profile it supports.
fn parent_slices(device: &Device<'_>) -> u32 {
    // Unsupported profile ids answer NotSupported or InvalidArg; skip them.
    (0..NVML_GPU_INSTANCE_PROFILE_COUNT)
        .filter_map(|profile| device.profile_info(profile).ok())
        .map(|info| info.slice_count)
        .max()
        .unwrap_or(DEFAULT_SLICES)
}

/// Calls a raw NVML getter of the form `f(handle, *mut c_uint)`.
fn get_u32<H>(
    sym: Result<&unsafe extern "C" fn(H, *mut c_uint) -> c_uint, NvmlError>,
    handle: H,
) -> Result<u32, NvmlError> {
    let sym = sym?;
    let mut out: c_uint = 0;
    // SAFETY: `handle` is a live NVML handle and `out` a valid place for the result;
    // `nvml_try` turns anything but NVML_SUCCESS into an error.
    nvml_try(unsafe { sym(handle, &mut out) })?;
    Ok(out)
}

/// `NVIDIA H100 80GB HBM3 MIG 1g.10gb` -> `1g.10gb`.
fn profile_from_name(name: &str) -> Option<&str> {
    let (_, profile) = name.rsplit_once("MIG ")?;
    let profile = profile.trim();
    (!profile.is_empty()).then_some(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers recorded from real drivers (`nvidia-smi -q`, `nvidia-smi mig -lgi/-lci`).
    struct Recorded(Vec<(GpuAnswers, Vec<MigAnswers>)>);

    impl Driver for Recorded {
        fn device_count(&self) -> Result<u32, String> {
            Ok(self.0.len() as u32)
        }
        fn gpu(&self, index: u32) -> Result<GpuAnswers, String> {
            Ok(self.0[index as usize].0.clone())
        }
        fn migs(&self, index: u32) -> Result<Vec<MigAnswers>, String> {
            Ok(self.0[index as usize].1.clone())
        }
    }

    fn gpu(uuid: &str, name: &str, mib: u64, minor: u32, mig: bool, cc: (i32, i32)) -> GpuAnswers {
        GpuAnswers {
            uuid: uuid.into(),
            name: name.into(),
            memory_mib: mib,
            minor,
            mig_enabled: mig,
            compute_capability: Some(cc),
            slices: if mig { 7 } else { 0 },
            pci_bus_id: Some(format!("00000000:{:02X}:00.0", 0x17 + minor)),
        }
    }

    fn slice(uuid: &str, profile: &str, mib: u64, slices: u32, gi: u32) -> MigAnswers {
        MigAnswers {
            uuid: uuid.into(),
            name: format!("NVIDIA A100-SXM4-80GB MIG {profile}"),
            memory_mib: mib,
            slices,
            gpu_instance: gi,
            compute_instance: 0,
        }
    }

    /// The driver's mig-minors file for two GPUs, as it lays it out.
    fn mig_minors_text() -> String {
        let mut t = String::from("config 1\nmonitor 2\n");
        let mut minor = 3;
        for g in 0..2 {
            for gi in 0..15 {
                t += &format!("gpu{g}/gi{gi}/access {minor}\n");
                minor += 1;
                for ci in 0..8 {
                    t += &format!("gpu{g}/gi{gi}/ci{ci}/access {minor}\n");
                    minor += 1;
                }
            }
        }
        t
    }

    fn scan(gpus: Vec<(GpuAnswers, Vec<MigAnswers>)>) -> Inventory {
        let majors = parse_proc_devices(H100_HOST).unwrap();
        let pci = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(pci.path().join("0000:17:00.0/drm/card1")).unwrap();
        std::fs::create_dir_all(pci.path().join("0000:17:00.0/drm/renderD128")).unwrap();
        scan_with(
            &Recorded(gpus),
            majors,
            || Ok(mig_minors_text()),
            pci.path(),
        )
        .unwrap()
    }

    #[test]
    fn an_a100_with_seven_1g_slices() {
        let slices: Vec<MigAnswers> = (0..7)
            .map(|i| slice(&format!("MIG-a100-{i}"), "1g.10gb", 9856, 1, 7 + i))
            .collect();
        let inv = scan(vec![(
            gpu("GPU-a100", "NVIDIA A100-SXM4-80GB", 81920, 0, true, (8, 0)),
            slices,
        )]);
        let g = &inv.gpus[0];
        assert_eq!(
            (g.uuid.as_str(), g.minor, g.memory_mib, g.slices),
            ("GPU-a100", 0, 81920, 7)
        );
        assert_eq!(g.cuda_arch.as_deref(), Some("sm_80"));
        assert_eq!(g.mig.len(), 7);
        assert!(
            g.mig
                .iter()
                .all(|m| m.profile == "1g.10gb" && m.memory_mib == 9856)
        );
        // gpu0/gi7/access is minor 3 + 7*9 = 66, its ci0 67.
        let m = &g.mig[0];
        let paths: Vec<&str> = m.nodes.iter().map(|n| n.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/dev/nvidia0",
                "/dev/nvidia-caps/nvidia-cap66",
                "/dev/nvidia-caps/nvidia-cap67"
            ]
        );
        assert!(m.nodes[1..].iter().all(|n| n.major == 236));
        assert_eq!(inv.units().len(), 7);
        assert_eq!(g.drm.len(), 2, "the GPU's DRM nodes from sysfs");
    }

    #[test]
    fn an_a100_with_mixed_profiles() {
        let inv = scan(vec![(
            gpu("GPU-mixed", "NVIDIA A100-SXM4-80GB", 81920, 1, true, (8, 0)),
            vec![
                slice("MIG-3g", "3g.40gb", 40192, 3, 2),
                slice("MIG-2g", "2g.20gb", 19968, 2, 3),
                slice("MIG-1g", "1g.10gb", 9856, 1, 9),
            ],
        )]);
        let g = &inv.gpus[0];
        let got: Vec<(&str, &str, u64, u32)> = g
            .mig
            .iter()
            .map(|m| (m.uuid.as_str(), m.profile.as_str(), m.memory_mib, m.slices))
            .collect();
        assert_eq!(
            got,
            [
                ("MIG-3g", "3g.40gb", 40192, 3),
                ("MIG-2g", "2g.20gb", 19968, 2),
                ("MIG-1g", "1g.10gb", 9856, 1)
            ]
        );
        // GPU minor 1 is gpu1 in the caps table: 3 + 135 + 2*9 = 156.
        assert_eq!(g.mig[0].nodes[0].path, "/dev/nvidia1");
        assert_eq!(g.mig[0].nodes[1].minor, 156);
        let eq: Vec<f64> = inv
            .units()
            .iter()
            .map(|u| (u.gpueq() * 7.0).round())
            .collect();
        assert_eq!(
            eq,
            [1.0, 2.0, 3.0],
            "placement walks the smallest slices first"
        );
    }

    #[test]
    fn h100_and_h200_without_mig_are_whole_gpus() {
        let inv = scan(vec![
            (
                gpu("GPU-h100", "NVIDIA H100 80GB HBM3", 81559, 0, false, (9, 0)),
                vec![],
            ),
            (
                gpu("GPU-h200", "NVIDIA H200", 143771, 1, false, (9, 0)),
                vec![],
            ),
        ]);
        let units = inv.units();
        assert_eq!(units.len(), 2);
        assert!(
            units
                .iter()
                .all(|u| u.kind == ds01_core::inventory::UnitKind::Full)
        );
        assert_eq!(inv.gpus[1].memory_mib, 143771);
        assert_eq!(inv.gpus[1].nodes[0].path, "/dev/nvidia1");
        assert_eq!(inv.cuda_archs(), ["sm_90"]);
        assert_eq!((inv.majors.uvm, inv.majors.caps), (510, Some(236)));
    }

    #[test]
    fn mig_on_without_instances_offers_nothing_on_that_gpu() {
        let inv = scan(vec![(
            gpu("GPU-empty", "NVIDIA A100-SXM4-80GB", 81920, 0, true, (8, 0)),
            vec![],
        )]);
        assert!(inv.gpus[0].mig_enabled && inv.gpus[0].mig.is_empty());
        assert!(inv.units().is_empty());
    }

    #[test]
    fn a_bad_mig_name_or_a_missing_minors_entry_is_an_error_naming_the_device() {
        let majors = parse_proc_devices(H100_HOST).unwrap();
        let mut bad = slice("MIG-x", "1g.10gb", 9856, 1, 7);
        bad.name = "NVIDIA A100".into();
        let e = scan_with(
            &Recorded(vec![(
                gpu("GPU-a", "A100", 81920, 0, true, (8, 0)),
                vec![bad],
            )]),
            majors,
            || Ok(mig_minors_text()),
            Path::new("/nonexistent"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("MIG-x") && e.contains("no profile"), "{e}");
        let e = scan_with(
            &Recorded(vec![(
                gpu("GPU-a", "A100", 81920, 0, true, (8, 0)),
                vec![slice("MIG-y", "1g.10gb", 1, 1, 7)],
            )]),
            majors,
            || Ok("config 1\nmonitor 2\n".into()),
            Path::new("/nonexistent"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("gpu0/gi7/access"), "{e}");
    }

    #[test]
    fn drm_nodes_come_from_the_gpu_s_sysfs_folder() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path().join("0000:17:00.0/drm");
        std::fs::create_dir_all(d.join("card1")).unwrap();
        std::fs::create_dir_all(d.join("renderD128")).unwrap();
        let nodes = drm_of(root.path(), "00000000:17:00.0");
        let got: Vec<_> = nodes
            .iter()
            .map(|n| (n.path.as_str(), n.major, n.minor))
            .collect();
        assert_eq!(
            got,
            [
                ("/dev/dri/card1", 226, 1),
                ("/dev/dri/renderD128", 226, 128)
            ]
        );
        assert!(drm_of(root.path(), "00000000:18:00.0").is_empty());
    }

    const H100_HOST: &str = "Character devices:
  1 mem
  4 /dev/vc/0
  4 tty
  5 /dev/tty
  5 /dev/console
  5 /dev/ptmx
 10 misc
 13 input
 29 fb
128 ptm
136 pts
195 nvidia-frontend
195 nvidia
234 nvidia-nvswitch
235 nvidia-caps-imex-channels
236 nvidia-caps
237 nvidia-nvlink
510 nvidia-uvm
511 hidraw

Block devices:
  7 loop
  8 sd
259 blkext
";

    #[test]
    fn parses_an_h100_host() {
        let m = parse_proc_devices(H100_HOST).unwrap();
        assert_eq!(
            m,
            Majors {
                nvidia: 195,
                uvm: 510,
                caps: Some(236),
            }
        );
    }

    #[test]
    fn plain_nvidia_name_gives_the_major_and_caps_are_optional() {
        let text =
            "Character devices:\n  1 mem\n195 nvidia\n508 nvidia-uvm\n\nBlock devices:\n  8 sd\n";
        let m = parse_proc_devices(text).unwrap();
        assert_eq!(
            m,
            Majors {
                nvidia: 195,
                uvm: 508,
                caps: None,
            }
        );
    }

    #[test]
    fn frontend_wins_over_nvidia_and_default_is_195() {
        let text = "Character devices:\n200 nvidia\n201 nvidia-frontend\n509 nvidia-uvm\n";
        assert_eq!(parse_proc_devices(text).unwrap().nvidia, 201);
        let text = "Character devices:\n509 nvidia-uvm\n";
        assert_eq!(parse_proc_devices(text).unwrap().nvidia, 195);
    }

    #[test]
    fn missing_uvm_is_an_error() {
        let text = "Character devices:\n195 nvidia-frontend\n236 nvidia-caps\n";
        let err = parse_proc_devices(text).unwrap_err();
        assert!(err.contains("nvidia-uvm module is not loaded"), "{err}");
    }

    #[test]
    fn block_devices_are_ignored() {
        let text = "Character devices:\n195 nvidia\n\nBlock devices:\n510 nvidia-uvm\n";
        assert!(parse_proc_devices(text).is_err());
    }

    #[test]
    fn text_without_the_section_is_an_error() {
        assert!(parse_proc_devices("").is_err());
        assert!(parse_proc_devices("510 nvidia-uvm\n").is_err());
    }

    #[test]
    fn profile_is_the_text_after_the_last_mig() {
        assert_eq!(
            profile_from_name("NVIDIA H100 80GB HBM3 MIG 1g.10gb"),
            Some("1g.10gb")
        );
        assert_eq!(
            profile_from_name("NVIDIA A100-SXM4-40GB MIG 1c.3g.20gb"),
            Some("1c.3g.20gb")
        );
        assert_eq!(profile_from_name("NVIDIA H100 80GB HBM3"), None);
        assert_eq!(profile_from_name("NVIDIA H100 MIG "), None);
    }
}
