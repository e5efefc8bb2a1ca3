//! The NVML backend: the GPUs and MIG slices the driver reports, with the
//! device-node numbers read from `/proc`.

use std::os::raw::c_uint;
use std::path::Path;

use nvml_wrapper::error::{NvmlError, nvml_sym, nvml_try};
use nvml_wrapper::{Device, Nvml};

use super::{
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
        let count = nvml
            .device_count()
            .map_err(|e| InventoryError::Nvml(format!("cannot count the GPUs: {e}")))?;
        // Read only once some GPU is in MIG mode: elsewhere the file may not exist.
        let mut mig_minors = None;
        let mut gpus = Vec::new();
        for index in 0..count {
            gpus.push(scan_gpu(&nvml, &majors, &mut mig_minors, index)?);
        }
        Ok(Inventory {
            source: "nvml".to_string(),
            majors,
            common_nodes: common_nodes(&majors),
            gpus,
        })
    }
}

/// Parses `/proc/devices` for the NVIDIA character-device majors.
pub fn parse_proc_devices(text: &str) -> Result<Majors, String> {
    let mut lines = text.lines().map(str::trim);
    if !lines.any(|l| l == "Character devices:") {
        return Err("no \"Character devices:\" section".to_string());
    }
    let (mut frontend, mut nvidia, mut uvm, mut caps) = (None, None, None, None);
    for line in lines.take_while(|l| *l != "Block devices:") {
        let Some((major, name)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let Ok(major) = major.parse::<u32>() else {
            continue;
        };
        // Exact names: `nvidia-caps-imex-channels`, `nvidia-nvlink` and the like are other drivers.
        let slot = match name.trim() {
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

fn read_majors() -> Result<Majors, InventoryError> {
    let text = read_proc(PROC_DEVICES)?;
    parse_proc_devices(&text).map_err(|msg| InventoryError::Invalid {
        path: PROC_DEVICES.into(),
        msg,
    })
}

/// The MIG minors table, read on first use.
fn mig_minors(cache: &mut Option<MigMinors>) -> Result<&MigMinors, InventoryError> {
    match cache {
        Some(m) => Ok(m),
        None => {
            let text = read_proc(minors::PROC_PATH)?;
            let table = MigMinors::parse(&text).map_err(|msg| InventoryError::Invalid {
                path: minors::PROC_PATH.into(),
                msg,
            })?;
            Ok(cache.insert(table))
        }
    }
}

fn read_proc(path: &str) -> Result<String, InventoryError> {
    std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
        path: Path::new(path).to_path_buf(),
        source,
    })
}

/// Turns an NVML error about GPU `index` into an inventory error.
fn fail(index: u32, what: &str) -> impl FnOnce(NvmlError) -> InventoryError + '_ {
    move |e| InventoryError::Nvml(format!("gpu {index}: cannot read {what}: {e}"))
}

fn scan_gpu(
    nvml: &Nvml,
    majors: &Majors,
    mig_minors_cache: &mut Option<MigMinors>,
    index: u32,
) -> Result<Gpu, InventoryError> {
    let device = nvml
        .device_by_index(index)
        .map_err(fail(index, "the device handle"))?;
    let minor = device
        .minor_number()
        .map_err(fail(index, "the minor number"))?;
    let mig_enabled = mig_enabled(&device).map_err(fail(index, "the MIG mode"))?;
    let (slices, mig) = if mig_enabled {
        let table = mig_minors(mig_minors_cache)?;
        (
            parent_slices(&device),
            scan_migs(nvml, &device, majors, table, index, minor)?,
        )
    } else {
        (0, Vec::new())
    };
    Ok(Gpu {
        index,
        uuid: device.uuid().map_err(fail(index, "the uuid"))?,
        name: device.name().map_err(fail(index, "the name"))?,
        memory_mib: memory_mib(&device).map_err(fail(index, "the memory size"))?,
        minor,
        mig_enabled,
        // Only for choosing images: a driver that cannot say is no error.
        cuda_arch: device
            .cuda_compute_capability()
            .ok()
            .map(|c| format!("sm_{}{}", c.major, c.minor)),
        slices,
        nodes: gpu_nodes(majors, minor),
        mig,
        drm: device
            .pci_info()
            .map(|p| drm_of(Path::new("/sys/bus/pci/devices"), &p.bus_id))
            .unwrap_or_default(),
    })
}

/// A GPU's DRM nodes, from sysfs: `<pci>/drm/cardN` and `renderDN`.
/// NVML reports the bus id in upper case with an 8-digit domain; sysfs
/// names it in lower case with a 4-digit one.
pub fn drm_of(pci_root: &Path, bus_id: &str) -> Vec<super::DeviceNode> {
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
    super::drm_nodes(card, render)
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

fn scan_migs(
    nvml: &Nvml,
    parent: &Device<'_>,
    majors: &Majors,
    table: &MigMinors,
    index: u32,
    parent_minor: u32,
) -> Result<Vec<MigDevice>, InventoryError> {
    let max = parent
        .mig_device_count()
        .map_err(fail(index, "the MIG device count"))?;
    let mut out = Vec::new();
    for slot in 0..max {
        let mig = match parent.mig_device_by_index(slot) {
            Ok(mig) => mig,
            // An empty slot: no compute instance there.
            Err(NvmlError::NotFound | NvmlError::InvalidArg) => continue,
            Err(e) => return Err(fail(index, &format!("MIG device {slot}"))(e)),
        };
        out.push(scan_mig(
            nvml,
            &mig,
            majors,
            table,
            index,
            parent_minor,
            slot,
        )?);
    }
    Ok(out)
}

fn scan_mig(
    nvml: &Nvml,
    mig: &Device<'_>,
    majors: &Majors,
    table: &MigMinors,
    index: u32,
    parent_minor: u32,
    slot: u32,
) -> Result<MigDevice, InventoryError> {
    let what = |field: &str| format!("MIG device {slot} {field}");
    let lib = nvml.lib();
    // SAFETY: the handle comes from this `nvml`, which outlives the calls.
    let handle = unsafe { mig.handle() };
    let gpu_instance = get_u32(nvml_sym(lib.nvmlDeviceGetGpuInstanceId.as_ref()), handle)
        .map_err(fail(index, &what("GPU instance id")))?;
    let compute_instance = get_u32(
        nvml_sym(lib.nvmlDeviceGetComputeInstanceId.as_ref()),
        handle,
    )
    .map_err(fail(index, &what("compute instance id")))?;
    let name = mig.name().map_err(fail(index, &what("name")))?;
    let profile = profile_from_name(&name).ok_or_else(|| {
        InventoryError::Nvml(format!(
            "gpu {index}: MIG device {slot}: no profile in the name {name:?}"
        ))
    })?;
    let nodes = mig_nodes(majors, table, parent_minor, gpu_instance, compute_instance)
        .map_err(|msg| InventoryError::Nvml(format!("gpu {index}: MIG device {slot}: {msg}")))?;
    Ok(MigDevice {
        uuid: mig.uuid().map_err(fail(index, &what("uuid")))?,
        profile: profile.to_string(),
        slices: mig
            .attributes()
            .map_err(fail(index, &what("attributes")))?
            .gpu_instance_slice_count,
        memory_mib: memory_mib(mig).map_err(fail(index, &what("memory size")))?,
        gpu_instance,
        compute_instance,
        nodes,
    })
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
