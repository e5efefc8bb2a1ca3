//! `ds01 admin lock-host-gpus` / `unlock-host-gpus` and `bare-metal`:
//! the group that may use GPUs outside containers, and what was done.

use std::ffi::CString;

use ds01::host_gpus::{Done, GROUP};

/// The gid of ds01-gpu-direct, made (a system group) where missing.
pub fn group() -> anyhow::Result<u32> {
    if let Some(g) = gid(GROUP) {
        return Ok(g);
    }
    let out = std::process::Command::new("groupadd")
        .args(["--system", GROUP])
        .output()
        .map_err(|e| anyhow::anyhow!("groupadd --system {GROUP}: {e}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "groupadd --system {GROUP}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    gid(GROUP).ok_or_else(|| anyhow::anyhow!("group {GROUP} was made but cannot be found"))
}

pub fn gid(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: getgrnam with a valid C string; the gid is copied out at once.
    unsafe {
        let g = libc::getgrnam(c.as_ptr());
        (!g.is_null()).then(|| (*g).gr_gid)
    }
}

pub fn say(done: &Done) {
    for l in &done.lines {
        println!("ds01: {l}");
    }
    if done.reload_needed {
        println!(
            "ds01: the loaded NVIDIA driver still makes nodes with its old modes: they hold now, but nodes it \
             makes anew follow only after a driver reload (stop GPU work, then `rmmod nvidia_uvm nvidia_drm \
             nvidia_modeset nvidia && modprobe nvidia`) or a reboot"
        );
    } else {
        println!("ds01: no driver reload needed");
    }
}
